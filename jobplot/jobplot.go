// Package jobplot draws gowren jobs: a timeline with one line per task and
// the number of tasks running over time, as PNG or SVG, with gonum/plot.
//
// It lives apart from package fanout so that programs which never plot (the
// workers above all) do not carry gonum/plot and its fonts, several
// megabytes. Importing it, even blank, makes fanout.JobStats.WritePlot
// work, the way importing image/png makes image.Decode read PNG:
//
//	import _ "github.com/gowren/gowren/jobplot"
//
// # Reading a plot
//
// In the timeline a task's line runs from when its taken attempt started
// to when it finished (worker clock): green for a task that succeeded at
// once, orange for one that succeeded after retries, red for one that
// failed, blue for one still running. A thin grey line before it is the
// wait from the send to the start; dashed light-red lines are its attempts
// that failed, from their send to when the driver learned of the failure;
// a purple dot marks a task that ran in a cold worker. A legend on the
// right names each mark that the plot holds, with its count.
//
// Below, the number of tasks running over time, from the same start and
// end times: the mean over each 1/400 of the time axis, so that the
// microseconds between one task's end and the next one's start on the same
// worker do not show as drops, while real gaps, longer than a bin, do. The
// legend gives the peak, which the means may round off.
package jobplot

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
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
	colorCold    = color.RGBA{R: 0x6a, G: 0x1b, B: 0x9a, A: 0xff} // purple: ran in a cold worker
	colorWait    = color.Gray{Y: 0xb0}
	colorArea    = color.NRGBA{R: 0x4a, G: 0x6f, B: 0xa5, A: 0x40} // under the tasks running
)

// Line styles of the timeline.
var (
	styleWait = draw.LineStyle{Color: colorWait, Width: vg.Points(0.3)}
	styleTry  = draw.LineStyle{Color: colorTry, Width: vg.Points(0.6), Dashes: []vg.Length{vg.Points(2), vg.Points(1)}}
	styleCold = draw.GlyphStyle{Color: colorCold, Radius: vg.Points(1.2), Shape: draw.CircleGlyph{}}
)

// Layout of the drawing.
const (
	width       = 900 // points
	legendWidth = 170 // points, on the right of both panels
	concHeight  = 180 // points, the panel of tasks running
	// concBins is the number of intervals of the time axis over which the
	// tasks running are averaged: about two pixels each at 96 dpi.
	concBins = 400
)

func init() { fanout.RegisterPlotter(Write) }

// Write draws the job as an image in format "png" or "svg": a timeline
// with one line per task from the start to the end of the attempt whose
// result was taken (green; orange when it took more than one attempt; red
// when it failed; blue while running), its wait from invocation to start as a
// thin grey line, its failed attempts dashed, a dot where it ran in a cold
// worker, and below it the number of tasks running over time, with a legend
// beside each. Times are seconds since the job was submitted; start and end
// come from the workers' clocks.
func Write(w io.Writer, s fanout.JobStats, format string) error {
	format = strings.ToLower(format)
	if format != "png" && format != "svg" {
		return fmt.Errorf("jobplot: plot job %s: format %q: want png or svg", s.ID, format)
	}
	if len(s.PerTask) == 0 {
		return fmt.Errorf("jobplot: plot job %s: no per-task statistics", s.ID)
	}
	f, err := newFigure(s)
	if err != nil {
		return fmt.Errorf("jobplot: plot job %s: %w", s.ID, err)
	}
	height := vg.Length(min(max(len(s.PerTask), 200), 2000)) * vg.Points(0.4)
	wd, h := vg.Points(width), height+vg.Points(320)
	var c vg.CanvasWriterTo
	if format == "png" {
		c = vgimg.PngCanvas{Canvas: vgimg.New(wd, h)}
	} else {
		c = vgsvg.New(wd, h)
	}
	f.draw(draw.New(c))
	if _, err := c.WriteTo(w); err != nil {
		return fmt.Errorf("jobplot: plot job %s: %w", s.ID, err)
	}
	return nil
}

// A figure is what Write draws: two panels, each with its legend.
type figure struct {
	timeline, conc             *plot.Plot
	timelineLegend, concLegend []legendEntry
}

func newFigure(s fanout.JobStats) (*figure, error) {
	t0 := s.Submitted
	tl := &taskLines{tasks: s.PerTask, t0: t0}
	timeline := plot.New()
	timeline.Title.Text = fmt.Sprintf("job %s: %s, %d tasks (%d ok, %d failed), makespan %v",
		s.ID, s.Func, s.Tasks, s.Succeeded, s.Failed, roundDuration(s.Makespan))
	timeline.X.Label.Text = "seconds since submission"
	timeline.X.Tick.Marker = niceTicks{most: 10}
	timeline.Y.Label.Text = "task"
	timeline.Y.Tick.Marker = niceTicks{most: 10, whole: true}
	timeline.Add(tl)

	conc := plot.New()
	conc.X.Label.Text = "seconds since submission"
	conc.X.Tick.Marker = niceTicks{most: 10}
	conc.Y.Label.Text = "tasks running"
	conc.Y.Tick.Marker = niceTicks{most: 5, whole: true}
	steps, peak := running(s.PerTask, t0)
	// Both panels share the time axis.
	conc.X.Min, conc.X.Max = timeline.X.Min, timeline.X.Max
	conc.Y.Min, conc.Y.Max = 0, float64(max(peak, 1))
	if len(steps) > 0 {
		line, err := plotter.NewLine(meanPerBin(steps, conc.X.Min, conc.X.Max, concBins))
		if err != nil {
			return nil, err
		}
		line.StepStyle = plotter.PostStep
		line.Color = colorRunning
		line.FillColor = colorArea
		conc.Add(line)
	}
	// One background behind the panels and the legends, drawn by draw.
	timeline.BackgroundColor, conc.BackgroundColor = nil, nil
	return &figure{
		timeline: timeline, conc: conc,
		timelineLegend: timelineLegend(tl),
		concLegend:     []legendEntry{{fmt.Sprintf("tasks running (peak %d)", peak), areaThumb{}}},
	}, nil
}

// draw draws the figure: the timeline above the tasks running, and on the
// right of each its legend.
func (f *figure) draw(dc draw.Canvas) {
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	h := dc.Max.Y - dc.Min.Y
	panels := draw.Crop(dc, 0, -vg.Points(legendWidth), 0, 0)
	top := draw.Crop(panels, 0, 0, vg.Points(concHeight), 0)
	bottom := draw.Crop(panels, 0, 0, 0, -(h - vg.Points(concHeight)))
	drawAligned([]*plot.Plot{f.timeline, f.conc}, []draw.Canvas{top, bottom})

	side := draw.Crop(dc, dc.Max.X-dc.Min.X-vg.Points(legendWidth-12), 0, 0, 0)
	// Each legend level with the top of its panel's data area.
	title := f.timeline.Title.TextStyle.Rectangle(f.timeline.Title.Text).Size().Y + f.timeline.Title.Padding
	tl := newLegend(f.timelineLegend)
	tl.Draw(draw.Crop(side, 0, 0, vg.Points(concHeight), -title-vg.Points(8)))
	conc := newLegend(f.concLegend)
	conc.Draw(draw.Crop(side, 0, 0, 0, -(h-vg.Points(concHeight))-vg.Points(8)))
}

// drawAligned draws plots one above the other in their canvases, which
// share their left and right edges, so that their data areas do too:
// the widest tick labels on the left of any panel set the left edge of all.
func drawAligned(plots []*plot.Plot, cs []draw.Canvas) {
	var left, right vg.Length
	for i, p := range plots {
		d := p.DataCanvas(cs[i])
		left, right = max(left, d.Min.X-cs[i].Min.X), max(right, cs[i].Max.X-d.Max.X)
	}
	for i, p := range plots {
		c := cs[i]
		d := p.DataCanvas(c)
		c.Min.X += left - (d.Min.X - c.Min.X)
		c.Max.X -= right - (c.Max.X - d.Max.X)
		p.Draw(c)
	}
}

// roundDuration keeps three significant digits.
func roundDuration(d time.Duration) time.Duration {
	for unit := time.Duration(1e15); unit > 1; unit /= 10 { // 1e15 ns: 11.6 days
		if d >= 100*unit {
			return d.Round(unit)
		}
	}
	return d
}

// A look is how the timeline draws a task's taken attempt.
type look int

const (
	lookNone    look = iota // not drawn: no times known
	lookOK                  // succeeded at the first attempt
	lookRetried             // succeeded after more than one attempt
	lookFailed
	lookRunning // running or pending when the stats were taken
)

var lookColor = [...]color.Color{lookOK: colorOK, lookRetried: colorRetried, lookFailed: colorFailed, lookRunning: colorRunning}

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

// look says how the task's line is drawn.
func (tl *taskLines) look(t fanout.TaskStats) look {
	if _, _, ok := tl.span(t); !ok {
		return lookNone
	}
	switch {
	case t.Outcome == "failed":
		return lookFailed
	case t.Outcome == "running" || t.Outcome == "pending":
		return lookRunning
	case t.Attempts > 1:
		return lookRetried
	}
	return lookOK
}

// drawnTry reports whether the failed attempt f is drawn.
func drawnTry(f fanout.FailedTry) bool { return !f.Sent.IsZero() && !f.Failed.Before(f.Sent) }

// drawnWait reports whether the task's wait from invocation to start is
// drawn.
func drawnWait(t fanout.TaskStats) bool {
	return !t.Invoked.IsZero() && !t.Started.IsZero() && !t.Finished.IsZero()
}

// Plot implements plot.Plotter.
func (tl *taskLines) Plot(c draw.Canvas, p *plot.Plot) {
	tx, ty := p.Transforms(&c)
	for _, t := range tl.tasks {
		y := ty(float64(t.Index))
		for _, f := range t.FailedTries {
			if !drawnTry(f) {
				continue
			}
			x0, x1 := tx(f.Sent.Sub(tl.t0).Seconds()), tx(f.Failed.Sub(tl.t0).Seconds())
			c.StrokeLine2(styleTry, x0, y, max(x1, x0+vg.Points(0.5)), y)
		}
		lk := tl.look(t)
		if lk == lookNone {
			continue
		}
		start, end, _ := tl.span(t)
		if drawnWait(t) {
			c.StrokeLine2(styleWait, tx(t.Invoked.Sub(tl.t0).Seconds()), y, tx(start), y)
		}
		x0, x1 := tx(start), tx(end)
		if x1-x0 < vg.Points(0.5) {
			x1 = x0 + vg.Points(0.5) // a task shorter than a pixel still shows
		}
		c.StrokeLine2(draw.LineStyle{Width: vg.Points(1), Color: lookColor[lk]}, x0, y, x1, y)
		if t.ColdStart {
			c.DrawGlyph(styleCold, vg.Point{X: x0, Y: y})
		}
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

// A legendEntry is a line of a legend: its text and its sample.
type legendEntry struct {
	text  string
	thumb plot.Thumbnailer
}

// timelineLegend lists the marks the timeline draws, each with its count,
// in the order of a task's story: waiting, failed attempts, outcomes, cold
// starts. Marks the plot does not hold are left out.
func timelineLegend(tl *taskLines) []legendEntry {
	var looks [len(lookColor)]int
	waits, tries, cold := 0, 0, 0
	for _, t := range tl.tasks {
		lk := tl.look(t)
		looks[lk]++
		for _, f := range t.FailedTries {
			if drawnTry(f) {
				tries++
			}
		}
		if lk != lookNone && drawnWait(t) {
			waits++
		}
		if lk != lookNone && t.ColdStart {
			cold++
		}
	}
	var es []legendEntry
	add := func(n int, text string, thumb plot.Thumbnailer) {
		if n > 0 {
			es = append(es, legendEntry{fmt.Sprintf("%s (%d)", text, n), thumb})
		}
	}
	line := func(lk look) lineThumb { return lineThumb{Color: lookColor[lk], Width: vg.Points(2)} }
	add(looks[lookOK], "ok", line(lookOK))
	add(looks[lookRetried], "ok after retries", line(lookRetried))
	add(looks[lookFailed], "failed", line(lookFailed))
	add(looks[lookRunning], "running or pending", line(lookRunning))
	add(tries, "failed attempt", lineThumb(styleTry))
	if waits > 0 {
		es = append(es, legendEntry{"wait: sent to started", lineThumb{Color: colorWait, Width: vg.Points(1)}})
	}
	add(cold, "cold start", glyphThumb(styleCold))
	return es
}

func newLegend(es []legendEntry) plot.Legend {
	l := plot.NewLegend()
	l.Top, l.Left = true, true
	l.TextStyle.Font.Size = vg.Points(10)
	l.Padding = vg.Points(3)
	l.ThumbnailWidth = vg.Points(18)
	for _, e := range es {
		l.Add(e.text, e.thumb)
	}
	return l
}

// lineThumb is a legend's sample of a line.
type lineThumb draw.LineStyle

// Thumbnail implements plot.Thumbnailer.
func (s lineThumb) Thumbnail(c *draw.Canvas) {
	y := c.Center().Y
	c.StrokeLine2(draw.LineStyle(s), c.Min.X, y, c.Max.X, y)
}

// glyphThumb is a legend's sample of a mark.
type glyphThumb draw.GlyphStyle

// Thumbnail implements plot.Thumbnailer.
func (s glyphThumb) Thumbnail(c *draw.Canvas) { c.DrawGlyph(draw.GlyphStyle(s), c.Center()) }

// areaThumb is the legend's sample of the tasks running.
type areaThumb struct{}

// Thumbnail implements plot.Thumbnailer.
func (areaThumb) Thumbnail(c *draw.Canvas) {
	r := c.Rectangle
	r.Max.Y = c.Center().Y + (r.Max.Y-r.Min.Y)/4
	c.SetColor(colorArea)
	c.Fill(r.Path())
	c.StrokeLine2(draw.LineStyle{Color: colorRunning, Width: vg.Points(1)}, r.Min.X, r.Max.Y, r.Max.X, r.Max.Y)
}

// A step of the number of tasks running: from X on, N tasks run.
type step struct {
	X float64
	N int
}

// running returns the number of tasks running over time (seconds since t0)
// as a step function, one step per time at which the number changes, and
// its peak. A task that ends when another starts makes no step: starts and
// ends at one time are counted together, so back-to-back tasks show no
// drop.
func running(tasks []fanout.TaskStats, t0 time.Time) (steps []step, peak int) {
	type event struct {
		t time.Time
		d int
	}
	var evs []event
	for _, t := range tasks {
		if t.Started.IsZero() || t.Finished.IsZero() || t.Finished.Before(t.Started) {
			continue
		}
		evs = append(evs, event{t.Started, 1}, event{t.Finished, -1})
	}
	slices.SortFunc(evs, func(a, b event) int { return a.t.Compare(b.t) })
	cur := 0
	for i, e := range evs {
		cur += e.d
		if i+1 < len(evs) && evs[i+1].t.Equal(e.t) {
			continue // more changes at this time: one step for all
		}
		x := e.t.Sub(t0).Seconds()
		if n := len(steps); n > 0 && steps[n-1].N == cur {
			continue // a task ended as another started
		}
		steps = append(steps, step{x, cur})
		peak = max(peak, cur)
	}
	return steps, peak
}

// meanPerBin returns the mean of the step function over each of n equal
// intervals of [lo, hi], as points at the start of each interval and one
// at hi with the last mean, to be drawn as post-steps. Before its first
// step the function is 0.
func meanPerBin(steps []step, lo, hi float64, n int) plotter.XYs {
	// area[k] is the integral of the function from steps[0].X to steps[k].X.
	area := make([]float64, len(steps))
	for k := 1; k < len(steps); k++ {
		area[k] = area[k-1] + float64(steps[k-1].N)*(steps[k].X-steps[k-1].X)
	}
	integral := func(x float64) float64 { // from steps[0].X (or before) to x
		k := sort.Search(len(steps), func(k int) bool { return steps[k].X > x }) - 1
		if k < 0 {
			return 0
		}
		return area[k] + float64(steps[k].N)*(x-steps[k].X)
	}
	w := (hi - lo) / float64(n)
	xys := make(plotter.XYs, n+1)
	prev := integral(lo)
	for i := range n {
		a := lo + float64(i)*w
		next := integral(a + w)
		xys[i] = plotter.XY{X: a, Y: (next - prev) / w}
		prev = next
	}
	xys[n] = plotter.XY{X: hi, Y: xys[n-1].Y}
	return xys
}

// niceTicks labels an axis with at most most ticks, 1, 2 or 5 times a
// power of ten apart, with unlabelled ticks between them; with whole set,
// only whole numbers get ticks (tasks, tasks running: no tick at 2.5).
type niceTicks struct {
	most  int
	whole bool
}

// Ticks implements plot.Ticker.
func (nt niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(lo <= hi) || math.IsInf(hi-lo, 0) {
		return nil
	}
	most := max(nt.most, 2)
	p := 1.0
	if !nt.whole && hi > lo {
		p = math.Pow(10, math.Floor(math.Log10((hi-lo)/float64(most))))
	}
	var major float64
	minors := 0 // intervals between two labelled ticks
	for ; major == 0; p *= 10 {
		for _, m := range []struct {
			f      float64
			minors int
		}{{1, 5}, {2, 2}, {5, 5}} {
			if math.Floor(hi/(m.f*p))-math.Ceil(lo/(m.f*p))+1 <= float64(most) {
				major, minors = m.f*p, m.minors
				break
			}
		}
	}
	minor := major / float64(minors)
	if nt.whole && minor < 1 {
		minor, minors = 1, int(major) // 1 or 2 apart: a tick on every whole number
	}
	decimals := max(0, -int(math.Floor(math.Log10(major)+1e-9)))
	if n := math.Floor(hi/minor) - math.Ceil(lo/minor); !(n < 1e4) || max(-lo, hi)/minor > 1<<52 {
		return nil // too far from 0 for the range's width: floats cannot count the ticks
	}
	var ticks []plot.Tick
	for k := math.Ceil(lo / minor); k*minor <= hi; k++ {
		v := k * minor
		if v == 0 {
			v = 0 // not -0
		}
		if int(math.Mod(math.Abs(k), float64(minors))) == 0 {
			ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', decimals, 64)})
		} else {
			ticks = append(ticks, plot.Tick{Value: v})
		}
	}
	return ticks
}
