package node

import (
	"crypto/ed25519"
	"math/rand/v2"
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
