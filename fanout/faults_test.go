package fanout_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/chaos"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage/filestore"
)

// The fault suite: each fault alone and all of them together, on the local
// and process backends, in sync and async mode. Whatever is injected, every
// input gets its correct result exactly once, the job's statistics count
// what happened, and nothing leaks (TestMain checks goroutines).

// faultRuns counts completed runs per job and index: the side effects a
// user function would have, which are at-least-once.
var faultRuns sync.Map

var faultWork = fanout.Register("fanout_test.faultWork", func(ctx context.Context, x int) (int, error) {
	t := time.NewTimer(2 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	info := fanout.Task(ctx)
	n, _ := faultRuns.LoadOrStore(fmt.Sprintf("%s/%d", info.Job, info.Index), new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	return 3*x + 1, nil
})

func TestFaultSuite(t *testing.T) {
	n := 240
	if testing.Short() {
		n = 60
	}
	all := chaos.Faults{
		Throttle: 0.05, ThrottleRetryAfter: time.Millisecond, FailBefore: 0.08, FailAfter: 0.08,
		Crash: 0.04, CrashWithin: 3 * time.Millisecond, Duplicate: 0.05, DuplicateDelay: 2 * time.Millisecond,
		Straggler: 0.04, StragglerFactor: 40, Latency: 300 * time.Microsecond, ColdStart: 3 * time.Millisecond,
		Concurrency: 3,
	}
	faults := []struct {
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
	}
	for _, kind := range []string{"local", "process"} {
		for _, async := range []bool{false, true} {
			for k, fc := range faults {
				name := fmt.Sprintf("%s/async=%v/%s", kind, async, fc.name)
				t.Run(name, func(t *testing.T) {
					if testing.Short() && kind == "process" && fc.name != "all" {
						t.Skip("-short: on process, only the fault mix")
					}
					f := fc.f
					f.Seed = uint64(11 + k)
					runFaults(t, kind, async, f, n)
				})
			}
		}
	}
}

func runFaults(t *testing.T, kind string, async bool, f chaos.Faults, n int) {
	t.Helper()
	var inner backends.Backend
	if kind == "local" {
		inner = local.New(&local.Options{Concurrency: 6})
	} else {
		inner = process.New(&process.Options{Workers: 4, Stderr: &lineLog{},
			Env: []string{"GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0"}})
	}
	cb := chaos.Wrap(inner, f)
	st, err := filestore.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ex := fanout.NewExecutor(cb, &fanout.Options{
		Store: st, Async: async, Concurrency: 6, BatchSize: 2, Retries: 30,
		Speculation: f.Straggler > 0, Logger: quietLogs,
	})
	defer func() {
		if err := ex.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
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
		if kind == "local" { // runs in other processes are not counted here
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
	// The statistics count what the platform did, once each.
	if want := cs.Throttles + cs.CapThrottles; js.Throttles != want {
		t.Errorf("%d throttles counted, %d injected", js.Throttles, want)
	}
	lost := cs.FailedBefore + cs.FailedAfter + cs.Crashes
	if lost > 0 && js.Retries < 1 {
		t.Errorf("%d invocations failed but no retry was counted", lost)
	}
	if !async && f.Straggler == 0 {
		// In sync mode every failed invocation is seen and its tasks sent
		// again: at least one retry each, at most one per task it held.
		if js.FailedInvocations != lost {
			t.Errorf("%d failed invocations counted, %d injected", js.FailedInvocations, lost)
		}
		if js.Retries < lost || js.Retries > 2*lost {
			t.Errorf("%d retries for %d failed invocations of at most 2 tasks", js.Retries, lost)
		}
	}
	if f.FailBefore+f.FailAfter+f.Crash+f.Throttle == 0 && f.Straggler == 0 && js.Retries != 0 {
		t.Errorf("%d retries without failures", js.Retries)
	}
	// In sync mode a reply lost after the tasks ran shows as extra runs:
	// side effects are at-least-once. (In async mode that reply is in the
	// store and usually taken before the retry is sent; a duplicate may be
	// cancelled before it completes.)
	if kind == "local" && !async && cs.FailedAfter > 0 && runs <= n {
		t.Errorf("%d runs of %d tasks: replies lost after running must show as extra runs", runs, n)
	}
	for obj, err := range st.List(context.Background(), "jobs/"+j.ID()) {
		t.Errorf("left in the store: %q (%v)", obj.Key, err)
	}
}
