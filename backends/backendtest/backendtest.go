// Package backendtest is the conformance suite every gowren backend passes,
// in the style of gocloud's drivertest: a backend package supplies a Harness
// and calls RunConformanceTests from its tests.
//
// The suite drives the backend through a real fanout.Executor, so it checks
// the whole path: payload limits, ordering, errors and panics with their
// stacks, large inputs and outputs through the store, cancellation,
// concurrency limits, unknown functions, stale signatures and malformed
// payloads.
//
// Its Contract group calls the backend directly and checks what every
// backend promises: an error wrapping backends.ErrClosed after Close,
// backends.ErrPayloadTooLarge (not retryable) for a payload one byte over
// Limits().MaxRequestBytes, and ctx's error, promptly, for a call whose
// context had already ended or ends while its task runs. It checks
// InvokeAsync (after Close, over MaxAsyncRequestBytes) and InvokeStream
// (all of the above, and that it replies as Invoke does) when the backend
// offers them. A backend's own tests need not repeat these checks.
//
// The worker side must have the suite's functions registered: they are
// registered when this package is linked, so a worker built from the test
// binary (or from a main that imports this package) has them. Test binaries
// whose backend starts workers from the binary must call fanout.Init from
// TestMain.
package backendtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
)

// Harness makes backends for the suite.
type Harness interface {
	// MakeBackend returns a new backend. The suite closes it.
	MakeBackend(ctx context.Context) (backends.Backend, error)
	// MakeStore returns the store jobs use, or nil for the executor's
	// default. The suite does not close it.
	MakeStore(ctx context.Context) (storage.Store, error)
	// Close releases what the harness holds.
	Close()
}

// HarnessMaker makes a Harness for one run of the suite.
type HarnessMaker func(ctx context.Context, t *testing.T) (Harness, error)

// hangGuard bounds how long the suite waits for anything that should end
// promptly; reaching it fails the test instead of hanging the run.
const hangGuard = 2 * time.Minute

// RunConformanceTests runs the suite against backends made by newHarness.
func RunConformanceTests(t *testing.T, newHarness HarnessMaker) {
	ctx := context.Background()
	h, err := newHarness(ctx, t)
	if err != nil {
		t.Fatalf("make harness: %v", err)
	}
	t.Cleanup(h.Close)
	s := &suite{h: h}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"Ordering", testOrdering},
		{"Empty", testEmpty},
		{"TaskErrors", testTaskErrors},
		{"Panic", testPanic},
		{"LargeInputs", testLargeInputs},
		{"LargeOutputs", testLargeOutputs},
		{"ManyMediumInputs", testManyMediumInputs},
		{"CancelInFlight", testCancelInFlight},
		{"CancelJob", testCancelJob},
		{"ConcurrencyLimit", testConcurrencyLimit},
		{"UnknownFunction", testUnknownFunction},
		{"StaleWorker", testStaleWorker},
		{"MalformedPayload", testMalformedPayload},
		{"TaskInfo", testTaskInfo},
		{"Logs", testLogs},
		{"RetryableError", testRetryable},
		{"TaskTimeout", testTaskTimeout},
		{"StoreInTask", testStoreInTask},
		{"MapReduce", testMapReduce},
		{"ResultsOncePerIndex", testResultsOnce},
		{"ClosedExecutor", testClosed},
		{"Contract", testContract},
		{"StreamedResults", testStreamedResults},
		{"CancelKeepsFinished", testCancelKeepsFinished},
		{"CancelIgnored", testCancelIgnored},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, s)
		})
	}
}

type suite struct{ h Harness }

// executor returns an executor on a new backend, closed when the test ends.
func (s *suite) executor(t *testing.T, opts *fanout.Options) (*fanout.Executor, backends.Backend) {
	t.Helper()
	ctx := context.Background()
	b, err := s.h.MakeBackend(ctx)
	if err != nil {
		t.Fatalf("MakeBackend: %v", err)
	}
	var o fanout.Options
	if opts != nil {
		o = *opts
	}
	if o.Store == nil {
		st, err := s.h.MakeStore(ctx)
		if err != nil {
			b.Close()
			t.Fatalf("MakeStore: %v", err)
		}
		o.Store = st
	}
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	ex := fanout.NewExecutor(b, &o)
	t.Cleanup(func() {
		if err := ex.Close(); err != nil {
			t.Errorf("Executor.Close: %v", err)
		}
	})
	return ex, b
}

// testLogger sends the executor's records to the test log: shown for
// failures and with -v only.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLog{t}, nil))
}

// testLog writes to the test's log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func guard(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	return ctx
}

func testOrdering(t *testing.T, s *suite) {
	for _, bs := range []int{0, 1, 7} {
		t.Run(fmt.Sprintf("BatchSize=%d", bs), func(t *testing.T) {
			ex, _ := s.executor(t, &fanout.Options{BatchSize: bs})
			in := make([]int, 500)
			for i := range in {
				in[i] = i - 250
			}
			out, err := fanout.Map(guard(t), ex, square, in)
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if len(out) != len(in) {
				t.Fatalf("got %d outputs for %d inputs", len(out), len(in))
			}
			for i, x := range in {
				if out[i] != x*x {
					t.Fatalf("out[%d] = %d, want %d", i, out[i], x*x)
				}
			}
		})
	}
}

func testEmpty(t *testing.T, s *suite) {
	ex, _ := s.executor(t, nil)
	out, err := fanout.Map(guard(t), ex, square, nil)
	if err != nil || len(out) != 0 {
		t.Fatalf("Map(nil) = %v, %v; want empty, nil", out, err)
	}
}

func testTaskErrors(t *testing.T, s *suite) {
	ex, _ := s.executor(t, &fanout.Options{Retries: -1})
	in := []int{0, 1, 2, 3, 4, 5}
	out, err := fanout.Map(guard(t), ex, failOdd, in)
	if err == nil {
		t.Fatal("Map succeeded; want errors for the odd inputs")
	}
	for i, x := range in {
		if x%2 == 0 && out[i] != x {
			t.Errorf("out[%d] = %d, want %d (successful results must survive failures)", i, out[i], x)
		}
	}
	var failed []int
	for _, e := range unjoin(err) {
		var te *fanout.TaskError
		if !errors.As(e, &te) {
			t.Fatalf("error %v is not a *TaskError", e)
		}
		failed = append(failed, te.Index)
		if te.Type != "*backendtest.testError" {
			t.Errorf("task %d: Type = %q, want *backendtest.testError", te.Index, te.Type)
		}
		if want := fmt.Sprintf("odd input %d", in[te.Index]); te.Message != want {
			t.Errorf("task %d: Message = %q, want %q", te.Index, te.Message, want)
		}
		if te.Attempts != 1 {
			t.Errorf("task %d: Attempts = %d, want 1 (task errors are not retried)", te.Index, te.Attempts)
		}
	}
	if !slices.Equal(failed, []int{1, 3, 5}) {
		t.Errorf("failed tasks %v, want [1 3 5] in order", failed)
	}
}

func testPanic(t *testing.T, s *suite) {
	ex, _ := s.executor(t, nil)
	out, err := fanout.Map(guard(t), ex, panicky, []string{"ok", "boom", "fine"})
	if out == nil || out[0] != "ok" || out[2] != "fine" {
		t.Errorf("outputs %q: the tasks that did not panic must keep their results", out)
	}
	var te *fanout.TaskError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a *TaskError", err)
	}
	if te.Index != 1 || !errors.Is(err, fanout.ErrPanic) {
		t.Errorf("TaskError index %d, Is(ErrPanic) %v; want 1, true", te.Index, errors.Is(err, fanout.ErrPanic))
	}
	if !strings.Contains(te.Message, "backendtest: boom") {
		t.Errorf("Message = %q, want the panic value", te.Message)
	}
	if !strings.Contains(te.Stack, "backendtest.panicHere") {
		t.Errorf("Stack does not show the panicking function:\n%s", te.Stack)
	}
}

// bigSize is a size over the backend's request and response limits.
func bigSize(b backends.Backend) int {
	l := b.Limits()
	n := max(l.MaxRequestBytes, l.MaxResponseBytes)
	if n <= 0 {
		n = 4 << 20
	}
	return n + n/2
}

func testLargeInputs(t *testing.T, s *suite) {
	ex, b := s.executor(t, nil)
	n := bigSize(b)
	in := []Blob{newBlob(1, 10), newBlob(2, n), newBlob(3, 100)}
	out, err := fanout.Map(guard(t), ex, echoLen, in)
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	if !slices.Equal(out, []int{10, n, 100}) {
		t.Fatalf("lengths %v, want [10 %d 100]", out, n)
	}
}

func testLargeOutputs(t *testing.T, s *suite) {
	ex, b := s.executor(t, nil)
	n := bigSize(b)
	sizes := []int{5, n, 7}
	out, err := fanout.Map(guard(t), ex, makeBlob, sizes)
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	for i, sz := range sizes {
		if err := checkBlob(out[i], sz); err != nil {
			t.Errorf("output %d: %v", i, err)
		}
	}
}

// testManyMediumInputs sends inputs that fit alone but not together, so
// batches must respect the request limit.
func testManyMediumInputs(t *testing.T, s *suite) {
	ex, b := s.executor(t, &fanout.Options{BatchSize: 64})
	l := b.Limits()
	size := 64 << 10
	if l.MaxRequestBytes > 0 {
		size = l.MaxRequestBytes / 6
	}
	in := make([]Blob, 16)
	for i := range in {
		in[i] = newBlob(byte(i), size)
	}
	out, err := fanout.Map(guard(t), ex, echoLen, in)
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	for i, n := range out {
		if n != size {
			t.Fatalf("out[%d] = %d, want %d", i, n, size)
		}
	}
}

func testCancelInFlight(t *testing.T, s *suite) {
	ex, _ := s.executor(t, nil)
	// The tasks block until cancelled: only cancellation reaching them
	// lets Map return.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := fanout.Map(ctx, ex, waitCancel, []int{1, 2, 3, 4})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > hangGuard/4 {
		t.Errorf("Map returned %v after its context expired", d)
	}
}

func testCancelJob(t *testing.T, s *suite) {
	ex, _ := s.executor(t, nil)
	j, err := fanout.Start(guard(t), ex, waitCancel, []int{1, 2, 3})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	j.Cancel()
	_, err = j.Wait(guard(t))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after Cancel: %v, want context.Canceled", err)
	}
	st := j.Stats()
	if st.Succeeded+st.Failed+st.Cancelled != st.Tasks || st.Ended.IsZero() {
		t.Errorf("stats after cancel: %+v; every task must be settled and the job ended", st)
	}
}

func testConcurrencyLimit(t *testing.T, s *suite) {
	_, b := s.executor(t, nil)
	limit := b.Limits().Concurrency
	if limit <= 0 {
		t.Skip("backend reports no concurrency limit")
	}
	// Ask the executor for three times the limit: the backend itself must
	// hold the line, by queueing or throttling.
	ex, _ := s.executor(t, &fanout.Options{Concurrency: 3 * limit, BatchSize: 1})
	in := make([]int, 3*limit)
	for i := range in {
		in[i] = 60
	}
	j, err := fanout.Start(guard(t), ex, span, in)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	var spans [][2]int64
	for r := range j.Results(guard(t)) {
		if r.Err != nil {
			t.Fatalf("task %d: %v", r.Index, r.Err)
		}
		spans = append(spans, [2]int64{r.Value.Start, r.Value.End})
	}
	if len(spans) != len(in) {
		t.Fatalf("%d results, want %d", len(spans), len(in))
	}
	if peak := maxOverlap(spans); peak > limit {
		t.Errorf("%d tasks ran at once, backend limit %d", peak, limit)
	}
}

func maxOverlap(spans [][2]int64) int {
	type ev struct {
		t int64
		d int
	}
	var evs []ev
	for _, s := range spans {
		evs = append(evs, ev{s[0], 1}, ev{s[1], -1})
	}
	sort.Slice(evs, func(a, b int) bool {
		if evs[a].t != evs[b].t {
			return evs[a].t < evs[b].t
		}
		return evs[a].d < evs[b].d // ends before starts at the same instant
	})
	cur, peak := 0, 0
	for _, e := range evs {
		cur += e.d
		peak = max(peak, cur)
	}
	return peak
}

func testUnknownFunction(t *testing.T, s *suite) {
	ex, _ := s.executor(t, nil)
	nosuch := fanout.RegisterTo(fanout.NewRegistry(), "backendtest.nosuch", func(_ context.Context, x int) (int, error) { return x, nil })
	_, err := fanout.Map(guard(t), ex, nosuch, []int{1, 2, 3})
	if !errors.Is(err, fanout.ErrUnknownFunction) {
		t.Fatalf("err = %v, want ErrUnknownFunction", err)
	}
	if !strings.Contains(err.Error(), "backendtest.nosuch") {
		t.Errorf("error %q does not name the function", err)
	}
}

func testStaleWorker(t *testing.T, s *suite) {
	ex, _ := s.executor(t, nil)
	stale := fanout.RegisterTo(fanout.NewRegistry(), "backendtest.stale", func(_ context.Context, x string) (string, error) { return x, nil })
	_, err := fanout.Map(guard(t), ex, stale, []string{"a"})
	if !errors.Is(err, fanout.ErrStaleWorker) {
		t.Fatalf("err = %v, want ErrStaleWorker", err)
	}
	if !strings.Contains(err.Error(), "redeploy") {
		t.Errorf("error %q does not say what to do", err)
	}
}

func testMalformedPayload(t *testing.T, s *suite) {
	_, b := s.executor(t, nil)
	for _, p := range [][]byte{
		{},
		[]byte("not msgpack at all"),
		{0x93, 0x01, 0x02, 0x03}, // an array of the wrong shape
		{0x9b, 0x01, 0xdd, 0x7f, 0xff, 0xff, 0xff},        // a claim of 2^31 elements
		append(slices.Repeat([]byte{0x91}, 100000), 0x01), // nesting bomb
		{0xc1},
	} {
		reply, err := invokeAccepted(guard(t), b, p)
		if err != nil {
			t.Errorf("Invoke(%.20q): %v; want an error reply, not a failed invocation", p, err)
			continue
		}
		if err := fanout.ReplyError(reply); !errors.Is(err, fanout.ErrMalformed) {
			t.Errorf("Invoke(%.20q): reply error %v, want ErrMalformed", p, err)
		}
	}
}

// invokeAccepted calls b.Invoke until the platform accepts the call: a
// throttle (other tests of the suite run at once, and a platform may refuse
// beyond its quota) means the payload was never looked at, so it is sent
// again after the retry-after the platform asked for.
func invokeAccepted(ctx context.Context, b backends.Backend, p []byte) ([]byte, error) {
	for {
		reply, err := b.Invoke(ctx, p)
		if !errors.Is(err, backends.ErrThrottled) {
			return reply, err
		}
		t := time.NewTimer(max(backends.RetryAfter(err), 10*time.Millisecond))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (throttled until then: %w)", ctx.Err(), err)
		}
	}
}

func testTaskInfo(t *testing.T, s *suite) {
	ex, _ := s.executor(t, nil)
	j, err := fanout.Start(guard(t), ex, span, []int{0, 0, 0})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	out, err := j.Wait(guard(t))
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	for i, sp := range out {
		if sp.Job != j.ID() || sp.Index != i || sp.Attempt != 0 || sp.Worker == "" {
			t.Errorf("task %d saw %+v; want job %s, index %d, attempt 0, a worker", i, sp, j.ID(), i)
		}
	}
}

func testLogs(t *testing.T, s *suite) {
	ex, _ := s.executor(t, &fanout.Options{Retries: -1})
	j, err := fanout.Start(guard(t), ex, logs, []int{2, -3})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	seen := 0
	for r := range j.Results(guard(t)) {
		seen++
		want := 2
		if r.Index == 1 {
			want = 3
			var te *fanout.TaskError
			if !errors.As(r.Err, &te) || len(te.Logs) != 3 {
				t.Errorf("task 1: error %v should carry its 3 log records", r.Err)
			}
		}
		if len(r.Logs) != want {
			t.Fatalf("task %d: %d log records, want %d", r.Index, len(r.Logs), want)
		}
		if r.Logs[1].Message != "step" || !strings.Contains(r.Logs[1].Attrs, "i=1") {
			t.Errorf("task %d: record %+v, want message step with i=1", r.Index, r.Logs[1])
		}
	}
	if seen != 2 {
		t.Errorf("Results yielded %d, want 2", seen)
	}
}

func testRetryable(t *testing.T, s *suite) {
	ex, _ := s.executor(t, nil)
	j, err := fanout.Start(guard(t), ex, flaky, []int{1, 2})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	out, err := j.Wait(guard(t))
	if err != nil || !slices.Equal(out, []int{2, 3}) {
		t.Fatalf("Wait = %v, %v; want [2 3], nil", out, err)
	}
	if st := j.Stats(); st.Retries != 2 {
		t.Errorf("Retries = %d, want 2", st.Retries)
	}
}

func testTaskTimeout(t *testing.T, s *suite) {
	ex, _ := s.executor(t, &fanout.Options{TaskTimeout: 200 * time.Millisecond})
	_, err := fanout.Map(guard(t), ex, waitCancel, []int{1})
	if !errors.Is(err, fanout.ErrTaskTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrTaskTimeout and DeadlineExceeded", err)
	}
}

func testStoreInTask(t *testing.T, s *suite) {
	ex, _ := s.executor(t, nil)
	in := []string{"alpha", "beta"}
	out, err := fanout.Map(guard(t), ex, storeRoundTrip, in)
	if err != nil || !slices.Equal(out, in) {
		t.Fatalf("Map = %q, %v; want %q", out, err, in)
	}
}

func testMapReduce(t *testing.T, s *suite) {
	ex, _ := s.executor(t, nil)
	in := make([]int, 50)
	want := 0
	for i := range in {
		in[i] = i
		want += i * i
	}
	got, err := fanout.MapReduce(guard(t), ex, square, in, sum)
	if err != nil || got != want {
		t.Fatalf("MapReduce = %d, %v; want %d", got, err, want)
	}
}

func testResultsOnce(t *testing.T, s *suite) {
	ex, _ := s.executor(t, nil)
	in := make([]int, 300)
	for i := range in {
		in[i] = i
	}
	j, err := fanout.Start(guard(t), ex, square, in)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	seen := make([]int, len(in))
	for r := range j.Results(guard(t)) {
		seen[r.Index]++
		if r.Err != nil || r.Value != r.Index*r.Index {
			t.Fatalf("result %d = %d, %v", r.Index, r.Value, r.Err)
		}
		if r.Stats.Attempts != 1 || r.Stats.Received.Before(r.Stats.Invoked) {
			t.Fatalf("result %d stats %+v", r.Index, r.Stats)
		}
	}
	for i, n := range seen {
		if n != 1 {
			t.Fatalf("index %d yielded %d times, want once", i, n)
		}
	}
}

func testClosed(t *testing.T, s *suite) {
	ex, _ := s.executor(t, nil)
	if err := ex.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := fanout.Map(guard(t), ex, square, []int{1}); !errors.Is(err, fanout.ErrClosed) {
		t.Fatalf("Map after Close: %v, want ErrClosed", err)
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
