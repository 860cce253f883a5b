// Package jobplot draws gowren jobs: a timeline with one line per task and
// the number of tasks running over time, as PNG or SVG, with gonum/plot.
//
// It lives apart from package fanout so that programs which never plot (the
// workers above all) do not carry gonum/plot and its fonts, several
// megabytes. Importing it, even blank, makes fanout.JobStats.WritePlot work,
// the way importing image/png makes image.Decode read PNG:
//
//	import _ "github.com/gowren/gowren/jobplot"
//
// In the timeline a task's line runs from when its taken attempt started
// to when it finished (worker clock): green for a task that succeeded at
// once, orange for one that succeeded after retries, red for one that
// failed. A thin grey line before it is the wait from the send to the
// start; dashed light-red lines are its attempts that failed, from their
// send to when the driver learned of the failure.
package jobplot

import (
	"fmt"
	"image/color"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/gowren/gowren/fanout"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Colours of the timeline, by outcome.
var (
	colorOK      = color.RGBA{R: 0x2e, G: 0x8b, B: 0x57, A: 0xff} // sea green
	colorRetried = color.RGBA{R: 0xe6, G: 0x8a, B: 0x00, A: 0xff} // orange: ok after more than one attempt
	colorFailed  = color.RGBA{R: 0xc6, G: 0x28, B: 0x28, A: 0xff} // red
	colorTry     = color.RGBA{R: 0xef, G: 0x9a, B: 0x9a, A: 0xff} // light red: an attempt that failed
	colorRunning = color.RGBA{R: 0x4a, G: 0x6f, B: 0xa5, A: 0xff} // blue: still running when the stats were taken
)

func init() { fanout.RegisterPlotter(Write) }

// Write draws the job as an image in format "png" or "svg": a timeline
// with one line per task from the start to the end of the attempt whose
// result was taken (green; orange when it took more than one attempt; red
// when it failed; blue while running), its wait from invocation to start as a
// thin grey line, and below it the number of tasks running over time. Times
// are seconds since the job was submitted; start and end come from the
// workers' clocks.
func Write(w io.Writer, s fanout.JobStats, format string) error {
	format = strings.ToLower(format)
	if format != "png" && format != "svg" {
		return fmt.Errorf("jobplot: plot job %s: format %q: want png or svg", s.ID, format)
	}
	if len(s.PerTask) == 0 {
		return fmt.Errorf("jobplot: plot job %s: no per-task statistics", s.ID)
	}
	t0 := s.Submitted
	timeline := plot.New()
	timeline.Title.Text = fmt.Sprintf("job %s: %s, %d tasks (%d ok, %d failed), makespan %v",
		s.ID, s.Func, s.Tasks, s.Succeeded, s.Failed, roundDuration(s.Makespan))
	timeline.X.Label.Text = "seconds since submission"
	timeline.Y.Label.Text = "task"
	timeline.Add(&taskLines{tasks: s.PerTask, t0: t0})

	conc := plot.New()
	conc.X.Label.Text = "seconds since submission"
	conc.Y.Label.Text = "tasks running"
	steps := concurrency(s.PerTask, t0)
	if len(steps) > 0 {
		line, err := plotter.NewLine(steps)
		if err != nil {
			return fmt.Errorf("jobplot: plot job %s: %w", s.ID, err)
		}
		line.StepStyle = plotter.PostStep
		line.Color = colorRunning
		conc.Add(line)
	}
	conc.Y.Min = 0
	// Both panels share the time axis.
	conc.X.Min, conc.X.Max = timeline.X.Min, timeline.X.Max

	height := vg.Length(min(max(len(s.PerTask), 200), 2000)) * vg.Points(0.4)
	width, h := vg.Points(900), height+vg.Points(320)
	var c vg.CanvasWriterTo
	if format == "png" {
		c = vgimg.PngCanvas{Canvas: vgimg.New(width, h)}
	} else {
		c = vgsvg.New(width, h)
	}
	dc := draw.New(c)
	top := draw.Crop(dc, 0, 0, vg.Points(180), 0)
	bottom := draw.Crop(dc, 0, 0, 0, -(h - vg.Points(180)))
	timeline.Draw(top)
	conc.Draw(bottom)
	if _, err := c.WriteTo(w); err != nil {
		return fmt.Errorf("jobplot: plot job %s: %w", s.ID, err)
	}
	return nil
}

// roundDuration keeps three significant digits.
func roundDuration(d time.Duration) time.Duration {
	for unit := time.Hour; unit > time.Nanosecond; unit /= 10 {
		if d >= 100*unit {
			return d.Round(unit)
		}
	}
	return d
}

// taskLines draws one line per task.
type taskLines struct {
	tasks []fanout.TaskStats
	t0    time.Time
}

func (tl *taskLines) span(t fanout.TaskStats) (start, end float64, ok bool) {
	if t.Started.IsZero() || t.Finished.IsZero() {
		if t.Received.IsZero() {
			return 0, 0, false
		}
		r := t.Received.Sub(tl.t0).Seconds()
		return r, r, true
	}
	return t.Started.Sub(tl.t0).Seconds(), t.Finished.Sub(tl.t0).Seconds(), true
}

// Plot implements plot.Plotter.
func (tl *taskLines) Plot(c draw.Canvas, p *plot.Plot) {
	tx, ty := p.Transforms(&c)
	wait := draw.LineStyle{Color: color.Gray{Y: 0xb0}, Width: vg.Points(0.3)}
	try := draw.LineStyle{Color: colorTry, Width: vg.Points(0.6), Dashes: []vg.Length{vg.Points(2), vg.Points(1)}}
	for _, t := range tl.tasks {
		y := ty(float64(t.Index))
		for _, f := range t.FailedTries {
			if f.Sent.IsZero() || f.Failed.Before(f.Sent) {
				continue
			}
			x0, x1 := tx(f.Sent.Sub(tl.t0).Seconds()), tx(f.Failed.Sub(tl.t0).Seconds())
			c.StrokeLine2(try, x0, y, max(x1, x0+vg.Points(0.5)), y)
		}
		start, end, ok := tl.span(t)
		if !ok {
			continue
		}
		if !t.Invoked.IsZero() && !t.Started.IsZero() {
			c.StrokeLine2(wait, tx(t.Invoked.Sub(tl.t0).Seconds()), y, tx(start), y)
		}
		style := draw.LineStyle{Width: vg.Points(1), Color: colorOK}
		switch {
		case t.Outcome == "failed":
			style.Color = colorFailed
		case t.Outcome == "running" || t.Outcome == "pending":
			style.Color = colorRunning
		case t.Attempts > 1:
			style.Color = colorRetried
		}
		x0, x1 := tx(start), tx(end)
		if x1-x0 < vg.Points(0.5) {
			x1 = x0 + vg.Points(0.5) // a task shorter than a pixel still shows
		}
		c.StrokeLine2(style, x0, y, x1, y)
	}
}

// DataRange implements plot.DataRanger.
func (tl *taskLines) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = 0, 0
	for _, t := range tl.tasks {
		if !t.Invoked.IsZero() {
			xmin = min(xmin, t.Invoked.Sub(tl.t0).Seconds())
		}
		for _, f := range t.FailedTries {
			if !f.Sent.IsZero() {
				xmin, xmax = min(xmin, f.Sent.Sub(tl.t0).Seconds()), max(xmax, f.Failed.Sub(tl.t0).Seconds())
			}
		}
		if start, end, ok := tl.span(t); ok {
			xmin, xmax = min(xmin, start), max(xmax, end)
		}
	}
	return xmin, max(xmax, xmin+1e-3), -0.5, float64(len(tl.tasks)) - 0.5
}

// concurrency returns the number of tasks running over time, as steps.
func concurrency(tasks []fanout.TaskStats, t0 time.Time) plotter.XYs {
	type ev struct {
		t float64
		d int
	}
	var evs []ev
	for _, t := range tasks {
		if t.Started.IsZero() || t.Finished.IsZero() {
			continue
		}
		evs = append(evs, ev{t.Started.Sub(t0).Seconds(), 1}, ev{t.Finished.Sub(t0).Seconds(), -1})
	}
	slices.SortFunc(evs, func(a, b ev) int {
		switch {
		case a.t < b.t:
			return -1
		case a.t > b.t:
			return 1
		}
		return a.d - b.d
	})
	xys := make(plotter.XYs, 0, len(evs)+1)
	xys = append(xys, plotter.XY{X: 0, Y: 0})
	cur := 0
	for _, e := range evs {
		cur += e.d
		xys = append(xys, plotter.XY{X: e.t, Y: float64(cur)})
	}
	return xys
}
