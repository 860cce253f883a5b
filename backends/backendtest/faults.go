package backendtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/chaos"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/internal/layout"
)

// RunFaultSuite runs jobs on backends made by newHarness, wrapped in
// backends/chaos with each fault alone and all of them together, in sync and
// async mode, and checks that whatever is injected every input gets its
// correct result exactly once, the job's statistics count what the platform
// did, and the job leaves nothing in the store. With -short it runs the
// fault mix only, on fewer tasks.
//
// The harness's store must be reachable by the backend's workers (async
// mode keeps the replies there).
func RunFaultSuite(t *testing.T, newHarness HarnessMaker) {
	ctx := context.Background()
	h, err := newHarness(ctx, t)
	if err != nil {
		t.Fatalf("make harness: %v", err)
	}
	t.Cleanup(h.Close)
	n := 160
	if testing.Short() {
		n = 48
	}
	all := chaos.Faults{
		Throttle: 0.05, ThrottleRetryAfter: time.Millisecond, FailBefore: 0.08, FailAfter: 0.08,
		Crash: 0.04, CrashWithin: 3 * time.Millisecond, Duplicate: 0.05, DuplicateDelay: 2 * time.Millisecond,
		Straggler: 0.04, StragglerFactor: 40, Latency: 300 * time.Microsecond, ColdStart: 3 * time.Millisecond,
		Concurrency: 3,
	}
	for _, async := range []bool{false, true} {
		for k, fc := range []struct {
			name string
			f    chaos.Faults
		}{
			{"throttle", chaos.Faults{Throttle: 0.2, ThrottleRetryAfter: time.Millisecond}},
			{"fail-before", chaos.Faults{FailBefore: 0.2}},
			{"fail-after", chaos.Faults{FailAfter: 0.2}},
			{"crash", chaos.Faults{Crash: 0.2, CrashWithin: 3 * time.Millisecond}},
			{"duplicate", chaos.Faults{Duplicate: 0.2, DuplicateDelay: 2 * time.Millisecond}},
			{"straggler", chaos.Faults{Straggler: 0.1, StragglerFactor: 40}},
			{"latency-cold-start", chaos.Faults{Latency: time.Millisecond, LatencyJitter: time.Millisecond, ColdStart: 5 * time.Millisecond}},
			{"concurrency-cap", chaos.Faults{Concurrency: 2}},
			{"all", all},
		} {
			t.Run(fmt.Sprintf("async=%v/%s", async, fc.name), func(t *testing.T) {
				if testing.Short() && fc.name != "all" {
					t.Skip("-short runs the fault mix only")
				}
				f := fc.f
				f.Seed = uint64(11 + k)
				runFaults(t, h, async, f, n)
			})
		}
	}
}

// faultRuns counts completed runs per job and index, in this process: the
// side effects a user function would have, which are at-least-once.
var faultRuns sync.Map

var faultWork = fanout.Register("backendtest.faultWork", func(ctx context.Context, x int) (int, error) {
	t := time.NewTimer(2 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	info := fanout.Task(ctx)
	c, _ := faultRuns.LoadOrStore(fmt.Sprintf("%s/%d", info.Job, info.Index), new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
	return 3*x + 1, nil
})

func runFaults(t *testing.T, h Harness, async bool, f chaos.Faults, n int) {
	t.Helper()
	ctx := guard(t)
	inner, err := h.MakeBackend(ctx)
	if err != nil {
		t.Fatalf("MakeBackend: %v", err)
	}
	inProcess := inner.Limits().InProcess
	cb := chaos.Wrap(inner, f)
	st, err := h.MakeStore(ctx)
	if err != nil {
		cb.Close()
		t.Fatalf("MakeStore: %v", err)
	}
	ex := fanout.NewExecutor(cb, &fanout.Options{
		Store: st, Async: async, Concurrency: 6, BatchSize: 2, Retries: 30,
		Speculation: f.Straggler > 0, Logger: testLogger(t),
	})
	st = ex.Store() // the harness's, or the executor's default
	defer func() {
		if err := ex.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	in := make([]int, n)
	for i := range in {
		in[i] = i
	}
	j, err := fanout.Start(ctx, ex, faultWork, in)
	if err != nil {
		t.Fatal(err)
	}
	seen := make([]int, n)
	for r := range j.Results(ctx) {
		if r.Err != nil || r.Value != 3*r.Index+1 {
			t.Fatalf("task %d: %v, %v", r.Index, r.Value, r.Err)
		}
		seen[r.Index]++
	}
	runs := 0
	for i, c := range seen {
		if c != 1 {
			t.Errorf("index %d: %d results, want exactly one", i, c)
		}
		if inProcess { // runs in worker processes are not counted here
			v, ok := faultRuns.Load(fmt.Sprintf("%s/%d", j.ID(), i))
			if !ok {
				t.Errorf("index %d has a result but never ran", i)
				continue
			}
			runs += int(v.(*atomic.Int64).Load())
		}
	}
	js, cs := j.Stats(), cb.Stats()
	if js.Succeeded != n || js.Failed != 0 {
		t.Fatalf("stats: %d succeeded, %d failed, want %d and 0", js.Succeeded, js.Failed, n)
	}
	// The statistics count what the platform did, once each. (A platform
	// that throttles on its own adds throttles chaos did not inject.)
	if want := cs.Throttles + cs.CapThrottles; js.Throttles < want {
		t.Errorf("%d throttles counted, %d injected", js.Throttles, want)
	}
	lost := cs.FailedBefore + cs.FailedAfter + cs.Crashes
	if lost > 0 && js.Retries < 1 {
		t.Errorf("%d invocations failed but no retry was counted", lost)
	}
	if !async && f.Straggler == 0 {
		// In sync mode every failed invocation is seen and its tasks sent
		// again: at least one retry each, at most one per task it held.
		if js.FailedInvocations < lost {
			t.Errorf("%d failed invocations counted, %d injected", js.FailedInvocations, lost)
		}
		if js.Retries < lost {
			t.Errorf("%d retries for %d failed invocations", js.Retries, lost)
		}
	}
	// In sync mode a reply lost after the tasks ran shows as extra runs:
	// side effects are at-least-once. (In async mode that reply is in the
	// store and usually taken before the retry is sent; a duplicate may be
	// cancelled before it completes.)
	if inProcess && !async && cs.FailedAfter > 0 && runs <= n {
		t.Errorf("%d runs of %d tasks: replies lost after running must show as extra runs", runs, n)
	}
	// Nothing stays in the store, except that with a native asynchronous
	// backend an event accepted by the platform while chaos reported the
	// call failed may still run, and write its reply after the job is gone.
	// (That such a reply never becomes a second result is checked above.)
	_, nativeAsync := inner.(backends.AsyncBackend)
	mayLinger := async && nativeAsync && cs.FailedAfter > 0
	for obj, err := range st.List(context.Background(), layout.JobOf(j.ID()).Prefix()) {
		if err != nil {
			t.Errorf("list the job's objects: %v", err)
			break
		}
		if mayLinger && isReply(obj.Key, j.ID(), n) {
			t.Logf("left in the store by an abandoned async invocation: %q", obj.Key)
			continue
		}
		t.Errorf("left in the store: %q", obj.Key)
	}
}

// isReply reports whether key is a reply object, out/<index>.<attempt>, of
// one of the job's n tasks.
func isReply(key, job string, n int) bool {
	i, a, ok := layout.JobOf(job).ParseOutput(key)
	return ok && i < n && a >= 1
}
