package core_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/types"
)

var modes = []struct {
	name string
	mode leader.Mode
}{{"round-robin", leader.RoundRobin}, {"reputation", leader.Reputation}}

// submitN submits n requests round-robin over the clients and returns their keys.
func (c *cluster) submitN(n int) []types.RequestKey {
	var keys []types.RequestKey
	for i := range n {
		r := c.request(i % len(c.clientKeys))
		keys = append(keys, r.Key())
		c.submit(r)
	}
	return keys
}

func TestAllReplicasCommitSameBlocks(t *testing.T) {
	for _, m := range modes {
		for _, size := range []struct{ n, f int }{{4, 1}, {7, 2}} {
			t.Run(fmt.Sprintf("%s/n=%d", m.name, size.n), func(t *testing.T) {
				for seed := int64(1); seed <= 3; seed++ {
					c := newCluster(t, clusterOpts{n: size.n, f: size.f, seed: seed, mode: m.mode, maxRequests: 4})
					keys := c.submitN(40)
					if !c.run(c.allCommitted(keys), 30*time.Second) {
						c.fatalf("not all requests committed by %v: heights %d..%d", c.now, c.minHeight(), c.height(0))
					}
					// A second wave after the first has drained.
					keys = append(keys, c.submitN(15)...)
					if !c.run(c.allCommitted(keys), c.now+30*time.Second) {
						c.fatalf("second wave not committed")
					}
					c.checkAgreement()
					for i := range c.cores {
						got := c.committedRequests(i)
						for _, k := range keys {
							if got[k] != 1 {
								c.fatalf("replica %d committed request %d %d times", i, k.Seq, got[k])
							}
						}
						if len(got) != len(keys) {
							c.fatalf("replica %d committed %d requests, %d were submitted", i, len(got), len(keys))
						}
						if p := c.cores[i].PendingRequests(); p != 0 {
							c.fatalf("replica %d still holds %d requests", i, p)
						}
					}
					for i, cr := range c.cores {
						if cr.Stats.StaleOrWrongLeader != 0 || cr.Stats.VotesRefused != 0 || cr.Stats.TCs != 0 || cr.Stats.Fetches != 0 {
							c.fatalf("replica %d: fault-free run had %+v", i, cr.Stats)
						}
					}
				}
			})
		}
	}
}

// TestIdleClusterCommitsEmptyBlocks: with no requests at all, leaders
// propose empty blocks every IdleProposeDelay, and the 2-chain rule commits
// them like any other block; otherwise the pending tree, the vote buckets and
// the round-timer backoff grow without bound until the first request.
func TestIdleClusterCommitsEmptyBlocks(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			c := newCluster(t, clusterOpts{n: 4, f: 1, seed: 11, mode: m.mode})
			c.run(func() bool { return c.minHeight() >= 5 }, 3*time.Second)
			if c.minHeight() < 5 {
				c.fatalf("idle cluster reached round %d in %v but committed only %d blocks", c.cores[0].CurrentRound(), c.now, c.minHeight())
			}
			c.checkAgreement()
		})
	}
}

// TestCommitsAfterFirstRequestAreContinuous: once the state is not the zero
// hash, empty blocks commit too and every round with a proposal eventually
// commits.
func TestCommitsAfterFirstRequestAreContinuous(t *testing.T) {
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: 12, mode: leader.Reputation})
	keys := c.submitN(1)
	if !c.run(c.allCommitted(keys), 5*time.Second) {
		c.fatalf("request not committed")
	}
	h := c.minHeight()
	c.run(func() bool { return c.minHeight() >= h+20 }, c.now+10*time.Second)
	if c.minHeight() < h+20 {
		c.fatalf("only %d blocks committed after the first request", c.minHeight()-h)
	}
	c.checkAgreement()
	// Steady state: every round commits one block, a commit trails by two rounds.
	for i, cr := range c.cores {
		last := c.committed[i][len(c.committed[i])-1].Block.Round
		if cr.CurrentRound() > last+3 {
			c.fatalf("replica %d in round %d, last commit round %d", i, cr.CurrentRound(), last)
		}
	}
}

func TestPersistBeforeSend(t *testing.T) {
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: 21, mode: leader.RoundRobin})
	lists, votes, timeouts := 0, 0, 0
	c.observe = func(id types.ReplicaID, acts []core.Action) {
		var persisted *core.PersistSafety
		for i, a := range acts {
			switch a := a.(type) {
			case core.PersistSafety:
				persisted = &a
			case core.SendVote:
				votes++
				if persisted == nil || persisted.State.LastVote == nil || persisted.State.LastVote.VoteInfo != a.Vote.Vote.VoteInfo {
					t.Fatalf("seed 21: replica %d action %d: SendVote round %d without a preceding PersistSafety of it", id, i, a.Vote.Vote.VoteInfo.Round)
				}
				if persisted.Block == nil || persisted.Block.ID != a.Vote.Vote.VoteInfo.ID {
					t.Fatalf("seed 21: replica %d action %d: SendVote round %d: the PersistSafety before it does not carry the voted block", id, i, a.Vote.Vote.VoteInfo.Round)
				}
			case core.BroadcastTimeout:
				timeouts++
				if persisted == nil || persisted.State.LastTimeout == nil || persisted.State.LastTimeout.Round != a.Timeout.Timeout.Round {
					t.Fatalf("seed 21: replica %d action %d: BroadcastTimeout round %d without a preceding PersistSafety of it", id, i, a.Timeout.Timeout.Round)
				}
			}
		}
		lists++
	}
	keys := c.submitN(10)
	c.run(c.allCommitted(keys), 10*time.Second)
	// Force timeouts too.
	c.fireRoundTimers()
	c.run(func() bool { return false }, c.now+2*time.Second)
	if votes == 0 || timeouts == 0 || c.checkedOut == 0 {
		t.Fatalf("seed 21: checked %d votes and %d timeouts", votes, timeouts)
	}
	c.checkAgreement()
}

// TestRoundTimeoutFormsTC: votes of one round are lost, so every replica sits
// in that round; firing the round timers yields timeouts from all, a TC, a
// proposal carrying it as LastTC, and commits afterwards.
func TestRoundTimeoutFormsTC(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			const seed = 31
			c := newCluster(t, clusterOpts{n: 4, f: 1, seed: seed, mode: m.mode, maxRequests: 2})
			keys := c.submitN(6)
			if !c.run(c.allCommitted(keys), 10*time.Second) {
				c.fatalf("warm-up requests not committed")
			}
			// Lose the votes of the next proposal.
			c.drop = func(e envelope) bool { _, vote := e.msg.(*types.VoteMsg); return vote }
			more := c.submitN(4)
			c.deliverAll()
			c.drop = nil
			r := c.cores[0].CurrentRound()
			for i, cr := range c.cores {
				if cr.CurrentRound() != r {
					c.fatalf("replica %d in round %d, replica 0 in %d", i, cr.CurrentRound(), r)
				}
			}
			heightBefore := c.minHeight()
			// The leader of round r+1 as chosen before the TC: it lost
			// round r's votes (they went to it).
			aggregator, leaderR := c.cores[0].Leader(r+1), c.cores[0].Leader(r)

			var timeouts []*types.TimeoutMsg
			var tcProposal *types.Proposal
			byTC := 0
			c.observe = func(id types.ReplicaID, acts []core.Action) {
				for _, a := range acts {
					switch a := a.(type) {
					case core.BroadcastTimeout:
						timeouts = append(timeouts, a.Timeout)
					case core.BroadcastProposal:
						if tcProposal == nil {
							tcProposal = a.Proposal
						}
					case core.NewRound:
						if a.ByTC && a.Round == r+1 {
							byTC++
						}
					}
				}
			}
			c.fireRoundTimers()
			c.deliverAll()
			senders := map[types.ReplicaID]bool{}
			for _, tm := range timeouts {
				if tm.Timeout.Round != r {
					c.fatalf("timeout for round %d, expected %d", tm.Timeout.Round, r)
				}
				senders[tm.Timeout.Sender] = true
			}
			if len(senders) != 4 {
				c.fatalf("timeouts from %d replicas", len(senders))
			}
			tcs := 0
			for i, cr := range c.cores {
				tcs += int(cr.Stats.TCs)
				if cr.CurrentRound() <= r {
					c.fatalf("replica %d still in round %d after the TC", i, cr.CurrentRound())
				}
			}
			if tcs == 0 || byTC != 4 {
				c.fatalf("%d TCs formed, %d replicas entered round %d by TC", tcs, byTC, r+1)
			}
			// Every replica holds a TC of round r and no QC: they agree on
			// the leader of round r+1. With reputation election it is
			// neither round r's leader nor its vote aggregator (leader.go,
			// "after a timeout"); round-robin keeps ⌊(r+1)/2⌋ mod n.
			nextLeader := c.cores[0].Leader(r + 1)
			for i, cr := range c.cores {
				if cr.Leader(r+1) != nextLeader {
					c.fatalf("replicas 0 and %d disagree on the leader of round %d", i, r+1)
				}
			}
			if m.mode == leader.Reputation && (nextLeader == aggregator || nextLeader == leaderR) {
				c.fatalf("after the TC of round %d, round %d is led by %d (leader of round %d %d, aggregator %d)", r, r+1, nextLeader, r, leaderR, aggregator)
			}
			if m.mode == leader.RoundRobin && nextLeader != aggregator {
				c.fatalf("round-robin: the TC changed the leader of round %d from %d to %d", r+1, aggregator, nextLeader)
			}
			if tcProposal == nil {
				// Nothing urgent to propose: the leader waits IdleProposeDelay.
				c.run(func() bool { return tcProposal != nil }, c.now+time.Second)
			}
			if tcProposal == nil {
				c.fatalf("no proposal after the TC")
			}
			b := tcProposal.Block
			if b.Round != r+1 || tcProposal.LastTC == nil || tcProposal.LastTC.Round != r {
				c.fatalf("proposal of round %d carries last TC %+v", b.Round, tcProposal.LastTC)
			}
			if b.Author != nextLeader {
				c.fatalf("proposal by %d, leader of round %d is %d", b.Author, r+1, nextLeader)
			}
			if b.QC.Round() != r-1 || tcProposal.LastTC.MaxHighQCRound() != r-1 {
				c.fatalf("block of round %d extends QC %d; TC high QC %d", b.Round, b.QC.Round(), tcProposal.LastTC.MaxHighQCRound())
			}
			c.observe = nil
			if !c.run(c.allCommitted(append(keys, more...)), c.now+10*time.Second) {
				c.fatalf("requests not committed after the TC")
			}
			if c.minHeight() <= heightBefore {
				c.fatalf("no commit after the TC")
			}
			c.checkAgreement()
		})
	}
}

// TestLaggingReplicaCatchesUp: a replica misses every message for several
// rounds, then catches up through block fetches and commits the same blocks.
func TestLaggingReplicaCatchesUp(t *testing.T) {
	for _, m := range modes {
		for _, lag := range []types.ReplicaID{1, 3} {
			t.Run(fmt.Sprintf("%s/replica=%d", m.name, lag), func(t *testing.T) {
				for seed := int64(41); seed <= 43; seed++ {
					c := newCluster(t, clusterOpts{n: 4, f: 1, seed: seed, mode: m.mode, maxRequests: 2})
					keys := c.submitN(4)
					if !c.run(c.allCommitted(keys), 10*time.Second) {
						c.fatalf("warm-up requests not committed")
					}
					h0 := c.height(int(lag))
					c.drop = func(e envelope) bool { return e.to == lag }
					keys = append(keys, c.submitN(20)...)
					others := func() bool {
						for i := range c.cores {
							if types.ReplicaID(i) != lag && c.height(i) < h0+8 {
								return false
							}
						}
						return true
					}
					if !c.run(others, c.now+20*time.Second) {
						c.fatalf("the others did not commit without replica %d", lag)
					}
					if c.height(int(lag)) != h0 {
						c.fatalf("replica %d committed while cut off", lag)
					}
					c.drop = nil
					if !c.run(c.allCommitted(keys), c.now+20*time.Second) {
						c.fatalf("replica %d did not catch up: height %d, others %d", lag, c.height(int(lag)), c.height(0))
					}
					if c.cores[lag].Stats.Fetches == 0 {
						c.fatalf("replica %d caught up without fetching", lag)
					}
					c.checkAgreement()
					if c.height(int(lag)) < h0+8 {
						c.fatalf("replica %d at height %d", lag, c.height(int(lag)))
					}
				}
			})
		}
	}
}

// TestUnsolicitedBlockResponseIgnored: a block response whose top block was
// not asked for changes nothing; the same blocks are accepted once asked for.
func TestUnsolicitedBlockResponseIgnored(t *testing.T) {
	const seed = 51
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: seed, mode: leader.RoundRobin})
	keys := c.submitN(6)
	if !c.run(c.allCommitted(keys), 10*time.Second) {
		c.fatalf("requests not committed")
	}
	c.deliverAll()
	// A fresh replica 3 (restarted with an empty ledger) knows only genesis.
	fresh := newCluster(t, clusterOpts{n: 4, f: 1, seed: seed, mode: leader.RoundRobin}).cores[3]
	var blocks []types.Block
	for _, cm := range c.committed[0] {
		blocks = append([]types.Block{*cm.Block}, blocks...)
	}
	resp := &types.BlockResponse{Blocks: blocks}
	if err := c.com.VerifyBlockResponse(resp); err != nil {
		c.fatalf("response does not verify: %v", err)
	}
	if acts := fresh.OnBlockResponse(0, resp); len(acts) != 0 {
		c.fatalf("unsolicited response produced %d actions", len(acts))
	}
	for _, b := range blocks {
		if _, ok := fresh.Block(b.ID); ok {
			c.fatalf("unsolicited block of round %d was inserted", b.Round)
		}
	}
	if fresh.Ledger().Height() != 0 || fresh.Stats.Committed != 0 {
		c.fatalf("unsolicited response committed blocks")
	}
	// Also an answer to a question never asked, with a valid top block that
	// is the child of a block we hold (genesis): ignored all the same.
	if acts := fresh.OnBlockResponse(0, &types.BlockResponse{Blocks: blocks[len(blocks)-1:]}); len(acts) != 0 {
		c.fatalf("unsolicited single-block response produced actions")
	}
	if fresh.OnBlockResponse(0, &types.BlockResponse{}) != nil {
		c.fatalf("empty response produced actions")
	}

	// Now the fresh replica sees the newest QC in a proposal and asks for the
	// blocks it lacks; the answers are taken.
	top := c.cores[0].HighQC()
	p := &types.Proposal{Block: types.Block{Author: c.cores[0].Leader(top.Round() + 1), Round: top.Round() + 1, QC: top}}
	p.Block.ID = p.Block.ComputeID()
	pending := fresh.OnProposal(p)
	var answer *types.BlockResponse
	for len(pending) > 0 {
		a := pending[0]
		pending = pending[1:]
		r, ok := a.(core.SendBlockRequest)
		if !ok {
			continue
		}
		for _, b := range c.cores[0].OnBlockRequest(3, r.Request) {
			answer = b.(core.SendBlockResponse).Response
			if len(answer.Blocks) == 0 || answer.Blocks[0].ID != r.Request.ID {
				c.fatalf("replica 0 did not answer the request for %v", r.Request.ID)
			}
			if err := c.com.VerifyBlockResponse(answer); err != nil {
				c.fatalf("answer does not verify: %v", err)
			}
			pending = append(pending, fresh.OnBlockResponse(0, answer)...)
		}
	}
	if answer == nil {
		c.fatalf("fresh replica asked for nothing")
	}
	for _, id := range []types.Hash{top.BlockID(), top.VoteInfo.ParentID} {
		if _, ok := fresh.Block(id); !ok {
			c.fatalf("solicited block %v not inserted", id)
		}
	}
	if fresh.Ledger().Height() == 0 || fresh.Ledger().Last().ID != top.VoteInfo.ParentID {
		c.fatalf("fresh replica did not commit up to the high QC's parent (height %d)", fresh.Ledger().Height())
	}
	// The same response again is now unsolicited.
	if acts := fresh.OnBlockResponse(0, answer); acts != nil {
		c.fatalf("repeated response produced actions")
	}
}

func TestOnBlockRequest(t *testing.T) {
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: 61, mode: leader.RoundRobin})
	keys := c.submitN(8)
	if !c.run(c.allCommitted(keys), 10*time.Second) {
		c.fatalf("requests not committed")
	}
	top := c.cores[1].HighQC().BlockID()
	cases := []struct {
		name  string
		count uint32
		id    types.Hash
		want  int
	}{
		{"one", 1, top, 1},
		{"three", 3, top, 3},
		{"down to genesis (exclusive)", 1000, top, -1},
		{"unknown", 5, types.Hash{9}, 0},
		{"zero", 0, top, 0},
	}
	for _, tc := range cases {
		acts := c.cores[1].OnBlockRequest(2, &types.BlockRequest{ID: tc.id, Count: tc.count})
		if len(acts) != 1 {
			c.fatalf("%s: %d actions", tc.name, len(acts))
		}
		a := acts[0].(core.SendBlockResponse)
		if a.To != 2 {
			c.fatalf("%s: answered %d", tc.name, a.To)
		}
		if err := c.com.VerifyBlockResponse(a.Response); err != nil {
			c.fatalf("%s: response does not verify: %v", tc.name, err)
		}
		got := a.Response.Blocks
		if tc.want >= 0 && len(got) != tc.want {
			c.fatalf("%s: %d blocks, want %d", tc.name, len(got), tc.want)
		}
		if tc.want < 0 && (len(got) == 0 || got[len(got)-1].ParentID() != types.GenesisID()) {
			c.fatalf("%s: response does not reach genesis", tc.name)
		}
		if len(got) > 0 && got[0].ID != tc.id {
			c.fatalf("%s: response starts at another block", tc.name)
		}
	}
}
