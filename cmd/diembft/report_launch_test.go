package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/node/fault"
	"github.com/diembft/diembft/node/kv"
	"github.com/diembft/diembft/node/workload"
	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/olympus/config"
	"github.com/diembft/diembft/protocol/types"
)

// The launcher is tested against fake bin/olympus and bin/client: this test
// binary, re-executed with DIEMBFT_FAKE naming the role. The fakes follow the
// launcher's contract with the real programs (flags, multiaddrs file, homes,
// ledger and results files, SIGTERM) but run no consensus: the "committee"
// commits the clients' workloads one client after the other, and the fake
// clients compute the results an honest committee would give.
//
// Environment knobs: FAKE_OLYMPUS_FAIL (Olympus exits at once),
// FAKE_DIVERGE (replica 3 commits something else at height 1),
// FAKE_CLIENT_HANG (clients never finish), FAKE_CLIENT_LIE (client 1
// records a wrong result).
func TestMain(m *testing.M) {
	switch os.Getenv("DIEMBFT_FAKE") {
	case "olympus":
		os.Exit(fakeOlympus(os.Args[1:]))
	case "client":
		os.Exit(fakeClient(os.Args[1:]))
	case "replica":
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeBins writes bin/{olympus,replica,client} scripts that run this test
// binary in the fake roles.
func fakeBins(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, role := range []string{"olympus", "replica", "client"} {
		script := fmt.Sprintf("#!/bin/sh\nDIEMBFT_FAKE=%s exec %q \"$@\"\n", role, self)
		if err := os.WriteFile(filepath.Join(dir, role), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// fakeClientKey is client i's identity in the fakes.
func fakeClientKey(i int) string { return clientKey(i) }

// readWorkloadFile reads a client-<i>.workload the launcher wrote.
func readWorkloadFile(path string) ([]kv.Op, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return workload.Parse(string(data))
}

func fakeOlympus(args []string) int {
	fs := flag.NewFlagSet("olympus", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "")
	out := fs.String("out", "", "")
	replicaBin := fs.String("replica-bin", "", "")
	fs.String("log-level", "", "")
	seed := fs.Int64("seed", 0, "")
	if err := fs.Parse(args); err != nil || *cfgPath == "" || *out == "" || filepath.Base(*replicaBin) != "replica" {
		fmt.Fprintln(os.Stderr, "olympus: bad usage", args)
		return 2
	}
	if os.Getenv("FAKE_OLYMPUS_FAIL") != "" {
		fmt.Fprintln(os.Stderr, "olympus: boom")
		return 1
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	addr := "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWLbjTGzFh3nq3rUWGLH3AQgSU5E4EUx1J4kcJRjvB3n3V"
	if err := olympus.WriteMultiaddrs(*out, []string{"/ip4/127.0.0.1/udp/4001/quic-v1/p2p/12D3KooWLbjTGzFh3nq3rUWGLH3AQgSU5E4EUx1J4kcJRjvB3n3V", addr}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(olympus.ListeningLine(addr))
	<-term

	// The committee committed each client's workload in client order.
	var ledger []string
	for i := range cfg.TotalClients() {
		ops, err := readWorkloadFile(filepath.Join(*out, clientsDir, fmt.Sprintf("client-%d.workload", i)))
		if err != nil {
			continue
		}
		for k, op := range ops {
			ledger = append(ledger, client.LedgerLine{Client: fakeClientKey(i), Seq: uint64(k + 1), Op: op.String()}.String())
		}
	}
	for id := range cfg.NumReplicas() {
		home := filepath.Join(*out, olympus.HomesDir, olympus.ReplicaDir(types.ReplicaID(id)))
		if err := os.MkdirAll(home, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		l := slices.Clone(ledger)
		if id == 3 && os.Getenv("FAKE_DIVERGE") != "" && len(l) > 0 {
			l[0] = client.LedgerLine{Client: fakeClientKey(0), Seq: 1, Op: "put('evil','twin')"}.String()
		}
		text := strings.Join(l, "\n")
		if len(l) > 0 {
			text += "\n"
		}
		if err := os.WriteFile(filepath.Join(home, fmt.Sprintf("replica-%d.ledger", id)), []byte(text), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		stats := fmt.Sprintf(`{"round": %d, "rounds_by_qc": %d, "rounds_by_tc": 2, "height": %d}`, 10+id, 8+id, len(l))
		if err := os.WriteFile(filepath.Join(home, "stats.json"), []byte(stats), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := fakeFaultLog(home, id, *seed, cfg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// fakeFaultLog writes the faults.jsonl a replica leaves: each failure fires
// once on its src (replica 0 for "_" and "leader"), twice with
// FAKE_FAULTS_TWICE, never with FAKE_FAULTS_NONE.
func fakeFaultLog(home string, id int, seed int64, cfg *config.Config) error {
	if len(cfg.Failures) == 0 || os.Getenv("FAKE_FAULTS_NONE") != "" {
		return nil
	}
	var lines []byte
	for i, f := range cfg.Failures {
		if int(f.Src) != id && !(f.Src < 0 && id == 0) {
			continue
		}
		for range map[bool]int{false: 1, true: 2}[os.Getenv("FAKE_FAULTS_TWICE") != ""] {
			line, _ := json.Marshal(fault.Record{Ev: fault.EvFire, Failure: i, Type: f.Type, Replica: id, Round: 4, Seed: seed})
			lines = append(append(lines, line...), '\n')
		}
	}
	return os.WriteFile(filepath.Join(home, fault.LogFile), lines, 0o644)
}

var clientNumber = regexp.MustCompile(`client-(\d+)\.jsonl$`)

func fakeClient(args []string) int {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	olympusAddr := fs.String("olympus", "", "")
	wlFile := fs.String("workload-file", "", "")
	results := fs.String("results", "", "")
	fs.Int("concurrency", 0, "")
	fs.Int("timeout-ms", 0, "")
	fs.Duration("olympus-timeout", 0, "")
	fs.String("log-level", "", "")
	fs.Bool("no-progress", false, "")
	fs.String("key", "", "")
	if err := fs.Parse(args); err != nil || !strings.HasSuffix(*olympusAddr, "/tcp/4001/p2p/12D3KooWLbjTGzFh3nq3rUWGLH3AQgSU5E4EUx1J4kcJRjvB3n3V") {
		fmt.Fprintln(os.Stderr, "client: bad usage", args)
		return 2
	}
	m := clientNumber.FindStringSubmatch(*results)
	if m == nil {
		fmt.Fprintln(os.Stderr, "client: bad --results", *results)
		return 2
	}
	me, _ := strconv.Atoi(m[1])
	if os.Getenv("FAKE_CLIENT_HANG") != "" {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		<-term
		fmt.Fprintln(os.Stderr, "client: interrupted: only 0 of 4 requests committed")
		return 1
	}
	// Replay the clients before this one, then this one's operations.
	store := kv.New()
	height := 0
	for i := range me {
		ops, err := readWorkloadFile(filepath.Join(filepath.Dir(*wlFile), fmt.Sprintf("client-%d.workload", i)))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for _, op := range ops {
			store.Apply(op)
			height++
		}
	}
	ops, err := readWorkloadFile(*wlFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f, err := os.Create(*results)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	// Times follow the ledger's order, as a committee's would (the fake
	// clients run concurrently, so their clocks would not, and the report
	// checks real-time order): 2 ms per height from when the launcher
	// wrote client 0's workload, the same for every client.
	var start int64
	if st, err := os.Stat(filepath.Join(filepath.Dir(*wlFile), "client-0.workload")); err == nil {
		start = st.ModTime().UnixMilli()
	}
	for k, op := range ops {
		height++
		r := client.Record{Client: fakeClientKey(me), Seq: uint64(k + 1), Op: op.String(), Result: store.Apply(op),
			Height: uint64(height), SubmittedMs: start + 2*int64(height), LatencyMs: 1.5}
		if me == 1 && k == 0 && os.Getenv("FAKE_CLIENT_LIE") != "" {
			r.Result = "lie"
		}
		line, _ := json.Marshal(r)
		f.Write(append(line, '\n'))
	}
	fmt.Printf("client %s: %d/%d committed\n", fakeClientKey(me)[:12], len(ops), len(ops))
	return 0
}

const testConfig = `
name = "fake"
seed = 5
[timing]
run_deadline_s = %d
[[clients]]
count = 2
workload = "pseudorandom(9,6)"
[[clients]]
workload = ["put('movie','star')", "append('movie',' wars')", "get('movie')"]
`

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "exp.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func launch(t *testing.T, cfgText string) (*Report, string, string) {
	t.Helper()
	opts := runOptions{
		config:       writeConfig(t, cfgText),
		out:          filepath.Join(t.TempDir(), "run"),
		binDir:       fakeBins(t),
		logLevel:     "error",
		startTimeout: 10 * time.Second,
	}
	var stdout, stderr bytes.Buffer
	rep, dir, err := runExperiment(context.Background(), opts, &stdout, &stderr)
	if err != nil {
		t.Fatalf("runExperiment: %v\nstderr: %s", err, stderr.String())
	}
	// What check-run requires of every run directory.
	for _, p := range []string{reportFile, runFile, ledgersDir, logsDir} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("run directory lacks %s", p)
		}
	}
	var onDisk Report
	if err := readJSON(filepath.Join(dir, reportFile), &onDisk); err != nil || onDisk.OK != rep.OK {
		t.Errorf("report.json: %v, ok %v vs %v", err, onDisk.OK, rep.OK)
	}
	return rep, dir, stdout.String()
}

func TestRunWithFakeProcesses(t *testing.T) {
	rep, dir, out := launch(t, fmt.Sprintf(testConfig, 30))
	if !rep.OK {
		t.Fatalf("run failed: %q\n%s", rep.Problems, out)
	}
	if rep.Name != "fake" || rep.Seed != 5 || rep.Replicas != 4 || rep.F != 1 || rep.Clients != 3 {
		t.Errorf("report header %+v", rep)
	}
	if rep.Requests != (RequestCounts{Submitted: 15, Committed: 15, Verified: 15}) {
		t.Errorf("requests %+v", rep.Requests)
	}
	if rep.Rounds != (Rounds{Highest: 13, ByQC: 11, ByTC: 2}) {
		t.Errorf("rounds %+v, want the highest of each over the replicas' stats.json", rep.Rounds)
	}
	for id := range 4 {
		if rep.Ledgers.Heights[strconv.Itoa(id)] != 15 {
			t.Errorf("heights %v", rep.Ledgers.Heights)
		}
	}
	for _, p := range []string{"logs/olympus.log", "logs/client-0.log", "logs/client-2.log", "clients/client-1.jsonl", "ledgers/replica-3.ledger"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("missing %s", p)
		}
	}
	if !strings.Contains(out, "run fake (seed 5): ok") || !strings.Contains(out, "15/15 committed, 15 verified") {
		t.Errorf("summary:\n%s", out)
	}
	// Client 1 is copy 1 of the first table, identical to copy 0 (spec §2).
	got, err := readWorkloadFile(filepath.Join(dir, clientsDir, "client-1.workload"))
	if want := workload.Pseudorandom(9, 6); err != nil || !slices.Equal(got, want) {
		t.Errorf("client 1 workload %v (%v), want %v", got, err, want)
	}
	// diembft verify agrees with the run.
	if r, err := verifyRun(dir); err != nil || !r.OK || r.Requests != rep.Requests {
		t.Errorf("verify: %v, %+v", err, r)
	}
}

func TestRunDetectsDivergenceAndLies(t *testing.T) {
	t.Setenv("FAKE_DIVERGE", "1")
	t.Setenv("FAKE_CLIENT_LIE", "1")
	rep, _, _ := launch(t, fmt.Sprintf(testConfig, 30))
	if rep.OK || rep.Ledgers.Consistent || rep.SafetyViolations != 3 {
		t.Fatalf("ok %v, consistent %v, violations %d", rep.OK, rep.Ledgers.Consistent, rep.SafetyViolations)
	}
	if rep.Requests.Verified != 14 {
		t.Errorf("verified %d, want 14 (client 1 lied once)", rep.Requests.Verified)
	}
	joined := strings.Join(rep.Problems, "\n")
	for _, want := range []string{"ledgers of replicas 0 and 3 diverge at height 1", `accepted result "lie"`} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems %q lack %q", rep.Problems, want)
		}
	}
}

func TestRunDeadlineStopsClients(t *testing.T) {
	t.Setenv("FAKE_CLIENT_HANG", "1")
	start := time.Now()
	rep, _, _ := launch(t, fmt.Sprintf(testConfig, 1))
	if rep.OK || rep.Requests.Committed != 0 || rep.Requests.Submitted != 15 {
		t.Fatalf("ok %v, requests %+v", rep.OK, rep.Requests)
	}
	joined := strings.Join(rep.Problems, "\n")
	for _, want := range []string{"run deadline (timing.run_deadline_s = 1) passed", "client 0: 0 of 6 requests committed",
		"client 2 ended with exit status 1: client: interrupted"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems %q lack %q", rep.Problems, want)
		}
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("run took %v after a 1 s deadline", d)
	}
}

func TestRunOlympusFailure(t *testing.T) {
	t.Setenv("FAKE_OLYMPUS_FAIL", "1")
	rep, _, _ := launch(t, fmt.Sprintf(testConfig, 30))
	if rep.OK || len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0], "olympus exited before listening (exit status 1): olympus: boom") {
		t.Fatalf("ok %v, problems %q", rep.OK, rep.Problems)
	}
	if rep.Requests.Submitted != 0 {
		t.Errorf("submitted %d with no client started", rep.Requests.Submitted)
	}
}

const faultyConfig = `
name = "faulty"
seed = 5
[[clients]]
count = 2
workload = "pseudorandom(9,6)"
[[failures]]
type = "drop"
src = 1
msg = "proposal"
rounds = [4, 5]
[[failures]]
type = "crash"
src = 2
trigger = "commit(3)"
`

// TestRunInjectsFaults: a config with failures runs; Olympus gets the seed,
// the clients their seed-derived keys, the replicas' faults.jsonl are summed
// into report.json, and the crashed-for-good replica is left out of the
// ledger check.
func TestRunInjectsFaults(t *testing.T) {
	rep, dir, out := launch(t, faultyConfig)
	if !rep.OK {
		t.Fatalf("run failed: %q\n%s", rep.Problems, out)
	}
	want := []FaultReport{{Type: "drop", Src: "1", Msg: "proposal", Fired: 1}, {Type: "crash", Src: "2", Msg: "*", Fired: 1}}
	if !slices.Equal(rep.Faults, want) {
		t.Errorf("faults %+v, want %+v", rep.Faults, want)
	}
	var info RunInfo
	if err := readJSON(filepath.Join(dir, runFile), &info); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(info.Faulty, []int{2}) || len(info.FaultRules) != 2 || info.FaultRules[1] != (FaultRule{Min: 1, Max: 1, Trigger: "commit(3)", Replica: 2, Stops: true}) {
		t.Errorf("run.json: faulty %v, rules %+v", info.Faulty, info.FaultRules)
	}
	recs, err := fault.ReadLog(filepath.Join(dir, olympus.HomesDir, olympus.ReplicaDir(1)))
	if err != nil || len(recs) != 1 || recs[0].Seed != 5 {
		t.Errorf("olympus did not get the seed: %+v, %v", recs, err)
	}
	for i := range 2 {
		path := filepath.Join(dir, clientsDir, fmt.Sprintf("client-%d.key", i))
		key, _, err := client.LoadOrCreateKey(path)
		if st, serr := os.Stat(path); err != nil || serr != nil || st.Mode().Perm() != 0o600 || !key.Equal(fault.ClientKey(5, i)) {
			t.Errorf("client %d key file: %v %v", i, err, serr)
		}
	}
	if !strings.Contains(out, "fault crash src 2 msg *: fired 1") {
		t.Errorf("summary:\n%s", out)
	}

	// --seed reaches the replicas.
	opts := runOptions{config: writeConfig(t, faultyConfig), out: filepath.Join(t.TempDir(), "run"), binDir: fakeBins(t),
		logLevel: "error", startTimeout: 10 * time.Second, seed: 77, seedSet: true}
	if _, dir, err := runExperiment(context.Background(), opts, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	} else if recs, _ := fault.ReadLog(filepath.Join(dir, olympus.HomesDir, olympus.ReplicaDir(1))); len(recs) != 1 || recs[0].Seed != 77 {
		t.Errorf("--seed 77: records %+v", recs)
	}
}

// TestRunJudgesFaults: a fault that never fired is noted in the report (the
// run stays ok); a triggered fault that fired twice makes the run fail and
// says why.
func TestRunJudgesFaults(t *testing.T) {
	t.Run("FAKE_FAULTS_NONE", func(t *testing.T) {
		t.Setenv("FAKE_FAULTS_NONE", "1")
		rep, _, _ := launch(t, faultyConfig)
		if want := "did not fire: no message or event matched it"; !rep.OK || len(rep.Faults) == 0 || rep.Faults[0].Note != want {
			t.Fatalf("ok %v, problems %q, faults %+v; want ok and fault 0 noted %q", rep.OK, rep.Problems, rep.Faults, want)
		}
	})
	t.Run("FAKE_FAULTS_TWICE", func(t *testing.T) {
		t.Setenv("FAKE_FAULTS_TWICE", "1")
		rep, _, _ := launch(t, faultyConfig)
		if want := "fault 1 (crash, src 2, msg *) fired 2 times; with trigger commit(3) it fires at most 1"; rep.OK || !slices.Contains(rep.Problems, want) {
			t.Fatalf("ok %v, problems %q; want %q", rep.OK, rep.Problems, want)
		}
	})
}

// TestRunRefusesMoreThanFFaulty: more than f misbehaving replicas is a
// config error that says why, before anything runs.
func TestRunRefusesMoreThanFFaulty(t *testing.T) {
	cfg := writeConfig(t, `
[[failures]]
type = "equivocate"
src = 1
[[failures]]
type = "crash"
src = 2
`)
	var stdout, stderr bytes.Buffer
	resetFlags(t)
	code := execute([]string{"run", cfg, "--out", filepath.Join(t.TempDir(), "run"), "--bin-dir", t.TempDir()}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "replicas [1 2] misbehave") || !strings.Contains(stderr.String(), "at most f = 1") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestUsageErrors(t *testing.T) {
	bad := writeConfig(t, "name = \"x\"\nbogus = 1\n")
	good := writeConfig(t, "name = \"x\"\n")
	for _, args := range [][]string{
		{"run", good, "--bin-dir", t.TempDir(), "--out", filepath.Join(t.TempDir(), "run")}, // no binaries there
		{},
		{"run"},
		{"run", "a", "b"},
		{"run", filepath.Join(t.TempDir(), "missing.toml")},
		{"run", bad},
		{"run", bad, "--seed", "x"},
		{"verify"},
		{"nosuch"},
		{"version", "--log-level", "loud"},
		{"version", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		resetFlags(t)
		code := execute(args, &stdout, &stderr)
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if code != exitUsage || len(lines) != 1 || !strings.HasPrefix(lines[0], "diembft: ") {
			t.Errorf("diembft %q: exit %d, stderr %q; want exit 2 and one line", args, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	resetFlags(t)
	if code := execute([]string{"run", bad}, &stdout, &stderr); !strings.Contains(stderr.String(), `unknown key "bogus"`) {
		t.Errorf("exit %d, stderr %q: the error should name the unknown key", code, stderr.String())
	}
	// TOML keys are case-sensitive: a key spelled with other cases is an
	// unknown key like any other (exit 2, named as written with its line).
	for doc, want := range map[string]string{
		"name = \"x\"\nSeed = 1\n":              `:2: unknown key "Seed"`,
		"name = \"x\"\n[Committee]\nf = 2\n":    `:2: unknown key "Committee"`,
		"name = \"x\"\ncommittee = { F = 2 }\n": `:2: unknown key "committee.F"`,
	} {
		cfg := writeConfig(t, doc)
		stderr.Reset()
		resetFlags(t)
		code := execute([]string{"run", cfg, "--out", filepath.Join(t.TempDir(), "run")}, &stdout, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), cfg+want) {
			t.Errorf("run %q: exit %d, stderr %q; want exit 2 and %q", doc, code, stderr.String(), cfg+want)
		}
	}
	stdout.Reset()
	if code := execute([]string{"version"}, &stdout, &stderr); code != exitOK || !strings.HasPrefix(stdout.String(), "diembft ") {
		t.Errorf("version: exit %d, %q", code, stdout.String())
	}
}

// resetFlags puts the flags of the commands in this package back to their
// defaults: cobra keeps flag values from one Execute to the next.
func resetFlags(t *testing.T) {
	t.Helper()
	reset := func(f *pflag.Flag) {
		if err := f.Value.Set(f.DefValue); err != nil {
			t.Fatalf("reset --%s: %v", f.Name, err)
		}
		f.Changed = false
	}
	rootCmd.PersistentFlags().VisitAll(reset)
	for _, cmd := range rootCmd.Commands() {
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				// Set appends to a slice flag.
				if err := sv.Replace(nil); err != nil {
					t.Fatalf("reset --%s: %v", f.Name, err)
				}
				f.Changed = false
				return
			}
			reset(f)
		})
	}
}
