// Package leader is DiemBFT v4's leader election (paper §3, "LeaderElection"):
// reputation-based election over the recent committed history, with a
// fallback for the rounds the reputation scheme does not cover, and a fixed
// per-round map for tests and Twins scenarios.
//
// Every choice is a deterministic function of certified data (QCs, TCs and
// the blocks they certify), never of local timing, so that honest replicas
// holding the same certificates agree on the leader of every round.
//
// Departures from the paper, for a crashed replica (issue #8). With the
// paper's rules a replica killed during steady operation stays "active" in
// the reputation window (it signed the last window_size QCs) and keeps being
// elected, and the round-robin fallback ⌊r/2⌋ mod n gives it two rounds in a
// row; each of its rounds, and each round before one (whose votes go to it),
// ends by a timeout: four in a row were measured. Here:
//
//   - Reputation: only the signers of the window's QCs of the newest rounds
//     (RecentRounds) are active, so a replica missing from the QCs formed
//     after its crash drops out at the next election. Aptos' LeaderReputation
//     (consensus/src/liveness/leader_reputation.rs, ProposerAndVoterHeuristic)
//     does the same job with weights: failed_weight for replicas whose rounds
//     failed, inactive_weight for those with no votes in the window.
//   - Fallback (rounds without a reputation leader, which after a timeout are
//     the next three): the round-robin candidate ⌊r/2⌋ mod n, skipped forward
//     in round-robin order past (a) the suspects of round r-1 or r-2 if that
//     round ended by a TC and no QC of it is known: its leader and the
//     aggregator of its votes (below); Aptos' "failed authors" are the
//     proposers of the rounds a block skipped; and (b) the replicas that did
//     not sign the QC of round r-2. Both hold for everyone holding the
//     certificates: any TC of round s shows round s failed, and a QC is one
//     object, formed by the next leader and passed on. We do not skip the
//     non-signers of a TC: each replica forms its own TC from the first 2f+1
//     timeouts it gets, so with n ≥ 7 their signer sets differ and replicas
//     disagree on the leader (measured in protocol/sim: five timeouts in a
//     row instead of two).
//   - After a timeout: if round r-1 ended by a TC and no QC of round r-1 is
//     known, round r gets the fallback leader even if the QC of round r-3
//     elected a reputation leader for it. Round r-1's votes went to that
//     leader (votes go to the next round's leader), so the TC shows that the
//     leader of r-1 did not propose or the leader of r did not form the QC;
//     we cannot tell which, so both are suspects and skipped. The aggregator
//     of round s's votes is the leader of s+1 as chosen without the TC of s
//     (get with ignore = s). Without this, a replica killed while it was the
//     leader of the next round (elected from a QC it signed alive) cost two
//     timeouts: the round whose votes it lost, then its own round. Now the
//     round after the TC has a live leader, and its votes go to a live
//     leader of the round after (the suspects of r-1 are skipped in round
//     r+1 too), so only one round times out.
//
// Agreement on a late commit. A replica that gets the QC electing round
// r+2 before it has committed the history the election reads (it is
// fetching a block) uses the fallback for r+2 at first; Retry elects it
// again after the commits, so it ends up with the others' choice.
//
// Agreement after a timeout. The choice for round r depends on whether the
// replica holds a TC of round r-1 and whether it holds a QC of round r-1, so
// two honest replicas disagree only when both certificates exist and one of
// them has not seen the QC yet: round r-1's aggregator formed the QC just as
// 2f+1 replicas gave up on the round. Replicas that entered round r by the
// QC keep the reputation leader (round r-1 did not fail for them); the
// reputation leader's proposal carries that QC, so anyone receiving it
// switches to it, but a replica that already voted for the fallback leader's
// proposal cannot vote again in round r, and round r may fail: one extra
// timeout, in a race that needs round r-1 to end at its timeout anyway. The
// aggregator itself stops taking round r-1's votes once it holds the TC (it
// is no longer the leader of round r), which keeps it from forming such a
// late QC. A Byzantine aggregator can create the race on purpose, but it can
// already make round r fail by not proposing. Safety never depends on the
// leader: the safety rules vote at most once per round whoever proposes.
//
// Aptos (consensus/src/liveness) does not change the proposer of a round
// after a timeout: LeaderReputation's window lags the committed history by
// exclude_round rounds, and failed proposers lose weight only once blocks
// carrying them as failed_authors commit, so a dead validator keeps its
// scheduled rounds for a while and each costs a timeout. Here the election
// works from the newest certificates, which lets a TC act at once.
package leader

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"

	"github.com/diembft/diembft/protocol/types"
)

// Mode selects the election scheme.
type Mode int

const (
	Reputation Mode = iota
	RoundRobin
)

// RecentRounds bounds how old the newest QC a reputation candidate signed
// may be: a candidate must have signed a QC of the window whose round is at
// least qc.Round - RecentRounds, where qc elects. In steady state the window
// walk visits the QCs of rounds r, r-2, r-3, ... (see elect), so that is the
// newest two QCs: a live replica whose vote reached the leader after the
// quorum once is still a candidate, and one missing from both is left out of
// this one election only (it is back as soon as it signs again). After a
// timeout the older QCs of the window predate the gap and do not count, so a
// replica that signed nothing since is out at once.
const RecentRounds = 2

// keepRounds: choices and certificates of rounds this far below the current
// round are kept, because the fallback of round r looks at rounds r-1 and
// r-2 and at their leaders (failedDepth levels deep), and the core asks for
// the leader of the round before the current one (votes). Pruning never
// changes a choice the core can still ask for.
const keepRounds = 2*(failedDepth+1) + 1

// Election picks the leader of each round.
type Election struct {
	mode        Mode
	n           int
	windowSize  int
	excludeSize int
	reputation  map[types.Round]types.ReplicaID
	// qcSigners holds the signers of the QC of round s (the first seen).
	qcSigners map[types.Round][]bool
	// failed holds the rounds this replica holds a TC of.
	failed map[types.Round]bool
	// unelected holds, by target round, the QCs whose election lacked
	// committed history here: the block the QC commits (or one of the
	// window) was not committed yet, because this replica was still
	// fetching it. Retry elects them after later commits, so that a replica
	// that commits late agrees with the others again; before, it kept the
	// fallback leader for that round, and its vote went elsewhere (8 of
	// ~1,000 rounds of a throughput bench, harmless with all four alive,
	// a timeout with one of them dead).
	unelected map[types.Round]*types.QC
	// Fixed overrides the election for the listed rounds (tests, Twins).
	Fixed map[types.Round]types.ReplicaID
}

// New creates an election for n replicas.
func New(mode Mode, n, windowSize, excludeSize int) *Election {
	return &Election{mode: mode, n: n, windowSize: windowSize, excludeSize: excludeSize,
		reputation: map[types.Round]types.ReplicaID{}, qcSigners: map[types.Round][]bool{}, failed: map[types.Round]bool{},
		unelected: map[types.Round]*types.QC{}}
}

// Get is the paper's get_leader: a fixed leader, else the reputation leader
// elected by the QC of round r-2, else the fallback. After a round r-1 that
// ended by a TC with no QC of it known, the fallback replaces the reputation
// leader of round r (see the package comment, "after a timeout").
func (e *Election) Get(r types.Round) types.ReplicaID { return e.get(r, failedDepth, noRound) }

// failedDepth bounds the recursion of the fallback into the leaders and vote
// aggregators of earlier failed rounds, so that a choice depends only on
// certificates of rounds r-1 .. r-2·(failedDepth+1), which keepRounds keeps.
const failedDepth = 2

// noRound is a round that is never ignored (see get).
const noRound = ^types.Round(0)

// get is Get with the TC of round ignore treated as unknown: that is the
// leader of ignore+1 as the replicas saw it while round ignore was running,
// i.e. the replica round ignore's votes went to (its aggregator).
func (e *Election) get(r types.Round, depth int, ignore types.Round) types.ReplicaID {
	if l, ok := e.Fixed[r]; ok {
		return l
	}
	if r >= 1 && e.failedNoQC(r-1, ignore) {
		// Round r-1 failed: its TC shows that its leader or the replica
		// its votes went to (the reputation leader of round r, if any)
		// failed; do not wait a round timeout for the latter to propose.
		return e.fallback(r, depth, ignore)
	}
	if l, ok := e.reputation[r]; ok {
		return l
	}
	return e.fallback(r, depth, ignore)
}

// Decided reports whether this replica holds what Get(r) depends on, so
// that another replica holding more certificates would not choose
// differently: in Reputation mode, the QC of round r-2 (which elects r) and
// the committed history it elects from, or a TC of round r-1 (then the
// fallback applies whatever r-2 elected).
func (e *Election) Decided(r types.Round) bool {
	if e.mode != Reputation || r < 2 {
		return true
	}
	if _, ok := e.Fixed[r]; ok {
		return true
	}
	// The fallback after a TC reads the reputation leaders of r and r-1
	// (the suspects of the failed round), so an election still waiting for
	// its history there leaves r undecided too.
	for d := range types.Round(3) { // r-2..r, without "s <= r", which never ends at the largest round
		if _, ok := e.unelected[r-d]; ok {
			return false
		}
	}
	if e.failedNoQC(r-1, noRound) {
		return true
	}
	if _, ok := e.reputation[r]; ok {
		return true
	}
	return e.qcSigners[r-2] != nil
}

// failedNoQC reports whether round s ended by a TC (unless s is the ignored
// round) and no QC of it is known. Reputation mode only: in other modes no
// TC is recorded.
func (e *Election) failedNoQC(s, ignore types.Round) bool {
	return s != ignore && e.failed[s] && e.qcSigners[s] == nil
}

// suspects marks the replicas a TC of round s (with no QC) points at: the
// leader of s, which may not have proposed, and the aggregator of s's votes,
// the leader of s+1 as chosen before the TC was known, which may not have
// formed the QC. The TC cannot tell which of the two failed.
func (e *Election) suspects(s types.Round, depth int, skip []bool) {
	for _, l := range [2]types.ReplicaID{e.get(s, depth, noRound), e.get(s+1, depth, s)} {
		if int(l) < e.n {
			skip[l] = true
		}
	}
}

// fallback is the round-robin leader ⌊r/2⌋ mod n (paper §3), skipped forward
// in round-robin order past the suspects (leader and vote aggregator) of
// rounds r-1 and r-2 if they ended by a TC with no QC known, and past the
// non-signers of the QC of round r-2 (Reputation mode only; see the package
// comment). If that skips everyone, the suspects of round r-1 alone are
// skipped (the newest evidence), and if that skips everyone too, the
// round-robin leader stands.
func (e *Election) fallback(r types.Round, depth int, ignore types.Round) types.ReplicaID {
	start := (uint64(r) / 2) % uint64(e.n)
	if e.mode != Reputation {
		return types.ReplicaID(start)
	}
	newest := make([]bool, e.n) // suspects of round r-1
	older := make([]bool, e.n)  // non-signers of QC(r-2), suspects of round r-2
	if r >= 2 {
		if s, ok := e.qcSigners[r-2]; ok {
			for id, signed := range s {
				older[id] = !signed
			}
		}
	}
	if depth > 0 {
		if r >= 1 && e.failedNoQC(r-1, ignore) {
			e.suspects(r-1, depth-1, newest)
		}
		if r >= 2 && e.failedNoQC(r-2, ignore) {
			e.suspects(r-2, depth-1, older)
		}
	}
	for _, both := range []bool{true, false} {
		for i := range uint64(e.n) {
			id := (start + i) % uint64(e.n)
			if !newest[id] && !(both && older[id]) {
				return types.ReplicaID(id)
			}
		}
	}
	return types.ReplicaID(start)
}

func (e *Election) prune(below types.Round) {
	if below < keepRounds {
		return
	}
	for r := range e.reputation {
		if r < below-keepRounds {
			delete(e.reputation, r)
		}
	}
	for r := range e.qcSigners {
		if r < below-keepRounds {
			delete(e.qcSigners, r)
		}
	}
	for r := range e.failed {
		if r < below-keepRounds {
			delete(e.failed, r)
		}
	}
	for r := range e.unelected {
		if r < below-keepRounds {
			delete(e.unelected, r)
		}
	}
}

// BlockLookup finds a committed block by id.
type BlockLookup func(types.Hash) (*types.Block, bool)

// Update is the paper's update_leaders: a QC for round r that extends round
// r-1 (so it commits r-1's block) elects the leader of round r+2 from the
// committed history. The paper also requires qc_round+1 = current_round; we
// drop that condition so that the choice is a pure function of the QC and
// every replica that sees the QC elects the same leader, whenever it sees it.
// Every QC, consecutive or not, is also recorded for the fallback.
// pruneBelow drops stored choices for rounds that have passed.
func (e *Election) Update(qc *types.QC, pruneBelow types.Round, committed BlockLookup) {
	e.prune(pruneBelow)
	if e.mode != Reputation || qc == nil {
		return
	}
	r := qc.VoteInfo.Round
	if r+keepRounds < pruneBelow {
		return // too old to matter
	}
	if _, ok := e.qcSigners[r]; !ok {
		s := make([]bool, e.n)
		for _, p := range qc.Signatures {
			if int(p.Signer) < e.n {
				s[p.Signer] = true
			}
		}
		e.qcSigners[r] = s
	}
	target := r + 2
	if qc.VoteInfo.ParentRound+1 != r || target+keepRounds < pruneBelow {
		return
	}
	if _, done := e.reputation[target]; done {
		return
	}
	e.electFor(target, qc, committed)
}

// electFor elects the leader of round target from qc, or keeps qc for Retry
// if the committed history it needs is not here yet.
func (e *Election) electFor(target types.Round, qc *types.QC, committed BlockLookup) {
	l, ok, missing := e.elect(qc, committed)
	switch {
	case ok:
		e.reputation[target] = l
		delete(e.unelected, target)
	case missing:
		e.unelected[target] = qc
	default:
		delete(e.unelected, target)
	}
}

// Retry elects again the rounds whose QC lacked committed history (see
// unelected); the core calls it after it commits blocks.
func (e *Election) Retry(pruneBelow types.Round, committed BlockLookup) {
	if len(e.unelected) == 0 {
		return // the common case, on every commit: Update and UpdateTC prune
	}
	e.prune(pruneBelow)
	for target, qc := range e.unelected {
		if _, done := e.reputation[target]; done {
			delete(e.unelected, target)
			continue
		}
		e.electFor(target, qc, committed)
	}
}

// UpdateTC records that round tc.Round ended by a timeout: the next round
// gets the fallback leader, and the fallback of the next two rounds skips
// the leader of that round and the aggregator of its votes, unless a QC of
// the round turns up. Call it with every TC the replica forms or receives. Only
// the TC's round matters, not its signers, so replicas that formed different
// TCs of one round agree.
func (e *Election) UpdateTC(tc *types.TC, pruneBelow types.Round) {
	if e.mode != Reputation || tc == nil {
		e.prune(pruneBelow)
		return
	}
	e.prune(pruneBelow)
	if tc.Round+keepRounds >= pruneBelow {
		e.failed[tc.Round] = true
	}
}

// elect is the paper's elect_reputation_leader: the signers of the last
// window_size QCs are active, the authors of the last exclude_size committed
// blocks are excluded, and one of the rest is picked with the QC's round as
// seed. It reports false, and missing, when the history needed is not
// available locally.
// Departure: only signers of a window QC of round ≥ qc.Round - RecentRounds
// are active (see RecentRounds and the package comment). With no candidate
// it reports false too, and the round gets the fallback leader.
//
// Paper slip fixed: the pseudocode steps with current_block ←
// committed_block(current_qc.vote_info.parent_id) and current_qc ←
// current_block.qc, which moves two blocks per iteration (current_block.qc's
// parent is current_block's grandparent) and so skips every other author and
// QC. We walk the committed chain one block at a time: block b, the QC that
// certifies its child, then b's parent and b.qc.
func (e *Election) elect(qc *types.QC, committed BlockLookup) (_ types.ReplicaID, ok, missing bool) {
	recent := map[types.ReplicaID]bool{}
	last := map[types.ReplicaID]bool{}
	cur := qc // certifies the child of b
	b, found := committed(qc.VoteInfo.ParentID)
	for i := 0; i < e.windowSize || len(last) < e.excludeSize; i++ {
		if !found {
			return 0, false, true
		}
		if b.Round == 0 { // reached genesis: the history is shorter than the window
			break
		}
		if i < e.windowSize && cur.VoteInfo.Round+RecentRounds >= qc.VoteInfo.Round {
			for _, s := range cur.Signatures {
				recent[s.Signer] = true
			}
		}
		if len(last) < e.excludeSize {
			last[b.Author] = true
		}
		cur = b.QC
		b, found = committed(b.ParentID())
	}
	cands := candidates(recent, last)
	if len(cands) == 0 {
		return 0, false, false
	}
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(qc.VoteInfo.Round))
	h := sha256.Sum256(buf[:])
	return cands[binary.BigEndian.Uint64(h[:8])%uint64(len(cands))], true, false
}

func candidates(active, excluded map[types.ReplicaID]bool) []types.ReplicaID {
	var c []types.ReplicaID
	for id := range active {
		if !excluded[id] {
			c = append(c, id)
		}
	}
	slices.Sort(c)
	return c
}
