package core

import (
	"time"

	"github.com/diembft/diembft/protocol/safety"
	"github.com/diembft/diembft/protocol/types"
)

// Action is an effect the driver must carry out, in order. The order matters:
// a PersistSafety always precedes the vote or timeout that needed it, so a
// driver that performs actions in order never lets a vote leave the process
// before its safety data is durable.
type Action interface{ isAction() }

// PersistSafety asks the driver to store the safety state durably (fsync)
// before carrying out any later action.
//
// Block, when set, is the block the vote that follows is for: the driver
// stores it durably with the state. A certified block is then on the disk of
// each of its 2f+1 voters before any vote for it leaves, so a power loss of
// the whole committee cannot lose the block behind the highest lock (the
// safety rules refuse to time out below it, and the chain could not move).
// Aptos' consensus DB stores blocks before voting for the same reason.
type PersistSafety struct {
	State safety.State
	Block *types.Block
}

// BroadcastProposal sends a proposal to every other replica.
type BroadcastProposal struct{ Proposal *types.Proposal }

// BroadcastTimeout sends a timeout message to every other replica.
type BroadcastTimeout struct{ Timeout *types.TimeoutMsg }

// SendVote sends a vote to the leader of the next round.
type SendVote struct {
	To   types.ReplicaID
	Vote *types.VoteMsg
}

// SendBlockRequest asks a replica for missing blocks.
type SendBlockRequest struct {
	To      types.ReplicaID
	Request *types.BlockRequest
}

// SendBlockResponse answers a block request.
type SendBlockResponse struct {
	To       types.ReplicaID
	Response *types.BlockResponse
}

// TimerKind names the core's timers.
type TimerKind int

const (
	// RoundTimer is the pacemaker's round timer; ID is the round.
	RoundTimer TimerKind = iota
	// ProposeTimer makes an idle leader propose an empty block; ID is the round.
	ProposeTimer
	// FetchTimer retries a block fetch; ID is the fetch number.
	FetchTimer
)

// Timer identifies one timer.
type Timer struct {
	Kind TimerKind
	ID   uint64
}

// SetTimer asks the driver to call OnTimer(Timer) after After. Timers are
// never cancelled: the core ignores those that are no longer relevant.
type SetTimer struct {
	Timer Timer
	After time.Duration
}

// Committed reports a block appended to the ledger, in commit order. The QC is
// the certificate that committed it (for the committing block) or nil for
// ancestors committed along with it.
type Committed struct {
	Block  *types.Block
	QC     *types.QC
	Height uint64 // ledger height of Block (genesis is 0)
}

// NewRound reports that the replica entered a round (for metrics and traces).
type NewRound struct {
	Round types.Round
	ByTC  bool
}

func (PersistSafety) isAction()     {}
func (BroadcastProposal) isAction() {}
func (BroadcastTimeout) isAction()  {}
func (SendVote) isAction()          {}
func (SendBlockRequest) isAction()  {}
func (SendBlockResponse) isAction() {}
func (SetTimer) isAction()          {}
func (Committed) isAction()         {}
func (NewRound) isAction()          {}
