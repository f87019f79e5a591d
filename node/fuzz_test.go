package node

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/protocol/safety"
	"github.com/diembft/diembft/protocol/types"
)

// Fuzz targets for what a replica decodes from its own disk when it starts:
// the safety file, the ledger file (replayed by the executor into the state
// machine and the reply cache) and the blocks and certificates of the block
// store. A damaged or hostile file must be refused with an error, never
// crash the replica, and whatever is accepted must survive decode → encode
// → decode. The seed corpus is committed under testdata/fuzz
// (TestFuzzSeedCorpus).

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus under testdata/fuzz")

// safetySlot is one slot of the safety file as safetyStore.save writes it,
// with the checksum optionally broken.
func safetySlot(seq uint64, payload []byte, badSum bool) []byte {
	buf := appendFrame(nil, seq, payload)
	if badSum {
		binary.BigEndian.PutUint32(buf[12:16], binary.BigEndian.Uint32(buf[12:16])+1)
	}
	return buf
}

// openSafetyBytes writes data as the safety file of home and opens it.
func openSafetyBytes(t *testing.T, home string, data []byte) (safety.State, error) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(home, "safety.dat"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, st, err := openSafetyStore(home)
	if err == nil {
		s.close()
	}
	return st, err
}

// checkSafetyState: an accepted state survives JSON encode → decode, and
// the file safetyStore.save would write for it opens to the same state. (The
// file is written here rather than by save, whose fdatasync would make every
// execution cost milliseconds.)
func checkSafetyState(t *testing.T, home string, st safety.State) {
	t.Helper()
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatalf("marshal an accepted state: %v", err)
	}
	var again safety.State
	if err := json.Unmarshal(data, &again); err != nil || !reflect.DeepEqual(again, st) {
		t.Fatalf("decode, encode, decode changed the state: %+v, %v; want %+v", again, err, st)
	}
	if len(data) > slotSize-slotHeader {
		return // too large for a slot: save refuses it with an error
	}
	file := make([]byte, 2*slotSize)
	copy(file[slotSize:], safetySlot(1, data, false)) // save's first write: seq 1, slot 1
	back, err := openSafetyBytes(t, home, file)
	if err != nil {
		t.Fatalf("reopen the re-encoded state: %v", err)
	}
	if !reflect.DeepEqual(back, st) {
		t.Fatalf("encode, reopen changed the state:\n%+v\n%+v", st, back)
	}
}

// FuzzSafetyFile fuzzes the state inside a slot with a valid checksum (so
// the fuzzer gets past it), in either slot, with the checksum optionally
// broken and the other slot zero.
func FuzzSafetyFile(f *testing.F) {
	home := f.TempDir()
	f.Fuzz(func(t *testing.T, payload []byte, seq uint64, second, badSum bool) {
		if len(payload) > slotSize-slotHeader {
			payload = payload[:slotSize-slotHeader]
		}
		file := make([]byte, 2*slotSize)
		off := 0
		if second {
			off = slotSize
		}
		copy(file[off:], safetySlot(seq, payload, badSum))
		st, err := openSafetyBytes(t, home, file)
		if err != nil {
			if !errors.Is(err, ErrSafetyCorrupt) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		checkSafetyState(t, home, st)
	})
}

// FuzzSafetyFileRaw fuzzes the whole file: any size, any bytes.
func FuzzSafetyFileRaw(f *testing.F) {
	home := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return // a new file: sized and synced, nothing decoded
		}
		st, err := openSafetyBytes(t, home, data)
		if err != nil {
			if !errors.Is(err, ErrSafetyCorrupt) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		checkSafetyState(t, home, st)
	})
}

// fuzzLogArea is the vote log area size of FuzzVoteLog: small, so that
// the fuzzer's inputs cover both areas.
const fuzzLogArea = 2048

// FuzzVoteLog is the vote log's restart path: data is laid over the log's
// two areas after a valid state. Whatever the log holds, the store opens
// (the state slots do not depend on it), each block read back checks out
// once, and a vote saved after it comes back after a restart: garbage in
// the log never blocks the generations that follow.
func FuzzVoteLog(f *testing.F) {
	home := f.TempDir()
	_, gqc := types.Genesis()
	next := &types.Block{Author: 3, Round: 1 << 40, QC: gqc}
	next.ID = next.ComputeID()
	empty, _ := json.Marshal(safety.State{})
	f.Fuzz(func(t *testing.T, data []byte) {
		file := make([]byte, logBase, logBase+2*fuzzLogArea)
		copy(file[slotSize:], safetySlot(1, empty, false))
		file = append(file, data[:min(len(data), 2*fuzzLogArea)]...)
		path := filepath.Join(home, "safety.dat")
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		s, _, err := openSafetyLog(osFS{}, home, 512, fuzzLogArea)
		if err != nil {
			t.Fatalf("a damaged vote log kept the safety file from opening: %v", err)
		}
		seen := map[types.Hash]bool{}
		for _, b := range s.logged {
			if b.ComputeID() != b.ID || seen[b.ID] {
				t.Fatalf("block %x read back twice or with a wrong id", b.ID[:4])
			}
			seen[b.ID] = true
		}
		err = s.save(safety.State{HighestVoteRound: next.Round}, next)
		s.close()
		if err != nil {
			t.Fatalf("save after a damaged log: %v", err)
		}
		s, st, err := openSafetyLog(osFS{}, home, 512, fuzzLogArea)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer s.close()
		if st.HighestVoteRound != next.Round || !slices.ContainsFunc(s.logged, func(b *types.Block) bool { return b.ID == next.ID }) {
			t.Fatalf("the vote saved after a damaged log did not come back (state round %d, %d blocks)", st.HighestVoteRound, len(s.logged))
		}
	})
}

var fuzzReplyKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

// replayBytes writes data as replica 0's ledger in home and replays it.
func replayBytes(t *testing.T, home string, data []byte) (*executor, error) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(home, LedgerFile(0)), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return openExecutor(home, 0, "fuzz", fuzzReplyKey)
}

// FuzzLedgerReplay is the executor's restart path: the ledger file is
// replayed into the key-value store and the reply cache. Checks: a line
// that does not parse or fails its checksum and is followed by others is a
// *LedgerCorruptError naming it, and the file is left alone; otherwise the
// torn tail (no newline, or a bad last line) is cut off the file; the
// replayed lines re-encoded with LedgerLine replay to the same state; and
// the results agree with bin/client's reader and independent replay
// (client.ReadLedger, client.Replay), which diembft verify uses to judge
// the replicas.
func FuzzLedgerReplay(f *testing.F) {
	home := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(home, LedgerFile(0))
		e, err := replayBytes(t, home, data)
		complete := data[:bytes.LastIndexByte(data, '\n')+1]
		n := bytes.Count(complete, []byte{'\n'})
		onDisk, _ := os.ReadFile(path)
		if err != nil {
			var ce *LedgerCorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrLedgerCorrupt) || !errors.Is(err, client.ErrBadLedger) || ce.Line < 1 || ce.Line >= uint64(n) || ce.Path != path {
				t.Fatalf("unexpected replay error: %v", err)
			}
			if !bytes.Equal(onDisk, data) {
				t.Fatal("a corrupt ledger was modified")
			}
			if _, rerr := client.ReadLedger(bytes.NewReader(data)); !errors.Is(rerr, client.ErrBadLedger) || !strings.HasPrefix(rerr.Error(), fmt.Sprintf("line %d:", ce.Line)) {
				t.Fatalf("the replica finds line %d corrupt, client.ReadLedger says %v", ce.Line, rerr)
			}
			return
		}
		e.close()
		if !bytes.HasPrefix(complete, onDisk) || (len(onDisk) > 0 && onDisk[len(onDisk)-1] != '\n') {
			t.Fatalf("torn tail not cut: file is %q, complete lines %q", onDisk, complete)
		}
		if kept := bytes.Count(onDisk, []byte{'\n'}); kept < n-1 || uint64(kept) != e.height {
			t.Fatalf("height %d, %d lines kept of %d complete ones", e.height, kept, n)
		}
		// What the replica kept, the client reads, with the same lines.
		ledger, err := client.ReadLedger(bytes.NewReader(onDisk))
		if err != nil || uint64(len(ledger)) != e.height {
			t.Fatalf("client.ReadLedger of the repaired ledger: %d lines, %v; replica height %d", len(ledger), err, e.height)
		}
		if len(onDisk) < len(complete) {
			if _, err := client.ReadLedger(bytes.NewReader(complete)); err == nil {
				t.Fatalf("replay cut a last line %q that client.ReadLedger accepts", complete[len(onDisk):])
			}
		}
		// Re-encode what was replayed and replay that.
		var buf bytes.Buffer
		for _, l := range ledger {
			cl, _ := hex.DecodeString(l.Client)
			buf.WriteString(LedgerLine(cl, l.Seq, l.Op) + "\n")
		}
		e2, err := replayBytes(t, home, buf.Bytes())
		if err != nil {
			t.Fatalf("re-encoded ledger does not replay: %v\n%q", err, buf.Bytes())
		}
		e2.close()
		if e2.height != e.height || !maps.Equal(e2.kv.Snapshot(), e.kv.Snapshot()) || !sameExecState(e2, e) {
			t.Fatalf("decode, encode, decode changed the replayed state")
		}
		// Cross-check with the client's independent replay.
		results, dups, _ := client.Replay(ledger)
		if len(dups) > 0 {
			// The executor never writes a (client, seq) twice; replay
			// executes such a line again where client.Replay skips it.
			return
		}
		kept := e.resultsByKey()
		for i, l := range ledger {
			cl, _ := hex.DecodeString(l.Client)
			d, ok := kept[types.RequestKey{Client: string(cl), Seq: l.Seq}]
			if !ok || d.result != results[i] || d.height != uint64(i+1) {
				t.Fatalf("line %d (%+v): the replica's replay gives %+v, the client's %q", i+1, l, d, results[i])
			}
		}
	})
}

// FuzzDecodeStoredBlock is what recover reads from the block store's chain
// and pending buckets.
func FuzzDecodeStoredBlock(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeBlock(data)
		if err != nil {
			return
		}
		if b.ComputeID() != b.ID {
			t.Fatal("decodeBlock accepted a block whose id does not match")
		}
		_ = b.ParentID()
		enc2, err := enc.Marshal(b)
		if err != nil {
			t.Fatalf("encode a decoded block: %v", err)
		}
		again, err := decodeBlock(enc2)
		if err != nil || !reflect.DeepEqual(again, b) {
			t.Fatalf("decode, encode, decode: %+v, %v; want %+v", again, err, b)
		}
	})
}

// FuzzDecodeStoredQC is what recover reads as the high QC and high commit QC.
func FuzzDecodeStoredQC(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := decodeQC(data)
		if err != nil {
			return
		}
		_, _ = q.Round(), q.LedgerCommitInfo.Commits()
		enc2, err := enc.Marshal(q)
		if err != nil {
			t.Fatalf("encode a decoded QC: %v", err)
		}
		again, err := decodeQC(enc2)
		if err != nil || !reflect.DeepEqual(again, q) {
			t.Fatalf("decode, encode, decode: %+v, %v; want %+v", again, err, q)
		}
	})
}

func seedCorpus(t *testing.T) map[string][]any {
	// A state as the safety rules leave it after a vote and a timeout.
	_, gqc := types.Genesis()
	rules := safety.New(1, "fuzz", types.Ed25519Signer{Key: fuzzReplyKey}, safety.State{})
	b1 := &types.Block{Author: 1, Round: 1, QC: gqc}
	b1.ID = b1.ComputeID()
	rules.MakeVote(b1, nil, types.Hash{1}, func(types.Hash) (types.Hash, bool) { return types.Hash{}, false })
	qc1 := &types.QC{VoteInfo: types.VoteInfo{ID: b1.ID, Round: 1, ParentID: gqc.VoteInfo.ID, ExecStateID: types.Hash{1}}}
	qc1.LedgerCommitInfo.VoteInfoHash = qc1.VoteInfo.Hash()
	qc1.Signatures = []types.PartialSig{{Signer: 0, Sig: make([]byte, 64)}, {Signer: 1, Sig: bytes.Repeat([]byte{1}, 64)}, {Signer: 2, Sig: bytes.Repeat([]byte{2}, 64)}}
	rules.MakeTimeout(2, qc1, nil)
	state, err := json.Marshal(rules.State())
	if err != nil {
		t.Fatal(err)
	}
	empty, _ := json.Marshal(safety.State{})

	cl := bytes.Repeat([]byte{0xab}, 32)
	ledger := LedgerLine(cl, 1, "put('movie','star')") + "\n" + LedgerLine(cl, 2, "append('movie',' wars')") + "\n" +
		LedgerLine(cl, 3, `invalid("slice('movie','x')")`) + "\n" + LedgerLine(cl, 4, "slice('movie','0:4')") + "\n"

	req := types.Request{Client: cl, Seq: 9, Ops: []string{"get('movie')"}, Sig: make([]byte, 64)}
	b2 := &types.Block{Author: 2, Round: 2, QC: qc1, Payload: []types.Request{req}}
	b2.ID = b2.ComputeID()
	block, err := enc.Marshal(b2)
	if err != nil {
		t.Fatal(err)
	}
	genesis, _ := types.Genesis()
	gblock, _ := enc.Marshal(genesis)
	qc, _ := enc.Marshal(qc1)
	gq, _ := enc.Marshal(gqc)

	return map[string][]any{
		"FuzzSafetyFile/vote-and-timeout": {state, uint64(3), false, false},
		"FuzzSafetyFile/second-slot":      {state, uint64(4), true, false},
		"FuzzSafetyFile/bad-checksum":     {state, uint64(1), true, true},
		"FuzzSafetyFile/empty-state":      {empty, uint64(1), true, false},
		"FuzzSafetyFile/not-json":         {[]byte("{\"HighestVoteRound\":"), uint64(2), false, false},
		"FuzzVoteLog/one-generation":      {voteLogGeneration(t, 7, block)},
		"FuzzVoteLog/torn-record":         {voteLogGeneration(t, 7, block)[:60]},
		"FuzzSafetyFileRaw/two-slots":     {append(append(safetySlot(2, state, false), make([]byte, slotSize-slotHeader-len(state))...), safetySlot(1, empty, false)...)},
		"FuzzSafetyFileRaw/short":         {safetySlot(1, state, false)},
		"FuzzSafetyFileRaw/zeros":         {make([]byte, 64)},
		"FuzzLedgerReplay/four":           {[]byte(ledger)},
		"FuzzLedgerReplay/torn":           {[]byte(ledger + LedgerLine(cl, 5, "get('movie')")[:40])},
		"FuzzLedgerReplay/crlf":           {[]byte(strings.ReplaceAll(ledger, "\n", "\r\n"))},
		"FuzzLedgerReplay/bad-line":       {[]byte("zz\t1\tget('k')\n")},
		"FuzzLedgerReplay/flipped-middle": {[]byte(strings.Replace(ledger, "wars", "ward", 1))},
		"FuzzLedgerReplay/bad-last":       {[]byte(ledger + strings.Replace(LedgerLine(cl, 5, "get('movie')"), "movie", "movia", 1) + "\n")},
		"FuzzDecodeStoredBlock/block":     {block},
		"FuzzDecodeStoredBlock/genesis":   {gblock},
		"FuzzDecodeStoredQC/qc":           {qc},
		"FuzzDecodeStoredQC/genesis":      {gq},
	}
}

// TestFuzzSeedCorpus keeps testdata/fuzz in step with seedCorpus. Regenerate
// with go test ./node -run TestFuzzSeedCorpus -update-corpus.
func TestFuzzSeedCorpus(t *testing.T) {
	seeds := seedCorpus(t)
	for _, name := range slices.Sorted(maps.Keys(seeds)) {
		path := filepath.Join("testdata", "fuzz", filepath.FromSlash(name))
		want := corpusFile(t, seeds[name]...)
		if *updateCorpus {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("seed %s missing or stale (%v); run with -update-corpus", path, err)
		}
	}
}

// voteLogGeneration is a vote log area as logBlock writes a generation of
// one record: the header frame, then the record.
func voteLogGeneration(t *testing.T, seq uint64, record []byte) []byte {
	t.Helper()
	buf := appendFrame(nil, seq, genHeader(1))
	return appendFrame(buf, seq+1, record)
}

// corpusFile is the go test fuzz v1 encoding of one entry.
func corpusFile(t *testing.T, args ...any) []byte {
	b := []byte("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			b = fmt.Appendf(b, "[]byte(%q)\n", v)
		case bool:
			b = fmt.Appendf(b, "bool(%v)\n", v)
		case uint64:
			b = fmt.Appendf(b, "uint64(%d)\n", v)
		default:
			t.Fatalf("corpusFile: unsupported %T", a)
		}
	}
	return b
}
