package core_test

import (
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// largeRequest makes the next signed request of client i, as large as a
// replica accepts: operations of types.MaxOpBytes up to
// types.MaxRequestBytes.
func (c *cluster) largeRequest(i int) *types.Request {
	k := c.clientKeys[i]
	r := &types.Request{Client: k.Public().(ed25519.PublicKey), Seq: c.nextSeq[i], Sig: make([]byte, ed25519.SignatureSize)}
	for {
		pre := fmt.Sprintf("put('k%d-%d','", i, len(r.Ops))
		op := pre + strings.Repeat("v", types.MaxOpBytes-len(pre)-2) + "')"
		if r.EncodedSize()+types.OpEncodedSize(op) > types.MaxRequestBytes {
			break
		}
		r.Ops = append(r.Ops, op)
	}
	c.nextSeq[i] += uint64(len(r.Ops))
	if !c.opts.noCrypto {
		r.Sig = ed25519.Sign(k, r.SignBytes(chainID))
	}
	return r
}

// TestLargeRequestsFillBlocksWithinTheWireLimit: with a mempool full of the
// largest requests replicas accept, every proposal a leader builds encodes
// within wire.MaxMessageSize, and everything commits. Before the byte
// budget, the leader took all of them (block.max_requests counts
// operations) and could not encode its proposal: every round ended in a
// TC (network audit). Block sync answers carry such blocks too: at least
// one per answer, whatever its size.
func TestLargeRequestsFillBlocksWithinTheWireLimit(t *testing.T) {
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: 71, mode: leader.RoundRobin, maxRequests: 100_000})
	var proposals, largest int
	c.observe = func(id types.ReplicaID, acts []core.Action) {
		for _, a := range acts {
			if p, ok := a.(core.BroadcastProposal); ok {
				data, err := wire.Encode(p.Proposal)
				if err != nil {
					c.fatalf("replica %d: proposal %s with %d requests: %v", id, p.Proposal.Block.Round, len(p.Proposal.Block.Payload), err)
				}
				proposals++
				largest = max(largest, len(data))
			}
		}
	}
	var keys []types.RequestKey
	const n = 10
	for i := range n {
		r := c.largeRequest(i % len(c.clientKeys))
		keys = append(keys, r.Key())
		c.submit(r)
	}
	if !c.run(c.allCommitted(keys), 30*time.Second) {
		c.fatalf("large requests not committed")
	}
	c.checkAgreement()
	tcs := uint64(0)
	for _, cr := range c.cores {
		tcs += cr.Stats.TCs
	}
	if tcs != 0 {
		c.fatalf("%d TCs: rounds failed", tcs)
	}
	t.Logf("%d requests of %d bytes in %d proposals, the largest %d bytes", n, types.MaxRequestBytes, proposals, largest)
	// Several requests per block, not one each: the budget is used.
	var full *types.Block
	for _, cm := range c.committed[0] {
		if full == nil || len(cm.Block.Payload) > len(full.Payload) {
			full = cm.Block
		}
	}
	if len(full.Payload) < 3 {
		c.fatalf("at most %d large requests per block", len(full.Payload))
	}

	// Block sync: a backward answer from the fullest block and a forward
	// answer after its parent each carry that block (over the answers'
	// 2 MiB cap alone) and encode within the limit.
	for _, req := range []*types.BlockRequest{{ID: full.ID, Count: 100}, {ID: full.ParentID(), Count: 100, Forward: true}} {
		acts := c.cores[1].OnBlockRequest(2, req)
		resp := acts[0].(core.SendBlockResponse).Response
		if len(resp.Blocks) == 0 || resp.Blocks[len(resp.Blocks)-1].ID != full.ID && resp.Blocks[0].ID != full.ID {
			c.fatalf("forward %v: the answer of %d blocks lacks the full block", req.Forward, len(resp.Blocks))
		}
		data, err := wire.Encode(resp)
		if err != nil {
			c.fatalf("forward %v: answer of %d blocks: %v", req.Forward, len(resp.Blocks), err)
		}
		if err := c.com.VerifyBlockResponse(resp); err != nil {
			c.fatalf("forward %v: %v", req.Forward, err)
		}
		t.Logf("forward %v: %d blocks, %d bytes", req.Forward, len(resp.Blocks), len(data))
	}
}

// TestSmallRequestsBlocksUnchanged: the byte budget does not change the
// blocks of ordinary requests: block.max_requests still decides.
func TestSmallRequestsBlocksUnchanged(t *testing.T) {
	c := newCluster(t, clusterOpts{n: 4, f: 1, seed: 72, mode: leader.RoundRobin, maxRequests: 1000})
	keys := c.submitN(2500)
	if !c.run(c.allCommitted(keys), 30*time.Second) {
		c.fatalf("not committed")
	}
	most := 0
	for _, cm := range c.committed[0] {
		most = max(most, len(cm.Block.Payload))
	}
	if most != 1000 {
		c.fatalf("largest block of %d requests, want max_requests (1000)", most)
	}
}
