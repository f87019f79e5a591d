package client

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/node/kv"
	"github.com/diembft/diembft/p2p"
	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// TestOverLibp2p runs a client against four fake replicas on real libp2p
// hosts on 127.0.0.1: requests go out on streams the dial-only client opens,
// replies come back on them, and every accepted result matches the fake
// committee's sequential ledger.
func TestOverLibp2p(t *testing.T) {
	c := newCommittee(1)
	pid := p2p.ClientProtocol(testChain)
	ctx := context.Background()
	roster := Roster{Committee: c.com}
	for i := range c.keys {
		n, err := p2p.New(ctx, p2p.Config{AllowNonMembers: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		c.peers[i] = n.ID()
		n.Handle(pid, false, func(from peer.ID, data []byte) {
			req, err := wire.DecodeClientRequest(data)
			if err != nil || c.com.VerifyRequest(req) != nil {
				t.Errorf("replica %d: bad request: %v", i, err)
				return
			}
			n.Send(from, pid, c.replyBatch(i, i, req.Client, req.Seq, c.commit(req)))
		})
		roster.Replicas = append(roster.Replicas, Replica{ID: types.ReplicaID(i), Peer: n.AddrInfo()})
	}

	cn, err := p2p.New(ctx, p2p.Config{NoListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cn.Close() })
	var got []Result
	cl, err := NewP2P(cn, roster, Config{Concurrency: 4, Timeout: 2 * time.Second, OnAccept: func(r Result) { got = append(got, r) }})
	if err != nil {
		t.Fatal(err)
	}
	o := Repeat(ops(t, "put('k','v'); append('k','w'); get('k'); slice('k','1:'); get('k')"), 40)
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	sum, err := cl.Run(rctx, o)
	if err != nil {
		t.Fatalf("Run: %v (summary %+v)", err, sum)
	}
	if sum.Committed != len(o) {
		t.Fatalf("committed %d of %d", sum.Committed, len(o))
	}
	// Replay what the fake committee committed, in height order.
	byHeight := make([]string, len(o)+1)
	for _, r := range got {
		byHeight[r.Height] = r.Op.String()
	}
	store := kv.New()
	replayed := make([]string, len(o)+1)
	for h := 1; h <= len(o); h++ {
		op, err := kv.ParseOp(byHeight[h])
		if err != nil {
			t.Fatalf("height %d: %v", h, err)
		}
		replayed[h] = store.Apply(op)
	}
	for _, r := range got {
		if replayed[r.Height] != r.Result {
			t.Errorf("seq %d at height %d: accepted %q, replay gives %q", r.Seq, r.Height, r.Result, replayed[r.Height])
		}
	}
}
