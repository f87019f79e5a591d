package twins

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
)

// Shape is the space of scenarios the generator draws from.
type Shape struct {
	Nodes      int // replicas (n)
	Twins      int // replicas 0..Twins-1 get a twin
	Partitions int // at most this many groups per round
	Rounds     int // scenario rounds (healing rounds come after)
}

// roundChoice is one round of a scenario: a leader replica and the group of
// every node (replicas, then twins), as a restricted growth string (the first
// node is in group 0, and each new group number is one more than the highest
// so far), which names each set partition exactly once.
type roundChoice struct {
	leader int
	groups []int
}

// choices lists every (leader, partition) for one round.
func (sh Shape) choices() []roundChoice {
	m := sh.Nodes + sh.Twins
	var parts [][]int
	var rec func(g []int, top int)
	rec = func(g []int, top int) {
		if len(g) == m {
			parts = append(parts, slices.Clone(g))
			return
		}
		for v := 0; v <= top+1 && v < sh.Partitions; v++ {
			rec(append(g, v), max(top, v))
		}
	}
	rec([]int{0}, 0)
	var out []roundChoice
	for l := 0; l < sh.Nodes; l++ {
		for _, p := range parts {
			out = append(out, roundChoice{leader: l, groups: p})
		}
	}
	return out
}

// renamings are the node permutations that leave a scenario's meaning
// unchanged: any permutation of the replicas without a twin, and swapping a
// replica with its own twin.
func (sh Shape) renamings() [][]int {
	m := sh.Nodes + sh.Twins
	honest := make([]int, 0, sh.Nodes-sh.Twins)
	for i := sh.Twins; i < sh.Nodes; i++ {
		honest = append(honest, i)
	}
	var perms [][]int
	var permute func(k int)
	permute = func(k int) {
		if k == len(honest) {
			perms = append(perms, slices.Clone(honest))
			return
		}
		for i := k; i < len(honest); i++ {
			honest[k], honest[i] = honest[i], honest[k]
			permute(k + 1)
			honest[k], honest[i] = honest[i], honest[k]
		}
	}
	permute(0)
	var out [][]int
	for _, p := range perms {
		for swaps := 0; swaps < 1<<sh.Twins; swaps++ {
			pi := make([]int, m)
			for i := range m {
				pi[i] = i
			}
			for j, h := range p {
				pi[sh.Twins+j] = h
			}
			for k := 0; k < sh.Twins; k++ {
				if swaps&(1<<k) != 0 {
					pi[k], pi[sh.Nodes+k] = sh.Nodes+k, k
				}
			}
			out = append(out, pi)
		}
	}
	return out
}

// key encodes a scenario (under renaming pi) so that equal meanings compare equal.
func (sh Shape) key(sc []roundChoice, pi []int) string {
	m := sh.Nodes + sh.Twins
	b := make([]byte, 0, len(sc)*(m+1))
	groups := make([]int, m)
	for _, rc := range sc {
		l := pi[rc.leader]
		if l >= sh.Nodes { // a twin leading is its replica leading
			l -= sh.Nodes
		}
		b = append(b, byte(l))
		for i := range m {
			groups[pi[i]] = rc.groups[i]
		}
		// renumber groups in first-occurrence order
		seen := map[int]int{}
		for _, g := range groups {
			if _, ok := seen[g]; !ok {
				seen[g] = len(seen)
			}
			b = append(b, byte(seen[g]))
		}
	}
	return string(b)
}

func (sh Shape) canonical(sc []roundChoice, renamings [][]int) string {
	best := ""
	for i, pi := range renamings {
		if k := sh.key(sc, pi); i == 0 || k < best {
			best = k
		}
	}
	return best
}

// Generate returns count distinct scenarios of the shape, deduplicated up to
// renaming. With sample false it enumerates them in a fixed order (round 1
// varies fastest); with sample true it draws them with the seeded generator.
func Generate(sh Shape, count int, sample bool, seed uint64) (*File, error) {
	if sh.Nodes < 4 || sh.Twins < 0 || sh.Twins > (sh.Nodes-1)/3 || sh.Partitions < 1 || sh.Rounds < 1 {
		return nil, fmt.Errorf("twins: bad shape %+v (need nodes >= 4, 0 <= twins <= f, partitions >= 1, rounds >= 1)", sh)
	}
	opts := sh.choices()
	ren := sh.renamings()
	rng := rand.New(rand.NewPCG(seed, 0x7715))
	seen := map[string]bool{}
	f := &File{NumOfNodes: sh.Nodes, NumOfTwins: sh.Twins}
	sc := make([]roundChoice, sh.Rounds)
	idx := make([]int, sh.Rounds) // mixed-radix counter for enumeration
	exhausted := false
	for tries := 0; len(f.Scenarios) < count && !exhausted && tries < 100*count+1000; tries++ {
		if sample {
			for r := range sc {
				sc[r] = opts[rng.IntN(len(opts))]
			}
		} else {
			for r := range sc {
				sc[r] = opts[idx[r]]
			}
			exhausted = !increment(idx, len(opts))
		}
		k := sh.canonical(sc, ren)
		if seen[k] {
			continue
		}
		seen[k] = true
		f.Scenarios = append(f.Scenarios, sh.toScenario(sc))
	}
	return f, nil
}

// increment advances the counter; false when it wrapped around.
func increment(idx []int, base int) bool {
	for i := range idx {
		idx[i]++
		if idx[i] < base {
			return true
		}
		idx[i] = 0
	}
	return false
}

func (sh Shape) toScenario(sc []roundChoice) Scenario {
	s := Scenario{RoundLeaders: map[string]int{}, RoundPartitions: map[string][][]int{}}
	for i, rc := range sc {
		r := strconv.Itoa(i + 1)
		s.RoundLeaders[r] = rc.leader
		var groups [][]int
		for node, g := range rc.groups {
			for len(groups) <= g {
				groups = append(groups, nil)
			}
			groups[g] = append(groups[g], node)
		}
		s.RoundPartitions[r] = groups
	}
	return s
}
