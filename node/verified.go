package node

import (
	"bytes"
	"slices"
	"sync"

	"github.com/diembft/diembft/protocol/types"
)

// maxVerified bounds the verified-request set. In steady state it holds the
// requests in flight; if clients keep sending requests that never commit it
// is simply emptied, which only costs signature checks again.
const maxVerified = 1 << 18

// verifiedRequests remembers the client requests whose signature this
// replica has checked (on the client protocol) until they commit, so that the
// proposal validator does not check them again (types.Committee.
// VerifyProposalWith). A request counts as verified only if it is identical
// to the checked one in every signed field and in the signature. It is safe
// for concurrent use: stream handlers add, pubsub validators look up, the
// event loop forgets.
type verifiedRequests struct {
	mu sync.Mutex
	m  map[types.RequestKey]verifiedReq
}

type verifiedReq struct {
	ops []string
	sig []byte
}

func (v *verifiedRequests) add(r *types.Request) {
	k := r.Key()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil || len(v.m) >= maxVerified {
		v.m = make(map[types.RequestKey]verifiedReq)
	}
	v.m[k] = verifiedReq{ops: r.Ops, sig: r.Sig}
}

func (v *verifiedRequests) has(r *types.Request) bool {
	k := r.Key()
	v.mu.Lock()
	e, ok := v.m[k]
	v.mu.Unlock()
	return ok && slices.Equal(e.ops, r.Ops) && bytes.Equal(e.sig, r.Sig)
}

func (v *verifiedRequests) forget(reqs []types.Request) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := range reqs {
		delete(v.m, reqs[i].Key())
	}
}
