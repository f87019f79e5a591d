package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/olympus/netlab"
	"github.com/diembft/diembft/protocol/types"
)

// The lab tests run the real binaries as hosts of a LAN made of network
// namespaces (olympus/netlab): first by hand, the way docs/lan.md tells a
// user to run them on several machines, then through `diembft lab`. They
// need root; without it they skip and say why.

// labTestTimeout bounds each lab experiment; a healthy one takes seconds.
const labTestTimeout = 2 * time.Minute

func TestLab(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the namespace lab in -short mode")
	}
	if err := netlab.Check(); err != nil {
		t.Skipf("skipping: network namespaces unavailable (the lab tests need root and iproute2): %v", err)
	}
	// A Ctrl-C (or the CI's SIGTERM) still removes the namespaces.
	t.Cleanup(netlab.CloseOnSignal())
	bins := buildLabBinaries(t)

	t.Run("by-hand", func(t *testing.T) { testLANByHand(t, bins) })
	t.Run("lab-command", func(t *testing.T) { testLabCommand(t, bins) })
	t.Run("lab-interrupted", func(t *testing.T) { testLabInterrupted(t, bins) })
}

// buildLabBinaries builds bin/olympus, bin/replica and bin/client into a
// temporary directory, with the race detector when this test binary has
// it: then every package comes from the build cache `go test -race` filled
// and only the linking is new.
func buildLabBinaries(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir := t.TempDir()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceEnabled() {
		args = append(args, "-race")
	}
	args = append(args, "github.com/diembft/diembft/cmd/olympus", "github.com/diembft/diembft/cmd/replica", "github.com/diembft/diembft/cmd/client")
	start := time.Now()
	out, err := exec.Command(goBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("built the binaries in %v (race detector: %v)", time.Since(start).Round(time.Millisecond), raceEnabled())
	return dir
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func newTestLab(t *testing.T, ctx context.Context, hosts []string) *netlab.Lab {
	t.Helper()
	lab, err := netlab.New(ctx, netlab.Options{Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("removing the lab: %v", err)
		}
	})
	return lab
}

// startOn starts bin on host h with diembft run's process handling
// (startCmd), its output in dir/<name>.log. Cleanup stops it (SIGTERM, then
// SIGKILL to its process group) and shows the end of its log if the test
// failed.
func startOn(t *testing.T, h *netlab.Host, dir, bin string, args ...string) *proc {
	t.Helper()
	p, err := startCmd(h.Name, h.Command(bin, args...), filepath.Join(dir, h.Name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop(labStopGrace)
		if t.Failed() {
			t.Logf("%s's log (%s):\n%s", p.name, p.logPath, tail(p.logPath, 15))
		}
	})
	return p
}

// labStopGrace is how long a process may take to stop on SIGTERM.
const labStopGrace = 10 * time.Second

// stoppedCleanly stops p and says how it ended if that was not an exit
// with status 0 on SIGTERM within the grace period.
func stoppedCleanly(p *proc) error {
	start := time.Now()
	p.stop(labStopGrace)
	switch {
	case time.Since(start) >= labStopGrace:
		return fmt.Errorf("%s ignored SIGTERM for %v (killed: %v)", p.name, labStopGrace, p.err)
	case p.err != nil:
		return fmt.Errorf("%s ended with %v", p.name, p.err)
	}
	return nil
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// testLANByHand runs a 4-replica committee the way it runs on a LAN of 6
// machines: diembft testnet writes the homes for the hosts' IPs, then
// olympus, each replica and a client run on their own host, the client with
// --verify.
func testLANByHand(t *testing.T, bins string) {
	ctx, cancel := context.WithTimeout(context.Background(), labTestTimeout)
	defer cancel()
	begin := time.Now()
	since := func() time.Duration { return time.Since(begin).Round(time.Millisecond) }
	const n = 4
	hosts := []string{"olympus"}
	for i := range n {
		hosts = append(hosts, olympus.ReplicaDir(types.ReplicaID(i)))
	}
	hosts = append(hosts, "client")
	lab := newTestLab(t, ctx, hosts)
	var ips []string
	for _, h := range lab.Hosts[1 : 1+n] {
		ips = append(ips, h.IP.String())
	}
	olympusHost, clientHost := lab.Host("olympus"), lab.Host("client")

	dir, logs := t.TempDir(), t.TempDir()
	testnet := filepath.Join(dir, "testnet")
	// --hosts is a slice flag: clear what an earlier execute left in it, or
	// this call would append to it.
	_ = testnetCmd.Flags().Lookup("hosts").Value.(pflag.SliceValue).Replace(nil)
	var out, errb bytes.Buffer
	if code := execute([]string{"testnet", "--replicas", fmt.Sprint(n), "--hosts", strings.Join(ips, ","),
		"--olympus-host", olympusHost.IP.String(), "--out", testnet}, &out, &errb); code != 0 {
		t.Fatalf("diembft testnet: exit %d: %s%s", code, out.String(), errb.String())
	}

	olympusHome := filepath.Join(testnet, olympus.OlympusDir)
	oly := startOn(t, olympusHost, logs, filepath.Join(bins, "olympus"), "--home", olympusHome, "--log-level", "info")
	// Olympus's multiaddrs file, read as diembft run reads it.
	addr, err := (&experiment{opts: runOptions{startTimeout: labTestTimeout}}).waitOlympus(ctx, oly, olympusHome)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: olympus listening on %s", since(), addr)
	if want := "/ip4/" + olympusHost.IP.String() + "/tcp/"; !strings.HasPrefix(addr, want) {
		t.Fatalf("olympus listens on %s, want an address starting with %s", addr, want)
	}

	var replicas []*proc
	for i := range n {
		name := olympus.ReplicaDir(types.ReplicaID(i))
		replicas = append(replicas, startOn(t, lab.Host(name), logs, filepath.Join(bins, "replica"),
			"--home", filepath.Join(testnet, name), "--olympus", addr, "--log-level", "info"))
	}

	cl := startOn(t, clientHost, logs, filepath.Join(bins, "client"),
		"--olympus", addr, "--workload", "pseudorandom(7,50)", "--verify", "--deadline", "90s")
	select {
	case <-cl.done:
	case <-ctx.Done():
		t.Fatal("the client did not finish")
	}
	clientOut := tail(cl.logPath, 20)
	t.Logf("%v: client done: %s", since(), clientOut)
	if cl.err != nil {
		t.Fatalf("client: %v\n%s", cl.err, clientOut)
	}
	for _, want := range []string{"50/50 committed", "verify: 50/50 accepted results equal a replay"} {
		if !strings.Contains(clientOut, want) {
			t.Errorf("client output lacks %q:\n%s", want, clientOut)
		}
	}

	// Everyone stops cleanly on SIGTERM, replicas first.
	for _, p := range append(replicas, oly) {
		if early := p.exitedEarly(); early != "" {
			t.Errorf("%s exited during the run: %s", p.name, early)
		}
	}
	var stopping sync.WaitGroup
	for _, p := range replicas {
		stopping.Go(func() {
			if err := stoppedCleanly(p); err != nil {
				t.Error(err)
			}
		})
	}
	stopping.Wait()
	if err := stoppedCleanly(oly); err != nil {
		t.Error(err)
	}
	t.Logf("%v: every process stopped", since())

	// Each replica listened (and so registered) on its own host's IP, and
	// the honest ledgers agree.
	ledgers := make(map[int][]client.LedgerLine)
	for i, p := range replicas {
		head := tail(p.logPath, 1000)
		if want := fmt.Sprintf("running on /ip4/%s/tcp/", ips[i]); !strings.Contains(head, want) {
			t.Errorf("replica %d's log lacks %q", i, want)
		}
		path := filepath.Join(testnet, olympus.ReplicaDir(types.ReplicaID(i)), fmt.Sprintf("replica-%d.ledger", i))
		l, err := readWith(path, client.ReadLedger)
		if err != nil {
			t.Fatalf("replica %d's ledger: %v", i, err)
		}
		ledgers[i] = l
	}
	v := compareLedgers(ledgers, nil)
	if len(v.Divergent) > 0 || len(v.Agreed) != 50 {
		t.Errorf("ledgers: heights %v, divergent %v; want 50 agreed requests", v.Heights, v.Divergent)
	}
}

// labConfig writes a small experiment: 2 clients running workload, and
// the extra TOML (failures).
func labConfig(t *testing.T, workload, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lab.toml")
	cfg := fmt.Sprintf(`name = "labtest"
seed = 7
[timing]
delta_ms = 20
round_timeout_ms = 300
run_deadline_s = 90
[[clients]]
count = 2
workload = %q
timeout_ms = 1000
concurrency = 2
%s`, workload, extra)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// labNamespaces lists this process's lab namespaces that still exist.
func labNamespaces(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	prefix := fmt.Sprintf("%s-%d-", netlab.DefaultPrefix, os.Getpid())
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// testLabCommand runs a small experiment with `diembft lab`, with a crash
// fault whose replica is restarted on its host.
func testLabCommand(t *testing.T, bins string) {
	cfg := labConfig(t, "pseudorandom(7,20)", `
[[failures]]
type = "crash"
src = 1
trigger = "round(8)"
restart_after_ms = 300
`)
	dir := filepath.Join(t.TempDir(), "run")
	var out, errb bytes.Buffer
	code := execute([]string{"lab", cfg, "--out", dir, "--bin-dir", bins}, &out, &errb)
	t.Logf("diembft lab:\n%s%s", errb.String(), out.String())
	if code != 0 {
		for _, name := range []string{"olympus", "replica-0", "client-0"} {
			t.Logf("%s's log:\n%s", name, tail(filepath.Join(dir, logsDir, name+".log"), 10))
		}
		t.Fatalf("diembft lab: exit %d", code)
	}
	rep, err := verifyRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Requests.Committed != 40 || rep.Requests.Verified != 40 {
		t.Errorf("report: ok %v, requests %+v, problems %v", rep.OK, rep.Requests, rep.Problems)
	}
	if len(rep.Faults) != 1 || rep.Faults[0].Fired != 1 {
		t.Errorf("faults %+v; want the crash fired once", rep.Faults)
	}
	if log, _ := os.ReadFile(filepath.Join(dir, logsDir, "replica-1.log")); bytes.Count(log, []byte("\n# ")) != 1 {
		t.Errorf("replica 1 was not started twice (crash, restart); its log:\n%s", tail(filepath.Join(dir, logsDir, "replica-1.log"), 20))
	}
	if !strings.Contains(errb.String(), "olympus listening on /ip4/10.77.0.1/tcp/") {
		t.Errorf("the lab's Olympus is not on the lab's first address:\n%s", errb.String())
	}
	for i := range 4 {
		want := fmt.Sprintf("running on /ip4/10.77.0.%d/tcp/", 2+i)
		if log := tail(filepath.Join(dir, logsDir, fmt.Sprintf("replica-%d.log", i)), 1000); !strings.Contains(log, want) {
			t.Errorf("replica %d's log lacks %q", i, want)
		}
	}
	if left := labNamespaces(t); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
}

// testLabInterrupted stops a lab run in the middle, as a first Ctrl-C does:
// the run must still report (not ok, interrupted) and leave nothing behind.
func testLabInterrupted(t *testing.T, bins string) {
	cfg := labConfig(t, "pseudorandom(7,20000)", "")
	dir := filepath.Join(t.TempDir(), "run")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Interrupt once the clients run (the status line says so).
	status := &phaseWatch{phase: "running clients", hit: cancel}
	opts := runOptions{config: cfg, out: dir, binDir: bins, logLevel: "warn", startTimeout: 30 * time.Second}
	var out bytes.Buffer
	start := time.Now()
	rep, _, err := runExperimentWith(ctx, opts, &out, status,
		func(e *experiment, ctx context.Context) { e.executeLab(ctx, netlab.DefaultSubnet) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("interrupted run took %v:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if rep.OK || !slices.Contains(rep.Problems, "interrupted before every client finished") {
		t.Errorf("report: ok %v, problems %v; want not ok, interrupted", rep.OK, rep.Problems)
	}
	if left := labNamespaces(t); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
}

// phaseWatch is the run's stderr: it calls hit once when a line mentions
// phase.
type phaseWatch struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	phase string
	hit   func()
	done  bool
}

func (w *phaseWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.done && strings.Contains(w.buf.String(), w.phase) {
		w.done = true
		w.hit()
	}
	return len(p), nil
}

func TestLabNeedsRoot(t *testing.T) {
	saved := labCheck
	t.Cleanup(func() { labCheck = saved })
	labCheck = func() error { return fmt.Errorf("%w (running as uid 1000)", netlab.ErrNotRoot) }
	var out, errb bytes.Buffer
	code := execute([]string{"lab", "configs/whatever.toml"}, &out, &errb)
	if code != exitUsage || strings.TrimSpace(errb.String()) != labNeedsRoot {
		t.Errorf("lab as non-root: exit %d, stderr %q; want %d and %q", code, errb.String(), exitUsage, labNeedsRoot)
	}
}
