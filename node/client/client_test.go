package client

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/node/kv"
	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

const testChain = "client-test"

// committee is a fake committee at the network boundary: real consensus keys,
// fake peer ids, and a sequential KV store that plays the agreed ledger.
type committee struct {
	com   *types.Committee
	keys  []ed25519.PrivateKey
	peers []peer.ID

	mu     sync.Mutex
	store  *kv.Store
	ledger map[string]opAnswer // "client/seq" -> committed (result, height)
	height uint64
}

func newCommittee(f int) *committee {
	n := 3*f + 1
	c := &committee{com: &types.Committee{ChainID: testChain, F: f}, store: kv.New(), ledger: map[string]opAnswer{}}
	for i := range n {
		seed := make([]byte, ed25519.SeedSize)
		seed[0], seed[1] = 'r', byte(i)
		k := ed25519.NewKeyFromSeed(seed)
		c.keys = append(c.keys, k)
		c.com.Keys = append(c.com.Keys, k.Public().(ed25519.PublicKey))
		c.peers = append(c.peers, peer.ID(fmt.Sprintf("replica-%d", i)))
	}
	return c
}

func (c *committee) roster() Roster {
	r := Roster{Committee: c.com}
	for i, p := range c.peers {
		r.Replicas = append(r.Replicas, Replica{ID: types.ReplicaID(i), Peer: peer.AddrInfo{ID: p}})
	}
	return r
}

func (c *committee) index(p peer.ID) int {
	for i, q := range c.peers {
		if q == p {
			return i
		}
	}
	return -1
}

type opAnswer struct {
	result string
	height uint64
}

// verdict is the agreed answer to a request: one result and height per operation.
type verdict struct {
	results []string
	heights []uint64
}

// commit returns the agreed answer to req, committing each operation on
// first sight.
func (c *committee) commit(req *types.Request) verdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	var v verdict
	for i, text := range req.Ops {
		k := fmt.Sprintf("%x/%d", req.Client, req.Seq+uint64(i))
		a, ok := c.ledger[k]
		if !ok {
			op, err := kv.ParseOp(text)
			if err != nil {
				panic(err)
			}
			c.height++
			a = opAnswer{c.store.Apply(op), c.height}
			c.ledger[k] = a
		}
		v.results = append(v.results, a.result)
		v.heights = append(v.heights, a.height)
	}
	return v
}

// reply encodes a one-operation reply naming replica claimed, signed with
// signer's key.
func (c *committee) reply(signer, claimed int, client []byte, seq uint64, result string, height uint64) []byte {
	return c.replyBatch(signer, claimed, client, seq, verdict{[]string{result}, []uint64{height}})
}

// replyBatch encodes a reply to a request of len(v.results) operations.
func (c *committee) replyBatch(signer, claimed int, client []byte, seq uint64, v verdict) []byte {
	r := &types.ClientReply{Client: client, Seq: seq, Results: v.results, Heights: v.heights, Replica: types.ReplicaID(claimed)}
	r.Sig = ed25519.Sign(c.keys[signer], r.SignBytes(testChain))
	data, err := wire.Encode(r)
	if err != nil {
		panic(err)
	}
	return data
}

// sent is one transmission the client made.
type sent struct {
	to  peer.ID
	req *types.Request
}

// fakeTransport hands every transmission, decoded and signature-checked, to
// the test. drop, if set, decides which transmissions are lost.
type fakeTransport struct {
	t    *testing.T
	com  *types.Committee
	out  chan sent
	drop func(to peer.ID, req *types.Request) bool
}

func newTransport(t *testing.T, com *types.Committee) *fakeTransport {
	return &fakeTransport{t: t, com: com, out: make(chan sent, 1<<16)}
}

func (f *fakeTransport) Send(to peer.ID, data []byte) {
	req, err := wire.DecodeClientRequest(data)
	if err != nil {
		f.t.Errorf("client sent an undecodable request: %v", err)
		return
	}
	if err := f.com.VerifyRequest(req); err != nil {
		f.t.Errorf("client sent a badly signed request: %v", err)
		return
	}
	if f.drop != nil && f.drop(to, req) {
		return
	}
	f.out <- sent{to, req}
}

// serveHonestly answers every transmission from every replica, as an honest
// committee would, until ctx ends.
func serveHonestly(ctx context.Context, c *committee, tr *fakeTransport, cl *Client) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-tr.out:
			i := c.index(s.to)
			cl.Deliver(s.to, c.replyBatch(i, i, s.req.Client, s.req.Seq, c.commit(s.req)))
		}
	}
}

func ops(t *testing.T, spec string) []kv.Op {
	t.Helper()
	o, err := kv.ParseOps(spec)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func runClient(t *testing.T, cl *Client, o []kv.Op) Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sum, err := cl.Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v (summary %+v)", err, sum)
	}
	return sum
}

func TestAcceptsAfterFPlusOneMatchingReplies(t *testing.T) {
	c := newCommittee(1)
	tr := newTransport(t, c.com)
	var got []Result
	cl, err := New(c.roster(), tr, Config{Concurrency: 2, OnAccept: func(r Result) { got = append(got, r) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go serveHonestly(ctx, c, tr, cl)

	sum := runClient(t, cl, ops(t, "put('movie','star'); append('movie',' wars'); get('movie'); slice('x','0:1')"))
	if sum.Committed != 4 || sum.Submitted != 4 || len(sum.Latencies) != 4 {
		t.Fatalf("summary %+v, want 4 submitted and committed", sum)
	}
	want := map[uint64]string{1: "OK", 2: "OK", 3: "star wars", 4: "fail"}
	for _, r := range got {
		if r.Result != want[r.Seq] {
			t.Errorf("seq %d (%s): result %q, want %q", r.Seq, r.Op, r.Result, want[r.Seq])
		}
		if r.Height == 0 || r.Sends != 1 {
			t.Errorf("seq %d: height %d, sends %d", r.Seq, r.Height, r.Sends)
		}
	}
	if st := cl.Stats(); st.BadSignature != 0 || st.Retransmissions != 0 || st.Sent != 4 {
		t.Errorf("stats %+v", st)
	}
}

// TestLyingReplicaCannotDecide: with f = 1, one replica that lies (validly
// signed), replays its lie, and forges another replica's reply cannot make the
// client accept its result; the honest f+1 decide.
func TestLyingReplicaCannotDecide(t *testing.T) {
	for _, lie := range []struct {
		name   string
		result string
		height uint64
	}{
		{"wrong result", "evil", 1},
		{"wrong height", "OK", 7},
	} {
		t.Run(lie.name, func(t *testing.T) {
			c := newCommittee(1)
			tr := newTransport(t, c.com)
			accepted := make(chan Result, 1)
			cl, err := New(c.roster(), tr, Config{OnAccept: func(r Result) { accepted <- r }})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan Summary, 1)
			go func() {
				sum, err := cl.Run(context.Background(), ops(t, "put('a','b')"))
				if err != nil {
					t.Errorf("Run: %v", err)
				}
				done <- sum
			}()
			req := (<-tr.out).req
			pub := req.Client
			// Everything Byzantine arrives first, so that if any of it
			// counted, the lie would reach f+1 = 2 before the honest
			// replies are processed (the queue is FIFO).
			cl.Deliver(c.peers[0], c.reply(0, 0, pub, 1, lie.result, lie.height)) // the liar's own vote
			cl.Deliver(c.peers[0], c.reply(0, 1, pub, 1, lie.result, lie.height)) // forged: claims replica 1
			cl.Deliver(c.peers[0], c.reply(0, 0, pub, 1, lie.result, lie.height)) // the same vote again
			cl.Deliver(c.peers[0], c.reply(0, 0, pub, 1, "other lie", 9))         // a second, different vote
			bad := c.reply(2, 2, pub, 1, lie.result, lie.height)
			bad[len(bad)-1] ^= 1                    // corrupt replica 2's signature
			cl.Deliver(c.peers[2], bad)             // invalid signature
			cl.Deliver(c.peers[3], []byte{7, 0xff}) // malformed
			cl.Deliver(c.peers[1], c.reply(1, 1, pub, 1, "OK", 1))
			cl.Deliver(c.peers[2], c.reply(2, 2, pub, 1, "OK", 1))

			r := <-accepted
			if r.Result != "OK" || r.Height != 1 {
				t.Fatalf("accepted (%q, %d), want the honest (\"OK\", 1)", r.Result, r.Height)
			}
			sum := <-done
			st := sum.Stats
			if st.BadSignature != 2 || st.Malformed != 1 || st.Conflicting != 1 || st.Replies != 5 {
				t.Errorf("stats %+v: want 2 bad signatures, 1 malformed, 1 conflicting, 5 valid replies", st)
			}
		})
	}
}

// TestLiarsAloneNeverDecide: f liars agreeing on a wrong answer stay below
// f+1 and the request stays in flight (here f = 2, n = 7).
func TestLiarsAloneNeverDecide(t *testing.T) {
	c := newCommittee(2)
	tr := newTransport(t, c.com)
	cl, err := New(c.roster(), tr, Config{OnAccept: func(r Result) { t.Errorf("accepted %+v", r) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := cl.Run(ctx, ops(t, "get('k')"))
		done <- err
	}()
	pub := (<-tr.out).req.Client
	cl.Deliver(c.peers[0], c.reply(0, 0, pub, 1, "evil", 1))
	cl.Deliver(c.peers[1], c.reply(1, 1, pub, 1, "evil", 1))
	cl.Deliver(c.peers[1], c.reply(1, 2, pub, 1, "evil", 1)) // forged third vote
	// A reply for another client, even correctly signed, is not ours.
	other := make([]byte, ed25519.PublicKeySize)
	cl.Deliver(c.peers[3], c.reply(3, 3, other, 1, "evil", 1))
	// An honest reply for another request (not in flight) is stale.
	cl.Deliver(c.peers[4], c.reply(4, 4, pub, 2, "", 1))
	// The queue is FIFO: once the honest marker reply below is counted,
	// everything before it has been processed.
	cl.Deliver(c.peers[5], c.reply(5, 5, pub, 1, "", 1))
	waitFor(t, func() bool { return cl.Stats().Replies == 3 && cl.Stats().Stale == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if st := cl.Stats(); st.BadSignature != 1 || st.WrongClient != 1 {
		t.Errorf("stats %+v: want 1 bad signature and 1 wrong client", st)
	}
}

// waitFor waits for cond on counters, which have no event to wait on.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRetransmitsWithDoublingTimeout(t *testing.T) {
	c := newCommittee(1)
	tr := newTransport(t, c.com)
	var mu sync.Mutex
	times := map[uint64][]time.Time{}
	tr.drop = func(to peer.ID, req *types.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if to == c.peers[0] {
			times[req.Seq] = append(times[req.Seq], time.Now())
		}
		return len(times[req.Seq]) <= 2 // lose the first two transmissions
	}
	var got []Result
	cl, err := New(c.roster(), tr, Config{Timeout: 20 * time.Millisecond, OnAccept: func(r Result) { got = append(got, r) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go serveHonestly(ctx, c, tr, cl)
	start := time.Now()
	sum := runClient(t, cl, ops(t, "put('a','b')"))
	if sum.Committed != 1 || got[0].Sends != 3 || sum.Stats.Retransmissions != 2 {
		t.Fatalf("summary %+v, result %+v: want one commit after 3 sends", sum, got)
	}
	mu.Lock()
	ts := times[1]
	mu.Unlock()
	// Measured from before Run started (the first deadline is set after
	// that): a retransmission can be recorded late on a busy machine but
	// never early, so only lower bounds are meaningful. Doubling puts the
	// second retransmission at 20+40 ms, not 20+20.
	if d1, d2 := ts[1].Sub(start), ts[2].Sub(start); d1 < 20*time.Millisecond || d2 < 60*time.Millisecond {
		t.Errorf("retransmitted %v then %v after the start, want at least 20ms then 60ms", d1, d2)
	}
	if got[0].Latency < 60*time.Millisecond {
		t.Errorf("latency %v does not count from the first transmission", got[0].Latency)
	}
}

func TestKeepsConcurrencyRequestsInFlight(t *testing.T) {
	c := newCommittee(1)
	tr := newTransport(t, c.com)
	cl, err := New(c.roster(), tr, Config{Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan Summary, 1)
	go func() {
		sum, err := cl.Run(context.Background(), Repeat(ops(t, "put('a','b'); get('a')"), 7))
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		done <- sum
	}()
	// Nothing is answered yet: exactly 3 requests go out, each to all 4.
	seen := map[uint64]int{}
	var pending []sent
	for range 3 * 4 {
		s := <-tr.out
		seen[s.req.Seq]++
		pending = append(pending, s)
	}
	if len(seen) != 3 || seen[1] != 4 || seen[2] != 4 || seen[3] != 4 {
		t.Fatalf("first transmissions %v, want seqs 1..3 to all 4 replicas", seen)
	}
	select {
	case s := <-tr.out:
		t.Fatalf("a fourth request (seq %d) went out with 3 unanswered", s.req.Seq)
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for _, s := range pending {
			tr.out <- s
		}
		serveHonestly(ctx, c, tr, cl)
	}()
	if sum := <-done; sum.Committed != 7 || sum.Total != 7 {
		t.Fatalf("summary %+v, want 7 committed", sum)
	}
}

func TestNewRejectsBadRoster(t *testing.T) {
	c := newCommittee(1)
	r := c.roster()
	r.Replicas = r.Replicas[:3]
	if _, err := New(r, newTransport(t, c.com), Config{}); !errors.Is(err, ErrBadRoster) {
		t.Errorf("3 replicas for 4 keys: %v", err)
	}
	r = c.roster()
	r.Replicas[1], r.Replicas[2] = r.Replicas[2], r.Replicas[1]
	if _, err := New(r, newTransport(t, c.com), Config{}); !errors.Is(err, ErrBadRoster) {
		t.Errorf("replicas out of order: %v", err)
	}
}

func TestPercentileAndRepeat(t *testing.T) {
	var xs []float64
	for i := 100; i >= 1; i-- {
		xs = append(xs, float64(i))
	}
	if p50, p99, p100 := Percentile(xs, 50), Percentile(xs, 99), Percentile(xs, 100); p50 != 50 || p99 != 99 || p100 != 100 {
		t.Errorf("percentiles %v %v %v", p50, p99, p100)
	}
	if xs[0] != 100 {
		t.Error("Percentile sorted its input")
	}
	if Percentile([]float64{}, 50) != 0 || Percentile([]float64{7}, 99) != 7 {
		t.Error("edge cases")
	}
	o := ops(t, "get('a'); get('b')")
	if r := Repeat(o, 5); len(r) != 5 || r[4] != o[0] || r[3] != o[1] {
		t.Errorf("Repeat = %v", r)
	}
	if r := Repeat(o, 1); len(r) != 1 {
		t.Errorf("Repeat(1) = %v", r)
	}
}

func TestKeyFile(t *testing.T) {
	path := t.TempDir() + "/sub/client.key"
	k1, created, err := LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("create: %v, created %v", err, created)
	}
	k2, created, err := LoadOrCreateKey(path)
	if err != nil || created || !k1.Equal(k2) {
		t.Fatalf("reload: %v, created %v, same %v", err, created, k1.Equal(k2))
	}
	if _, err := ParseKey([]byte(hex.EncodeToString(k1) + "\n")); err != nil {
		t.Errorf("64-byte private key: %v", err)
	}
	// A seed with a public key that is not its own: the last byte flipped
	// (appending "00" instead was its own key whenever that byte was 0: a
	// failure in 1 of 256 runs).
	pub := slices.Clone(k1.Public().(ed25519.PublicKey))
	pub[31] ^= 1
	for _, bad := range []string{"zz", "abcd", hex.EncodeToString(append(k1.Seed()[:32:32], pub...))} {
		if _, err := ParseKey([]byte(bad)); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

// TestBatchesOperationsUnderOneSignature: with Batch 4 and 8 operations in
// flight, 10 operations go out as requests of at most 4 (each signed once,
// checked by the transport), every operation gets its own result, sequence
// number and height, and a reply whose result count does not match its
// request is not counted.
func TestBatchesOperationsUnderOneSignature(t *testing.T) {
	c := newCommittee(1)
	tr := newTransport(t, c.com)
	var got []Result
	cl, err := New(c.roster(), tr, Config{Concurrency: 8, Batch: 4, OnAccept: func(r Result) { got = append(got, r) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sizes []int
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-tr.out:
				i := c.index(s.to)
				if i == 0 {
					sizes = append(sizes, len(s.req.Ops))
				}
				v := c.commit(s.req)
				// A short answer first: not counted, and not a vote.
				short := verdict{v.results[:len(v.results)-1], v.heights[:len(v.heights)-1]}
				if len(short.results) > 0 {
					cl.Deliver(s.to, c.replyBatch(i, i, s.req.Client, s.req.Seq, short))
				}
				cl.Deliver(s.to, c.replyBatch(i, i, s.req.Client, s.req.Seq, v))
			}
		}
	}()
	spec := "put('a','1'); put('b','2'); append('a','x'); get('a'); get('b'); put('c','3'); append('c','y'); get('c'); get('zz'); put('a','z')"
	sum := runClient(t, cl, ops(t, spec))
	cancel()
	if sum.Committed != 10 || len(got) != 10 {
		t.Fatalf("summary %+v, %d accepted; want 10", sum, len(got))
	}
	want := map[uint64]string{1: "OK", 2: "OK", 3: "OK", 4: "1x", 5: "2", 6: "OK", 7: "OK", 8: "3y", 9: "", 10: "OK"}
	heights := map[uint64]bool{}
	for _, r := range got {
		if r.Result != want[r.Seq] {
			t.Errorf("seq %d (%s): result %q, want %q", r.Seq, r.Op, r.Result, want[r.Seq])
		}
		if heights[r.Height] || r.Height == 0 || r.Height > 10 {
			t.Errorf("seq %d: height %d repeated or out of range", r.Seq, r.Height)
		}
		heights[r.Height] = true
	}
	if st := cl.Stats(); st.Sent != 3 || st.Malformed == 0 {
		t.Errorf("stats %+v: want 3 requests sent (4+4+2 operations) and the short replies counted as malformed", st)
	}
	for _, n := range sizes {
		if n > 4 {
			t.Errorf("a request carried %d operations, above the batch of 4", n)
		}
	}
}

// TestSeqsInFlightSpanLessThanReplyWindow: a request left unanswered holds
// back new ones once the seqs in flight would span types.ReplyWindow, so
// that the replicas still keep its result when it is retransmitted
// (node/executor.go keeps the results of the ReplyWindow seqs below a
// client's highest executed one).
func TestSeqsInFlightSpanLessThanReplyWindow(t *testing.T) {
	c := newCommittee(1)
	tr := newTransport(t, c.com)
	// 50 ms, not less: the requests other than seq 1 are answered at once,
	// but under -race on a loaded machine signing and checking them took
	// over 20 ms (the timeout until 2026-12-06), and 3,334 of 4,146 sends
	// were retransmissions, which loaded the machine further.
	cl, err := New(c.roster(), tr, Config{Concurrency: 16, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// 4,096+ signed requests and their replies: 7.5 s under the race
	// detector at load 6.6 (with the 20 ms timeout ~50 s, and past 60 s on
	// a loaded machine).
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	go func() {
		// Seq 1 is lost until it is retransmitted after seq ReplyWindow
		// went out (its retransmission timeout has then grown to ~1 s).
		full, released := false, false
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-tr.out:
				if s.req.Seq+uint64(len(s.req.Ops))-1 >= 1+types.ReplyWindow && !released {
					t.Errorf("seq %d sent while seq 1 is in flight (window %d)", s.req.Seq, types.ReplyWindow)
				}
				if s.req.Seq == types.ReplyWindow {
					full = true
				}
				if s.req.Seq == 1 && !released {
					if released = full; !released {
						continue
					}
				}
				i := c.index(s.to)
				cl.Deliver(s.to, c.replyBatch(i, i, s.req.Client, s.req.Seq, c.commit(s.req)))
			}
		}
	}()
	sum, err := cl.Run(ctx, Repeat(ops(t, "put('a','b')"), types.ReplyWindow+50))
	if err != nil || sum.Committed != types.ReplyWindow+50 {
		t.Fatalf("Run: %v, %d committed", err, sum.Committed)
	}
}

// TestBatchesSplitAtMaxRequestBytes: operations whose batch would encode
// over types.MaxRequestBytes go out as several requests, each within the
// bound (the transport verifies each as a replica does, size included),
// and all are accepted; each request but the last is filled. Before, a batch of 1,024 large operations made one
// request of several MB, which the leaders could not put in a block.
func TestBatchesSplitAtMaxRequestBytes(t *testing.T) {
	c := newCommittee(1)
	tr := newTransport(t, c.com)
	// No retransmission: under -race on a loaded machine, encoding and
	// verifying a request of 1 MB takes a while.
	cl, err := New(c.roster(), tr, Config{Concurrency: types.MaxOpsPerRequest, Batch: types.MaxOpsPerRequest, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var sizes []int
	var ops int
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-tr.out:
				i := c.index(s.to)
				if i == 0 {
					mu.Lock()
					sizes = append(sizes, s.req.EncodedSize())
					ops += len(s.req.Ops)
					mu.Unlock()
				}
				cl.Deliver(s.to, c.replyBatch(i, i, s.req.Client, s.req.Seq, c.commit(s.req)))
			}
		}
	}()
	// Values of kv.MaxValueSize, all quotes (escaped: two bytes each), so
	// that 200 operations take 1.2 MB.
	var work []kv.Op
	for i := range 200 {
		work = append(work, kv.Op{Kind: kv.Put, Key: fmt.Sprintf("k%d", i), Val: strings.Repeat("'", kv.MaxValueSize)})
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer rcancel()
	sum, err := cl.Run(rctx, work)
	cancel()
	if err != nil || sum.Committed != len(work) {
		t.Fatalf("Run: %v, %d of %d committed", err, sum.Committed, len(work))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) < 2 {
		t.Fatalf("%d requests (%v bytes): want the 1,000 operations split", len(sizes), sizes)
	}
	for _, n := range sizes {
		if n > types.MaxRequestBytes {
			t.Errorf("a request of %d bytes, above types.MaxRequestBytes", n)
		}
		if n < types.MaxRequestBytes/2 && n != sizes[len(sizes)-1] {
			t.Errorf("a request of only %d bytes: batches not filled", n)
		}
	}
	t.Logf("%d operations in %d requests of %v bytes", ops, len(sizes), sizes)
}

// TestRefusesOperationOverMaxOpBytes: an operation whose text exceeds
// types.MaxOpBytes (the audit's 4 MB put) makes Run fail before anything
// is sent, with an error wrapping types.ErrOpTooLarge that names the
// operation; one at the bound is sent.
func TestRefusesOperationOverMaxOpBytes(t *testing.T) {
	c := newCommittee(1)
	tr := newTransport(t, c.com)
	cl, err := New(c.roster(), tr, Config{})
	if err != nil {
		t.Fatal(err)
	}
	big := kv.Op{Kind: kv.Put, Key: "big", Val: strings.Repeat("x", types.MaxOpBytes)}
	_, err = cl.Run(context.Background(), []kv.Op{{Kind: kv.Get, Key: "k"}, big})
	if !errors.Is(err, types.ErrOpTooLarge) || !strings.Contains(err.Error(), "operation 2: operation too large: put('big','xxx") {
		t.Fatalf("Run = %v, want types.ErrOpTooLarge naming operation 2", err)
	}
	if len(tr.out) != 0 || cl.Stats().Sent != 0 {
		t.Fatalf("%d transmissions before the refusal", len(tr.out))
	}
	if err := CheckOps([]kv.Op{{Kind: kv.Put, Key: "k", Val: strings.Repeat("x", types.MaxOpBytes-len("put('k','')"))}}); err != nil {
		t.Fatalf("an operation of exactly types.MaxOpBytes refused: %v", err)
	}
}
