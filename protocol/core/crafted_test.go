package core_test

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/ledger"
	"github.com/diembft/diembft/protocol/safety"
	"github.com/diembft/diembft/protocol/types"
)

// solo drives one core (replica 3 of n=4) with messages crafted and signed
// by the test as the other replicas would make them. Replica 0 leads every
// round, so the core under test never proposes and sends every vote to 0.
type solo struct {
	t    *testing.T
	c    *cluster // committee and keys
	me   *core.Core
	ref  *ledger.Memory // executes every block the test makes, for state ids
	seq  uint64
	acts []core.Action // actions of the last call
}

func newSolo(t *testing.T, seed int64) *solo { return newSoloLeading(t, seed) }

// newSoloLeading is newSolo with the core under test leading the given rounds.
func newSoloLeading(t *testing.T, seed int64, leads ...types.Round) *solo {
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: seed, mode: leader.RoundRobin})
	fixed := map[types.Round]types.ReplicaID{}
	for r := types.Round(0); r < 100; r++ {
		fixed[r] = 0
	}
	for _, r := range leads {
		fixed[r] = 3
	}
	s := &solo{t: t, c: c, ref: ledger.NewMemory()}
	s.me = core.New(core.Config{
		ID: 3, Committee: c.com, Signer: types.Ed25519Signer{Key: c.keys[3]}, Pacemaker: pmConfig,
		Election: leader.RoundRobin, MaxRequests: 10, IdleProposeDelay: 50 * time.Millisecond, FixedLeaders: fixed,
	})
	s.acts = s.me.Start()
	return s
}

func (s *solo) block(round types.Round, qc *types.QC, withPayload bool) *types.Block {
	b := &types.Block{Author: 0, Round: round, QC: qc}
	if withPayload {
		s.seq++
		b.Payload = []types.Request{*s.c.request(0)}
	}
	return crafted(s.t, s.ref, b)
}

// qc certifies b as honest replicas 0, 1, 2 would.
func (s *solo) qc(b *types.Block) *types.QC { return s.c.certify(s.ref, b, 0, 1, 2) }

// The crafted messages below are what honest replicas of c would send; the
// tests of this package that play the other replicas build them here.

// crafted gives b its id and executes it on led (for the state ids of the
// votes and QCs on it and its children).
func crafted(t *testing.T, led *ledger.Memory, b *types.Block) *types.Block {
	t.Helper()
	b.ID = b.ComputeID()
	if _, ok := led.Speculate(b); !ok {
		t.Fatalf("test block of round %d has an unknown parent", b.Round)
	}
	return b
}

// voteOn is what honest voters sign for b: its execution state on led, and
// the parent's state as commit state if b extends the previous round.
func voteOn(led *ledger.Memory, b *types.Block) (types.VoteInfo, types.LedgerCommitInfo) {
	exec, _ := led.PendingState(b.ID)
	vi := types.VoteInfo{ID: b.ID, Round: b.Round, ParentID: b.ParentID(), ParentRound: b.QC.Round(), ExecStateID: exec}
	return vi, types.LedgerCommitInfo{VoteInfoHash: vi.Hash(), CommitStateID: safety.CommitStateIDCandidate(b.Round, b.QC, led.PendingState)}
}

// certify is the QC of b signed by signers (voteOn).
func (c *cluster) certify(led *ledger.Memory, b *types.Block, signers ...types.ReplicaID) *types.QC {
	vi, lci := voteOn(led, b)
	q := &types.QC{VoteInfo: vi, LedgerCommitInfo: lci}
	for _, id := range signers {
		q.Signatures = append(q.Signatures, types.PartialSig{Signer: id, Sig: ed25519.Sign(c.keys[id], lci.SignBytes(chainID))})
	}
	return q
}

// proposal is b proposed by its author, checked as a replica checks it.
func (c *cluster) proposal(t *testing.T, b *types.Block, lastTC *types.TC) *types.Proposal {
	t.Helper()
	p := &types.Proposal{Block: *b, LastTC: lastTC, Sync: types.SyncInfo{HighQC: b.QC},
		Signature: ed25519.Sign(c.keys[b.Author], types.ProposalSignBytes(chainID, b.ID, b.Round))}
	if err := c.com.VerifyProposal(p, 10); err != nil {
		t.Fatalf("crafted proposal of round %d does not verify: %v", b.Round, err)
	}
	return p
}

// timeout is sender's timeout of round with high QC hqc.
func (c *cluster) timeout(t *testing.T, round types.Round, sender types.ReplicaID, hqc *types.QC) *types.TimeoutMsg {
	t.Helper()
	m := &types.TimeoutMsg{Timeout: types.TimeoutInfo{Round: round, HighQC: hqc, Sender: sender,
		Signature: ed25519.Sign(c.keys[sender], types.TimeoutSignBytes(chainID, round, hqc.Round()))}}
	if err := c.com.VerifyTimeout(m); err != nil {
		t.Fatalf("crafted timeout does not verify: %v", err)
	}
	return m
}

// reputationCore is replica id of c under the reputation election (window
// 3, exclude 1), started.
func (c *cluster) reputationCore(id types.ReplicaID) *core.Core {
	cc := core.New(core.Config{ID: id, Committee: c.com, Signer: types.Ed25519Signer{Key: c.keys[id]}, Pacemaker: pmConfig,
		Election: leader.Reputation, WindowSize: 3, ExcludeSize: 1, MaxRequests: 10, IdleProposeDelay: 50 * time.Millisecond})
	cc.Start()
	return cc
}

func (s *solo) tc(round types.Round, hqc ...types.Round) *types.TC {
	tc := &types.TC{Round: round}
	for i, h := range hqc {
		id := types.ReplicaID(i)
		tc.Signatures = append(tc.Signatures, types.PartialSig{Signer: id, Sig: ed25519.Sign(s.c.keys[id], types.TimeoutSignBytes(chainID, round, h))})
		tc.TmoHighQCRounds = append(tc.TmoHighQCRounds, h)
	}
	return tc
}

func (s *solo) propose(b *types.Block, lastTC *types.TC) {
	s.t.Helper()
	s.acts = s.me.OnProposal(s.c.proposal(s.t, b, lastTC))
}

func (s *solo) timeout(round types.Round, sender types.ReplicaID, hqc *types.QC) {
	s.t.Helper()
	s.acts = s.me.OnTimeout(s.c.timeout(s.t, round, sender, hqc))
}

func (s *solo) vote() *types.Vote {
	for _, a := range s.acts {
		if v, ok := a.(core.SendVote); ok {
			if v.To != 0 {
				s.t.Fatalf("vote sent to %d, leader is 0", v.To)
			}
			if err := s.c.com.VerifyVote(v.Vote); err != nil {
				s.t.Fatalf("vote does not verify: %v", err)
			}
			return &v.Vote.Vote
		}
	}
	return nil
}

func (s *solo) commits() []core.Committed {
	var out []core.Committed
	for _, a := range s.acts {
		if c, ok := a.(core.Committed); ok {
			out = append(out, c)
		}
	}
	return out
}

func (s *solo) broadcastTimeout() *types.TimeoutMsg {
	for _, a := range s.acts {
		if b, ok := a.(core.BroadcastTimeout); ok {
			return b.Timeout
		}
	}
	return nil
}

func (s *solo) wantCommits(step string, blocks []*types.Block, by *types.QC) {
	s.t.Helper()
	got := s.commits()
	if len(got) != len(blocks) {
		s.t.Fatalf("%s: %d blocks committed, want %d", step, len(got), len(blocks))
	}
	for i, b := range blocks {
		if got[i].Block.ID != b.ID {
			s.t.Fatalf("%s: commit %d is round %d, want round %d", step, i, got[i].Block.Round, b.Round)
		}
		want := (*types.QC)(nil)
		if i == len(blocks)-1 {
			want = by
		}
		if (got[i].QC == nil) != (want == nil) || (want != nil && got[i].QC.VoteInfo != want.VoteInfo) {
			s.t.Fatalf("%s: commit %d carries QC %+v", step, i, got[i].QC)
		}
	}
}

// TestTwoChainCommitRule: B <- QC <- B' <- QC' with consecutive rounds
// commits B; a QC over a block that extends its parent's QC across a round
// gap (after a TC) commits nothing until a consecutive QC follows.
func TestTwoChainCommitRule(t *testing.T) {
	s := newSolo(t, 71)
	b1 := s.block(1, func() *types.QC { _, g := types.Genesis(); return g }(), true)
	s.propose(b1, nil)
	if s.vote() == nil {
		t.Fatal("no vote for round 1")
	}
	q1 := s.qc(b1)
	b2 := s.block(2, q1, true)
	s.propose(b2, nil)
	v2 := s.vote()
	if v2 == nil || !v2.LedgerCommitInfo.Commits() {
		t.Fatal("vote for a block extending the previous round does not carry a commit state")
	}
	s.wantCommits("QC of round 1", nil, nil)

	q2 := s.qc(b2) // B1 <- QC1 <- B2 <- QC2, rounds 1, 2: commits B1
	b3 := s.block(3, q2, true)
	s.propose(b3, nil)
	s.wantCommits("QC of round 2", []*types.Block{b1}, q2)
	if s.vote() == nil {
		t.Fatal("no vote for round 3")
	}

	// Round 3's block is never certified: round 3 ends with a TC, and
	// round 4's block extends QC2 across the gap.
	tc3 := s.tc(3, 2, 2, 2)
	b4 := s.block(4, q2, true)
	s.propose(b4, tc3)
	v4 := s.vote()
	if v4 == nil {
		t.Fatal("no vote for a block justified by a TC")
	}
	if v4.LedgerCommitInfo.Commits() {
		t.Fatal("vote across a round gap carries a commit state")
	}
	q4 := s.qc(b4) // B2 <- QC2 <- B4 <- QC4, rounds 2, 4: commits nothing
	b5 := s.block(5, q4, true)
	s.propose(b5, nil)
	s.wantCommits("QC of round 4 (gap)", nil, nil)
	if s.vote() == nil {
		t.Fatal("no vote for round 5")
	}

	q5 := s.qc(b5) // B4 <- QC4 <- B5 <- QC5, rounds 4, 5: commits B4, and B2 with it
	b6 := s.block(6, q5, false)
	s.propose(b6, nil)
	s.wantCommits("QC of round 5", []*types.Block{b2, b4}, q5)
	if _, ok := s.me.Block(b3.ID); ok {
		t.Fatal("the abandoned block of round 3 is still held")
	}
	if h := s.me.Ledger().Height(); h != 3 {
		t.Fatalf("ledger height %d, want 3", h)
	}
	if s.me.HighCommitQC().VoteInfo != q5.VoteInfo || s.me.HighQC().VoteInfo != q5.VoteInfo {
		t.Fatal("high QC / high commit QC not updated")
	}
}

// TestLockRefusesLowerQC: after a TC whose signers reported a high QC of
// round 5, a proposal extending the QC of round 4 gets no vote.
func TestLockRefusesLowerQC(t *testing.T) {
	s := newSolo(t, 72)
	_, g := types.Genesis()
	q := g
	var blocks []*types.Block
	for r := types.Round(1); r <= 5; r++ {
		b := s.block(r, q, true)
		s.propose(b, nil)
		if s.vote() == nil {
			t.Fatalf("no vote in round %d", r)
		}
		blocks = append(blocks, b)
		q = s.qc(b)
	}
	q4 := blocks[4].QC // certifies round 4
	// Round 6 never had a proposal; the TC's signers knew QC5.
	bad := s.block(7, q4, true)
	s.propose(bad, s.tc(6, 5, 4, 4))
	if s.me.CurrentRound() != 7 {
		t.Fatalf("TC did not advance the round: %d", s.me.CurrentRound())
	}
	if s.vote() != nil {
		t.Fatal("voted for a block below the TC's high QC")
	}
	if s.me.Stats.VotesRefused != 1 {
		t.Fatalf("VotesRefused %d", s.me.Stats.VotesRefused)
	}
	if st := s.me.SafetyState(); st.HighestVoteRound != 5 {
		t.Fatalf("refused vote moved the highest vote round to %d", st.HighestVoteRound)
	}
	for _, a := range s.acts {
		if _, ok := a.(core.PersistSafety); ok {
			t.Fatal("persisted safety state for a refused vote")
		}
	}
}

// TestEquivocatingLeader: two different proposals for one round get one vote.
func TestEquivocatingLeader(t *testing.T) {
	s := newSolo(t, 73)
	_, g := types.Genesis()
	a := s.block(1, g, true)
	b := s.block(1, g, true)
	s.propose(a, nil)
	va := s.vote()
	if va == nil {
		t.Fatal("no vote for the first proposal")
	}
	s.propose(b, nil)
	if s.vote() != nil {
		t.Fatal("voted for a second block in round 1")
	}
	// The first proposal again: the same vote, re-sent.
	s.propose(a, nil)
	if v := s.vote(); v != nil && v.VoteInfo != va.VoteInfo {
		t.Fatal("re-sent vote differs")
	}
}

func TestWrongLeaderAndStaleProposalsIgnored(t *testing.T) {
	s := newSolo(t, 74)
	_, g := types.Genesis()
	wrong := &types.Block{Author: 2, Round: 1, QC: g}
	wrong.ID = wrong.ComputeID()
	s.ref.Speculate(wrong)
	s.propose(wrong, nil)
	if s.vote() != nil || s.me.Stats.StaleOrWrongLeader != 1 {
		t.Fatal("voted for a proposal by a replica that does not lead the round")
	}
	b1 := s.block(1, g, true)
	s.propose(b1, nil)
	b2 := s.block(2, s.qc(b1), true)
	s.propose(b2, nil)
	if s.me.CurrentRound() != 2 || s.vote() == nil {
		t.Fatal("no vote in round 2")
	}
	late := s.block(1, g, false)
	s.propose(late, nil)
	if s.vote() != nil || s.me.Stats.StaleOrWrongLeader != 2 {
		t.Fatal("voted for a proposal of a past round")
	}
	future := s.block(5, s.qc(b2), true) // round 5 without a TC for 4
	s.propose(future, nil)
	if s.vote() != nil {
		t.Fatal("voted for a block that skips rounds without a TC")
	}
}

// TestBrachaJoin: f+1 timeouts for the current round make the replica time
// out too; a quorum makes a TC and enters the next round.
func TestBrachaJoin(t *testing.T) {
	s := newSolo(t, 75)
	_, g := types.Genesis()
	b1 := s.block(1, g, true)
	s.propose(b1, nil)
	q1 := s.qc(b1)
	b2 := s.block(2, q1, true)
	s.propose(b2, nil) // round 2, voted
	s.timeout(2, 0, q1)
	if s.broadcastTimeout() != nil {
		t.Fatal("timed out after a single timeout (f = 1)")
	}
	s.timeout(2, 0, q1) // duplicate
	if s.broadcastTimeout() != nil {
		t.Fatal("a duplicate timeout counted")
	}
	s.timeout(2, 1, q1)
	own := s.broadcastTimeout()
	if own == nil || own.Timeout.Round != 2 || own.Timeout.Sender != 3 || own.Timeout.HighQC.Round() != 1 {
		t.Fatalf("no Bracha join at f+1 timeouts: %+v", own)
	}
	if err := s.c.com.VerifyTimeout(own); err != nil {
		t.Fatalf("own timeout does not verify: %v", err)
	}
	// Own timeout was the third: a TC, round 3.
	if s.me.CurrentRound() != 3 || s.me.Stats.TCs != 1 {
		t.Fatalf("round %d, %d TCs after a quorum of timeouts", s.me.CurrentRound(), s.me.Stats.TCs)
	}
	// A late proposal for round 2 gets no vote.
	s.propose(s.block(2, q1, false), nil)
	if s.vote() != nil {
		t.Fatal("voted in a round it timed out of")
	}
	// The round timer of round 3 fires again and again: the same timeout,
	// re-broadcast with a new attempt number, never re-signed differently.
	s.acts = s.me.OnTimer(core.Timer{Kind: core.RoundTimer, ID: 3})
	first := s.broadcastTimeout()
	s.acts = s.me.OnTimer(core.Timer{Kind: core.RoundTimer, ID: 3})
	second := s.broadcastTimeout()
	if first == nil || second == nil || string(first.Timeout.Signature) != string(second.Timeout.Signature) || first.Attempt == second.Attempt {
		t.Fatal("re-broadcast timeout differs or has the same attempt number")
	}
	if first.LastTC == nil || first.LastTC.Round != 2 {
		t.Fatal("timeout after a TC does not carry it")
	}
	// A stale round timer does nothing.
	if acts := s.me.OnTimer(core.Timer{Kind: core.RoundTimer, ID: 2}); len(acts) != 0 {
		t.Fatal("a stale round timer acted")
	}
}

// TestLeaderFetchesHighQCBlockBeforeProposing: a leader that learns the QC
// of a block it never received must not propose on it before it has the
// block: it cannot tell which requests the block already orders, and would
// order them a second time.
func TestLeaderFetchesHighQCBlockBeforeProposing(t *testing.T) {
	s := newSoloLeading(t, 76, 4)
	_, g := types.Genesis()
	b1 := s.block(1, g, true)
	s.propose(b1, nil)
	b2 := s.block(2, s.qc(b1), true)
	s.propose(b2, nil)
	// Block 3 carries request y; the core under test has y in its mempool
	// but never receives block 3.
	b3 := s.block(3, s.qc(b2), true)
	y := b3.Payload[0]
	other := *s.c.request(1)
	for _, r := range []*types.Request{&y, &other} {
		if _, err := s.me.OnRequest(r); err != nil {
			t.Fatalf("OnRequest: %v", err)
		}
	}
	q3 := s.qc(b3)
	s.timeout(4, 1, q3) // replica 1 gave up on round 4 already; its high QC is QC3
	if s.me.CurrentRound() != 4 {
		t.Fatalf("round %d after QC3, want 4", s.me.CurrentRound())
	}
	var asked bool
	for _, a := range s.acts {
		switch a := a.(type) {
		case core.BroadcastProposal:
			t.Fatalf("proposed on QC3 without block 3 (payload %d requests)", len(a.Proposal.Block.Payload))
		case core.SendBlockRequest:
			asked = asked || a.Request.ID == b3.ID
		}
	}
	if !asked {
		t.Fatal("did not fetch the high QC's block")
	}
	s.acts = s.me.OnBlockResponse(1, &types.BlockResponse{Blocks: []types.Block{*b3}})
	var p *types.Proposal
	for _, a := range s.acts {
		if bp, ok := a.(core.BroadcastProposal); ok {
			p = bp.Proposal
		}
	}
	if p == nil {
		t.Fatal("no proposal once the block arrived")
	}
	if p.Block.Round != 4 || p.Block.QC.VoteInfo != q3.VoteInfo {
		t.Fatalf("proposal of round %d on QC %d", p.Block.Round, p.Block.QC.Round())
	}
	for _, r := range p.Block.Payload {
		if r.Key() == y.Key() {
			t.Fatal("proposal orders a request its parent already holds")
		}
	}
	if len(p.Block.Payload) != 1 || p.Block.Payload[0].Key() != other.Key() {
		t.Fatalf("proposal payload %d requests, want the other request", len(p.Block.Payload))
	}
	if err := s.c.com.VerifyProposal(p, 10); err != nil {
		t.Fatalf("proposal does not verify: %v", err)
	}
}

// TestLateProposalBlockKept: a replica that moved past a round before that
// round's proposal arrived (the next proposal, carrying the QC, came first)
// keeps the late block as it would a fetched one: it does not vote for it,
// but the block enters the tree, the waiting proposal that extends it is
// voted on, and nothing has to be fetched again. A late block from a replica
// that did not lead its round is not kept.
func TestLateProposalBlockKept(t *testing.T) {
	s := newSolo(t, 75)
	_, g := types.Genesis()
	b1 := s.block(1, g, true)
	s.propose(b1, nil)
	b2 := s.block(2, s.qc(b1), true)
	b3 := s.block(3, s.qc(b2), true)
	s.propose(b3, nil) // b2's proposal is late: round 3 is entered through its QC
	if s.me.CurrentRound() != 3 || s.vote() != nil {
		t.Fatalf("round %d, vote %v: want round 3 and no vote before b2 is known", s.me.CurrentRound(), s.vote())
	}
	forged := &types.Block{Author: 2, Round: 2, QC: b2.QC, Payload: b2.Payload}
	forged.ID = forged.ComputeID()
	s.ref.Speculate(forged)
	s.propose(forged, nil)
	if _, ok := s.me.Block(forged.ID); ok {
		t.Fatal("kept a late block whose author did not lead its round")
	}
	s.propose(b2, nil)
	if _, ok := s.me.Block(b2.ID); !ok {
		t.Fatal("the late block of round 2 was dropped")
	}
	v := s.vote()
	if v == nil || v.VoteInfo.Round != 3 {
		t.Fatalf("vote %+v after the late block: want the vote for the waiting round-3 proposal", v)
	}
	for _, a := range s.acts {
		if _, ok := a.(core.SendBlockRequest); ok {
			t.Fatal("fetched a block after the late proposal supplied it")
		}
	}
}

// TestFetchAsksForFewBlocksThenDoubles: a replica missing the parent of a
// proposal asks for a few blocks, not a whole batch (at full load each is
// hundreds of operations to decode and verify), and for twice as many each
// time a fetched chain still lacks its parent.
func TestFetchAsksForFewBlocksThenDoubles(t *testing.T) {
	s := newSolo(t, 76)
	_, g := types.Genesis()
	chain := []*types.Block{s.block(1, g, true)}
	for r := types.Round(2); r <= 7; r++ {
		chain = append(chain, s.block(r, s.qc(chain[len(chain)-1]), true))
	}
	// The replica sees only the proposal of round 7 (it enters round 7 through
	// the QC of round 6) and lacks rounds 1..6.
	s.propose(chain[6], nil)
	var asked bool
	for _, req := range s.blockRequests() {
		if req.Count != 4 {
			t.Fatalf("first fetches %+v: want 4 blocks each", s.blockRequests())
		}
		asked = asked || req.ID == chain[5].ID
	}
	if !asked {
		t.Fatal("the parent of the proposal (round 6) was not fetched")
	}
	resp := &types.BlockResponse{}
	for i := 5; i >= 2; i-- { // rounds 6..3: round 2 is still missing
		resp.Blocks = append(resp.Blocks, *chain[i])
	}
	s.acts = s.me.OnBlockResponse(0, resp)
	reqs := s.blockRequests()
	if len(reqs) != 1 || reqs[0].ID != chain[1].ID || reqs[0].Count != 8 {
		t.Fatalf("second fetch %+v: want the block of round 2 and 8 blocks", reqs)
	}
	s.acts = s.me.OnBlockResponse(0, &types.BlockResponse{Blocks: []types.Block{*chain[1], *chain[0]}})
	if len(s.blockRequests()) != 0 || s.vote() == nil {
		t.Fatal("after the chain connected: want the vote for round 7 and no further fetch")
	}
}

func (s *solo) blockRequests() []*types.BlockRequest {
	var out []*types.BlockRequest
	for _, a := range s.acts {
		if r, ok := a.(core.SendBlockRequest); ok {
			out = append(out, r.Request)
		}
	}
	return out
}

// TestWaitingProposalKeptWhenItsRoundPasses: a proposal waits for its
// missing parent, and the round's QC arrives before the parent does. When
// the parent comes, the waiting block is too late to vote for but enters
// the tree as a late block would: the next leader, which proposes on QC3,
// need not wait for a fetch of it.
func TestWaitingProposalKeptWhenItsRoundPasses(t *testing.T) {
	s := newSolo(t, 77)
	_, g := types.Genesis()
	b1 := s.block(1, g, true)
	s.propose(b1, nil)
	b2 := s.block(2, s.qc(b1), true)
	b3 := s.block(3, s.qc(b2), true)
	s.propose(b3, nil) // b2 never arrived: b3 waits for it
	q3 := s.qc(b3)
	s.timeout(4, 1, q3) // round 3's QC arrives first: round 4
	if s.me.CurrentRound() != 4 {
		t.Fatalf("round %d after QC3, want 4", s.me.CurrentRound())
	}
	s.acts = s.me.OnBlockResponse(0, &types.BlockResponse{Blocks: []types.Block{*b2}})
	if _, ok := s.me.Block(b3.ID); !ok {
		t.Fatal("the waiting block of round 3 was dropped when its parent came after its round")
	}
	if s.vote() != nil {
		t.Fatal("voted for the block of a round already passed")
	}
	s.wantCommits("b2 arrives", []*types.Block{b2}, q3) // b1 went with QC2
}
