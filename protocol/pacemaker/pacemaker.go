// Package pacemaker is DiemBFT v4's round synchronisation (paper §3,
// "Pacemaker"): the current round, the round timer with exponential backoff,
// aggregation of timeout messages with the Bracha-style join at f+1 and a TC at
// a quorum, and advancing the round on a QC or a TC.
//
// It has no clock: it tells the driver how long the timer should run, and the
// driver calls back with the round whose timer fired.
package pacemaker

import (
	"math"
	"time"

	"github.com/diembft/diembft/protocol/types"
)

// Config holds the timer parameters.
type Config struct {
	RoundTimeout time.Duration // base round timer
	Backoff      float64       // multiplier per round without a commit
	BackoffCap   int           // cap on the exponent
}

// Pacemaker tracks the current round and pending timeouts.
type Pacemaker struct {
	cfg          Config
	f, quorum    int
	currentRound types.Round
	lastRoundTC  *types.TC
	highTC       *types.TC
	pending      map[types.Round]*timeouts
}

type timeouts struct {
	senders map[types.ReplicaID]*types.TimeoutInfo
	done    bool
}

// New creates a pacemaker starting at round 1 (genesis is round 0).
func New(cfg Config, f, quorum int) *Pacemaker {
	return &Pacemaker{cfg: cfg, f: f, quorum: quorum, currentRound: 1, pending: map[types.Round]*timeouts{}}
}

// CurrentRound is the round the replica is in.
func (p *Pacemaker) CurrentRound() types.Round { return p.currentRound }

// LastRoundTC is the TC that ended the previous round, or nil if it ended with a QC.
func (p *Pacemaker) LastRoundTC() *types.TC { return p.lastRoundTC }

// HighTC is the highest TC seen (carried in SyncInfo).
func (p *Pacemaker) HighTC() *types.TC { return p.highTC }

// RoundTimer is the paper's get_round_timer: round_timeout ·
// backoff^min(rounds since the last commit, cap). sinceCommit counts rounds
// beyond the two a commit needs in steady state.
func (p *Pacemaker) RoundTimer(sinceCommit int) time.Duration {
	n := min(max(sinceCommit, 0), p.cfg.BackoffCap)
	return time.Duration(float64(p.cfg.RoundTimeout) * math.Pow(p.cfg.Backoff, float64(n)))
}

// AdvanceQC is the paper's advance_round_qc (slip fixed: the paper calls it
// advance_round in process_certificate_qc). It reports whether the round changed.
func (p *Pacemaker) AdvanceQC(qcRound types.Round) bool {
	if qcRound < p.currentRound {
		return false
	}
	p.lastRoundTC = nil
	p.enter(qcRound + 1)
	return true
}

// AdvanceTC is the paper's advance_round_tc.
func (p *Pacemaker) AdvanceTC(tc *types.TC) bool {
	if tc == nil {
		return false
	}
	if p.highTC == nil || tc.Round > p.highTC.Round {
		p.highTC = tc
	}
	if tc.Round < p.currentRound {
		return false
	}
	p.lastRoundTC = tc
	p.enter(tc.Round + 1)
	return true
}

func (p *Pacemaker) enter(r types.Round) {
	p.currentRound = r
	for k := range p.pending {
		if k < r {
			delete(p.pending, k)
		}
	}
}

// Result of processing a remote timeout.
type Result struct {
	Join bool      // f+1 timeouts for the current round: time out too (Bracha)
	TC   *types.TC // a quorum of timeouts formed a TC
}

// AddTimeout is the paper's process_remote_timeout for a verified timeout
// (including the replica's own). Timeouts for rounds below the current one are
// ignored; for the current round or later they are counted per round.
func (p *Pacemaker) AddTimeout(t *types.TimeoutInfo) Result {
	if t.Round < p.currentRound {
		return Result{}
	}
	pt := p.pending[t.Round]
	if pt == nil {
		pt = &timeouts{senders: map[types.ReplicaID]*types.TimeoutInfo{}}
		p.pending[t.Round] = pt
	}
	if _, dup := pt.senders[t.Sender]; dup || pt.done {
		return Result{}
	}
	pt.senders[t.Sender] = t
	var res Result
	if len(pt.senders) == p.f+1 && t.Round == p.currentRound {
		res.Join = true
	}
	if len(pt.senders) >= p.quorum {
		pt.done = true
		tc := &types.TC{Round: t.Round}
		for id := types.ReplicaID(0); len(tc.Signatures) < len(pt.senders); id++ {
			if s, ok := pt.senders[id]; ok {
				tc.Signatures = append(tc.Signatures, types.PartialSig{Signer: id, Sig: s.Signature})
				tc.TmoHighQCRounds = append(tc.TmoHighQCRounds, s.HighQC.Round())
			}
		}
		res.TC = tc
	}
	return res
}

// HasTimeout reports whether sender's timeout for round was counted.
func (p *Pacemaker) HasTimeout(round types.Round, sender types.ReplicaID) bool {
	pt := p.pending[round]
	return pt != nil && pt.senders[sender] != nil
}
