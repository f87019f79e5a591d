package twins

import (
	"encoding/json"
	"flag"
	"testing"
	"time"

	"github.com/diembft/diembft/protocol/safety"
)

var scenarios = flag.Int("scenarios", 2000, "Twins scenarios to run for n = 4")

func runAll(t *testing.T, f *File, opt Options) (violations, uncommitted int, first string) {
	for i := range f.Scenarios {
		out := Run(f, &f.Scenarios[i], opt)
		if len(out.Violations) > 0 {
			violations++
			if first == "" {
				b, _ := json.Marshal(f.Scenarios[i])
				first = out.Violations[0] + "\nscenario: " + string(b)
			}
		}
		if !out.Committed {
			uncommitted++
			if first == "" {
				b, _ := json.Marshal(f.Scenarios[i])
				first = "no commit in healing rounds\nscenario: " + string(b)
			}
		}
	}
	return
}

func TestTwinsN4(t *testing.T) {
	const seed = 1
	f, err := Generate(Shape{Nodes: 4, Twins: 1, Partitions: 2, Rounds: 8}, *scenarios, true, seed)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Scenarios) < *scenarios {
		t.Fatalf("generated %d scenarios, want %d", len(f.Scenarios), *scenarios)
	}
	start := time.Now()
	v, u, first := runAll(t, f, Options{Seed: seed})
	t.Logf("%d scenarios in %v (%.0f/s)", len(f.Scenarios), time.Since(start), float64(len(f.Scenarios))/time.Since(start).Seconds())
	if v > 0 || u > 0 {
		t.Fatalf("seed %d: %d safety violations, %d scenarios without a commit in healing; first: %s", seed, v, u, first)
	}
}

// Each negative control is a deliberately broken core; the harness must
// find a safety violation within 10,000 scenarios.
//
// The QC-round lock is never exercised by honest code plus twins: every
// message carries the sender's high QC (SyncInfo), so an honest leader
// always holds a QC at least as high as any TC it extends. Its control runs
// with Byzantine twins (Options.ByzantineTwins), which after a TC propose
// on an older QC and vote for that block; TestByzantineTwinsN4 checks that
// the real core stays safe and live against them.
func TestNegativeControls(t *testing.T) {
	controls := map[string]Options{
		"no highest-vote-round update": {Control: safety.Control{NoVoteRoundUpdate: true}},
		"no QC-round lock":             {Control: safety.Control{NoQCRoundLock: true}, ByzantineTwins: true},
	}
	for name, opt := range controls {
		t.Run(name, func(t *testing.T) {
			const seed = 2
			opt.Seed = seed
			f, err := Generate(Shape{Nodes: 4, Twins: 1, Partitions: 2, Rounds: 8}, 10000, true, seed)
			if err != nil {
				t.Fatal(err)
			}
			for i := range f.Scenarios {
				if out := Run(f, &f.Scenarios[i], opt); len(out.Violations) > 0 {
					t.Logf("caught after %d scenarios: %s", i+1, out.Violations[0])
					return
				}
			}
			t.Fatalf("seed %d: %s not caught in %d scenarios", seed, name, len(f.Scenarios))
		})
	}
}

// TestByzantineTwinsN4 is the positive control of the Byzantine twins: the
// real core must stay safe, and commit once the network heals, when twins
// propose on stale QCs after TCs.
func TestByzantineTwinsN4(t *testing.T) {
	const seed = 3
	n := min(*scenarios, 1000)
	f, err := Generate(Shape{Nodes: 4, Twins: 1, Partitions: 2, Rounds: 8}, n, true, seed)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	v, u, first := runAll(t, f, Options{Seed: seed, ByzantineTwins: true})
	t.Logf("%d scenarios with Byzantine twins in %v", len(f.Scenarios), time.Since(start))
	if v > 0 || u > 0 {
		t.Fatalf("seed %d: %d safety violations, %d scenarios without a commit in healing; first: %s", seed, v, u, first)
	}
}

func TestGenerateDedupAndFormat(t *testing.T) {
	sh := Shape{Nodes: 4, Twins: 1, Partitions: 2, Rounds: 1}
	f, err := Generate(sh, 1000, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	// 4 leaders x 16 partitions of 5 nodes into <= 2 groups = 64 raw choices;
	// renaming the 3 honest replicas and swapping the twin pair merge many.
	if len(f.Scenarios) == 0 || len(f.Scenarios) >= 64 {
		t.Fatalf("%d distinct one-round scenarios", len(f.Scenarios))
	}
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	g, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Scenarios) != len(f.Scenarios) || g.NumOfNodes != 4 || g.NumOfTwins != 1 {
		t.Fatalf("round trip lost scenarios")
	}
}

func TestParseRejects(t *testing.T) {
	for _, doc := range []string{
		`{"num_of_nodes": 3, "num_of_twins": 0, "scenarios": []}`,
		`{"num_of_nodes": 4, "num_of_twins": 2, "scenarios": []}`,
		`{"num_of_nodes": 4, "num_of_twins": 1, "scenarios": [{"round_leaders": {"x": 0}}]}`,
		`{"num_of_nodes": 4, "num_of_twins": 1, "scenarios": [{"round_leaders": {"1": 9}}]}`,
		`{"num_of_nodes": 4, "num_of_twins": 1, "scenarios": [{"round_partitions": {"1": [[0, 7]]}}]}`,
		`not json`,
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("accepted %s", doc)
		}
	}
}

// TestParseErrorsInTheFilesTerms: a file of the wrong shape is described by
// its fields and JSON types, not by Go's ("cannot unmarshal array into Go
// value of type twins.File").
func TestParseErrorsInTheFilesTerms(t *testing.T) {
	for doc, want := range map[string]string{
		`[{"bogus": 1}]`:                          `twins scenarios: the file: a JSON array where an object {"num_of_nodes", "num_of_twins", "scenarios"} is wanted`,
		`{"num_of_nodes": "4"}`:                   "twins scenarios: num_of_nodes: a JSON string where an integer is wanted",
		`{"scenarios": [{"round_leaders": [1]}]}`: "twins scenarios: scenarios.round_leaders: a JSON array where an object is wanted",
		`{x`: "twins scenarios: not JSON (invalid character 'x' looking for beginning of object key string at byte 2)",
	} {
		if _, err := Parse([]byte(doc)); err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", doc, err, want)
		}
	}
}
