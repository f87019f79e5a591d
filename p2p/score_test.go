package p2p

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestMemberSendingInvalidGossipIsGraylisted: a member whose gossip the
// validators reject is graylisted after some 20 messages: its score falls
// below GraylistThreshold, its further messages, valid ones included, are
// dropped unread, and an honest member's messages still arrive, also when
// the graylisted member relays them first (pubsub marks a message seen
// before validating it, so dropping a graylisted relay's copy anywhere
// later than the RPC would lose the honest copy as a duplicate).
func TestMemberSendingInvalidGossipIsGraylisted(t *testing.T) {
	nodes := cluster(t, 3, Config{})
	honest, receiver, bad := nodes[0], nodes[1], nodes[2]
	topic := ProposalTopic("test-chain")
	validator := func(_ peer.ID, data []byte) (pubsub.ValidationResult, any) {
		if bytes.HasPrefix(data, []byte("bad")) {
			return pubsub.ValidationReject, nil
		}
		return pubsub.ValidationAccept, nil
	}
	got := gossipAll(t, nodes, topic, validator, 256)[1]
	for i, n := range nodes {
		eventually(t, fmt.Sprintf("node %d sees 2 topic peers", i), func() bool { return len(n.TopicPeers(topic)) == 2 })
	}

	if receiver.Graylisted(bad.ID()) {
		t.Fatal("graylisted before misbehaving")
	}
	for i := range 30 {
		if err := bad.Publish(topic, fmt.Appendf(nil, "bad-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "receiver graylists the member that sent invalid messages", func() bool { return receiver.Graylisted(bad.ID()) })
	eventually(t, "the inspected score falls below the threshold", func() bool { return receiver.PeerScore(bad.ID()) < GraylistThreshold })
	if receiver.Graylisted(honest.ID()) || receiver.PeerScore(honest.ID()) < 0 {
		t.Fatalf("the honest member is scored %.0f", receiver.PeerScore(honest.ID()))
	}
	rejects := receiver.Stats().PubsubRejects
	if rejects == 0 || rejects > 30 {
		t.Fatalf("%d rejections", rejects)
	}

	// The graylisted member's messages, valid or not, go unread.
	drops := receiver.GraylistDrops()
	for i := range 5 {
		if err := bad.Publish(topic, fmt.Appendf(nil, "valid-from-bad-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "graylisted member's messages dropped", func() bool { return receiver.GraylistDrops() >= drops+5 })
	// An honest message arrives, whoever relays it first.
	for i := range 5 {
		if err := honest.Publish(topic, fmt.Appendf(nil, "hello-%d", i)); err != nil {
			t.Fatal(err)
		}
		d := recv(t, got, "honest message")
		if d.data != fmt.Sprintf("hello-%d", i) || d.from != honest.ID() {
			t.Fatalf("received %q from %s, want hello-%d from the honest member", d.data, d.from, i)
		}
	}
	if s := receiver.Stats().PubsubRejects; s != rejects {
		t.Fatalf("%d more rejections: the graylisted member's messages were validated", s-rejects)
	}
}

// TestPenalizedStreamPeerIsGraylisted: invalid messages a member sends on
// streams count through Penalize; AwaitGraylist blocks while the member is
// graylisted and returns when the node closes.
func TestPenalizedStreamPeerIsGraylisted(t *testing.T) {
	nodes := cluster(t, 2, Config{})
	for _, n := range nodes {
		if err := n.StartPubSub(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	a, b := nodes[0], nodes[1]
	for range 19 {
		a.Penalize(b.ID())
	}
	if a.Graylisted(b.ID()) {
		t.Fatal("graylisted after 19 invalid messages")
	}
	a.AwaitGraylist(b.ID()) // returns at once
	a.Penalize(b.ID())
	a.Penalize(b.ID())
	if !a.Graylisted(b.ID()) {
		t.Fatal("not graylisted after 21 invalid messages")
	}
	if b.Graylisted(a.ID()) {
		t.Fatal("graylisting is not per peer")
	}
	done := make(chan struct{})
	go func() { a.AwaitGraylist(b.ID()); close(done) }()
	select {
	case <-done:
		t.Fatal("AwaitGraylist returned for a graylisted peer")
	case <-time.After(3 * scoreInspectEvery):
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	recv(t, done, "AwaitGraylist to return on Close")
	// A node without pubsub scores nobody.
	var none *Node
	none.Penalize(b.ID())
	if none.Graylisted(b.ID()) || none.PeerScore(b.ID()) != 0 {
		t.Fatal("a nil node graylists")
	}
}
