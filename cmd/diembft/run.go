package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/diembft/diembft/node"
	"github.com/diembft/diembft/node/kv"
	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/olympus/config"
	"github.com/diembft/diembft/protocol/types"
)

// Timeouts of the launcher's own process handling.
const (
	// stopGrace is how long a client or Olympus gets between SIGTERM and
	// SIGKILL. Olympus itself gives each replica olympus.DefaultGrace.
	stopGrace = olympus.DefaultGrace + 5*time.Second
	// multiaddrsPoll is how often the launcher looks for Olympus's
	// multiaddrs file while waiting (with a deadline) for it to appear.
	multiaddrsPoll = 20 * time.Millisecond
)

type runOptions struct {
	config       string
	out          string
	seed         int64
	seedSet      bool
	binDir       string
	logLevel     string
	startTimeout time.Duration
	progress     bool
}

var runOpts runOptions

var runCmd = &cobra.Command{
	Use:   "run CONFIG",
	Short: "Run an experiment: Olympus, the replicas and the clients of CONFIG, then verify and report",
	Long: `Run the experiment CONFIG describes on this machine and judge it.

CONFIG is a TOML config or a legacy key = value file (told apart by content).
The launcher starts bin/olympus in local mode (which starts the 3f+1 replicas),
then one bin/client process per client, waits until every client is done or
timing.run_deadline_s passes, stops everything, and verifies: every request
committed, the honest ledgers agree, and every accepted result equals a
sequential replay of the agreed ledger. It writes DIR (default
runs/<name>-<timestamp>/): report.json, run.json, ledgers/, clients/, logs/,
homes/. Exit status 0 if and only if the verdict is ok.`,
	Args: exactArgs(1, "CONFIG"),
	RunE: func(cmd *cobra.Command, args []string) error {
		opts := runOpts
		opts.config = args[0]
		opts.seedSet = cmd.Flags().Changed("seed")
		opts.logLevel = logLevel
		opts.progress = isTerminal(cmd.ErrOrStderr())
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		// After the first Ctrl-C the launcher stops the run and still
		// reports; a second one kills it.
		go func() { <-ctx.Done(); stop() }()
		rep, _, err := runExperiment(ctx, opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		if !rep.OK {
			return exitError{exitFail}
		}
		return nil
	},
}

func init() {
	addRunFlags(runCmd.Flags(), &runOpts)
	rootCmd.AddCommand(runCmd)
}

// addRunFlags defines the flags of an experiment run (run and lab) in f.
func addRunFlags(f *pflag.FlagSet, o *runOptions) {
	f.StringVar(&o.out, "out", "", "run directory (default runs/<name>-<timestamp>)")
	f.Int64Var(&o.seed, "seed", 0, "override the config's seed")
	f.StringVar(&o.binDir, "bin-dir", "", "where bin/olympus, bin/replica and bin/client are (default: next to this binary)")
	durationVar(f, &o.startTimeout, "start-timeout", 30*time.Second, "how long Olympus may take to start listening")
}

// exactArgs is cobra.ExactArgs with a usage error that names the argument.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			if len(args) < n {
				return usageErrorf("missing %s", names)
			}
			return usageErrorf("want %s, got %d arguments", names, len(args))
		}
		return nil
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// experiment is one `diembft run`.
type experiment struct {
	opts   runOptions
	cfg    *config.Config
	bins   binaries
	dir    string
	info   RunInfo
	start  time.Time
	status *status
}

// runExperiment runs the experiment and returns its report and directory.
// An error means the run could not even start (bad config, unusable --out)
// and there is no report; anything that goes wrong later is a problem in the
// report, which is always written once the directory exists.
func runExperiment(ctx context.Context, opts runOptions, stdout, stderr io.Writer) (*Report, string, error) {
	return runExperimentWith(ctx, opts, stdout, stderr, (*experiment).execute)
}

// runExperimentWith is runExperiment with the processes run by execute
// (diembft lab runs them in network namespaces): everything before and after
// (config, directory, verification, report) is shared.
func runExperimentWith(ctx context.Context, opts runOptions, stdout, stderr io.Writer, execute func(*experiment, context.Context)) (*Report, string, error) {
	cfg, err := config.Load(opts.config)
	if err != nil {
		return nil, "", usageError{err}
	}
	if opts.seedSet {
		cfg.Seed = opts.seed
	}
	// Before the run directory: nothing can run without them.
	bins, err := findBinaries(opts.binDir)
	if err != nil {
		return nil, "", err
	}
	dir := opts.out
	if dir == "" {
		if dir, err = olympus.NewRunDir(cfg.Name); err != nil {
			return nil, "", err
		}
	}
	if dir, err = prepareDir(dir, stdout, stderr); err != nil {
		return nil, "", err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "diembft: warning: %s\n", w)
	}
	configPath, _ := filepath.Abs(opts.config)
	e := &experiment{
		opts:   opts,
		cfg:    cfg,
		bins:   bins,
		dir:    dir,
		start:  time.Now(),
		status: newStatus(stderr, opts.progress),
		info: RunInfo{
			Name: cfg.Name, Seed: cfg.Seed, Config: configPath,
			Replicas: cfg.NumReplicas(), F: cfg.Committee.F,
			Clients:       make([]ClientInfo, cfg.TotalClients()),
			Faulty:        append([]int{}, cfg.FaultyReplicas()...),
			VerifyResults: cfg.Verify.Results, VerifyLedgers: cfg.Verify.Ledgers,
			Faults:     faultReports(cfg),
			FaultRules: faultRules(cfg), // faults.go
			Problems:   []string{},
		},
	}
	execute(e, ctx)
	e.status.stop()
	return e.finish(stdout)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// prepareDir creates the run directory and its subdirectories, refusing a
// directory that is not empty (checkOutDir; outputs are the command's).
func prepareDir(dir string, outputs ...io.Writer) (string, error) {
	abs, err := checkOutDir(dir, outputs...)
	if err != nil {
		return "", err
	}
	for _, sub := range []string{logsDir, ledgersDir, clientsDir} {
		if err := os.MkdirAll(filepath.Join(abs, sub), 0o755); err != nil {
			return "", usageErrorf("--out: %v", err)
		}
	}
	return abs, nil
}

// checkOutDir returns the absolute path of an --out DIR (of run, lab, bench
// and scenarios) that does not exist or is an empty directory, and refuses
// anything else with a one-line usage error. A run or bench writes into DIR
// what it finds there: a finished run's report was refused before, but an
// interrupted run's homes/ made Olympus refuse to start and its old files
// mixed into the new report, so any content is refused.
//
// One exception: a file that is one of outputs, the command's own stdout
// or stderr, does not count. `diembft run CONFIG --out D > D/stdout` (as
// ../shared/tools/check-run does, into a fresh mktemp -d) has the shell
// create D/stdout before the launcher starts; that file is this very run's
// output, not stale data.
func checkOutDir(dir string, outputs ...io.Writer) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", usageErrorf("--out %s: %v", dir, err)
	}
	f, err := os.Open(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return abs, nil
	}
	if err != nil {
		return "", usageErrorf("--out %s: %v", dir, pathCause(err))
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && !st.IsDir() {
		return "", usageErrorf("--out %s is not a directory; choose another directory", dir)
	}
	entries, err := f.ReadDir(-1)
	if err != nil {
		return "", usageErrorf("--out %s: %v", dir, pathCause(err))
	}
	var own []fs.FileInfo
	for _, w := range outputs {
		if of, ok := w.(*os.File); ok {
			if st, err := of.Stat(); err == nil && st.Mode().IsRegular() {
				own = append(own, st)
			}
		}
	}
	for _, e := range entries {
		st, err := e.Info()
		if err == nil && slices.ContainsFunc(own, func(o fs.FileInfo) bool { return os.SameFile(o, st) }) {
			continue
		}
		return "", usageErrorf("--out %s is not empty; choose another directory or remove it", dir)
	}
	return abs, nil
}

// pathCause drops the path an *fs.PathError repeats (the message names it).
func pathCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// faultReports lists the configured faults, none fired yet.
func faultReports(cfg *config.Config) []FaultReport {
	out := []FaultReport{}
	for _, f := range cfg.Failures {
		out = append(out, FaultReport{Type: f.Type, Src: f.Src.String(), Msg: f.Msg})
	}
	return out
}

func (e *experiment) problem(format string, args ...any) {
	p := fmt.Sprintf(format, args...)
	e.info.Problems = append(e.info.Problems, p)
	e.status.note("problem: " + p)
}

// finish writes run.json, judges the run from its directory exactly as
// `diembft verify` does, writes report.json and prints the summary.
func (e *experiment) finish(stdout io.Writer) (*Report, string, error) {
	if err := writeJSON(filepath.Join(e.dir, runFile), &e.info); err != nil {
		return nil, e.dir, fmt.Errorf("write %s: %w", runFile, err)
	}
	rep := buildReport(&e.info, loadEvidence(e.dir, &e.info))
	if err := writeJSON(filepath.Join(e.dir, reportFile), rep); err != nil {
		return nil, e.dir, fmt.Errorf("write %s: %w", reportFile, err)
	}
	printSummary(stdout, rep, e.dir)
	noteHTMLReport(stdout, e.dir, rep) // report.html (htmlreport.go)
	return rep, e.dir, nil
}

// binaries are the sibling programs a run starts.
type binaries struct{ olympus, replica, client string }

// findBinaries looks for bin/olympus, bin/replica and bin/client in dir, by
// default the directory of this executable (make build puts all four in bin/).
func findBinaries(dir string) (binaries, error) {
	given := dir != ""
	if !given {
		exe, err := os.Executable()
		if err != nil {
			return binaries{}, fmt.Errorf("cannot locate this executable: %v", err)
		}
		if exe, err = filepath.EvalSymlinks(exe); err != nil {
			return binaries{}, fmt.Errorf("cannot locate this executable: %v", err)
		}
		dir = filepath.Dir(exe)
	}
	var b binaries
	for name, p := range map[string]*string{"olympus": &b.olympus, "replica": &b.replica, "client": &b.client} {
		path := filepath.Join(dir, name)
		st, err := os.Stat(path)
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			if given {
				return binaries{}, usageErrorf("--bin-dir %s: no executable %s there (run make build)", dir, name)
			}
			return binaries{}, fmt.Errorf("no executable %s in %s (run make build)", name, dir)
		}
		*p = path
	}
	return b, nil
}

// clientSettings returns, for each client number, its table's timeout and
// concurrency.
func clientSettings(cfg *config.Config) []config.Client {
	var out []config.Client
	for _, t := range cfg.Clients {
		for range t.Count {
			out = append(out, t)
		}
	}
	return out
}

// prepare is what execute and executeLab start with: the binaries, the
// clients' workloads and the run's deadline. It records a problem and
// reports false if one of them is missing.
func (e *experiment) prepare() (binaries, [][]kv.Op, time.Time, bool) {
	workloads, err := e.cfg.ClientWorkloads()
	if err != nil {
		e.problem("%v", err)
		return binaries{}, nil, time.Time{}, false
	}
	return e.bins, workloads, e.start.Add(time.Duration(e.cfg.Timing.RunDeadlineS) * time.Second), true
}

// execute runs the processes. Whatever goes wrong becomes a problem.
func (e *experiment) execute(ctx context.Context) {
	bins, workloads, deadline, ok := e.prepare()
	if !ok {
		return
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	e.status.phase("starting olympus")
	_ = os.Remove(filepath.Join(e.dir, olympus.MultiaddrsFile)) // never read a stale one
	oly, err := startProc("olympus", bins.olympus,
		[]string{"--config", e.info.Config, "--out", e.dir, "--replica-bin", bins.replica, "--log-level", e.opts.logLevel, "--seed", strconv.FormatInt(e.cfg.Seed, 10)},
		filepath.Join(e.dir, logsDir, "olympus.log"))
	if err != nil {
		e.problem("%v", err)
		return
	}
	defer func() {
		e.status.phase("stopping olympus and the replicas")
		if early := oly.exitedEarly(); early != "" {
			e.problem("olympus exited during the run (%s): %s", early, olympus.LastLogLine(oly.logPath))
		}
		oly.stop(stopGrace)
		e.collectReplicaFiles()
	}()

	addr, err := e.waitOlympus(dctx, oly, e.dir)
	if err != nil {
		e.problem("%v", err)
		return
	}
	e.status.note("olympus listening on " + addr)
	e.runClients(ctx, dctx, bins.client, addr, workloads, startProc)
}

// runClients starts one client per workload against Olympus at addr, through
// start (startProc, or a wrapper that runs it elsewhere), waits until they
// have all ended or dctx (the run's deadline) is done, and stops them. ctx is
// the run's context without the deadline (it tells an interruption).
func (e *experiment) runClients(ctx, dctx context.Context, clientBin, addr string, workloads [][]kv.Op,
	start func(name, bin string, args []string, logPath string) (*proc, error)) {
	deadline, _ := dctx.Deadline()
	settings := clientSettings(e.cfg)
	clients := make([]*proc, 0, len(workloads))
	e.status.phase("running clients")
	clientStart := time.Now()
	for i, ops := range workloads {
		wl := filepath.Join(e.dir, clientsDir, fmt.Sprintf("client-%d.workload", i))
		if err := os.WriteFile(wl, []byte(workloadText(ops)), 0o644); err != nil {
			e.problem("client %d: %v", i, err)
			break
		}
		wait := max(time.Until(deadline), time.Second)
		p, err := start(fmt.Sprintf("client-%d", i), clientBin, []string{
			"--olympus", addr,
			"--workload-file", wl,
			"--results", resultsPath(e.dir, i),
			"--concurrency", strconv.Itoa(settings[i].Concurrency),
			"--timeout-ms", strconv.Itoa(settings[i].TimeoutMs),
			"--olympus-timeout", wait.Round(time.Millisecond).String(),
			"--log-level", e.opts.logLevel,
			"--no-progress",
			e.clientKeyFlag(i),
		}, filepath.Join(e.dir, logsDir, fmt.Sprintf("client-%d.log", i)))
		if err != nil {
			e.problem("client %d: %v", i, err)
			break
		}
		e.info.Clients[i].Requests = len(ops)
		clients = append(clients, p)
	}
	e.status.watch(e.dir, e.info.Clients, clients)

	e.waitClients(dctx, clients)
	switch {
	case ctx.Err() != nil:
		e.problem("interrupted before every client finished")
	case dctx.Err() != nil:
		e.problem("the run deadline (timing.run_deadline_s = %d) passed before every client finished", e.cfg.Timing.RunDeadlineS)
	}
	var wg sync.WaitGroup
	for _, p := range clients {
		wg.Go(func() { p.stop(stopGrace) })
	}
	wg.Wait()
	e.info.ClientPhaseS = round3(time.Since(clientStart).Seconds())
	for i, p := range clients {
		if p.err != nil {
			e.problem("client %d ended with %v: %s", i, p.err, olympus.LastLogLine(p.logPath))
		}
	}
	e.status.unwatch()
}

// workloadText is ops as a workload SPEC, one operation per line.
func workloadText(ops []kv.Op) string {
	var b strings.Builder
	for _, op := range ops {
		b.WriteString(op.String())
		b.WriteString(";\n")
	}
	return b.String()
}

// waitOlympus waits, with a deadline, for Olympus to write its multiaddrs
// file into dir, and returns the address to give the clients.
func (e *experiment) waitOlympus(ctx context.Context, oly *proc, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, e.opts.startTimeout)
	defer cancel()
	tick := time.NewTicker(multiaddrsPoll)
	defer tick.Stop()
	for {
		if addrs, err := olympus.ReadMultiaddrs(dir); err == nil && len(addrs) > 0 {
			return olympus.PreferredAddr(addrs), nil
		}
		select {
		case <-oly.done:
			return "", fmt.Errorf("olympus exited before listening (%v): %s", oly.err, olympus.LastLogLine(oly.logPath))
		case <-ctx.Done():
			return "", fmt.Errorf("olympus did not write %s within %v (log: %s)",
				filepath.Join(dir, olympus.MultiaddrsFile), e.opts.startTimeout, oly.logPath)
		case <-tick.C:
		}
	}
}

// waitClients waits until every client has ended or ctx is done.
func (e *experiment) waitClients(ctx context.Context, clients []*proc) {
	for _, p := range clients {
		select {
		case <-p.done:
		case <-ctx.Done():
			return
		}
	}
}

// replicaStats is the part of a replica's stats.json the report uses.
type replicaStats struct {
	Round      uint64 `json:"round"`
	RoundsByQC uint64 `json:"rounds_by_qc"`
	RoundsByTC uint64 `json:"rounds_by_tc"`
	Height     uint64 `json:"height"`
}

// collectReplicaFiles copies each replica's ledger from its home into
// ledgers/ and counts the rounds (committeeRounds). It runs after Olympus
// has stopped the replicas.
func (e *experiment) collectReplicaFiles() {
	defer e.collectFaults() // faults.go
	var homes []string
	for id := range e.info.Replicas {
		homes = append(homes, replicaHome(e.dir, id))
	}
	for id, home := range homes {
		src := filepath.Join(home, node.LedgerFile(types.ReplicaID(id)))
		if err := copyFile(src, ledgerPath(e.dir, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			e.problem("replica %d's ledger: %v", id, err)
		}
	}
	e.info.Rounds = committeeRounds(homes, e.status.note)
}

// committeeRounds counts the committee's rounds for report.json: highest is
// the highest round a replica reached; by_tc the rounds some replica entered
// by a TC (the round before ended by timeout there), from the replicas'
// timelines; by_qc the others, round 1 included (entered by the genesis QC),
// so that by_qc + by_tc = highest as in spec §4's example. A round counts
// once however many replicas entered it, and a replica that jumped rounds
// or restarted does not lower the counts. Without a timeline a replica
// counts through its stats.json: its round, and its counts as it kept them
// (a restart resets them), if more rounds by TC than the timelines show.
func committeeRounds(homes []string, note func(string)) Rounds {
	var r Rounds
	byTC := map[uint64]bool{}
	var statsTC uint64
	for id, home := range homes {
		var st replicaStats
		if err := readJSON(filepath.Join(home, "stats.json"), &st); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				note(fmt.Sprintf("replica %d: %v", id, err))
			}
		} else {
			r.Highest = max(r.Highest, st.Round)
		}
		evs, _, err := readTimeline(filepath.Join(home, node.TimelineFile))
		if err != nil {
			statsTC = max(statsTC, st.RoundsByTC)
			continue
		}
		for _, ev := range evs {
			if ev.Kind == "round" {
				r.Highest = max(r.Highest, ev.Round)
				if ev.ByTC {
					byTC[ev.Round] = true
				}
			}
		}
	}
	r.ByTC = min(max(uint64(len(byTC)), statsTC), r.Highest)
	r.ByQC = r.Highest - r.ByTC
	return r
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// proc is a child process with its output in a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has been waited for
	err     error         // its exit error, valid after done
	stopped atomic.Bool   // we asked it to stop
}

// startProc starts bin in its own process group (so that a Ctrl-C on the
// terminal reaches the launcher alone, which then stops everything in order),
// with stdout and stderr appended to logPath after a header line with the
// command.
func startProc(name, bin string, args []string, logPath string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = childAttr()
	return startCmd(name, cmd, logPath)
}

// startCmd is startProc for a command prepared by the caller (diembft lab's
// run in a network namespace); it must put the process in its own group.
func startCmd(name string, cmd *exec.Cmd, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s log: %v", name, err)
	}
	fmt.Fprintf(logf, "# %s\n", strings.Join(cmd.Args, " "))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// exitedEarly describes how the process ended if it ended before stop, or "".
func (p *proc) exitedEarly() string {
	select {
	case <-p.done:
		if !p.stopped.Load() {
			if p.err == nil {
				return "exit status 0"
			}
			return p.err.Error()
		}
	default:
	}
	return ""
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs the process group.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.stopped.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return
	case <-t.C:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// status shows what the run is doing: on a terminal a one-line display
// redrawn a few times a second (phase, elapsed time, committed requests,
// clients done), elsewhere one line per phase.
type status struct {
	w     io.Writer
	tty   bool
	start time.Time

	mu      sync.Mutex
	phaseS  string
	lineOut bool // a progress line is on the screen
	watched *watchState
	quit    chan struct{}
	wg      sync.WaitGroup
}

type watchState struct {
	dir     string
	total   int
	clients []*proc
	counts  []lineCounter
}

func newStatus(w io.Writer, tty bool) *status {
	s := &status{w: w, tty: tty, start: time.Now(), quit: make(chan struct{})}
	if tty {
		s.wg.Go(s.loop)
	}
	return s
}

func (s *status) loop() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			s.mu.Lock()
			s.draw()
			s.mu.Unlock()
		}
	}
}

// draw redraws the progress line; s.mu is held.
func (s *status) draw() {
	line := fmt.Sprintf("[%s] %s", (time.Since(s.start) / time.Second * time.Second).String(), s.phaseS)
	if w := s.watched; w != nil {
		committed, done := 0, 0
		for i := range w.counts {
			committed += w.counts[i].count(resultsPath(w.dir, i))
		}
		for _, p := range w.clients {
			select {
			case <-p.done:
				done++
			default:
			}
		}
		line += fmt.Sprintf(": %d/%d committed, %d/%d clients done", committed, w.total, done, len(w.clients))
	}
	fmt.Fprintf(s.w, "\r\033[K%s", line)
	s.lineOut = true
}

func (s *status) phase(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.phaseS = p
	if s.tty {
		s.draw()
	} else {
		fmt.Fprintf(s.w, "diembft: %s\n", p)
	}
}

// note prints a line above the progress display.
func (s *status) note(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lineOut {
		fmt.Fprint(s.w, "\r\033[K")
		s.lineOut = false
	}
	fmt.Fprintf(s.w, "diembft: %s\n", msg)
	if s.tty {
		s.draw()
	}
}

func (s *status) watch(dir string, infos []ClientInfo, clients []*proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := &watchState{dir: dir, clients: clients, counts: make([]lineCounter, len(clients))}
	for _, c := range infos {
		w.total += c.Requests
	}
	s.watched = w
}

func (s *status) unwatch() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watched = nil
}

// stop ends the display and clears its line.
func (s *status) stop() {
	select {
	case <-s.quit:
		return
	default:
	}
	close(s.quit)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lineOut {
		fmt.Fprint(s.w, "\r\033[K")
		s.lineOut = false
	}
}

// lineCounter counts the lines of a growing file, reading only what was
// appended since the last call.
type lineCounter struct {
	off   int64
	lines int
}

func (c *lineCounter) count(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return c.lines
	}
	defer f.Close()
	if _, err := f.Seek(c.off, io.SeekStart); err != nil {
		return c.lines
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		for _, b := range buf[:n] {
			if b == '\n' {
				c.lines++
			}
		}
		c.off += int64(n)
		if err != nil {
			return c.lines
		}
	}
}
