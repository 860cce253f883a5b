package jobplot

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gowren/gowren/fanout"
	"gonum.org/v1/plot"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// at is t0 plus s seconds.
func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// ran is a task that ran from start to end seconds after t0.
func ran(i int, start, end float64) fanout.TaskStats {
	return fanout.TaskStats{Index: i, Outcome: "ok", Attempts: 1, Started: at(start), Finished: at(end), Received: at(end)}
}

func TestRunning(t *testing.T) {
	tests := []struct {
		name  string
		tasks []fanout.TaskStats
		want  []step
		peak  int
	}{
		{"back to back on one worker, beside a long task",
			[]fanout.TaskStats{ran(0, 0, 1), ran(1, 1, 2), ran(2, 0, 2)},
			[]step{{0, 2}, {2, 0}}, 2},
		{"two end as two start",
			[]fanout.TaskStats{ran(0, 0, 1), ran(1, 0, 1), ran(2, 1, 3), ran(3, 1, 2)},
			[]step{{0, 2}, {2, 1}, {3, 0}}, 2},
		{"a real gap",
			[]fanout.TaskStats{ran(0, 0, 1), ran(1, 1.5, 2)},
			[]step{{0, 1}, {1, 0}, {1.5, 1}, {2, 0}}, 1},
		{"one ends as two start",
			[]fanout.TaskStats{ran(0, 0, 1), ran(1, 1, 2), ran(2, 1, 2)},
			[]step{{0, 1}, {1, 2}, {2, 0}}, 2},
		{"tasks without both times are left out",
			[]fanout.TaskStats{ran(0, 0, 1), {Index: 1, Outcome: "running", Started: at(0.5)}, {Index: 2, Outcome: "failed", Received: at(0.7)}, ran(3, 2, 1)},
			[]step{{0, 1}, {1, 0}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, peak := running(tt.tasks, t0)
			if peak != tt.peak || !slices.EqualFunc(steps, tt.want, func(a, b step) bool { return a.N == b.N && math.Abs(a.X-b.X) < 1e-9 }) {
				t.Errorf("running = %v, peak %d; want %v, peak %d", steps, peak, tt.want, tt.peak)
			}
		})
	}
}

// The panel of tasks running shows no drop between back-to-back tasks,
// even a microsecond apart on the worker's clock, and keeps real gaps and
// the area under the curve (task-seconds).
func TestMeanPerBin(t *testing.T) {
	tests := []struct {
		name     string
		tasks    []fanout.TaskStats
		lo, hi   float64
		min, max float64 // of the means over (lo, hi)
	}{
		{"back to back", []fanout.TaskStats{ran(0, 0, 1), ran(1, 1, 2), ran(2, 0, 2)}, 0, 2, 2, 2},
		{"a microsecond apart", []fanout.TaskStats{ran(0, 0, 1), ran(1, 1.000001, 2), ran(2, 0, 2)}, 0, 2, 1.999, 2},
		{"many a microsecond apart", func() []fanout.TaskStats {
			var ts []fanout.TaskStats
			for i := range 1000 {
				ts = append(ts, ran(2*i, float64(i)/1000, float64(i+1)/1000-1e-6), ran(2*i+1, float64(i)/1000+1e-6, float64(i+1)/1000))
			}
			return ts
		}(), 0, 1, 1.99, 2},
		{"a real gap", []fanout.TaskStats{ran(0, 0, 1), ran(1, 1.5, 2)}, 0, 2, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, _ := running(tt.tasks, t0)
			xys := meanPerBin(steps, tt.lo, tt.hi, concBins)
			if len(xys) != concBins+1 || xys[0].X != tt.lo || xys[concBins].X != tt.hi {
				t.Fatalf("%d points from %v to %v", len(xys), xys[0].X, xys[len(xys)-1].X)
			}
			lo, hi, area := math.Inf(1), math.Inf(-1), 0.0
			for i, p := range xys[:concBins] {
				lo, hi = min(lo, p.Y), max(hi, p.Y)
				area += p.Y * (xys[i+1].X - p.X)
			}
			if lo < tt.min-1e-9 || hi > tt.max+1e-9 {
				t.Errorf("means from %v to %v, want within [%v, %v]", lo, hi, tt.min, tt.max)
			}
			want := 0.0
			for _, ts := range tt.tasks {
				want += ts.Finished.Sub(ts.Started).Seconds()
			}
			if math.Abs(area-want) > 1e-6 {
				t.Errorf("area %v task-seconds, want %v", area, want)
			}
		})
	}
	// A gap as long as many bins shows as bins with none running.
	steps, _ := running([]fanout.TaskStats{ran(0, 0, 1), ran(1, 1.5, 2)}, t0)
	for _, p := range meanPerBin(steps, 0, 2, concBins) {
		if p.X > 1.01 && p.X < 1.49 && p.Y != 0 {
			t.Errorf("%v running at %vs, in the gap", p.Y, p.X)
		}
	}
}

func TestNiceTicks(t *testing.T) {
	tests := []struct {
		lo, hi float64
		nt     niceTicks
		labels []string // nil: only check the invariants
	}{
		{-0.5, 0.5, niceTicks{10, true}, []string{"0"}},
		{-0.5, 3.5, niceTicks{10, true}, []string{"0", "1", "2", "3"}},
		{-0.5, 9.5, niceTicks{10, true}, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}},
		{-0.5, 9.5, niceTicks{5, true}, []string{"0", "2", "4", "6", "8"}},
		{-0.5, 63.5, niceTicks{10, true}, []string{"0", "10", "20", "30", "40", "50", "60"}},
		{0, 2, niceTicks{5, true}, []string{"0", "1", "2"}},
		{0, 1, niceTicks{5, true}, []string{"0", "1"}},
		{0, 1.22, niceTicks{10, false}, []string{"0.0", "0.2", "0.4", "0.6", "0.8", "1.0", "1.2"}},
		{-0.003, 0.945, niceTicks{10, false}, []string{"0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"}},
		{0, 0.0042, niceTicks{10, false}, []string{"0.0000", "0.0005", "0.0010", "0.0015", "0.0020", "0.0025", "0.0030", "0.0035", "0.0040"}},
		{0, 3600, niceTicks{10, false}, []string{"0", "500", "1000", "1500", "2000", "2500", "3000", "3500"}},
		{-0.5, 99999.5, niceTicks{10, true}, nil},
		{-0.5, 12344.5, niceTicks{7, true}, nil},
		{0, 7, niceTicks{5, true}, nil},
		{0, 13, niceTicks{5, true}, nil},
		{0.2, 0.8, niceTicks{5, true}, []string{}},
	}
	for _, tt := range tests {
		ticks := tt.nt.Ticks(tt.lo, tt.hi)
		var labels []string
		var major []float64
		for i, tk := range ticks {
			if tk.Value < tt.lo || tk.Value > tt.hi || i > 0 && tk.Value <= ticks[i-1].Value {
				t.Errorf("Ticks(%v, %v): %v out of range or order", tt.lo, tt.hi, ticks)
				break
			}
			if tt.nt.whole && tk.Value != math.Trunc(tk.Value) {
				t.Errorf("Ticks(%v, %v): tick at %v, not a whole number", tt.lo, tt.hi, tk.Value)
			}
			if tk.Label == "" {
				continue
			}
			if v, err := strconv.ParseFloat(tk.Label, 64); err != nil || math.Abs(v-tk.Value) > 1e-9*max(1, math.Abs(v)) {
				t.Errorf("Ticks(%v, %v): label %q at %v", tt.lo, tt.hi, tk.Label, tk.Value)
			}
			labels, major = append(labels, tk.Label), append(major, tk.Value)
		}
		if tt.labels != nil && !slices.Equal(labels, tt.labels) {
			t.Errorf("Ticks(%v, %v) with %+v labels %q, want %q", tt.lo, tt.hi, tt.nt, labels, tt.labels)
		}
		if tt.labels == nil && (len(labels) < 2 || len(labels) > tt.nt.most) {
			t.Errorf("Ticks(%v, %v) labels %q: want 2 to %d", tt.lo, tt.hi, labels, tt.nt.most)
		}
		for i := 2; i < len(major); i++ { // evenly spaced
			if d, d0 := major[i]-major[i-1], major[1]-major[0]; math.Abs(d-d0) > 1e-9*d0 {
				t.Errorf("Ticks(%v, %v): labels %q unevenly spaced", tt.lo, tt.hi, labels)
				break
			}
		}
	}
}

func TestRoundDuration(t *testing.T) {
	tests := []struct{ in, want time.Duration }{
		{3391234567, 3390 * time.Millisecond},
		{945312345, 945 * time.Millisecond},
		{12345, 12300},
		{59996 * time.Millisecond, 60 * time.Second},
		{3*time.Hour + 25*time.Minute + 17*time.Second, 3*time.Hour + 25*time.Minute},
		{999, 999},
		{0, 0},
	}
	for _, tt := range tests {
		if got := roundDuration(tt.in); got != tt.want {
			t.Errorf("roundDuration(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestTimelineLegend(t *testing.T) {
	retried := ran(1, 0.2, 0.4)
	retried.Attempts = 2
	retried.FailedTries = []fanout.FailedTry{{Sent: at(0), Failed: at(0.1), Reason: "flaky"}}
	failed := fanout.TaskStats{Index: 2, Outcome: "failed", Attempts: 1, Invoked: at(0), Received: at(0.3),
		FailedTries: []fanout.FailedTry{{Sent: at(0), Failed: at(0.3), Reason: "boom"}}}
	cold := ran(3, 0.1, 0.5)
	cold.ColdStart, cold.Invoked = true, at(0.05)
	tasks := []fanout.TaskStats{ran(0, 0, 1), retried, failed, cold, {Index: 4, Outcome: "pending"}}
	var names []string
	for _, e := range timelineLegend(&taskLines{tasks: tasks, t0: t0}) {
		if e.thumb == nil {
			t.Errorf("legend entry %q without a sample", e.text)
		}
		names = append(names, e.text)
	}
	want := []string{"ok (2)", "ok after retries (1)", "failed (1)", "failed attempt (2)", "wait: sent to started", "cold start (1)"}
	if !slices.Equal(names, want) {
		t.Errorf("legend %q, want %q", names, want)
	}
	names = nil
	for _, e := range timelineLegend(&taskLines{tasks: []fanout.TaskStats{ran(0, 0, 1), {Index: 1, Outcome: "running"}}, t0: t0}) {
		names = append(names, e.text)
	}
	if want := []string{"ok (1)"}; !slices.Equal(names, want) {
		t.Errorf("legend of a job with one task done %q, want %q", names, want)
	}
}

func TestNiceTicksFarFromZero(t *testing.T) {
	// Not a plot this package draws (both axes start at or near 0), but the
	// ticker must end.
	if ticks := (niceTicks{most: 10}).Ticks(1e17, 1e17+1); len(ticks) > 0 {
		t.Errorf("ticks %v for a range floats cannot step through", ticks)
	}
}

// The axes Write draws: whole numbers of tasks and of tasks running, one
// time axis for both panels.
func TestFigureAxes(t *testing.T) {
	for _, n := range []int{1, 3, 10, 64, 1000} {
		s := fanout.JobStats{ID: "j", Func: "f", Tasks: n, Succeeded: n, Submitted: t0}
		for i := range n {
			s.PerTask = append(s.PerTask, ran(i, float64(i%3)*0.5, float64(i%3)*0.5+0.75))
		}
		f, err := newFigure(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, ax := range []struct {
			name string
			a    plot.Axis
		}{{"task", f.timeline.Y}, {"tasks running", f.conc.Y}} {
			labelled := 0
			for _, tk := range ax.a.Tick.Marker.Ticks(ax.a.Min, ax.a.Max) {
				if tk.Value != math.Trunc(tk.Value) {
					t.Errorf("%d tasks: %s axis has a tick at %v", n, ax.name, tk.Value)
				}
				if tk.Label != "" {
					labelled++
				}
			}
			if labelled < 1 {
				t.Errorf("%d tasks: %s axis from %v to %v has no labelled tick", n, ax.name, ax.a.Min, ax.a.Max)
			}
		}
		if f.timeline.X.Min != f.conc.X.Min || f.timeline.X.Max != f.conc.X.Max || f.timeline.X.Max != float64(min(n-1, 2))*0.5+0.75 {
			t.Errorf("%d tasks: time axes [%v, %v] and [%v, %v]", n, f.timeline.X.Min, f.timeline.X.Max, f.conc.X.Min, f.conc.X.Max)
		}
		peak := (n+2)/3 + (n+1)/3 // tasks i%3 == 0 and 1 overlap from 0.5 to 0.75
		if want := fmt.Sprintf("tasks running (peak %d)", peak); len(f.concLegend) != 1 || f.concLegend[0].text != want {
			t.Errorf("%d tasks: legend of the tasks running %v, want %q", n, f.concLegend, want)
		}
		if want := fmt.Sprintf("ok (%d)", n); len(f.timelineLegend) != 1 || f.timelineLegend[0].text != want {
			t.Errorf("%d tasks: timeline legend %v, want only %q", n, f.timelineLegend, want)
		}
	}
}
