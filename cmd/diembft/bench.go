package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/diembft/diembft/node"
	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/node/kv"
	"github.com/diembft/diembft/node/workload"
	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/olympus/config"
	"github.com/diembft/diembft/p2p"
	"github.com/diembft/diembft/protocol/types"
)

// diembft bench (spec/config.md §5) measures a fault-free committee of real
// replica processes on 127.0.0.1.
//
// Olympus (the same olympus.RunLocal that bin/olympus runs in local mode)
// and the load generators run inside this process; the replicas are child
// processes, exactly as in `diembft run`. The load generators are node/client
// clients, each on its own libp2p host, so they speak the client protocol to
// every replica like bin/client does, and accept a result at f+1 matching
// signed replies. Running them in-process rather than as bin/client processes
// lets the bench timestamp every acceptance without a results file on the
// hot path, exclude the warm-up exactly, and kill a replica mid-run through
// Olympus's process handles; their CPU is reported separately from the
// replicas'.

const (
	benchFile       = "bench.json"
	benchWorkload   = 10000  // distinct pseudorandom operations, cycled
	benchOpsBudget  = 150000 // operations per second of run generated per run (spread over clients; well above the 35-45k measured)
	benchClientTO   = 30 * time.Second
	statsFreshAfter = 3 * time.Second // wait at most this long for a replica's stats.json to appear
)

type benchOptions struct {
	replicas       int
	mode           string
	duration       time.Duration
	warmup         time.Duration
	out            string
	batch          int
	clients        int
	inflight       int
	clientBatch    int
	cpuprofile     bool
	roundTrace     bool
	trace          bool
	binDir         string
	deltaMs        int
	roundTimeoutMs int
	crashAfter     time.Duration
	crashReplica   int
	startTimeout   time.Duration
	logLevel       string
}

var benchOpts benchOptions

var benchCmd = &cobra.Command{
	Use:   "bench [--replicas N] [--mode latency|throughput|sweep] [--duration D] [--out DIR]",
	Short: "Benchmark a fault-free committee of real processes on 127.0.0.1",
	Long: `Benchmark a fault-free committee on this machine: N replicas as real
processes on 127.0.0.1 (children of this one), with Olympus and as many load
generating clients as the mode needs in this process, and write DIR/bench.json.

  latency     1 client with 4 requests in flight; latency is from submission
              to the client's acceptance (f+1 matching replies)
  throughput  enough clients and requests in flight to saturate the machine
  sweep       latency and throughput, batch sizes 1, 100 and 1000, N = 4 and 7

The first --warmup of every run is excluded from the figures. The figures are
printed as a table too. Per block: consensus messages put on the network
(gossip repairs included; with D = 0 nothing is relayed) and consensus
signatures verified, summed over the replicas; CPU per 1,000 operations is
the replicas' user+system time.`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		o := benchOpts
		o.logLevel = logLevel
		if err := o.check(cmd); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runBench(ctx, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
	},
}

func init() {
	f := benchCmd.Flags()
	f.IntVar(&benchOpts.replicas, "replicas", 4, "committee size N (f = (N-1)/3)")
	f.StringVar(&benchOpts.mode, "mode", "throughput", "latency, throughput or sweep")
	durationVar(f, &benchOpts.duration, "duration", 20*time.Second, "measured time of each run (after the warm-up)")
	durationVar(f, &benchOpts.warmup, "warmup", 3*time.Second, "load time excluded from the figures at the start of each run")
	f.StringVar(&benchOpts.out, "out", "", "output directory (default runs/bench-<mode>-<timestamp>)")
	f.IntVar(&benchOpts.batch, "batch", 0, "block.max_requests (default 100 for latency, 1000 for throughput)")
	f.IntVar(&benchOpts.clients, "clients", 0, "load-generating clients (default 1 for latency, 4 for throughput)")
	f.IntVar(&benchOpts.inflight, "inflight", 0, "operations in flight per client (default 4 for latency; for throughput 2*batch over all clients, at least 64 and at most 2000, times N/4 for N above 4)")
	f.IntVar(&benchOpts.clientBatch, "client-batch", 0, "operations per signed client request (default 1 for latency; for throughput in-flight/4, at most 125 and at most --batch)")
	f.BoolVar(&benchOpts.cpuprofile, "cpuprofile", false, "write a CPU profile of every replica and of the load generator to DIR/<run>/profiles/")
	f.BoolVar(&benchOpts.trace, "trace", false, "write a runtime execution trace of every replica to DIR/<run>/profiles/")
	f.BoolVar(&benchOpts.roundTrace, "round-trace", false, "trace every replica's proposal, vote and commit steps (microseconds) and break the measured rounds down into phases (bench.json round_trace, a table)")
	f.StringVar(&benchOpts.binDir, "bin-dir", "", "where bin/replica is (default: next to this binary)")
	f.IntVar(&benchOpts.deltaMs, "delta-ms", 100, "timing.delta_ms of the committee")
	f.IntVar(&benchOpts.roundTimeoutMs, "round-timeout-ms", 400, "timing.round_timeout_ms of the committee")
	durationVar(f, &benchOpts.crashAfter, "crash-after", 0, "throughput mode: kill -9 a replica this long after the warm-up and measure the recovery")
	f.IntVar(&benchOpts.crashReplica, "crash-replica", -1, "the replica --crash-after kills (default N-1; leaders rotate every round, so it is the leader within a few rounds)")
	durationVar(f, &benchOpts.startTimeout, "start-timeout", 60*time.Second, "how long the committee may take to be ready")
	rootCmd.AddCommand(benchCmd)
}

func (o *benchOptions) check(cmd *cobra.Command) error {
	switch o.mode {
	case "latency", "throughput", "sweep":
	default:
		return usageErrorf("--mode %q: want latency, throughput or sweep", o.mode)
	}
	if o.replicas < 4 {
		return usageErrorf("--replicas %d: need at least 4 (3f+1 with f >= 1)", o.replicas)
	}
	if o.duration < time.Second {
		return usageErrorf("--duration %v: at least 1s", o.duration)
	}
	if o.warmup < 0 || o.batch < 0 || o.clients < 0 || o.inflight < 0 || o.clientBatch < 0 {
		return usageErrorf("--warmup, --batch, --clients, --inflight and --client-batch must not be negative")
	}
	if o.clientBatch > types.MaxOpsPerRequest {
		return usageErrorf("--client-batch %d: at most %d", o.clientBatch, types.MaxOpsPerRequest)
	}
	if o.crashAfter > 0 && o.mode != "throughput" {
		return usageErrorf("--crash-after applies to --mode throughput only")
	}
	if o.crashAfter > 0 && o.crashAfter >= o.duration {
		return usageErrorf("--crash-after %v must be shorter than --duration %v", o.crashAfter, o.duration)
	}
	if o.crashAfter < 0 {
		return usageErrorf("--crash-after %v: must be positive", o.crashAfter)
	}
	if o.crashReplica >= o.replicas || o.crashReplica < -1 {
		return usageErrorf("--crash-replica %d: no such replica (0..%d)", o.crashReplica, o.replicas-1)
	}
	if o.deltaMs < 1 || o.roundTimeoutMs < 1 {
		return usageErrorf("--delta-ms %d and --round-timeout-ms %d: both must be at least 1", o.deltaMs, o.roundTimeoutMs)
	}
	if o.mode == "sweep" && (cmd.Flags().Changed("replicas") || cmd.Flags().Changed("batch")) {
		return usageErrorf("--mode sweep runs N = 4 and 7 and batch sizes 1, 100 and 1000; --replicas and --batch do not apply")
	}
	return nil
}

// benchRun is one measured configuration.
type benchRun struct {
	Mode     string `json:"mode"`
	Replicas int    `json:"replicas"`
	Batch    int    `json:"batch"`
	Clients  int    `json:"clients"`
	Inflight int    `json:"inflight"` // per client
	// ClientBatch is the most operations a client signs as one request.
	ClientBatch int `json:"client_batch"`
}

func (r benchRun) name() string {
	return fmt.Sprintf("%s-n%d-b%d", r.Mode, r.Replicas, r.Batch)
}

// plan lists the runs of opts' mode.
func (o *benchOptions) plan() []benchRun {
	mk := func(mode string, n, batch int) benchRun {
		r := benchRun{Mode: mode, Replicas: n, Batch: batch, Clients: o.clients, Inflight: o.inflight, ClientBatch: o.clientBatch}
		if mode == "latency" {
			if r.Batch == 0 {
				r.Batch = 100
			}
			if r.Clients == 0 {
				r.Clients = 1
			}
			if r.Inflight == 0 {
				r.Inflight = 4
			}
			if r.ClientBatch == 0 {
				r.ClientBatch = 1 // every operation signed on its own: the latency of one request
			}
			return r
		}
		if r.Batch == 0 {
			r.Batch = 1000
		}
		if r.Clients == 0 {
			r.Clients = 4
		}
		if r.Inflight == 0 {
			// Enough to fill blocks in the pipeline, capped where more
			// operations in flight only queue: on the 2-core machine of
			// docs/performance.md, at N = 4 2,000 in flight (4 clients x 500
			// in requests of 125) give 47-57k ops/s at p50 32-41 ms; 1,000
			// give about half of that, 4,000 only more latency. A larger
			// committee's rounds are longer (every replica handles every
			// message), so by Little's law it needs proportionally more in
			// flight to fill the same blocks: N/4 times as many (N = 7 with
			// 2,000 left 15 % of the CPU idle, blocks 40 % full).
			total := min(max(2*r.Batch, 64), 2000) * max(r.Replicas, 4) / 4
			r.Inflight = max(total/r.Clients, 1)
		}
		if r.ClientBatch == 0 {
			// Four requests per client in flight keep the pipeline full
			// while one waits for its replies; a request is no larger than
			// a block.
			r.ClientBatch = min(max(r.Inflight/4, 1), 125, r.Batch)
		}
		return r
	}
	if o.mode != "sweep" {
		return []benchRun{mk(o.mode, o.replicas, o.batch)}
	}
	var runs []benchRun
	for _, n := range []int{4, 7} {
		runs = append(runs, mk("latency", n, 0))
		for _, b := range []int{1, 100, 1000} {
			runs = append(runs, mk("throughput", n, b))
		}
	}
	return runs
}

// benchResult is bench.json for one run: the fields of spec/config.md §5
// first, then what else the bench knows.
type benchResult struct {
	// interrupted: the measured window was cut short by a signal; such
	// figures are not reported (runBench).
	interrupted   bool
	Mode          string        `json:"mode"`
	Replicas      int           `json:"replicas"`
	DurationS     float64       `json:"duration_s"`
	OpsPerS       float64       `json:"ops_per_s"`
	BlocksPerS    float64       `json:"blocks_per_s"`
	MeanBlockSize float64       `json:"mean_block_size"`
	LatencyMs     benchLatency  `json:"latency_ms"`
	PerBlock      benchPerBlock `json:"per_block"`
	CPUPer1kOps   float64       `json:"cpu_seconds_per_1k_ops"`
	// FsyncMeanMs is the mean time of a sync of the safety file, the ledger
	// and the block store ("safety", "ledger", "blocks") over the replicas:
	// against an idle disk's fdatasync it shows how long the syncs queued
	// behind each other on the one disk the replicas share.
	FsyncMeanMs map[string]float64 `json:"fsync_mean_ms"`
	Batch       int                `json:"batch"`
	Clients     int                `json:"clients"`
	Inflight    int                `json:"inflight_per_client"`
	ClientBatch int                `json:"client_batch"`
	WarmupS     float64            `json:"warmup_s"`
	Committed   int                `json:"committed_ops"`
	Blocks      float64            `json:"blocks"`
	PerOp       benchPerOp         `json:"per_op"`
	ClientCPU   float64            `json:"client_cpu_seconds_per_1k_ops"`
	Retransmits uint64             `json:"client_retransmissions"`
	RoundsByTC  float64            `json:"rounds_by_tc"`
	LoadAvg     [2]float64         `json:"load_avg"` // 1-minute load average at start and end
	Crash       *benchCrash        `json:"crash,omitempty"`
	Profiles    []string           `json:"profiles,omitempty"`
	RoundTrace  []node.Phase       `json:"round_trace,omitempty"`
	Problems    []string           `json:"problems"`
	Dir         string             `json:"dir"`
	Replica     []benchReplicaIO   `json:"per_replica"`
}

type benchLatency struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

type benchPerBlock struct {
	Transmissions          float64 `json:"transmissions"`
	SignatureVerifications float64 `json:"signature_verifications"`
	GossipControlRPCs      float64 `json:"gossip_control_rpcs"`
	// Fsyncs sums the replicas' syncs of safety data, ledger and block
	// store: one shared disk serves them all on one machine.
	Fsyncs float64 `json:"fsyncs"`
}

type benchPerOp struct {
	// Client request signatures checked by the replicas, summed over them.
	RequestSignatureVerifications float64 `json:"request_signature_verifications"`
	// Reply signatures checked by the clients.
	ReplySignatureVerifications float64 `json:"reply_signature_verifications"`
}

type benchReplicaIO struct {
	ID         int     `json:"id"`
	CPUSeconds float64 `json:"cpu_s"`
	Blocks     float64 `json:"blocks"`
}

type benchCrash struct {
	Replica       int     `json:"replica"`
	AtS           float64 `json:"at_s"` // after the warm-up
	FirstCommitMs float64 `json:"first_commit_after_stall_ms"`
	MaxGapMs      float64 `json:"max_commit_gap_ms"`
	OpsPerSBefore float64 `json:"ops_per_s_before"`
	OpsPerSAfter  float64 `json:"ops_per_s_10s_after"`
	// AfterS is the time OpsPerSAfter was measured over: 10 s, or what the
	// window had left after the kill.
	AfterS         float64 `json:"after_s"`
	RecoveredRatio float64 `json:"after_over_before"`
}

// benchSummary is bench.json of a sweep.
type benchSummary struct {
	Mode string         `json:"mode"`
	Runs []*benchResult `json:"runs"`
}

func runBench(ctx context.Context, o benchOptions, stdout, stderr io.Writer) error {
	bins, err := findBinaries(o.binDir)
	if err != nil {
		return err
	}
	dir := o.out
	if dir == "" {
		if dir, err = olympus.NewRunDir("bench-" + o.mode); err != nil {
			return err
		}
	}
	if dir, err = checkOutDir(dir, stdout, stderr); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return usageErrorf("--out: %v", err)
	}
	var results []*benchResult
	plan := o.plan()
	for _, run := range plan {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(stderr, "diembft: bench %s: %d replicas, %d client(s) x %d in flight, batch %d, %v warm-up + %v\n",
			run.name(), run.Replicas, run.Clients, run.Inflight, run.Batch, o.warmup, o.duration)
		res, err := benchOne(ctx, o, run, bins.replica, filepath.Join(dir, run.name()), stderr)
		if err != nil {
			return err
		}
		if res.interrupted {
			// A cut window's figures (a row of zeros if the signal came in
			// the warm-up) would read as a measurement.
			fmt.Fprintf(stderr, "diembft: bench %s: interrupted, its figures are left out\n", run.name())
			break
		}
		for _, p := range res.Problems {
			fmt.Fprintf(stderr, "diembft: bench %s: problem: %s\n", run.name(), p)
		}
		results = append(results, res)
	}
	if len(results) == 0 {
		return errors.New("bench interrupted before the first run finished")
	}
	var doc any = results[0]
	if o.mode == "sweep" {
		doc = &benchSummary{Mode: "sweep", Runs: results}
	}
	if err := writeJSON(filepath.Join(dir, benchFile), doc); err != nil {
		return err
	}
	printBenchTable(stdout, results)
	fmt.Fprintf(stdout, "bench: %s\n", filepath.Join(dir, benchFile))
	if len(results) < len(plan) {
		fmt.Fprintf(stderr, "diembft: bench interrupted: %d of %d runs measured\n", len(results), len(plan))
		return exitError{exitFail}
	}
	for _, r := range results {
		if len(r.Problems) > 0 {
			return exitError{exitFail}
		}
	}
	return nil
}

// sample is one accepted request: acceptance time (ns since the run's start)
// and latency.
type sample struct{ at, lat int64 }

// replicaSnap is a replica's counters at one instant.
type replicaSnap struct {
	stats node.Stats
	cpu   float64 // seconds, user+system
	ok    bool
}

func benchConfig(run benchRun, o benchOptions) string {
	return fmt.Sprintf(`name = %q
seed = 42

[committee]
f = %d
replicas = %d
chain_id = "bench"

[timing]
delta_ms = %d
round_timeout_ms = %d
run_deadline_s = 3600

[block]
max_requests = %d
`, run.name(), (run.Replicas-1)/3, run.Replicas, o.deltaMs, o.roundTimeoutMs, run.Batch)
}

// benchOne runs one configuration in dir and measures it. An error means the
// committee could not be started; later trouble is a problem in the result.
func benchOne(ctx context.Context, o benchOptions, run benchRun, replicaBin, dir string, stderr io.Writer) (*benchResult, error) {
	res := &benchResult{
		Mode: run.Mode, Replicas: run.Replicas, DurationS: o.duration.Seconds(), Batch: run.Batch,
		Clients: run.Clients, Inflight: run.Inflight, ClientBatch: run.ClientBatch, WarmupS: o.warmup.Seconds(), Problems: []string{}, Dir: dir,
	}
	res.LoadAvg[0] = loadAvg()
	if o.cpuprofile || o.trace {
		if err := os.MkdirAll(filepath.Join(dir, "profiles"), 0o755); err != nil {
			return nil, err
		}
	}
	cfgPath := filepath.Join(dir, "bench.toml")
	if err := os.WriteFile(cfgPath, []byte(benchConfig(run, o)), 0o644); err != nil {
		return nil, err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("bench config: %w", err)
	}
	var replicaArgs []string
	if o.cpuprofile {
		replicaArgs = append(replicaArgs, "--cpuprofile", "cpu.pprof")
	}
	if o.trace {
		replicaArgs = append(replicaArgs, "--trace", "trace.out")
	}
	if o.roundTrace {
		replicaArgs = append(replicaArgs, "--round-trace", roundTraceFile)
	}
	var mu sync.Mutex
	var crashed []string
	killed := -1
	lctx, stopLocal := context.WithCancel(context.Background()) // stopped explicitly, after the clients
	defer stopLocal()
	local, err := olympus.RunLocal(lctx, cfg, dir, replicaBin, olympus.LocalOptions{
		LogLevel:    o.logLevel,
		ReplicaArgs: replicaArgs,
		OnExit: func(id types.ReplicaID, err error, requested bool) {
			if !requested {
				mu.Lock()
				crashed = append(crashed, fmt.Sprintf("replica %d exited during the run (%v)", id, err))
				mu.Unlock()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	defer local.Close()
	rctx, cancel := context.WithTimeout(ctx, o.startTimeout)
	roster, err := local.WaitReady(rctx)
	cancel()
	if err != nil {
		return nil, err
	}
	croster, err := client.FromOlympus(roster)
	if err != nil {
		return nil, err
	}

	// The load generators.
	total := o.warmup + o.duration
	budget := int(math.Ceil(total.Seconds()*benchOpsBudget)) / run.Clients
	if run.Mode == "latency" {
		budget = int(math.Ceil(total.Seconds()*5000)) / run.Clients
	}
	base := workload.Pseudorandom(233, benchWorkload)
	type loadgen struct {
		node    *p2p.Node
		cl      *client.Client
		samples []sample
		sum     client.Summary
	}
	gens := make([]*loadgen, run.Clients)
	var start time.Time
	for i := range gens {
		n, err := p2p.New(ctx, p2p.Config{NoListen: true})
		if err != nil {
			return nil, err
		}
		defer n.Close()
		g := &loadgen{node: n}
		cl, err := client.NewP2P(n, croster, client.Config{
			Concurrency: run.Inflight,
			Batch:       run.ClientBatch,
			Timeout:     benchClientTO,
			OnAccept: func(r client.Result) {
				g.samples = append(g.samples, sample{at: int64(r.Submitted.Add(r.Latency).Sub(start)), lat: int64(r.Latency)})
			},
		})
		if err != nil {
			return nil, err
		}
		g.cl = cl
		gens[i] = g
	}
	cpuProfileStop := func() {}
	if o.cpuprofile {
		if stop, err := startBenchProfile(filepath.Join(dir, "profiles", "loadgen.cpu.pprof")); err == nil {
			cpuProfileStop = stop
		} else {
			res.Problems = append(res.Problems, fmt.Sprintf("load generator profile: %v", err))
		}
	}

	start = time.Now()
	runCtx, stopRun := context.WithDeadline(ctx, start.Add(total))
	defer stopRun()
	var wg sync.WaitGroup
	for i, g := range gens {
		ops := client.Repeat(rotate(base, i*997), budget)
		wg.Go(func() { g.sum, _ = g.cl.Run(runCtx, ops) })
	}

	// Counters at the start and the end of the measured window.
	pids := func() []int {
		out := make([]int, local.N())
		for i := range out {
			out[i] = local.PID(types.ReplicaID(i))
		}
		return out
	}
	sleepUntil(runCtx, start.Add(o.warmup))
	ws := time.Now()
	cpu0, self0 := procCPU(pids()), selfCPU()
	replyChecks0, _ := croster.Committee.VerifyCounts()
	snap0 := benchStats(local)

	var crashAt time.Time
	var cpuAtKill float64
	if o.crashAfter > 0 {
		sleepUntil(runCtx, ws.Add(o.crashAfter))
		victim := o.crashReplica
		if victim < 0 {
			victim = run.Replicas - 1
		}
		cpuAtKill = procCPU(pids())[victim] // its CPU from the window's start to the kill counts
		crashAt = time.Now()
		if err := local.Kill(types.ReplicaID(victim)); err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("crash: %v", err))
		} else {
			killed = victim
			fmt.Fprintf(stderr, "diembft: bench %s: killed replica %d (kill -9) at %.1fs\n", run.name(), victim, crashAt.Sub(ws).Seconds())
		}
	}
	sleepUntil(runCtx, ws.Add(o.duration))
	we := time.Now()
	cpu1, self1 := procCPU(pids()), selfCPU()
	replyChecks1, _ := croster.Committee.VerifyCounts()
	res.interrupted = ctx.Err() != nil
	snap1 := benchStats(local) // before the load stops: see benchStats
	stopRun()
	wg.Wait()
	cpuProfileStop()
	res.LoadAvg[1] = loadAvg()

	// Client figures.
	var lats []int64
	var all []sample
	from, to := int64(ws.Sub(start)), int64(we.Sub(start))
	for _, g := range gens {
		res.Retransmits += g.sum.Stats.Retransmissions
		for _, s := range g.samples {
			if s.at >= from && s.at < to {
				lats = append(lats, s.lat)
			}
		}
		all = append(all, g.samples...)
		if g.sum.Total > 0 && g.sum.Submitted == g.sum.Total {
			res.Problems = append(res.Problems, "a load generator ran out of operations: raise benchOpsBudget")
		}
	}
	window := we.Sub(ws).Seconds()
	res.DurationS = round3(window)
	res.Committed = len(lats)
	res.OpsPerS = round3(float64(len(lats)) / window)
	if len(lats) > 0 {
		ms := func(ns int64) float64 { return round3(float64(ns) / 1e6) }
		res.LatencyMs = benchLatency{
			P50: ms(client.Percentile(lats, 50)), P99: ms(client.Percentile(lats, 99)), Max: ms(slices.Max(lats)),
		}
	} else {
		res.Problems = append(res.Problems, "no request committed in the measured window")
	}
	res.ClientCPU = per1k(self1-self0, len(lats))
	if len(lats) > 0 {
		res.PerOp.ReplySignatureVerifications = round3(float64(replyChecks1-replyChecks0) / float64(len(lats)))
	}

	// Replica figures: sums over the replicas of their deltas, with the
	// committee's blocks (and ledger growth, and block rate) taken as the
	// median over the replicas that ran throughout: a replica that falls
	// behind and catches up by fetching must not drag the figure down.
	var tx, sigs, reqSigs, ctrl, byTC, cpu float64
	fileSyncs := map[string]node.FsyncStat{} // the replicas' syncs by file
	var blockDeltas, heightDeltas, rates []float64
	for i := range snap0 {
		a, b := snap0[i], snap1[i]
		rc := cpu1[i] - cpu0[i]
		if i == killed {
			rc = cpuAtKill - cpu0[i] // not available after the kill
		}
		res.Replica = append(res.Replica, benchReplicaIO{ID: i, CPUSeconds: round3(max(rc, 0)), Blocks: b.stats.Commits - a.stats.Commits})
		cpu += max(rc, 0)
		if !a.ok || !b.ok {
			if i != killed {
				res.Problems = append(res.Problems, fmt.Sprintf("replica %d: no stats.json", i))
			}
			continue
		}
		tx += float64(b.stats.Transmissions - a.stats.Transmissions)
		ctrl += float64(b.stats.GossipControl - a.stats.GossipControl)
		for file, fb := range b.stats.FsyncFiles {
			fa := a.stats.FsyncFiles[file]
			sum := fileSyncs[file]
			fileSyncs[file] = node.FsyncStat{Count: sum.Count + fb.Count - fa.Count, Seconds: sum.Seconds + fb.Seconds - fa.Seconds}
		}
		sigs += float64(b.stats.SigVerifications - a.stats.SigVerifications)
		reqSigs += float64(b.stats.RequestSigVerifications - a.stats.RequestSigVerifications)
		byTC += b.stats.RoundsByTC - a.stats.RoundsByTC
		if i == killed {
			continue
		}
		blockDeltas = append(blockDeltas, b.stats.Commits-a.stats.Commits)
		heightDeltas = append(heightDeltas, b.stats.Height-a.stats.Height)
		if dt := float64(b.stats.UnixMs-a.stats.UnixMs) / 1000; dt > 0 {
			rates = append(rates, (b.stats.Commits-a.stats.Commits)/dt)
		}
	}
	var syncs float64
	for _, f := range fileSyncs {
		syncs += float64(f.Count)
	}
	if len(blockDeltas) > 0 {
		blocks, height := median(blockDeltas), median(heightDeltas)
		res.Blocks = round3(blocks)
		res.BlocksPerS = round3(median(rates))
		res.RoundsByTC = byTC
		if blocks > 0 {
			res.MeanBlockSize = round3(height / blocks)
			res.PerBlock = benchPerBlock{
				Transmissions:          round3(tx / blocks),
				SignatureVerifications: round3(sigs / blocks),
				GossipControlRPCs:      round3(ctrl / blocks),
				Fsyncs:                 round3(syncs / blocks),
			}
		}
		if height > 0 {
			res.PerOp.RequestSignatureVerifications = round3(reqSigs / height)
		}
	}
	res.CPUPer1kOps = per1k(cpu, len(lats))
	res.FsyncMeanMs = map[string]float64{}
	for file, f := range fileSyncs {
		if f.Count > 0 {
			res.FsyncMeanMs[file] = round3(f.Seconds / float64(f.Count) * 1000)
		}
	}
	if !crashAt.IsZero() && killed >= 0 {
		res.Crash = crashFigures(all, start, ws, crashAt, we, killed)
	}

	// Stop everything, then collect the profiles the replicas wrote on exit.
	for _, g := range gens {
		g.node.Close()
	}
	local.Close()
	mu.Lock()
	for _, c := range crashed {
		if !strings.HasPrefix(c, fmt.Sprintf("replica %d ", killed)) {
			res.Problems = append(res.Problems, c)
		}
	}
	mu.Unlock()
	if o.roundTrace {
		res.RoundTrace, err = roundTracePhases(local, run.Replicas, ws, we)
		if err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("round trace: %v", err))
		}
	}
	if o.cpuprofile || o.trace {
		res.Profiles = collectProfiles(local, dir)
		if o.cpuprofile {
			res.Profiles = append(res.Profiles, filepath.Join(dir, "profiles", "loadgen.cpu.pprof"))
		}
	}
	if err := writeJSON(filepath.Join(dir, benchFile), res); err != nil {
		return nil, err
	}
	return res, nil
}

// median of xs (0 when empty); xs is reordered.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	m := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[m]
	}
	return (xs[m-1] + xs[m]) / 2
}

// rotate returns ops starting at offset k, so that clients do not all start
// on the same keys.
func rotate(ops []kv.Op, k int) []kv.Op {
	k %= len(ops)
	return append(slices.Clone(ops[k:]), ops[:k]...)
}

func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// benchStats reads every replica's stats.json as it is now, at most a second
// old (the replicas rewrite it every second from a goroutine of their own),
// waiting a bounded time only for one that is missing or being replaced. The
// window's two readings take the files as they are at its start and end, so
// that both fall while the load runs and blocks/s divides by the time between
// them. Until 2026-12-06 the end reading waited for a file written after the
// window, when the load had stopped: up to a second of idle time went into
// the window, and blocks/s came out 15-20 % low in 5 s runs against the same
// runs' ops/s and block size.
func benchStats(local *olympus.Local) []replicaSnap {
	out := make([]replicaSnap, local.N())
	deadline := time.Now().Add(statsFreshAfter)
	for i := range out {
		path := filepath.Join(local.Home(types.ReplicaID(i)), "stats.json")
		for {
			var st node.Stats
			if err := readJSON(path, &st); err == nil {
				out[i] = replicaSnap{stats: st, ok: true}
				break
			}
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return out
}

// crashFigures measures the recovery from a crash at crashAt from the
// acceptance times of all requests.
func crashFigures(all []sample, start, ws, crashAt, we time.Time, victim int) *benchCrash {
	at := make([]int64, len(all))
	for i, s := range all {
		at[i] = s.at
	}
	slices.Sort(at)
	c := int64(crashAt.Sub(start))
	end := int64(we.Sub(start))
	out := &benchCrash{Replica: victim, AtS: round3(crashAt.Sub(ws).Seconds())}
	// The longest pause between acceptances in the 5 s after the crash, and
	// when the first acceptance after that pause came (from the crash).
	prev := c
	var gap, first int64
	for _, t := range at {
		if t < c {
			continue
		}
		if t > c+int64(5*time.Second) {
			break
		}
		if t-prev > gap {
			gap, first = t-prev, t-c
		}
		prev = t
	}
	out.MaxGapMs = round3(float64(gap) / 1e6)
	out.FirstCommitMs = round3(float64(first) / 1e6)
	count := func(from, to int64) float64 {
		lo, _ := slices.BinarySearch(at, from)
		hi, _ := slices.BinarySearch(at, to)
		return float64(hi - lo)
	}
	before := min(c-int64(ws.Sub(start)), int64(10*time.Second))
	if before > 0 {
		out.OpsPerSBefore = round3(count(c-before, c) / (float64(before) / 1e9))
	}
	after := min(end-c, int64(10*time.Second))
	if after > 0 {
		out.OpsPerSAfter = round3(count(c, c+after) / (float64(after) / 1e9))
		out.AfterS = round3(float64(after) / 1e9)
	}
	if out.OpsPerSBefore > 0 {
		out.RecoveredRatio = round3(out.OpsPerSAfter / out.OpsPerSBefore)
	}
	return out
}

// procCPU returns the user+system CPU seconds of each process (0 for a pid
// of 0 or one that cannot be read).
func procCPU(pids []int) []float64 {
	out := make([]float64, len(pids))
	for i, pid := range pids {
		if pid > 0 {
			out[i] = pidCPU(pid)
		}
	}
	return out
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

func pidCPU(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may contain spaces; fields after it are
	// counted from the closing parenthesis. utime and stime are fields 14, 15.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func loadAvg() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func per1k(cpu float64, ops int) float64 {
	if ops == 0 {
		return 0
	}
	return round3(cpu / float64(ops) * 1000)
}

// roundTraceFile is the replicas' round trace (--round-trace), in their homes.
const roundTraceFile = "rounds.trace"

// roundTracePhases reads the replicas' round traces (written out when they
// stopped) and breaks the rounds proposed in the measured window down into
// phases.
func roundTracePhases(local *olympus.Local, n int, ws, we time.Time) ([]node.Phase, error) {
	traces := make([][]node.TraceEvent, local.N())
	for i := range traces {
		var err error
		if traces[i], err = node.ReadRoundTrace(filepath.Join(local.Home(types.ReplicaID(i)), roundTraceFile)); err != nil {
			return nil, err
		}
	}
	return node.RoundPhases(traces, (n-1)/3, ws.UnixMicro(), we.UnixMicro()), nil
}

// collectProfiles copies the profiles the replicas wrote into their homes
// into dir/profiles and returns their paths.
func collectProfiles(local *olympus.Local, dir string) []string {
	var out []string
	for i := range local.N() {
		home := local.Home(types.ReplicaID(i))
		for _, name := range []string{"cpu.pprof", "trace.out"} {
			src := filepath.Join(home, name)
			if _, err := os.Stat(src); err != nil {
				continue
			}
			dst := filepath.Join(dir, "profiles", fmt.Sprintf("replica-%d.%s", i, name))
			if copyFile(src, dst) == nil {
				out = append(out, dst)
			}
		}
	}
	return out
}

// startBenchProfile profiles this process (the load generators) into path.
func startBenchProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func printBenchTable(w io.Writer, results []*benchResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tN\tbatch\tclients x inflight / batch\tops/s\tblocks/s\tblock size\tp50 ms\tp99 ms\ttx/block\tsigs/block\tfsyncs/block\tfsync ms safety/ledger/blocks\tcpu s/1k ops\tload\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%dx%d/%d\t%.0f\t%.1f\t%.1f\t%.2f\t%.2f\t%.1f\t%.1f\t%.1f\t%.2f/%.2f/%.2f\t%.3f\t%.1f\t\n",
			r.Mode, r.Replicas, r.Batch, r.Clients, r.Inflight, r.ClientBatch, r.OpsPerS, r.BlocksPerS, r.MeanBlockSize,
			r.LatencyMs.P50, r.LatencyMs.P99, r.PerBlock.Transmissions, r.PerBlock.SignatureVerifications,
			r.PerBlock.Fsyncs, r.FsyncMeanMs["safety"], r.FsyncMeanMs["ledger"], r.FsyncMeanMs["blocks"],
			r.CPUPer1kOps, max(r.LoadAvg[0], r.LoadAvg[1]))
	}
	tw.Flush()
	for _, r := range results {
		if len(r.RoundTrace) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nround trace (%s, N=%d, batch %d): the rounds proposed in the measured window, over the replicas\n", r.Mode, r.Replicas, r.Batch)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "phase\tn\tp50 ms\tp90 ms\tmean ms\t")
		for _, ph := range r.RoundTrace {
			fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%.3f\t\n", ph.Name, ph.N, ph.P50Ms, ph.P90Ms, ph.MeanMs)
		}
		tw.Flush()
	}
	for _, r := range results {
		if c := r.Crash; c != nil {
			fmt.Fprintf(w, "crash (%s, N=%d): replica %d killed at %.1fs: longest commit gap in the 5 s after %.0f ms, ending with a commit %.0f ms after the kill; %.0f ops/s before, %.0f ops/s in the %.1f s after (%.0f%%)\n",
				r.Mode, r.Replicas, c.Replica, c.AtS, c.MaxGapMs, c.FirstCommitMs, c.OpsPerSBefore, c.OpsPerSAfter, c.AfterS, 100*c.RecoveredRatio)
		}
	}
}
