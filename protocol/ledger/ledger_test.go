package ledger_test

import (
	"crypto/sha256"
	"testing"

	"github.com/diembft/diembft/protocol/ledger"
	"github.com/diembft/diembft/protocol/types"
)

func block(parent *types.Block, r types.Round, ops ...string) *types.Block {
	vi := types.VoteInfo{ID: parent.ID, Round: parent.Round}
	b := &types.Block{Round: r, QC: &types.QC{VoteInfo: vi}}
	for i, op := range ops {
		b.Payload = append(b.Payload, types.Request{Client: []byte("c"), Seq: uint64(r)*100 + uint64(i), Ops: []string{op}})
	}
	b.ID = b.ComputeID()
	return b
}

func TestSpeculateNeedsParent(t *testing.T) {
	m := ledger.NewMemory()
	g := m.Last()
	if g.ID != types.GenesisID() || m.Height() != 0 {
		t.Fatal("new ledger does not hold only genesis")
	}
	b1 := block(g, 1, "put('a','1')")
	b2 := block(b1, 2, "put('b','2')")
	if _, ok := m.Speculate(b2); ok {
		t.Fatal("speculated a block whose parent is unknown")
	}
	if _, ok := m.PendingState(b2.ID); ok {
		t.Fatal("refused speculation left a state")
	}
	s1, ok := m.Speculate(b1)
	if !ok {
		t.Fatal("could not speculate on genesis")
	}
	s2, ok := m.Speculate(b2)
	if !ok {
		t.Fatal("could not speculate on a speculated parent")
	}
	if again, _ := m.Speculate(b2); again != s2 {
		t.Fatal("speculating twice changed the state")
	}
	if st, ok := m.PendingState(b1.ID); !ok || st != s1 {
		t.Fatal("PendingState lost a speculated state")
	}
	// Forget drops speculative state, but not committed state.
	m.Commit(b1, nil)
	m.Forget(b1.ID)
	m.Forget(b2.ID)
	if _, ok := m.PendingState(b1.ID); !ok {
		t.Fatal("Forget dropped a committed block's state")
	}
	if _, ok := m.PendingState(b2.ID); ok {
		t.Fatal("Forget kept a speculative state")
	}
}

func TestStateIsHashChain(t *testing.T) {
	m := ledger.NewMemory()
	g := m.Last()
	gs, _ := m.PendingState(g.ID)
	b1 := block(g, 1, "put('a','1')", "put('b','2')")
	b2 := block(b1, 2) // empty: keeps the state
	b3 := block(b2, 3, "append('a','x')")
	fork := block(g, 2, "put('b','2')", "put('a','1')") // same requests, other order
	want := func(parent types.Hash, b *types.Block) types.Hash {
		h := sha256.New()
		h.Write(parent[:])
		for i := range b.Payload {
			d := b.Payload[i].Digest()
			h.Write(d[:])
		}
		var out types.Hash
		h.Sum(out[:0])
		return out
	}
	s1, _ := m.Speculate(b1)
	s2, _ := m.Speculate(b2)
	s3, _ := m.Speculate(b3)
	sf, _ := m.Speculate(fork)
	if s1 != want(gs, b1) || s3 != want(s2, b3) {
		t.Error("state is not H(parent state || request digests)")
	}
	if s2 != s1 {
		t.Error("an empty block changed the state")
	}
	if sf == s1 {
		t.Error("request order does not matter to the state")
	}
	if ledger.StateAfter(s1, b2) != s1 || ledger.StateAfter(gs, b1) != s1 {
		t.Error("StateAfter disagrees with Speculate")
	}
	// Another replica executing the same blocks reaches the same states.
	m2 := ledger.NewMemory()
	m2.Speculate(b1)
	m2.Speculate(b2)
	if x, _ := m2.Speculate(b3); x != s3 {
		t.Error("state is not a function of the block sequence")
	}
}

func TestCommitChain(t *testing.T) {
	m := ledger.NewMemory()
	g := m.Last()
	b1 := block(g, 1, "x")
	b2 := block(b1, 3, "y")
	m.Speculate(b1)
	m.Speculate(b2)
	m.Commit(b1, nil)
	m.Commit(b2, &types.QC{})
	if m.Height() != 2 || m.Last() != b2 {
		t.Fatalf("height %d, last round %d", m.Height(), m.Last().Round)
	}
	chain := m.Chain()
	if len(chain) != 3 || chain[0] != g || chain[1] != b1 || chain[2] != b2 {
		t.Fatal("Chain is not genesis, b1, b2")
	}
	for _, b := range chain {
		if got, ok := m.CommittedBlock(b.ID); !ok || got != b {
			t.Fatalf("CommittedBlock(round %d) missing", b.Round)
		}
	}
	if _, ok := m.CommittedBlock(types.Hash{1}); ok {
		t.Fatal("unknown block reported committed")
	}
}

// TestGenesisStateIsNotBottom: a vote's CommitStateID of zero means "commits
// nothing" (the paper's ⊥), so no state a block can reach may be the zero
// hash; otherwise a QC over a vote that should commit an empty block on top
// of genesis carries ⊥ and commits nothing.
func TestGenesisStateIsNotBottom(t *testing.T) {
	m := ledger.NewMemory()
	g := m.Last()
	gs, _ := m.PendingState(g.ID)
	b1 := block(g, 1)
	s1, _ := m.Speculate(b1)
	if gs.IsZero() || s1.IsZero() {
		t.Fatalf("state after genesis and an empty block is the zero hash (⊥): %v, %v", gs, s1)
	}
}
