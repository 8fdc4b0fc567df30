package stats

import (
	"fmt"
	"image/color"
	"io"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

var (
	colorPass     = color.RGBA{76, 153, 76, 255}
	colorGreylist = color.RGBA{230, 159, 0, 255}
	colorReject   = color.RGBA{204, 51, 51, 255}
	colorDelay    = color.RGBA{60, 110, 180, 255}
)

// Graphs are read on screens: sans-serif reads better there than gonum's
// default serif.
func init() { plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"} }

// Format is a graph's file format.
type Format string

// The formats WriteGraph draws.
const (
	PNG Format = "png"
	SVG Format = "svg"
)

// graphDPI is the resolution of PNG graphs: sizes are given in pixels, and
// 12-point text is 16 pixels high.
const graphDPI = 96

// pixels converts a size in pixels at graphDPI to a length.
func pixels(n int) vg.Length { return vg.Length(n) * vg.Inch / graphDPI }

// WriteGraph draws, width by height pixels: hourly, the decisions per hour
// by action over time; retries, the distribution of real retry delays and
// the share of greylisted triplets never retried.
func WriteGraph(w io.Writer, format Format, width, height int, hourly Report, retries Retries) error {
	if width < 400 || height < 300 {
		return fmt.Errorf("stats: graph of %dx%d is too small (400x300 at least)", width, height)
	}
	decisions, err := decisionsPlot(hourly)
	if err != nil {
		return err
	}
	delays, err := delaysPlot(retries)
	if err != nil {
		return err
	}
	share, err := sharePlot(retries)
	if err != nil {
		return err
	}

	var canvas vg.CanvasWriterTo
	switch format {
	case PNG:
		canvas = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(pixels(width), pixels(height)), vgimg.UseDPI(graphDPI))}
	case SVG:
		canvas = vgsvg.New(pixels(width), pixels(height))
	default:
		return fmt.Errorf("stats: graph format %q: want png or svg", format)
	}
	dc := draw.New(canvas)
	// The decisions over time on top, the retries below, side by side.
	rows := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	decisions.Draw(rows.At(dc, 0, 0))
	bottom := rows.At(dc, 0, 1)
	cols := draw.Tiles{Rows: 1, Cols: 2, PadX: 6 * vg.Millimeter}
	delays.Draw(cols.At(bottom, 0, 0))
	share.Draw(cols.At(bottom, 1, 0))
	if _, err := canvas.WriteTo(w); err != nil {
		return fmt.Errorf("stats: writing the graph: %w", err)
	}
	return nil
}

// decisionsPlot draws one line per action: recipients per hour.
func decisionsPlot(r Report) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Recipients judged per hour, %s to %s UTC", r.From.Format("2006-01-02 15:04"), r.To.Format("2006-01-02 15:04"))
	p.Y.Label.Text = "recipients per hour"
	p.X.Tick.Marker = dayTicks
	p.Y.Tick.Marker = countTicks
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.XOffs = -2 * vg.Millimeter
	var peak int64
	for _, period := range r.Periods {
		peak = max(peak, period.Pass, period.Greylist, period.Reject)
	}
	// Headroom above the highest line for the legend.
	p.Y.Min, p.Y.Max = 0, max(1, float64(peak)*1.3)
	for _, a := range []struct {
		name  string
		n     func(Period) int64
		color color.Color
	}{
		{"passed", func(p Period) int64 { return p.Pass }, colorPass},
		{"greylisted", func(p Period) int64 { return p.Greylist }, colorGreylist},
		{"rejected", func(p Period) int64 { return p.Reject }, colorReject},
	} {
		xys := make(plotter.XYs, len(r.Periods))
		for i, period := range r.Periods {
			xys[i] = plotter.XY{X: float64(period.Start.Unix()), Y: float64(a.n(period))}
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("stats: %s line: %w", a.name, err)
		}
		l.Color = a.color
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(a.name, l)
	}
	return p, nil
}

// delaysPlot draws how many triplets passed after each class of real delay.
func delaysPlot(r Retries) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Real retry delay of the %d triplets that passed", r.PassedTotal())
	p.Y.Label.Text = "triplets"
	p.Y.Tick.Marker = countTicks
	p.X.Label.Text = "from the first attempt to the retry that passed"
	values := make(plotter.Values, len(r.Passed))
	names := make([]string, len(r.Passed))
	var peak int64
	for i, n := range r.Passed {
		values[i] = float64(n)
		names[i] = classLabel(r, i)
		peak = max(peak, n)
	}
	p.Y.Min, p.Y.Max = 0, max(1, float64(peak)*1.1)
	bars, err := plotter.NewBarChart(values, vg.Points(14))
	if err != nil {
		return nil, fmt.Errorf("stats: delay bars: %w", err)
	}
	bars.Color = colorDelay
	bars.LineStyle.Width = 0
	p.Add(plotter.NewGrid(), bars)
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.6
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YCenter
	return p, nil
}

// sharePlot draws the share of a cohort of greylisted triplets that never
// came back against the share that did.
func sharePlot(r Retries) (*plot.Plot, error) {
	p := plot.New()
	title := "Never retried: no triplets greylisted"
	if s, ok := r.NeverRetriedShare(); ok {
		title = fmt.Sprintf("Never retried: %.1f%% (%d of %d)", 100*s, r.NeverRetried, r.Greylisted)
	}
	p.Title.Text = title
	p.X.Label.Text = fmt.Sprintf("triplets greylisted %s to %s UTC", r.From.UTC().Format("Jan 2 15:04"), r.To.UTC().Format("Jan 2 15:04"))
	p.Y.Label.Text = "% of the triplets greylisted"
	p.Y.Min, p.Y.Max = 0, 100
	var never, back float64
	if s, ok := r.NeverRetriedShare(); ok {
		never, back = 100*s, 100*(1-s)
	}
	p.Add(plotter.NewGrid())
	for i, b := range []struct {
		v     float64
		color color.Color
	}{{never, colorReject}, {back, colorPass}} {
		bar, err := plotter.NewBarChart(plotter.Values{b.v}, vg.Points(60))
		if err != nil {
			return nil, fmt.Errorf("stats: share bars: %w", err)
		}
		bar.XMin = float64(i)
		bar.Color = b.color
		bar.LineStyle.Width = 0
		p.Add(bar)
	}
	p.NominalX("never retried", "came back")
	return p, nil
}

// dayTicks marks the time axis at each midnight (UTC), labelled with the
// date, and at each six hours between; over more than two weeks, at each
// Monday instead.
var dayTicks = plot.TickerFunc(func(lo, hi float64) []plot.Tick {
	from, to := time.Unix(int64(lo), 0).UTC(), time.Unix(int64(hi), 0).UTC()
	every, minor := 24*time.Hour, 6*time.Hour
	if to.Sub(from) > 14*24*time.Hour {
		every, minor = 7*24*time.Hour, 24*time.Hour
	}
	var ticks []plot.Tick
	for t := from.Truncate(minor); !t.After(to); t = t.Add(minor) {
		if t.Before(from) {
			continue
		}
		label := ""
		if t.Hour() == 0 && (every == 24*time.Hour || t.Weekday() == time.Monday) {
			label = t.Format("Mon Jan 2")
		}
		ticks = append(ticks, plot.Tick{Value: float64(t.Unix()), Label: label})
	}
	return ticks
})

// countTicks are gonum's default ticks without fractions: counts are whole.
var countTicks = plot.TickerFunc(func(lo, hi float64) []plot.Tick {
	var out []plot.Tick
	for _, t := range (plot.DefaultTicks{}).Ticks(lo, hi) {
		if t.Value != float64(int64(t.Value)) {
			continue
		}
		if t.Label != "" {
			t.Label = strconv.FormatInt(int64(t.Value), 10)
		}
		out = append(out, t)
	}
	return out
})
