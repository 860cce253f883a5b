package fanout_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage/filestore"
	"github.com/gowren/gowren/storage/memstore"
)

var (
	// slowFirst makes the first copy of input 0 wait for its context;
	// every other copy returns at once.
	slowFirst = fanout.Register("fanout_test.slowFirst", func(ctx context.Context, x int) (int, error) {
		if x == 0 && fanout.Task(ctx).Attempt == 0 {
			<-ctx.Done()
			loserCancelled <- struct{}{}
			return 0, ctx.Err()
		}
		return x * 10, nil
	})
	loserCancelled = make(chan struct{}, 16)

	flakyOnce = fanout.Register("fanout_test.flakyOnce", func(ctx context.Context, x int) (int, error) {
		if fanout.Task(ctx).Attempt == 0 {
			return 0, errors.New("plain error on the first attempt")
		}
		return x, nil
	})

	// napAsync sleeps for its input in milliseconds and returns it.
	napAsync = fanout.Register("fanout_test.napAsync", func(ctx context.Context, ms int) (int, error) {
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return ms, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
)

func TestSpeculationBeatsStraggler(t *testing.T) {
	ex := newLocal(t, &local.Options{Concurrency: 4}, &fanout.Options{Speculation: true, BatchSize: 1})
	in := make([]int, 40)
	for i := range in {
		in[i] = i
	}
	j, err := fanout.Start(context.Background(), ex, slowFirst, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := j.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range out {
		if v != i*10 {
			t.Fatalf("out[%d] = %d", i, v)
		}
	}
	s := j.Stats()
	if s.Backups != 1 || s.Succeeded != len(in) {
		t.Errorf("stats %+v: want exactly one backup and every task once", s)
	}
	// The straggling copy was cancelled, not left running.
	select {
	case <-loserCancelled:
	case <-time.After(time.Minute):
		t.Fatal("the losing copy was never cancelled")
	}
}

func TestRetryTaskErrorsOption(t *testing.T) {
	ex := newLocal(t, nil, nil)
	if _, err := fanout.Map(context.Background(), ex, flakyOnce, []int{1}); err == nil {
		t.Fatal("a plain task error was retried without RetryTaskErrors")
	}
	ex2 := newLocal(t, nil, &fanout.Options{RetryTaskErrors: true})
	out, err := fanout.Map(context.Background(), ex2, flakyOnce, []int{5})
	if err != nil || out[0] != 5 {
		t.Fatalf("with RetryTaskErrors: %v, %v", out, err)
	}
}

// capped throttles beyond a number of invocations in flight, like Lambda's
// concurrency limit, and records the peak it let through.
type capped struct {
	backends.Backend
	cap       int64
	inFlight  atomic.Int64
	peak      atomic.Int64
	throttled atomic.Int64
}

func (c *capped) Invoke(ctx context.Context, p []byte) ([]byte, error) {
	n := c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	if n > c.cap {
		c.throttled.Add(1)
		return nil, &backends.ThrottleError{Reason: "TooManyRequestsException"}
	}
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return c.Backend.Invoke(ctx, p)
}

func TestThrottlingConverges(t *testing.T) {
	b := &capped{Backend: local.New(&local.Options{Concurrency: 64}), cap: 4}
	ex := fanout.NewExecutor(b, &fanout.Options{Concurrency: 64, BatchSize: 1, Logger: quietLogs})
	defer ex.Close()
	in := make([]int, 300)
	for i := range in {
		in[i] = 3
	}
	j, err := fanout.Start(context.Background(), ex, napAsync, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := j.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range out {
		if v != 3 {
			t.Fatalf("out[%d] = %d", i, v)
		}
	}
	s := j.Stats()
	if s.Throttles == 0 || s.Throttles != int(b.throttled.Load()) {
		t.Errorf("stats count %d throttles, the backend gave %d", s.Throttles, b.throttled.Load())
	}
	// Without a shrinking window, 60 of every 64 sends would bounce.
	if s.Throttles > s.Invocations/2 {
		t.Errorf("%d throttles in %d invocations: the job kept hammering the platform", s.Throttles, s.Invocations)
	}
	if s.Succeeded != len(in) {
		t.Errorf("%d succeeded, want %d", s.Succeeded, len(in))
	}
}

func TestAsyncMode(t *testing.T) {
	for _, kind := range []string{"local", "process"} {
		t.Run(kind, func(t *testing.T) {
			var ex *fanout.Executor
			st := memstore.New(nil)
			defer st.Close()
			if kind == "local" {
				ex = newLocal(t, nil, &fanout.Options{Async: true, Store: st})
			} else {
				fst, err := filestore.New(t.TempDir(), nil)
				if err != nil {
					t.Fatal(err)
				}
				defer fst.Close()
				ex, _ = newProcess(t, 2, &fanout.Options{Async: true, Store: fst})
			}
			in := make([]int, 200)
			for i := range in {
				in[i] = i % 3
			}
			j, err := fanout.Start(context.Background(), ex, napAsync, in)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fanout.ReadManifest(context.Background(), ex.Store(), j.ID()); err != nil {
				t.Fatalf("no manifest while the job runs: %v", err)
			}
			seen := make([]int, len(in))
			for r := range j.Results(context.Background()) {
				seen[r.Index]++
				if r.Err != nil || r.Value != in[r.Index] {
					t.Fatalf("result %d: %v, %v", r.Index, r.Value, r.Err)
				}
			}
			for i, n := range seen {
				if n != 1 {
					t.Fatalf("index %d yielded %d times", i, n)
				}
			}
			s := j.Stats()
			if s.StoreLists == 0 || s.Succeeded != len(in) {
				t.Errorf("stats %+v: want completion learned by listing", s)
			}
			for obj, err := range ex.Store().List(context.Background(), "jobs/"+j.ID()) {
				t.Errorf("left behind: %q (%v)", obj.Key, err)
			}
		})
	}
}

func TestAttachErrors(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	ex := newLocal(t, nil, &fanout.Options{Store: st, KeepData: true})
	ctx := context.Background()
	if _, err := fanout.Attach(ctx, ex, double, "00000000-20260101T000000"); !errors.Is(err, fanout.ErrUnknownJob) {
		t.Errorf("unknown job: %v, want ErrUnknownJob", err)
	}
	if _, err := fanout.Attach(ctx, ex, double, "../etc"); !errors.Is(err, fanout.ErrUnknownJob) {
		t.Errorf("bad job ID: %v, want ErrUnknownJob", err)
	}
	// A finished sync job kept with KeepData has a manifest but no replies.
	j, err := fanout.Start(ctx, ex, double, []int{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := fanout.Attach(ctx, ex, noop, j.ID()); !errors.Is(err, fanout.ErrStaleWorker) || !strings.Contains(err.Error(), "fanout_test.double") {
		t.Errorf("foreign function: %v, want ErrStaleWorker naming the job's function", err)
	}
	if _, err := fanout.Attach(ctx, ex, double, j.ID()); err == nil || !strings.Contains(err.Error(), "not started in async mode") {
		t.Errorf("sync job: %v", err)
	}
	// The same name with another signature: a manifest written by another
	// build of the program, whose types changed.
	m, err := fanout.ReadManifest(ctx, st, j.ID())
	if err != nil {
		t.Fatal(err)
	}
	m.Digest, m.Signature = "0123456789abcdef01234567", "fanout_test.double(string) string"
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "jobs/"+j.ID()+"/manifest", b); err != nil {
		t.Fatal(err)
	}
	if _, err := fanout.Attach(ctx, ex, double, j.ID()); !errors.Is(err, fanout.ErrStaleWorker) || !strings.Contains(err.Error(), "double(string) string") {
		t.Errorf("another signature: %v, want ErrStaleWorker naming the job's signature", err)
	}
	var ids []string
	for m, err := range fanout.Jobs(ctx, st) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.Job)
	}
	if len(ids) != 1 || ids[0] != j.ID() {
		t.Errorf("Jobs = %v, want [%s]", ids, j.ID())
	}
	if _, err := st.Get(ctx, "jobs/"+j.ID()+"/stats.json"); err != nil {
		t.Errorf("KeepData job has no stats.json: %v", err)
	}
}

// A driver killed in the middle of an async job loses nothing: a second
// driver attaches and finishes it. With an invoker tree too: the second
// driver sends what was not finished through invokers of its own.
func TestAttachAfterDriverKilled(t *testing.T) {
	t.Run("process", func(t *testing.T) { testAttachAfterDriverKilled(t, 0) })
	t.Run("process-tree", func(t *testing.T) { testAttachAfterDriverKilled(t, 4) })
}

func testAttachAfterDriverKilled(t *testing.T, tree int) {
	dir := t.TempDir()
	tasks := 40
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "FANOUT_TEST_DRIVER_STORE="+dir, "FANOUT_TEST_DRIVER_TASKS="+strconv.Itoa(tasks),
		"FANOUT_TEST_DRIVER_TREE="+strconv.Itoa(tree), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A child that hangs is killed, so that the test fails saying so
	// instead of waiting for the test binary's timeout.
	hung := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() })
	defer hung.Stop()
	// The child prints the job ID, then one line per result.
	sc := bufio.NewScanner(stdout)
	var jobID string
	results := 0
	for sc.Scan() {
		line := sc.Text()
		if id, ok := strings.CutPrefix(line, "JOB "); ok {
			jobID = id
		}
		if strings.HasPrefix(line, "RESULT ") {
			results++
		}
		if results == 5 {
			break
		}
	}
	if jobID == "" || results < 5 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child driver gave job %q and %d results", jobID, results)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()

	st, err := filestore.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	prog, err := fanout.JobProgress(context.Background(), st, jobID)
	if err != nil {
		t.Fatal(err)
	}
	if prog.Succeeded < 5 || prog.Succeeded >= tasks {
		t.Fatalf("progress after the kill: %+v; want some but not all results", prog)
	}
	ex, _ := newProcess(t, 2, &fanout.Options{Async: true, Store: st, Tree: tree, BatchSize: 1})
	// Bounded, so that a hang fails with the results' errors.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	j, err := fanout.Attach(ctx, ex, napAsync, jobID)
	if err != nil {
		t.Fatal(err)
	}
	seen := make([]int, tasks)
	for r := range j.Results(ctx) {
		seen[r.Index]++
		if r.Err != nil || r.Value != 20+r.Index%3 {
			t.Errorf("result %d: %v, %v", r.Index, r.Value, r.Err)
		}
	}
	for i, n := range seen {
		if n != 1 {
			t.Errorf("index %d yielded %d times", i, n)
		}
	}
	s := j.Stats()
	if s.Invocations >= tasks {
		t.Errorf("%d invocations after attaching to a job with %d results already in the store: finished tasks were sent again", s.Invocations, prog.Succeeded)
	}
	if tree > 0 && (s.Invokers == 0 || s.ViaTree < 2) {
		t.Errorf("invokers %d, via the tree %d: the attaching driver sent nothing through invokers", s.Invokers, s.ViaTree)
	}
}

// childDriver is the driver that TestAttachAfterDriverKilled kills: TestMain
// runs it when FANOUT_TEST_DRIVER_STORE is set. It starts an async job on
// process workers and prints the job ID and one line per result.
func childDriver(dir string) int {
	tasks, _ := strconv.Atoi(os.Getenv("FANOUT_TEST_DRIVER_TASKS"))
	st, err := filestore.New(dir, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tree, _ := strconv.Atoi(os.Getenv("FANOUT_TEST_DRIVER_TREE"))
	b := process.New(&process.Options{Workers: 2, Env: []string{"GORACE=atexit_sleep_ms=0"}})
	ex := fanout.NewExecutor(b, &fanout.Options{Async: true, Store: st, BatchSize: 1, Tree: tree, Logger: quietLogs})
	in := make([]int, tasks)
	for i := range in {
		in[i] = 20 + i%3
	}
	j, err := fanout.Start(context.Background(), ex, napAsync, in)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("JOB", j.ID())
	for r := range j.Results(context.Background()) {
		fmt.Println("RESULT", r.Index)
	}
	return 0 // the test kills the driver before this
}

func TestJobProgressRequiresManifest(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	if _, err := fanout.JobProgress(context.Background(), st, "nope"); !errors.Is(err, fanout.ErrUnknownJob) {
		t.Fatalf("JobProgress(nope) = %v", err)
	}
}

var alwaysBusy = fanout.Register("fanout_test.alwaysBusy", func(ctx context.Context, x int) (int, error) {
	return 0, fanout.Retryable(fmt.Errorf("downstream busy (attempt %d)", fanout.Task(ctx).Attempt))
})

func TestRetryBudgetExhausted(t *testing.T) {
	ex := newLocal(t, nil, &fanout.Options{Retries: 2})
	_, err := fanout.Map(context.Background(), ex, alwaysBusy, []int{1})
	var te *fanout.TaskError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v", err)
	}
	if te.Attempts != 3 || len(te.History) != 3 || !te.Retryable {
		t.Fatalf("TaskError %+v: want 3 attempts, each with its reason", te)
	}
	for k, h := range te.History {
		if want := fmt.Sprintf("attempt %d: downstream busy (attempt %d)", k+1, k); h != want {
			t.Errorf("History[%d] = %q, want %q", k, h, want)
		}
	}
}

// retrySignal is a slog handler that reports the executor's first retry.
type retrySignal struct {
	once sync.Once
	ch   chan struct{}
}

func (h *retrySignal) Enabled(context.Context, slog.Level) bool { return true }
func (h *retrySignal) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "gowren: retrying task" {
		h.once.Do(func() { close(h.ch) })
	}
	return nil
}
func (h *retrySignal) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *retrySignal) WithGroup(string) slog.Handler      { return h }

func TestCancelWithRetriesPending(t *testing.T) {
	sig := &retrySignal{ch: make(chan struct{})}
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Retries: 1000, Logger: slog.New(sig)})
	defer ex.Close()
	j, err := fanout.Start(context.Background(), ex, alwaysBusy, []int{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	<-sig.ch // a retry is waiting for its backoff
	j.Cancel()
	_, err = j.Wait(context.Background())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	n := 0
	for r := range j.Results(context.Background()) {
		n++
		if !errors.Is(r.Err, context.Canceled) {
			t.Errorf("task %d: %v", r.Index, r.Err)
		}
	}
	if n != 2 {
		t.Errorf("%d results after cancel, want one per task", n)
	}
}

// refusing fails every invocation the way a missing cloud function does.
type refusing struct{ backends.Backend }

var errNoFunction = errors.New("function not found: deploy it first")

func (refusing) Invoke(context.Context, []byte) ([]byte, error) { return nil, errNoFunction }

func TestNonRetryableInvokeErrorAbortsOnce(t *testing.T) {
	ex := fanout.NewExecutor(refusing{local.New(nil)}, &fanout.Options{Logger: quietLogs})
	defer ex.Close()
	_, err := fanout.Map(context.Background(), ex, double, make([]int, 50))
	if !errors.Is(err, errNoFunction) {
		t.Fatalf("err = %v", err)
	}
	if n := len(unjoin(err)); n != 1 {
		t.Fatalf("%d errors, want the one job error, not one per task", n)
	}
}

// Held is the input of held: a value returned at once, or, with Hold, once
// the test opens the gate (or the task's context ends).
type Held struct {
	Gate  string
	Hold  bool
	Value int
}

var held = fanout.Register("fanout_test.held", func(ctx context.Context, h Held) (int, error) {
	if !h.Hold {
		return h.Value, nil
	}
	g, err := gateOf(h.Gate)
	if err != nil {
		return 0, err
	}
	g.reached <- struct{}{}
	select {
	case <-g.open:
		return h.Value, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
})

// A second driver attaches to an async job while the first still runs:
// the first one, cut off, leaves the job's objects to the second (its lease
// is fresh), which gets every result and then cleans up.
func TestAttachWhileOriginalRuns(t *testing.T) {
	st, err := filestore.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opts := &fanout.Options{Async: true, Store: st, Logger: quietLogs}
	ex1 := newLocal(t, &local.Options{Concurrency: 4}, opts)
	ex2 := newLocal(t, &local.Options{Concurrency: 4}, opts)
	name, g := newGate(t, 4)
	in := []Held{{Value: 10}, {Value: 11}, {Gate: name, Hold: true, Value: 12}, {Gate: name, Hold: true, Value: 13}}
	ctx := context.Background()
	j1, err := fanout.Start(ctx, ex1, held, in)
	if err != nil {
		t.Fatal(err)
	}
	<-g.reached
	<-g.reached
	got := 0
	for range j1.Results(ctx) {
		if got++; got == 2 {
			break // tasks 0 and 1 are in the store
		}
	}
	j2, err := fanout.Attach(ctx, ex2, held, j1.ID())
	if err != nil {
		t.Fatal(err)
	}
	<-g.reached // the second driver sent tasks 2 and 3 again
	<-g.reached
	j1.Cancel()
	if _, err := j1.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("first driver: %v, want context.Canceled", err)
	}
	if _, err := fanout.ReadManifest(ctx, st, j1.ID()); err != nil {
		t.Fatalf("the first driver deleted the job under the second: %v", err)
	}
	close(g.open)
	out, err := j2.Wait(ctx)
	if err != nil {
		t.Fatalf("second driver: %v", err)
	}
	for i, v := range out {
		if v != 10+i {
			t.Errorf("out[%d] = %d", i, v)
		}
	}
	for obj, err := range st.List(ctx, "jobs/"+j1.ID()+"/") {
		t.Errorf("left behind: %q (%v)", obj.Key, err)
	}
}
