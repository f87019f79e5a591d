// Package blocktree is DiemBFT v4's block tree (paper §3, "Block-Tree"):
// pending (speculated, uncommitted) blocks above the last committed block,
// vote aggregation into QCs, the high QC and high commit QC, and the 2-chain
// commit rule.
package blocktree

import (
	"github.com/diembft/diembft/protocol/types"
)

// Tree holds the pending blocks. The root is the last committed block; every
// pending block descends from it.
type Tree struct {
	quorum       int
	root         *types.Block
	blocks       map[types.Hash]*types.Block // pending blocks, root included
	highQC       *types.QC
	highCommitQC *types.QC
	votes        map[types.Hash]*bucket // vote aggregation by hash(ledger_commit_info)
	voted        map[voter]bool         // senders that voted, by round (AddVote)
	// version counts the changes to the pending blocks and the high
	// certificates (see Version).
	version uint64
}

// voter is a sender's vote in a round: it counts once (AddVote).
type voter struct {
	round  types.Round
	sender types.ReplicaID
}

type bucket struct {
	info types.VoteInfo
	lci  types.LedgerCommitInfo
	sigs map[types.ReplicaID][]byte
	done bool
}

// New creates a tree rooted at the committed block root, certified by rootQC.
func New(quorum int, root *types.Block, highQC, highCommitQC *types.QC) *Tree {
	return &Tree{
		quorum:       quorum,
		root:         root,
		blocks:       map[types.Hash]*types.Block{root.ID: root},
		highQC:       highQC,
		highCommitQC: highCommitQC,
		votes:        map[types.Hash]*bucket{},
		voted:        map[voter]bool{},
	}
}

// Root is the last committed block.
func (t *Tree) Root() *types.Block { return t.root }

// HighQC is the highest QC seen.
func (t *Tree) HighQC() *types.QC { return t.highQC }

// HighCommitQC is the highest QC that committed a block.
func (t *Tree) HighCommitQC() *types.QC { return t.highCommitQC }

// Version changes whenever the pending blocks (a block added, the root
// moved) or the high QC or high commit QC change, and only then: a driver
// that persists them compares it between steps instead of guessing from the
// step's actions (a late or fetched block enters the tree without any).
func (t *Tree) Version() uint64 { return t.version }

// Get returns a pending block (or the root) by id.
func (t *Tree) Get(id types.Hash) (*types.Block, bool) {
	b, ok := t.blocks[id]
	return b, ok
}

// Pending returns the blocks above the root, in no particular order.
func (t *Tree) Pending() []*types.Block {
	out := make([]*types.Block, 0, len(t.blocks))
	for id, b := range t.blocks {
		if id != t.root.ID {
			out = append(out, b)
		}
	}
	return out
}

// Len is the number of pending blocks, root included.
func (t *Tree) Len() int { return len(t.blocks) }

// Add inserts a block whose parent is in the tree. It reports false if the
// parent is missing or the block does not extend the root (it can never commit).
func (t *Tree) Add(b *types.Block) bool {
	if _, ok := t.blocks[b.ID]; ok {
		return true
	}
	parent, ok := t.blocks[b.ParentID()]
	if !ok || b.Round <= parent.Round {
		return false
	}
	t.blocks[b.ID] = b
	t.version++
	return true
}

// UpdateHighQC records qc if it is higher than the current high QC. Paper slip
// fixed: high_qc is updated for every QC, not only for committing ones.
func (t *Tree) UpdateHighQC(qc *types.QC) {
	if qc.Round() > t.highQC.Round() {
		t.highQC = qc
		t.version++
		t.pruneVotes(qc.Round())
	}
	if qc.LedgerCommitInfo.Commits() && qc.Round() > t.highCommitQC.Round() {
		t.highCommitQC = qc
		t.version++
	}
}

// CommitPath returns the blocks that committing id would commit, oldest first:
// the uncommitted ancestors of id and id itself. ok is false when a block on
// the way is missing (the caller must fetch it) or id does not descend from
// the root (then missing is the zero hash).
func (t *Tree) CommitPath(id types.Hash) (path []*types.Block, missing types.Hash, ok bool) {
	for id != t.root.ID {
		b, found := t.blocks[id]
		if !found {
			return nil, id, false
		}
		if b.Round <= t.root.Round {
			return nil, types.ZeroHash, false
		}
		path = append(path, b)
		id = b.ParentID()
	}
	for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
		path[i], path[j] = path[j], path[i]
	}
	return path, types.ZeroHash, true
}

// Prune makes newRoot the root and drops every block that does not descend
// from it, returning the dropped blocks' ids (their speculative state can go).
func (t *Tree) Prune(newRoot *types.Block) []types.Hash {
	keep := map[types.Hash]bool{newRoot.ID: true}
	// Blocks are kept if their ancestry reaches newRoot; walk each block up.
	var dropped []types.Hash
	var descends func(b *types.Block) bool
	descends = func(b *types.Block) bool {
		if v, ok := keep[b.ID]; ok {
			return v
		}
		if b.Round <= newRoot.Round {
			keep[b.ID] = false
			return false
		}
		p, ok := t.blocks[b.ParentID()]
		v := ok && descends(p)
		keep[b.ID] = v
		return v
	}
	for id, b := range t.blocks {
		if !descends(b) {
			dropped = append(dropped, id)
		}
	}
	for _, id := range dropped {
		delete(t.blocks, id)
	}
	if len(dropped) > 0 || newRoot.ID != t.root.ID {
		t.version++
	}
	t.blocks[newRoot.ID] = newRoot
	t.root = newRoot
	t.pruneVotes(newRoot.Round)
	return dropped
}

// pruneVotes forgets the votes of rounds up to r, which AddVote refuses from
// now on (r is the root's round or the high QC's): without it the votes
// of a long stretch of rounds that certify but do not commit stayed.
func (t *Tree) pruneVotes(r types.Round) {
	for k, v := range t.votes {
		if v.info.Round <= r {
			delete(t.votes, k)
		}
	}
	for k := range t.voted {
		if k.round <= r {
			delete(t.voted, k)
		}
	}
}

// AddVote aggregates a verified vote. It returns a QC the first time a quorum
// of distinct signers agree on the same LedgerCommitInfo (paper: process_vote).
func (t *Tree) AddVote(v *types.Vote) *types.QC {
	if v.VoteInfo.Round <= t.root.Round || v.VoteInfo.Round <= t.highQC.Round() {
		return nil // stale: a QC for this round or later already exists
	}
	// A sender's first vote of a round only: an honest replica votes once
	// per round (and re-sends that vote), while a Byzantine one could sign
	// a new vote info per message and open buckets without bound (review of
	// the vote round window, 2026-12-06).
	k := voter{v.VoteInfo.Round, v.Sender}
	if t.voted[k] {
		return nil
	}
	t.voted[k] = true
	key := v.LedgerCommitInfo.Key()
	bk := t.votes[key]
	if bk == nil {
		bk = &bucket{info: v.VoteInfo, lci: v.LedgerCommitInfo, sigs: map[types.ReplicaID][]byte{}}
		t.votes[key] = bk
	}
	if bk.done {
		return nil
	}
	if _, dup := bk.sigs[v.Sender]; dup {
		return nil
	}
	bk.sigs[v.Sender] = v.Signature
	if len(bk.sigs) < t.quorum {
		return nil
	}
	bk.done = true
	qc := &types.QC{VoteInfo: bk.info, LedgerCommitInfo: bk.lci}
	for id := types.ReplicaID(0); len(qc.Signatures) < len(bk.sigs); id++ {
		if s, ok := bk.sigs[id]; ok {
			qc.Signatures = append(qc.Signatures, types.PartialSig{Signer: id, Sig: s})
		}
	}
	return qc
}

// Branch returns up to n blocks from id towards the root (id first), stopping
// at the root (exclusive) or a missing block.
func (t *Tree) Branch(id types.Hash, n int) []*types.Block {
	var out []*types.Block
	for len(out) < n && id != t.root.ID {
		b, ok := t.blocks[id]
		if !ok {
			break
		}
		out = append(out, b)
		id = b.ParentID()
	}
	return out
}
