package awslambdatest_test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	"go.uber.org/goleak"

	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
	"github.com/gowren/gowren/backends/awslambda/internal/testbuild"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbuild.Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testWriter sends worker output to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// newServer starts a server whose workers run the test worker in raw mode.
func newServer(t *testing.T, o awslambdatest.Options) *awslambdatest.Server {
	t.Helper()
	o.Command = []string{testbuild.Worker(t)}
	o.Env = append([]string{"GOWREN_TEST_RAW=1"}, o.Env...)
	if o.Stderr == nil {
		o.Stderr = testWriter{t}
	}
	s, err := awslambdatest.New(&o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// client returns a real SDK client for s with retries off, so that each
// call is one request.
func client(s *awslambdatest.Server, key string) *lambda.Client {
	return lambda.New(lambda.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider(key, "secret", ""),
		Retryer:      aws.NopRetryer{},
	})
}

func invoke(ctx context.Context, c *lambda.Client, typ types.InvocationType, event string) (*lambda.InvokeOutput, error) {
	return c.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String("function"),
		InvocationType: typ,
		Payload:        []byte(event),
	})
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// errorBody decodes a function error payload.
func errorBody(t *testing.T, p []byte) (typ, msg string) {
	t.Helper()
	var v struct {
		Type    string `json:"errorType"`
		Message string `json:"errorMessage"`
	}
	if err := json.Unmarshal(p, &v); err != nil {
		t.Fatalf("error payload %q: %v", p, err)
	}
	return v.Type, v.Message
}

// guardTimeout is the function timeout of servers whose tests are not about
// the timeout: a guard against a hung test, far above what any invocation
// takes on a busy machine (a 6 MB reply is built, encoded and read back in
// well under a second on an idle one, but not always on two loaded cores).
const guardTimeout = time.Minute

func TestInvoke(t *testing.T) {
	s := newServer(t, awslambdatest.Options{Timeout: guardTimeout})
	c := client(s, "AKID")
	// The timeout case runs on a server of their own with a 1 s timeout:
	// its function stops its own process, so it ends at the timeout
	// whatever the machine's speed; an echo then checks that a new worker
	// serves.
	short := newServer(t, awslambdatest.Options{Timeout: time.Second})
	cShort := client(short, "AKID")
	ctx := timeout(t, 2*time.Minute)
	for _, tc := range []struct {
		name      string
		short     bool // on the server with the 1 s timeout
		event     string
		wantErr   string // function error type; "" for success
		wantInMsg string
		check     func(t *testing.T, out *lambda.InvokeOutput)
	}{
		{name: "echo", event: `{"op":"echo","arg":7}`, check: func(t *testing.T, out *lambda.InvokeOutput) {
			if string(out.Payload) != `{"op":"echo","arg":7}` || out.StatusCode != 200 || aws.ToString(out.ExecutedVersion) != "$LATEST" {
				t.Errorf("got %d %q version %q", out.StatusCode, out.Payload, aws.ToString(out.ExecutedVersion))
			}
		}},
		{name: "deadline header", event: `{"op":"deadline"}`, check: func(t *testing.T, out *lambda.InvokeOutput) {
			ms, err := strconv.Atoi(string(out.Payload))
			if err != nil || ms <= 0 || ms > int(guardTimeout/time.Millisecond) {
				t.Errorf("the function saw %q ms left of a %v timeout", out.Payload, guardTimeout)
			}
		}},
		{name: "returned error", event: `{"op":"error"}`, wantErr: "errorString", wantInMsg: "failed on purpose"},
		{name: "panic", event: `{"op":"panic"}`, wantErr: "string", wantInMsg: "panic on purpose"},
		{name: "after panic", event: `{"op":"echo"}`},
		{name: "exit", event: `{"op":"exit","arg":3}`, wantErr: "Runtime.ExitError", wantInMsg: "exit status 3"},
		{name: "after exit", event: `{"op":"echo"}`},
		{name: "timeout", short: true, event: `{"op":"stop"}`, wantErr: "Sandbox.Timedout", wantInMsg: "Task timed out after 1.00 seconds"},
		{name: "after timeout", short: true, event: `{"op":"echo"}`},
		{name: "reply too large", event: fmt.Sprintf(`{"op":"big","arg":%d}`, awslambdatest.MaxSyncPayload+1),
			wantErr: "Function.ResponseSizeTooLarge", wantInMsg: "Response payload size exceeded"},
		{name: "reply at the limit", event: fmt.Sprintf(`{"op":"big","arg":%d}`, awslambdatest.MaxSyncPayload), check: func(t *testing.T, out *lambda.InvokeOutput) {
			if len(out.Payload) != awslambdatest.MaxSyncPayload {
				t.Errorf("reply of %d bytes, want %d", len(out.Payload), awslambdatest.MaxSyncPayload)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := c
			if tc.short {
				c = cShort
			}
			out, err := invoke(ctx, c, types.InvocationTypeRequestResponse, tc.event)
			if err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			if tc.wantErr == "" {
				if out.FunctionError != nil {
					t.Fatalf("function error %q: %s", *out.FunctionError, out.Payload)
				}
				if tc.check != nil {
					tc.check(t, out)
				}
				return
			}
			if aws.ToString(out.FunctionError) != "Unhandled" {
				t.Errorf("X-Amz-Function-Error = %q, want Unhandled", aws.ToString(out.FunctionError))
			}
			typ, msg := errorBody(t, out.Payload)
			if typ != tc.wantErr || !strings.Contains(msg, tc.wantInMsg) {
				t.Errorf("error %s: %s; want %s containing %q", typ, msg, tc.wantErr, tc.wantInMsg)
			}
		})
	}
	// One worker process to start with on each server, and one more for
	// each process the panic, the exit and the timeout ended. (A server
	// may start a second worker when an invocation comes before the first
	// asked for its next one: these are lower bounds.)
	if st := s.Stats(); st.WorkersStarted < 3 {
		t.Errorf("%d worker processes started; the first, and one after the panic and the exit each make at least 3", st.WorkersStarted)
	}
	if st := short.Stats(); st.WorkersStarted < 2 {
		t.Errorf("%d worker processes started on the server with the short timeout; the first and one after the timeout make at least 2", st.WorkersStarted)
	}
}

func TestRefusals(t *testing.T) {
	s := newServer(t, awslambdatest.Options{})
	c := client(s, "AKID")
	ctx := timeout(t, time.Minute)
	big := `"` + strings.Repeat("x", awslambdatest.MaxSyncPayload) + `"`
	bigEvent := `"` + strings.Repeat("x", awslambdatest.MaxAsyncPayload) + `"`
	for _, tc := range []struct {
		name     string
		function string
		typ      types.InvocationType
		event    string
		target   any
	}{
		{"not JSON", "function", types.InvocationTypeRequestResponse, "not json", new(*types.InvalidRequestContentException)},
		{"sync too large", "function", types.InvocationTypeRequestResponse, big, new(*types.RequestTooLargeException)},
		{"event too large", "function", types.InvocationTypeEvent, bigEvent, new(*types.RequestTooLargeException)},
		{"unknown function", "nosuch", types.InvocationTypeRequestResponse, "{}", new(*types.ResourceNotFoundException)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(tc.function), InvocationType: tc.typ, Payload: []byte(tc.event)})
			if err == nil || !errors.As(err, tc.target) {
				t.Fatalf("err = %v, want %T", err, tc.target)
			}
		})
	}
	t.Run("dry run", func(t *testing.T) {
		out, err := invoke(ctx, c, types.InvocationTypeDryRun, "")
		if err != nil || out.StatusCode != 204 {
			t.Fatalf("DryRun = %v, %v; want status 204", out, err)
		}
		if st := s.Stats(); st.WorkersStarted != 0 {
			t.Errorf("%d workers started; DryRun must run nothing", st.WorkersStarted)
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		anon := lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.URL()), Credentials: aws.AnonymousCredentials{}})
		_, err := invoke(ctx, anon, types.InvocationTypeRequestResponse, "{}")
		var api smithy.APIError
		if !errors.As(err, &api) || api.ErrorCode() != "MissingAuthenticationTokenException" {
			t.Fatalf("err = %v, want MissingAuthenticationTokenException", err)
		}
	})
}

// holder starts invocations that block in the function until the timeout,
// and tells when each runs.
type holder struct {
	t    *testing.T
	c    *lambda.Client
	dir  string
	n    int
	wg   sync.WaitGroup
	errs chan error
}

func newHolder(t *testing.T, c *lambda.Client) *holder {
	h := &holder{t: t, c: c, dir: t.TempDir(), errs: make(chan error, 100)}
	t.Cleanup(h.wg.Wait)
	return h
}

// hold starts an invocation and returns once the function runs.
func (h *holder) hold(ctx context.Context) {
	h.t.Helper()
	h.n++
	fifo := filepath.Join(h.dir, strconv.Itoa(h.n))
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		h.t.Fatal(err)
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		_, err := invoke(ctx, h.c, types.InvocationTypeRequestResponse, `{"op":"hold","path":"`+fifo+`"}`)
		h.errs <- err
	}()
	f, err := os.Open(fifo) // blocks until the function opens it
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	if _, err := bufio.NewReader(f).ReadString('\n'); err != nil {
		h.t.Fatalf("read %s: %v", fifo, err)
	}
}

func TestThrottle(t *testing.T) {
	s := newServer(t, awslambdatest.Options{Workers: 2, Concurrency: 2, Timeout: 2 * time.Second, RetryAfter: 1500 * time.Millisecond})
	c := client(s, "AKID")
	ctx := timeout(t, time.Minute)
	h := newHolder(t, c)
	h.hold(ctx)
	h.hold(ctx)
	_, err := invoke(ctx, c, types.InvocationTypeRequestResponse, `{"op":"echo"}`)
	var tm *types.TooManyRequestsException
	if !errors.As(err, &tm) {
		t.Fatalf("third invocation: %v, want TooManyRequestsException", err)
	}
	if tm.Reason != types.ThrottleReasonConcurrentInvocationLimitExceeded || aws.ToString(tm.RetryAfterSeconds) != "1.5" {
		t.Errorf("reason %q, Retry-After %q; want ConcurrentInvocationLimitExceeded, 1.5", tm.Reason, aws.ToString(tm.RetryAfterSeconds))
	}
	if st := s.Stats(); st.Throttles != 1 || st.MaxInFlight != 2 {
		t.Errorf("stats %+v; want 1 throttle, 2 in flight at most", st)
	}
	for range 2 {
		<-h.errs // the held invocations end at their timeout
	}
	if _, err := invoke(ctx, c, types.InvocationTypeRequestResponse, `{"op":"echo"}`); err != nil {
		t.Fatalf("after the held invocations ended: %v", err)
	}
}

func TestRamp(t *testing.T) {
	s := newServer(t, awslambdatest.Options{Workers: 3, Concurrency: 10, Ramp: 2, RampWindow: time.Hour, Timeout: 2 * time.Second,
		PendingPolls: -1})
	c := client(s, "AKID")
	ctx := timeout(t, time.Minute)
	h := newHolder(t, c)
	h.hold(ctx)
	h.hold(ctx)
	_, err := invoke(ctx, c, types.InvocationTypeRequestResponse, `{"op":"echo"}`)
	var tm *types.TooManyRequestsException
	if !errors.As(err, &tm) || tm.Reason != types.ThrottleReasonFunctionInvocationRateLimitExceeded {
		t.Fatalf("a third environment within the window: %v, want TooManyRequestsException FunctionInvocationRateLimitExceeded", err)
	}
	// Another function scales on its own: its first environment is not
	// counted against this one's ramp.
	if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("other"), Runtime: types.RuntimeProvidedal2023,
		Handler: aws.String("bootstrap"), Role: aws.String("arn:aws:iam::123456789012:role/r"),
		Code: &types.FunctionCode{ZipFile: zipOf(t, "other")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("other"), Payload: []byte(`{"op":"echo"}`)}); err != nil {
		t.Fatalf("another function within the window: %v, want it to add an environment of its own", err)
	}
	for range 2 {
		<-h.errs
	}
	// The two environments exist now: invocations reuse them.
	for range 3 {
		if _, err := invoke(ctx, c, types.InvocationTypeRequestResponse, `{"op":"echo"}`); err != nil {
			t.Fatalf("on a warm environment: %v", err)
		}
	}
	st := s.Stats()
	if len(st.Environments) != 3 || st.FunctionInvocations["function"] != 5 || st.FunctionInvocations["other"] != 1 {
		t.Errorf("%d environments, invocations by function %v; want 3 (2 of function, 1 of other), 5 and 1",
			len(st.Environments), st.FunctionInvocations)
	}
}

func TestEvents(t *testing.T) {
	results := make(chan awslambdatest.EventResult, 10)
	s := newServer(t, awslambdatest.Options{OnEvent: func(r awslambdatest.EventResult) { results <- r }})
	c := client(s, "AKID")
	ctx := timeout(t, time.Minute)
	out, err := invoke(ctx, c, types.InvocationTypeEvent, `{"op":"echo","arg":1}`)
	if err != nil || out.StatusCode != 202 || len(out.Payload) != 0 {
		t.Fatalf("Event = %+v, %v; want 202 and no payload", out, err)
	}
	r := <-results
	if r.Attempts != 1 || r.FunctionError != "" || string(r.Payload) != `{"op":"echo","arg":1}` {
		t.Errorf("event result %+v", r)
	}
	// A failing event is retried as the event invoke config says: twice by
	// default, not at all with MaximumRetryAttempts 0.
	if _, err := invoke(ctx, c, types.InvocationTypeEvent, `{"op":"error"}`); err != nil {
		t.Fatal(err)
	}
	if r := <-results; r.Attempts != 3 || r.FunctionError != "Unhandled" {
		t.Errorf("failing event with default retries: %+v, want 3 attempts", r)
	}
	if _, err := c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName: aws.String("function"), MaximumRetryAttempts: aws.Int32(0),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := invoke(ctx, c, types.InvocationTypeEvent, `{"op":"exit","arg":1}`); err != nil {
		t.Fatal(err)
	}
	if r := <-results; r.Attempts != 1 || r.FunctionError != "Unhandled" {
		t.Errorf("failing event with 0 retries: %+v, want 1 attempt", r)
	}
	if st := s.Stats(); st.Events != 3 || st.EventRuns != 5 {
		t.Errorf("stats %+v; want 3 events, 5 runs", st)
	}
}

func TestInitError(t *testing.T) {
	s := newServer(t, awslambdatest.Options{Env: []string{"GOWREN_TEST_INIT=error"}})
	c := client(s, "AKID")
	out, err := invoke(timeout(t, time.Minute), c, types.InvocationTypeRequestResponse, `{"op":"echo"}`)
	if err != nil {
		t.Fatal(err)
	}
	typ, msg := errorBody(t, out.Payload)
	if aws.ToString(out.FunctionError) != "Unhandled" || typ != "Test.InitFailed" || !strings.Contains(msg, "init failed on purpose") {
		t.Errorf("got %q %s: %s; want Unhandled Test.InitFailed", aws.ToString(out.FunctionError), typ, msg)
	}
}

func TestCloseInFlight(t *testing.T) {
	// The held invocation would run for an hour: only Close ending it lets
	// the test finish before its guard.
	s := newServer(t, awslambdatest.Options{Timeout: time.Hour})
	c := client(s, "AKID")
	ctx := timeout(t, time.Minute)
	h := newHolder(t, c)
	h.hold(ctx)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("Close did not end the invocation in flight")
	}
	if err := <-h.errs; err == nil {
		t.Error("the invocation in flight succeeded although the server closed")
	}
}

// TestStopAbandoned checks Options.StopAbandoned: an invocation whose
// caller went away is stopped (its worker replaced) when it runs, and
// dropped when it waits for a worker. Without it, both would keep the only
// worker for the hour of the timeout, and the last invocation would meet
// the test's guard instead of an answer.
func TestStopAbandoned(t *testing.T) {
	s := newServer(t, awslambdatest.Options{Workers: 1, Concurrency: 3, Timeout: time.Hour, StopAbandoned: true})
	c := client(s, "AKID")
	ctx := timeout(t, time.Minute)
	runningCtx, stopRunning := context.WithCancel(ctx)
	h := newHolder(t, c)
	h.hold(runningCtx) // runs on the only worker
	// Queued behind it: a hold whose FIFO nobody reads would block its
	// worker for the hour.
	nobody := filepath.Join(t.TempDir(), "nobody")
	if err := syscall.Mkfifo(nobody, 0o600); err != nil {
		t.Fatal(err)
	}
	waitingCtx, stopWaiting := context.WithCancel(ctx)
	waiting := make(chan error, 1)
	go func() {
		_, err := invoke(waitingCtx, c, types.InvocationTypeRequestResponse, `{"op":"hold","path":"`+nobody+`"}`)
		waiting <- err
	}()
	for s.Stats().Invocations < 2 { // the server has admitted it: an event, polled
		select {
		case <-ctx.Done():
			t.Fatal("the second invocation did not reach the server")
		case <-time.After(10 * time.Millisecond):
		}
	}
	stopWaiting()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Fatalf("the waiting invocation: %v, want its cancellation", err)
	}
	stopRunning()
	if err := <-h.errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("the running invocation: %v, want its cancellation", err)
	}
	out, err := invoke(ctx, c, types.InvocationTypeRequestResponse, `{"op":"echo"}`)
	if err != nil || out.FunctionError != nil {
		t.Fatalf("after both were abandoned: %v, %v; want an answer from a new worker", out, err)
	}
	// The first worker was killed with its abandoned invocation. (Should
	// the server learn that the waiting one was abandoned only after a new
	// worker took it, that worker is killed too: at least 2.)
	if st := s.Stats(); st.WorkersStarted < 2 {
		t.Errorf("%d workers started; want the first and at least one to replace it", st.WorkersStarted)
	}
}

func TestControlPlane(t *testing.T) {
	s, err := awslambdatest.New(&awslambdatest.Options{PendingPolls: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := client(s, "AKID")
	ctx := timeout(t, time.Minute)
	var zipped bytes.Buffer
	zw := zip.NewWriter(&zipped)
	w, _ := zw.Create("bootstrap")
	w.Write([]byte("#!/bin/sh\n"))
	zw.Close()
	role := "arn:aws:iam::123456789012:role/r"
	create := func(name, role string, code []byte) (*lambda.CreateFunctionOutput, error) {
		return c.CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String(name), Role: aws.String(role), Runtime: types.RuntimeProvidedal2023,
			Handler: aws.String("bootstrap"), Code: &types.FunctionCode{ZipFile: code},
			Architectures: []types.Architecture{types.ArchitectureArm64}, MemorySize: aws.Int32(512),
			Environment: &types.Environment{Variables: map[string]string{"A": "1"}},
		})
	}
	apiCode := func(err error) string {
		var api smithy.APIError
		if errors.As(err, &api) {
			return api.ErrorCode()
		}
		return fmt.Sprint(err)
	}
	if _, err := create("fn", "not-a-role", zipped.Bytes()); apiCode(err) != "InvalidParameterValueException" {
		t.Errorf("bad role: %v", err)
	}
	if _, err := create("fn", role, []byte("not a zip")); apiCode(err) != "InvalidParameterValueException" {
		t.Errorf("bad zip: %v", err)
	}
	if _, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("fn")}); apiCode(err) != "ResourceNotFoundException" {
		t.Errorf("GetFunction before create: %v", err)
	}
	out, err := create("fn", role, zipped.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if out.State != types.StatePending || aws.ToInt32(out.MemorySize) != 512 || out.Architectures[0] != types.ArchitectureArm64 ||
		out.Environment.Variables["A"] != "1" || aws.ToString(out.CodeSha256) == "" || out.CodeSize != int64(zipped.Len()) {
		t.Errorf("CreateFunction answered %+v", out)
	}
	if _, err := create("fn", role, zipped.Bytes()); apiCode(err) != "ResourceConflictException" {
		t.Errorf("second create: %v", err)
	}
	// Pending for two reads, and no update meanwhile.
	if _, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("fn"), MemorySize: aws.Int32(256)}); apiCode(err) != "ResourceConflictException" {
		t.Errorf("update of a pending function: %v", err)
	}
	for i, want := range []types.State{types.StatePending, types.StatePending, types.StateActive} {
		got, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("fn")})
		if err != nil || got.State != want {
			t.Fatalf("read %d: state %v, %v; want %v", i, got.State, err, want)
		}
	}
	up, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("fn"), ZipFile: zipped.Bytes(),
		Architectures: []types.Architecture{types.ArchitectureX8664}})
	if err != nil || up.LastUpdateStatus != types.LastUpdateStatusInProgress || up.Architectures[0] != types.ArchitectureX8664 {
		t.Fatalf("UpdateFunctionCode = %+v, %v", up, err)
	}
	w8 := lambda.NewFunctionUpdatedV2Waiter(c, func(o *lambda.FunctionUpdatedV2WaiterOptions) {
		o.MinDelay = time.Millisecond
		o.MaxDelay = 10 * time.Millisecond
	})
	if err := w8.Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("fn")}, time.Minute); err != nil {
		t.Fatalf("waiter: %v", err)
	}
	if _, err := c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName: aws.String("fn"), MaximumRetryAttempts: aws.Int32(3)}); apiCode(err) != "InvalidParameterValueException" {
		t.Errorf("3 retries: %v", err)
	}
	pc, err := c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName: aws.String("fn"), MaximumRetryAttempts: aws.Int32(0)})
	if err != nil || aws.ToInt32(pc.MaximumRetryAttempts) != 0 || pc.LastModified == nil {
		t.Errorf("PutFunctionEventInvokeConfig = %+v, %v", pc, err)
	}
	var ops []string
	for _, call := range s.Calls() {
		ops = append(ops, fmt.Sprintf("%s %d", call.Op, call.Status))
	}
	want := "CreateFunction 400,CreateFunction 400,GetFunction 404,CreateFunction 201,CreateFunction 409,UpdateFunctionConfiguration 409," +
		"GetFunctionConfiguration 200,GetFunctionConfiguration 200,GetFunctionConfiguration 200,UpdateFunctionCode 200"
	if got := strings.Join(ops, ","); !strings.HasPrefix(got, want) || !strings.HasSuffix(got, "PutFunctionEventInvokeConfig 400,PutFunctionEventInvokeConfig 200") {
		t.Errorf("calls %s", got)
	}
}

// inProcess is a handler for Options.Handler.
type inProcess struct{}

type testError struct{}

func (*testError) Error() string { return "test error" }

func (inProcess) Invoke(ctx context.Context, event []byte) ([]byte, error) {
	switch string(event) {
	case `"error"`:
		return nil, &testError{}
	case `"panic"`:
		panic("in-process panic")
	case `"wait"`:
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return event, nil
}

func TestInProcessHandler(t *testing.T) {
	// "wait" runs until its context ends, on a server with a 200 ms
	// timeout; the others on one whose timeout no quick call meets, however
	// busy the machine.
	newServer := func(timeout time.Duration) *awslambdatest.Server {
		s, err := awslambdatest.New(&awslambdatest.Options{Handler: inProcess{}, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s, short := newServer(guardTimeout), newServer(200*time.Millisecond)
	ctx := timeout(t, time.Minute)
	for _, tc := range []struct{ event, errType, inMsg string }{
		{`"hello"`, "", ""},
		{`"error"`, "*awslambdatest_test.testError", "test error"},
		{`"panic"`, "string", "in-process panic"},
		{`"wait"`, "Sandbox.Timedout", "Task timed out after 0.20 seconds"},
	} {
		c := client(s, "AKID")
		if tc.event == `"wait"` {
			c = client(short, "AKID")
		}
		out, err := invoke(ctx, c, types.InvocationTypeRequestResponse, tc.event)
		if err != nil {
			t.Fatalf("%s: %v", tc.event, err)
		}
		if tc.errType == "" {
			if out.FunctionError != nil || string(out.Payload) != tc.event {
				t.Errorf("%s: %q %s", tc.event, aws.ToString(out.FunctionError), out.Payload)
			}
			continue
		}
		typ, msg := errorBody(t, out.Payload)
		if aws.ToString(out.FunctionError) != "Unhandled" || typ != tc.errType || !strings.Contains(msg, tc.inMsg) {
			t.Errorf("%s: %q %s: %s; want %s containing %q", tc.event, aws.ToString(out.FunctionError), typ, msg, tc.errType, tc.inMsg)
		}
	}
	if st, sh := s.Stats(), short.Stats(); st.WorkersStarted+sh.WorkersStarted != 0 || st.Invocations != 3 || sh.Invocations != 1 {
		t.Errorf("stats %+v and %+v; want 3 and 1 invocations and no worker process", st, sh)
	}
}
