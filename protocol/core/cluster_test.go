package core_test

import (
	"bytes"
	"container/heap"
	"crypto/ed25519"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/ledger"
	"github.com/diembft/diembft/protocol/pacemaker"
	"github.com/diembft/diembft/protocol/safety"
	"github.com/diembft/diembft/protocol/types"
)

// This file is a tiny synchronous driver for n cores: it carries out their
// actions in order, delivers messages in FIFO order with zero latency, and
// keeps a virtual clock for timers (fired in deadline order only when no
// message is in flight). It checks every message with the committee before
// delivering it, and that safety data is persisted before each vote and
// timeout leaves its replica.

const chainID = "core-test"

var pmConfig = pacemaker.Config{RoundTimeout: 400 * time.Millisecond, Backoff: 1.2, BackoffCap: 6}

type clusterOpts struct {
	n, f        int
	seed        int64
	mode        leader.Mode
	noCrypto    bool // fixed signatures and no verification
	maxRequests int
	maxOrphans  int // core.Config.MaxOrphans (0: the default)
}

// fixedSigner is the no-crypto signer: a constant 64-byte signature.
type fixedSigner struct{}

var fixedSig = bytes.Repeat([]byte{0x5a}, ed25519.SignatureSize)

func (fixedSigner) Sign([]byte) []byte { return fixedSig }

type envelope struct {
	from, to types.ReplicaID
	msg      any
}

type pendingTimer struct {
	at      time.Duration
	seq     uint64
	replica types.ReplicaID
	timer   core.Timer
}

type timerHeap []pendingTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(pendingTimer)) }
func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type cluster struct {
	tb    testing.TB
	opts  clusterOpts
	com   *types.Committee   // for the test's own checks
	coms  []*types.Committee // each replica's copy: its certificate cache is its own
	keys  []ed25519.PrivateKey
	cores []*core.Core
	leds  []*ledger.Memory

	queue    []envelope
	head     int
	now      time.Duration
	timers   timerHeap
	timerSeq uint64

	// drop decides whether an envelope is lost on delivery (nil: none).
	drop func(e envelope) bool
	// observe sees every action list a core returns (nil: none).
	observe func(id types.ReplicaID, actions []core.Action)

	committed  [][]core.Committed // per replica, in order
	persisted  []safety.State     // last PersistSafety per replica
	persists   int
	checkedOut int // votes and timeouts checked against persisted state
	delivered  int
	dropped    int

	clientKeys []ed25519.PrivateKey
	nextSeq    []uint64
}

func newCluster(tb testing.TB, o clusterOpts) *cluster {
	tb.Helper()
	if o.maxRequests == 0 {
		o.maxRequests = 10
	}
	rng := rand.New(rand.NewSource(o.seed))
	newKey := func() ed25519.PrivateKey {
		s := make([]byte, ed25519.SeedSize)
		rng.Read(s)
		return ed25519.NewKeyFromSeed(s)
	}
	c := &cluster{tb: tb, opts: o, com: &types.Committee{ChainID: chainID, F: o.f}}
	for range o.n {
		k := newKey()
		c.keys = append(c.keys, k)
		c.com.Keys = append(c.com.Keys, k.Public().(ed25519.PublicKey))
	}
	for range 3 {
		c.clientKeys = append(c.clientKeys, newKey())
		c.nextSeq = append(c.nextSeq, 1)
	}
	c.committed = make([][]core.Committed, o.n)
	c.persisted = make([]safety.State, o.n)
	for i := range o.n {
		var signer types.Signer = types.Ed25519Signer{Key: c.keys[i]}
		if o.noCrypto {
			signer = fixedSigner{}
		}
		led := ledger.NewMemory()
		c.leds = append(c.leds, led)
		com := &types.Committee{ChainID: chainID, F: o.f, Keys: c.com.Keys}
		c.coms = append(c.coms, com)
		c.cores = append(c.cores, core.New(core.Config{
			ID:               types.ReplicaID(i),
			Committee:        com,
			Signer:           signer,
			Pacemaker:        pmConfig,
			Election:         o.mode,
			WindowSize:       2 * o.f,
			ExcludeSize:      o.f,
			MaxRequests:      o.maxRequests,
			IdleProposeDelay: 50 * time.Millisecond,
			Ledger:           led,
			MaxOrphans:       o.maxOrphans,
		}))
	}
	for i, cr := range c.cores {
		c.handle(types.ReplicaID(i), cr.Start())
	}
	return c
}

func (c *cluster) fatalf(format string, args ...any) {
	c.tb.Helper()
	c.tb.Fatalf("seed %d: %s", c.opts.seed, fmt.Sprintf(format, args...))
}

// request makes the next signed request of client i.
func (c *cluster) request(i int) *types.Request {
	k := c.clientKeys[i]
	r := &types.Request{Client: k.Public().(ed25519.PublicKey), Seq: c.nextSeq[i], Ops: []string{fmt.Sprintf("put('k%d','%d')", i, c.nextSeq[i])}}
	c.nextSeq[i]++
	if !c.opts.noCrypto {
		r.Sig = ed25519.Sign(k, r.SignBytes(chainID))
	}
	return r
}

// submit gives r to every core, as a client broadcasting its request would.
func (c *cluster) submit(r *types.Request) {
	for i, cr := range c.cores {
		acts, err := cr.OnRequest(r)
		if err != nil {
			c.fatalf("replica %d refused request %d: %v", i, r.Seq, err)
		}
		c.handle(types.ReplicaID(i), acts)
	}
}

func (c *cluster) send(from, to types.ReplicaID, msg any) {
	c.queue = append(c.queue, envelope{from: from, to: to, msg: msg})
}

func (c *cluster) broadcast(from types.ReplicaID, msg any) {
	for j := range c.cores {
		if types.ReplicaID(j) != from {
			c.send(from, types.ReplicaID(j), msg)
		}
	}
}

// handle carries out one core's actions in order.
func (c *cluster) handle(id types.ReplicaID, actions []core.Action) {
	c.tb.Helper()
	if c.observe != nil {
		c.observe(id, actions)
	}
	for _, a := range actions {
		switch a := a.(type) {
		case core.PersistSafety:
			c.persisted[id] = a.State
			c.persists++
		case core.BroadcastProposal:
			if a.Proposal.Block.Author != id {
				c.fatalf("replica %d broadcast a proposal by %d", id, a.Proposal.Block.Author)
			}
			c.broadcast(id, a.Proposal)
		case core.BroadcastTimeout:
			lt := c.persisted[id].LastTimeout
			if lt == nil || lt.Round != a.Timeout.Timeout.Round || !bytes.Equal(lt.Signature, a.Timeout.Timeout.Signature) || c.persisted[id].HighestVoteRound < lt.Round {
				c.fatalf("replica %d broadcast a timeout for round %d before persisting it", id, a.Timeout.Timeout.Round)
			}
			c.checkedOut++
			c.broadcast(id, a.Timeout)
		case core.SendVote:
			lv := c.persisted[id].LastVote
			if lv == nil || lv.VoteInfo != a.Vote.Vote.VoteInfo || !bytes.Equal(lv.Signature, a.Vote.Vote.Signature) || c.persisted[id].HighestVoteRound < lv.VoteInfo.Round {
				c.fatalf("replica %d sent a vote for round %d before persisting it", id, a.Vote.Vote.VoteInfo.Round)
			}
			if a.To == id {
				c.fatalf("replica %d sent a vote to itself", id)
			}
			c.checkedOut++
			c.send(id, a.To, a.Vote)
		case core.SendBlockRequest:
			c.send(id, a.To, a.Request)
		case core.SendBlockResponse:
			c.send(id, a.To, a.Response)
		case core.SetTimer:
			c.timerSeq++
			heap.Push(&c.timers, pendingTimer{at: c.now + a.After, seq: c.timerSeq, replica: id, timer: a.Timer})
		case core.Committed:
			c.committed[id] = append(c.committed[id], a)
		case core.NewRound:
		default:
			c.fatalf("unknown action %T", a)
		}
	}
}

// deliver verifies a message and hands it to its receiver.
func (c *cluster) deliver(e envelope) {
	c.tb.Helper()
	cr := c.cores[e.to]
	com := c.coms[e.to]
	verify := !c.opts.noCrypto
	var err error
	var acts []core.Action
	switch m := e.msg.(type) {
	case *types.Proposal:
		if verify {
			err = com.VerifyProposal(m, c.opts.maxRequests)
		}
		acts = cr.OnProposal(m)
	case *types.VoteMsg:
		if verify {
			err = com.VerifyVote(m)
		}
		acts = cr.OnVote(m)
	case *types.TimeoutMsg:
		if verify {
			err = com.VerifyTimeout(m)
		}
		acts = cr.OnTimeout(m)
	case *types.BlockRequest:
		acts = cr.OnBlockRequest(e.from, m)
	case *types.BlockResponse:
		if verify {
			err = com.VerifyBlockResponse(m)
		}
		acts = cr.OnBlockResponse(e.from, m)
	default:
		c.fatalf("unknown message %T", m)
	}
	if err != nil {
		c.fatalf("%T from %d to %d does not verify: %v", e.msg, e.from, e.to, err)
	}
	c.delivered++
	c.handle(e.to, acts)
}

// deliverAll delivers queued messages in FIFO order until none is left.
func (c *cluster) deliverAll() {
	c.tb.Helper()
	for c.head < len(c.queue) {
		e := c.queue[c.head]
		c.queue[c.head] = envelope{}
		c.head++
		if c.head > 4096 && c.head*2 > len(c.queue) {
			c.queue = append(c.queue[:0], c.queue[c.head:]...)
			c.head = 0
		}
		if c.drop != nil && c.drop(e) {
			c.dropped++
			continue
		}
		c.deliver(e)
	}
}

// fireTimer advances the clock to the earliest timer and fires it.
func (c *cluster) fireTimer() bool {
	if len(c.timers) == 0 {
		return false
	}
	t := heap.Pop(&c.timers).(pendingTimer)
	c.now = max(c.now, t.at)
	c.handle(t.replica, c.cores[t.replica].OnTimer(t.timer))
	return true
}

// run delivers messages and fires timers until done holds or the virtual
// clock passes limit; it reports whether done held.
func (c *cluster) run(done func() bool, limit time.Duration) bool {
	c.tb.Helper()
	for {
		c.deliverAll()
		if done() {
			return true
		}
		if c.now > limit || !c.fireTimer() {
			return done()
		}
	}
}

// fireRoundTimers fires the round timer of each core's current round now.
func (c *cluster) fireRoundTimers() {
	for i, cr := range c.cores {
		c.handle(types.ReplicaID(i), cr.OnTimer(core.Timer{Kind: core.RoundTimer, ID: uint64(cr.CurrentRound())}))
	}
}

func (c *cluster) height(i int) int { return len(c.committed[i]) }

func (c *cluster) minHeight() int {
	h := c.height(0)
	for i := range c.cores {
		h = min(h, c.height(i))
	}
	return h
}

// committedRequests counts each request key in replica i's committed blocks.
func (c *cluster) committedRequests(i int) map[types.RequestKey]int {
	out := map[types.RequestKey]int{}
	for _, cm := range c.committed[i] {
		for j := range cm.Block.Payload {
			out[cm.Block.Payload[j].Key()]++
		}
	}
	return out
}

// allCommitted reports whether every replica committed every key in want.
func (c *cluster) allCommitted(want []types.RequestKey) func() bool {
	return func() bool {
		for i := range c.cores {
			got := c.committedRequests(i)
			for _, k := range want {
				if got[k] == 0 {
					return false
				}
			}
		}
		return true
	}
}

// checkAgreement checks that all replicas committed the same blocks in the
// same order (a prefix of the longest), that the Committed actions match the
// ledgers, that no request committed twice, and that each committing QC
// follows the 2-chain rule.
func (c *cluster) checkAgreement() {
	c.tb.Helper()
	longest := 0
	for i := range c.cores {
		if c.height(i) > c.height(longest) {
			longest = i
		}
	}
	ref := c.committed[longest]
	for i := range c.cores {
		chain := c.leds[i].Chain()
		if len(chain)-1 != len(c.committed[i]) {
			c.fatalf("replica %d: ledger height %d, %d Committed actions", i, len(chain)-1, len(c.committed[i]))
		}
		prev := chain[0]
		for h, cm := range c.committed[i] {
			if cm.Block.ID != ref[h].Block.ID {
				c.fatalf("replicas %d and %d committed different blocks at height %d", i, longest, h+1)
			}
			if cm.Height != uint64(h+1) {
				c.fatalf("replica %d: Committed action %d reports height %d", i, h+1, cm.Height)
			}
			if chain[h+1] != cm.Block {
				c.fatalf("replica %d: Committed action %d is not the ledger's block", i, h+1)
			}
			if cm.Block.ParentID() != prev.ID || cm.Block.Round <= prev.Round {
				c.fatalf("replica %d: committed block at height %d does not extend the previous one", i, h+1)
			}
			if q := cm.QC; q != nil {
				if q.VoteInfo.ParentID != cm.Block.ID || q.VoteInfo.ParentRound != cm.Block.Round || q.VoteInfo.ParentRound+1 != q.VoteInfo.Round || !q.LedgerCommitInfo.Commits() {
					c.fatalf("replica %d: block of round %d committed by QC of round %d (parent round %d): not a 2-chain", i, cm.Block.Round, q.VoteInfo.Round, q.VoteInfo.ParentRound)
				}
				if st, _ := c.leds[i].PendingState(cm.Block.ID); st != q.LedgerCommitInfo.CommitStateID {
					c.fatalf("replica %d: commit state of round %d differs from the executed state", i, cm.Block.Round)
				}
			}
			prev = cm.Block
		}
		if n := len(c.committed[i]); n > 0 && c.committed[i][n-1].QC == nil {
			c.fatalf("replica %d: last committed block has no committing QC", i)
		}
		for k, n := range c.committedRequests(i) {
			if n > 1 {
				c.fatalf("replica %d committed request (%x, %d) %d times", i, k.Client[:4], k.Seq, n)
			}
		}
	}
}
