package leader_test

import (
	"math/rand"
	"slices"
	"testing"

	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/ledger"
	"github.com/diembft/diembft/protocol/types"
)

// chain is a committed chain of consecutive rounds whose QC signers and
// authors a test chooses round by round.
type chain struct {
	led    *ledger.Memory
	last   *types.Block // newest committed block
	lastQC *types.QC    // certifies last
}

func newChain() *chain {
	g, gqc := types.Genesis()
	return &chain{led: ledger.NewMemory(), last: g, lastQC: gqc}
}

func sigs(ids []types.ReplicaID) []types.PartialSig {
	var s []types.PartialSig
	for _, id := range ids {
		s = append(s, types.PartialSig{Signer: id})
	}
	return s
}

// grow proposes the block of the next round on the newest committed block
// and certifies it with signers; the QC (consecutive, so it commits the
// previous block) is returned, and the block is committed so that the next
// call can extend it.
func (c *chain) grow(author types.ReplicaID, signers []types.ReplicaID) *types.QC {
	b := &types.Block{Author: author, Round: c.last.Round + 1, QC: c.lastQC}
	b.ID = b.ComputeID()
	vi := types.VoteInfo{ID: b.ID, Round: b.Round, ParentID: b.ParentID(), ParentRound: b.QC.Round()}
	qc := &types.QC{VoteInfo: vi, Signatures: sigs(signers)}
	c.led.Commit(b, nil)
	c.last, c.lastQC = b, qc
	return qc
}

// others is every replica but x, in a seeded random order cut to k.
func others(rng *rand.Rand, n int, x types.ReplicaID, k int) []types.ReplicaID {
	var ids []types.ReplicaID
	for _, p := range rng.Perm(n) {
		if types.ReplicaID(p) != x && len(ids) < k {
			ids = append(ids, types.ReplicaID(p))
		}
	}
	return ids
}

// TestCrashedReplicaNotElected: replica x signs QCs and authors blocks until
// round crash, then signs nothing. Every reputation election by a QC of round
// ≥ crash+RecentRounds, and every fallback whose basis (QC or TC) was formed
// after the crash, avoids x. With the paper's rules x stayed "active" for
// window_size QCs and kept two consecutive round-robin rounds.
func TestCrashedReplicaNotElected(t *testing.T) {
	for seed := int64(1); seed <= 40; seed++ {
		for _, n := range []int{4, 7} {
			f := (n - 1) / 3
			rng := rand.New(rand.NewSource(seed))
			x := types.ReplicaID(rng.Intn(n))
			crash := types.Round(5 + rng.Intn(20))
			e := leader.New(leader.Reputation, n, 5, f)
			c := newChain()
			for r := types.Round(1); r < crash+40; r++ {
				author := types.ReplicaID(rng.Intn(n))
				signers := others(rng, n, types.ReplicaID(n), 2*f+1+rng.Intn(n-2*f)) // anyone
				if r >= crash {
					signers = others(rng, n, x, 2*f+1)
					for author == x {
						author = types.ReplicaID(rng.Intn(n))
					}
				}
				qc := c.grow(author, signers)
				e.Update(qc, 0, c.led.CommittedBlock)
				if qc.Round() >= crash+leader.RecentRounds {
					if got := e.Get(qc.Round() + 2); got == x {
						t.Fatalf("seed %d n %d: crashed replica %d (crash at round %d) elected for round %d by the QC of round %d", seed, n, x, crash, qc.Round()+2, qc.Round())
					}
				}
			}
		}
	}
}

// TestFallbackSkipsCrashedLeader: the rounds after a crash. Round s times out
// because its votes go to the crashed leader x of round s+1, and round s+1
// times out because x never proposes. Every replica holds some TC of s and of
// s+1 (with different signers: only their rounds may matter), and the fallback
// leaders of s+2 and s+3, and of s+4 (decided by the QC of round s+2, which x
// did not sign) are not x, for every round and every crashed replica.
func TestFallbackSkipsCrashedLeader(t *testing.T) {
	for _, n := range []int{4, 7} {
		f := (n - 1) / 3
		rng := rand.New(rand.NewSource(int64(n)))
		for s := types.Round(2); s < 60; s++ {
			x := types.ReplicaID(uint64(s+1) / 2 % uint64(n)) // the round-robin leader of s+1
			// One QC of round s+2 (formed by the leader of s+3, passed on).
			qc := &types.QC{VoteInfo: types.VoteInfo{Round: s + 2, ParentRound: s - 1}, Signatures: sigs(others(rng, n, x, 2*f+1))}
			var got [3][]types.ReplicaID
			for range 3 { // three replicas, each with its own TCs
				e := leader.New(leader.Reputation, n, 5, f)
				e.UpdateTC(&types.TC{Round: s, Signatures: sigs(others(rng, n, x, 2*f+1))}, s)
				e.UpdateTC(&types.TC{Round: s + 1, Signatures: sigs(others(rng, n, x, 2*f+1))}, s+1)
				a, b := e.Get(s+2), e.Get(s+3)
				e.Update(qc, s+3, (&ledger.Memory{}).CommittedBlock)
				c := e.Get(s + 4)
				for i, l := range []types.ReplicaID{a, b, c} {
					if l == x {
						t.Fatalf("n %d: crashed replica %d (leader of round %d) leads fallback round %d", n, x, s+1, s+2+types.Round(i))
					}
					got[i] = append(got[i], l)
				}
			}
			for i := range got {
				if !slices.Equal(got[i], []types.ReplicaID{got[i][0], got[i][0], got[i][0]}) {
					t.Fatalf("n %d round %d: replicas with different TCs disagree: %v", n, s+2+types.Round(i), got[i])
				}
			}
		}
	}
}

// TestSlowReplicaStillElected: replica s is live, but its vote reaches the
// leader after the quorum in three QCs out of four (it is missing from them).
// It must still be elected regularly: leaving it out on one late vote would
// starve it.
func TestSlowReplicaStillElected(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewSource(seed))
		const n, s = 4, types.ReplicaID(3)
		e := leader.New(leader.Reputation, n, 5, 1)
		c := newChain()
		elected, elections := 0, 0
		for r := types.Round(1); r < 400; r++ {
			signers := others(rng, n, s, 3)
			if rng.Intn(4) == 0 {
				signers = append(others(rng, n, s, 2), s)
			}
			qc := c.grow(types.ReplicaID(rng.Intn(n)), signers)
			e.Update(qc, 0, c.led.CommittedBlock)
			if r > 10 {
				elections++
				if e.Get(qc.Round()+2) == s {
					elected++
				}
			}
		}
		// s is a candidate whenever it signed QC(r) or QC(r-2) (7 in 16)
		// and not the last author; it should lead several percent of rounds.
		if elected*20 < elections {
			t.Fatalf("seed %d: slow replica %d elected in %d of %d rounds", seed, s, elected, elections)
		}
	}
}

// TestElectionDeterministic: two replicas that hold the same certificates,
// received in different orders (QCs and TCs interleaved differently, some
// twice), choose the same leader for every round; a third fed them again
// agrees too.
func TestElectionDeterministic(t *testing.T) {
	for seed := int64(1); seed <= 30; seed++ {
		rng := rand.New(rand.NewSource(seed))
		const n = 4
		c := newChain()
		type cert struct {
			qc *types.QC
			tc *types.TC
		}
		var certs []cert
		for r := types.Round(1); r < 60; r++ {
			if rng.Intn(5) == 0 { // a round that also timed out somewhere
				certs = append(certs, cert{tc: &types.TC{Round: r + 100, Signatures: sigs(others(rng, n, n, 3))}})
			}
			certs = append(certs, cert{qc: c.grow(types.ReplicaID(rng.Intn(n)), others(rng, n, n, 3+rng.Intn(2)))})
		}
		feed := func(order []int) *leader.Election {
			e := leader.New(leader.Reputation, n, 5, 1)
			for _, i := range order {
				if certs[i].qc != nil {
					e.Update(certs[i].qc, 0, c.led.CommittedBlock)
				} else {
					e.UpdateTC(certs[i].tc, 0)
				}
			}
			return e
		}
		inOrder := make([]int, len(certs))
		for i := range inOrder {
			inOrder[i] = i
		}
		shuffled := append(rng.Perm(len(certs)), rng.Perm(len(certs))[:10]...)
		a, b, a2 := feed(inOrder), feed(shuffled), feed(inOrder)
		for r := types.Round(0); r < 200; r++ {
			if a.Get(r) != b.Get(r) || a.Get(r) != a2.Get(r) {
				t.Fatalf("seed %d: round %d: leaders %d, %d, %d from the same certificates", seed, r, a.Get(r), b.Get(r), a2.Get(r))
			}
		}
	}
}

// TestFallbackRule covers the fallback in detail: the round-robin candidate
// ⌊r/2⌋ mod n unless it led round r-1 or r-2 and that round ended by a TC
// with no QC known, or did not sign the QC of round r-2; then the next in
// round-robin order. Round-robin mode ignores all of it.
func TestFallbackRule(t *testing.T) {
	const n = 4
	tc := func(r types.Round) *types.TC {
		return &types.TC{Round: r, Signatures: sigs([]types.ReplicaID{0, 1, 2})}
	}
	qc := func(r types.Round, ids ...types.ReplicaID) *types.QC {
		return &types.QC{VoteInfo: types.VoteInfo{Round: r, ParentRound: r - 3}, Signatures: sigs(ids)}
	}
	none := (&ledger.Memory{}).CommittedBlock
	e := leader.New(leader.Reputation, n, 5, 1)
	// Round 9 (leader ⌊9/2⌋ mod 4 = 0) timed out: its suspects are its leader
	// 0 and its vote aggregator, round 10's candidate 1, so round 10 goes to
	// 2. A TC of round 10 (leader 2, aggregator 2) moves 11 (candidate 1) past
	// 0, 1 (round 9) and 2 to 3, and 12 (candidate 2) past 2 to 3.
	e.UpdateTC(tc(9), 9)
	if got := e.Get(10); got != 2 {
		t.Fatalf("Get(10) = %d, want 2", got)
	}
	e.UpdateTC(tc(10), 10)
	if got := e.Get(11); got != 3 {
		t.Fatalf("after a TC of round 10 led by 2: Get(11) = %d, want 3", got)
	}
	if got := e.Get(12); got != 3 {
		t.Fatalf("Get(12) = %d, want 3", got)
	}
	// A QC of round 10 shows round 10 did not fail after all: round 11
	// skips only round 9's suspects 0 and 1.
	e.Update(qc(10, 0, 1, 2), 10, none)
	if got := e.Get(11); got != 2 {
		t.Fatalf("QC of round 10 known: Get(11) = %d, want 2", got)
	}
	// ... and its non-signer 3 is skipped in round 12+... : round 12's basis is
	// the QC of round 10: candidate 2 signed.
	if got := e.Get(12); got != 2 {
		t.Fatalf("Get(12) = %d, want 2", got)
	}
	// Round 14: candidate 3; the QC of round 12 lacks 3, so 0.
	e.Update(qc(12, 0, 1, 2), 12, none)
	if got := e.Get(14); got != 0 {
		t.Fatalf("Get(14) = %d, want 0 (3 did not sign the QC of round 12)", got)
	}
	// Rounds 22 and 23 (candidate 3 for both) timed out: the leader of 22
	// was 3, so 23's went to 0; round 24 (candidate 0) skips both, to 1.
	e.UpdateTC(tc(22), 22)
	e.UpdateTC(tc(23), 23)
	if l22, l23, l24 := e.Get(22), e.Get(23), e.Get(24); l22 != 3 || l23 != 0 || l24 != 1 {
		t.Fatalf("leaders of 22, 23, 24 = %d, %d, %d, want 3, 0, 1", l22, l23, l24)
	}
	// Old rounds are forgotten.
	e.UpdateTC(tc(40), 40)
	if got := e.Get(24); got != 0 {
		t.Fatalf("Get(24) after pruning = %d, want 0", got)
	}
	rr := leader.New(leader.RoundRobin, n, 5, 1)
	rr.UpdateTC(tc(10), 10)
	rr.Update(qc(10, 0, 1, 2), 10, none)
	for r := types.Round(10); r < 16; r++ {
		if got, want := rr.Get(r), types.ReplicaID(uint64(r)/2%n); got != want {
			t.Fatalf("round-robin mode: Get(%d) = %d, want %d", r, got, want)
		}
	}
}

// TestTimeoutReplacesNextLeader (issue #8, a crash of the next leader): the
// QC of round r-1 elected x, alive then, to lead round r+1, so x is the
// aggregator of round r's votes. x dies; round r ends by a TC and no QC of it
// exists. The leader of round r+1 is then neither x nor the leader of round
// r (the TC cannot tell which failed), and so is the leader of round r+2 as
// seen while round r+1 runs (its votes go there). Replicas holding TCs of
// round r with different signers agree. If a QC of round r turns up after
// all (round r did not fail), x leads round r+1 again, as for the replicas
// that entered round r+1 by that QC.
func TestTimeoutReplacesNextLeader(t *testing.T) {
	for seed := int64(1); seed <= 60; seed++ {
		for _, n := range []int{4, 7} {
			f := (n - 1) / 3
			rng := rand.New(rand.NewSource(seed))
			c := newChain()
			var e []*leader.Election
			for range 3 {
				e = append(e, leader.New(leader.Reputation, n, 5, f))
			}
			for range 8 + rng.Intn(20) {
				qc := c.grow(types.ReplicaID(rng.Intn(n)), others(rng, n, types.ReplicaID(n), 2*f+1+rng.Intn(n-2*f)))
				for _, ei := range e {
					ei.Update(qc, 0, c.led.CommittedBlock)
				}
			}
			r := c.last.Round + 1 // the round in progress; QC(r-1) elected r+1
			x, lr := e[0].Get(r+1), e[0].Get(r)
			// Round r's block, certified by some (x formed QC(r) and died).
			b := &types.Block{Author: lr, Round: r, QC: c.lastQC}
			b.ID = b.ComputeID()
			vi := types.VoteInfo{ID: b.ID, Round: r, ParentID: b.ParentID(), ParentRound: b.QC.Round()}
			late := &types.QC{VoteInfo: vi, Signatures: sigs(others(rng, n, x, 2*f+1))}
			var got [2][]types.ReplicaID
			for _, ei := range e {
				ei.UpdateTC(&types.TC{Round: r, Signatures: sigs(others(rng, n, x, 2*f+1))}, r)
				l1, l2 := ei.Get(r+1), ei.Get(r+2)
				for i, l := range []types.ReplicaID{l1, l2} {
					if l == x || l == lr {
						t.Fatalf("seed %d n %d: after a TC of round %d (leader %d, aggregator %d), round %d is led by %d", seed, n, r, lr, x, r+1+types.Round(i), l)
					}
					got[i] = append(got[i], l)
				}
			}
			for i := range got {
				if got[i][0] != got[i][1] || got[i][0] != got[i][2] {
					t.Fatalf("seed %d n %d round %d: replicas with different TCs disagree: %v", seed, n, r+1+types.Round(i), got[i])
				}
			}
			e[0].Update(late, r+1, c.led.CommittedBlock)
			if got := e[0].Get(r + 1); got != x {
				t.Fatalf("seed %d n %d: QC of round %d known, yet round %d led by %d, not the reputation leader %d", seed, n, r, r+1, got, x)
			}
		}
	}
}
