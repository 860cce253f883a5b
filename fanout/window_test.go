package fanout

import (
	"math/rand/v2"
	"testing"
	"time"
)

// flight simulates sends through a window: each send ends, later, as
// throttled or not. Outcomes are taken in a shuffled order, as replies come
// back out of order; throttles come back first, as they do.
func flight(w *window, sends int, throttled func(k int) bool, r *rand.Rand) {
	type out struct {
		round     int
		throttled bool
	}
	var pending []out
	for k := range sends {
		pending = append(pending, out{w.sent(), throttled(k)})
	}
	r.Shuffle(len(pending), func(a, b int) { pending[a], pending[b] = pending[b], pending[a] })
	for _, o := range pending {
		if o.throttled {
			w.outcome(o.round, true)
		}
	}
	for _, o := range pending {
		if !o.throttled {
			w.outcome(o.round, false)
		}
	}
}

func TestWindowScatteredThrottlesKeepIt(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	w := newWindow(500, Ramp{}, 0)
	// 7% of sends throttled, at random, for 40 rounds: the throttles of a
	// round come back before its successes, and still the window stays.
	for range 40 {
		flight(w2(&w), 500, func(int) bool { return r.Float64() < 0.07 }, r)
	}
	if l, _ := w.limit(0); l < 450 {
		t.Fatalf("window %d after scattered 7%% throttles, want about 500", l)
	}
}

func w2(w *window) *window { return w }

func TestWindowFindsCap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	w := newWindow(1000, Ramp{}, 0)
	// A platform that admits 300 at a time: the sends of a window beyond
	// 300 are throttled.
	for range 60 {
		l, _ := w.limit(0)
		flight(&w, l, func(k int) bool { return k >= 300 }, r)
	}
	if l, _ := w.limit(0); l < 270 || l > 330 {
		t.Fatalf("window %d under a cap of 300, want within 10%%", l)
	}
}

func TestWindowFloorAndGrowth(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	w := newWindow(64, Ramp{}, 0)
	for range 20 {
		flight(&w, 40, func(int) bool { return true }, r)
	}
	if l, _ := w.limit(0); l != 1 {
		t.Fatalf("window %d when every send is throttled, want 1", l)
	}
	// Successes grow it by about one per window of them, up to the max.
	for range 200 {
		l, _ := w.limit(0)
		flight(&w, l, func(int) bool { return false }, r)
	}
	if l, _ := w.limit(0); l != 64 {
		t.Fatalf("window %d after many successes, want the cap 64", l)
	}
}

func TestWindowEchoesNotJudged(t *testing.T) {
	w := newWindow(100, Ramp{}, 0)
	var rounds []int
	for range 100 {
		rounds = append(rounds, w.sent())
	}
	// Half of the round throttled: a cut...
	for _, rd := range rounds[:50] {
		w.outcome(rd, true)
	}
	l1, _ := w.limit(0)
	if l1 > 90 {
		t.Fatalf("window %d after 50 of 100 throttled, want it cut", l1)
	}
	// ... and the sends made since, bouncing at once as they do under a
	// cap, are judged in a round of their own.
	var more []int
	for range 30 {
		more = append(more, w.sent())
	}
	for _, rd := range more {
		w.outcome(rd, true)
	}
	for _, rd := range rounds[50:] {
		w.outcome(rd, false)
	}
	l2, _ := w.limit(0)
	if l2 < 49 || l2 > 52 {
		t.Fatalf("window %d once the round ended with 50 of 100 through, want about 50", l2)
	}
}

func TestRamp(t *testing.T) {
	t0 := time.Unix(1000, 0).UnixNano()
	w := newWindow(5000, Ramp{Step: 1000, Interval: 10 * time.Second}, t0)
	for _, tc := range []struct {
		at   time.Duration
		want int
		wait time.Duration
	}{
		{0, 1000, 10 * time.Second},
		{9 * time.Second, 1000, time.Second},
		{10 * time.Second, 2000, 10 * time.Second},
		{45 * time.Second, 5000, 0},
	} {
		l, wait := w.limit(t0 + int64(tc.at))
		if l != tc.want || wait != tc.wait {
			t.Errorf("at %v: limit %d wait %v, want %d, %v", tc.at, l, wait, tc.want, tc.wait)
		}
	}
}

func TestBackoffCeiling(t *testing.T) {
	var tk task
	tk.sent = 1
	prev := backoffCeiling(&tk)
	if prev != backoffBase {
		t.Fatalf("first retry ceiling %v, want %v", prev, backoffBase)
	}
	// Every send, throttled or not, doubles the wait, up to the cap.
	for range 12 {
		tk.sent++
		tk.norun++
		c := backoffCeiling(&tk)
		if c < prev || (c == prev && c != backoffCap) {
			t.Fatalf("after %d sends the ceiling is %v, was %v: it must double up to %v", tk.sent, c, prev, backoffCap)
		}
		prev = c
	}
	if prev != backoffCap {
		t.Errorf("ceiling %v after 13 sends, want the cap %v", prev, backoffCap)
	}
	tk.sent = 1 << 30
	if c := backoffCeiling(&tk); c != backoffCap {
		t.Errorf("ceiling %v with saturated counts, want %v", c, backoffCap)
	}
}

func TestBestBatch(t *testing.T) {
	for _, tc := range []struct {
		name                string
		r, s                int
		mean, p95, overhead float64 // ns
		want                int     // 0: any large batch
	}{
		{"1 s tasks, 50 ms invocations: long, alone", 9000, 1000, 1e9, 1e9, 5e7, 1},
		{"10 s tasks", 9000, 1000, 1e10, 1e10, 5e7, 1},
		{"local 30 ms tasks", 400, 4, 3e7, 3e7, 1e5, 1},
		{"monte carlo", 62, 2, 2e7, 2e7, 3e4, 1},
		{"no-op tasks", 100000, 2, 50, 80, 1e4, 0},
		{"no-op tasks near the end: one round, as balance costs more than it saves", 60, 2, 50, 80, 1e4, 30},
		{"20 ms tasks near the end: 3 batches a slot", 60, 2, 2e7, 2e7, 1e7, 10},
		{"tiny tasks, spread out: smaller", 100000, 2, 50, 5000, 1e4, 197},
		{"fewer tasks than slots", 5, 1000, 1e6, 1e6, 5e7, 1},
		{"20 ms tasks, 10 ms calls", 1200, 100, 2e7, 2e7, 1e7, 4},
		{"the same, spread out", 1200, 100, 2e7, 8e7, 1e7, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := bestBatch(tc.r, tc.s, tc.mean, tc.p95, tc.overhead)
			if tc.want == 0 {
				if got < 500 {
					t.Fatalf("bestBatch = %d, want a large batch", got)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("bestBatch = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestSizerWaitsForSamples(t *testing.T) {
	s := newSizer(0)
	for range minSizerSamples - 1 {
		s.observeTask(50)
		s.observeInvocation(1e4)
	}
	if b := s.size(100000, 2); b != 1 {
		t.Fatalf("size %d before %d replies, want 1", b, minSizerSamples)
	}
	s.observeTask(50)
	s.observeInvocation(1e4)
	if b := s.size(100000, 2); b < 500 {
		t.Fatalf("size %d after enough samples of no-op tasks, want a large batch", b)
	}
	// One slow overhead among many (a cold start) does not move it.
	s.observeInvocation(5e9)
	if b := s.size(100000, 2); b < 500 {
		t.Fatalf("size %d after one outlier, want a large batch", b)
	}
	if f := newSizer(7); f.size(10, 2) != 7 {
		t.Fatal("Options.BatchSize is not honoured")
	}
}

func TestWindowCapHeldByEarlierSends(t *testing.T) {
	// 1,000 sent under a cap of 300: 300 run (long tasks), 700 bounce.
	w := newWindow(1000, Ramp{}, 0)
	var first []int
	for range 1000 {
		first = append(first, w.sent())
	}
	for _, rd := range first[300:] {
		w.outcome(rd, true)
	}
	// The bounced tasks are sent again while the 300 still run: every one
	// bounces, again and again. The window must stay near the 300 that
	// run, not fall to nothing.
	for range 20 {
		l, _ := w.limit(0)
		var again []int
		for range max(l-300, 20) {
			again = append(again, w.sent())
		}
		for _, rd := range again {
			w.outcome(rd, true)
		}
	}
	if l, _ := w.limit(0); l < 270 || l > 330 {
		t.Fatalf("window %d while 300 run and every other send bounces, want about 300", l)
	}
	for _, rd := range first[:300] {
		w.outcome(rd, false)
	}
	if l, _ := w.limit(0); l < 270 || l > 331 {
		t.Fatalf("window %d once the 300 ended, want about 300", l)
	}
}
