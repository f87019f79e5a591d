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
// safety data before a vote does, and the loop syncs that itself), so the
// loop hands committed blocks over in order as the core reports them, before
// the step's safety fsync and vote, and goes on; the committer
// writes the ledger and fsyncs it, signs the replies, commits the blocks
// and the newest head to the block store (blockStore.commit: a synced
// chain transaction when the blocks added ledger lines, so the chain never
// runs ahead of the ledger), and only then sends the replies: nothing is
// acknowledged before its ledger lines and the blocks holding them are on
// disk.

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

// commitGroup bounds the queued blocks the committer executes together:
// one ledger write and fsync and one block-store transaction and sync for
// all of them, when commits arrive faster than the disk syncs.
const commitGroup = 64

// handOver prepares the job of a committed block (on the loop).
func (r *Replica) handOver(c core.Committed) commitJob {
	from, blocks := r.led.take(c.Block.ID)
	return commitJob{block: c.Block, from: from, blocks: blocks}
}

// publishHead leaves the newest head for the committer to write after the
// next commit, or at once if wake is set (on the loop). Committed blocks the
// store does not hold yet stay among its pending blocks until written.
func (r *Replica) publishHead(wake bool) {
	r.headVersion = r.core.TreeVersion()
	pending := append(r.core.PendingBlocks(), r.led.unwritten()...)
	r.head.Store(&head{pending: pending, highQC: r.core.HighQC(), highCommitQC: r.core.HighCommitQC()})
	if wake {
		select {
		case r.headReady <- struct{}{}:
		default: // already signalled
		}
	}
}

// runCommitter executes the handed-over blocks, in groups of up to
// commitGroup, and writes heads left without a commit, until the queue is
// closed; then it writes, synced, the committed blocks still waiting for
// the chain (blocks without ledger lines, see blockStore.commit) and the
// last head, so that a replica stopped normally restarts with its newest
// blocks.
func (r *Replica) runCommitter(done chan<- struct{}) {
	defer close(done)
	defer func() {
		if err := r.bs.flush(r.head.Swap(nil)); err != nil {
			log.Errorw("block store: writing the last committed blocks and head", "err", err) // fetched again after the restart
		}
	}()
	for {
		select {
		case j, ok := <-r.commits:
			if !ok {
				return
			}
			jobs, open := r.drain([]commitJob{j})
			r.execute(jobs)
			if !open {
				return
			}
		case <-r.headReady:
			r.writeHead()
		}
	}
}

// writeHead writes the head the loop left, if any, on its own.
func (r *Replica) writeHead() {
	if h := r.head.Swap(nil); h != nil {
		if err := r.bs.writeHead(h); err != nil {
			log.Warnw("block store head", "err", err) // the next chain transaction carries it (flush)
		}
	}
}

// drain adds the jobs already queued, up to commitGroup; open is false if
// the queue was closed.
func (r *Replica) drain(jobs []commitJob) (_ []commitJob, open bool) {
	for len(jobs) < commitGroup {
		select {
		case j, ok := <-r.commits:
			if !ok {
				return jobs, false
			}
			jobs = append(jobs, j)
		default:
			return jobs, true
		}
	}
	return jobs, true
}

func (r *Replica) execute(jobs []commitJob) {
	start := time.Now()
	for _, j := range jobs {
		r.rt.add(StepCommit, uint64(j.block.Round), -1)
	}
	var lines []byte
	var blocks []committedBlock
	var replies []*types.ClientReply
	heights := make([]uint64, len(jobs))
	for i, j := range jobs {
		r.verified.forget(j.block.Payload)
		var rps []*types.ClientReply
		rps, lines = r.exec.apply(j.block, lines)
		replies = append(replies, rps...)
		blocks = append(blocks, j.blocks...)
		heights[i] = r.exec.height
	}
	if err := r.exec.persist(lines); err != nil {
		log.Fatalf("ledger: %v", err) // an unwritable ledger must stop the replica loudly
	}
	batch := make([]outgoingReply, 0, len(replies))
	for _, rp := range replies {
		if to, ok := r.exec.peerOf(rp.Client); ok {
			batch = append(batch, outgoingReply{to: to, reply: *rp})
		}
	}
	r.signer.sign(batch)
	// The replies leave once the ledger lines and the blocks that hold them
	// are on disk here: a restart replays the ledger only as far as the
	// block store's committed chain reaches (openExecutorFS), and lines
	// past it come back only when their blocks commit again (from peers,
	// or after a power loss of every replica from the vote logs of their
	// voters). Replies sent before the store's transaction measured p50
	// -3.6 % in latency mode, within the noise (docs/performance.md).
	written, err := r.bs.commit(jobs[0].from, blocks, r.exec.height, r.head.Swap(nil))
	if err != nil {
		log.Fatalf("block store: %v", err)
	}
	r.exec.markDurable()
	r.sendReplies(batch)
	for _, j := range jobs {
		r.rt.add(StepReplied, uint64(j.block.Round), -1)
	}
	r.written.Store(written)
	for i, j := range jobs {
		r.m.commits.Inc()
		r.tl.add(Event{Replica: int(r.cfg.ID), Kind: "commit", Round: uint64(j.block.Round), Height: heights[i], Requests: len(j.block.Payload)})
		if effects := r.cfg.Faults.Committed(heights[i]); len(effects) > 0 {
			// Rare (a commit(h) trigger firing once): the effects act on the
			// loop's state, and the committer must never wait for the loop.
			go r.post(r.consensus, func() { r.carry(effects) })
		}
	}
	r.m.height.Set(float64(r.exec.height))
	r.m.execLatency.Observe(time.Since(start).Seconds())
}
