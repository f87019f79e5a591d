// Package leader is DiemBFT v4's leader election (paper §3, "LeaderElection"):
// reputation-based election over the recent committed history, with the
// round-robin fallback validators[⌊round/2⌋ mod n], and a fixed per-round map
// for tests and Twins scenarios.
package leader

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"

	"github.com/diembft/diembft/protocol/types"
)

// Mode selects the election scheme.
type Mode int

const (
	Reputation Mode = iota
	RoundRobin
)

// Election picks the leader of each round.
type Election struct {
	mode        Mode
	n           int
	windowSize  int
	excludeSize int
	reputation  map[types.Round]types.ReplicaID
	// Fixed overrides the election for the listed rounds (tests, Twins).
	Fixed map[types.Round]types.ReplicaID
}

// New creates an election for n replicas.
func New(mode Mode, n, windowSize, excludeSize int) *Election {
	return &Election{mode: mode, n: n, windowSize: windowSize, excludeSize: excludeSize, reputation: map[types.Round]types.ReplicaID{}}
}

// Get is the paper's get_leader.
func (e *Election) Get(r types.Round) types.ReplicaID {
	if l, ok := e.Fixed[r]; ok {
		return l
	}
	if l, ok := e.reputation[r]; ok {
		return l
	}
	return types.ReplicaID((uint64(r) / 2) % uint64(e.n))
}

// BlockLookup finds a committed block by id.
type BlockLookup func(types.Hash) (*types.Block, bool)

// Update is the paper's update_leaders: a QC for round r that extends round
// r-1 (so it commits r-1's block) elects the leader of round r+2 from the
// committed history. The paper also requires qc_round+1 = current_round; we
// drop that condition so that the choice is a pure function of the QC and
// every replica that sees the QC elects the same leader, whenever it sees it.
// pruneBelow drops stored choices for rounds that have passed.
func (e *Election) Update(qc *types.QC, pruneBelow types.Round, committed BlockLookup) {
	for r := range e.reputation {
		if r < pruneBelow {
			delete(e.reputation, r)
		}
	}
	if e.mode != Reputation || qc.VoteInfo.ParentRound+1 != qc.VoteInfo.Round {
		return
	}
	target := qc.VoteInfo.Round + 2
	if _, done := e.reputation[target]; done {
		return
	}
	if l, ok := e.elect(qc, committed); ok {
		e.reputation[target] = l
	}
}

// elect is the paper's elect_reputation_leader: the signers of the last
// window_size QCs are active, the authors of the last exclude_size committed
// blocks are excluded, and one of the rest is picked with the QC's round as
// seed. It reports false when the history needed is not available locally.
//
// Paper slip fixed: the pseudocode steps with current_block ←
// committed_block(current_qc.vote_info.parent_id) and current_qc ←
// current_block.qc, which moves two blocks per iteration (current_block.qc's
// parent is current_block's grandparent) and so skips every other author and
// QC. We walk the committed chain one block at a time: block b, the QC that
// certifies its child, then b's parent and b.qc.
func (e *Election) elect(qc *types.QC, committed BlockLookup) (types.ReplicaID, bool) {
	active := map[types.ReplicaID]bool{}
	last := map[types.ReplicaID]bool{}
	cur := qc // certifies the child of b
	b, ok := committed(qc.VoteInfo.ParentID)
	for i := 0; i < e.windowSize || len(last) < e.excludeSize; i++ {
		if !ok {
			return 0, false
		}
		if b.Round == 0 { // reached genesis: the history is shorter than the window
			break
		}
		if i < e.windowSize {
			for _, s := range cur.Signatures {
				active[s.Signer] = true
			}
		}
		if len(last) < e.excludeSize {
			last[b.Author] = true
		}
		cur = b.QC
		b, ok = committed(b.ParentID())
	}
	var cands []types.ReplicaID
	for id := range active {
		if !last[id] {
			cands = append(cands, id)
		}
	}
	if len(cands) == 0 {
		return 0, false
	}
	slices.Sort(cands)
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(qc.VoteInfo.Round))
	h := sha256.Sum256(buf[:])
	return cands[binary.BigEndian.Uint64(h[:8])%uint64(len(cands))], true
}
