package node

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/diembft/diembft/protocol/leader"
	"github.com/diembft/diembft/protocol/safety"
	"github.com/diembft/diembft/protocol/types"
)

// sendOrder watches every replica of a cluster: the safety states whose
// fdatasync returned, and the votes and timeouts handed to the network.
type sendOrder struct {
	mu         sync.Mutex
	durable    []map[string]bool // per replica: signatures of votes and timeouts in a synced state
	votes      int
	timeouts   int
	violations []string
}

// watchedSafetyFile records what the last slot write held and, once the
// sync of it returns, the signatures it made durable.
type watchedSafetyFile struct {
	file
	o       *sendOrder
	id      int
	written []byte
}

func (f *watchedSafetyFile) WriteAt(p []byte, off int64) (int, error) {
	f.written = append(f.written[:0], p...)
	return f.file.WriteAt(p, off)
}

func (f *watchedSafetyFile) Sync() error {
	err := f.file.Sync()
	if err != nil || len(f.written) < slotHeader {
		return err
	}
	var st safety.State
	n := binary.BigEndian.Uint32(f.written[8:12])
	if jerr := json.Unmarshal(f.written[slotHeader:slotHeader+int(n)], &st); jerr != nil {
		panic(fmt.Sprintf("replica %d wrote an undecodable safety state: %v", f.id, jerr))
	}
	f.o.mu.Lock()
	defer f.o.mu.Unlock()
	if st.LastVote != nil {
		f.o.durable[f.id][string(st.LastVote.Signature)] = true
	}
	if st.LastTimeout != nil {
		f.o.durable[f.id][string(st.LastTimeout.Signature)] = true
	}
	f.written = f.written[:0]
	return nil
}

func (o *sendOrder) sent(id int, msg any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch m := msg.(type) {
	case *types.VoteMsg:
		o.votes++
		if !o.durable[id][string(m.Vote.Signature)] {
			o.violations = append(o.violations, fmt.Sprintf("replica %d sent its vote of round %d before the state holding it was fsync'd", id, m.Vote.VoteInfo.Round))
		}
	case *types.TimeoutMsg:
		if int(m.Timeout.Sender) != id {
			return
		}
		o.timeouts++
		if !o.durable[id][string(m.Timeout.Signature)] {
			o.violations = append(o.violations, fmt.Sprintf("replica %d sent its timeout of round %d before the state holding it was fsync'd", id, m.Timeout.Round))
		}
	}
}

func (o *sendOrder) counts() (votes, timeouts int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.votes, o.timeouts
}

// TestVotesAndTimeoutsLeaveOnlyAfterFsync runs a real 4-replica loopback
// cluster and checks that each vote and timeout a replica hands to the
// network was in a safety state whose fdatasync had returned. One replica
// is stopped halfway so that the others time out in its rounds.
func TestVotesAndTimeoutsLeaveOnlyAfterFsync(t *testing.T) {
	c := newCluster(t, 1)
	o := &sendOrder{}
	for range c.nets {
		o.durable = append(o.durable, map[string]bool{})
	}
	c.prepare = func(i int, r *Replica) {
		r.store.f = &watchedSafetyFile{file: r.store.f, o: o, id: i}
		r.onSend = func(msg any) { o.sent(i, msg) }
	}
	// Round-robin leaders, so that the stopped replica keeps leading some
	// rounds and they end by timeouts: the reputation election stops
	// choosing a replica as soon as it signs no QC, and then no round may
	// time out at all (this test waited in vain for timeouts now and then).
	for i := range c.cfgs {
		c.cfgs[i].Params.Election = leader.RoundRobin
	}
	c.startAll(t)
	tc := newTestClient(t, c)
	for i := uint64(0); i < 10; i++ {
		tc.submitAndWait(t, 10*i+1, 10*i+10)
	}
	c.stop[3]() // its cleanup waits for it
	waitFor(t, "timeouts", 60*time.Second, func() bool {
		_, tmo := o.counts()
		return tmo >= 3
	})
	for i := uint64(10); i < 20; i++ {
		tc.submitAndWait(t, 10*i+1, 10*i+10)
	}
	votes, timeouts := o.counts()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, v := range o.violations {
		t.Error(v)
	}
	if votes == 0 || timeouts == 0 {
		t.Fatalf("saw %d votes and %d timeouts sent: nothing to check", votes, timeouts)
	}
	t.Logf("%d votes and %d timeouts sent, each after the fdatasync of a state holding it", votes, timeouts)
}

// TestEmptyReplicaCatchesUp starts three replicas, lets them commit at least
// 500 blocks under a steady load, then starts the fourth with an empty home:
// it must fetch the chain by block retrieval (100 blocks per response) and
// end with the same ledger file as the others. CATCHUP_BLOCKS changes the
// number of blocks.
func TestEmptyReplicaCatchesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("commits 500 blocks")
	}
	blocks := float64(envInt("CATCHUP_BLOCKS", 500))
	c := newCluster(t, 1)
	for i := range 3 {
		c.start(t, i)
	}
	tc := newTestClient(t, c)
	stop, stopped := make(chan struct{}), make(chan uint64)
	go func() {
		// A steady trickle of requests, so that blocks carry some and
		// leaders propose without waiting for the idle delay.
		seq := uint64(0)
		tick := time.NewTicker(3 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				stopped <- seq
				return
			case <-tick.C:
				seq++
				tc.submit(seq, fmt.Sprintf("append('k%d','%d.')", seq%7, seq))
			}
		}
	}()
	start := time.Now()
	commits := func(i int) float64 { return value(c.reps[i].m.commits) }
	waitFor(t, fmt.Sprintf("%v blocks committed", blocks), 5*time.Minute, func() bool { return commits(0) >= blocks })
	target, targetHeight := commits(0), value(c.reps[0].m.height)
	t.Logf("%v blocks (%v requests) committed by three replicas in %v", target, targetHeight, time.Since(start).Round(time.Millisecond))

	late := time.Now()
	c.start(t, 3)
	waitFor(t, "the new replica's first commit", 2*time.Minute, func() bool { return commits(3) > 0 })
	first := time.Since(late)
	waitFor(t, "the new replica to catch up", 2*time.Minute, func() bool { return commits(3) >= target })
	caughtUp := time.Since(late)
	t.Logf("replica 3, started with an empty home at round %v, committed the first %v blocks (%v requests) in %v (first commit after %v)",
		value(c.reps[0].m.round), target, value(c.reps[3].m.height), caughtUp.Round(time.Millisecond), first.Round(time.Millisecond))
	// The per-peer limit on block requests (peerlimits.go) must not slow
	// an honest catch-up: none of its requests may have been refused.
	for i := range 3 {
		if n := value(c.reps[i].m.ignored.WithLabelValues("block_request")); n > 0 {
			t.Errorf("replica %d refused %v block requests of the catching-up replica (rate limit)", i, n)
		}
	}

	close(stop)
	last := <-stopped
	waitFor(t, "every request accepted", time.Minute, func() bool {
		for i := uint64(1); i <= last; i++ {
			if _, ok := tc.accepted(i); !ok {
				return false
			}
		}
		return true
	})
	var ledgers [][]byte
	waitFor(t, "equal ledgers", time.Minute, func() bool {
		ledgers = ledgers[:0]
		for i, h := range c.homes {
			data, _ := os.ReadFile(filepath.Join(h, LedgerFile(types.ReplicaID(i))))
			ledgers = append(ledgers, data)
		}
		for _, l := range ledgers[1:] {
			if !bytes.Equal(l, ledgers[0]) {
				return false
			}
		}
		return bytes.Count(ledgers[0], []byte("\n")) == int(last)
	})
	t.Logf("all four ledgers equal: %d requests in %v blocks; catch-up of %v blocks took %v", last, commits(0), target, caughtUp.Round(time.Millisecond))
}

// TestRepliesLeaveOnlyAfterTheBlockStoreSync runs a real 4-replica loopback
// cluster and checks that every reply a replica sends answers operations
// whose ledger lines and blocks were both on disk: the block store's synced
// ledger line count had reached the operation's height. A restart replays
// the ledger only as far as the store's chain reaches, so a reply sent
// between the two syncs could acknowledge an operation that a power loss of
// every replica would then lose.
func TestRepliesLeaveOnlyAfterTheBlockStoreSync(t *testing.T) {
	c := newCluster(t, 1)
	var mu sync.Mutex
	synced := make([]uint64, len(c.nets)) // per replica: the store's ledger lines at its last sync
	var replies int
	var violations []string
	c.prepare = func(i int, r *Replica) {
		bs := r.bs
		bs.update = func(f func(*bolt.Tx) error) error {
			if err := bs.db.Update(f); err != nil { // synced when it returns
				return err
			}
			var lines uint64
			_ = bs.db.View(func(tx *bolt.Tx) error {
				if v := tx.Bucket(bucketMeta).Get(keyLedgerLines); len(v) == 8 {
					lines = binary.BigEndian.Uint64(v)
				}
				return nil
			})
			mu.Lock()
			synced[i] = lines
			mu.Unlock()
			return nil
		}
		r.onReply = func(rp *types.ClientReply) {
			mu.Lock()
			defer mu.Unlock()
			replies++
			for j, h := range rp.Heights {
				if h > synced[i] {
					violations = append(violations, fmt.Sprintf("replica %d answered seq %d (ledger height %d) with the store synced to %d lines", i, rp.Seq+uint64(j), h, synced[i]))
				}
			}
		}
	}
	c.startAll(t)
	tc := newTestClient(t, c)
	const n = 60
	for i := uint64(1); i <= n; i++ {
		tc.submit(i, fmt.Sprintf("put('k%d','v%d')", i%7, i))
	}
	waitFor(t, "requests accepted", 60*time.Second, func() bool {
		for i := uint64(1); i <= n; i++ {
			if _, ok := tc.accepted(i); !ok {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	for _, v := range violations {
		t.Error(v)
	}
	if replies < n {
		t.Fatalf("saw %d replies for %d requests: nothing to check", replies, n)
	}
	t.Logf("%d replies, each after the block store sync covering its operations", replies)
}

// TestCommitteeRestartsWithoutHeadFiles: the whole committee stops, every
// head.db is lost, and it starts again on new hosts with the same homes: it
// must go on committing. The block each replica voted for last and the QC
// it carries (its lock: the safety rules refuse to time out below it) were
// only in head.db when the head was written there alone, and the committee
// could then never move again (found in review); the head now also rides
// in the chain's synced transactions, the last one at stop.
func TestCommitteeRestartsWithoutHeadFiles(t *testing.T) {
	c := startCluster(t, 1)
	newTestClient(t, c).submitAndWait(t, 1, 20)
	// Idle for a few empty blocks: they add no ledger lines, so their heads
	// go to head.db alone (the stop must still sync the newest).
	waitIdleBlocks(t, c, 5)
	haltWithoutHeads(t, c)
	newTestClient(t, restartOnNewHosts(t, c)).submitAndWait(t, 21, 25)
}

// TestCommitteeSurvivesPowerLoss: the whole committee loses power after an
// idle period. What reaches the disk is what was synced: the safety file
// with its vote log, the ledger, the chain transactions of commits that
// added lines; not head.db, nor the committed empty blocks the block store
// defers, nor the head its stop would sync. Every replica's lock is then
// newer than its block store, and only the vote log holds the certified
// blocks above it (each voter logged its block before voting); without it
// the committee could never move again (the safety rules refuse to time
// out below the lock).
func TestCommitteeSurvivesPowerLoss(t *testing.T) {
	c := newCluster(t, 1)
	powerLoss := powerLossHooks(c)
	c.startAll(t)
	newTestClient(t, c).submitAndWait(t, 1, 20)
	// Idle blocks add no ledger lines: the block store defers them, and
	// the vote logs must carry them through many generations.
	waitIdleBlocks(t, c, 20)
	powerLoss()
	haltWithoutHeads(t, c)
	newTestClient(t, restartOnNewHosts(t, c)).submitAndWait(t, 21, 25)
}

// TestAcknowledgedSurvivesCommitteePowerLoss: the whole committee loses
// power while operations are acknowledged. From some point on, the block
// store's transactions do not reach the disk (each replica's chain stops
// there), while the ledger fsyncs and the safety file with its vote log do;
// then every replica stops without its stop-time flush and head.db is
// lost. A restart cuts each ledger back to its chain, so the acknowledged
// operations after that point exist only in blocks the vote logs kept.
// They must come back: in every ledger, once, in the same order.
func TestAcknowledgedSurvivesCommitteePowerLoss(t *testing.T) {
	c := newCluster(t, 1)
	powerLoss := powerLossHooks(c)
	c.startAll(t)
	tc := newTestClient(t, c)
	tc.submitAndWait(t, 1, 20)
	powerLoss()
	tc.submitAndWait(t, 21, 40)
	haltWithoutHeads(t, c)
	again := restartOnNewHosts(t, c)
	newTestClient(t, again).submitAndWait(t, 41, 45)
	var ledgers [][]byte
	waitFor(t, "equal ledgers of 45 lines", time.Minute, func() bool {
		ledgers = ledgers[:0]
		for i, h := range c.homes {
			data, _ := os.ReadFile(filepath.Join(h, LedgerFile(types.ReplicaID(i))))
			ledgers = append(ledgers, data)
		}
		for _, l := range ledgers[1:] {
			if !bytes.Equal(l, ledgers[0]) {
				return false
			}
		}
		return bytes.Count(ledgers[0], []byte("\n")) == 45
	})
	for seq := uint64(21); seq <= 40; seq++ {
		if want := fmt.Sprintf("'v%d'", seq); !bytes.Contains(ledgers[0], []byte(want)) {
			t.Errorf("acknowledged put of %s missing from the ledgers after the power loss", want)
		}
	}
}

// haltWithoutHeads stops every replica of c and removes its head.db.
func haltWithoutHeads(t *testing.T, c *cluster) {
	t.Helper()
	for i := range c.reps {
		c.halt(t, i)
		if err := os.Remove(filepath.Join(c.homes[i], HeadFile)); err != nil {
			t.Fatal(err)
		}
	}
}

// powerLossHooks prepares the replicas of c (before they start) for a
// power loss that begins when the returned function is called: from then
// on their block store transactions are lost (they return as if done) and
// the vote log's keepAbove stays at the round the disk's chain holds. The
// vote logs switch generations every 2 KiB (a few votes), so that the
// blocks above the synced chain are carried over again and again.
func powerLossHooks(c *cluster) func() {
	var lost atomic.Bool
	frozen := make([]atomic.Uint64, len(c.nets))
	keepAbove := make([]func() types.Round, len(c.nets))
	c.prepare = func(i int, r *Replica) {
		db := r.bs.db
		keepAbove[i] = r.store.keepAbove
		r.bs.update = func(fn func(*bolt.Tx) error) error {
			if lost.Load() {
				return nil
			}
			return db.Update(fn)
		}
		r.store.keepAbove = func() types.Round {
			if lost.Load() {
				return types.Round(frozen[i].Load())
			}
			return keepAbove[i]()
		}
		r.store.logSwitchAt = 2 << 10
	}
	return func() {
		// A transaction under way now may still reach the disk: frozen is
		// then lower than the disk's chain, which only keeps more.
		for i := range c.reps {
			frozen[i].Store(uint64(keepAbove[i]()))
		}
		lost.Store(true)
	}
}

// waitIdleBlocks waits until every replica of c committed n more blocks.
func waitIdleBlocks(t *testing.T, c *cluster, n float64) {
	t.Helper()
	var from []float64
	for _, r := range c.reps {
		from = append(from, value(r.m.commits))
	}
	waitFor(t, "empty blocks committed", 60*time.Second, func() bool {
		for i, r := range c.reps {
			if value(r.m.commits) < from[i]+n {
				return false
			}
		}
		return true
	})
}

// restartOnNewHosts starts the committee of c again on new hosts, with the
// same homes.
func restartOnNewHosts(t *testing.T, c *cluster) *cluster {
	t.Helper()
	again := newCluster(t, 1)
	for i := range again.cfgs {
		again.homes[i], again.cfgs[i].Home = c.homes[i], c.homes[i]
		again.start(t, i)
	}
	return again
}
