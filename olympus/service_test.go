package olympus

import (
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/p2p"
	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// waitLimit bounds every wait for an event; nothing sleeps a fixed time.
const waitLimit = 20 * time.Second

func newNode(t *testing.T, key crypto.PrivKey) *p2p.Node {
	t.Helper()
	n, err := p2p.New(context.Background(), p2p.Config{HostKey: key, AllowNonMembers: true})
	if err != nil {
		t.Fatalf("p2p.New: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// olympusFixture is an Olympus service on 127.0.0.1 for committee c.
type olympusFixture struct {
	c    *committee
	svc  *Service
	addr string // pinned TCP multiaddr
}

func startOlympus(t *testing.T, n, f int) *olympusFixture {
	t.Helper()
	c := newCommittee(t, n, f)
	node := newNode(t, c.olympusKey)
	svc, err := NewService(node, c.olympusKey, c.roster)
	if err != nil {
		t.Fatal(err)
	}
	return &olympusFixture{c: c, svc: svc, addr: PreferredAddr(svc.Addrs())}
}

// register makes member id's host, registers it and reports it ready.
func (o *olympusFixture) register(t *testing.T, ctx context.Context, id int) *p2p.Node {
	t.Helper()
	n := newNode(t, o.c.hostKeys[id])
	if err := Register(ctx, n, o.addr, Registration{ID: types.ReplicaID(id), Addrs: addrStrings(n)}); err != nil {
		t.Fatalf("Register %d: %v", id, err)
	}
	if err := ReportReady(ctx, n, o.addr, types.ReplicaID(id)); err != nil {
		t.Fatalf("ReportReady %d: %v", id, err)
	}
	return n
}

func addrStrings(n *p2p.Node) []string {
	var out []string
	for _, a := range n.Addrs() {
		out = append(out, a.String())
	}
	return out
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

func TestRegisterAndFetchRoster(t *testing.T) {
	o := startOlympus(t, 4, 1)
	ctx := testCtx(t)
	for id := range 3 {
		o.register(t, ctx, id)
	}

	// Not ready yet: the raw reply says how many registered.
	client := newNode(t, nil)
	info, _ := p2p.ParsePinned(o.addr)
	req, _ := wire.EncodeAs(codeGetRoster, &getRosterMsg{})
	reply, err := client.Request(ctx, info, p2p.OlympusProtocol, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := replyError(reply); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "not ready (3 of 4 registered)") {
		t.Fatalf("GetRoster before all registered: %v", err)
	}
	if k, n := o.svc.Registered(); k != 3 || n != 4 {
		t.Fatalf("Registered = %d of %d", k, n)
	}
	if o.svc.Roster() != nil {
		t.Fatal("Roster() before everyone registered")
	}

	// FetchRoster waits (retrying) until the last member registers.
	type result struct {
		r   *Roster
		err error
	}
	done := make(chan result, 1)
	before := o.svc.notReadyReplies.Load()
	go func() {
		r, err := FetchRoster(ctx, client, o.addr)
		done <- result{r, err}
	}()
	// Let FetchRoster see "not ready" at least once before completing the
	// committee, so that the retry path is what this test exercises.
	waitFor(t, "FetchRoster to be told not ready", func() bool { return o.svc.notReadyReplies.Load() > before })
	last := o.register(t, ctx, 3)

	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("FetchRoster did not return")
	}
	if res.err != nil {
		t.Fatalf("FetchRoster: %v", res.err)
	}
	select {
	case <-o.svc.Ready():
	default:
		t.Fatal("Ready not closed after the roster was served")
	}
	r := res.r
	if err := r.Verify(o.c.olympusID); err != nil {
		t.Fatal(err)
	}
	if len(r.Members) != 4 || r.ChainID != "test" || r.F != 1 {
		t.Fatalf("roster: %d members, chain %q, f %d", len(r.Members), r.ChainID, r.F)
	}
	m3, _ := r.Members[3].AddrInfo()
	if m3.ID != last.ID() || len(m3.Addrs) != 2 {
		t.Fatalf("member 3 = %v, want peer %s with its 2 addresses", m3, last.ID())
	}
	for _, a := range r.Members[3].Addrs {
		if strings.Contains(a, "/p2p/") {
			t.Fatalf("registered address %q kept its /p2p suffix", a)
		}
	}

	// GetKey works for anyone.
	key, err := FetchKey(ctx, client, o.addr, 2)
	if err != nil || !key.Equal(o.c.consensus[2].Public()) {
		t.Fatalf("FetchKey(2) = %x, %v", key, err)
	}
	if _, err := FetchKey(ctx, client, o.addr, 9); !errors.Is(err, ErrRefused) {
		t.Fatalf("FetchKey(9): err = %v, want ErrRefused", err)
	}
}

func TestReRegisterNewAddressesResigns(t *testing.T) {
	o := startOlympus(t, 4, 1)
	ctx := testCtx(t)
	for id := range 4 {
		o.register(t, ctx, id)
	}
	client := newNode(t, nil)
	r1, err := FetchRoster(ctx, client, o.addr)
	if err != nil {
		t.Fatal(err)
	}
	// Replica 1 restarts on other ports.
	n1 := newNode(t, o.c.hostKeys[1])
	if err := Register(ctx, n1, o.addr, Registration{ID: 1, Addrs: addrStrings(n1)}); err != nil {
		t.Fatal(err)
	}
	r2, err := FetchRoster(ctx, client, o.addr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(r1.Members[1].Addrs, ",") == strings.Join(r2.Members[1].Addrs, ",") {
		t.Fatal("roster still has the old addresses of replica 1")
	}
}

func TestRegisterFromWrongPeerRefused(t *testing.T) {
	o := startOlympus(t, 4, 1)
	ctx := testCtx(t)
	// An outsider claims to be replica 1.
	intruder := newNode(t, nil)
	err := Register(ctx, intruder, o.addr, Registration{ID: 1, Addrs: addrStrings(intruder)})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("Register from the wrong peer: err = %v, want ErrRefused", err)
	}
	if !strings.Contains(err.Error(), "olympus "+o.addr+": refused: register replica 1") {
		t.Fatalf("error does not say what was refused: %v", err)
	}
	// Replica 2's host claims to be replica 1.
	n2 := newNode(t, o.c.hostKeys[2])
	if err := Register(ctx, n2, o.addr, Registration{ID: 1, Addrs: addrStrings(n2)}); !errors.Is(err, ErrRefused) {
		t.Fatalf("member registering as another: err = %v, want ErrRefused", err)
	}
	// Unknown id, and an address naming another peer.
	if err := Register(ctx, n2, o.addr, Registration{ID: 7, Addrs: addrStrings(n2)}); !errors.Is(err, ErrRefused) {
		t.Fatalf("unknown id: err = %v, want ErrRefused", err)
	}
	foreign := addrStrings(n2)[0][:strings.Index(addrStrings(n2)[0], "/p2p/")] + "/p2p/" + intruder.ID().String()
	if err := Register(ctx, n2, o.addr, Registration{ID: 2, Addrs: []string{foreign}}); !errors.Is(err, ErrRefused) {
		t.Fatalf("address naming another peer: err = %v, want ErrRefused", err)
	}
	if err := Register(ctx, n2, o.addr, Registration{ID: 2, Addrs: []string{"/ip4/0.0.0.0/tcp/9102"}}); !errors.Is(err, ErrRefused) ||
		!strings.Contains(err.Error(), "no dialable address") {
		t.Fatalf("unspecified address only: err = %v, want ErrRefused", err)
	}
	// Replica 2's own host, but its home is of another committee.
	if err := Register(ctx, n2, o.addr, Registration{ID: 2, Addrs: addrStrings(n2), ChainID: "other"}); !errors.Is(err, ErrRefused) ||
		!strings.Contains(err.Error(), `its home is for chain "other", this committee is "test"`) {
		t.Fatalf("another chain: err = %v, want ErrRefused naming both chains", err)
	}
	if err := Register(ctx, n2, o.addr, Registration{ID: 2, Addrs: addrStrings(n2), ChainID: "test", ConsensusKey: o.c.consensus[1].Public().(ed25519.PublicKey)}); !errors.Is(err, ErrRefused) ||
		!strings.Contains(err.Error(), "consensus key is not the one the committee lists") {
		t.Fatalf("another consensus key: err = %v, want ErrRefused", err)
	}
	if k, _ := o.svc.Registered(); k != 0 {
		t.Fatalf("%d registered after refusals only", k)
	}
	if n := o.svc.Refused(); n != 7 {
		t.Fatalf("%d refusals counted, want the 7 above", n)
	}
	if err := Register(ctx, n2, o.addr, Registration{ID: 2, Addrs: addrStrings(n2), ChainID: "test", ConsensusKey: o.c.consensus[2].Public().(ed25519.PublicKey)}); err != nil {
		t.Fatalf("replica 2 with its own chain and key: %v", err)
	}
}

func TestFetchRosterWrongPinnedPeer(t *testing.T) {
	o := startOlympus(t, 4, 1)
	ctx := testCtx(t)
	for id := range 4 {
		o.register(t, ctx, id)
	}
	// Olympus's address with somebody else's peer id.
	impostor, _, _ := crypto.GenerateEd25519Key(nil)
	impostorID, _ := peer.IDFromPrivateKey(impostor)
	wrong := o.addr[:strings.Index(o.addr, "/p2p/")] + "/p2p/" + impostorID.String()

	client := newNode(t, nil)
	start := time.Now()
	r, err := FetchRoster(ctx, client, wrong)
	if err == nil {
		t.Fatalf("FetchRoster with the wrong pinned peer id returned a roster of %d", len(r.Members))
	}
	if !errors.Is(err, ErrWrongPeer) {
		t.Fatalf("err = %v, want ErrWrongPeer", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("FetchRoster retried until the deadline instead of refusing (%v)", time.Since(start))
	}
	if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "olympus "+wrong+": ") {
		t.Fatalf("error is not one line naming the address: %q", err)
	}

	// A roster signed by the real Olympus does not verify under another pin.
	good, err := FetchRoster(ctx, client, o.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := good.Verify(impostorID); !errors.Is(err, ErrBadRosterSignature) {
		t.Fatalf("Verify under another pin: %v", err)
	}
}

func TestFetchRosterUnreachable(t *testing.T) {
	// An address nobody listens on: a closed node's.
	key, _, _ := crypto.GenerateEd25519Key(nil)
	gone, err := p2p.New(context.Background(), p2p.Config{HostKey: key, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	addr := fullAddrs(gone)[0]
	_ = gone.Close()

	client := newNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	_, err = FetchRoster(ctx, client, addr)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "olympus "+addr+": unreachable: ") || strings.Contains(msg, "\n") {
		t.Fatalf("error is not one line of the form \"olympus <addr>: unreachable: ...\": %q", msg)
	}
	if !strings.Contains(msg, "connection refused") {
		t.Errorf("error does not give the cause: %q", msg)
	}

	// Not pinned: refused at once.
	if _, err := FetchRoster(ctx, client, "/ip4/127.0.0.1/tcp/9000"); err == nil || !strings.Contains(err.Error(), "/p2p/") {
		t.Fatalf("unpinned address: %v", err)
	}
}

// waitFor re-checks cond on a short ticker until it holds, failing after
// waitLimit. It is for counters, which have no event to wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// rawRoster asks for the roster once, from n, and returns the error reply
// (nil when the roster came).
func (o *olympusFixture) rawRoster(t *testing.T, ctx context.Context, n *p2p.Node) error {
	t.Helper()
	info, _ := p2p.ParsePinned(o.addr)
	req, _ := wire.EncodeAs(codeGetRoster, &getRosterMsg{})
	reply, err := n.Request(ctx, info, p2p.OlympusProtocol, req)
	if err != nil {
		t.Fatal(err)
	}
	return replyError(reply)
}

// TestClientsGetTheRosterOnceEveryReplicaAcceptsRequests: the members get
// the roster as soon as all have registered (they need it to start), a
// client only once every member reported Ready; Ready comes only from the
// member's own host, after it registered.
func TestClientsGetTheRosterOnceEveryReplicaAcceptsRequests(t *testing.T) {
	o := startOlympus(t, 4, 1)
	ctx := testCtx(t)
	var members []*p2p.Node
	for id := range 4 {
		n := newNode(t, o.c.hostKeys[id])
		members = append(members, n)
		if id == 3 {
			// Ready before registering is refused.
			if err := ReportReady(ctx, n, o.addr, 3); !errors.Is(err, ErrRefused) {
				t.Fatalf("ready before register: %v, want ErrRefused", err)
			}
		}
		if err := Register(ctx, n, o.addr, Registration{ID: types.ReplicaID(id), Addrs: addrStrings(n)}); err != nil {
			t.Fatal(err)
		}
	}
	client := newNode(t, nil)
	if err := o.rawRoster(t, ctx, members[2]); err != nil {
		t.Fatalf("a member asking once all registered: %v", err)
	}
	if err := o.rawRoster(t, ctx, client); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "not ready (0 of 4 replicas accept requests)") {
		t.Fatalf("a client asking before any replica is ready: %v", err)
	}
	// Replica 2's host cannot report replica 1 ready, nor can a client.
	for _, n := range []*p2p.Node{members[2], client} {
		if err := ReportReady(ctx, n, o.addr, 1); !errors.Is(err, ErrRefused) {
			t.Fatalf("ready for replica 1 from another host: %v, want ErrRefused", err)
		}
	}
	for id := range 3 {
		if err := ReportReady(ctx, members[id], o.addr, types.ReplicaID(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.rawRoster(t, ctx, client); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "(3 of 4 replicas accept requests)") {
		t.Fatalf("a client asking with one replica not ready: %v", err)
	}
	select {
	case <-o.svc.Serving():
		t.Fatal("Serving closed with one replica not ready")
	default:
	}
	done := make(chan error, 1)
	go func() {
		_, err := FetchRoster(ctx, client, o.addr)
		done <- err
	}()
	if err := ReportReady(ctx, members[3], o.addr, 3); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("FetchRoster once every replica is ready: %v", err)
	}
	<-o.svc.Serving()
}

// TestClientsGetTheRosterAfterTheGrace: a replica that registered but never
// reports Ready (it died starting) holds the clients back only for
// AcceptGrace.
func TestClientsGetTheRosterAfterTheGrace(t *testing.T) {
	o := startOlympus(t, 4, 1)
	o.svc.AcceptGrace = 300 * time.Millisecond
	ctx := testCtx(t)
	for id := range 3 {
		o.register(t, ctx, id)
	}
	n := newNode(t, o.c.hostKeys[3])
	if err := Register(ctx, n, o.addr, Registration{ID: 3, Addrs: addrStrings(n)}); err != nil {
		t.Fatal(err)
	}
	client := newNode(t, nil)
	start := time.Now()
	if _, err := FetchRoster(ctx, client, o.addr); err != nil {
		t.Fatalf("FetchRoster with a replica never ready: %v", err)
	}
	if waited := time.Since(start); waited < o.svc.AcceptGrace/2 {
		t.Fatalf("the roster came after %v, before the grace of %v", waited, o.svc.AcceptGrace)
	}
}

// TestReplicasReRegisterWithARestartedOlympus: Olympus keeps the
// registrations in memory; replicas renew theirs every period from their
// first registration on (KeepRegistered), so Olympus restarted on its home
// and address completes the roster of a committee still joining, and
// serves a running committee's roster again, to replicas and clients alike,
// with the replicas' addresses. Before, replicas registered only when they
// started: members still joining waited out their join timeout, and new
// clients were told "not ready (0 of 4 registered)" until every replica had
// restarted.
func TestReplicasReRegisterWithARestartedOlympus(t *testing.T) {
	dir := t.TempDir()
	if err := WriteTestnet(dir, TestnetOptions{Replicas: 4, ChainID: "restart-test"}); err != nil {
		t.Fatal(err)
	}
	home, err := LoadOlympusHome(filepath.Join(dir, OlympusDir))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := StartService(context.Background(), home, []string{"/ip4/127.0.0.1/tcp/0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := PreferredAddr(svc.Addrs())
	ctx := testCtx(t)
	renew, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 4)
	ready := make(chan struct{})
	var members []*p2p.Node
	for id := range 4 {
		h, err := LoadReplicaHome(filepath.Join(dir, ReplicaDir(types.ReplicaID(id))))
		if err != nil {
			t.Fatal(err)
		}
		n := newNode(t, h.HostKey)
		members = append(members, n)
		reg := Registration{ID: h.ID, Addrs: addrStrings(n), ChainID: h.ChainID, ConsensusKey: h.ConsensusKey.Public().(ed25519.PublicKey)}
		if id == 3 {
			break // replica 3 joins after the first restart
		}
		go func() { done <- KeepRegistered(renew, n, addr, reg, 100*time.Millisecond, ready) }()
	}
	waitFor(t, "three registrations", func() bool { k, _ := svc.Registered(); return k == 3 })

	// Restarted while the committee is still joining: the replicas that
	// registered before renew, so the last one to join completes the roster.
	svc.Close()
	listen := []string{strings.TrimSuffix(addr, "/p2p/"+home.PeerID().String())}
	if svc, err = StartService(context.Background(), home, listen); err != nil {
		t.Fatal(err)
	}
	h3, err := LoadReplicaHome(filepath.Join(dir, ReplicaDir(3)))
	if err != nil {
		t.Fatal(err)
	}
	reg3 := Registration{ID: 3, Addrs: addrStrings(members[3]), ChainID: h3.ChainID, ConsensusKey: h3.ConsensusKey.Public().(ed25519.PublicKey)}
	go func() { done <- KeepRegistered(renew, members[3], addr, reg3, 100*time.Millisecond, ready) }()
	if _, err := FetchRoster(ctx, members[0], addr); err != nil {
		t.Fatalf("a member after Olympus restarted during the join: %v", err)
	}
	close(ready)
	client := newNode(t, nil)
	before, err := FetchRoster(ctx, client, addr)
	if err != nil {
		t.Fatal(err)
	}
	svc.Close()

	// Restarted with the committee running.
	svc, err = StartService(context.Background(), home, listen)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	after, err := FetchRoster(ctx, client, addr)
	if err != nil {
		t.Fatalf("the restarted Olympus: %v", err)
	}
	for id := range 4 {
		if !slices.Equal(after.Members[id].Addrs, before.Members[id].Addrs) {
			t.Fatalf("replica %d: addresses %v after the restart, %v before", id, after.Members[id].Addrs, before.Members[id].Addrs)
		}
	}
	stop()
	for range 4 {
		if err := <-done; err != nil {
			t.Fatalf("KeepRegistered: %v", err)
		}
	}
}

// TestKeepRegisteredAfterARefusedReady: a Ready refused right after an
// accepted registration (Olympus restarted between the two: the
// registration reached the old one) must not end the renewals; the next
// renewal registers with the new Olympus. Before, KeepRegistered returned on
// the refusal and the replica stayed out of the restarted Olympus's roster.
// A scripted Olympus refuses the first Ready and accepts the rest.
func TestKeepRegisteredAfterARefusedReady(t *testing.T) {
	fake := newNode(t, nil)
	var registers, readies atomic.Int32
	fake.HandleRequest(p2p.OlympusProtocol, false, func(_ peer.ID, data []byte) ([]byte, error) {
		code, _ := wire.Code(data)
		switch code {
		case codeRegister:
			registers.Add(1)
		case codeReady:
			if readies.Add(1) == 1 {
				return errorReply(errKindRefused, "ready: replica 0 has not registered")
			}
		}
		return wire.EncodeAs(codeAck, &ackMsg{})
	})
	addr := PreferredAddr(fullAddrs(fake))
	n := newNode(t, nil)
	ctx, stop := context.WithCancel(testCtx(t))
	ready := make(chan struct{})
	close(ready)
	done := make(chan error, 1)
	go func() {
		done <- KeepRegistered(ctx, n, addr, Registration{ID: 0, Addrs: addrStrings(n)}, 10*time.Millisecond, ready)
	}()
	waitFor(t, "a second Ready after the refused one", func() bool { return readies.Load() >= 2 })
	stop()
	if err := <-done; err != nil {
		t.Fatalf("KeepRegistered: %v", err)
	}
	if registers.Load() < 2 {
		t.Fatalf("%d registrations, want renewals after the refused Ready", registers.Load())
	}
}
