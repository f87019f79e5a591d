package sim

import (
	"testing"
	"time"

	"github.com/diembft/diembft/protocol/types"
)

// TestWholeCommitteeRestartAfterTimeouts: every proposal is lost for a
// while, so rounds end by TCs one after another; then every replica stops
// at once (a power cut, or an operator restarting the committee) and
// restarts from its persisted state. A replica that timed out round r holds
// highest_vote_round r, so it may sign a timeout only for r or later, and
// safe_to_timeout needs a QC or TC of the round before; its high QC is far
// below, and the TCs lived only in memory. Before the highest TC was kept
// with the safety data, no replica could ever time out again (seen on the
// real system by the network audit: round unchanged and no timeout sent for
// minutes after a restart of all four).
func TestWholeCommitteeRestartAfterTimeouts(t *testing.T) {
	for seed := range uint64(12) {
		cfg := Default(1, seed)
		cfg.Clients, cfg.RequestsPerClient = 2, 20
		const cut, down, up = 200 * time.Millisecond, 1500 * time.Millisecond, 1600 * time.Millisecond
		// The restart moment is spread over the backed-off timeouts, so
		// replicas stop at different points of a round (some timed out the
		// newest round, some not yet).
		stop := down + time.Duration(seed*23)*time.Millisecond
		cfg.GST = up + time.Duration(seed*23)*time.Millisecond
		cfg.Horizon = cfg.GST + 30*time.Second
		cfg.Drop = func(now time.Duration, _, _ int, msg any) bool {
			_, proposal := msg.(*types.Proposal)
			return proposal && now >= cut && now < cfg.GST
		}
		for i := range cfg.N {
			cfg.Crashes = append(cfg.Crashes, Crash{Node: i, At: stop, RestartAt: cfg.GST})
		}
		res := New(cfg).Run()
		if !res.OK() {
			t.Fatalf("seed %d: %v", seed, res.Violations)
		}
		if res.RoundsByTC < 3 {
			t.Fatalf("seed %d: %d rounds by TC: the scenario did not time out rounds in a row", seed, res.RoundsByTC)
		}
	}
}
