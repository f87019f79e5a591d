package node

import (
	"testing"

	"github.com/diembft/diembft/protocol/types"
)

func TestVerifiedRequests(t *testing.T) {
	var v verifiedRequests
	r := types.Request{Client: []byte("client-key"), Seq: 7, Ops: []string{"put('k','v')"}, Sig: []byte("signature")}
	if v.has(&r) {
		t.Fatal("empty set has a request")
	}
	v.add(&r)
	same := r
	same.Sig = append([]byte(nil), r.Sig...)
	if !v.has(&same) {
		t.Error("identical request not found")
	}
	otherSig, otherOp := r, r
	otherSig.Sig = []byte("signaturf")
	otherOp.Ops = []string{"put('k','w')"}
	if v.has(&otherSig) || v.has(&otherOp) {
		t.Error("a request differing in signature or operation counts as verified")
	}
	v.forget([]types.Request{r})
	if v.has(&r) {
		t.Error("forgotten request still found")
	}
}
