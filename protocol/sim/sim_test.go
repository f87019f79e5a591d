package sim

import (
	"flag"
	"fmt"
	"testing"
)

var seeds = flag.Int("seeds", 0, "seeds per committee size (0 = the fast default)")
var seed0 = flag.Uint64("seed", 0, "run only this seed")

func runSeeds(t *testing.T, f, n int) {
	if *seeds > 0 {
		n = *seeds
	}
	first, last := uint64(1), uint64(n)
	if *seed0 != 0 {
		first, last = *seed0, *seed0
	}
	for seed := first; seed <= last; seed++ {
		res := New(Random(f, seed)).Run()
		if !res.OK() {
			t.Fatalf("seed %d (n=%d): %v\nreproduce: go test ./protocol/sim -run '%s' -seed %d -v", seed, 3*f+1, res.Violations, t.Name(), seed)
		}
	}
}

func TestRandomFaultsN4(t *testing.T) { runSeeds(t, 1, 500) }
func TestRandomFaultsN7(t *testing.T) { runSeeds(t, 2, 500) }

func TestFaultFree(t *testing.T) {
	for _, f := range []int{1, 2} {
		res := New(Default(f, 1)).Run()
		if !res.OK() {
			t.Fatalf("f=%d: %v", f, res.Violations)
		}
		for i, q := range res.Requests {
			if q != 20 {
				t.Fatalf("f=%d node %d committed %d requests", f, i, q)
			}
		}
		fmt.Println(res.Heights, res.Rounds, res.Time, res.Steps)
	}
}
