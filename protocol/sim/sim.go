// Package sim is a deterministic discrete-event simulator that drives n
// DiemBFT cores (the same code the networked replica runs) over a virtual
// clock and a seeded faulty network: latency, loss, duplication, reordering,
// partitions that heal, and crash/restart of up to f replicas. After every
// step it checks the paper's safety properties, and at the end liveness after
// the global stabilisation time (GST). One seed gives one exact run: every
// random choice comes from a single seeded generator, and the run's trace hash
// lets a test check that two runs of a seed are identical.
package sim

import (
	"container/heap"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"math/rand/v2"
	"time"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/ledger"
	"github.com/diembft/diembft/protocol/pacemaker"
	"github.com/diembft/diembft/protocol/safety"
	"github.com/diembft/diembft/protocol/types"
)

// Config describes one simulated run.
type Config struct {
	N, F int
	Seed uint64

	Delta            time.Duration // bound on message delay after GST (the paper's Δ)
	RoundTimeout     time.Duration
	Backoff          float64
	BackoffCap       int
	IdleProposeDelay time.Duration
	Election         leader.Mode
	MaxRequests      int

	Clients, RequestsPerClient int
	// RetransmitEvery: a client re-sends a request not yet committed everywhere.
	RetransmitEvery time.Duration

	// GST is when the network becomes synchronous: no loss, no partitions,
	// latency at most Delta, crashed replicas that restart are back.
	GST time.Duration
	// Before GST:
	Loss, Duplicate float64
	MaxLatency      time.Duration // latency uniform in [MinLatency, MaxLatency]
	MinLatency      time.Duration
	Partitions      []Partition
	Crashes         []Crash
	// After GST the run continues until every honest replica that is up has
	// committed every request and committed again after GST, or Horizon passes.
	Horizon time.Duration

	// Verify runs the signature checks of the networked replica on every message.
	Verify bool
	// Control selects broken safety rules on every replica (negative controls).
	Control safety.Control
	// NoPersist makes restarted replicas forget their safety data (negative control).
	NoPersist bool
	// FixedLeaders overrides the election for some rounds.
	FixedLeaders map[types.Round]types.ReplicaID
	// Twins lists replicas that run as two nodes sharing one key (Twins);
	// node N+k is the twin of Twins[k].
	Twins []types.ReplicaID
	// Drop, if set, is asked about every message; true drops it. It sees node
	// indexes (twins have their own) and the message (for round-based partitions).
	Drop func(now time.Duration, from, to int, msg any) bool
	// Byzantine, if set, may rewrite the actions of a node before they run.
	Byzantine func(s *Sim, node int, actions []core.Action) []core.Action
	// Lagging adds to every message reaching node i a delay uniform in
	// [0, Lagging[i]), so that what reaches it comes late and out of order:
	// a CPU-starved replica (five processes on two cores in the bench),
	// whose pubsub validates messages concurrently and hands them to its
	// loop in whatever order the validations end. Such a replica jumps
	// rounds and commits late: the cases of leader.Election.Retry and
	// Decided, which uniform latency hardly reaches. After GST a message
	// still takes at most Delta.
	Lagging map[int]time.Duration
	// Trace, if set, receives every event of the run as a line (debugging).
	Trace func(line string)
	// ByzantineNodes are excluded from the honest checks.
	ByzantineNodes []int
	// StopAtRound > 0 switches to round-bounded runs (Twins): the run ends
	// with success once every honest replica committed a block of a round
	// after HealAfterRound, and with failure once an honest replica passes
	// StopAtRound without that. The request and GST checks are off.
	StopAtRound    types.Round
	HealAfterRound types.Round
}

// Partition cuts Group off from the other replicas during [From, To).
type Partition struct {
	Group    []int
	From, To time.Duration
}

// Crash stops node Node at At; it restarts from its persisted state at
// RestartAt, or never if RestartAt is 0.
type Crash struct {
	Node      int
	At        time.Duration
	RestartAt time.Duration
}

// Result summarises a run.
type Result struct {
	Seed       uint64
	Violations []string
	TraceHash  string
	Heights    []uint64 // committed blocks per node
	Requests   []int    // committed requests per node
	Refused    []uint64 // votes the safety rules refused, per node (current incarnation)
	Rounds     types.Round
	RoundsByTC int
	Messages   uint64
	// CommittedAfterHeal: every honest replica committed a block of a round
	// after HealAfterRound (round-bounded runs).
	CommittedAfterHeal bool
	Time               time.Duration
	Steps              uint64
}

// OK reports whether the run broke no invariant.
func (r *Result) OK() bool { return len(r.Violations) == 0 }

// Sim is one simulation.
type Sim struct {
	cfg   Config
	rng   *rand.Rand
	now   time.Duration
	queue eventQueue
	seq   uint64
	com   *types.Committee
	keys  []ed25519.PrivateKey
	nodes []*node
	trace hash.Hash

	requests   []*types.Request
	committed  map[types.RequestKey]int // request -> honest up nodes that committed it (for retransmission)
	byHeight   map[uint64]types.Hash    // first honest commit at each height
	votes      map[voteKey]types.Hash   // signed votes per (replica, round)
	proposals  map[voteKey]types.Hash   // proposed blocks per (replica, round)
	violations []string
	res        Result
	p4         []p4Check
}

// p4Check is the paper's property P4: after GST, a block proposed by an
// honest leader whose two successors are honest commits at every honest
// replica within 7Δ.
type p4Check struct {
	id       types.Hash
	round    types.Round
	deadline time.Duration
}

// P4Settle is how long after GST the simulator starts checking P4, so that
// messages and fetches started before GST have played out.
const P4Settle = time.Second

type voteKey struct {
	id    types.ReplicaID
	round types.Round
}

type node struct {
	idx       int
	id        types.ReplicaID
	honest    bool // not a twin and not Byzantine: safety and liveness are checked on it
	core      *core.Core
	ledger    *ledger.Memory
	up        bool
	everDown  bool
	epoch     int // bumped on crash so that the dead incarnation's timers are void
	persisted safety.State
	// head is what the block store held at the crash: uncommitted blocks
	// and the high certificates (nil before the first crash).
	head       *core.Config
	reqs       int // distinct committed requests
	seen       map[types.RequestKey]bool
	lastCommit time.Duration // virtual time of the last commit
}

// New builds a simulation; Run executes it.
func New(cfg Config) *Sim {
	s := &Sim{
		cfg:       cfg,
		rng:       rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15)),
		trace:     sha256.New(),
		committed: map[types.RequestKey]int{},
		byHeight:  map[uint64]types.Hash{},
		votes:     map[voteKey]types.Hash{},
		proposals: map[voteKey]types.Hash{},
	}
	s.res.Seed = cfg.Seed
	s.com = &types.Committee{ChainID: "sim", F: cfg.F}
	for i := 0; i < cfg.N; i++ {
		seed := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("sim-key"), uint64(i)))
		k := ed25519.NewKeyFromSeed(seed[:])
		s.keys = append(s.keys, k)
		s.com.Keys = append(s.com.Keys, k.Public().(ed25519.PublicKey))
	}
	twin := map[types.ReplicaID]bool{}
	for _, t := range cfg.Twins {
		twin[t] = true
	}
	for i := 0; i < cfg.N; i++ {
		s.nodes = append(s.nodes, &node{idx: i, id: types.ReplicaID(i), honest: !twin[types.ReplicaID(i)], seen: map[types.RequestKey]bool{}})
	}
	for _, b := range cfg.ByzantineNodes {
		s.nodes[b].honest = false
	}
	for k, t := range cfg.Twins {
		s.nodes = append(s.nodes, &node{idx: cfg.N + k, id: t, seen: map[types.RequestKey]bool{}})
	}
	return s
}

// Committee is the simulated committee.
func (s *Sim) Committee() *types.Committee { return s.com }

// Now is the virtual time.
func (s *Sim) Now() time.Duration { return s.now }

// Rand is the run's seeded generator (for Byzantine hooks).
func (s *Sim) Rand() *rand.Rand { return s.rng }

// Signer returns replica id's signer (for Byzantine hooks that equivocate).
func (s *Sim) Signer(id types.ReplicaID) types.Signer { return types.Ed25519Signer{Key: s.keys[id]} }

func (s *Sim) signer(id types.ReplicaID) types.Signer {
	if s.cfg.Verify {
		return types.Ed25519Signer{Key: s.keys[id]}
	}
	return fakeSigner{}
}

// fakeSigner skips signing cost when Verify is off.
type fakeSigner struct{}

func (fakeSigner) Sign([]byte) []byte { return make([]byte, ed25519.SignatureSize) }

func (s *Sim) newCore(n *node) {
	led := ledger.NewMemory()
	if n.ledger != nil { // restart: committed blocks are durable, speculative state is not
		for _, b := range n.ledger.Chain()[1:] {
			led.Speculate(b)
			led.Commit(b, nil)
		}
	}
	n.ledger = led
	st := n.persisted
	if s.cfg.NoPersist {
		st = safety.State{}
	}
	cfg := core.Config{
		ID:               n.id,
		Committee:        s.com,
		Signer:           s.signer(n.id),
		Pacemaker:        pacemaker.Config{RoundTimeout: s.cfg.RoundTimeout, Backoff: s.cfg.Backoff, BackoffCap: s.cfg.BackoffCap},
		Election:         s.cfg.Election,
		WindowSize:       5,
		ExcludeSize:      s.cfg.F,
		MaxRequests:      s.cfg.MaxRequests,
		IdleProposeDelay: s.cfg.IdleProposeDelay,
		Safety:           st,
		Ledger:           led,
		Control:          s.cfg.Control,
		FixedLeaders:     s.cfg.FixedLeaders,
	}
	if n.head != nil {
		cfg.HighQC, cfg.HighCommitQC, cfg.Pending = n.head.HighQC, n.head.HighCommitQC, n.head.Pending
	}
	n.core = core.New(cfg)
	n.up = true
}

// event kinds
const (
	evDeliver = iota
	evTimer
	evCrash
	evRestart
	evClient
)

type event struct {
	at    time.Duration
	seq   uint64
	kind  int
	node  int
	from  int
	epoch int
	msg   any
	timer core.Timer
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

func (s *Sim) schedule(e *event) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.queue, e)
}

func (s *Sim) violate(format string, args ...any) {
	msg := fmt.Sprintf("t=%v: ", s.now) + fmt.Sprintf(format, args...)
	s.violations = append(s.violations, msg)
}

// Run executes the simulation and returns its result.
func (s *Sim) Run() *Result {
	s.makeRequests()
	for _, n := range s.nodes {
		s.newCore(n)
	}
	for _, c := range s.cfg.Crashes {
		s.CrashAt(c.Node, c.At, c.RestartAt)
	}
	for _, n := range s.nodes {
		s.apply(n, n.core.Start())
	}
	for s.queue.Len() > 0 && len(s.violations) == 0 {
		e := heap.Pop(&s.queue).(*event)
		if e.at > s.cfg.Horizon {
			break
		}
		s.now = e.at
		s.checkP4()
		s.step(e)
		if s.cfg.StopAtRound > 0 {
			if s.healed() || s.maxHonestRound() > s.cfg.StopAtRound {
				break
			}
			continue
		}
		if s.done() {
			break
		}
	}
	if s.cfg.StopAtRound > 0 {
		s.res.CommittedAfterHeal = s.healed()
	} else {
		s.checkLiveness()
	}
	s.res.Violations = s.violations
	s.res.TraceHash = fmt.Sprintf("%x", s.trace.Sum(nil)[:8])
	s.res.Time = s.now
	for _, n := range s.nodes {
		s.res.Heights = append(s.res.Heights, n.ledger.Height())
		s.res.Requests = append(s.res.Requests, n.reqs)
		s.res.Refused = append(s.res.Refused, n.core.Stats.VotesRefused)
		s.res.Rounds = max(s.res.Rounds, n.core.CurrentRound())
	}
	return &s.res
}

func (s *Sim) record(kind string, node int, detail string) {
	fmt.Fprintf(s.trace, "%d|%s|%d|%s\n", s.now, kind, node, detail)
	if s.cfg.Trace != nil {
		s.cfg.Trace(fmt.Sprintf("%v %s node=%d %s", s.now, kind, node, detail))
	}
}

func (s *Sim) step(e *event) {
	s.res.Steps++
	n := s.nodes[e.node]
	switch e.kind {
	case evCrash:
		if n.up {
			s.record("crash", e.node, "")
			n.up, n.everDown = false, true
			n.epoch++
			n.head = &core.Config{HighQC: n.core.HighQC(), HighCommitQC: n.core.HighCommitQC(), Pending: n.core.PendingBlocks()}
		}
	case evRestart:
		if !n.up {
			s.record("restart", e.node, "")
			s.newCore(n)
			s.apply(n, n.core.Start())
		}
	case evTimer:
		if n.up && e.epoch == n.epoch {
			s.record("timer", e.node, fmt.Sprint(e.timer))
			s.apply(n, n.core.OnTimer(e.timer))
		}
	case evClient:
		s.clientSend(e.msg.(*types.Request))
	case evDeliver:
		if !n.up {
			return
		}
		s.record("recv", e.node, fmt.Sprintf("%d %s", e.from, describe(e.msg)))
		s.deliver(n, e.from, e.msg)
	}
}

func (s *Sim) deliver(n *node, from int, msg any) {
	var err error
	var acts []core.Action
	fromID := s.nodes[from].id
	switch m := msg.(type) {
	case *types.Proposal:
		if err = s.verify(func() error { return s.com.VerifyProposal(m, s.cfg.MaxRequests) }); err == nil {
			acts = n.core.OnProposal(m)
		}
	case *types.VoteMsg:
		if err = s.verify(func() error { return s.com.VerifyVote(m) }); err == nil {
			acts = n.core.OnVote(m)
		}
	case *types.TimeoutMsg:
		if err = s.verify(func() error { return s.com.VerifyTimeout(m) }); err == nil {
			acts = n.core.OnTimeout(m)
		}
	case *types.BlockRequest:
		acts = n.core.OnBlockRequest(fromID, m)
	case *types.BlockResponse:
		if err = s.verify(func() error { return s.com.VerifyBlockResponse(m) }); err == nil {
			acts = n.core.OnBlockResponse(fromID, m)
		}
	case *types.Request:
		if err = s.verify(func() error { return s.com.VerifyRequest(m) }); err == nil {
			acts, _ = n.core.OnRequest(m) // duplicates are expected (retransmissions)
		}
	}
	if err != nil {
		if s.nodes[from].honest {
			s.violate("node %d rejected a message from honest node %d: %v", n.idx, from, err)
		}
		return
	}
	s.apply(n, acts)
}

func (s *Sim) verify(f func() error) error {
	if !s.cfg.Verify {
		return nil
	}
	return f()
}

// apply carries out a node's actions in order.
func (s *Sim) apply(n *node, acts []core.Action) {
	if s.cfg.Byzantine != nil {
		acts = s.cfg.Byzantine(s, n.idx, acts)
	}
	for _, a := range acts {
		switch a := a.(type) {
		case core.PersistSafety:
			n.persisted = a.State
			s.checkVote(n, a.State.LastVote)
		case core.BroadcastProposal:
			s.checkProposal(n, a.Proposal)
			s.watchP4(n, a.Proposal)
			s.broadcast(n, a.Proposal)
		case core.BroadcastTimeout:
			s.broadcast(n, a.Timeout)
		case core.SendVote:
			s.sendTo(n, a.To, a.Vote)
		case core.SendBlockRequest:
			s.sendTo(n, a.To, a.Request)
		case core.SendBlockResponse:
			s.sendTo(n, a.To, a.Response)
		case core.SetTimer:
			s.schedule(&event{at: s.now + a.After, kind: evTimer, node: n.idx, epoch: n.epoch, timer: a.Timer})
		case core.Committed:
			s.onCommit(n, a.Block, a.Height)
		case core.NewRound:
			if a.ByTC && n.idx == 0 {
				s.res.RoundsByTC++
			}
		}
	}
}

// checkProposal flags two different blocks proposed by one honest replica
// in one round (after a restart, say): its votes would be safe, but it
// would be equivocating.
func (s *Sim) checkProposal(n *node, p *types.Proposal) {
	s.checkOnce(n, s.proposals, p.Block.Round, p.Block.ID, "honest equivocation: replica %d proposed %s and %s in round %d")
}

// checkVote flags two different signed votes by one replica in one round: the
// safety rules plus persistence must make that impossible for an honest replica.
func (s *Sim) checkVote(n *node, v *types.Vote) {
	if v != nil {
		s.checkOnce(n, s.votes, v.VoteInfo.Round, v.VoteInfo.ID, "double vote: replica %d voted for %s and %s in round %d")
	}
}

// checkOnce records that honest replica n signed block id in round r (in
// seen) and flags a different one signed before in the same round, with
// format taking the replica, both blocks and the round.
func (s *Sim) checkOnce(n *node, seen map[voteKey]types.Hash, r types.Round, id types.Hash, format string) {
	if !n.honest {
		return
	}
	k := voteKey{n.id, r}
	if prev, ok := seen[k]; ok && prev != id {
		s.violate(format, n.id, prev, id, r)
		return
	}
	seen[k] = id
}

func (s *Sim) onCommit(n *node, b *types.Block, h uint64) {
	s.record("commit", n.idx, fmt.Sprintf("%d %s", h, b.ID))
	n.lastCommit = s.now
	// Each replica's committed sequence must extend its previous one.
	chain := n.ledger.Chain()
	if h < 1 || h >= uint64(len(chain)) || chain[h] != b || chain[h-1].ID != b.ParentID() {
		s.violate("replica %d: committed %s at height %d does not extend its ledger", n.idx, b.ID, h)
	}
	if !n.honest {
		return
	}
	if prev, ok := s.byHeight[h]; ok && prev != b.ID {
		s.violate("safety: conflicting commits at height %d: %s and %s (node %d)", h, prev, b.ID, n.idx)
	}
	s.byHeight[h] = b.ID
	for i := range b.Payload {
		k := b.Payload[i].Key()
		if n.seen[k] {
			continue // executed once: the node's state machine skips duplicates
		}
		n.seen[k] = true
		n.reqs++
		s.committed[k]++
	}
}

func (s *Sim) broadcast(n *node, msg any) {
	for _, m := range s.nodes {
		if m != n {
			s.send(n.idx, m.idx, msg)
		}
	}
}

func (s *Sim) sendTo(n *node, to types.ReplicaID, msg any) {
	for _, m := range s.nodes {
		if m.id == to && m != n {
			s.send(n.idx, m.idx, msg)
		}
	}
}

// send puts a message on the simulated network.
func (s *Sim) send(from, to int, msg any) {
	s.res.Messages++
	if s.cfg.Drop != nil && s.cfg.Drop(s.now, from, to, msg) {
		return
	}
	copies := 1
	if s.now < s.cfg.GST {
		if s.partitioned(from, to) || s.rng.Float64() < s.cfg.Loss {
			return
		}
		if s.rng.Float64() < s.cfg.Duplicate {
			copies = 2
		}
	}
	for range copies {
		d := s.latency() + s.lag(to)
		if s.now >= s.cfg.GST {
			d = min(d, s.cfg.Delta)
		}
		s.schedule(&event{at: s.now + d, kind: evDeliver, node: to, from: from, msg: msg})
	}
}

// lag is the extra delay of a message to node (Config.Lagging).
func (s *Sim) lag(node int) time.Duration {
	d := s.cfg.Lagging[node]
	if d <= 0 {
		return 0
	}
	return time.Duration(s.rng.Int64N(int64(d)))
}

func (s *Sim) latency() time.Duration {
	lo, hi := s.cfg.MinLatency, s.cfg.MaxLatency
	if s.now >= s.cfg.GST {
		hi = min(hi, s.cfg.Delta)
		lo = min(lo, hi)
	}
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
}

func (s *Sim) partitioned(a, b int) bool {
	for _, p := range s.cfg.Partitions {
		if s.now < p.From || s.now >= p.To {
			continue
		}
		in := func(x int) bool {
			for _, g := range p.Group {
				if g == x {
					return true
				}
			}
			return false
		}
		if in(a) != in(b) {
			return true
		}
	}
	return false
}

// makeRequests creates the clients' signed requests and schedules their first
// transmission at random times before GST.
func (s *Sim) makeRequests() {
	for c := 0; c < s.cfg.Clients; c++ {
		seed := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("sim-client"), uint64(c)))
		key := ed25519.NewKeyFromSeed(seed[:])
		pub := key.Public().(ed25519.PublicKey)
		for q := 1; q <= s.cfg.RequestsPerClient; q++ {
			r := &types.Request{Client: pub, Seq: uint64(q), Ops: []string{fmt.Sprintf("put('k%d','v%d')", c, q)}}
			if s.cfg.Verify {
				r.Sig = ed25519.Sign(key, r.SignBytes(s.com.ChainID))
			} else {
				r.Sig = make([]byte, ed25519.SignatureSize)
			}
			s.requests = append(s.requests, r)
			at := time.Duration(0)
			if s.cfg.GST > 0 {
				at = time.Duration(s.rng.Int64N(int64(s.cfg.GST)))
			}
			s.schedule(&event{at: at, kind: evClient, msg: r})
		}
	}
}

// clientSend sends a request to every replica and schedules a retransmission
// unless every honest replica has committed it.
func (s *Sim) clientSend(r *types.Request) {
	if s.committed[r.Key()] >= s.honestCount() {
		return
	}
	s.record("client", 0, fmt.Sprint(r.Seq))
	for _, n := range s.nodes {
		s.schedule(&event{at: s.now + s.latency(), kind: evDeliver, node: n.idx, from: n.idx, msg: r})
	}
	s.schedule(&event{at: s.now + s.cfg.RetransmitEvery, kind: evClient, msg: r})
}

func (s *Sim) honestCount() int {
	c := 0
	for _, n := range s.nodes {
		if n.honest {
			c++
		}
	}
	return c
}

// liveNodes are the honest replicas that are up: liveness is judged on them.
func (s *Sim) liveNodes() []*node {
	var out []*node
	for _, n := range s.nodes {
		if n.honest && n.up {
			out = append(out, n)
		}
	}
	return out
}

// done: after GST every live honest replica committed every request and
// committed something after GST.
func (s *Sim) done() bool {
	if s.now < s.cfg.GST {
		return false
	}
	for _, n := range s.liveNodes() {
		if n.reqs < len(s.requests) || n.lastCommit <= s.cfg.GST {
			return false
		}
	}
	return true
}

func (s *Sim) watchP4(n *node, p *types.Proposal) {
	if !n.honest || len(s.cfg.Twins) > 0 || len(p.Block.Payload) == 0 || s.now < s.cfg.GST+P4Settle {
		return
	}
	s.p4 = append(s.p4, p4Check{id: p.Block.ID, round: p.Block.Round, deadline: s.now + 7*s.cfg.Delta})
}

// honestLeaders reports whether every live honest replica sees honest, live
// leaders for rounds r+1 and r+2. The leader of r+2 is elected from the QC of
// round r (reputation), so it is judged when the check is due, not when the
// block is proposed.
func (s *Sim) honestLeaders(r types.Round) bool {
	for _, n := range s.liveNodes() {
		for _, l := range []types.ReplicaID{n.core.Leader(r + 1), n.core.Leader(r + 2)} {
			if m := s.nodes[l]; !m.honest || !m.up {
				return false
			}
		}
	}
	return true
}

func (s *Sim) checkP4() {
	for len(s.p4) > 0 && s.p4[0].deadline < s.now {
		c := s.p4[0]
		s.p4 = s.p4[1:]
		if !s.honestLeaders(c.round) {
			continue
		}
		for _, n := range s.liveNodes() {
			if _, ok := n.ledger.CommittedBlock(c.id); !ok {
				s.violate("P4: block %s of round %d (honest leaders after GST) not committed by replica %d within 7Δ", c.id, c.round, n.idx)
				return
			}
		}
	}
}

// healed: every honest replica committed a block proposed after HealAfterRound.
func (s *Sim) healed() bool {
	for _, n := range s.nodes {
		if n.honest && n.ledger.Last().Round <= s.cfg.HealAfterRound {
			return false
		}
	}
	return true
}

func (s *Sim) maxHonestRound() types.Round {
	var r types.Round
	for _, n := range s.nodes {
		if n.honest {
			r = max(r, n.core.CurrentRound())
		}
	}
	return r
}

// NodeRound is node i's current round.
func (s *Sim) NodeRound(i int) types.Round { return s.nodes[i].core.CurrentRound() }

func (s *Sim) checkLiveness() {
	if len(s.violations) > 0 {
		return
	}
	for _, n := range s.liveNodes() {
		if n.lastCommit <= s.cfg.GST {
			s.violate("liveness: replica %d committed nothing after GST (%v) by the horizon %v (round %d, height %d)", n.idx, s.cfg.GST, s.cfg.Horizon, n.core.CurrentRound(), n.ledger.Height())
		} else if n.reqs < len(s.requests) {
			s.violate("liveness: replica %d committed %d of %d requests by the horizon %v", n.idx, n.reqs, len(s.requests), s.cfg.Horizon)
		}
	}
}

func describe(msg any) string {
	switch m := msg.(type) {
	case *types.Proposal:
		return fmt.Sprintf("P %d %s", m.Block.Round, m.Block.ID)
	case *types.VoteMsg:
		return fmt.Sprintf("V %d %s", m.Vote.VoteInfo.Round, m.Vote.VoteInfo.ID)
	case *types.TimeoutMsg:
		return fmt.Sprintf("T %d", m.Timeout.Round)
	case *types.BlockRequest:
		return fmt.Sprintf("BQ %s", m.ID)
	case *types.BlockResponse:
		return fmt.Sprintf("BR %d", len(m.Blocks))
	case *types.Request:
		return fmt.Sprintf("R %d", m.Seq)
	}
	return "?"
}

// SendAfter puts msg from node from to node to on the network after delay
// (for Byzantine hooks that want to time their messages).
func (s *Sim) SendAfter(from, to int, msg any, delay time.Duration) {
	s.schedule(&event{at: s.now + delay, kind: evDeliver, node: to, from: from, msg: msg})
}

// CrashAt crashes node at the virtual time at and restarts it at restartAt (0 = never).
func (s *Sim) CrashAt(node int, at, restartAt time.Duration) {
	s.schedule(&event{at: at, kind: evCrash, node: node})
	if restartAt > 0 {
		s.schedule(&event{at: restartAt, kind: evRestart, node: node})
	}
}
