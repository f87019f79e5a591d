// Package safety implements DiemBFT v4's safety rules (paper §3.? "Safety
// module"): the only code that signs votes and timeouts. Its State must be
// persisted by the driver before a vote or timeout it returns leaves the
// process; otherwise a restarted replica could sign twice in one round.
package safety

import (
	"github.com/diembft/diembft/protocol/types"
)

// State is the persistent safety data. The driver stores it (fsync'd) each
// time MakeVote or MakeTimeout changes it, before sending the result.
type State struct {
	HighestVoteRound types.Round
	HighestQCRound   types.Round
	// LastVote is re-sent, not re-signed, when asked to vote again in its round.
	LastVote *types.Vote
	// LastTimeout is re-sent when the round timer fires again in its round.
	LastTimeout *types.TimeoutInfo
	// HighTC is liveness data, not safety data (the rules never read it):
	// the highest TC the replica held when the state was saved, kept so
	// that a restarted replica resumes in the round after it. Without it, a
	// committee restarted as a whole after rounds ended by TCs one after
	// another never timed out again: each replica's highest vote round was
	// above its high QC, safe_to_timeout needs a QC or TC of the round
	// before, and the TCs had lived only in memory
	// (sim.TestWholeCommitteeRestartAfterTimeouts). The core sets it.
	HighTC *types.TC `json:",omitempty"`
}

// Control lists deliberately broken variants of the rules. They exist only so
// the simulator and Twins harness can prove that they catch each mistake
// (negative controls); production code never sets them.
type Control struct {
	NoVoteRoundUpdate bool // highest_vote_round is not raised after voting
	NoQCRoundLock     bool // the lock (highest QC round / TC high-QC rule) is not checked
}

// Rules is one replica's safety module.
type Rules struct {
	id      types.ReplicaID
	chainID string
	signer  types.Signer
	st      State
	Control Control
}

// New creates the safety module from a persisted state (zero for a fresh replica).
func New(id types.ReplicaID, chainID string, signer types.Signer, st State) *Rules {
	return &Rules{id: id, chainID: chainID, signer: signer, st: st}
}

// State returns a copy of the state to persist.
func (r *Rules) State() State { return r.st }

func (r *Rules) increaseHighestVoteRound(round types.Round) {
	if r.Control.NoVoteRoundUpdate {
		return
	}
	r.st.HighestVoteRound = max(r.st.HighestVoteRound, round)
}

func (r *Rules) updateHighestQCRound(qcRound types.Round) {
	r.st.HighestQCRound = max(r.st.HighestQCRound, qcRound)
}

func consecutive(blockRound, round types.Round) bool { return round+1 == blockRound }

// safeToExtend: after a TC, a block may extend a QC only if that QC is at
// least as high as every high QC the TC's signers reported.
func (r *Rules) safeToExtend(blockRound, qcRound types.Round, tc *types.TC) bool {
	if tc == nil || !consecutive(blockRound, tc.Round) {
		return false
	}
	return r.Control.NoQCRoundLock || qcRound >= tc.MaxHighQCRound()
}

// SafeToVote is the paper's safe_to_vote.
func (r *Rules) SafeToVote(blockRound, qcRound types.Round, tc *types.TC) bool {
	if blockRound <= max(r.st.HighestVoteRound, qcRound) {
		return false
	}
	return consecutive(blockRound, qcRound) || r.safeToExtend(blockRound, qcRound, tc)
}

// SafeToTimeout is the paper's safe_to_timeout.
func (r *Rules) SafeToTimeout(round, qcRound types.Round, tc *types.TC) bool {
	if (!r.Control.NoQCRoundLock && qcRound < r.st.HighestQCRound) || round <= max(sub1(r.st.HighestVoteRound), qcRound) {
		return false
	}
	return consecutive(round, qcRound) || (tc != nil && consecutive(round, tc.Round))
}

// sub1 is r-1 floored at 0 (rounds are unsigned).
func sub1(r types.Round) types.Round {
	if r == 0 {
		return 0
	}
	return r - 1
}

// CommitStateIDCandidate is the paper's commit_state_id_candidate: a vote for a
// block whose QC certifies the immediately preceding round commits that QC's
// block (2-chain rule), and carries its state id. pendingState gives the
// speculative state of a block. Paper slip fixed: it looks up
// qc.vote_info.id, not qc.id.
func CommitStateIDCandidate(blockRound types.Round, qc *types.QC, pendingState func(types.Hash) (types.Hash, bool)) types.Hash {
	if !consecutive(blockRound, qc.VoteInfo.Round) {
		return types.ZeroHash
	}
	st, ok := pendingState(qc.VoteInfo.ID)
	if !ok {
		return types.ZeroHash
	}
	return st
}

// MakeVote returns a signed vote for b if the rules allow it, or nil. execState
// is the speculative state after executing b; pendingState resolves the parent's.
// When asked again for the block it last voted for, it returns the stored vote
// rather than signing anew.
func (r *Rules) MakeVote(b *types.Block, lastTC *types.TC, execState types.Hash, pendingState func(types.Hash) (types.Hash, bool)) *types.Vote {
	if lv := r.st.LastVote; lv != nil && lv.VoteInfo.Round == b.Round && lv.VoteInfo.ID == b.ID {
		return lv
	}
	qcRound := b.QC.VoteInfo.Round
	if !r.SafeToVote(b.Round, qcRound, lastTC) {
		return nil
	}
	r.updateHighestQCRound(qcRound)
	r.increaseHighestVoteRound(b.Round)
	vi := types.VoteInfo{ID: b.ID, Round: b.Round, ParentID: b.QC.VoteInfo.ID, ParentRound: qcRound, ExecStateID: execState}
	lci := types.LedgerCommitInfo{CommitStateID: CommitStateIDCandidate(b.Round, b.QC, pendingState), VoteInfoHash: vi.Hash()}
	v := &types.Vote{VoteInfo: vi, LedgerCommitInfo: lci, Sender: r.id, Signature: r.signer.Sign(lci.SignBytes(r.chainID))}
	r.st.LastVote = v
	return v
}

// MakeTimeout returns a signed timeout for round if the rules allow it, or
// nil. A second call for the round it already timed out in returns the stored
// timeout, so re-broadcasts never sign a second, different statement.
func (r *Rules) MakeTimeout(round types.Round, highQC *types.QC, lastTC *types.TC) *types.TimeoutInfo {
	if lt := r.st.LastTimeout; lt != nil && lt.Round == round {
		return lt
	}
	qcRound := highQC.VoteInfo.Round
	if !r.SafeToTimeout(round, qcRound, lastTC) {
		return nil
	}
	r.increaseHighestVoteRound(round) // stop voting for round
	t := &types.TimeoutInfo{Round: round, HighQC: highQC, Sender: r.id,
		Signature: r.signer.Sign(types.TimeoutSignBytes(r.chainID, round, qcRound))}
	r.st.LastTimeout = t
	return t
}

// Compact returns st with its certificates cut to their first quorum
// signatures, for saving: a certificate may carry up to n signatures (a
// leader may aggregate every vote it got, and a Byzantine one may do so on
// purpose), and the driver's slot for the state is bounded (64 KiB in
// node/safetystore.go: a QC of all 572 or more signers did not fit and
// stopped the replica). Any quorum of a certificate's signers is a valid
// certificate of the same statement; for a TC any quorum of its timeouts is
// a valid TC, and safe_to_extend holds with any of them (a quorum of
// timeouts includes an honest replica holding the highest lock). The
// timeout's own signature covers only its round and its QC's round, so the
// re-sent timeout still verifies. st is not changed.
func (st State) Compact(quorum int) State {
	if t := st.LastTimeout; t != nil && t.HighQC != nil && len(t.HighQC.Signatures) > quorum {
		tc := *t
		qc := *t.HighQC
		qc.Signatures = qc.Signatures[:quorum:quorum]
		tc.HighQC = &qc
		st.LastTimeout = &tc
	}
	if t := st.HighTC; t != nil && len(t.Signatures) > quorum && len(t.TmoHighQCRounds) == len(t.Signatures) {
		tc := *t
		tc.Signatures = tc.Signatures[:quorum:quorum]
		tc.TmoHighQCRounds = tc.TmoHighQCRounds[:quorum:quorum]
		st.HighTC = &tc
	}
	return st
}
