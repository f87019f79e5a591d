package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/p2p"
	"github.com/diembft/diembft/protocol/types"
)

// Per-peer limits on the requests whose answers cost a replica far more
// than the request costs the sender (network audit): a block request of a
// few bytes is answered with up to 100 blocks (2 MiB) read from the block
// store on the event loop, a ledger request of 4 bytes with up to 1 MiB of
// ledger lines.
var (
	// ErrBlockRequestRate: a member asked for blocks faster than
	// blockRequestRate; the request is dropped unanswered (the requester's
	// fetch timer asks again, or another replica).
	ErrBlockRequestRate = errors.New("block requests over the per-peer rate")
	// ErrLedgerBacklog: a client asked for more ledger while earlier
	// answers still waited in its send queue (it does not read them); the
	// request is dropped unanswered.
	ErrLedgerBacklog = errors.New("ledger request while earlier answers are unread")
)

// Block requests are limited by the blocks they ask for, a token bucket per
// member, because an answer's cost is its blocks: one request of Count 2^32-1
// (capped at maxBlocksPerRequest) costs 100 tokens, a backward fetch of 4
// blocks 4. An honest replica catching up sends one forward request at a time
// to one peer and verifies every block's QC before it asks again: measured
// 2,238 blocks/s (26 requests/s, at most 10 in 100 ms) by
// TestEmptyReplicaCatchesUp on this machine, 1,400 blocks/s in the README;
// the QC signatures it checks bound it near 14,000 blocks/s per core even
// with batch verification. The rate is above all of that; the burst lets a
// replica that was idle ask 100 full batches at once. A flood of forward
// requests from genesis (20,000 in 0.47 s in the audit, 644 MB of answers in
// 10 s) gets 200 answers a second.
const (
	blockRequestRate  = 20_000 // blocks per second, per member
	blockRequestBurst = 10_000 // blocks
	// maxBlocksPerRequest is what one answer holds at most (the core's
	// maxFetchBatch).
	maxBlocksPerRequest = 100
)

// ledgerBacklog is how many bytes of answers may wait in a client's send
// queue for a ledger request to be answered: two chunks (client.MaxChunkBytes
// each), so one client has at most three chunks queued (and one being
// written). An honest client (client.FetchLedger) asks each replica for one
// chunk at a time and asks again only after its timeout, when the answer
// has long left; one that never reads its answers pinned gigabytes before
// the send queues were bounded in bytes, and still made the replica read
// 1 MiB of ledger per 4-byte request.
const ledgerBacklog = 2 * client.MaxChunkBytes

// peerLimits are the replica's per-peer request limits.
type peerLimits struct {
	blocks     []*rate.Limiter // by replica id
	blocksWarn *p2p.RateLog
	ledgerWarn *p2p.RateLog
}

func newPeerLimits(members int) *peerLimits {
	l := &peerLimits{blocksWarn: p2p.NewRateLog(log, 0), ledgerWarn: p2p.NewRateLog(log, 0)}
	for range members {
		l.blocks = append(l.blocks, rate.NewLimiter(blockRequestRate, blockRequestBurst))
	}
	return l
}

// allowBlockRequest charges member id's bucket for req and reports whether
// it may be answered; a refusal is counted and logged (rate-limited).
func (r *Replica) allowBlockRequest(id types.ReplicaID, req *types.BlockRequest) bool {
	cost := int(min(max(req.Count, 1), maxBlocksPerRequest))
	if int(id) >= len(r.limits.blocks) || r.limits.blocks[id].AllowN(time.Now(), cost) {
		return true
	}
	err := fmt.Errorf("%w: replica %d asked for %d blocks (limit %d blocks/s, burst %d)", ErrBlockRequestRate, id, req.Count, blockRequestRate, blockRequestBurst)
	r.ignore("block_request", err)
	r.limits.blocksWarn.Warnw("block request dropped: over the per-peer rate", "replica", id, "forward", req.Forward, "err", err)
	return false
}

// allowLedgerRequest reports whether a ledger request of client from may be
// answered: not while ledgerBacklog bytes of answers wait for it.
func (r *Replica) allowLedgerRequest(from peer.ID) bool {
	msgs, queued := r.net.Queued(from, r.clientProto)
	if queued < ledgerBacklog {
		return true
	}
	err := fmt.Errorf("%w: %d answers (%d bytes) queued for %s, limit %d bytes", ErrLedgerBacklog, msgs, queued, from, ledgerBacklog)
	r.ignore("ledger_request", err)
	r.limits.ledgerWarn.Warnw("ledger request dropped: the client does not read its answers", "peer", from, "err", err)
	return false
}
