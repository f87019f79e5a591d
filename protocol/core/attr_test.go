package core_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/types"
)

func hasNewRound(acts []core.Action, r types.Round) bool {
	for _, a := range acts {
		if nr, ok := a.(core.NewRound); ok && nr.Round == r {
			return true
		}
	}
	return false
}

func TestSetAttrCurrentRound(t *testing.T) {
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: 91, mode: leader.RoundRobin})
	cr := c.cores[2]
	for _, want := range []types.Round{40, 7, 7, 1} {
		acts, err := cr.SetAttr(core.AttrCurrentRound, uint64(want))
		if err != nil {
			t.Fatal(err)
		}
		if got := cr.CurrentRound(); got != want {
			t.Fatalf("set current_round %d: core is in round %d", want, got)
		}
		if !hasNewRound(acts, want) {
			t.Fatalf("set current_round %d: no NewRound in %v", want, acts)
		}
		armed := false
		for _, a := range acts {
			if st, ok := a.(core.SetTimer); ok && st.Timer == (core.Timer{Kind: core.RoundTimer, ID: uint64(want)}) {
				armed = true
			}
		}
		if !armed {
			t.Fatalf("set current_round %d: round timer not armed: %v", want, acts)
		}
	}
	if _, err := cr.SetAttr(core.AttrCurrentRound, 0); err != nil || cr.CurrentRound() != 1 {
		t.Fatalf("current_round 0: round %d, err %v (want round 1)", cr.CurrentRound(), err)
	}
}

func TestSetAttrSafetyData(t *testing.T) {
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: 92, mode: leader.RoundRobin})
	cr := c.cores[1]
	for _, tc := range []struct {
		attr string
		v    uint64
		get  func() types.Round
	}{
		{core.AttrHighestVoteRound, 33, func() types.Round { return cr.SafetyState().HighestVoteRound }},
		{core.AttrHighestQCRound, 21, func() types.Round { return cr.SafetyState().HighestQCRound }},
		{core.AttrHighestVoteRound, 2, func() types.Round { return cr.SafetyState().HighestVoteRound }},
	} {
		acts, err := cr.SetAttr(tc.attr, tc.v)
		if err != nil {
			t.Fatal(err)
		}
		if got := tc.get(); got != types.Round(tc.v) {
			t.Fatalf("set %s %d: state has %d", tc.attr, tc.v, got)
		}
		// The corrupted state is what a restart would find on disk.
		if len(acts) != 1 {
			t.Fatalf("set %s: want one PersistSafety, got %v", tc.attr, acts)
		}
		ps, ok := acts[0].(core.PersistSafety)
		if !ok || ps.State.HighestVoteRound != cr.SafetyState().HighestVoteRound || ps.State.HighestQCRound != cr.SafetyState().HighestQCRound {
			t.Fatalf("set %s: persisted %+v, state %+v", tc.attr, acts[0], cr.SafetyState())
		}
	}
}

func TestSetAttrLeader(t *testing.T) {
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: 93, mode: leader.RoundRobin})
	cr := c.cores[3]
	r := cr.CurrentRound()
	if _, err := cr.SetAttr(core.AttrLeader, 3); err != nil {
		t.Fatal(err)
	}
	if got := cr.Leader(r); got != 3 {
		t.Fatalf("leader of round %d is %d, want 3", r, got)
	}
	if got := c.cores[0].Leader(r); got == 3 && r/2%4 != 3 {
		t.Fatalf("set_attr on replica 3 changed replica 0's election")
	}
	if got := cr.Leader(r + 1); got != types.ReplicaID((r+1)/2%4) {
		t.Fatalf("leader of round %d is %d: only the current round should be fixed", r+1, got)
	}
	if _, err := cr.SetAttr(core.AttrLeader, 4); err == nil {
		t.Fatal("leader 4 of 4 replicas accepted")
	}
	if _, err := cr.SetAttr("colour", 1); !errors.Is(err, core.ErrUnknownAttr) {
		t.Fatalf("unknown attribute: err %v", err)
	}
}

// TestSetAttrOnOneReplicaKeepsOthersSafeAndLive: corrupting any attribute of
// f replicas, mid-run, neither splits the ledgers nor stops the others from
// committing.
func TestSetAttrOnOneReplicaKeepsOthersSafeAndLive(t *testing.T) {
	for i, tc := range []struct {
		attr string
		v    uint64
	}{
		{core.AttrCurrentRound, 200},
		{core.AttrCurrentRound, 1},
		{core.AttrHighestVoteRound, 0},
		{core.AttrHighestVoteRound, 500},
		{core.AttrHighestQCRound, 500},
		{core.AttrLeader, 3},
		{core.AttrLeader, 0},
	} {
		t.Run(fmt.Sprintf("%s=%d", tc.attr, tc.v), func(t *testing.T) {
			for _, m := range modes {
				const bad = types.ReplicaID(3)
				c := newCluster(t, clusterOpts{n: 4, f: 1, seed: int64(100 + i), mode: m.mode, maxRequests: 4})
				keys := c.submitN(12)
				if !c.run(c.allCommitted(keys), 10*time.Second) {
					c.fatalf("warm-up not committed")
				}
				acts, err := c.cores[bad].SetAttr(tc.attr, tc.v)
				if err != nil {
					t.Fatal(err)
				}
				c.handle(bad, acts)
				keys = append(keys, c.submitN(30)...)
				honest := func() bool {
					for id := range c.cores {
						if types.ReplicaID(id) == bad {
							continue
						}
						got := c.committedRequests(id)
						for _, k := range keys {
							if got[k] == 0 {
								return false
							}
						}
					}
					return true
				}
				if !c.run(honest, c.now+60*time.Second) {
					c.fatalf("%s: honest replicas did not commit every request after set %s = %d", m.name, tc.attr, tc.v)
				}
				c.checkAgreement()
			}
		})
	}
}
