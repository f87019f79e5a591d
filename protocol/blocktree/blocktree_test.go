package blocktree_test

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"

	"github.com/diembft/diembft/protocol/blocktree"
	"github.com/diembft/diembft/protocol/types"
)

// qcFor certifies b (no signatures: the tree does not verify them). commit
// marks it as a committing QC (its ledger commit info carries a state).
func qcFor(b *types.Block, commit bool) *types.QC {
	vi := types.VoteInfo{ID: b.ID, Round: b.Round, ParentID: b.ParentID(), ParentRound: b.QC.Round()}
	q := &types.QC{VoteInfo: vi, LedgerCommitInfo: types.LedgerCommitInfo{VoteInfoHash: vi.Hash()}}
	if commit {
		q.LedgerCommitInfo.CommitStateID = types.Hash{0xc0, byte(b.Round)}
	}
	return q
}

// child builds a block of round r extending parent; salt tells forks apart.
func child(parent *types.Block, r types.Round, salt uint64) *types.Block {
	b := &types.Block{Author: types.ReplicaID(r % 4), Round: r, QC: qcFor(parent, false), Payload: []types.Request{{Seq: salt}}}
	b.ID = b.ComputeID()
	return b
}

func newTree() (*blocktree.Tree, *types.Block) {
	g, gqc := types.Genesis()
	return blocktree.New(3, g, gqc, gqc), g
}

func vote(b *types.Block, sender types.ReplicaID, exec byte) *types.Vote {
	vi := types.VoteInfo{ID: b.ID, Round: b.Round, ParentID: b.ParentID(), ParentRound: b.QC.Round(), ExecStateID: types.Hash{exec}}
	return &types.Vote{VoteInfo: vi, LedgerCommitInfo: types.LedgerCommitInfo{VoteInfoHash: vi.Hash()}, Sender: sender, Signature: []byte{byte(sender), exec}}
}

func TestAddVoteFormsOneQC(t *testing.T) {
	type v struct {
		sender types.ReplicaID
		exec   byte // votes with different execution states are different statements
	}
	cases := []struct {
		name    string
		votes   []v
		qcAt    int // index of the vote that forms the QC, -1 for none
		signers []types.ReplicaID
	}{
		{"three distinct", []v{{0, 1}, {1, 1}, {2, 1}, {3, 1}}, 2, []types.ReplicaID{0, 1, 2}},
		{"duplicates ignored", []v{{3, 1}, {3, 1}, {1, 1}, {3, 1}, {1, 1}, {0, 1}}, 5, []types.ReplicaID{0, 1, 3}},
		{"signers sorted", []v{{3, 1}, {2, 1}, {0, 1}}, 2, []types.ReplicaID{0, 2, 3}},
		{"split execution states", []v{{0, 1}, {1, 2}, {2, 1}, {3, 2}}, -1, nil},
		{"quorum after a split", []v{{0, 1}, {1, 2}, {2, 1}, {3, 1}}, 3, []types.ReplicaID{0, 2, 3}},
		{"below quorum", []v{{0, 1}, {1, 1}, {0, 1}, {1, 1}}, -1, nil},
		// A sender's first vote of the round counts, another one of it
		// does not (a Byzantine sender could open buckets without bound).
		{"second vote of a sender ignored", []v{{0, 1}, {0, 2}, {1, 2}, {2, 2}, {3, 2}}, 4, []types.ReplicaID{1, 2, 3}},
	}
	for _, c := range cases {
		tr, g := newTree()
		b := child(g, 1, 0)
		tr.Add(b)
		formed := -1
		for i, x := range c.votes {
			qc := tr.AddVote(vote(b, x.sender, x.exec))
			if qc == nil {
				continue
			}
			if formed >= 0 {
				t.Errorf("%s: second QC at vote %d", c.name, i)
				continue
			}
			formed = i
			var signers []types.ReplicaID
			for _, s := range qc.Signatures {
				signers = append(signers, s.Signer)
				if s.Sig[0] != byte(s.Signer) {
					t.Errorf("%s: signature of %d filed under %d", c.name, s.Sig[0], s.Signer)
				}
			}
			if !slices.Equal(signers, c.signers) {
				t.Errorf("%s: signers %v, want %v", c.name, signers, c.signers)
			}
			if qc.VoteInfo.ID != b.ID || qc.LedgerCommitInfo.VoteInfoHash != qc.VoteInfo.Hash() {
				t.Errorf("%s: QC does not certify the block", c.name)
			}
		}
		if formed != c.qcAt {
			t.Errorf("%s: QC formed at vote %d, want %d", c.name, formed, c.qcAt)
		}
	}
}

func TestAddVoteIgnoresStale(t *testing.T) {
	tr, g := newTree()
	b1 := child(g, 1, 0)
	b2 := child(b1, 2, 0)
	tr.Add(b1)
	tr.Add(b2)
	tr.UpdateHighQC(qcFor(b2, false))
	for s := range types.ReplicaID(4) {
		if qc := tr.AddVote(vote(b1, s, 1)); qc != nil {
			t.Fatal("QC formed for a round below the high QC")
		}
		if qc := tr.AddVote(vote(b2, s, 1)); qc != nil {
			t.Fatal("QC formed for the high QC's round")
		}
	}
	b3 := child(b2, 3, 0)
	tr.Add(b3)
	var got *types.QC
	for s := range types.ReplicaID(3) {
		got = tr.AddVote(vote(b3, s, 1))
	}
	if got == nil {
		t.Fatal("no QC above the high QC")
	}
}

func TestUpdateHighQC(t *testing.T) {
	_, g := newTree()
	b1 := child(g, 1, 0)
	b2 := child(b1, 2, 0)
	b3 := child(b2, 3, 0)
	b5 := child(b3, 5, 0)
	steps := []struct {
		qc         *types.QC
		high       types.Round
		highCommit types.Round
	}{
		{qcFor(b2, false), 2, 0},
		{qcFor(b1, true), 2, 1}, // a lower QC that commits still raises the high commit QC
		{qcFor(b3, true), 3, 3},
		{qcFor(b2, true), 3, 3}, // lower commit QC: no change
		{qcFor(b5, false), 5, 3},
		{qcFor(b3, false), 5, 3},
	}
	tr, _ := newTree()
	for i, s := range steps {
		tr.UpdateHighQC(s.qc)
		if tr.HighQC().Round() != s.high || tr.HighCommitQC().Round() != s.highCommit {
			t.Errorf("step %d: high QC %d, high commit QC %d; want %d, %d", i, tr.HighQC().Round(), tr.HighCommitQC().Round(), s.high, s.highCommit)
		}
		if !tr.HighCommitQC().LedgerCommitInfo.Commits() && tr.HighCommitQC().Round() != 0 {
			t.Errorf("step %d: high commit QC does not commit", i)
		}
	}
}

func TestAddBlock(t *testing.T) {
	tr, g := newTree()
	b1 := child(g, 1, 0)
	b2 := child(b1, 2, 0)
	if tr.Add(b2) {
		t.Error("added a block whose parent is missing")
	}
	if !tr.Add(b1) || !tr.Add(b1) || !tr.Add(b2) {
		t.Error("refused a block extending the tree (or a duplicate)")
	}
	bad := &types.Block{Round: 2, QC: qcFor(b2, false)}
	bad.ID = bad.ComputeID()
	if tr.Add(bad) {
		t.Error("added a block whose round does not exceed its parent's")
	}
	if tr.Len() != 3 {
		t.Errorf("Len %d, want 3", tr.Len())
	}
	if got, ok := tr.Get(b2.ID); !ok || got != b2 {
		t.Error("Get lost a block")
	}
	if br := tr.Branch(b2.ID, 10); len(br) != 2 || br[0] != b2 || br[1] != b1 {
		t.Errorf("Branch = %v", br)
	}
	if br := tr.Branch(b2.ID, 1); len(br) != 1 || br[0] != b2 {
		t.Errorf("Branch(1) = %v", br)
	}
	if br := tr.Branch(types.Hash{1}, 3); len(br) != 0 {
		t.Errorf("Branch of a missing block = %v", br)
	}
}

func TestCommitPath(t *testing.T) {
	tr, g := newTree()
	b1 := child(g, 1, 0)
	b2 := child(b1, 2, 0)
	b4 := child(b2, 4, 0)
	f3 := child(b1, 3, 1)
	for _, b := range []*types.Block{b1, b2, b4, f3} {
		tr.Add(b)
	}
	cases := []struct {
		name    string
		id      types.Hash
		path    []*types.Block
		missing types.Hash
		ok      bool
	}{
		{"to the root", g.ID, nil, types.ZeroHash, true},
		{"one block", b1.ID, []*types.Block{b1}, types.ZeroHash, true},
		{"ancestors oldest first", b4.ID, []*types.Block{b1, b2, b4}, types.ZeroHash, true},
		{"fork", f3.ID, []*types.Block{b1, f3}, types.ZeroHash, true},
		{"missing", types.Hash{7}, nil, types.Hash{7}, false},
	}
	for _, c := range cases {
		path, missing, ok := tr.CommitPath(c.id)
		if ok != c.ok || missing != c.missing || !slices.Equal(path, c.path) {
			t.Errorf("%s: CommitPath = %v, %v, %v; want %v, %v, %v", c.name, path, missing, ok, c.path, c.missing, c.ok)
		}
	}
	tr.Prune(b2)
	if _, missing, ok := tr.CommitPath(b1.ID); ok || missing != b1.ID {
		t.Errorf("CommitPath of a pruned block: ok %v, missing %v", ok, missing)
	}
	if path, _, ok := tr.CommitPath(b4.ID); !ok || !slices.Equal(path, []*types.Block{b4}) {
		t.Errorf("CommitPath after prune = %v, %v", path, ok)
	}
}

func TestPrune(t *testing.T) {
	//          g
	//          |
	//          a1
	//        /  |   \
	//      a2   g3   h2
	//     / \          \
	//    a3  k4         h4
	//    |
	//    a5
	tr, g := newTree()
	a1 := child(g, 1, 0)
	a2 := child(a1, 2, 0)
	a3 := child(a2, 3, 0)
	a5 := child(a3, 5, 0)
	k4 := child(a2, 4, 1)
	g3 := child(a1, 3, 2)
	h2 := child(a1, 2, 3)
	h4 := child(h2, 4, 3)
	for _, b := range []*types.Block{a1, a2, a3, a5, k4, g3, h2, h4} {
		if !tr.Add(b) {
			t.Fatalf("Add(%d) failed", b.Round)
		}
	}
	// A vote bucket at round 2 goes away with the prune.
	tr.AddVote(vote(h2, 0, 1))
	tr.AddVote(vote(h2, 1, 1))
	dropped := tr.Prune(a2)
	if tr.Root() != a2 {
		t.Fatal("root not moved")
	}
	wantDropped := []types.Hash{g.ID, a1.ID, g3.ID, h2.ID, h4.ID}
	slices.SortFunc(dropped, func(x, y types.Hash) int { return slices.Compare(x[:], y[:]) })
	slices.SortFunc(wantDropped, func(x, y types.Hash) int { return slices.Compare(x[:], y[:]) })
	if !slices.Equal(dropped, wantDropped) {
		t.Errorf("dropped %v, want %v", dropped, wantDropped)
	}
	for _, b := range []*types.Block{a2, a3, a5, k4} {
		if _, ok := tr.Get(b.ID); !ok {
			t.Errorf("descendant of round %d pruned", b.Round)
		}
	}
	if tr.Len() != 4 {
		t.Errorf("Len %d after prune, want 4", tr.Len())
	}
	if tr.AddVote(vote(h2, 2, 1)) != nil {
		t.Error("vote at a pruned round formed a QC")
	}
	// New blocks attach below the new root only.
	if tr.Add(child(a1, 4, 9)) {
		t.Error("added a block extending a pruned block")
	}
	if !tr.Add(child(a5, 6, 0)) {
		t.Error("refused a block extending the new branch")
	}
}

// TestPruneRandomTrees checks on random trees that Prune keeps exactly the
// descendants of the new root.
func TestPruneRandomTrees(t *testing.T) {
	for seed := int64(1); seed <= 50; seed++ {
		rng := rand.New(rand.NewSource(seed))
		tr, g := newTree()
		all := []*types.Block{g}
		parent := map[types.Hash]*types.Block{}
		for i := range 40 {
			p := all[rng.Intn(len(all))]
			b := child(p, p.Round+types.Round(rng.Intn(3)+1), uint64(i))
			if !tr.Add(b) {
				t.Fatalf("seed %d: Add failed", seed)
			}
			all = append(all, b)
			parent[b.ID] = p
		}
		root := all[1+rng.Intn(len(all)-1)]
		descends := func(b *types.Block) bool {
			for ; b != nil; b = parent[b.ID] {
				if b == root {
					return true
				}
			}
			return false
		}
		dropped := tr.Prune(root)
		if len(dropped)+tr.Len() != len(all) {
			t.Errorf("seed %d: %d dropped + %d kept != %d", seed, len(dropped), tr.Len(), len(all))
		}
		for _, b := range all {
			_, kept := tr.Get(b.ID)
			if kept != descends(b) {
				t.Errorf("seed %d: block round %d kept=%v, descends=%v", seed, b.Round, kept, descends(b))
			}
		}
	}
}

// TestVersionTracksPendingAndHighQCs runs random Add, UpdateHighQC, AddVote
// and Prune calls and checks after each that Version changed exactly when
// the pending blocks, the high QC or the high commit QC did (what a replica
// persists as its head; it publishes a head when the version moved).
func TestVersionTracksPendingAndHighQCs(t *testing.T) {
	type view struct {
		pending          string
		high, highCommit *types.QC
	}
	look := func(tr *blocktree.Tree) view {
		var ids []string
		for _, b := range tr.Pending() {
			ids = append(ids, string(b.ID[:]))
		}
		slices.Sort(ids)
		return view{fmt.Sprint(ids), tr.HighQC(), tr.HighCommitQC()}
	}
	for seed := int64(1); seed <= 100; seed++ {
		rng := rand.New(rand.NewSource(seed))
		tr, g := newTree()
		all := []*types.Block{g}
		for i := range 60 {
			before, v := look(tr), tr.Version()
			var op string
			switch k := rng.Intn(10); {
			case k < 4: // a new block on any known one, or one seen before
				p := all[rng.Intn(len(all))]
				b := child(p, p.Round+types.Round(rng.Intn(3)+1), uint64(i))
				if rng.Intn(4) == 0 {
					b = all[rng.Intn(len(all))]
				}
				op = fmt.Sprintf("Add(round %d)", b.Round)
				if tr.Add(b) && !slices.Contains(all, b) {
					all = append(all, b)
				}
			case k < 7:
				b := all[rng.Intn(len(all))]
				commit := rng.Intn(2) == 0
				op = fmt.Sprintf("UpdateHighQC(round %d, commit %v)", b.Round, commit)
				tr.UpdateHighQC(qcFor(b, commit))
			case k < 9:
				b := all[rng.Intn(len(all))]
				op = fmt.Sprintf("AddVote(round %d)", b.Round)
				tr.AddVote(vote(b, types.ReplicaID(rng.Intn(4)), 1))
			default:
				b := all[rng.Intn(len(all))]
				if _, ok := tr.Get(b.ID); !ok || b.Round < tr.Root().Round {
					continue
				}
				op = fmt.Sprintf("Prune(round %d)", b.Round)
				tr.Prune(b)
			}
			after := look(tr)
			if changed := after != before; changed != (tr.Version() != v) {
				t.Fatalf("seed %d, step %d, %s: content changed %v, version %d -> %d", seed, i, op, changed, v, tr.Version())
			}
		}
	}
}

// TestVotesPrunedBelowTheHighQC: votes of rounds up to the high QC are
// refused, so they are forgotten when it rises, not only when a block
// commits (a long stretch of certified rounds without commits kept them
// all, and the (round, sender) entries that count one vote per sender).
func TestVotesPrunedBelowTheHighQC(t *testing.T) {
	tr, g := newTree()
	parent := g
	var blocks []*types.Block
	for r := types.Round(1); r <= 20; r++ {
		b := child(parent, r, 0)
		tr.Add(b)
		blocks = append(blocks, b)
		parent = b
		tr.AddVote(vote(b, 0, 1)) // one vote each: no QC
	}
	if buckets, voters := tr.VoteState(); buckets != 20 || voters != 20 {
		t.Fatalf("%d buckets, %d voters before, want 20 and 20", buckets, voters)
	}
	tr.UpdateHighQC(qcFor(blocks[14], false)) // round 15
	if buckets, voters := tr.VoteState(); buckets != 5 || voters != 5 {
		t.Fatalf("%d buckets, %d voters after a high QC of round 15, want 5 and 5", buckets, voters)
	}
}
