// Command client runs one client of a DiemBFT committee: it finds the
// replicas and their consensus keys through Olympus, submits a workload,
// retransmits on timeout, accepts each result once f+1 replicas agree, and
// prints a summary (spec/config.md §1). Exit status: 0 if every request was
// committed, 1 otherwise or on a runtime error, 2 on a usage error.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/node/kv"
	"github.com/diembft/diembft/node/workload"
	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/p2p"
	"github.com/diembft/diembft/protocol/types"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// usageError marks an error as the user's (bad flag or argument): exit 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

type options struct {
	olympus       string
	workload      string
	workloadFile  string
	count         int
	concurrency   int
	batch         int
	timeoutMs     int
	key           string
	results       string
	logLevel      string
	verify        bool
	deadline      time.Duration
	olympusWait   time.Duration
	verifyWait    time.Duration
	noProgress    bool
	quietProgress bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	var opts options
	cmd := &cobra.Command{
		Use:   "client --olympus MULTIADDR --workload SPEC [flags]",
		Short: "Run one client against a running DiemBFT committee",
		Long: `Run one client against a running DiemBFT committee.

The client asks Olympus (pinned by the /p2p/<peer-id> of --olympus, whose
signature on the roster it checks) for the replicas and their public keys,
sends every request to every replica, keeps --concurrency requests in flight,
retransmits a request after --timeout-ms (doubling each time), and accepts a
result once f+1 replicas sent the same result and ledger height, each signed
with its consensus key. It exits 0 only if every request was committed.

SPEC is a workload as in the experiment config: pseudorandom(seed,n), or
operations separated by semicolons, e.g. "put('movie','star'); get('movie')".`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runClient(cmd.Context(), &opts, stdout, stderr)
		},
	}
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f := cmd.Flags()
	f.StringVar(&opts.olympus, "olympus", "", "Olympus's multiaddr, ending in /p2p/<peer-id> (required)")
	f.StringVar(&opts.workload, "workload", "", "the workload SPEC (required unless --workload-file)")
	f.StringVar(&opts.workloadFile, "workload-file", "", "read the workload SPEC from this file instead (for long lists)")
	f.IntVar(&opts.count, "count", 0, "run this many operations: the workload truncated or repeated (default: the workload once)")
	f.IntVar(&opts.concurrency, "concurrency", 1, "operations in flight")
	f.IntVar(&opts.batch, "batch", 1, "at most this many operations signed together as one request (when several slots of --concurrency are free)")
	f.IntVar(&opts.timeoutMs, "timeout-ms", int(client.DefaultTimeout/time.Millisecond), "retransmit a request after this many ms, doubling each time")
	f.StringVar(&opts.key, "key", "", "signing key file (hex ed25519 seed); created if missing (default: a fresh key)")
	f.StringVar(&opts.results, "results", "", "write each accepted result to this file as a JSON line")
	f.StringVar(&opts.logLevel, "log-level", "error", "log level: debug, info, warn or error")
	f.BoolVar(&opts.verify, "verify", false, "after the run, read the ledger from the replicas (what f+1 report identically) and check every accepted result against a replay of it")
	f.DurationVar(&opts.verifyWait, "verify-timeout", 60*time.Second, "how long --verify may take to read the ledger")
	f.DurationVar(&opts.deadline, "deadline", 0, "give up after this long (e.g. 2m; default: no limit)")
	f.DurationVar(&opts.olympusWait, "olympus-timeout", 60*time.Second, "how long to wait for Olympus's roster (it answers once every replica registered)")
	f.BoolVar(&opts.noProgress, "no-progress", false, "no progress bar, even on a terminal")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		fmt.Fprintf(stderr, "client: %v (see client --help)\n", err)
		return exitUsage
	}
	fmt.Fprintf(stderr, "client: %v\n", err)
	return exitFail
}

// isCobraUsage recognizes the argument errors cobra makes itself.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires ", "required flag", "invalid argument", "flag needs an argument"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// checkOptions validates the flags and returns the operations to run.
func checkOptions(o *options) ([]kv.Op, error) {
	if o.olympus == "" {
		return nil, usagef("--olympus is required")
	}
	if _, err := p2p.ParsePinned(o.olympus); err != nil {
		return nil, usagef("--olympus: %v", err)
	}
	spec := o.workload
	switch {
	case o.workload != "" && o.workloadFile != "":
		return nil, usagef("give --workload or --workload-file, not both")
	case o.workloadFile != "":
		data, err := os.ReadFile(o.workloadFile)
		if err != nil {
			return nil, usagef("--workload-file: %v", err)
		}
		spec = string(data)
	case o.workload == "":
		return nil, usagef("--workload is required")
	}
	ops, err := workload.Parse(spec)
	if err != nil {
		return nil, usagef("--workload: %v", err)
	}
	if o.count < 0 {
		return nil, usagef("--count must be positive, got %d", o.count)
	}
	if o.count > 0 {
		ops = client.Repeat(ops, o.count)
	}
	if o.concurrency < 1 {
		return nil, usagef("--concurrency must be at least 1, got %d", o.concurrency)
	}
	if o.batch < 1 || o.batch > types.MaxOpsPerRequest {
		return nil, usagef("--batch must be between 1 and %d, got %d", types.MaxOpsPerRequest, o.batch)
	}
	if o.timeoutMs < 1 {
		return nil, usagef("--timeout-ms must be at least 1, got %d", o.timeoutMs)
	}
	if o.deadline < 0 || o.olympusWait <= 0 {
		return nil, usagef("--deadline and --olympus-timeout must be positive")
	}
	if o.verifyWait <= 0 {
		return nil, usagef("--verify-timeout must be positive")
	}
	return ops, nil
}

func runClient(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	ops, err := checkOptions(o)
	if err != nil {
		return err
	}
	warnOverBounds(stderr, ops)
	if err := p2p.SetupLogging(o.logLevel); err != nil {
		return usagef("--log-level: %v", err)
	}
	var key ed25519.PrivateKey
	if o.key != "" {
		var created bool
		if key, created, err = client.LoadOrCreateKey(o.key); err != nil {
			return usagef("--key: %v", err)
		}
		if created {
			fmt.Fprintf(stderr, "client: created a new signing key in %s\n", o.key)
		}
	}
	var results *os.File
	if o.results != "" {
		if results, err = os.Create(o.results); err != nil {
			return usagef("--results: %v", err)
		}
		defer results.Close()
	}
	if o.deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.deadline)
		defer cancel()
	}

	node, err := p2p.New(ctx, p2p.Config{NoListen: true})
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("deadline passed (--deadline %v) before the client started: 0 of %d requests committed", o.deadline, len(ops))
	}
	if err != nil {
		return err
	}
	defer node.Close()

	roster, err := fetchRoster(ctx, node, o.olympus, o.olympusWait)
	if err != nil {
		return err
	}

	bar := newProgress(stderr, len(ops), !o.noProgress && isTerminal(stderr))
	var writeErr error
	var cl *client.Client
	var accepted []client.Record
	cfg := client.Config{
		Key:         key,
		Concurrency: o.concurrency,
		Batch:       o.batch,
		Timeout:     time.Duration(o.timeoutMs) * time.Millisecond,
		OnAccept: func(r client.Result) {
			bar.add()
			rec := client.NewRecord(cl.PublicKey(), r)
			if o.verify {
				accepted = append(accepted, rec)
			}
			if results == nil || writeErr != nil {
				return
			}
			line, err := json.Marshal(rec)
			if err == nil {
				_, err = results.Write(append(line, '\n'))
			}
			if err != nil {
				writeErr = fmt.Errorf("--results %s: %w", o.results, err)
			}
		},
	}
	if cl, err = client.NewP2P(node, roster, cfg); err != nil {
		return err
	}
	sum, runErr := cl.Run(ctx, ops)
	bar.done()
	printSummary(stdout, cl.PublicKey(), &sum)

	if writeErr != nil {
		return writeErr
	}
	if results != nil {
		if err := results.Close(); err != nil {
			return fmt.Errorf("--results %s: %w", o.results, err)
		}
	}
	var verifyErr error
	if o.verify && len(accepted) > 0 && ctx.Err() == nil {
		verifyErr = verifyResults(ctx, cl, accepted, o.verifyWait, stdout)
	}
	if sum.Committed == sum.Total {
		return verifyErr
	}
	why := "stopped"
	switch {
	case errors.Is(runErr, context.DeadlineExceeded):
		why = "deadline passed"
	case errors.Is(runErr, context.Canceled):
		why = "interrupted"
	case runErr != nil:
		why = runErr.Error()
	}
	return fmt.Errorf("%s: only %d of %d requests committed", why, sum.Committed, sum.Total)
}

// verifyResults reads the ledger from the replicas up to the highest height
// of an accepted result and checks every accepted result against a replay
// of it (spec §1, bin/client --verify).
func verifyResults(ctx context.Context, cl *client.Client, accepted []client.Record, wait time.Duration, stdout io.Writer) error {
	var upTo uint64
	for _, r := range accepted {
		upTo = max(upTo, r.Height)
	}
	vctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	ledger, err := cl.FetchLedger(vctx, upTo)
	if err != nil {
		return fmt.Errorf("--verify: cannot read the agreed ledger (do the replicas serve ledger requests?): %w", err)
	}
	verified, problems := client.CheckResults(ledger, accepted)
	fmt.Fprintf(stdout, "verify: %d/%d accepted results equal a replay of the agreed ledger (height %d)\n", verified, len(accepted), len(ledger))
	if len(problems) > 0 {
		return fmt.Errorf("--verify: %d accepted results do not match the agreed ledger; first: %v", len(problems), problems[0])
	}
	return nil
}

// fetchRoster gets and checks the signed roster from Olympus and turns it
// into the client's view of the committee.
func fetchRoster(ctx context.Context, node *p2p.Node, addr string, wait time.Duration) (client.Roster, error) {
	fctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	r, err := olympus.FetchRoster(fctx, node, addr)
	switch {
	case errors.Is(err, olympus.ErrBadRosterSignature), errors.Is(err, olympus.ErrWrongPeer):
		return client.Roster{}, fmt.Errorf("refusing to proceed: %w", err)
	case err != nil:
		return client.Roster{}, fmt.Errorf("cannot get the roster: %w", err)
	}
	return client.FromOlympus(r)
}

// warnOverBounds prints one line if some operations will give "fail"
// whatever the store holds because of its size bounds (kv.Op.OverBounds):
// they are valid and are sent, but the user probably meant something else.
func warnOverBounds(w io.Writer, ops []kv.Op) {
	n, first := 0, -1
	for i, op := range ops {
		if op.OverBounds() != "" {
			if n++; first < 0 {
				first = i
			}
		}
	}
	if n == 0 {
		return
	}
	op := ops[first]
	text := op.String()
	if len(text) > 40 {
		text = strings.ToValidUTF8(text[:40], "") + "…"
	}
	more := ""
	if n > 1 {
		more = fmt.Sprintf(" (and %d more such operations)", n-1)
	}
	fmt.Fprintf(w, "client: warning: operation %d %s will return fail: %s%s\n", first+1, text, op.OverBounds(), more)
}

func printSummary(w io.Writer, pub ed25519.PublicKey, s *client.Summary) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fmt.Fprintf(w, "client %s: %d/%d committed in %.2fs, %.1f ops/s, latency p50 %.1f ms, p99 %.1f ms\n",
		hex.EncodeToString(pub)[:12], s.Committed, s.Total, s.Duration.Seconds(), s.Throughput(),
		ms(s.Percentile(50)), ms(s.Percentile(99)))
	st := s.Stats
	if bad := st.Malformed + st.WrongClient + st.BadSignature + st.Conflicting; st.Retransmissions > 0 || bad > 0 {
		fmt.Fprintf(w, "  retransmissions %d, bad replies %d (malformed %d, wrong client %d, bad signature %d, conflicting %d)\n",
			st.Retransmissions, bad, st.Malformed, st.WrongClient, st.BadSignature, st.Conflicting)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// progress is a one-line progress bar, redrawn at most every 100 ms.
type progress struct {
	w       io.Writer
	on      bool
	total   int
	n       int
	start   time.Time
	lastOut time.Time
}

func newProgress(w io.Writer, total int, on bool) *progress {
	return &progress{w: w, on: on, total: total, start: time.Now()}
}

func (p *progress) add() {
	p.n++
	if !p.on || (time.Since(p.lastOut) < 100*time.Millisecond && p.n < p.total) {
		return
	}
	p.lastOut = time.Now()
	const width = 30
	filled := 0
	if p.total > 0 {
		filled = width * p.n / p.total
	}
	rate := float64(p.n) / max(time.Since(p.start).Seconds(), 1e-3)
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d committed, %.1f ops/s ", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), p.n, p.total, rate)
}

func (p *progress) done() {
	if p.on && p.n > 0 {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
