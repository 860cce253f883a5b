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
	// Scattered throttles (5% of a round) do not shrink the window.
	for k := range 640 {
		if k%20 == 0 {
			w.throttled()
		} else {
			w.succeeded()
		}
	}
	if l, _ := w.limit(t0); l != 64 {
		t.Fatalf("after 5%% throttles: %d, want 64", l)
	}
	// Throttles past a tenth of a round halve it at once...
	for range 6 {
		w.throttled()
	}
	if l, _ := w.limit(t0); l != 64 {
		t.Fatalf("after 6 throttles: %d, want 64 (a tenth of 64 is 6.4)", l)
	}
	w.throttled()
	if l, _ := w.limit(t0); l != 32 {
		t.Fatalf("after 7 throttles: %d, want 32", l)
	}
	// ... and a new round starts: three more throttles are not enough.
	for range 3 {
		w.throttled()
	}
	if l, _ := w.limit(t0); l != 32 {
		t.Fatalf("after 3 more: %d, want 32", l)
	}
	for range 29 {
		w.succeeded()
	}
	// Successes grow it by about one per round.
	for range 33 {
		w.succeeded()
	}
	if l, _ := w.limit(t0); l != 33 {
		t.Fatalf("after a round of successes: %d, want 33", l)
	}
	for range 100000 {
		w.succeeded()
	}
	if l, _ := w.limit(t0); l != 64 {
		t.Fatalf("grows back to %d, want the cap 64", l)
	}
	// Throttled rounds keep halving down to one invocation.
	for range 1000 {
		w.throttled()
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

func TestBackoffGrowsWithThrottles(t *testing.T) {
	var tr taskRec
	tr.tries = 1
	prev := backoffCeiling(&tr)
	if prev != backoffBase {
		t.Fatalf("first retry ceiling %v, want %v", prev, backoffBase)
	}
	// A throttled send gives its attempt back but still doubles the wait.
	for range 12 {
		tr.throttled++
		c := backoffCeiling(&tr)
		if c < prev || (c == prev && c != backoffCap) {
			t.Fatalf("after %d throttles the ceiling is %v, was %v: it must double up to %v", tr.throttled, c, prev, backoffCap)
		}
		prev = c
	}
	if prev != backoffCap {
		t.Errorf("ceiling %v after 12 throttles, want the cap %v", prev, backoffCap)
	}
	tr.throttled = 255
	tr.tries = 1 << 30
	if c := backoffCeiling(&tr); c != backoffCap {
		t.Errorf("ceiling %v with saturated counts, want %v", c, backoffCap)
	}
}
