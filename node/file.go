package node

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// file is what the safety store and the ledger need of a file. It exists so
// that tests can put a double in its place that models the page cache and
// loses whatever was not synced when it "crashes"; production uses osFile.
type file interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	// Sync returns once everything written is durable, the file's size included.
	Sync() error
	Truncate(size int64) error
	Size() (int64, error)
	Close() error
}

// fileSystem opens files and makes directory entries durable.
type fileSystem interface {
	// OpenFile opens path for reading and writing, creating it with perm if
	// needed; created reports that it did not exist (its directory entry is
	// durable only after SyncDir).
	OpenFile(path string, perm os.FileMode) (f file, created bool, err error)
	SyncDir(dir string) error
}

// osFS is the real file system.
type osFS struct{}

func (osFS) OpenFile(path string, perm os.FileMode) (file, bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if os.IsNotExist(err) {
		f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, perm)
		if err != nil {
			return nil, false, err
		}
		return osFile{f}, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	return osFile{f}, false, nil
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type osFile struct{ *os.File }

// Sync is fdatasync: it writes the data and the metadata needed to read it
// back (the size), and skips the timestamps fsync would also write.
func (f osFile) Sync() error { return unix.Fdatasync(int(f.Fd())) }

func (f osFile) Size() (int64, error) {
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return info.Size(), nil
}

// moveAside renames a damaged file of a replica's home to
// <path>.damaged-<unix time>, kept for the operator, and returns that name.
func moveAside(path string) (string, error) {
	aside := fmt.Sprintf("%s.damaged-%d", path, time.Now().Unix())
	return aside, os.Rename(path, aside)
}

// syncStat counts a file's syncs on the consensus and commit paths and the
// time they took (diembft_fsyncs_total, diembft_fsync_seconds_total, and
// stats.json for bench): on a machine whose replicas share one disk the
// mean sync time, against the idle fdatasync, shows how much of a round
// waits for the disk.
type syncStat struct {
	n     atomic.Uint64
	nanos atomic.Int64
}

// sync runs f, a sync, and counts it if it succeeded.
func (s *syncStat) sync(f func() error) error { return s.syncN(1, f) }

// syncN runs f, which makes n syncs, and counts them if it succeeded.
func (s *syncStat) syncN(n uint64, f func() error) error {
	start := time.Now()
	if err := f(); err != nil {
		return err
	}
	s.nanos.Add(int64(time.Since(start)))
	s.n.Add(n)
	return nil
}

func (s *syncStat) count() uint64    { return s.n.Load() }
func (s *syncStat) seconds() float64 { return time.Duration(s.nanos.Load()).Seconds() }
