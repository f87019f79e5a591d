package main

// Plotting helpers for report.html: gonum/plot figures with the report's
// fonts and colours, vertical fault markers, legends outside the data area,
// and rendering to PNG.

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// figureDPI is the resolution figures are rendered at: one CSS pixel per
// image pixel on an ordinary screen.
const figureDPI = 96

// legendWidthPx is the strip to the right of a figure's panels that holds
// their legends, so that a legend never hides data.
const legendWidthPx = 170

var (
	sansFont = font.Font{Typeface: "Liberation", Variant: "Sans"}

	// palette is Tableau 10: distinct and readable on white.
	palette = []color.Color{
		color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xff, 0x7f, 0x0e, 0xff},
		color.RGBA{0x2c, 0xa0, 0x2c, 0xff}, color.RGBA{0x94, 0x67, 0xbd, 0xff},
		color.RGBA{0x8c, 0x56, 0x4b, 0xff}, color.RGBA{0xe3, 0x77, 0xc2, 0xff},
		color.RGBA{0x7f, 0x7f, 0x7f, 0xff}, color.RGBA{0xbc, 0xbd, 0x22, 0xff},
		color.RGBA{0x17, 0xbe, 0xcf, 0xff}, color.RGBA{0x39, 0x3b, 0x79, 0xff},
	}
	// faultColor is kept for fault markers only (no series uses red).
	faultColor = color.RGBA{0xd6, 0x27, 0x28, 0xff}
	gridColor  = color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
	darkGray   = color.RGBA{0x44, 0x44, 0x44, 0xff}
)

func seriesColor(i int) color.Color { return palette[i%len(palette)] }

// newPlot returns a plot with the report's fonts and a light grid.
func newPlot(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font = font.From(sansFont, 12)
	p.Title.Padding = vg.Points(4)
	p.X.Label.Text, p.Y.Label.Text = xLabel, yLabel
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = font.From(sansFont, 10)
		a.Tick.Label.Font = font.From(sansFont, 9)
	}
	g := plotter.NewGrid()
	g.Vertical.Color, g.Horizontal.Color = gridColor, gridColor
	p.Add(g)
	return p
}

// newLegend returns an empty legend in the report's font.
func newLegend() plot.Legend {
	l := plot.NewLegend()
	l.TextStyle.Font = font.From(sansFont, 9)
	l.Top, l.Left = true, true
	l.ThumbnailWidth = vg.Points(16)
	l.Padding = vg.Points(2.5)
	return l
}

// panel is one plot of a figure with its legend (drawn beside it).
type panel struct {
	plot   *plot.Plot
	legend plot.Legend
}

// renderPNG draws panels stacked top to bottom, their axes aligned, with
// each legend to the right of its panel, into a widthPx × heightPx PNG.
func renderPNG(widthPx, heightPx int, panels ...panel) (png []byte, err error) {
	defer func() {
		if r := recover(); r != nil { // gonum panics on what it cannot draw (e.g. a degenerate log axis)
			png, err = nil, fmt.Errorf("plot: %v", r)
		}
	}()
	px := func(n int) vg.Length { return vg.Length(n) * vg.Inch / figureDPI }
	c := vgimg.NewWith(vgimg.UseWH(px(widthPx), px(heightPx)), vgimg.UseDPI(figureDPI), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(c)
	area := draw.Crop(dc, 0, -px(legendWidthPx), 0, 0)
	rows := make([][]*plot.Plot, len(panels))
	for i, p := range panels {
		rows[i] = []*plot.Plot{p.plot}
	}
	pad := vg.Points(6)
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: pad, PadBottom: pad, PadLeft: pad, PadRight: pad, PadY: 2 * pad}
	canvases := plot.Align(rows, tiles, area)
	for i, p := range panels {
		p.plot.Draw(canvases[i][0])
		strip := canvases[i][0]
		strip.Min.X, strip.Max.X = area.Max.X+pad, dc.Max.X-pad
		if p.plot.Title.Text != "" { // start level with the data, below the title
			strip.Max.Y -= p.plot.Title.TextStyle.Rectangle(p.plot.Title.Text).Size().Y + p.plot.Title.Padding
		}
		p.legend.Draw(strip)
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// xyLine is a line through pts in colour clr, as steps when step is set (a
// value that holds until the next point).
func xyLine(pts plotter.XYs, clr color.Color, width vg.Length, step bool) (*plotter.Line, error) {
	l, err := plotter.NewLine(pts)
	if err != nil {
		return nil, err
	}
	l.Color, l.Width = clr, width
	if step {
		l.StepStyle = plotter.PostStep
	}
	return l, nil
}

// xyScatter is a scatter of pts with the given glyph.
func xyScatter(pts plotter.XYs, clr color.Color, radius vg.Length, shape draw.GlyphDrawer) (*plotter.Scatter, error) {
	s, err := plotter.NewScatter(pts)
	if err != nil {
		return nil, err
	}
	s.GlyphStyle = draw.GlyphStyle{Color: clr, Radius: radius, Shape: shape}
	return s, nil
}

// hLine is a horizontal reference line across the data area at y.
type hLine struct {
	y     float64
	style draw.LineStyle
}

func (h hLine) Plot(c draw.Canvas, plt *plot.Plot) {
	_, trY := plt.Transforms(&c)
	y := trY(h.y)
	if c.ContainsY(y) {
		c.StrokeLine2(h.style, c.Min.X, y, c.Max.X, y)
	}
}

func (h hLine) Thumbnail(c *draw.Canvas) {
	y := (c.Min.Y + c.Max.Y) / 2
	c.StrokeLine2(h.style, c.Min.X, y, c.Max.X, y)
}

// faultMarks draws each injected fault as a dashed vertical line across the
// data area, labelled at the top (labels that would overlap move down a
// row, and are left out when three rows are not enough; the line always
// stays).
type faultMarks struct {
	xs     []float64
	labels []string
	style  draw.LineStyle
	text   text.Style
}

const faultLabelRows = 3

func newFaultMarks(xs []float64, labels []string) *faultMarks {
	return &faultMarks{
		xs: xs, labels: labels,
		style: draw.LineStyle{Color: faultColor, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(4), vg.Points(2)}},
		text: text.Style{Color: faultColor, Font: font.From(sansFont, 9), Handler: plot.DefaultTextHandler,
			XAlign: draw.XLeft, YAlign: draw.YTop},
	}
}

func (m *faultMarks) Plot(c draw.Canvas, plt *plot.Plot) {
	trX, _ := plt.Transforms(&c)
	lineH := m.text.Height("F") + vg.Points(2)
	var free [faultLabelRows]vg.Length // the x from which each row is free
	for r := range free {
		free[r] = vg.Length(math.Inf(-1))
	}
	gap := vg.Points(2)
	for i, x := range m.xs {
		px := trX(x)
		if !c.ContainsX(px) {
			continue
		}
		c.StrokeLine2(m.style, px, c.Min.Y, px, c.Max.Y)
		if i >= len(m.labels) || m.labels[i] == "" {
			continue
		}
		w := m.text.Width(m.labels[i])
		for r := range free {
			if px < free[r] {
				continue
			}
			lx, ty := px+gap, c.Max.Y-vg.Length(r)*lineH-gap
			if lx+w > c.Max.X { // at the right edge, put the label left of the line
				lx = px - gap - w
			}
			c.FillPolygon(color.NRGBA{0xff, 0xff, 0xff, 0xd0}, []vg.Point{
				{X: lx - 1, Y: ty + 1}, {X: lx + w + 1, Y: ty + 1}, {X: lx + w + 1, Y: ty - lineH + 1}, {X: lx - 1, Y: ty - lineH + 1},
			})
			c.FillText(m.text, vg.Point{X: lx, Y: ty}, m.labels[i])
			free[r] = px + gap + w + gap
			break
		}
	}
}

// DataRange makes the x axis include every fault and leaves y alone.
func (m *faultMarks) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = math.Inf(1), math.Inf(-1)
	for _, x := range m.xs {
		xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
	}
	return xmin, xmax, math.Inf(1), math.Inf(-1)
}

func (m *faultMarks) Thumbnail(c *draw.Canvas) {
	x := (c.Min.X + c.Max.X) / 2
	c.StrokeLine2(m.style, x, c.Min.Y, x, c.Max.Y)
}

// glyphThumb is a legend entry showing only a glyph.
type glyphThumb draw.GlyphStyle

func (g glyphThumb) Thumbnail(c *draw.Canvas) { c.DrawGlyph(draw.GlyphStyle(g), c.Center()) }

// timeTicks labels a time axis in seconds every nice step (about ten
// labels), with unlabelled minor ticks between; gonum's default ticker puts
// only two or three labels on a short run.
type timeTicks struct{}

func (timeTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return []plot.Tick{{Value: lo, Label: strconv.FormatFloat(lo, 'f', -1, 64)}}
	}
	step := niceStep((hi - lo) / 10)
	minor := step / 5
	if m := step / math.Pow(10, math.Floor(math.Log10(step))); math.Abs(m-2) < 1e-9 {
		minor = step / 4
	}
	decimals := max(0, int(-math.Floor(math.Log10(step)+1e-9)))
	var ticks []plot.Tick
	for i := math.Ceil(lo/minor - 1e-9); i*minor <= hi+minor*1e-9; i++ {
		v := i * minor
		if v == 0 {
			v = 0 // not -0, which would be labelled "-0.0"
		}
		t := plot.Tick{Value: v}
		if r := v / step; math.Abs(r-math.Round(r)) < 1e-6 {
			t.Label = strconv.FormatFloat(v, 'f', decimals, 64)
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// logTicks marks a logarithmic axis at every multiple of each power of ten
// and labels 1, 2 and 5 times them (gonum's LogTicks labels powers of ten
// only, often just two on a latency axis).
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		p := math.Pow(10, e)
		for m := 1; m <= 9; m++ {
			v := float64(m) * p
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'g', 4, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// niceStep returns the smallest of 1, 2 and 5 times a power of ten that is
// at least x (x > 0): a readable bin width.
func niceStep(x float64) float64 {
	if x <= 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}
