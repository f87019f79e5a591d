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
		if err := s.save(st); err != nil {
			b.Fatal(err)
		}
	}
}
