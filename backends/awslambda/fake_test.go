package awslambda_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/awslambda"
	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
	"github.com/gowren/gowren/backends/awslambda/internal/testfuncs"
	"github.com/gowren/gowren/backends/backendtest"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
)

// fakeHarness runs the conformance suite on the loopback Lambda: the real
// SDK client, the Invoke API, the Runtime API and worker processes running
// aws-lambda-go.
type fakeHarness struct {
	t     *testing.T
	srv   *awslambdatest.Server
	store storage.Store
}

// fakeConcurrency is the concurrency of each backend of the suites' runs.
const fakeConcurrency = 4

// fakeTimeout is the function timeout of the suites' loopback Lambda, on
// the server and in the backends. It is a guard, not part of what they
// test: a 6 MB batch through the SDK, JSON and the runtime takes seconds
// when other tests load the cores, and the driver gives up on an
// invocation a few seconds after the function's timeout. The server stops
// the invocations whose caller gave up (StopAbandoned): the suite's
// cancellation tests leave tasks that block until their timeout, and they
// would otherwise hold the worker processes for that long.
const fakeTimeout = time.Minute

func (h *fakeHarness) MakeBackend(context.Context) (backends.Backend, error) {
	return sameHost{awslambda.New(newClient(h.t, h.srv.URL(), nil), "function",
		&awslambda.Options{Concurrency: fakeConcurrency, Timeout: fakeTimeout})}, nil
}

func (h *fakeHarness) MakeStore(context.Context) (storage.Store, error) { return h.store, nil }
func (h *fakeHarness) Close()                                           {}

func TestConformanceLoopback(t *testing.T) {
	backendtest.RunConformanceTests(t, func(_ context.Context, t *testing.T) (backendtest.Harness, error) {
		return &fakeHarness{
			t: t,
			// The backends of the parallel tests share the server: its
			// concurrency limit is above their sum, so they queue for its
			// worker processes instead of being throttled (throttling has
			// tests of its own).
			srv: newFake(t, awslambdatest.Options{Workers: fakeConcurrency, Concurrency: 100, Timeout: fakeTimeout,
				StopAbandoned: true}),
			store: fileStore(t),
		}, nil
	})
}

// fakeExecutor returns an executor on a new loopback Lambda.
func fakeExecutor(t *testing.T, so awslambdatest.Options, eo fanout.Options) (*fanout.Executor, *awslambdatest.Server) {
	srv := newFake(t, so)
	if eo.Store == nil {
		eo.Store = fileStore(t)
	}
	b := awslambda.New(newClient(t, srv.URL(), nil), "function", &awslambda.Options{Concurrency: so.Workers, Timeout: so.Timeout})
	ex := fanout.NewExecutor(sameHost{b}, &eo)
	t.Cleanup(func() { ex.Close() })
	return ex, srv
}

func TestWorkerEnvironment(t *testing.T) {
	ex, _ := fakeExecutor(t, awslambdatest.Options{Workers: 1, Timeout: time.Minute}, fanout.Options{BatchSize: 1, Concurrency: 1})
	before := time.Now()
	envs, err := fanout.Map(guard(t, time.Minute), ex, testfuncs.EnvInfo, []int{0, 1})
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	first, second := envs[0], envs[1]
	if first.FunctionName != "function" || first.RuntimeAPI == "" || first.Handler != "bootstrap" {
		t.Errorf("worker environment %+v; want Lambda's variables", first)
	}
	// The task's deadline is the invocation's, a minute after the worker
	// took it (between before and after), less the reserve for the reply:
	// a tenth of what is left when the handler starts, at most 500 ms, so
	// 500 ms unless the handler started more than 55 s late. The bounds
	// are absolute times, so the check does not depend on how long the
	// worker took to get to the task. (The Runtime API sends the deadline
	// in whole milliseconds.)
	const reserve = 500 * time.Millisecond
	if dl := first.Deadline; dl.Before(before.Add(time.Minute-reserve-time.Millisecond)) || dl.After(after.Add(time.Minute-reserve)) {
		t.Errorf("task deadline %v; want it within [%v, %v]: a minute after the invocation started, less 500 ms",
			dl, before.Add(time.Minute-reserve), after.Add(time.Minute-reserve))
	}
	if !first.Cold || second.Cold || first.Worker != second.Worker {
		t.Errorf("cold starts %v, %v on workers %s, %s; want the first cold, the second warm on the same worker",
			first.Cold, second.Cold, first.Worker, second.Worker)
	}
}

func TestPlatformTimeout(t *testing.T) {
	ex, srv := fakeExecutor(t, awslambdatest.Options{Workers: 1, Timeout: time.Second}, fanout.Options{Retries: -1})
	_, err := fanout.Map(guard(t, time.Minute), ex, testfuncs.Freeze, []int{1})
	var te *fanout.TaskError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a TaskError", err)
	}
	var fe *awslambda.FunctionError
	if !errors.As(err, &fe) || !fe.Timeout || !errors.Is(err, backends.ErrWorkerLost) {
		t.Fatalf("err = %v, want a FunctionError with Timeout wrapping ErrWorkerLost", err)
	}
	if !strings.Contains(te.Message, "Task timed out after 1.00 seconds") || !strings.Contains(te.Message, "timeout") {
		t.Errorf("message %q does not name the timeout", te.Message)
	}
	// The frozen worker was killed and replaced: the function works again.
	if out, err := fanout.Map(guard(t, time.Minute), ex, testfuncs.Noop, []int{5}); err != nil || out[0] != 5 {
		t.Fatalf("after the timeout: %v, %v", out, err)
	}
	if st := srv.Stats(); st.WorkersStarted != 2 {
		t.Errorf("%d workers started, want 2", st.WorkersStarted)
	}
}

func TestWorkerCrash(t *testing.T) {
	ex, _ := fakeExecutor(t, awslambdatest.Options{Workers: 2, Timeout: 5 * time.Second}, fanout.Options{BatchSize: 1})
	j, err := fanout.Start(guard(t, time.Minute), ex, testfuncs.Exit, []int{7})
	if err != nil {
		t.Fatal(err)
	}
	_, err = j.Wait(guard(t, time.Minute))
	var te *fanout.TaskError
	if !errors.As(err, &te) || !errors.Is(err, backends.ErrWorkerLost) {
		t.Fatalf("err = %v, want a TaskError wrapping ErrWorkerLost", err)
	}
	if te.Attempts != 3 || !strings.Contains(te.Message, "Runtime.ExitError") || !strings.Contains(te.Message, "exit status 7") {
		t.Errorf("TaskError after %d attempts: %q; want 3 attempts and the runtime's exit", te.Attempts, te.Message)
	}
}

func TestInvokeAsync(t *testing.T) {
	events := make(chan awslambdatest.EventResult, 1)
	srv := newFake(t, awslambdatest.Options{OnEvent: func(r awslambdatest.EventResult) { events <- r }})
	b := awslambda.New(newClient(t, srv.URL(), nil), "function", nil)
	defer b.Close()
	ctx := guard(t, time.Minute)
	// A malformed envelope: the worker answers an error reply, which the
	// event's outcome carries.
	if err := b.InvokeAsync(ctx, []byte("not msgpack")); err != nil {
		t.Fatalf("InvokeAsync: %v", err)
	}
	r := <-events
	if r.FunctionError != "" || r.Attempts != 1 {
		t.Fatalf("event outcome %+v", r)
	}
	reply, err := backends.DecodeJSON(r.Payload)
	if err != nil {
		t.Fatalf("the worker's reply %q: %v", r.Payload, err)
	}
	if err := fanout.ReplyError(reply); !errors.Is(err, fanout.ErrMalformed) {
		t.Errorf("reply error %v, want ErrMalformed", err)
	}
}

// TestAsyncLargeInput runs an async job with an input over the 1 MB limit
// of an asynchronous invocation (though under the 6 MB of a synchronous one)
// on the loopback Lambda, which enforces that limit: the input must travel
// through the store, and the job must run as events only.
func TestAsyncLargeInput(t *testing.T) {
	var mu sync.Mutex
	var failed []awslambdatest.EventResult
	ex, srv := fakeExecutor(t, awslambdatest.Options{Workers: 2, Timeout: 10 * time.Second, OnEvent: func(r awslambdatest.EventResult) {
		if r.FunctionError != "" {
			mu.Lock()
			failed = append(failed, r)
			mu.Unlock()
		}
	}}, fanout.Options{Async: true})
	// Just over the limit: a size that would be sent inline if the limit
	// of a synchronous invocation applied.
	big := make([]byte, awslambda.MaxAsyncPayload+awslambda.MaxAsyncPayload/16)
	for i := range big {
		big[i] = byte(i ^ i>>8 ^ i>>16)
	}
	in := [][]byte{[]byte("small"), big, bytes.Repeat([]byte{7}, 1000)}
	ctx := guard(t, 2*time.Minute)
	j, err := fanout.Start(ctx, ex, testfuncs.Digest, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := j.Wait(ctx)
	if err != nil {
		t.Fatalf("async job with a %d-byte input: %v", len(big), err)
	}
	for i, b := range in {
		if want := testfuncs.DigestOf(b); out[i] != want {
			t.Errorf("out[%d] = %q, want %q", i, out[i], want)
		}
	}
	// One synchronous invocation: the check before the job (fanout
	// checks the worker's function and store before an asynchronous job).
	if st := srv.Stats(); st.Events == 0 || st.Invocations != 1 {
		t.Errorf("%d events, %d synchronous invocations; want events and the one check", st.Events, st.Invocations)
	}
	if js := j.Stats(); js.StoreWrites == 0 || js.WorkerStoreReads == 0 {
		t.Errorf("store writes %d, worker reads %d; the inputs did not go through the store", js.StoreWrites, js.WorkerStoreReads)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failed) > 0 {
		t.Errorf("%d events failed, first %+v", len(failed), failed[0])
	}
}

func TestThrottleFromLambda(t *testing.T) {
	srv := newFake(t, awslambdatest.Options{Workers: 1, Concurrency: 1, RetryAfter: 2 * time.Second, Timeout: 2 * time.Second})
	b := awslambda.New(newClient(t, srv.URL(), nil), "function", nil)
	defer b.Close()
	ctx := guard(t, time.Minute)
	// Hold the only unit of concurrency with a task that says when it runs
	// and waits for its deadline, then try another invocation.
	ex := fanout.NewExecutor(sameHost{awslambda.New(newClient(t, srv.URL(), nil), "function", nil)}, &fanout.Options{Store: fileStore(t)})
	defer ex.Close()
	fifo := filepath.Join(t.TempDir(), "running")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	go func() {
		_, err := fanout.Map(ctx, ex, testfuncs.Hold, []string{fifo})
		held <- err
	}()
	f, err := os.Open(fifo) // returns once the task opened it
	if err != nil {
		t.Fatal(err)
	}
	_, err = bufio.NewReader(f).ReadString('\n')
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Invoke(ctx, []byte("x"))
	var te *backends.ThrottleError
	if !errors.As(err, &te) || !errors.Is(err, backends.ErrThrottled) {
		t.Fatalf("err = %v, want a ThrottleError", err)
	}
	if te.RetryAfter != 2*time.Second || te.Reason != "ConcurrentInvocationLimitExceeded" {
		t.Errorf("RetryAfter %v, Reason %q; want 2s, ConcurrentInvocationLimitExceeded", te.RetryAfter, te.Reason)
	}
	if err := <-held; !errors.Is(err, fanout.ErrTaskTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the held task: %v, want a timeout at the invocation's deadline", err)
	}
}

func TestNotFoundAndCheck(t *testing.T) {
	srv := newFake(t, awslambdatest.Options{})
	c := newClient(t, srv.URL(), nil)
	ctx := guard(t, time.Minute)
	good := awslambda.New(c, "function", nil)
	defer good.Close()
	if err := good.Check(ctx); err != nil {
		t.Fatalf("Check of an existing function: %v", err)
	}
	if st := srv.Stats(); st.WorkersStarted != 0 {
		t.Errorf("Check started %d workers; a DryRun runs nothing", st.WorkersStarted)
	}
	bad := awslambda.New(c, "nosuch", &awslambda.Options{Qualifier: "live"})
	defer bad.Close()
	for _, err := range []error{bad.Check(ctx), func() error { _, err := bad.Invoke(ctx, []byte("x")); return err }()} {
		if !errors.Is(err, awslambda.ErrFunctionNotFound) || backends.Retryable(err) {
			t.Fatalf("err = %v, want a non-retryable ErrFunctionNotFound", err)
		}
		for _, want := range []string{`"nosuch:live"`, "us-east-1", "gowren deploy lambda"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	}
}

// TestScaleRamp drives 400 invocations at once against the loopback Lambda
// with its scaling ramp on (scaled down: 50 new environments per 300 ms
// instead of Lambda's 1,000 per 10 s): Lambda throttles what the ramp does
// not allow, the environments grow no faster than the ramp, the driver backs
// off, and every task gets its result.
func TestScaleRamp(t *testing.T) {
	// Tasks of a second against a ramp of 50 environments per 5 s: the
	// driver needs to have only 51 calls out within a second to meet the
	// ramp, however loaded the machine, and the ramp does not refill
	// before that.
	const ramp, window, taskMs = 50, 5 * time.Second, 1000
	srv := newFake(t, awslambdatest.Options{
		Handler: awslambda.NewHandler(fanout.Handle), Concurrency: 1000, Ramp: ramp, RampWindow: window,
		RetryAfter: 300 * time.Millisecond, Timeout: time.Minute,
	})
	b := awslambda.New(newClient(t, srv.URL(), nil), "function", &awslambda.Options{Concurrency: 400, Timeout: time.Minute})
	ex := fanout.NewExecutor(sameHost{b}, &fanout.Options{Store: fileStore(t), BatchSize: 1})
	defer ex.Close()
	in := make([]int, 200)
	for i := range in {
		in[i] = taskMs
	}
	out, err := fanout.Map(guard(t, 2*time.Minute), ex, testfuncs.Sleep, in)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range out {
		if v != taskMs {
			t.Fatalf("out[%d] = %d", i, v)
		}
	}
	st := srv.Stats()
	if most := st.MaxNewEnvironments(window); most > ramp {
		t.Errorf("%d environments created within %v, the ramp allows %d", most, window, ramp)
	}
	if len(st.Environments) < ramp || st.Throttles == 0 {
		t.Errorf("%d environments, %d throttles: the ramp was not exercised", len(st.Environments), st.Throttles)
	}
	t.Logf("%d invocations, %d environments, %d throttles, %d in flight at most", st.Invocations, len(st.Environments), st.Throttles, st.MaxInFlight)
}

// TestNotAGowrenEvent sends the gowren worker an event of another kind
// through the real SDK client: it answers an error of its own type.
func TestNotAGowrenEvent(t *testing.T) {
	srv := newFake(t, awslambdatest.Options{})
	out, err := newClient(t, srv.URL(), nil).Invoke(guard(t, time.Minute), &lambda.InvokeInput{
		FunctionName: aws.String("function"), Payload: []byte(`{"hello":"world"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(string(out.Payload), `"errorType":"Gowren.InvalidEvent"`) ||
		!strings.Contains(string(out.Payload), "not a gowren invocation") {
		t.Errorf("got %q %s", aws.ToString(out.FunctionError), out.Payload)
	}
}

// TestFaultSuiteLoopback runs the reliability fault suite over the loopback
// Lambda, with worker processes of the real binary: chaos faults on top of
// what the server itself does.
func TestFaultSuiteLoopback(t *testing.T) {
	backendtest.RunFaultSuite(t, func(_ context.Context, t *testing.T) (backendtest.Harness, error) {
		return &fakeHarness{
			t: t,
			srv: newFake(t, awslambdatest.Options{Workers: fakeConcurrency, Concurrency: 100, Timeout: fakeTimeout,
				StopAbandoned: true}),
			store: fileStore(t),
		}, nil
	})
}
