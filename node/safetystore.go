package node

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"slices"

	"github.com/diembft/diembft/protocol/safety"
	"github.com/diembft/diembft/protocol/types"
)

// safetyStore keeps the safety data in a file of two fixed-size slots that
// are written alternately, each with a sequence number and a checksum. A
// write is one pwrite into the older slot followed by fdatasync: the slots
// never change size, so no directory sync is needed, and a crash in the
// middle of a write leaves the other slot intact. This halves the syncs of
// the usual write-temp-rename-fsync-dir pattern, and the sync sits on the
// path of every vote.
//
// The same file holds the vote log, after the slots: each block this
// replica votes for is appended there before the vote and made durable by
// the same fdatasync as the state (core.PersistSafety's Block). A certified
// block is then on the disk of each of its voters, so a power loss of the
// whole committee cannot lose the block behind anybody's lock: the block
// store syncs its head only with its commits, and without the log such a
// power loss could leave no disk with the certified block of the highest
// lock, below which the safety rules refuse to time out. Aptos' consensus
// DB stores blocks before voting for the same reason.
//
// The log takes turns between two areas. Records are appended to one; when
// they pass logSwitchAt beyond the generation's start, the next record
// starts a new generation at the start of the other area, which first gets
// again the blocks still needed: those above the round of the block store's
// synced chain (keepAbove). The area left keeps its records until the next
// switch overwrites it, so a crash during a switch loses nothing, and a
// restart reads both areas. An area is a hole until first written: on a
// new home the appends also allocate the file's blocks, which the fdatasync
// then commits too.
//
// Why keepAbove suffices: a block at or below the synced chain's tip round
// either is on this replica's durable chain or can never be needed (any
// certified block above a committed one extends it, and the highest lock
// any quorum holds is at least the committed tip's round).
type safetyStore struct {
	f     file
	seq   uint64
	path  string
	syncs syncStat // fdatasyncs of save

	// keepAbove is the round of the block store's synced chain tip: the
	// blocks the log need not carry to a new generation (nil: all).
	keepAbove func() types.Round
	// logged are the blocks read back from the log at open.
	logged []*types.Block
	area   int   // area being written; -1: none since open
	off    int64 // write offset in it
	// genStart is the size of the generation's first write (its carried
	// blocks and the block that started it).
	genStart int64
	logSeq   uint64        // sequence number of the last record written or read
	kept     []loggedBlock // records of the generation being written
	// next is the area of the first generation after open (readLog).
	next int
	// logShowsSave: a generation of the log holds more records than the
	// save that started it wrote, so a later save of that process began,
	// and the first had returned from its fdatasync (readLog).
	logShowsSave bool
	// logSwitchAt and logArea are the area switch threshold and an area's
	// size (openSafetyLog).
	logSwitchAt, logArea int64
	warnedTC             bool // save dropped a HighTC too large for the slot
}

type loggedBlock struct {
	id    types.Hash
	round types.Round
	data  []byte // CBOR, as in the block store
}

const (
	slotSize   = 64 << 10 // a state holds at most two QCs; 64 KiB fits n in the hundreds
	slotHeader = 16       // seq u64, length u32, crc32 u32; also a log record's header
	logBase    = 2 * slotSize
	// A generation grows to about 4 MiB before the log switches areas: a
	// few thousand votes of small blocks, a few hundred of large ones. An
	// area is 64 MiB (written as far as it is used; the rest is a hole) so
	// that a new generation holds the blocks still needed even when the
	// committer lags by dozens of blocks of the 4 MiB message limit.
	defaultLogSwitchAt = 4 << 20
	defaultLogArea     = 64 << 20
)

// ErrSafetyCorrupt means neither slot of the safety file holds a valid state.
var ErrSafetyCorrupt = errors.New("safety data corrupt")

func openSafetyStore(home string) (*safetyStore, safety.State, error) {
	return openSafetyStoreFS(osFS{}, home)
}

func openSafetyStoreFS(fsys fileSystem, home string) (*safetyStore, safety.State, error) {
	return openSafetyLog(fsys, home, defaultLogSwitchAt, defaultLogArea)
}

// openSafetyLog opens the safety file with the vote log's switch threshold
// and area size (tests make them small).
func openSafetyLog(fsys fileSystem, home string, switchAt, area int64) (*safetyStore, safety.State, error) {
	path := filepath.Join(home, "safety.dat")
	var st safety.State
	f, _, err := fsys.OpenFile(path, 0o600)
	if err != nil {
		return nil, st, fmt.Errorf("safety data: %w", err)
	}
	s := &safetyStore{f: f, path: path, area: -1, logSwitchAt: switchAt, logArea: area}
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
	s.readLog()
	var best []byte
	for slot := 0; slot < 2; slot++ {
		seq, data, ok := s.readFrame(int64(slot*slotSize), slotSize)
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
		// overwritten by the next save, which has seq 1 again. Unless the
		// vote log shows a save that completed: then a slot held its state
		// durably, and both failing (slot 0 read back as zeros) is damage;
		// taking the zero state could vote twice in a round.
		if size >= 2*slotSize && slotUnwritten(s, 0) && !s.logShowsSave {
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

// readLog reads the vote log's records from both areas into logged and
// kept (each block once), so the first generation written after the
// restart carries them on, and chooses the area it goes to. A generation
// starts at its area's start with a header frame giving its record count;
// its records follow with consecutive sequence numbers. The first frame
// that is torn, unwritten, or of an older generation ends an area. A frame
// whose checksum holds but that does not decode ends it too (logged: the
// file was damaged or written by something else); the state slots do not
// depend on the log.
//
// The first generation after the restart overwrites an area whose
// generation is incomplete (a crash came during the save that started it:
// the other area's generation, complete, has all it was carrying), else the
// older one.
func (s *safetyStore) readLog() {
	seen := map[types.Hash]bool{}
	var start [2]uint64 // header sequence numbers
	var complete [2]bool
	for area := 0; area < 2; area++ {
		base := logBase + int64(area)*s.logArea
		seq, data, ok := s.readFrame(base, s.logArea)
		count, isHeader := parseGenHeader(data)
		if !ok || !isHeader {
			continue
		}
		start[area] = seq
		s.logSeq = max(s.logSeq, seq)
		off, prev, read := slotHeader+int64(len(data)), seq, uint32(0)
		for off+slotHeader <= s.logArea {
			seq, data, ok := s.readFrame(base+off, s.logArea-off)
			if !ok || seq != prev+1 {
				break
			}
			b, err := decodeBlock(data)
			if err != nil {
				log.Errorw("vote log: a record that checks out does not hold a block; the rest of its area is ignored", "path", s.path, "area", area, "offset", off, "err", err)
				break
			}
			if !seen[b.ID] {
				seen[b.ID] = true
				s.logged = append(s.logged, b)
				s.kept = append(s.kept, loggedBlock{b.ID, b.Round, data})
			}
			s.logSeq = max(s.logSeq, seq)
			prev, read = seq, read+1
			off += slotHeader + int64(len(data))
		}
		complete[area] = read >= count
		// Records past the first save's: a save after it appended them,
		// which a process starts only once the one before has synced.
		s.logShowsSave = s.logShowsSave || read > count
	}
	// Sequence numbers go on far above the highest read: a power loss can
	// leave valid records behind a torn one (the disk persists pages in any
	// order), and numbers written again could let such a record continue a
	// later generation.
	if s.logSeq > 0 {
		s.logSeq += 1 << 32
	}
	// The area to overwrite: incomplete before complete, then older first.
	s.next = 0
	if complete[0] != complete[1] {
		if complete[0] {
			s.next = 1
		}
	} else if start[1] < start[0] {
		s.next = 1
	}
}

// genMagic starts a generation header's data, followed by the number of
// records of the generation's first save (big-endian uint32). A block's
// CBOR starts with an array byte, never with it.
const genMagic = "votegen1"

// genHeader is the data of a generation header frame.
func genHeader(count uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte(genMagic), count)
}

func parseGenHeader(data []byte) (uint32, bool) {
	if len(data) != len(genMagic)+4 || string(data[:len(genMagic)]) != genMagic {
		return 0, false
	}
	return binary.BigEndian.Uint32(data[len(genMagic):]), true
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

// readFrame reads the frame (a slot or a log record: seq, length, checksum,
// data) at off, of at most max bytes in all.
func (s *safetyStore) readFrame(off, max int64) (uint64, []byte, bool) {
	hdr := make([]byte, slotHeader)
	if _, err := s.f.ReadAt(hdr, off); err != nil {
		return 0, nil, false
	}
	seq := binary.BigEndian.Uint64(hdr[0:8])
	n := int64(binary.BigEndian.Uint32(hdr[8:12]))
	sum := binary.BigEndian.Uint32(hdr[12:16])
	if seq == 0 || n > max-slotHeader {
		return 0, nil, false
	}
	data := make([]byte, n)
	if _, err := s.f.ReadAt(data, off+slotHeader); err != nil {
		return 0, nil, false
	}
	if frameSum(seq, data) != sum {
		return 0, nil, false
	}
	return seq, data, true
}

func frameSum(seq uint64, data []byte) uint32 {
	return crc32.Update(crc32.ChecksumIEEE(binary.BigEndian.AppendUint64(nil, seq)), crc32.IEEETable, data)
}

// appendFrame appends the frame of seq and data to buf.
func appendFrame(buf []byte, seq uint64, data []byte) []byte {
	buf = binary.BigEndian.AppendUint64(buf, seq)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(data)))
	buf = binary.BigEndian.AppendUint32(buf, frameSum(seq, data))
	return append(buf, data...)
}

// save writes st durably, and b (the block about to be voted for, if any)
// to the vote log; it returns only after fdatasync, one for both.
func (s *safetyStore) save(st safety.State, b *types.Block) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if len(data) > slotSize-slotHeader && st.HighTC != nil {
		// The TC is liveness data (safety.State.HighTC): in a committee
		// of some 400 replicas or more it no longer fits beside the
		// timeout's QC, and the state is saved without it rather than not
		// at all (a restart after TC rounds then relies on the QC alone).
		if !s.warnedTC {
			s.warnedTC = true
			log.Warnw("safety state: the highest TC does not fit the slot and is not saved", "bytes", len(data), "slot", slotSize-slotHeader)
		}
		st.HighTC = nil
		if data, err = json.Marshal(st); err != nil {
			return err
		}
	}
	if len(data) > slotSize-slotHeader {
		return fmt.Errorf("safety state of %d bytes exceeds the %d-byte slot", len(data), slotSize-slotHeader)
	}
	if b != nil {
		if err := s.logBlock(b); err != nil {
			return err
		}
	}
	seq := s.seq + 1
	if _, err := s.f.WriteAt(appendFrame(nil, seq, data), int64(seq%2)*slotSize); err != nil {
		return err
	}
	if err := s.syncs.sync(s.f.Sync); err != nil { // fdatasync
		return err
	}
	s.seq = seq
	return nil
}

// logBlock writes b's record to the vote log (unsynced: save syncs it with
// the state), starting a new generation in the other area when this one has
// grown by logSwitchAt past what its start carried (so a long carried set
// is rewritten once per logSwitchAt of new records, not at every vote), or
// is full, or none was written since the store opened.
func (s *safetyStore) logBlock(b *types.Block) error {
	if n := len(s.kept); n > 0 && s.kept[n-1].id == b.ID {
		return nil // asked to vote again for the block just logged
	}
	data, err := enc.Marshal(b)
	if err != nil {
		return err
	}
	rec := loggedBlock{b.ID, b.Round, data}
	end := s.off + slotHeader + int64(len(data))
	if s.area >= 0 && end <= s.genStart+s.logSwitchAt && end <= s.logArea {
		s.logSeq++
		if _, err := s.f.WriteAt(appendFrame(nil, s.logSeq, data), logBase+int64(s.area)*s.logArea+s.off); err != nil {
			return err
		}
		s.off = end
		s.kept = append(s.kept, rec)
		return nil
	}
	// A new generation: the blocks still needed, then b.
	var keepAbove types.Round
	if s.keepAbove != nil {
		keepAbove = s.keepAbove()
	}
	var keep []loggedBlock
	for _, k := range s.kept {
		if k.round > keepAbove && k.id != b.ID {
			keep = append(keep, k)
		}
	}
	keep = append(keep, rec)
	slices.SortStableFunc(keep, func(x, y loggedBlock) int { return cmp.Compare(x.round, y.round) })
	size := int64(slotHeader + len(genMagic) + 4)
	for _, k := range keep {
		size += slotHeader + int64(len(k.data))
	}
	dropped := 0
	for size > s.logArea && len(keep) > 1 {
		size -= slotHeader + int64(len(keep[0].data))
		keep = keep[1:]
		dropped++
	}
	if dropped > 0 {
		// Only if the committer lags by more than an area of blocks: the
		// oldest go (committed or abandoned, but not in the synced chain
		// yet), and a committee-wide power loss now could stall.
		log.Errorw("vote log: the blocks above the synced chain exceed an area; the oldest are not kept", "dropped", dropped, "keep_above", keepAbove, "area_bytes", s.logArea)
	}
	if size > s.logArea {
		return fmt.Errorf("vote log: a block of %d bytes exceeds the %d-byte area", len(data), s.logArea)
	}
	if s.area < 0 {
		s.area = s.next
	} else {
		s.area = 1 - s.area
	}
	buf := make([]byte, 0, size)
	s.logSeq++
	buf = appendFrame(buf, s.logSeq, genHeader(uint32(len(keep))))
	for _, k := range keep {
		s.logSeq++
		buf = appendFrame(buf, s.logSeq, k.data)
	}
	if _, err := s.f.WriteAt(buf, logBase+int64(s.area)*s.logArea); err != nil {
		return err
	}
	s.off, s.genStart, s.kept = size, size, keep
	return nil
}

func (s *safetyStore) close() error { return s.f.Close() }
