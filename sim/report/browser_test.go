//go:build browser

package report

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium (apt-get install chromium).
const chromiumPath = "/usr/bin/chromium"

const doneMarker = "flotilla-report-test-done"

// TestReportOpensInHeadlessChromium opens the demo report from a file: URL,
// offline, and checks what a person would see: the page runs without a
// console error or exception, every chart is drawn with a non-zero size,
// the summary lists every run and the violation shows its replay command.
// It saves a screenshot to _out/report-screenshot.png.
func TestReportOpensInHeadlessChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s not found (apt-get install chromium): %v", chromiumPath, err)
	}
	dir := t.TempDir()
	r := demoReport()
	page := filepath.Join(dir, "sim-report.html")
	var html bytes.Buffer
	if err := WriteHTML(&html, r); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, html.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.WindowSize(1440, 900),
	)
	t.Cleanup(acancel) // stops the browser it started
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(bcancel)

	// Collect console messages from before the navigation on.
	cctx, ccancel := context.WithCancel(bctx)
	var (
		mu       sync.Mutex
		problems []string
		wg       sync.WaitGroup
	)
	msgs := chromedp.Console(cctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleLog && m.Text == doneMarker {
				return // everything the page logged before has been seen
			}
			if m.Type == chromedp.ConsoleError || m.IsException() || m.Type == chromedp.ConsoleWarning {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()

	if err := chromedp.Do(bctx,
		chromedp.EmulateViewport(1440, 900),
		chromedp.Navigate("file://"+page),
	); err != nil {
		t.Fatalf("open report: %v", err)
	}
	// report.js sets data-charts once it has drawn every chart.
	if _, err := chromedp.Run(bctx, chromedp.Poll[string](`document.documentElement.dataset.charts`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("charts never finished drawing: %v", err)
	}

	type chartInfo struct {
		Run, Kind     string
		Canvases      int
		Width, Height float64
		Series        int
		Legend        string
	}
	charts, err := chromedp.Run(bctx, chromedp.Evaluate[[]chartInfo](`Array.from(document.querySelectorAll('.chart')).map(el => {
		const c = el.querySelector('canvas'); const r = c ? c.getBoundingClientRect() : {width: 0, height: 0};
		return {Run: el.dataset.run, Kind: el.dataset.chart, Canvases: el.querySelectorAll('canvas').length,
			Width: r.width, Height: r.height, Series: el._uplot ? el._uplot.series.length : 0,
			Legend: (el.querySelector('.u-legend') || {}).textContent || ''};
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * len(r.Runs); len(charts) != want {
		t.Fatalf("found %d charts, want %d (versions and phases per run)", len(charts), want)
	}
	for _, c := range charts {
		if c.Canvases == 0 || c.Width < 300 || c.Height < 200 {
			t.Errorf("run %s %s chart: %d canvases, %.0fx%.0f px; want a drawn canvas", c.Run, c.Kind, c.Canvases, c.Width, c.Height)
		}
		if c.Series < 3 {
			t.Errorf("run %s %s chart has %d series, want time plus at least two curves", c.Run, c.Kind, c.Series)
		}
	}
	if !strings.Contains(charts[0].Legend, "v1.1.0") || !strings.Contains(charts[1].Legend, "RolledBack") {
		t.Errorf("legends do not name the curves: %q / %q", charts[0].Legend, charts[1].Legend)
	}
	// The canvas is not blank: some pixels in the plot area carry colour.
	painted, err := chromedp.Run(bctx, chromedp.Evaluate[int](`(() => {
		const c = document.querySelector('.chart canvas'), ctx = c.getContext('2d');
		const d = ctx.getImageData(0, 0, c.width, c.height).data; let n = 0;
		for (let i = 0; i < d.length; i += 4) { if (d[i+3] > 0 && !(d[i] > 240 && d[i+1] > 240 && d[i+2] > 240)) n++; }
		return n; })()`))
	if err != nil {
		t.Fatal(err)
	}
	if painted < 1000 {
		t.Errorf("first chart has only %d painted pixels; it looks blank", painted)
	}

	rows, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#summary tbody tr td:first-child')).map(td => td.textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(r.Runs) || rows[1] != r.Runs[1].Scenario {
		t.Errorf("summary scenarios = %q, want the %d run names verbatim (escaped, not executed)", rows, len(r.Runs))
	}
	replay, err := chromedp.Run(bctx, chromedp.Evaluate[string](`(document.querySelector('.violation .replay-cmd') || {}).textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if replay != r.Runs[1].Violation.Replay {
		t.Errorf("violation replay command = %q, want %q", replay, r.Runs[1].Violation.Replay)
	}
	injected, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('script').length`))
	if err != nil {
		t.Fatal(err)
	}
	if injected != 3 {
		t.Errorf("page has %d script elements, want 3 (data, uPlot, report): a scenario name injected markup", injected)
	}

	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(bytes.NewReader(shot)); err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	out := filepath.Join(repoRoot(t), "_out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "report-screenshot.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", filepath.Join(out, "report-screenshot.png"), len(shot))

	// Console messages arrive in order: once the marker is seen, nothing the
	// page logged while loading and drawing can still be in flight.
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[chromedp.Void](`console.log("`+doneMarker+`")`)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("console marker never arrived")
	}
	ccancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the page logged %d console errors/warnings/exceptions:\n%s", len(problems), strings.Join(problems, "\n"))
	}
}

// repoRoot is the directory holding go.mod, above the package directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.mod above %s", dir)
		}
	}
}
