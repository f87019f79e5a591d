package node

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
)

// crashFS is a fileSystem double that models the page cache: writes and
// truncations change what reads see at once but become durable only at
// Sync, and a new file's directory entry only at SyncDir. It counts the
// mutating calls (WriteAt, Truncate, Sync, SyncDir) and "crashes" just
// before the one numbered crashAt: that call and every later call on a file
// opened before the crash fail with errCrashed, and what survives is chosen
// by the crash mode. Crashing before a WriteAt or Truncate is a crash before
// a write; before a Sync, a crash after the write but before its fsync; and
// before the call after a Sync, a crash after the fsync.
type crashFS struct {
	mu      sync.Mutex
	rng     *rand.Rand
	files   map[string]*memNode
	ops     int // mutating calls so far, over all restarts
	crashAt int // crash before this call; -1: never
	crashed bool
	gen     int       // bumped at each crash: older handles are dead
	mode    crashMode // of the next crash
	last    crashMode // of the last crash
	noSync  bool      // negative control: Sync returns without making anything durable
}

type crashMode int

const (
	// loseUnsynced is a power loss: everything not synced is gone.
	loseUnsynced crashMode = iota
	// keepUnsynced is a process crash (kill -9): the page cache survives.
	keepUnsynced
	// tornUnsynced is a power loss during writeback: an in-order prefix of
	// the unsynced changes survives, the last write of it possibly torn (a
	// prefix of its bytes, or its bytes up to a point and zeros after, as a
	// file system that extended the size before writing the data leaves it).
	tornUnsynced
	numCrashModes
)

func (m crashMode) String() string {
	return [...]string{"lose-unsynced", "keep-unsynced", "torn"}[m]
}

var errCrashed = errors.New("crashfs: crashed")

type memNode struct {
	durable    []byte
	data       []byte // what reads see
	pending    []memOp
	dirDurable bool
}

type memOp struct {
	trunc bool
	off   int64 // write offset, or the new size of a truncation
	data  []byte
}

func newCrashFS(rng *rand.Rand, crashAt int, mode crashMode) *crashFS {
	return &crashFS{rng: rng, files: map[string]*memNode{}, crashAt: crashAt, mode: mode}
}

// step accounts for one mutating call, crashing first if it is the chosen one.
func (fs *crashFS) step(gen int) error {
	if fs.crashed || gen != fs.gen {
		return errCrashed
	}
	if fs.ops == fs.crashAt {
		fs.crash()
		return errCrashed
	}
	fs.ops++
	return nil
}

func applyOp(b []byte, o memOp) []byte {
	if o.trunc {
		if int64(len(b)) >= o.off {
			return b[:o.off]
		}
		return append(b, make([]byte, o.off-int64(len(b)))...)
	}
	if end := o.off + int64(len(o.data)); end > int64(len(b)) {
		b = append(b, make([]byte, end-int64(len(b)))...)
	}
	copy(b[o.off:], o.data)
	return b
}

func (fs *crashFS) crash() {
	fs.crashed = true
	fs.last = fs.mode
	fs.gen++
	for path, n := range fs.files {
		if fs.mode == keepUnsynced {
			for _, o := range n.pending {
				n.durable = applyOp(n.durable, o)
			}
			n.dirDurable = true
		} else {
			if !n.dirDurable {
				delete(fs.files, path)
				continue
			}
			if fs.mode == tornUnsynced {
				keep := fs.rng.IntN(len(n.pending) + 1)
				for _, o := range n.pending[:keep] {
					n.durable = applyOp(n.durable, o)
				}
				if keep < len(n.pending) && !n.pending[keep].trunc {
					o := n.pending[keep]
					cut := fs.rng.IntN(len(o.data) + 1)
					torn := append([]byte(nil), o.data[:cut]...)
					if fs.rng.IntN(2) == 0 {
						torn = append(torn, make([]byte, len(o.data)-cut)...)
					}
					n.durable = applyOp(n.durable, memOp{off: o.off, data: torn})
				}
			}
		}
		n.data = append([]byte(nil), n.durable...)
		n.pending = nil
	}
}

// powerLoss crashes now, losing everything not synced.
func (fs *crashFS) powerLoss() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.mode = loseUnsynced
	fs.crash()
}

// restart ends a crash; the next one comes before mutating call crashAt.
func (fs *crashFS) restart(crashAt int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.crashed = false
	fs.crashAt = crashAt
}

// contents is what a read of path sees now (nil if it does not exist).
func (fs *crashFS) contents(path string) []byte {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if n := fs.files[path]; n != nil {
		return append([]byte{}, n.data...)
	}
	return nil
}

func (fs *crashFS) OpenFile(path string, _ os.FileMode) (file, bool, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.crashed {
		return nil, false, errCrashed
	}
	n, ok := fs.files[path]
	if !ok {
		n = &memNode{}
		fs.files[path] = n
	}
	return &memFile{fs: fs, n: n, gen: fs.gen}, !ok, nil
}

func (fs *crashFS) SyncDir(dir string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if err := fs.step(fs.gen); err != nil {
		return err
	}
	for path, n := range fs.files {
		if filepath.Dir(path) == filepath.Clean(dir) {
			n.dirDurable = true
		}
	}
	return nil
}

type memFile struct {
	fs  *crashFS
	n   *memNode
	gen int
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.gen != f.fs.gen {
		return 0, errCrashed
	}
	if off >= int64(len(f.n.data)) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.step(f.gen); err != nil {
		return 0, err
	}
	o := memOp{off: off, data: append([]byte(nil), p...)}
	f.n.pending = append(f.n.pending, o)
	f.n.data = applyOp(f.n.data, o)
	return len(p), nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.step(f.gen); err != nil {
		return err
	}
	o := memOp{trunc: true, off: size}
	f.n.pending = append(f.n.pending, o)
	f.n.data = applyOp(f.n.data, o)
	return nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.step(f.gen); err != nil {
		return err
	}
	if !f.fs.noSync {
		for _, o := range f.n.pending {
			f.n.durable = applyOp(f.n.durable, o)
		}
		f.n.pending = nil
	}
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.gen != f.fs.gen {
		return 0, errCrashed
	}
	return int64(len(f.n.data)), nil
}

func (f *memFile) Close() error { return nil }

// crashPlan says where a run crashes: first before mutating call first, then
// (after each restart) again with probability 1/2 somewhere in the next span
// calls.
type crashPlan struct {
	first, span int
	rng         *rand.Rand
}

func (p crashPlan) next(fs *crashFS) int {
	if p.rng.IntN(2) == 0 {
		return -1
	}
	return fs.ops + p.rng.IntN(p.span+1)
}

func (p crashPlan) String() string { return fmt.Sprintf("first crash before write %d", p.first) }
