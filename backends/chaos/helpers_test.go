package chaos_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/chaos"
)

// hangGuard bounds every wait for something that should happen promptly;
// reaching it fails the test instead of hanging the run.
const hangGuard = time.Minute

// call is one call the fake backend received.
type call struct {
	ctx     context.Context
	payload []byte
}

// fakeBackend counts calls and runs fn for each (echo when nil). Every call
// is announced on entered (when non-nil) before fn runs.
type fakeBackend struct {
	fn      func(ctx context.Context, payload []byte) ([]byte, error)
	entered chan call
	limits  backends.Limits
	closeFn func() error

	calls  atomic.Int64
	closed atomic.Int64
}

func (b *fakeBackend) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	b.calls.Add(1)
	if b.entered != nil {
		b.entered <- call{ctx, payload}
	}
	if b.fn != nil {
		return b.fn(ctx, payload)
	}
	return append([]byte("reply:"), payload...), nil
}

func (b *fakeBackend) Limits() backends.Limits { return b.limits }

func (b *fakeBackend) Close() error {
	b.closed.Add(1)
	if b.closeFn != nil {
		return b.closeFn()
	}
	return nil
}

// fakeAsync is a fakeBackend with InvokeAsync; every delivery is sent on
// delivered (buffered by the test).
type fakeAsync struct {
	fakeBackend
	delivered chan []byte
	asyncErr  error
}

func (b *fakeAsync) InvokeAsync(_ context.Context, payload []byte) error {
	if b.asyncErr != nil {
		return b.asyncErr
	}
	b.delivered <- append([]byte(nil), payload...)
	return nil
}

// fakeClock is a chaos.Clock whose time moves only when the test says so.
// Every timer made is announced on made, so a test can check each delay the
// wrapper asks for and fire it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]bool
	made   chan *fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	d       time.Duration
	at      time.Time
	ch      chan time.Time
	stopped atomic.Bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), timers: map[*fakeTimer]bool{}, made: make(chan *fakeTimer, 1024)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) chaos.Timer {
	c.mu.Lock()
	t := &fakeTimer{c: c, d: d, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
	} else {
		c.timers[t] = true
	}
	c.mu.Unlock()
	c.made <- t
	return t
}

// Advance moves the clock forward by d and fires the timers due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for t := range c.timers {
		if !t.at.After(c.now) {
			delete(c.timers, t)
			t.ch <- c.now
		}
	}
}

// fire moves the clock to t's deadline (if it is later) and fires t.
func (t *fakeTimer) fire() {
	c := t.c
	c.mu.Lock()
	d := t.at.Sub(c.now)
	c.mu.Unlock()
	c.Advance(max(d, 0))
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.stopped.Store(true)
	pending := t.c.timers[t]
	delete(t.c.timers, t)
	return pending
}

// pending reports how many timers wait to fire.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// nextTimer returns the next timer the wrapper makes.
func (c *fakeClock) nextTimer(t *testing.T) *fakeTimer {
	t.Helper()
	select {
	case tm := <-c.made:
		return tm
	case <-time.After(hangGuard):
		t.Fatal("no timer was made")
		return nil
	}
}

// noTimer fails if a timer was made and not yet taken.
func (c *fakeClock) noTimer(t *testing.T) {
	t.Helper()
	select {
	case tm := <-c.made:
		t.Fatalf("unexpected timer of %v", tm.d)
	default:
	}
}

// recv receives from ch or fails after hangGuard.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hangGuard):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// result is what an Invoke returned.
type result struct {
	reply []byte
	err   error
}

// invokeAsync runs b.Invoke in a goroutine owned by the test.
func invokeAsync(t *testing.T, ctx context.Context, b backends.Backend, payload string) <-chan result {
	t.Helper()
	ch := make(chan result, 1)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() {
		r, err := b.Invoke(ctx, []byte(payload))
		ch <- result{r, err}
	})
	return ch
}

// returned reports whether ch already holds a result.
func returned(ch <-chan result) bool { return len(ch) > 0 }

// kind classifies an Invoke outcome for the determinism tests.
func kind(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, backends.ErrThrottled):
		return "throttle"
	case errors.Is(err, backends.ErrTransport):
		return "before"
	case errors.Is(err, backends.ErrWorkerLost) && strings.Contains(err.Error(), "crashed"):
		return "crash"
	case errors.Is(err, backends.ErrWorkerLost):
		return "after"
	}
	return "other: " + err.Error()
}

// closeAtEnd closes b when the test ends, after t.Context() is cancelled
// (so that wrapped calls blocked on it end even when the test failed).
func closeAtEnd(t *testing.T, b backends.Backend) {
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}
