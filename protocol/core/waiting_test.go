package core_test

import (
	"testing"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/ledger"
	"github.com/diembft/diembft/protocol/types"
)

// jump is a reputation-election committee in which the core under test
// (replica 3) missed the proposal of round k, and a reference core
// (replica 2) saw everything: round k+1's leader, elected by the QC of round
// k-1 that only the missed block carries, is not decided at replica 3.
type jump struct {
	s      *solo
	ref    *core.Core
	k      types.Round
	leader types.ReplicaID // of round k+1, as the reference elected it
	missed *types.Block    // round k's block
	qcOfK  *types.QC
}

// newJump finds a seed whose leader of round k+1 differs from replica 3's
// fallback guess (else the old rule passed by luck).
func newJump(t *testing.T) *jump {
	t.Helper()
	for seed := int64(1); seed < 20; seed++ {
		c := newCluster(t, clusterOpts{n: 4, f: 1, seed: seed, mode: leader.Reputation})
		j := &jump{s: &solo{t: t, c: c, ref: ledger.NewMemory()}, ref: c.reputationCore(2)}
		j.s.me = c.reputationCore(3)
		_, qc := types.Genesis()
		for k := types.Round(1); k < 40; k++ {
			b := j.blockOf(j.ref.Leader(k), k, qc)
			p := j.proposal(b)
			j.ref.OnProposal(p)
			qc = j.s.qc(b)
			if next := j.ref.Leader(k + 1); k >= 6 && next != j.s.me.Leader(k+1) {
				j.k, j.leader, j.missed, j.qcOfK = k, next, b, qc
				return j
			}
			j.s.me.OnProposal(p)
		}
	}
	t.Fatal("no seed gives a round whose leader replica 3 cannot know yet")
	return nil
}

func (j *jump) blockOf(author types.ReplicaID, round types.Round, qc *types.QC) *types.Block {
	return crafted(j.s.t, j.s.ref, &types.Block{Author: author, Round: round, QC: qc})
}

func (j *jump) proposal(b *types.Block) *types.Proposal { return j.s.c.proposal(j.s.t, b, nil) }

func sentVotes(acts []core.Action) []core.SendVote {
	var out []core.SendVote
	for _, a := range acts {
		if v, ok := a.(core.SendVote); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestJumpedReplicaVotesForTheLeader: the replica that missed round k's
// proposal gets the leader's proposal of round k+1 without its parent. It
// must keep it, fetch the parent and, once it has it (and with it the QC
// that elects round k+1), vote for it and send the vote where the others
// do. Judged on arrival against the fallback leader, the proposal was
// dropped and the replica could not vote in round k+1.
func TestJumpedReplicaVotesForTheLeader(t *testing.T) {
	j := newJump(t)
	b := j.blockOf(j.leader, j.k+1, j.qcOfK)
	j.ref.OnProposal(j.proposal(b))
	if v := sentVotes(j.s.me.OnProposal(j.proposal(b))); len(v) != 0 {
		t.Fatalf("voted before the parent arrived: %+v", v)
	}
	v := sentVotes(j.s.me.OnBlockResponse(j.leader, &types.BlockResponse{Blocks: []types.Block{*j.missed}}))
	if len(v) != 1 || v[0].Vote.Vote.VoteInfo.ID != b.ID {
		t.Fatalf("want one vote for the leader's proposal of round %d, got %d (proposals dropped: %d)", j.k+1, len(v), j.s.me.Stats.StaleOrWrongLeader)
	}
	if want := j.ref.Leader(j.k + 2); v[0].To != want {
		t.Fatalf("vote sent to %d, the others send theirs to %d", v[0].To, want)
	}
}

// TestJumpedReplicaRefusesANonLeader: the proposal kept while the leader was
// undecided is judged when its parent arrives: one by a replica that is not
// the leader gets no vote.
func TestJumpedReplicaRefusesANonLeader(t *testing.T) {
	j := newJump(t)
	other := (j.leader + 1) % 3 // not the leader, not replica 3
	bad := j.blockOf(other, j.k+1, j.qcOfK)
	j.s.me.OnProposal(j.proposal(bad))
	if v := sentVotes(j.s.me.OnBlockResponse(other, &types.BlockResponse{Blocks: []types.Block{*j.missed}})); len(v) != 0 {
		t.Fatalf("voted for replica %d's proposal of round %d; the leader is %d", other, j.k+1, j.leader)
	}
}

// TestJumpedReplicaAsksTheLaterAuthorToo: a non-leader's proposal of round
// k+1 comes first and starts the parent's fetch from that replica; the
// leader's proposal then asks the leader as well, so a silent non-leader
// cannot hold the parent back, and the leader's answer brings the vote.
func TestJumpedReplicaAsksTheLaterAuthorToo(t *testing.T) {
	j := newJump(t)
	other := (j.leader + 1) % 3
	j.s.me.OnProposal(j.proposal(j.blockOf(other, j.k+1, j.qcOfK)))
	good := j.blockOf(j.leader, j.k+1, j.qcOfK)
	asked := false
	for _, a := range j.s.me.OnProposal(j.proposal(good)) {
		if r, ok := a.(core.SendBlockRequest); ok && r.To == j.leader && r.Request.ID == j.missed.ID {
			asked = true
		}
	}
	if !asked {
		t.Fatalf("the leader's proposal did not ask the leader (%d) for the parent under way from replica %d", j.leader, other)
	}
	v := sentVotes(j.s.me.OnBlockResponse(j.leader, &types.BlockResponse{Blocks: []types.Block{*j.missed}}))
	if len(v) != 1 || v[0].Vote.Vote.VoteInfo.ID != good.ID {
		t.Fatalf("want one vote, for the leader's proposal; got %d", len(v))
	}
}
