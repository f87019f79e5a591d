// Package client is the library behind bin/client: it submits a workload to
// every replica of a committee on the client protocol, keeps a bounded number
// of requests in flight, retransmits on timeout, and accepts a result once f+1
// replicas have sent the same (result, height) with valid signatures
// (docs/internal-contracts.md, "Client protocol").
//
// Why f+1 and why to every replica: at most f replicas are Byzantine, so f+1
// matching signed replies include at least one honest replica, whose answer is
// the committed one (DiemBFT v4 §2, the client's view). Sending each request to
// all replicas means a faulty leader cannot hold a request back: the next
// honest leader has it in its mempool.
//
// The network is behind the small Transport interface and incoming messages
// enter through Deliver, so the acceptance logic is tested without libp2p;
// NewP2P binds both to a p2p.Node.
package client

import (
	"container/heap"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/node/kv"
	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

var log = logging.Logger("client")

// Defaults for the zero values of Config.
const (
	DefaultTimeout = 3 * time.Second
	// MaxBackoffShift caps the doubling of the retransmission timeout at
	// Timeout * 2^MaxBackoffShift, so that a long outage does not leave a
	// request waiting hours for its next retransmission once the committee is
	// back.
	MaxBackoffShift = 6
	// replyQueue buffers verified replies between the stream goroutines that
	// verify them and the one goroutine that counts them.
	replyQueue = 1024
)

// ErrBadRoster is wrapped by every error about an unusable roster.
var ErrBadRoster = errors.New("client: bad roster")

// Replica is one committee member as a client sees it: its id (the index of
// its consensus key in the committee) and how to reach it.
type Replica struct {
	ID   types.ReplicaID
	Peer peer.AddrInfo
}

// Roster is what a client needs from Olympus's signed roster: the committee
// (chain id, f and the replicas' consensus keys, which verify replies) and
// each replica's libp2p identity and addresses. Replicas[i].ID must be i.
type Roster struct {
	Committee *types.Committee
	Replicas  []Replica
}

func (r *Roster) validate() error {
	if r.Committee == nil {
		return fmt.Errorf("%w: no committee", ErrBadRoster)
	}
	n := r.Committee.N()
	if n == 0 || len(r.Replicas) != n {
		return fmt.Errorf("%w: %d replicas for %d consensus keys", ErrBadRoster, len(r.Replicas), n)
	}
	if r.Committee.F < 0 || r.Committee.F+1 > n {
		return fmt.Errorf("%w: f = %d with %d replicas", ErrBadRoster, r.Committee.F, n)
	}
	for i, rep := range r.Replicas {
		if int(rep.ID) != i {
			return fmt.Errorf("%w: replica %d listed at position %d", ErrBadRoster, rep.ID, i)
		}
		if len(r.Committee.Keys[i]) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: replica %d has a consensus key of %d bytes", ErrBadRoster, i, len(r.Committee.Keys[i]))
		}
	}
	return nil
}

// Transport sends an encoded message to a replica without blocking. Send may
// drop the message: the client retransmits what is not answered.
type Transport interface {
	Send(to peer.ID, data []byte)
}

// Config configures a Client.
type Config struct {
	// Key signs requests; its public key is the client's identity. Nil
	// generates a fresh key.
	Key ed25519.PrivateKey
	// Concurrency is the number of operations in flight (default 1). The
	// sequence numbers in flight also span less than types.ReplyWindow: a
	// request waiting long for its answer holds back new ones, so that a
	// retransmission always finds its result in the replicas' reply window.
	Concurrency int
	// Batch is the most operations put under one signature in one request
	// (default 1, at most types.MaxOpsPerRequest). When several slots of
	// the Concurrency window are free at once (at the start, and when a
	// batch is accepted) the next operations go out as one request, which
	// is signed once, verified once by each replica and answered with one
	// signed reply per replica.
	Batch int
	// Timeout is the first retransmission timeout (default DefaultTimeout);
	// it doubles on every retransmission of a request, up to
	// Timeout * 2^MaxBackoffShift.
	Timeout time.Duration
	// OnAccept, if set, is called for each accepted result, in acceptance
	// order, on Run's goroutine. It should be quick (write a line, update a
	// progress bar).
	OnAccept func(Result)
}

// Result is one accepted request.
type Result struct {
	Seq    uint64
	Op     kv.Op
	Result string
	// Height is the 1-based line of the request in the replicas' ledgers.
	Height    uint64
	Submitted time.Time
	// Latency is from the first transmission to acceptance (f+1 matching
	// replies).
	Latency time.Duration
	// Sends counts transmissions to the committee (1 + retransmissions).
	Sends int
}

// Stats counts what the client saw. Bad replies (malformed, wrong client,
// invalid signature) are counted and ignored: they cannot change a result.
type Stats struct {
	Sent            uint64 // requests transmitted to the committee (each to every replica)
	Retransmissions uint64 // of those, transmissions after a timeout
	Replies         uint64 // replies with a valid signature, for this client
	Malformed       uint64 // replies that did not decode
	WrongClient     uint64 // replies addressed to another client
	BadSignature    uint64 // replies whose signature does not verify with the named replica's key
	Stale           uint64 // replies for a request no longer in flight (late or duplicate; their signature is not checked)
	Conflicting     uint64 // a replica's second, different answer for the same request
	UnknownPeer     uint64 // ledger chunks from a peer outside the roster
}

type counters struct {
	sent, retransmissions, replies       atomic.Uint64
	malformed, wrongClient, badSignature atomic.Uint64
	stale, conflicting, unknownPeer      atomic.Uint64
}

// Summary is the outcome of Run.
type Summary struct {
	Submitted int // requests transmitted at least once
	Committed int // requests accepted
	Total     int // requests in the workload
	Duration  time.Duration
	// Latencies of the accepted requests, in acceptance order.
	Latencies []time.Duration
	Stats     Stats
}

// Throughput is committed requests per second of Duration.
func (s *Summary) Throughput() float64 {
	if s.Duration <= 0 {
		return 0
	}
	return float64(s.Committed) / s.Duration.Seconds()
}

// Percentile returns the p-th percentile (0 < p <= 100) of the latencies by
// the nearest-rank method, or 0 when there are none.
func (s *Summary) Percentile(p float64) time.Duration {
	return Percentile(s.Latencies, p)
}

// Percentile returns the p-th percentile (0 < p <= 100) of xs by the
// nearest-rank method (the smallest value with at least p% of the values at
// or below it), or the zero value when xs is empty. xs is not modified.
func Percentile[T int64 | float64 | time.Duration](xs []T, p float64) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(float64(len(s)) * p / 100))
	return s[min(max(rank, 1), len(s))-1]
}

// Client runs one workload against a committee. Deliver may be called from
// any goroutine; Run is called once.
type Client struct {
	roster  Roster
	chainID string
	tr      Transport
	cfg     Config
	key     ed25519.PrivateKey
	pub     ed25519.PublicKey

	replies chan *types.ClientReply
	stopped chan struct{} // closed when Run returns: Deliver stops queueing
	// live holds the sequence numbers in flight (Run adds and removes
	// them), so that Deliver skips checking the signatures of replies that
	// can no longer matter: the n-f-1 replies that arrive after a request
	// was accepted would otherwise cost as much as the ones that decided it.
	live sync.Map
	ran  atomic.Bool

	peers  map[peer.ID]types.ReplicaID // who is who, for unsigned ledger chunks
	chunks chan chunkFrom              // for FetchLedger

	stats counters
}

// New returns a client for roster that sends through tr. Incoming messages
// must be passed to Deliver.
func New(roster Roster, tr Transport, cfg Config) (*Client, error) {
	if err := roster.validate(); err != nil {
		return nil, err
	}
	if tr == nil {
		return nil, errors.New("client: nil transport")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	cfg.Batch = min(max(cfg.Batch, 1), types.MaxOpsPerRequest)
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	key := cfg.Key
	if key == nil {
		var err error
		if _, key, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return nil, fmt.Errorf("client: generate key: %w", err)
		}
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("client: signing key of %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	peers := make(map[peer.ID]types.ReplicaID, len(roster.Replicas))
	for _, r := range roster.Replicas {
		peers[r.Peer.ID] = r.ID
	}
	return &Client{
		peers:   peers,
		chunks:  make(chan chunkFrom, 4*len(roster.Replicas)),
		roster:  roster,
		chainID: roster.Committee.ChainID,
		tr:      tr,
		cfg:     cfg,
		key:     key,
		pub:     key.Public().(ed25519.PublicKey),
		replies: make(chan *types.ClientReply, replyQueue),
		stopped: make(chan struct{}),
	}, nil
}

// PublicKey is the client's identity: the Client field of its requests.
func (c *Client) PublicKey() ed25519.PublicKey { return c.pub }

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	s := &c.stats
	return Stats{
		Sent:            s.sent.Load(),
		Retransmissions: s.retransmissions.Load(),
		Replies:         s.replies.Load(),
		Malformed:       s.malformed.Load(),
		WrongClient:     s.wrongClient.Load(),
		BadSignature:    s.badSignature.Load(),
		Stale:           s.stale.Load(),
		Conflicting:     s.conflicting.Load(),
		UnknownPeer:     s.unknownPeer.Load(),
	}
}

// Deliver hands the client a message received on the client protocol. It
// decodes it and checks the replica's signature on the caller's goroutine (so
// replies from different replicas are verified in parallel), then queues it
// for Run. Anything that fails a check is counted and dropped. It blocks while
// Run's queue is full and returns at once after Run has returned. Ledger
// chunks go to FetchLedger.
func (c *Client) Deliver(from peer.ID, data []byte) {
	if code, _ := wire.Code(data); code == CodeLedgerChunk {
		c.deliverChunk(from, data)
		return
	}
	r, err := wire.DecodeClientReply(data)
	if err != nil {
		c.stats.malformed.Add(1)
		log.Debugw("malformed reply", "peer", from, "err", err)
		return
	}
	if !ed25519.PublicKey(r.Client).Equal(c.pub) {
		c.stats.wrongClient.Add(1)
		log.Debugw("reply for another client", "peer", from, "replica", r.Replica)
		return
	}
	if _, ok := c.live.Load(r.Seq); !ok {
		c.stats.stale.Add(1) // late or duplicate: not worth a signature check
		return
	}
	// A reply counts for the replica whose key signed it, whoever relayed
	// it: a relayed genuine reply is still that replica's answer, and
	// nobody can sign for a replica without its key.
	if err := c.roster.Committee.VerifySig(r.Replica, r.SignBytes(c.chainID), r.Sig); err != nil {
		c.stats.badSignature.Add(1)
		log.Debugw("reply with a bad signature", "peer", from, "replica", r.Replica, "seq", r.Seq, "err", err)
		return
	}
	select {
	case c.replies <- r:
	case <-c.stopped:
	}
}

// answer is what a replica says about one request (the results and ledger
// heights of its operations, encoded as one comparable string); f+1 equal
// answers from distinct replicas make a result.
type answer string

func answerOf(r *types.ClientReply) answer {
	var b strings.Builder
	for i, res := range r.Results {
		fmt.Fprintf(&b, "%d:%d:%s;", r.Heights[i], len(res), res)
	}
	return answer(b.String())
}

type pending struct {
	seq       uint64 // of ops[0]
	ops       []kv.Op
	data      []byte // the encoded, signed request
	submitted time.Time
	timeout   time.Duration
	deadline  time.Time
	sends     int
	votes     map[types.ReplicaID]answer
	tally     map[answer]int
}

// Run submits ops (operation i has sequence number i+1) and returns when
// every one is accepted, or when ctx ends (then with ctx's error and the
// partial summary). It keeps Config.Concurrency operations in flight, in
// requests of up to Config.Batch operations and types.MaxRequestBytes, and
// retransmits each request to every replica after its timeout, doubling the
// timeout each time. It sends nothing if an operation is over
// types.MaxOpBytes (CheckOps: an error wrapping types.ErrOpTooLarge).
func (c *Client) Run(ctx context.Context, ops []kv.Op) (Summary, error) {
	if !c.ran.CompareAndSwap(false, true) {
		return Summary{}, errors.New("client: Run called twice")
	}
	defer close(c.stopped)

	if err := CheckOps(ops); err != nil {
		return Summary{Total: len(ops)}, err
	}
	start := time.Now()
	sum := Summary{Total: len(ops)}
	quorum := c.roster.Committee.F + 1
	maxTimeout := c.cfg.Timeout << MaxBackoffShift
	inflight := make(map[uint64]*pending, c.cfg.Concurrency)
	inflightOps := 0
	var order []uint64 // seqs of the requests submitted, oldest first; a prefix may be accepted
	var deadlines deadlineHeap
	next := 0 // index into ops of the next operation to submit

	finish := func(err error) (Summary, error) {
		sum.Duration = time.Since(start)
		sum.Stats = c.Stats()
		return sum, err
	}
	// submit sends the next operations, up to n of them, as one request: as
	// many as keep its encoding within types.MaxRequestBytes (at least one:
	// Run checked each against types.MaxOpBytes), since replicas refuse a
	// larger request.
	submit := func(n int) error {
		req := &types.Request{Client: c.pub, Seq: uint64(next + 1), Ops: make([]string, 0, n)}
		size := types.MaxRequestFrameBytes
		for _, op := range ops[next : next+n] {
			text := op.String()
			if size += types.OpEncodedSize(text); size > types.MaxRequestBytes && len(req.Ops) > 0 {
				break
			}
			req.Ops = append(req.Ops, text)
		}
		n = len(req.Ops)
		batch := ops[next : next+n]
		req.Sig = ed25519.Sign(c.key, req.SignBytes(c.chainID))
		data, err := wire.Encode(req)
		if err != nil {
			return fmt.Errorf("request %d (%s): %w", req.Seq, req.Ops[0], err)
		}
		now := time.Now()
		p := &pending{
			seq: req.Seq, ops: batch, data: data, submitted: now,
			timeout: c.cfg.Timeout, deadline: now.Add(c.cfg.Timeout),
			votes: make(map[types.ReplicaID]answer, c.roster.Committee.N()),
			tally: make(map[answer]int, 1),
		}
		inflight[p.seq] = p
		order = append(order, p.seq)
		inflightOps += n
		c.live.Store(p.seq, struct{}{})
		next += n
		sum.Submitted += n
		heap.Push(&deadlines, deadlineEntry{at: p.deadline, seq: p.seq, sends: 1})
		c.broadcast(p)
		return nil
	}
	// window is how many operations may be submitted without the seqs in
	// flight spanning types.ReplyWindow or more: the replicas keep the
	// results of the ReplyWindow seqs below a client's highest executed
	// one (node/executor.go), and no longer answer a retransmission older
	// than that.
	window := func() int {
		i := 0
		for i < len(order) && inflight[order[i]] == nil {
			i++
		}
		order = order[i:]
		oldest := uint64(next + 1)
		if len(order) > 0 {
			oldest = order[0]
		}
		return int(oldest + types.ReplyWindow - 1 - uint64(next))
	}
	fill := func() error {
		for inflightOps < c.cfg.Concurrency && next < len(ops) {
			n := min(c.cfg.Batch, c.cfg.Concurrency-inflightOps, len(ops)-next, window())
			if n <= 0 {
				break
			}
			if err := submit(n); err != nil {
				return err
			}
		}
		return nil
	}
	if err := fill(); err != nil {
		return finish(err)
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for len(inflight) > 0 {
		// Skip heap entries of accepted requests and of earlier
		// transmissions; the top is then the next retransmission due.
		for deadlines.Len() > 0 {
			top := deadlines[0]
			if p := inflight[top.seq]; p != nil && p.sends == top.sends {
				break
			}
			heap.Pop(&deadlines)
		}
		if deadlines.Len() > 0 {
			timer.Reset(time.Until(deadlines[0].at))
		}

		select {
		case <-ctx.Done():
			return finish(ctx.Err())

		case r := <-c.replies:
			p := inflight[r.Seq]
			if p == nil {
				c.stats.stale.Add(1)
				continue
			}
			if len(r.Results) != len(p.ops) {
				c.stats.malformed.Add(1) // a faulty replica: honest ones answer every operation
				continue
			}
			c.stats.replies.Add(1)
			a := answerOf(r)
			if prev, seen := p.votes[r.Replica]; seen {
				// Only a replica's first answer counts, so one replica
				// cannot vote twice; a different second answer is a
				// sign of a faulty replica.
				if prev != a {
					c.stats.conflicting.Add(1)
					log.Warnw("replica changed its answer", "replica", r.Replica, "seq", r.Seq, "first", prev, "now", a)
				}
				continue
			}
			p.votes[r.Replica] = a
			p.tally[a]++
			if p.tally[a] < quorum {
				continue
			}
			delete(inflight, p.seq)
			inflightOps -= len(p.ops)
			c.live.Delete(p.seq)
			latency := time.Since(p.submitted)
			for i, op := range p.ops {
				res := Result{
					Seq: p.seq + uint64(i), Op: op, Result: r.Results[i], Height: r.Heights[i],
					Submitted: p.submitted, Latency: latency, Sends: p.sends,
				}
				sum.Committed++
				sum.Latencies = append(sum.Latencies, res.Latency)
				if c.cfg.OnAccept != nil {
					c.cfg.OnAccept(res)
				}
			}
			if err := fill(); err != nil {
				return finish(err)
			}

		case <-timer.C:
			now := time.Now()
			for deadlines.Len() > 0 && !deadlines[0].at.After(now) {
				e := heap.Pop(&deadlines).(deadlineEntry)
				p := inflight[e.seq]
				if p == nil || p.sends != e.sends {
					continue
				}
				p.timeout = min(2*p.timeout, maxTimeout)
				p.deadline = now.Add(p.timeout)
				c.stats.retransmissions.Add(1)
				log.Debugw("retransmit", "seq", p.seq, "sends", p.sends+1, "next_timeout", p.timeout)
				c.broadcast(p)
				heap.Push(&deadlines, deadlineEntry{at: p.deadline, seq: p.seq, sends: p.sends})
			}
		}
	}
	return finish(nil)
}

// CheckOps checks that every operation fits in types.MaxOpBytes as a
// client sends it (kv.Op.String), since replicas refuse a request holding a
// larger one. The error wraps types.ErrOpTooLarge and names the operation
// (its number from 1, and its first bytes).
func CheckOps(ops []kv.Op) error {
	for i, op := range ops {
		text := op.String()
		if err := types.CheckOp(text); err != nil {
			return fmt.Errorf("operation %d: %w", i+1, err)
		}
	}
	return nil
}

// broadcast sends p's request to every replica.
func (c *Client) broadcast(p *pending) {
	p.sends++
	c.stats.sent.Add(1)
	for _, r := range c.roster.Replicas {
		c.tr.Send(r.Peer.ID, p.data)
	}
}

// deadlineEntry is a request's retransmission deadline after its sends-th
// transmission. Entries are never removed when a request is accepted or
// retransmitted; stale ones are skipped when they reach the top.
type deadlineEntry struct {
	at    time.Time
	seq   uint64
	sends int
}

type deadlineHeap []deadlineEntry

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(deadlineEntry)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// Repeat returns the first n operations of ops cycled as often as needed
// (bin/client --count): n below len(ops) truncates, above it repeats.
func Repeat(ops []kv.Op, n int) []kv.Op {
	if n <= 0 || len(ops) == 0 {
		return nil
	}
	out := make([]kv.Op, n)
	for i := range out {
		out[i] = ops[i%len(ops)]
	}
	return out
}

// FromOlympus converts Olympus's signed roster (members in id order, checked
// by olympus.FetchRoster) into the client's view.
func FromOlympus(r *olympus.Roster) (Roster, error) {
	out := Roster{Committee: r.Committee()}
	for i := range r.Members {
		info, err := r.Members[i].AddrInfo()
		if err != nil {
			return Roster{}, fmt.Errorf("roster: %w", err)
		}
		out.Replicas = append(out.Replicas, Replica{ID: types.ReplicaID(i), Peer: info})
	}
	return out, nil
}
