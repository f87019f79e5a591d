package node

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/node/kv"
	"github.com/diembft/diembft/protocol/types"
)

const crashHome = "/home"

var crashLedger = filepath.Join(crashHome, LedgerFile(1))

// ledgerBlocks is a seeded run of committed blocks: requests of three
// clients on a few keys (values with quotes and newlines too), some that do
// not parse, some empty blocks, and requests ordered again in a later block
// or twice in one (they must execute once).
func ledgerBlocks(rng *rand.Rand, n int) []*types.Block {
	clients := [][]byte{ledgerClient("client-a"), ledgerClient("client-b"), ledgerClient("client-c")}
	seqs := make([]uint64, len(clients))
	var all []types.Request
	var blocks []*types.Block
	for range n {
		b := &types.Block{Round: types.Round(len(blocks) + 1)}
		for range rng.IntN(7) {
			if len(all) > 0 && rng.IntN(7) == 0 {
				b.Payload = append(b.Payload, all[rng.IntN(len(all))])
				continue
			}
			c := rng.IntN(len(clients))
			seqs[c]++
			key := fmt.Sprintf("k%d", rng.IntN(4))
			val := []string{"x", "yz", "it's", "two\nlines", "1:3", "-2:"}[rng.IntN(6)]
			var op string
			switch rng.IntN(10) {
			case 0:
				op = "bogus("
			case 1, 2:
				op = kv.Op{Kind: kv.Get, Key: key}.String()
			case 3, 4:
				op = kv.Op{Kind: kv.Append, Key: key, Val: val}.String()
			case 5:
				op = kv.Op{Kind: kv.Slice, Key: key, Val: val}.String()
			default:
				op = kv.Op{Kind: kv.Put, Key: key, Val: val}.String()
			}
			r := types.Request{Client: clients[c], Seq: seqs[c], Ops: []string{op}}
			all = append(all, r)
			b.Payload = append(b.Payload, r)
		}
		blocks = append(blocks, b)
	}
	return blocks
}

// replayLedger applies a ledger's operations to a fresh store, independently
// of the executor's own replay.
func replayLedger(data []byte) (*kv.Store, int) {
	s := kv.New()
	lines := 0
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line == "" {
			continue
		}
		lines++
		l, err := client.ParseLedgerLine(strings.TrimSuffix(line, "\n"))
		if err != nil {
			panic(fmt.Sprintf("ledger line %d: %v", lines, err))
		}
		if op, err := kv.ParseOp(l.Op); err == nil {
			s.Apply(op)
		}
	}
	return s, lines
}

func ledgerKey() ed25519.PrivateKey { return key("ledger", 1) }

type ledgerRef struct {
	ledger  []byte
	replies map[types.RequestKey]*types.ClientReply
}

func ledgerReference(blocks []*types.Block) (*ledgerRef, error) {
	fs := newCrashFS(rand.New(rand.NewPCG(0, 0)), -1, loseUnsynced)
	e, err := openExecutorFS(fs, crashHome, 1, "crash-test", ledgerKey(), noLimit)
	if err != nil {
		return nil, err
	}
	ref := &ledgerRef{replies: map[types.RequestKey]*types.ClientReply{}}
	for _, b := range blocks {
		out, err := e.execute(b)
		if err != nil {
			return nil, err
		}
		for _, rp := range out {
			ref.replies[types.RequestKey{Client: string(rp.Client), Seq: rp.Seq}] = rp
		}
	}
	ref.ledger = fs.contents(crashLedger)
	return ref, nil
}

// sameReply compares replies without their signatures (a reply cache
// rebuilt from the ledger signs a reply only when it is sent), and checks
// the signature of a, if it has one.
func sameReply(a, b *types.ClientReply) bool {
	if a.Sig != nil && !ed25519.Verify(ledgerKey().Public().(ed25519.PublicKey), a.SignBytes("crash-test"), a.Sig) {
		return false
	}
	return slices.Equal(a.Results, b.Results) && slices.Equal(a.Heights, b.Heights) && a.Seq == b.Seq && bytes.Equal(a.Client, b.Client) && a.Replica == b.Replica
}

// checkRecovered checks a reopened executor against what was durable before
// the crash and against the reference run.
func checkRecovered(e *executor, fs *crashFS, ref *ledgerRef, durable uint64) error {
	data := fs.contents(crashLedger)
	if e.height < durable {
		return fmt.Errorf("ledger lost entries: %d after reopening, %d were fsync'd", e.height, durable)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		return fmt.Errorf("torn tail left after reopening: %q", data[bytes.LastIndexByte(data, '\n')+1:])
	}
	if !bytes.HasPrefix(ref.ledger, data) {
		return fmt.Errorf("recovered ledger of %d bytes is not a prefix of the reference", len(data))
	}
	replayed, lines := replayLedger(data)
	if uint64(lines) != e.height {
		return fmt.Errorf("executor height %d, ledger has %d lines", e.height, lines)
	}
	if !maps.Equal(e.kv.Snapshot(), replayed.Snapshot()) {
		return fmt.Errorf("KV state %v differs from a replay of the ledger %v", e.kv.Snapshot(), replayed.Snapshot())
	}
	for k, d := range e.resultsByKey() { // the blocks here carry one operation per request
		if want := ref.replies[k]; want == nil || want.Results[0] != d.result || want.Heights[0] != d.height {
			return fmt.Errorf("cached result for seq %d differs from the reference", k.Seq)
		}
	}
	return nil
}

func openExecutorAfterCrash(fs *crashFS, plan crashPlan) (*executor, error) {
	for {
		e, err := openExecutorFS(fs, crashHome, 1, "crash-test", ledgerKey(), noLimit)
		if !errors.Is(err, errCrashed) {
			return e, err
		}
		fs.mode = crashMode(plan.rng.IntN(int(numCrashModes)))
		fs.restart(plan.next(fs))
	}
}

// runLedgerCrash executes blocks as the replica commits them, crashing as
// plan says. After a crash the replica commits again from the block that
// was being executed, or from up to two blocks earlier (the block store is
// synced after the ledger and may lag it). It returns the number of mutating
// file calls and the first broken invariant.
func runLedgerCrash(blocks []*types.Block, ref *ledgerRef, plan crashPlan, noSync bool) (int, error) {
	fs := newCrashFS(plan.rng, plan.first, crashMode(plan.rng.IntN(int(numCrashModes))))
	fs.noSync = noSync
	e, err := openExecutorAfterCrash(fs, plan)
	if err != nil {
		return fs.ops, fmt.Errorf("open: %w", err)
	}
	var durable uint64 // ledger entries whose fsync returned
	crashes := 0
	for i := 0; i < len(blocks); {
		out, err := e.execute(blocks[i])
		if err != nil {
			if !errors.Is(err, errCrashed) {
				return fs.ops, fmt.Errorf("block %d: %w", i, err)
			}
			crashes++
			fs.mode = crashMode(plan.rng.IntN(int(numCrashModes)))
			fs.restart(plan.next(fs))
			if e, err = openExecutorAfterCrash(fs, plan); err != nil {
				return fs.ops, fmt.Errorf("reopen after crash %d (%v) in block %d: %w", crashes, fs.last, i, err)
			}
			if err := checkRecovered(e, fs, ref, durable); err != nil {
				return fs.ops, fmt.Errorf("after crash %d (%v) in block %d: %w", crashes, fs.last, i, err)
			}
			i = max(0, i-plan.rng.IntN(3))
			continue
		}
		if len(out) != len(blocks[i].Payload) {
			return fs.ops, fmt.Errorf("block %d: %d replies for %d requests", i, len(out), len(blocks[i].Payload))
		}
		for _, rp := range out {
			if want := ref.replies[types.RequestKey{Client: string(rp.Client), Seq: rp.Seq}]; !sameReply(rp, want) {
				return fs.ops, fmt.Errorf("block %d: reply to seq %d is %q at heights %v, want %q at %v (executed twice?)", i, rp.Seq, rp.Results, rp.Heights, want.Results, want.Heights)
			}
		}
		durable = e.height
		i++
	}
	fs.powerLoss()
	fs.restart(-1)
	if e, err = openExecutorFS(fs, crashHome, 1, "crash-test", ledgerKey(), noLimit); err == nil {
		err = checkRecovered(e, fs, ref, durable)
	}
	if err != nil {
		return fs.ops, fmt.Errorf("after the final crash: %w", err)
	}
	if got := fs.contents(crashLedger); !bytes.Equal(got, ref.ledger) {
		return fs.ops, fmt.Errorf("final ledger differs from the reference:\n%s\nwant\n%s", got, ref.ledger)
	}
	return fs.ops, nil
}

// TestLedgerCrashPoints crashes the executor before every mutating file call
// of a seeded run (before the write of a block, after it but before its
// fsync, after the fsync; on opening: around the torn-tail repair and the
// directory sync), with unsynced data lost, kept or torn, and again at
// random later points. No entry whose fsync returned may be lost, a torn
// tail must be cut, the KV state must equal a replay of the ledger, no
// request may execute twice, and the final ledger must equal the one of a
// run without crashes. CRASH_SEEDS sets the number of seeds, CRASH_SEED runs one.
func TestLedgerCrashPoints(t *testing.T) {
	seeds := envInt("CRASH_SEEDS", crashSeeds(25))
	first := uint64(envInt("CRASH_SEED", 1))
	if os.Getenv("CRASH_SEED") != "" {
		seeds = 1
	}
	points := 0
	for seed := first; seed < first+uint64(seeds); seed++ {
		blocks := ledgerBlocks(rand.New(rand.NewPCG(seed, 0)), 25)
		ref, err := ledgerReference(blocks)
		if err != nil {
			t.Fatalf("seed %d: reference run: %v", seed, err)
		}
		total, err := runLedgerCrash(blocks, ref, crashPlan{first: -1, rng: rand.New(rand.NewPCG(seed, 1))}, false)
		if err != nil {
			t.Fatalf("seed %d, no crash: %v", seed, err)
		}
		for k := 0; k <= total; k++ {
			plan := crashPlan{first: k, span: total, rng: rand.New(rand.NewPCG(seed, uint64(k)+2))}
			if _, err := runLedgerCrash(blocks, ref, plan, false); err != nil {
				t.Fatalf("seed %d (CRASH_SEED=%d), %v: %v", seed, seed, plan, err)
			}
			points++
		}
	}
	t.Logf("%d seeds, %d crash points", seeds, points)
}

// TestLedgerCrashHarnessCatchesMissingSync is the negative control: a ledger
// whose fsync does nothing must be caught.
func TestLedgerCrashHarnessCatchesMissingSync(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		blocks := ledgerBlocks(rand.New(rand.NewPCG(seed, 0)), 25)
		ref, err := ledgerReference(blocks)
		if err != nil {
			t.Fatal(err)
		}
		for k := 0; k <= 60; k++ {
			plan := crashPlan{first: k, span: 60, rng: rand.New(rand.NewPCG(seed, uint64(k)+2))}
			if _, err := runLedgerCrash(blocks, ref, plan, true); err != nil {
				t.Logf("caught at seed %d, %v: %v", seed, plan, err)
				return
			}
		}
	}
	t.Fatal("a ledger without fsync went unnoticed")
}

// TestLedgerFlippedByteCrashPoints flips one byte (not a newline) of each
// line of a seeded run's ledger in turn, as damage in place would: a line
// followed by others must make the reopen fail with a *LedgerCorruptError
// naming that line, leaving the file alone; the last line is a torn tail,
// cut, and executing the run's blocks again (as the replica does when the
// block store lags the ledger) must give back the reference ledger.
func TestLedgerFlippedByteCrashPoints(t *testing.T) {
	cases := 0
	for seed := uint64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		blocks := ledgerBlocks(rand.New(rand.NewPCG(seed, 0)), 25)
		ref, err := ledgerReference(blocks)
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.SplitAfter(ref.ledger, []byte("\n"))
		lines = lines[:len(lines)-1] // after the last newline
		start := 0
		for k, line := range lines {
			damaged := bytes.Clone(ref.ledger)
			at := start + rng.IntN(len(line)-1) // not the newline
			for {
				damaged[at] ^= byte(1 + rng.IntN(255))
				if damaged[at] != '\n' {
					break
				}
			}
			start += len(line)
			fs := newCrashFS(rng, -1, loseUnsynced)
			fs.files[crashLedger] = &memNode{durable: bytes.Clone(damaged), data: bytes.Clone(damaged), dirDurable: true}
			e, err := openExecutorFS(fs, crashHome, 1, "crash-test", ledgerKey(), noLimit)
			cases++
			if k < len(lines)-1 {
				var ce *LedgerCorruptError
				if !errors.As(err, &ce) || !errors.Is(err, ErrLedgerCorrupt) || ce.Line != uint64(k+1) || ce.Path != crashLedger {
					t.Fatalf("seed %d, byte %d of line %d of %d flipped: open = %v, want a *LedgerCorruptError naming line %d", seed, at, k+1, len(lines), err, k+1)
				}
				if !bytes.Equal(fs.contents(crashLedger), damaged) {
					t.Fatalf("seed %d, line %d: a corrupt ledger was modified", seed, k+1)
				}
				continue
			}
			if err != nil {
				t.Fatalf("seed %d, byte %d of the last line flipped: open = %v, want the line cut", seed, at, err)
			}
			if err := checkRecovered(e, fs, ref, uint64(k)); err != nil {
				t.Fatalf("seed %d, last line damaged: %v", seed, err)
			}
			for i, b := range blocks {
				if _, err := e.execute(b); err != nil {
					t.Fatalf("seed %d: block %d after the cut: %v", seed, i, err)
				}
			}
			if got := fs.contents(crashLedger); !bytes.Equal(got, ref.ledger) {
				t.Fatalf("seed %d: ledger after resuming differs from the reference:\n%s\nwant\n%s", seed, got, ref.ledger)
			}
		}
	}
	t.Logf("%d damaged ledgers", cases)
}
