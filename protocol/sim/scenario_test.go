package sim

import (
	"strings"
	"testing"
	"time"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/types"
)

func TestSameSeedSameTrace(t *testing.T) {
	for _, seed := range []uint64{3, 17, 99} {
		a := New(Random(1, seed)).Run()
		b := New(Random(1, seed)).Run()
		if a.TraceHash != b.TraceHash || a.Steps != b.Steps {
			t.Fatalf("seed %d: two runs differ: %s/%d vs %s/%d", seed, a.TraceHash, a.Steps, b.TraceHash, b.Steps)
		}
		c := New(Random(1, seed+1000)).Run()
		if c.TraceHash == a.TraceHash {
			t.Fatalf("seeds %d and %d gave the same trace", seed, seed+1000)
		}
	}
}

// restartScenario: replica 1 leads round 6 and equivocates: everyone gets
// proposal A; replica 0 crashes right after voting for A, restarts, and then
// receives a different proposal B for the same round. With its safety data
// persisted it refuses B; without, it signs a second vote in round 6.
//
// From A's broadcast on, replica 0 hears nothing but round-6 proposals, so
// that it is still in round 6 when B arrives. (It used to hear replica 1's
// other messages and the others' until 15 ms later: by its crash it was in
// round 8, which it led, and the refusal and the double vote these tests
// saw were those of its own second proposal for round 8 after the restart,
// the bug fixed with core.Config.Safety's HighestVoteRound bounding the
// rounds a restarted leader proposes in; B arrived stale.)
func restartScenario(noPersist bool) *Result {
	cfg := Default(1, 7)
	cfg.Election = leader.RoundRobin
	cfg.FixedLeaders = map[types.Round]types.ReplicaID{6: 1}
	cfg.ByzantineNodes = []int{1}
	cfg.NoPersist = noPersist
	cfg.Horizon = 10 * time.Second
	cfg.RequestsPerClient = 40 // keep payloads non-empty around round 6
	cfg.MaxRequests = 2
	done := false
	var isolateFrom, isolateTo time.Duration
	cfg.Drop = func(now time.Duration, from, to int, msg any) bool {
		if to != 0 || now < isolateFrom || now >= isolateTo {
			return false
		}
		p, ok := msg.(*types.Proposal)
		return !ok || from != 1 || p.Block.Round != 6
	}
	cfg.Byzantine = func(s *Sim, node int, acts []core.Action) []core.Action {
		if node != 1 || done {
			return acts
		}
		for _, a := range acts {
			bp, ok := a.(core.BroadcastProposal)
			if !ok || bp.Proposal.Block.Round != 6 {
				continue
			}
			done = true
			alt := *bp.Proposal
			alt.Block.Payload = nil
			alt.Block.ID = alt.Block.ComputeID()
			alt.Signature = s.Signer(1).Sign(types.ProposalSignBytes(s.Committee().ChainID, alt.Block.ID, 6))
			isolateFrom, isolateTo = s.Now(), s.Now()+500*time.Millisecond
			s.CrashAt(0, s.Now()+20*time.Millisecond, s.Now()+25*time.Millisecond)
			s.SendAfter(1, 0, &alt, 40*time.Millisecond)
		}
		return acts
	}
	return New(cfg).Run()
}

func TestRestartKeepsSafetyData(t *testing.T) {
	res := restartScenario(false)
	if !res.OK() {
		t.Fatalf("with persistence: %v", res.Violations)
	}
	if res.Refused[0] == 0 {
		t.Fatal("replica 0 never had to refuse proposal B: the scenario did not exercise the restart")
	}
}

func TestNegativeControlNoPersistDoubleVotes(t *testing.T) {
	res := restartScenario(true)
	if res.OK() || !strings.Contains(strings.Join(res.Violations, " "), "double vote: replica 0 voted") || !strings.Contains(strings.Join(res.Violations, " "), "in round 6") {
		t.Fatalf("without persistence the restarted replica should double-vote; got %v", res.Violations)
	}
}
