package olympus

import (
	"fmt"

	"github.com/diembft/diembft/olympus/config"
)

// ParamsFromConfig takes the roster parameters from an experiment config.
func ParamsFromConfig(cfg *config.Config) Params {
	return Params{
		DeltaMs:        cfg.Timing.DeltaMs,
		RoundTimeoutMs: cfg.Timing.RoundTimeoutMs,
		Backoff:        cfg.Timing.Backoff,
		BackoffCap:     cfg.Timing.BackoffCap,
		Election:       cfg.Leader.Election,
		WindowSize:     cfg.Leader.WindowSize,
		ExcludeSize:    cfg.Leader.ExcludeSize,
		MaxRequests:    cfg.Block.MaxRequests,
	}
}

// DefaultParams are the experiment config's defaults for a committee that
// tolerates f faults (exclude_size defaults to f). The config package owns
// the defaults; this asks it rather than repeating them.
func DefaultParams(f int) (Params, error) {
	doc := fmt.Sprintf("name = \"defaults\"\n[committee]\nf = %d\n", f)
	cfg, err := config.Parse([]byte(doc), "defaults")
	if err != nil {
		return Params{}, err
	}
	return ParamsFromConfig(cfg), nil
}
