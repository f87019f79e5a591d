// Package mempool holds client requests waiting to be ordered (paper §3,
// "MemPool"). Requests are deduplicated by (client, sequence number); a
// request is evicted when a block containing it commits, and a committed
// (client, seq) is never accepted again.
//
// The committed sequence numbers are kept per client as a watermark and
// the spans above it (protocol/seqset), not one entry per request ever
// committed: a client's state is a few words plus one span per request
// that completed out of order. To stay bounded against a client that
// scatters its seqs, a commit more than types.SeqWindow above the
// watermark raises the watermark to within the window, and a commit that
// would open more than seqset.MaxSpans spans fills the lowest gap first;
// both only ever count more requests as committed, never fewer, and a
// correct client (seqs in flight within types.ReplyWindow) never triggers
// either. There is one such entry per client ever committed (clients are
// ed25519 keys; each costs at least one ordered operation, like an Aptos
// or Cosmos account, which also keeps its sequence number forever).
//
// The pool starts empty on restart; the node refuses requests its executor
// already executed (rebuilt from the ledger) before they reach the pool.
package mempool

import (
	"errors"

	"github.com/diembft/diembft/protocol/seqset"
	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// ErrDuplicate is returned for a request already pending or already committed.
var ErrDuplicate = errors.New("duplicate request")

// ErrFull is returned when the pool is at capacity.
var ErrFull = errors.New("mempool full")

// Pool is a FIFO of pending requests.
type Pool struct {
	capacity  int
	order     []types.RequestKey // arrival order; may hold keys already evicted
	pending   map[types.RequestKey]*entry
	committed map[string]*seqset.Set // per client (string of its key): committed op seqs
}

// entry is a pending request and its wire.RequestCost, computed once when
// the request enters the pool rather than at every Take.
type entry struct {
	req  *types.Request
	cost int
}

// New creates a pool holding at most capacity requests (0 = unlimited).
func New(capacity int) *Pool {
	return &Pool{capacity: capacity, pending: map[types.RequestKey]*entry{}, committed: map[string]*seqset.Set{}}
}

// Add queues a verified request.
func (p *Pool) Add(r *types.Request) error {
	k := r.Key()
	if p.isCommitted(r) || p.pending[k] != nil {
		return ErrDuplicate
	}
	if p.capacity > 0 && len(p.pending) >= p.capacity {
		return ErrFull
	}
	p.pending[k] = &entry{req: r, cost: wire.RequestCost(r)}
	p.order = append(p.order, k)
	return nil
}

// Len is the number of pending requests.
func (p *Pool) Len() int { return len(p.pending) }

// IsCommitted reports whether (client, seq) has committed.
func (p *Pool) IsCommitted(k types.RequestKey) bool {
	s := p.committed[k.Client]
	return s != nil && s.Has(k.Seq)
}

// isCommitted reports whether every operation of r has committed (a
// request overlapping committed operations only in part is still ordered:
// execution skips the operations already executed).
func (p *Pool) isCommitted(r *types.Request) bool {
	s := p.committed[string(r.Client)]
	return s != nil && s.HasAll(r.Seq, lastSeq(r))
}

// lastSeq is the sequence number of r's last operation.
func lastSeq(r *types.Request) uint64 { return r.Seq + uint64(max(len(r.Ops), 1)) - 1 }

// SpansOf is the number of committed spans kept above client's watermark
// (tests: the per-client state stays bounded).
func (p *Pool) SpansOf(client []byte) int {
	if s := p.committed[string(client)]; s != nil {
		return s.Spans()
	}
	return 0
}

// Take returns pending requests in arrival order holding at most max
// operations in all and costing at most budget in all (wire.RequestCost;
// budget <= 0: no bound), skipping those for which exclude returns true
// (requests already in uncommitted ancestors of the block being built). A
// request that would go over either bound is skipped and later, smaller
// ones may still be taken, as for the operation count before; the first
// request taken is taken whatever its size, so that a request larger than
// max is still ordered (its cost always fits: Committee.VerifyRequest
// bounds a request far below any proposal's wire.PayloadBudget). Take does
// not remove the requests: they stay until they commit, so a request in an
// abandoned fork is proposed again.
func (p *Pool) Take(max, budget int, exclude func(types.RequestKey) bool) []types.Request {
	var out []types.Request
	ops, cost := 0, 0
	live := p.order[:0]
	for _, k := range p.order {
		e := p.pending[k]
		if e == nil {
			continue // evicted
		}
		r := e.req
		if p.isCommitted(r) {
			delete(p.pending, k) // committed under another key, or below a raised watermark
			continue
		}
		live = append(live, k)
		if ops >= max || (budget > 0 && cost >= budget) || (exclude != nil && exclude(k)) {
			continue
		}
		n := len(r.Ops)
		if len(out) == 0 || (ops+n <= max && (budget <= 0 || cost+e.cost <= budget)) {
			out = append(out, *r)
			ops += n
			cost += e.cost
		}
	}
	p.order = live
	return out
}

// Commit evicts the requests of a committed block and remembers them as committed.
func (p *Pool) Commit(reqs []types.Request) {
	for i := range reqs {
		r := &reqs[i]
		delete(p.pending, r.Key())
		s := p.committed[string(r.Client)]
		if s == nil {
			s = &seqset.Set{}
			p.committed[string(r.Client)] = s
		}
		lo, hi := r.Seq, lastSeq(r)
		if hi > s.Watermark()+types.SeqWindow {
			s.Raise(hi - types.SeqWindow) // a scattering client: forget its oldest gaps
		}
		for s.Spans() >= seqset.MaxSpans && s.AddsSpan(lo, hi) {
			s.RaiseToFirstSpan()
		}
		s.Add(lo, hi)
	}
}
