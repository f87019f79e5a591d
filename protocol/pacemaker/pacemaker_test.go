package pacemaker_test

import (
	"math"
	"math/rand"
	"slices"
	"testing"
	"time"

	"github.com/diembft/diembft/protocol/pacemaker"
	"github.com/diembft/diembft/protocol/types"
)

var cfg = pacemaker.Config{RoundTimeout: 400 * time.Millisecond, Backoff: 1.2, BackoffCap: 6}

func timeout(round types.Round, sender types.ReplicaID, hqc types.Round) *types.TimeoutInfo {
	return &types.TimeoutInfo{Round: round, Sender: sender, HighQC: &types.QC{VoteInfo: types.VoteInfo{Round: hqc}}, Signature: []byte{byte(sender), byte(round)}}
}

func TestRoundTimer(t *testing.T) {
	p := pacemaker.New(cfg, 1, 3)
	cases := []struct {
		since int
		want  time.Duration
	}{
		{-5, 400 * time.Millisecond},
		{0, 400 * time.Millisecond},
		{1, 480 * time.Millisecond},
		{2, 576 * time.Millisecond},
		{6, time.Duration(float64(400*time.Millisecond) * math.Pow(1.2, 6))},
		{7, time.Duration(float64(400*time.Millisecond) * math.Pow(1.2, 6))},
		{1000, time.Duration(float64(400*time.Millisecond) * math.Pow(1.2, 6))},
	}
	for _, c := range cases {
		got := p.RoundTimer(c.since)
		if d := got - c.want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("RoundTimer(%d) = %v, want %v", c.since, got, c.want)
		}
	}
	for n := range 10 {
		if p.RoundTimer(n+1) < p.RoundTimer(n) {
			t.Errorf("timer shrinks from %d to %d", n, n+1)
		}
	}
	flat := pacemaker.New(pacemaker.Config{RoundTimeout: time.Second, Backoff: 2, BackoffCap: 0}, 1, 3)
	if flat.RoundTimer(5) != time.Second {
		t.Errorf("cap 0 still backs off: %v", flat.RoundTimer(5))
	}
}

func TestAdvanceOnlyForward(t *testing.T) {
	tc := func(r types.Round) *types.TC { return &types.TC{Round: r} }
	type step struct {
		qc      types.Round // AdvanceQC if tc is nil
		tc      *types.TC
		changed bool
		round   types.Round
		lastTC  bool
		highTC  types.Round
	}
	steps := []step{
		{qc: 0, changed: false, round: 1}, // genesis QC: already in round 1
		{qc: 1, changed: true, round: 2},
		{qc: 1, changed: false, round: 2},
		{tc: tc(1), changed: false, round: 2, highTC: 1}, // stale TC still raises the high TC
		{tc: tc(2), changed: true, round: 3, lastTC: true, highTC: 2},
		{qc: 2, changed: false, round: 3, lastTC: true, highTC: 2}, // stale QC keeps the last TC
		{qc: 5, changed: true, round: 6, highTC: 2},                // QC clears the last-round TC
		{tc: tc(4), changed: false, round: 6, highTC: 4},
		{tc: tc(9), changed: true, round: 10, lastTC: true, highTC: 9},
		{tc: tc(9), changed: false, round: 10, lastTC: true, highTC: 9},
		{tc: tc(7), changed: false, round: 10, lastTC: true, highTC: 9},
		{qc: 10, changed: true, round: 11, highTC: 9},
	}
	p := pacemaker.New(cfg, 1, 3)
	if p.CurrentRound() != 1 || p.AdvanceTC(nil) {
		t.Fatal("fresh pacemaker not in round 1")
	}
	for i, s := range steps {
		var changed bool
		if s.tc != nil {
			changed = p.AdvanceTC(s.tc)
		} else {
			changed = p.AdvanceQC(s.qc)
		}
		if changed != s.changed || p.CurrentRound() != s.round || (p.LastRoundTC() != nil) != s.lastTC {
			t.Errorf("step %d: changed %v round %d lastTC %v; want %v %d %v", i, changed, p.CurrentRound(), p.LastRoundTC() != nil, s.changed, s.round, s.lastTC)
		}
		if s.lastTC && p.LastRoundTC().Round+1 != p.CurrentRound() {
			t.Errorf("step %d: last round TC is for round %d in round %d", i, p.LastRoundTC().Round, p.CurrentRound())
		}
		var high types.Round
		if p.HighTC() != nil {
			high = p.HighTC().Round
		}
		if high != s.highTC {
			t.Errorf("step %d: high TC %d, want %d", i, high, s.highTC)
		}
	}
}

func TestAddTimeout(t *testing.T) {
	type add struct {
		round  types.Round
		sender types.ReplicaID
		hqc    types.Round
		join   bool
		tc     bool
	}
	cases := []struct {
		name  string
		n, f  int
		round types.Round // current round
		adds  []add
	}{
		{"join at f+1, TC at quorum", 4, 1, 5, []add{
			{5, 0, 4, false, false},
			{5, 2, 3, true, false},
			{5, 3, 4, false, true},
			{5, 1, 4, false, false}, // after the TC: nothing more
		}},
		{"duplicates ignored", 4, 1, 5, []add{
			{5, 1, 4, false, false},
			{5, 1, 4, false, false},
			{5, 1, 3, false, false},
			{5, 3, 4, true, false},
			{5, 3, 4, false, false},
			{5, 1, 4, false, false},
			{5, 0, 2, false, true},
		}},
		{"stale rounds ignored", 4, 1, 5, []add{
			{4, 0, 3, false, false},
			{4, 1, 3, false, false},
			{4, 2, 3, false, false},
			{4, 3, 3, false, false},
			{1, 0, 0, false, false},
		}},
		{"future round counted without a join", 4, 1, 5, []add{
			{6, 0, 5, false, false},
			{6, 1, 5, false, false},
			{6, 2, 5, false, true},
		}},
		{"rounds counted apart", 4, 1, 5, []add{
			{5, 0, 4, false, false},
			{6, 1, 5, false, false},
			{6, 0, 5, false, false},
			{5, 1, 4, true, false},
			{6, 2, 5, false, true},
			{5, 2, 4, false, true},
		}},
		{"n=7: join at 3, TC at 5", 7, 2, 9, []add{
			{9, 6, 8, false, false},
			{9, 4, 8, false, false},
			{9, 2, 7, true, false},
			{9, 0, 8, false, false},
			{9, 5, 1, false, true},
			{9, 1, 8, false, false},
		}},
	}
	for _, c := range cases {
		p := pacemaker.New(cfg, c.f, c.n-c.f)
		p.AdvanceQC(c.round - 1)
		signed := map[types.Round]map[types.ReplicaID]types.Round{}
		for i, a := range c.adds {
			res := p.AddTimeout(timeout(a.round, a.sender, a.hqc))
			if signed[a.round] == nil {
				signed[a.round] = map[types.ReplicaID]types.Round{}
			}
			if _, ok := signed[a.round][a.sender]; !ok {
				signed[a.round][a.sender] = a.hqc
			}
			if res.Join != a.join || (res.TC != nil) != a.tc {
				t.Errorf("%s: add %d: join %v tc %v; want %v %v", c.name, i, res.Join, res.TC != nil, a.join, a.tc)
				continue
			}
			if res.TC == nil {
				continue
			}
			tc := res.TC
			if tc.Round != a.round || len(tc.Signatures) != c.n-c.f || len(tc.TmoHighQCRounds) != len(tc.Signatures) {
				t.Errorf("%s: TC round %d with %d signatures, %d rounds", c.name, tc.Round, len(tc.Signatures), len(tc.TmoHighQCRounds))
			}
			if !slices.IsSortedFunc(tc.Signatures, func(x, y types.PartialSig) int { return int(x.Signer) - int(y.Signer) }) {
				t.Errorf("%s: TC signers not in order", c.name)
			}
			for j, s := range tc.Signatures {
				want, ok := signed[a.round][s.Signer]
				if !ok || tc.TmoHighQCRounds[j] != want {
					t.Errorf("%s: TC signer %d reports high QC round %d, sent %d", c.name, s.Signer, tc.TmoHighQCRounds[j], want)
				}
				if s.Sig[0] != byte(s.Signer) || s.Sig[1] != byte(a.round) {
					t.Errorf("%s: TC carries the wrong signature for %d", c.name, s.Signer)
				}
			}
		}
	}
}

func TestHasTimeoutAndPruning(t *testing.T) {
	p := pacemaker.New(cfg, 1, 3)
	p.AdvanceQC(4) // round 5
	p.AddTimeout(timeout(5, 2, 4))
	p.AddTimeout(timeout(7, 1, 4))
	if !p.HasTimeout(5, 2) || p.HasTimeout(5, 1) || !p.HasTimeout(7, 1) {
		t.Fatal("HasTimeout wrong")
	}
	p.AdvanceTC(&types.TC{Round: 5}) // round 6: round 5's timeouts are dropped
	if p.HasTimeout(5, 2) || !p.HasTimeout(7, 1) {
		t.Fatal("pending timeouts not pruned on entering a round")
	}
	if res := p.AddTimeout(timeout(5, 0, 4)); res.Join || res.TC != nil {
		t.Fatal("a stale timeout counted")
	}
}

// TestRandomTimeoutsOneTC feeds random timeouts and checks that each round
// yields at most one TC, only from distinct senders, and only at a quorum.
func TestRandomTimeoutsOneTC(t *testing.T) {
	for seed := int64(1); seed <= 30; seed++ {
		rng := rand.New(rand.NewSource(seed))
		const n, f = 7, 2
		p := pacemaker.New(cfg, f, n-f)
		tcs := map[types.Round]int{}
		senders := map[types.Round]map[types.ReplicaID]bool{}
		for range 500 {
			r := types.Round(rng.Intn(12) + 1)
			s := types.ReplicaID(rng.Intn(n))
			if r >= p.CurrentRound() {
				if senders[r] == nil {
					senders[r] = map[types.ReplicaID]bool{}
				}
				senders[r][s] = true
			}
			res := p.AddTimeout(timeout(r, s, r-1))
			if res.Join && r != p.CurrentRound() {
				t.Fatalf("seed %d: join for round %d in round %d", seed, r, p.CurrentRound())
			}
			if res.TC != nil {
				tcs[r]++
				if tcs[r] > 1 {
					t.Fatalf("seed %d: two TCs for round %d", seed, r)
				}
				if len(senders[r]) < n-f {
					t.Fatalf("seed %d: TC for round %d from %d senders", seed, r, len(senders[r]))
				}
				if rng.Intn(2) == 0 {
					p.AdvanceTC(res.TC)
				}
			}
		}
	}
}
