package client

import (
	"bufio"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/diembft/diembft/node/kv"
)

// Record is one line of a client results file (bin/client --results;
// docs/internal-contracts.md, "Client results file").
type Record struct {
	Client      string  `json:"client"` // public key, hex
	Seq         uint64  `json:"seq"`
	Op          string  `json:"op"` // canonical kv.Op text
	Result      string  `json:"result"`
	Height      uint64  `json:"height"`
	SubmittedMs int64   `json:"submitted_ms"` // Unix time of the first transmission, ms
	LatencyMs   float64 `json:"latency_ms"`   // first transmission to acceptance
}

// NewRecord is the results-file line for r, accepted by the client with
// public key pub.
func NewRecord(pub ed25519.PublicKey, r Result) Record {
	return Record{
		Client:      hex.EncodeToString(pub),
		Seq:         r.Seq,
		Op:          r.Op.String(),
		Result:      r.Result,
		Height:      r.Height,
		SubmittedMs: r.Submitted.UnixMilli(),
		LatencyMs:   math.Round(float64(r.Latency.Microseconds())) / 1000,
	}
}

// ReadRecords reads a results file. A last line cut short (the client was
// killed while writing it) is ignored; any other bad line is an error naming
// its line number.
func ReadRecords(r io.Reader) ([]Record, error) {
	var out []Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var pendingErr error
	for line := 1; sc.Scan(); line++ {
		if pendingErr != nil {
			return nil, pendingErr
		}
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var rec Record
		if err := json.Unmarshal([]byte(text), &rec); err != nil {
			pendingErr = fmt.Errorf("line %d: %w", line, err)
			continue
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// LedgerLine is one committed request in a replica's ledger file: the
// client's public key in hex, its sequence number and the canonical operation
// text (docs/internal-contracts.md, "Ledger file").
type LedgerLine struct {
	Client string
	Seq    uint64
	Op     string
}

// ledgerCRC is CRC-32C (Castagnoli), the checksum of every ledger line.
var ledgerCRC = crc32.MakeTable(crc32.Castagnoli)

// appendChecksum appends the checksum field of a ledger line with this
// body: 8 lowercase hex digits of the body's CRC-32C.
func appendChecksum(dst, body []byte) []byte {
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc32.Checksum(body, ledgerCRC))
	return hex.AppendEncode(dst, sum[:])
}

func ledgerChecksum(body string) string { return string(appendChecksum(nil, []byte(body))) }

// String is the line as a replica writes it to its ledger file, without the
// newline: "<client hex>\t<seq>\t<op>\t<crc32c>", where <crc32c> is 8
// lowercase hex digits of the CRC-32C of everything before its tab. This
// (AppendTo) and ParseLedgerLine are the one implementation of the format
// (node's executor writes and replays its ledger with them).
func (l LedgerLine) String() string { return string(l.AppendTo(nil)) }

// AppendTo appends the line, without the newline, to dst: the executor
// writes one per operation into its ledger buffer, with no intermediate
// strings (building them was 6 % of a replica's CPU at full load).
func (l LedgerLine) AppendTo(dst []byte) []byte {
	start := len(dst)
	dst = append(dst, l.Client...)
	dst = append(dst, '\t')
	dst = strconv.AppendUint(dst, l.Seq, 10)
	dst = append(dst, '\t')
	dst = append(dst, l.Op...)
	body := dst[start:]
	dst = append(dst, '\t')
	return appendChecksum(dst, body)
}

// ErrBadLedger is wrapped by errors about ledger file content.
var ErrBadLedger = errors.New("bad ledger")

// ParseLedgerLine parses a ledger line (without its newline), as String
// writes it: the checksum is the last tab-separated field (an operation may
// hold tabs) and must match the rest of the line; the client must be a hex
// ed25519 public key and the sequence number decimal.
func ParseLedgerLine(s string) (LedgerLine, error) {
	i := strings.LastIndexByte(s, '\t')
	if i < 0 {
		return LedgerLine{}, fmt.Errorf("%w: want <client>\\t<seq>\\t<op>\\t<crc32c>, got %q", ErrBadLedger, s)
	}
	body, sum := s[:i], s[i+1:]
	if want := ledgerChecksum(body); sum != want {
		return LedgerLine{}, fmt.Errorf("%w: checksum %q, the line's content gives %q", ErrBadLedger, sum, want)
	}
	parts := strings.SplitN(body, "\t", 3)
	if len(parts) != 3 {
		return LedgerLine{}, fmt.Errorf("%w: want <client>\\t<seq>\\t<op>\\t<crc32c>, got %q", ErrBadLedger, s)
	}
	if k, err := hex.DecodeString(parts[0]); err != nil || len(k) != ed25519.PublicKeySize {
		return LedgerLine{}, fmt.Errorf("%w: client %q is not a hex ed25519 public key", ErrBadLedger, parts[0])
	}
	seq, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil {
		return LedgerLine{}, fmt.Errorf("%w: sequence number %q", ErrBadLedger, parts[1])
	}
	return LedgerLine{Client: parts[0], Seq: seq, Op: parts[2]}, nil
}

// ReadLedger reads a ledger file. An incomplete last line (no newline: the
// replica was stopped while appending) is left out, as the replica itself
// cuts it on restart; a bad complete line (one that does not parse or whose
// checksum does not match) is an error naming its number, wrapping
// ErrBadLedger.
func ReadLedger(r io.Reader) ([]LedgerLine, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out []LedgerLine
	for n := 1; ; n++ {
		text, err := br.ReadString('\n')
		if errors.Is(err, io.EOF) {
			return out, nil // a partial last line has no newline
		}
		if err != nil {
			return nil, err
		}
		l, perr := ParseLedgerLine(strings.TrimSuffix(text, "\n"))
		if perr != nil {
			return nil, fmt.Errorf("line %d: %w", n, perr)
		}
		out = append(out, l)
	}
}

// Replay executes ledger on an empty key-value store, in order, and returns
// each line's result: what every honest replica answered for it. A line whose
// operation does not parse gives "fail", as kv.Store.Apply does for an
// operation it does not know; the second and later lines of one (client, seq)
// are not executed (the replicas skip a request already executed) and give
// "". dups lists the 1-based heights of such duplicate lines and bad those of
// unparsable operations, both ledger defects for the caller to report.
func Replay(ledger []LedgerLine) (results []string, dups, bad []uint64) {
	store := kv.New()
	type key struct {
		client string
		seq    uint64
	}
	seen := make(map[key]bool, len(ledger))
	results = make([]string, len(ledger))
	for i, l := range ledger {
		k := key{l.Client, l.Seq}
		if seen[k] {
			dups = append(dups, uint64(i+1))
			continue
		}
		seen[k] = true
		op, err := kv.ParseOp(l.Op)
		if err != nil {
			bad = append(bad, uint64(i+1))
			results[i] = kv.Fail
			continue
		}
		results[i] = store.Apply(op)
	}
	return results, dups, bad
}
