package fault

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"github.com/diembft/diembft/node/kv"
	"github.com/diembft/diembft/protocol/types"
)

func testKey(i int) ed25519.PrivateKey {
	s := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("fault-test"), uint64(i)))
	return ed25519.NewKeyFromSeed(s[:])
}

func TestConflictingProposalIsValidAndDifferent(t *testing.T) {
	const chain = "eqv"
	com := &types.Committee{ChainID: chain, F: 1}
	for i := range 4 {
		com.Keys = append(com.Keys, testKey(i).Public().(ed25519.PublicKey))
	}
	_, gqc := types.Genesis()
	client := testKey(100)
	for _, payload := range []int{0, 1, 4} {
		t.Run(fmt.Sprintf("payload %d", payload), func(t *testing.T) {
			b := types.Block{Author: 1, Round: 1, QC: gqc}
			for s := range payload {
				r := types.Request{Client: client.Public().(ed25519.PublicKey), Seq: uint64(s + 1), Ops: []string{"put('abcd','x')"}}
				r.Sig = ed25519.Sign(client, r.SignBytes(chain))
				b.Payload = append(b.Payload, r)
			}
			b.ID = b.ComputeID()
			signer := types.Ed25519Signer{Key: testKey(1)}
			p := &types.Proposal{Block: b, Signature: signer.Sign(types.ProposalSignBytes(chain, b.ID, b.Round))}
			const maxRequests = 4
			q := Conflicting(p, chain, signer, 5, maxRequests)
			for _, x := range []*types.Proposal{p, q} {
				if err := com.VerifyProposal(x, maxRequests); err != nil {
					t.Fatalf("proposal %s invalid: %v", x.Block.ID, err)
				}
			}
			if q.Block.ID == p.Block.ID || q.Block.Round != p.Block.Round || q.Block.Author != p.Block.Author || q.Block.ParentID() != p.Block.ParentID() {
				t.Fatalf("conflicting proposal %+v does not conflict with %+v", q.Block, p.Block)
			}
			last := q.Block.Payload[len(q.Block.Payload)-1]
			if _, err := kv.ParseOp(last.Ops[0]); len(last.Ops) != 1 || err != nil {
				t.Fatalf("invented request %q does not parse: %v", last.Ops, err)
			}
			if again := Conflicting(p, chain, signer, 5, maxRequests); again.Block.ID != q.Block.ID {
				t.Fatal("Conflicting is not deterministic")
			}
		})
	}
}

func TestHalves(t *testing.T) {
	for _, tc := range []struct {
		self, n int
		a, b    []int
	}{
		{1, 4, []int{0, 2}, []int{3}},
		{0, 4, []int{1, 2}, []int{3}},
		{3, 7, []int{0, 1, 2}, []int{4, 5, 6}},
	} {
		a, b := Halves(tc.self, tc.n)
		if !slices.Equal(a, tc.a) || !slices.Equal(b, tc.b) {
			t.Fatalf("Halves(%d, %d) = %v, %v; want %v, %v", tc.self, tc.n, a, b, tc.a, tc.b)
		}
	}
}
