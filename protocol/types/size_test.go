package types_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/diembft/diembft/protocol/types"
)

// TestVerifyRequestSizeBounds: a correctly signed request with an operation
// over MaxOpBytes, or an encoding over MaxRequestBytes, is refused with its
// typed error before its signature is checked, alone and in a proposal's
// payload; requests at the bounds pass. Before the bounds, one signed request
// of 4 MB passed and no leader could encode a proposal again (audit).
func TestVerifyRequestSizeBounds(t *testing.T) {
	fx := newFixture(t, testSeed)
	// An operation of exactly n bytes.
	op := func(n int) string {
		const pre, post = "put('big','", "')"
		return pre + strings.Repeat("x", n-len(pre)-len(post)) + post
	}
	// ops operations of opBytes bytes, plus a last one that brings the
	// request's encoding to exactly total bytes.
	atSize := func(total int) types.Request {
		var ops []string
		r := fx.request(1)
		for {
			r.Ops = append(ops, op(types.MaxOpBytes))
			if r.EncodedSize() > total {
				break
			}
			ops = r.Ops
		}
		r.Ops = ops
		rest := total - r.EncodedSize()
		// rest bytes of one more operation, its CBOR head included; the
		// array head of the operations stays 2 bytes below 256 operations.
		n := rest - 3
		if n < 24 || n > types.MaxOpBytes {
			t.Fatalf("cannot build a request of %d bytes (rest %d)", total, rest)
		}
		r = fx.request(1, append(ops, op(n))...)
		if got := r.EncodedSize(); got != total {
			t.Fatalf("built a request of %d bytes, want %d", got, total)
		}
		return r
	}
	cases := []struct {
		name string
		req  types.Request
		want error
	}{
		{"small", fx.request(1, "put('k','v')"), nil},
		{"op at the bound", fx.request(1, op(types.MaxOpBytes)), nil},
		{"op over the bound", fx.request(1, "get('k')", op(types.MaxOpBytes+1)), types.ErrOpTooLarge},
		{"one huge op (the audit's 4 MB put)", fx.request(1, op(4_194_000)), types.ErrOpTooLarge},
		{"request at the bound", atSize(types.MaxRequestBytes), nil},
		{"request over the bound", atSize(types.MaxRequestBytes + 1), types.ErrRequestTooLarge},
	}
	for _, c := range cases {
		_, before := fx.com.VerifyCounts()
		err := fx.com.VerifyRequest(&c.req)
		_, after := fx.com.VerifyCounts()
		fx.wantErr(c.name, err, c.want)
		if c.want != nil && after != before {
			t.Errorf("%s: the signature was checked before the size", c.name)
		}
		if c.want == nil {
			continue
		}
		// The same request in a leader's block is refused too.
		_, qcs := fx.chain()
		b := fx.block(1, 4, qcs[1], c.req)
		p := fx.proposal(b)
		if err := fx.com.VerifyProposal(p, 0); !errors.Is(err, c.want) {
			t.Errorf("%s in a proposal: VerifyProposal = %v, want %v", c.name, err, c.want)
		}
	}
}

// TestMaxOpBytesHoldsEveryExecutableOp: the largest operation the store can
// execute successfully, with every byte of its key and value escaped,
// fits in MaxOpBytes (the store refuses longer keys and values; node/kv
// tests that side).
func TestMaxOpBytesHoldsEveryExecutableOp(t *testing.T) {
	worst := len("append('") + 2*types.MaxKeyBytes + len("','") + 2*types.MaxValueBytes + len("')")
	if worst > types.MaxOpBytes {
		t.Fatalf("an executable operation can take %d bytes, above MaxOpBytes %d", worst, types.MaxOpBytes)
	}
	if types.MaxRequestFrameBytes+types.MaxOpsPerRequest*types.OpEncodedSize(strings.Repeat("x", 40)) > types.MaxRequestBytes {
		t.Fatalf("a batch of %d short operations does not fit in MaxRequestBytes", types.MaxOpsPerRequest)
	}
}
