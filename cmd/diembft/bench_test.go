package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBenchPlan(t *testing.T) {
	o := benchOptions{mode: "sweep"}
	runs := o.plan()
	if len(runs) != 8 {
		t.Fatalf("sweep plans %d runs, want 8 (N = 4 and 7: latency, batch 1, 100, 1000)", len(runs))
	}
	want := []struct {
		mode        string
		n, batch    int
		totalLoad   int // clients x in flight
		clientBatch int // operations per signed request
	}{
		{"latency", 4, 100, 4, 1}, {"throughput", 4, 1, 64, 1}, {"throughput", 4, 100, 200, 12}, {"throughput", 4, 1000, 2000, 125},
		{"latency", 7, 100, 4, 1}, {"throughput", 7, 1, 112, 1}, {"throughput", 7, 100, 348, 21}, {"throughput", 7, 1000, 3500, 125},
	}
	for i, w := range want {
		r := runs[i]
		if r.Mode != w.mode || r.Replicas != w.n || r.Batch != w.batch || r.Clients*r.Inflight != w.totalLoad || r.ClientBatch != w.clientBatch {
			t.Errorf("run %d = %+v, want %s N=%d batch %d with %d in flight in requests of %d", i, r, w.mode, w.n, w.batch, w.totalLoad, w.clientBatch)
		}
	}
	o = benchOptions{mode: "latency", replicas: 7}
	if r := o.plan(); len(r) != 1 || r[0].Clients != 1 || r[0].Inflight != 4 || r[0].Replicas != 7 {
		t.Errorf("latency plan %+v, want 1 client with 4 in flight on 7 replicas", r)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{186, 82, 188, 186}, 186}, {[]float64{5, 1, 3}, 3}} {
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}

// TestCrashFigures: acceptances every 10 ms with a 900 ms hole starting
// 100 ms after the crash.
func TestCrashFigures(t *testing.T) {
	start := time.Unix(1000, 0)
	ws := start.Add(time.Second)
	crash := ws.Add(2 * time.Second)
	we := ws.Add(14 * time.Second)
	var all []sample
	c := int64(crash.Sub(start))
	for at := int64(ws.Sub(start)); at < int64(we.Sub(start)); at += int64(10 * time.Millisecond) {
		if at > c+int64(100*time.Millisecond) && at < c+int64(1000*time.Millisecond) {
			continue
		}
		all = append(all, sample{at: at})
	}
	f := crashFigures(all, start, ws, crash, we, 3)
	if f.MaxGapMs < 890 || f.MaxGapMs > 910 {
		t.Errorf("max gap %v ms, want about 900", f.MaxGapMs)
	}
	if f.FirstCommitMs < 990 || f.FirstCommitMs > 1010 {
		t.Errorf("first commit after the stall %v ms after the crash, want about 1000", f.FirstCommitMs)
	}
	if f.OpsPerSBefore < 99 || f.OpsPerSBefore > 101 || f.RecoveredRatio < 0.9 || f.RecoveredRatio > 0.92 {
		t.Errorf("before %v ops/s, recovered %v: want 100 ops/s and about 0.91", f.OpsPerSBefore, f.RecoveredRatio)
	}
	if f.AfterS != 10 {
		t.Errorf("measured %v s after the crash, want 10", f.AfterS)
	}
	// A window that ends 4 s after the kill measures the 4 s it has.
	if f := crashFigures(all, start, ws, crash, crash.Add(4*time.Second), 3); f.AfterS != 4 {
		t.Errorf("measured %v s after the crash with 4 s left, want 4", f.AfterS)
	}
}

func TestPidCPU(t *testing.T) {
	if cpu := pidCPU(os.Getpid()); cpu < 0 {
		t.Errorf("own CPU time %v", cpu)
	}
	if pidCPU(0) != 0 {
		t.Error("pid 0 has CPU time")
	}
}

// TestBenchUsageErrors: flags that cannot describe a run are refused with
// exit status 2 and one line, before anything starts (a negative
// --crash-after ran a bench without a crash; --delta-ms 0 failed only after
// the output directory was made, naming a config key, with status 1).
func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--mode", "throughput", "--crash-after", "-1s"},
		{"--crash-replica", "-2"},
		{"--crash-replica", "4"},
		{"--delta-ms", "0"},
		{"--round-timeout-ms", "-5"},
		{"--replicas", "3"},
		{"--duration", "0s"},
	} {
		var stdout, stderr bytes.Buffer
		resetFlags(t)
		out := filepath.Join(t.TempDir(), "b")
		code := execute(append([]string{"bench", "--out", out, "--bin-dir", t.TempDir()}, args...), &stdout, &stderr)
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if code != exitUsage || len(lines) != 1 || !strings.HasPrefix(lines[0], "diembft: ") {
			t.Errorf("bench %q: exit %d, stderr %q; want exit 2 and one line", args, code, stderr.String())
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("bench %q: made the output directory before refusing", args)
		}
	}
}

// TestDurationFlags: bench's duration flags take a plain number as seconds
// (bench.json reports duration_s; spec §5 writes --duration D), and Go
// durations as before.
func TestDurationFlags(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"5": 5 * time.Second, "2.5": 2500 * time.Millisecond, "0": 0, ".5": 500 * time.Millisecond, "-1": -time.Second,
		"5s": 5 * time.Second, "500ms": 500 * time.Millisecond, "1m30s": 90 * time.Second,
	} {
		if got, err := parseSeconds(in); err != nil || got != want {
			t.Errorf("parseSeconds(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "5x", "inf", "NaN", "1e3", "0x10", "1e300", "s"} {
		if got, err := parseSeconds(in); err == nil {
			t.Errorf("parseSeconds(%q) = %v, want an error", in, got)
		}
	}

	// Through the command line: every duration flag of bench.
	var stdout, stderr bytes.Buffer
	resetFlags(t)
	code := execute([]string{"bench", "--out", filepath.Join(t.TempDir(), "b"), "--bin-dir", t.TempDir(),
		"--duration", "5", "--warmup", "2", "--crash-after", "1.5", "--start-timeout", "90", "--replicas", "3"}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "--replicas 3") {
		t.Fatalf("exit %d, stderr %q; want the --replicas error, after the durations parsed", code, stderr.String())
	}
	o := benchOpts
	if o.duration != 5*time.Second || o.warmup != 2*time.Second || o.crashAfter != 1500*time.Millisecond || o.startTimeout != 90*time.Second {
		t.Errorf("--duration 5 --warmup 2 --crash-after 1.5 --start-timeout 90 gave %v, %v, %v, %v", o.duration, o.warmup, o.crashAfter, o.startTimeout)
	}
	stderr.Reset()
	resetFlags(t)
	code = execute([]string{"bench", "--out", filepath.Join(t.TempDir(), "b"), "--bin-dir", t.TempDir(),
		"--duration", "5", "--crash-after", "10"}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "--crash-after 10s must be shorter than --duration 5s") {
		t.Errorf("--duration 5 --crash-after 10: exit %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	resetFlags(t)
	code = execute([]string{"bench", "--duration", "5 s"}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), `invalid argument "5 s" for "--duration" flag: want seconds`) {
		t.Errorf("--duration '5 s': exit %d, stderr %q", code, stderr.String())
	}
	resetFlags(t)
	if benchOpts.duration != 20*time.Second || benchOpts.crashAfter != 0 {
		t.Errorf("reset flags: --duration %v, --crash-after %v", benchOpts.duration, benchOpts.crashAfter)
	}
}
