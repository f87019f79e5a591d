package node

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/p2p"
	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// cluster starts n replicas on loopback in this process.
type cluster struct {
	com   *types.Committee
	nets  []*p2p.Node
	homes []string
	stop  []context.CancelFunc
	done  []chan error
	cfgs  []Config
	reps  []*Replica
	// prepare, if set, sees each replica after New and before Run.
	prepare func(i int, r *Replica)
}

func key(label string, i int) ed25519.PrivateKey {
	seed := sha256.Sum256(binary.BigEndian.AppendUint64([]byte(label), uint64(i)))
	return ed25519.NewKeyFromSeed(seed[:])
}

// testCommittee is the committee of 3f+1 test replicas, keyed by key("replica", i).
func testCommittee(f int) *types.Committee {
	com := &types.Committee{ChainID: "test", F: f}
	for i := range 3*f + 1 {
		com.Keys = append(com.Keys, key("replica", i).Public().(ed25519.PublicKey))
	}
	return com
}

func testParams() Params {
	return Params{Delta: 20 * time.Millisecond, RoundTimeout: 300 * time.Millisecond, Backoff: 1.2, BackoffCap: 4,
		Election: leader.Reputation, WindowSize: 5, ExcludeSize: 1, MaxRequests: 100}
}

func startCluster(t *testing.T, f int) *cluster {
	t.Helper()
	c := newCluster(t, f)
	c.startAll(t)
	return c
}

// startAll starts every replica of c (after any c.prepare hook is set).
func (c *cluster) startAll(t *testing.T) {
	t.Helper()
	for i := range c.nets {
		c.start(t, i)
	}
}

// newCluster sets up the hosts and homes of 3f+1 replicas without starting
// any (c.start starts one).
func newCluster(t *testing.T, f int) *cluster {
	t.Helper()
	c := &cluster{com: testCommittee(f)}
	var infos []peer.AddrInfo
	for range c.com.N() {
		net, err := p2p.New(context.Background(), p2p.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, AllowNonMembers: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { net.Close() })
		c.nets = append(c.nets, net)
		infos = append(infos, net.AddrInfo())
	}
	var peers []peer.ID
	for _, in := range infos {
		peers = append(peers, in.ID)
	}
	for i, net := range c.nets {
		net.SetMembers(infos)
		if err := net.StartPubSub(context.Background()); err != nil {
			t.Fatal(err)
		}
		home := t.TempDir()
		c.homes = append(c.homes, home)
		c.cfgs = append(c.cfgs, Config{ID: types.ReplicaID(i), Home: home, ConsensusKey: key("replica", i), Committee: c.com, Peers: peers, Params: testParams(), Net: net})
	}
	return c
}

func (c *cluster) start(t *testing.T, i int) {
	r, err := New(c.cfgs[i])
	if err != nil {
		t.Fatal(err)
	}
	if c.prepare != nil {
		c.prepare(i, r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for len(c.stop) <= i {
		c.stop = append(c.stop, nil)
		c.done = append(c.done, nil)
		c.reps = append(c.reps, nil)
	}
	c.reps[i] = r
	c.stop[i], c.done[i] = cancel, done
	t.Cleanup(func() { cancel(); <-done })
}

// halt stops replica i and waits until its Run returned.
func (c *cluster) halt(t *testing.T, i int) {
	t.Helper()
	c.stop[i]()
	err := <-c.done[i]
	c.done[i] <- err // for the cleanup
	if err != nil {
		t.Fatal(err)
	}
}

// testClient sends signed requests to every replica and collects replies.
type testClient struct {
	key     ed25519.PrivateKey
	net     *p2p.Node
	com     *types.Committee
	peers   []peer.ID
	mu      sync.Mutex
	replies map[uint64]map[types.ReplicaID]*types.ClientReply
	bad     int
}

func newTestClient(t *testing.T, c *cluster) *testClient {
	net, err := p2p.New(context.Background(), p2p.Config{NoListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { net.Close() })
	tc := &testClient{key: key("client", 0), net: net, com: c.com, replies: map[uint64]map[types.ReplicaID]*types.ClientReply{}}
	for _, n := range c.nets {
		tc.peers = append(tc.peers, n.ID())
		net.Host.Peerstore().AddAddrs(n.ID(), n.Host.Addrs(), time.Hour)
	}
	net.Handle(p2p.ClientProtocol(c.com.ChainID), false, func(from peer.ID, data []byte) {
		rp, err := wire.DecodeClientReply(data)
		if err != nil || int(rp.Replica) >= len(c.com.Keys) || c.com.VerifySig(rp.Replica, rp.SignBytes(c.com.ChainID), rp.Sig) != nil {
			tc.mu.Lock()
			tc.bad++
			tc.mu.Unlock()
			return
		}
		tc.mu.Lock()
		defer tc.mu.Unlock()
		if tc.replies[rp.Seq] == nil {
			tc.replies[rp.Seq] = map[types.ReplicaID]*types.ClientReply{}
		}
		tc.replies[rp.Seq][rp.Replica] = rp
	})
	return tc
}

func (tc *testClient) submit(seq uint64, op string) {
	r := &types.Request{Client: tc.key.Public().(ed25519.PublicKey), Seq: seq, Ops: []string{op}}
	r.Sig = ed25519.Sign(tc.key, r.SignBytes(tc.com.ChainID))
	data, _ := wire.Encode(r)
	for _, p := range tc.peers {
		tc.net.Send(p, p2p.ClientProtocol(tc.com.ChainID), data)
	}
}

// accepted returns the result of seq once f+1 replicas agree on it.
// submitAndWait sends put requests from..to and waits until f+1 replicas
// answered each of them alike.
func (tc *testClient) submitAndWait(t *testing.T, from, to uint64) {
	t.Helper()
	for i := from; i <= to; i++ {
		tc.submit(i, fmt.Sprintf("put('k%d','v%d')", i%5, i))
	}
	waitFor(t, fmt.Sprintf("requests %d..%d accepted", from, to), 60*time.Second, func() bool {
		for i := from; i <= to; i++ {
			if _, ok := tc.accepted(i); !ok {
				return false
			}
		}
		return true
	})
}

func (tc *testClient) accepted(seq uint64) (string, bool) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	count := map[string]int{}
	for _, rp := range tc.replies[seq] {
		k := fmt.Sprintf("%q@%v", rp.Results, rp.Heights)
		count[k]++
		if count[k] >= tc.com.F+1 {
			return rp.Results[0], true
		}
	}
	return "", false
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling an in-process condition, not waiting for progress by time
	}
}

func TestFourReplicasCommitOnLoopback(t *testing.T) {
	c := startCluster(t, 1)
	tc := newTestClient(t, c)
	const n = 50
	for i := uint64(1); i <= n; i++ {
		tc.submit(i, fmt.Sprintf("put('k%d','v%d')", i%5, i))
	}
	tc.submit(n+1, "get('k1')")
	waitFor(t, "all requests accepted", 30*time.Second, func() bool {
		for i := uint64(1); i <= n+1; i++ {
			if _, ok := tc.accepted(i); !ok {
				return false
			}
		}
		return true
	})
	if res, _ := tc.accepted(n + 1); res != "v46" {
		t.Fatalf("get returned %q, want v46", res)
	}
	// Every replica that has all requests has the same ledger.
	var ref []byte
	waitFor(t, "ledgers equal", 10*time.Second, func() bool {
		for i, h := range c.homes {
			data, _ := os.ReadFile(filepath.Join(h, LedgerFile(types.ReplicaID(i))))
			if i == 0 {
				ref = data
			} else if string(data) != string(ref) {
				return false
			}
		}
		return len(ref) > 0
	})
	// The disk syncs are counted where they happen: the safety file's
	// before votes, the ledger's per commit group, the block store's two
	// (bbolt's data and meta syncs) per chain transaction (never more than
	// one group or transaction per committed block, plus the one at close
	// that writes the committed blocks without ledger lines and the last
	// head: runCommitter's flush). Read once the replicas stopped: the
	// committer counts a group's commits after its syncs.
	for i, r := range c.reps {
		c.halt(t, i)
		files := r.syncFiles()
		safety, ledger, blocks := files["safety"].count(), files["ledger"].count(), files["blocks"].count()
		if committed := uint64(value(r.m.commits)); safety == 0 || ledger == 0 || blocks == 0 || ledger > committed || blocks > 2*(committed+1) {
			t.Errorf("replica %d: fsyncs safety %d, ledger %d, blocks %d for %d committed blocks", i, safety, ledger, blocks, committed)
		}
		// stats.json, written as Run returned, has them with their times.
		var st Stats
		if data, err := os.ReadFile(filepath.Join(c.homes[i], "stats.json")); err != nil || json.Unmarshal(data, &st) != nil {
			t.Fatalf("replica %d: stats.json: %v", i, err)
		}
		for file, f := range files {
			if got := st.FsyncFiles[file]; got.Count != f.count() || got.Seconds <= 0 || got.Seconds != f.seconds() {
				t.Errorf("replica %d: stats.json has %s syncs %+v, the replica counted %d in %.6f s", i, file, got, f.count(), f.seconds())
			}
		}
		if st.Fsyncs != safety+ledger+blocks {
			t.Errorf("replica %d: stats.json fsyncs %d, want %d", i, st.Fsyncs, safety+ledger+blocks)
		}
	}
}

// TestPostAfterRunReturnedDoesNotBlock: once Run has returned nothing takes
// from the loop's queues; a handler posting to a full queue then must not
// block (it would hold up the host's Close, which waits for its stream
// handlers, and so the replica's shutdown).
func TestPostAfterRunReturnedDoesNotBlock(t *testing.T) {
	c := newCluster(t, 1)
	c.start(t, 0)
	c.halt(t, 0)
	r := c.reps[0]
	for len(r.consensus) < cap(r.consensus) {
		r.consensus <- func() {}
	}
	posted := make(chan struct{})
	go func() {
		r.post(r.consensus, func() {})
		close(posted)
	}()
	select {
	case <-posted:
	case <-time.After(10 * time.Second):
		t.Fatal("post to a full queue blocked after Run returned")
	}
}

// TestNewClosesWhatItOpenedOnFailure: a start that fails half way (here a
// ledger damaged in place) leaves no file of the home open; before, the
// safety file stayed open on every failure after it.
func TestNewClosesWhatItOpenedOnFailure(t *testing.T) {
	home := t.TempDir()
	restartedWith(t, "not a ledger line\nnor this\n")(home)
	net, err := p2p.New(context.Background(), p2p.Config{NoListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { net.Close() })
	com := testCommittee(1)
	cfg := Config{ID: 3, Home: home, ConsensusKey: key("replica", 3), Committee: com, Peers: make([]peer.ID, com.N()), Params: testParams(), Net: net}
	fds := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(entries)
	}
	before := fds()
	for range 5 {
		if _, err := New(cfg); !errors.Is(err, ErrLedgerCorrupt) {
			t.Fatalf("New on a damaged ledger: %v, want ErrLedgerCorrupt", err)
		}
	}
	if after := fds(); after > before {
		t.Fatalf("%d descriptors open after five failed starts, %d before", after, before)
	}
}
