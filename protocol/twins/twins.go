// Package twins runs Twins scenarios (Bano et al., "Twins: BFT Systems Made
// Robust", OPODIS 2021) on the simulator with the real consensus core. f
// replicas run as two nodes sharing one consensus key but with distinct
// network identities, which lets an honest implementation produce every
// equivocation a Byzantine replica could; a scenario fixes, per round, the
// leader and a partition of the nodes. The executor checks safety (no two
// honest replicas commit different blocks at one height, no honest double
// vote) and that each scenario commits again once the network heals.
//
// Scenarios use Diem's JSON format so scenarios from other tools run
// unchanged: node ids 0..n-1 are the replicas and node n+k is the twin of
// replica k.
package twins

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/safety"
	"github.com/diembft/diembft/protocol/sim"
	"github.com/diembft/diembft/protocol/types"
)

// File is the Diem scenario file format.
type File struct {
	NumOfNodes int        `json:"num_of_nodes"`
	NumOfTwins int        `json:"num_of_twins"`
	Scenarios  []Scenario `json:"scenarios"`
}

// Scenario fixes leaders and partitions for some rounds.
type Scenario struct {
	RoundLeaders    map[string]int     `json:"round_leaders"`
	RoundPartitions map[string][][]int `json:"round_partitions"`
}

// describeJSON says a decoding error in the file's terms rather than Go's
// ("cannot unmarshal array into Go value of type twins.File").
func describeJSON(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		where := te.Field
		if where == "" {
			where = "the file"
		}
		want := map[reflect.Kind]string{reflect.Struct: "an object", reflect.Map: "an object", reflect.Slice: "an array", reflect.Int: "an integer"}[te.Type.Kind()]
		if te.Type == reflect.TypeFor[File]() {
			want = `an object {"num_of_nodes", "num_of_twins", "scenarios"}`
		}
		return fmt.Errorf("%s: a JSON %s where %s is wanted", where, te.Value, cmp.Or(want, te.Type.Kind().String()))
	case errors.As(err, &se):
		return fmt.Errorf("not JSON (%v at byte %d)", strings.TrimPrefix(se.Error(), "json: "), se.Offset)
	}
	return err
}

// Parse reads a scenario file and checks it.
func Parse(data []byte) (*File, error) {
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("twins scenarios: %w", describeJSON(err))
	}
	if f.NumOfNodes < 4 || f.NumOfTwins < 0 || f.NumOfTwins > (f.NumOfNodes-1)/3 {
		return nil, fmt.Errorf("twins scenarios: need num_of_nodes >= 4 and 0 <= num_of_twins <= f, got %d and %d", f.NumOfNodes, f.NumOfTwins)
	}
	total := f.NumOfNodes + f.NumOfTwins
	for i, s := range f.Scenarios {
		for r, l := range s.RoundLeaders {
			if _, err := parseRound(r); err != nil || l < 0 || l >= total {
				return nil, fmt.Errorf("twins scenario %d: round_leaders[%q] = %d is invalid", i, r, l)
			}
		}
		for r, parts := range s.RoundPartitions {
			if _, err := parseRound(r); err != nil {
				return nil, fmt.Errorf("twins scenario %d: round_partitions key %q is not a round", i, r)
			}
			for _, g := range parts {
				for _, n := range g {
					if n < 0 || n >= total {
						return nil, fmt.Errorf("twins scenario %d: round %s: node %d does not exist", i, r, n)
					}
				}
			}
		}
	}
	return &f, nil
}

func parseRound(s string) (types.Round, error) {
	r, err := strconv.ParseUint(s, 10, 64)
	if err != nil || r == 0 {
		return 0, fmt.Errorf("bad round %q", s)
	}
	return types.Round(r), nil
}

// Options configure the executor.
type Options struct {
	// HealingRounds are added after the last scenario round with full
	// connectivity and the default election; a commit must happen in them.
	HealingRounds int
	// Control selects a deliberately broken core (negative controls).
	Control safety.Control
	// Seed seeds the simulator's latency (scenarios are otherwise fixed).
	Seed uint64
	// ByzantineTwins makes every twin node also a Byzantine proposer: after
	// a TC it proposes on an older QC than the TC's highest, and votes for
	// that block (byzantine.go). It exposes the QC-round lock, which honest
	// leaders with piggybacked SyncInfo never test.
	ByzantineTwins bool
}

// Outcome is the result of one scenario.
type Outcome struct {
	Violations []string
	Committed  bool // every honest replica committed in the healing rounds
	Rounds     types.Round
}

// Run executes one scenario.
func Run(f *File, s *Scenario, opt Options) Outcome {
	n := f.NumOfNodes
	fault := (n - 1) / 3
	lastRound := types.Round(0)
	leaders := map[types.Round]types.ReplicaID{}
	for k, l := range s.RoundLeaders {
		r, _ := parseRound(k)
		lastRound = max(lastRound, r)
		if l >= n {
			l -= n // a twin leads as its replica: both instances are leaders
		}
		leaders[r] = types.ReplicaID(l)
	}
	parts := map[types.Round]map[int]int{} // round -> node -> group
	for k, groups := range s.RoundPartitions {
		r, _ := parseRound(k)
		lastRound = max(lastRound, r)
		m := map[int]int{}
		for gi, g := range groups {
			for _, node := range g {
				m[node] = gi
			}
		}
		parts[r] = m
	}
	healing := opt.HealingRounds
	if healing <= 0 {
		healing = DefaultHealingRounds
	}
	cfg := sim.Default(fault, opt.Seed)
	cfg.N = n
	cfg.Verify = false
	cfg.Election = leader.RoundRobin
	cfg.FixedLeaders = leaders
	cfg.Control = opt.Control
	cfg.MinLatency, cfg.MaxLatency = time.Millisecond, 3*time.Millisecond
	cfg.Clients, cfg.RequestsPerClient = 2, 20
	cfg.MaxRequests = 2 // small blocks: payloads differ between twins and rounds
	for k := 0; k < f.NumOfTwins; k++ {
		cfg.Twins = append(cfg.Twins, types.ReplicaID(k))
	}
	var sm *sim.Sim
	// A message belongs to the round its sender is in; in a partitioned
	// round only nodes of the same group hear each other. A partition may
	// leave no group with a quorum, and then no one can leave the round: the
	// partition of round r therefore lasts only until r·Slot of virtual time,
	// after which round r is connected and ends with a QC or a TC.
	slot := 3 * cfg.RoundTimeout
	cfg.Drop = func(now time.Duration, from, to int, msg any) bool {
		r := sm.NodeRound(from)
		p, ok := parts[r]
		if !ok || now >= time.Duration(r)*slot {
			return false
		}
		gf, okf := p[from]
		gt, okt := p[to]
		return !okf || !okt || gf != gt
	}
	if opt.ByzantineTwins {
		b := newStaleProposer(n)
		cfg.Drop = b.drop(cfg.Drop)
		cfg.Byzantine = b.rewrite
	}
	cfg.StopAtRound = lastRound + types.Round(healing)
	cfg.HealAfterRound = lastRound
	cfg.Horizon = time.Duration(cfg.StopAtRound+5) * slot
	sm = sim.New(cfg)
	res := sm.Run()
	out := Outcome{Rounds: res.Rounds}
	for _, v := range res.Violations {
		if !isLiveness(v) {
			out.Violations = append(out.Violations, v)
		}
	}
	out.Committed = res.CommittedAfterHeal
	return out
}

// DefaultHealingRounds is enough rounds for a 2-chain commit after the
// pacemaker resynchronises (a TC, then three rounds with honest leaders).
const DefaultHealingRounds = 10

func isLiveness(v string) bool {
	return strings.Contains(v, "liveness:") || strings.Contains(v, "P4:")
}
