package p2p

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// All waits are for an event with a deadline; nothing sleeps a fixed time.
const waitLimit = 20 * time.Second

func newTestNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

// eventually waits for cond, re-checking it whenever the ticker fires, and
// fails with msg after waitLimit. Used for counters, which have no event.
func eventually(t *testing.T, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			if debugDump != nil {
				debugDump()
			}
			t.Fatalf("timed out waiting: %s", msg)
		}
		<-tick.C
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// cluster makes n nodes that are each other's members.
//
// Every node admits the others before any of them dials. Otherwise the first
// dials race the remote's SetMembers: the remote's gater drops them after the
// handshake, which the dialer sees only after it may have written on them,
// and what it wrote is lost (delivery is at most once). Real replicas live
// with that at startup; these tests want exact counts.
func cluster(t *testing.T, count int, cfg Config) []*Node {
	t.Helper()
	nodes := make([]*Node, count)
	infos := make([]peer.AddrInfo, count)
	for i := range nodes {
		nodes[i] = newTestNode(t, cfg)
		infos[i] = nodes[i].AddrInfo()
	}
	for _, n := range nodes {
		n.members.mu.Lock()
		for _, m := range infos {
			n.members.set[m.ID] = m
		}
		n.members.mu.Unlock()
	}
	for _, n := range nodes {
		n.SetMembers(infos)
	}
	return nodes
}

var debugDump func()

type delivery struct {
	from      peer.ID
	data      string
	validated any // what the validator returned with its verdict
}

// gossipAll starts pubsub on every node and subscribes it to topic with v;
// each node's deliveries go to its channel (buffered, capacity buf).
func gossipAll(t *testing.T, nodes []*Node, topic string, v Validator, buf int) []chan delivery {
	t.Helper()
	got := make([]chan delivery, len(nodes))
	for i, n := range nodes {
		if err := n.StartPubSub(context.Background()); err != nil {
			t.Fatal(err)
		}
		ch := make(chan delivery, buf)
		got[i] = ch
		if err := n.Subscribe(topic, v, func(from peer.ID, data []byte, validated any) { ch <- delivery{from, string(data), validated} }); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

func acceptAll(peer.ID, []byte) (pubsub.ValidationResult, any) { return pubsub.ValidationAccept, nil }

func TestGossipReachesOthersAndCountsValidation(t *testing.T) {
	nodes := cluster(t, 4, Config{})
	topic := ProposalTopic("test-chain")
	validator := func(_ peer.ID, data []byte) (pubsub.ValidationResult, any) {
		switch {
		case bytes.HasPrefix(data, []byte("bad")):
			return pubsub.ValidationReject, nil
		case bytes.HasPrefix(data, []byte("old")):
			return pubsub.ValidationIgnore, nil
		}
		return pubsub.ValidationAccept, len(data) // stands for the decoded message
	}
	debugDump = func() {
		for i, n := range nodes {
			for j, o := range nodes {
				t.Logf("node %d -> %d: %v conns=%d psStream=%v topicpeer=%v", i, j, n.Host.Network().Connectedness(o.ID()), len(n.Host.Network().ConnsToPeer(o.ID())), n.psTracer.hasStream(o.ID()), slices.Contains(n.TopicPeers(topic), o.ID()))
			}
		}
	}
	defer func() { debugDump = nil }()
	got := gossipAll(t, nodes, topic, validator, 64)
	for i, n := range nodes {
		eventually(t, fmt.Sprintf("node %d sees 3 topic peers", i), func() bool { return len(n.TopicPeers(topic)) == 3 })
	}

	if err := nodes[0].Publish(topic, []byte("hello-0")); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 4; i++ {
		d := recv(t, got[i], fmt.Sprintf("hello-0 at node %d", i))
		if d.data != "hello-0" || !nodes[i].IsMember(d.from) || d.validated != len("hello-0") {
			t.Fatalf("node %d got %q from %s, validated %v", i, d.data, d.from, d.validated)
		}
	}
	// Node 0's subscription is FIFO: if its own message were handed back it
	// would come before hello-1.
	if err := nodes[1].Publish(topic, []byte("hello-1")); err != nil {
		t.Fatal(err)
	}
	if d := recv(t, got[0], "hello-1 at node 0"); d.data != "hello-1" {
		t.Fatalf("node 0 got %q first; own messages must not be delivered back", d.data)
	}

	if err := nodes[0].Publish(topic, []byte("bad-1")); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].Publish(topic, []byte("old-1")); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 4; i++ {
		n := nodes[i]
		eventually(t, fmt.Sprintf("node %d counts a reject and an ignore", i), func() bool {
			s := n.Stats()
			return s.PubsubRejects >= 1 && s.PubsubIgnores >= 1
		})
	}
	// The refused messages were never delivered: the next delivery anywhere
	// is a fresh good message.
	if err := nodes[2].Publish(topic, []byte("hello-2")); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 3} {
		for d := (delivery{}); d.data != "hello-2"; {
			d = recv(t, got[i], fmt.Sprintf("hello-2 at node %d", i))
			if strings.HasPrefix(d.data, "bad") || strings.HasPrefix(d.data, "old") {
				t.Fatalf("node %d was handed refused message %q", i, d.data)
			}
		}
	}
	if s := nodes[0].Stats(); s.PubsubPublished != 3 {
		t.Fatalf("node 0 published %d, want 3", s.PubsubPublished)
	}
}

func TestSendDeliversInOrder(t *testing.T) {
	const count = 10000
	nodes := cluster(t, 2, Config{SendQueueSize: count})
	a, b := nodes[0], nodes[1]
	pid := VoteProtocol("test-chain")
	got := make(chan uint64, count)
	b.Handle(pid, true, func(from peer.ID, data []byte) {
		if from != a.ID() {
			t.Errorf("message from %s", from)
		}
		got <- binary.BigEndian.Uint64(data)
	})
	for i := range uint64(count) {
		a.Send(b.ID(), pid, binary.BigEndian.AppendUint64(nil, i))
	}
	for i := range uint64(count) {
		if v := recv(t, got, fmt.Sprintf("message %d", i)); v != i {
			t.Fatalf("message %d arrived as number %d", i, v)
		}
	}
	if s := a.Stats(); s.Sent != count || s.SendDrops != 0 {
		t.Fatalf("sender stats %+v", s)
	}
	if s := b.Stats(); s.Received != count {
		t.Fatalf("receiver stats %+v", s)
	}
}

func TestSendNeverBlocksAndCountsDrops(t *testing.T) {
	nodes := cluster(t, 2, Config{SendQueueSize: 16})
	a, b := nodes[0], nodes[1]
	pid := VoteProtocol("test-chain")
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	b.Handle(pid, true, func(peer.ID, []byte) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-release // a stuck receiver: flow control backs up to the sender
	})
	defer close(release)

	// 1000 x 32 KiB is far more than the stream and socket buffers hold.
	msg := make([]byte, 32<<10)
	var slowest time.Duration
	for range 1000 {
		start := time.Now()
		a.Send(b.ID(), pid, msg)
		slowest = max(slowest, time.Since(start))
	}
	recv(t, arrived, "first message")
	if slowest > 2*time.Second { // generous: a blocked Send would wait for WriteTimeout (10 s) or forever
		t.Fatalf("Send blocked for %v", slowest)
	}
	eventually(t, "drops counted", func() bool { return a.Stats().SendDrops > 0 })
}

// A client that cannot be dialled (no listen address, unknown to the
// replica's peerstore) gets its reply on the stream it opened.
func TestReplyOnInboundStream(t *testing.T) {
	replica := newTestNode(t, Config{AllowNonMembers: true})
	replica.SetMembers([]peer.AddrInfo{replica.AddrInfo()})
	client := newTestNode(t, Config{NoListen: true})
	if len(client.Host.Network().ListenAddresses()) != 0 {
		t.Fatal("client listens")
	}
	pid := ClientProtocol("test-chain")
	replica.Handle(pid, false, func(from peer.ID, data []byte) {
		replica.Send(from, pid, append([]byte("re:"), data...))
	})
	replies := make(chan string, 4)
	client.Handle(pid, false, func(from peer.ID, data []byte) {
		if from != replica.ID() {
			t.Errorf("reply from %s", from)
		}
		replies <- string(data)
	})
	client.Host.Peerstore().AddAddrs(replica.ID(), replica.AddrInfo().Addrs, time.Hour)

	client.Send(replica.ID(), pid, []byte("req-1"))
	if r := recv(t, replies, "reply 1"); r != "re:req-1" {
		t.Fatalf("reply %q", r)
	}
	client.Send(replica.ID(), pid, []byte("req-2"))
	if r := recv(t, replies, "reply 2"); r != "re:req-2" {
		t.Fatalf("reply %q", r)
	}
	if s := replica.Stats(); s.StreamsOpened != 0 || s.StreamsAccepted != 1 {
		t.Fatalf("replica opened %d / accepted %d streams, want 0 / 1", s.StreamsOpened, s.StreamsAccepted)
	}
	if s := client.Stats(); s.StreamsOpened != 1 || s.StreamsAccepted != 0 {
		t.Fatalf("client opened %d / accepted %d streams, want 1 / 0", s.StreamsOpened, s.StreamsAccepted)
	}
}

func TestGaterRefusesNonMember(t *testing.T) {
	nodes := cluster(t, 2, Config{})
	b := nodes[1]
	outsider := newTestNode(t, Config{})

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	err := outsider.Host.Connect(ctx, b.AddrInfo())
	if err == nil {
		// The dialer may finish its half of the handshake before the
		// listener's gater closes the connection; a stream must still fail.
		_, err = outsider.Host.NewStream(ctx, b.ID(), VoteProtocol("test-chain"))
	}
	if err == nil {
		t.Fatal("non-member got through the gater")
	}
	eventually(t, "refusal counted", func() bool { return b.Stats().GaterRefusals >= 1 })
	eventually(t, "outsider disconnected", func() bool {
		return outsider.Host.Network().Connectedness(b.ID()) != network.Connected
	})
	// Members are not refused.
	eventually(t, "members connected", func() bool {
		return nodes[0].Host.Network().Connectedness(b.ID()) == network.Connected
	})
}

func TestMembersOnlyStreamResetForNonMember(t *testing.T) {
	replica := newTestNode(t, Config{AllowNonMembers: true})
	replica.SetMembers([]peer.AddrInfo{replica.AddrInfo()})
	outsider := newTestNode(t, Config{})
	vote := VoteProtocol("test-chain")
	sync := SyncProtocol("test-chain")
	replica.Handle(vote, true, func(peer.ID, []byte) { t.Error("non-member vote delivered") })
	replica.HandleRequest(sync, true, func(peer.ID, []byte) ([]byte, error) {
		t.Error("non-member request served")
		return nil, nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := outsider.Host.Connect(ctx, replica.AddrInfo()); err != nil {
		t.Fatalf("AllowNonMembers: connect: %v", err)
	}
	s, err := outsider.Host.NewStream(ctx, replica.ID(), vote)
	if err != nil {
		t.Fatal(err)
	}
	_ = writeFrame(s, []byte("vote"))
	if _, err := readFrame(bufio.NewReader(s), 1024); err == nil || errors.Is(err, ErrMsgTooLarge) {
		t.Fatalf("read on refused stream: %v, want reset", err)
	}
	if _, err := outsider.Request(ctx, peer.AddrInfo{ID: replica.ID()}, sync, []byte("blocks?")); err == nil {
		t.Fatal("non-member request succeeded")
	}
	eventually(t, "resets counted", func() bool { return replica.Stats().NonMemberStreamResets == 2 })
}

func TestOversizeMessageRefused(t *testing.T) {
	small := newTestNode(t, Config{MaxMsgSize: 1024, AllowNonMembers: true})
	big := newTestNode(t, Config{AllowNonMembers: true})
	pid := ClientProtocol("test-chain")
	got := make(chan string, 4)
	small.Handle(pid, false, func(_ peer.ID, data []byte) { got <- string(data) })
	big.Host.Peerstore().AddAddrs(small.ID(), small.AddrInfo().Addrs, time.Hour)

	// The sender's limit allows it, the receiver's does not: the receiver
	// resets the stream and counts it; the handler never sees it.
	big.Send(small.ID(), pid, make([]byte, 2048))
	eventually(t, "oversize counted at receiver", func() bool { return small.Stats().OversizeMessages >= 1 })
	// A message written before the sender learns of the reset is lost with
	// the stream (delivery is at most once); wait until it has noticed.
	eventually(t, "reset seen by sender", func() bool { return big.Stats().StreamErrors >= 1 })
	big.Send(small.ID(), pid, []byte("fits"))
	if d := recv(t, got, "small message after reset"); d != "fits" {
		t.Fatalf("got %q", d)
	}

	// Locally, oversize input is refused with the typed error.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	before := small.Stats().OversizeMessages
	small.Send(big.ID(), pid, make([]byte, 1025))
	if _, err := small.Request(ctx, big.AddrInfo(), pid, make([]byte, 1025)); !errors.Is(err, ErrMsgTooLarge) {
		t.Fatalf("Request: %v, want ErrMsgTooLarge", err)
	}
	if after := small.Stats().OversizeMessages; after != before+2 {
		t.Fatalf("oversize count %d, want %d", after, before+2)
	}
	var buf bytes.Buffer
	_ = writeFrame(&buf, make([]byte, 100))
	if _, err := readFrame(bufio.NewReader(&buf), 99); !errors.Is(err, ErrMsgTooLarge) {
		t.Fatalf("readFrame: %v, want ErrMsgTooLarge", err)
	}
}

func TestRequestRoundTripAndTimeout(t *testing.T) {
	server := newTestNode(t, Config{AllowNonMembers: true})
	client := newTestNode(t, Config{NoListen: true})
	release := make(chan struct{})
	defer close(release)
	server.HandleRequest(OlympusProtocol, false, func(_ peer.ID, data []byte) ([]byte, error) {
		switch string(data) {
		case "stall":
			<-release
		case "fail":
			return nil, errors.New("no such thing")
		}
		return bytes.ToUpper(data), nil
	})
	pinned, err := ParsePinned(server.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	reply, err := client.Request(ctx, pinned, OlympusProtocol, []byte("roster"))
	if err != nil || string(reply) != "ROSTER" {
		t.Fatalf("Request = %q, %v", reply, err)
	}
	if _, err := client.Request(ctx, pinned, OlympusProtocol, []byte("fail")); err == nil {
		t.Fatal("handler error not reported")
	}

	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	start := time.Now()
	_, err = client.Request(short, pinned, OlympusProtocol, []byte("stall"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled Request: %v, want deadline exceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("stalled Request returned after %v", took)
	}
}

func TestMemberReconnects(t *testing.T) {
	nodes := cluster(t, 2, Config{})
	a, b := nodes[0], nodes[1]
	connected := func() bool { return a.Host.Network().Connectedness(b.ID()) == network.Connected }
	eventually(t, "initial connection", connected)
	if err := a.Host.Network().ClosePeer(b.ID()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "reconnected", connected)
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	addr := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)
	_, err = New(context.Background(), Config{ListenAddrs: []string{addr}})
	if err == nil {
		t.Fatal("listening on a busy port succeeded")
	}
	if want := "listen " + addr + ": address already in use"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("error %v is not EADDRINUSE", err)
	}
}

func TestAddrsArePinnable(t *testing.T) {
	n := newTestNode(t, Config{})
	addrs := n.Addrs()
	if len(addrs) != 2 {
		t.Fatalf("addrs %v, want TCP and QUIC", addrs)
	}
	for _, a := range addrs {
		info, err := ParsePinned(a.String())
		if err != nil || info.ID != n.ID() {
			t.Fatalf("ParsePinned(%s) = %v, %v", a, info, err)
		}
	}
	_, err := ParsePinned("/ip4/127.0.0.1/tcp/4001")
	if err == nil || !strings.Contains(err.Error(), "must end in /p2p/<peer-id>") {
		t.Fatalf("unpinned address: %v", err)
	}
	if _, err := ParsePinned("not a multiaddr"); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestLoadOrCreateHostKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "host.key")
	k1, err := LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equals(k2) {
		t.Fatal("reloaded key differs")
	}
	if err := os.WriteFile(path, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateHostKey(path); err == nil {
		t.Fatal("corrupt key accepted")
	}
}

func TestProtocolIDs(t *testing.T) {
	cases := map[string]string{
		ProposalTopic("c1"):          "/diembft/c1/proposal/1",
		TimeoutTopic("c1"):           "/diembft/c1/timeout/1",
		string(VoteProtocol("c1")):   "/diembft/c1/vote/1",
		string(ClientProtocol("c1")): "/diembft/c1/client/1",
		string(SyncProtocol("c1")):   "/diembft/c1/sync/1",
		string(OlympusProtocol):      "/diembft/olympus/1",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
}

func TestSetupLogging(t *testing.T) {
	if err := SetupLogging("loud"); err == nil {
		t.Fatal("bad level accepted")
	}
	if err := SetupLogging("error"); err != nil {
		t.Fatal(err)
	}
}

// Regression test for a go-libp2p-pubsub v0.19 quirk: when our outbound
// gossip stream to a peer dies while the connection stays up, pubsub forgets
// the peer's subscriptions and never relearns them. The watchdog must notice
// and reconnect the peer so that gossip flows again.
func TestPubsubRepairsLostPeer(t *testing.T) {
	nodes := cluster(t, 2, Config{})
	a, b := nodes[0], nodes[1]
	topic := TimeoutTopic("test-chain")
	got := make(chan string, 16)
	for _, n := range nodes {
		if err := n.StartPubSub(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Subscribe(topic, acceptAll, func(peer.ID, []byte, any) {}); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(topic, acceptAll, func(_ peer.ID, data []byte, _ any) { got <- string(data) }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a sees b in topic", func() bool { return slices.Contains(a.TopicPeers(topic), b.ID()) })

	// Reset a's outbound gossip stream to b, leaving the connection up.
	eventually(t, "a's outbound gossip stream to b reset", func() bool {
		for _, c := range a.Host.Network().ConnsToPeer(b.ID()) {
			for _, s := range c.GetStreams() {
				if s.Stat().Direction == network.DirOutbound && slices.Contains(pubsub.GossipSubDefaultProtocols, s.Protocol()) {
					_ = s.Reset()
					return true
				}
			}
		}
		return false
	})
	eventually(t, "repair counted", func() bool { return a.Stats().PubsubRepairs >= 1 })
	eventually(t, "a sees b in topic again", func() bool { return slices.Contains(a.TopicPeers(topic), b.ID()) })
	if err := a.Publish(topic, []byte("after repair")); err != nil {
		t.Fatal(err)
	}
	if d := recv(t, got, "gossip after repair"); d != "after repair" {
		t.Fatalf("got %q", d)
	}
}

// TestGossipIsNotRelayed: flood publishing hands a message to every member
// once and nobody relays it (gossipParams): with the roster as direct peers
// or a mesh, every receiver forwarded each message to the others, and each
// copy beyond the first arrived as a duplicate.
func TestGossipIsNotRelayed(t *testing.T) {
	nodes := cluster(t, 4, Config{})
	topic := ProposalTopic("test-chain")
	got := gossipAll(t, nodes, topic, acceptAll, 64)
	for i, n := range nodes {
		eventually(t, fmt.Sprintf("node %d sees 3 topic peers", i), func() bool { return len(n.TopicPeers(topic)) == 3 })
	}
	// Past the mesh maintenance of two heartbeats: joining a topic may graft
	// the members already known (see gossipParams), and a heartbeat prunes
	// them, or with D > 0 fills the mesh that would relay. This waits for a
	// periodic timer of the library, not for progress.
	time.Sleep(2*gossipHeartbeat + 50*time.Millisecond)
	const msgs = 10
	for k := range msgs {
		if err := nodes[0].Publish(topic, fmt.Appendf(nil, "m%d", k)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i < len(nodes); i++ {
		for k := range msgs {
			recv(t, got[i], fmt.Sprintf("m%d at node %d", k, i))
		}
	}
	// A fence from every node: a node's relays of the messages above would
	// have been queued to each peer before its fence, on the same stream.
	for i, n := range nodes {
		if err := n.Publish(topic, fmt.Appendf(nil, "fence%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range nodes {
		for range len(nodes) - 1 {
			if d := recv(t, got[i], fmt.Sprintf("fences at node %d", i)); !strings.HasPrefix(d.data, "fence") {
				t.Fatalf("node %d got %q again", i, d.data)
			}
		}
	}
	// The only other copies allowed are answers to IWANT: a heartbeat's
	// IHAVE can overtake the message it announces.
	var sent, iwants, dups uint64
	for _, n := range nodes {
		s := n.Stats()
		sent, iwants, dups = sent+s.PubsubMsgsSent, iwants+s.PubsubIWants, dups+s.PubsubDuplicates
	}
	// (An IWANT may be counted before its answer is sent.)
	if once := uint64((msgs + len(nodes)) * (len(nodes) - 1)); sent < once || sent > once+iwants || dups > iwants {
		t.Errorf("%d message transmissions and %d duplicates, want %d (one per receiver) plus at most %d asked for by IWANT, and at most %d", sent, dups, once, iwants, iwants)
	}
}

// TestGossipRepairsAMissingLink: without relays, a member that never gets a
// message from its author (here they are not connected: node 3 is not in
// node 0's roster) still gets it from the others' IHAVE/IWANT gossip within
// a few heartbeats.
func TestGossipRepairsAMissingLink(t *testing.T) {
	nodes := make([]*Node, 4)
	infos := make([]peer.AddrInfo, 4)
	for i := range nodes {
		nodes[i] = newTestNode(t, Config{})
		infos[i] = nodes[i].AddrInfo()
	}
	roster := func(i int) []peer.AddrInfo {
		switch i {
		case 0:
			return infos[:3]
		case 3:
			return []peer.AddrInfo{infos[1], infos[2], infos[3]}
		}
		return infos
	}
	for i, n := range nodes {
		n.members.mu.Lock()
		for _, m := range roster(i) {
			n.members.set[m.ID] = m
		}
		n.members.mu.Unlock()
	}
	for i, n := range nodes {
		n.SetMembers(roster(i))
	}
	topic := ProposalTopic("test-chain")
	got := gossipAll(t, nodes, topic, acceptAll, 8)[3]
	eventually(t, "node 0 sees nodes 1 and 2 on the topic", func() bool { return len(nodes[0].TopicPeers(topic)) == 2 })
	eventually(t, "node 3 sees nodes 1 and 2 on the topic", func() bool { return len(nodes[3].TopicPeers(topic)) == 2 })
	time.Sleep(2*gossipHeartbeat + 50*time.Millisecond) // past the grafts of joining (TestGossipIsNotRelayed)
	if err := nodes[0].Publish(topic, []byte("from-0")); err != nil {
		t.Fatal(err)
	}
	d := recv(t, got, "node 0's message at node 3")
	if d.data != "from-0" || (d.from != nodes[1].ID() && d.from != nodes[2].ID()) {
		t.Fatalf("node 3 got %q from %s", d.data, d.from)
	}
	if iw := nodes[1].Stats().PubsubIWants + nodes[2].Stats().PubsubIWants; iw == 0 {
		t.Fatal("delivered without an IWANT: relayed, not repaired")
	}
}
