package workload

import (
	"strconv"

	"github.com/diembft/diembft/node/kv"
)

// keyPool is how many distinct keys a pseudorandom workload uses. A small
// pool makes gets, appends and slices land on keys that earlier puts set, so
// results depend on the order of operations and verification means something.
const keyPool = 8

// kinds maps the generator's 1..4 draw (here 0..3) to an operation.
var kinds = [4]string{kv.Get, kv.Put, kv.Slice, kv.Append}

// Pseudorandom returns n operations generated from seed, the same on every
// machine and Go version. The generator, exactly:
//
//   - State: a uint64 s, set to seed (two's complement for a negative seed).
//   - next() is splitmix64: s += 0x9e3779b97f4a7c15; z := s;
//     z = (z ^ z>>30) * 0xbf58476d1ce4e5b9; z = (z ^ z>>27) * 0x94d049bb133111eb;
//     return z ^ z>>31 (all arithmetic modulo 2^64).
//   - intn(m) = next() % m.
//   - A word is 4 letters, each 'a' + intn(26).
//   - First, 8 keys are drawn as words: the key pool.
//   - Then, for each operation: c = 1 + intn(4) picks 1 get, 2 put, 3 slice,
//     4 append; the key is pool[intn(8)]; put and append then draw a word as
//     the value; slice draws its start bound then its end bound, each as
//     b = intn(16): b <= 12 gives the integer b-6 (-6..6), 13 and 14 give an
//     omitted bound, 15 gives "x", so the slice text "i:j" is invalid when
//     either bound is "x" (about 12% of slices). A get draws nothing more.
//
// Slices and appends on keys no put has set yet return "fail", as do invalid
// slices, so a run sees both outcomes.
func Pseudorandom(seed int64, n int) []kv.Op {
	g := splitmix64(uint64(seed))
	var keys [keyPool]string
	for i := range keys {
		keys[i] = g.word()
	}
	ops := make([]kv.Op, n)
	for i := range ops {
		op := kv.Op{Kind: kinds[g.intn(4)], Key: keys[g.intn(keyPool)]}
		switch op.Kind {
		case kv.Put, kv.Append:
			op.Val = g.word()
		case kv.Slice:
			start := g.bound()
			op.Val = start + ":" + g.bound()
		}
		ops[i] = op
	}
	return ops
}

// splitmix64 is the state of Steele, Lea and Flood's SplitMix64 generator,
// chosen because it is a few lines that anyone can reimplement from the doc
// comment above, unlike math/rand whose streams are not promised to stay the
// same across Go versions.
type splitmix64 uint64

func (s *splitmix64) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func (s *splitmix64) intn(m uint64) uint64 { return s.next() % m }

func (s *splitmix64) word() string {
	var w [4]byte
	for i := range w {
		w[i] = 'a' + byte(s.intn(26))
	}
	return string(w[:])
}

func (s *splitmix64) bound() string {
	switch b := s.intn(16); {
	case b <= 12:
		return strconv.Itoa(int(b) - 6)
	case b <= 14:
		return ""
	default:
		return "x"
	}
}
