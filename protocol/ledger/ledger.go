// Package ledger defines the ledger interface of DiemBFT v4 (paper §3,
// "Ledger": speculate, pending_state, commit, committed_block) and an
// in-memory implementation used by the simulator and tests.
//
// The execution state id is a hash chain over the ordered requests: the state
// after a block is H(state of its parent ‖ digests of its requests). Every
// replica that executes the same sequence reaches the same id, and results of
// the key-value operations are a pure function of that sequence, so the state
// id pins them without the core knowing the state machine.
package ledger

import (
	"crypto/sha256"
	"slices"

	"github.com/diembft/diembft/protocol/types"
)

// Ledger is what the consensus core needs from execution and storage.
type Ledger interface {
	// Speculate executes b on top of its parent's state and returns the new state id.
	// It reports false if the parent's state is unknown.
	Speculate(b *types.Block) (types.Hash, bool)
	// PendingState returns the speculative (or committed) state id after block id.
	PendingState(id types.Hash) (types.Hash, bool)
	// Commit appends b, whose parent is the last committed block, to the ledger.
	Commit(b *types.Block, qc *types.QC)
	// Forget drops the speculative state of a block that can no longer commit.
	Forget(id types.Hash)
	// CommittedBlock returns a committed block by id.
	CommittedBlock(id types.Hash) (*types.Block, bool)
	// CommittedAfter returns up to n committed blocks that follow the
	// committed block id, oldest first (forward sync). It returns nothing if
	// id is not committed here or is the last committed block.
	CommittedAfter(id types.Hash, n int) []*types.Block
	// Height is the number of committed blocks after genesis.
	Height() uint64
	// Last returns the last committed block (genesis at height 0).
	Last() *types.Block
}

// StateAfter computes the state id after applying b's payload to parent.
func StateAfter(parent types.Hash, b *types.Block) types.Hash {
	if len(b.Payload) == 0 {
		return parent
	}
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

// GenesisState is the state id before any request. It must not be the zero
// hash, which a vote's CommitStateID uses for ⊥ ("commits nothing").
var GenesisState = types.Hash(sha256.Sum256([]byte("diembft/state/genesis/v1")))

// States holds the state id after each speculatively executed block: the
// speculative half of a Ledger (paper: speculate, pending_state), shared by
// Memory and the replica's ledger.
type States map[types.Hash]types.Hash

// Speculate implements Ledger: b's state from its parent's, false if the
// parent's state is unknown.
func (s States) Speculate(b *types.Block) (types.Hash, bool) {
	if st, ok := s[b.ID]; ok {
		return st, true
	}
	parent, ok := s[b.ParentID()]
	if !ok {
		return types.Hash{}, false
	}
	st := StateAfter(parent, b)
	s[b.ID] = st
	return st, true
}

// PendingState implements Ledger.
func (s States) PendingState(id types.Hash) (types.Hash, bool) {
	st, ok := s[id]
	return st, ok
}

// Memory is an in-memory Ledger.
type Memory struct {
	States
	committed map[types.Hash]*types.Block
	heights   map[types.Hash]uint64 // committed block id -> height
	chain     []*types.Block        // committed blocks in order, chain[0] = genesis
}

// NewMemory returns a ledger holding only genesis.
func NewMemory() *Memory {
	g, _ := types.Genesis()
	return &Memory{
		States:    States{g.ID: GenesisState},
		committed: map[types.Hash]*types.Block{g.ID: g},
		heights:   map[types.Hash]uint64{g.ID: 0},
		chain:     []*types.Block{g},
	}
}

// Commit implements Ledger.
func (m *Memory) Commit(b *types.Block, _ *types.QC) {
	m.committed[b.ID] = b
	m.heights[b.ID] = uint64(len(m.chain))
	m.chain = append(m.chain, b)
}

// Forget implements Ledger.
func (m *Memory) Forget(id types.Hash) {
	if _, ok := m.committed[id]; !ok {
		delete(m.States, id)
	}
}

// CommittedBlock implements Ledger.
func (m *Memory) CommittedBlock(id types.Hash) (*types.Block, bool) {
	b, ok := m.committed[id]
	return b, ok
}

// CommittedAfter implements Ledger.
func (m *Memory) CommittedAfter(id types.Hash, n int) []*types.Block {
	h, ok := m.heights[id]
	if !ok || n <= 0 {
		return nil
	}
	from := int(h) + 1
	return slices.Clone(m.chain[from:min(from+n, len(m.chain))])
}

// Height implements Ledger.
func (m *Memory) Height() uint64 { return uint64(len(m.chain) - 1) }

// Last implements Ledger.
func (m *Memory) Last() *types.Block { return m.chain[len(m.chain)-1] }

// Chain returns the committed blocks in order, genesis first.
func (m *Memory) Chain() []*types.Block { return m.chain }
