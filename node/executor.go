package node

import (
	"bufio"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/node/kv"
	"github.com/diembft/diembft/protocol/seqset"
	"github.com/diembft/diembft/protocol/types"
)

// executor applies committed blocks to the key-value state machine, appends
// each executed request to the ledger file (fsync'd per block) and signs the
// replies. A (client, seq) executes once: a request that appears again, in a
// later block or after a restart, gets its cached reply while it is recent.
//
// Exactly-once state is bounded per client (clientState): the executed
// seqs as a watermark and the spans above it (protocol/seqset), and the
// results of the operations within types.ReplyWindow of the client's
// highest executed seq, not one entry per operation ever executed. Every
// piece of it follows from the ledger alone, so replay rebuilds it exactly
// and every replica makes the same decisions.
type executor struct {
	id      types.ReplicaID
	chainID string
	key     ed25519.PrivateKey
	file    file
	kv      *kv.Store
	height  uint64 // requests executed
	durable uint64 // height up to which ledger lines and their blocks are on disk (guarded by mu)
	// mu guards clients, durable and refused: the committer goroutine
	// executes blocks while the event loop answers replayed requests from
	// the cache.
	mu      sync.Mutex
	clients map[string]*clientState // by string(client key)
	refused uint64                  // requests refused at execution (refuseAtExecution)
	// peersMu guards peers (the loop records, the committer looks up).
	peersMu sync.Mutex
	peers   map[string]peer.ID
	syncs   syncStat // fsyncs of persist
	// view is the ledger file as written (committer only; the next block
	// is written at view.Size); served is the view of its durable part,
	// for ledger requests (stream handlers).
	view   client.LedgerView
	served atomic.Pointer[client.LedgerView]
}

// clientState is what a replica remembers of one client's executed
// operations. It is one small entry per client ever executed (a watermark,
// a few spans, at most types.ReplyWindow results, and none after the client
// stayed idle for idleHeights); clients are ed25519 keys and each costs at
// least one ordered operation, as an account does on Aptos or in the Cosmos
// SDK, where its sequence number also stays in the state forever.
type clientState struct {
	done seqset.Set // the executed seqs
	// results holds the executed seqs above done.Highest()-ReplyWindow; an
	// older executed operation is still known executed (done) but its
	// retransmission gets no reply (see admit).
	results map[uint64]opDone
	trimmed uint64 // results holds no seq <= trimmed
	last    uint64 // ledger height of the client's last executed operation
}

// opDone is an executed operation: its result and its ledger height.
type opDone struct {
	result string
	height uint64
}

// idleHeights: the results of a client without an executed operation in
// the last idleHeights ledger lines are dropped (checked every idleCheck
// lines), so that the many short-lived client keys of a long-running
// system (every client run makes a fresh key by default) leave only their
// watermarks behind. At 30,000 ops/s this is about 9 minutes: a client
// would need every reply to its retransmissions lost for that long.
const (
	idleHeights = 1 << 24
	idleCheck   = 1 << 20
)

// maxPeers bounds the reply routes (client key -> peer) a replica keeps;
// past it they are forgotten (a client's next retransmission sets its
// route again). Verified requests that never execute set routes too.
const maxPeers = 1 << 16

// LedgerFile is the name of a replica's ledger in its home.
func LedgerFile(id types.ReplicaID) string { return fmt.Sprintf("replica-%d.ledger", id) }

// ErrLedgerCorrupt is wrapped by the error New returns when a ledger line
// fails its checksum or does not parse, or lacks its newline, where a crash
// while appending cannot have left it: it is followed by further lines, or
// the block store counts it among its committed blocks' lines (those are
// fsync'd before the store's transaction). The file was damaged in place and
// the replica refuses to start on it, leaving it as it is (see
// LedgerCorruptError).
var ErrLedgerCorrupt = errors.New("ledger corrupt")

// ErrLedgerBehindStore is wrapped by the error New returns when the ledger
// file has fewer lines than the block store's committed blocks produced: the
// ledger was truncated or moved away and the block store kept. Move
// blocks.db and head.db away as well and restart: the replica catches up
// from the others.
var ErrLedgerBehindStore = errors.New("ledger behind the block store (move blocks.db away too and restart to catch up)")

// LedgerCorruptError names the ledger file and the 1-based line that is
// damaged. It wraps ErrLedgerCorrupt and the parse error (which wraps
// client.ErrBadLedger). Why is why it is not a torn write.
type LedgerCorruptError struct {
	Path string
	Line uint64
	Err  error
	Why  string
}

func (e *LedgerCorruptError) Error() string {
	return fmt.Sprintf("%v: %s:%d: %v (%s, so not a torn write; to recover, move %s, %s and %s out of the home and restart the replica: it catches up from the others)",
		ErrLedgerCorrupt, e.Path, e.Line, e.Err, e.Why, filepath.Base(e.Path), BlockStoreFile, HeadFile)
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
	return openExecutorFS(osFS{}, home, id, chainID, key, noLimit)
}

// noLimit replays the whole ledger (a block store that does not record the
// ledger height, or tests of the executor alone).
const noLimit = ^uint64(0)

// openExecutorFS opens the ledger and replays its first limit lines: the
// lines of the blocks the block store holds as committed (it records the
// ledger height it was written at). Lines beyond are cut: they were written
// and fsync'd but the block store's sync did not follow (a crash in between),
// so their blocks are committed again after the restart and must then be
// executed from exactly the state they were first executed from, or an
// execution-time rule that depends on the state (executor.refuseAtExecution)
// could decide differently and this ledger would diverge from the others.
// Re-execution writes the same lines again. A ledger shorter than limit was
// truncated or moved away while the block store was kept: ErrLedgerBehindStore.
func openExecutorFS(fsys fileSystem, home string, id types.ReplicaID, chainID string, key ed25519.PrivateKey, limit uint64) (*executor, error) {
	path := filepath.Join(home, LedgerFile(id))
	e := &executor{id: id, chainID: chainID, key: key, kv: kv.New(), clients: map[string]*clientState{}, peers: map[string]peer.ID{}}
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
		err = e.replay(f, path, limit)
	}
	if err == nil && limit != noLimit && e.height < limit {
		err = fmt.Errorf("%w: %s has %d lines, the block store's committed blocks %d", ErrLedgerBehindStore, path, e.height, limit)
	}
	if err == nil {
		// Lines left by a process killed before its fsync may still be
		// only in the page cache: make them durable before answering from
		// them (nothing is acknowledged before its fsync).
		err = f.Sync()
		e.markDurable()
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	e.file = f
	return e, nil
}

// replay rebuilds the state machine and the reply cache from the ledger file,
// reading it as a stream (a long run's ledger can be many gigabytes). A
// torn tail (a crash in the middle of an append) is cut off: a last line
// without its newline, or a last line that fails its checksum or does not
// parse. Such a line followed by a complete one, or within the limit lines
// the block store counts, is damage in place: replay returns a
// *LedgerCorruptError and leaves the file as it is.
func (e *executor) replay(f file, path string, limit uint64) error {
	size, err := f.Size()
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<20)
	keep := int64(0) // the end of the last line replayed
	var torn error   // why the last line is not replayed, if it is not
	for {
		if e.height == limit {
			if keep < size {
				log.Warnw("ledger: cutting lines past the block store's last committed block (executed again when their blocks commit)", "path", path, "bytes", size-keep)
			}
			break
		}
		raw, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if len(raw) > 0 {
				torn = fmt.Errorf("%w: incomplete last line (no newline)", client.ErrBadLedger)
			}
			break
		}
		if err != nil {
			return fmt.Errorf("ledger: %w", err)
		}
		l, err := client.ParseLedgerLine(string(raw[:len(raw)-1]))
		var key []byte
		if err == nil {
			key, err = hex.DecodeString(l.Client) // checked by ParseLedgerLine
		}
		if err != nil {
			if _, more := br.ReadBytes('\n'); more == nil { // a complete line follows
				return &LedgerCorruptError{Path: path, Line: e.height + 1, Err: err, Why: "followed by further lines"}
			}
			torn = err
			break
		}
		result := "fail"
		if op, err := kv.ParseOp(l.Op); err == nil {
			result = e.kv.Apply(op)
		}
		cs := e.client(string(key))
		if cs.done.Has(l.Seq) {
			// apply never writes an executed seq twice; replay keeps the
			// first, as apply would have.
			log.Warnw("ledger: a (client, seq) twice", "path", path, "line", e.height+1, "seq", l.Seq)
		}
		e.record(cs, l.Seq, result)
		e.view = e.view.Extend(raw)
		keep += int64(len(raw))
	}
	if torn != nil && limit != noLimit && e.height < limit {
		// The line was fsync'd before the block store's transaction that
		// counts it: a crash cannot have torn it. Cutting it would also
		// cut committed data before a refused start (ErrLedgerBehindStore).
		return &LedgerCorruptError{Path: path, Line: e.height + 1, Err: torn,
			Why: fmt.Sprintf("within the %d lines of the block store's committed blocks", limit)}
	}
	if keep != size {
		// Not synced: the next block's write and fsync overwrite the tail.
		if torn != nil {
			log.Warnw("ledger: cutting a torn tail", "path", path, "line", e.height+1, "bytes", size-keep, "why", torn)
		}
		if err := f.Truncate(keep); err != nil {
			return fmt.Errorf("ledger: repair torn tail: %w", err)
		}
	}
	return nil
}

// persist appends ledger lines and fsyncs the file. admit answers from
// them only after markDurable: the committer calls it once the blocks that
// hold them are synced in the block store too (see Replica.execute).
func (e *executor) persist(lines []byte) error {
	if len(lines) == 0 {
		return nil
	}
	if _, err := e.file.WriteAt(lines, e.view.Size); err != nil {
		return err
	}
	e.view = e.view.Extend(lines)
	return e.syncs.sync(e.file.Sync)
}

// markDurable lets admit answer from every operation executed so far.
func (e *executor) markDurable() {
	e.mu.Lock()
	e.durable = e.height
	e.mu.Unlock()
	v := e.view
	e.served.Store(&v)
}

// servedView is the durable part of the ledger file, as far as ledger
// requests are answered from it (any goroutine).
func (e *executor) servedView() client.LedgerView { return *e.served.Load() }

// apply runs b's operations on the state machine and returns the (unsigned)
// replies, one per request, and lines with the ledger lines to append
// appended (a commit group's blocks share one buffer). An operation
// executes once: one already executed, in an earlier block or before a
// restart, keeps its result and height; if its result is no longer kept
// (older than the client's reply window), its request gets no reply. A
// request refused by refuseAtExecution is skipped whole: not executed, not
// in the ledger, no reply.
func (e *executor) apply(b *types.Block, lines []byte) ([]*types.ClientReply, []byte) {
	size := 0 // the ledger lines' size, roughly: one allocation for them all
	for i := range b.Payload {
		r := &b.Payload[i]
		size += len(r.Ops) * (2*len(r.Client) + 32)
		for _, op := range r.Ops {
			size += len(op)
		}
	}
	lines = slices.Grow(lines, size)
	out := make([]*types.ClientReply, 0, len(b.Payload))
	for i := range b.Payload {
		var rp *types.ClientReply
		if rp, lines = e.applyRequest(&b.Payload[i], lines); rp != nil {
			out = append(out, rp)
		}
	}
	return out, lines
}

// applyRequest executes one request of a committed block under the lock,
// which is taken per request so that the event loop's admit waits
// for one request at most, not a whole block.
func (e *executor) applyRequest(req *types.Request, lines []byte) (*types.ClientReply, []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cs := e.clients[string(req.Client)]
	if err := refuseAtExecution(cs, req); err != nil {
		e.refused++
		log.Warnw("request refused at execution", "seq", req.Seq, "ops", len(req.Ops), "err", err)
		return nil, lines
	}
	if cs == nil {
		cs = e.client(string(req.Client))
	}
	rp := e.newReply(req)
	line := client.LedgerLine{Client: hex.EncodeToString(req.Client)}
	complete := true
	for j, text := range req.Ops {
		seq := req.Seq + uint64(j)
		var d opDone
		if cs.done.Has(seq) {
			var ok bool
			if d, ok = cs.results[seq]; !ok {
				complete = false
			}
		} else {
			op, canon, valid := canonicalOp(text)
			d.result = "fail"
			if valid {
				d.result = e.kv.Apply(op)
			}
			d.height = e.record(cs, seq, d.result)
			line.Seq, line.Op = seq, canon
			lines = append(line.AppendTo(lines), '\n')
		}
		rp.Results[j], rp.Heights[j] = d.result, d.height
	}
	if !complete {
		return nil, lines
	}
	return rp, lines
}

// refuseAtExecution is the execution-time rule for a committed request of
// a client that scatters its seqs (cs nil: nothing executed yet). It
// depends only on the ledger (the client's executed seqs), so every
// replica, and replay, decides alike. A correct client never meets it: its
// seqs in flight span less than types.ReplyWindow, and all its seqs below
// them executed at lower heights.
func refuseAtExecution(cs *clientState, req *types.Request) error {
	var done seqset.Set
	if cs != nil {
		done = cs.done
	}
	lo, hi := req.Seq, req.Seq+uint64(len(req.Ops))-1
	if hi > done.Watermark()+types.SeqWindow {
		return fmt.Errorf("%w: ops %d..%d, watermark %d", ErrSeqTooFarAhead, lo, hi, done.Watermark())
	}
	if done.Spans() >= seqset.MaxSpans && done.AddsSpan(lo, hi) {
		return fmt.Errorf("%w: ops %d..%d would open span %d above watermark %d", ErrSeqTooFarAhead, lo, hi, done.Spans()+1, done.Watermark())
	}
	return nil
}

// client returns the state of client c, creating it.
func (e *executor) client(c string) *clientState {
	cs := e.clients[c]
	if cs == nil {
		cs = &clientState{results: map[uint64]opDone{}}
		e.clients[c] = cs
	}
	return cs
}

// record notes seq of cs as executed with result at the next ledger height
// and returns that height; the one bookkeeping path of apply and replay, so
// that replay rebuilds the live state exactly. It drops the results that
// fell out of the client's reply window and, every idleCheck heights, the
// results of idle clients.
func (e *executor) record(cs *clientState, seq uint64, result string) uint64 {
	e.height++
	cs.done.Add(seq, seq)
	cs.last = e.height
	if cut := cs.done.Highest(); cut > types.ReplyWindow {
		cs.trim(cut - types.ReplyWindow)
	}
	if seq > cs.trimmed {
		cs.results[seq] = opDone{result, e.height}
	}
	if e.height%idleCheck == 0 && e.height > idleHeights {
		for c, other := range e.clients {
			if other.last <= e.height-idleHeights && len(other.results) > 0 {
				other.results = map[uint64]opDone{}
				other.trimmed = other.done.Highest()
				e.peersMu.Lock()
				delete(e.peers, c)
				e.peersMu.Unlock()
			}
		}
	}
	return e.height
}

// trim drops the results of seqs <= cut.
func (cs *clientState) trim(cut uint64) {
	if cut <= cs.trimmed {
		return
	}
	if cut-cs.trimmed > uint64(len(cs.results)) {
		for q := range cs.results {
			if q <= cut {
				delete(cs.results, q)
			}
		}
	} else {
		for q := cs.trimmed + 1; q <= cut; q++ {
			delete(cs.results, q)
		}
	}
	cs.trimmed = cut
}

func (e *executor) newReply(req *types.Request) *types.ClientReply {
	return &types.ClientReply{Client: req.Client, Seq: req.Seq, Results: make([]string, len(req.Ops)), Heights: make([]uint64, len(req.Ops)), Replica: e.id}
}

// admit decides, at a replica's door, what to do with a verified client
// request: answer it from the cache (reply), drop it (a typed error:
// ErrSeqTooFarAhead, ErrResultForgotten), or (neither) pass it on to
// the mempool.
//
// ErrResultForgotten is a request whose operations all executed but whose
// results fell out of the client's reply window (or were dropped after the
// client idled for idleHeights): it is not ordered again and gets no
// reply. A correct client cannot be left waiting by it: it only
// retransmits operations in flight, and those lie within
// types.ReplyWindow of the newest seq it submitted (node/client), so
// within the window of the highest seq executed.
func (e *executor) admit(r *types.Request) (*types.ClientReply, error) {
	rp := e.newReply(r)
	e.mu.Lock()
	cs := e.clients[string(r.Client)]
	if err := refuseAtExecution(cs, r); err != nil {
		e.mu.Unlock()
		return nil, err
	}
	if cs == nil {
		e.mu.Unlock()
		return nil, nil
	}
	lo, hi := r.Seq, r.Seq+uint64(len(r.Ops))-1
	if !cs.done.HasAll(lo, hi) {
		e.mu.Unlock()
		return nil, nil
	}
	for j := range r.Ops {
		d, ok := cs.results[lo+uint64(j)]
		if !ok {
			e.mu.Unlock()
			return nil, fmt.Errorf("%w: ops %d..%d, results kept above %d", ErrResultForgotten, lo, hi, cs.trimmed)
		}
		if d.height > e.durable {
			e.mu.Unlock()
			return nil, nil
		}
		rp.Results[j], rp.Heights[j] = d.result, d.height
	}
	e.mu.Unlock()
	rp.Sig = ed25519.Sign(e.key, rp.SignBytes(e.chainID))
	return rp, nil
}

func (e *executor) clientPeer(client []byte, p peer.ID) {
	e.peersMu.Lock()
	defer e.peersMu.Unlock()
	if _, ok := e.peers[string(client)]; !ok && len(e.peers) >= maxPeers {
		clear(e.peers)
	}
	e.peers[string(client)] = p
}

func (e *executor) peerOf(client []byte) (peer.ID, bool) {
	e.peersMu.Lock()
	defer e.peersMu.Unlock()
	p, ok := e.peers[string(client)]
	return p, ok
}

func (e *executor) close() { e.file.Close() }
