package seqset

import (
	"flag"
	"math/rand"
	"testing"
)

var seed = flag.Int64("seed", 1, "random seed")

// check verifies the representation invariant.
func check(t *testing.T, s *Set) {
	t.Helper()
	prev := s.low
	for i, sp := range s.spans {
		if sp.lo > sp.hi || sp.lo <= prev+1 {
			t.Fatalf("span %d %v after %d: not sorted, disjoint and apart (W %d, spans %v)", i, sp, prev, s.low, s.spans)
		}
		prev = sp.hi
	}
}

// TestAgainstMap adds random ranges in a window (out of order, overlapping,
// repeated) and compares every query with a plain map.
func TestAgainstMap(t *testing.T) {
	r := rand.New(rand.NewSource(*seed))
	var s Set
	ref := map[uint64]bool{0: true}
	base := uint64(1)
	for step := 0; step < 5000; step++ {
		lo := base + uint64(r.Intn(200))
		hi := lo + uint64(r.Intn(8))
		adds := s.AddsSpan(lo, hi)
		before := s.Spans()
		s.Add(lo, hi)
		check(t, &s)
		if got := s.Spans() - before; (got == 1) != adds || got > 1 {
			t.Fatalf("seed %d step %d: Add(%d,%d) changed the spans by %d, AddsSpan said %v", *seed, step, lo, hi, got, adds)
		}
		for q := lo; q <= hi; q++ {
			ref[q] = true
		}
		for ref[s.low+1] {
			t.Fatalf("seed %d: watermark %d not advanced over %d", *seed, s.low, s.low+1)
		}
		for q := uint64(0); q < base+220; q++ {
			if s.Has(q) != ref[q] {
				t.Fatalf("seed %d step %d: Has(%d) = %v, want %v (W %d spans %v)", *seed, step, q, s.Has(q), ref[q], s.low, s.spans)
			}
		}
		qlo := base + uint64(r.Intn(200))
		qhi := qlo + uint64(r.Intn(5))
		all := true
		for q := qlo; q <= qhi; q++ {
			all = all && ref[q]
		}
		if s.HasAll(qlo, qhi) != all {
			t.Fatalf("seed %d step %d: HasAll(%d,%d) = %v, want %v", *seed, step, qlo, qhi, !all, all)
		}
		if s.low > base {
			base = s.low // the window slides as the client's seqs complete
		}
	}
	if s.low < 2000 {
		t.Fatalf("seed %d: watermark only reached %d", *seed, s.low)
	}
}

func TestRaise(t *testing.T) {
	var s Set
	s.Add(5, 6)
	s.Add(9, 9)
	s.Add(20, 30)
	s.Raise(8) // joins 9
	check(t, &s)
	if s.Watermark() != 9 || s.Spans() != 1 || !s.Has(7) || s.Has(10) {
		t.Fatalf("after Raise(8): W %d spans %v", s.low, s.spans)
	}
	s.RaiseToFirstSpan()
	if s.Watermark() != 30 || s.Spans() != 0 || s.Highest() != 30 {
		t.Fatalf("after RaiseToFirstSpan: W %d spans %v", s.low, s.spans)
	}
	if !s.Has(0) {
		t.Fatal("seq 0 is never valid and counts as present")
	}
}
