package fanout

import (
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := newWindow(64, Ramp{}, t0)
	if l, _ := w.limit(t0); l != 64 {
		t.Fatalf("initial limit %d, want 64", l)
	}
	w.throttled(t0, t0.Add(time.Millisecond))
	if l, _ := w.limit(t0); l != 32 {
		t.Fatalf("after a throttle: %d, want 32", l)
	}
	// An echo of the same overload (sent before the cut) does not cut again.
	w.throttled(t0, t0.Add(2*time.Millisecond))
	if l, _ := w.limit(t0); l != 32 {
		t.Fatalf("after an echo: %d, want 32", l)
	}
	w.throttled(t0.Add(3*time.Millisecond), t0.Add(4*time.Millisecond))
	if l, _ := w.limit(t0); l != 16 {
		t.Fatalf("after a second throttle: %d, want 16", l)
	}
	for range 17 { // about one per invocation of a full window
		w.succeeded()
	}
	if l, _ := w.limit(t0); l != 17 {
		t.Fatalf("after a round of successes: %d, want 17", l)
	}
	for range 10000 {
		w.succeeded()
	}
	if l, _ := w.limit(t0); l != 64 {
		t.Fatalf("grows back to %d, want the cap 64", l)
	}
	for range 20 {
		w.lastCut = time.Time{}
		w.throttled(t0, t0)
	}
	if l, _ := w.limit(t0); l != 1 {
		t.Fatalf("floor %d, want 1", l)
	}
}

func TestRamp(t *testing.T) {
	t0 := time.Unix(1000, 0)
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
		l, wait := w.limit(t0.Add(tc.at))
		if l != tc.want || wait != tc.wait {
			t.Errorf("at %v: limit %d wait %v, want %d, %v", tc.at, l, wait, tc.want, tc.wait)
		}
	}
}
