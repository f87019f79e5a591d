package node

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/types"
	bolt "go.etcd.io/bbolt"
)

// TestBlockStoreSyncsWhatAcknowledgedOpsNeed: the chain is written (in a
// transaction bbolt syncs) when committed blocks add ledger lines (replies
// wait on those blocks); blocks without lines wait for the next such
// transaction, at most maxUnsynced of them, or for close; heads are written
// to the other file, never in a chain transaction.
func TestBlockStoreSyncsWhatAcknowledgedOpsNeed(t *testing.T) {
	dir := t.TempDir()
	bs, _ := openRecovered(t, dir)
	if bs.db.NoSync || !bs.head.NoSync {
		t.Fatal("the chain must be synced by bbolt on every transaction, the head never")
	}
	txs := 0
	bs.update = func(f func(*bolt.Tx) error) error { txs++; return bs.db.Update(f) }
	g, _ := types.Genesis()
	parent, height := g, uint64(0)
	step := func(what string, lines uint64, n, want int, wantHeight uint64) {
		t.Helper()
		var blocks []committedBlock
		for range n {
			b := child(parent)
			blocks = append(blocks, committedBlock{b: b})
			parent = b
		}
		written, err := bs.commit(height, blocks, lines, nil)
		if err != nil {
			t.Fatal(err)
		}
		height += uint64(n)
		if txs != want || written != wantHeight {
			t.Fatalf("%s: %d chain transactions, chain at %d; want %d, %d", what, txs, written, want, wantHeight)
		}
	}
	step("an empty block on a fresh store", 0, 1, 0, 0)
	step("a block with lines", 3, 1, 1, 2)
	step("an empty block", 3, 1, 1, 2)
	step("a group with lines", 5, 2, 2, 5)
	if err := bs.writeHead(&head{pending: []*types.Block{parent}}); err != nil {
		t.Fatal(err)
	}
	if txs != 2 {
		t.Fatalf("a head went into a chain transaction (%d)", txs)
	}
	step("empty blocks below the bound", 5, maxUnsynced-1, 2, 5)
	step("the empty block reaching the bound", 5, 1, 3, 5+maxUnsynced)
	step("one more empty block", 5, 1, 3, 5+maxUnsynced)
	if _, err := bs.commit(height+1, nil, 6, nil); err == nil {
		t.Fatal("a commit leaving a gap in the chain was taken")
	}
	if got := bs.syncs.count(); got != 6 {
		t.Fatalf("diembft_fsyncs_total{file=blocks} counts %d syncs, want bbolt's 2 for each of 3 transactions", got)
	}
	if err := bs.close(); err != nil {
		t.Fatal(err)
	}
	if txs != 4 {
		t.Fatalf("close left the deferred block unwritten (%d transactions)", txs)
	}

	bs, rec := openRecovered(t, dir)
	defer bs.close()
	if got := rec.ledger.Height(); got != height || rec.ledgerLines != 5 {
		t.Fatalf("reopened store at height %d with %d ledger lines, want %d, 5", got, rec.ledgerLines, height)
	}
	if len(rec.pending) != 0 {
		t.Fatalf("the head's block, committed since, came back as pending (%d)", len(rec.pending))
	}
}

// TestCommitterWritesTheLastHeadAtStop: a head the loop left just before it
// stopped (no commit followed to carry it) is written when the committer
// ends, so the restarted replica has its newest uncommitted blocks.
func TestCommitterWritesTheLastHeadAtStop(t *testing.T) {
	dir := t.TempDir()
	bs, _ := openRecovered(t, dir)
	g, _ := types.Genesis()
	b := child(g)
	r := &Replica{bs: bs, commits: make(chan commitJob), headReady: make(chan struct{}, 1)}
	r.head.Store(&head{pending: []*types.Block{b}})
	close(r.commits)
	done := make(chan struct{})
	r.runCommitter(done)
	<-done
	if err := bs.close(); err != nil {
		t.Fatal(err)
	}
	bs, rec := openRecovered(t, dir)
	defer bs.close()
	if len(rec.pending) != 1 || rec.pending[0].ID != b.ID {
		t.Fatalf("after the stop the store holds %d pending blocks, want the head's one", len(rec.pending))
	}
}

// openRecovered opens the block store in dir and reads it back; the caller
// closes it.
func openRecovered(t testing.TB, dir string) (*blockStore, *recovered) {
	t.Helper()
	bs, rec, err := openBlockStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return bs, rec
}

// damageDataPages flips every byte of the bbolt file at path but its two
// meta pages.
func damageDataPages(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 2 * os.Getpagesize(); i < len(data); i++ { // all but the two meta pages
		data[i] ^= 0x5a
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedBlockStoreIsMovedAside: bbolt panics on a damaged page while
// opening; the store is moved aside and an empty one takes its place.
func TestDamagedBlockStoreIsMovedAside(t *testing.T) {
	dir := t.TempDir()
	bs, _ := openRecovered(t, dir)
	g, _ := types.Genesis()
	b := child(g)
	if _, err := bs.commit(0, []committedBlock{{b: b}}, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := bs.close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, BlockStoreFile)
	damageDataPages(t, path)
	bs, rec := openRecovered(t, dir)
	defer bs.close()
	if h := rec.ledger.Height(); h != 0 || rec.ledgerLines != 0 || !rec.movedAside {
		t.Fatalf("reopened a damaged store at height %d (ledger lines %d, moved aside %v), want an empty one, moved aside", h, rec.ledgerLines, rec.movedAside)
	}
	if aside, _ := filepath.Glob(path + ".damaged-*"); len(aside) != 1 {
		t.Fatalf("the damaged store was not moved aside (%v)", aside)
	}
}

// TestOneStepsCommitsWrittenWithTheirOwnLines: a step that commits two
// blocks hands the committer two jobs, which it may execute in two groups.
// Each group must store exactly the blocks whose ledger lines it wrote, so
// that after a kill the store's line count covers its chain: before, the
// first job carried both blocks with the first one's lines, and the restart
// cut the second block's line while the block stayed committed (never
// executed again).
func TestOneStepsCommitsWrittenWithTheirOwnLines(t *testing.T) {
	dir := t.TempDir()
	_, key, _ := ed25519.GenerateKey(nil)
	client, _, _ := ed25519.GenerateKey(nil)
	bs, rec := openRecovered(t, dir)
	exec, err := openExecutorFS(osFS{}, dir, 0, "split", key, rec.ledgerLines)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := openTimeline(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.close()
	r := &Replica{bs: bs, exec: exec, led: rec.ledger, signer: newReplySigner(key, "split"), m: newMetrics(), tl: tl}
	g, _ := types.Genesis()
	parent := g
	var blocks []*types.Block
	for i := range 2 {
		b := child(parent, types.Request{Client: client, Seq: uint64(i + 1), Ops: []string{fmt.Sprintf("put('k%d','v')", i)}})
		blocks = append(blocks, b)
		parent = b
	}
	for _, b := range blocks { // one core step commits both
		r.led.Commit(b, nil)
	}
	var jobs []commitJob
	for _, b := range blocks {
		jobs = append(jobs, r.handOver(core.Committed{Block: b}))
	}
	for _, j := range jobs { // in two groups
		r.execute([]commitJob{j})
	}
	// Killed: the files stay as written, nothing more is synced.
	bs.db.Close()
	bs.head.Close()
	exec.close()

	bs, rec = openRecovered(t, dir)
	defer bs.close()
	replayed, err := openExecutorFS(osFS{}, dir, 0, "split", key, rec.ledgerLines)
	if err != nil {
		t.Fatal(err)
	}
	defer replayed.close()
	if h := rec.ledger.Height(); h != 2 || rec.ledgerLines != 2 || replayed.height != 2 {
		t.Fatalf("after the kill: chain height %d, store's ledger lines %d, ledger replayed to %d; want 2, 2, 2", h, rec.ledgerLines, replayed.height)
	}
}

// child is a block of replica 1 in the round after parent's, certifying
// parent, with payload.
func child(parent *types.Block, payload ...types.Request) *types.Block {
	b := &types.Block{Author: 1, Round: parent.Round + 1, QC: &types.QC{VoteInfo: types.VoteInfo{ID: parent.ID, Round: parent.Round}}, Payload: payload}
	b.ID = b.ComputeID()
	return b
}

// headReplica is replica id's loop side with its block store, ledger and
// core (no network, no committer: tests take the jobs from r.commits).
func headReplica(t *testing.T, id types.ReplicaID) *Replica {
	t.Helper()
	dir := t.TempDir()
	bs, rec := openRecovered(t, dir)
	t.Cleanup(func() { bs.close() })
	tl, err := openTimeline(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.close() })
	r := &Replica{bs: bs, led: rec.ledger, commits: make(chan commitJob), m: newMetrics(), tl: tl, headReady: make(chan struct{}, 1),
		consensus: make(chan func(), 16)} // timers post here; nothing runs them
	r.led.written = &r.written // nothing written yet: committed blocks stay in the head
	r.core = core.New(core.Config{ID: id, Committee: testCommittee(1), Signer: types.Ed25519Signer{Key: key("replica", int(id))}, Ledger: rec.ledger})
	return r
}

// TestStepsHeadRidesWithItsFirstCommit: the head a step leaves is
// published before the step's first committed block reaches the committer,
// which writes it after that block's commit; published at the end of the
// step, after the hand-over, the committer took the previous step's head,
// and a crash lost a round of pending blocks and the newest QC.
func TestStepsHeadRidesWithItsFirstCommit(t *testing.T) {
	r := headReplica(t, 0)
	g, _ := types.Genesis()
	b1 := child(g)
	b2 := child(b1)
	for _, b := range []*types.Block{b1, b2} { // one core step commits both
		r.led.Commit(b, nil)
	}
	stale := &head{}
	r.head.Store(stale) // the previous step's
	stepped := make(chan struct{})
	go func() {
		defer close(stepped)
		r.apply([]core.Action{core.Committed{Block: b1}, core.Committed{Block: b2}, core.NewRound{Round: 3}})
	}()
	j := <-r.commits // the step now waits to hand over b2
	if j.block.ID != b1.ID {
		t.Fatalf("first job carries round %d, want b1's", j.block.Round)
	}
	h := r.head.Swap(nil)
	if h == stale || h == nil {
		t.Fatal("the step's first commit reached the committer before the step's head")
	}
	if len(h.pending) != 2 || h.pending[0].ID != b1.ID || h.pending[1].ID != b2.ID {
		t.Fatalf("the head holds %d pending blocks, want the two committed and unwritten", len(h.pending))
	}
	<-r.commits
	<-stepped
	if h := r.head.Load(); h != nil {
		t.Fatal("the head was published again after the hand-over")
	}
}

// TestLateBlockReachesTheHead: a proposal that arrives after its round
// (the replica moved on through a QC in a timeout message) is not voted on,
// but its block enters the tree (core.keepLate) in a step without any
// action; the head is published all the same, so a restart does not fetch
// the block back. (Before the core's tree version decided it, only steps
// that moved, proposed, voted or committed published a head.)
func TestLateBlockReachesTheHead(t *testing.T) {
	r := headReplica(t, 0)
	if r.core.Leader(2) == 0 {
		t.Fatal("the test wants replica 0 not to lead round 2 (it would fetch b1 to propose)")
	}
	r.apply(r.core.Start())
	g, gqc := types.Genesis()
	b1 := &types.Block{Author: r.core.Leader(1), Round: 1, QC: gqc}
	b1.ID = b1.ComputeID()
	vi := types.VoteInfo{ID: b1.ID, Round: 1, ParentID: g.ID}
	qc1 := &types.QC{VoteInfo: vi, LedgerCommitInfo: types.LedgerCommitInfo{VoteInfoHash: vi.Hash()}}
	r.apply(r.core.OnTimeout(&types.TimeoutMsg{Timeout: types.TimeoutInfo{Round: 1, HighQC: qc1, Sender: 1}, Sync: types.SyncInfo{HighQC: qc1}}))
	if r.core.CurrentRound() != 2 {
		t.Fatalf("round %d after the QC of round 1, want 2", r.core.CurrentRound())
	}
	r.head.Store(nil) // the committer wrote it
	acts := r.core.OnProposal(&types.Proposal{Block: *b1})
	for _, a := range acts {
		if _, ok := a.(core.SetTimer); !ok {
			t.Fatalf("the late proposal's step has a %T: the test no longer checks a step without actions", a)
		}
	}
	r.apply(acts)
	h := r.head.Load()
	if h == nil {
		t.Fatal("no head published after the late block entered the tree")
	}
	if len(h.pending) != 1 || h.pending[0].ID != b1.ID {
		t.Fatalf("the head holds %d pending blocks, want the late block", len(h.pending))
	}
	select {
	case <-r.headReady:
	default:
		t.Fatal("the committer was not woken to write the head alone")
	}
	r.head.Store(nil)
	r.apply(r.core.OnProposal(&types.Proposal{Block: *b1})) // again: nothing new
	if r.head.Load() != nil {
		t.Fatal("a step that changed nothing published a head")
	}
}

// TestLedgerBesideAnEmptyChainIsMovedAside: a home with a ledger but an
// empty chain (blocks.db lost, or moved aside as damaged by a start that
// crashed before the ledger followed) starts with the ledger moved aside,
// and executing the chain again rebuilds the very same ledger. Replayed
// whole, as before, the ledger's final state decided the re-executed
// blocks: a request refused the first time (too far ahead of its client's
// executed seqs then) was executed, and this replica had a line no other had.
func TestLedgerBesideAnEmptyChainIsMovedAside(t *testing.T) {
	var want []byte
	c := ledgerClient("lost store")
	blocks := []*types.Block{
		{Round: 1, Payload: []types.Request{batchReq(c, 1+types.SeqWindow, 1, "k")}}, // refused at execution
		{Round: 2, Payload: []types.Request{batchReq(c, 1, 1, "k")}},
	}
	fx := newValFixture(t, func(home string) {
		e, err := openExecutor(home, 3, "test", key("replica", 3))
		if err != nil {
			t.Fatal(err)
		}
		defer e.close()
		for _, b := range blocks {
			if _, err := e.execute(b); err != nil {
				t.Fatal(err)
			}
		}
		want, _ = os.ReadFile(filepath.Join(home, LedgerFile(3)))
	})
	if fx.r.exec.height != 0 {
		t.Fatalf("the ledger beside an empty chain was replayed to height %d", fx.r.exec.height)
	}
	path := filepath.Join(fx.r.cfg.Home, LedgerFile(3))
	aside, _ := filepath.Glob(path + ".damaged-*")
	if len(aside) != 1 {
		t.Fatalf("the ledger was not moved aside (%v)", aside)
	}
	if kept, _ := os.ReadFile(aside[0]); !bytes.Equal(kept, want) {
		t.Fatal("the ledger moved aside differs from the ledger that was there")
	}
	for _, b := range blocks {
		if _, err := fx.r.exec.execute(b); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
		t.Fatalf("the chain executed again gave the ledger\n%s\nwant (the other replicas')\n%s", got, want)
	}
}

// TestDamagedHeadIsMovedAsideAlone: a damaged head.db (written without
// syncs, so a power loss may leave it so) is moved aside and replaced by an
// empty one; the chain, its ledger line count and the head synced with it
// stay.
func TestDamagedHeadIsMovedAsideAlone(t *testing.T) {
	dir := t.TempDir()
	bs, _ := openRecovered(t, dir)
	g, _ := types.Genesis()
	b1 := child(g)
	b2 := child(b1)
	if _, err := bs.commit(0, []committedBlock{{b: b1}}, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := bs.writeHead(&head{pending: []*types.Block{b2}}); err != nil {
		t.Fatal(err)
	}
	if err := bs.close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, HeadFile)
	damageDataPages(t, path)
	bs, rec := openRecovered(t, dir)
	defer bs.close()
	// b2, the head the clean stop synced with the chain, is still there.
	if rec.movedAside || rec.ledger.Height() != 1 || rec.ledgerLines != 1 || len(rec.pending) != 1 || rec.pending[0].ID != b2.ID {
		t.Fatalf("after a damaged head: chain moved aside %v, height %d, ledger lines %d, %d pending; want false, 1, 1, b2",
			rec.movedAside, rec.ledger.Height(), rec.ledgerLines, len(rec.pending))
	}
	if aside, _ := filepath.Glob(path + ".damaged-*"); len(aside) != 1 {
		t.Fatalf("the damaged head was not moved aside (%v)", aside)
	}
	if chain, _ := filepath.Glob(filepath.Join(dir, BlockStoreFile+".damaged-*")); len(chain) != 0 {
		t.Fatalf("the chain was moved aside with the head (%v)", chain)
	}
}

// TestSyncedHeadSurvivesTheUnsyncedOne: the head rides in the chain's
// synced transactions and goes to head.db, unsynced, in between; a restart
// takes both together (pending blocks of both, the higher certificates),
// and with head.db lost (a power loss before its writes reached the disk,
// or the file damaged) it still has the head of the last chain
// transaction.
func TestSyncedHeadSurvivesTheUnsyncedOne(t *testing.T) {
	dir := t.TempDir()
	bs, _ := openRecovered(t, dir)
	g, _ := types.Genesis()
	b1 := child(g)
	b2 := child(b1)
	b3 := child(b2)
	qc := func(b *types.Block) *types.QC { return &types.QC{VoteInfo: types.VoteInfo{ID: b.ID, Round: b.Round}} }
	if _, err := bs.commit(0, []committedBlock{{b: b1}}, 1, &head{pending: []*types.Block{b2}, highQC: qc(b2), highCommitQC: qc(b1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := bs.commit(1, nil, 1, &head{pending: []*types.Block{b2, b3}, highQC: qc(b3), highCommitQC: qc(b1)}); err != nil {
		t.Fatal(err)
	}
	// Killed: both files as written.
	bs.db.Close()
	bs.head.Close()
	bs, rec := openRecovered(t, dir)
	if len(rec.pending) != 2 || rec.highQC.Round() != b3.Round || rec.highCommitQC.Round() != b1.Round {
		t.Fatalf("both heads: %d pending, high QC %d, high commit QC %d; want 2, %d, %d", len(rec.pending), rec.highQC.Round(), rec.highCommitQC.Round(), b3.Round, b1.Round)
	}
	bs.db.Close()
	bs.head.Close()
	if err := os.Remove(filepath.Join(dir, HeadFile)); err != nil {
		t.Fatal(err)
	}
	bs, rec = openRecovered(t, dir)
	if len(rec.pending) != 1 || rec.pending[0].ID != b2.ID || rec.highQC.Round() != b2.Round {
		t.Fatalf("without head.db: %d pending, high QC %d; want b2 and its QC, synced with the chain", len(rec.pending), rec.highQC.Round())
	}
	// A head written alone, then a clean stop: the stop's transaction
	// carries it, so it survives head.db too.
	if err := bs.writeHead(&head{pending: []*types.Block{b3}, highQC: qc(b3), highCommitQC: qc(b1)}); err != nil {
		t.Fatal(err)
	}
	if err := bs.close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, HeadFile)); err != nil {
		t.Fatal(err)
	}
	bs, rec = openRecovered(t, dir)
	defer bs.close()
	if rec.highQC.Round() != b3.Round || !slices.ContainsFunc(rec.pending, func(b *types.Block) bool { return b.ID == b3.ID }) {
		t.Fatalf("after a clean stop without head.db: high QC %d, %d pending; want b3's, with b3", rec.highQC.Round(), len(rec.pending))
	}
}
