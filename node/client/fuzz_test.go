package client

import (
	"bytes"
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

	"github.com/diembft/diembft/protocol/wire"
)

// Fuzz targets for every decoder of this package: ledger lines and ledger
// files (what bin/client --verify and diembft verify read), client results
// files, and the two messages of the ledger exchange on the client protocol.
// Each checks that the decoder never panics, fails only with its typed error,
// and that whatever it accepts survives decode → encode → decode unchanged.
// The seed corpus is committed under testdata/fuzz (TestFuzzSeedCorpus).

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus under testdata/fuzz")

var sampleClient = hex.EncodeToString(bytes.Repeat([]byte{0xab}, 32))

func FuzzParseLedgerLine(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLedgerLine(s)
		if err != nil {
			if !errors.Is(err, ErrBadLedger) {
				t.Fatalf("ParseLedgerLine(%q): error without ErrBadLedger: %v", s, err)
			}
			return
		}
		again, err := ParseLedgerLine(l.String())
		if err != nil {
			t.Fatalf("ParseLedgerLine(%q) = %+v, whose String %q does not parse: %v", s, l, l.String(), err)
		}
		if again != l {
			t.Fatalf("decode, encode, decode changed the line: %+v, then %+v", l, again)
		}
	})
}

func FuzzReadLedger(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, err := ReadLedger(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrBadLedger) || !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("ReadLedger error does not name a line or wrap ErrBadLedger: %v", err)
			}
			return
		}
		if len(lines) > bytes.Count(data, []byte{'\n'}) {
			t.Fatalf("%d lines from %d newlines", len(lines), bytes.Count(data, []byte{'\n'}))
		}
		var enc bytes.Buffer
		for _, l := range lines {
			enc.WriteString(l.String())
			enc.WriteByte('\n')
		}
		again, err := ReadLedger(&enc)
		if err != nil {
			t.Fatalf("re-encoded ledger does not read back: %v", err)
		}
		if !slices.Equal(again, lines) {
			t.Fatalf("decode, encode, decode changed the ledger:\n%q\n%q", lines, again)
		}
		results, dups, bad := Replay(lines)
		if len(results) != len(lines) || len(dups)+len(bad) > len(lines) {
			t.Fatalf("Replay: %d results, %d dups, %d bad for %d lines", len(results), len(dups), len(bad), len(lines))
		}
	})
}

func FuzzReadRecords(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := ReadRecords(bytes.NewReader(data))
		if err != nil {
			return // a bad line is an error naming it; any error is acceptable input handling
		}
		var enc bytes.Buffer
		for _, r := range recs {
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatalf("marshal %+v: %v", r, err)
			}
			enc.Write(b)
			enc.WriteByte('\n')
		}
		again, err := ReadRecords(&enc)
		if err != nil {
			t.Fatalf("re-encoded records do not read back: %v\n%s", err, enc.Bytes())
		}
		if len(recs) == 0 && len(again) == 0 {
			return
		}
		if !reflect.DeepEqual(again, recs) {
			t.Fatalf("decode, encode, decode changed the records:\n%+v\n%+v", recs, again)
		}
	})
}

// checkWireError: a decoder built on the wire codec fails only with its errors.
func checkWireError(t *testing.T, err error) {
	t.Helper()
	for _, want := range []error{wire.ErrEmpty, wire.ErrTooLarge, wire.ErrWrongType, wire.ErrMalformed} {
		if errors.Is(err, want) {
			return
		}
	}
	t.Fatalf("error wraps none of the wire errors: %v", err)
}

func FuzzDecodeLedgerRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		data := append([]byte{CodeLedgerRequest}, body...)
		m, err := DecodeLedgerRequest(data)
		if err != nil {
			checkWireError(t, err)
			return
		}
		enc, err := EncodeLedgerRequest(m)
		if err != nil {
			t.Fatalf("encode a decoded request: %v", err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("accepted a non-canonical encoding:\n got %x\nwant %x", data, enc)
		}
		again, err := DecodeLedgerRequest(enc)
		if err != nil || *again != *m {
			t.Fatalf("decode, encode, decode: %+v, %v; want %+v", again, err, m)
		}
		if !IsLedgerRequest(data) {
			t.Fatal("IsLedgerRequest is false for a ledger request")
		}
	})
}

func FuzzDecodeLedgerChunk(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		data := append([]byte{CodeLedgerChunk}, body...)
		m, err := DecodeLedgerChunk(data)
		if err != nil {
			checkWireError(t, err)
			return
		}
		enc, err := EncodeLedgerChunk(m)
		if err != nil {
			t.Fatalf("encode a decoded chunk: %v", err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("accepted a non-canonical encoding:\n got %x\nwant %x", data, enc)
		}
		again, err := DecodeLedgerChunk(enc)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("decode, encode, decode: %+v, %v; want %+v", again, err, m)
		}
		// What FetchLedger does with an agreed chunk: every line must parse
		// or be refused with ErrBadLedger, never panic.
		for _, s := range m.Lines {
			if _, err := ParseLedgerLine(s); err != nil && !errors.Is(err, ErrBadLedger) {
				t.Fatalf("ParseLedgerLine: %v", err)
			}
		}
	})
}

// withCRC appends the checksum field to a hand-made line body.
func withCRC(body string) string { return body + "\t" + ledgerChecksum(body) }

// seedCorpus is the committed seed corpus: target/name to the fuzz
// arguments of that entry.
func seedCorpus(t *testing.T) map[string][]any {
	line := func(seq uint64, op string) string { return LedgerLine{Client: sampleClient, Seq: seq, Op: op}.String() }
	ledger := line(1, "put('movie','star')") + "\n" + line(2, "append('movie',' wars')") + "\n" + line(3, "get('movie')") + "\n"
	rec := func(seq uint64, op, result string, h uint64) string {
		b, _ := json.Marshal(Record{Client: sampleClient, Seq: seq, Op: op, Result: result, Height: h, SubmittedMs: 1700000000000, LatencyMs: 12.5})
		return string(b)
	}
	req, err := EncodeLedgerRequest(&LedgerRequest{From: 5, Max: 100})
	if err != nil {
		t.Fatal(err)
	}
	chunk, err := EncodeLedgerChunk(&LedgerChunk{From: 0, Height: 3, Lines: strings.Split(strings.TrimSuffix(ledger, "\n"), "\n")})
	if err != nil {
		t.Fatal(err)
	}
	empty, err := EncodeLedgerChunk(&LedgerChunk{})
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]any{
		"FuzzParseLedgerLine/put":         {line(1, "put('k','v')")},
		"FuzzParseLedgerLine/escaped":     {line(18446744073709551615, `put('a\'b','c\nd')`)},
		"FuzzParseLedgerLine/invalid-op":  {line(7, `invalid("x(")`)},
		"FuzzParseLedgerLine/tab-in-op":   {line(2, "invalid(\"a\tb\")")},
		"FuzzParseLedgerLine/short-key":   {LedgerLine{Client: "abcd", Seq: 1, Op: "get('k')"}.String()},
		"FuzzParseLedgerLine/bad-crc":     {line(1, "put('k','v')")[:len(line(1, "put('k','v')"))-1] + "x"},
		"FuzzParseLedgerLine/no-crc":      {sampleClient + "\t1\tget('k')"},
		"FuzzParseLedgerLine/no-tabs":     {"hello"},
		"FuzzReadLedger/three":            {[]byte(ledger)},
		"FuzzReadLedger/torn-tail":        {[]byte(ledger + line(4, "put('x','y')")[:20])},
		"FuzzReadLedger/crlf":             {[]byte(strings.ReplaceAll(ledger, "\n", "\r\n"))},
		"FuzzReadLedger/bad-seq":          {[]byte(withCRC(sampleClient+"\tx\tget('k')") + "\n")},
		"FuzzReadLedger/flipped-byte":     {[]byte(strings.Replace(ledger, "wars", "ward", 1))},
		"FuzzReadLedger/empty":            {[]byte{}},
		"FuzzReadRecords/two":             {[]byte(rec(1, "put('k','v')", "OK", 1) + "\n" + rec(2, "get('k')", "v", 2) + "\n")},
		"FuzzReadRecords/blank-lines":     {[]byte("\n  \n" + rec(3, "slice('k','0:1')", "fail", 9) + "\n\n")},
		"FuzzReadRecords/cut-last":        {[]byte(rec(1, "get('k')", "", 1) + "\n" + rec(2, "get('k')", "", 2)[:30])},
		"FuzzReadRecords/bad-middle":      {[]byte(rec(1, "get('k')", "", 1) + "\n{\n" + rec(2, "get('k')", "", 2) + "\n")},
		"FuzzDecodeLedgerRequest/request": {req[1:]},
		"FuzzDecodeLedgerRequest/empty":   {[]byte{}},
		"FuzzDecodeLedgerChunk/chunk":     {chunk[1:]},
		"FuzzDecodeLedgerChunk/empty":     {empty[1:]},
	}
}

// TestFuzzSeedCorpus keeps testdata/fuzz in step with seedCorpus. Regenerate
// with go test ./node/client -run TestFuzzSeedCorpus -update-corpus.
func TestFuzzSeedCorpus(t *testing.T) {
	checkCorpus(t, seedCorpus(t))
}

func checkCorpus(t *testing.T, seeds map[string][]any) {
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

// corpusFile is the go test fuzz v1 encoding of one entry.
func corpusFile(t *testing.T, args ...any) []byte {
	b := []byte("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			b = fmt.Appendf(b, "[]byte(%q)\n", v)
		case string:
			b = fmt.Appendf(b, "string(%q)\n", v)
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
