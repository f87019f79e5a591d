package main

// report.html: a self-contained page next to report.json that people can
// read. It plots what the replicas' timelines (homes/replica-<id>/
// timeline.jsonl) and the clients' results (clients/client-<i>.jsonl) say
// happened over time: commits and throughput, client latency, and the
// rounds each replica entered by QC or TC, with every injected fault
// (timeline events "fault") marked on the time axis. The plots are PNGs
// embedded as data URIs, so the file can be mailed or attached to an issue
// on its own. `diembft run` writes it at the end of a run, `diembft verify`
// and `diembft report` write it again from a run directory.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"html/template"
	"image/color"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/diembft/diembft/node"
	"github.com/diembft/diembft/node/client"
	"github.com/diembft/diembft/olympus"
)

const htmlReportFile = "report.html"

// maxFaultRows bounds the fault event table (a probabilistic drop can fire
// thousands of times; the plots still mark every one).
const maxFaultRows = 200

var reportCmd = &cobra.Command{
	Use:   "report RUN_DIR",
	Short: "Write RUN_DIR/report.html: plots and tables of a finished run",
	Long: `Write RUN_DIR/report.html from a finished run directory of diembft run: one
self-contained page (plots embedded as PNG) with the verdict and problems of
report.json, committed requests and throughput over time, each accepted
request's latency at its submission time, the rounds each replica entered by
QC or by TC, every injected fault marked on the time axis, and per-replica
tables. The plots come from the replicas' homes/replica-<id>/timeline.jsonl
and the clients' clients/client-<i>.jsonl. If RUN_DIR has no report.json the
run is judged again first, as diembft verify does. diembft run writes the
page at the end of a run and diembft verify writes it again.`,
	Args: exactArgs(1, "RUN_DIR"),
	RunE: func(cmd *cobra.Command, args []string) error {
		dir := args[0]
		rep, err := loadReport(dir)
		if err != nil {
			return err
		}
		path, err := writeHTMLReport(dir, rep)
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), path)
		return nil
	},
}

func init() { rootCmd.AddCommand(reportCmd) }

// loadReport reads dir/report.json, or judges the run again from its files
// when there is none.
func loadReport(dir string) (*Report, error) {
	if err := runDirArg(dir); err != nil {
		return nil, err
	}
	var rep Report
	err := readJSON(filepath.Join(dir, reportFile), &rep)
	switch {
	case err == nil:
		return &rep, nil
	case errors.Is(err, fs.ErrNotExist):
		return verifyRun(dir)
	default:
		return nil, usageErrorf("%v", err)
	}
}

// noteHTMLReport writes dir/report.html for rep and says on w where it is,
// or why it is not there: the page never changes a run's verdict.
func noteHTMLReport(w io.Writer, dir string, rep *Report) {
	path, err := writeHTMLReport(dir, rep)
	if err != nil {
		fmt.Fprintf(w, "  html report not written: %v\n", err)
		return
	}
	fmt.Fprintf(w, "  html report: %s\n", path)
}

// verifyNoteWriter is where `diembft verify` says where report.html is:
// with the summary on stdout, or on stderr when stdout is JSON.
func verifyNoteWriter(cmd *cobra.Command) io.Writer {
	if verifyJSON {
		return cmd.ErrOrStderr()
	}
	return cmd.OutOrStdout()
}

// writeHTMLReport writes dir/report.html (through a temporary file, so a
// reader never sees half a page) and returns its path.
func writeHTMLReport(dir string, rep *Report) (string, error) {
	data := loadRunData(dir, rep)
	page, err := buildHTMLReport(data, rep)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, htmlReportFile)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, page, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return path, nil
}

// replicaFiles is what a replica left in its home for the report.
type replicaFiles struct {
	events []node.Event // in file order (time order)
	stats  *node.Stats  // nil without stats.json
}

// runData is everything report.html shows besides report.json.
type runData struct {
	dir      string
	info     *RunInfo // nil without run.json
	replicas []int    // ids, sorted
	files    map[int]*replicaFiles
	// records[i] are client i's accepted results, one per request.
	records map[int][]client.Record
	faults  []node.Event // every fault event of every replica, by time
	// t0 is the first event or submission (Unix ms), the plots' time zero;
	// end is the last, in seconds after t0.
	t0    int64
	end   float64
	notes []string // files missing or unreadable, said on the page
}

// secs is t (Unix ms) in seconds since the run's time zero.
func (d *runData) secs(t int64) float64 { return float64(t-d.t0) / 1000 }

func loadRunData(dir string, rep *Report) *runData {
	d := &runData{dir: dir, files: make(map[int]*replicaFiles), records: make(map[int][]client.Record)}
	var info RunInfo
	if err := readJSON(filepath.Join(dir, runFile), &info); err == nil {
		d.info = &info
	}

	ids := make(map[int]bool)
	for id := range rep.Replicas {
		ids[id] = true
	}
	if d.info != nil {
		for id := range d.info.Replicas {
			ids[id] = true
		}
	}
	homes, _ := filepath.Glob(filepath.Join(dir, olympus.HomesDir, "replica-*"))
	for _, h := range homes {
		if id, err := strconv.Atoi(filepath.Base(h)[len("replica-"):]); err == nil && id >= 0 {
			ids[id] = true
		}
	}
	for id := range ids {
		d.replicas = append(d.replicas, id)
	}
	slices.Sort(d.replicas)

	var missing []int
	for _, id := range d.replicas {
		home := replicaHome(dir, id)
		rf := &replicaFiles{}
		d.files[id] = rf
		evs, bad, err := readTimeline(filepath.Join(home, node.TimelineFile))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, id)
		case err != nil:
			d.notes = append(d.notes, fmt.Sprintf("replica %d's timeline: %v", id, err))
		}
		if bad > 0 {
			d.notes = append(d.notes, fmt.Sprintf("replica %d's timeline: %d unreadable line%s skipped", id, bad, plural(bad)))
		}
		rf.events = evs
		var st node.Stats
		if err := readJSON(filepath.Join(home, "stats.json"), &st); err == nil {
			rf.stats = &st
		}
		for _, ev := range evs {
			if ev.Kind == "fault" {
				d.faults = append(d.faults, ev)
			}
		}
	}
	if len(missing) > 0 {
		d.notes = append(d.notes, fmt.Sprintf("no %s for replica%s %s (the plots leave %s out)",
			node.TimelineFile, plural(len(missing)), joinInts(missing), map[bool]string{true: "it", false: "them"}[len(missing) == 1]))
	}
	slices.SortStableFunc(d.faults, func(a, b node.Event) int { return int(a.T - b.T) })

	paths, _ := filepath.Glob(filepath.Join(dir, clientsDir, "client-*.jsonl"))
	for _, p := range paths {
		var i int
		if _, err := fmt.Sscanf(filepath.Base(p), "client-%d.jsonl", &i); err != nil {
			continue
		}
		recs, err := readWith(p, client.ReadRecords)
		if err != nil {
			d.notes = append(d.notes, fmt.Sprintf("client %d's results: %v", i, err))
			continue
		}
		seen := make(map[uint64]bool, len(recs))
		for _, r := range recs {
			if !seen[r.Seq] {
				seen[r.Seq] = true
				d.records[i] = append(d.records[i], r)
			}
		}
	}

	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	see := func(t int64) { first, last = min(first, t), max(last, t) }
	for _, rf := range d.files {
		for _, ev := range rf.events {
			see(ev.T)
		}
	}
	for _, recs := range d.records {
		for _, r := range recs {
			see(r.SubmittedMs)
			see(r.SubmittedMs + int64(math.Ceil(r.LatencyMs)))
		}
	}
	if first <= last {
		d.t0, d.end = first, float64(last-first)/1000
	}
	return d
}

// readTimeline reads a timeline.jsonl, skipping lines that do not parse (a
// replica killed mid-write leaves half a line) and counting them.
func readTimeline(path string) ([]node.Event, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var evs []node.Event
	bad := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var ev node.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			bad++
			continue
		}
		evs = append(evs, ev)
	}
	return evs, bad, sc.Err()
}

func joinInts(xs []int) string {
	var b bytes.Buffer
	for i, x := range xs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(x))
	}
	return b.String()
}

// Page model.

type htmlPage struct {
	Report    *Report
	Verdict   string
	Dir       string
	Start     string // the plots' time zero, wall clock
	Generated string
	Version   string
	Figures   []htmlFigure
	Replicas  []replicaRow
	Faults    []faultRow
	MoreFault int // fault events left out of the table
	Notes     []string
}

type htmlFigure struct {
	ID, Title string
	// Img is the <img> element with the PNG as a data URI, built here
	// because html/template would escape every '+' of the base64 text.
	Img     template.HTML
	Caption string
	Missing string // why there is no plot
}

type replicaRow struct {
	ID                      int
	Faulty                  bool
	Height, Round, ByQC     string
	ByTC, Timeouts, Commits string
	Faults, Starts          string
}

type faultRow struct {
	Label   string
	T       string
	Replica int
	Round   string
	Detail  string
}

func buildHTMLReport(d *runData, rep *Report) ([]byte, error) {
	page := htmlPage{
		Report:    rep,
		Verdict:   "ok",
		Dir:       d.dir,
		Generated: time.Now().Format("2006-01-02 15:04:05 MST"),
		Version:   versionString(),
		Notes:     d.notes,
	}
	if abs, err := filepath.Abs(d.dir); err == nil {
		page.Dir = abs
	}
	if !rep.OK {
		page.Verdict = "FAILED"
	}
	if d.t0 != 0 {
		page.Start = time.UnixMilli(d.t0).Format("2006-01-02 15:04:05.000 MST")
	}
	marks := d.faultMarks()
	for _, f := range []func(*runData, *Report, []float64, []string) htmlFigure{commitsFigure, latencyFigure, roundsFigure} {
		page.Figures = append(page.Figures, f(d, rep, marks.xs, marks.labels))
	}
	page.Replicas = d.replicaRows(rep)
	for i, ev := range d.faults {
		if i == maxFaultRows {
			page.MoreFault = len(d.faults) - maxFaultRows
			break
		}
		row := faultRow{Label: faultLabel(i), T: fmt.Sprintf("%.3f", d.secs(ev.T)), Replica: ev.Replica, Round: "–", Detail: ev.Detail}
		if ev.Round > 0 {
			row.Round = strconv.FormatUint(ev.Round, 10)
		}
		page.Faults = append(page.Faults, row)
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, page); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func faultLabel(i int) string { return fmt.Sprintf("F%d", i+1) }

// faultMarkLabel is the label of fault i on the plots: its mark and the
// first word of its detail (the fault's type), kept short.
func faultMarkLabel(i int, ev node.Event) string {
	l := faultLabel(i)
	if w := strings.Fields(ev.Detail); len(w) > 0 {
		word := []rune(w[0])
		if len(word) > 12 {
			word = append(word[:11], '…')
		}
		l += " " + string(word)
	}
	return l
}

type marks struct {
	xs     []float64
	labels []string
}

func (d *runData) faultMarks() marks {
	var m marks
	for i, ev := range d.faults {
		m.xs = append(m.xs, d.secs(ev.T))
		m.labels = append(m.labels, faultMarkLabel(i, ev))
	}
	return m
}

func (d *runData) replicaRows(rep *Report) []replicaRow {
	dash := "–"
	num := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	var rows []replicaRow
	for _, id := range d.replicas {
		rf := d.files[id]
		var height, maxRound uint64
		var qc, tc, commits, faults, starts int
		for _, ev := range rf.events {
			switch ev.Kind {
			case "round":
				maxRound = max(maxRound, ev.Round)
				if ev.ByTC {
					tc++
				} else {
					qc++
				}
			case "commit":
				commits++
				height = max(height, ev.Height)
			case "start":
				starts++
				height = max(height, ev.Height)
			case "fault":
				faults++
			}
		}
		row := replicaRow{ID: id, Height: dash, Round: dash, ByQC: dash, ByTC: dash, Timeouts: dash, Commits: dash,
			Faults: strconv.Itoa(faults), Starts: dash}
		if d.info != nil {
			row.Faulty = slices.Contains(d.info.Faulty, id)
		}
		if len(rf.events) > 0 {
			row.Height, row.Round = strconv.FormatUint(height, 10), strconv.FormatUint(maxRound, 10)
			row.ByQC, row.ByTC, row.Commits = strconv.Itoa(qc), strconv.Itoa(tc), strconv.Itoa(commits)
			row.Starts = strconv.Itoa(starts)
		} else {
			row.Faults = dash
		}
		// stats.json counts over the replica's last life only when it
		// restarted; the timeline covers every life. Prefer the timeline
		// for counts and take stats.json when there is no timeline.
		if st := rf.stats; st != nil {
			row.Timeouts = num(st.Timeouts)
			if len(rf.events) == 0 {
				row.Height, row.Round, row.ByQC, row.ByTC, row.Commits = num(st.Height), num(st.Round), num(st.RoundsByQC), num(st.RoundsByTC), num(st.Commits)
			}
		}
		// The ledger copied into ledgers/ is the final word on height.
		if h, ok := rep.Ledgers.Heights[strconv.Itoa(id)]; ok {
			row.Height = strconv.Itoa(h)
		}
		rows = append(rows, row)
	}
	return rows
}

// Figures.

const figureWidthPx = 1180

// timeAxis sets the shared time axis of every panel (so that the figures
// line up with each other and the fault markers) and adds the markers.
func (d *runData) timeAxis(p *plot.Plot, xs []float64, labels []string) {
	if len(xs) > 0 {
		p.Add(newFaultMarks(xs, labels))
	}
	p.X.Tick.Marker = timeTicks{}
	p.X.Min, p.X.Max = 0, max(d.end, 0.001)
	if len(xs) > 0 {
		p.X.Max = max(p.X.Max, slices.Max(xs))
	}
}

func (d *runData) timeLabel() string { return "seconds since the first event of the run" }

func addFaultLegend(l *plot.Legend, xs []float64) {
	if len(xs) > 0 {
		l.Add(fmt.Sprintf("injected fault (%d)", len(xs)), newFaultMarks(nil, nil))
	}
}

func figure(id, title string, png []byte, err error, caption string) htmlFigure {
	f := htmlFigure{ID: id, Title: title, Caption: caption}
	if err != nil {
		f.Missing = fmt.Sprintf("The plot could not be drawn: %v", err)
		return f
	}
	f.Img = template.HTML(fmt.Sprintf(`<img src="data:image/png;base64,%s" alt="%s">`,
		base64.StdEncoding.EncodeToString(png), html.EscapeString(title)))
	return f
}

func missingFigure(id, title, why string) htmlFigure {
	return htmlFigure{ID: id, Title: title, Missing: why}
}

// commitsFigure: each replica's ledger height over time, and committed
// requests per second (the committee's, and the clients' acceptances).
func commitsFigure(d *runData, rep *Report, xs []float64, labels []string) htmlFigure {
	const id, title = "commits", "Commits and throughput over time"
	var firstCommit []float64 // per request: when the first replica committed it
	var committee uint64
	var all []node.Event
	for _, rid := range d.replicas {
		for _, ev := range d.files[rid].events {
			if ev.Kind == "commit" {
				all = append(all, ev)
			}
		}
	}
	slices.SortStableFunc(all, func(a, b node.Event) int { return int(a.T - b.T) })
	for _, ev := range all {
		for ; committee < ev.Height; committee++ {
			firstCommit = append(firstCommit, d.secs(ev.T))
		}
	}
	var accepted []float64
	for _, recs := range d.records {
		for _, r := range recs {
			accepted = append(accepted, d.secs(r.SubmittedMs)+r.LatencyMs/1000)
		}
	}
	if len(all) == 0 && len(accepted) == 0 {
		return missingFigure(id, title, "No commits: the replicas' timelines hold no commit and no client accepted a result.")
	}

	top := newPlot("Ledger height per replica", "", "committed requests")
	topLegend := newLegend()
	for i, rid := range d.replicas {
		var pts plotter.XYs
		for _, ev := range d.files[rid].events {
			switch ev.Kind {
			case "start", "commit":
				pts = append(pts, plotter.XY{X: d.secs(ev.T), Y: float64(ev.Height)})
			}
		}
		if len(pts) == 0 {
			continue
		}
		if evs := d.files[rid].events; len(evs) > 0 { // hold the last height until the replica's last event
			pts = append(pts, plotter.XY{X: d.secs(evs[len(evs)-1].T), Y: pts[len(pts)-1].Y})
		}
		l, err := xyLine(pts, seriesColor(i), vg.Points(1.5), true)
		if err != nil {
			return figure(id, title, nil, err, "")
		}
		top.Add(l)
		topLegend.Add(replicaName(d, rid), l)
	}
	top.Y.Min = 0
	d.timeAxis(top, xs, labels)
	addFaultLegend(&topLegend, xs)

	bin := niceStep(max(d.end, 0.001) / 40)
	bottom := newPlot(fmt.Sprintf("Committed requests per second (%s s bins)", strconv.FormatFloat(bin, 'f', -1, 64)),
		d.timeLabel(), "requests / s")
	bottomLegend := newLegend()
	peak := 0.0
	for i, s := range []struct {
		name  string
		times []float64
	}{
		{"committed (first replica)", firstCommit},
		{"accepted by clients", accepted},
	} {
		if len(s.times) == 0 {
			continue
		}
		pts := rates(s.times, bin, d.end)
		for _, p := range pts {
			peak = max(peak, p.Y)
		}
		l, err := xyLine(pts, []color.Color{darkGray, palette[2]}[i], vg.Points(1.5), true)
		if err != nil {
			return figure(id, title, nil, err, "")
		}
		if i == 1 {
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(2)}
		}
		bottom.Add(l)
		bottomLegend.Add(s.name, l)
	}
	bottom.Y.Min = 0
	d.timeAxis(bottom, xs, labels)
	addFaultLegend(&bottomLegend, xs)

	png, err := renderPNG(figureWidthPx, 620, panel{top, topLegend}, panel{bottom, bottomLegend})
	caption := fmt.Sprintf("Top: each replica's ledger height (committed requests) as its timeline records it. "+
		"Bottom: requests committed per second, counting each request when the first replica commits it, and results accepted by the clients "+
		"(f+1 matching replies). Peak %.0f requests/s; over the run %.1f requests/s, p50 latency %.1f ms (report.json).",
		peak, rep.ThroughputOpsPerS, rep.LatencyMs.P50)
	return figure(id, title, png, err, caption+faultCaption(xs))
}

// rates bins times (seconds) into bins of width bin over [0, end] and
// returns each bin's rate per second as the points of a step line. The last
// bin is usually cut short by the end of the run; its rate is over the part
// that exists.
func rates(times []float64, bin, end float64) plotter.XYs {
	n := max(int(math.Ceil(end/bin-1e-9)), 1)
	counts := make([]int, n)
	for _, t := range times {
		counts[min(max(int(t/bin), 0), n-1)]++
	}
	pts := make(plotter.XYs, 0, n+1)
	for i, c := range counts {
		width := bin
		if i == n-1 {
			if w := end - float64(i)*bin; w > bin/10 {
				width = min(w, bin)
			}
		}
		pts = append(pts, plotter.XY{X: float64(i) * bin, Y: float64(c) / width})
	}
	return append(pts, plotter.XY{X: max(end, float64(n-1)*bin), Y: pts[n-1].Y})
}

func replicaName(d *runData, id int) string {
	if d.info != nil && slices.Contains(d.info.Faulty, id) {
		return fmt.Sprintf("replica %d (faulty)", id)
	}
	return fmt.Sprintf("replica %d", id)
}

func faultCaption(xs []float64) string {
	switch len(xs) {
	case 0:
		return " No fault was injected."
	case 1:
		return " The dashed red line marks the injected fault F1 (see the fault table)."
	default:
		return fmt.Sprintf(" Dashed red lines mark the %d injected faults F1–F%d (see the fault table).", len(xs), len(xs))
	}
}

// latencyFigure: every accepted request's latency at its submission time.
func latencyFigure(d *runData, rep *Report, xs []float64, labels []string) htmlFigure {
	const id, title = "latency", "Client latency over time"
	clients := make([]int, 0, len(d.records))
	var lat []float64
	for i, recs := range d.records {
		clients = append(clients, i)
		for _, r := range recs {
			lat = append(lat, r.LatencyMs)
		}
	}
	if len(lat) == 0 {
		return missingFigure(id, title, "No client accepted a result.")
	}
	slices.Sort(clients)
	p50, p99 := client.Percentile(lat, 50), client.Percentile(lat, 99)
	lo, hi := slices.Min(lat), slices.Max(lat)
	floor := 0.01 // ms: a log axis needs positive values
	logY := hi/max(lo, floor) > 30
	p := newPlot("Latency of each accepted request, at its submission", d.timeLabel(), "latency (ms)")
	legend := newLegend()
	// Many clients share one colour; a few get one each.
	perClient := len(clients) <= len(palette)
	var shared plotter.XYs
	for k, i := range clients {
		var pts plotter.XYs
		for _, r := range d.records[i] {
			pts = append(pts, plotter.XY{X: d.secs(r.SubmittedMs), Y: max(r.LatencyMs, floor)})
		}
		if !perClient {
			shared = append(shared, pts...)
			continue
		}
		s, err := xyScatter(pts, seriesColor(k), vg.Points(1.6), draw.CircleGlyph{})
		if err != nil {
			return figure(id, title, nil, err, "")
		}
		p.Add(s)
		legend.Add(fmt.Sprintf("client %d (%d)", i, len(pts)), s)
	}
	if !perClient {
		s, err := xyScatter(shared, seriesColor(0), vg.Points(1.4), draw.CircleGlyph{})
		if err != nil {
			return figure(id, title, nil, err, "")
		}
		p.Add(s)
		legend.Add(fmt.Sprintf("%d clients (%d)", len(clients), len(shared)), s)
	}
	for _, q := range []struct {
		name   string
		v      float64
		dashes []vg.Length
	}{
		{fmt.Sprintf("p50 %.1f ms", p50), p50, []vg.Length{vg.Points(6), vg.Points(3)}},
		{fmt.Sprintf("p99 %.1f ms", p99), p99, []vg.Length{vg.Points(2), vg.Points(2)}},
	} {
		h := hLine{y: max(q.v, floor), style: draw.LineStyle{Color: darkGray, Width: vg.Points(1), Dashes: q.dashes}}
		p.Add(h)
		legend.Add(q.name, h)
	}
	if logY {
		p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, logTicks{}
		p.Y.Min, p.Y.Max = max(lo, floor)/1.3, hi*1.3
	} else {
		p.Y.Min, p.Y.Max = 0, hi*1.05
	}
	d.timeAxis(p, xs, labels)
	addFaultLegend(&legend, xs)
	png, err := renderPNG(figureWidthPx, 380, panel{p, legend})
	scale := "linear"
	if logY {
		scale = "logarithmic"
	}
	caption := fmt.Sprintf("Each point is one accepted request (%d in all): its latency from first transmission to acceptance, "+
		"at the time it was first sent; y axis %s. p50 = %.1f ms, p99 = %.1f ms, max %.1f ms.", len(lat), scale, p50, p99, hi)
	return figure(id, title, png, err, caption+faultCaption(xs))
}

// roundsFigure: the round each replica entered over time, by QC or by TC.
func roundsFigure(d *runData, rep *Report, xs []float64, labels []string) htmlFigure {
	const id, title = "rounds", "Rounds over time"
	p := newPlot("Round entered by each replica", d.timeLabel(), "round")
	legend := newLegend()
	qcGlyph := func(c color.Color) draw.GlyphStyle {
		return draw.GlyphStyle{Color: c, Radius: vg.Points(1.3), Shape: draw.CircleGlyph{}}
	}
	tcGlyph := func(c color.Color) draw.GlyphStyle {
		return draw.GlyphStyle{Color: c, Radius: vg.Points(4.5), Shape: draw.PyramidGlyph{}}
	}
	drawn := false
	var qcTotal, tcTotal int
	for i, rid := range d.replicas {
		clr := seriesColor(i)
		var lives []plotter.XYs // one line per process lifetime: a restart starts a new one
		var qc, tc plotter.XYs
		for _, ev := range d.files[rid].events {
			switch ev.Kind {
			case "start":
				lives = append(lives, nil)
			case "round":
				if len(lives) == 0 {
					lives = append(lives, nil)
				}
				pt := plotter.XY{X: d.secs(ev.T), Y: float64(ev.Round)}
				lives[len(lives)-1] = append(lives[len(lives)-1], pt)
				if ev.ByTC {
					tc = append(tc, pt)
				} else {
					qc = append(qc, pt)
				}
			}
		}
		qcTotal, tcTotal = qcTotal+len(qc), tcTotal+len(tc)
		var first *plotter.Line
		for _, pts := range lives {
			if len(pts) == 0 {
				continue
			}
			l, err := xyLine(pts, clr, vg.Points(1), true)
			if err != nil {
				return figure(id, title, nil, err, "")
			}
			p.Add(l)
			if first == nil {
				first = l
			}
		}
		if first == nil {
			continue
		}
		drawn = true
		legend.Add(replicaName(d, rid), first)
		for _, s := range []struct {
			pts plotter.XYs
			g   draw.GlyphStyle
		}{{qc, qcGlyph(clr)}, {tc, tcGlyph(clr)}} {
			if len(s.pts) == 0 {
				continue
			}
			sc, err := xyScatter(s.pts, s.g.Color, s.g.Radius, s.g.Shape)
			if err != nil {
				return figure(id, title, nil, err, "")
			}
			p.Add(sc)
		}
	}
	if !drawn {
		return missingFigure(id, title, "No rounds: the replicas' timelines hold no round event.")
	}
	legend.Add("entered by QC", glyphThumb(qcGlyph(darkGray)))
	legend.Add("entered by TC", glyphThumb(tcGlyph(darkGray)))
	p.Y.Min = 0
	d.timeAxis(p, xs, labels)
	addFaultLegend(&legend, xs)
	png, err := renderPNG(figureWidthPx, 380, panel{p, legend})
	caption := fmt.Sprintf("The round each replica entered, over time: small dots are rounds entered through a QC (the previous round's block was certified), "+
		"triangles rounds entered through a TC (the previous round timed out). Timelines hold %d rounds entered by QC and %d by TC over all replicas; "+
		"report.json: highest round %d, at most %d by QC and %d by TC on one replica.", qcTotal, tcTotal, rep.Rounds.Highest, rep.Rounds.ByQC, rep.Rounds.ByTC)
	return figure(id, title, png, err, caption+faultCaption(xs))
}

var pageTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>diembft run {{.Report.Name}}: {{.Verdict}}</title>
<style>
body { font-family: "Liberation Sans", "DejaVu Sans", Arial, sans-serif; color: #222; margin: 0; background: #f6f6f6; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 20px 40px; background: #fff; }
h1 { font-size: 24px; margin: 4px 0 8px; }
h2 { font-size: 18px; margin: 26px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.verdict { display: inline-block; padding: 2px 12px; border-radius: 4px; color: #fff; font-weight: bold; }
.verdict.ok { background: #2ca02c; } .verdict.FAILED { background: #d62728; }
.meta { color: #666; font-size: 13px; }
table { border-collapse: collapse; font-size: 14px; margin: 6px 0; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th { background: #f0f0f0; } td.l, th.l { text-align: left; }
.summary td:first-child { text-align: left; color: #555; }
.problems li { color: #b00; } .none { color: #2a2; }
figure { margin: 10px 0 20px; } figure img { max-width: 100%; display: block; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #444; margin-top: 4px; }
.missing { padding: 20px; background: #fafafa; border: 1px dashed #ccc; color: #777; }
.notes li { color: #8a6d00; font-size: 13px; }
.grid { display: flex; gap: 32px; align-items: flex-start; }
.grid > div:last-child { flex: 1; min-width: 0; }
</style>
</head>
<body><main>
<h1>Run {{.Report.Name}} <span class="verdict {{.Verdict}}">{{.Verdict}}</span></h1>
<div class="meta">seed {{.Report.Seed}} · {{.Report.Replicas}} replicas (f = {{.Report.F}}) · {{.Report.Clients}} clients · {{.Dir}}{{if .Start}} · time zero {{.Start}}{{end}}</div>

<div class="grid">
<div>
<h2>Summary (report.json)</h2>
<table class="summary">
<tr><td>requests submitted / committed / verified</td><td>{{.Report.Requests.Submitted}} / {{.Report.Requests.Committed}} / {{.Report.Requests.Verified}}</td></tr>
<tr><td>honest ledgers</td><td>{{if .Report.Ledgers.Consistent}}consistent{{else}}DIVERGENT{{end}}</td></tr>
<tr><td>safety violations</td><td>{{.Report.SafetyViolations}}</td></tr>
<tr><td>rounds: highest / by QC / by TC</td><td>{{.Report.Rounds.Highest}} / {{.Report.Rounds.ByQC}} / {{.Report.Rounds.ByTC}}</td></tr>
<tr><td>throughput</td><td>{{printf "%.1f" .Report.ThroughputOpsPerS}} requests/s over {{printf "%.2f" .Report.DurationS}} s</td></tr>
<tr><td>latency p50 / p99</td><td>{{printf "%.1f" .Report.LatencyMs.P50}} ms / {{printf "%.1f" .Report.LatencyMs.P99}} ms</td></tr>
</table>
</div>
<div>
<h2>Problems</h2>
{{if .Report.Problems}}<ul class="problems">{{range .Report.Problems}}<li>{{.}}</li>{{end}}</ul>{{else}}<p class="none">None: every request committed and verified, the honest ledgers agree{{if .Report.Faults}}, every configured fault fired{{end}}.</p>{{end}}
<h2>Configured faults</h2>
{{if .Report.Faults}}<table><tr><th class="l">type</th><th class="l">src</th><th class="l">msg</th><th>fired</th></tr>
{{range .Report.Faults}}<tr><td class="l">{{.Type}}</td><td class="l">{{.Src}}</td><td class="l">{{.Msg}}</td><td>{{.Fired}}{{if .Note}} ({{.Note}}){{end}}</td></tr>
{{end}}</table>{{else}}<p>None.</p>{{end}}
</div>
</div>

<h2>Replicas</h2>
<table class="replicas">
<tr><th>replica</th><th>final height</th><th>highest round</th><th>rounds by QC</th><th>rounds by TC</th><th>timeouts sent</th><th>blocks committed</th><th>faults fired</th><th>starts</th></tr>
{{range .Replicas}}<tr><td>{{.ID}}{{if .Faulty}} (faulty){{end}}</td><td>{{.Height}}</td><td>{{.Round}}</td><td>{{.ByQC}}</td><td>{{.ByTC}}</td><td>{{.Timeouts}}</td><td>{{.Commits}}</td><td>{{.Faults}}</td><td>{{.Starts}}</td></tr>
{{end}}</table>
<div class="meta">Final height is the length of the ledger in ledgers/; rounds, blocks, faults and starts are counted from the replica's timeline, timeouts from its stats.json (– when missing).</div>
{{if .Notes}}<ul class="notes">{{range .Notes}}<li>{{.}}</li>{{end}}</ul>{{end}}

{{range .Figures}}<h2 id="{{.ID}}">{{.Title}}</h2>
<figure>{{if .Img}}{{.Img}}{{else}}<div class="missing">{{.Missing}}</div>{{end}}
{{if .Caption}}<figcaption>{{.Caption}}</figcaption>{{end}}</figure>
{{end}}

<h2 id="faults">Injected faults (timeline events)</h2>
{{if .Faults}}<table><tr><th class="l">mark</th><th>time (s)</th><th>replica</th><th>round</th><th class="l">detail</th></tr>
{{range .Faults}}<tr><td class="l">{{.Label}}</td><td>{{.T}}</td><td>{{.Replica}}</td><td>{{.Round}}</td><td class="l">{{.Detail}}</td></tr>
{{end}}</table>{{if .MoreFault}}<p>… and {{.MoreFault}} more (every one is marked on the plots).</p>{{end}}
{{else}}<p>No fault fired: no replica's timeline holds a fault event.</p>{{end}}

<p class="meta">Generated by diembft {{.Version}} at {{.Generated}}. Times are seconds since the first event of the run.</p>
</main></body>
</html>
`))
