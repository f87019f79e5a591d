package core

import (
	"github.com/diembft/diembft/protocol/types"
)

// Forward sync: how a replica far behind catches up with bounded memory.
//
// Block retrieval (fetch) walks backwards from a certified block and keeps
// what it fetched as orphans until the chain reaches the replica's tree. That
// is right for a few missed blocks, but a replica thousands of blocks behind
// (partitioned, or started with an empty home late) would have to hold its
// whole gap in memory before it could insert the first block, and the orphan
// cap stops it first. So when the highest commit QC it has verified is more
// than syncGap rounds above its committed root (or the orphan cap is hit),
// the replica switches to forward sync, as CometBFT's blocksync fetches by
// height and Aptos's fast-forward sync jumps to the highest commit
// certificate: it asks a peer for the committed blocks that follow the newest
// block it holds (BlockRequest.Forward), up to maxFetchBatch at a time, and
// inserts them oldest first exactly as it would insert fetched orphans.
//
// Nothing is trusted because of where it came from. The driver checks every
// response with Committee.VerifyBlockResponse (block ids, the hash chain, each
// block's QC against the committee's keys); the core checks that the oldest
// block is the child of the block it asked about, so the whole batch hangs
// off its own tree by hash. Each inserted block's QC then goes through
// processCertificateQC like any other, and a block commits only when a
// verified QC proves it by the 2-chain rule (the QC carried by its child's
// child commits it; the last blocks of a batch wait for the next batch or for
// the high commit QC). A peer that sends a certified but uncommitted branch
// adds pending blocks that never commit and are pruned when the root passes
// them; the replica then asks another peer from its root.
//
// Memory stays bounded: the tree holds the root and the uncommitted blocks of
// at most one batch beyond it (syncs from the tip of the tree are reset to
// the root if the tree grows past the orphan cap), orphans are dropped when
// the sync starts and not fetched while it runs, and committed blocks leave
// the core as Committed actions. The sync ends when the root is within
// syncGap rounds of the highest commit QC; ordinary block retrieval fetches
// the rest.

// maxResponseBytes bounds the encoded size of a block response, well below
// the wire's 4 MiB message cap: a block response of 100 full blocks of large
// requests would otherwise not fit in a message and never leave the responder.
const maxResponseBytes = 2 << 20

// syncState is the forward sync in progress, if any.
type syncState struct {
	active  bool
	from    types.Hash      // the block the outstanding request asks to extend
	to      types.ReplicaID // the peer asked
	id      uint64          // fetch number of the outstanding request (its FetchTimer id)
	attempt int             // timeouts in a row (doubles the fetch timeout, up to 8x)
	stats   SyncStats
}

// SyncStats counts the forward syncs of a core.
type SyncStats struct {
	Syncs    uint64 // forward syncs started
	Requests uint64 // forward block requests sent (retries included)
	Blocks   uint64 // blocks inserted from forward responses
	Ignored  uint64 // forward responses that did not extend the block asked about
	Timeouts uint64 // forward requests that timed out
}

// SyncStats returns the forward-sync counters.
func (c *Core) SyncStats() SyncStats { return c.sync.stats }

// Syncing reports whether a forward sync is running.
func (c *Core) Syncing() bool { return c.sync.active }

// Orphans is the number of fetched blocks waiting for their parent; it never
// exceeds the orphan cap.
func (c *Core) Orphans() int { return len(c.orphans) }

// orphanCap is the most fetched blocks kept waiting for their parent.
func (c *Core) orphanCap() int {
	if c.cfg.MaxOrphans > 0 {
		return c.cfg.MaxOrphans
	}
	return maxOrphans
}

// syncGap is how far (in rounds) the highest known commit may run ahead of
// the committed root before the replica syncs forward instead of walking
// back. Rounds bound blocks from above (rounds strictly increase along a
// chain), so a backward walk over a smaller gap never needs more orphans than
// the cap nor more than one response.
func (c *Core) syncGap() types.Round {
	return types.Round(min(c.orphanCap(), maxFetchBatch))
}

// farBehind reports whether a verified commit QC proves blocks committed more
// than syncGap rounds above the root.
func (c *Core) farBehind() bool {
	return c.tree.HighCommitQC().VoteInfo.ParentRound > c.tree.Root().Round+c.syncGap()
}

// startSync starts a forward sync from the committed root, asking `to`
// first. Backward fetches stop: their orphans could only connect after the
// forward sync has brought the replica up anyway.
func (c *Core) startSync(to types.ReplicaID) {
	s := &c.sync
	if s.active {
		return
	}
	if to == c.id {
		to = c.nextPeer(to)
	}
	*s = syncState{active: true, from: c.tree.Root().ID, to: to, stats: s.stats}
	s.stats.Syncs++
	clear(c.orphans)
	clear(c.fetches)
	clear(c.fetchByID)
	c.sendSync()
}

func (c *Core) sendSync() {
	s := &c.sync
	c.nextFetch++
	s.id = c.nextFetch
	s.stats.Requests++
	c.Stats.Fetches++
	c.emit(SendBlockRequest{To: s.to, Request: &types.BlockRequest{ID: s.from, Count: maxFetchBatch, Forward: true}})
	c.emit(SetTimer{Timer: Timer{Kind: FetchTimer, ID: s.id}, After: c.cfg.FetchTimeout << min(s.attempt, 3)})
}

// onSyncTimer handles a fetch timer; it reports whether the timer was the
// forward sync's. The request (or its answer) was lost, or the peer had
// nothing to give: ask the next peer, from the root (the tip may be a branch
// only the previous peer knew). A sync started by the orphan cap rather
// than by a distant commit QC ends here, and block retrieval resumes.
func (c *Core) onSyncTimer(id uint64) bool {
	s := &c.sync
	if !s.active || id != s.id {
		return false
	}
	s.stats.Timeouts++
	if !c.farBehind() {
		s.active = false
		c.adoptOrphans()
		return true
	}
	s.attempt++
	s.to = c.nextPeer(s.to)
	s.from = c.tree.Root().ID
	c.sendSync()
	return true
}

// onSyncResponse inserts the blocks of a forward response, oldest first, if
// its oldest block is the child of the block the outstanding request asked
// about, and asks for the next batch. The response has been verified by the
// driver (Committee.VerifyBlockResponse).
func (c *Core) onSyncResponse(from types.ReplicaID, resp *types.BlockResponse) {
	s := &c.sync
	if !s.active {
		return
	}
	if resp.Blocks[len(resp.Blocks)-1].ParentID() != s.from {
		s.stats.Ignored++ // unsolicited, or the answer to an earlier request
		return
	}
	if _, ok := c.tree.Get(s.from); !ok {
		s.stats.Ignored++ // the root moved past the block asked about
		return
	}
	c.from = from
	root := c.tree.Root().Round
	tip, _ := c.tree.Get(s.from)
	startTip := tip.Round
	for i := len(resp.Blocks) - 1; i >= 0; i-- {
		b := resp.Blocks[i] // a copy: the tree must not pin the whole response
		if known, ok := c.tree.Get(b.ID); ok {
			tip = known
			continue
		}
		if b.Round <= c.tree.Root().Round {
			break // below the root and not on its chain: cannot commit
		}
		if _, ok := c.ledger.Speculate(&b); !ok || !c.tree.Add(&b) {
			break
		}
		s.stats.Blocks++
		tip = &b
		c.processCertificateQC(b.QC)
	}
	// Ask for the blocks after the newest one inserted, while it is still in
	// the tree and the tree stays small; otherwise from the root.
	s.from = c.tree.Root().ID
	if _, ok := c.tree.Get(tip.ID); ok && c.tree.Len() <= c.orphanCap() {
		s.from = tip.ID
	}
	if c.tree.Root().Round > root || tip.Round > startTip {
		s.attempt = 0
	} else {
		// Nothing new (a branch that does not commit, or a peer as far
		// behind as we are): the next request goes to another peer.
		s.to = c.nextPeer(s.to)
	}
	if !c.farBehind() {
		s.active = false // the rest is ordinary block retrieval
	} else {
		c.sendSync()
	}
	c.adoptOrphans() // waiting proposals, the pending commit, proposing
}

// answerForward answers a forward block request with the committed blocks
// after req.ID, newest first (the order VerifyBlockResponse checks), and
// nothing if req.ID is not committed here.
func (c *Core) answerForward(from types.ReplicaID, req *types.BlockRequest) {
	blocks := c.ledger.CommittedAfter(req.ID, int(min(req.Count, maxFetchBatch)))
	size := 0
	for i, b := range blocks {
		size += approxBlockSize(b)
		if i > 0 && size > maxResponseBytes {
			blocks = blocks[:i]
			break
		}
	}
	resp := &types.BlockResponse{Blocks: make([]types.Block, len(blocks))}
	for i, b := range blocks {
		resp.Blocks[len(blocks)-1-i] = *b
	}
	c.emit(SendBlockResponse{To: from, Response: resp})
}

// approxBlockSize over-estimates the encoded size of a block: the requests'
// fields plus CBOR framing, and the QC with its signatures.
func approxBlockSize(b *types.Block) int {
	n := 256
	if b.QC != nil {
		n += 200
		for _, sig := range b.QC.Signatures {
			n += len(sig.Sig) + 16
		}
	}
	for i := range b.Payload {
		r := &b.Payload[i]
		n += len(r.Client) + len(r.Sig) + 32
		for _, op := range r.Ops {
			n += len(op) + 8
		}
	}
	return n
}
