package node

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/diembft/diembft/protocol/seqset"
	"github.com/diembft/diembft/protocol/types"
)

// resultsByKey flattens the executor's kept results (tests).
func (e *executor) resultsByKey() map[types.RequestKey]opDone {
	out := map[types.RequestKey]opDone{}
	for c, cs := range e.clients {
		for q, d := range cs.results {
			out[types.RequestKey{Client: c, Seq: q}] = d
		}
	}
	return out
}

// sameExecState reports whether two executors hold the same exactly-once
// state (executed seqs, kept results, bookkeeping) and KV state.
func sameExecState(a, b *executor) bool {
	if a.height != b.height || len(a.clients) != len(b.clients) || !maps.Equal(a.kv.Snapshot(), b.kv.Snapshot()) {
		return false
	}
	for c, x := range a.clients {
		y := b.clients[c]
		if y == nil || !x.done.Equal(&y.done) || !maps.Equal(x.results, y.results) || x.trimmed != y.trimmed || x.last != y.last {
			return false
		}
	}
	return true
}

// batchReq is a request of n appends to key k starting at seq (seq 1 puts; append is not
// idempotent: an operation executed twice shows in the value).
func batchReq(client []byte, seq uint64, n int, k string) types.Request {
	r := types.Request{Client: client, Seq: seq}
	for i := range n {
		kind := "append"
		if seq+uint64(i) == 1 {
			kind = "put" // append to an absent key fails
		}
		r.Ops = append(r.Ops, fmt.Sprintf("%s('%s','%d,')", kind, k, seq+uint64(i)))
	}
	return r
}

func mustExecute(t *testing.T, e *executor, reqs ...types.Request) []*types.ClientReply {
	t.Helper()
	out, err := e.execute(&types.Block{Round: 1, Payload: reqs})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOpsExecuteOnce: the same block twice, overlapping batches and a
// restart (ledger replay) execute every (client, seq) once; duplicates get
// the first results.
func TestOpsExecuteOnce(t *testing.T) {
	home := t.TempDir()
	c := ledgerClient("once")
	e, err := openExecutor(home, 1, "once", ledgerKey())
	if err != nil {
		t.Fatal(err)
	}
	a, b := batchReq(c, 1, 3, "k"), batchReq(c, 2, 4, "k") // b overlaps a on 2, 3
	mustExecute(t, e, a)
	mustExecute(t, e, a) // the same block again
	out := mustExecute(t, e, b)
	if e.height != 5 {
		t.Fatalf("height %d after seqs 1..5, want 5", e.height)
	}
	if len(out) != 1 || out[0].Heights[0] != 2 || out[0].Heights[3] != 5 {
		t.Fatalf("overlapping batch: reply %+v, want heights 2..5", out)
	}
	want := "1,2,3,4,5,"
	if got := e.kv.Snapshot()["k"]; got != want {
		t.Fatalf("k = %q, want %q", got, want)
	}
	e.close()
	e, err = openExecutor(home, 1, "once", ledgerKey())
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	mustExecute(t, e, a, b, batchReq(c, 5, 2, "k"))
	if want += "6,"; e.kv.Snapshot()["k"] != want || e.height != 6 {
		t.Fatalf("after restart: k = %q at height %d, want %q at 6", e.kv.Snapshot()["k"], e.height, want)
	}
}

// TestExactlyOnceStateBounded executes 200,000 operations of one client
// (requests of MaxOpsPerRequest, completing out of order within windows of
// four) and checks that the executor keeps O(ReplyWindow) results and no
// spans, that recent retransmissions are answered and old ones refused with
// ErrResultForgotten and not executed again, and that replay rebuilds the
// identical state.
func TestExactlyOnceStateBounded(t *testing.T) {
	home := t.TempDir()
	c := ledgerClient("bounded")
	e, err := openExecutor(home, 1, "bounded", ledgerKey())
	if err != nil {
		t.Fatal(err)
	}
	const size = types.MaxOpsPerRequest
	const requests = 200_000 / size
	for w := 0; w < requests; w += 4 {
		var reqs []types.Request
		for i := min(w+3, requests-1); i >= w; i-- { // reverse order inside the window
			reqs = append(reqs, types.Request{Client: c, Seq: uint64(i*size + 1), Ops: make([]string, size)})
			for j := range size {
				reqs[len(reqs)-1].Ops[j] = fmt.Sprintf("put('k%d','%d')", j, i)
			}
		}
		for _, r := range reqs { // one block per request: the watermark moves between them
			mustExecute(t, e, r)
		}
	}
	total := uint64(requests * size)
	cs := e.clients[string(c)]
	if e.height != total || cs.done.Watermark() != total || cs.done.Spans() != 0 {
		t.Fatalf("height %d, watermark %d, spans %d; want %d, %d, 0", e.height, cs.done.Watermark(), cs.done.Spans(), total, total)
	}
	if n := len(cs.results); n > types.ReplyWindow {
		t.Fatalf("%d results kept after %d operations, bound %d", n, total, types.ReplyWindow)
	}
	recent := types.Request{Client: c, Seq: total - size + 1, Ops: make([]string, size)}
	old := types.Request{Client: c, Seq: 1, Ops: make([]string, size)}
	if rp, err := e.admit(&recent); rp == nil || err != nil {
		t.Fatalf("recent retransmission: %v, %v; want the cached reply", rp, err)
	}
	if rp, err := e.admit(&old); rp != nil || !errors.Is(err, ErrResultForgotten) {
		t.Fatalf("old retransmission: %v, %v; want ErrResultForgotten", rp, err)
	}
	if out := mustExecute(t, e, old); len(out) != 0 || e.height != total {
		t.Fatalf("old request ordered again: %d replies, height %d; want none, %d", len(out), e.height, total)
	}
	e.close()
	again, err := openExecutor(home, 1, "bounded", ledgerKey())
	if err != nil {
		t.Fatal(err)
	}
	defer again.close()
	if !sameExecState(again, e) {
		t.Fatal("replay of the ledger differs from the live executor")
	}
}

// TestWatermarkOutOfOrder: seqs completing out of order within a window
// advance the watermark exactly over the contiguous prefix.
func TestWatermarkOutOfOrder(t *testing.T) {
	e, err := openExecutor(t.TempDir(), 1, "wm", ledgerKey())
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	c := ledgerClient("wm")
	steps := []struct {
		seq, n      uint64
		wm, spans   uint64
		description string
	}{
		{3, 2, 0, 1, "3..4 before 1"},
		{7, 1, 0, 2, "7: a second gap"},
		{1, 1, 1, 2, "1: watermark to 1"},
		{2, 1, 4, 1, "2 closes the gap to 3..4"},
		{6, 1, 4, 1, "6 joins 7"},
		{5, 1, 7, 0, "5 closes the last gap"},
		{8, 3, 10, 0, "in order"},
	}
	for _, s := range steps {
		mustExecute(t, e, batchReq(c, s.seq, int(s.n), "k"))
		cs := e.clients[string(c)]
		if cs.done.Watermark() != s.wm || uint64(cs.done.Spans()) != s.spans {
			t.Fatalf("%s: watermark %d, spans %d; want %d, %d", s.description, cs.done.Watermark(), cs.done.Spans(), s.wm, s.spans)
		}
	}
	if e.height != 10 {
		t.Fatalf("height %d, want 10", e.height)
	}
}

// TestFarFutureSeqRefused: a request reaching more than SeqWindow above the
// client's watermark is refused at the door with ErrSeqTooFarAhead and,
// when a (Byzantine) leader orders it anyway, skipped at execution: not
// executed, not in the ledger, no reply; the same holds for a request that
// would open more than MaxSpans spans. Replay gives the same state.
func TestFarFutureSeqRefused(t *testing.T) {
	home := t.TempDir()
	e, err := openExecutor(home, 1, "far", ledgerKey())
	if err != nil {
		t.Fatal(err)
	}
	c := ledgerClient("far")
	mustExecute(t, e, batchReq(c, 1, 1, "k"))
	far := batchReq(c, 2+types.SeqWindow, 1, "k")
	if _, err := e.admit(&far); !errors.Is(err, ErrSeqTooFarAhead) {
		t.Fatalf("admit far seq: %v, want ErrSeqTooFarAhead", err)
	}
	edge := batchReq(c, 1+types.SeqWindow, 1, "k")
	if _, err := e.admit(&edge); err != nil {
		t.Fatalf("admit the window's last seq: %v", err)
	}
	if out := mustExecute(t, e, far); len(out) != 0 || e.height != 1 || e.refused != 1 {
		t.Fatalf("far seq executed: %d replies, height %d, refused %d", len(out), e.height, e.refused)
	}
	// Scatter: every other seq from 3 on, up to MaxSpans spans.
	var scatter []types.Request
	for i := uint64(0); i < seqset.MaxSpans; i++ {
		scatter = append(scatter, batchReq(c, 3+2*i, 1, "s"))
	}
	mustExecute(t, e, scatter...)
	cs := e.clients[string(c)]
	if cs.done.Spans() != seqset.MaxSpans {
		t.Fatalf("%d spans, want %d", cs.done.Spans(), seqset.MaxSpans)
	}
	one := batchReq(c, 3+2*seqset.MaxSpans+1, 1, "s")
	if _, err := e.admit(&one); !errors.Is(err, ErrSeqTooFarAhead) {
		t.Fatalf("admit one span too many: %v", err)
	}
	h := e.height
	mustExecute(t, e, one)
	if e.height != h || cs.done.Spans() != seqset.MaxSpans {
		t.Fatalf("span over the bound executed: height %d (was %d), spans %d", e.height, h, cs.done.Spans())
	}
	mustExecute(t, e, batchReq(c, 2, 1, "s")) // fills a gap: allowed
	if e.height != h+1 || cs.done.Spans() != seqset.MaxSpans-1 {
		t.Fatalf("gap fill: height %d, spans %d", e.height, cs.done.Spans())
	}
	e.close()
	again, err := openExecutor(home, 1, "far", ledgerKey())
	if err != nil {
		t.Fatal(err)
	}
	defer again.close()
	if !sameExecState(again, e) {
		t.Fatal("replay differs from the live executor")
	}
}

// TestClientRequestFarAheadRefused: at the replica's door, a request more
// than SeqWindow above the client's watermark is ignored with
// ErrSeqTooFarAhead (counted) and never reaches the mempool; seq 0 is
// malformed.
func TestClientRequestFarAheadRefused(t *testing.T) {
	client := key("client", 0)
	pub := client.Public().(ed25519.PublicKey)
	fx := newValFixture(t, restartedWith(t, LedgerLine(pub, 1, "put('k','v')")+"\n"))
	far := fx.request(2+types.SeqWindow, "get('k')", "test")
	fx.r.onClient(fx.stranger, fx.encode(&far))
	(<-fx.r.requests)()
	if len(fx.verdicts) != 1 || !errors.Is(fx.verdicts[0], ErrSeqTooFarAhead) {
		t.Fatalf("verdicts %v, want ErrSeqTooFarAhead", fx.verdicts)
	}
	if got := value(fx.r.m.ignored.WithLabelValues("client")); got != 1 {
		t.Fatalf("ignored client requests counted %v, want 1", got)
	}
	if n := fx.r.core.PendingRequests(); n != 0 {
		t.Fatalf("far-ahead request entered the mempool (%d pending)", n)
	}
	fx.verdicts = nil
	zero := fx.request(0, "get('k')", "test")
	fx.r.onClient(fx.stranger, fx.encode(&zero))
	if len(fx.verdicts) != 1 || !errors.Is(fx.verdicts[0], types.ErrMalformed) || len(fx.r.requests) != 0 {
		t.Fatalf("seq 0: verdicts %v, %d handed to the loop; want ErrMalformed, none", fx.verdicts, len(fx.r.requests))
	}
	in := fx.request(1+types.SeqWindow, "get('k')", "test")
	fx.r.onClient(fx.stranger, fx.encode(&in))
	(<-fx.r.requests)()
	if n := fx.r.core.PendingRequests(); n != 1 {
		t.Fatalf("request at the window's edge not queued (%d pending)", n)
	}
}

// TestReexecutionAfterStoreLagIsIdentical: the committer fsyncs the ledger
// before the block store records the blocks, so a crash in between restarts
// the replica with ledger lines of blocks that commit again. Their
// execution-time decisions depend on the state (a seq far ahead is refused
// at execution until the client's watermark moves): replayed from the whole
// ledger, block A below would be executed the second time although it was
// refused the first, and this replica's ledger would diverge. Opened at the
// block store's ledger height, the lines past it are cut and re-executed
// from the same state: identical ledger and state.
func TestReexecutionAfterStoreLagIsIdentical(t *testing.T) {
	home := t.TempDir()
	e, err := openExecutor(home, 1, "lag", ledgerKey())
	if err != nil {
		t.Fatal(err)
	}
	c := ledgerClient("lag")
	blockA := &types.Block{Round: 1, Payload: []types.Request{batchReq(c, 1+types.SeqWindow, 1, "k")}} // refused: watermark 0
	blockB := &types.Block{Round: 2, Payload: []types.Request{batchReq(c, 1, 1, "k")}}                 // moves the watermark to 1
	for _, b := range []*types.Block{blockA, blockB} {
		if _, err := e.execute(b); err != nil {
			t.Fatal(err)
		}
	}
	want, _ := os.ReadFile(filepath.Join(home, LedgerFile(1)))
	e.close()
	// Crash before the block store recorded A and B: it holds 0 lines.
	again, err := openExecutorFS(osFS{}, home, 1, "lag", ledgerKey(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer again.close()
	if again.height != 0 {
		t.Fatalf("height %d after opening at the store's 0 lines", again.height)
	}
	for _, b := range []*types.Block{blockA, blockB} {
		if _, err := again.execute(b); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(filepath.Join(home, LedgerFile(1)))
	if !bytes.Equal(got, want) || again.height != e.height {
		t.Fatalf("re-executed ledger (height %d):\n%s\nwant (height %d):\n%s", again.height, got, e.height, want)
	}
	// A ledger shorter than the store's count is refused, not silently reused.
	again.close()
	if _, err := openExecutorFS(osFS{}, home, 1, "lag", ledgerKey(), e.height+5); !errors.Is(err, ErrLedgerBehindStore) {
		t.Fatalf("ledger behind the store: %v, want ErrLedgerBehindStore", err)
	}
}
