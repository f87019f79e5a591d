package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/diembft/diembft/olympus"
)

type scenariosOptions struct {
	out          string
	binDir       string
	run          string
	startTimeout time.Duration
}

var scenariosOpts scenariosOptions

var scenariosCmd = &cobra.Command{
	Use:   "scenarios DIR",
	Short: "Run every scenario config in DIR and check each verdict against its expected one",
	Long: `Run each config in DIR (*.toml and legacy *.txt, in name order), one at a
time, as 'diembft run' does, and check it as ../shared/tools/check-run does:
report.json complete, exit status (ok) and problems consistent, ledgers/ and
logs/ present, and the verdict equal to the one the config expects in a
comment line "# expect: ok" or "# expect: fail". A safety violation fails a
scenario whatever it expects. Prints a table (scenario, expected, got,
committed, faults fired, rounds ended by a TC, duration) and exits 0 only if
every scenario matched.`,
	Example: `  diembft scenarios configs/scenarios
  diembft scenarios configs/scenarios --run 'partition|crash' --out runs/sc1`,
	Args: exactArgs(1, "DIR"),
	RunE: func(cmd *cobra.Command, args []string) error {
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		ok, err := runScenarios(ctx, args[0], scenariosOpts, cmd.OutOrStdout())
		if err != nil {
			return err
		}
		if !ok {
			return exitError{exitFail}
		}
		return nil
	},
}

func init() {
	f := scenariosCmd.Flags()
	f.StringVar(&scenariosOpts.out, "out", "", "directory for the runs, one subdirectory per scenario (default runs/scenarios-<timestamp>)")
	f.StringVar(&scenariosOpts.binDir, "bin-dir", "", "where bin/olympus, bin/replica and bin/client are (default: next to this binary)")
	f.StringVar(&scenariosOpts.run, "run", "", "run only the scenarios whose name matches this regular expression")
	durationVar(f, &scenariosOpts.startTimeout, "start-timeout", 30*time.Second, "how long Olympus may take to start listening")
	rootCmd.AddCommand(scenariosCmd)
}

// scenario is one config of the library and what it expects.
type scenario struct {
	name, path, expect string
}

var expectLine = regexp.MustCompile(`^\s*#\s*expect:\s*(\S+)\s*$`)

// readScenarios lists DIR's configs with their expected verdicts.
func readScenarios(dir, filter string) ([]scenario, error) {
	var re *regexp.Regexp
	if filter != "" {
		var err error
		if re, err = regexp.Compile(filter); err != nil {
			return nil, usageErrorf("--run: %v", err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	var out []scenario
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".toml" && ext != ".txt") {
			continue
		}
		name := strings.TrimSuffix(e.Name(), ext)
		if re != nil && !re.MatchString(name) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, usageErrorf("%v", err)
		}
		sc := scenario{name: name, path: path}
		for line := range strings.SplitSeq(string(data), "\n") {
			if m := expectLine.FindStringSubmatch(line); m != nil {
				sc.expect = m[1]
				break
			}
		}
		if sc.expect != "ok" && sc.expect != "fail" {
			return nil, usageErrorf("%s: needs a comment line \"# expect: ok\" or \"# expect: fail\"", path)
		}
		out = append(out, sc)
	}
	if len(out) == 0 {
		return nil, usageErrorf("no scenario (*.toml, *.txt) in %s", dir)
	}
	return out, nil
}

// scenarioResult is one row of the table.
type scenarioResult struct {
	scenario
	got      string // ok, fail, or error
	rep      *Report
	wall     time.Duration
	mismatch []string // why the scenario does not pass
}

func runScenarios(ctx context.Context, dir string, o scenariosOptions, stdout io.Writer) (bool, error) {
	scs, err := readScenarios(dir, o.run)
	if err != nil {
		return false, err
	}
	out := o.out
	if out == "" {
		if out, err = olympus.NewRunDir("scenarios"); err != nil {
			return false, err
		}
	}
	if _, err := checkOutDir(out, stdout); err != nil {
		return false, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return false, usageErrorf("--out: %v", err)
	}
	var results []scenarioResult
	for i, sc := range scs {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(stdout, "[%d/%d] %s (expect %s) ...", i+1, len(scs), sc.name, sc.expect)
		r := runScenario(ctx, sc, filepath.Join(out, sc.name), o)
		verdict := "PASS"
		if len(r.mismatch) > 0 {
			verdict = "FAIL: " + strings.Join(r.mismatch, "; ")
		}
		fmt.Fprintf(stdout, " %s in %.1fs: %s\n", r.got, r.wall.Seconds(), verdict)
		results = append(results, r)
	}
	fmt.Fprintln(stdout)
	printScenarioTable(stdout, results)
	pass := len(results) == len(scs)
	for _, r := range results {
		pass = pass && len(r.mismatch) == 0
	}
	fmt.Fprintf(stdout, "\n%d of %d scenarios as expected; runs in %s\n", count(results, func(r scenarioResult) bool { return len(r.mismatch) == 0 }), len(scs), out)
	return pass, nil
}

func count[T any](xs []T, f func(T) bool) int {
	n := 0
	for _, x := range xs {
		if f(x) {
			n++
		}
	}
	return n
}

// runScenario runs one config into dir and checks it like check-run.
func runScenario(ctx context.Context, sc scenario, dir string, o scenariosOptions) scenarioResult {
	r := scenarioResult{scenario: sc, got: "error"}
	start := time.Now()
	var summary bytes.Buffer
	opts := runOptions{config: sc.path, out: dir, binDir: o.binDir, logLevel: logLevel, startTimeout: o.startTimeout}
	rep, _, err := runExperiment(ctx, opts, &summary, io.Discard)
	r.wall = time.Since(start)
	_ = os.WriteFile(filepath.Join(dir, "summary.txt"), summary.Bytes(), 0o644)
	if err != nil {
		r.mismatch = append(r.mismatch, err.Error())
		return r
	}
	r.rep = rep
	r.got = map[bool]string{true: "ok", false: "fail"}[rep.OK]
	r.mismatch = append(r.mismatch, checkRunDir(dir, rep)...)
	if r.got != sc.expect {
		why := fmt.Sprintf("expected %s", sc.expect)
		if len(rep.Problems) > 0 {
			why += " (" + strings.Join(rep.Problems, "; ") + ")"
		}
		r.mismatch = append(r.mismatch, why)
	}
	if rep.SafetyViolations > 0 {
		r.mismatch = append(r.mismatch, fmt.Sprintf("%d safety violations", rep.SafetyViolations))
	}
	// The library's faults are built to fire: one that did not is a broken
	// scenario (or injector) even if the run is ok (checkFaults).
	for i, f := range rep.Faults {
		if strings.HasPrefix(f.Note, notFired) {
			r.mismatch = append(r.mismatch, fmt.Sprintf("fault %d (%s) %s", i, f.Type, f.Note))
		}
	}
	return r
}

// checkRunDir is check-run's shape check of a finished run directory.
func checkRunDir(dir string, rep *Report) []string {
	var bad []string
	data, err := os.ReadFile(filepath.Join(dir, reportFile))
	if err != nil {
		return []string{"no report.json"}
	}
	for _, k := range []string{`"name"`, `"seed"`, `"ok"`, `"replicas"`, `"f"`, `"clients"`, `"requests"`, `"ledgers"`,
		`"safety_violations"`, `"rounds"`, `"faults"`, `"throughput_ops_per_s"`, `"latency_ms"`, `"duration_s"`, `"problems"`} {
		if !bytes.Contains(data, []byte(k+":")) {
			bad = append(bad, "report.json lacks "+k)
		}
	}
	if !rep.OK && len(rep.Problems) == 0 {
		bad = append(bad, "ok is false and problems is empty")
	}
	for _, d := range []string{ledgersDir, logsDir} {
		if st, err := os.Stat(filepath.Join(dir, d)); err != nil || !st.IsDir() {
			bad = append(bad, "no "+d+"/")
		}
	}
	return bad
}

func printScenarioTable(w io.Writer, results []scenarioResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\texpect\tgot\tcommitted\tfaults fired\tTC rounds\tduration\tresult")
	for _, r := range results {
		committed, fired, tc := "-", "-", "-"
		if r.rep != nil {
			committed = fmt.Sprintf("%d/%d", r.rep.Requests.Committed, r.rep.Requests.Submitted)
			var fs []string
			for _, f := range r.rep.Faults {
				fs = append(fs, fmt.Sprintf("%s:%d", f.Type, f.Fired))
			}
			fired = cmp.Or(strings.Join(fs, " "), "none")
			tc = fmt.Sprint(r.rep.Rounds.ByTC)
		}
		result := "PASS"
		if len(r.mismatch) > 0 {
			result = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.1fs\t%s\n", r.name, r.expect, r.got, committed, fired, tc, r.wall.Seconds(), result)
	}
	tw.Flush()
}
