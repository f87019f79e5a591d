package main

import (
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// chromiumFlags run headless Chromium with nothing but the page: no GPU, no
// network of its own, no first-run or background work. A fresh
// --user-data-dir is added per run. `make report-screenshot` uses the same.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
}

// screenshot renders page (an HTML file) with headless Chromium into a
// width × height PNG at out.
func screenshot(t *testing.T, page, out string, width, height int) {
	t.Helper()
	abs, err := filepath.Abs(page)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append(append([]string{}, chromiumFlags...),
		"--user-data-dir="+t.TempDir(),
		"--screenshot="+out,
		"--window-size="+strconv.Itoa(width)+","+strconv.Itoa(height),
		"file://"+abs)
	cmd := exec.CommandContext(ctx, chromiumPath, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // keep Chromium's files out of the real home
	if outp, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", chromiumPath, args, err, outp)
	}
}

// TestHTMLReportScreenshot renders the report of a synthetic run with
// faults in headless Chromium and checks that a real page came out: a PNG of
// the window's size, not one flat colour, with the plots (and their red
// fault markers) drawn. Set DIEMBFT_SCREENSHOT_OUT=FILE.png to keep the
// screenshot and look at it.
func TestHTMLReportScreenshot(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s is missing, so report.html is not rendered in a browser (apt-get install -y chromium to run this test)", chromiumPath)
	}
	dir := t.TempDir()
	rep := synthRun(t, dir, synthFaults, true)
	page, err := writeHTMLReport(dir, rep)
	if err != nil {
		t.Fatal(err)
	}
	const width, height = 1280, 2400
	out := filepath.Join(t.TempDir(), "report.png")
	screenshot(t, page, out, width, height)

	st, err := os.Stat(out)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if st.Size() < 50<<10 {
		t.Errorf("screenshot is only %d bytes", st.Size())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if keep := os.Getenv("DIEMBFT_SCREENSHOT_OUT"); keep != "" {
		if data, err := os.ReadFile(out); err == nil {
			_ = os.WriteFile(keep, data, 0o644)
		}
	}
	if b := img.Bounds(); b.Dx() != width || b.Dy() != height {
		t.Errorf("screenshot is %dx%d, want %dx%d", b.Dx(), b.Dy(), width, height)
	}
	colours, nonWhite := colourStats(img)
	if colours < 64 {
		t.Errorf("screenshot has %d distinct colours: not a rendered report", colours)
	}
	if total := img.Bounds().Dx() * img.Bounds().Dy(); nonWhite < total/50 {
		t.Errorf("screenshot is almost blank: %d of %d pixels are not white or the page background", nonWhite, total)
	}
	if n := faultPixels(img); n < 300 {
		t.Errorf("screenshot has %d pixels of fault markers: the plots did not render", n)
	}
}

// colourStats counts img's distinct colours and its pixels that are neither
// white nor the page's light grey background.
func colourStats(img image.Image) (distinct, nonWhite int) {
	seen := make(map[uint32]bool)
	eachPixel(img, func(r, g, b uint8) {
		seen[uint32(r)<<16|uint32(g)<<8|uint32(b)] = true
		if r < 0xf0 || g < 0xf0 || b < 0xf0 {
			nonWhite++
		}
	})
	return len(seen), nonWhite
}
