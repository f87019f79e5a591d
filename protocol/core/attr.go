package core

import (
	"fmt"

	"github.com/diembft/diembft/protocol/pacemaker"
	"github.com/diembft/diembft/protocol/safety"
	"github.com/diembft/diembft/protocol/types"
)

// Attributes SetAttr can overwrite: the names of spec/config.md §2 set_attr.
const (
	AttrCurrentRound     = "current_round"
	AttrHighestVoteRound = "highest_vote_round"
	AttrHighestQCRound   = "highest_qc_round"
	AttrLeader           = "leader"
)

// ErrUnknownAttr is returned by SetAttr for an attribute it does not know.
var ErrUnknownAttr = fmt.Errorf("unknown attribute")

// SetAttr overwrites one piece of consensus state, as a Byzantine or buggy
// replica might (fault injection's set_attr; the corrupted replica counts
// against f). It bypasses every rule that normally guards the state:
//
//   - current_round: the pacemaker jumps to round v (forward or back; 0 means
//     1), forgetting timeouts collected so far and the TC that ended the
//     previous round, arms the round timer and lets the leader of v propose.
//   - highest_vote_round, highest_qc_round: the safety data is overwritten and
//     persisted. Lowering highest_vote_round lets the replica vote twice in a
//     round; raising it makes the replica refuse to vote until round v passes.
//   - leader: this replica believes replica v leads its current round.
//
// It returns the actions to carry out (NewRound, timers, PersistSafety, a
// proposal), like any other input.
func (c *Core) SetAttr(attr string, v uint64) ([]Action, error) {
	switch attr {
	case AttrCurrentRound:
		r := types.Round(max(v, 1))
		if r <= c.pm.CurrentRound() {
			// The pacemaker only moves forward; a fresh one is the way back.
			c.pm = pacemaker.New(c.cfg.Pacemaker, c.com.F, c.com.Quorum())
		}
		if r > c.pm.CurrentRound() {
			c.pm.AdvanceQC(r - 1)
		}
		c.enteredRound(false)
	case AttrHighestVoteRound, AttrHighestQCRound:
		st := c.safety.State()
		if attr == AttrHighestVoteRound {
			st.HighestVoteRound = types.Round(v)
		} else {
			st.HighestQCRound = types.Round(v)
		}
		c.safety = safety.New(c.id, c.com.ChainID, c.cfg.Signer, st)
		c.safety.Control = c.cfg.Control
		c.persistSafety(nil)
	case AttrLeader:
		if v >= uint64(c.com.N()) {
			return nil, fmt.Errorf("set %s: replica %d does not exist (n = %d)", attr, v, c.com.N())
		}
		fixed := make(map[types.Round]types.ReplicaID, len(c.election.Fixed)+1)
		for r, l := range c.election.Fixed {
			fixed[r] = l
		}
		fixed[c.pm.CurrentRound()] = types.ReplicaID(v)
		c.election.Fixed = fixed
		c.maybePropose(false)
	default:
		return nil, fmt.Errorf("%w %q (want %s, %s, %s or %s)", ErrUnknownAttr, attr,
			AttrCurrentRound, AttrHighestVoteRound, AttrHighestQCRound, AttrLeader)
	}
	return c.flush(), nil
}
