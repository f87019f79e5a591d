package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fxamacker/cbor/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/diembft/diembft/protocol/ledger"
	"github.com/diembft/diembft/protocol/types"
)

// BlockStoreFile is the name of the block store in a replica's home.
const BlockStoreFile = "blocks.db"

var (
	bucketChain   = []byte("chain")   // height (8 bytes) -> committed block
	bucketIndex   = []byte("index")   // block id -> height (8) ‖ state id (32)
	bucketPending = []byte("pending") // block id -> uncommitted block
	bucketMeta    = []byte("meta")    // "high_qc", "high_commit_qc"
)

// blockStore keeps committed blocks, the uncommitted ones and the high
// certificates in bbolt, so a restarted replica rebuilds its block tree and
// round from disk instead of fetching its whole history from peers.
//
// It is opened with NoSync: nothing in it is needed for safety (the safety
// file and the ledger file are fsync'd before they matter, and anything
// missing here is fetched again from peers). The database is synced when
// committed blocks add ledger lines, right after the ledger file, so the
// blocks behind every acknowledged operation survive power loss too; if the
// file is damaged anyway it is moved aside and the replica catches up from
// the network.
type blockStore struct {
	db *bolt.DB
	// syncedLines is the ledger line count at the last sync (unknown, so
	// the first commit syncs, until then); unsynced counts the committed
	// blocks written since.
	syncedLines uint64
	unsynced    int
	sync        func() error // db.Sync; counted in tests
	syncs       syncStat     // syncs of write
}

// maxUnsynced bounds how many committed blocks without ledger lines may
// wait for a sync (see write): 6 s of an idle committee's empty blocks at
// the default delta, a fraction of a second under load.
const maxUnsynced = 64

var enc, _ = cbor.CoreDetEncOptions().EncMode()

// openBlockStore opens the block store in home and reads it back, then
// syncs it once: after a kill its last transactions may be in the page
// cache only, and what it says is committed must be on disk before the
// replica answers from it (executor.admit).
//
// A store that is damaged (bbolt refuses its pages, or panics reading them,
// or a block does not decode) is moved aside and replaced by an empty one,
// and rec.movedAside says so: the replica must then start its ledger afresh
// too (Replica's New moves it aside as well), because the ledger is
// replayed only as far as the store's chain reaches and blocks fetched again
// must execute from the state they first executed from. Errors of the
// system (locked, permissions, I/O, a full disk) are returned as they are.
func openBlockStore(home string) (*blockStore, *recovered, error) {
	path := filepath.Join(home, BlockStoreFile)
	s, rec, err := readBlockStore(path)
	var d damagedError
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, nil, fmt.Errorf("block store %s is locked: is another replica running on this home?", path)
	case errors.As(err, &d):
		aside, rerr := moveAside(path)
		if rerr != nil {
			return nil, nil, fmt.Errorf("block store: %w (moving it aside: %v)", err, rerr)
		}
		log.Errorw("block store damaged; moved it aside, catching up from peers", "path", path, "err", err, "moved_to", aside)
		if s, rec, err = readBlockStore(path); err != nil {
			return nil, nil, fmt.Errorf("block store: %w", err)
		}
		rec.movedAside = true
	case err != nil:
		return nil, nil, fmt.Errorf("block store %s: %w", path, err)
	}
	if err := s.db.Sync(); err != nil {
		s.db.Close()
		return nil, nil, fmt.Errorf("block store %s: %w", path, err)
	}
	return s, rec, nil
}

// damagedError marks what openBlockStore takes for a damaged store.
type damagedError struct{ err error }

func (e damagedError) Error() string { return "damaged: " + e.err.Error() }
func (e damagedError) Unwrap() error { return e.err }

// readBlockStore opens (creating) the store at path and recovers it. A
// panic inside bbolt, an error of bbolt's own about its file (not one of
// the system) and an undecodable record are returned as damagedError.
func readBlockStore(path string) (s *blockStore, rec *recovered, err error) {
	var db *bolt.DB
	defer func() {
		if p := recover(); p != nil {
			// Not closed: a panic may leave bbolt's locks taken, and the
			// file is moved aside anyway.
			err = damagedError{fmt.Errorf("bbolt: %v", p)}
			return
		}
		if err != nil && db != nil {
			db.Close()
		}
	}()
	if db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: true}); err != nil {
		var errno syscall.Errno
		if errors.Is(err, bolt.ErrTimeout) || errors.As(err, &errno) {
			return nil, nil, err
		}
		return nil, nil, damagedError{err}
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketChain, bucketIndex, bucketPending, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	s = &blockStore{db: db, syncedLines: ^uint64(0), sync: db.Sync}
	if rec, err = s.recover(); err != nil {
		return nil, nil, damagedError{err}
	}
	return s, rec, nil
}

// close syncs what is still waiting for a sync (see write: blocks without
// ledger lines, the last head) and closes the database; the committer has
// stopped by then.
func (s *blockStore) close() error {
	if err := s.sync(); err != nil {
		s.db.Close()
		return err
	}
	return s.db.Close()
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
	// block here (noLimit for a store written before it was recorded).
	ledgerLines uint64
	// movedAside: the store was damaged and replaced by an empty one (see
	// openBlockStore).
	movedAside bool
}

func (s *blockStore) recover() (*recovered, error) {
	rec := &recovered{ledgerLines: noLimit}
	led := &storeLedger{store: s, States: ledger.States{}, recent: map[types.Hash]*types.Block{}}
	g, _ := types.Genesis()
	led.States[g.ID] = ledger.GenesisState
	led.last, led.lastState = g, ledger.GenesisState
	err := s.db.View(func(tx *bolt.Tx) error {
		chain := tx.Bucket(bucketChain)
		if k, v := chain.Cursor().Last(); k != nil {
			b, err := decodeBlock(v)
			if err != nil {
				return fmt.Errorf("last committed block: %w", err)
			}
			ix := tx.Bucket(bucketIndex).Get(b.ID[:])
			if len(ix) != 40 {
				return errors.New("index entry missing for the last committed block")
			}
			led.height = binary.BigEndian.Uint64(k)
			led.last = b
			copy(led.lastState[:], ix[8:])
			led.States[b.ID] = led.lastState
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyLedgerLines); len(v) == 8 {
			rec.ledgerLines = binary.BigEndian.Uint64(v)
		}
		var err error
		if v := meta.Get([]byte("high_qc")); v != nil {
			if rec.highQC, err = decodeQC(v); err != nil {
				return err
			}
		}
		if v := meta.Get([]byte("high_commit_qc")); v != nil {
			if rec.highCommitQC, err = decodeQC(v); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketPending).ForEach(func(_, v []byte) error {
			b, err := decodeBlock(v)
			if err != nil {
				return err
			}
			if b.Round > led.last.Round {
				rec.pending = append(rec.pending, b)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("block store: %w", err)
	}
	rec.ledger = led
	return rec, nil
}

// head is what the block store keeps besides the committed chain: the
// uncommitted blocks and the high certificates (not synced on their own: a
// loss only costs a fetch after restart).
type head struct {
	pending              []*types.Block
	highQC, highCommitQC *types.QC
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

// write stores, in one transaction, the head h (if not nil) and then the
// committed blocks at heights from+1... with the ledger file's line count
// after them (the committer calls it after the ledger's fsync, so the
// committed chain never runs ahead of the ledger file). One transaction per
// commit instead of one for the head and one for the chain: each bbolt
// commit rewrites its meta and freelist pages.
//
// It syncs when the blocks added ledger lines, or maxUnsynced blocks went
// without. Blocks without lines (empty ones, half of them at light load, or
// only re-sent requests) wait for the next sync: nothing acknowledged rests
// on them alone, and lost in a crash they are committed again from peers.
// Measured (bench --mode latency --inflight 1, interleaved): p50 7.4-7.9 ms
// with a sync per commit, 6.3-7.1 ms without the syncs of empty blocks.
func (s *blockStore) write(from uint64, blocks []committedBlock, h *head, ledgerLines uint64) error {
	if len(blocks) == 0 && h == nil {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if h != nil {
			if err := putHead(tx, h); err != nil {
				return err
			}
		}
		chain, index, pending := tx.Bucket(bucketChain), tx.Bucket(bucketIndex), tx.Bucket(bucketPending)
		for i, c := range blocks {
			b := c.b
			data, err := enc.Marshal(b)
			if err != nil {
				return err
			}
			key := binary.BigEndian.AppendUint64(nil, from+uint64(i)+1)
			if err := chain.Put(key, data); err != nil {
				return err
			}
			if err := index.Put(b.ID[:], append(key, c.state[:]...)); err != nil {
				return err
			}
			if err := pending.Delete(b.ID[:]); err != nil {
				return err
			}
		}
		if len(blocks) > 0 {
			return tx.Bucket(bucketMeta).Put(keyLedgerLines, binary.BigEndian.AppendUint64(nil, ledgerLines))
		}
		return nil
	})
	if err != nil || len(blocks) == 0 {
		return err
	}
	s.unsynced += len(blocks)
	if ledgerLines == s.syncedLines && s.unsynced < maxUnsynced {
		return nil
	}
	if err := s.syncs.sync(s.sync); err != nil {
		return err
	}
	s.syncedLines, s.unsynced = ledgerLines, 0
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
