package node

import (
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/diembft/diembft/protocol/safety"
	"github.com/diembft/diembft/protocol/types"
)

// BenchmarkSafetyStoreSave is the cost of persisting the safety data before
// a vote: a JSON encoding, one pwrite of the slot and its fdatasync. The
// state holds a vote and a timeout with a QC of three ed25519 signatures,
// as in a committee of four.
func BenchmarkSafetyStoreSave(b *testing.B) {
	s, _, err := openSafetyStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	rng := rand.New(rand.NewPCG(1, 1))
	qc := fakeQC(rng, 9)
	for i := range 3 {
		qc.Signatures = append(qc.Signatures, types.PartialSig{Signer: types.ReplicaID(i), Sig: make([]byte, ed25519.SignatureSize)})
	}
	rules := safety.New(1, "bench", types.Ed25519Signer{Key: key("replica", 1)}, safety.State{})
	blk := &types.Block{Round: 10, QC: qc}
	blk.ID = blk.ComputeID()
	rules.MakeVote(blk, nil, types.Hash{1}, pendingStateOf)
	rules.MakeTimeout(10, qc, nil)
	st := rules.State()
	for b.Loop() {
		st.HighestVoteRound++
		if err := s.save(st, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVoteLogOnDisk: blocks saved with the state come back from a real file
// after a restart, across a switch of areas, and a new generation carries
// only the blocks above the synced chain.
func TestVoteLogOnDisk(t *testing.T) {
	home := t.TempDir()
	s, _, err := openSafetyLog(osFS{}, home, 1<<10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var synced types.Round
	s.keepAbove = func() types.Round { return synced }
	rng := rand.New(rand.NewPCG(7, 0))
	var blocks []*types.Block
	for r := types.Round(1); r <= 30; r++ {
		b := &types.Block{Round: r, QC: fakeQC(rng, r-1), Payload: []types.Request{{Seq: uint64(r)}}}
		b.ID = b.ComputeID()
		blocks = append(blocks, b)
		if err := s.save(safety.State{HighestVoteRound: r}, b); err != nil {
			t.Fatal(err)
		}
		synced = max(r, 5) - 5
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s, st, err := openSafetyLog(osFS{}, home, 1<<10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if st.HighestVoteRound != 30 {
		t.Fatalf("state: highest vote round %d, want 30", st.HighestVoteRound)
	}
	back := map[types.Hash]bool{}
	for _, b := range s.logged {
		back[b.ID] = true
	}
	for _, b := range blocks {
		if b.Round > synced && !back[b.ID] {
			t.Errorf("block of round %d (above the synced chain at %d) not read back", b.Round, synced)
		}
	}
	// The two areas hold about two generations of ~1 KiB: far fewer than
	// the 30 blocks, so the switches dropped what the chain holds.
	if len(s.logged) >= len(blocks) {
		t.Errorf("read back %d blocks of %d: the log never dropped any", len(s.logged), len(blocks))
	}
}

// TestVoteLogTornSwitchOverStaleRecords: a generation switch torn right
// after its first record, in an area whose older generation had records of
// the same sizes at the same offsets. The stale records that follow must
// not count towards the torn generation (their sequence numbers do not
// follow on), so the area is taken as incomplete and is the one the next
// generation overwrites, not the other area, whose generation is the only
// complete copy.
func TestVoteLogTornSwitchOverStaleRecords(t *testing.T) {
	const area = 4096
	rng := rand.New(rand.NewPCG(3, 0))
	block := func(r types.Round) []byte {
		b := &types.Block{Round: r, QC: fakeQC(rng, r-1), Payload: []types.Request{{Seq: uint64(r)}}}
		b.ID = b.ComputeID()
		data, err := enc.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	a, b, c := block(5), block(6), block(7)
	gen := func(seq uint64, count uint32, recs ...[]byte) []byte {
		buf := appendFrame(nil, seq, genHeader(count))
		for _, r := range recs {
			seq++
			buf = appendFrame(buf, seq, r)
		}
		return buf
	}
	file := make([]byte, logBase+2*area)
	copy(file[logBase:], gen(20, 2, a, b))                   // area 0: complete, carries a and b
	copy(file[logBase+area:], gen(10, 3, a, b, c))           // area 1: an older generation...
	copy(file[logBase+area:], gen(30, 3, a))                 // ...overwritten by a switch torn after a
	copy(file[slotSize:], appendFrame(nil, 1, []byte("{}"))) // one saved state (slot 1)
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, "safety.dat"), file, 0o600); err != nil {
		t.Fatal(err)
	}
	s, _, err := openSafetyLog(osFS{}, home, 1024, area)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if s.next != 1 {
		t.Fatalf("the next generation goes to area %d, whose generation is the only complete one; want area 1 (torn)", s.next)
	}
	if len(s.logged) != 2 {
		t.Errorf("read back %d blocks, want 2 (a and b; c is stale)", len(s.logged))
	}
}

// TestSafetySlotsLostAfterASave: both slots fail to check out and slot 0
// reads back as zeros. With only the first save's records in the vote log
// that is the first save torn by a crash (nothing it guarded was sent) and
// the state is the zero state; with records of a later save, the first one
// completed and a slot held it durably, so this is damage, and starting
// from the zero state could vote twice in a round.
func TestSafetySlotsLostAfterASave(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 0))
	for _, saves := range []int{1, 2} {
		home := t.TempDir()
		s, _, err := openSafetyStore(home)
		if err != nil {
			t.Fatal(err)
		}
		for r := types.Round(1); r <= types.Round(saves); r++ {
			b := &types.Block{Round: r, QC: fakeQC(rng, r-1)}
			b.ID = b.ComputeID()
			if err := s.save(safety.State{HighestVoteRound: r}, b); err != nil {
				t.Fatal(err)
			}
		}
		s.close()
		f, err := os.OpenFile(filepath.Join(home, "safety.dat"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		zeros := make([]byte, slotSize)
		_, err0 := f.WriteAt(zeros, 0)                          // slot 0: never written, or zeroed
		_, err1 := f.WriteAt([]byte{0xff}, slotSize+slotHeader) // slot 1: torn
		if err := errors.Join(err0, err1, f.Close()); err != nil {
			t.Fatal(err)
		}
		s, st, err := openSafetyStore(home)
		switch {
		case saves == 1 && (err != nil || st.HighestVoteRound != 0):
			t.Errorf("first save torn: got state %+v, err %v; want the zero state", st, err)
		case saves == 2 && !errors.Is(err, ErrSafetyCorrupt):
			t.Errorf("both slots lost after a completed save: got state %+v, err %v; want ErrSafetyCorrupt", st, err)
		}
		if s != nil {
			s.close()
		}
	}
}

// TestSafetyStateKeepsHighTC: the highest TC saved with the safety state
// comes back after a reopen (a restarted replica resumes in the round after
// it: sim.TestWholeCommitteeRestartAfterTimeouts), and a committee of 100
// still fits a slot with a timeout's QC and the TC.
func TestSafetyStateKeepsHighTC(t *testing.T) {
	home := t.TempDir()
	s, _, err := openSafetyStore(home)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	const quorum = 67 // n = 100
	qc := fakeQC(rng, 40)
	qc.Signatures = randomSigs(rng, quorum)
	tc := &types.TC{Round: 44, Signatures: randomSigs(rng, quorum)}
	for range quorum {
		tc.TmoHighQCRounds = append(tc.TmoHighQCRounds, 40)
	}
	st := safety.State{HighestVoteRound: 45, HighestQCRound: 40, LastTimeout: &types.TimeoutInfo{Round: 45, HighQC: qc, Sender: 1}, HighTC: tc}
	if err := s.save(st, nil); err != nil {
		t.Fatal(err)
	}
	s.close()
	s, got, err := openSafetyStore(home)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("reopened state %+v, want %+v", got, st)
	}
}

// TestSafetyStateWithoutTheTCWhenItDoesNotFit (found by review): in a
// committee of 500 the state with a timeout's QC and the highest TC no
// longer fits a 64 KiB slot; it is saved without the TC (liveness data)
// instead of failing the save, which stops the replica.
func TestSafetyStateWithoutTheTCWhenItDoesNotFit(t *testing.T) {
	home := t.TempDir()
	s, _, err := openSafetyStore(home)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	const quorum = 334 // n = 500
	qc := fakeQC(rng, 1_000_000)
	qc.Signatures = randomSigs(rng, quorum)
	tc := &types.TC{Round: 1_000_004, Signatures: randomSigs(rng, quorum)}
	for range quorum {
		tc.TmoHighQCRounds = append(tc.TmoHighQCRounds, 1_000_000)
	}
	st := safety.State{HighestVoteRound: 1_000_005, HighestQCRound: 1_000_000,
		LastTimeout: &types.TimeoutInfo{Round: 1_000_005, HighQC: qc, Sender: 1, Signature: make([]byte, 64)}, HighTC: tc}
	if err := s.save(st, nil); err != nil {
		t.Fatalf("save: %v", err)
	}
	s.close()
	s, got, err := openSafetyStore(home)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	want := st
	want.HighTC = nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("reopened %+v, want the state without its TC", got)
	}
}

// randomSigs returns n partial signatures of replicas 0..n-1 with random
// bytes (the store does not verify them; random, so that JSON cannot
// shrink them).
func randomSigs(rng *rand.Rand, n int) []types.PartialSig {
	out := make([]types.PartialSig, n)
	for i := range out {
		out[i] = types.PartialSig{Signer: types.ReplicaID(i), Sig: make([]byte, ed25519.SignatureSize)}
		for j := range out[i].Sig {
			out[i].Sig[j] = byte(rng.Uint32())
		}
	}
	return out
}
