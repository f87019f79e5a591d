package node

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	dto "github.com/prometheus/client_model/go"

	"github.com/diembft/diembft/p2p"
)

// TestNetMetricsExported: the p2p layer's counters of refused and dropped
// messages, and the Go runtime and process collectors, are in the
// replica's registry (--metrics), and the p2p counters in stats.json.
func TestNetMetricsExported(t *testing.T) {
	c := newCluster(t, 1)
	r, err := New(c.cfgs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer func() { r.exec.close(); r.store.close(); r.bs.close(); r.tl.close() }()

	// An oversize frame from a client, on a protocol the replica serves.
	pid := p2p.ClientProtocol(c.com.ChainID)
	c.nets[0].Handle(pid, false, func(peer.ID, []byte) {})
	n, err := p2p.New(context.Background(), p2p.Config{NoListen: true, MaxMsgSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.Host.Peerstore().AddAddrs(c.nets[0].ID(), c.nets[0].Host.Addrs(), time.Hour)
	n.Send(c.nets[0].ID(), pid, make([]byte, p2p.DefaultMaxMsgSize+1))
	waitFor(t, "oversize frame counted", 20*time.Second, func() bool { return c.nets[0].Stats().OversizeMessages == 1 })

	families, err := r.m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*dto.MetricFamily{}
	for _, f := range families {
		got[f.GetName()] = f
	}
	for _, name := range []string{
		"diembft_p2p_send_drops_total", "diembft_p2p_send_queued_bytes", "diembft_p2p_send_failures_total",
		"diembft_p2p_oversize_messages_total", "diembft_p2p_stream_errors_total",
		"diembft_p2p_non_member_stream_resets_total", "diembft_p2p_gater_refusals_total",
		"diembft_gossip_rejected_total", "diembft_gossip_non_member_rejected_total", "diembft_gossip_graylist_drops_total",
		"go_goroutines", "go_memstats_heap_inuse_bytes", "process_resident_memory_bytes", "process_open_fds",
	} {
		if got[name] == nil {
			t.Errorf("metric %s missing", name)
		}
	}
	if f := got["diembft_p2p_oversize_messages_total"]; f != nil && f.GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Errorf("diembft_p2p_oversize_messages_total = %v, want 1", f.GetMetric()[0].GetCounter().GetValue())
	}
	if f := got["diembft_p2p_send_drops_total"]; f != nil && len(f.GetMetric()) != 3 {
		t.Errorf("diembft_p2p_send_drops_total has %d series, want one per reason (3)", len(f.GetMetric()))
	}

	// The same counters in stats.json.
	r.writeStats()
	var st Stats
	if data, err := os.ReadFile(filepath.Join(c.cfgs[0].Home, "stats.json")); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	if st.P2P.OversizeMessages != 1 {
		t.Errorf("stats.json p2p.oversize_messages = %d, want 1", st.P2P.OversizeMessages)
	}
}
