package core_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/ledger"
	"github.com/diembft/diembft/protocol/types"
)

const syncOrphanCap = 64 // the orphan cap of the forward-sync tests (the default is 10,000)

// cutOff isolates replica lag (both directions) until the others have
// committed `behind` more blocks, with requests in some of them, and returns
// the request keys submitted so far.
func (c *cluster) cutOff(lag types.ReplicaID, behind int) []types.RequestKey {
	c.tb.Helper()
	keys := c.submitN(3)
	if !c.run(c.allCommitted(keys), c.now+10*time.Second) {
		c.fatalf("warm-up requests not committed")
	}
	h0 := c.height(int(lag))
	c.drop = func(e envelope) bool { return e.to == lag || e.from == lag }
	for step := 1; step <= 4; step++ {
		keys = append(keys, c.submitN(5)...)
		if !c.run(func() bool { return c.height(0) >= h0+step*behind/4 }, c.now+10*time.Minute) {
			c.fatalf("the others reached only height %d", c.height(0))
		}
	}
	if c.height(int(lag)) != h0 {
		c.fatalf("replica %d committed while cut off", lag)
	}
	return keys
}

// watchMemory records the most orphans and pending blocks replica lag held
// after any step.
func (c *cluster) watchMemory(lag types.ReplicaID, orphans, pending *int) {
	c.observe = func(id types.ReplicaID, _ []core.Action) {
		if id != lag {
			return
		}
		*orphans = max(*orphans, c.cores[lag].Orphans())
		*pending = max(*pending, len(c.cores[lag].PendingBlocks()))
	}
}

// TestForwardSyncFarBehind: a replica cut off while the others commit far
// more blocks than its orphan cap (1,000 blocks, cap 64) rejoins, syncs
// forward from its committed root and reaches the same ledger, holding at
// most cap orphans and cap+100 pending blocks at any time. Before forward
// sync it stalled: the backward walk hit the cap before reaching its tree.
func TestForwardSyncFarBehind(t *testing.T) {
	const behind = 1000
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			const seed, lag = 91, types.ReplicaID(2)
			c := newCluster(t, clusterOpts{n: 4, f: 1, seed: seed, mode: m.mode, maxRequests: 2, maxOrphans: syncOrphanCap})
			var orphans, pending int
			c.watchMemory(lag, &orphans, &pending)
			keys := c.cutOff(lag, behind)
			h0, target, t0 := c.height(int(lag)), c.height(0), c.now
			c.drop = nil
			keys = append(keys, c.submitN(3)...)
			if !c.run(func() bool { return c.allCommitted(keys)() && c.height(int(lag)) >= target }, c.now+time.Minute) {
				c.fatalf("replica %d at height %d, others at %d (sync %+v)", lag, c.height(int(lag)), c.height(0), c.cores[lag].SyncStats())
			}
			st := c.cores[lag].SyncStats()
			t.Logf("replica %d caught up %d blocks in %v virtual time: %+v; at most %d orphans and %d pending blocks",
				lag, c.height(int(lag))-h0, c.now-t0, st, orphans, pending)
			if st.Syncs == 0 || st.Blocks < uint64(target-h0)/2 {
				c.fatalf("replica %d did not sync forward: %+v", lag, st)
			}
			if orphans > syncOrphanCap || pending > syncOrphanCap+100 {
				c.fatalf("replica %d held %d orphans and %d pending blocks (cap %d)", lag, orphans, pending, syncOrphanCap)
			}
			if c.cores[lag].Syncing() {
				c.fatalf("replica %d still syncing after catching up", lag)
			}
			c.checkAgreement()
		})
	}
}

// TestForwardSyncAfterOrphanCap: a backward walk that reaches the orphan
// cap switches to forward sync from the root instead of stalling. The walk
// is started directly here; in a running cluster the commit QC that every
// message carries starts forward sync before (TestForwardSyncFarBehind),
// so this path is for a replica that learns of a long chain without a
// recent commit QC.
func TestForwardSyncAfterOrphanCap(t *testing.T) {
	const seed, cap = 92, 10
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: seed, mode: leader.RoundRobin})
	if !c.run(func() bool { return c.height(0) >= 150 }, time.Minute) {
		c.fatalf("the cluster reached only height %d", c.height(0))
	}
	c.deliverAll()
	led := ledger.NewMemory()
	fresh := core.New(core.Config{
		ID: 3, Committee: &types.Committee{ChainID: chainID, F: 1, Keys: c.com.Keys}, Signer: fixedSigner{},
		Pacemaker: pmConfig, Election: leader.RoundRobin, MaxRequests: 10, IdleProposeDelay: 50 * time.Millisecond,
		Ledger: led, MaxOrphans: cap,
	})
	queue := fresh.FetchBlock(c.cores[0].HighQC().BlockID(), 0)
	most, forward := 0, 0
	for steps := 0; len(queue) > 0; steps++ {
		if steps > 1000 {
			c.fatalf("the fetches do not end")
		}
		req, ok := queue[0].(core.SendBlockRequest)
		queue = queue[1:]
		if !ok {
			continue
		}
		if req.Request.Forward {
			forward++
		}
		for _, a := range c.cores[req.To].OnBlockRequest(3, req.Request) {
			resp := a.(core.SendBlockResponse).Response
			if err := c.com.VerifyBlockResponse(resp); err != nil {
				c.fatalf("response does not verify: %v", err)
			}
			queue = append(queue, fresh.OnBlockResponse(req.To, resp)...)
			most = max(most, fresh.Orphans())
		}
	}
	if most > cap {
		c.fatalf("%d orphans held, cap %d", most, cap)
	}
	if forward == 0 || fresh.SyncStats().Syncs != 1 {
		c.fatalf("no forward sync after the cap: %d forward requests, %+v", forward, fresh.SyncStats())
	}
	// It committed the first batch, each block proven by the QCs after it.
	ref := c.leds[0].Chain()
	if led.Height() < 90 {
		c.fatalf("committed only %d blocks", led.Height())
	}
	for h, b := range led.Chain() {
		if b.ID != ref[h].ID {
			c.fatalf("committed another block at height %d", h)
		}
	}
}

// TestForwardSyncRefusesForgedQC: the first forward responses to the
// lagging replica are forged on the way: a block's QC gets a signature that
// is not its signer's, a commit state the signers never signed, or one
// signer counted twice, while block ids and parent links stay intact (block
// ids do not cover QC signatures). The committee check every driver runs
// before the core must refuse each of them, so the forged chain is never
// executed; the replica then catches up from the honest answers of the
// retries. A verified chain that does not start at the block asked about is
// ignored by the core.
func TestForwardSyncRefusesForgedQC(t *testing.T) {
	const seed, lag = 93, types.ReplicaID(3)
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: seed, mode: leader.RoundRobin, maxOrphans: syncOrphanCap})
	keys := c.cutOff(lag, 300)
	h0 := c.height(int(lag))

	forgeries := []struct {
		name  string
		forge func(q *types.QC)
		want  error
	}{
		{"signature of another message", func(q *types.QC) {
			q.Signatures[0].Sig = append([]byte(nil), q.Signatures[1].Sig...)
		}, types.ErrInvalidSignature},
		{"commit state never signed", func(q *types.QC) {
			q.LedgerCommitInfo.CommitStateID = types.Hash{0xc0, 0xff, 0xee}
		}, types.ErrInvalidSignature},
		{"one signer twice", func(q *types.QC) {
			q.Signatures[1] = q.Signatures[0]
		}, nil}, // any error: a quorum of distinct signers is missing
	}
	forged, shifted := 0, false
	c.drop = func(e envelope) bool {
		resp, ok := e.msg.(*types.BlockResponse)
		if !ok || e.to != lag || !c.cores[lag].Syncing() || len(resp.Blocks) < 4 {
			return false
		}
		if forged < len(forgeries) {
			fg := forgeries[forged]
			forged++
			bad := &types.BlockResponse{Blocks: append([]types.Block(nil), resp.Blocks...)}
			k := len(bad.Blocks) / 2
			qc := *bad.Blocks[k].QC
			qc.Signatures = append([]types.PartialSig(nil), qc.Signatures...)
			fg.forge(&qc)
			bad.Blocks[k].QC = &qc
			if bad.Blocks[k].ComputeID() != resp.Blocks[k].ID {
				c.fatalf("%s: the forgery changed the block id", fg.name)
			}
			err := c.com.VerifyBlockResponse(bad)
			if err == nil || (fg.want != nil && !errors.Is(err, fg.want)) {
				c.fatalf("%s: VerifyBlockResponse = %v, want %v", fg.name, err, fg.want)
			}
			return true // refused: the core never sees it
		}
		if !shifted {
			// Well formed and verified, but its oldest block is not the
			// child of the block asked about: the core must not take it.
			shifted = true
			part := &types.BlockResponse{Blocks: resp.Blocks[:len(resp.Blocks)-1]}
			if err := c.com.VerifyBlockResponse(part); err != nil {
				c.fatalf("truncated response does not verify: %v", err)
			}
			ignored, height := c.cores[lag].SyncStats().Ignored, c.height(int(lag))
			c.handle(lag, c.cores[lag].OnBlockResponse(e.from, part))
			if c.cores[lag].SyncStats().Ignored != ignored+1 || c.height(int(lag)) != height {
				c.fatalf("a response not starting at the block asked about was taken")
			}
		}
		return false
	}
	keys = append(keys, c.submitN(3)...)
	if !c.run(func() bool { return c.allCommitted(keys)() && c.height(int(lag)) >= h0+300 }, c.now+2*time.Minute) {
		c.fatalf("replica %d at height %d, others at %d (sync %+v)", lag, c.height(int(lag)), c.height(0), c.cores[lag].SyncStats())
	}
	if forged != len(forgeries) || !shifted {
		c.fatalf("forged %d responses, shifted %v", forged, shifted)
	}
	st := c.cores[lag].SyncStats()
	if st.Timeouts < uint64(len(forgeries)) {
		c.fatalf("%d refused responses but %d sync timeouts: %+v", len(forgeries), st.Timeouts, st)
	}
	t.Log(fmt.Sprintf("sync after %d refused forgeries: %+v", forged, st))
	c.checkAgreement()
}
