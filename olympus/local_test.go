package olympus

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diembft/diembft/olympus/config"
	"github.com/diembft/diembft/p2p"
	"github.com/diembft/diembft/protocol/types"
)

type exitNote struct {
	id        types.ReplicaID
	requested bool
}

func localConfig(t *testing.T, doc string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(doc), "local-test.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestRunLocal(t *testing.T) {
	t.Setenv(fakeReplicaEnv, "1") // children of the test binary act as replicas
	cfg := localConfig(t, "[committee]\nchain_id = \"loc\"\n[timing]\ndelta_ms = 20\n")
	work := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exits := make(chan exitNote, 32)
	l, err := RunLocal(ctx, cfg, work, os.Args[0], LocalOptions{
		Grace:  waitLimit,
		OnExit: func(id types.ReplicaID, _ error, requested bool) { exits <- exitNote{id, requested} },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	r, err := l.WaitReady(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	info, err := p2p.ParsePinned(l.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(info.ID); err != nil {
		t.Fatal(err)
	}
	if len(r.Members) != 4 || r.ChainID != "loc" || r.Params.DeltaMs != 20 || r.Params.RoundTimeoutMs != 80 {
		t.Fatalf("roster: %d members, chain %q, params %+v", len(r.Members), r.ChainID, r.Params)
	}
	for _, m := range r.Members {
		if len(m.Addrs) == 0 || strings.Contains(m.Addrs[0], "/tcp/0") {
			t.Fatalf("member %d registered %v", m.ID, m.Addrs)
		}
	}

	// Layout: homes, logs, multiaddrs; the olympus address written into homes.
	addrs, err := ReadMultiaddrs(work)
	if err != nil || !slices.Equal(addrs, l.Addrs) || !slices.Contains(addrs, l.Addr) {
		t.Fatalf("multiaddrs file = %v, %v; want %v", addrs, err, l.Addrs)
	}
	for i := range 4 {
		id := types.ReplicaID(i)
		h, err := LoadReplicaHome(filepath.Join(work, HomesDir, ReplicaDir(id)))
		if err != nil {
			t.Fatal(err)
		}
		if h.Olympus != l.Addr || h.PeerID() != r.Members[i].PeerID {
			t.Fatalf("replica %d home: olympus %q peer %s", i, h.Olympus, h.PeerID())
		}
		if _, err := os.Stat(l.LogPath(id)); err != nil || !l.Running(id) || l.PID(id) == 0 {
			t.Fatalf("replica %d: log %v running %v pid %d", i, err, l.Running(id), l.PID(id))
		}
	}

	// Crash and restart replica 1: it comes back on the same addresses.
	before := l.Service.memberAddrs(1)
	regs := l.Service.registrations.Load()
	if err := l.Kill(1); err != nil {
		t.Fatal(err)
	}
	if l.Running(1) {
		t.Fatal("replica 1 still running after Kill")
	}
	if e := recvExit(t, exits); e.id != 1 || !e.requested {
		t.Fatalf("exit %+v, want replica 1, requested", e)
	}
	if err := l.Kill(1); err == nil {
		t.Fatal("Kill of a dead replica succeeded")
	}
	if err := l.Restart(1); err != nil {
		t.Fatal(err)
	}
	if err := l.Restart(1); err == nil {
		t.Fatal("Restart of a running replica succeeded")
	}
	waitFor(t, "replica 1 to register again", func() bool { return l.Service.registrations.Load() > regs })
	if after := l.Service.memberAddrs(1); !slices.Equal(before, after) {
		t.Fatalf("restarted replica moved from %v to %v", before, after)
	}

	// Pause and resume; a graceful stop.
	if err := l.Pause(2); err != nil {
		t.Fatal(err)
	}
	if err := l.Resume(2); err != nil {
		t.Fatal(err)
	}
	if err := l.Stop(3); err != nil {
		t.Fatal(err)
	}
	if e := recvExit(t, exits); e.id != 3 || !e.requested {
		t.Fatalf("exit %+v, want replica 3, requested", e)
	}

	// Cancelling ctx stops the rest and Olympus.
	cancel()
	select {
	case <-l.Done():
	case <-time.After(waitLimit):
		t.Fatal("local committee did not stop")
	}
	for i := range 4 {
		if l.Running(types.ReplicaID(i)) {
			t.Fatalf("replica %d still running", i)
		}
	}
	if err := l.Restart(3); err == nil {
		t.Fatal("Restart after shutdown succeeded")
	}
	logData, _ := os.ReadFile(l.LogPath(1))
	if strings.Count(string(logData), "# "+os.Args[0]+" --home ") != 2 {
		t.Fatalf("replica 1 log does not show two runs:\n%s", logData)
	}
}

func TestRunLocalReplicaCrashBeforeReady(t *testing.T) {
	t.Setenv(fakeReplicaEnv, "crash")
	cfg := localConfig(t, "")
	l, err := RunLocal(context.Background(), cfg, t.TempDir(), os.Args[0], LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = l.WaitReady(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "exited before the committee was ready (exit status 1): fatal: cannot open ledger: disk on fire") {
		t.Fatalf("WaitReady: %v", err)
	}
}

// TestRunLocalCrashFaultBeforeReady: a replica that a crash fault stops
// before it reports Ready (a crash in round 1) is not a failed start, and
// the clients get the roster once the others are ready, without waiting
// out AcceptGrace. Until 2026-12-06 WaitReady gave up, and the run
// committed nothing.
func TestRunLocalCrashFaultBeforeReady(t *testing.T) {
	t.Setenv(fakeReplicaEnv, "crash-fault-1")
	cfg := localConfig(t, "")
	l, err := RunLocal(context.Background(), cfg, t.TempDir(), os.Args[0], LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Service.mu.Lock()
	l.Service.AcceptGrace = time.Hour
	l.Service.mu.Unlock()
	if _, err := l.WaitReady(testCtx(t)); err != nil {
		t.Fatalf("WaitReady with replica 1 stopped by a crash fault: %v", err)
	}
	if l.Running(1) {
		t.Fatal("replica 1 still running")
	}
}

func TestRunLocalMissingBinary(t *testing.T) {
	cfg := localConfig(t, "")
	work := t.TempDir()
	_, err := RunLocal(context.Background(), cfg, work, filepath.Join(work, "bin", "replica"), LocalOptions{})
	if err == nil || !strings.Contains(err.Error(), "replica binary "+filepath.Join(work, "bin", "replica")) {
		t.Fatalf("err = %v", err)
	}
}

func recvExit(t *testing.T, ch <-chan exitNote) exitNote {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(waitLimit):
		t.Fatal("no exit reported")
	}
	return exitNote{}
}
