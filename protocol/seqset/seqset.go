// Package seqset records which sequence numbers of a client have been
// executed (or committed), in memory bounded by how far out of order the
// client runs rather than by its history: a watermark W (every seq in 1..W
// is in the set) and the few disjoint spans of seqs above it.
//
// This is the per-account replay state of production chains, made tolerant
// of a window of requests completing out of order: Aptos keeps one sequence
// number per account and its mempool only accepts a window of sequence
// numbers above it (SEQUENCE_NUMBER_TOO_OLD / TOO_NEW, capacity_per_user =
// 100); Cosmos SDK accounts keep one sequence number each. Here a client
// keeps a bounded window of operations in flight (node/client), so its
// seqs complete almost in order: W advances over the contiguous prefix and
// the spans above it are at most the requests in flight.
//
// Sequence numbers start at 1: seq 0 counts as always present.
package seqset

import (
	"slices"
	"sort"
)

// MaxSpans bounds the spans above the watermark that a caller lets one
// client have (each gap between them is an operation still out of order).
// A correct client has at most types.ReplyWindow operations in flight, so
// fewer gaps; only a Byzantine client scattering its seqs reaches it.
const MaxSpans = 4096

type span struct{ lo, hi uint64 }

// Set is one client's set of sequence numbers. The zero value is empty.
type Set struct {
	low   uint64 // every seq in 0..low is in the set
	spans []span // sorted, disjoint, neither adjacent to each other nor to low: spans[0].lo > low+1
}

// Watermark is W: every seq <= W is in the set.
func (s *Set) Watermark() uint64 { return s.low }

// Spans is the number of disjoint spans above the watermark.
func (s *Set) Spans() int { return len(s.spans) }

// Highest is the highest seq in the set (W if there is none above it).
func (s *Set) Highest() uint64 {
	if n := len(s.spans); n > 0 {
		return s.spans[n-1].hi
	}
	return s.low
}

// Has reports whether q is in the set.
func (s *Set) Has(q uint64) bool {
	if q <= s.low {
		return true
	}
	i := sort.Search(len(s.spans), func(i int) bool { return s.spans[i].hi >= q })
	return i < len(s.spans) && s.spans[i].lo <= q
}

// HasAll reports whether every seq in lo..hi (lo <= hi) is in the set.
func (s *Set) HasAll(lo, hi uint64) bool {
	if hi <= s.low {
		return true
	}
	lo = max(lo, s.low+1)
	i := sort.Search(len(s.spans), func(i int) bool { return s.spans[i].hi >= lo })
	return i < len(s.spans) && s.spans[i].lo <= lo && s.spans[i].hi >= hi
}

// AddsSpan reports whether Add(lo, hi) would add a span (it adds at most
// one: the union of disjoint spans with one more interval).
func (s *Set) AddsSpan(lo, hi uint64) bool {
	if lo <= s.low+1 {
		return false // joins the watermark (or lies below it)
	}
	// The first span ending at or after lo-1 overlaps or touches lo..hi
	// unless it starts after hi+1.
	i := sort.Search(len(s.spans), func(i int) bool { return s.spans[i].hi >= lo-1 })
	return i == len(s.spans) || s.spans[i].lo-1 > hi
}

// Add puts every seq in lo..hi (lo <= hi, hi < 2^64-1) in the set.
func (s *Set) Add(lo, hi uint64) {
	if hi <= s.low {
		return
	}
	lo = max(lo, s.low+1)
	if lo == s.low+1 && (len(s.spans) == 0 || s.spans[0].lo-1 > hi) {
		s.low = hi // the common case: the next seqs, in order
		return
	}
	// spans[i:j] overlap or touch lo..hi and merge with it.
	i := sort.Search(len(s.spans), func(i int) bool { return s.spans[i].hi >= lo-1 })
	j := sort.Search(len(s.spans), func(j int) bool { return s.spans[j].lo-1 > hi })
	if i < j {
		lo, hi = min(lo, s.spans[i].lo), max(hi, s.spans[j-1].hi)
	}
	s.spans = slices.Replace(s.spans, i, j, span{lo, hi})
	if s.spans[0].lo == s.low+1 {
		s.low = s.spans[0].hi
		s.spans = slices.Delete(s.spans, 0, 1)
	}
}

// Raise puts every seq <= w in the set (a caller forgetting which of them
// were missing, to keep its memory bounded).
func (s *Set) Raise(w uint64) {
	if w <= s.low {
		return
	}
	s.low = w
	i := 0
	for i < len(s.spans) && s.spans[i].lo <= s.low+1 {
		s.low = max(s.low, s.spans[i].hi)
		i++
	}
	s.spans = slices.Delete(s.spans, 0, i)
}

// RaiseToFirstSpan fills the lowest gap: the watermark moves to the end of
// the first span (nothing happens without spans).
func (s *Set) RaiseToFirstSpan() {
	if len(s.spans) > 0 {
		s.Raise(s.spans[0].hi)
	}
}

// Equal reports whether s and o hold the same seqs.
func (s *Set) Equal(o *Set) bool {
	return s.low == o.low && slices.Equal(s.spans, o.spans)
}
