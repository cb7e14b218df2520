package report

import (
	"bytes"
	_ "embed"
	"fmt"
	"hash/fnv"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
)

// The charting library is uPlot (MIT, see assets/uPlot.LICENSE), vendored
// from npm so the page works offline; report.js and report.css are ours.
var (
	//go:embed assets/uPlot.iife.min.js
	uplotJS string
	//go:embed assets/uPlot.min.css
	uplotCSS string
	//go:embed assets/report.js
	reportJS string
	//go:embed assets/report.css
	reportCSS string
	//go:embed assets/page.html.tmpl
	pageTemplate string
)

// UPlotVersion is the version of the vendored charting library.
const UPlotVersion = "1.6.32"

var page = template.Must(template.New("page").Parse(pageTemplate))

// faultPalette colours fault windows by kind (8-digit hex: translucent).
var faultPalette = []string{
	"#e8590c", "#7048e8", "#1098ad", "#d6336c", "#5c940d", "#f08c00", "#495057", "#3b5bdb",
}

// FaultColor is the colour of a fault kind, the same in the HTML page, its
// tables and the static images.
func FaultColor(kind string) string {
	h := fnv.New32a()
	h.Write([]byte(kind))
	return faultPalette[h.Sum32()%uint32(len(faultPalette))]
}

// WriteHTML writes r as one self-contained HTML page: no network access is
// needed to view it. Everything taken from the runs is escaped.
func WriteHTML(w io.Writer, r Report) error {
	v := newPageView(r)
	var buf bytes.Buffer
	if err := page.Execute(&buf, v); err != nil {
		return fmt.Errorf("render report page: %w", err)
	}
	if _, err := buf.WriteTo(w); err != nil {
		return fmt.Errorf("write report page: %w", err)
	}
	return nil
}

// pageView is what the template sees: numbers already formatted for people.
type pageView struct {
	Title                   string
	Passed, Failed, Errored int
	Runs                    []runView
	Data                    pageData
	UPlotJS                 template.JS
	UPlotCSS, CSS           template.CSS
	JS                      template.JS
}

type runView struct {
	Index                  int
	Anchor                 string
	Scenario, File, Replay string
	Result                 Result
	Seed                   uint64
	Devices                int
	Events                 uint64
	SimTime, Wall, Rate    string
	HasSamples             bool
	Violation              *violationView
	Expectations           []Expectation
	Faults                 []faultView
	Markers                []markerView
}

type violationView struct {
	Checker, Message, At, Replay string
	Seed                         uint64
}

type faultView struct {
	Kind, Target, Start, End, Color string
	Hits                            uint64
}

type markerView struct{ Kind, Label, At string }

// pageData is the JSON the page's script draws from: times in seconds.
type pageData struct {
	UPlot string    `json:"uplot"`
	Runs  []dataRun `json:"runs"`
}

type dataRun struct {
	Scenario  string        `json:"scenario"`
	Seed      uint64        `json:"seed"`
	Devices   int           `json:"devices"`
	Times     []float64     `json:"t"`
	Versions  Series        `json:"versions"`
	Phases    Series        `json:"phases"`
	Online    []*int        `json:"online,omitempty"`
	Faults    []dataFault   `json:"faults"`
	Markers   []dataMarker  `json:"markers"`
	Violation *dataViolated `json:"violation,omitempty"`
}

type dataFault struct {
	Kind   string  `json:"kind"`
	Target string  `json:"target,omitempty"`
	Start  float64 `json:"start"`
	End    float64 `json:"end"`
	Color  string  `json:"color"`
}

type dataMarker struct {
	At    float64 `json:"at"`
	Kind  string  `json:"kind"`
	Label string  `json:"label,omitempty"`
}

type dataViolated struct {
	At      float64 `json:"at"`
	Checker string  `json:"checker"`
}

func newPageView(r Report) pageView {
	v := pageView{
		Title:    r.Title,
		UPlotJS:  template.JS(uplotJS),
		UPlotCSS: template.CSS(uplotCSS),
		CSS:      template.CSS(reportCSS),
		JS:       template.JS(reportJS),
		Data:     pageData{UPlot: UPlotVersion, Runs: []dataRun{}},
	}
	if v.Title == "" {
		v.Title = "Flotilla simulation report"
	}
	for i, run := range r.Runs {
		switch run.Result {
		case Pass:
			v.Passed++
		case Fail:
			v.Failed++
		default:
			v.Errored++
		}
		v.Runs = append(v.Runs, newRunView(i, run))
		v.Data.Runs = append(v.Data.Runs, newDataRun(run))
	}
	return v
}

func newRunView(i int, run Run) runView {
	rv := runView{
		Index: i, Anchor: fmt.Sprintf("run-%d", i),
		Scenario: run.Scenario, File: run.File, Replay: run.Replay, Result: run.Result,
		Seed: run.Seed, Devices: run.Devices, Events: run.Events,
		SimTime: FormatDuration(run.SimTime), Wall: formatWall(run.Wall), Rate: formatRate(run.EventsPerSecond()),
		HasSamples:   len(run.Times) > 0,
		Expectations: run.Expectations,
	}
	if rv.Result == "" {
		rv.Result = Error
	}
	if vi := run.Violation; vi != nil {
		rv.Violation = &violationView{Checker: vi.Checker, Message: vi.Message, At: FormatDuration(vi.At), Replay: vi.Replay, Seed: vi.Seed}
	}
	for _, f := range run.Faults {
		rv.Faults = append(rv.Faults, faultView{
			Kind: f.Kind, Target: f.Target, Start: FormatDuration(f.Start), End: FormatDuration(f.End),
			Color: FaultColor(f.Kind), Hits: f.Hits,
		})
	}
	for _, m := range run.Markers {
		rv.Markers = append(rv.Markers, markerView{Kind: m.Kind, Label: m.Label, At: FormatDuration(m.At)})
	}
	return rv
}

func newDataRun(run Run) dataRun {
	d := dataRun{
		Scenario: run.Scenario, Seed: run.Seed, Devices: run.Devices,
		Times:    make([]float64, len(run.Times)),
		Versions: normSeries(run.Versions), Phases: normSeries(run.Phases),
		Faults: []dataFault{}, Markers: []dataMarker{},
	}
	for i, t := range run.Times {
		d.Times[i] = t.Seconds()
	}
	if run.Online != nil {
		d.Online = make([]*int, len(run.Online))
		for i := range run.Online {
			if run.Online[i] >= 0 {
				d.Online[i] = &run.Online[i]
			}
		}
	}
	for _, f := range run.Faults {
		d.Faults = append(d.Faults, dataFault{Kind: f.Kind, Target: f.Target, Start: f.Start.Seconds(), End: f.End.Seconds(), Color: FaultColor(f.Kind)})
	}
	for _, m := range run.Markers {
		d.Markers = append(d.Markers, dataMarker{At: m.At.Seconds(), Kind: m.Kind, Label: m.Label})
	}
	if vi := run.Violation; vi != nil {
		d.Violation = &dataViolated{At: vi.At.Seconds(), Checker: vi.Checker}
	}
	return d
}

func normSeries(s Series) Series {
	if s.Keys == nil {
		s.Keys = []string{}
	}
	if s.Values == nil {
		s.Values = [][]int{}
	}
	return s
}

// FormatDuration prints simulated time compactly: "0s", "45s", "12m30s",
// "2h05m", "3d04h".
func FormatDuration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	s := int64(d / time.Second)
	var out string
	switch {
	case d > 0 && d < time.Second:
		out = fmt.Sprintf("%dms", d/time.Millisecond)
	case s < 60:
		out = fmt.Sprintf("%ds", s)
	case s < 3600:
		if s%60 == 0 {
			out = fmt.Sprintf("%dm", s/60)
		} else {
			out = fmt.Sprintf("%dm%02ds", s/60, s%60)
		}
	case s < 86400:
		if s%3600 == 0 {
			out = fmt.Sprintf("%dh", s/3600)
		} else {
			out = fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
		}
	default:
		if s%86400 == 0 {
			out = fmt.Sprintf("%dd", s/86400)
		} else {
			out = fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
		}
	}
	if neg {
		out = "-" + out
	}
	return out
}

func formatWall(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return d.Round(time.Second).String()
}

func formatRate(r float64) string {
	switch {
	case r <= 0 || math.IsNaN(r) || math.IsInf(r, 0):
		return "—"
	case r >= 1e6:
		return fmt.Sprintf("%.2f M", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.1f k", r/1e3)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.0f", r), ".0")
}
