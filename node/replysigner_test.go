package node

import (
	"crypto/ed25519"
	"testing"

	"github.com/diembft/diembft/protocol/types"
)

// TestReplySignerSigns: every reply of a batch, small or split over two
// goroutines, comes out signed by the replica's key; a signed one is kept.
func TestReplySignerSigns(t *testing.T) {
	key := key("replica", 0)
	s := newReplySigner(key, "chain")
	for _, n := range []int{1, parallelSignMin - 1, parallelSignMin, 3*parallelSignMin + 1} {
		batch := make([]outgoingReply, n)
		for i := range batch {
			batch[i].reply = types.ClientReply{Client: []byte("c"), Seq: uint64(i + 1), Results: []string{"OK"}, Heights: []uint64{uint64(i + 1)}}
		}
		pre := []byte("already signed")
		batch[0].reply.Sig = pre
		s.sign(batch)
		if string(batch[0].reply.Sig) != string(pre) {
			t.Errorf("n=%d: a signed reply was signed again", n)
		}
		for i := 1; i < n; i++ {
			rp := &batch[i].reply
			if !ed25519.Verify(key.Public().(ed25519.PublicKey), rp.SignBytes("chain"), rp.Sig) {
				t.Fatalf("n=%d: reply %d not signed correctly", n, i)
			}
		}
	}
}
