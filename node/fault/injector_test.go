package fault

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/diembft/diembft/olympus/config"
)

// Every test here states its seed; a failure message names it.

// ---- message faults: drop, delay, duplicate ----

// checkCopies checks that exactly the copies want selects were touched, each
// as typ says, and that the fault fired once per message it touched.
func checkCopies(t *testing.T, h *harness, typ string, want func(s sent, i int) bool) int {
	t.Helper()
	messages := 0
	for _, s := range h.sent {
		any := false
		for i := range s.dests {
			w := want(s, i)
			var c Copy
			if s.copies != nil {
				c = s.copies[i]
			}
			if c.Touched() != w {
				t.Fatalf("seed %d: %s round %d to %d (occurrence %d): touched %v, want %v", h.seed, s.kind, s.round, s.dests[i], s.occ[i], c.Touched(), w)
			}
			if !w {
				continue
			}
			any = true
			switch typ {
			case config.TypeDrop:
				if !c.Drop || c.Delay != 0 || c.Extra != 0 {
					t.Fatalf("seed %d: drop gave %+v", h.seed, c)
				}
			case config.TypeDelay:
				if c.Drop || c.Delay != 30*time.Millisecond || c.Extra != 0 {
					t.Fatalf("seed %d: delay 30 ms gave %+v", h.seed, c)
				}
			case config.TypeDuplicate:
				if c.Drop || c.Delay != 0 || c.Extra != 1 {
					t.Fatalf("seed %d: duplicate gave %+v", h.seed, c)
				}
			}
		}
		if any {
			messages++
		}
	}
	received := 0 // client requests, the messages this replica receives from outside the committee
	for _, c := range h.clientIn {
		if c.Touched() {
			received++
		}
	}
	if got := h.fired(0); got != messages+received {
		t.Fatalf("seed %d: fault fired %d times, touched %d messages sent and %d received", h.seed, got, messages, received)
	}
	return messages
}

// val gives a delay its length; drop and duplicate take none.
func val(typ string) string {
	if typ == config.TypeDelay {
		return "val = 30\n"
	}
	return ""
}

func TestMessageFaults(t *testing.T) {
	const seed = 7
	for _, typ := range []string{config.TypeDrop, config.TypeDelay, config.TypeDuplicate} {
		// Fixed rounds: the votes of rounds 5..8 to the next leader. In
		// round 8 this replica is the next leader and sends no vote.
		t.Run(typ+"/rounds", func(t *testing.T) {
			h := newHarness(t, seed, fmt.Sprintf("[[failures]]\ntype = %q\nsrc = \"_\"\ndest = \"leader\"\nmsg = \"vote\"\nrounds = \"5..8\"\n%s", typ, val(typ)), nil)
			h.run(20)
			n := checkCopies(t, h, typ, func(s sent, _ int) bool { return s.kind == MsgVote && s.round >= 5 && s.round <= 8 })
			if n != 3 {
				t.Fatalf("fired %d times, want 3 (votes of rounds 5, 6, 7)", n)
			}
		})
		// Probability: every copy of every message with p = 0.3, drawn per
		// (kind, round, receiver, occurrence).
		t.Run(typ+"/probability", func(t *testing.T) {
			h := newHarness(t, seed, fmt.Sprintf("[[failures]]\ntype = %q\nmsg = \"*\"\nprob = 0.3\n%s", typ, val(typ)), nil)
			h.run(40)
			copies, hit := 0, 0
			predict := func(s sent, i int) bool {
				return Draw(seed, self, 0, pointMessage, kindCode(s.kind), s.round, dest(s.dests[i]), s.occ[i]) < 0.3
			}
			for _, s := range h.sent {
				for i := range s.dests {
					copies++
					if predict(s, i) {
						hit++
					}
				}
			}
			// Client requests received count as messages too (src "_").
			key := sha256.Sum256(ClientKey(seed, 0).Public().(ed25519.PublicKey))
			for i, c := range h.clientIn {
				if want := Draw(seed, self, 0, pointClientIn, binary.BigEndian.Uint64(key[:8]), uint64(i+1), 0) < 0.3; c.Touched() != want {
					t.Fatalf("seed %d: client request %d touched %v, the seed predicts %v", seed, i+1, c.Touched(), want)
				}
			}
			n := checkCopies(t, h, typ, predict)
			if hit < copies/6 || hit > copies/2 {
				t.Fatalf("seed %d: %d of %d copies hit with p = 0.3", seed, hit, copies)
			}
			t.Logf("seed %d: %d of %d copies in %d messages", seed, hit, copies, n)
		})
		// Event: proposal(3) arms the fault; it hits the next message this
		// replica sends, whatever its kind (msg = "*"), on every receiver.
		t.Run(typ+"/trigger", func(t *testing.T) {
			h := newHarness(t, seed, fmt.Sprintf("[[failures]]\ntype = %q\nsrc = 1\nmsg = \"*\"\ntrigger = \"proposal(3)\"\n%s", typ, val(typ)), nil)
			h.run(20)
			third := 0
			for i, k := 0, 0; i < len(h.recv); i++ {
				if h.recv[i].kind == MsgProposal {
					if k++; k == 3 {
						third = h.recv[i].seq
						break
					}
				}
			}
			next := slices.IndexFunc(h.sent, func(s sent) bool { return s.seq > third })
			n := checkCopies(t, h, typ, func(s sent, _ int) bool { return s.seq == h.sent[next].seq })
			if n != 1 {
				t.Fatalf("triggered %s fired %d times", typ, n)
			}
			if s := h.sent[next]; s.kind != MsgSync || s.round != 4 {
				t.Fatalf("hit %s of round %d, want the sync message of round 4 (the first send after the third proposal)", s.kind, s.round)
			}
		})
	}
}

// ---- event faults: crash, pause, set_attr ----

func TestEventFaults(t *testing.T) {
	const seed = 11
	extra := map[string]string{
		config.TypeCrash:   "restart_after_ms = 500\n",
		config.TypePause:   "val = 50\n",
		config.TypeSetAttr: "attr = \"highest_vote_round\"\nval = 9\n",
	}
	checkEffect := func(t *testing.T, typ string, e effectAt) {
		t.Helper()
		ok := e.Type == typ
		switch typ {
		case config.TypeCrash:
			ok = ok && e.RestartAfter == 500*time.Millisecond
		case config.TypePause:
			ok = ok && e.Pause == 50*time.Millisecond
		case config.TypeSetAttr:
			ok = ok && e.Attr == "highest_vote_round" && e.Val == 9
		}
		if !ok {
			t.Fatalf("seed %d: %s fault gave effect %+v", seed, typ, e.Effect)
		}
	}
	for _, typ := range []string{config.TypeCrash, config.TypePause, config.TypeSetAttr} {
		t.Run(typ+"/rounds", func(t *testing.T) {
			h := newHarness(t, seed, fmt.Sprintf("[[failures]]\ntype = %q\nsrc = 1\nrounds = [6, 9]\n%s", typ, extra[typ]), nil)
			h.run(20)
			if len(h.effects) != 2 || h.effects[0].round != 6 || h.effects[1].round != 9 || h.effects[0].step != "round" {
				t.Fatalf("effects %+v, want one on entering round 6 and one on entering round 9", h.effects)
			}
			checkEffect(t, typ, h.effects[0])
			if got := h.fired(0); got != 2 {
				t.Fatalf("fired %d, want 2", got)
			}
		})
		t.Run(typ+"/probability", func(t *testing.T) {
			h := newHarness(t, seed, fmt.Sprintf("[[failures]]\ntype = %q\nsrc = 1\nprob = 0.2\n%s", typ, extra[typ]), nil)
			h.run(60)
			var want []uint64
			for r := uint64(1); r <= 60; r++ {
				if Draw(seed, self, 0, pointRound, r) < 0.2 {
					want = append(want, r)
				}
			}
			var got []uint64
			for _, e := range h.effects {
				checkEffect(t, typ, e)
				got = append(got, e.round)
			}
			if !slices.Equal(got, want) || len(want) == 0 || len(want) > 30 {
				t.Fatalf("seed %d: fired in rounds %v, the seed predicts %v", seed, got, want)
			}
			if h.fired(0) != len(want) {
				t.Fatalf("seed %d: %d records, %d firings", seed, h.fired(0), len(want))
			}
		})
		t.Run(typ+"/trigger", func(t *testing.T) {
			// This replica is the next leader in round 4 and receives the
			// votes of 0, 2 and 3 there: vote(2) is the second of them.
			h := newHarness(t, seed, fmt.Sprintf("[[failures]]\ntype = %q\nsrc = 1\ntrigger = \"vote(2)\"\n%s", typ, extra[typ]), nil)
			h.run(20)
			if len(h.effects) != 1 || h.effects[0].round != 4 || h.effects[0].step != "received vote" {
				t.Fatalf("effects %+v, want one on the second vote received (round 4)", h.effects)
			}
			checkEffect(t, typ, h.effects[0])
			if h.fired(0) != 1 {
				t.Fatalf("fired %d, want 1", h.fired(0))
			}
		})
	}
}

// ---- partition ----

func checkCuts(t *testing.T, h *harness, want func(r received) bool) int {
	t.Helper()
	n := 0
	for _, r := range h.recv {
		if r.cut != want(r) {
			t.Fatalf("seed %d: %s of round %d from %d at %v: cut %v, want %v", h.seed, r.kind, r.round, r.from, r.at, r.cut, want(r))
		}
		if r.cut {
			n++
		}
	}
	if got := h.fired(0); got != n {
		t.Fatalf("seed %d: fired %d, cut %d messages", h.seed, got, n)
	}
	if n == 0 {
		t.Fatalf("seed %d: the partition cut nothing", h.seed)
	}
	return n
}

func TestPartition(t *testing.T) {
	const seed = 13
	t.Run("rounds", func(t *testing.T) {
		h := newHarness(t, seed, "[[failures]]\ntype = \"partition\"\ngroup = [1]\nrounds = \"5..8\"\n", nil)
		h.run(20)
		checkCuts(t, h, func(r received) bool { return r.round >= 5 && r.round <= 8 })
	})
	t.Run("probability", func(t *testing.T) {
		// Replicas 0 and 1 against 2 and 3, each crossing message cut
		// with p = 0.5.
		h := newHarness(t, seed, "[[failures]]\ntype = \"partition\"\ngroup = [0, 1]\nrounds = \"3..30\"\nprob = 0.5\n", nil)
		h.run(40)
		occ := map[occKey]uint64{}
		checkCuts(t, h, func(r received) bool {
			if r.from < 2 || r.round < 3 || r.round > 30 {
				return false
			}
			k := occKey{r.kind, r.round, r.from}
			o := occ[k]
			occ[k]++
			return Draw(seed, self, 0, pointCut, kindCode(r.kind), r.round, dest(r.from), o) < 0.5
		})
	})
	t.Run("trigger", func(t *testing.T) {
		// time(1000) opens a 500 ms window: rounds 10..14 of the script.
		h := newHarness(t, seed, "[[failures]]\ntype = \"partition\"\ngroup = [2]\ntrigger = \"time(1000)\"\nduration_ms = 500\n", nil)
		h.run(30)
		checkCuts(t, h, func(r received) bool {
			return r.from == 2 && r.at >= time.Second && r.at < 1500*time.Millisecond
		})
	})
	t.Run("duration from the start", func(t *testing.T) {
		h := newHarness(t, seed, "[[failures]]\ntype = \"partition\"\ngroup = [1, 2]\nduration_ms = 700\n", nil)
		h.run(20)
		checkCuts(t, h, func(r received) bool { return r.from != 2 && r.at < 700*time.Millisecond })
	})
	t.Run("duration from a round", func(t *testing.T) {
		h := newHarness(t, seed, "[[failures]]\ntype = \"partition\"\ngroup = [1]\nrounds = [12]\nduration_ms = 300\n", nil)
		h.run(30)
		checkCuts(t, h, func(r received) bool { return r.at >= 1200*time.Millisecond && r.at < 1500*time.Millisecond })
	})
}

// ---- equivocate ----

func TestEquivocate(t *testing.T) {
	const seed = 17
	t.Run("rounds", func(t *testing.T) {
		h := newHarness(t, seed, "[[failures]]\ntype = \"equivocate\"\nsrc = 1\nrounds = \"4..12\"\n", nil)
		h.run(20)
		if !slices.Equal(h.equiv, []uint64{5, 9}) || h.fired(0) != 2 {
			t.Fatalf("equivocated in rounds %v (fired %d), want 5 and 9 (the rounds it leads in 4..12)", h.equiv, h.fired(0))
		}
	})
	t.Run("probability", func(t *testing.T) {
		h := newHarness(t, seed, "[[failures]]\ntype = \"equivocate\"\nsrc = 1\nprob = 0.5\n", nil)
		h.run(120)
		var want []uint64
		for r := uint64(1); r <= 120; r++ {
			if leaderOf(r) == self && Draw(seed, self, 0, pointEquivocate, r) < 0.5 {
				want = append(want, r)
			}
		}
		if !slices.Equal(h.equiv, want) || h.fired(0) != len(want) || len(want) == 0 || len(want) == 30 {
			t.Fatalf("seed %d: equivocated in %v (fired %d), the seed predicts %v", seed, h.equiv, h.fired(0), want)
		}
	})
	t.Run("trigger", func(t *testing.T) {
		// commit(11) holds from round 6 (height 12); the next round this
		// replica leads is 9.
		h := newHarness(t, seed, "[[failures]]\ntype = \"equivocate\"\nsrc = 1\ntrigger = \"commit(11)\"\n", nil)
		h.run(30)
		if !slices.Equal(h.equiv, []uint64{9}) || h.fired(0) != 1 {
			t.Fatalf("equivocated in rounds %v (fired %d), want only 9", h.equiv, h.fired(0))
		}
	})
}

// ---- triggers ----

// TestTriggerKinds: each trigger kind fires a pause exactly once, at the
// event it names.
func TestTriggerKinds(t *testing.T) {
	const seed = 19
	for _, tc := range []struct {
		trigger string
		round   uint64
		step    string
	}{
		{"round(7)", 7, "round"},
		{"proposal(3)", 4, "received proposal"},       // proposals arrive in rounds 2, 3, 4, 6, ...
		{"vote(4)", 8, "received vote"},               // votes arrive in rounds 4 and 8, three each
		{"timeout(4)", 6, "received timeout"},         // three per round 3, 6, 9, ...
		{"commit(15)", 8, "commit"},                   // height 2r
		{"client_request(0, 5)", 5, "client request"}, // client 0 sends seq r in round r
		{"time(1250)", 13, "tick"},                    // 100 ms per round
	} {
		t.Run(tc.trigger, func(t *testing.T) {
			h := newHarness(t, seed, fmt.Sprintf("[[failures]]\ntype = \"pause\"\nsrc = 1\nval = 5\ntrigger = %q\n", tc.trigger), nil)
			h.run(30)
			if len(h.effects) != 1 || h.effects[0].round != tc.round || h.effects[0].step != tc.step || h.fired(0) != 1 {
				t.Fatalf("effects %+v (fired %d), want one at %q in round %d", h.effects, h.fired(0), tc.step, tc.round)
			}
			// Spec §2: every fault that fires is logged with its round
			// (time(ms) logged round 0 until 2026-12-06).
			want := tc.round
			if tc.step == "tick" {
				want-- // the harness ticks before it enters the round
			}
			if got := h.effects[0].Round; got != want {
				t.Fatalf("the effect says round %d, the replica is in round %d", got, want)
			}
			for _, rec := range h.records() {
				if rec.Ev == EvFire && rec.Round != want {
					t.Fatalf("fire record %+v, want round %d", rec, want)
				}
			}
		})
	}
	t.Run("another replica's trigger", func(t *testing.T) {
		h := newHarness(t, seed, "[[failures]]\ntype = \"pause\"\nsrc = 2\nval = 5\ntrigger = \"round(3)\"\n", nil)
		h.run(10)
		if len(h.effects) != 0 || h.fired(0) != 0 {
			t.Fatalf("replica 1 carried out replica 2's fault: %+v", h.effects)
		}
	})
	t.Run("probability decides once", func(t *testing.T) {
		fired := 0
		for s := int64(1); s <= 40; s++ {
			h := newHarness(t, s, "[[failures]]\ntype = \"pause\"\nsrc = 1\nval = 5\nprob = 0.5\ntrigger = \"round(3)\"\n", nil)
			h.run(10)
			want := 0
			if Draw(s, self, 0, pointTrigger) < 0.5 {
				want = 1
			}
			if len(h.effects) != want || h.fired(0) != want {
				t.Fatalf("seed %d: fired %d, the seed predicts %d", s, len(h.effects), want)
			}
			fired += want
		}
		if fired == 0 || fired == 40 {
			t.Fatalf("p = 0.5 fired in %d of 40 seeds", fired)
		}
	})
}

// TestLegacyDrop: failures[0,1] = proposal(3), drop() drops replica 1's
// next outgoing message after its third proposal (spec/config.md §3).
func TestLegacyDrop(t *testing.T) {
	cfg, err := config.Parse([]byte("t = 1\nnum_client = 1\nworkload[0] = put('a','b')\nfailures[0,1] = proposal(3), drop(); round(9), sleep(40)\n"), "legacy.txt")
	if err != nil {
		t.Fatal(err)
	}
	spec := SpecFromConfig(cfg)
	h := &harness{t: t, seed: spec.Seed, occ: map[occKey]uint64{}}
	h.clock = time.UnixMilli(1_700_000_000_000)
	h.t0 = h.clock
	h.in, err = New(self, spec, Options{Now: func() time.Time { return h.clock }, Log: &h.log})
	if err != nil {
		t.Fatal(err)
	}
	h.in.Bind(leaderOf, nil)
	h.run(20)
	touched := h.touched()
	if len(touched) != 1 || touched[0].kind != MsgSync || touched[0].round != 4 || !touched[0].copies[0].Drop {
		t.Fatalf("touched %+v, want the sync message of round 4 dropped", touched)
	}
	if len(h.effects) != 1 || h.effects[0].Pause != 40*time.Millisecond || h.effects[0].round != 9 {
		t.Fatalf("effects %+v, want a 40 ms pause in round 9", h.effects)
	}
	if f := Fired(h.records()); f[0] != 1 || f[1] != 1 {
		t.Fatalf("fired %v", f)
	}
}

// TestAnyWithTriggerFiresOnce: spec §2 has a triggered failure fire once.
// With src "_" the seed picks the one replica that carries it out
// (AnyReplica): across the committee exactly that replica drops a vote, once;
// the picks spread over the replicas. Without a trigger "_" stays every
// replica.
func TestAnyWithTriggerFiresOnce(t *testing.T) {
	const drop = "[[failures]]\ntype = \"drop\"\nsrc = \"_\"\nmsg = \"vote\"\ntrigger = \"round(5)\"\n"
	picks := map[int]int{}
	for seed := int64(1); seed <= 40; seed++ {
		spec := specFor(t, seed, drop)
		picked := AnyReplica(seed, 0, spec.Failures[0], nodes)
		picks[picked]++
		mine := 0
		for id := range nodes {
			in, err := New(id, spec, Options{Now: time.Now})
			if err != nil {
				t.Fatal(err)
			}
			if in.fs[0].mine {
				mine++
				if id != picked {
					t.Fatalf("seed %d: replica %d carries the fault, AnyReplica says %d", seed, id, picked)
				}
			}
		}
		if mine != 1 {
			t.Fatalf("seed %d: %d replicas carry a triggered fault of src \"_\", want 1", seed, mine)
		}
		h := newHarness(t, seed, drop, nil)
		h.run(12)
		want := 0
		if picked == self {
			want = 1
		}
		if got := len(h.touched()); h.fired(0) != want || got != want {
			t.Fatalf("seed %d (picked %d): fired %d, %d sends touched; replica %d should fire %d", seed, picked, h.fired(0), got, self, want)
		}
	}
	if len(picks) != nodes {
		t.Fatalf("the seeds 1..40 picked only replicas %v", picks)
	}
	// With a replica as dest the pick is one that can fire: never dest
	// itself for messages between replicas (it does not send to itself),
	// and dest itself for client requests (judged where they arrive).
	for _, msg := range []string{"vote", "*", "client"} {
		seen := map[int]bool{}
		for seed := int64(1); seed <= 40; seed++ {
			spec := specFor(t, seed, "[[failures]]\ntype = \"drop\"\nsrc = \"_\"\ndest = 2\nmsg = \""+msg+"\"\ntrigger = \"round(5)\"\n")
			seen[AnyReplica(seed, 0, spec.Failures[0], nodes)] = true
		}
		want := map[int]bool{0: true, 1: true, 3: true}
		if msg == "client" {
			want = map[int]bool{2: true}
		}
		if !maps.Equal(seen, want) {
			t.Errorf("dest 2, msg %s: picked %v over 40 seeds, want %v", msg, seen, want)
		}
	}
	// Crash and pause ignore dest and msg: any replica may be picked.
	seen := map[int]bool{}
	for seed := int64(1); seed <= 40; seed++ {
		spec := specFor(t, seed, "[[failures]]\ntype = \"crash\"\nsrc = \"_\"\ndest = 2\nmsg = \"client\"\ntrigger = \"round(5)\"\n")
		seen[AnyReplica(seed, 0, spec.Failures[0], nodes)] = true
	}
	if len(seen) != nodes {
		t.Errorf("a crash of \"_\" with dest 2 picked only %v over 40 seeds", seen)
	}
	// A crash of "_" with a trigger: the picked replica crashes, once.
	const crash = "[[failures]]\ntype = \"crash\"\nsrc = \"_\"\ntrigger = \"commit(6)\"\n"
	for seed := int64(1); seed <= 12; seed++ {
		spec := specFor(t, seed, crash)
		picked := AnyReplica(seed, 0, spec.Failures[0], nodes)
		h := newHarness(t, seed, crash, nil)
		h.run(10)
		want := 0
		if picked == self {
			want = 1
		}
		if len(h.effects) != want || h.fired(0) != want || (want == 1 && h.effects[0].Type != config.TypeCrash) {
			t.Fatalf("seed %d (picked %d): effects %+v, fired %d; replica %d should crash %d times", seed, picked, h.effects, h.fired(0), self, want)
		}
	}
	h := newHarness(t, 1, "[[failures]]\ntype = \"drop\"\nsrc = \"_\"\nmsg = \"vote\"\nrounds = \"5..6\"\n", nil)
	h.run(12)
	if h.fired(0) != 2 {
		t.Fatalf("a \"_\" fault by rounds fired %d times on replica %d, want its two votes", h.fired(0), self)
	}
}

// ---- endpoints, client messages ----

func TestLeaderEndpoints(t *testing.T) {
	const seed = 23
	// src = leader: only proposals and messages of the rounds this replica
	// leads; dest = leader for a vote is the leader of the next round.
	h := newHarness(t, seed, "[[failures]]\ntype = \"drop\"\nsrc = \"leader\"\ndest = \"_\"\nmsg = \"*\"\nrounds = \"1..12\"\n"+
		"[[failures]]\ntype = \"delay\"\ndest = \"leader\"\nmsg = \"vote\"\nval = 30\nrounds = \"1..12\"\n", nil)
	h.run(12)
	for _, s := range h.sent {
		if s.copies == nil {
			if s.round <= 12 && leaderOf(s.round) == self || s.kind == MsgVote && s.round <= 12 {
				t.Fatalf("%s of round %d untouched", s.kind, s.round)
			}
			continue
		}
		c := s.copies[0]
		if leaderOf(s.round) == self != c.Drop {
			t.Fatalf("%s of round %d: drop %v, leader %d", s.kind, s.round, c.Drop, leaderOf(s.round))
		}
		if s.kind == MsgVote && (s.dests[0] != leaderOf(s.round+1) || c.Delay != 30*time.Millisecond) {
			t.Fatalf("vote of round %d to %d: %+v", s.round, s.dests[0], c)
		}
	}
}

func TestClientMessages(t *testing.T) {
	const seed = 29
	h := newHarness(t, seed, "[[failures]]\ntype = \"drop\"\ndest = \"client\"\nmsg = \"client\"\nrounds = \"2..3\"\n"+
		"[[failures]]\ntype = \"duplicate\"\ndest = 1\nmsg = \"client\"\nrounds = \"5..6\"\n", nil)
	h.run(8)
	var dropped []uint64
	for _, s := range h.touched() {
		if s.kind != MsgClient || s.dests[0] != ToClient || !s.copies[0].Drop {
			t.Fatalf("touched %+v", s)
		}
		dropped = append(dropped, s.round)
	}
	if !slices.Equal(dropped, []uint64{2, 3}) {
		t.Fatalf("replies dropped in rounds %v, want 2 and 3", dropped)
	}
	for i, c := range h.clientIn {
		r := i + 1
		if (r == 5 || r == 6) != (c.Extra == 1) || c.Drop {
			t.Fatalf("request of round %d received as %+v", r, c)
		}
	}
	if f := Fired(h.records()); f[0] != 2 || f[1] != 2 {
		t.Fatalf("fired %v", f)
	}
}

// ---- reproducibility and restarts ----

func strip(recs []Record) []Record {
	out := slices.Clone(recs)
	for i := range out {
		out[i].T = 0
	}
	return out
}

// TestSameSeedSameFaults: the same config and seed fire the same faults at
// the same (round, message) points; another seed fires others.
func TestSameSeedSameFaults(t *testing.T) {
	const failures = "[[failures]]\ntype = \"drop\"\nmsg = \"*\"\nprob = 0.2\n" +
		"[[failures]]\ntype = \"pause\"\nsrc = 1\nprob = 0.3\nval = 1\n" +
		"[[failures]]\ntype = \"partition\"\ngroup = [3]\nprob = 0.4\nrounds = \"5..25\"\n"
	run := func(seed int64) []Record {
		h := newHarness(t, seed, failures, nil)
		h.run(40)
		return strip(h.records())
	}
	a, b, c := run(31), run(31), run(32)
	same := func(x, y Record) bool {
		jx, _ := json.Marshal(x)
		jy, _ := json.Marshal(y)
		return string(jx) == string(jy)
	}
	if !slices.EqualFunc(a, b, same) {
		t.Fatalf("seed 31 fired differently in two runs")
	}
	if slices.EqualFunc(a, c, same) {
		t.Fatalf("seeds 31 and 32 fired the same faults")
	}
	for _, r := range a {
		if r.Seed != 31 || r.Replica != self {
			t.Fatalf("record %+v lacks the seed or replica", r)
		}
	}
}

// TestRestartKeepsOneShotFaults: a replica restarted on its home neither
// crashes again in the round it crashed in nor refires a consumed trigger,
// and keeps the origin of time(ms).
func TestRestartKeepsOneShotFaults(t *testing.T) {
	const seed = 37
	const failures = "[[failures]]\ntype = \"crash\"\nsrc = 1\nrounds = [6]\nrestart_after_ms = 100\n" +
		"[[failures]]\ntype = \"pause\"\nsrc = 1\nval = 1\ntrigger = \"proposal(2)\"\n" +
		"[[failures]]\ntype = \"drop\"\nsrc = 1\ntrigger = \"time(3000)\"\n"
	h := newHarness(t, seed, failures, nil)
	h.run(8)
	if len(h.effects) != 2 || h.effects[0].Type != config.TypePause || h.effects[1].Type != config.TypeCrash {
		t.Fatalf("first life: effects %+v", h.effects)
	}
	past := h.records()
	if LastCrash(past) != 0 {
		t.Fatalf("LastCrash = %d", LastCrash(past))
	}
	h2 := newHarness(t, seed, failures, past)
	h2.clock = h.clock.Add(time.Second) // restarted a second later: t = 1.8 s since the first start
	h2.t0 = h.t0
	h2.run(30) // plays rounds 1..30 again, to t = 4.8 s
	if len(h2.effects) != 0 {
		t.Fatalf("second life fired again: %+v", h2.effects)
	}
	touched := h2.touched()
	if len(touched) != 1 {
		t.Fatalf("time(3000) drop touched %d messages", len(touched))
	}
	// The first message sent at or after t = 3 s since the first start.
	if at := time.Duration(touched[0].round)*stepDur + 1800*time.Millisecond; at < 3*time.Second || at >= 3*time.Second+stepDur {
		t.Fatalf("time(3000) fired at %v since the first start", at)
	}
	for _, r := range h2.records() {
		if r.Ev == EvStart {
			t.Fatalf("a restart moved the time origin: %+v", r)
		}
	}
}

// TestNoFaultsNoOverhead: a nil injector is a valid, inert one.
func TestNilInjector(t *testing.T) {
	var in *Injector
	if in.Outbound(MsgVote, 1, []int{0}) != nil || in.Cut(MsgVote, 1, 0) || in.Equivocate(1) ||
		in.EnterRound(1, false) != nil || in.Received(MsgVote) != nil || in.Committed(1) != nil || in.Start() != nil || in.Tick() != nil {
		t.Fatal("nil injector acted")
	}
	if c, e := in.ClientRequest(nil, 1); c.Touched() || e != nil {
		t.Fatal("nil injector acted on a client request")
	}
	if in.Close() != nil {
		t.Fatal("nil Close")
	}
}

// TestLeaderEventFaults: crash and pause with src "leader" act on the
// replica that leads the round when they fire (here replica 1 leads rounds
// 1, 5, 9, ...): every replica watches, only the leader carries them out,
// and a trigger met while another replica leads is spent without effect.
func TestLeaderEventFaults(t *testing.T) {
	const seed = 13
	for _, tc := range []struct {
		name    string
		failure string
		rounds  []uint64 // rounds of this replica's effects
	}{
		{"pause by rounds", "type = \"pause\"\nsrc = \"leader\"\nval = 50\nrounds = \"4..9\"\n", []uint64{5, 9}},
		{"crash by trigger, this replica leading", "type = \"crash\"\nsrc = \"leader\"\ntrigger = \"round(5)\"\n", []uint64{5}},
		{"crash by trigger, another leading", "type = \"crash\"\nsrc = \"leader\"\ntrigger = \"round(6)\"\n", nil},
		{"crash with restart, one round", "type = \"crash\"\nsrc = \"leader\"\nrounds = [9]\nrestart_after_ms = 100\n", []uint64{9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, seed, "[[failures]]\n"+tc.failure, nil)
			h.run(20)
			var got []uint64
			for _, e := range h.effects {
				got = append(got, e.round)
			}
			if !slices.Equal(got, tc.rounds) || h.fired(0) != len(tc.rounds) {
				t.Fatalf("seed %d: effects in rounds %v (%d records), want %v", seed, got, h.fired(0), tc.rounds)
			}
		})
	}
}

// TestRestartedTimeTriggerLogsItsRound: a time(ms) trigger that came due
// while its replica was down fires at the restarted replica's first Tick,
// once it has entered its round, and is logged with that round (spec §2),
// not at Start in round 0.
func TestRestartedTimeTriggerLogsItsRound(t *testing.T) {
	const failures = "[[failures]]\ntype = \"pause\"\nsrc = 1\nval = 5\ntrigger = \"time(500)\"\n"
	h := newHarness(t, 3, failures, nil)
	h.in.Start()
	h.in.EnterRound(2, false) // down at t = 0, before the trigger
	h2 := newHarness(t, 3, failures, h.records())
	h2.clock = h.clock.Add(time.Second)
	if effects := h2.in.Start(); len(effects) != 0 {
		t.Fatalf("a restart fired at Start, before its round: %+v", effects)
	}
	if due := h2.in.TimeTriggers(); len(due) != 1 || due[0] != 0 {
		t.Fatalf("TimeTriggers after the restart = %v, want one due now", due)
	}
	h2.in.EnterRound(7, false)
	if effects := h2.in.Tick(); len(effects) != 1 || effects[0].Round != 7 {
		t.Fatalf("first Tick after the restart: %+v, want the pause in round 7", effects)
	}
	for _, rec := range h2.records() {
		if rec.Ev == EvFire && rec.Round != 7 {
			t.Fatalf("fire record %+v, want round 7", rec)
		}
	}
}

// TestLeaderFaultNotAfterTC: a replica that enters a round by a TC does not
// carry out the round's leader fault even if it is the round's fallback
// leader: the replica the QC elected may have entered the round already
// and carried it out (both crashed, two of four, before this rule).
func TestLeaderFaultNotAfterTC(t *testing.T) {
	const seed = 14
	for _, byTC := range []bool{true, false} {
		h := newHarness(t, seed, "[[failures]]\ntype = \"crash\"\nsrc = \"leader\"\ntrigger = \"round(5)\"\n", nil)
		h.in.Start()
		effects := h.in.EnterRound(5, byTC) // replica 1 leads round 5
		if want := map[bool]int{true: 0, false: 1}[byTC]; len(effects) != want || h.fired(0) != want {
			t.Fatalf("seed %d: round 5 entered by TC %v: %d effects, %d records; want %d", seed, byTC, len(effects), h.fired(0), want)
		}
		if effects := h.in.EnterRound(6, false); len(effects) != 0 {
			t.Fatalf("seed %d: the trigger fired again after it was spent: %+v", seed, effects)
		}
		// Restarted (a crash-restart fault, say), it does not carry the
		// spent trigger out in a later round it leads: round(5) matches 9.
		h2 := newHarness(t, seed, "[[failures]]\ntype = \"crash\"\nsrc = \"leader\"\ntrigger = \"round(5)\"\n", h.records())
		h2.in.Start()
		if effects := h2.in.EnterRound(9, false); len(effects) != 0 {
			t.Fatalf("seed %d: entered by TC %v, restarted: the trigger fired again in round 9: %+v", seed, byTC, effects)
		}
	}
	// A replica that was down through round 5 (no record of it) and first
	// enters round 9, which it leads, does not act: it did not lead round 5.
	h := newHarness(t, seed, "[[failures]]\ntype = \"crash\"\nsrc = \"leader\"\ntrigger = \"round(5)\"\n", nil)
	h.in.Start()
	if effects := h.in.EnterRound(9, false); len(effects) != 0 || h.fired(0) != 0 {
		t.Fatalf("seed %d: a replica first entering round 9 carried out round 5's leader crash: %+v", seed, effects)
	}
}

// TestLeaderMessageFaultWithTrigger: a triggered message fault of src
// "leader" arms only on the replica leading the round when its trigger
// fires (entered by a QC); the others log it as spent and do not act when
// they lead later. Before, every replica armed it and dropped its own next
// proposal: four firings instead of one.
func TestLeaderMessageFaultWithTrigger(t *testing.T) {
	const seed = 15
	for _, tc := range []struct {
		trigger string
		rounds  []uint64 // rounds of this replica's proposals dropped
	}{
		{"round(5)", []uint64{5}}, // replica 1 leads round 5
		{"round(6)", nil},         // replica 2 does
	} {
		h := newHarness(t, seed, "[[failures]]\ntype = \"drop\"\nsrc = \"leader\"\nmsg = \"proposal\"\ntrigger = \""+tc.trigger+"\"\n", nil)
		h.run(20)
		var dropped []uint64
		for _, s := range h.sent {
			if s.kind == MsgProposal && s.copies != nil {
				dropped = append(dropped, s.round)
			}
		}
		if !slices.Equal(dropped, tc.rounds) || h.fired(0) != len(tc.rounds) {
			t.Fatalf("seed %d: trigger %s: proposals of rounds %v dropped (%d records), want %v", seed, tc.trigger, dropped, h.fired(0), tc.rounds)
		}
		// A replica that was down through round 5 and first enters round
		// 9, which it leads, did not lead round 5: round(5) is spent there.
		if tc.trigger == "round(5)" {
			late := newHarness(t, seed, "[[failures]]\ntype = \"drop\"\nsrc = \"leader\"\nmsg = \"proposal\"\ntrigger = \"round(5)\"\n", nil)
			late.in.Start()
			late.in.EnterRound(9, false)
			if c := late.in.Outbound(MsgProposal, 9, others()); c != nil || late.fired(0) != 0 {
				t.Fatalf("seed %d: a replica first entering round 9 dropped its proposal for round(5)", seed)
			}
		}
		// Restarted, a replica that logged the trigger as spent does not
		// arm it again.
		h2 := newHarness(t, seed, "[[failures]]\ntype = \"drop\"\nsrc = \"leader\"\nmsg = \"proposal\"\ntrigger = \""+tc.trigger+"\"\n", h.records())
		h2.run(20)
		if h2.fired(0) != 0 {
			t.Fatalf("seed %d: trigger %s: fired again after a restart", seed, tc.trigger)
		}
	}
}
