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
// and lead round r+1). tweak, if given, adjusts the configuration. It
// returns the longest run of consecutive rounds ended by a timeout that any
// live replica went through after the crash (the number of rounds entered by
// a TC in a row), how many distinct rounds live replicas entered by a TC
// after it, the crashed replica and the run's result.
func leaderCrash(f int, seed uint64, crashAt time.Duration, ahead types.Round, tweak func(*Config)) (longest, byTC int, crashed types.ReplicaID, _ *Result) {
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
	if tweak != nil {
		tweak(&cfg)
	}
	dead := -1
	var crashTime time.Duration
	run := make([]int, cfg.N)
	tcRounds := map[types.Round]bool{}
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
			if dead < 0 && trigger && s.Now() >= crashAt {
				dead, crashTime = int(s.nodes[node].core.Leader(nr.Round+ahead)), s.Now()
				s.CrashAt(dead, s.Now(), 0)
			}
			if dead < 0 || node == dead || s.Now() < crashTime {
				continue
			}
			if nr.ByTC {
				tcRounds[nr.Round] = true
				run[node]++
				longest = max(longest, run[node])
			} else {
				run[node] = 0
			}
		}
		return acts
	}
	res := New(cfg).Run()
	if dead < 0 {
		res.Violations = append(res.Violations, fmt.Sprintf("no crash: the run ended at %v, before crashAt %v", res.Time, crashAt))
	}
	return longest, len(tcRounds), types.ReplicaID(dead), res
}

// crashTimeOf spreads the crash over the first 60-240 ms of load by seed.
func crashTimeOf(seed uint64) time.Duration { return time.Duration(60+seed*37%180) * time.Millisecond }

// TestLeaderCrashTimeouts (issue #8): after kill -9 of the leader, at most one
// round ends by timeout: the dead leader's round (or the round whose votes
// went to it). With the paper's rules it was four (the dead replica stayed
// "active" in the reputation window, and the round-robin fallback ⌊r/2⌋ mod n
// gave it two rounds in a row); with 407edf7's rules two.
func TestLeaderCrashTimeouts(t *testing.T) {
	for _, f := range []int{1, 2} {
		worst := 0
		for seed := uint64(1); seed <= 25; seed++ {
			crashAt := crashTimeOf(seed)
			longest, _, x, res := leaderCrash(f, seed, crashAt, 0, nil)
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
			crashAt := crashTimeOf(seed)
			longest, _, x, res := leaderCrash(f, seed, crashAt, 1, nil)
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

// lagging makes replica seed mod n lag (Config.Lagging): what reaches it
// takes 1–4 ms like all messages plus up to 12 or 20 ms more, out of order.
func lagging(f int, seed uint64) func(*Config) {
	return func(c *Config) {
		c.RequestsPerClient = 150 // the lagging replica slows the rounds
		c.Lagging = map[int]time.Duration{int(seed % uint64(3*f+1)): time.Duration(12+8*(seed%2)) * time.Millisecond}
	}
}

// TestLaggingReplicaLeaderCrash (issue #8, the failures measured on the real
// system, where a CPU-starved replica jumped rounds as the leader died):
// with one replica lagging, the crash of the current or the next leader
// costs one round by timeout in all, as without the laggard. Before
// commit ecb7c14 (leader.Election.Retry) and 5686aa2 (Decided) 42 % of the
// runs at f = 1 had two to seven timeout rounds in a row, after ecb7c14
// alone 6 %; keeping the votes that reach a replica still electing the
// next round's leader (core.processVote) took the last ones, and the runs
// with two separate timeout rounds, away.
func TestLaggingReplicaLeaderCrash(t *testing.T) {
	seeds := uint64(40)
	if testing.Short() {
		seeds = 20
	}
	for _, f := range []int{1, 2} {
		for ahead := types.Round(0); ahead <= 1; ahead++ {
			for seed := uint64(1); seed <= seeds; seed++ {
				crashAt := crashTimeOf(seed)
				longest, byTC, x, res := leaderCrash(f, seed, crashAt, ahead, lagging(f, seed))
				if !res.OK() {
					t.Fatalf("seed %d f %d ahead %d (crashed %d): %v\nreproduce: go test ./protocol/sim -run TestLaggingReplicaLeaderCrash -v", seed, f, ahead, x, res.Violations)
				}
				if byTC > 1 {
					t.Errorf("seed %d f %d ahead %d: %d rounds ended by timeout after replica %d crashed at %v (at most %d in a row), want at most 1", seed, f, ahead, byTC, x, crashAt, longest)
				}
			}
		}
	}
}

// TestLaggingReplicaNoTimeouts: without faults, a lagging replica costs no
// round by timeout. When it is elected by voters that committed more than
// it has, it keeps their votes until its own commits elect it too
// (core.processVote); it dropped them before, and 3 of 100 runs at f = 1
// had a round by timeout.
func TestLaggingReplicaNoTimeouts(t *testing.T) {
	seeds := []uint64{80, 20} // per f; without the fix seeds 17, 73 and 77 of f = 1 failed
	if testing.Short() {
		seeds = []uint64{20, 10}
	}
	for _, f := range []int{1, 2} {
		for seed := uint64(1); seed <= seeds[f-1]; seed++ {
			cfg := Default(f, seed)
			cfg.Clients, cfg.MaxRequests = 2, 2
			cfg.MaxLatency = 4 * time.Millisecond
			lagging(f, seed)(&cfg)
			res := New(cfg).Run()
			if !res.OK() {
				t.Fatalf("seed %d f %d: %v\nreproduce: go test ./protocol/sim -run TestLaggingReplicaNoTimeouts -v", seed, f, res.Violations)
			}
			if res.RoundsByTC > 0 {
				t.Errorf("seed %d f %d: %d rounds ended by timeout without a fault, want 0", seed, f, res.RoundsByTC)
			}
		}
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
