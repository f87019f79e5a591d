package core_test

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/safety"
	"github.com/diembft/diembft/protocol/types"
)

// TestRestartedReplicaElectsWithSavedTC (found by review): a replica
// restarted with a saved HighTC enters the round after it (core.Start) and
// elects the same leaders as a replica that learnt the TC from a message:
// under the reputation election the round after a TC has a fallback leader
// that skips the failed round's suspects. Start first told only the
// pacemaker, and the two disagreed on the leaders of rounds 6 and 7.
func TestRestartedReplicaElectsWithSavedTC(t *testing.T) {
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: 5, mode: leader.Reputation})
	_, gqc := types.Genesis()
	tc := &types.TC{Round: 5}
	for id := types.ReplicaID(0); id < 3; id++ {
		tc.Signatures = append(tc.Signatures, types.PartialSig{Signer: id, Sig: ed25519.Sign(c.keys[id], types.TimeoutSignBytes(chainID, 5, 0))})
		tc.TmoHighQCRounds = append(tc.TmoHighQCRounds, 0)
	}
	if err := c.com.VerifyTC(tc); err != nil {
		t.Fatal(err)
	}

	// Replica 0, running: learns TC(5) from replica 1's timeout of round 6.
	running := c.reputationCore(0)
	m := c.timeout(t, 6, 1, gqc)
	m.LastTC = tc
	running.OnTimeout(m)

	// Replica 0 again, restarted from a safety state saved in round 6
	// (it had timed out there) holding the same TC.
	restarted := core.New(core.Config{ID: 0, Committee: c.com, Signer: types.Ed25519Signer{Key: c.keys[0]}, Pacemaker: pmConfig,
		Election: leader.Reputation, WindowSize: 3, ExcludeSize: 1, MaxRequests: 10, IdleProposeDelay: 50 * time.Millisecond,
		Safety: safety.State{HighestVoteRound: 6, HighTC: tc}})
	acts := restarted.Start()

	if running.CurrentRound() != 6 || restarted.CurrentRound() != 6 {
		t.Fatalf("rounds %d and %d, want 6", running.CurrentRound(), restarted.CurrentRound())
	}
	proposed := false
	for _, a := range acts {
		switch a.(type) {
		case core.BroadcastProposal:
			proposed = true
		case core.SetTimer:
			if a.(core.SetTimer).Timer.Kind == core.ProposeTimer {
				proposed = true
			}
		}
	}
	t.Logf("leader of round 6: running replica says %d, restarted says %d; restarted proposes or arms its propose timer: %v",
		running.Leader(6), restarted.Leader(6), proposed)
	if running.Leader(6) != restarted.Leader(6) {
		t.Errorf("the restarted replica holds TC(5) but elects %d for round 6; with the same TC from a message it elects %d",
			restarted.Leader(6), running.Leader(6))
	}
	// Round 6 ends by a TC; both get it in a timeout of round 7 (which
	// carries TC(6), not TC(5)). The leader of round 7 skips the suspects
	// of round 5 only where the election knows round 5 failed.
	tc6 := &types.TC{Round: 6}
	for id := types.ReplicaID(1); id < 4; id++ {
		tc6.Signatures = append(tc6.Signatures, types.PartialSig{Signer: id, Sig: ed25519.Sign(c.keys[id], types.TimeoutSignBytes(chainID, 6, 0))})
		tc6.TmoHighQCRounds = append(tc6.TmoHighQCRounds, 0)
	}
	for _, cr := range []*core.Core{running, restarted} {
		m := c.timeout(t, 7, 3, gqc)
		m.LastTC = tc6
		cr.OnTimeout(m)
	}
	t.Logf("leader of round 7: running %d, restarted %d", running.Leader(7), restarted.Leader(7))
	if running.Leader(7) != restarted.Leader(7) {
		t.Errorf("round 7: the restarted replica elects %d, the running one %d", restarted.Leader(7), running.Leader(7))
	}
}

// TestSavedStateHasQuorumCertificates (found by review): a high QC may
// carry every signer (a leader may aggregate all votes); the state the
// core asks to save carries a quorum of them, so that it fits the driver's
// bounded slot whatever the committee's size.
func TestSavedStateHasQuorumCertificates(t *testing.T) {
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: 5, mode: leader.Reputation})
	g, _ := types.Genesis()
	b := &types.Block{Author: 1, Round: 1, QC: func() *types.QC { _, q := types.Genesis(); return q }()}
	b.ID = b.ComputeID()
	vi := types.VoteInfo{ID: b.ID, Round: 1, ParentID: g.ID}
	qc := &types.QC{VoteInfo: vi, LedgerCommitInfo: types.LedgerCommitInfo{VoteInfoHash: vi.Hash()}}
	for id := range types.ReplicaID(4) {
		qc.Signatures = append(qc.Signatures, types.PartialSig{Signer: id, Sig: ed25519.Sign(c.keys[id], qc.LedgerCommitInfo.SignBytes(chainID))})
	}
	cr := core.New(core.Config{ID: 0, Committee: c.com, Signer: types.Ed25519Signer{Key: c.keys[0]}, Pacemaker: pmConfig,
		Election: leader.Reputation, WindowSize: 3, ExcludeSize: 1, MaxRequests: 10, IdleProposeDelay: 50 * time.Millisecond,
		HighQC: qc, Pending: []*types.Block{b}})
	cr.Start()
	var saved *safety.State
	for _, a := range cr.OnTimer(core.Timer{Kind: core.RoundTimer, ID: uint64(cr.CurrentRound())}) {
		if ps, ok := a.(core.PersistSafety); ok {
			saved = &ps.State
		}
	}
	if saved == nil || saved.LastTimeout == nil {
		t.Fatal("no timeout saved")
	}
	if got := len(saved.LastTimeout.HighQC.Signatures); got != c.com.Quorum() {
		t.Fatalf("saved timeout's QC has %d signatures, want the quorum %d", got, c.com.Quorum())
	}
}

// TestRestartedReplicaElectsWithItsTree: a replica restarted from its
// saved tree (pending blocks, high certificates), ledger and safety state
// elects the same leaders for the next rounds as it did running. Start
// first told the election nothing about the tree's QCs: under the
// reputation election the restarted replica fell back to round-robin
// leaders the others did not elect, until messages carried those QCs again.
func TestRestartedReplicaElectsWithItsTree(t *testing.T) {
	for seed := int64(1); seed <= 4; seed++ {
		c := newCluster(t, clusterOpts{n: 4, f: 1, seed: seed, mode: leader.Reputation})
		keys := c.submitN(30)
		if !c.run(c.allCommitted(keys), 30*time.Second) {
			c.fatalf("seed %d: not all requests committed by %v", seed, c.now)
		}
		for id, running := range c.cores {
			restarted := core.New(core.Config{ID: types.ReplicaID(id), Committee: c.com, Signer: types.Ed25519Signer{Key: c.keys[id]},
				Pacemaker: pmConfig, Election: leader.Reputation, WindowSize: 2, ExcludeSize: 1, MaxRequests: 10,
				IdleProposeDelay: 50 * time.Millisecond, Ledger: c.leds[id], Safety: running.SafetyState(),
				Pending: running.PendingBlocks(), HighQC: running.HighQC(), HighCommitQC: running.HighCommitQC()})
			restarted.Start()
			for r := running.HighQC().Round() + 1; r <= running.HighQC().Round()+2; r++ {
				if got, want := restarted.Leader(r), running.Leader(r); got != want {
					t.Errorf("seed %d, replica %d: restarted, it elects %d for round %d; running, it elected %d", seed, id, got, r, want)
				}
			}
		}
	}
}
