package workload

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/diembft/diembft/node/kv"
	"github.com/diembft/diembft/protocol/types"
)

// TestPseudorandomGolden pins the generator: these operations were also
// computed by an independent implementation of the doc comment, and any
// change here changes every experiment that uses pseudorandom workloads.
func TestPseudorandomGolden(t *testing.T) {
	want := []kv.Op{
		{Kind: kv.Put, Key: "bklu", Val: "fbth"},
		{Kind: kv.Put, Key: "bklu", Val: "edql"},
		{Kind: kv.Append, Key: "bklu", Val: "wgan"},
		{Kind: kv.Append, Key: "gxab", Val: "oeic"},
		{Kind: kv.Get, Key: "bicv"},
	}
	ops, err := Parse("pseudorandom(233,100)")
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 100 {
		t.Fatalf("pseudorandom(233,100) gave %d operations", len(ops))
	}
	if !slices.Equal(ops[:5], want) {
		t.Fatalf("first operations of pseudorandom(233,100) = %v, want %v", ops[:5], want)
	}
}

// TestSplitmix64Reference checks the generator against the published
// SplitMix64 output for seed 0, so the README's description names a standard
// algorithm.
func TestSplitmix64Reference(t *testing.T) {
	g := splitmix64(0)
	for _, want := range []uint64{0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f} {
		if got := g.next(); got != want {
			t.Fatalf("next() = %#x, want %#x", got, want)
		}
	}
}

func TestPseudorandomDeterministic(t *testing.T) {
	for _, seed := range []int64{0, 1, 233, -7} {
		a, b := Pseudorandom(seed, 500), Pseudorandom(seed, 500)
		if !slices.Equal(a, b) {
			t.Fatalf("seed %d: two runs differ", seed)
		}
		// A shorter run is a prefix of a longer one: n only says when to stop.
		if short := Pseudorandom(seed, 50); !slices.Equal(short, a[:50]) {
			t.Fatalf("seed %d: pseudorandom(seed, 50) is not a prefix of pseudorandom(seed, 500)", seed)
		}
	}
	if slices.Equal(Pseudorandom(1, 50), Pseudorandom(2, 50)) {
		t.Fatal("seeds 1 and 2 gave the same operations")
	}
}

// TestPseudorandomMix applies a long workload and checks that every kind of
// operation, and both valid and invalid slices, occur.
func TestPseudorandomMix(t *testing.T) {
	const seed, n = 233, 1000
	ops := Pseudorandom(seed, n)
	if len(ops) != n {
		t.Fatalf("seed %d: %d operations, want %d", seed, len(ops), n)
	}
	kinds := map[string]int{}
	keys := map[string]bool{}
	var validSlices, invalidSlices int
	s := kv.New()
	for _, op := range ops {
		kinds[op.Kind]++
		keys[op.Key] = true
		if len(op.Key) != 4 || strings.Trim(op.Key, "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Fatalf("seed %d: key %q is not 4 lowercase letters", seed, op.Key)
		}
		_, present := s.Snapshot()[op.Key]
		result := s.Apply(op)
		if op.Kind == kv.Slice && present {
			if result == kv.OK {
				validSlices++
			} else {
				invalidSlices++
			}
		}
	}
	for _, k := range []string{kv.Get, kv.Put, kv.Slice, kv.Append} {
		if kinds[k] < n/8 {
			t.Errorf("seed %d: only %d %s operations of %d", seed, kinds[k], k, n)
		}
	}
	if len(keys) > keyPool {
		t.Errorf("seed %d: %d distinct keys, want at most %d", seed, len(keys), keyPool)
	}
	if validSlices == 0 || invalidSlices == 0 {
		t.Errorf("seed %d: %d valid and %d invalid slices on present keys, want both", seed, validSlices, invalidSlices)
	}
}

func TestParseList(t *testing.T) {
	ops, err := Parse(" put('movie','star'); append('movie',' wars') ;get('movie') ")
	if err != nil {
		t.Fatal(err)
	}
	want := []kv.Op{{Kind: kv.Put, Key: "movie", Val: "star"}, {Kind: kv.Append, Key: "movie", Val: " wars"}, {Kind: kv.Get, Key: "movie"}}
	if !slices.Equal(ops, want) {
		t.Fatalf("Parse = %v, want %v", ops, want)
	}
	list, err := FromList([]string{"put('movie','star')", "append('movie',' wars')", "get('movie')"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(list, want) {
		t.Fatalf("FromList = %v, want %v", list, want)
	}
}

func TestPseudorandomSpellings(t *testing.T) {
	want := Pseudorandom(-5, 7)
	for _, spec := range []string{"pseudorandom(-5,7)", " pseudorandom ( -5 , 7 ) "} {
		got, err := Parse(spec)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Parse(%q) = %v, %v; want Pseudorandom(-5, 7)", spec, got, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		spec    string
		mention string
	}{
		{"", "no operations"},
		{"  ; ", "operation 1"},
		{"pseudorandom", "want pseudorandom(seed, n)"},
		{"pseudorandom(1)", "want pseudorandom(seed, n)"},
		{"pseudorandom 1,2)", "want pseudorandom(seed, n)"},
		{"pseudorandom(x,2)", "seed"},
		{"pseudorandom(1,0)", "n must be"},
		{"pseudorandom(1,-3)", "n must be"},
		{"pseudorandom(1,100001)", "n must be"},
		{"pseudorandom(1,2,3)", "n must be"},
		{"put('a','b'); frob('a')", `unknown operation "frob"`},
		// Found by the spec audit: said "n must be an integer from 1 to 100000".
		{"pseudorandom(3,5); get('a')", `pseudorandom(seed, n) stands alone: "; get('a')" follows it`},
		{"pseudorandom(3,5)x", `"x" follows it`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			_, err := Parse(tt.spec)
			if !errors.Is(err, ErrBadWorkload) || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("Parse(%q) error = %v, want ErrBadWorkload mentioning %q", tt.spec, err, tt.mention)
			}
		})
	}
	if _, err := Parse("get(a)"); !errors.Is(err, kv.ErrBadOp) {
		t.Errorf("a bad operation's error %v does not wrap kv.ErrBadOp", err)
	}
	if _, err := FromList(nil); !errors.Is(err, ErrBadWorkload) {
		t.Errorf("FromList(nil) error = %v, want ErrBadWorkload", err)
	}
	if _, err := FromList([]string{"get('a')", "get(b)"}); err == nil || !strings.Contains(err.Error(), "item 2") {
		t.Errorf("FromList error %v does not name item 2", err)
	}
	if _, err := FromList([]string{"pseudorandom(1,100000)", "get('a')"}); !errors.Is(err, ErrBadWorkload) {
		t.Errorf("a list of more than MaxOps operations: error = %v, want ErrBadWorkload", err)
	}
}

// TestOperationSizeBound: an operation over types.MaxOpBytes (replicas
// refuse it) makes the workload an error naming it; one with a value over
// kv.MaxValueSize but within the bound is a valid workload (it gives
// "fail" when executed).
func TestOperationSizeBound(t *testing.T) {
	huge := "put('big','" + strings.Repeat("x", types.MaxOpBytes) + "')"
	_, err := FromList([]string{"get('a')", "put('a','b'); " + huge})
	if !errors.Is(err, ErrBadWorkload) || !errors.Is(err, types.ErrOpTooLarge) ||
		!strings.Contains(err.Error(), "item 2: bad workload: operation 2: operation too large: put('big','xxx") || strings.Contains(err.Error(), strings.Repeat("x", 100)) {
		t.Fatalf("error = %v, want ErrBadWorkload and types.ErrOpTooLarge naming item 2, operation 2, shortened", err)
	}
	ops, err := Parse("put('big','" + strings.Repeat("x", 5000) + "')")
	if err != nil || len(ops) != 1 {
		t.Fatalf("a put of 5,000 characters: %v", err)
	}
}
