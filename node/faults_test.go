package node

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/diembft/diembft/node/fault"
	"github.com/diembft/diembft/olympus/config"
	"github.com/diembft/diembft/protocol/core"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/types"
)

// startFaultCluster is startCluster with the failures of a config fragment
// injected (faults.json in each home, as Olympus writes it), and a
// round-robin election so that tests know who leads.
func startFaultCluster(t *testing.T, seed int64, failures string) *cluster {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf("seed = %d\n%s", seed, failures)), "faults.toml")
	if err != nil {
		t.Fatal(err)
	}
	spec := fault.SpecFromConfig(cfg)
	c := newCluster(t, 1)
	for i, home := range c.homes {
		if err := fault.WriteSpec(home, spec); err != nil {
			t.Fatal(err)
		}
		inj, err := fault.Open(home, i)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { inj.Close() })
		c.cfgs[i].Params.Election = leader.RoundRobin
		c.cfgs[i].Faults = inj
	}
	c.startAll(t)
	return c
}

func (c *cluster) fired(t *testing.T) map[int]int {
	t.Helper()
	var logs [][]fault.Record
	for _, h := range c.homes {
		recs, err := fault.ReadLog(h)
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, recs)
	}
	return fault.Fired(logs...)
}

// commitAll submits requests and waits until the client accepted them all
// and the honest replicas' ledgers are equal.
func commitAll(t *testing.T, c *cluster, honest []int, count int) {
	t.Helper()
	tc := newTestClient(t, c)
	for i := uint64(1); i <= uint64(count); i++ {
		tc.submit(i, fmt.Sprintf("put('k%d','v%d')", i%3, i))
	}
	waitFor(t, "all requests accepted", 40*time.Second, func() bool {
		for i := uint64(1); i <= uint64(count); i++ {
			if _, ok := tc.accepted(i); !ok {
				return false
			}
		}
		return true
	})
	waitFor(t, "honest ledgers equal", 20*time.Second, func() bool {
		var ref []byte
		for k, i := range honest {
			data, _ := os.ReadFile(filepath.Join(c.homes[i], LedgerFile(types.ReplicaID(i))))
			if k == 0 {
				ref = data
			} else if string(data) != string(ref) {
				return false
			}
		}
		return len(ref) > 0
	})
}

// TestEquivocatingLeader: replica 1 sends two proposals, one per half of
// the others, in every round it leads; the honest replicas commit every
// request and agree, through the direct protocol's validation.
func TestEquivocatingLeader(t *testing.T) {
	c := startFaultCluster(t, 5, "[[failures]]\ntype = \"equivocate\"\nsrc = 1\nrounds = \"1..60\"\n")
	commitAll(t, c, []int{0, 2, 3}, 20)
	if f := c.fired(t); f[0] == 0 {
		t.Fatalf("replica 1 never equivocated: %v", f)
	}
}

// TestMessageFaultsAndPartition: a leader's proposals never reach replica 2
// (sent point to point to the others), votes are delayed and duplicated,
// and replica 3 is cut off for a while; everything commits, on every replica.
func TestMessageFaultsAndPartition(t *testing.T) {
	c := startFaultCluster(t, 6, "[[failures]]\ntype = \"drop\"\nsrc = \"leader\"\ndest = 2\nmsg = \"proposal\"\nrounds = \"1..12\"\n"+
		"[[failures]]\ntype = \"delay\"\nmsg = \"vote\"\nval = 20\nprob = 0.5\n"+
		"[[failures]]\ntype = \"duplicate\"\nmsg = \"vote\"\nprob = 0.5\n"+
		"[[failures]]\ntype = \"partition\"\ngroup = [3]\nduration_ms = 1500\n")
	commitAll(t, c, []int{0, 1, 2, 3}, 30)
	f := c.fired(t)
	for i := range 4 {
		if f[i] == 0 {
			t.Fatalf("failure %d never fired: %v", i, f)
		}
	}
}

// TestSetAttrLeaderProposalReachesTheHead: a set_attr leader makes the
// replica propose at once in a step without a new round; a step that
// proposes or votes publishes its head as one that moves does, so the
// proposed block reaches the block store's head (a restart would otherwise
// fetch it back).
func TestSetAttrLeaderProposalReachesTheHead(t *testing.T) {
	fx := newValFixture(t, nil)
	fx.r.apply(fx.r.core.Start())
	req := fx.request(1, "put('k','v')", "test")
	if _, err := fx.r.core.OnRequest(&req); err != nil {
		t.Fatal(err)
	}
	fx.r.head.Store(nil)
	fx.r.carry([]fault.Effect{{Type: fault.TypeSetAttr, Attr: core.AttrLeader, Val: uint64(fx.r.cfg.ID)}})
	h := fx.r.head.Load()
	if h == nil {
		t.Fatal("no head published after the set_attr leader step")
	}
	for _, b := range h.pending {
		if b.Author == fx.r.cfg.ID && len(b.Payload) == 1 {
			return
		}
	}
	t.Fatalf("the head's %d pending blocks lack the block the replica proposed", len(h.pending))
}
