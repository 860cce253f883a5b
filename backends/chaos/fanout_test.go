package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/chaos"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
)

// runs counts the completed runs of work per job and index: the side
// effects a user function would have.
var runs sync.Map // "job/index" -> *atomic.Int64

// work takes about a millisecond (so crashes can strike mid-batch), counts
// its completed run, and returns x*x+1.
var work = fanout.Register("chaos_test.work", func(ctx context.Context, x int) (int, error) {
	t := time.NewTimer(time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	info := fanout.Task(ctx)
	n, _ := runs.LoadOrStore(fmt.Sprintf("%s/%d", info.Job, info.Index), new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	return x*x + 1, nil
})

// asyncLocal is a local backend with native asynchronous invocation, as a
// cloud platform has: InvokeAsync returns at once and the invocation runs
// in the background, its reply going to the store. Close waits for it.
type asyncLocal struct {
	*local.Backend
	wg sync.WaitGroup
}

func (a *asyncLocal) InvokeAsync(ctx context.Context, payload []byte) error {
	p := append([]byte(nil), payload...)
	ctx = context.WithoutCancel(ctx) // the event outlives the request
	a.wg.Go(func() { a.Backend.Invoke(ctx, p) })
	return nil
}

func (a *asyncLocal) Close() error {
	a.wg.Wait()
	return a.Backend.Close()
}

func TestFanoutSurvivesFaultMix(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name     string
		opts     fanout.Options
		native   bool    // the wrapped backend has InvokeAsync
		straggle float64 // StragglerFactor
	}{
		{"sync", fanout.Options{}, false, 3},
		// Stragglers well past the 100ms floor of the speculation rule.
		{"speculation", fanout.Options{Speculation: true}, false, 100},
		// Async mode on a backend without InvokeAsync: synchronous calls
		// whose replies go through the store.
		{"async", fanout.Options{Async: true}, false, 3},
		// Async mode through InvokeAsync: late duplicate deliveries and
		// events that ran although the call failed.
		{"async-native", fanout.Options{Async: true}, true, 3},
	} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			faultMix(t, mode.opts, mode.native, mode.straggle)
		})
	}
}

func faultMix(t *testing.T, opts fanout.Options, native bool, straggle float64) {
	n := 400
	if testing.Short() {
		n = 100
	}
	faults := chaos.Faults{
		Seed:     3,
		Throttle: 0.05, ThrottleRetryAfter: time.Millisecond,
		FailBefore: 0.1,
		FailAfter:  0.1,
		Crash:      0.05, CrashWithin: 3 * time.Millisecond,
		Duplicate: 0.05, DuplicateDelay: 5 * time.Millisecond,
		Straggler: 0.05, StragglerFactor: straggle,
		Latency: 200 * time.Microsecond, LatencyJitter: 500 * time.Microsecond,
		ColdStart: 2 * time.Millisecond, IdleTimeout: 20 * time.Millisecond,
		Concurrency: 4, // the executor asks for 8 at once: the cap throttles
	}
	// With two tasks per invocation the concurrency cap admits at least
	// n/2 calls, so the job meets at least the faults drawn for calls 0 to
	// n/2-1 (fixed by the seed): count those.
	const batch = 2
	_, least := sequence(t, chaos.Faults{
		Seed: faults.Seed, Throttle: faults.Throttle, FailBefore: faults.FailBefore, FailAfter: faults.FailAfter,
		Crash: faults.Crash, CrashWithin: faults.CrashWithin, Duplicate: faults.Duplicate,
		Straggler: faults.Straggler, StragglerFactor: 1,
	}, n/batch)
	var inner backends.Backend = local.New(&local.Options{Concurrency: 8})
	if native {
		inner = &asyncLocal{Backend: inner.(*local.Backend)}
	}
	cb := chaos.Wrap(inner, faults)
	opts.Concurrency, opts.BatchSize, opts.Retries = 8, batch, 30
	opts.Logger = slog.New(slog.DiscardHandler)
	ex := fanout.NewExecutor(cb, &opts)
	defer func() {
		if err := ex.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	in := make([]int, n)
	for i := range in {
		in[i] = i
	}
	j, err := fanout.Start(ctx, ex, work, in)
	if err != nil {
		t.Fatal(err)
	}
	seen := make([]int, n)
	for r := range j.Results(ctx) {
		if r.Err != nil {
			t.Fatalf("task %d: %v", r.Index, r.Err)
		}
		if r.Value != r.Index*r.Index+1 {
			t.Fatalf("task %d = %d, want %d", r.Index, r.Value, r.Index*r.Index+1)
		}
		seen[r.Index]++
	}
	total := 0
	for i, k := range seen {
		if k != 1 {
			t.Errorf("index %d yielded %d results, want exactly 1", i, k)
		}
		v, ok := runs.Load(fmt.Sprintf("%s/%d", j.ID(), i))
		if !ok {
			t.Errorf("index %d has a result but never ran to completion", i)
			continue
		}
		total += int(v.(*atomic.Int64).Load())
	}
	if _, err := j.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}

	cs, js := cb.Stats(), j.Stats()
	t.Logf("chaos: %+v", cs)
	t.Logf("job: invocations %d, failed %d, throttles %d, retries %d, backups %d, runs %d for %d tasks, %v",
		js.Invocations, js.FailedInvocations, js.Throttles, js.Retries, js.Backups, total, n, js.Elapsed)
	drawn := []struct {
		name       string
		got, least int
	}{
		{"Throttles", cs.Throttles, least.Throttles}, {"FailedBefore", cs.FailedBefore, least.FailedBefore},
		{"FailedAfter", cs.FailedAfter, least.FailedAfter}, {"Duplicates", cs.Duplicates, least.Duplicates},
	}
	if !native { // crashes and stragglers strike Invoke only
		drawn = append(drawn, struct {
			name       string
			got, least int
		}{"Crashes", cs.Crashes, least.Crashes}, struct {
			name       string
			got, least int
		}{"Stragglers", cs.Stragglers, least.Stragglers})
	}
	for _, c := range drawn {
		if c.least == 0 {
			t.Errorf("seed %d draws no %s in its first %d calls: choose a seed that exercises every fault", faults.Seed, c.name, n/batch)
		}
		if c.got < c.least {
			t.Errorf("%d %s injected, want at least %d", c.got, c.name, c.least)
		}
	}
	if !native && cs.ColdStarts == 0 {
		t.Errorf("no cold start: %+v", cs)
	}
	// The executor saw exactly what was injected, once each.
	if js.Succeeded != n || js.Failed != 0 {
		t.Errorf("job stats: %d succeeded, %d failed; want %d, 0", js.Succeeded, js.Failed, n)
	}
	if js.Invocations != cs.Calls {
		t.Errorf("the job counts %d invocations, the backend received %d", js.Invocations, cs.Calls)
	}
	if want := cs.Throttles + cs.CapThrottles; js.Throttles != want {
		t.Errorf("the job counts %d throttles, %d were injected", js.Throttles, want)
	}
	// Throttles are counted apart from failed invocations.
	injected := cs.FailedBefore + cs.FailedAfter + cs.Crashes
	switch {
	case opts.Async || opts.Speculation:
		// A failure reported after the worker's reply was found in the
		// store, or after another copy delivered, may not count: the tasks
		// have their results. Those that never ran always count.
		if least := cs.FailedBefore; js.FailedInvocations < least || js.FailedInvocations > injected {
			t.Errorf("the job counts %d failed invocations, want between %d and %d", js.FailedInvocations, least, injected)
		}
	case js.FailedInvocations != injected:
		t.Errorf("the job counts %d failed invocations, %d were injected", js.FailedInvocations, injected)
	}
	// Every task of a failed invocation is sent again (throttled ones are
	// resent without counting a retry).
	if want := cs.FailedBefore + cs.FailedAfter + cs.Crashes; js.Retries < want {
		t.Errorf("the job counts %d retries, want at least %d for %+v", js.Retries, want, cs)
	}
	// Replies lost after the run and duplicates ran tasks more than once:
	// side effects are at-least-once while results are exactly-once. (In
	// async mode the store may deliver what a failed call lost, and a
	// duplicate may be cancelled once the result is in.)
	if !opts.Async && total <= n {
		t.Errorf("%d completed runs for %d tasks; lost replies and duplicates should have re-run some", total, n)
	}
}

// plusOne is a fast task for the burst test.
var plusOne = fanout.Register("chaos_test.plusOne", func(_ context.Context, x int) (int, error) { return x + 1, nil })

// refusalSignal passes calls to a chaos backend and signals the first
// throttle it returns on throttled.
type refusalSignal struct {
	chaos.Backend
	throttled chan struct{}
}

func (r *refusalSignal) Invoke(ctx context.Context, p []byte) ([]byte, error) {
	reply, err := r.Backend.Invoke(ctx, p)
	if errors.Is(err, backends.ErrThrottled) {
		select {
		case r.throttled <- struct{}{}:
		default:
		}
	}
	return reply, err
}

// TestFanoutRidesTheRamp runs a job on a simulated Lambda function that may
// start only 8 environments (its ramp, with the fake clock frozen, gives no
// more): the executor sends 32 invocations at once, the platform refuses
// those that need a new environment, and the job finishes on the 8 warm
// environments without a failed task, the refusals counted as throttles.
func TestFanoutRidesTheRamp(t *testing.T) {
	t.Parallel()
	const burst, n = 8, 300
	clk := newFakeClock()
	cb := chaos.Wrap(local.New(&local.Options{Concurrency: 64}), chaos.Faults{
		Clock:     clk,
		ColdStart: time.Second, // held until the test moves the clock
		Scaling:   chaos.Scaling{Cloud: chaos.AWSLambda, Burst: burst, Refill: burst, RefillEvery: time.Hour},
	})
	b := &refusalSignal{Backend: cb, throttled: make(chan struct{}, 1)}
	ex := fanout.NewExecutor(b, &fanout.Options{Concurrency: 32, Logger: slog.New(slog.DiscardHandler)})
	defer func() {
		if err := ex.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	in := make([]int, n)
	for i := range in {
		in[i] = i
	}
	j, err := fanout.Start(ctx, ex, plusOne, in)
	if err != nil {
		t.Fatal(err)
	}
	// The burst of new environments start (their cold starts wait on the
	// clock) and a further invocation is refused; then the clock moves on
	// and the job runs on the warm environments.
	for range burst {
		if tm := clk.nextTimer(t); tm.d != time.Second {
			t.Fatalf("a timer of %v, want the cold start", tm.d)
		}
	}
	recv(t, b.throttled, "a refusal of the ramp")
	clk.Advance(time.Second)
	out, err := j.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	for i, v := range out {
		if v != i+1 {
			t.Fatalf("out[%d] = %d, want %d", i, v, i+1)
		}
	}
	cs, js := cb.Stats(), j.Stats()
	t.Logf("chaos: %+v; job: %d invocations, %d throttles, %d retries, %v", cs, js.Invocations, js.Throttles, js.Retries, js.Elapsed)
	if js.Succeeded != n || js.Failed != 0 {
		t.Errorf("job: %d succeeded, %d failed; want %d, 0", js.Succeeded, js.Failed, n)
	}
	if cs.ColdStarts != burst || cs.PeakRunning != burst || cs.Running != 0 {
		t.Errorf("chaos: %+v; want %d environments, %d running at peak, none at the end", cs, burst, burst)
	}
	if cs.RampThrottles == 0 || js.Throttles != cs.RampThrottles {
		t.Errorf("the job counts %d throttles, the platform refused %d (want at least 1)", js.Throttles, cs.RampThrottles)
	}
	if js.Invocations != cs.Calls {
		t.Errorf("the job counts %d invocations, the platform received %d", js.Invocations, cs.Calls)
	}
}
