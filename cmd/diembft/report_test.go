package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diembft/diembft/node"
	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/node/kv"
)

// clientKey is client i's deterministic public key, hex.
func clientKey(i int) string {
	seed := make([]byte, ed25519.SeedSize)
	seed[0], seed[1] = 'c', byte(i)
	return hex.EncodeToString(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
}

// history is a committed history: the ledger and, for each client, the
// records an honest client would have accepted.
type history struct {
	ledger  []client.LedgerLine
	results [][]client.Record
}

// interleave commits the clients' operations round-robin and replays them.
func interleave(t *testing.T, workloads ...string) history {
	t.Helper()
	var h history
	var ops [][]kv.Op
	for _, w := range workloads {
		o, err := kv.ParseOps(w)
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, o)
	}
	h.results = make([][]client.Record, len(ops))
	store := kv.New()
	for k := 0; ; k++ {
		any := false
		for i, o := range ops {
			if k >= len(o) {
				continue
			}
			any = true
			h.ledger = append(h.ledger, client.LedgerLine{Client: clientKey(i), Seq: uint64(k + 1), Op: o[k].String()})
			h.results[i] = append(h.results[i], client.Record{
				Client: clientKey(i), Seq: uint64(k + 1), Op: o[k].String(), Result: store.Apply(o[k]),
				Height: uint64(len(h.ledger)), SubmittedMs: int64(1000 + 10*len(h.ledger)), LatencyMs: float64(len(h.ledger)),
			})
		}
		if !any {
			return h
		}
	}
}

func runInfo(replicas, f int, perClient ...int) *RunInfo {
	info := &RunInfo{Name: "t", Seed: 7, Replicas: replicas, F: f, VerifyResults: true, VerifyLedgers: true, Faulty: []int{}, Faults: []FaultReport{}}
	for _, n := range perClient {
		info.Clients = append(info.Clients, ClientInfo{Requests: n})
	}
	return info
}

func ledgers(n int, l []client.LedgerLine) map[int][]client.LedgerLine {
	m := make(map[int][]client.LedgerLine, n)
	for i := range n {
		m[i] = slices.Clone(l)
	}
	return m
}

const (
	wl0 = "put('movie','star'); append('movie',' wars'); get('movie'); slice('movie','0:4')"
	wl1 = "get('movie'); append('x','y'); put('x','z'); get('x')"
)

func TestReportOKRun(t *testing.T) {
	h := interleave(t, wl0, wl1)
	info := runInfo(4, 1, 4, 4)
	ls := ledgers(4, h.ledger)
	ls[3] = ls[3][:5] // replica 3 is behind: a prefix is consistent
	r := buildReport(info, &Evidence{Ledgers: ls, Results: h.results})
	if !r.OK || len(r.Problems) != 0 {
		t.Fatalf("report not ok: %v", r.Problems)
	}
	if r.Requests != (RequestCounts{Submitted: 8, Committed: 8, Verified: 8}) {
		t.Errorf("requests %+v", r.Requests)
	}
	if !r.Ledgers.Consistent || r.SafetyViolations != 0 || r.Ledgers.Heights["0"] != 8 || r.Ledgers.Heights["3"] != 5 {
		t.Errorf("ledgers %+v, violations %d", r.Ledgers, r.SafetyViolations)
	}
	// Latencies 1..8 ms: nearest-rank p50 is 4, p99 is 8. The client phase
	// runs from the first submission (1010 ms) to the last acceptance
	// (1080 + 8 ms): 78 ms for 8 requests.
	if r.LatencyMs.P50 != 4 || r.LatencyMs.P99 != 8 || r.DurationS != 0.078 || r.ThroughputOpsPerS != round3(8/0.078) {
		t.Errorf("latency %+v, duration %v, throughput %v", r.LatencyMs, r.DurationS, r.ThroughputOpsPerS)
	}
}

func TestReportJSONShape(t *testing.T) {
	h := interleave(t, wl0)
	r := buildReport(runInfo(4, 1, 4), &Evidence{Ledgers: ledgers(4, h.ledger), Results: h.results})
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	// The keys check-run and spec/config.md §4 require, in that shape.
	for _, k := range []string{"name", "seed", "ok", "replicas", "f", "clients", "requests", "ledgers", "safety_violations",
		"rounds", "faults", "throughput_ops_per_s", "latency_ms", "duration_s", "problems"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report.json lacks %q", k)
		}
	}
	if len(m) != 15 {
		t.Errorf("report.json has %d keys, want the spec's 15: %s", len(m), data)
	}
	for path, want := range map[string]string{
		"requests.submitted": "float64", "requests.committed": "float64", "requests.verified": "float64",
		"ledgers.consistent": "bool", "ledgers.heights": "map[string]interface {}",
		"rounds.highest": "float64", "rounds.by_qc": "float64", "rounds.by_tc": "float64",
		"latency_ms.p50": "float64", "latency_ms.p99": "float64",
	} {
		outer, inner, _ := strings.Cut(path, ".")
		v := m[outer].(map[string]any)[inner]
		if got := fmt.Sprintf("%T", v); got != want {
			t.Errorf("%s is %s, want %s", path, got, want)
		}
	}
	if fmt.Sprintf("%T", m["faults"]) != "[]interface {}" || fmt.Sprintf("%T", m["problems"]) != "[]interface {}" {
		t.Errorf("faults and problems must be lists, even empty: %s", data)
	}
}

func TestReplayCatchesWrongAcceptedResult(t *testing.T) {
	h := interleave(t, wl0, wl1)
	// Client 0 accepted a wrong result for its get (height 5: "star wars").
	for i := range h.results[0] {
		if h.results[0][i].Op == "get('movie')" {
			h.results[0][i].Result = "star trek"
		}
	}
	r := buildReport(runInfo(4, 1, 4, 4), &Evidence{Ledgers: ledgers(4, h.ledger), Results: h.results})
	if r.OK || r.Requests.Verified != 7 || r.Requests.Committed != 8 {
		t.Fatalf("ok %v, requests %+v: want a failed run with 7 of 8 verified", r.OK, r.Requests)
	}
	if len(r.Problems) != 1 || !strings.Contains(r.Problems[0], `accepted result "star trek", but a replay of the agreed ledger gives "star wars"`) {
		t.Errorf("problems %q", r.Problems)
	}
}

func TestReplayCatchesResultAtWrongHeight(t *testing.T) {
	h := interleave(t, wl0, wl1)
	h.results[1][0].Height = 1 // height 1 holds client 0's put, not client 1's get
	h.results[1][1].Height = 99
	r := buildReport(runInfo(4, 1, 4, 4), &Evidence{Ledgers: ledgers(4, h.ledger), Results: h.results})
	if r.OK || r.Requests.Verified != 6 {
		t.Fatalf("ok %v, verified %d", r.OK, r.Requests.Verified)
	}
	joined := strings.Join(r.Problems, "\n")
	for _, want := range []string{"accepted at height 1, but the agreed ledger holds request 1 of client " + clientKey(0)[:12],
		"accepted at height 99, but the agreed ledger has 8 lines"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems %q lack %q", r.Problems, want)
		}
	}
}

// TestRealTimeOrder: each result matches the replay at its height, but
// client 1's get (height 2) was submitted after client 0's append (height 3)
// had been accepted: the history is not linearizable (a replica replied to
// the append before it was final, or a client took its reply too early).
// Operations that overlap may be ordered either way, and an acceptance in
// the same millisecond as the next submission proves no order.
func TestRealTimeOrder(t *testing.T) {
	h := interleave(t, wl0, wl1)
	appended := h.results[0][1] // height 3
	get := &h.results[1][0]     // height 2
	if appended.Height != 3 || get.Height != 2 {
		t.Fatalf("heights %d, %d", appended.Height, get.Height)
	}
	accepted := appended.SubmittedMs + int64(appended.LatencyMs)
	for _, c := range []struct {
		submitted int64
		violation bool
	}{
		{accepted - 1, false}, // overlaps the append
		{accepted, false},     // the same millisecond: no proof of order
		{accepted + 1, true},
		{accepted + 5, true}, // before the next operation (height 4) was submitted
	} {
		get.SubmittedMs = c.submitted
		r := buildReport(runInfo(4, 1, 4, 4), &Evidence{Ledgers: ledgers(4, h.ledger), Results: h.results})
		if !c.violation {
			if !r.OK {
				t.Errorf("get submitted at %d, append accepted at %d: problems %q", c.submitted, accepted, r.Problems)
			}
			continue
		}
		if r.OK || r.Requests.Verified != 7 || r.Requests.Committed != 8 {
			t.Errorf("get submitted %d ms after the append was accepted: ok %v, requests %+v; want a failed run with 7 of 8 verified",
				c.submitted-accepted, r.OK, r.Requests)
		}
		want := fmt.Sprintf("client 1 request 1 (get('movie')) was submitted %d ms after client 0 request 2 (append('movie',' wars')) was accepted, but the ledger orders it first (height 2 < 3)", c.submitted-accepted)
		if len(r.Problems) != 1 || r.Problems[0] != want {
			t.Errorf("problems %q, want [%q]", r.Problems, want)
		}
	}
}

func TestUncommittedRequestsFail(t *testing.T) {
	h := interleave(t, wl0, wl1)
	h.results[1] = h.results[1][:2]
	r := buildReport(runInfo(4, 1, 4, 4), &Evidence{Ledgers: ledgers(4, h.ledger), Results: h.results})
	if r.OK || r.Requests.Committed != 6 || r.Requests.Verified != 6 {
		t.Fatalf("ok %v, requests %+v", r.OK, r.Requests)
	}
	if !slices.Contains(r.Problems, "client 1: 2 of 4 requests committed") {
		t.Errorf("problems %q", r.Problems)
	}
}

func TestLedgerDivergence(t *testing.T) {
	h := interleave(t, wl0, wl1)
	ls := ledgers(4, h.ledger)
	// Replica 2 committed something else at height 6; replica 3 is a
	// shorter prefix of both sides.
	ls[2][5] = client.LedgerLine{Client: clientKey(1), Seq: 3, Op: "put('x','evil')"}
	ls[3] = ls[3][:4]
	v := compareLedgers(ls, nil)
	want := []Divergence{{0, 2, 6}, {1, 2, 6}}
	if !slices.Equal(v.Divergent, want) {
		t.Fatalf("divergent %v, want %v", v.Divergent, want)
	}
	// 0 and 1 agree with each other and with 3: theirs is the agreed ledger.
	if v.AgreedBy != 0 || len(v.Agreed) != 8 {
		t.Errorf("agreed ledger from %d with %d lines", v.AgreedBy, len(v.Agreed))
	}

	r := buildReport(runInfo(4, 1, 4, 4), &Evidence{Ledgers: ls, Results: h.results})
	if r.OK || r.Ledgers.Consistent || r.SafetyViolations != 2 {
		t.Fatalf("ok %v, consistent %v, violations %d", r.OK, r.Ledgers.Consistent, r.SafetyViolations)
	}
	if r.Requests.Verified != 8 {
		t.Errorf("verified %d against the majority ledger, want 8", r.Requests.Verified)
	}
	if !slices.Contains(r.Problems, "safety violation: the ledgers of replicas 0 and 2 diverge at height 6") {
		t.Errorf("problems %q", r.Problems)
	}

	// A faulty replica's ledger is reported but not judged.
	info := runInfo(4, 1, 4, 4)
	info.Faulty = []int{2}
	r = buildReport(info, &Evidence{Ledgers: ls, Results: h.results})
	if !r.OK || r.SafetyViolations != 0 || r.Ledgers.Heights["2"] != 8 {
		t.Errorf("with replica 2 faulty: ok %v, violations %d, problems %q", r.OK, r.SafetyViolations, r.Problems)
	}
}

func TestPrefixesAreConsistent(t *testing.T) {
	h := interleave(t, wl0)
	ls := map[int][]client.LedgerLine{0: h.ledger, 1: h.ledger[:2], 2: nil, 3: h.ledger[:3]}
	v := compareLedgers(ls, nil)
	if len(v.Divergent) != 0 || v.AgreedBy != 0 {
		t.Fatalf("divergent %v, agreed by %d", v.Divergent, v.AgreedBy)
	}
	if divergeAt(h.ledger, h.ledger[:1]) != 0 || divergeAt(nil, h.ledger) != 0 {
		t.Error("a prefix diverges")
	}
}

func TestDuplicateLedgerLineIsAProblem(t *testing.T) {
	h := interleave(t, wl0)
	l := append(slices.Clone(h.ledger), h.ledger[0])
	r := buildReport(runInfo(4, 1, 4), &Evidence{Ledgers: ledgers(4, l), Results: h.results})
	if r.OK || !strings.Contains(strings.Join(r.Problems, "\n"), "holds request 1 of client "+clientKey(0)[:12]+" again at height 5") {
		t.Errorf("ok %v, problems %q", r.OK, r.Problems)
	}
}

func TestProblemListCapsEachKind(t *testing.T) {
	var p problemList
	for i := range 12 {
		p.add("wrong results", "bad %d", i)
	}
	p.add("other", "x")
	got := p.list()
	if len(got) != maxProblemsPerKind+2 || got[len(got)-1] != "... and 7 more wrong results" {
		t.Errorf("list %q", got)
	}
}

// TestRunFilesRoundTrip writes a run directory as the launcher does and
// judges it with verifyRun, as `diembft verify` does.
func TestRunFilesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	h := interleave(t, wl0, wl1)
	info := runInfo(4, 1, 4, 4)
	writeRunDir(t, dir, info, ledgers(4, h.ledger), h.results)
	r, err := verifyRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK || r.Requests.Verified != 8 {
		t.Fatalf("ok %v, %+v, problems %q", r.OK, r.Requests, r.Problems)
	}

	// A truncated last line (a replica killed mid-append, a client killed
	// mid-write) is ignored, not an error.
	appendFile(t, ledgerPath(dir, 1), h.ledger[0].String())
	appendFile(t, resultsPath(dir, 0), `{"client":"ab`)
	if r, err = verifyRun(dir); err != nil || !r.OK {
		t.Fatalf("with partial last lines: %v, problems %q", err, r.Problems)
	}

	var out, errOut bytes.Buffer
	resetFlags(t)
	if code := execute([]string{"verify", dir}, &out, &errOut); code != exitOK || !strings.Contains(out.String(), "run t (seed 7): ok") {
		t.Errorf("diembft verify: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	// A wrong result makes verify fail with exit status 1.
	bad := slices.Clone(h.results[1])
	bad[3].Result = "nope"
	writeResults(t, resultsPath(dir, 1), bad)
	out.Reset()
	if code := execute([]string{"verify", dir}, &out, &errOut); code != exitFail || !strings.Contains(out.String(), "FAILED") {
		t.Errorf("diembft verify on a bad run: exit %d, stdout %q", code, out.String())
	}
	if code := execute([]string{"verify", t.TempDir()}, &out, &errOut); code != exitUsage {
		t.Errorf("diembft verify on an empty dir: exit %d, want %d", code, exitUsage)
	}
}

func writeRunDir(t *testing.T, dir string, info *RunInfo, ls map[int][]client.LedgerLine, results [][]client.Record) {
	t.Helper()
	for _, sub := range []string{ledgersDir, clientsDir, logsDir} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeJSON(filepath.Join(dir, runFile), info); err != nil {
		t.Fatal(err)
	}
	for id, l := range ls {
		var b strings.Builder
		for _, line := range l {
			b.WriteString(line.String() + "\n")
		}
		if err := os.WriteFile(ledgerPath(dir, id), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, recs := range results {
		writeResults(t, resultsPath(dir, i), recs)
	}
}

func writeResults(t *testing.T, path string, recs []client.Record) {
	t.Helper()
	var b bytes.Buffer
	for _, r := range recs {
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(line, '\n'))
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// TestUnreadableLedgerInTheSummary: a ledger that could not be read fails
// the run (a problem says why) and shows as unreadable in the summary, not
// as a replica missing from a list of "consistent" heights.
func TestUnreadableLedgerInTheSummary(t *testing.T) {
	h := interleave(t, wl0, wl1)
	ls := ledgers(4, h.ledger)
	delete(ls, 2)
	r := buildReport(runInfo(4, 1, 4, 4), &Evidence{Ledgers: ls, Results: h.results,
		Problems: []string{"replica 2's ledger ledgers/replica-2.ledger: line 5: bad ledger: checksum"}})
	var out strings.Builder
	printSummary(&out, r, "run")
	if r.OK || !strings.Contains(out.String(), "ledgers consistent as far as readable (1 unreadable), heights 0:8 1:8 2:unreadable 3:8;") {
		t.Fatalf("ok %v, summary:\n%s", r.OK, out.String())
	}
}

// TestCommitteeRounds: report.json's rounds are the committee's: a round
// entered by a TC at any replica counts once as by_tc, every other round up
// to the highest as by_qc (round 1 too), whatever replicas jumped or
// restarted; a replica without a timeline counts through its stats.json.
func TestCommitteeRounds(t *testing.T) {
	dir := t.TempDir()
	var homes []string
	write := func(id int, name, text string) {
		home := filepath.Join(dir, fmt.Sprintf("replica-%d", id))
		if err := os.MkdirAll(home, 0o755); err != nil {
			t.Fatal(err)
		}
		if name != "" {
			if err := os.WriteFile(filepath.Join(home, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if len(homes) <= id {
			homes = append(homes, home)
		}
	}
	timeline := func(id int, byTC map[uint64]bool, rounds ...uint64) {
		var b strings.Builder
		for _, r := range rounds {
			line, _ := json.Marshal(node.Event{Replica: id, Kind: "round", Round: r, ByTC: byTC[r]})
			b.Write(append(line, '\n'))
		}
		write(id, node.TimelineFile, b.String())
	}
	timeline(0, map[uint64]bool{5: true}, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	// Replica 1 entered 5 and 6 by TCs, restarted (its stats start again)
	// and jumped from 7 to 12.
	timeline(1, map[uint64]bool{5: true, 6: true}, 1, 2, 3, 4, 5, 6, 7, 12)
	write(1, "stats.json", `{"round": 12, "rounds_by_qc": 1, "rounds_by_tc": 0}`)
	write(2, "stats.json", `{"round": 8, "rounds_by_qc": 6, "rounds_by_tc": 1}`)
	write(3, "", "") // nothing at all
	got := committeeRounds(homes, func(s string) { t.Errorf("note %q", s) })
	if want := (Rounds{Highest: 12, ByQC: 10, ByTC: 2}); got != want {
		t.Errorf("rounds %+v, want %+v", got, want)
	}
	// Without timelines, stats.json's counts (the most TC rounds of one
	// replica) are all there is.
	os.Remove(filepath.Join(homes[0], node.TimelineFile))
	os.Remove(filepath.Join(homes[1], node.TimelineFile))
	write(0, "stats.json", `{"round": 10, "rounds_by_qc": 6, "rounds_by_tc": 3}`)
	if got, want := committeeRounds(homes, func(string) {}), (Rounds{Highest: 12, ByQC: 9, ByTC: 3}); got != want {
		t.Errorf("from stats.json: rounds %+v, want %+v", got, want)
	}
}
