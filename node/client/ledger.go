package client

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// The ledger exchange lets a client read the committed ledger from the
// replicas (bin/client --verify) on the client protocol: the client sends a
// LedgerRequest to every replica, each answers with a LedgerChunk of the
// lines after From, and the client keeps, height by height, the line that
// f+1 replicas report identically. Chunks are not signed: at most f replicas
// lie, so a line f+1 replicas agree on is the committed one, and a replica's
// identity is its libp2p peer id (authenticated by the connection), not a
// field of the chunk.
//
// The codes are wire external codes (wire.EncodeAs / wire.DecodeInto);
// Olympus uses 32..63.
const (
	CodeLedgerRequest byte = 64
	CodeLedgerChunk   byte = 65
)

// Chunk limits: a replica sends at most MaxChunkLines lines and about
// MaxChunkBytes of them per chunk, well below the wire's 4 MiB cap.
const (
	MaxChunkLines = 2048
	MaxChunkBytes = 1 << 20
)

// LedgerRequest asks a replica for its ledger lines at heights From+1 ...,
// at most Max of them (0 or more than MaxChunkLines means MaxChunkLines).
type LedgerRequest struct {
	_    struct{} `cbor:",toarray"`
	From uint64
	Max  uint32
}

// LedgerChunk is a replica's answer: Lines[i] is its ledger line at height
// From+1+i, in the ledger file's text ("<client hex>\t<seq>\t<op>\t<crc32c>"), and
// Height is its ledger height when it answered.
type LedgerChunk struct {
	_      struct{} `cbor:",toarray"`
	From   uint64
	Height uint64
	Lines  []string
}

// EncodeLedgerRequest encodes m for the client protocol.
func EncodeLedgerRequest(m *LedgerRequest) ([]byte, error) {
	return wire.EncodeAs(CodeLedgerRequest, m)
}

// DecodeLedgerRequest decodes a ledger request (strictly, as wire does).
func DecodeLedgerRequest(data []byte) (*LedgerRequest, error) {
	var m LedgerRequest
	if err := wire.DecodeInto(data, CodeLedgerRequest, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// EncodeLedgerChunk encodes m for the client protocol.
func EncodeLedgerChunk(m *LedgerChunk) ([]byte, error) { return wire.EncodeAs(CodeLedgerChunk, m) }

// DecodeLedgerChunk decodes a ledger chunk (strictly, as wire does).
func DecodeLedgerChunk(data []byte) (*LedgerChunk, error) {
	var m LedgerChunk
	if err := wire.DecodeInto(data, CodeLedgerChunk, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// IsLedgerRequest reports whether a client-protocol message is a
// LedgerRequest (a replica's handler uses it to tell them from requests).
func IsLedgerRequest(data []byte) bool {
	code, err := wire.Code(data)
	return err == nil && code == CodeLedgerRequest
}

// LedgerView is the part of a ledger file a replica serves ledger requests
// from: its first Lines lines, Size bytes, and Marks[i], the byte offset at
// which line i*LedgerMarkEvery+1 starts, so that a request from any height
// reads only its chunk (answering one by reading the file from the start
// made fetching a long ledger quadratic, and let any client make a replica
// read all of it again and again). The replica extends its view as it
// appends lines and publishes it once they are durable; a published view
// is never modified (Extend appends past its length only).
type LedgerView struct {
	Lines uint64
	Size  int64
	Marks []int64
}

// LedgerMarkEvery is the spacing of LedgerView.Marks in lines: 8 bytes of
// index per 1,024 lines, and at most 1,023 lines read past before a chunk.
const LedgerMarkEvery = 1024

// Extend returns the view of the file after data, whole lines, was
// appended at v.Size.
func (v LedgerView) Extend(data []byte) LedgerView {
	for off := 0; off < len(data); {
		if v.Lines%LedgerMarkEvery == 0 {
			v.Marks = append(v.Marks, v.Size+int64(off))
		}
		n := bytes.IndexByte(data[off:], '\n') + 1
		if n == 0 {
			n = len(data) - off // not a whole line: the caller's mistake; counted anyway
		}
		off += n
		v.Lines++
	}
	v.Size += int64(len(data))
	return v
}

// AnswerLedgerRequest is the replica's side of the exchange: it decodes a
// LedgerRequest and answers it from the ledger file at path as far as view
// reaches (lines appended since are not served yet). A missing file is an
// empty ledger.
func AnswerLedgerRequest(path string, view LedgerView, data []byte) ([]byte, error) {
	req, err := DecodeLedgerRequest(data)
	if err != nil {
		return nil, err
	}
	max := int(req.Max)
	if max <= 0 || max > MaxChunkLines {
		max = MaxChunkLines
	}
	chunk := &LedgerChunk{From: req.From, Height: view.Lines}
	if req.From >= view.Lines {
		return EncodeLedgerChunk(chunk)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mark := req.From / LedgerMarkEvery
	start := view.Marks[mark]
	br := bufio.NewReaderSize(io.NewSectionReader(f, start, view.Size-start), 64<<10)
	size := 0
	for height := mark * LedgerMarkEvery; height < view.Lines && len(chunk.Lines) < max; height++ {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("ledger %s: line %d: %w", path, height+1, err)
		}
		if height < req.From {
			continue
		}
		if size+len(line) > MaxChunkBytes && len(chunk.Lines) > 0 {
			break
		}
		size += len(line)
		chunk.Lines = append(chunk.Lines, strings.TrimSuffix(line, "\n"))
	}
	return EncodeLedgerChunk(chunk)
}

// deliverChunk queues a chunk from peer from for FetchLedger. Chunks from
// peers outside the roster are dropped; so are chunks nobody waits for.
func (c *Client) deliverChunk(from peer.ID, data []byte) {
	id, ok := c.peers[from]
	if !ok {
		c.stats.unknownPeer.Add(1)
		return
	}
	m, err := DecodeLedgerChunk(data)
	if err != nil {
		c.stats.malformed.Add(1)
		return
	}
	select {
	case c.chunks <- chunkFrom{id, m}:
	default: // FetchLedger asks again
	}
}

type chunkFrom struct {
	replica types.ReplicaID
	chunk   *LedgerChunk
}

// ErrNoLedgerQuorum: fewer than f+1 replicas reported the same ledger line
// at some height before the deadline.
var ErrNoLedgerQuorum = errors.New("no f+1 replicas agree on the ledger")

// FetchLedger reads the committed ledger from the replicas up to height upTo
// and returns it, keeping at each height the line f+1 replicas report
// identically. It asks every replica again, with a doubling timeout, until
// it has upTo lines or ctx ends. Call it after Run has returned.
func (c *Client) FetchLedger(ctx context.Context, upTo uint64) ([]LedgerLine, error) {
	var agreed []string
	timeout := c.cfg.Timeout
	maxTimeout := c.cfg.Timeout << MaxBackoffShift
	quorum := c.roster.Committee.F + 1
	for uint64(len(agreed)) < upTo {
		from := uint64(len(agreed))
		want := int(min(upTo-from, MaxChunkLines))
		data, err := EncodeLedgerRequest(&LedgerRequest{From: from, Max: uint32(want)})
		if err != nil {
			return nil, err
		}
		for _, r := range c.roster.Replicas {
			c.tr.Send(r.Peer.ID, data)
		}
		answers := make(map[types.ReplicaID][]string, len(c.roster.Replicas))
		var ext []string
		timer := time.NewTimer(timeout)
	collect:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil, fmt.Errorf("%w at height %d of %d: %v", ErrNoLedgerQuorum, from+1, upTo, ctx.Err())
			case <-timer.C:
				break collect
			case a := <-c.chunks:
				if a.chunk.From != from {
					continue // an answer to an earlier request
				}
				if _, dup := answers[a.replica]; dup {
					continue
				}
				answers[a.replica] = a.chunk.Lines
				ext = agreedExtension(answers, quorum)
				if len(ext) >= want || len(answers) == len(c.roster.Replicas) {
					timer.Stop()
					break collect
				}
			}
		}
		if len(ext) == 0 {
			timeout = min(2*timeout, maxTimeout) // replicas behind or slow: ask again, later
			continue
		}
		agreed = append(agreed, ext...)
	}
	out := make([]LedgerLine, len(agreed))
	for i, s := range agreed {
		l, err := ParseLedgerLine(s)
		if err != nil {
			return nil, fmt.Errorf("height %d, agreed by f+1 replicas: %w", i+1, err)
		}
		out[i] = l
	}
	return out, nil
}

// agreedExtension returns the longest run of lines, from the first, on each
// of which at least quorum answers agree.
func agreedExtension(answers map[types.ReplicaID][]string, quorum int) []string {
	var ext []string
	for k := 0; ; k++ {
		votes := make(map[string]int)
		found := false
		for _, lines := range answers {
			if k < len(lines) {
				votes[lines[k]]++
				if votes[lines[k]] >= quorum {
					ext = append(ext, lines[k])
					found = true
					break
				}
			}
		}
		if !found {
			return ext
		}
	}
}

// CheckResults checks accepted results against a ledger: the line at each
// result's height must be that request (client, seq, op), a sequential
// replay of the ledger must give the accepted result there, and the ledger's
// order must respect real time (RealTimeViolations). It returns how many
// results passed and one error per result that did not.
func CheckResults(ledger []LedgerLine, recs []Record) (verified int, problems []error) {
	replay, _, _ := Replay(ledger)
	var replayed []Record
	for _, r := range recs {
		switch {
		case r.Height == 0 || r.Height > uint64(len(ledger)):
			problems = append(problems, fmt.Errorf("request %d (%s): accepted at height %d, beyond the ledger's %d lines", r.Seq, r.Op, r.Height, len(ledger)))
		case ledger[r.Height-1].Client != r.Client || ledger[r.Height-1].Seq != r.Seq || ledger[r.Height-1].Op != r.Op:
			l := ledger[r.Height-1]
			problems = append(problems, fmt.Errorf("request %d (%s): accepted at height %d, but the ledger holds request %d of client %.12s there (%s)",
				r.Seq, r.Op, r.Height, l.Seq, l.Client, l.Op))
		case replay[r.Height-1] != r.Result:
			problems = append(problems, fmt.Errorf("request %d (%s): accepted result %q, but a replay of the ledger gives %q at height %d",
				r.Seq, r.Op, r.Result, replay[r.Height-1], r.Height))
		default:
			replayed = append(replayed, r)
		}
	}
	violations := RealTimeViolations(replayed)
	for _, v := range violations {
		l, e := replayed[v.Later], replayed[v.Earlier]
		problems = append(problems, fmt.Errorf("request %d (%s) was submitted %.0f ms after request %d (%s) was accepted, but the ledger orders it first (height %d < %d)",
			l.Seq, l.Op, v.AfterMs, e.Seq, e.Op, l.Height, e.Height))
	}
	return len(replayed) - len(violations), problems
}

// RealTimeViolation: recs[Later] was submitted AfterMs after recs[Earlier]
// was accepted, yet sits lower in the ledger.
type RealTimeViolation struct {
	Later, Earlier int
	AfterMs        float64
}

// RealTimeViolations checks the condition of linearizability that a replay
// of the ledger does not (the replay checks that each result is the
// sequential one at its height): an operation accepted before another was
// submitted must come first in the ledger. A correct committee guarantees
// it (a result is accepted only once its block is committed, so anything
// submitted later is ordered after it); a replica that replies before
// committing, or a client that takes a reply for a height not yet final,
// breaks it even when every result matches the replay. The records'
// times must come from one clock (one machine: diembft run and lab, or one
// client); submission times are whole milliseconds, so A counts as accepted
// before B was submitted only when A's submission millisecond plus its
// latency plus 1 ms is at most B's. Each record submitted after some
// acceptance that sits higher than it is one violation, paired with the
// highest such acceptance.
func RealTimeViolations(recs []Record) []RealTimeViolation {
	acceptedBy := func(i int) float64 { return float64(recs[i].SubmittedMs) + recs[i].LatencyMs + 1 }
	bySub := make([]int, len(recs))
	for i := range bySub {
		bySub[i] = i
	}
	byDone := slices.Clone(bySub)
	slices.SortFunc(bySub, func(a, b int) int { return cmp.Compare(recs[a].SubmittedMs, recs[b].SubmittedMs) })
	slices.SortFunc(byDone, func(a, b int) int { return cmp.Compare(acceptedBy(a), acceptedBy(b)) })
	var out []RealTimeViolation
	highest := -1 // the highest in the ledger of the records accepted so far
	j := 0
	for _, b := range bySub {
		for ; j < len(byDone) && acceptedBy(byDone[j]) <= float64(recs[b].SubmittedMs); j++ {
			if highest < 0 || recs[byDone[j]].Height > recs[highest].Height {
				highest = byDone[j]
			}
		}
		if highest >= 0 && recs[highest].Height > recs[b].Height {
			a := recs[highest]
			out = append(out, RealTimeViolation{Later: b, Earlier: highest, AfterMs: float64(recs[b].SubmittedMs) - float64(a.SubmittedMs) - a.LatencyMs})
		}
	}
	return out
}
