package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/protocol/types"
)

// LedgerLine formats one executed request, without its newline, as the
// executor writes it (client.LedgerLine, docs/internal-contracts.md
// "Ledger file").
func LedgerLine(clientKey []byte, seq uint64, op string) string {
	return client.LedgerLine{Client: hex.EncodeToString(clientKey), Seq: seq, Op: op}.String()
}

// TestReplayedRequestAfterRestartIsNotExecutedAgain: a (client, seq) that
// was executed before a restart gets the cached result when it is committed
// again (a retransmission ordered twice, or a block committed again after a
// crash) or asked again, and the state machine and the ledger are unchanged.
// append is not idempotent, so a second execution would show.
func TestReplayedRequestAfterRestartIsNotExecutedAgain(t *testing.T) {
	home := t.TempDir()
	client := ledgerClient("client-x")
	put := types.Request{Client: client, Seq: 1, Ops: []string{"put('k','a')"}}
	app := types.Request{Client: client, Seq: 2, Ops: []string{"append('k','b')"}}
	e, err := openExecutor(home, 1, "crash-test", ledgerKey())
	if err != nil {
		t.Fatal(err)
	}
	first, err := e.execute(&types.Block{Round: 1, Payload: []types.Request{put, app}})
	if err != nil {
		t.Fatal(err)
	}
	e.close()
	path := filepath.Join(home, LedgerFile(1))
	before, _ := os.ReadFile(path)

	e, err = openExecutor(home, 1, "crash-test", ledgerKey())
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	if rp := e.cached(&app); rp == nil || !sameReply(rp, first[1]) {
		t.Fatalf("after restart, the cached reply of seq 2 is %+v, want %+v", rp, first[1])
	}
	get := types.Request{Client: client, Seq: 3, Ops: []string{"get('k')"}}
	out, err := e.execute(&types.Block{Round: 5, Payload: []types.Request{app, get}})
	if err != nil {
		t.Fatal(err)
	}
	if !sameReply(out[0], first[1]) {
		t.Fatalf("replayed seq 2 got %+v, want the cached %+v", out[0], first[1])
	}
	if out[1].Results[0] != "ab" || out[1].Heights[0] != 3 {
		t.Fatalf("get after the replay = %q at height %v, want \"ab\" at 3 (append executed twice?)", out[1].Results, out[1].Heights)
	}
	after, _ := os.ReadFile(path)
	if want := append(before, LedgerLine(client, 3, "get('k')")+"\n"...); !bytes.Equal(after, want) {
		t.Fatalf("ledger after the replay:\n%s\nwant\n%s", after, want)
	}
	if got := e.kv.Snapshot()["k"]; got != "ab" {
		t.Fatalf("k = %q, want \"ab\"", got)
	}
}

// ledgerClient is a 32-byte client key for ledger tests (the ledger holds
// ed25519 public keys; replay refuses anything else).
func ledgerClient(name string) []byte {
	k := sha256.Sum256([]byte(name))
	return k[:]
}

// TestLedgerTornTailRepairedOnOpen: a crash in the middle of a block's write
// leaves part of a line; opening cuts it off, and the next block is appended
// after the last whole line.
func TestLedgerTornTailRepairedOnOpen(t *testing.T) {
	home := t.TempDir()
	path := filepath.Join(home, LedgerFile(1))
	c := ledgerClient("c")
	whole := LedgerLine(c, 1, "put('k','a')") + "\n"
	if err := os.WriteFile(path, []byte(whole+LedgerLine(c, 2, "appe")), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := openExecutor(home, 1, "crash-test", ledgerKey())
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	if e.height != 1 {
		t.Fatalf("height %d after repair, want 1", e.height)
	}
	if _, err := e.execute(&types.Block{Round: 2, Payload: []types.Request{{Client: c, Seq: 2, Ops: []string{"append('k','b')"}}}}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if want := whole + LedgerLine(c, 2, "append('k','b')") + "\n"; string(got) != want {
		t.Fatalf("ledger %q, want %q", got, want)
	}
}

// TestLedgerBadLastLineCutOnOpen: a complete last line whose checksum does
// not match (a write torn out of order: its newline reached the disk, some
// of its bytes did not) or that does not parse is a torn tail too: it is
// cut, and the replica resumes, executing that request again.
func TestLedgerBadLastLineCutOnOpen(t *testing.T) {
	c := ledgerClient("c")
	whole := LedgerLine(c, 1, "put('k','a')") + "\n"
	last := LedgerLine(c, 2, "append('k','b')")
	for name, tail := range map[string]string{
		"bad checksum":   strings.Replace(last, "'b'", "'c'", 1) + "\n",
		"zeros":          string(make([]byte, len(last))) + "\n",
		"no checksum":    hex.EncodeToString(c) + "\t2\tappend('k','b')\n",
		"checksum cut":   last[:len(last)-3] + "\n",
		"trailing CR":    last + "\r\n",
		"short client":   client.LedgerLine{Client: "abcd", Seq: 2, Op: "append('k','b')"}.String() + "\n",
		"only bad line":  "",
		"zeros and torn": string(make([]byte, 10)) + "\n" + last[:20],
	} {
		t.Run(name, func(t *testing.T) {
			home := t.TempDir()
			path := filepath.Join(home, LedgerFile(1))
			content, want := whole+tail, whole
			if name == "only bad line" {
				content, want = strings.Replace(whole, "'a'", "'x'", 1), ""
			}
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			e, err := openExecutor(home, 1, "crash-test", ledgerKey())
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer e.close()
			if got, _ := os.ReadFile(path); string(got) != want {
				t.Fatalf("after open the ledger is %q, want %q", got, want)
			}
			h := uint64(strings.Count(want, "\n"))
			if e.height != h {
				t.Fatalf("height %d after the repair, want %d", e.height, h)
			}
			b := &types.Block{Round: 2, Payload: []types.Request{{Client: c, Seq: 1, Ops: []string{"put('k','a')"}}, {Client: c, Seq: 2, Ops: []string{"append('k','b')"}}}}
			if _, err := e.execute(b); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(path)
			if want := whole + last + "\n"; string(got) != want {
				t.Fatalf("ledger after resuming %q, want %q", got, want)
			}
			if v := e.kv.Snapshot()["k"]; v != "ab" {
				t.Fatalf("k = %q after resuming, want \"ab\"", v)
			}
		})
	}
}

// TestLedgerCorruptLineRefusesToStart: a line that fails its checksum and is
// followed by further lines was damaged in place (a torn append is always
// the last line): the replica must refuse to start with ErrLedgerCorrupt
// naming the file and the line, and leave the file as it is. The last line
// damaged the same way is cut as a torn tail instead.
func TestLedgerCorruptLineRefusesToStart(t *testing.T) {
	c := ledgerClient("c")
	var ledger string
	for seq := uint64(1); seq <= 3; seq++ {
		ledger += LedgerLine(c, seq, fmt.Sprintf("append('k','%d')", seq)) + "\n"
	}
	second := strings.Index(ledger, "\n") + 1
	damaged := []byte(ledger)
	damaged[second+70] ^= 0x20 // in the op of line 2
	home := t.TempDir()
	path := filepath.Join(home, LedgerFile(1))
	if err := os.WriteFile(path, damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := openExecutor(home, 1, "crash-test", ledgerKey())
	var ce *LedgerCorruptError
	if !errors.Is(err, ErrLedgerCorrupt) || !errors.Is(err, client.ErrBadLedger) || !errors.As(err, &ce) {
		t.Fatalf("open of a ledger damaged in line 2 = %v, want a *LedgerCorruptError", err)
	}
	if ce.Path != path || ce.Line != 2 || !strings.Contains(err.Error(), path+":2:") || !strings.Contains(err.Error(), BlockStoreFile) {
		t.Fatalf("error %q (path %s, line %d) does not name %s:2 and the recovery", err, ce.Path, ce.Line, path)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, damaged) {
		t.Fatal("a corrupt ledger was modified")
	}
}

// TestLedgerBadLastLineWithinStoreRefusesToStart: the block store counts
// the ledger lines of its committed blocks, which were fsync'd before its
// transaction, so a bad or incomplete last line among them was damaged in
// place, not torn by a crash: the replica refuses to start with
// ErrLedgerCorrupt and leaves the file as it is (cutting it before refusing
// would lose committed data and blame a missing ledger instead). Past the
// store's count the same line is a torn tail and is cut.
func TestLedgerBadLastLineWithinStoreRefusesToStart(t *testing.T) {
	c := ledgerClient("c")
	var ledger string
	for seq := uint64(1); seq <= 3; seq++ {
		ledger += LedgerLine(c, seq, fmt.Sprintf("append('k','%d')", seq)) + "\n"
	}
	flipped := []byte(ledger)
	flipped[len(flipped)-2] ^= 0x01 // a checksum digit of line 3
	for name, damaged := range map[string][]byte{
		"bad checksum": flipped,
		"no newline":   []byte(ledger[:len(ledger)-1]),
	} {
		t.Run(name, func(t *testing.T) {
			home := t.TempDir()
			path := filepath.Join(home, LedgerFile(1))
			if err := os.WriteFile(path, damaged, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := openExecutorFS(osFS{}, home, 1, "crash-test", ledgerKey(), 3)
			var ce *LedgerCorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrLedgerCorrupt) || !errors.Is(err, client.ErrBadLedger) || errors.Is(err, ErrLedgerBehindStore) {
				t.Fatalf("open with line 3 of 3 counted by the block store = %v, want a *LedgerCorruptError", err)
			}
			if ce.Path != path || ce.Line != 3 || !strings.Contains(err.Error(), "block store") {
				t.Fatalf("error %q (path %s, line %d) does not name %s:3 and why", err, ce.Path, ce.Line, path)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, damaged) {
				t.Fatalf("a refused start modified the ledger: %d bytes, was %d", len(got), len(damaged))
			}
			e, err := openExecutorFS(osFS{}, home, 1, "crash-test", ledgerKey(), noLimit)
			if err != nil {
				t.Fatalf("open without the store's count: %v, want the last line cut as a torn tail", err)
			}
			defer e.close()
			if e.height != 2 {
				t.Fatalf("height %d after cutting the torn tail, want 2", e.height)
			}
		})
	}
}

// BenchmarkExecuteBlock is the cost of committing a block of 100 requests:
// execution, 100 reply signatures, one ledger write and its fdatasync; the
// InMemory variant writes to the page-cache double (no disk), so the
// difference is the cost of the write and fdatasync.
func BenchmarkExecuteBlock(b *testing.B) {
	b.Run("Disk", func(b *testing.B) {
		e, err := openExecutor(b.TempDir(), 1, "bench", ledgerKey())
		if err != nil {
			b.Fatal(err)
		}
		benchExecute(b, e)
	})
	b.Run("InMemory", func(b *testing.B) {
		e, err := openExecutorFS(newCrashFS(nil, -1, keepUnsynced), crashHome, 1, "bench", ledgerKey(), noLimit)
		if err != nil {
			b.Fatal(err)
		}
		benchExecute(b, e)
	})
}

func benchExecute(b *testing.B, e *executor) {
	defer e.close()
	client := []byte("bench-client")
	seq := uint64(0)
	for b.Loop() {
		blk := &types.Block{Round: types.Round(seq/100 + 1)}
		for range 100 {
			seq++
			blk.Payload = append(blk.Payload, types.Request{Client: client, Seq: seq, Ops: []string{fmt.Sprintf("put('k%d','v%d')", seq%10, seq)}})
		}
		if _, err := e.execute(blk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFdatasync is the bare cost of one small write and fdatasync on
// this machine's disk, for comparison.
func BenchmarkFdatasync(b *testing.B) {
	f, _, err := osFS{}.OpenFile(filepath.Join(b.TempDir(), "f"), 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 512)
	for b.Loop() {
		if _, err := f.WriteAt(buf, 0); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLedgerReplay is the cost of reopening a ledger of 10,000
// requests at start-up (reading it, applying it, rebuilding the reply cache).
func BenchmarkLedgerReplay(b *testing.B) {
	home := b.TempDir()
	var ledger bytes.Buffer
	for seq := uint64(1); seq <= 10000; seq++ {
		ledger.WriteString(LedgerLine(ledgerClient("bench-client"), seq, fmt.Sprintf("put('k%d','v%d')", seq%10, seq)) + "\n")
	}
	if err := os.WriteFile(filepath.Join(home, LedgerFile(1)), ledger.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		e, err := openExecutor(home, 1, "bench", ledgerKey())
		if err != nil {
			b.Fatal(err)
		}
		e.close()
	}
}

// TestNoCachedReplyBeforeDurable: the committer executes a block, writes
// and fsyncs its ledger lines, then syncs the block in the block store and
// marks it durable; until then the event loop must not answer a
// retransmitted request from the cache, or a reply could acknowledge a
// result that a crash then loses from this replica's disk.
func TestNoCachedReplyBeforeDurable(t *testing.T) {
	e, err := openExecutor(t.TempDir(), 1, "fsync-test", ledgerKey())
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	req := types.Request{Client: []byte("client-y"), Seq: 1, Ops: []string{"put('k','a')"}}
	out, lines := e.apply(&types.Block{Round: 1, Payload: []types.Request{req}}, nil)
	if len(out) != 1 || len(lines) == 0 {
		t.Fatalf("apply gave %d replies and %d bytes of ledger", len(out), len(lines))
	}
	if rp := e.cached(&req); rp != nil {
		t.Fatalf("cached answered %+v before the ledger fsync", rp)
	}
	if err := e.persist(lines); err != nil {
		t.Fatal(err)
	}
	if rp := e.cached(&req); rp != nil {
		t.Fatalf("cached answered %+v before the block store sync (markDurable)", rp)
	}
	e.markDurable()
	if rp := e.cached(&req); rp == nil || rp.Results[0] != out[0].Results[0] {
		t.Fatalf("after the fsync cached = %+v, want the result %q", rp, out[0].Results[0])
	}
}

// execute applies a committed block and persists its ledger lines, as the
// committer does for a group of one (committer.go), and returns the
// unsigned replies.
func (e *executor) execute(b *types.Block) ([]*types.ClientReply, error) {
	out, lines := e.apply(b, nil)
	if err := e.persist(lines); err != nil {
		return nil, err
	}
	e.markDurable()
	return out, nil
}

// cached is admit's answer from the cache: the signed reply to r if every
// operation of r was executed, its result is still kept and it is durable
// (its ledger line and its block on disk, markDurable).
func (e *executor) cached(r *types.Request) *types.ClientReply {
	rp, _ := e.admit(r)
	return rp
}

// TestServedLedgerViewIsDurable: ledger requests are answered from the
// lines made durable (markDurable), not from those only written, and a
// replayed ledger serves exactly its file, marks included.
func TestServedLedgerViewIsDurable(t *testing.T) {
	home := t.TempDir()
	e, err := openExecutor(home, 1, "view", ledgerKey())
	if err != nil {
		t.Fatal(err)
	}
	c := ledgerClient("view")
	for seq := uint64(1); seq <= 3100; seq += 100 { // 3,100 lines: marks at 0, 1024, 2048, 3072
		mustExecute(t, e, batchReq(c, seq, 100, "k"))
	}
	_, lines := e.apply(&types.Block{Round: 2, Payload: []types.Request{batchReq(c, 3101, 5, "k")}}, nil)
	if err := e.persist(lines); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(home, LedgerFile(1))
	data, _ := os.ReadFile(path)
	durable := data[:len(data)-len(lines)]
	if got, want := e.servedView(), (client.LedgerView{}).Extend(durable); got.Lines != want.Lines || got.Size != want.Size || !slices.Equal(got.Marks, want.Marks) {
		t.Fatalf("before markDurable the served view has %d lines, %d bytes; want the durable %d, %d", got.Lines, got.Size, want.Lines, want.Size)
	}
	e.markDurable()
	e.close()
	again, err := openExecutor(home, 1, "view", ledgerKey())
	if err != nil {
		t.Fatal(err)
	}
	defer again.close()
	want := (client.LedgerView{}).Extend(data)
	if got := again.servedView(); got.Lines != 3105 || got.Lines != want.Lines || got.Size != want.Size || !slices.Equal(got.Marks, want.Marks) || len(got.Marks) != 4 {
		t.Fatalf("replayed view %d lines, %d bytes, %d marks; want %d, %d, 4", got.Lines, got.Size, len(got.Marks), want.Lines, want.Size)
	}
}
