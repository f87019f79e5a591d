package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/diembft/diembft/node"
	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/olympus/config"
	"github.com/diembft/diembft/protocol/types"
)

// buildBinaries compiles bin/replica and bin/client for process-level tests.
func buildBinaries(t *testing.T) (replica, cli string) {
	t.Helper()
	dir := t.TempDir()
	replica, cli = filepath.Join(dir, "replica"), filepath.Join(dir, "client")
	for out, pkg := range map[string]string{replica: ".", cli: "../client"} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return replica, cli
}

func height(t *testing.T, home string) float64 {
	data, err := os.ReadFile(filepath.Join(home, "stats.json"))
	if err != nil {
		return -1
	}
	var s node.Stats
	if json.Unmarshal(data, &s) != nil {
		return -1
	}
	return s.Height
}

// TestKillAndRestartDuringWorkload kills f replicas with SIGKILL and
// restarts them on their homes at least 10 times while a client runs; every
// request must commit exactly once, the ledgers must agree, and every result
// the client accepted must equal a replay of the agreed ledger.
func TestKillAndRestartDuringWorkload(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	replicaBin, clientBin := buildBinaries(t)
	cfg, err := config.Parse([]byte("[committee]\nf = 1\n[timing]\ndelta_ms = 20\nround_timeout_ms = 150\n"), "durability")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	if keep := os.Getenv("KEEP_DIR"); keep != "" {
		dir = keep
	}
	local, err := olympus.RunLocal(ctx, cfg, dir, replicaBin, olympus.LocalOptions{LogLevel: "warn"})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	if _, err := local.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	// Clients run one after another (each with its own key and 2,000
	// requests) until the replicas were killed and restarted 10 times.
	const perClient = 2000
	var resultFiles []string
	startClient := func() (chan error, *bytes.Buffer) {
		results := filepath.Join(dir, fmt.Sprintf("results-%d.jsonl", len(resultFiles)))
		resultFiles = append(resultFiles, results)
		cl := exec.CommandContext(ctx, clientBin, "--olympus", local.Addr, "--workload", fmt.Sprintf("pseudorandom(%d,%d)", 11+len(resultFiles), perClient),
			"--concurrency", "8", "--timeout-ms", "500", "--results", results, "--no-progress", "--log-level", "error")
		var out bytes.Buffer
		cl.Stdout, cl.Stderr = &out, &out
		done := make(chan error, 1)
		if err := cl.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cl.Wait() }()
		return done, &out
	}
	clDone, clOut := startClient()
	checkClient := func(err error) {
		if err != nil {
			t.Fatalf("client %d: %v\n%s", len(resultFiles)-1, err, clOut.String())
		}
	}
	for kills := 1; kills <= 10; kills++ {
		select {
		case err := <-clDone:
			checkClient(err)
			clDone, clOut = startClient()
		default:
		}
		cycle := time.Now()
		id := types.ReplicaID(rng.IntN(4))
		home := local.Home(id)
		before := height(t, home)
		if err := local.Kill(id); err != nil {
			t.Fatal(err)
		}
		down := time.Duration(50+rng.IntN(300)) * time.Millisecond
		time.Sleep(down) // the fault itself: how long the replica stays down
		restarted := time.Now()
		if err := local.Restart(id); err != nil {
			t.Fatal(err)
		}
		// Before the next kill, wait until the restarted replica commits
		// again, so that at most f replicas are ever behind.
		deadline := time.Now().Add(30 * time.Second)
		for height(t, home) <= before {
			if time.Now().After(deadline) {
				t.Fatalf("replica %d did not commit within 30 s of restart %d (seed %d)", id, kills, seed)
			}
			time.Sleep(20 * time.Millisecond) // polling a file another process writes
		}
		t.Logf("kill %d: replica %d down %v, ledger grew %v after restart (cycle %v)", kills, id, down, time.Since(restarted), time.Since(cycle))
	}
	checkClient(<-clDone)
	local.Close()
	<-local.Done()

	var recs []client.Record
	for _, path := range resultFiles {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		r, err := client.ReadRecords(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(r) != perClient {
			t.Fatalf("%s: client accepted %d of %d requests", path, len(r), perClient)
		}
		recs = append(recs, r...)
	}
	total := len(recs)
	var longest []client.LedgerLine
	var ledgers [][]client.LedgerLine
	for id := 0; id < 4; id++ {
		f, err := os.Open(filepath.Join(local.Home(types.ReplicaID(id)), node.LedgerFile(types.ReplicaID(id))))
		if err != nil {
			t.Fatal(err)
		}
		l, err := client.ReadLedger(f)
		f.Close()
		if err != nil {
			t.Fatalf("replica %d ledger: %v", id, err)
		}
		ledgers = append(ledgers, l)
		if len(l) > len(longest) {
			longest = l
		}
	}
	for id, l := range ledgers {
		for i := range l {
			if l[i] != longest[i] {
				t.Fatalf("replica %d ledger diverges at height %d (seed %d)", id, i+1, seed)
			}
		}
	}
	if _, dups, bad := client.Replay(longest); len(dups) > 0 || len(bad) > 0 {
		t.Fatalf("ledger has duplicate requests at %v, bad lines at %v", dups, bad)
	}
	if len(longest) != total {
		t.Fatalf("agreed ledger has %d requests, want %d", len(longest), total)
	}
	if verified, problems := client.CheckResults(longest, recs); len(problems) > 0 || verified != total {
		t.Fatalf("verified %d, problems %v", verified, problems)
	}
	t.Logf("10 kills; %d clients; agreed ledger of %d requests, each once, all results verified", len(resultFiles), len(longest))
}
