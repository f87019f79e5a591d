package kv

import (
	"fmt"
	"maps"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/diembft/diembft/protocol/types"
)

// Results returned by Apply besides a get's value.
const (
	OK   = "OK"
	Fail = "fail"
)

// MaxValueSize bounds a value, in bytes: a put or append that would make a
// value longer gives "fail" and changes nothing. A reply carries the results
// of up to types.MaxOpsPerRequest (1,024) operations, each of which may be a
// get of a whole value, and must fit in one wire message (wire.MaxMessageSize,
// 4 MiB): 3 KiB leaves a quarter of it for the rest. Without a bound,
// appends could grow a value until no reply holding it could be sent, and
// every client reading it would wait forever. The slice text of a slice is
// bounded alike (a longer one gives "fail"), so that every operation that
// succeeds fits in types.MaxOpBytes, the bound replicas enforce on an
// operation's text when a request arrives.
const MaxValueSize = types.MaxValueBytes

// MaxKeySize bounds a key, in bytes: a put to a longer key gives "fail" and
// changes nothing, so no such key is ever stored (an append or slice of one
// gives "fail" and a get "", as for any absent key). Until 2026-12-06 keys
// had no bound: a put to a 100 KB key returned OK. See types.MaxKeyBytes.
const MaxKeySize = types.MaxKeyBytes

// OverBounds says why op gives "fail" whatever the store holds, because of
// the size bounds (a value or slice text over MaxValueSize, a key over
// MaxKeySize for put or append), or returns "" if it does not. Clients use
// it to warn before sending such an operation; it is still ordered.
func (o Op) OverBounds() string {
	what, size := o.overBounds()
	switch what {
	case "":
		return ""
	case "key":
		return fmt.Sprintf("its key of %d bytes is over kv.MaxKeySize (%d)", size, MaxKeySize)
	}
	return fmt.Sprintf("its %s of %d bytes is over kv.MaxValueSize (%d)", what, size, MaxValueSize)
}

// overBounds names the part of op over its bound ("key", "value", "slice
// text") and its size, or returns "": the one statement of the bounds,
// which Apply enforces and OverBounds explains.
func (o Op) overBounds() (what string, size int) {
	switch {
	case (o.Kind == Put || o.Kind == Append) && len(o.Key) > MaxKeySize:
		return "key", len(o.Key)
	case (o.Kind == Put || o.Kind == Append) && len(o.Val) > MaxValueSize:
		return "value", len(o.Val)
	case o.Kind == Slice && len(o.Val) > MaxValueSize:
		return "slice text", len(o.Val)
	}
	return "", 0
}

// Store is the replicated state machine: one string value per key. Every
// replica applies the same committed operations in the same order, so Apply
// must be deterministic. A Store is not safe for concurrent use; the replica's
// event loop owns it.
type Store struct {
	m map[string]string
}

// New returns an empty store.
func New() *Store {
	return &Store{m: make(map[string]string)}
}

// Apply executes op and returns its result: put gives "OK"; get gives the
// value, or "" when the key is absent; append and slice give "OK", or "fail"
// when the key is absent or (slice) the slice text is invalid. A put or
// append whose value would exceed MaxValueSize, a put to a key longer than
// MaxKeySize and a slice whose text is longer than MaxValueSize give
// "fail". An operation of
// unknown kind changes nothing and gives "fail": a client may send anything,
// and every replica must answer it the same way.
func (s *Store) Apply(op Op) string {
	if what, _ := op.overBounds(); what != "" {
		return Fail
	}
	switch op.Kind {
	case Put:
		s.m[op.Key] = op.Val
		return OK
	case Get:
		return s.m[op.Key]
	case Append:
		v, ok := s.m[op.Key]
		if !ok || len(v)+len(op.Val) > MaxValueSize {
			return Fail
		}
		s.m[op.Key] = v + op.Val
		return OK
	case Slice:
		v, ok := s.m[op.Key]
		if !ok {
			return Fail
		}
		n := utf8.RuneCountInString(v)
		lo, hi, ok := sliceBounds(op.Val, n)
		if !ok {
			return Fail
		}
		s.m[op.Key] = runeSlice(v, n, lo, hi)
		return OK
	}
	return Fail
}

// runeSlice is v[lo:hi] counted in characters (code points), as Python
// slices a str; v has n characters. Cutting at byte offsets could split a
// character and leave a value that is not UTF-8, which no reply can carry
// (wire results are text).
func runeSlice(v string, n, lo, hi int) string {
	if len(v) == n {
		return v[lo:hi] // ASCII: characters are bytes
	}
	start, i := len(v), 0
	for off := range v {
		if i == lo {
			start = off
		}
		if i == hi {
			return v[start:off]
		}
		i++
	}
	return v[start:]
}

// Snapshot returns a copy of the store's contents, for verification against a
// replay.
func (s *Store) Snapshot() map[string]string {
	return maps.Clone(s.m)
}

// sliceBounds turns the slice text "i:j" into character offsets into a
// value of n characters, following Python's s[i:j]: either bound may be
// omitted (":3", "2:", ":"), a negative bound counts from the end, and bounds
// beyond the value clamp to it, so "-10:99" is valid; j before i gives the
// empty string.
// The text is invalid when it does not have exactly one colon (Python's step,
// "i:j:k", is not supported) or a bound is not a decimal integer that fits in
// 64 bits; spaces around a bound are allowed.
func sliceBounds(text string, n int) (lo, hi int, ok bool) {
	i, j, found := strings.Cut(text, ":")
	if !found || strings.Contains(j, ":") {
		return 0, 0, false
	}
	lo, ok = sliceBound(i, 0, n)
	if !ok {
		return 0, 0, false
	}
	hi, ok = sliceBound(j, n, n)
	if !ok {
		return 0, 0, false
	}
	return lo, max(lo, hi), true
}

// sliceBound resolves one bound against a value of length n; def is used when
// the bound is omitted.
func sliceBound(text string, def, n int) (int, bool) {
	text = strings.TrimSpace(text)
	if text == "" {
		return def, true
	}
	b, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, false
	}
	if b < 0 {
		b += int64(n)
	}
	return int(min(max(b, 0), int64(n))), true
}
