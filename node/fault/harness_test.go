package fault

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/diembft/diembft/olympus/config"
)

// The harness drives one replica's Injector through a fixed script of
// rounds, as the replica's event loop would, and records every decision.
// Replica self of n = 4; the leader of round r is r mod 4, so self = 1 leads
// rounds 1, 5, 9, ...
const (
	self    = 1
	nodes   = 4
	stepDur = 100 * time.Millisecond // virtual time per round
)

func leaderOf(r uint64) int { return int(r % nodes) }

func others() []int {
	var o []int
	for i := range nodes {
		if i != self {
			o = append(o, i)
		}
	}
	return o
}

type sent struct {
	seq    int // order among sends and receipts
	kind   string
	round  uint64
	dests  []int
	occ    []uint64
	copies []Copy
}

type received struct {
	seq   int
	kind  string
	round uint64
	from  int
	cut   bool
	at    time.Duration // since start
}

type effectAt struct {
	Effect
	round uint64
	step  string
}

type harness struct {
	t        *testing.T
	seed     int64
	in       *Injector
	clock    time.Time
	t0       time.Time
	log      bytes.Buffer
	sent     []sent
	occ      map[occKey]uint64
	recv     []received
	effects  []effectAt
	equiv    []uint64
	clientIn []Copy
	notified int
	step     int
}

func specFor(t *testing.T, seed int64, failures string) *Spec {
	t.Helper()
	text := fmt.Sprintf("seed = %d\n[[clients]]\ncount = 2\nworkload = \"pseudorandom(1,5)\"\n%s", seed, failures)
	cfg, err := config.Parse([]byte(text), "test.toml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return SpecFromConfig(cfg)
}

func newHarness(t *testing.T, seed int64, failures string, past []Record) *harness {
	t.Helper()
	h := &harness{t: t, seed: seed, occ: map[occKey]uint64{}}
	h.clock = time.UnixMilli(1_700_000_000_000)
	h.t0 = h.clock
	in, err := New(self, specFor(t, seed, failures), Options{Now: func() time.Time { return h.clock }, Log: &h.log, Past: past})
	if err != nil {
		t.Fatal(err)
	}
	in.Bind(func(r uint64) int { return leaderOf(r) }, func(Record) { h.notified++ })
	h.in = in
	return h
}

func (h *harness) addEffects(step string, r uint64, es []Effect) {
	for _, e := range es {
		h.effects = append(h.effects, effectAt{e, r, step})
	}
}

func (h *harness) send(kind string, r uint64, dests []int) {
	h.step++
	s := sent{seq: h.step, kind: kind, round: r, dests: dests}
	for _, d := range dests {
		k := occKey{kind, r, d}
		s.occ = append(s.occ, h.occ[k])
		h.occ[k]++
	}
	s.copies = h.in.Outbound(kind, r, dests)
	if s.copies != nil && len(s.copies) != len(dests) {
		h.t.Fatalf("Outbound returned %d copies for %d receivers", len(s.copies), len(dests))
	}
	h.sent = append(h.sent, s)
}

func (h *harness) receive(kind string, r uint64, from int) {
	h.step++
	cut := h.in.Cut(kind, r, from)
	h.recv = append(h.recv, received{h.step, kind, r, from, cut, h.clock.Sub(h.t0)})
	if !cut && kind != MsgSync {
		h.addEffects("received "+kind, r, h.in.Received(kind))
	}
}

// run plays rounds 1..rounds.
func (h *harness) run(rounds uint64) {
	client0 := []byte(ClientKey(h.seed, 0).Public().(ed25519.PublicKey))
	h.addEffects("start", 0, h.in.Start())
	for r := uint64(1); r <= rounds; r++ {
		h.clock = h.clock.Add(stepDur)
		h.addEffects("tick", r, h.in.Tick())
		h.addEffects("round", r, h.in.EnterRound(r, false))
		if l := leaderOf(r); l == self {
			if h.in.Equivocate(r) {
				h.equiv = append(h.equiv, r)
			}
			h.send(MsgProposal, r, others())
		} else {
			h.receive(MsgProposal, r, l)
		}
		if next := leaderOf(r + 1); next == self {
			for _, o := range others() {
				h.receive(MsgVote, r, o)
			}
		} else {
			h.send(MsgVote, r, []int{next})
		}
		if r%3 == 0 {
			h.send(MsgTimeout, r, others())
			for _, o := range others() {
				h.receive(MsgTimeout, r, o)
			}
		}
		h.send(MsgSync, r, []int{(self + 1) % nodes})
		h.receive(MsgSync, r, (self+2)%nodes)
		h.addEffects("commit", r, h.in.Committed(2*r))
		cp, es := h.in.ClientRequest(client0, r)
		h.clientIn = append(h.clientIn, cp)
		h.addEffects("client request", r, es)
		h.send(MsgClient, r, []int{ToClient})
	}
}

func (h *harness) records() []Record {
	recs, err := readRecords(bytes.NewReader(h.log.Bytes()))
	if err != nil {
		h.t.Fatal(err)
	}
	return recs
}

func (h *harness) fired(failure int) int { return Fired(h.records())[failure] }

// touched lists the sends in which some copy was changed.
func (h *harness) touched() []sent {
	var out []sent
	for _, s := range h.sent {
		if s.copies != nil && slices.ContainsFunc(s.copies, Copy.Touched) {
			out = append(out, s)
		}
	}
	return out
}
