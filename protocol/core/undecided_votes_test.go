package core_test

import (
	"crypto/ed25519"
	"testing"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/ledger"
	"github.com/diembft/diembft/protocol/types"
)

// undecidedChain is a crafted reputation-election history of n = 4: a chain
// of consecutive rounds 1..len-1, each block by the leader that a reference
// core (replica 2, which sees every proposal) elects, and each certified by
// all four replicas (so that replica 3 is a reputation candidate). The
// reference's choices are read as the blocks' authors: it prunes old ones.
type undecidedChain struct {
	t      *testing.T
	c      *cluster
	ref    *core.Core     // replica 2, sees everything
	led    *ledger.Memory // state ids of the crafted blocks
	blocks []*types.Block // blocks[k] is round k's block (blocks[0] genesis)
	qcs    []*types.QC    // qcs[k] certifies blocks[k]
	byID   map[types.Hash]*types.Block
}

func newUndecidedChain(t *testing.T, seed int64, rounds types.Round) *undecidedChain {
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: seed, mode: leader.Reputation})
	u := &undecidedChain{t: t, c: c, ref: c.reputationCore(2), led: ledger.NewMemory(), byID: map[types.Hash]*types.Block{}}
	g, gqc := types.Genesis()
	u.blocks, u.qcs = []*types.Block{g}, []*types.QC{gqc}
	for k := types.Round(1); k < rounds; k++ {
		b := crafted(t, u.led, &types.Block{Author: u.ref.Leader(k), Round: k, QC: u.qcs[k-1]})
		u.ref.OnProposal(u.proposal(b))
		u.blocks, u.byID[b.ID] = append(u.blocks, b), b
		u.qcs = append(u.qcs, c.certify(u.led, b, 0, 1, 2, 3))
	}
	return u
}

// leader is the leader of round k as the reference elected it.
func (u *undecidedChain) leader(k types.Round) types.ReplicaID { return u.blocks[k].Author }

// vote is sender's vote for round r's block, with the sync info a voter
// that has seen everything up to round r carries.
func (u *undecidedChain) vote(r types.Round, sender types.ReplicaID) *types.VoteMsg {
	vi, lci := voteOn(u.led, u.blocks[r])
	m := &types.VoteMsg{
		Vote: types.Vote{VoteInfo: vi, LedgerCommitInfo: lci, Sender: sender, Signature: ed25519.Sign(u.c.keys[sender], lci.SignBytes(chainID))},
		Sync: types.SyncInfo{HighQC: u.qcs[r-1], HighCommitQC: u.qcs[r-1]},
	}
	if err := u.c.com.VerifyVote(m); err != nil {
		u.t.Fatalf("crafted vote of round %d does not verify: %v", r, err)
	}
	return m
}

func (u *undecidedChain) proposal(b *types.Block) *types.Proposal { return u.c.proposal(u.t, b, nil) }

// serve plays the network for `me`: it answers its block requests from the
// crafted chain and fires its propose timers, never a round timer, until it
// proposes. It fails the test if `me` times out.
func (u *undecidedChain) serve(me *core.Core, acts []core.Action) *types.Proposal {
	u.t.Helper()
	for steps := 0; len(acts) > 0 && steps < 100; steps++ {
		a := acts[0]
		acts = acts[1:]
		switch a := a.(type) {
		case core.BroadcastProposal:
			return a.Proposal
		case core.BroadcastTimeout:
			u.t.Fatalf("replica %d timed out in round %d", me.ID(), a.Timeout.Timeout.Round)
		case core.SendBlockRequest:
			resp := &types.BlockResponse{}
			for id := a.Request.ID; len(resp.Blocks) < int(a.Request.Count); {
				b, ok := u.byID[id]
				if !ok {
					break
				}
				resp.Blocks = append(resp.Blocks, *b)
				id = b.ParentID()
			}
			if err := u.c.com.VerifyBlockResponse(resp); err != nil {
				u.t.Fatal(err)
			}
			acts = append(acts, me.OnBlockResponse(a.To, resp)...)
		case core.SetTimer:
			if a.Timer.Kind == core.ProposeTimer {
				acts = append(acts, me.OnTimer(a.Timer)...)
			}
		}
	}
	return nil
}

// TestUndecidedLeaderKeepsVotes: replica 3 lags: it missed the blocks of
// rounds r-3 .. r-1 and gets round r's proposal (parent missing) and the
// round r votes of 0, 1, 2, which elected 3 for round r+1 from QC(r-1).
// Replica 3 holds QC(r-1) (it came with the messages) but not the block it
// commits, so its election of round r+1 waits (Retry) and it guesses the
// fallback leader, another replica. It must keep the votes anyway: once the
// fetched blocks commit and Retry elects it, it proposes round r+1 with the
// QC aggregated from those votes, with no round timeout. Dropping them (the
// old rule) left it leader of r+1 without a quorum: the round was lost.
func TestUndecidedLeaderKeepsVotes(t *testing.T) {
	forUndecided(t, func(seed int64, u *undecidedChain, l *core.Core, r types.Round, acts []core.Action) bool {
		for _, v := range []types.ReplicaID{0, 1, 2} {
			acts = append(acts, l.OnVote(u.vote(r, v))...)
		}
		if got := l.HighQC().Round(); got != r || l.CurrentRound() != r+1 {
			t.Fatalf("seed %d: replica 3 (undecided about round %d, guessing %d) dropped the votes sent to it: high QC round %d, round %d",
				seed, r+1, l.Leader(r+1), got, l.CurrentRound())
		}
		p := u.serve(l, acts)
		if p == nil {
			t.Fatalf("seed %d: replica 3, elected for round %d once its commits caught up (leader now %d), did not propose; round %d, high QC %d",
				seed, r+1, l.Leader(r+1), l.CurrentRound(), l.HighQC().Round())
		}
		b := &p.Block
		if b.Round != r+1 || b.Author != 3 || b.QC.VoteInfo.ID != u.blocks[r].ID || p.LastTC != nil {
			t.Fatalf("seed %d: proposal of round %d by %d on QC of round %d (last TC %v), want round %d on round %d's block",
				seed, b.Round, b.Author, b.QC.Round(), p.LastTC != nil, r+1, r)
		}
		// The QC is the one aggregated here from the kept votes (the
		// chain's QCs carry all four signatures).
		if len(b.QC.Signatures) != 3 {
			t.Fatalf("seed %d: the proposal's QC has %d signatures, want the 3 kept votes", seed, len(b.QC.Signatures))
		}
		return true
	})
}

// forUndecided sets replica 3 up as a laggard, for each seed and round r of
// crafted chains where replica 3 leads round r+1 and not round r: it missed
// the blocks of rounds r-3 .. r-1 and gets round r's proposal (parent
// missing). Where it then guesses another leader for r and r+1 (undecided
// about r+1), check gets it with the proposal's actions and reports whether
// it checked the case; the first case checked ends the test, and none fails it.
func forUndecided(t *testing.T, check func(seed int64, u *undecidedChain, l *core.Core, r types.Round, acts []core.Action) bool) {
	t.Helper()
	const me = types.ReplicaID(3)
	tried := 0
	for seed := int64(1); seed <= 10; seed++ {
		u := newUndecidedChain(t, seed, 40)
		for r := types.Round(10); r < 39; r++ {
			if u.leader(r+1) != me || u.leader(r) == me {
				continue
			}
			l := u.c.reputationCore(me)
			for k := types.Round(1); k <= r-4; k++ {
				l.OnProposal(u.proposal(u.blocks[k]))
			}
			acts := l.OnProposal(u.proposal(u.blocks[r]))
			if l.Leader(r) == me || l.Leader(r+1) == me {
				continue // the fallback guess is replica 3: the old rule kept the votes too
			}
			tried++
			if check(seed, u, l, r, acts) {
				return
			}
		}
	}
	t.Fatalf("no seed gives a round whose leader replica 3 cannot know yet and that the test can check (%d tried)", tried)
}

// TestDecidedNonLeaderDropsVotes: a replica that holds the history and the
// QC electing round r+1, and is not its leader, still drops round r's
// votes: only the undecided keep them.
func TestDecidedNonLeaderDropsVotes(t *testing.T) {
	const me = types.ReplicaID(3)
	u := newUndecidedChain(t, 1, 30)
	checked := 0
	for r := types.Round(10); r < 29 && checked < 3; r++ {
		if u.leader(r+1) == me {
			continue
		}
		l := u.c.reputationCore(me)
		for k := types.Round(1); k <= r; k++ {
			l.OnProposal(u.proposal(u.blocks[k]))
		}
		if l.Leader(r+1) != u.leader(r+1) {
			t.Fatalf("round %d: replica 3 elects %d, the reference %d", r+1, l.Leader(r+1), u.leader(r+1))
		}
		for _, v := range []types.ReplicaID{0, 1, 2} {
			l.OnVote(u.vote(r, v))
		}
		if l.Stats.QCs != 0 || l.HighQC().Round() >= r {
			t.Fatalf("round %d: replica 3, not the leader of round %d (%d is), aggregated the votes sent to it: %d QCs, high QC round %d",
				r, r+1, l.Leader(r+1), l.Stats.QCs, l.HighQC().Round())
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no round checked")
	}
}

// TestUndecidedReplicaDropsVotesAfterTC: replica 3 is undecided about round
// r+1 as in TestUndecidedLeaderKeepsVotes, but round r timed out first: it
// forms TC(r) from the timeouts of 0 and 1 (joining with its own). The
// others have moved on to round r+1's fallback leader, and a late QC(r)
// here would change its choice of the next leaders (a TC with a QC of its
// round known no longer fails the round), so it must drop round r's votes
// even though its election of r+1 still waits for history.
func TestUndecidedReplicaDropsVotesAfterTC(t *testing.T) {
	forUndecided(t, func(seed int64, u *undecidedChain, l *core.Core, r types.Round, _ []core.Action) bool {
		for _, s := range []types.ReplicaID{0, 1, 2} {
			l.OnTimeout(u.c.timeout(t, r, s, u.qcs[r-1]))
		}
		if l.Stats.TCs != 1 || l.CurrentRound() != r+1 {
			t.Fatalf("seed %d: replica 3 formed %d TCs from round %d's timeouts, round %d", seed, l.Stats.TCs, r, l.CurrentRound())
		}
		if l.Leader(r+1) == 3 {
			return false // the fallback after the TC is replica 3: the votes are its own
		}
		qcs := l.Stats.QCs
		for _, v := range []types.ReplicaID{0, 1, 2} {
			l.OnVote(u.vote(r, v))
		}
		if l.Stats.QCs != qcs || l.HighQC().Round() >= r {
			t.Fatalf("seed %d: replica 3, holding TC(%d) and undecided about round %d (leader now %d), aggregated round %d's votes: %d QCs, high QC round %d",
				seed, r, r+1, l.Leader(r+1), r, l.Stats.QCs-qcs, l.HighQC().Round())
		}
		return true
	})
}
