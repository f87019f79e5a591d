package node

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/diembft/diembft/protocol/safety"
	"github.com/diembft/diembft/protocol/types"
)

// hashSigner "signs" with a hash of the message: the crash tests compare
// what was signed, not who signed it, and ed25519 would make thousands of
// crash points slow.
type hashSigner struct{}

func (hashSigner) Sign(msg []byte) []byte { s := sha256.Sum256(msg); return s[:] }

// safetyEvent asks the safety rules for a vote on a block or a timeout in a round.
type safetyEvent struct {
	block   *types.Block // nil: a timeout
	round   types.Round
	timeout *types.QC // the high QC of a timeout
}

func fakeQC(rng *rand.Rand, r types.Round) *types.QC {
	var id, parent types.Hash
	for i := range id {
		id[i], parent[i] = byte(rng.Uint32()), byte(rng.Uint32())
	}
	vi := types.VoteInfo{ID: id, Round: r, ParentID: parent, ParentRound: max(r, 1) - 1, ExecStateID: sha256.Sum256(id[:])}
	return &types.QC{VoteInfo: vi, LedgerCommitInfo: types.LedgerCommitInfo{VoteInfoHash: vi.Hash()}}
}

func pendingStateOf(id types.Hash) (types.Hash, bool) { return sha256.Sum256(id[:]), true }

// safetyEvents is a seeded run of rounds: mostly a proposal that extends the
// previous round, sometimes a second, conflicting proposal of the same round
// (an equivocating leader), a proposal delivered again, a timeout (before or
// after the vote) and its re-broadcast, or a skipped round.
func safetyEvents(rng *rand.Rand, rounds int) []safetyEvent {
	var evs []safetyEvent
	for r := types.Round(1); r <= types.Round(rounds); r++ {
		var round []safetyEvent
		qc := fakeQC(rng, r-1)
		block := func() *types.Block {
			b := &types.Block{Author: types.ReplicaID(rng.IntN(4)), Round: r, QC: qc, Payload: []types.Request{{Seq: rng.Uint64()}}}
			b.ID = b.ComputeID()
			return b
		}
		if rng.IntN(10) < 8 {
			b := block()
			round = append(round, safetyEvent{block: b, round: r})
			if rng.IntN(4) == 0 {
				round = append(round, safetyEvent{block: b, round: r})
			}
		}
		for rng.IntN(3) == 0 {
			round = append(round, safetyEvent{block: block(), round: r})
		}
		if rng.IntN(3) == 0 {
			round = append(round, safetyEvent{round: r, timeout: qc})
			if rng.IntN(3) == 0 {
				round = append(round, safetyEvent{round: r, timeout: qc})
			}
		}
		rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		evs = append(evs, round...)
	}
	return evs
}

// sentLog is what left the replica: the signed content of every vote and
// timeout, by round.
type sentLog struct {
	votes    map[types.Round]types.LedgerCommitInfo
	timeouts map[types.Round]string
	maxRound types.Round
}

func (s *sentLog) vote(v *types.Vote) error {
	if prev, ok := s.votes[v.VoteInfo.Round]; ok && prev != v.LedgerCommitInfo {
		return fmt.Errorf("two different votes sent in round %d", v.VoteInfo.Round)
	}
	s.votes[v.VoteInfo.Round] = v.LedgerCommitInfo
	s.maxRound = max(s.maxRound, v.VoteInfo.Round)
	return nil
}

func (s *sentLog) timeout(t *types.TimeoutInfo) error {
	content := fmt.Sprintf("%d/%x/%x", t.HighQC.Round(), t.HighQC.BlockID(), t.Signature)
	if prev, ok := s.timeouts[t.Round]; ok && prev != content {
		return fmt.Errorf("two different timeouts sent in round %d", t.Round)
	}
	s.timeouts[t.Round] = content
	s.maxRound = max(s.maxRound, t.Round)
	return nil
}

// openSafetyAfterCrash reopens the safety store, restarting the file system
// again each time a crash point hits the reopening itself.
func openSafetyAfterCrash(fs *crashFS, plan crashPlan) (*safetyStore, safety.State, error) {
	for {
		s, st, err := openSafetyLog(fs, "/home", crashLogSwitchAt, crashLogArea)
		if !errors.Is(err, errCrashed) {
			return s, st, err
		}
		fs.mode = crashMode(plan.rng.IntN(int(numCrashModes)))
		fs.restart(plan.next(fs))
	}
}

// The crash tests' vote log switches areas every few records, so that
// crashes hit switches too.
const (
	crashLogSwitchAt = 1 << 10
	crashLogArea     = 8 << 10
)

// chainLag is how many rounds the crash tests' "synced chain" (the vote
// log's keepAbove) trails the highest round voted in.
const chainLag = 10

// runSafetyCrash drives safety.Rules and the safety store through evs the way
// the replica does (persist with the voted block, and send only once the
// save returned), crashing as plan says and restarting from the recovered
// state. After a crash the event being handled is delivered again or lost.
// Besides the safety invariants, every block voted for whose vote was sent
// must come back from the vote log while it is above the synced chain
// (keepAbove, chainLag rounds behind); keepTooLittle is the negative
// control that tells the store a chain higher than the harness's. It
// returns the number of mutating file calls made and the first broken
// invariant.
func runSafetyCrash(evs []safetyEvent, plan crashPlan, noSync, keepTooLittle bool) (int, error) {
	fs := newCrashFS(plan.rng, plan.first, crashMode(plan.rng.IntN(int(numCrashModes))))
	fs.noSync = noSync
	// The negative control checks only what was sent: the weaker invariant
	// alone must catch it.
	checkCovered := !noSync
	store, st, err := openSafetyAfterCrash(fs, plan)
	if err != nil {
		return fs.ops, fmt.Errorf("open: %w", err)
	}
	rules := safety.New(1, "crash-test", hashSigner{}, st)
	sent := &sentLog{votes: map[types.Round]types.LedgerCommitInfo{}, timeouts: map[types.Round]string{}}
	voted := map[types.Hash]*types.Block{} // blocks whose vote was sent
	var synced types.Round                 // the chain's synced round
	keepAbove := func() types.Round {
		if keepTooLittle {
			return sent.maxRound
		}
		return synced
	}
	store.keepAbove = keepAbove
	// covered checks that a recovered state still forbids what was sent,
	// and that the log gave back every voted block above the synced chain.
	covered := func(st safety.State, s *safetyStore) error {
		if !checkCovered {
			return nil
		}
		if st.HighestVoteRound < sent.maxRound {
			return fmt.Errorf("recovered highest vote round %d < %d, a round already voted or timed out in", st.HighestVoteRound, sent.maxRound)
		}
		back := map[types.Hash]bool{}
		for _, b := range s.logged {
			back[b.ID] = true
		}
		for id, b := range voted {
			if b.Round > synced && !back[id] {
				return fmt.Errorf("the vote log lost the block of round %d voted for (synced chain at round %d)", b.Round, synced)
			}
		}
		return nil
	}
	crashes := 0
	for i := 0; i < len(evs); {
		ev := evs[i]
		var vote *types.Vote
		var tmo *types.TimeoutInfo
		if ev.block != nil {
			st, _ := pendingStateOf(ev.block.ID)
			vote = rules.MakeVote(ev.block, nil, st, pendingStateOf)
		} else {
			tmo = rules.MakeTimeout(ev.round, ev.timeout, nil)
		}
		if vote == nil && tmo == nil {
			i++
			continue
		}
		var b *types.Block
		if vote != nil {
			b = ev.block
		}
		if err := store.save(rules.State(), b); err != nil {
			if !errors.Is(err, errCrashed) {
				return fs.ops, fmt.Errorf("event %d: save: %w", i, err)
			}
			crashes++
			fs.mode = crashMode(plan.rng.IntN(int(numCrashModes)))
			fs.restart(plan.next(fs))
			if store, st, err = openSafetyAfterCrash(fs, plan); err != nil {
				return fs.ops, fmt.Errorf("reopen after crash %d (%v): %w", crashes, fs.last, err)
			}
			store.keepAbove = keepAbove
			if err := covered(st, store); err != nil {
				return fs.ops, fmt.Errorf("after crash %d at event %d: %w", crashes, i, err)
			}
			rules = safety.New(1, "crash-test", hashSigner{}, st)
			if plan.rng.IntN(2) == 0 {
				i++ // the message that asked for the vote is lost; else it comes again
			}
			continue
		}
		// The save returned: the vote or timeout may leave the process now.
		if vote != nil {
			err = sent.vote(vote)
			voted[ev.block.ID] = ev.block
			if sent.maxRound > chainLag {
				synced = max(synced, sent.maxRound-chainLag)
			}
		} else {
			err = sent.timeout(tmo)
		}
		if err != nil {
			return fs.ops, fmt.Errorf("event %d, after %d crashes: %w", i, crashes, err)
		}
		i++
	}
	// A final power loss: what was sent must still be covered.
	fs.powerLoss()
	fs.restart(-1)
	store, st, err = openSafetyLog(fs, "/home", crashLogSwitchAt, crashLogArea)
	if err == nil {
		err = covered(st, store)
	}
	if err != nil {
		return fs.ops, fmt.Errorf("after the final crash: %w", err)
	}
	return fs.ops, nil
}

// crashSeeds is the default number of seeds of a crash-point test: n, or
// a tenth of it under the race detector or -short.
func crashSeeds(n int) int {
	if raceEnabled || testing.Short() {
		return max(n/10, 1)
	}
	return n
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// TestSafetyStoreCrashPoints crashes the safety store before every mutating
// file call of a seeded run (before a write, after a write but before its
// fdatasync, after it), with the unsynced data lost, kept or torn, and again
// at random later points; the restarted rules must never let two different
// votes or timeouts of one round leave the replica. CRASH_SEEDS sets the
// number of seeds and CRASH_SEED runs one.
func TestSafetyStoreCrashPoints(t *testing.T) {
	seeds := envInt("CRASH_SEEDS", crashSeeds(30))
	first := uint64(envInt("CRASH_SEED", 1))
	if os.Getenv("CRASH_SEED") != "" {
		seeds = 1
	}
	points := 0
	for seed := first; seed < first+uint64(seeds); seed++ {
		evs := safetyEvents(rand.New(rand.NewPCG(seed, 0)), 40)
		total, err := runSafetyCrash(evs, crashPlan{first: -1, rng: rand.New(rand.NewPCG(seed, 1))}, false, false)
		if err != nil {
			t.Fatalf("seed %d, no crash: %v", seed, err)
		}
		for k := 0; k <= total; k++ {
			plan := crashPlan{first: k, span: total, rng: rand.New(rand.NewPCG(seed, uint64(k)+2))}
			if _, err := runSafetyCrash(evs, plan, false, false); err != nil {
				t.Fatalf("seed %d (CRASH_SEED=%d), %v: %v", seed, seed, plan, err)
			}
			points++
		}
	}
	t.Logf("%d seeds, %d crash points", seeds, points)
}

// TestSafetyCrashHarnessCatchesMissingSync is the negative control: a store
// whose fdatasync does nothing must be caught by the same harness, as two
// different votes or timeouts sent in one round.
func TestSafetyCrashHarnessCatchesMissingSync(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		evs := safetyEvents(rand.New(rand.NewPCG(seed, 0)), 40)
		total, _ := runSafetyCrash(evs, crashPlan{first: -1, rng: rand.New(rand.NewPCG(seed, 1))}, false, false)
		for k := 0; k <= total; k++ {
			plan := crashPlan{first: k, span: total, rng: rand.New(rand.NewPCG(seed, uint64(k)+2))}
			if _, err := runSafetyCrash(evs, plan, true, false); err != nil {
				t.Logf("caught at seed %d, %v: %v", seed, plan, err)
				return
			}
		}
	}
	t.Fatal("a safety store without fdatasync went unnoticed")
}

// TestVoteLogCrashHarnessCatchesLostBlocks is the vote log's negative
// control: a store told the synced chain is higher than it is carries too
// little to each new generation, and the harness must catch a voted block
// that no longer comes back.
func TestVoteLogCrashHarnessCatchesLostBlocks(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		evs := safetyEvents(rand.New(rand.NewPCG(seed, 0)), 40)
		if _, err := runSafetyCrash(evs, crashPlan{first: -1, rng: rand.New(rand.NewPCG(seed, 1))}, false, true); err != nil {
			t.Logf("caught at seed %d: %v", seed, err)
			return
		}
	}
	t.Fatal("a vote log that drops needed blocks at its switches went unnoticed")
}
