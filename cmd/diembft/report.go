package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/diembft/diembft/node"
	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/protocol/types"
)

// Files of a run directory (spec/config.md §1) besides logs/.
const (
	reportFile = "report.json"
	runFile    = "run.json" // RunInfo: what `diembft verify` needs to judge the run again
	ledgersDir = "ledgers"  // ledgers/replica-<id>.ledger
	clientsDir = "clients"  // clients/client-<i>.jsonl (results), client-<i>.workload
	logsDir    = "logs"
)

func ledgerPath(dir string, id int) string {
	return filepath.Join(dir, ledgersDir, node.LedgerFile(types.ReplicaID(id)))
}

// replicaHome is replica id's home in run directory dir (Olympus makes it).
func replicaHome(dir string, id int) string {
	return filepath.Join(dir, olympus.HomesDir, olympus.ReplicaDir(types.ReplicaID(id)))
}

func resultsPath(dir string, i int) string {
	return filepath.Join(dir, clientsDir, fmt.Sprintf("client-%d.jsonl", i))
}

// Report is report.json, field for field as spec/config.md §4 shows it.
type Report struct {
	Name              string        `json:"name"`
	Seed              int64         `json:"seed"`
	OK                bool          `json:"ok"`
	Replicas          int           `json:"replicas"`
	F                 int           `json:"f"`
	Clients           int           `json:"clients"`
	Requests          RequestCounts `json:"requests"`
	Ledgers           LedgerReport  `json:"ledgers"`
	SafetyViolations  int           `json:"safety_violations"`
	Rounds            Rounds        `json:"rounds"`
	Faults            []FaultReport `json:"faults"`
	ThroughputOpsPerS float64       `json:"throughput_ops_per_s"`
	LatencyMs         Latency       `json:"latency_ms"`
	DurationS         float64       `json:"duration_s"`
	Problems          []string      `json:"problems"`
}

// RequestCounts: submitted to the committee by the clients, committed (a
// result accepted by the client), verified (the accepted result equals a
// replay of the agreed ledger).
type RequestCounts struct {
	Submitted int `json:"submitted"`
	Committed int `json:"committed"`
	Verified  int `json:"verified"`
}

// LedgerReport: Heights maps each replica id (as a string) to its ledger's
// length; Consistent is false when two honest ledgers diverge (a shorter one
// that is a prefix of a longer one is consistent: that replica is behind).
type LedgerReport struct {
	Consistent bool           `json:"consistent"`
	Heights    map[string]int `json:"heights"`
}

// Rounds are the committee's (committeeRounds): the highest round a replica
// reached, of which by_tc were entered by a TC somewhere and by_qc by a QC.
type Rounds struct {
	Highest uint64 `json:"highest"`
	ByQC    uint64 `json:"by_qc"`
	ByTC    uint64 `json:"by_tc"`
}

// FaultReport is one configured fault and how often it fired.
type FaultReport struct {
	Type  string `json:"type"`
	Src   string `json:"src"`
	Msg   string `json:"msg"`
	Fired int    `json:"fired"`
	// Note says why a fault that did not fire is as configured (faults.go).
	Note string `json:"note,omitempty"`
}

// Latency percentiles in ms, over every accepted request.
type Latency struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// RunInfo is run.json: what a run was and what happened to it that the
// ledgers and client results do not say, so that `diembft verify` can
// judge the run again from its directory alone.
type RunInfo struct {
	Name     string `json:"name"`
	Seed     int64  `json:"seed"`
	Config   string `json:"config"`
	Replicas int    `json:"replicas"`
	F        int    `json:"f"`
	// Clients[i] is client i; Requests is how many requests it was started
	// with (0 if the run ended before it started).
	Clients []ClientInfo `json:"clients"`
	// Faulty are the replicas the config makes Byzantine: their ledgers are
	// reported but not judged.
	Faulty        []int         `json:"faulty"`
	VerifyResults bool          `json:"verify_results"`
	VerifyLedgers bool          `json:"verify_ledgers"`
	Faults        []FaultReport `json:"faults"`
	// FaultRules say how often each fault must fire (faults.go).
	FaultRules []FaultRule `json:"fault_rules,omitempty"`
	// Stopped are the replicas a crash without restart took down, with the
	// round it fired in (faults.go collectFaults).
	Stopped []StoppedReplica `json:"stopped,omitempty"`
	// Armed maps a message fault to the replicas its trigger armed (it
	// then waits for its message), Spent a "leader" fault to the replicas
	// its trigger came to while another led (faults.go collectFaults), so
	// that a fault that never fired is explained.
	Armed  map[int][]int `json:"armed,omitempty"`
	Spent  map[int][]int `json:"spent,omitempty"`
	Rounds Rounds        `json:"rounds"`
	// ClientPhaseS is the wall time from starting the clients to the last
	// one ending; the report's duration comes from the client results when
	// there are any (first submission to last acceptance).
	ClientPhaseS float64 `json:"client_phase_s"`
	// Problems met while running (a process that failed to start, the
	// deadline, an interruption, a refused config).
	Problems []string `json:"problems"`
}

// ClientInfo is one client of a run.
type ClientInfo struct {
	Requests int `json:"requests"`
}

// Evidence is what a finished run left behind: each replica's ledger (nil
// when it left none) and each client's accepted results.
type Evidence struct {
	Ledgers  map[int][]client.LedgerLine
	Results  [][]client.Record
	Problems []string // files that could not be read
}

// loadEvidence reads dir/ledgers and dir/clients for info's replicas and
// clients. A missing ledger is an empty one (the replica committed nothing);
// a missing results file means no accepted result.
func loadEvidence(dir string, info *RunInfo) *Evidence {
	ev := &Evidence{Ledgers: make(map[int][]client.LedgerLine), Results: make([][]client.Record, len(info.Clients))}
	for id := range info.Replicas {
		path := ledgerPath(dir, id)
		lines, err := readWith(path, client.ReadLedger)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			ev.Ledgers[id] = nil
		case err != nil:
			ev.Problems = append(ev.Problems, fmt.Sprintf("replica %d's ledger %s: %v", id, path, err))
		default:
			ev.Ledgers[id] = lines
		}
	}
	for i, c := range info.Clients {
		path := resultsPath(dir, i)
		recs, err := readWith(path, client.ReadRecords)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if c.Requests > 0 {
				ev.Problems = append(ev.Problems, fmt.Sprintf("client %d left no results file (%s)", i, path))
			}
		case err != nil:
			ev.Problems = append(ev.Problems, fmt.Sprintf("client %d's results %s: %v", i, path, err))
		default:
			ev.Results[i] = recs
		}
	}
	return ev
}

func readWith[T any](path string, read func(io.Reader) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	return read(f)
}

// problemList collects problems, listing at most a few of each kind so that a
// run with a thousand bad results still has a readable report.
type problemList struct {
	items  []string
	counts map[string]int
}

const maxProblemsPerKind = 5

func (p *problemList) add(kind, format string, args ...any) {
	if p.counts == nil {
		p.counts = make(map[string]int)
	}
	p.counts[kind]++
	if p.counts[kind] <= maxProblemsPerKind {
		p.items = append(p.items, fmt.Sprintf(format, args...))
	}
}

func (p *problemList) list() []string {
	out := slices.Clone(p.items)
	kinds := make([]string, 0, len(p.counts))
	for k := range p.counts {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		if n := p.counts[k]; n > maxProblemsPerKind {
			out = append(out, fmt.Sprintf("... and %d more %s", n-maxProblemsPerKind, k))
		}
	}
	return out
}

// LedgerVerdict is the comparison of the honest ledgers.
type LedgerVerdict struct {
	Heights map[int]int
	// Divergent lists each pair of honest replicas whose ledgers differ at
	// some height both have (a safety violation), with that height.
	Divergent []Divergence
	// Agreed is the ledger results are checked against: the longest honest
	// ledger when they are consistent, else the one of which the most honest
	// ledgers are a prefix (the longest on a tie).
	Agreed   []client.LedgerLine
	AgreedBy int // the replica whose ledger is Agreed, -1 if none
}

// Divergence: the ledgers of replicas A and B first differ at Height.
type Divergence struct {
	A, B   int
	Height int
}

// divergeAt returns the first 1-based height at which a and b differ, or 0
// if one is a prefix of the other.
func divergeAt(a, b []client.LedgerLine) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i + 1
		}
	}
	return 0
}

// compareLedgers compares the ledgers of the honest replicas (every replica
// in ledgers not listed in faulty).
func compareLedgers(ledgers map[int][]client.LedgerLine, faulty []int) LedgerVerdict {
	v := LedgerVerdict{Heights: make(map[int]int, len(ledgers)), AgreedBy: -1}
	var honest []int
	for id, l := range ledgers {
		v.Heights[id] = len(l)
		if !slices.Contains(faulty, id) {
			honest = append(honest, id)
		}
	}
	slices.Sort(honest)
	// support[x] counts the honest ledgers that are a prefix of x's (x's
	// included): the longest ledger when all are consistent, and otherwise
	// the branch that the most replicas have committed into.
	support := make(map[int]int, len(honest))
	for i, a := range honest {
		for _, b := range honest[i+1:] {
			if h := divergeAt(ledgers[a], ledgers[b]); h > 0 {
				v.Divergent = append(v.Divergent, Divergence{A: a, B: b, Height: h})
			}
		}
		for _, b := range honest {
			if len(ledgers[b]) <= len(ledgers[a]) && divergeAt(ledgers[a], ledgers[b]) == 0 {
				support[a]++
			}
		}
	}
	for _, id := range honest {
		if v.AgreedBy < 0 {
			v.AgreedBy = id
			continue
		}
		best := v.AgreedBy
		if c := cmp.Compare(support[id], support[best]); c > 0 || (c == 0 && len(ledgers[id]) > len(ledgers[best])) {
			v.AgreedBy = id
		}
	}
	if v.AgreedBy >= 0 {
		v.Agreed = ledgers[v.AgreedBy]
	}
	return v
}

// ResultVerdict is the check of the clients' accepted results against a
// sequential replay of the agreed ledger.
type ResultVerdict struct {
	Committed int // distinct (client, seq) accepted
	Verified  int // of those, equal to the replay
	Latencies []float64
	// First and Last bound the client phase as the results see it: the
	// first submission and the last acceptance.
	First, Last time.Time
}

// checkResults replays agreed on a fresh key-value store and checks every
// accepted result: the ledger line at its height must be that client's
// (client, seq, op), and the replay's result there must equal it; and the
// ledger's order must respect real time (client.RealTimeViolations). Problems go to
// probs; perClient[i] is how many requests client i was started with.
func checkResults(agreed []client.LedgerLine, results [][]client.Record, perClient []int, probs *problemList) ResultVerdict {
	var v ResultVerdict
	var replayed []timedResult
	replay, dups, bad := client.Replay(agreed)
	for _, h := range dups {
		l := agreed[h-1]
		probs.add("duplicate ledger lines", "the agreed ledger holds request %d of client %s again at height %d", l.Seq, short(l.Client), h)
	}
	for _, h := range bad {
		probs.add("unparsable ledger operations", "the agreed ledger's operation at height %d does not parse: %q", h, agreed[h-1].Op)
	}
	for i, recs := range results {
		seen := make(map[uint64]bool, len(recs))
		for _, r := range recs {
			if seen[r.Seq] {
				probs.add("repeated results", "client %d recorded request %d twice", i, r.Seq)
				continue
			}
			seen[r.Seq] = true
			v.Committed++
			v.Latencies = append(v.Latencies, r.LatencyMs)
			sub := time.UnixMilli(r.SubmittedMs)
			done := sub.Add(time.Duration(r.LatencyMs * float64(time.Millisecond)))
			if v.First.IsZero() || sub.Before(v.First) {
				v.First = sub
			}
			if done.After(v.Last) {
				v.Last = done
			}

			what := fmt.Sprintf("client %d request %d (%s)", i, r.Seq, r.Op)
			if r.Height == 0 || r.Height > uint64(len(agreed)) {
				probs.add("results beyond the agreed ledger", "%s: accepted at height %d, but the agreed ledger has %d lines", what, r.Height, len(agreed))
				continue
			}
			l := agreed[r.Height-1]
			if l.Client != r.Client || l.Seq != r.Seq || l.Op != r.Op {
				probs.add("results at a wrong height", "%s: accepted at height %d, but the agreed ledger holds request %d of client %s there (%s)",
					what, r.Height, l.Seq, short(l.Client), l.Op)
				continue
			}
			if got := replay[r.Height-1]; got != r.Result {
				probs.add("wrong results", "%s: accepted result %q, but a replay of the agreed ledger gives %q at height %d", what, r.Result, got, r.Height)
				continue
			}
			replayed = append(replayed, timedResult{client: i, rec: r})
		}
		if want := perClient[i]; len(seen) < want {
			probs.add("clients with uncommitted requests", "client %d: %d of %d requests committed", i, len(seen), want)
		}
	}
	v.Verified = len(replayed) - checkRealTime(replayed, probs)
	return v
}

// timedResult is an accepted result of client (its index) that the replay
// confirmed.
type timedResult struct {
	client int
	rec    client.Record
}

// checkRealTime adds a problem for each result that the ledger orders before
// an operation accepted before it was submitted (client.RealTimeViolations)
// and returns how many there are.
func checkRealTime(rs []timedResult, probs *problemList) int {
	recs := make([]client.Record, len(rs))
	for i, r := range rs {
		recs[i] = r.rec
	}
	vs := client.RealTimeViolations(recs)
	for _, v := range vs {
		b, a := rs[v.Later], rs[v.Earlier]
		probs.add("real-time order violations", "client %d request %d (%s) was submitted %.0f ms after client %d request %d (%s) was accepted, but the ledger orders it first (height %d < %d)",
			b.client, b.rec.Seq, b.rec.Op, v.AfterMs, a.client, a.rec.Seq, a.rec.Op, b.rec.Height, a.rec.Height)
	}
	return len(vs)
}

func short(hexKey string) string {
	if len(hexKey) > 12 {
		return hexKey[:12]
	}
	return hexKey
}

// buildReport judges a run from its info and evidence. ok is true only
// when there is no problem: every request committed, every accepted result
// verified (if verify.results), honest ledgers consistent (if
// verify.ledgers), and nothing went wrong while running.
func buildReport(info *RunInfo, ev *Evidence) *Report {
	r := &Report{
		Name: info.Name, Seed: info.Seed, Replicas: info.Replicas, F: info.F, Clients: len(info.Clients),
		Ledgers: LedgerReport{Consistent: true, Heights: map[string]int{}},
		Rounds:  info.Rounds,
		Faults:  append([]FaultReport{}, info.Faults...),
	}
	var probs problemList
	for _, p := range info.Problems {
		probs.add("run problems "+p, "%s", p)
	}
	for _, p := range ev.Problems {
		probs.add("unreadable files", "%s", p)
	}
	checkFaults(info, r.Faults, &probs)

	lv := compareLedgers(ev.Ledgers, info.Faulty)
	for id, h := range lv.Heights {
		r.Ledgers.Heights[strconv.Itoa(id)] = h
	}
	r.SafetyViolations = len(lv.Divergent)
	r.Ledgers.Consistent = len(lv.Divergent) == 0
	if info.VerifyLedgers {
		for _, d := range lv.Divergent {
			probs.add("safety violations", "safety violation: the ledgers of replicas %d and %d diverge at height %d", d.A, d.B, d.Height)
		}
	}

	perClient := make([]int, len(info.Clients))
	for i, c := range info.Clients {
		perClient[i] = c.Requests
		r.Requests.Submitted += c.Requests
	}
	results := ev.Results
	if len(results) < len(perClient) {
		results = append(results, make([][]client.Record, len(perClient)-len(results))...)
	}
	resultProbs := &probs
	if !info.VerifyResults {
		resultProbs = &problemList{} // counted, not judged
	}
	rv := checkResults(lv.Agreed, results, perClient, resultProbs)
	if !info.VerifyResults {
		// Uncommitted requests still fail the run.
		for i, c := range info.Clients {
			if n := len(uniqueSeqs(results[i])); n < c.Requests {
				probs.add("clients with uncommitted requests", "client %d: %d of %d requests committed", i, n, c.Requests)
			}
		}
	}
	r.Requests.Committed = rv.Committed
	r.Requests.Verified = rv.Verified
	r.LatencyMs = Latency{P50: round3(client.Percentile(rv.Latencies, 50)), P99: round3(client.Percentile(rv.Latencies, 99))}
	duration := info.ClientPhaseS
	if rv.Committed > 0 && rv.Last.After(rv.First) {
		duration = rv.Last.Sub(rv.First).Seconds()
	}
	r.DurationS = round3(duration)
	if duration > 0 {
		r.ThroughputOpsPerS = round3(float64(rv.Committed) / duration)
	}

	r.Problems = append([]string{}, probs.list()...)
	r.OK = len(r.Problems) == 0
	return r
}

func uniqueSeqs(recs []client.Record) map[uint64]bool {
	m := make(map[uint64]bool, len(recs))
	for _, r := range recs {
		m[r.Seq] = true
	}
	return m
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// writeJSON writes v to path, indented, through a temporary file so that a
// reader never sees half a report.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// printSummary writes the short human verdict.
func printSummary(w io.Writer, r *Report, dir string) {
	verdict := "ok"
	if !r.OK {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "run %s (seed %d): %s\n", r.Name, r.Seed, verdict)
	clients := "clients"
	if r.Clients == 1 {
		clients = "client"
	}
	fmt.Fprintf(w, "  %d replicas (f=%d), %d %s: %d/%d committed, %d verified\n",
		r.Replicas, r.F, r.Clients, clients, r.Requests.Committed, r.Requests.Submitted, r.Requests.Verified)
	var hs []string
	unreadable := 0
	for id := range r.Replicas {
		// A ledger that could not be read has no height (a problem says why).
		if h, ok := r.Ledgers.Heights[strconv.Itoa(id)]; ok {
			hs = append(hs, fmt.Sprintf("%d:%d", id, h))
		} else {
			hs = append(hs, fmt.Sprintf("%d:unreadable", id))
			unreadable++
		}
	}
	state := "consistent"
	if unreadable > 0 {
		state = fmt.Sprintf("consistent as far as readable (%d unreadable)", unreadable)
	}
	if !r.Ledgers.Consistent {
		state = fmt.Sprintf("DIVERGENT (%d safety violations)", r.SafetyViolations)
	}
	fmt.Fprintf(w, "  ledgers %s, heights %s; rounds %d (%d by QC, %d by TC)\n",
		state, cmp.Or(strings.Join(hs, " "), "none"), r.Rounds.Highest, r.Rounds.ByQC, r.Rounds.ByTC)
	fmt.Fprintf(w, "  %.1f ops/s, latency p50 %.1f ms, p99 %.1f ms, over %.2f s\n",
		r.ThroughputOpsPerS, r.LatencyMs.P50, r.LatencyMs.P99, r.DurationS)
	for _, f := range r.Faults {
		fmt.Fprintf(w, "  fault %s src %s msg %s: fired %d", f.Type, f.Src, f.Msg, f.Fired)
		if f.Note != "" {
			fmt.Fprintf(w, " (%s)", f.Note)
		}
		fmt.Fprintln(w)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  problem: %s\n", p)
	}
	if dir != "" {
		fmt.Fprintf(w, "  report: %s\n", filepath.Join(dir, reportFile))
	}
}
