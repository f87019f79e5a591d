package core_test

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/types"
)

// TestCatchUpFarBehind: the lagging replica misses more blocks than one
// block response carries, so it fetches in several batches.
func TestCatchUpFarBehind(t *testing.T) {
	const seed, lag = 81, types.ReplicaID(2)
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: seed, mode: leader.Reputation})
	keys := c.submitN(3)
	if !c.run(c.allCommitted(keys), 10*time.Second) {
		c.fatalf("warm-up requests not committed")
	}
	h0 := c.height(int(lag))
	c.drop = func(e envelope) bool { return e.to == lag }
	if !c.run(func() bool { return c.height(0) >= h0+150 }, c.now+time.Minute) {
		c.fatalf("others reached only height %d", c.height(0))
	}
	c.drop = nil
	keys = append(keys, c.submitN(3)...)
	if !c.run(func() bool { return c.allCommitted(keys)() && c.height(int(lag)) >= h0+150 }, c.now+20*time.Second) {
		c.fatalf("replica %d at height %d, others at %d", lag, c.height(int(lag)), c.height(0))
	}
	if f := c.cores[lag].Stats.Fetches; f < 2 {
		c.fatalf("caught up %d blocks with %d fetches", c.height(int(lag))-h0, f)
	}
	c.checkAgreement()
}

// TestFetchRetriesAnotherPeer: the first block responses are lost; the fetch
// timer sends the request to another replica.
func TestFetchRetriesAnotherPeer(t *testing.T) {
	const seed, lag = 82, types.ReplicaID(1)
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: seed, mode: leader.RoundRobin})
	keys := c.submitN(3)
	if !c.run(c.allCommitted(keys), 10*time.Second) {
		c.fatalf("warm-up requests not committed")
	}
	h0 := c.height(int(lag))
	c.drop = func(e envelope) bool { return e.to == lag }
	keys = append(keys, c.submitN(6)...)
	c.run(func() bool { return c.height(0) >= h0+6 }, c.now+20*time.Second)
	lost := 0
	targets := map[types.ReplicaID]bool{}
	c.observe = func(id types.ReplicaID, acts []core.Action) {
		for _, a := range acts {
			if r, ok := a.(core.SendBlockRequest); ok && id == lag {
				targets[r.To] = true
			}
		}
	}
	c.drop = func(e envelope) bool {
		if _, ok := e.msg.(*types.BlockResponse); ok && e.to == lag && lost < 2 {
			lost++
			return true
		}
		return false
	}
	if !c.run(c.allCommitted(keys), c.now+20*time.Second) {
		c.fatalf("replica %d did not catch up after lost block responses", lag)
	}
	if lost != 2 || len(targets) < 2 {
		c.fatalf("lost %d responses, asked %d distinct peers", lost, len(targets))
	}
	c.checkAgreement()
}

// TestRandomLossAgreement: with seeded random message loss, replicas never
// commit different blocks, and once the loss stops all of them commit every
// request.
func TestRandomLossAgreement(t *testing.T) {
	for _, m := range modes {
		for seed := int64(91); seed <= 94; seed++ {
			t.Run(fmt.Sprintf("%s/seed=%d", m.name, seed), func(t *testing.T) {
				c := newCluster(t, clusterOpts{n: 4, f: 1, seed: seed, mode: m.mode, maxRequests: 3})
				rng := rand.New(rand.NewSource(seed))
				c.drop = func(envelope) bool { return rng.Float64() < 0.15 }
				keys := c.submitN(30)
				c.run(func() bool { return false }, 5*time.Second)
				c.checkAgreement()
				c.drop = nil
				if !c.run(c.allCommitted(keys), c.now+30*time.Second) {
					c.fatalf("after the loss stopped, heights %d..%d, not all requests committed", c.minHeight(), c.height(0))
				}
				c.checkAgreement()
			})
		}
	}
}

// TestRestartKeepsVote: a replica restarted from its persisted safety state
// does not vote for another block in the round it voted in.
func TestRestartKeepsVote(t *testing.T) {
	s := newSolo(t, 83)
	_, g := types.Genesis()
	a := s.block(1, g, true)
	s.propose(a, nil)
	if s.vote() == nil {
		t.Fatal("no vote")
	}
	var persisted *core.PersistSafety
	for _, x := range s.acts {
		if p, ok := x.(core.PersistSafety); ok {
			persisted = &p
		}
	}
	if persisted == nil {
		t.Fatal("vote without PersistSafety")
	}
	fixed := map[types.Round]types.ReplicaID{}
	for r := types.Round(0); r < 10; r++ {
		fixed[r] = 0
	}
	s.me = core.New(core.Config{ID: 3, Committee: s.c.com, Signer: types.Ed25519Signer{Key: s.c.keys[3]}, Pacemaker: pmConfig,
		Election: leader.RoundRobin, MaxRequests: 10, IdleProposeDelay: 50 * time.Millisecond, FixedLeaders: fixed, Safety: persisted.State})
	s.me.Start()
	b := s.block(1, g, true)
	s.propose(b, nil)
	if s.vote() != nil {
		t.Fatal("restarted replica voted for a second block in round 1")
	}
	s.propose(a, nil)
	if v := s.vote(); v == nil || string(v.Signature) != string(persisted.State.LastVote.Signature) {
		t.Fatal("restarted replica did not re-send its stored vote")
	}
}

// TestRestartedLeaderDoesNotProposeAgain: a leader that proposed in round 1
// and persisted its vote on its own block, restarted from that state in
// round 1, does not propose a second block for the round (before, the
// round it had proposed in was forgotten with the process).
func TestRestartedLeaderDoesNotProposeAgain(t *testing.T) {
	s := newSoloLeading(t, 84, 1)
	var proposals []*types.Proposal
	var persisted *core.PersistSafety
	run := func(acts []core.Action) {
		for len(acts) > 0 {
			var timers []core.Timer
			for _, a := range acts {
				switch a := a.(type) {
				case core.BroadcastProposal:
					proposals = append(proposals, a.Proposal)
				case core.PersistSafety:
					persisted = &a
				case core.SetTimer:
					if a.Timer.Kind == core.ProposeTimer {
						timers = append(timers, a.Timer)
					}
				}
			}
			acts = nil
			for _, tm := range timers {
				acts = append(acts, s.me.OnTimer(tm)...)
			}
		}
	}
	run(s.acts)
	if len(proposals) != 1 || proposals[0].Block.Round != 1 || persisted == nil || persisted.State.HighestVoteRound != 1 {
		t.Fatalf("first run: %d proposals, persisted %+v; want one in round 1 and the leader's vote on it persisted", len(proposals), persisted)
	}
	fixed := map[types.Round]types.ReplicaID{1: 3}
	s.me = core.New(core.Config{ID: 3, Committee: s.c.com, Signer: types.Ed25519Signer{Key: s.c.keys[3]}, Pacemaker: pmConfig,
		Election: leader.RoundRobin, MaxRequests: 10, IdleProposeDelay: 50 * time.Millisecond, FixedLeaders: fixed, Safety: persisted.State})
	run(s.me.Start())
	if s.me.CurrentRound() != 1 {
		t.Fatalf("restarted in round %d, want 1", s.me.CurrentRound())
	}
	if len(proposals) != 1 {
		t.Fatalf("the restarted leader proposed again in round %d", proposals[1].Block.Round)
	}
}
