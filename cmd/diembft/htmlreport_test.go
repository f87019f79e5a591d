package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/diembft/diembft/node"
	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/olympus"
	"github.com/diembft/diembft/protocol/types"
)

// synthT0 is the synthetic runs' time zero (Unix ms).
const synthT0 = int64(1_700_000_000_000)

// synthFault is a fault a synthetic run fires: at (seconds after time zero)
// on replica, in round. A "crash" detail stops the replica's timeline
// until a restart two seconds later.
type synthFault struct {
	at      float64
	replica int
	detail  string
}

// synthRun writes a complete, consistent run directory like `diembft run`
// leaves (run.json, ledgers, client results, report.json, replica homes
// with timeline.jsonl and stats.json) for 4 replicas and 2 clients over
// about 20 s, with the given faults: each fault is followed by a round
// entered by TC on every replica and slower requests. With timelines false
// the replicas' homes are left out. It returns the report.
func synthRun(t *testing.T, dir string, faults []synthFault, timelines bool) *Report {
	t.Helper()
	const replicas, clients, perClient = 4, 2, 150
	info := &RunInfo{Name: "synthetic", Seed: 9, Replicas: replicas, F: 1, VerifyResults: true, VerifyLedgers: true,
		Faulty: []int{}, Faults: []FaultReport{}, Problems: []string{}}
	for range clients {
		info.Clients = append(info.Clients, ClientInfo{Requests: perClient})
	}
	for _, f := range faults {
		info.Faults = append(info.Faults, FaultReport{Type: strings.Fields(f.detail)[0], Src: fmt.Sprint(f.replica), Msg: "*", Fired: 1})
	}
	for _, sub := range []string{ledgersDir, clientsDir, logsDir} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ms := func(s float64) int64 { return synthT0 + int64(s*1000) }
	slow := func(s float64) bool { // within 1.5 s after a fault
		for _, f := range faults {
			if s >= f.at && s < f.at+1.5 {
				return true
			}
		}
		return false
	}

	// Clients: request k of client c is sent at 0.3 s + 0.06 s * (2k + c)
	// and committed at the next height; results are all "OK".
	var ledger []client.LedgerLine
	results := make([][]client.Record, clients)
	commitAt := make([]float64, 0, clients*perClient) // per height
	for k := range perClient {
		for c := range clients {
			sub := 0.3 + 0.06*float64(2*k+c)
			lat := 20 + float64((k*7+c*3)%20)
			if slow(sub) {
				lat = 400 + float64((k*37)%500)
			}
			op := fmt.Sprintf("put('k%d','v%d')", c, k)
			ledger = append(ledger, client.LedgerLine{Client: clientKey(c), Seq: uint64(k + 1), Op: op})
			results[c] = append(results[c], client.Record{Client: clientKey(c), Seq: uint64(k + 1), Op: op, Result: "OK",
				Height: uint64(len(ledger)), SubmittedMs: ms(sub), LatencyMs: lat})
			commitAt = append(commitAt, sub+lat/1000-0.005)
		}
	}
	for id := range replicas {
		var b strings.Builder
		for _, l := range ledger {
			b.WriteString(l.String() + "\n")
		}
		if err := os.WriteFile(ledgerPath(dir, id), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for c, recs := range results {
		var b bytes.Buffer
		for _, r := range recs {
			line, _ := json.Marshal(r)
			b.Write(append(line, '\n'))
		}
		if err := os.WriteFile(resultsPath(dir, c), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	if timelines {
		for id := range replicas {
			st := writeSynthTimeline(t, dir, id, faults, commitAt)
			r := &info.Rounds
			r.Highest, r.ByQC, r.ByTC = max(r.Highest, uint64(st.Round)), max(r.ByQC, uint64(st.RoundsByQC)), max(r.ByTC, uint64(st.RoundsByTC))
		}
	}
	if err := writeJSON(filepath.Join(dir, runFile), info); err != nil {
		t.Fatal(err)
	}
	rep, err := verifyRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(filepath.Join(dir, reportFile), rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// writeSynthTimeline writes replica id's home: a round every 80 ms (by TC
// right after a fault), a commit whenever heights in commitAt are due, the
// faults it fires, a stop and restart after a crash, and stats.json.
func writeSynthTimeline(t *testing.T, dir string, id int, faults []synthFault, commitAt []float64) node.Stats {
	t.Helper()
	home := filepath.Join(dir, olympus.HomesDir, olympus.ReplicaDir(types.ReplicaID(id)))
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	ms := func(s float64) int64 { return synthT0 + int64(s*1000) }
	var evs []node.Event
	var height uint64
	var round, byQC, byTC, commits uint64
	down := -1.0 // crashed until down+2 s
	evs = append(evs, node.Event{T: ms(0.1), Replica: id, Kind: "start"})
	fi := 0
	for s := 0.2; s < 20; s += 0.08 {
		for fi < len(faults) && faults[fi].at <= s {
			f := faults[fi]
			fi++
			if f.replica == id {
				evs = append(evs, node.Event{T: ms(f.at), Replica: id, Kind: "fault", Round: round, Detail: f.detail})
				if strings.HasPrefix(f.detail, "crash") {
					down = f.at
				}
			}
		}
		if down >= 0 {
			if s < down+2 {
				continue
			}
			down = -1
			evs = append(evs, node.Event{T: ms(s), Replica: id, Kind: "start", Height: height})
		}
		round++
		tc := false
		for _, f := range faults {
			if s >= f.at+0.3 && s < f.at+0.38 {
				tc = true
			}
		}
		if tc {
			byTC++
		} else {
			byQC++
		}
		evs = append(evs, node.Event{T: ms(s), Replica: id, Kind: "round", Round: round, ByTC: tc})
		n := 0
		for int(height)+n < len(commitAt) && commitAt[int(height)+n] <= s {
			n++
		}
		height += uint64(n)
		commits++
		evs = append(evs, node.Event{T: ms(s + 0.01), Replica: id, Kind: "commit", Round: round - 2, Height: height, Requests: n})
	}
	var b bytes.Buffer
	for _, ev := range evs {
		line, _ := json.Marshal(ev)
		b.Write(append(line, '\n'))
	}
	b.WriteString(`{"t":17000000`) // a replica killed mid-write leaves half a line
	if err := os.WriteFile(filepath.Join(home, node.TimelineFile), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	st := node.Stats{ID: id, Round: float64(round), RoundsByQC: float64(byQC), RoundsByTC: float64(byTC),
		Height: float64(height), Commits: float64(commits), Timeouts: float64(byTC + uint64(id))}
	if err := writeJSON(filepath.Join(home, "stats.json"), st); err != nil {
		t.Fatal(err)
	}
	return st
}

var synthFaults = []synthFault{
	{at: 5.0, replica: 2, detail: "crash (restart after 2000 ms)"},
	{at: 12.0, replica: 0, detail: "drop proposal to 3"},
	{at: 12.05, replica: 1, detail: "delay vote 300 ms"},
}

var imgSrc = regexp.MustCompile(`<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"`)

// reportImages returns the PNGs embedded in page, decoded.
func reportImages(t *testing.T, page string) []image.Image {
	t.Helper()
	var imgs []image.Image
	for _, m := range imgSrc.FindAllStringSubmatch(page, -1) {
		data, err := base64.StdEncoding.DecodeString(m[1])
		if err != nil {
			t.Fatalf("embedded image: %v", err)
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("embedded image is not a PNG: %v", err)
		}
		imgs = append(imgs, img)
	}
	return imgs
}

// faultPixels counts the pixels of img in the fault markers' red.
func faultPixels(img image.Image) int {
	n := 0
	eachPixel(img, func(r, g, b uint8) {
		if r > 180 && g < 90 && b < 90 {
			n++
		}
	})
	return n
}

// eachPixel calls f with the colour of each pixel of img (read straight from
// the pixel array for the RGBA images PNG decoding gives: img.At is slow
// under the race detector).
func eachPixel(img image.Image, f func(r, g, b uint8)) {
	b := img.Bounds()
	switch m := img.(type) {
	case *image.RGBA:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, y):m.PixOffset(b.Max.X, y)]
			for i := 0; i+2 < len(row); i += 4 {
				f(row[i], row[i+1], row[i+2])
			}
		}
	case *image.NRGBA:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, y):m.PixOffset(b.Max.X, y)]
			for i := 0; i+2 < len(row); i += 4 {
				f(row[i], row[i+1], row[i+2])
			}
		}
	default:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				r, g, bl, _ := img.At(x, y).RGBA()
				f(uint8(r>>8), uint8(g>>8), uint8(bl>>8))
			}
		}
	}
}

func readPage(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestHTMLReportPlotsTablesAndFaults(t *testing.T) {
	dir := t.TempDir()
	rep := synthRun(t, dir, synthFaults, true)
	if !rep.OK {
		t.Fatalf("synthetic run not ok: %q", rep.Problems)
	}
	path, err := writeHTMLReport(dir, rep)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != htmlReportFile {
		t.Errorf("wrote %s", path)
	}
	page := readPage(t, path)

	imgs := reportImages(t, page)
	if len(imgs) != 3 {
		t.Fatalf("%d embedded plots, want 3 (commits, latency, rounds)", len(imgs))
	}
	for i, img := range imgs {
		if b := img.Bounds(); b.Dx() != figureWidthPx || b.Dy() < 300 {
			t.Errorf("plot %d is %v", i, b)
		}
		// Every plot marks the faults on its time axis.
		if n := faultPixels(img); n < 200 {
			t.Errorf("plot %d has %d pixels of fault markers, want the three faults marked", i, n)
		}
	}
	for _, want := range []string{
		`<span class="verdict ok">ok</span>`,
		"<td>300 / 300 / 300</td>",
		`<table class="replicas">`,
		"<th>rounds by TC</th>", "<th>timeouts sent</th>", "<th>faults fired</th>",
		// Replica 2 crashed once: two starts, one fault fired.
		"crash (restart after 2000 ms)", "drop proposal to 3", "delay vote 300 ms",
		`<td class="l">F1</td>`, `<td class="l">F3</td>`,
		"Dashed red lines mark the 3 injected faults F1–F3",
		"p50 = ", "p99 = ",
		"unreadable line skipped",  // the torn last line of each timeline
		`<td class="l">crash</td>`, // configured faults from report.json
	} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	rows := regexp.MustCompile(`<tr><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td></tr>`).
		FindAllStringSubmatch(page, -1)
	if len(rows) != 4 {
		t.Fatalf("%d replica rows, want 4:\n%s", len(rows), page)
	}
	// replica, height, round, by QC, by TC, timeouts, blocks, faults, starts
	if r := rows[2]; r[1] != "2" || r[2] != "300" || r[8] != "1" || r[9] != "2" {
		t.Errorf("replica 2's row %q: want height 300, 1 fault, 2 starts", r[1:])
	}
	if r := rows[3]; r[8] != "0" || r[9] != "1" || r[5] == "0" {
		t.Errorf("replica 3's row %q: want 0 faults, 1 start, some rounds by TC", r[1:])
	}
}

func TestHTMLReportWithoutFaultsOrTimelines(t *testing.T) {
	dir := t.TempDir()
	rep := synthRun(t, dir, nil, true)
	if _, err := writeHTMLReport(dir, rep); err != nil {
		t.Fatal(err)
	}
	page := readPage(t, filepath.Join(dir, htmlReportFile))
	imgs := reportImages(t, page)
	if len(imgs) != 3 {
		t.Fatalf("%d plots, want 3", len(imgs))
	}
	for i, img := range imgs {
		if n := faultPixels(img); n != 0 {
			t.Errorf("plot %d has %d fault-red pixels in a run without faults", i, n)
		}
	}
	for _, want := range []string{"No fault fired", "No fault was injected."} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}

	// Without the replicas' homes only the clients' view is left: the
	// throughput and latency plots, no rounds, and a note saying why.
	dir = t.TempDir()
	rep = synthRun(t, dir, nil, false)
	rep.OK, rep.Problems = false, []string{"client 1: 149 of 150 requests committed"}
	if _, err := writeHTMLReport(dir, rep); err != nil {
		t.Fatal(err)
	}
	page = readPage(t, filepath.Join(dir, htmlReportFile))
	if n := len(reportImages(t, page)); n != 2 {
		t.Errorf("%d plots without timelines, want 2", n)
	}
	for _, want := range []string{
		`<span class="verdict FAILED">FAILED</span>`, "client 1: 149 of 150 requests committed",
		"No rounds: the replicas&#39; timelines hold no round event.",
		"no timeline.jsonl for replicas 0, 1, 2, 3",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
}

func TestReportCommandAndVerifyWriteHTML(t *testing.T) {
	dir := t.TempDir()
	synthRun(t, dir, synthFaults, true)
	html := filepath.Join(dir, htmlReportFile)

	resetFlags(t)
	var out, errOut bytes.Buffer
	if code := execute([]string{"report", dir}, &out, &errOut); code != exitOK {
		t.Fatalf("diembft report: exit %d, stderr %q", code, errOut.String())
	}
	if got := strings.TrimSpace(out.String()); got != html {
		t.Errorf("diembft report printed %q, want %q", got, html)
	}
	if n := len(reportImages(t, readPage(t, html))); n != 3 {
		t.Errorf("%d plots", n)
	}

	// Without report.json the run is judged again first.
	if err := os.Remove(filepath.Join(dir, reportFile)); err != nil {
		t.Fatal(err)
	}
	if rep, err := loadReport(dir); err != nil || !rep.OK || rep.Requests.Verified != 300 {
		t.Errorf("loadReport without report.json: %+v, %v", rep, err)
	}
	if code := execute([]string{"report", t.TempDir()}, &out, &errOut); code != exitUsage {
		t.Errorf("diembft report on an empty dir: exit %d, want %d", code, exitUsage)
	}
	// A RUN_DIR that is missing or a file is named as such, not as a
	// directory without run.json.
	missing := filepath.Join(t.TempDir(), "gone")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"report", missing}, "does not exist"},
		{[]string{"verify", missing}, "does not exist"},
		{[]string{"report", filepath.Join(dir, runFile)}, "is a file"},
		{[]string{"verify", filepath.Join(dir, runFile)}, "is a file"},
	} {
		errOut.Reset()
		if code := execute(c.args, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("diembft %v: exit %d, stderr %q; want %d and %q", c.args, code, errOut.String(), exitUsage, c.want)
		}
	}

	// diembft verify writes the page again, and keeps stdout JSON with --json.
	os.Remove(html)
	out.Reset()
	if code := execute([]string{"verify", dir}, &out, &errOut); code != exitOK || !strings.Contains(out.String(), "html report: "+html) {
		t.Errorf("diembft verify: exit %d, stdout %q", code, out.String())
	}
	if _, err := os.Stat(html); err != nil {
		t.Errorf("diembft verify did not write report.html: %v", err)
	}
	out.Reset()
	errOut.Reset()
	if code := execute([]string{"verify", "--json", dir}, &out, &errOut); code != exitOK {
		t.Fatalf("diembft verify --json: exit %d", code)
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || !strings.Contains(errOut.String(), "html report: ") {
		t.Errorf("diembft verify --json: stdout %q (%v), stderr %q", out.String(), err, errOut.String())
	}
}

func TestRatesAndTicks(t *testing.T) {
	// 10 events in [0, 1) and 3 in the last, half-length bin [1, 1.5).
	var times []float64
	for i := range 10 {
		times = append(times, float64(i)/10)
	}
	times = append(times, 1.1, 1.2, 1.3)
	pts := rates(times, 1, 1.5)
	if len(pts) != 3 || pts[0].Y != 10 || pts[1].Y != 6 || pts[2].X != 1.5 {
		t.Errorf("rates: %v", pts)
	}
	for _, c := range []struct{ in, want float64 }{{0.06, 0.1}, {0.1, 0.1}, {0.11, 0.2}, {3, 5}, {7, 10}, {0, 1}} {
		if got := niceStep(c.in); got != c.want {
			t.Errorf("niceStep(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	var labels []string
	for _, tk := range (timeTicks{}).Ticks(0, 2.65) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if got := strings.Join(labels, " "); got != "0.0 0.5 1.0 1.5 2.0 2.5" {
		t.Errorf("time tick labels %q", got)
	}
	labels = labels[:0]
	for _, tk := range (logTicks{}).Ticks(12, 650) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if got := strings.Join(labels, " "); got != "20 50 100 200 500" {
		t.Errorf("log tick labels %q", got)
	}
}
