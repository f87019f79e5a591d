package p2p

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Pubsub tuning (DESIGN §4). The library defaults of 32 for the validation
// and per-peer outbound queues drop gossip under load; these are sized for
// thousands of messages per second among a few dozen replicas.
const (
	pubsubQueueSize = 4096
	subBufferSize   = 4096
	// SeenMessagesTTL is how long a message id (content hash) is remembered.
	// The library default is 2 minutes, and an identical re-broadcast within
	// that window is silently swallowed. Callers make re-broadcasts differ in
	// content anyway; the short TTL is the second line of defence. It must
	// stay above the gossip history window (5 heartbeats of 1 s) or messages
	// could come back through IHAVE/IWANT after being forgotten.
	SeenMessagesTTL = 10 * time.Second
	// pubsubEnvelope is headroom for the RPC framing around one message, so
	// that a MaxMsgSize payload fits in pubsub's whole-RPC size limit.
	pubsubEnvelope = 64 << 10
)

// Validator judges a gossiped message: Accept, Reject (provably invalid: a
// bad signature, a malformed encoding) or Ignore (stale or not yet useful).
// from is the member that relayed it, not necessarily its author: messages
// carry no libp2p author, higher layers check their own signatures.
// Validators run concurrently on pubsub's goroutines.
type Validator func(from peer.ID, data []byte) pubsub.ValidationResult

// StartPubSub starts gossipsub. It must come after SetMembers, because the
// direct peers (always sent every message, never pruned) are taken from the
// roster at this point; later roster changes do not alter them. Pubsub runs
// until ctx is cancelled or the node is closed.
func (n *Node) StartPubSub(ctx context.Context) error {
	n.psMu.Lock()
	defer n.psMu.Unlock()
	if n.ps != nil {
		return errors.New("p2p: pubsub already started")
	}
	n.members.mu.RLock()
	haveRoster := n.members.started
	n.members.mu.RUnlock()
	if !haveRoster {
		return errors.New("p2p: StartPubSub before SetMembers")
	}
	self := n.Host.ID()
	var direct []peer.AddrInfo
	for _, m := range n.Members() {
		if m.ID != self {
			direct = append(direct, m)
		}
	}
	psCtx, cancel := context.WithCancel(n.ctx)
	context.AfterFunc(ctx, cancel)

	tr := &tracer{c: &n.stats, streams: make(map[peer.ID]int)}
	psLog := slog.New(logging.SlogHandler()).With("logger", "pubsub")
	ps, err := pubsub.NewGossipSub(psCtx, n.Host,
		// Messages carry our own signatures (consensus keys), so libp2p
		// signing and authorship would only add bytes and a second check.
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(contentID),
		pubsub.WithFloodPublish(true),
		pubsub.WithDirectPeers(direct),
		pubsub.WithPeerFilter(func(p peer.ID, _ string) bool { return n.IsMember(p) }),
		pubsub.WithValidateQueueSize(pubsubQueueSize),
		pubsub.WithPeerOutboundQueueSize(pubsubQueueSize),
		pubsub.WithSeenMessagesTTL(SeenMessagesTTL),
		pubsub.WithMaxMessageSize(n.cfg.MaxMsgSize+pubsubEnvelope),
		pubsub.WithRawTracer(tr),
		// The library's own logger writes JSON straight to stderr; route it
		// through go-log like everything else.
		pubsub.WithLogger(psLog),
		pubsub.WithRPCLogger(psLog.With("system", "pubsub/rpc")),
	)
	if err != nil {
		cancel()
		return fmt.Errorf("start gossipsub: %w", err)
	}
	n.ps = ps
	n.psCtx = psCtx
	n.psTracer = tr
	n.spawn(func() { n.watchPubsub(psCtx, tr) })
	return nil
}

// Pubsub repair. go-libp2p-pubsub v0.19 can lose track of a connected peer
// for good: when its outbound stream to a peer dies while the peer stays
// connected (the stream was reset, or it ran on one of two connections and
// that one closed, as happens when the remote's gater drops a dial during
// startup), it clears the topics it had learned from the
// peer's *inbound* stream and never learns them again (the peer announces
// its subscriptions only when it opens a stream); and after 4 failed stream
// re-opens, or one failed open, it gives up on the peer until a new
// connection is identified. Either way the member silently stops receiving
// our gossip. The watchdog notices a connected gossipsub member that we have
// no stream to, or that is missing from a topic we subscribe to, for
// pubsubStuckAfter, and closes the connections to it: the reconnect loop
// redials and both sides start over with fresh streams and announcements.
// It checks four times a second in the background, off the message path. A
// replica restarted after a crash hits this on every restart (its old QUIC
// connection looks alive to the others until it times out), so the
// threshold is short and the repair backoff of a peer is forgotten once the
// peer is healthy again.
const (
	pubsubCheckEvery  = 250 * time.Millisecond
	pubsubStuckAfter  = time.Second
	pubsubRepairFirst = 10 * time.Second // pause before repairing the same peer again, doubling
	pubsubRepairMax   = 5 * time.Minute
)

func (n *Node) watchPubsub(ctx context.Context, tr *tracer) {
	self := n.Host.ID()
	suspect := make(map[peer.ID]time.Time)
	type repair struct {
		next    time.Time
		backoff time.Duration
	}
	repairs := make(map[peer.ID]*repair)
	tick := time.NewTicker(pubsubCheckEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n.psMu.Lock()
		ps, topics := n.ps, slices.Collect(maps.Keys(n.subscribed))
		n.psMu.Unlock()
		peersOf := make(map[string][]peer.ID, len(topics))
		for _, t := range topics {
			peersOf[t] = ps.ListPeers(t)
		}

		now := time.Now()
		for _, m := range n.Members() {
			p := m.ID
			if p == self || n.Host.Network().Connectedness(p) != network.Connected {
				delete(suspect, p)
				continue
			}
			// Only peers that run gossipsub (as identify reported).
			if protos, _ := n.Host.Peerstore().SupportsProtocols(p, pubsub.GossipSubDefaultProtocols...); len(protos) == 0 {
				delete(suspect, p)
				continue
			}
			broken := !tr.hasStream(p)
			for _, peers := range peersOf {
				if !slices.Contains(peers, p) {
					broken = true
				}
			}
			if !broken {
				delete(suspect, p)
				delete(repairs, p)
				continue
			}
			since, seen := suspect[p]
			if !seen {
				suspect[p] = now
				continue
			}
			r := repairs[p]
			if now.Sub(since) < pubsubStuckAfter || (r != nil && now.Before(r.next)) {
				continue
			}
			if r == nil {
				r = &repair{}
				repairs[p] = r
			}
			r.backoff = min(max(2*r.backoff, pubsubRepairFirst), pubsubRepairMax)
			r.next = now.Add(r.backoff)
			delete(suspect, p)
			n.stats.pubsubRepairs.Add(1)
			log.Infow("pubsub lost track of a member; reconnecting it", "peer", p, "has_stream", tr.hasStream(p))
			_ = n.Host.Network().ClosePeer(p)
		}
	}
}

// contentID makes the message id a hash of topic and data. Without an author
// and sequence number this is the only stable id, and it makes identical
// copies of one message from several relays collapse into one delivery.
func contentID(m *pb.Message) string {
	h := sha256.New()
	h.Write([]byte(m.GetTopic()))
	h.Write([]byte{0})
	h.Write(m.GetData())
	return string(h.Sum(nil))
}

// topic returns the joined topic, joining it on first use.
// Caller holds psMu.
func (n *Node) topic(name string) (*pubsub.Topic, error) {
	if n.ps == nil {
		return nil, errors.New("p2p: pubsub not started")
	}
	if t := n.topics[name]; t != nil {
		return t, nil
	}
	t, err := n.ps.Join(name)
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", name, err)
	}
	n.topics[name] = t
	return t, nil
}

// Subscribe joins topic with validator v and hands accepted messages to
// handler, in order, from one goroutine per topic; handler must not block
// long (hand off to the event loop). Messages this node publishes are not
// validated by v and not handed back: the caller handles its own messages
// locally. Messages relayed by a non-member are rejected before v runs.
func (n *Node) Subscribe(topic string, v Validator, handler func(from peer.ID, data []byte)) error {
	n.psMu.Lock()
	defer n.psMu.Unlock()
	if n.ps == nil {
		return errors.New("p2p: pubsub not started")
	}
	self := n.Host.ID()
	max := n.cfg.MaxMsgSize
	err := n.ps.RegisterTopicValidator(topic, func(_ context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
		if from == self {
			return pubsub.ValidationAccept
		}
		// The peer filter keeps non-members out of the mesh, but a
		// connected non-member can still push an RPC at us.
		if !n.IsMember(from) {
			n.stats.pubsubNonMember.Add(1)
			return pubsub.ValidationReject
		}
		if len(m.GetData()) > max {
			n.stats.oversizeMessages.Add(1)
			return pubsub.ValidationReject
		}
		return v(from, m.GetData())
	})
	if err != nil {
		return fmt.Errorf("validator for %s: %w", topic, err)
	}
	t, err := n.topic(topic)
	if err != nil {
		return err
	}
	sub, err := t.Subscribe(pubsub.WithBufferSize(subBufferSize))
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", topic, err)
	}
	n.subscribed[topic] = true
	ctx := n.psCtx
	n.spawn(func() {
		defer sub.Cancel()
		for {
			m, err := sub.Next(ctx)
			if err != nil {
				return
			}
			if m.ReceivedFrom == self {
				continue
			}
			n.stats.pubsubDelivered.Add(1)
			handler(m.ReceivedFrom, m.GetData())
		}
	})
	return nil
}

// Publish gossips data on topic (joining it if needed). It does not wait for
// the network: pubsub validates the message locally and hands it to its event
// loop through a buffered channel, so the caller only waits if that loop is
// saturated. Flood publishing sends it to every member subscribed to the topic.
func (n *Node) Publish(topic string, data []byte) error {
	if len(data) > n.cfg.MaxMsgSize {
		n.stats.oversizeMessages.Add(1)
		return fmt.Errorf("publish %s: %w: %d bytes, limit %d", topic, ErrMsgTooLarge, len(data), n.cfg.MaxMsgSize)
	}
	n.psMu.Lock()
	t, err := n.topic(topic)
	ctx := n.psCtx
	n.psMu.Unlock()
	if err != nil {
		return err
	}
	if err := t.Publish(ctx, data); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	n.stats.pubsubPublished.Add(1)
	return nil
}

// TopicPeers lists the peers known to be subscribed to topic (useful to wait
// for the mesh to form before publishing, since gossip is not buffered for
// peers that have not subscribed yet).
func (n *Node) TopicPeers(topic string) []peer.ID {
	n.psMu.Lock()
	defer n.psMu.Unlock()
	if n.ps == nil {
		return nil
	}
	return n.ps.ListPeers(topic)
}

// tracer counts the pubsub events that mean lost or refused messages, and
// tracks which peers pubsub holds an outbound stream to.
type tracer struct {
	c *counters

	mu      sync.Mutex
	streams map[peer.ID]int
}

func (t *tracer) OnNewOutboundStream(p peer.ID, _ protocol.ID) {
	t.mu.Lock()
	t.streams[p]++
	t.mu.Unlock()
}

func (t *tracer) OnClosedOutboundStream(p peer.ID) {
	t.mu.Lock()
	if t.streams[p]--; t.streams[p] <= 0 {
		delete(t.streams, p)
	}
	t.mu.Unlock()
}

func (t *tracer) hasStream(p peer.ID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.streams[p] > 0
}

var _ pubsub.RawTracer = (*tracer)(nil)

func (t *tracer) RejectMessage(_ *pubsub.Message, reason string) {
	switch reason {
	case pubsub.RejectValidationIgnored:
		t.c.pubsubIgnores.Add(1)
	case pubsub.RejectValidationQueueFull, pubsub.RejectValidationThrottled:
		t.c.pubsubDrops.Add(1)
	default:
		t.c.pubsubRejects.Add(1)
	}
}

// SendRPC counts what goes on the wire: every message in an RPC to a peer is
// one network transmission (own publishes and relays alike); an RPC with
// only control information (subscriptions, graft/prune, gossip) is counted
// apart.
func (t *tracer) SendRPC(rpc *pubsub.RPC, _ peer.ID) {
	if n := len(rpc.GetPublish()); n > 0 {
		t.c.pubsubMsgsSent.Add(uint64(n))
	} else {
		t.c.pubsubControlSent.Add(1)
	}
}

func (t *tracer) DuplicateMessage(*pubsub.Message)     { t.c.pubsubDuplicates.Add(1) }
func (t *tracer) DropRPC(*pubsub.RPC, peer.ID)         { t.c.pubsubDrops.Add(1) }
func (t *tracer) UndeliverableMessage(*pubsub.Message) { t.c.pubsubUndeliverable.Add(1) }

func (t *tracer) Join(string)                                          {}
func (t *tracer) Leave(string)                                         {}
func (t *tracer) Graft(peer.ID, string)                                {}
func (t *tracer) Prune(peer.ID, string)                                {}
func (t *tracer) ValidateMessage(*pubsub.Message)                      {}
func (t *tracer) DeliverMessage(*pubsub.Message)                       {}
func (t *tracer) ThrottlePeer(peer.ID)                                 {}
func (t *tracer) RecvRPC(*pubsub.RPC)                                  {}
func (t *tracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
