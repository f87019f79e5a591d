package node

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestRoundPhases: a synthetic trace of 4 replicas with known step times
// gives back those times, for the rounds proposed in the window only.
func TestRoundPhases(t *testing.T) {
	const n, f = 4, 1
	traces := make([][]TraceEvent, n)
	ev := func(i int, t int64, step string, r uint64, from int) {
		traces[i] = append(traces[i], TraceEvent{T: t, Step: step, Round: r, From: from})
	}
	leader := func(r uint64) int { return int(r % n) }
	for r := uint64(1); r <= 12; r++ {
		p := int64(r) * 10_000
		l, next := leader(r), leader(r+1)
		ev(l, p, StepPropose, r, -1)
		for i := range n {
			if i != l {
				ev(i, p+1_000, StepReceive, r, -1)
				ev(i, p+1_200, StepDeliver, r, -1)
			}
			if i == next {
				continue // the next leader votes for itself without a message
			}
			ev(i, p+2_000+int64(i), StepVote, r, -1)
			ev(next, p+2_500+int64(i), StepVoteIn, r, i)
		}
		// Round r's block commits when round r+2's proposal is delivered.
		for i := range n {
			if i != leader(r+2) {
				ev(i, p+20_000+1_200+300, StepCommit, r, -1)
				ev(i, p+20_000+1_200+1_000, StepReplied, r, -1)
			}
		}
	}
	got := map[string]Phase{}
	for _, ph := range RoundPhases(traces, f, 2*10_000, 9*10_000) { // rounds 2..8
		got[ph.Name] = ph
	}
	for _, want := range []Phase{
		{Name: "proposal to replicas", N: 7 * 3, P50Ms: 1},
		{Name: "validation", N: 7 * 3, P50Ms: 0.2},
		{Name: "processing, safety sync, vote", N: 7 * 2, P50Ms: 0.8},
		{Name: "vote to next leader", N: 7 * 3, P50Ms: 0.5},
		{Name: "quorum to next proposal", N: 7, P50Ms: 7.5},
		{Name: "round", N: 7, P50Ms: 10},
		{Name: "commit to committer", N: 7 * 3, P50Ms: 0.3},
		{Name: "execution, syncs, replies", N: 7 * 3, P50Ms: 0.7},
		{Name: "proposal to replies", N: 7 * 3, P50Ms: 22.2},
	} {
		g := got[want.Name]
		if g.N != want.N || !near(g.P50Ms, want.P50Ms) {
			t.Errorf("%s: n=%d p50=%.3f ms, want n=%d p50≈%.3f ms", want.Name, g.N, g.P50Ms, want.N, want.P50Ms)
		}
	}
}

func near(a, b float64) bool { return a > b-0.01 && a < b+0.01 }

// TestRoundTraceOfACommittee: the replicas of a committee write round traces
// with every step, and each phase of their rounds is measured and not
// negative.
func TestRoundTraceOfACommittee(t *testing.T) {
	c := newCluster(t, 1)
	for i := range c.cfgs {
		c.cfgs[i].RoundTrace = filepath.Join(c.homes[i], "rounds.trace")
		c.start(t, i)
	}
	tc := newTestClient(t, c)
	for i := uint64(1); i <= 20; i++ {
		tc.submit(i, fmt.Sprintf("put('k','v%d')", i))
	}
	waitFor(t, "all requests accepted", 30*time.Second, func() bool {
		_, ok := tc.accepted(20)
		return ok
	})
	traces := make([][]TraceEvent, len(c.cfgs))
	for i := range c.cfgs {
		c.halt(t, i)
		var err error
		if traces[i], err = ReadRoundTrace(c.cfgs[i].RoundTrace); err != nil {
			t.Fatal(err)
		}
	}
	for _, ph := range RoundPhases(traces, 1, 0, time.Now().UnixMicro()) {
		if ph.N == 0 || ph.P50Ms < 0 {
			t.Errorf("%s: n=%d p50=%.3f ms", ph.Name, ph.N, ph.P50Ms)
		}
		t.Logf("%-30s n=%4d p50 %.3f ms p90 %.3f ms", ph.Name, ph.N, ph.P50Ms, ph.P90Ms)
	}
}
