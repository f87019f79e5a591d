package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diembft/diembft/node"
	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/olympus/config"
	"github.com/diembft/diembft/protocol/types"
)

// TestCorruptLedgerRefusedThenRecovered: a replica whose ledger was damaged
// in place while it was down (one byte of a middle line flipped) refuses to
// start, naming the file and the line. After the documented recovery (the
// ledger and the block store moved out of the home, the safety file kept)
// it starts again, catches up from the others and ends with their ledger.
func TestCorruptLedgerRefusedThenRecovered(t *testing.T) {
	local, runClient, ledgerOf := recoveryCluster(t, "ledger-recovery")
	runClient(31, 200)

	const id = types.ReplicaID(2)
	home := local.Home(id)
	path := filepath.Join(home, node.LedgerFile(id))
	if err := local.Kill(id); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) < 20 {
		t.Fatalf("replica %d's ledger has %d lines, want at least 20", id, len(lines))
	}
	at := len(bytes.Join(lines[:9], nil)) + len(lines[9])/2 // the middle of line 10
	data[at] ^= 0x01
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := local.Restart(id); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); local.Running(id); {
		if time.Now().After(deadline) {
			t.Fatalf("replica %d runs on a ledger damaged in line 10", id)
		}
		time.Sleep(20 * time.Millisecond) // polling another process
	}
	logText, _ := os.ReadFile(local.LogPath(id))
	if !strings.Contains(string(logText), "ledger corrupt") || !strings.Contains(string(logText), path+":10:") {
		t.Fatalf("replica %d exited without naming %s:10 as corrupt; its log:\n%s", id, path, logText)
	}

	// The documented recovery: move the ledger and the block store away.
	for _, name := range []string{node.LedgerFile(id), node.BlockStoreFile} {
		if err := os.Rename(filepath.Join(home, name), filepath.Join(home, name+".damaged")); err != nil {
			t.Fatal(err)
		}
	}
	if err := local.Restart(id); err != nil {
		t.Fatal(err)
	}
	runClient(32, 200)
	want := waitSameLedgers(t, local, id, ledgerOf, 400)
	t.Logf("replica %d refused a ledger damaged in line 10, then caught up to %d requests from an empty ledger and block store", id, len(want))
}

// TestDamagedBlockStoreMovedAside: a replica whose block store was damaged
// while it was down moves it and its ledger aside at start, fetches the
// chain from the others, executes it from genesis and ends with their
// ledger. Two kinds of damage: the whole file (bbolt refuses to open it) and
// every page but the two meta pages (bbolt panicked reading it).
func TestDamagedBlockStoreMovedAside(t *testing.T) {
	for _, c := range []struct {
		name string
		from int // first byte damaged
	}{{"whole file", 0}, {"data pages", 2 * os.Getpagesize()}} {
		t.Run(c.name, func(t *testing.T) {
			local, runClient, ledgerOf := recoveryCluster(t, "store-recovery")
			runClient(41, 200)
			const id = types.ReplicaID(1)
			if err := local.Kill(id); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(local.Home(id), node.BlockStoreFile)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for i := c.from; i < len(data); i++ {
				data[i] ^= 0x5a
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := local.Restart(id); err != nil {
				t.Fatal(err)
			}
			runClient(42, 200)
			want := waitSameLedgers(t, local, id, ledgerOf, 400)
			for _, p := range []string{path, filepath.Join(local.Home(id), node.LedgerFile(id))} {
				if aside, _ := filepath.Glob(p + ".damaged-*"); len(aside) != 1 {
					t.Fatalf("%s was not moved aside (%v)", p, aside)
				}
			}
			t.Logf("replica %d moved its damaged block store and its ledger aside and caught up to %d requests", id, len(want))
		})
	}
}

// recoveryCluster runs a 4-replica local cluster from the built binaries and
// returns it with a client runner (seed, requests) and a ledger reader.
func recoveryCluster(t *testing.T, name string) (*olympus.Local, func(seed, n int), func(types.ReplicaID) ([]client.LedgerLine, error)) {
	t.Helper()
	if testing.Short() {
		t.Skip("process-level test")
	}
	replicaBin, clientBin := buildBinaries(t)
	cfg, err := config.Parse([]byte("[committee]\nf = 1\n[timing]\ndelta_ms = 20\nround_timeout_ms = 150\n"), name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	local, err := olympus.RunLocal(ctx, cfg, t.TempDir(), replicaBin, olympus.LocalOptions{LogLevel: "warn"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close() })
	if _, err := local.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	runClient := func(seed, n int) {
		t.Helper()
		out, err := exec.CommandContext(ctx, clientBin, "--olympus", local.Addr, "--workload", fmt.Sprintf("pseudorandom(%d,%d)", seed, n),
			"--concurrency", "8", "--timeout-ms", "500", "--no-progress", "--log-level", "error").CombinedOutput()
		if err != nil {
			t.Fatalf("client: %v\n%s", err, out)
		}
	}
	ledgerOf := func(id types.ReplicaID) ([]client.LedgerLine, error) {
		f, err := os.Open(filepath.Join(local.Home(id), node.LedgerFile(id)))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return client.ReadLedger(f)
	}
	return local, runClient, ledgerOf
}

// waitSameLedgers waits until replica id's ledger equals replica 0's with n
// lines, and checks that all four agree; it returns the ledger.
func waitSameLedgers(t *testing.T, local *olympus.Local, id types.ReplicaID, ledgerOf func(types.ReplicaID) ([]client.LedgerLine, error), n int) []client.LedgerLine {
	t.Helper()
	var want []client.LedgerLine
	for deadline := time.Now().Add(time.Minute); ; {
		var err error
		want, err = ledgerOf(0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ledgerOf(id)
		if err == nil && len(want) == n && slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %d did not catch up: %d lines (%v), replica 0 has %d", id, len(got), err, len(want))
		}
		if !local.Running(id) {
			logText, _ := os.ReadFile(local.LogPath(id))
			t.Fatalf("replica %d exited; its log:\n%s", id, logText)
		}
		time.Sleep(50 * time.Millisecond) // polling files other processes write
	}
	for r := range types.ReplicaID(4) {
		if l, err := ledgerOf(r); err != nil || !slices.Equal(l, want) {
			t.Fatalf("replica %d's ledger (%d lines, %v) differs from replica 0's", r, len(l), err)
		}
	}
	return want
}
