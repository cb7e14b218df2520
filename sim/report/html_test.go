package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"image/png"
	"io"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

func renderHTML(t *testing.T, r Report) string {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteHTML(&buf, r); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

var dataRe = regexp.MustCompile(`(?s)<script type="application/json" id="flotilla-data">(.*?)</script>`)

// embeddedData parses the JSON the page's script draws from.
func embeddedData(t *testing.T, html string) pageData {
	t.Helper()
	m := dataRe.FindStringSubmatch(html)
	if m == nil {
		t.Fatal("page has no #flotilla-data script")
	}
	var d pageData
	if err := json.Unmarshal([]byte(m[1]), &d); err != nil {
		t.Fatalf("embedded data is not JSON: %v\n%.300s", err, m[1])
	}
	return d
}

func TestHTMLEmbedsEachRunsSamples(t *testing.T) {
	r := demoReport()
	html := renderHTML(t, r)
	d := embeddedData(t, html)
	if len(d.Runs) != len(r.Runs) {
		t.Fatalf("page data has %d runs, want %d", len(d.Runs), len(r.Runs))
	}
	for i, run := range r.Runs {
		got := d.Runs[i]
		if got.Scenario != run.Scenario || got.Seed != run.Seed || got.Devices != run.Devices {
			t.Errorf("run %d: data names %q seed %d devices %d, want %q %d %d", i, got.Scenario, got.Seed, got.Devices, run.Scenario, run.Seed, run.Devices)
		}
		if len(got.Times) != len(run.Times) || len(run.Times) < 10 {
			t.Fatalf("run %d: %d times in the page, %d recorded", i, len(got.Times), len(run.Times))
		}
		for j, tm := range run.Times {
			if math.Abs(got.Times[j]-tm.Seconds()) > 1e-9 {
				t.Fatalf("run %d sample %d: page time %v s, recorded %v", i, j, got.Times[j], tm)
			}
		}
		for _, pair := range []struct {
			name      string
			got, want Series
		}{{"versions", got.Versions, run.Versions}, {"phases", got.Phases, run.Phases}} {
			if fmt.Sprint(pair.got) != fmt.Sprint(pair.want) {
				t.Errorf("run %d %s: page has %v\nrecorded %v", i, pair.name, pair.got.Keys, pair.want.Keys)
			}
		}
		if len(got.Faults) != len(run.Faults) {
			t.Errorf("run %d: %d faults in the page, %d recorded", i, len(got.Faults), len(run.Faults))
		}
		for k, f := range run.Faults {
			if got.Faults[k].Kind != f.Kind || got.Faults[k].Start != f.Start.Seconds() || got.Faults[k].End != f.End.Seconds() {
				t.Errorf("run %d fault %d: page %+v, recorded %+v", i, k, got.Faults[k], f)
			}
		}
		if (got.Violation != nil) != (run.Violation != nil) {
			t.Errorf("run %d: page violation %v, recorded %v", i, got.Violation, run.Violation)
		}
		// The numbers people read in the summary and the run's heading.
		for _, s := range []string{
			fmt.Sprintf(">%d</td>", run.Events), FormatDuration(run.SimTime), fmt.Sprintf("seed <b>%d</b>", run.Seed),
		} {
			if !strings.Contains(html, s) {
				t.Errorf("run %d: page lacks %q", i, s)
			}
		}
	}
	if d.Runs[1].Violation.Checker != "upgrade-stop-after-heartbeat" {
		t.Errorf("violation checker in data = %q", d.Runs[1].Violation.Checker)
	}
}

func TestHTMLEscapesEverythingFromTheRun(t *testing.T) {
	evil := `<img src=x onerror=alert(1)>"'&`
	rec := NewRecorder(Meta{Scenario: evil, File: evil + ".yaml", Seed: 9, Devices: 1, Replay: "flotilla sim replay '" + evil + "' --seed 9"}, Options{})
	rec.Sample(0, map[string]int{evil: 1}, nil, 1)
	rec.FaultStart(evil, evil, 0)
	rec.Mark(0, evil, evil)
	rec.Violate(Violation{Checker: evil, Message: evil + "</script><script>alert(2)</script>", Seed: 9})
	rec.Expect(Expectation{Name: evil, Detail: evil})
	rec.End(time.Minute, map[string]int{evil: 1}, nil, 1)
	html := renderHTML(t, Report{Title: evil, Runs: []Run{rec.Finish(1, time.Second, "")}})

	for _, raw := range []string{"<img src=x", "</script><script>alert(2)"} {
		if strings.Contains(html, raw) {
			t.Errorf("page contains unescaped %q", raw)
		}
	}
	if n := strings.Count(html, "&lt;img src=x onerror=alert(1)&gt;"); n < 8 {
		t.Errorf("escaped name appears %d times, want it in title, summary, heading, file, replay, violation, faults, marker, expectation", n)
	}
	if n := strings.Count(html, "<script"); n != 3 {
		t.Errorf("page has %d <script elements, want 3 (data, uPlot, report)", n)
	}
	// The data still round-trips exactly, so the charts label curves with the
	// real names (drawn as text, never parsed as HTML).
	d := embeddedData(t, html)
	if d.Runs[0].Scenario != evil || d.Runs[0].Versions.Keys[0] != evil || d.Runs[0].Faults[0].Kind != evil {
		t.Errorf("data names = %q / %q / %q, want %q", d.Runs[0].Scenario, d.Runs[0].Versions.Keys[0], d.Runs[0].Faults[0].Kind, evil)
	}
}

func TestHTMLIsSelfContained(t *testing.T) {
	html := renderHTML(t, demoReport())
	for _, ref := range []string{`src="http`, `href="http`, `src="//`, `@import`, `<link`, `url(http`} {
		if strings.Contains(html, ref) {
			t.Errorf("page loads something from outside (%q): it must work offline", ref)
		}
	}
	if !strings.Contains(html, uplotJS[:200]) || !strings.Contains(html, "uPlot") {
		t.Error("page does not inline the charting library")
	}
	for _, s := range []string{`data-chart="versions"`, `data-chart="phases"`, `id="summary"`, "Invariant violated"} {
		if !strings.Contains(html, s) {
			t.Errorf("page lacks %s", s)
		}
	}
}

func TestHTMLWithoutRunsOrSamples(t *testing.T) {
	html := renderHTML(t, Report{})
	if !strings.Contains(html, "No runs recorded.") {
		t.Error("an empty report does not say it is empty")
	}
	if d := embeddedData(t, html); d.Runs == nil || len(d.Runs) != 0 {
		t.Errorf("empty report data = %+v, want an empty runs list", d)
	}
	run := NewRecorder(Meta{Scenario: "bad-file"}, Options{}).Finish(0, 0, Error)
	html = renderHTML(t, Report{Runs: []Run{run}})
	if !strings.Contains(html, "No samples recorded for this run.") || strings.Contains(html, `class="chart"`) {
		t.Error("a run without samples should say so instead of drawing empty charts")
	}
}

func TestWriteErrorsAreReported(t *testing.T) {
	r := demoReport()
	for name, write := range map[string]func(io.Writer, Report) error{"html": WriteHTML, "png": WritePNG, "svg": WriteSVG} {
		if err := write(failingWriter{}, r); err == nil {
			t.Errorf("%s: no error when the writer fails", name)
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestPNGHasOnePanelPerRun(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3} {
		t.Run(fmt.Sprintf("%d runs", n), func(t *testing.T) {
			all := demoReport().Runs
			r := Report{}
			for i := range n {
				r.Runs = append(r.Runs, all[i%len(all)])
			}
			var buf bytes.Buffer
			if err := WritePNG(&buf, r); err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(&buf)
			if err != nil {
				t.Fatalf("not a PNG: %v", err)
			}
			w, h := ImageSize(r)
			if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
				t.Fatalf("PNG is %dx%d, want %dx%d", b.Dx(), b.Dy(), w, h)
			}
			wantW, wantH := PanelWidthPx, PanelHeightPx*max(1, n)
			if n > 1 {
				wantW, wantH = 2*PanelWidthPx, PanelHeightPx*((n+1)/2)
			}
			if w != wantW || h != wantH {
				t.Errorf("ImageSize = %dx%d, want %dx%d for %d runs", w, h, wantW, wantH, n)
			}
			if n == 0 {
				return
			}
			// Curves are drawn in the versions' colours: count pixels of the
			// new version's blue.
			blue := 0
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					r, g, b, _ := img.At(x, y).RGBA()
					if r>>8 < 0x40 && g>>8 > 0x60 && g>>8 < 0xa0 && b>>8 > 0xc0 {
						blue++
					}
				}
			}
			if blue < 200 {
				t.Errorf("only %d pixels of the v1.1.0 curve colour: the curves are missing", blue)
			}
		})
	}
}

func TestSVGNamesEachRun(t *testing.T) {
	r := demoReport()
	var buf bytes.Buffer
	if err := WriteSVG(&buf, r); err != nil {
		t.Fatal(err)
	}
	var root struct {
		XMLName xml.Name
		Width   string `xml:"width,attr"`
		Height  string `xml:"height,attr"`
	}
	if err := xml.Unmarshal(buf.Bytes(), &root); err != nil {
		t.Fatalf("not XML: %v", err)
	}
	w, h := ImageSize(r)
	wantW := fmt.Sprintf("%gpt", float64(w)*72/96)
	if root.XMLName.Local != "svg" || !strings.HasPrefix(root.Width, strings.TrimSuffix(wantW, "pt")) {
		t.Errorf("root <%s width=%q height=%q>, want <svg> %d×%d px (%s wide)", root.XMLName.Local, root.Width, root.Height, w, h, wantW)
	}
	svg := buf.String()
	for _, s := range []string{"agent-upgrade-partition", "flaky-network &lt;script&gt;", "v1.1.0", "simulated time"} {
		if !strings.Contains(svg, s) {
			t.Errorf("SVG lacks %q", s)
		}
	}
	if strings.Contains(svg, "<script>alert") {
		t.Error("SVG contains the scenario name unescaped")
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"}, {500 * time.Millisecond, "500ms"}, {45 * time.Second, "45s"}, {12 * time.Minute, "12m"},
		{12*time.Minute + 30*time.Second, "12m30s"}, {time.Hour, "1h"}, {2*time.Hour + 5*time.Minute, "2h05m"},
		{72 * time.Hour, "3d"}, {76 * time.Hour, "3d04h"}, {-90 * time.Second, "-1m30s"},
	}
	for _, tt := range tests {
		if got := FormatDuration(tt.in); got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// The scripts are inlined verbatim: a "</script" or "<!--" inside them would
// end or derail the script element, and the licence must ship with uPlot.
func TestInlinedAssetsAreSafeToInline(t *testing.T) {
	for name, js := range map[string]string{"uPlot.iife.min.js": uplotJS, "report.js": reportJS} {
		for _, bad := range []string{"</script", "<!--", "<script"} {
			if strings.Contains(strings.ToLower(js), bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
	for name, css := range map[string]string{"uPlot.min.css": uplotCSS, "report.css": reportCSS} {
		if strings.Contains(strings.ToLower(css), "</style") {
			t.Errorf("%s contains </style", name)
		}
	}
	lic, err := os.ReadFile("assets/uPlot.LICENSE")
	if err != nil || !strings.Contains(string(lic), "MIT") {
		t.Errorf("assets/uPlot.LICENSE missing or not the MIT licence (%v)", err)
	}
	if !strings.Contains(uplotJS[:300], "uPlot") {
		t.Error("assets/uPlot.iife.min.js does not look like uPlot")
	}
}

// BenchmarkWriteHTML renders the two-run demo report (~80 KB page).
func BenchmarkWriteHTML(b *testing.B) {
	r := demoReport()
	for b.Loop() {
		if err := WriteHTML(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWritePNG draws the demo report's two panels.
func BenchmarkWritePNG(b *testing.B) {
	r := demoReport()
	for b.Loop() {
		if err := WritePNG(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}
