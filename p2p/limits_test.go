package p2p

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// silentClient opens a client-protocol stream to replica and writes count
// one-byte requests on it, never reading what comes back: the audit's
// ledger flood (a 4-byte request answered with a chunk of up to 1 MiB).
func silentClient(t *testing.T, replica *Node, count int) network.Stream {
	t.Helper()
	c := newTestNode(t, Config{NoListen: true})
	c.Host.Peerstore().AddAddrs(replica.ID(), replica.AddrInfo().Addrs, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	s, err := c.Host.NewStream(ctx, replica.ID(), ClientProtocol("test-chain"))
	if err != nil {
		t.Fatal(err)
	}
	for range count {
		if err := writeFrame(s, []byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestSendQueueBoundedInBytes: a client that asks for large answers and
// never reads them pins at most Config.SendQueueBytes of them at the
// replica, not SendQueueSize messages of any size (the audit's 4000 ledger
// requests grew a replica by 1.5 GB); the oldest are dropped and counted.
// Several such clients together pin at most NonMemberQueueBytes, and a
// member's queue is not affected by them.
func TestSendQueueBoundedInBytes(t *testing.T) {
	const mib = 1 << 20
	cfg := Config{AllowNonMembers: true, SendQueueBytes: 8 * mib, NonMemberQueueBytes: 12 * mib}
	replica := newTestNode(t, cfg)
	member := newTestNode(t, cfg)
	for _, n := range []*Node{replica, member} {
		n.SetMembers([]peer.AddrInfo{replica.AddrInfo(), member.AddrInfo()})
	}
	pid := ClientProtocol("test-chain")
	chunk := make([]byte, mib) // one buffer, so the test itself stays small
	var mu sync.Mutex
	requests := 0
	replica.Handle(pid, false, func(from peer.ID, data []byte) {
		mu.Lock()
		requests++
		mu.Unlock()
		replica.Send(from, pid, chunk)
	})
	got := make(chan int, 1)
	member.Handle(VoteProtocol("test-chain"), true, func(_ peer.ID, data []byte) { got <- len(data) })
	replica.Handle(VoteProtocol("test-chain"), true, func(peer.ID, []byte) {})

	const flood = 200 // 200 MiB of answers
	silentClient(t, replica, flood)
	eventually(t, "every request answered", func() bool { mu.Lock(); defer mu.Unlock(); return requests == flood })
	s := replica.Stats()
	if s.SendQueuedBytes > uint64(cfg.SendQueueBytes) {
		t.Fatalf("%d bytes queued for one client, limit %d", s.SendQueuedBytes, cfg.SendQueueBytes)
	}
	// Some answers sit in the stream's and the socket's buffers (flow
	// control), the rest beyond 8 MiB must have been dropped.
	if s.SendDropsBytes < flood/2 || s.SendDrops < s.SendDropsBytes {
		t.Fatalf("%d drops for bytes (%d in all) of %d answers, want most of them", s.SendDropsBytes, s.SendDrops, flood)
	}

	// A second silent client: the two together stay within the
	// non-member bound, and its excess is counted as such.
	silentClient(t, replica, flood)
	eventually(t, "second client's requests answered", func() bool { mu.Lock(); defer mu.Unlock(); return requests == 2*flood })
	s = replica.Stats()
	if s.SendQueuedNonMemberBytes > uint64(cfg.NonMemberQueueBytes) || s.SendQueuedBytes != s.SendQueuedNonMemberBytes {
		t.Fatalf("%d bytes queued (%d to non-members), non-member limit %d", s.SendQueuedBytes, s.SendQueuedNonMemberBytes, cfg.NonMemberQueueBytes)
	}
	if s.SendDropsNonMember == 0 {
		t.Fatal("no drop counted for the non-member bound")
	}
	// Members are not subject to the non-member bound.
	replica.Send(member.ID(), VoteProtocol("test-chain"), chunk)
	if n := recv(t, got, "a member's message while the client queues are full"); n != mib {
		t.Fatalf("member got %d bytes", n)
	}
}

// TestSendQueueBytesKeepNewest: at the byte bound the oldest messages go,
// the newest stay (consensus: a newer message supersedes older ones).
func TestSendQueueBytesKeepNewest(t *testing.T) {
	n := newTestNode(t, Config{MaxMsgSize: 100, SendQueueBytes: 300})
	q := &sendQueue{n: n, notify: make(chan struct{}, 1)}
	key := streamKey{peer: "nobody", pid: "/x"}
	n.streamMu.Lock()
	n.queues[key] = q // no writer: the queue only fills
	n.streamMu.Unlock()
	for i := range 10 {
		n.Send("nobody", "/x", make([]byte, 60+i))
	}
	msgs, bytes := n.Queued("nobody", "/x")
	if bytes > 300 || msgs != 4 || len(q.items[3]) != 69 || len(q.items[0]) != 66 {
		t.Fatalf("%d messages, %d bytes queued, want the newest 4 (66..69 bytes) within 300", msgs, bytes)
	}
	if s := n.Stats(); s.SendDropsBytes != 6 || s.SendDrops != 6 || s.SendQueuedBytes != uint64(bytes) {
		t.Fatalf("stats %+v, want 6 drops for bytes and %d bytes queued", s, bytes)
	}
}

// TestRateLog: a flood of warnings writes the first at once and the rest as
// one line with their count at the end of the period, even if nothing
// follows the burst.
func TestRateLog(t *testing.T) {
	var mu sync.Mutex
	var lines []map[string]any
	wrote := make(chan struct{}, 16)
	r := NewRateLog(log, 50*time.Millisecond)
	r.write = func(msg string, kv ...any) {
		m := map[string]any{"msg": msg}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		mu.Lock()
		lines = append(lines, m)
		mu.Unlock()
		wrote <- struct{}{}
	}
	for i := range 1000 {
		r.Warnw("oversize", "i", i)
	}
	recv(t, wrote, "first line")
	recv(t, wrote, "count line")
	mu.Lock()
	if len(lines) != 2 || lines[0]["i"] != 0 || lines[0]["suppressed"] != nil || lines[1]["suppressed"] != uint64(999) || lines[1]["i"] != 999 {
		t.Fatalf("lines %v, want the first event, then one line for the other 999", lines)
	}
	mu.Unlock()
	if r.Suppressed() != 0 {
		t.Fatalf("%d still suppressed", r.Suppressed())
	}
}
