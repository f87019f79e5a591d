// Package core is one DiemBFT v4 replica's consensus state machine (paper §3,
// "Main" and the modules it drives), as pure code: no goroutines, no clock, no
// I/O. A driver (the simulator or the networked node) feeds it verified
// messages, client requests and timer expiries, and carries out the actions it
// returns, in order. Signature checks happen in the driver (types.Committee)
// before a message reaches the core, so they can run concurrently off the
// event loop.
package core

import (
	"bytes"
	"cmp"
	"slices"
	"time"

	"github.com/diembft/diembft/protocol/blocktree"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/ledger"
	"github.com/diembft/diembft/protocol/mempool"
	"github.com/diembft/diembft/protocol/pacemaker"
	"github.com/diembft/diembft/protocol/safety"
	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// Config configures a core.
type Config struct {
	ID        types.ReplicaID
	Committee *types.Committee
	Signer    types.Signer
	Pacemaker pacemaker.Config
	Election  leader.Mode
	// WindowSize and ExcludeSize parameterise the reputation election.
	WindowSize, ExcludeSize int
	// MaxRequests bounds a block's payload.
	MaxRequests int
	// IdleProposeDelay is how long a leader with nothing to order waits before
	// proposing an empty block. A leader with requests, or with an uncertified
	// or uncommitted non-empty block near the head, proposes at once. This
	// keeps an idle cluster from spinning through empty rounds while keeping
	// the round timers of the others from firing. Must be well below
	// Pacemaker.RoundTimeout.
	IdleProposeDelay time.Duration
	// FetchTimeout is the first block-fetch timeout; it doubles per retry.
	FetchTimeout time.Duration
	// MaxOrphans caps the fetched blocks kept waiting for their parent (0:
	// 10,000). A replica further behind syncs forward instead (sync.go).
	MaxOrphans int
	// Safety is the persisted safety state (zero for a fresh replica).
	Safety safety.State
	// Ledger holds committed blocks and execution state; nil means a new
	// in-memory ledger.
	Ledger ledger.Ledger
	// HighQC and HighCommitQC restore the certificates of a restarted replica;
	// nil means genesis.
	HighQC, HighCommitQC *types.QC
	// Pending restores a restarted replica's uncommitted blocks (any order;
	// those that no longer extend the ledger are dropped).
	Pending []*types.Block
	// Control selects deliberately broken safety rules (negative controls in tests).
	Control safety.Control
	// FixedLeaders overrides the election for some rounds (tests, Twins).
	FixedLeaders map[types.Round]types.ReplicaID
}

// Stats counts what the core did and what it ignored.
type Stats struct {
	Proposals, Votes, Timeouts    uint64 // messages processed
	QCs, TCs                      uint64 // certificates formed here
	Committed                     uint64 // blocks committed
	StaleOrWrongLeader            uint64 // proposals ignored
	VotesRefused, TimeoutsRefused uint64 // safety rules said no
	Fetches                       uint64 // block requests sent
	LastCommitByTC                uint64
}

const (
	maxFetchBatch = 100 // blocks per block response
	// firstFetch is the blocks a fetch asks for first; a chain that is still
	// missing its parent is asked for in doubling batches. Asking for
	// maxFetchBatch every time made a replica a block or two behind receive,
	// decode and verify up to 100 blocks it mostly had (at full load each
	// of ~400 operations): the fetches kept it behind, a spiral.
	firstFetch      = 4
	maxOrphans      = 10000 // fetched blocks waiting for their parent
	maxWaitingProps = 16    // proposals waiting for a missing parent (plus n: one per author of a round)
)

// Core is one replica's consensus state.
type Core struct {
	cfg      Config
	id       types.ReplicaID
	com      *types.Committee
	safety   *safety.Rules
	tree     *blocktree.Tree
	pm       *pacemaker.Pacemaker
	election *leader.Election
	pool     *mempool.Pool
	ledger   ledger.Ledger
	// budget bounds the total wire.RequestCost of a block's payload, so
	// that every proposal this leader builds encodes within the wire's
	// message limit (wire.PayloadBudget).
	budget int

	proposedRound types.Round
	out           []Action
	from          types.ReplicaID // sender of the message being processed, a fetch hint

	waiting           map[waitKey]*types.Proposal // proposals whose parent is missing
	orphans           map[types.Hash]*types.Block // fetched blocks whose parent is missing
	fetches           map[types.Hash]*fetch
	fetchByID         map[uint64]types.Hash
	nextFetch         uint64
	pendingCommit     *types.QC // a commit QC whose blocks are being fetched
	timeoutBroadcasts uint32
	sync              syncState // forward sync of a replica far behind (sync.go)

	Stats Stats
}

type fetch struct {
	id      uint64
	to      types.ReplicaID
	attempt int
	count   uint32 // blocks asked for
}

// New creates a core. Call Start to enter the first round.
func New(cfg Config) *Core {
	if cfg.Ledger == nil {
		cfg.Ledger = ledger.NewMemory()
	}
	_, gqc := types.Genesis()
	if cfg.HighQC == nil {
		cfg.HighQC = gqc
	}
	if cfg.HighCommitQC == nil {
		cfg.HighCommitQC = gqc
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = cfg.Pacemaker.RoundTimeout / 2
	}
	n := cfg.Committee.N()
	c := &Core{
		cfg:       cfg,
		id:        cfg.ID,
		com:       cfg.Committee,
		safety:    safety.New(cfg.ID, cfg.Committee.ChainID, cfg.Signer, cfg.Safety),
		tree:      blocktree.New(cfg.Committee.Quorum(), cfg.Ledger.Last(), cfg.HighQC, cfg.HighCommitQC),
		pm:        pacemaker.New(cfg.Pacemaker, cfg.Committee.F, cfg.Committee.Quorum()),
		election:  leader.New(cfg.Election, n, cfg.WindowSize, cfg.ExcludeSize),
		pool:      mempool.New(0),
		ledger:    cfg.Ledger,
		budget:    wire.PayloadBudget(n),
		waiting:   map[waitKey]*types.Proposal{},
		orphans:   map[types.Hash]*types.Block{},
		fetches:   map[types.Hash]*fetch{},
		fetchByID: map[uint64]types.Hash{},
	}
	c.safety.Control = cfg.Control
	c.election.Fixed = cfg.FixedLeaders
	// A restarted leader must not propose again in a round it already
	// voted or timed out in: it voted only on its own proposal there (only
	// the round's leader proposes), so a second proposal would be a second
	// block for the round from an honest replica. The window between the
	// broadcast and the safety fsync of its own vote stays open, as in
	// Aptos (its safety rules persist the vote, not the proposal): closing
	// it would put an fsync before every proposal.
	c.proposedRound = cfg.Safety.HighestVoteRound
	pending := slices.Clone(cfg.Pending)
	slices.SortFunc(pending, func(a, b *types.Block) int { return cmp.Compare(a.Round, b.Round) })
	for _, b := range pending {
		if _, ok := c.ledger.Speculate(b); ok {
			c.tree.Add(b)
		}
	}
	return c
}

// ID is this replica's id.
func (c *Core) ID() types.ReplicaID { return c.id }

// CurrentRound is the pacemaker's round.
func (c *Core) CurrentRound() types.Round { return c.pm.CurrentRound() }

// Leader returns the leader of round r as this replica sees it.
func (c *Core) Leader(r types.Round) types.ReplicaID { return c.election.Get(r) }

// HighQC is the highest QC known.
func (c *Core) HighQC() *types.QC { return c.tree.HighQC() }

// HighCommitQC is the highest committing QC known.
func (c *Core) HighCommitQC() *types.QC { return c.tree.HighCommitQC() }

// Ledger is the core's ledger.
func (c *Core) Ledger() ledger.Ledger { return c.ledger }

// SafetyState is the current safety data.
func (c *Core) SafetyState() safety.State { return c.safety.State() }

// PendingRequests is the number of requests in the mempool.
func (c *Core) PendingRequests() int { return c.pool.Len() }

// PendingBlocks returns the uncommitted blocks of the tree (for persistence).
func (c *Core) PendingBlocks() []*types.Block { return c.tree.Pending() }

// TreeVersion changes exactly when PendingBlocks, HighQC or HighCommitQC
// may have (blocktree.Tree.Version).
func (c *Core) TreeVersion() uint64 { return c.tree.Version() }

// Block returns a pending or committed block by id.
func (c *Core) Block(id types.Hash) (*types.Block, bool) {
	if b, ok := c.tree.Get(id); ok {
		return b, true
	}
	return c.ledger.CommittedBlock(id)
}

func (c *Core) emit(a Action) { c.out = append(c.out, a) }

func (c *Core) flush() []Action {
	out := c.out
	c.out = nil
	return out
}

// Start enters the round after the highest certificate, of the tree or the
// TC saved with the safety data, and arms its timer.
func (c *Core) Start() []Action {
	// The election learns what a running replica learnt from the messages
	// that brought it here, or a restarted one would elect other leaders
	// than the others until messages carry those certificates again: the
	// QCs of its tree (each certified block's QC elects the leader two
	// rounds after it, and the fallback skips the non-signers of recent
	// QCs) and the failed round of its saved TC (learnTC).
	for _, qc := range c.treeQCs() {
		c.election.Update(qc, c.pm.CurrentRound(), c.ledger.CommittedBlock)
	}
	byTC := c.learnTC(c.cfg.Safety.HighTC)
	if c.pm.AdvanceQC(c.tree.HighQC().Round()) {
		byTC = false
	}
	c.enteredRound(byTC)
	return c.flush()
}

// treeQCs returns the QCs a restarted tree holds, by round: those of its
// pending blocks, its high commit QC and its high QC.
func (c *Core) treeQCs() []*types.QC {
	var qcs []*types.QC
	for _, b := range c.tree.Pending() {
		qcs = append(qcs, b.QC)
	}
	qcs = append(qcs, c.tree.HighCommitQC(), c.tree.HighQC())
	qcs = slices.DeleteFunc(qcs, func(q *types.QC) bool { return q == nil || q.Round() == 0 })
	slices.SortStableFunc(qcs, func(a, b *types.QC) int { return cmp.Compare(a.Round(), b.Round()) })
	return qcs
}

// persistSafety asks the driver to save the safety state, with b (the block
// about to be voted for, if any) and the highest TC (safety.State.HighTC),
// its certificates cut to a quorum of signatures (State.Compact).
func (c *Core) persistSafety(b *types.Block) {
	st := c.safety.State()
	st.HighTC = c.pm.HighTC()
	c.emit(PersistSafety{State: st.Compact(c.com.Quorum()), Block: b})
}

func (c *Core) syncInfo() types.SyncInfo {
	return types.SyncInfo{HighQC: c.tree.HighQC(), HighCommitQC: c.tree.HighCommitQC(), HighTC: c.pm.HighTC()}
}

// enteredRound arms the round timer and lets the new leader propose.
func (c *Core) enteredRound(byTC bool) {
	r := c.pm.CurrentRound()
	c.emit(NewRound{Round: r, ByTC: byTC})
	c.armRoundTimer()
	c.maybePropose(false)
}

func (c *Core) armRoundTimer() {
	r := c.pm.CurrentRound()
	since := int(r) - int(c.tree.Root().Round) - 3 // a commit trails the round by 2 in steady state
	c.emit(SetTimer{Timer: Timer{Kind: RoundTimer, ID: uint64(r)}, After: c.pm.RoundTimer(since)})
}

// processSync handles the certificates carried by every message.
func (c *Core) processSync(s *types.SyncInfo) {
	if s.HighCommitQC != nil {
		c.processCertificateQC(s.HighCommitQC)
	}
	if s.HighQC != nil {
		c.processCertificateQC(s.HighQC)
	}
	c.advanceTC(s.HighTC)
}

// advanceTC enters the round after tc, if it is ahead.
func (c *Core) advanceTC(tc *types.TC) {
	if c.learnTC(tc) {
		c.enteredRound(true)
	}
}

// learnTC tells the election and the pacemaker about tc (nil: nothing) and
// reports whether the round advanced.
func (c *Core) learnTC(tc *types.TC) bool {
	if tc == nil {
		return false
	}
	c.election.UpdateTC(tc, c.pm.CurrentRound()) // the next round's leader changes to the fallback (leader.go)
	return c.pm.AdvanceTC(tc)
}

// processCertificateQC is the paper's process_certificate_qc.
func (c *Core) processCertificateQC(qc *types.QC) {
	if qc == nil || qc.Round() == 0 {
		return
	}
	c.tree.UpdateHighQC(qc)
	if qc.LedgerCommitInfo.Commits() {
		c.tryCommit(qc)
	}
	c.election.Update(qc, c.pm.CurrentRound(), c.ledger.CommittedBlock)
	if c.pm.AdvanceQC(qc.Round()) {
		c.enteredRound(false)
	}
}

// tryCommit applies the 2-chain commit rule: a QC whose LedgerCommitInfo
// carries a commit state id certifies a block of round r+1 whose parent has
// round r; that parent and its uncommitted ancestors commit, in order.
func (c *Core) tryCommit(qc *types.QC) {
	target := qc.VoteInfo.ParentID
	if qc.VoteInfo.ParentRound <= c.tree.Root().Round {
		return
	}
	path, missing, ok := c.tree.CommitPath(target)
	if !ok {
		if !missing.IsZero() {
			if c.pendingCommit == nil || qc.Round() > c.pendingCommit.Round() {
				c.pendingCommit = qc
			}
			if c.farBehind() {
				c.startSync(c.from)
				return
			}
			c.fetch(missing, c.from)
		}
		return
	}
	for i, b := range path {
		var by *types.QC
		if i == len(path)-1 {
			by = qc
		}
		c.ledger.Commit(b, by)
		c.pool.Commit(b.Payload)
		c.Stats.Committed++
		c.emit(Committed{Block: b, QC: by, Height: c.ledger.Height()})
	}
	for _, id := range c.tree.Prune(path[len(path)-1]) {
		c.ledger.Forget(id)
	}
	// Leaders elected while these blocks were missing here are elected
	// again, as the replicas that had them elected them.
	c.election.Retry(c.pm.CurrentRound(), c.ledger.CommittedBlock)
	if c.pendingCommit != nil && c.pendingCommit.VoteInfo.ParentRound <= c.tree.Root().Round {
		c.pendingCommit = nil
	}
}

// hasWork reports whether the leader should propose now rather than after
// IdleProposeDelay: requests wait, or one of the two newest certified blocks
// carries requests that need further QCs to commit everywhere.
func (c *Core) hasWork() bool {
	if c.pool.Len() > 0 {
		return true
	}
	// The parent may already be committed here (forming the QC committed it)
	// while the others learn that only from the next proposal.
	id := c.tree.HighQC().BlockID()
	for range 2 {
		b, ok := c.Block(id)
		if !ok {
			return false
		}
		if len(b.Payload) > 0 {
			return true
		}
		id = b.ParentID()
	}
	return false
}

// maybePropose is the paper's process_new_round_event for the leader.
func (c *Core) maybePropose(force bool) {
	r := c.pm.CurrentRound()
	if c.election.Get(r) != c.id || c.proposedRound >= r {
		return
	}
	if !force && !c.hasWork() {
		c.emit(SetTimer{Timer: Timer{Kind: ProposeTimer, ID: uint64(r)}, After: c.cfg.IdleProposeDelay})
		return
	}
	hqc := c.tree.HighQC()
	if _, ok := c.tree.Get(hqc.BlockID()); !ok {
		c.fetch(hqc.BlockID(), c.from) // its requests are unknown: proposing now could order them again
		return
	}
	c.proposedRound = r
	inBranch := map[types.RequestKey]bool{}
	for _, b := range c.tree.Branch(hqc.BlockID(), int(^uint(0)>>1)) {
		for i := range b.Payload {
			inBranch[b.Payload[i].Key()] = true
		}
	}
	b := types.Block{
		Author:  c.id,
		Round:   r,
		Payload: c.pool.Take(c.cfg.MaxRequests, c.budget, func(k types.RequestKey) bool { return inBranch[k] }),
		QC:      hqc,
	}
	b.ID = b.ComputeID()
	p := &types.Proposal{
		Block:     b,
		LastTC:    c.pm.LastRoundTC(),
		Sync:      c.syncInfo(),
		Signature: c.cfg.Signer.Sign(types.ProposalSignBytes(c.com.ChainID, b.ID, r)),
	}
	c.emit(BroadcastProposal{Proposal: p})
	c.processProposal(p)
}

// OnProposal processes a verified proposal (paper: process_proposal_msg).
func (c *Core) OnProposal(p *types.Proposal) []Action {
	c.Stats.Proposals++
	c.processProposal(p)
	return c.flush()
}

func (c *Core) processProposal(p *types.Proposal) {
	b := &p.Block
	c.from = b.Author
	c.processSync(&p.Sync)
	c.processCertificateQC(b.QC)
	c.advanceTC(p.LastTC)
	r := c.pm.CurrentRound()
	_, hasParent := c.tree.Get(b.ParentID())
	// Without the parent, the leader of round r may not be known here yet:
	// it is elected by the QC of round r-2, which the parent carries. Such a
	// proposal waits for its parent, and its author is checked then; judged
	// now against the fallback leader it was dropped, and this replica
	// could not vote in round r (a round lost when another replica is down).
	decided := hasParent || c.election.Decided(r)
	if b.Round != r || (decided && b.Author != c.election.Get(r)) {
		c.Stats.StaleOrWrongLeader++
		if b.Round < r && b.Author == c.election.Get(b.Round) {
			c.keepLate(b)
		}
		return
	}
	if !hasParent {
		// Keep the proposal (one per author and round, so that no other
		// replica can displace the leader's) and fetch the parent from its
		// author. Entries of past rounds go first, so that they never keep
		// the leader's out.
		for k := range c.waiting {
			if k.round < r {
				delete(c.waiting, k)
			}
		}
		if len(c.waiting) < maxWaitingProps+c.com.N() {
			c.waiting[waitKey{b.Round, b.Author}] = p
		}
		if f, ok := c.fetches[b.ParentID()]; ok && f.to != b.Author && !c.sync.active {
			// Under way from another author's proposal, which may not be
			// the leader's (undecided here): ask this author too, once per
			// proposal kept; the first answer counts. Else a silent
			// non-leader that proposed first would hold the parent back for
			// a fetch timeout.
			c.Stats.Fetches++
			c.emit(SendBlockRequest{To: b.Author, Request: &types.BlockRequest{ID: b.ParentID(), Count: f.count}})
		} else {
			c.fetch(b.ParentID(), b.Author)
		}
		return
	}
	c.executeAndVote(p)
}

// waitKey is a proposal waiting for its parent: its round and author.
type waitKey struct {
	round  types.Round
	author types.ReplicaID
}

// keepLate keeps the block of a proposal that arrived after its round (the
// replica moved on through a QC or TC in other messages, which happens when
// proposals queue behind a busy validator while votes do not): it is not
// voted on, but if its parent is in the tree it enters the tree exactly as
// a fetched block would, so that the QCs certifying it do not each cost a
// block fetch. Blocks in the tree have no bearing on safety. A late block
// without its parent is not kept as an orphan: a leader could otherwise
// fill the orphan pool with variants of its block citing old QCs.
func (c *Core) keepLate(b *types.Block) {
	if _, known := c.Block(b.ID); known || b.Round <= c.tree.Root().Round || c.sync.active {
		return
	}
	if _, ok := c.tree.Get(b.ParentID()); !ok {
		return
	}
	c.orphans[b.ID] = b
	c.adoptOrphans()
}

// executeAndVote is execute_and_insert (paper slip fixed: it takes P.block)
// followed by make_vote and sending the vote to the next leader.
func (c *Core) executeAndVote(p *types.Proposal) {
	b := &p.Block
	st, ok := c.ledger.Speculate(b)
	if !ok || !c.tree.Add(b) {
		return
	}
	v := c.safety.MakeVote(b, p.LastTC, st, c.ledger.PendingState)
	if v == nil {
		c.Stats.VotesRefused++
		return
	}
	c.persistSafety(b)
	m := &types.VoteMsg{Vote: *v, Sync: c.syncInfo()}
	next := c.election.Get(b.Round + 1)
	if next == c.id {
		c.processVote(m)
		return
	}
	c.emit(SendVote{To: next, Vote: m})
}

// OnVote processes a verified vote (paper: process_vote_msg).
func (c *Core) OnVote(m *types.VoteMsg) []Action {
	c.Stats.Votes++
	c.from = m.Vote.Sender
	c.processSync(&m.Sync)
	c.processVote(m)
	return c.flush()
}

func (c *Core) processVote(m *types.VoteMsg) {
	r := m.Vote.VoteInfo.Round
	if c.election.Get(r+1) != c.id {
		// While the election of r+1 waits here for history this replica
		// lacks (leader.Election.Decided), the voters, which hold it, may
		// have elected this replica: their votes are kept, so that the
		// quorum is here when Retry elects it after the missing commits
		// (adoptOrphans then proposes). Dropping them lost the round to a
		// timeout whenever the lagging replica was the leader
		// (TestLaggingReplicaLeaderCrash, TestUndecidedLeaderKeepsVotes).
		// Not once it holds a TC of round r: the others have moved on to
		// the fallback leader, and a late QC of r would change their
		// choice of the next leaders (leader.Election's failed rounds).
		if tc := c.pm.HighTC(); c.election.Decided(r+1) || (tc != nil && tc.Round >= r) {
			return // votes are for the next leader only
		}
	}
	if qc := c.tree.AddVote(&m.Vote); qc != nil {
		c.Stats.QCs++
		c.processCertificateQC(qc)
		c.maybePropose(false)
	}
}

// OnTimeout processes a verified timeout message (paper: process_timeout_msg).
func (c *Core) OnTimeout(m *types.TimeoutMsg) []Action {
	c.Stats.Timeouts++
	c.from = m.Timeout.Sender
	c.processSync(&m.Sync)
	c.processCertificateQC(m.Timeout.HighQC)
	c.advanceTC(m.LastTC)
	c.addTimeout(&m.Timeout)
	return c.flush()
}

func (c *Core) addTimeout(t *types.TimeoutInfo) {
	res := c.pm.AddTimeout(t)
	if res.Join && !c.pm.HasTimeout(t.Round, c.id) {
		c.localTimeout() // Bracha: f+1 timeouts mean at least one honest replica gave up
	}
	if res.TC != nil {
		c.Stats.TCs++
		c.advanceTC(res.TC)
	}
}

// localTimeout is the paper's local_timeout_round. It re-arms the timer so
// that the timeout is re-broadcast until the round ends (messages may be lost).
func (c *Core) localTimeout() {
	r := c.pm.CurrentRound()
	lastTC := c.pm.LastRoundTC()
	c.armRoundTimer()
	t := c.safety.MakeTimeout(r, c.tree.HighQC(), lastTC)
	if t == nil {
		c.Stats.TimeoutsRefused++
		return
	}
	c.persistSafety(nil)
	c.timeoutBroadcasts++
	c.emit(BroadcastTimeout{Timeout: &types.TimeoutMsg{Timeout: *t, LastTC: lastTC, Sync: c.syncInfo(), Attempt: c.timeoutBroadcasts}})
	c.addTimeout(t)
}

// OnRequest adds a verified client request to the mempool.
func (c *Core) OnRequest(r *types.Request) ([]Action, error) {
	if err := c.pool.Add(r); err != nil {
		return nil, err
	}
	c.maybePropose(false)
	return c.flush(), nil
}

// OnTimer handles an expired timer.
func (c *Core) OnTimer(t Timer) []Action {
	switch t.Kind {
	case RoundTimer:
		if types.Round(t.ID) == c.pm.CurrentRound() {
			c.localTimeout()
		}
	case ProposeTimer:
		if types.Round(t.ID) == c.pm.CurrentRound() {
			c.maybePropose(true)
		}
	case FetchTimer:
		if c.onSyncTimer(t.ID) {
			break
		}
		if h, ok := c.fetchByID[t.ID]; ok {
			f := c.fetches[h]
			f.attempt++
			f.to = c.nextPeer(f.to)
			c.sendFetch(h, f)
		}
	}
	return c.flush()
}

func (c *Core) nextPeer(p types.ReplicaID) types.ReplicaID {
	n := types.ReplicaID(c.com.N())
	p = (p + 1) % n
	if p == c.id {
		p = (p + 1) % n
	}
	return p
}

// fetch asks `to` for block id and a few ancestors, unless a fetch is running.
func (c *Core) fetch(id types.Hash, to types.ReplicaID) { c.fetchN(id, to, firstFetch) }

// fetchN is fetch asking for count blocks.
func (c *Core) fetchN(id types.Hash, to types.ReplicaID, count uint32) {
	if c.sync.active {
		return // forward sync brings the replica up first
	}
	if _, ok := c.fetches[id]; ok {
		return
	}
	if _, ok := c.orphans[id]; ok {
		return
	}
	if to == c.id {
		to = c.nextPeer(to)
	}
	c.nextFetch++
	f := &fetch{id: c.nextFetch, to: to, count: min(count, maxFetchBatch)}
	c.fetches[id] = f
	c.fetchByID[f.id] = id
	c.sendFetch(id, f)
}

func (c *Core) sendFetch(id types.Hash, f *fetch) {
	c.Stats.Fetches++
	c.emit(SendBlockRequest{To: f.to, Request: &types.BlockRequest{ID: id, Count: f.count}})
	after := c.cfg.FetchTimeout << min(f.attempt, 6)
	c.emit(SetTimer{Timer: Timer{Kind: FetchTimer, ID: f.id}, After: after})
}

// OnBlockRequest answers a block request with the block and its ancestors.
func (c *Core) OnBlockRequest(from types.ReplicaID, req *types.BlockRequest) []Action {
	if req.Forward {
		c.answerForward(from, req)
		return c.flush()
	}
	resp := &types.BlockResponse{}
	id := req.ID
	size := 0
	for len(resp.Blocks) < int(min(req.Count, maxFetchBatch)) {
		b, ok := c.Block(id)
		if !ok || b.Round == 0 {
			break
		}
		if size += approxBlockSize(b); len(resp.Blocks) > 0 && size > maxResponseBytes {
			break
		}
		resp.Blocks = append(resp.Blocks, *b)
		id = b.ParentID()
	}
	c.emit(SendBlockResponse{To: from, Response: resp})
	return c.flush()
}

// OnBlockResponse inserts fetched blocks. The response must have been checked
// with Committee.VerifyBlockResponse; its first block must be one this replica
// asked for, which authenticates the whole chain through the block ids.
func (c *Core) OnBlockResponse(from types.ReplicaID, resp *types.BlockResponse) []Action {
	if len(resp.Blocks) == 0 {
		return nil
	}
	top := resp.Blocks[0].ID
	f, ok := c.fetches[top]
	if !ok {
		c.onSyncResponse(from, resp) // a forward answer, or unsolicited
		return c.flush()
	}
	delete(c.fetches, top)
	delete(c.fetchByID, f.id)
	c.from = from
	for i := range resp.Blocks {
		b := resp.Blocks[i]
		if _, known := c.Block(b.ID); known || b.Round <= c.tree.Root().Round {
			break
		}
		if len(c.orphans) >= c.orphanCap() {
			// The chain is longer than the orphans may hold: sync forward
			// from the root instead (this drops the orphans).
			c.startSync(from)
			return c.flush()
		}
		c.orphans[b.ID] = &b
	}
	// Insert from the oldest block up; ask for more if the oldest's parent is missing.
	last := &resp.Blocks[len(resp.Blocks)-1]
	if _, known := c.Block(last.ParentID()); !known && c.orphans[last.ID] != nil {
		c.fetchN(last.ParentID(), from, max(firstFetch, 2*uint32(len(resp.Blocks))))
	}
	c.adoptOrphans()
	return c.flush()
}

// adoptOrphans inserts every fetched block whose parent is now in the tree,
// processes the QCs they carry (which may commit), and resumes waiting work.
func (c *Core) adoptOrphans() {
	for progress := true; progress; {
		progress = false
		// Map order is random; the core must be deterministic, so go by round.
		ids := make([]types.Hash, 0, len(c.orphans))
		for id := range c.orphans {
			ids = append(ids, id)
		}
		// By round, then id: two blocks of one round (an equivocating
		// leader) must go in the same order on every run.
		slices.SortFunc(ids, func(a, b types.Hash) int {
			return cmp.Or(cmp.Compare(c.orphans[a].Round, c.orphans[b].Round), bytes.Compare(a[:], b[:]))
		})
		for _, id := range ids {
			b := c.orphans[id]
			if _, ok := c.tree.Get(b.ParentID()); !ok {
				if b.Round <= c.tree.Root().Round {
					delete(c.orphans, id)
				}
				continue
			}
			delete(c.orphans, id)
			if _, ok := c.ledger.Speculate(b); ok && c.tree.Add(b) {
				c.processCertificateQC(b.QC)
				progress = true
			}
		}
	}
	if pc := c.pendingCommit; pc != nil {
		c.pendingCommit = nil
		c.tryCommit(pc)
	}
	keys := make([]waitKey, 0, len(c.waiting))
	for k := range c.waiting {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b waitKey) int { return cmp.Or(cmp.Compare(a.round, b.round), cmp.Compare(a.author, b.author)) })
	var late []*types.Block
	for _, k := range keys {
		p := c.waiting[k]
		if k.round < c.pm.CurrentRound() {
			// Its round passed while the parent was on its way (a QC or TC
			// of the round came first): too late to vote, but the leader's
			// block is kept as a late one is, so that the QC certifying it
			// need not wait for a fetch of it (the next leader cannot
			// propose before it has the block).
			delete(c.waiting, k)
			if k.author == c.election.Get(k.round) {
				late = append(late, &p.Block)
			}
			continue
		}
		if _, ok := c.tree.Get(p.Block.ParentID()); ok {
			delete(c.waiting, k)
			if k.author != c.election.Get(k.round) {
				c.Stats.StaleOrWrongLeader++
				continue
			}
			c.executeAndVote(p)
		}
	}
	for _, b := range late {
		c.keepLate(b) // adopts it if its parent is here, with what follows
	}
	c.maybePropose(false)
}
