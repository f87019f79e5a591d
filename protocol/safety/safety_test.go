package safety_test

import (
	"bytes"
	"crypto/ed25519"
	"math/rand"
	"testing"

	"github.com/diembft/diembft/protocol/safety"
	"github.com/diembft/diembft/protocol/types"
)

const chainID = "safety-test"

// countingSigner signs with a seeded ed25519 key and counts signatures.
type countingSigner struct {
	key   ed25519.PrivateKey
	calls int
}

func (s *countingSigner) Sign(msg []byte) []byte {
	s.calls++
	return ed25519.Sign(s.key, msg)
}

func newSigner(t *testing.T, seed int64) *countingSigner {
	t.Helper()
	seedBytes := make([]byte, ed25519.SeedSize)
	rand.New(rand.NewSource(seed)).Read(seedBytes)
	return &countingSigner{key: ed25519.NewKeyFromSeed(seedBytes)}
}

// world is a set of blocks with known speculative states; safety does not
// verify signatures, so QCs here carry none.
type world struct {
	rng    *rand.Rand
	states map[types.Hash]types.Hash
}

func newWorld(seed int64) *world {
	return &world{rng: rand.New(rand.NewSource(seed)), states: map[types.Hash]types.Hash{}}
}

func (w *world) hash() types.Hash {
	var h types.Hash
	w.rng.Read(h[:])
	return h
}

// qc certifies a fresh block of round r (whose parent has round r-1, or 0).
func (w *world) qc(r types.Round) *types.QC {
	vi := types.VoteInfo{ID: w.hash(), Round: r, ParentID: w.hash(), ParentRound: max(r, 1) - 1, ExecStateID: w.hash()}
	w.states[vi.ID] = vi.ExecStateID
	return &types.QC{VoteInfo: vi, LedgerCommitInfo: types.LedgerCommitInfo{VoteInfoHash: vi.Hash()}}
}

func (w *world) block(r types.Round, qc *types.QC) *types.Block {
	b := &types.Block{Author: 1, Round: r, QC: qc, Payload: []types.Request{{Seq: w.rng.Uint64()}}}
	b.ID = b.ComputeID()
	return b
}

func (w *world) pending(id types.Hash) (types.Hash, bool) {
	st, ok := w.states[id]
	return st, ok
}

// tc is a TC for round whose signers reported the given high QC rounds.
func tc(round types.Round, hqc ...types.Round) *types.TC {
	t := &types.TC{Round: round, TmoHighQCRounds: hqc}
	for i := range hqc {
		t.Signatures = append(t.Signatures, types.PartialSig{Signer: types.ReplicaID(i)})
	}
	return t
}

func TestVoteOncePerRound(t *testing.T) {
	const seed = 1
	w := newWorld(seed)
	s := newSigner(t, seed)
	r := safety.New(2, chainID, s, safety.State{})
	qc4 := w.qc(4)
	b := w.block(5, qc4)
	v := r.MakeVote(b, nil, w.hash(), w.pending)
	if v == nil {
		t.Fatalf("seed %d: no vote for a block extending the previous round", seed)
	}
	if s.calls != 1 {
		t.Fatalf("seed %d: %d signatures for one vote", seed, s.calls)
	}
	sig := bytes.Clone(v.Signature)
	// An equivocating leader's second block in round 5, same parent.
	if v2 := r.MakeVote(w.block(5, qc4), nil, w.hash(), w.pending); v2 != nil {
		t.Fatalf("seed %d: voted twice in round 5", seed)
	}
	// The same block again (re-delivered proposal): the stored vote, not a new signature.
	again := r.MakeVote(b, nil, w.hash(), w.pending)
	if again == nil || !bytes.Equal(again.Signature, sig) || again.VoteInfo != v.VoteInfo || again.LedgerCommitInfo != v.LedgerCommitInfo {
		t.Fatalf("seed %d: re-vote for the same block is not the stored vote: %+v", seed, again)
	}
	if s.calls != 1 {
		t.Fatalf("seed %d: re-vote signed again (%d signatures)", seed, s.calls)
	}
	// The vote survives a restart from the persisted state.
	r2 := safety.New(2, chainID, s, r.State())
	if v3 := r2.MakeVote(w.block(5, qc4), nil, w.hash(), w.pending); v3 != nil {
		t.Fatalf("seed %d: restarted replica voted twice in round 5", seed)
	}
	if v3 := r2.MakeVote(b, nil, w.hash(), w.pending); v3 == nil || !bytes.Equal(v3.Signature, sig) || s.calls != 1 {
		t.Fatalf("seed %d: restarted replica did not re-send the stored vote", seed)
	}
}

func TestVoteContents(t *testing.T) {
	const seed = 2
	w := newWorld(seed)
	s := newSigner(t, seed)
	r := safety.New(3, chainID, s, safety.State{})
	qc := w.qc(6)
	b := w.block(7, qc)
	exec := w.hash()
	v := r.MakeVote(b, nil, exec, w.pending)
	if v == nil {
		t.Fatalf("seed %d: no vote", seed)
	}
	want := types.VoteInfo{ID: b.ID, Round: 7, ParentID: qc.VoteInfo.ID, ParentRound: 6, ExecStateID: exec}
	if v.VoteInfo != want {
		t.Errorf("seed %d: vote info %+v, want %+v", seed, v.VoteInfo, want)
	}
	if v.LedgerCommitInfo.VoteInfoHash != want.Hash() {
		t.Errorf("seed %d: vote info hash mismatch", seed)
	}
	if v.LedgerCommitInfo.CommitStateID != w.states[qc.VoteInfo.ID] {
		t.Errorf("seed %d: commit state %v, want the parent's state %v", seed, v.LedgerCommitInfo.CommitStateID, w.states[qc.VoteInfo.ID])
	}
	if v.Sender != 3 {
		t.Errorf("sender %d", v.Sender)
	}
	if !ed25519.Verify(s.key.Public().(ed25519.PublicKey), v.LedgerCommitInfo.SignBytes(chainID), v.Signature) {
		t.Errorf("seed %d: vote signature does not cover the ledger commit info", seed)
	}
	st := r.State()
	if st.HighestVoteRound != 7 || st.HighestQCRound != 6 || st.LastVote != v {
		t.Errorf("seed %d: state after vote %+v", seed, st)
	}
}

func TestSafeToVote(t *testing.T) {
	cases := []struct {
		name              string
		hvr               types.Round
		blockRound, qcRnd types.Round
		tc                *types.TC
		want              bool
	}{
		{"consecutive", 4, 5, 4, nil, true},
		{"consecutive from fresh state", 0, 1, 0, nil, true},
		{"round equals highest vote round", 5, 5, 4, nil, false},
		{"round below highest vote round", 6, 5, 4, nil, false},
		{"round not above qc", 0, 4, 4, nil, false},
		{"gap without TC", 2, 5, 3, nil, false},
		{"gap with TC for previous round, QC as high as TC's", 3, 5, 3, tc(4, 3, 2, 3), true},
		{"gap with TC, QC higher than TC's", 3, 6, 4, tc(5, 3, 2, 1), true},
		// The lock: some TC signer knew a higher QC than the one the block extends.
		{"gap with TC whose high QC is higher", 3, 5, 2, tc(4, 3, 2, 1), false},
		{"gap with TC for an older round", 3, 6, 3, tc(4, 3, 3, 3), false},
		{"gap with TC for the block's round", 3, 5, 3, tc(5, 3, 3, 3), false},
		{"TC does not excuse the vote round", 5, 5, 3, tc(4, 3, 3, 3), false},
		{"consecutive with TC present", 4, 5, 4, tc(4, 3, 3, 3), true},
	}
	for _, c := range cases {
		r := safety.New(0, chainID, nil, safety.State{HighestVoteRound: c.hvr})
		if got := r.SafeToVote(c.blockRound, c.qcRnd, c.tc); got != c.want {
			t.Errorf("%s: SafeToVote(%d, %d) with hvr %d = %v, want %v", c.name, c.blockRound, c.qcRnd, c.hvr, got, c.want)
		}
	}
}

func TestMakeVoteRules(t *testing.T) {
	const seed = 3
	cases := []struct {
		name   string
		st     safety.State
		round  types.Round
		qc     types.Round
		tc     *types.TC
		voted  bool
		hqcAft types.Round
	}{
		{"extends previous round", safety.State{HighestVoteRound: 3, HighestQCRound: 2}, 5, 4, nil, true, 4},
		{"stale round", safety.State{HighestVoteRound: 5, HighestQCRound: 4}, 5, 4, nil, false, 4},
		{"older round", safety.State{HighestVoteRound: 6, HighestQCRound: 4}, 5, 4, nil, false, 4},
		{"gap, no TC", safety.State{HighestVoteRound: 3, HighestQCRound: 3}, 5, 3, nil, false, 3},
		{"gap, safe TC", safety.State{HighestVoteRound: 4, HighestQCRound: 3}, 5, 3, tc(4, 3, 3, 2), true, 3},
		{"gap, TC locks a higher QC", safety.State{HighestVoteRound: 4, HighestQCRound: 3}, 5, 2, tc(4, 3, 1, 1), false, 3},
		{"votes on a QC below its own high QC if the TC allows", safety.State{HighestVoteRound: 4, HighestQCRound: 3}, 5, 2, tc(4, 2, 2, 1), true, 3},
	}
	for _, c := range cases {
		w := newWorld(seed)
		s := newSigner(t, seed)
		r := safety.New(1, chainID, s, c.st)
		v := r.MakeVote(w.block(c.round, w.qc(c.qc)), c.tc, w.hash(), w.pending)
		if (v != nil) != c.voted {
			t.Errorf("seed %d: %s: voted = %v, want %v", seed, c.name, v != nil, c.voted)
			continue
		}
		st := r.State()
		if c.voted {
			if st.HighestVoteRound != c.round || s.calls != 1 {
				t.Errorf("seed %d: %s: hvr %d, %d signatures", seed, c.name, st.HighestVoteRound, s.calls)
			}
		} else if st != c.st || s.calls != 0 {
			t.Errorf("seed %d: %s: refused vote changed state %+v or signed (%d)", seed, c.name, st, s.calls)
		}
		if st.HighestQCRound != c.hqcAft {
			t.Errorf("seed %d: %s: highest QC round %d, want %d", seed, c.name, st.HighestQCRound, c.hqcAft)
		}
	}
}

func TestSafeToTimeout(t *testing.T) {
	cases := []struct {
		name     string
		hvr, hqc types.Round
		round    types.Round
		qcRound  types.Round
		tc       *types.TC
		want     bool
	}{
		{"after voting in the round", 5, 4, 5, 4, nil, true},
		{"fresh replica round 1", 0, 0, 1, 0, nil, true},
		{"qc below highest QC round", 5, 4, 5, 3, tc(4, 3, 3, 3), false},
		{"round at qc round", 3, 3, 3, 3, nil, false},
		{"round below hvr-1", 7, 4, 5, 4, nil, false},
		{"round at hvr-1", 6, 4, 5, 4, nil, false},
		{"round at hvr", 6, 5, 6, 5, nil, true},
		{"round above hvr", 4, 4, 5, 4, nil, true},
		{"gap without TC", 5, 3, 6, 3, nil, false},
		{"gap with TC for previous round", 5, 3, 6, 3, tc(5, 3, 3, 3), true},
		{"gap with TC for an older round", 5, 3, 7, 3, tc(5, 3, 3, 3), false},
	}
	for _, c := range cases {
		r := safety.New(0, chainID, nil, safety.State{HighestVoteRound: c.hvr, HighestQCRound: c.hqc})
		if got := r.SafeToTimeout(c.round, c.qcRound, c.tc); got != c.want {
			t.Errorf("%s: SafeToTimeout(%d, %d) with hvr %d hqc %d = %v, want %v", c.name, c.round, c.qcRound, c.hvr, c.hqc, got, c.want)
		}
	}
}

func TestTimeoutThenNoVote(t *testing.T) {
	const seed = 4
	w := newWorld(seed)
	s := newSigner(t, seed)
	r := safety.New(0, chainID, s, safety.State{HighestVoteRound: 4, HighestQCRound: 4})
	qc4 := w.qc(4)
	to := r.MakeTimeout(5, qc4, nil)
	if to == nil {
		t.Fatalf("seed %d: no timeout", seed)
	}
	if to.Round != 5 || to.HighQC != qc4 || to.Sender != 0 {
		t.Fatalf("timeout %+v", to)
	}
	if !ed25519.Verify(s.key.Public().(ed25519.PublicKey), types.TimeoutSignBytes(chainID, 5, 4), to.Signature) {
		t.Fatalf("seed %d: timeout signature does not cover (round, high QC round)", seed)
	}
	if st := r.State(); st.HighestVoteRound != 5 || st.LastTimeout != to {
		t.Fatalf("state after timeout %+v", st)
	}
	// The leader's proposal arrives late: no vote in a round we gave up on.
	if v := r.MakeVote(w.block(5, qc4), nil, w.hash(), w.pending); v != nil {
		t.Fatalf("seed %d: voted in round 5 after timing out in it", seed)
	}
	// The timer fires again: the same timeout, not a new signature, even with another high QC.
	if again := r.MakeTimeout(5, w.qc(4), nil); again != to || s.calls != 1 {
		t.Fatalf("seed %d: repeated timeout re-signed (%d signatures)", seed, s.calls)
	}
	// The next round is still open.
	if v := r.MakeVote(w.block(6, w.qc(5)), nil, w.hash(), w.pending); v == nil {
		t.Fatalf("seed %d: no vote in round 6", seed)
	}
	// Having voted in 6, a timeout for 6 is fine, one for 5 (already sent) is returned as stored.
	if to6 := r.MakeTimeout(6, w.qc(5), nil); to6 == nil {
		t.Fatalf("seed %d: no timeout in round 6 after voting in it", seed)
	}
}

func TestMakeTimeoutRefusals(t *testing.T) {
	const seed = 5
	cases := []struct {
		name    string
		st      safety.State
		round   types.Round
		qcRound types.Round
		tc      *types.TC
	}{
		{"high QC below highest QC round", safety.State{HighestVoteRound: 5, HighestQCRound: 4}, 5, 3, tc(4, 3, 3, 3)},
		{"round already passed", safety.State{HighestVoteRound: 8, HighestQCRound: 4}, 5, 4, nil},
		{"not consecutive, no TC", safety.State{HighestVoteRound: 5, HighestQCRound: 3}, 6, 3, nil},
	}
	for _, c := range cases {
		w := newWorld(seed)
		s := newSigner(t, seed)
		r := safety.New(0, chainID, s, c.st)
		if to := r.MakeTimeout(c.round, w.qc(c.qcRound), c.tc); to != nil {
			t.Errorf("seed %d: %s: timed out", seed, c.name)
		}
		if s.calls != 0 || r.State() != c.st {
			t.Errorf("seed %d: %s: refused timeout signed or changed state", seed, c.name)
		}
	}
}

func TestCommitStateIDCandidate(t *testing.T) {
	w := newWorld(6)
	qc := w.qc(4)
	unknown := w.qc(4)
	delete(w.states, unknown.VoteInfo.ID)
	cases := []struct {
		name       string
		blockRound types.Round
		qc         *types.QC
		want       types.Hash
	}{
		{"consecutive", 5, qc, w.states[qc.VoteInfo.ID]},
		{"gap of one", 6, qc, types.ZeroHash},
		{"same round", 4, qc, types.ZeroHash},
		{"parent state unknown", 5, unknown, types.ZeroHash},
	}
	for _, c := range cases {
		if got := safety.CommitStateIDCandidate(c.blockRound, c.qc, w.pending); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// Through MakeVote: a vote after a TC gap commits nothing.
	r := safety.New(0, chainID, newSigner(t, 6), safety.State{HighestVoteRound: 5})
	v := r.MakeVote(w.block(6, qc), tc(5, 4, 4, 3), w.hash(), w.pending)
	if v == nil || v.LedgerCommitInfo.Commits() {
		t.Fatalf("vote after a gap: %+v", v)
	}
}

func TestNegativeControls(t *testing.T) {
	const seed = 7
	t.Run("NoVoteRoundUpdate allows a second vote in a round", func(t *testing.T) {
		w := newWorld(seed)
		r := safety.New(0, chainID, newSigner(t, seed), safety.State{})
		r.Control.NoVoteRoundUpdate = true
		qc := w.qc(4)
		if r.MakeVote(w.block(5, qc), nil, w.hash(), w.pending) == nil || r.MakeVote(w.block(5, qc), nil, w.hash(), w.pending) == nil {
			t.Fatalf("seed %d: broken rules did not equivocate", seed)
		}
		if r.State().HighestVoteRound != 0 {
			t.Fatalf("seed %d: highest vote round raised", seed)
		}
	})
	t.Run("NoVoteRoundUpdate allows a vote after a timeout", func(t *testing.T) {
		w := newWorld(seed)
		r := safety.New(0, chainID, newSigner(t, seed), safety.State{HighestVoteRound: 4})
		r.Control.NoVoteRoundUpdate = true
		qc := w.qc(4)
		if r.MakeTimeout(5, qc, nil) == nil || r.MakeVote(w.block(5, qc), nil, w.hash(), w.pending) == nil {
			t.Fatalf("seed %d: broken rules refused to vote after a timeout", seed)
		}
	})
	t.Run("NoQCRoundLock votes against the TC's high QC", func(t *testing.T) {
		w := newWorld(seed)
		r := safety.New(0, chainID, newSigner(t, seed), safety.State{HighestVoteRound: 4, HighestQCRound: 3})
		b := w.block(5, w.qc(2))
		lock := tc(4, 3, 1, 1)
		if r.SafeToVote(5, 2, lock) {
			t.Fatal("correct rules vote against the lock")
		}
		r.Control.NoQCRoundLock = true
		if !r.SafeToVote(5, 2, lock) || r.MakeVote(b, lock, w.hash(), w.pending) == nil {
			t.Fatalf("seed %d: NoQCRoundLock still honours the lock", seed)
		}
		// The TC must still be for the previous round.
		if r.SafeToVote(7, 2, lock) {
			t.Fatal("NoQCRoundLock accepts a TC for any round")
		}
	})
	t.Run("NoQCRoundLock times out with a stale high QC", func(t *testing.T) {
		w := newWorld(seed)
		r := safety.New(0, chainID, newSigner(t, seed), safety.State{HighestVoteRound: 5, HighestQCRound: 4})
		if r.SafeToTimeout(5, 3, tc(4, 3, 3, 3)) {
			t.Fatal("correct rules time out below the highest QC round")
		}
		r.Control.NoQCRoundLock = true
		if r.MakeTimeout(5, w.qc(3), tc(4, 3, 3, 3)) == nil {
			t.Fatalf("seed %d: NoQCRoundLock refused a stale timeout", seed)
		}
	})
	t.Run("zero Control is the correct rules", func(t *testing.T) {
		var c safety.Control
		if c.NoQCRoundLock || c.NoVoteRoundUpdate {
			t.Fatal("zero Control breaks a rule")
		}
	})
}

// TestRandomRoundsNeverEquivocate drives one safety module with random
// proposals, TCs and timeouts and checks the paper's invariants: at most one
// signed vote per round, votes in increasing rounds, no vote in a round after
// a timeout in it.
func TestRandomRoundsNeverEquivocate(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		w := newWorld(seed)
		s := newSigner(t, seed)
		r := safety.New(0, chainID, s, safety.State{})
		rng := rand.New(rand.NewSource(seed))
		voted := map[types.Round]types.Hash{}
		timedOut := map[types.Round]bool{}
		var lastVoteRound types.Round
		for range 400 {
			round := types.Round(rng.Intn(40) + 1)
			qcRound := types.Round(rng.Intn(int(round)))
			var last *types.TC
			if rng.Intn(2) == 0 {
				last = tc(round-1, types.Round(rng.Intn(int(round))), 0, 0)
				if last.TmoHighQCRounds[0] >= round-1 && round > 1 {
					last.TmoHighQCRounds[0] = round - 2
				}
			}
			if rng.Intn(4) == 0 {
				if to := r.MakeTimeout(round, w.qc(qcRound), last); to != nil {
					timedOut[round] = true
				}
				continue
			}
			b := w.block(round, w.qc(qcRound))
			v := r.MakeVote(b, last, w.hash(), w.pending)
			if v == nil {
				continue
			}
			if id, ok := voted[round]; ok && id != b.ID {
				t.Fatalf("seed %d: two votes in round %d", seed, round)
			}
			if _, ok := voted[round]; !ok {
				if round <= lastVoteRound {
					t.Fatalf("seed %d: vote in round %d after voting in %d", seed, round, lastVoteRound)
				}
				if timedOut[round] {
					t.Fatalf("seed %d: vote in round %d after timing out in it", seed, round)
				}
			}
			voted[round] = b.ID
			lastVoteRound = max(lastVoteRound, round)
		}
	}
}

// TestCompact: the state saved has its certificates cut to a quorum of
// signatures, and they still verify (found by review: a QC of every signer
// of a large committee, which a Byzantine leader can publish, made the
// state too large for the replica's slot and stopped the replica). The
// state itself is not changed.
func TestCompact(t *testing.T) {
	const n = 7 // f = 2, quorum 5
	com := &types.Committee{ChainID: chainID, F: 2}
	var keys []ed25519.PrivateKey
	for i := range n {
		k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, ed25519.SeedSize))
		keys = append(keys, k)
		com.Keys = append(com.Keys, k.Public().(ed25519.PublicKey))
	}
	vi := types.VoteInfo{ID: types.Hash{9}, Round: 8, ParentID: types.Hash{8}, ParentRound: 7}
	qc := &types.QC{VoteInfo: vi, LedgerCommitInfo: types.LedgerCommitInfo{VoteInfoHash: vi.Hash()}}
	tc := &types.TC{Round: 9}
	for i := range n {
		qc.Signatures = append(qc.Signatures, types.PartialSig{Signer: types.ReplicaID(i), Sig: ed25519.Sign(keys[i], qc.LedgerCommitInfo.SignBytes(chainID))})
		tc.TmoHighQCRounds = append(tc.TmoHighQCRounds, types.Round(i+2))
		tc.Signatures = append(tc.Signatures, types.PartialSig{Signer: types.ReplicaID(i), Sig: ed25519.Sign(keys[i], types.TimeoutSignBytes(chainID, 9, types.Round(i+2)))})
	}
	if err := com.VerifyQC(qc); err != nil {
		t.Fatal(err)
	}
	if err := com.VerifyTC(tc); err != nil {
		t.Fatal(err)
	}
	st := safety.State{HighestVoteRound: 10, LastTimeout: &types.TimeoutInfo{Round: 10, HighQC: qc, Sender: 1}, HighTC: tc}
	c := st.Compact(com.Quorum())
	if len(c.LastTimeout.HighQC.Signatures) != 5 || len(c.HighTC.Signatures) != 5 || len(c.HighTC.TmoHighQCRounds) != 5 {
		t.Fatalf("compact: QC of %d signatures, TC of %d (%d rounds), want 5", len(c.LastTimeout.HighQC.Signatures), len(c.HighTC.Signatures), len(c.HighTC.TmoHighQCRounds))
	}
	fresh := &types.Committee{ChainID: chainID, F: 2, Keys: com.Keys} // no verification cache
	if err := fresh.VerifyQC(c.LastTimeout.HighQC); err != nil {
		t.Errorf("compacted QC: %v", err)
	}
	if err := fresh.VerifyTC(c.HighTC); err != nil {
		t.Errorf("compacted TC: %v", err)
	}
	if len(qc.Signatures) != n || len(tc.Signatures) != n || st.LastTimeout.HighQC != qc || st.HighTC != tc {
		t.Error("Compact changed the state it was given")
	}
	if again := c.Compact(com.Quorum()); again.LastTimeout.HighQC != c.LastTimeout.HighQC || again.HighTC != c.HighTC {
		t.Error("a compact state was copied again")
	}
}
