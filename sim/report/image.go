package report

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Static images: one panel per run (devices per agent version over simulated
// time, fault windows shaded, markers dashed, the violation in red), laid
// out as small multiples, two panels a row.
const (
	PanelWidthPx  = 760
	PanelHeightPx = 300
	imageDPI      = 96
)

// ImageSize is the size in pixels of the image WritePNG draws for r.
func ImageSize(r Report) (width, height int) {
	cols, rows := grid(len(r.Runs))
	return cols * PanelWidthPx, rows * PanelHeightPx
}

func grid(n int) (cols, rows int) {
	cols = 2
	if n <= 1 {
		cols = 1
	}
	rows = max(1, (n+cols-1)/cols)
	return cols, rows
}

func pxToLength(px int) vg.Length { return vg.Length(px) * vg.Inch / imageDPI }

// WritePNG writes the runs' version curves as one PNG image of ImageSize(r).
func WritePNG(w io.Writer, r Report) error {
	wpx, hpx := ImageSize(r)
	c := vgimg.NewWith(vgimg.UseWH(pxToLength(wpx), pxToLength(hpx)), vgimg.UseDPI(imageDPI))
	if err := drawPanels(draw.New(c), r); err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(w); err != nil {
		return fmt.Errorf("write report PNG: %w", err)
	}
	return nil
}

// WriteSVG writes the same image as WritePNG as SVG.
func WriteSVG(w io.Writer, r Report) error {
	wpx, hpx := ImageSize(r)
	c := vgsvg.New(pxToLength(wpx), pxToLength(hpx))
	if err := drawPanels(draw.New(c), r); err != nil {
		return err
	}
	if _, err := c.WriteTo(w); err != nil {
		return fmt.Errorf("write report SVG: %w", err)
	}
	return nil
}

func drawPanels(dc draw.Canvas, r Report) error {
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	if len(r.Runs) == 0 {
		p := plot.New()
		p.Title.Text = "no runs recorded"
		p.HideAxes()
		p.Draw(dc)
		return nil
	}
	cols, rows := grid(len(r.Runs))
	plots := make([][]*plot.Plot, rows)
	for i := range plots {
		plots[i] = make([]*plot.Plot, cols)
	}
	for i, run := range r.Runs {
		p, err := runPlot(run)
		if err != nil {
			return fmt.Errorf("plot run %d (%s): %w", i, run.Scenario, err)
		}
		plots[i/cols][i%cols] = p
	}
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 2, PadY: vg.Millimeter * 2,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		for j, p := range plots[i] {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	return nil
}

var imgVersionColors = []color.RGBA{
	{0x86, 0x8e, 0x96, 255}, {0x1c, 0x7e, 0xd6, 255}, {0x2b, 0x8a, 0x3e, 255}, {0xe8, 0x59, 0x0c, 255},
	{0x70, 0x48, 0xe8, 255}, {0xc2, 0x25, 0x5c, 255}, {0x0b, 0x72, 0x85, 255}, {0x5c, 0x94, 0x0d, 255},
}

func runPlot(run Run) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s — %s (seed %d, %d devices)", run.Scenario, run.Result, run.Seed, run.Devices)
	if run.Violation != nil {
		p.Title.Text = fmt.Sprintf("%s — FAIL: %s at %s (seed %d)", run.Scenario, run.Violation.Checker, FormatDuration(run.Violation.At), run.Seed)
	}
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.X.Label.Text = "simulated time"
	p.Y.Label.Text = "devices per agent version"
	p.X.Tick.Marker = durationTicks{}
	// Left, a third of the way down: at the start of a rollout the curves
	// sit at the top (old version) and the bottom (new version).
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Millimeter * 3
	p.Legend.YOffs = -pxToLength(PanelHeightPx) / 4
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	p.Add(plotter.NewGrid())

	ymax := 1.0
	for _, vals := range run.Versions.Values {
		for _, v := range vals {
			ymax = math.Max(ymax, float64(v))
		}
	}
	ymax = math.Max(ymax, float64(run.Devices)) * 1.05
	xmax := run.SimTime.Seconds()
	if n := len(run.Times); n > 0 {
		xmax = math.Max(xmax, run.Times[n-1].Seconds())
	}
	xmax = math.Max(xmax, 1)
	p.X.Min, p.X.Max = 0, xmax
	p.Y.Min, p.Y.Max = 0, ymax

	for _, f := range run.Faults {
		x0, x1 := f.Start.Seconds(), f.End.Seconds()
		if x1-x0 < xmax/400 {
			x1 = x0 + xmax/400 // an instant still shows
		}
		poly, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: 0}, {X: x1, Y: 0}, {X: x1, Y: ymax}, {X: x0, Y: ymax}})
		if err != nil {
			return nil, err
		}
		c := hexColor(FaultColor(f.Kind))
		c.A = 50
		poly.Color = premultiply(c)
		poly.LineStyle.Width = 0
		p.Add(poly)
		labels, err := plotter.NewLabels(plotter.XYLabels{
			XYs: []plotter.XY{{X: x0, Y: ymax}}, Labels: []string{" " + f.Kind},
		})
		if err != nil {
			return nil, err
		}
		for i := range labels.TextStyle {
			labels.TextStyle[i].Color = hexColor(FaultColor(f.Kind))
			labels.TextStyle[i].Font.Size = vg.Points(7)
			labels.TextStyle[i].YAlign = draw.YTop
		}
		p.Add(labels)
	}
	for i, key := range run.Versions.Keys {
		xys := make(plotter.XYs, len(run.Times))
		for j, t := range run.Times {
			xys[j] = plotter.XY{X: t.Seconds(), Y: float64(run.Versions.Values[i][j])}
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		line.Color = imgVersionColors[i%len(imgVersionColors)]
		line.Width = vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(key, line)
	}
	for _, m := range run.Markers {
		l, err := vline(m.At.Seconds(), ymax)
		if err != nil {
			return nil, err
		}
		l.Color = color.RGBA{0x34, 0x3a, 0x40, 255}
		l.Dashes = []vg.Length{vg.Points(3), vg.Points(2)}
		p.Add(l)
	}
	if run.Violation != nil {
		l, err := vline(run.Violation.At.Seconds(), ymax)
		if err != nil {
			return nil, err
		}
		l.Color = color.RGBA{0xe0, 0x31, 0x31, 255}
		l.Width = vg.Points(2)
		p.Add(l)
		p.Legend.Add("violation", l)
	}
	return p, nil
}

func vline(x, ymax float64) (*plotter.Line, error) {
	return plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: ymax}})
}

func hexColor(s string) color.RGBA {
	n, _ := strconv.ParseUint(s[1:7], 16, 32)
	return color.RGBA{uint8(n >> 16), uint8(n >> 8), uint8(n), 255}
}

// premultiply turns a straight-alpha colour into the premultiplied form
// color.RGBA means.
func premultiply(c color.RGBA) color.RGBA {
	a := uint16(c.A)
	return color.RGBA{uint8(uint16(c.R) * a / 255), uint8(uint16(c.G) * a / 255), uint8(uint16(c.B) * a / 255), c.A}
}

// durationTicks labels a simulated-time axis in seconds with "30m", "1h30m".
type durationTicks struct{}

var tickSteps = []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
	86400, 172800, 604800, 1209600, 2592000}

func (durationTicks) Ticks(lo, hi float64) []plot.Tick {
	span := hi - lo
	step := tickSteps[len(tickSteps)-1]
	for _, s := range tickSteps {
		if span/s <= 8 {
			step = s
			break
		}
	}
	var ticks []plot.Tick
	for x := math.Ceil(lo/step) * step; x <= hi+1e-9; x += step {
		ticks = append(ticks, plot.Tick{Value: x, Label: FormatDuration(secondsToDuration(x))})
		// Minor ticks halfway, unlabelled.
		if mid := x + step/2; mid <= hi {
			ticks = append(ticks, plot.Tick{Value: mid})
		}
	}
	return ticks
}

func secondsToDuration(s float64) time.Duration {
	return time.Duration(math.Round(s * float64(time.Second)))
}
