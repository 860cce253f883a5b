package chaos_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/chaos"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
)

func TestMain(m *testing.M) {
	fanout.Init()
	goleak.VerifyTestMain(m)
}

func TestOffPassesThrough(t *testing.T) {
	t.Parallel()
	boom := errors.New("inner failure")
	inner := &fakeBackend{fn: func(_ context.Context, p []byte) ([]byte, error) {
		if string(p) == "fail" {
			return nil, boom
		}
		return append([]byte("reply:"), p...), nil
	}}
	b := chaos.Wrap(inner, chaos.Faults{Seed: 7})
	for i := range 50 {
		p := fmt.Sprintf("p%d", i)
		r, err := b.Invoke(context.Background(), []byte(p))
		if err != nil || string(r) != "reply:"+p {
			t.Fatalf("Invoke(%s) = %q, %v", p, r, err)
		}
	}
	if _, err := b.Invoke(context.Background(), []byte("fail")); err != boom {
		t.Errorf("the wrapped backend's error came back as %v, want it unchanged", err)
	}
	want := chaos.Stats{Calls: 51, InnerCalls: 51, PeakInFlight: 1}
	if st := b.Stats(); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if inner.closed.Load() != 1 {
		t.Errorf("Close closed the wrapped backend %d times, want 1", inner.closed.Load())
	}
	if _, err := b.Invoke(context.Background(), nil); !errors.Is(err, backends.ErrClosed) {
		t.Errorf("Invoke after Close: %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil || inner.closed.Load() != 1 {
		t.Errorf("second Close: %v, inner closed %d times; want nil, once", err, inner.closed.Load())
	}
}

func TestCloseReturnsInnerError(t *testing.T) {
	t.Parallel()
	bad := errors.New("inner close failed")
	b := chaos.Wrap(&fakeBackend{closeFn: func() error { return bad }}, chaos.Faults{})
	if err := b.Close(); err != bad {
		t.Errorf("Close = %v, want the wrapped backend's error", err)
	}
	if err := b.Close(); err != bad {
		t.Errorf("second Close = %v, want the same error", err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		f     chaos.Faults
		field string
	}{
		{"negative probability", chaos.Faults{Throttle: -0.1}, "Throttle"},
		{"probability over one", chaos.Faults{FailAfter: 1.5}, "FailAfter"},
		{"NaN probability", chaos.Faults{Crash: math.NaN()}, "Crash"},
		{"negative latency", chaos.Faults{Latency: -time.Second}, "Latency"},
		{"negative idle timeout", chaos.Faults{IdleTimeout: -1}, "IdleTimeout"},
		{"factor below one", chaos.Faults{StragglerFactor: 0.5}, "StragglerFactor"},
		{"infinite factor", chaos.Faults{StragglerFactor: math.Inf(1)}, "StragglerFactor"},
		{"negative cap", chaos.Faults{Concurrency: -2}, "Concurrency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f.Validate()
			if err == nil || !strings.Contains(err.Error(), "Faults."+tc.field) {
				t.Fatalf("Validate = %v, want an error naming Faults.%s", err, tc.field)
			}
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "Faults."+tc.field) {
					t.Errorf("Wrap panicked with %v, want the validation error", r)
				}
			}()
			chaos.Wrap(&fakeBackend{}, tc.f)
		})
	}
	ok := chaos.Faults{Throttle: 1, FailBefore: 0, StragglerFactor: 1, Latency: time.Second}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v, want nil", ok, err)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	base := backends.Limits{MaxRequestBytes: 100, MaxResponseBytes: 200, Concurrency: 8, Parallel: 2, InProcess: true}
	for _, tc := range []struct {
		name      string
		inner     int
		cap       int
		wantConcy int
	}{
		{"no cap", 8, 0, 8},
		{"cap below", 8, 3, 3},
		{"cap above", 8, 20, 8},
		{"unlimited inner", 0, 5, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := base
			l.Concurrency = tc.inner
			b := chaos.Wrap(&fakeBackend{limits: l}, chaos.Faults{Concurrency: tc.cap})
			closeAtEnd(t, b)
			want := l
			want.Concurrency = tc.wantConcy
			if got := b.Limits(); got != want {
				t.Errorf("Limits = %+v, want %+v", got, want)
			}
		})
	}
}

func TestAsyncOnlyWhenWrappedIsAsync(t *testing.T) {
	t.Parallel()
	plain := chaos.Wrap(&fakeBackend{}, chaos.Faults{})
	defer plain.Close()
	if _, ok := plain.(backends.AsyncBackend); ok {
		t.Error("wrapping a backend without InvokeAsync gave an AsyncBackend")
	}
	async := chaos.Wrap(&fakeAsync{delivered: make(chan []byte, 1)}, chaos.Faults{})
	defer async.Close()
	if _, ok := async.(backends.AsyncBackend); !ok {
		t.Error("wrapping an AsyncBackend lost InvokeAsync")
	}
}

// TestNeverStreams checks that a wrapped backend that streams (local does)
// does not: chaos acts on whole replies, as a cloud platform returns them.
func TestNeverStreams(t *testing.T) {
	t.Parallel()
	inner := local.New(nil)
	if _, ok := any(inner).(backends.StreamBackend); !ok {
		t.Fatal("local.Backend is not a StreamBackend: this test no longer tests anything")
	}
	b := chaos.Wrap(inner, chaos.Faults{})
	defer b.Close()
	if _, ok := b.(backends.StreamBackend); ok {
		t.Error("wrapping a StreamBackend gave a StreamBackend")
	}
	async := chaos.Wrap(&fakeAsyncStream{fakeAsync: fakeAsync{delivered: make(chan []byte, 1)}}, chaos.Faults{})
	defer async.Close()
	if _, ok := async.(backends.StreamBackend); ok {
		t.Error("wrapping an async StreamBackend gave a StreamBackend")
	}
	if _, ok := async.(backends.AsyncBackend); !ok {
		t.Error("wrapping an async StreamBackend lost InvokeAsync")
	}
}

// fakeAsyncStream is a fakeAsync that also offers InvokeStream.
type fakeAsyncStream struct{ fakeAsync }

func (b *fakeAsyncStream) InvokeStream(ctx context.Context, payload []byte, _ func([]byte)) ([]byte, error) {
	return b.Invoke(ctx, payload)
}

func TestFailBefore(t *testing.T) {
	t.Parallel()
	mine := errors.New("my platform error")
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"default", nil, backends.ErrTransport},
		{"worker lost", backends.ErrWorkerLost, backends.ErrWorkerLost},
		{"own error", mine, mine},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &fakeBackend{}
			b := chaos.Wrap(inner, chaos.Faults{FailBefore: 1, FailBeforeErr: tc.err})
			closeAtEnd(t, b)
			for range 20 {
				r, err := b.Invoke(context.Background(), []byte("x"))
				if r != nil || !errors.Is(err, tc.want) || !errors.Is(err, chaos.ErrInjected) {
					t.Fatalf("Invoke = %q, %v; want nil and an injected error wrapping %v", r, err, tc.want)
				}
			}
			if n := inner.calls.Load(); n != 0 {
				t.Errorf("the wrapped backend was called %d times; a failure before the run must not reach it", n)
			}
			if st := b.Stats(); st.FailedBefore != 20 || st.InnerCalls != 0 {
				t.Errorf("Stats = %+v, want FailedBefore 20, InnerCalls 0", st)
			}
		})
	}
}

func TestFailAfter(t *testing.T) {
	t.Parallel()
	inner := &fakeBackend{}
	b := chaos.Wrap(inner, chaos.Faults{FailAfter: 1})
	closeAtEnd(t, b)
	for range 20 {
		r, err := b.Invoke(context.Background(), []byte("x"))
		if r != nil || !errors.Is(err, backends.ErrWorkerLost) || !backends.Retryable(err) || !errors.Is(err, chaos.ErrInjected) {
			t.Fatalf("Invoke = %q, %v; want nil and a retryable injected ErrWorkerLost", r, err)
		}
	}
	if n := inner.calls.Load(); n != 20 {
		t.Errorf("the wrapped backend was called %d times, want 20: the tasks run, only the reply is lost", n)
	}
	if st := b.Stats(); st.FailedAfter != 20 || st.InnerCalls != 20 {
		t.Errorf("Stats = %+v, want FailedAfter 20, InnerCalls 20", st)
	}
}

func TestThrottle(t *testing.T) {
	t.Parallel()
	inner := &fakeBackend{}
	b := chaos.Wrap(inner, chaos.Faults{Throttle: 1, ThrottleRetryAfter: 3 * time.Second})
	closeAtEnd(t, b)
	_, err := b.Invoke(context.Background(), []byte("x"))
	var te *backends.ThrottleError
	if !errors.As(err, &te) || !errors.Is(err, backends.ErrThrottled) || backends.RetryAfter(err) != 3*time.Second {
		t.Fatalf("Invoke: %v; want a *ThrottleError asking for 3s", err)
	}
	if !errors.Is(err, chaos.ErrInjected) {
		t.Errorf("%v does not wrap ErrInjected", err)
	}
	if n := inner.calls.Load(); n != 0 {
		t.Errorf("the wrapped backend was called %d times, want 0", n)
	}
	if st := b.Stats(); st.Throttles != 1 {
		t.Errorf("Stats.Throttles = %d, want 1", st.Throttles)
	}
}

func TestDuplicateRunsBothCopies(t *testing.T) {
	t.Parallel()
	// Each copy waits for the other: Invoke succeeds only if both ran, at
	// the same time.
	var arrived atomic.Int64
	both := make(chan struct{})
	inner := &fakeBackend{fn: func(_ context.Context, p []byte) ([]byte, error) {
		if arrived.Add(1) == 2 {
			close(both)
		}
		select {
		case <-both:
		case <-time.After(hangGuard):
			return nil, errors.New("the other copy never ran concurrently")
		}
		return append([]byte("reply:"), p...), nil
	}}
	b := chaos.Wrap(inner, chaos.Faults{Duplicate: 1})
	closeAtEnd(t, b)
	r, err := b.Invoke(context.Background(), []byte("x"))
	if err != nil || string(r) != "reply:x" {
		t.Fatalf("Invoke = %q, %v; want one reply", r, err)
	}
	if n := inner.calls.Load(); n != 2 {
		t.Errorf("the wrapped backend was called %d times, want 2", n)
	}
	if st := b.Stats(); st.Duplicates != 1 || st.InnerCalls != 2 || st.Calls != 1 {
		t.Errorf("Stats = %+v, want Calls 1, Duplicates 1, InnerCalls 2", st)
	}
}

func TestDuplicateDelay(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	inner := &fakeBackend{entered: make(chan call, 2)}
	b := chaos.Wrap(inner, chaos.Faults{Duplicate: 1, DuplicateDelay: time.Second, Clock: clock})
	closeAtEnd(t, b)
	res := invokeAsync(t, t.Context(), b, "x")
	tm := clock.nextTimer(t)
	if tm.d < 0 || tm.d >= time.Second {
		t.Fatalf("the duplicate waits %v, want [0, 1s)", tm.d)
	}
	recv(t, inner.entered, "the first copy")
	if returned(res) {
		t.Fatal("Invoke returned before the delayed duplicate ran")
	}
	tm.fire()
	recv(t, inner.entered, "the duplicate")
	if r := recv(t, res, "Invoke"); r.err != nil || string(r.reply) != "reply:x" {
		t.Fatalf("Invoke = %q, %v", r.reply, r.err)
	}
}

func TestCrashCancelsTheWrappedCall(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	causes := make(chan error, 1)
	inner := &fakeBackend{entered: make(chan call, 1), fn: func(ctx context.Context, _ []byte) ([]byte, error) {
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return []byte("partial"), nil
	}}
	b := chaos.Wrap(inner, chaos.Faults{Crash: 1, CrashWithin: time.Second, Clock: clock})
	closeAtEnd(t, b)
	res := invokeAsync(t, t.Context(), b, "x")
	tm := clock.nextTimer(t)
	if tm.d <= 0 || tm.d >= time.Second {
		t.Fatalf("crash after %v, want within (0, 1s)", tm.d)
	}
	recv(t, inner.entered, "the wrapped call")
	if returned(res) {
		t.Fatal("Invoke returned before the crash")
	}
	tm.fire()
	cause := recv(t, causes, "the wrapped call's cancellation")
	if !errors.Is(cause, backends.ErrWorkerLost) {
		t.Errorf("the wrapped call was cancelled with cause %v, want a crash", cause)
	}
	r := recv(t, res, "Invoke")
	if r.reply != nil || !errors.Is(r.err, backends.ErrWorkerLost) || !errors.Is(r.err, chaos.ErrInjected) {
		t.Fatalf("Invoke = %q, %v; want nil and an injected ErrWorkerLost", r.reply, r.err)
	}
	if st := b.Stats(); st.Crashes != 1 || st.InnerCalls != 1 {
		t.Errorf("Stats = %+v, want Crashes 1, InnerCalls 1", st)
	}
}

func TestCancelBeatsCrash(t *testing.T) {
	t.Parallel()
	// The caller cancels before the planned crash: the call reports the
	// cancellation, as the Backend contract asks.
	clock := newFakeClock()
	inner := &fakeBackend{entered: make(chan call, 1), fn: func(ctx context.Context, _ []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	b := chaos.Wrap(inner, chaos.Faults{Crash: 1, FailAfter: 1, CrashWithin: time.Hour, Clock: clock})
	closeAtEnd(t, b)
	ctx, cancel := context.WithCancel(t.Context())
	res := invokeAsync(t, ctx, b, "x")
	clock.nextTimer(t)
	recv(t, inner.entered, "the wrapped call")
	cancel()
	if r := recv(t, res, "Invoke"); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Invoke: %v, want context.Canceled", r.err)
	}
	if st := b.Stats(); st.Crashes != 0 || st.FailedAfter != 0 {
		t.Errorf("Stats = %+v: a call the caller ended counts no injected fault", st)
	}
}

func TestCrashAfterTheCallEnded(t *testing.T) {
	t.Parallel()
	// The wrapped call ends before the crash point: the worker dies
	// before replying; the reply is lost and the crash timer stopped.
	clock := newFakeClock()
	inner := &fakeBackend{}
	b := chaos.Wrap(inner, chaos.Faults{Crash: 1, CrashWithin: time.Hour, Clock: clock})
	closeAtEnd(t, b)
	_, err := b.Invoke(context.Background(), []byte("x"))
	if !errors.Is(err, backends.ErrWorkerLost) {
		t.Fatalf("Invoke: %v, want ErrWorkerLost", err)
	}
	if tm := clock.nextTimer(t); !tm.stopped.Load() || clock.pending() != 0 {
		t.Errorf("the crash timer was left running")
	}
}

func TestCrashWithoutEstimate(t *testing.T) {
	t.Parallel()
	// With no CrashWithin and no completed call to learn from, the call
	// runs with a live context and its reply is lost.
	clock := newFakeClock()
	live := make(chan bool, 10)
	inner := &fakeBackend{fn: func(ctx context.Context, p []byte) ([]byte, error) {
		live <- ctx.Err() == nil
		clock.Advance(100 * time.Millisecond)
		return p, nil
	}}
	b := chaos.Wrap(inner, chaos.Faults{Crash: 1, Clock: clock})
	closeAtEnd(t, b)
	for range 2 { // a crashed call teaches nothing: still no estimate
		if _, err := b.Invoke(context.Background(), []byte("x")); !errors.Is(err, backends.ErrWorkerLost) {
			t.Fatalf("Invoke: %v, want ErrWorkerLost", err)
		}
		if !recv(t, live, "the wrapped call") {
			t.Error("a crash without an estimate cancelled the wrapped call before it started")
		}
		clock.noTimer(t)
	}
}

func TestCrashWithinLearnedDuration(t *testing.T) {
	t.Parallel()
	// Find a seed whose call 0 does not crash and call 1 does.
	var seed uint64
	for ; ; seed++ {
		out, _ := sequence(t, chaos.Faults{Seed: seed, Crash: 0.5, CrashWithin: time.Hour}, 2)
		if out[0] == "ok/1" && out[1] == "crash/1" {
			break
		}
	}
	clock := newFakeClock()
	inner := &fakeBackend{fn: func(ctx context.Context, p []byte) ([]byte, error) {
		if string(p) == "first" {
			clock.Advance(100 * time.Millisecond) // the only completed call: 100ms
			return p, nil
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	b := chaos.Wrap(inner, chaos.Faults{Seed: seed, Crash: 0.5, Clock: clock})
	closeAtEnd(t, b)
	if _, err := b.Invoke(context.Background(), []byte("first")); err != nil {
		t.Fatalf("call 0: %v", err)
	}
	res := invokeAsync(t, t.Context(), b, "second")
	tm := clock.nextTimer(t)
	if tm.d < 0 || tm.d >= 100*time.Millisecond {
		t.Errorf("crash after %v, want within the 100ms the completed call took", tm.d)
	}
	tm.fire()
	if r := recv(t, res, "call 1"); !errors.Is(r.err, backends.ErrWorkerLost) {
		t.Fatalf("call 1: %v, want a crash", r.err)
	}
}

func TestStragglerDelayIsProportional(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		factor float64
		took   time.Duration
		want   time.Duration
	}{
		{4, 100 * time.Millisecond, 300 * time.Millisecond},
		{10, 2 * time.Second, 18 * time.Second},
		{0, time.Second, 9 * time.Second}, // the default factor of 10
	} {
		t.Run(fmt.Sprintf("x%v/%v", tc.factor, tc.took), func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			inner := &fakeBackend{fn: func(_ context.Context, p []byte) ([]byte, error) {
				clock.Advance(tc.took) // the wrapped call takes tc.took
				return p, nil
			}}
			b := chaos.Wrap(inner, chaos.Faults{Straggler: 1, StragglerFactor: tc.factor, Clock: clock})
			closeAtEnd(t, b)
			res := invokeAsync(t, t.Context(), b, "x")
			tm := clock.nextTimer(t)
			if tm.d != tc.want {
				t.Errorf("reply held back %v, want %v", tm.d, tc.want)
			}
			if returned(res) {
				t.Fatal("Invoke returned before the straggler delay")
			}
			tm.fire()
			if r := recv(t, res, "Invoke"); r.err != nil || string(r.reply) != "x" {
				t.Fatalf("Invoke = %q, %v", r.reply, r.err)
			}
			if st := b.Stats(); st.Stragglers != 1 {
				t.Errorf("Stats.Stragglers = %d, want 1", st.Stragglers)
			}
		})
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	inner := &fakeBackend{}
	b := chaos.Wrap(inner, chaos.Faults{Latency: 50 * time.Millisecond, LatencyJitter: 10 * time.Millisecond, Clock: clock})
	closeAtEnd(t, b)
	seen := map[time.Duration]bool{}
	for i := range 20 {
		res := invokeAsync(t, t.Context(), b, "x")
		tm := clock.nextTimer(t)
		if tm.d < 50*time.Millisecond || tm.d >= 60*time.Millisecond {
			t.Fatalf("latency %v, want [50ms, 60ms)", tm.d)
		}
		seen[tm.d] = true
		if inner.calls.Load() != int64(i) {
			t.Fatal("the wrapped backend was called before the latency passed")
		}
		tm.fire()
		if r := recv(t, res, "Invoke"); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if len(seen) < 10 {
		t.Errorf("only %d distinct latencies in 20 calls: the jitter does not vary", len(seen))
	}
}

func TestColdStartsAndWarmReuse(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	hold := make(chan struct{})
	inner := &fakeBackend{entered: make(chan call, 10), fn: func(_ context.Context, p []byte) ([]byte, error) {
		if string(p) == "hold" {
			select {
			case <-hold:
			case <-t.Context().Done():
			}
		}
		return p, nil
	}}
	b := chaos.Wrap(inner, chaos.Faults{ColdStart: 300 * time.Millisecond, IdleTimeout: time.Minute, Clock: clock})
	closeAtEnd(t, b)

	// The first call starts a container and pays the cold start.
	res := invokeAsync(t, t.Context(), b, "x")
	tm := clock.nextTimer(t)
	if tm.d != 300*time.Millisecond {
		t.Fatalf("first call waited %v, want the 300ms cold start", tm.d)
	}
	if inner.calls.Load() != 0 {
		t.Fatal("the wrapped backend was called during the cold start")
	}
	tm.fire()
	recv(t, inner.entered, "the first call")
	recv(t, res, "the first call")

	// The next calls, one at a time, reuse it.
	for range 5 {
		clock.Advance(30 * time.Second) // idle, but less than IdleTimeout
		if _, err := b.Invoke(context.Background(), []byte("x")); err != nil {
			t.Fatal(err)
		}
		recv(t, inner.entered, "a warm call")
		clock.noTimer(t)
	}
	if st := b.Stats(); st.ColdStarts != 1 || st.WarmStarts != 5 {
		t.Fatalf("Stats = %+v, want 1 cold start and 5 warm", st)
	}

	// Two calls at once: one takes the warm container, the other starts a
	// second one.
	r1 := invokeAsync(t, t.Context(), b, "hold")
	recv(t, inner.entered, "the warm call")
	r2 := invokeAsync(t, t.Context(), b, "hold")
	tm = clock.nextTimer(t)
	if tm.d != 300*time.Millisecond {
		t.Fatalf("the second concurrent call waited %v, want a cold start", tm.d)
	}
	tm.fire()
	recv(t, inner.entered, "the cold call")
	close(hold)
	recv(t, r1, "held call")
	recv(t, r2, "held call")
	if st := b.Stats(); st.ColdStarts != 2 || st.WarmStarts != 6 {
		t.Fatalf("Stats = %+v, want 2 cold starts and 6 warm", st)
	}

	// Both containers expire after IdleTimeout.
	clock.Advance(time.Minute + time.Nanosecond)
	res = invokeAsync(t, t.Context(), b, "x")
	tm = clock.nextTimer(t)
	if tm.d != 300*time.Millisecond {
		t.Fatalf("the call after the idle timeout waited %v, want a cold start", tm.d)
	}
	tm.fire()
	recv(t, res, "the call after expiry")
	if st := b.Stats(); st.ColdStarts != 3 || st.Expired != 2 {
		t.Errorf("Stats = %+v, want 3 cold starts and 2 expired containers", st)
	}
}

func TestCrashLosesTheContainer(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	inner := &fakeBackend{}
	b := chaos.Wrap(inner, chaos.Faults{Crash: 1, CrashWithin: time.Hour, ColdStart: time.Second, Clock: clock})
	closeAtEnd(t, b)
	for i := range 2 {
		res := invokeAsync(t, t.Context(), b, "x")
		tm := clock.nextTimer(t)
		if tm.d != time.Second {
			t.Fatalf("call %d: first timer %v, want a cold start: a crashed container is not reused", i, tm.d)
		}
		tm.fire()
		clock.nextTimer(t) // the crash timer; the call ends first
		if r := recv(t, res, "Invoke"); !errors.Is(r.err, backends.ErrWorkerLost) {
			t.Fatalf("Invoke: %v, want a crash", r.err)
		}
	}
	if st := b.Stats(); st.ColdStarts != 2 || st.WarmStarts != 0 {
		t.Errorf("Stats = %+v, want 2 cold starts, no warm one", st)
	}
}

func TestConcurrencyCap(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	inner := &fakeBackend{entered: make(chan call, 10), fn: func(_ context.Context, p []byte) ([]byte, error) {
		select {
		case <-release:
		case <-t.Context().Done():
		}
		return p, nil
	}}
	b := chaos.Wrap(inner, chaos.Faults{Concurrency: 3, ThrottleRetryAfter: time.Second})
	closeAtEnd(t, b)
	held := make(chan result, 4)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	invoke := func() {
		wg.Go(func() {
			r, err := b.Invoke(t.Context(), []byte("x"))
			held <- result{r, err}
		})
	}
	for range 3 {
		invoke()
		recv(t, inner.entered, "a call within the cap")
	}
	// The cap is full: the next calls are refused at once.
	for range 2 {
		_, err := b.Invoke(context.Background(), []byte("y"))
		if !errors.Is(err, backends.ErrThrottled) || backends.RetryAfter(err) != time.Second {
			t.Fatalf("call beyond the cap: %v, want a throttle asking for 1s", err)
		}
	}
	if n := inner.calls.Load(); n != 3 {
		t.Fatalf("the wrapped backend got %d calls, want 3", n)
	}
	// One ends: one more fits.
	release <- struct{}{}
	if r := recv(t, held, "the released call"); r.err != nil {
		t.Fatal(r.err)
	}
	invoke()
	recv(t, inner.entered, "a call after one ended")
	close(release)
	for range 3 {
		if r := recv(t, held, "a held call"); r.err != nil {
			t.Fatal(r.err)
		}
	}
	st := b.Stats()
	if st.CapThrottles != 2 || st.PeakInFlight != 3 || st.InnerCalls != 4 || st.InFlight != 0 {
		t.Errorf("Stats = %+v, want 2 cap throttles, peak 3, 4 inner calls, none in flight", st)
	}
}

func TestCancelDuringDelays(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		f    chaos.Faults
		took time.Duration // how long the wrapped call takes
	}{
		{"latency", chaos.Faults{Latency: time.Hour}, 0},
		{"cold start", chaos.Faults{ColdStart: time.Hour}, 0},
		{"straggler", chaos.Faults{Straggler: 1, StragglerFactor: 2}, time.Hour},
		{"duplicate delay", chaos.Faults{Duplicate: 1, DuplicateDelay: time.Hour}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			tc.f.Clock = clock
			inner := &fakeBackend{fn: func(_ context.Context, p []byte) ([]byte, error) {
				clock.Advance(tc.took)
				return p, nil
			}}
			b := chaos.Wrap(inner, tc.f)
			closeAtEnd(t, b)
			ctx, cancel := context.WithCancel(context.Background())
			res := invokeAsync(t, ctx, b, "x")
			tm := clock.nextTimer(t)
			cancel()
			r := recv(t, res, "Invoke after cancel")
			if tc.name == "duplicate delay" {
				// The first copy replied; the duplicate was given up.
				if r.err != nil {
					t.Fatalf("Invoke: %v", r.err)
				}
			} else if !errors.Is(r.err, context.Canceled) {
				t.Fatalf("Invoke: %v, want context.Canceled", r.err)
			}
			if !tm.stopped.Load() {
				t.Error("the delay's timer was not stopped")
			}
		})
	}
}

func TestCloseEndsDelays(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	inner := &fakeBackend{}
	b := chaos.Wrap(inner, chaos.Faults{Latency: time.Hour, Clock: clock})
	res := invokeAsync(t, t.Context(), b, "x")
	tm := clock.nextTimer(t)
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	if err := recv(t, closed, "Close"); err != nil {
		t.Fatal(err)
	}
	r := recv(t, res, "Invoke after Close")
	if !errors.Is(r.err, backends.ErrClosed) {
		t.Errorf("Invoke: %v, want ErrClosed", r.err)
	}
	if !tm.stopped.Load() || inner.calls.Load() != 0 || inner.closed.Load() != 1 {
		t.Errorf("after Close: timer stopped %v, inner calls %d, inner closed %d; want true, 0, 1",
			tm.stopped.Load(), inner.calls.Load(), inner.closed.Load())
	}
}

func TestCloseWaitsForCallsInFlight(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	inner := &fakeBackend{entered: make(chan call, 100), fn: func(_ context.Context, p []byte) ([]byte, error) {
		if string(p) == "hold" {
			select {
			case <-release:
			case <-t.Context().Done():
			}
		}
		return p, nil
	}}
	b := chaos.Wrap(inner, chaos.Faults{})
	res := invokeAsync(t, t.Context(), b, "hold")
	recv(t, inner.entered, "the call")
	closed := make(chan error, 1)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() { closed <- b.Close() })
	// Once new calls are refused, Close is waiting for the held one.
	for {
		_, err := b.Invoke(context.Background(), []byte("probe"))
		if errors.Is(err, backends.ErrClosed) {
			break
		}
		recv(t, inner.entered, "a probe")
	}
	if len(closed) > 0 || returned(res) || inner.closed.Load() != 0 {
		t.Fatal("Close returned, or closed the wrapped backend, while a call was in flight")
	}
	close(release)
	if r := recv(t, res, "the call"); r.err != nil {
		t.Fatal(r.err)
	}
	if err := recv(t, closed, "Close"); err != nil {
		t.Fatal(err)
	}
	if inner.closed.Load() != 1 {
		t.Error("Close did not close the wrapped backend")
	}
}

// sequence makes n sequential calls and records, per call, the outcome and
// how many calls reached the wrapped backend.
func sequence(t *testing.T, f chaos.Faults, n int) ([]string, chaos.Stats) {
	t.Helper()
	inner := &fakeBackend{}
	b := chaos.Wrap(inner, f)
	closeAtEnd(t, b)
	out := make([]string, n)
	for i := range out {
		before := inner.calls.Load()
		payload := []byte(fmt.Sprintf("job %d call %d", time.Now().UnixNano(), i)) // payloads differ between runs
		_, err := b.Invoke(context.Background(), payload)
		out[i] = fmt.Sprintf("%s/%d", kind(err), inner.calls.Load()-before)
	}
	return out, b.Stats()
}

var mix = chaos.Faults{
	Throttle: 0.1, FailBefore: 0.1, FailAfter: 0.1, Crash: 0.05, CrashWithin: time.Hour,
	Duplicate: 0.1, Straggler: 0.05, StragglerFactor: 1,
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	const n = 2000
	f := mix
	f.Seed = 42
	a, sa := sequence(t, f, n)
	b, sb := sequence(t, f, n)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("call %d: %s the first time, %s the second, with the same seed", i, a[i], b[i])
		}
	}
	if sa != sb {
		t.Errorf("Stats differ with the same seed:\n%+v\n%+v", sa, sb)
	}
	f.Seed = 43
	c, _ := sequence(t, f, n)
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	if same == n {
		t.Error("seeds 42 and 43 gave the same faults")
	}
	// Raising one rate changes only that fault: the decisions that come
	// before it in the order stay.
	f.Seed = 42
	f.FailAfter = 0.3
	d, _ := sequence(t, f, n)
	for i := range a {
		switch a[i] {
		case "throttle/0", "before/0", "crash/1", "crash/2":
			if d[i] != a[i] {
				t.Fatalf("call %d: %s with FailAfter 0.1, %s with 0.3", i, a[i], d[i])
			}
		}
	}
	// The rates are met (the draw is fixed by the seed, so this cannot
	// flake): each fault applies only when the ones before it did not.
	expect := func(name string, got int, p float64) {
		t.Helper()
		if sd := math.Sqrt(n * p * (1 - p)); math.Abs(float64(got)-n*p) > 4*sd {
			t.Errorf("%s: %d of %d calls, want %.0f ± %.0f", name, got, n, n*p, 4*sd)
		}
	}
	expect("Throttles", sa.Throttles, 0.1)
	expect("FailedBefore", sa.FailedBefore, 0.9*0.1)
	expect("Crashes", sa.Crashes, 0.9*0.9*0.05)
	expect("FailedAfter", sa.FailedAfter, 0.9*0.9*0.95*0.1)
	expect("Duplicates", sa.Duplicates, 0.9*0.9*0.1)
	expect("Stragglers", sa.Stragglers, 0.9*0.9*0.95*0.9*0.05)
	if sa.InnerCalls != sa.Calls-sa.Throttles-sa.FailedBefore+sa.Duplicates {
		t.Errorf("Stats %+v: inner calls do not add up", sa)
	}
}

func TestDeterministicUnderConcurrency(t *testing.T) {
	t.Parallel()
	// Concurrent calls meet the same decisions as sequential ones: only
	// which payload gets which decision depends on scheduling.
	const n, workers = 1000, 8
	f := mix
	f.Seed = 9
	_, want := sequence(t, f, n)
	b := chaos.Wrap(&fakeBackend{}, f)
	closeAtEnd(t, b)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				b.Invoke(context.Background(), []byte("x"))
			}
		})
	}
	wg.Wait()
	got := b.Stats()
	got.PeakInFlight, want.PeakInFlight = 0, 0
	if got != want {
		t.Errorf("concurrent Stats %+v, sequential %+v; want equal", got, want)
	}
}

func TestAsyncFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		f         chaos.Faults
		delivered int
		want      error // nil: success
	}{
		{"off", chaos.Faults{}, 1, nil},
		{"throttle", chaos.Faults{Throttle: 1}, 0, backends.ErrThrottled},
		{"fail before", chaos.Faults{FailBefore: 1}, 0, backends.ErrTransport},
		{"fail after", chaos.Faults{FailAfter: 1}, 1, backends.ErrWorkerLost},
		{"duplicate", chaos.Faults{Duplicate: 1}, 2, nil},
		{"crash and straggler do not apply", chaos.Faults{Crash: 1, Straggler: 1, ColdStart: time.Hour, Concurrency: 1}, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inner := &fakeAsync{delivered: make(chan []byte, 4)}
			b := chaos.Wrap(inner, tc.f).(backends.AsyncBackend)
			err := b.InvokeAsync(context.Background(), []byte("event"))
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("InvokeAsync: %v, want %v", err, tc.want)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if got := len(inner.delivered); got != tc.delivered {
				t.Errorf("%d deliveries, want %d", got, tc.delivered)
			}
			for range len(inner.delivered) {
				if p := <-inner.delivered; !bytes.Equal(p, []byte("event")) {
					t.Errorf("delivered %q", p)
				}
			}
		})
	}
}

func TestAsyncInnerError(t *testing.T) {
	t.Parallel()
	bad := errors.New("rejected")
	inner := &fakeAsync{asyncErr: bad}
	b := chaos.Wrap(inner, chaos.Faults{Duplicate: 1}).(backends.AsyncBackend)
	closeAtEnd(t, b)
	if err := b.InvokeAsync(context.Background(), nil); err != bad {
		t.Errorf("InvokeAsync = %v, want the wrapped backend's error", err)
	}
}

func TestAsyncLateDuplicate(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	inner := &fakeAsync{delivered: make(chan []byte, 4)}
	b := chaos.Wrap(inner, chaos.Faults{Duplicate: 1, DuplicateDelay: time.Minute, Clock: clock}).(backends.AsyncBackend)
	closeAtEnd(t, b)
	payload := []byte("event")
	if err := b.InvokeAsync(context.Background(), payload); err != nil {
		t.Fatal(err)
	}
	copy(payload, "XXXXX") // the caller may reuse its buffer once the call returned
	recv(t, inner.delivered, "the first delivery")
	tm := clock.nextTimer(t)
	if len(inner.delivered) != 0 {
		t.Fatal("the late duplicate came early")
	}
	tm.fire()
	if p := recv(t, inner.delivered, "the late duplicate"); string(p) != "event" {
		t.Errorf("the duplicate delivered %q, want the original payload", p)
	}
}

func TestAsyncCloseDropsPendingDuplicate(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	inner := &fakeAsync{delivered: make(chan []byte, 4)}
	b := chaos.Wrap(inner, chaos.Faults{Duplicate: 1, DuplicateDelay: time.Hour, Clock: clock}).(backends.AsyncBackend)
	if err := b.InvokeAsync(context.Background(), []byte("e")); err != nil {
		t.Fatal(err)
	}
	tm := clock.nextTimer(t)
	if err := b.Close(); err != nil { // returns once the pending delivery gave up (goleak checks)
		t.Fatal(err)
	}
	if !tm.stopped.Load() || len(inner.delivered) != 1 {
		t.Errorf("after Close: timer stopped %v, %d deliveries; want true, 1", tm.stopped.Load(), len(inner.delivered))
	}
}
