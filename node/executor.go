package node

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/node/kv"
	"github.com/diembft/diembft/protocol/types"
)

// executor applies committed blocks to the key-value state machine, appends
// each executed request to the ledger file (fsync'd per block) and signs the
// replies. A (client, seq) executes once: a request that appears again, in a
// later block or after a restart, gets its cached reply.
type executor struct {
	id      types.ReplicaID
	chainID string
	key     ed25519.PrivateKey
	file    file
	size    int64 // of the ledger file: the next block is written here
	kv      *kv.Store
	height  uint64 // requests executed
	durable uint64 // requests whose ledger lines are fsync'd (guarded by mu)
	// mu guards done, durable and peers: the committer goroutine executes
	// blocks while the event loop answers replayed requests from the cache.
	mu    sync.Mutex
	done  map[types.RequestKey]opDone // every executed operation, by (client, seq)
	peers map[string]peer.ID
}

// opDone is an executed operation: its result and its ledger height.
type opDone struct {
	result string
	height uint64
}

// LedgerFile is the name of a replica's ledger in its home.
func LedgerFile(id types.ReplicaID) string { return fmt.Sprintf("replica-%d.ledger", id) }

// LedgerLine formats one executed request, without its newline, as
// client.LedgerLine does (the one implementation of the format,
// docs/internal-contracts.md "Ledger file"): client key hex, seq, op and a
// CRC-32C of them.
func LedgerLine(clientKey []byte, seq uint64, op string) string {
	return client.LedgerLine{Client: hex.EncodeToString(clientKey), Seq: seq, Op: op}.String()
}

// ErrLedgerCorrupt is wrapped by the error New returns when a ledger line
// that is not the last fails its checksum or does not parse: the file was
// damaged in place, not torn by a crash while appending, and the replica
// refuses to start on it (see LedgerCorruptError).
var ErrLedgerCorrupt = errors.New("ledger corrupt")

// LedgerCorruptError names the ledger file and the 1-based line that is
// damaged. It wraps ErrLedgerCorrupt and the parse error (which wraps
// client.ErrBadLedger).
type LedgerCorruptError struct {
	Path string
	Line uint64
	Err  error
}

func (e *LedgerCorruptError) Error() string {
	return fmt.Sprintf("%v: %s:%d: %v (followed by further lines, so not a torn write; to recover, move %s and %s out of the home and restart the replica: it catches up from the others)",
		ErrLedgerCorrupt, e.Path, e.Line, e.Err, filepath.Base(e.Path), BlockStoreFile)
}

func (e *LedgerCorruptError) Unwrap() []error { return []error{ErrLedgerCorrupt, e.Err} }

// canonicalOp parses a request's operation. An operation that does not parse
// is still ordered (the client signed it) and fails deterministically.
func canonicalOp(s string) (kv.Op, string, bool) {
	op, err := kv.ParseOp(s)
	if err != nil {
		return kv.Op{}, "invalid(" + strconv.Quote(s) + ")", false
	}
	return op, op.String(), true
}

func openExecutor(home string, id types.ReplicaID, chainID string, key ed25519.PrivateKey) (*executor, error) {
	return openExecutorFS(osFS{}, home, id, chainID, key)
}

func openExecutorFS(fsys fileSystem, home string, id types.ReplicaID, chainID string, key ed25519.PrivateKey) (*executor, error) {
	path := filepath.Join(home, LedgerFile(id))
	e := &executor{id: id, chainID: chainID, key: key, kv: kv.New(), done: map[types.RequestKey]opDone{}, peers: map[string]peer.ID{}}
	f, created, err := fsys.OpenFile(path, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	if created {
		// The fsync of a block makes the file's contents durable, not its
		// directory entry: without this, a crash could lose the whole file.
		err = fsys.SyncDir(home)
	}
	if err == nil {
		err = e.replay(f, path)
		e.durable = e.height
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	e.file = f
	return e, nil
}

// replay rebuilds the state machine and the reply cache from the ledger file.
// A torn tail (a crash in the middle of an append) is cut off: a last line
// without its newline, or a last line that fails its checksum or does not
// parse. Such a line anywhere else is damage in place: replay returns a
// *LedgerCorruptError and leaves the file as it is.
func (e *executor) replay(f file, path string) error {
	size, err := f.Size()
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	data := make([]byte, size)
	if _, err := f.ReadAt(data, 0); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	keep := bytes.LastIndexByte(data, '\n') + 1 // the complete lines
	torn := "incomplete last line (no newline)"
	for start := 0; start < keep; {
		end := start + bytes.IndexByte(data[start:keep], '\n')
		l, err := client.ParseLedgerLine(string(data[start:end]))
		var key []byte
		if err == nil {
			key, err = hex.DecodeString(l.Client) // checked by ParseLedgerLine
		}
		if err != nil {
			if end+1 < keep {
				return &LedgerCorruptError{Path: path, Line: e.height + 1, Err: err}
			}
			keep, torn = start, fmt.Sprintf("bad last line: %v", err)
			break
		}
		result := "fail"
		if op, err := kv.ParseOp(l.Op); err == nil {
			result = e.kv.Apply(op)
		}
		e.height++
		e.done[types.RequestKey{Client: string(key), Seq: l.Seq}] = opDone{result, e.height}
		start = end + 1
	}
	if keep != len(data) {
		// Not synced: the next block's write and fsync overwrite the tail.
		log.Warnw("ledger: cutting a torn tail", "path", path, "line", e.height+1, "bytes", len(data)-keep, "why", torn)
		if err := f.Truncate(int64(keep)); err != nil {
			return fmt.Errorf("ledger: repair torn tail: %w", err)
		}
	}
	e.size = int64(keep)
	return nil
}

// execute applies a committed block, appends its new operations to the
// ledger file, fsyncs it and returns the unsigned replies. Only one
// goroutine at a time may call it (the committer); the lock is not held
// during the write and fsync, so the loop's cached never waits for the disk.
func (e *executor) execute(b *types.Block) ([]*types.ClientReply, error) {
	out, lines := e.apply(b)
	if err := e.persist(lines); err != nil {
		return nil, err
	}
	return out, nil
}

// persist appends ledger lines, fsyncs the file and then lets cached answer
// from the requests they hold.
func (e *executor) persist(lines []byte) error {
	if len(lines) > 0 {
		n, err := e.file.WriteAt(lines, e.size)
		e.size += int64(n)
		if err == nil {
			err = e.file.Sync()
		}
		if err != nil {
			return err
		}
	}
	e.mu.Lock()
	e.durable = e.height
	e.mu.Unlock()
	return nil
}

// apply runs b's operations on the state machine and returns the (unsigned)
// replies, one per request, and the ledger lines to append. An operation
// executes once: one already executed, in an earlier block or before a
// restart, keeps its result and height.
func (e *executor) apply(b *types.Block) ([]*types.ClientReply, []byte) {
	var buf bytes.Buffer
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*types.ClientReply, 0, len(b.Payload))
	for i := range b.Payload {
		req := &b.Payload[i]
		rp := e.newReply(req)
		for j, text := range req.Ops {
			k := req.OpKey(j)
			d, ok := e.done[k]
			if !ok {
				op, canon, valid := canonicalOp(text)
				d.result = "fail"
				if valid {
					d.result = e.kv.Apply(op)
				}
				e.height++
				d.height = e.height
				e.done[k] = d
				buf.WriteString(LedgerLine(req.Client, k.Seq, canon))
				buf.WriteByte('\n')
			}
			rp.Results[j], rp.Heights[j] = d.result, d.height
		}
		out = append(out, rp)
	}
	return out, buf.Bytes()
}

func (e *executor) newReply(req *types.Request) *types.ClientReply {
	return &types.ClientReply{Client: req.Client, Seq: req.Seq, Results: make([]string, len(req.Ops)), Heights: make([]uint64, len(req.Ops)), Replica: e.id}
}

// cached returns the signed reply to r if every operation of r was executed
// and its ledger line is on disk (nothing is acknowledged before its fsync).
// It signs on the caller's goroutine: only retransmissions get here.
func (e *executor) cached(r *types.Request) *types.ClientReply {
	rp := e.newReply(r)
	e.mu.Lock()
	for j := range r.Ops {
		d, ok := e.done[r.OpKey(j)]
		if !ok || d.height > e.durable {
			e.mu.Unlock()
			return nil
		}
		rp.Results[j], rp.Heights[j] = d.result, d.height
	}
	e.mu.Unlock()
	rp.Sig = ed25519.Sign(e.key, rp.SignBytes(e.chainID))
	return rp
}

func (e *executor) clientPeer(client []byte, p peer.ID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.peers[string(client)] = p
}

func (e *executor) peerOf(client []byte) (peer.ID, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.peers[string(client)]
	return p, ok
}

func (e *executor) close() { e.file.Close() }
