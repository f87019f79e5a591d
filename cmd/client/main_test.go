package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/node/kv"
	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/p2p"
	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// fakeCommittee is a real Olympus and four fake replicas on libp2p hosts on
// 127.0.0.1: the replicas register with Olympus and answer the client
// protocol from one shared sequential ledger, each signing its replies with
// its own consensus key (a stand-in for consensus, which is not under test).
type fakeCommittee struct {
	addr    string // Olympus's pinned multiaddr
	service *olympus.Service

	mu     sync.Mutex
	store  *kv.Store
	ledger []client.LedgerLine
	done   map[string][2]string // client/seq -> result, height
	// liar, if >= 0, is a replica that answers every request with "evil".
	liar int
	// noLedger makes the replicas ignore ledger requests, as replicas
	// that do not serve them do.
	noLedger atomic.Bool
}

func startCommittee(t *testing.T, liar int) *fakeCommittee {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	if err := olympus.WriteTestnet(dir, olympus.TestnetOptions{Replicas: 4, ChainID: "client-test"}); err != nil {
		t.Fatal(err)
	}
	home, err := olympus.LoadOlympusHome(filepath.Join(dir, olympus.OlympusDir))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := olympus.StartService(ctx, home, []string{"/ip4/127.0.0.1/tcp/0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	fc := &fakeCommittee{addr: olympus.PreferredAddr(svc.Addrs()), service: svc, store: kv.New(), done: map[string][2]string{}, liar: liar}

	pid := p2p.ClientProtocol("client-test")
	for i := range 4 {
		h, err := olympus.LoadReplicaHome(filepath.Join(dir, olympus.ReplicaDir(types.ReplicaID(i))))
		if err != nil {
			t.Fatal(err)
		}
		n, err := p2p.New(ctx, p2p.Config{HostKey: h.HostKey, AllowNonMembers: true, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		com := &types.Committee{ChainID: "client-test", F: 1}
		n.Handle(pid, false, func(from peer.ID, data []byte) {
			if client.IsLedgerRequest(data) {
				if fc.noLedger.Load() {
					return
				}
				out, err := fc.ledgerChunk(data, i == fc.liar)
				if err != nil {
					t.Errorf("replica %d: ledger request: %v", i, err)
					return
				}
				n.Send(from, pid, out)
				return
			}
			req, err := wire.DecodeClientRequest(data)
			if err != nil || com.VerifyRequest(req) != nil {
				t.Errorf("replica %d: bad request (%v)", i, err)
				return
			}
			results, heights := fc.commit(req)
			if i == fc.liar {
				for j := range results {
					results[j] = "evil"
				}
			}
			r := &types.ClientReply{Client: req.Client, Seq: req.Seq, Results: results, Heights: heights, Replica: types.ReplicaID(i)}
			r.Sig = ed25519.Sign(h.ConsensusKey, r.SignBytes("client-test"))
			out, err := wire.Encode(r)
			if err != nil {
				t.Error(err)
				return
			}
			n.Send(from, pid, out)
		})
		var addrs []string
		for _, a := range n.AddrInfo().Addrs {
			addrs = append(addrs, a.String())
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = olympus.Register(rctx, n, fc.addr, olympus.Registration{ID: types.ReplicaID(i), Addrs: addrs})
		if err == nil {
			err = olympus.ReportReady(rctx, n, fc.addr, types.ReplicaID(i))
		}
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	return fc
}

func (fc *fakeCommittee) commit(req *types.Request) ([]string, []uint64) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	var results []string
	var heights []uint64
	for i, text := range req.Ops {
		seq := req.Seq + uint64(i)
		k := fmt.Sprintf("%x/%d", req.Client, seq)
		d, ok := fc.done[k]
		if !ok {
			res := kv.Fail
			if op, err := kv.ParseOp(text); err == nil {
				res = fc.store.Apply(op)
			}
			fc.ledger = append(fc.ledger, client.LedgerLine{Client: hex.EncodeToString(req.Client), Seq: seq, Op: text})
			d = [2]string{res, fmt.Sprint(len(fc.ledger))}
			fc.done[k] = d
		}
		var h uint64
		fmt.Sscan(d[1], &h)
		results = append(results, d[0])
		heights = append(heights, h)
	}
	return results, heights
}

// ledgerChunk answers a ledger request from the shared ledger; a liar
// reports a different operation on every line.
func (fc *fakeCommittee) ledgerChunk(data []byte, lie bool) ([]byte, error) {
	req, err := client.DecodeLedgerRequest(data)
	if err != nil {
		return nil, err
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	m := &client.LedgerChunk{From: req.From, Height: uint64(len(fc.ledger))}
	for h := req.From; h < uint64(len(fc.ledger)) && len(m.Lines) < int(req.Max); h++ {
		l := fc.ledger[h]
		if lie {
			l.Op = "put('evil','twin')"
		}
		m.Lines = append(m.Lines, l.String())
	}
	return client.EncodeLedgerChunk(m)
}

func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestClientAgainstOlympusAndFakeReplicas(t *testing.T) {
	fc := startCommittee(t, 2) // replica 2 lies; f+1 = 2 honest replies decide
	results := filepath.Join(t.TempDir(), "results.jsonl")
	keyFile := filepath.Join(t.TempDir(), "client.key")
	code, out, errOut := runMain(t, "--olympus", fc.addr, "--workload", "pseudorandom(3,10)", "--count", "25",
		"--concurrency", "4", "--timeout-ms", "2000", "--results", results, "--key", keyFile, "--olympus-timeout", "10s", "--verify")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if !strings.Contains(out, "25/25 committed") || !strings.Contains(out, "verify: 25/25 accepted results equal a replay of the agreed ledger (height 25)") {
		t.Errorf("summary %q", out)
	}
	f, err := os.Open(results)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := client.ReadRecords(f)
	if err != nil || len(recs) != 25 {
		t.Fatalf("results: %d records, %v", len(recs), err)
	}
	key, _, err := client.LoadOrCreateKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	fc.mu.Lock()
	replay, _, _ := client.Replay(fc.ledger)
	ledger := fc.ledger
	fc.mu.Unlock()
	for _, r := range recs {
		if r.Client != hex.EncodeToString(key.Public().(ed25519.PublicKey)) {
			t.Fatalf("record from client %s, not the --key one", r.Client)
		}
		l := ledger[r.Height-1]
		if l.Seq != r.Seq || l.Op != r.Op || replay[r.Height-1] != r.Result {
			t.Errorf("record %+v does not match ledger line %+v (replay %q)", r, l, replay[r.Height-1])
		}
	}
}

func TestClientVerifyNeedsLedgerFromReplicas(t *testing.T) {
	fc := startCommittee(t, -1)
	fc.noLedger.Store(true)
	code, out, errOut := runMain(t, "--olympus", fc.addr, "--workload", "put('a','b'); get('a')", "--verify", "--verify-timeout", "500ms", "--timeout-ms", "100")
	t.Logf("stderr: %s", errOut)
	if code != exitFail || !strings.Contains(out, "2/2 committed") || strings.Count(errOut, "\n") != 1 ||
		!strings.Contains(errOut, "--verify: cannot read the agreed ledger") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestClientRefusesWrongOlympusPeer(t *testing.T) {
	fc := startCommittee(t, -1)
	// The right address with someone else's peer id.
	other, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	otherID, _ := peer.IDFromPrivateKey(other)
	wrong := fc.addr[:strings.LastIndex(fc.addr, "/p2p/")] + "/p2p/" + otherID.String()
	code, _, errOut := runMain(t, "--olympus", wrong, "--workload", "get('a')", "--olympus-timeout", "5s")
	t.Logf("stderr: %s", errOut)
	if code != exitFail || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "refusing to proceed") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestClientRefusesBadRosterSignature(t *testing.T) {
	fc := startCommittee(t, -1)
	<-fc.service.Ready()
	forged := fc.service.Roster()
	// An impostor pinned by its own peer id serves the real roster, but the
	// signature is by neither it nor Olympus: a roster is only good if the
	// pinned peer id's key signed it.
	third, _, _ := crypto.GenerateEd25519Key(nil)
	if err := forged.Sign(third); err != nil {
		t.Fatal(err)
	}
	data, err := olympus.EncodeRoster(forged)
	if err != nil {
		t.Fatal(err)
	}
	imp, err := p2p.New(context.Background(), p2p.Config{AllowNonMembers: true, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { imp.Close() })
	imp.HandleRequest(p2p.OlympusProtocol, false, func(peer.ID, []byte) ([]byte, error) { return data, nil })
	addr := imp.Addrs()[0].String()
	code, _, errOut := runMain(t, "--olympus", addr, "--workload", "get('a')", "--olympus-timeout", "5s")
	t.Logf("stderr: %s", errOut)
	if code != exitFail || !strings.Contains(errOut, "refusing to proceed") || !strings.Contains(errOut, "signature") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestClientUsageErrors(t *testing.T) {
	pinned := "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWLbjTGzFh3nq3rUWGLH3AQgSU5E4EUx1J4kcJRjvB3n3V"
	for _, args := range [][]string{
		{},
		{"--workload", "get('a')"},
		{"--olympus", pinned},
		{"--olympus", "/ip4/127.0.0.1/tcp/1", "--workload", "get('a')"},
		{"--olympus", pinned, "--workload", "gt('a')"},
		{"--olympus", pinned, "--workload", "get('a'); put('big','" + strings.Repeat("x", 10_000) + "')"}, // over types.MaxOpBytes
		{"--olympus", pinned, "--workload", "get('a')", "--concurrency", "0"},
		{"--olympus", pinned, "--workload", "get('a')", "--timeout-ms", "x"},
		{"--olympus", pinned, "--workload", "get('a')", "--verify-timeout", "0s"},
		{"--olympus", pinned, "--workload", "get('a')", "--log-level", "loud"},
		{"--olympus", pinned, "--workload", "get('a')", "--workload-file", "f"},
		{"--bogus"},
		{"extra"},
	} {
		code, _, errOut := runMain(t, args...)
		if code != exitUsage || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "client: ") || len(errOut) > 300 {
			t.Errorf("client %q: exit %d, stderr %q; want exit 2 and one line", args, code, errOut)
		}
	}
}

// TestClientDeadlineBeforeStart: a --deadline that passes before the client
// has even started says so in the client's own words (it said "context
// deadline exceeded").
func TestClientDeadlineBeforeStart(t *testing.T) {
	pinned := "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWLbjTGzFh3nq3rUWGLH3AQgSU5E4EUx1J4kcJRjvB3n3V"
	code, _, errOut := runMain(t, "--olympus", pinned, "--workload", "get('a'); get('b')", "--deadline", "1ns")
	if code != 1 || errOut != "client: deadline passed (--deadline 1ns) before the client started: 0 of 2 requests committed\n" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// TestWarnsOfOperationsOverTheStoreBounds: a put of 5,000 characters is
// valid (it is sent and gives fail, kv.MaxValueSize) and the client says so
// in one line before running; an ordinary workload gets no warning.
func TestWarnsOfOperationsOverTheStoreBounds(t *testing.T) {
	var b strings.Builder
	warnOverBounds(&b, []kv.Op{{Kind: kv.Get, Key: "a"}, {Kind: kv.Put, Key: "big", Val: strings.Repeat("x", 5000)}, {Kind: kv.Append, Key: "big", Val: strings.Repeat("y", 4000)}})
	want := "client: warning: operation 2 put('big','xxxxxxxxxxxxxxxxxxxxxxxxxxxxx… will return fail: its value of 5000 bytes is over kv.MaxValueSize (3072) (and 1 more such operations)\n"
	if b.String() != want {
		t.Fatalf("warning %q, want %q", b.String(), want)
	}
	b.Reset()
	warnOverBounds(&b, []kv.Op{{Kind: kv.Put, Key: "k", Val: strings.Repeat("x", kv.MaxValueSize)}, {Kind: kv.Get, Key: strings.Repeat("k", 1000)}})
	if b.Len() != 0 {
		t.Fatalf("warning %q for operations within the bounds", b.String())
	}
}
