package node

import (
	"time"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/types"
)

// The committer executes committed blocks off the event loop. Executing a
// block costs a ledger-file fsync and a block-store sync (0.3–0.5 ms each
// here); on the loop they sat between a proposal's arrival and the vote on
// it, in every round. Commit durability does not bear on safety (only the
// safety data before a vote does, and the loop still syncs that first), so
// the loop hands committed blocks over in order and goes on; the committer
// writes the ledger, fsyncs it, writes the block store after it (it never
// runs ahead of the ledger), and only then signs and sends the replies:
// nothing is acknowledged before it is on disk.

// commitJob is one committed block for the committer.
type commitJob struct {
	block *types.Block
	// from and blocks are for the block store: the blocks committed with
	// this one (storeLedger.take), at heights from+1...
	from   uint64
	blocks []committedBlock
}

// commitQueue bounds the blocks handed over and not yet executed; when it
// is full the loop waits (the committer never waits for the loop).
const commitQueue = 1024

// inflightBlock is a block handed to the committer that the block store may
// not hold yet: saveHead keeps it among the pending blocks until then.
type inflightBlock struct {
	height uint64
	block  *types.Block
}

// handOver passes a committed block to the committer (on the loop).
func (r *Replica) handOver(c core.Committed) {
	from, blocks := r.led.take()
	for i, cb := range blocks {
		r.inflight = append(r.inflight, inflightBlock{height: from + uint64(i) + 1, block: cb.b})
	}
	r.commits <- commitJob{block: c.Block, from: from, blocks: blocks}
}

// unwritten returns the handed-over blocks the committer has not written to
// the block store yet (on the loop).
func (r *Replica) unwritten() []*types.Block {
	w := r.written.Load()
	i := 0
	for i < len(r.inflight) && r.inflight[i].height <= w {
		i++
	}
	r.inflight = r.inflight[i:]
	out := make([]*types.Block, len(r.inflight))
	for i, b := range r.inflight {
		out[i] = b.block
	}
	return out
}

// runCommitter executes the handed-over blocks until the queue is closed.
func (r *Replica) runCommitter(done chan<- struct{}) {
	defer close(done)
	for j := range r.commits {
		r.execute(j)
	}
}

func (r *Replica) execute(j commitJob) {
	start := time.Now()
	r.verified.forget(j.block.Payload)
	replies, err := r.exec.execute(j.block)
	if err == nil {
		err = r.bs.writeCommitted(j.from, j.blocks)
	}
	if err != nil {
		log.Fatalf("ledger: %v", err) // an unwritable ledger must stop the replica loudly
	}
	r.written.Store(j.from + uint64(len(j.blocks)))
	height := r.exec.height
	r.m.commits.Inc()
	r.tl.add(Event{Replica: int(r.cfg.ID), Kind: "commit", Round: uint64(j.block.Round), Height: height, Requests: len(j.block.Payload)})
	r.m.height.Set(float64(height))
	r.m.execLatency.Observe(time.Since(start).Seconds())
	if effects := r.cfg.Faults.Committed(height); len(effects) > 0 {
		// Rare (a commit(h) trigger firing once): the effects act on the
		// loop's state, and the committer must never wait for the loop.
		go post(r.consensus, func() { r.carry(effects) })
	}
	batch := make([]outgoingReply, 0, len(replies))
	for _, rp := range replies {
		if to, ok := r.exec.peerOf(rp.Client); ok {
			batch = append(batch, outgoingReply{to: to, reply: *rp})
		}
	}
	r.signer.sign(batch)
	r.sendReplies(batch)
}
