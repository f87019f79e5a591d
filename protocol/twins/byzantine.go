package twins

import (
	"time"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/ledger"
	"github.com/diembft/diembft/protocol/sim"
	"github.com/diembft/diembft/protocol/types"
)

// staleProposer makes every twin node a Byzantine proposer
// (Options.ByzantineTwins). Twins alone cannot exercise the QC-round lock:
// every message carries its sender's high QC, so an honest leader always
// extends a QC at least as high as any it could have heard of, and the lock
// never decides a vote. A Byzantine leader can, by proposing on purpose on an
// older certified block: the DiemBFT v4 paper's reason for the lock (§4,
// safe_to_extend: after a TC, a block may extend only a QC at least as high
// as every high QC the TC reports).
//
// So when a twin node proposes in a round entered by a TC, it replaces its
// block with one that extends the highest QC it has seen (in messages it
// received or sent) whose round is below the TC's highest reported QC round,
// signs it with the key it shares with its replica, and votes for it instead
// of for its honest block. Everything else it does is the honest code's. The
// lock of every other replica must refuse such a block; without the lock
// (safety.Control.NoQCRoundLock) the honest replicas that have not yet
// learned of a commit vote for it, and the fork can commit over a block that
// another honest replica committed.
type staleProposer struct {
	n     int                              // replicas; nodes n.. are twins
	known map[int]map[types.Hash]*types.QC // per twin node: QCs seen, by certified block
	forks map[int]*types.Block             // per twin node: the block it proposed instead, in its last proposal
}

func newStaleProposer(n int) *staleProposer {
	return &staleProposer{n: n, known: map[int]map[types.Hash]*types.QC{}, forks: map[int]*types.Block{}}
}

func (b *staleProposer) isTwin(node int) bool { return node >= b.n }

// see records the QCs in msg as known to node.
func (b *staleProposer) see(node int, msg any) {
	if !b.isTwin(node) {
		return
	}
	k := b.known[node]
	if k == nil {
		k = map[types.Hash]*types.QC{}
		b.known[node] = k
	}
	add := func(qs ...*types.QC) {
		for _, q := range qs {
			if q != nil {
				k[q.VoteInfo.ID] = q
			}
		}
	}
	sync := func(s *types.SyncInfo) { add(s.HighQC, s.HighCommitQC) }
	switch m := msg.(type) {
	case *types.Proposal:
		add(m.Block.QC)
		sync(&m.Sync)
	case *types.VoteMsg:
		sync(&m.Sync)
	case *types.TimeoutMsg:
		add(m.Timeout.HighQC)
		sync(&m.Sync)
	case *types.BlockResponse:
		for i := range m.Blocks {
			add(m.Blocks[i].QC)
		}
	}
}

// below returns the highest QC node knows with a round below limit.
func (b *staleProposer) below(node int, limit types.Round) *types.QC {
	var best *types.QC
	for _, q := range b.known[node] {
		if q.Round() < limit && (best == nil || q.Round() > best.Round()) {
			best = q
		}
	}
	if best == nil && limit > 0 {
		_, best = types.Genesis()
	}
	return best
}

// drop wraps the scenario's partition filter: what reaches a twin is what
// it knows.
func (b *staleProposer) drop(inner func(time.Duration, int, int, any) bool) func(time.Duration, int, int, any) bool {
	return func(now time.Duration, from, to int, msg any) bool {
		if inner(now, from, to, msg) {
			return true
		}
		b.see(to, msg)
		return false
	}
}

// rewrite is the sim's Byzantine hook.
func (b *staleProposer) rewrite(s *sim.Sim, node int, acts []core.Action) []core.Action {
	if !b.isTwin(node) {
		return acts
	}
	for _, a := range acts {
		switch a := a.(type) {
		case core.BroadcastProposal:
			b.see(node, a.Proposal)
		case core.SendVote:
			b.see(node, a.Vote)
		case core.BroadcastTimeout:
			b.see(node, a.Timeout)
		}
	}
	out := make([]core.Action, 0, len(acts))
	for _, a := range acts {
		switch a := a.(type) {
		case core.BroadcastProposal:
			if p := b.stale(s, node, a.Proposal); p != nil {
				b.forks[node] = &p.Block
				out = append(out, core.BroadcastProposal{Proposal: p})
				continue
			}
		case core.SendVote:
			// The twin's core voted for its own honest block; vote for the
			// block it actually proposed instead.
			if f := b.forks[node]; f != nil && a.Vote.Vote.VoteInfo.Round == f.Round {
				out = append(out, core.SendVote{To: a.To, Vote: voteFor(s, f, a.Vote)})
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// stale returns the Byzantine replacement of p, or nil when p did not
// follow a TC or no lower QC is known.
func (b *staleProposer) stale(s *sim.Sim, node int, p *types.Proposal) *types.Proposal {
	tc := p.LastTC
	if tc == nil {
		return nil
	}
	q := b.below(node, tc.MaxHighQCRound())
	if q == nil || q.Round() >= p.Block.QC.Round() {
		return nil
	}
	blk := types.Block{Author: p.Block.Author, Round: p.Block.Round, Payload: p.Block.Payload, QC: q}
	blk.ID = blk.ComputeID()
	return &types.Proposal{
		Block:     blk,
		LastTC:    tc,
		Sync:      p.Sync,
		Signature: s.Signer(blk.Author).Sign(types.ProposalSignBytes(s.Committee().ChainID, blk.ID, blk.Round)),
	}
}

// voteFor is the vote an honest replica would sign for blk (the execution
// state follows from the certified parent's, which the QC carries), sent
// with the twin's own SyncInfo.
func voteFor(s *sim.Sim, blk *types.Block, orig *types.VoteMsg) *types.VoteMsg {
	parent := blk.QC.VoteInfo.ExecStateID
	if types.IsGenesisQC(blk.QC) {
		parent = ledger.GenesisState
	}
	vi := types.VoteInfo{
		ID: blk.ID, Round: blk.Round,
		ParentID: blk.QC.VoteInfo.ID, ParentRound: blk.QC.Round(),
		ExecStateID: ledger.StateAfter(parent, blk),
	}
	// A block whose QC is not of the previous round commits nothing
	// (commit_state_id_candidate is empty).
	lci := types.LedgerCommitInfo{VoteInfoHash: vi.Hash()}
	sender := orig.Vote.Sender
	v := types.Vote{VoteInfo: vi, LedgerCommitInfo: lci, Sender: sender,
		Signature: s.Signer(sender).Sign(lci.SignBytes(s.Committee().ChainID))}
	return &types.VoteMsg{Vote: v, Sync: orig.Sync}
}
