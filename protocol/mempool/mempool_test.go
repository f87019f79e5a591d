package mempool_test

import (
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/diembft/diembft/protocol/mempool"
	"github.com/diembft/diembft/protocol/seqset"
	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

func req(client string, seq uint64) *types.Request {
	return &types.Request{Client: []byte(client), Seq: seq, Ops: []string{fmt.Sprintf("put('%s','%d')", client, seq)}}
}

func keys(rs []types.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s%d", r.Client, r.Seq))
	}
	return out
}

func TestDedup(t *testing.T) {
	p := mempool.New(0)
	steps := []struct {
		op     string // add or commit
		client string
		seq    uint64
		want   error
	}{
		{"add", "a", 1, nil},
		{"add", "a", 1, mempool.ErrDuplicate}, // pending duplicate
		{"add", "a", 2, nil},
		{"add", "b", 1, nil}, // same seq, other client
		{"commit", "a", 1, nil},
		{"add", "a", 1, mempool.ErrDuplicate}, // committed duplicate
		{"commit", "c", 5, nil},               // committed before we ever saw it
		{"add", "c", 5, mempool.ErrDuplicate},
		{"add", "c", 6, nil},
	}
	for i, s := range steps {
		switch s.op {
		case "add":
			if err := p.Add(req(s.client, s.seq)); !errors.Is(err, s.want) {
				t.Errorf("step %d: Add(%s,%d) = %v, want %v", i, s.client, s.seq, err, s.want)
			}
		case "commit":
			p.Commit([]types.Request{*req(s.client, s.seq)})
			if !p.IsCommitted(req(s.client, s.seq).Key()) {
				t.Errorf("step %d: (%s,%d) not committed", i, s.client, s.seq)
			}
		}
	}
	if p.Len() != 3 {
		t.Errorf("Len %d, want 3 (a2, b1, c6)", p.Len())
	}
	// The key is (client, seq), not the op: a different op with a used seq is a duplicate.
	r := req("b", 1)
	r.Ops = []string{"get('x')"}
	if err := p.Add(r); !errors.Is(err, mempool.ErrDuplicate) {
		t.Errorf("same (client, seq) with another op: %v", err)
	}
}

func TestTake(t *testing.T) {
	p := mempool.New(0)
	for _, c := range []string{"a", "b", "c", "d", "e"} {
		if err := p.Add(req(c, 1)); err != nil {
			t.Fatal(err)
		}
	}
	ex := func(cs ...string) func(types.RequestKey) bool {
		return func(k types.RequestKey) bool { return slices.Contains(cs, k.Client) }
	}
	cases := []struct {
		name    string
		max     int
		exclude func(types.RequestKey) bool
		want    []string
	}{
		{"all in arrival order", 10, nil, []string{"a1", "b1", "c1", "d1", "e1"}},
		{"max", 2, nil, []string{"a1", "b1"}},
		{"zero", 0, nil, nil},
		{"exclude", 10, ex("b", "d"), []string{"a1", "c1", "e1"}},
		{"exclude then max", 2, ex("a"), []string{"b1", "c1"}},
		{"exclude all", 3, ex("a", "b", "c", "d", "e"), nil},
	}
	for _, c := range cases {
		got := keys(p.Take(c.max, 0, c.exclude))
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: Take = %v, want %v", c.name, got, c.want)
		}
	}
	// Take does not remove: the same requests come back.
	if got := keys(p.Take(10, 0, nil)); len(got) != 5 || p.Len() != 5 {
		t.Errorf("Take removed requests: %v", got)
	}
	// Commit evicts, and order is kept for the rest.
	p.Commit([]types.Request{*req("a", 1), *req("c", 1)})
	p.Add(req("a", 2))
	if got := keys(p.Take(10, 0, nil)); !slices.Equal(got, []string{"b1", "d1", "e1", "a2"}) {
		t.Errorf("after commit: %v", got)
	}
	if p.Len() != 4 {
		t.Errorf("Len %d, want 4", p.Len())
	}
}

func TestCapacity(t *testing.T) {
	p := mempool.New(2)
	if p.Add(req("a", 1)) != nil || p.Add(req("a", 2)) != nil {
		t.Fatal("refused below capacity")
	}
	if err := p.Add(req("a", 3)); !errors.Is(err, mempool.ErrFull) {
		t.Fatalf("Add over capacity: %v", err)
	}
	if err := p.Add(req("a", 1)); !errors.Is(err, mempool.ErrDuplicate) {
		t.Fatalf("duplicate at capacity: %v", err)
	}
	p.Commit([]types.Request{*req("a", 1)})
	if err := p.Add(req("a", 3)); err != nil {
		t.Fatalf("commit did not free space: %v", err)
	}
}

// TestRandomOperations checks the pool against a simple model under a seeded
// mix of adds, takes and commits.
func TestRandomOperations(t *testing.T) {
	for seed := int64(1); seed <= 30; seed++ {
		rng := rand.New(rand.NewSource(seed))
		p := mempool.New(0)
		var order []types.RequestKey // model: pending in arrival order
		committed := map[types.RequestKey]bool{}
		for range 300 {
			r := req(string(rune('a'+rng.Intn(4))), uint64(rng.Intn(10))+1) // seqs start at 1
			k := r.Key()
			switch rng.Intn(3) {
			case 0:
				err := p.Add(r)
				dup := committed[k] || slices.Contains(order, k)
				if dup != errors.Is(err, mempool.ErrDuplicate) || (!dup && err != nil) {
					t.Fatalf("seed %d: Add(%v) = %v, model dup %v", seed, k, err, dup)
				}
				if !dup {
					order = append(order, k)
				}
			case 1:
				p.Commit([]types.Request{*r})
				committed[k] = true
				order = slices.DeleteFunc(order, func(x types.RequestKey) bool { return x == k })
			case 2:
				max := rng.Intn(5)
				got := p.Take(max, 0, nil)
				want := order[:min(max, len(order))]
				if len(got) != len(want) {
					t.Fatalf("seed %d: Take(%d) returned %d, want %d", seed, max, len(got), len(want))
				}
				for i := range got {
					if got[i].Key() != want[i] {
						t.Fatalf("seed %d: Take order %v, want %v", seed, keys(got), want)
					}
				}
			}
			if p.Len() != len(order) {
				t.Fatalf("seed %d: Len %d, model %d", seed, p.Len(), len(order))
			}
		}
	}
}

func batch(client string, seq uint64, n int) *types.Request {
	r := &types.Request{Client: []byte(client), Seq: seq}
	for i := range n {
		r.Ops = append(r.Ops, fmt.Sprintf("put('%s','%d')", client, seq+uint64(i)))
	}
	return r
}

// TestCommittedStateBounded: a client's committed requests are remembered
// as a watermark and the spans above it. Out-of-order commits within a
// window leave a few spans that close as the gaps commit; committed
// requests are refused long after (however far the watermark moved), the
// pending ones of the window are still taken, and the spans stay bounded
// even for a client scattering its seqs.
func TestCommittedStateBounded(t *testing.T) {
	p := mempool.New(0)
	const n, size = 20000, 4
	// Requests of 4 ops; commit them in windows of 8, in reverse order
	// within each window (out of order, as concurrent requests complete).
	for w := 0; w < n; w += 8 {
		for i := w + 7; i >= w; i-- {
			p.Commit([]types.Request{*batch("a", uint64(i*size+1), size)})
			if s := p.SpansOf([]byte("a")); s > 1 {
				t.Fatalf("after committing request %d: %d spans, want at most 1 (the window's tail)", i, s)
			}
		}
	}
	for _, i := range []int{0, 1, n / 2, n - 1} {
		if err := p.Add(batch("a", uint64(i*size+1), size)); !errors.Is(err, mempool.ErrDuplicate) {
			t.Fatalf("committed request %d re-admitted: %v", i, err)
		}
	}
	// A pending request next to a gap: admitted and taken.
	next := uint64(n*size + 1)
	p.Commit([]types.Request{*batch("a", next+size, size)}) // completes before next
	if err := p.Add(batch("a", next, size)); err != nil {
		t.Fatalf("pending request in the gap refused: %v", err)
	}
	if got := p.Take(100, 0, nil); len(got) != 1 || got[0].Seq != next {
		t.Fatalf("Take = %v, want the request at %d", keys(got), next)
	}
	// A partly committed request is still ordered (its new ops execute).
	if err := p.Add(batch("a", next+size-1, 3)); err != nil {
		t.Fatalf("partly committed request refused: %v", err)
	}

	// Scattered seqs: every other seq of a window far wider than MaxSpans,
	// then seqs far beyond the window.
	for i := uint64(1); i <= 3*seqset.MaxSpans; i++ {
		p.Commit([]types.Request{*batch("z", 2*i+1, 1)})
		if s := p.SpansOf([]byte("z")); s > seqset.MaxSpans {
			t.Fatalf("scattering client: %d spans after %d commits, bound %d", s, i, seqset.MaxSpans)
		}
	}
	for i := uint64(1); i <= 100; i++ {
		p.Commit([]types.Request{*batch("z", i<<40, 1)})
	}
	if s := p.SpansOf([]byte("z")); s > 1 {
		t.Fatalf("seqs beyond the window left %d spans, want 1", s)
	}
	if err := p.Add(batch("z", 100<<40, 1)); !errors.Is(err, mempool.ErrDuplicate) {
		t.Fatalf("committed far seq re-admitted: %v", err)
	}
}

// sized is a request of client with one operation whose encoding makes the
// request cost about cost (wire.RequestCost).
func sized(client string, seq uint64, cost int) *types.Request {
	r := &types.Request{Client: []byte(client), Seq: seq}
	r.Ops = []string{strings.Repeat("v", max(16, cost-r.EncodedSize()-5))}
	return r
}

// TestTakeByteBudget: Take stops short of the byte budget (a request that
// would go over it is skipped, later smaller ones are still taken), always
// takes a first request whatever its cost, and with many small requests
// returns the same as without a budget.
func TestTakeByteBudget(t *testing.T) {
	const budget = 10_000
	p := mempool.New(0)
	for i, cost := range []int{4000, 4000, 4000, 1000, 500} {
		if err := p.Add(sized("a", uint64(i+1), cost)); err != nil {
			t.Fatal(err)
		}
	}
	total := func(rs []types.Request) int {
		n := 0
		for i := range rs {
			n += wire.RequestCost(&rs[i])
		}
		return n
	}
	got := p.Take(100, budget, nil)
	if k := keys(got); !slices.Equal(k, []string{"a1", "a2", "a4", "a5"}) || total(got) > budget {
		t.Fatalf("Take = %v costing %d, want a1 a2 a4 a5 within %d", k, total(got), budget)
	}
	// A first request over the budget is taken alone.
	if k := keys(p.Take(100, 3000, nil)); !slices.Equal(k, []string{"a1"}) {
		t.Fatalf("Take with a budget below the first request = %v, want a1", k)
	}

	// Many small requests: the operation count decides, as before.
	q := mempool.New(0)
	for i := range 3000 {
		if err := q.Add(req(fmt.Sprintf("c%d", i%7), uint64(i/7+1))); err != nil {
			t.Fatal(err)
		}
	}
	for _, max := range []int{1, 100, 1000, 5000} {
		if a, b := keys(q.Take(max, wire.PayloadBudget(4), nil)), keys(q.Take(max, 0, nil)); !slices.Equal(a, b) {
			t.Fatalf("max %d: %d requests with the budget, %d without", max, len(a), len(b))
		}
	}
}
