package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/node/kv"
)

func ledgerLines(n int) []string {
	var out []string
	for i := range n {
		out = append(out, LedgerLine{Client: hex.EncodeToString(make([]byte, 32)), Seq: uint64(i + 1), Op: fmt.Sprintf("put('k','%d')", i)}.String())
	}
	return out
}

// viewOf is the view of the whole lines of data.
func viewOf(data []byte) LedgerView {
	return LedgerView{}.Extend(data[:bytes.LastIndexByte(data, '\n')+1])
}

func TestAnswerLedgerRequestFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replica-0.ledger")
	lines := ledgerLines(5)
	// The last line is being appended: it has no newline yet.
	data := []byte(strings.Join(lines, "\n"))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	view := viewOf(data)
	ask := func(from uint64, max uint32) *LedgerChunk {
		t.Helper()
		req, err := EncodeLedgerRequest(&LedgerRequest{From: from, Max: max})
		if err != nil || !IsLedgerRequest(req) {
			t.Fatalf("encode: %v", err)
		}
		out, err := AnswerLedgerRequest(path, view, req)
		if err != nil {
			t.Fatal(err)
		}
		m, err := DecodeLedgerChunk(out)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := ask(0, 2); m.Height != 4 || m.From != 0 || !slices.Equal(m.Lines, lines[:2]) {
		t.Errorf("from 0 max 2: %+v", m)
	}
	if m := ask(2, 0); m.Height != 4 || !slices.Equal(m.Lines, lines[2:4]) {
		t.Errorf("from 2: %+v", m)
	}
	if m := ask(9, 10); m.Height != 4 || len(m.Lines) != 0 {
		t.Errorf("from 9: %+v", m)
	}
	// A view published before the last lines were durable serves only its own.
	view = viewOf([]byte(strings.Join(lines[:2], "\n") + "\n"))
	if m := ask(0, 0); m.Height != 2 || !slices.Equal(m.Lines, lines[:2]) {
		t.Errorf("older view: %+v", m)
	}
	req, _ := EncodeLedgerRequest(&LedgerRequest{})
	out, err := AnswerLedgerRequest(filepath.Join(t.TempDir(), "none"), LedgerView{}, req)
	if m, derr := DecodeLedgerChunk(out); err != nil || derr != nil || m.Height != 0 {
		t.Errorf("missing file: %v %v %+v", err, derr, m)
	}
	if _, err := AnswerLedgerRequest(path, view, []byte{CodeLedgerRequest, 0xff}); err == nil {
		t.Error("a malformed request was answered")
	}
}

// TestAnswerLedgerRequestLongLedger: over a ledger of several marks, a
// request from any height gets exactly the lines after it, bounded by Max
// and by MaxChunkBytes (but never none while lines remain), and a view
// extended block by block equals the view of the whole file.
func TestAnswerLedgerRequestLongLedger(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	path := filepath.Join(t.TempDir(), "replica-0.ledger")
	var lines []string
	var data []byte
	var view LedgerView
	for len(lines) < 3*LedgerMarkEvery+17 {
		var block []byte
		for range 1 + rng.Intn(300) {
			l := LedgerLine{Client: hex.EncodeToString(make([]byte, 32)), Seq: uint64(len(lines) + 1), Op: fmt.Sprintf("put('k','%s')", strings.Repeat("v", rng.Intn(1000)))}.String()
			lines = append(lines, l)
			block = append(block, l+"\n"...)
		}
		view = view.Extend(block)
		data = append(data, block...)
	}
	if whole := viewOf(data); whole.Lines != view.Lines || whole.Size != view.Size || !slices.Equal(whole.Marks, view.Marks) {
		t.Fatalf("seed %d: the view extended block by block differs from the whole file's", seed)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	byBytes := 0 // requests whose chunk MaxChunkBytes ended
	for range 40 {
		from := uint64(rng.Intn(len(lines) + 2))
		max := uint32(rng.Intn(3 * MaxChunkLines))
		req, _ := EncodeLedgerRequest(&LedgerRequest{From: from, Max: max})
		out, err := AnswerLedgerRequest(path, view, req)
		if err != nil {
			t.Fatalf("seed %d: from %d: %v", seed, from, err)
		}
		m, err := DecodeLedgerChunk(out)
		if err != nil {
			t.Fatal(err)
		}
		limit := int(max)
		if limit == 0 || limit > MaxChunkLines {
			limit = MaxChunkLines
		}
		var want []string
		size := 0
		for i := int(from); i < len(lines) && len(want) < limit; i++ {
			if size+len(lines[i])+1 > MaxChunkBytes && len(want) > 0 {
				byBytes++
				break
			}
			size += len(lines[i]) + 1
			want = append(want, lines[i])
		}
		if m.Height != uint64(len(lines)) || m.From != from || !slices.Equal(m.Lines, want) {
			t.Fatalf("seed %d: from %d max %d: height %d, %d lines; want %d, %d", seed, from, max, m.Height, len(m.Lines), len(lines), len(want))
		}
	}
	if byBytes == 0 {
		t.Fatalf("seed %d: no request reached MaxChunkBytes: the byte bound went untested", seed)
	}
}

// ledgerTransport answers LedgerRequests from per-replica ledgers.
type ledgerTransport struct {
	c       *committee
	cl      *Client
	ledgers [][]string
}

func (t *ledgerTransport) Send(to peer.ID, data []byte) {
	req, err := DecodeLedgerRequest(data)
	if err != nil {
		return
	}
	i := t.c.index(to)
	l := t.ledgers[i]
	m := &LedgerChunk{From: req.From, Height: uint64(len(l))}
	if req.From < uint64(len(l)) {
		m.Lines = l[req.From:min(uint64(len(l)), req.From+uint64(req.Max))]
	}
	out, err := EncodeLedgerChunk(m)
	if err != nil {
		panic(err)
	}
	go t.cl.Deliver(to, out)
}

func TestFetchLedgerKeepsWhatFPlusOneAgreeOn(t *testing.T) {
	c := newCommittee(1)
	honest := ledgerLines(7)
	lie := slices.Clone(honest)
	lie[1] = LedgerLine{Client: hex.EncodeToString(make([]byte, 32)), Seq: 2, Op: "put('k','evil')"}.String()
	tr := &ledgerTransport{c: c, ledgers: [][]string{lie, honest, honest[:3], honest}}
	cl, err := New(c.roster(), tr, Config{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tr.cl = cl
	// A chunk from outside the roster is ignored.
	junk, _ := EncodeLedgerChunk(&LedgerChunk{Lines: lie})
	cl.Deliver(peer.ID("stranger"), junk)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := cl.FetchLedger(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range got {
		if l.String() != honest[i] {
			t.Fatalf("height %d: %s, want %s", i+1, l, honest[i])
		}
	}
	if cl.Stats().UnknownPeer != 1 {
		t.Errorf("stats %+v", cl.Stats())
	}

	// Lines only f replicas hold (the liar's extra ones) never count.
	tr.ledgers = [][]string{append(slices.Clone(honest), ledgerLines(9)[7:]...), honest, honest, honest}
	short, sc := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer sc()
	if _, err := cl.FetchLedger(short, 9); !errors.Is(err, ErrNoLedgerQuorum) {
		t.Errorf("fetching beyond what f+1 hold: %v", err)
	}
}

func TestCheckResults(t *testing.T) {
	o, _ := kv.ParseOps("put('a','b'); append('a','c'); get('a')")
	key := hex.EncodeToString(make([]byte, 32))
	var ledger []LedgerLine
	var recs []Record
	store := kv.New()
	for i, op := range o {
		ledger = append(ledger, LedgerLine{Client: key, Seq: uint64(i + 1), Op: op.String()})
		recs = append(recs, Record{Client: key, Seq: uint64(i + 1), Op: op.String(), Result: store.Apply(op), Height: uint64(i + 1)})
	}
	if v, probs := CheckResults(ledger, recs); v != 3 || len(probs) != 0 {
		t.Fatalf("honest: %d verified, %v", v, probs)
	}
	recs[2].Result = "ab"
	recs[1].Height = 9
	v, probs := CheckResults(ledger, recs)
	if v != 1 || len(probs) != 2 || !strings.Contains(probs[1].Error(), `accepted result "ab", but a replay of the ledger gives "bc"`) {
		t.Errorf("%d verified, %v", v, probs)
	}
}

// TestCheckResultsRealTime: a get that saw a put's value was accepted
// before that put was submitted. Each result equals the replay at its
// height; only the order in time shows that the history is impossible.
func TestCheckResultsRealTime(t *testing.T) {
	key := hex.EncodeToString(make([]byte, 32))
	ledger := []LedgerLine{{Client: key, Seq: 2, Op: "put('a','b')"}, {Client: key, Seq: 1, Op: "get('a')"}}
	put := Record{Client: key, Seq: 2, Op: "put('a','b')", Result: "OK", Height: 1, SubmittedMs: 1000, LatencyMs: 5}
	get := Record{Client: key, Seq: 1, Op: "get('a')", Result: "b", Height: 2, SubmittedMs: 990, LatencyMs: 12.5}
	// In flight together (the get accepted at 1002.5 ms): either order.
	if v, probs := CheckResults(ledger, []Record{get, put}); v != 2 || len(probs) != 0 {
		t.Fatalf("overlapping: %d verified, %v", v, probs)
	}
	get.LatencyMs = 4 // accepted by 995 ms (994 + 1 for the stamp), before the put at 1000
	v, probs := CheckResults(ledger, []Record{get, put})
	want := "request 2 (put('a','b')) was submitted 6 ms after request 1 (get('a')) was accepted, but the ledger orders it first (height 1 < 2)"
	if v != 1 || len(probs) != 1 || probs[0].Error() != want {
		t.Errorf("%d verified, %v; want 1 and %q", v, probs, want)
	}
}

// TestLedgerLineFormat pins the format: "<client>\t<seq>\t<op>\t<crc>", the
// checksum 8 lowercase hex digits of the CRC-32C of everything before its
// tab, and parsed as the last field (an operation may hold a tab).
func TestLedgerLineFormat(t *testing.T) {
	if got := ledgerChecksum("123456789"); got != "e3069283" { // the CRC-32C check value
		t.Fatalf("checksum of the check string = %s, want e3069283", got)
	}
	key := hex.EncodeToString(bytes.Repeat([]byte{0xab}, 32))
	l := LedgerLine{Client: key, Seq: 42, Op: "invalid(\"a\\tb\tc\")"}
	body := key + "\t42\t" + l.Op
	want := fmt.Sprintf("%s\t%08x", body, crc32.Checksum([]byte(body), crc32.MakeTable(crc32.Castagnoli)))
	if l.String() != want {
		t.Fatalf("String() = %q, want %q", l.String(), want)
	}
	// AppendTo checksums only its own line, not what dst held before.
	if got := string(l.AppendTo([]byte("previous line\n"))); got != "previous line\n"+want {
		t.Fatalf("AppendTo = %q, want it after the previous line", got)
	}
	if got, err := ParseLedgerLine(want); err != nil || got != l {
		t.Fatalf("ParseLedgerLine(%q) = %+v, %v", want, got, err)
	}
	sum := want[len(want)-8:]
	for name, bad := range map[string]string{
		"upper-case checksum": body + "\t" + strings.ToUpper(sum),
		"short checksum":      body + "\t" + sum[1:],
		"no checksum":         body,
		"trailing CR":         want + "\r",
		"flipped op byte":     strings.Replace(want, "a", "b", 1),
		"flipped seq":         strings.Replace(want, "\t42\t", "\t43\t", 1),
	} {
		if _, err := ParseLedgerLine(bad); !errors.Is(err, ErrBadLedger) {
			t.Errorf("%s: ParseLedgerLine(%q) = %v, want ErrBadLedger", name, bad, err)
		}
	}
}

// TestReadLedgerRejectsBadChecksum: a complete line whose checksum does not
// match, in the middle or at the end, is an error naming its line; so is a
// CRLF line end (a replica never writes one). Only an incomplete last line
// (no newline) is left out.
func TestReadLedgerRejectsBadChecksum(t *testing.T) {
	lines := ledgerLines(3)
	good := strings.Join(lines, "\n") + "\n"
	if l, err := ReadLedger(strings.NewReader(good + lines[0][:30])); err != nil || len(l) != 3 {
		t.Fatalf("ReadLedger of 3 lines and a torn one: %d lines, %v", len(l), err)
	}
	flip := func(s string, at int) string { b := []byte(s); b[at] ^= 0x01; return string(b) }
	for name, c := range map[string]struct {
		text string
		line string
	}{
		"middle line flipped": {flip(good, len(lines[0])+len(lines[1])/2), "line 2:"},
		"last line flipped":   {flip(good, len(good)-12), "line 3:"},
		"checksum flipped":    {flip(good, len(lines[0])-1), "line 1:"},
		"CRLF":                {strings.ReplaceAll(good, "\n", "\r\n"), "line 1:"},
	} {
		_, err := ReadLedger(strings.NewReader(c.text))
		if !errors.Is(err, ErrBadLedger) || !strings.HasPrefix(err.Error(), c.line) {
			t.Errorf("%s: ReadLedger = %v, want ErrBadLedger naming %q", name, err, c.line)
		}
	}
}

func TestLedgerAndResultsFiles(t *testing.T) {
	key := hex.EncodeToString(make([]byte, 32))
	line := func(seq uint64, op string) string { return LedgerLine{Client: key, Seq: seq, Op: op}.String() + "\n" }
	text := line(1, "put('a','b')") + line(2, "put('a','b')") + line(1, "put('a','b')") + line(3, "bogus") + line(4, "get('a')")[:len(key)+10]
	l, err := ReadLedger(strings.NewReader(text))
	if err != nil || len(l) != 4 {
		t.Fatalf("ReadLedger: %d lines, %v", len(l), err)
	}
	res, dups, bad := Replay(l)
	if !slices.Equal(res, []string{"OK", "OK", "", "fail"}) || !slices.Equal(dups, []uint64{3}) || !slices.Equal(bad, []uint64{4}) {
		t.Errorf("Replay = %q, dups %v, bad %v", res, dups, bad)
	}
	for _, badLine := range []string{withCRC("x\t1\tget('a')") + "\n", withCRC(key+"\tone\tget('a')") + "\n", withCRC(key+" 1 get('a')") + "\n", key + "\t1\tget('a')\n"} {
		if _, err := ReadLedger(strings.NewReader(badLine)); !errors.Is(err, ErrBadLedger) {
			t.Errorf("ReadLedger(%q) = %v", badLine, err)
		}
	}
	recs, err := ReadRecords(strings.NewReader(`{"client":"ab","seq":1,"op":"get('a')","result":"","height":3,"submitted_ms":5,"latency_ms":1.5}` + "\n" + `{"client":"ab","se`))
	if err != nil || len(recs) != 1 || recs[0].Height != 3 || recs[0].LatencyMs != 1.5 {
		t.Errorf("ReadRecords: %+v, %v", recs, err)
	}
	if _, err := ReadRecords(strings.NewReader("{bad\n{}\n")); err == nil {
		t.Error("a bad line that is not the last was accepted")
	}
}
