package wire

import (
	"crypto/ed25519"
	"math"
	"strings"
	"testing"

	"github.com/diembft/diembft/protocol/types"
)

// TestRequestEncodedSize checks types.Request.EncodedSize, which replicas
// and clients use to bound requests without encoding them, against the
// encoder, across every CBOR head size of every field.
func TestRequestEncodedSize(t *testing.T) {
	f := newFixture()
	key := f.clients[0]
	for _, seq := range []uint64{1, 23, 24, 255, 256, 65535, 65536, 1 << 32, math.MaxUint64 - 2000} {
		for _, lens := range [][]int{{0}, {23}, {24}, {255}, {256}, {65535}, {65536}, {1, 2, 3}, make([]int, 23), make([]int, 24), make([]int, 256)} {
			r := types.Request{Client: key.Public().(ed25519.PublicKey), Seq: seq}
			for _, n := range lens {
				r.Ops = append(r.Ops, strings.Repeat("y", n))
			}
			r.Sig = ed25519.Sign(key, r.SignBytes(chainID))
			data, err := Encode(&r)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.EncodedSize(); got != len(data)-1 {
				t.Errorf("seq %d, op lengths %v: EncodedSize %d, encoding %d bytes", seq, lens[:min(len(lens), 3)], got, len(data)-1)
			}
			if fixed := r.EncodedSize() - opsSize(r.Ops); fixed > types.MaxRequestFrameBytes {
				t.Errorf("seq %d: %d bytes besides the operations, above MaxRequestFrameBytes", seq, fixed)
			}
		}
	}
}

func opsSize(ops []string) int {
	n := 0
	for _, op := range ops {
		n += types.OpEncodedSize(op)
	}
	return n
}

// maxProposal is the largest proposal of a committee of n around payload:
// every certificate with n signatures and every round and id at its
// largest encoding, as PayloadBudget assumes.
func maxProposal(n int, payload []types.Request) *types.Proposal {
	sig := make([]byte, SignatureSize)
	var h types.Hash
	for i := range h {
		h[i] = 0xee
	}
	sigs := make([]types.PartialSig, n)
	rounds := make([]types.Round, n)
	for i := range sigs {
		sigs[i] = types.PartialSig{Signer: types.ReplicaID(math.MaxUint32 - i), Sig: sig}
		rounds[i] = math.MaxUint64 - types.Round(i)
	}
	qc := &types.QC{
		VoteInfo:         types.VoteInfo{ID: h, Round: math.MaxUint64, ParentID: h, ParentRound: math.MaxUint64, ExecStateID: h},
		LedgerCommitInfo: types.LedgerCommitInfo{CommitStateID: h, VoteInfoHash: h},
		Signatures:       sigs,
	}
	tc := &types.TC{Round: math.MaxUint64, TmoHighQCRounds: rounds, Signatures: sigs}
	return &types.Proposal{
		Block:     types.Block{Author: math.MaxUint32, Round: math.MaxUint64, Payload: payload, QC: qc, ID: h},
		LastTC:    tc,
		Sync:      types.SyncInfo{HighQC: qc, HighCommitQC: qc, HighTC: tc},
		Signature: sig,
	}
}

// fill returns copies of r until their RequestCost reaches budget.
func fill(r types.Request, budget int) []types.Request {
	var out []types.Request
	for cost := RequestCost(&r); cost <= budget; cost += RequestCost(&r) {
		out = append(out, r)
	}
	return out
}

// TestPayloadBudgetKeepsProposalsSendable: a proposal whose payload costs up
// to PayloadBudget encodes within MaxMessageSize and decodes within the
// element budget, for small and for the largest committees, with payloads
// of the largest requests a replica accepts, of large operations, and of
// many tiny operations (the most elements per byte); and the largest request
// a replica accepts fits alone.
func TestPayloadBudgetKeepsProposalsSendable(t *testing.T) {
	f := newFixture()
	key := f.clients[1]
	signed := func(ops ...string) types.Request {
		r := types.Request{Client: key.Public().(ed25519.PublicKey), Seq: math.MaxUint64 - 5000, Ops: ops}
		r.Sig = ed25519.Sign(key, r.SignBytes(chainID))
		return r
	}
	bigOp := "put('k','" + strings.Repeat("v", types.MaxOpBytes-12) + "')"
	// The largest request a replica accepts: operations of MaxOpBytes up
	// to MaxRequestBytes.
	var ops []string
	for r := signed(bigOp); r.EncodedSize()+types.OpEncodedSize(bigOp) <= types.MaxRequestBytes; r.Ops = append(r.Ops, bigOp) {
		ops = r.Ops
	}
	largest := signed(append(ops, bigOp)...)
	tiny := make([]string, types.MaxOpsPerRequest)
	for i := range tiny {
		tiny[i] = "x"
	}
	payloads := map[string]types.Request{
		"largest requests":        largest,
		"one large op each":       signed(bigOp),
		"1,024 one-byte ops each": signed(tiny...),
		"one short op each":       signed("get('k')"),
	}
	if largest.EncodedSize() > types.MaxRequestBytes || largest.EncodedSize() < types.MaxRequestBytes-types.MaxOpBytes {
		t.Fatalf("largest request of %d bytes", largest.EncodedSize())
	}
	for _, n := range []int{1, 4, 7, 100, 1000} {
		budget := PayloadBudget(n)
		if budget < types.MaxRequestBytes+types.MaxOpBytes {
			t.Fatalf("n = %d: budget %d leaves no room for the largest request", n, budget)
		}
		if c := RequestCost(&largest); c > budget {
			t.Fatalf("n = %d: the largest request costs %d, above the budget %d", n, c, budget)
		}
		for name, r := range payloads {
			if n == 1000 && name == "one short op each" {
				continue // 30k requests: slow, and covered at n = 100
			}
			p := maxProposal(n, fill(r, budget))
			data, err := Encode(p)
			if err != nil {
				t.Fatalf("n = %d, %s: budget %d: %v", n, name, budget, err)
			}
			if err := scan(data[1:]); err != nil {
				t.Fatalf("n = %d, %s: %d bytes: %v", n, name, len(data), err)
			}
			// The budget is not wasted: where a request costs its size
			// and is not small, one more would not fit.
			over := maxProposal(n, append(fill(r, budget), r))
			if data, err := Encode(over); err == nil && RequestCost(&r) == r.EncodedSize() && r.EncodedSize() >= 4*1024 {
				t.Errorf("n = %d, %s: one more request still fits (%d bytes)", n, name, len(data))
			}
			t.Logf("n = %d, %s: budget %d, %d requests, proposal of %d bytes", n, name, budget, len(p.Block.Payload), len(data))
		}
	}
}
