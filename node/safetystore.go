package node

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"

	"github.com/diembft/diembft/protocol/safety"
)

// safetyStore keeps the safety data in a file of two fixed-size slots that
// are written alternately, each with a sequence number and a checksum. A
// write is one pwrite into the older slot followed by fdatasync: the file's
// size never changes, so no metadata or directory sync is needed, and a crash
// in the middle of a write leaves the other slot intact. This halves the
// syncs of the usual write-temp-rename-fsync-dir pattern, and the sync sits
// on the path of every vote.
type safetyStore struct {
	f     file
	seq   uint64
	path  string
	syncs syncStat // fdatasyncs of save
}

const (
	slotSize   = 64 << 10 // a state holds at most two QCs; 64 KiB fits n in the hundreds
	slotHeader = 16       // seq u64, length u32, crc32 u32
)

// ErrSafetyCorrupt means neither slot of the safety file holds a valid state.
var ErrSafetyCorrupt = errors.New("safety data corrupt")

func openSafetyStore(home string) (*safetyStore, safety.State, error) {
	return openSafetyStoreFS(osFS{}, home)
}

func openSafetyStoreFS(fsys fileSystem, home string) (*safetyStore, safety.State, error) {
	path := filepath.Join(home, "safety.dat")
	var st safety.State
	f, _, err := fsys.OpenFile(path, 0o600)
	if err != nil {
		return nil, st, fmt.Errorf("safety data: %w", err)
	}
	s := &safetyStore{f: f, path: path}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, st, fmt.Errorf("safety data: %w", err)
	}
	if size == 0 {
		// New file: size it once and make the size and the directory entry durable.
		if err := f.Truncate(2 * slotSize); err != nil {
			f.Close()
			return nil, st, fmt.Errorf("safety data: %w", err)
		}
		if err := f.Sync(); err == nil {
			err = fsys.SyncDir(home)
		}
		if err != nil {
			f.Close()
			return nil, st, fmt.Errorf("safety data: %w", err)
		}
		return s, st, nil
	}
	var best []byte
	for slot := 0; slot < 2; slot++ {
		seq, data, ok := s.readSlot(slot)
		if ok && (best == nil || seq > s.seq) {
			s.seq, best = seq, data
		}
	}
	if best == nil {
		// Saves go to slot 1 (seq 1), then slot 0 (seq 2), and so on. With
		// slot 0 never written, at most the first save was under way, and as
		// slot 1 does not check out it was torn by a crash before its sync
		// returned: nothing it guarded was sent, so the state is the zero
		// state (also when the file was only sized). A torn slot 1 is
		// overwritten by the next save, which has seq 1 again.
		if size == 2*slotSize && slotUnwritten(s, 0) {
			return s, st, nil
		}
		f.Close()
		return nil, st, fmt.Errorf("%s: %w", path, ErrSafetyCorrupt)
	}
	if err := json.Unmarshal(best, &st); err != nil {
		f.Close()
		return nil, st, fmt.Errorf("%s: %w: %v", path, ErrSafetyCorrupt, err)
	}
	return s, st, nil
}

// slotUnwritten reports whether the header of slot is all zero.
func slotUnwritten(s *safetyStore, slot int) bool {
	hdr := make([]byte, slotHeader)
	if _, err := s.f.ReadAt(hdr, int64(slot*slotSize)); err != nil {
		return false
	}
	for _, b := range hdr {
		if b != 0 {
			return false
		}
	}
	return true
}

func (s *safetyStore) readSlot(slot int) (uint64, []byte, bool) {
	buf := make([]byte, slotSize)
	if _, err := s.f.ReadAt(buf, int64(slot*slotSize)); err != nil {
		return 0, nil, false
	}
	seq := binary.BigEndian.Uint64(buf[0:8])
	n := binary.BigEndian.Uint32(buf[8:12])
	sum := binary.BigEndian.Uint32(buf[12:16])
	if seq == 0 || int(n) > slotSize-slotHeader {
		return 0, nil, false
	}
	data := buf[slotHeader : slotHeader+int(n)]
	if crc32.ChecksumIEEE(append(binary.BigEndian.AppendUint64(nil, seq), data...)) != sum {
		return 0, nil, false
	}
	return seq, data, true
}

// save writes st durably; it returns only after fdatasync.
func (s *safetyStore) save(st safety.State) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if len(data) > slotSize-slotHeader {
		return fmt.Errorf("safety state of %d bytes exceeds the %d-byte slot", len(data), slotSize-slotHeader)
	}
	seq := s.seq + 1
	buf := make([]byte, slotHeader, slotHeader+len(data))
	binary.BigEndian.PutUint64(buf[0:8], seq)
	binary.BigEndian.PutUint32(buf[8:12], uint32(len(data)))
	binary.BigEndian.PutUint32(buf[12:16], crc32.ChecksumIEEE(append(binary.BigEndian.AppendUint64(nil, seq), data...)))
	buf = append(buf, data...)
	if _, err := s.f.WriteAt(buf, int64(seq%2)*slotSize); err != nil {
		return err
	}
	if err := s.syncs.sync(s.f.Sync); err != nil { // fdatasync
		return err
	}
	s.seq = seq
	return nil
}

func (s *safetyStore) close() error { return s.f.Close() }
