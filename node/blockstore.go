package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fxamacker/cbor/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/diembft/diembft/protocol/ledger"
	"github.com/diembft/diembft/protocol/safety"
	"github.com/diembft/diembft/protocol/types"
)

// BlockStoreFile is the name of the block store's committed chain in a
// replica's home; HeadFile holds its uncommitted head.
const (
	BlockStoreFile = "blocks.db"
	HeadFile       = "head.db"
)

var (
	bucketChain   = []byte("chain")   // blocks.db: height (8 bytes) -> committed block
	bucketIndex   = []byte("index")   // blocks.db: block id -> height (8) ‖ state id (32)
	bucketMeta    = []byte("meta")    // "high_qc", "high_commit_qc"; blocks.db also "ledger_lines"
	bucketPending = []byte("pending") // block id -> uncommitted block (the head, in both files)
)

// blockStore keeps committed blocks, the uncommitted ones and the high
// certificates in bbolt, so a restarted replica rebuilds its block tree and
// round from disk instead of fetching its whole history from peers.
//
// Two files, because they need different durability. The committed chain
// (blocks.db) holds the blocks behind every acknowledged operation: each of
// its transactions is a bbolt commit with bbolt's own syncs (data pages,
// then the meta page), written after the ledger file's fsync and before the
// replies. The head (pending blocks, high certificates) changes nearly
// every round and is not needed for safety (the safety file is) nor for
// acknowledged operations; it rides in those chain transactions, so it is
// synced as often as commits add ledger lines, and in between it is written
// to head.db without syncs (bbolt NoSync; damaged, that file is moved aside
// alone). A restart takes both heads together (recovered.addHead). One
// NoSync file for everything, as before, was not safe on power loss: bbolt
// reuses the pages a transaction frees in the next ones, so unsynced
// transactions after a synced one could overwrite that one's pages (or
// reach the disk with their meta page before their data), and a power loss
// could then leave a chain that is damaged or, worse, silently stale.
//
// The head synced last can be older than the block a replica voted for
// last (idle periods, or between two commits with lines). Were that so at
// every replica after a committee-wide power loss, the certified block and
// QC of their highest lock would be on no disk here, and the committee
// could not time out of it (safety rules refuse a timeout below the lock):
// the safety file's vote log (safetyStore) holds every voted block above
// the synced chain (syncedRound) for that case.
type blockStore struct {
	db   *bolt.DB // blocks.db
	head *bolt.DB // head.db
	// height is the chain's height in blocks.db, and lines the ledger line
	// count recorded with it.
	height, lines uint64
	// deferred are committed blocks above height that added no ledger
	// lines, not written yet (see commit); deferredLines is the ledger line
	// count after them.
	deferred      []committedBlock
	deferredLines uint64
	// unsyncedHead is the head last written to head.db, if none was synced
	// in a chain transaction since: the next one carries it (flush).
	unsyncedHead *head
	// syncedRound is the round of the chain's last block in blocks.db (the
	// vote log keeps the blocks above it; written by the committer, read by
	// the event loop).
	syncedRound atomic.Uint64
	update      func(func(*bolt.Tx) error) error // db.Update; tests hook it
	syncs       syncStat                         // of the chain's transactions
}

// maxUnsynced bounds how many committed blocks without ledger lines may
// wait for the chain's next transaction (see commit): 6 s of an idle
// committee's empty blocks at the default delta, a fraction of a second
// under load.
const maxUnsynced = 64

var enc, _ = cbor.CoreDetEncOptions().EncMode()

// openBlockStore opens both files of the block store in home and reads them
// back, then syncs them and home once: after a kill the head's last
// transactions (or the chain's meta page, had the kill come inside bbolt's
// commit) may be in the page cache only.
//
// A damaged chain (bbolt refuses its pages, or panics reading them, or a
// block does not decode) is moved aside with the head and replaced by an
// empty one, and rec.movedAside says so: the replica must then start its
// ledger afresh too (Replica's New moves it aside as well), because the
// ledger is replayed only as far as the store's chain reaches and blocks
// fetched again must execute from the state they first executed from. A
// damaged head is moved aside alone. Errors of the system (locked,
// permissions, I/O, a full disk) are returned as they are.
func openBlockStore(home string) (*blockStore, *recovered, error) {
	s := &blockStore{}
	rec := &recovered{ledger: newStoreLedger(s)}
	chainPath, headPath := filepath.Join(home, BlockStoreFile), filepath.Join(home, HeadFile)
	var synced, unsynced *head
	db, damaged, err := openDamageable(chainPath, false, func(db *bolt.DB) (err error) {
		if err = s.recoverChain(db, rec); err == nil {
			synced, err = readHead(db)
		}
		return err
	}, bucketChain, bucketIndex, bucketMeta, bucketPending)
	if err != nil {
		return nil, nil, err
	}
	if damaged {
		rec.movedAside = true
		rec.ledger = newStoreLedger(s)
		synced = nil
		s.height, s.lines = 0, 0
		s.syncedRound.Store(0)
		// Its pending blocks sit above a chain that is gone.
		if aside, err := moveAside(headPath); err == nil {
			log.Errorw("block store head moved aside with the damaged chain", "moved_to", aside)
		} else if !errors.Is(err, fs.ErrNotExist) {
			db.Close()
			return nil, nil, fmt.Errorf("block store: moving the head aside with the damaged chain: %w", err)
		}
	}
	s.db, s.update = db, db.Update
	hdb, damaged, err := openDamageable(headPath, true, func(db *bolt.DB) (err error) {
		unsynced, err = readHead(db)
		return err
	}, bucketPending, bucketMeta)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	if damaged {
		unsynced = nil
	}
	for _, h := range []*head{synced, unsynced} {
		if h != nil {
			rec.addHead(h)
		}
	}
	s.head = hdb
	// The home too: a file just created, or one moved aside and made anew,
	// is durable only with its directory entry.
	if err := errors.Join(db.Sync(), hdb.Sync(), osFS{}.SyncDir(home)); err != nil {
		db.Close()
		hdb.Close()
		return nil, nil, fmt.Errorf("block store: %w", err)
	}
	return s, rec, nil
}

// damagedError marks what openDamageable takes for a damaged file.
type damagedError struct{ err error }

func (e damagedError) Error() string { return "damaged: " + e.err.Error() }
func (e damagedError) Unwrap() error { return e.err }

// openDamageable opens (creating) the bbolt file at path with buckets and
// reads it with read. A file bbolt refuses or panics on, or that read fails
// on, is damaged: it is moved aside (logged) and replaced by an empty one,
// and damaged says so. A file locked by another process and errors of the
// system are returned.
func openDamageable(path string, noSync bool, read func(*bolt.DB) error, buckets ...[]byte) (db *bolt.DB, damaged bool, err error) {
	db, err = readBolt(path, noSync, read, buckets)
	if d := (damagedError{}); errors.As(err, &d) {
		aside, rerr := moveAside(path)
		if rerr != nil {
			return nil, false, fmt.Errorf("%s: %w (moving it aside: %v)", path, err, rerr)
		}
		log.Errorw("block store file damaged; moved it aside", "path", path, "err", err, "moved_to", aside)
		damaged = true
		db, err = readBolt(path, noSync, func(*bolt.DB) error { return nil }, buckets)
	}
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, damaged, fmt.Errorf("%s is locked: is another replica running on this home?", path)
	case err != nil:
		return nil, damaged, fmt.Errorf("%s: %w", path, err)
	}
	return db, damaged, nil
}

// readBolt is openDamageable's open and read: a panic inside bbolt, an
// error of bbolt's own about its file (not one of the system) and an error
// of read are returned as damagedError.
func readBolt(path string, noSync bool, read func(*bolt.DB) error, buckets [][]byte) (db *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			// Not closed: a panic may leave bbolt's locks taken, and the
			// file is moved aside anyway.
			db, err = nil, damagedError{fmt.Errorf("bbolt: %v", p)}
			return
		}
		if err != nil && db != nil {
			db.Close()
			db = nil
		}
	}()
	if db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: noSync}); err != nil {
		var errno syscall.Errno
		if errors.Is(err, bolt.ErrTimeout) || errors.As(err, &errno) {
			return db, err
		}
		return db, damagedError{err}
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range buckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return db, err
	}
	if err := read(db); err != nil {
		return db, damagedError{err}
	}
	return db, nil
}

// close writes, synced, the committed blocks still deferred and the head
// last written alone (flush), and closes both files; the committer has
// stopped by then.
func (s *blockStore) close() error {
	return errors.Join(s.flush(nil), s.db.Close(), s.head.Close())
}

func decodeBlock(data []byte) (*types.Block, error) {
	var b types.Block
	if err := cbor.Unmarshal(data, &b); err != nil {
		return nil, err
	}
	if b.ComputeID() != b.ID {
		return nil, types.ErrBadBlockID
	}
	return &b, nil
}

func decodeQC(data []byte) (*types.QC, error) {
	var q types.QC
	if err := cbor.Unmarshal(data, &q); err != nil {
		return nil, err
	}
	return &q, nil
}

// recovered is what a restart reads back.
type recovered struct {
	ledger               *storeLedger
	highQC, highCommitQC *types.QC
	pending              []*types.Block
	// ledgerLines is the ledger file's line count after the last committed
	// block here (0 for an empty chain).
	ledgerLines uint64
	// movedAside: the chain was damaged and replaced by an empty one (see
	// openBlockStore).
	movedAside bool
}

func newStoreLedger(s *blockStore) *storeLedger {
	led := &storeLedger{store: s, States: ledger.States{}, recent: map[types.Hash]*types.Block{}}
	g, _ := types.Genesis()
	led.States[g.ID] = ledger.GenesisState
	led.last, led.lastState = g, ledger.GenesisState
	return led
}

// recoverChain reads the last committed block and the ledger line count.
func (s *blockStore) recoverChain(db *bolt.DB, rec *recovered) error {
	led := rec.ledger
	return db.View(func(tx *bolt.Tx) error {
		chain := tx.Bucket(bucketChain)
		k, v := chain.Cursor().Last()
		if k == nil {
			return nil
		}
		b, err := decodeBlock(v)
		if err != nil {
			return fmt.Errorf("last committed block: %w", err)
		}
		ix := tx.Bucket(bucketIndex).Get(b.ID[:])
		if len(ix) != 40 {
			return errors.New("index entry missing for the last committed block")
		}
		lines := tx.Bucket(bucketMeta).Get(keyLedgerLines)
		if len(lines) != 8 {
			return errors.New("ledger line count missing beside committed blocks")
		}
		led.height = binary.BigEndian.Uint64(k)
		led.last = b
		copy(led.lastState[:], ix[8:])
		led.States[b.ID] = led.lastState
		rec.ledgerLines = binary.BigEndian.Uint64(lines)
		s.height, s.lines = led.height, rec.ledgerLines
		s.syncedRound.Store(uint64(b.Round))
		return nil
	})
}

// readHead reads the head stored in db.
func readHead(db *bolt.DB) (*head, error) {
	h := &head{}
	return h, db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		for key, to := range map[string]**types.QC{"high_qc": &h.highQC, "high_commit_qc": &h.highCommitQC} {
			if v := meta.Get([]byte(key)); v != nil {
				q, err := decodeQC(v)
				if err != nil {
					return err
				}
				*to = q
			}
		}
		return tx.Bucket(bucketPending).ForEach(func(_, v []byte) error {
			b, err := decodeBlock(v)
			if err != nil {
				return err
			}
			h.pending = append(h.pending, b)
			return nil
		})
	})
}

// addHead adds h to the recovered head: its pending blocks (each once) and
// its high certificates where they are higher. A replica has two heads
// (see blockStore): the one its last chain transaction synced and the one
// written since without syncs, which a power loss may leave older or lose.
//
// Blocks at or below the round of the chain's last block are left out: they
// are committed since, or abandoned.
func (rec *recovered) addHead(h *head) {
	for _, b := range h.pending {
		if b.Round > rec.ledger.last.Round && !slices.ContainsFunc(rec.pending, func(p *types.Block) bool { return p.ID == b.ID }) {
			rec.pending = append(rec.pending, b)
		}
	}
	if q := h.highQC; q != nil && (rec.highQC == nil || q.Round() > rec.highQC.Round()) {
		rec.highQC = q
	}
	if q := h.highCommitQC; q != nil && (rec.highCommitQC == nil || q.Round() > rec.highCommitQC.Round()) {
		rec.highCommitQC = q
	}
}

// loggedHead is the head the vote log gives back (safetyStore): the blocks
// voted for, and the highest certificates among their QCs and the last
// timeout's high QC. The safety rules' lock (highest QC round) comes from
// one of these, so a replica whose head files lost it can still time out.
func loggedHead(blocks []*types.Block, st safety.State) *head {
	h := &head{pending: blocks}
	qcs := make([]*types.QC, 0, len(blocks)+1)
	for _, b := range blocks {
		qcs = append(qcs, b.QC)
	}
	if st.LastTimeout != nil {
		qcs = append(qcs, st.LastTimeout.HighQC)
	}
	for _, q := range qcs {
		if q == nil {
			continue
		}
		if h.highQC == nil || q.Round() > h.highQC.Round() {
			h.highQC = q
		}
		if q.LedgerCommitInfo.Commits() && (h.highCommitQC == nil || q.Round() > h.highCommitQC.Round()) {
			h.highCommitQC = q
		}
	}
	return h
}

// head is what the block store keeps besides the committed chain: the
// uncommitted blocks and the high certificates.
type head struct {
	pending              []*types.Block
	highQC, highCommitQC *types.QC
}

// writeHead replaces the head in head.db by h, unsynced (see blockStore).
func (s *blockStore) writeHead(h *head) error {
	s.unsyncedHead = h
	return s.head.Update(func(tx *bolt.Tx) error { return putHead(tx, h) })
}

func putHead(tx *bolt.Tx, h *head) error {
	pb := tx.Bucket(bucketPending)
	keep := map[string]bool{}
	for _, b := range h.pending {
		keep[string(b.ID[:])] = true
		if pb.Get(b.ID[:]) != nil {
			continue
		}
		data, err := enc.Marshal(b)
		if err != nil {
			return err
		}
		if err := pb.Put(b.ID[:], data); err != nil {
			return err
		}
	}
	var stale [][]byte
	_ = pb.ForEach(func(k, _ []byte) error {
		if !keep[string(k)] {
			stale = append(stale, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range stale {
		if err := pb.Delete(k); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	for name, qc := range map[string]*types.QC{"high_qc": h.highQC, "high_commit_qc": h.highCommitQC} {
		data, err := enc.Marshal(qc)
		if err != nil {
			return err
		}
		if err := meta.Put([]byte(name), data); err != nil {
			return err
		}
	}
	return nil
}

// storeLedger is the replica's ledger.Ledger: speculative states in memory,
// committed blocks in the block store with the most recent ones cached (the
// reputation election and block retrieval read them).
type storeLedger struct {
	store         *blockStore
	ledger.States // speculative states of uncommitted blocks
	recent        map[types.Hash]*types.Block
	order         []types.Hash // recent, oldest first
	height        uint64
	last          *types.Block
	lastState     types.Hash
	pendingTx     []committedBlock // committed since the last take
	// written, if set, is the height the committer has written to the
	// store: blocks above it stay in the recent window whatever its size,
	// since the store cannot answer for them yet.
	written *atomic.Uint64
}

type committedBlock struct {
	b     *types.Block
	state types.Hash
}

const recentBlocks = 1024

func (l *storeLedger) Commit(b *types.Block, _ *types.QC) {
	l.height++
	l.last = b
	l.lastState = l.States[b.ID]
	l.remember(b)
	l.pendingTx = append(l.pendingTx, committedBlock{b, l.lastState})
	// The parent's speculative state is no longer needed: nothing new can extend it.
	if p := b.ParentID(); p != b.ID {
		delete(l.States, p)
	}
}

func (l *storeLedger) remember(b *types.Block) {
	l.recent[b.ID] = b
	l.order = append(l.order, b.ID)
	// order[0] is at height l.height-len(order)+1.
	for len(l.order) > recentBlocks && (l.written == nil || l.height-uint64(len(l.order))+1 <= l.written.Load()) {
		delete(l.recent, l.order[0])
		l.order = l.order[1:]
	}
}

// unwritten returns the committed blocks the block store does not hold yet
// (above written), oldest first; remember keeps them all in the window.
func (l *storeLedger) unwritten() []*types.Block {
	if l.written == nil {
		return nil
	}
	w := l.written.Load()
	first := l.height - uint64(len(l.order)) + 1 // height of order[0]
	skip := 0
	if w >= first {
		skip = int(min(w-first+1, uint64(len(l.order))))
	}
	out := make([]*types.Block, 0, len(l.order)-skip)
	for _, id := range l.order[skip:] {
		out = append(out, l.recent[id])
	}
	return out
}

// take hands over the committed blocks not taken yet up to block id, and
// the ledger height before the first of them (the loop calls it for each
// core.Committed, which come one to one with Commit and in order; the
// committer writes them with write after the ledger file's fsync). Each job
// carries exactly the blocks whose ledger lines it produces: when one step
// committed several blocks and the first job carried them all, the
// committer could write them in one group with only the first one's lines,
// and the next group, carrying no block, then left the store's line count
// behind blocks it already held; a restart cut those lines for good.
func (l *storeLedger) take(id types.Hash) (uint64, []committedBlock) {
	n := 0
	for n < len(l.pendingTx) {
		n++
		if l.pendingTx[n-1].b.ID == id {
			break
		}
	}
	blocks := l.pendingTx[:n:n]
	l.pendingTx = l.pendingTx[n:]
	return l.height - uint64(len(l.pendingTx)+n), blocks
}

// keyLedgerLines is the meta key of the ledger file's line count after the
// last committed block (see openExecutorFS).
var keyLedgerLines = []byte("ledger_lines")

// commit adds the committed blocks at heights from+1... with the ledger
// file's line count after them, and the head h (if not nil), and returns the
// chain's height in blocks.db. The committer calls it after the ledger's
// fsync, so the committed chain never runs ahead of the ledger file, and
// sends the replies once it returned.
//
// Blocks that added ledger lines are written at once, in one synced
// transaction with those waiting before them, and with h: so the head is
// synced as often as commits add lines, which keeps the block a replica
// voted for on disk under load (no extra sync: bbolt syncs that
// transaction anyway). Blocks without lines (empty ones, half of them at
// light load, or only re-sent requests) wait, up to maxUnsynced of them,
// for the next transaction: nothing acknowledged rests on them alone, and
// lost in a crash they are committed again from peers (they stay in the
// head's pending blocks meanwhile, see storeLedger.unwritten); h then goes
// to head.db, unsynced. Measured when each commit was a sync of its own
// (bench --mode latency --inflight 1, interleaved): p50 7.4-7.9 ms with a
// sync per commit, 6.3-7.1 ms without the syncs of empty blocks.
func (s *blockStore) commit(from uint64, blocks []committedBlock, ledgerLines uint64, h *head) (uint64, error) {
	if at := s.height + uint64(len(s.deferred)); from != at {
		return s.height, fmt.Errorf("block store: committed blocks from height %d, the chain is at %d", from+1, at+1)
	}
	s.deferred = append(s.deferred, blocks...)
	s.deferredLines = ledgerLines
	if ledgerLines == s.lines && len(s.deferred) < maxUnsynced {
		if h != nil {
			if err := s.writeHead(h); err != nil {
				log.Warnw("block store head", "err", err) // the next chain transaction carries it (flush)
			}
		}
		return s.height, nil
	}
	return s.height, s.flush(h)
}

// flush writes the deferred blocks and the head h in one transaction
// synced by bbolt (counted as its two fdatasyncs, data pages then meta
// page, timed as the whole commit). Without h it carries the head last
// written to head.db alone, if any (a head published by a step that
// committed nothing is written there at once), so that at stop, and with
// every commit that adds lines, the newest head is synced.
func (s *blockStore) flush(h *head) error {
	if h == nil {
		h = s.unsyncedHead
	}
	if len(s.deferred) == 0 && h == nil {
		return nil
	}
	err := s.syncs.syncN(2, func() error {
		return s.update(func(tx *bolt.Tx) error {
			if h != nil {
				if err := putHead(tx, h); err != nil {
					return err
				}
			}
			chain, index := tx.Bucket(bucketChain), tx.Bucket(bucketIndex)
			for i, c := range s.deferred {
				b := c.b
				data, err := enc.Marshal(b)
				if err != nil {
					return err
				}
				key := binary.BigEndian.AppendUint64(nil, s.height+uint64(i)+1)
				if err := chain.Put(key, data); err != nil {
					return err
				}
				if err := index.Put(b.ID[:], append(key, c.state[:]...)); err != nil {
					return err
				}
			}
			if len(s.deferred) == 0 {
				return nil
			}
			return tx.Bucket(bucketMeta).Put(keyLedgerLines, binary.BigEndian.AppendUint64(nil, s.deferredLines))
		})
	})
	if err != nil {
		return err
	}
	s.unsyncedHead = nil
	if len(s.deferred) == 0 {
		return nil
	}
	s.height += uint64(len(s.deferred))
	s.lines = s.deferredLines
	s.syncedRound.Store(uint64(s.deferred[len(s.deferred)-1].b.Round))
	s.deferred = nil
	return nil
}

func (l *storeLedger) Forget(id types.Hash) { delete(l.States, id) }

func (l *storeLedger) CommittedBlock(id types.Hash) (*types.Block, bool) {
	if b, ok := l.recent[id]; ok {
		return b, true
	}
	if g, _ := types.Genesis(); id == g.ID {
		return g, true
	}
	var b *types.Block
	_ = l.store.db.View(func(tx *bolt.Tx) error {
		ix := tx.Bucket(bucketIndex).Get(id[:])
		if len(ix) != 40 {
			return nil
		}
		if v := tx.Bucket(bucketChain).Get(ix[:8]); v != nil {
			b, _ = decodeBlock(v)
		}
		return nil
	})
	return b, b != nil
}

func (l *storeLedger) Height() uint64     { return l.height }
func (l *storeLedger) Last() *types.Block { return l.last }
