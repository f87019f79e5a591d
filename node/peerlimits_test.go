package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/p2p"
	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// TestBlockRequestFloodLimited: a Byzantine member floods a replica with
// forward block requests from genesis for 2^32-1 blocks (the audit's 20,000
// in 0.47 s were each answered with 100 blocks, on the consensus queue).
// The replica answers them only at the per-peer rate (blockRequestRate
// blocks/s after a burst), counts the rest as ignored, and keeps
// committing. That honest catch-up is not slowed is checked by
// TestEmptyReplicaCatchesUp, which also requires that no block request of
// it was refused.
func TestBlockRequestFloodLimited(t *testing.T) {
	c := newCluster(t, 1)
	var answered atomic.Int64
	c.prepare = func(i int, r *Replica) {
		if i == 0 {
			r.onSend = func(msg any) {
				if _, ok := msg.(*types.BlockResponse); ok {
					answered.Add(1)
				}
			}
		}
	}
	for i := range 3 { // replica 3's identity is the flooder's
		c.start(t, i)
	}
	tc := newTestClient(t, c)
	tc.submitAndWait(t, 1, 20)

	evil := c.nets[3]
	pid := p2p.SyncProtocol(c.com.ChainID)
	var received atomic.Int64
	evil.Handle(pid, true, func(peer.ID, []byte) { received.Add(1) })
	req, err := wire.Encode(&types.BlockRequest{ID: types.GenesisID(), Count: ^uint32(0), Forward: true})
	if err != nil {
		t.Fatal(err)
	}
	const flood = 3000 // within the sender's queue (p2p.DefaultSendQueueSize)
	r0 := c.reps[0]
	limited := func() float64 { return value(r0.m.ignored.WithLabelValues("block_request")) }
	commitsBefore := value(r0.m.commits)
	start := time.Now()
	for range flood {
		evil.Send(c.nets[0].ID(), pid, req)
	}
	waitFor(t, "every request answered or refused", time.Minute, func() bool { return int(answered.Load())+int(limited()) >= flood })
	elapsed := time.Since(start).Seconds()
	// The bucket holds blockRequestBurst blocks and refills at
	// blockRequestRate; each request costs maxBlocksPerRequest.
	allowed := (blockRequestBurst + blockRequestRate*elapsed) / maxBlocksPerRequest
	got := float64(answered.Load())
	t.Logf("%d requests in %.2f s: %v answered (bucket allows %.0f), %v refused; %d answers reached the flooder", flood, elapsed, got, allowed, limited(), received.Load())
	if got > allowed+5 { // +5: honest fetches of replicas 1 and 2, if any
		t.Fatalf("%v of %d flooded block requests answered, the rate limit allows %.0f", got, flood, allowed)
	}
	if limited() == 0 {
		t.Fatal("no block request counted as refused")
	}
	tc.submitAndWait(t, 21, 30)
	if value(r0.m.commits) <= commitsBefore {
		t.Fatal("replica 0 committed nothing during and after the flood")
	}
}

// silentLedgerClient opens a client-protocol stream from a fresh client host to
// replica and writes count framed copies of data on it, never reading.
func silentLedgerClient(t *testing.T, c *cluster, replica int, data []byte, count int) peer.ID {
	t.Helper()
	n, err := p2p.New(context.Background(), p2p.Config{NoListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	n.Host.Peerstore().AddAddrs(c.nets[replica].ID(), c.nets[replica].Host.Addrs(), time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := n.Host.NewStream(ctx, c.nets[replica].ID(), p2p.ClientProtocol(c.com.ChainID))
	if err != nil {
		t.Fatal(err)
	}
	frame := append(binary.AppendUvarint(nil, uint64(len(data))), data...)
	for range count {
		if _, err := s.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	return n.ID()
}

// TestLedgerRequestsOfASilentClientLimited: a client that asks for ledger
// chunks and never reads them (the audit's 4000 requests grew a replica to
// 1.57 GB) gets at most ledgerBacklog bytes of answers queued, plus the
// chunk that crossed it (before the fix, the send queue's byte bound, 32
// MiB, was the only limit); its further requests are refused and counted
// without reading the ledger.
func TestLedgerRequestsOfASilentClientLimited(t *testing.T) {
	c := startCluster(t, 1)
	tc := newTestClient(t, c)
	// 32 operations of 7,000 bytes (under types.MaxOpBytes; each returns
	// fail, its value being over kv.MaxValueSize, but its ledger line holds
	// it): ~220 KiB chunks, large enough to reach ledgerBacklog quickly.
	big := strings.Repeat("x", 7000)
	const ops = 32
	for i := uint64(1); i <= ops; i++ {
		tc.submit(i, fmt.Sprintf("put('k%d','%s')", i, big))
	}
	waitFor(t, "the requests accepted", time.Minute, func() bool { _, ok := tc.accepted(ops); return ok })
	waitFor(t, "replica 0's ledger durable", time.Minute, func() bool { return c.reps[0].exec.servedView().Lines >= ops })
	chunk := int64(c.reps[0].exec.servedView().Size) + 1024 // the whole ledger, encoded

	req, err := client.EncodeLedgerRequest(&client.LedgerRequest{From: 0})
	if err != nil {
		t.Fatal(err)
	}
	r0 := c.reps[0]
	const flood = 400 // 96 MiB of answers
	who := silentLedgerClient(t, c, 0, req, flood)
	refused := func() float64 { return value(r0.m.ignored.WithLabelValues("ledger_request")) }
	limit := ledgerBacklog + chunk
	var most int64
	waitFor(t, "most ledger requests refused", time.Minute, func() bool {
		_, b := r0.net.Queued(who, r0.clientProto)
		most = max(most, b)
		return refused() >= flood/2
	})
	_, b := r0.net.Queued(who, r0.clientProto)
	most = max(most, b)
	t.Logf("%d ledger requests: %v refused, at most %d bytes queued for the client", flood, refused(), most)
	if most > limit {
		t.Fatalf("%d bytes of ledger chunks queued for a client that reads none, limit %d", most, limit)
	}
	if most < ledgerBacklog {
		t.Fatalf("only %d bytes queued: the backlog was never reached, the test does not test", most)
	}
}
