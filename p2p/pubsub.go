package p2p

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
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
	// stay above the gossip history window (5 heartbeats, gossipHeartbeat)
	// or messages could come back through IHAVE/IWANT after being forgotten.
	SeenMessagesTTL = 10 * time.Second
	// pubsubEnvelope is headroom for the RPC framing around one message, so
	// that a MaxMsgSize payload fits in pubsub's whole-RPC size limit.
	pubsubEnvelope = 64 << 10
)

// gossipParams: no mesh (D = 0, as gossipsub's bootstrapper setting).
// Every member is one hop from every other, and flood publishing already
// hands each message to every subscribed member, so a mesh (or direct peers,
// DESIGN §4's first setting) only made every receiver relay it to all the
// others again: measured, 6 of the 12 transmissions per block at N = 4 and
// 30 of 42 at N = 7 were such duplicate relays of the proposal, each one
// decoded, hashed and dropped by its receiver. (One exception: joining a
// topic grafts every member already known, as D = 0 sets no limit there,
// so around a start members relay until the next heartbeat prunes them.)
//
// What relaying bought, a copy through a third member when one link loses
// a message, gossip keeps at heartbeat pace: each heartbeat a member
// announces the ids it saw in the last HistoryGossip heartbeats (IHAVE) to
// every other (Dlazy is above any roster size) and sends what they lack on
// request (IWANT). That is a backstop, slower than a round timeout (400 ms
// by default): consensus itself fetches a missed proposal's block when the
// next proposal's QC refers to it, and a round whose proposal a needed
// replica lost ends by timeout, where a relay would have hidden a lost copy
// on one link within milliseconds. A shorter heartbeat would repair within a
// round, but its IHAVE traffic cost N = 7 about 8 % of its throughput at
// 150 ms (three interleaved pairs of bench runs: 29.0-33.9k vs 32.6-38.0k
// ops/s), so the library's second stays.
func gossipParams() pubsub.GossipSubParams {
	p := pubsub.DefaultGossipSubParams()
	p.D, p.Dlo, p.Dhi, p.Dout, p.Dscore = 0, 0, 0, 0, 0
	p.Dlazy = 1 << 10
	p.HeartbeatInterval = gossipHeartbeat
	return p
}

// gossipHeartbeat is gossipsub's heartbeat (the library default), named for
// the tests that wait past one.
const gossipHeartbeat = time.Second

// Validator judges a gossiped message: Accept, Reject (provably invalid: a
// bad signature, a malformed encoding) or Ignore (stale or not yet useful).
// from is the member that relayed it, not necessarily its author: messages
// carry no libp2p author, higher layers check their own signatures.
// Validators run concurrently on pubsub's goroutines. What a validator
// returns besides the verdict (the decoded message) is handed to the
// subscription's handler with the message, so nothing is decoded twice (a
// 1,000-request proposal takes over a millisecond to decode).
type Validator func(from peer.ID, data []byte) (pubsub.ValidationResult, any)

// StartPubSub starts gossipsub. It must come after SetMembers (the peer
// filter admits members only). Pubsub runs until ctx is cancelled or the
// node is closed.
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
		pubsub.WithGossipSubParams(gossipParams()),
		pubsub.WithPeerFilter(func(p peer.ID, _ string) bool { return n.IsMember(p) }),
		pubsub.WithValidateQueueSize(pubsubQueueSize),
		pubsub.WithPeerOutboundQueueSize(pubsubQueueSize),
		pubsub.WithSeenMessagesTTL(SeenMessagesTTL),
		pubsub.WithMaxMessageSize(n.cfg.MaxMsgSize+pubsubEnvelope),
		pubsub.WithRawTracer(tr),
		pubsub.WithPeerScore(tr.scoreParams(), &peerScoreThresholds),
		pubsub.WithPeerScoreInspect(pubsub.PeerScoreInspectFn(tr.inspectScores), scoreInspectEvery),
		pubsub.WithAppSpecificRpcInspector(tr.inspectRPC),
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

// Peer scoring. Validators Reject only provably invalid messages (DESIGN
// §4), and gossipsub counts each Reject against the peer that relayed the
// message (P4, invalid message deliveries, squared, per topic). Every Reject
// also counts at once in the application-specific score, together with the
// invalid messages a member sends on streams (a forged vote, a bad block:
// Penalize). Every other component of the gossipsub score is off: the
// roster is small and fixed, idle topics are normal, and all replicas may
// share one IP (loopback, a LAN behind one address), so time in mesh,
// delivery rates and IP colocation say nothing here.
//
// A peer whose score falls below GraylistThreshold (about 20 invalid
// messages in quick succession) is graylisted. Gossipsub drops a graylisted
// peer's RPCs unread only while its score stays below the threshold; the
// graylisting here lasts (see below), so an RPC inspector drops them for as
// long (inspectRPC), and
// replicas drop a graylisted member's stream messages unread too
// (Graylisted). It has to be the whole RPC, before pubsub looks at its
// messages: pubsub marks a message id seen before running the validators,
// so a validator that ignored a graylisted member's relay of an honest
// message would make the honest sender's own copy a duplicate, lost.
// A graylisted peer stays so for 10 s, doubling at each new offence up to
// 10 minutes, and its counts decay by 10% a second: a member that stops
// misbehaving is heard again after a while, and one that goes on is
// graylisted again by its first few invalid messages, for longer. Honest
// members never send an invalid message.
const (
	// GraylistThreshold is the score below which a peer is graylisted.
	GraylistThreshold = -400
	// invalidWeight and invalidDecay shape both penalties: weight * count²,
	// the count decaying by 10% every second.
	invalidWeight     = -1
	invalidDecay      = 0.9
	graylistFirst     = 10 * time.Second
	graylistMax       = 10 * time.Minute
	scoreDecayEvery   = time.Second
	scoreInspectEvery = 200 * time.Millisecond
)

var peerScoreThresholds = pubsub.PeerScoreThresholds{
	GossipThreshold:   GraylistThreshold / 4, // no gossip (IHAVE/IWANT) with such a peer
	PublishThreshold:  GraylistThreshold / 2, // nor flood publishing
	GraylistThreshold: GraylistThreshold,
	// Peer exchange is never accepted: the roster decides who the peers are.
	AcceptPXThreshold: 1e9,
}

func (t *tracer) scoreParams() *pubsub.PeerScoreParams {
	return &pubsub.PeerScoreParams{
		Topics:            map[string]*pubsub.TopicScoreParams{}, // set by Subscribe
		AppSpecificScore:  t.appScore,
		AppSpecificWeight: 1,
		DecayInterval:     scoreDecayEvery,
		DecayToZero:       0.01,
		RetainScore:       time.Minute, // a flooder cannot reset its score by reconnecting
	}
}

func topicScoreParams() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight:                    1,
		TimeInMeshQuantum:              time.Second, // required, though its weight is 0
		InvalidMessageDeliveriesWeight: invalidWeight,
		InvalidMessageDeliveriesDecay:  invalidDecay,
	}
}

// penalty is a decaying count of invalid messages.
type penalty struct {
	count float64
	at    time.Time
}

func (p penalty) now(t time.Time) float64 {
	return p.count * math.Pow(invalidDecay, t.Sub(p.at).Seconds()/scoreDecayEvery.Seconds())
}

func (t *tracer) appScore(p peer.ID) float64 {
	t.scoreMu.RLock()
	pen, ok := t.penalties[p]
	t.scoreMu.RUnlock()
	if !ok {
		return 0
	}
	c := pen.now(time.Now())
	return invalidWeight * c * c
}

func (t *tracer) penalize(p peer.ID) {
	now := time.Now()
	t.scoreMu.Lock()
	defer t.scoreMu.Unlock()
	if t.penalties == nil {
		t.penalties = make(map[peer.ID]penalty)
	}
	t.penalties[p] = penalty{count: t.penalties[p].now(now) + 1, at: now}
}

func (t *tracer) inspectScores(scores map[peer.ID]float64) {
	t.scoreMu.Lock()
	t.scores = scores
	if t.inspected != nil {
		close(t.inspected)
	}
	t.inspected = make(chan struct{})
	t.scoreMu.Unlock()
}

// nextInspection is closed at the next score inspection.
func (t *tracer) nextInspection() <-chan struct{} {
	t.scoreMu.Lock()
	defer t.scoreMu.Unlock()
	if t.inspected == nil {
		t.inspected = make(chan struct{})
	}
	return t.inspected
}

func (t *tracer) score(p peer.ID) float64 {
	t.scoreMu.RLock()
	defer t.scoreMu.RUnlock()
	return t.scores[p]
}

// graylisted reports whether p is graylisted. A peer whose score falls
// below the threshold (the inspected score or, so as not to wait for the
// next inspection, the penalties as they are now) stays graylisted for
// graylistFirst, doubling at each new offence up to graylistMax: a flooder
// that were heard again as soon as its score crept back over the threshold
// would be heard, with its valid messages, for a moment every second or so,
// and such a member, now heard and now not, and not by everyone at the same
// moment, splits the others' views of a round (a leader's proposal that
// some replicas take and others drop ends in a TC).
func (t *tracer) graylisted(p peer.ID) bool {
	now := time.Now()
	t.scoreMu.RLock()
	b := t.bans[p]
	t.scoreMu.RUnlock()
	if now.Before(b.until) {
		return true
	}
	if t.score(p) >= GraylistThreshold && t.appScore(p) >= GraylistThreshold {
		return false
	}
	t.scoreMu.Lock()
	defer t.scoreMu.Unlock()
	if t.bans == nil {
		t.bans = make(map[peer.ID]graylisting)
	}
	b = t.bans[p]
	if now.Before(b.until) {
		return true
	}
	b.length = min(max(2*b.length, graylistFirst), graylistMax)
	b.until = now.Add(b.length)
	t.bans[p] = b
	return true
}

// graylisting is how long a peer is graylisted for.
type graylisting struct {
	until  time.Time
	length time.Duration // of the last one
}

var errGraylisted = errors.New("graylisted peer")

// inspectRPC drops every RPC of a graylisted peer before pubsub handles it,
// and counts the message ids a member asks for by IWANT: without relays
// (gossipParams) these are the repairs, a member that lacked a message we
// announced, or the race of an announcement with the message itself.
func (t *tracer) inspectRPC(p peer.ID, rpc *pubsub.RPC) error {
	if t.graylisted(p) {
		t.graylistDrops.Add(uint64(len(rpc.GetPublish())))
		return errGraylisted
	}
	for _, w := range rpc.GetControl().GetIwant() {
		t.c.pubsubIWants.Add(uint64(len(w.GetMessageIDs())))
	}
	return nil
}

// scoring returns the pubsub tracer, or nil before StartPubSub.
func (n *Node) scoring() *tracer {
	if n == nil {
		return nil
	}
	n.psMu.Lock()
	defer n.psMu.Unlock()
	return n.psTracer
}

// PeerScore is p's gossipsub score when last inspected (every 200 ms); 0
// for an unknown peer or before StartPubSub.
func (n *Node) PeerScore(p peer.ID) float64 {
	if t := n.scoring(); t != nil {
		return t.score(p)
	}
	return 0
}

// Graylisted reports whether p is graylisted: its score fell below
// GraylistThreshold, not long ago (see "Peer scoring"). Its gossip is then
// dropped unread; stream handlers should not read its messages either
// (AwaitGraylist).
func (n *Node) Graylisted(p peer.ID) bool {
	if t := n.scoring(); t != nil {
		return t.graylisted(p)
	}
	return false
}

// AwaitGraylist blocks while p is graylisted (re-checking at each score
// inspection), or until the node closes. A stream handler calls it for a
// graylisted peer's message: the stream is then not read, and flow control
// stops the peer's writes, where reading and dropping a flood would cost a
// little per message without end.
func (n *Node) AwaitGraylist(p peer.ID) {
	t := n.scoring()
	if t == nil {
		return
	}
	for t.graylisted(p) {
		select {
		case <-t.nextInspection():
		case <-n.ctx.Done():
			return
		}
	}
}

// Penalize counts one provably invalid message p sent outside gossip (on a
// stream) against its score, like an invalid gossip message.
func (n *Node) Penalize(p peer.ID) {
	if t := n.scoring(); t != nil {
		t.penalize(p)
	}
}

// GraylistDrops is how many gossip messages from graylisted peers were
// dropped unread.
func (n *Node) GraylistDrops() uint64 {
	if t := n.scoring(); t != nil {
		return t.graylistDrops.Load()
	}
	return 0
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
func (n *Node) Subscribe(topic string, v Validator, handler func(from peer.ID, data []byte, validated any)) error {
	n.psMu.Lock()
	defer n.psMu.Unlock()
	if n.ps == nil {
		return errors.New("p2p: pubsub not started")
	}
	self := n.Host.ID()
	max := n.cfg.MaxMsgSize
	tr := n.psTracer
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
		res, validated := v(from, m.GetData())
		m.ValidatorData = validated // the same *Message reaches the subscription
		if res == pubsub.ValidationReject {
			tr.penalize(from) // see "Peer scoring"
		}
		return res
	})
	if err != nil {
		return fmt.Errorf("validator for %s: %w", topic, err)
	}
	t, err := n.topic(topic)
	if err != nil {
		return err
	}
	if err := t.SetScoreParams(topicScoreParams()); err != nil {
		return fmt.Errorf("score params for %s: %w", topic, err)
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
			// Pubsub's message cache keeps m for a few heartbeats (IWANT
			// repairs): it must not keep the decoded message alive too.
			validated := m.ValidatorData
			m.ValidatorData = nil
			handler(m.ReceivedFrom, m.GetData(), validated)
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

	// Gossipsub's peer scores (inspected every scoreInspectEvery), the
	// penalties behind the application-specific score, and graylistings.
	scoreMu       sync.RWMutex
	scores        map[peer.ID]float64
	penalties     map[peer.ID]penalty
	inspected     chan struct{} // closed and replaced at each inspection
	bans          map[peer.ID]graylisting
	graylistDrops atomic.Uint64
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
// one network transmission (own publishes, answers to IWANT and any relays
// alike); an RPC with only control information (subscriptions, graft/prune,
// gossip) is counted apart.
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
