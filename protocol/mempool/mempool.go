// Package mempool holds client requests waiting to be ordered (paper §3,
// "MemPool"). Requests are deduplicated by (client, sequence number); a
// request is evicted when a block containing it commits, and a committed
// (client, seq) is never accepted again.
package mempool

import (
	"errors"

	"github.com/diembft/diembft/protocol/types"
)

// ErrDuplicate is returned for a request already pending or already committed.
var ErrDuplicate = errors.New("duplicate request")

// ErrFull is returned when the pool is at capacity.
var ErrFull = errors.New("mempool full")

// Pool is a FIFO of pending requests.
type Pool struct {
	capacity  int
	order     []types.RequestKey // arrival order; may hold keys already evicted
	pending   map[types.RequestKey]*types.Request
	committed map[types.RequestKey]bool
}

// New creates a pool holding at most capacity requests (0 = unlimited).
func New(capacity int) *Pool {
	return &Pool{capacity: capacity, pending: map[types.RequestKey]*types.Request{}, committed: map[types.RequestKey]bool{}}
}

// Add queues a verified request.
func (p *Pool) Add(r *types.Request) error {
	k := r.Key()
	if p.committed[k] || p.pending[k] != nil {
		return ErrDuplicate
	}
	if p.capacity > 0 && len(p.pending) >= p.capacity {
		return ErrFull
	}
	p.pending[k] = r
	p.order = append(p.order, k)
	return nil
}

// Len is the number of pending requests.
func (p *Pool) Len() int { return len(p.pending) }

// IsCommitted reports whether (client, seq) has committed.
func (p *Pool) IsCommitted(k types.RequestKey) bool { return p.committed[k] }

// Take returns pending requests in arrival order holding at most max
// operations in all (a single request larger than max is returned alone, so
// that it is still ordered), skipping those for which exclude returns true
// (requests already in uncommitted ancestors of the block being built). It
// does not remove them: they stay until they commit, so a request in an
// abandoned fork is proposed again.
func (p *Pool) Take(max int, exclude func(types.RequestKey) bool) []types.Request {
	var out []types.Request
	ops := 0
	live := p.order[:0]
	for _, k := range p.order {
		r := p.pending[k]
		if r == nil {
			continue // evicted
		}
		live = append(live, k)
		if n := len(r.Ops); (ops+n <= max || len(out) == 0) && ops < max && (exclude == nil || !exclude(k)) {
			out = append(out, *r)
			ops += n
		}
	}
	p.order = live
	return out
}

// Commit evicts the requests of a committed block and remembers them as committed.
func (p *Pool) Commit(reqs []types.Request) {
	for i := range reqs {
		k := reqs[i].Key()
		delete(p.pending, k)
		p.committed[k] = true
	}
}
