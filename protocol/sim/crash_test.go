package sim

import (
	"fmt"
	"testing"
	"time"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/types"
)

// leaderCrash runs n = 3f+1 replicas under load with reputation election and
// crashes, for good, a leader soon after crashAt. ahead 0: the leader of the
// round replica 0 enters first after crashAt. ahead 1: the leader of round
// r+1, when the leader of round r enters round r (its proposal is on the
// way; the votes on it go to the dead replica, which must aggregate them
// and lead round r+1). It returns the longest run of consecutive rounds ended by a
// timeout that any live replica went through after the crash (the number of
// rounds entered by a TC in a row), and the run's result.
func leaderCrash(f int, seed uint64, crashAt time.Duration, ahead types.Round) (int, types.ReplicaID, *Result) {
	cfg := Default(f, seed)
	cfg.Election = leader.Reputation
	cfg.Clients, cfg.RequestsPerClient = 2, 60 // about 280 ms of load without a crash
	cfg.MaxRequests = 2
	cfg.Horizon = 20 * time.Second
	// Latency as on one host or a LAN (the bench). With the default 1-10 ms
	// proposals overtake each other, a replica is often fetching a block
	// when the leader dies, and a round it cannot judge adds a third timeout
	// in about 1 run in 150 (a second fault, not the election's).
	cfg.MaxLatency = 4 * time.Millisecond
	crashed := -1
	var crashTime time.Duration
	run := make([]int, cfg.N)
	longest := 0
	cfg.Byzantine = func(s *Sim, node int, acts []core.Action) []core.Action {
		for _, a := range acts {
			nr, ok := a.(core.NewRound)
			if !ok {
				continue
			}
			trigger := node == 0
			if ahead > 0 {
				trigger = int(s.nodes[node].core.Leader(nr.Round)) == node
			}
			if crashed < 0 && trigger && s.Now() >= crashAt {
				crashed, crashTime = int(s.nodes[node].core.Leader(nr.Round+ahead)), s.Now()
				s.CrashAt(crashed, s.Now(), 0)
			}
			if crashed < 0 || node == crashed || s.Now() < crashTime {
				continue
			}
			if nr.ByTC {
				run[node]++
				longest = max(longest, run[node])
			} else {
				run[node] = 0
			}
		}
		return acts
	}
	res := New(cfg).Run()
	if crashed < 0 {
		res.Violations = append(res.Violations, fmt.Sprintf("no crash: the run ended at %v, before crashAt %v", res.Time, crashAt))
	}
	return longest, types.ReplicaID(crashed), res
}

// TestLeaderCrashTimeouts (issue #8): after kill -9 of the leader, at most one
// round ends by timeout: the dead leader's round (or the round whose votes
// went to it). With the paper's rules it was four (the dead replica stayed
// "active" in the reputation window, and the round-robin fallback ⌊r/2⌋ mod n
// gave it two rounds in a row); with 407edf7's rules two.
func TestLeaderCrashTimeouts(t *testing.T) {
	for _, f := range []int{1, 2} {
		worst := 0
		for seed := uint64(1); seed <= 25; seed++ {
			crashAt := time.Duration(60+seed*37%180) * time.Millisecond
			longest, x, res := leaderCrash(f, seed, crashAt, 0)
			if !res.OK() {
				t.Fatalf("seed %d f %d (crashed %d): %v\nreproduce: go test ./protocol/sim -run TestLeaderCrashTimeouts -v", seed, f, x, res.Violations)
			}
			if longest > 1 {
				t.Fatalf("seed %d f %d: %d consecutive rounds ended by timeout after replica %d crashed at %v, want at most 1", seed, f, longest, x, crashAt)
			}
			worst = max(worst, longest)
		}
		fmt.Printf("f=%d: at most %d consecutive timeout rounds after a leader crash (25 seeds)\n", f, worst)
	}
}

// TestNextLeaderCrashOneTimeout (issue #8, the case measured on the real
// system): the replica killed is the leader of the round after the one in
// progress, elected by reputation from a QC it signed before it died. Round
// r's votes go to it, so round r ends by a timeout (unavoidable); round r+1
// must not, so its leader after the TC of round r is neither the dead
// aggregator nor the leader of round r, and round r+1's votes go to a live
// leader of round r+2. At most one round in a row ends by a timeout.
func TestNextLeaderCrashOneTimeout(t *testing.T) {
	seeds := uint64(60)
	if testing.Short() {
		seeds = 15
	}
	for _, f := range []int{1, 2} {
		worst, hist := 0, map[int]int{}
		for seed := uint64(1); seed <= seeds; seed++ {
			crashAt := time.Duration(60+seed*37%180) * time.Millisecond
			longest, x, res := leaderCrash(f, seed, crashAt, 1)
			if !res.OK() {
				t.Fatalf("seed %d f %d (crashed %d): %v\nreproduce: go test ./protocol/sim -run TestNextLeaderCrashOneTimeout -v", seed, f, x, res.Violations)
			}
			if longest > 1 {
				t.Errorf("seed %d f %d: %d consecutive rounds ended by timeout after replica %d (the next leader) crashed at %v, want at most 1", seed, f, longest, x, crashAt)
			}
			worst = max(worst, longest)
			hist[longest]++
		}
		fmt.Printf("f=%d: at most %d consecutive timeout rounds after the next leader crashed (%d seeds; runs by longest: %v)\n", f, worst, seeds, hist)
	}
}

// TestVotesAgreeOnNextLeader: without faults, every replica sends its vote
// of a round to the same next leader, also one that got a QC before the
// block it commits (proposals overtake each other at up to 10 ms of
// latency, and the replica fetches): it elects that round's leader again
// once it has committed (leader.Election.Retry). Before, it kept the
// fallback leader: 3 of 4,060 rounds over 20 seeds here, 8-12 of ~1,000 in
// a throughput bench, each a lost round when a replica is down.
func TestVotesAgreeOnNextLeader(t *testing.T) {
	for seed := uint64(1); seed <= 16; seed++ {
		cfg := Default(1, seed)
		cfg.Election = leader.Reputation
		cfg.Clients, cfg.RequestsPerClient = 2, 200
		cfg.MaxRequests = 2
		cfg.Horizon = 5 * time.Second
		cfg.MaxLatency = 10 * time.Millisecond
		to := map[types.Round]map[int]types.ReplicaID{}
		cfg.Byzantine = func(s *Sim, node int, acts []core.Action) []core.Action {
			// A vote is a PersistSafety with its block, then a SendVote, or
			// nothing more when this replica is the next leader (it keeps
			// its vote): that counts as sent to itself.
			var voted *types.Block
			record := func(dest types.ReplicaID) {
				if to[voted.Round] == nil {
					to[voted.Round] = map[int]types.ReplicaID{}
				}
				to[voted.Round][node] = dest
			}
			for _, a := range acts {
				switch a := a.(type) {
				case core.PersistSafety:
					if voted != nil {
						record(types.ReplicaID(node))
					}
					voted = a.Block
				case core.SendVote:
					if voted != nil {
						record(a.To)
						voted = nil
					}
				}
			}
			if voted != nil {
				record(types.ReplicaID(node))
			}
			return acts
		}
		if res := New(cfg).Run(); !res.OK() {
			t.Fatalf("seed %d: %v", seed, res.Violations)
		}
		for r, m := range to {
			seen := map[types.ReplicaID]bool{}
			for _, l := range m {
				seen[l] = true
			}
			if len(seen) > 1 {
				t.Errorf("seed %d: round %d's votes went to different leaders: %v (replica: leader)", seed, r, m)
			}
		}
	}
}
