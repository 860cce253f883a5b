package tencentscf_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tencentyun/scf-go-lib/cloudfunction/messages"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/backendtest"
	"github.com/gowren/gowren/backends/tencentscf/internal/testfuncs"
	"github.com/gowren/gowren/fanout"
)

// Twins of backendtest's functions: same names and signatures, so the
// worker runs its own registration of them.
var (
	twins       = fanout.NewRegistry()
	errOnWorker = errors.New("runs on the worker only")
	square      = fanout.RegisterTo(twins, "backendtest.square", func(context.Context, int) (int, error) { return 0, errOnWorker })
	failOdd     = fanout.RegisterTo(twins, "backendtest.failOdd", func(context.Context, int) (int, error) { return 0, errOnWorker })
	panicky     = fanout.RegisterTo(twins, "backendtest.panicky", func(context.Context, string) (string, error) { return "", errOnWorker })
	waitCancel  = fanout.RegisterTo(twins, "backendtest.waitCancel", func(context.Context, int) (int, error) { return 0, errOnWorker })
	echoLen     = fanout.RegisterTo(twins, "backendtest.echoLen", func(context.Context, backendtest.Blob) (int, error) { return 0, errOnWorker })
)

// rpcWorker is the test worker binary started exactly as SCF's Go1 runtime
// starts a function: _LAMBDA_SERVER_PORT set, nothing of gowren's.
type rpcWorker struct {
	cmd    *exec.Cmd
	client *rpc.Client
	exited chan struct{}
	err    error // the process's exit, once exited is closed
	out    *syncBuffer
}

func startWorker(t *testing.T) *rpcWorker {
	t.Helper()
	return startWorkerEnv(t)
}

// startWorkerEnv is startWorker with env ("KEY=value") added to the
// process's environment.
func startWorkerEnv(t *testing.T, env ...string) *rpcWorker {
	t.Helper()
	bin := workerBinary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	w := &rpcWorker{cmd: exec.Command(bin), exited: make(chan struct{}), out: &syncBuffer{}}
	w.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "_LAMBDA_SERVER_PORT=" + strconv.Itoa(port), "SCF_RUNTIME=Go1"}, env...)
	out := io.MultiWriter(tWriter{t}, w.out)
	w.cmd.Stdout, w.cmd.Stderr = out, out
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		if w.client != nil {
			w.client.Close()
		}
		_ = w.cmd.Process.Kill()
		<-w.exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			w.client = rpc.NewClient(conn)
			return w
		}
		select {
		case <-w.exited:
			t.Fatalf("worker exited before listening: %v\n%s", w.err, w.out)
		case <-time.After(5 * time.Millisecond): // polling the port it opens
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker did not listen on port %d within 10s", port)
		}
	}
}

// invoke calls Function.Invoke as the SCF runtime does, with scf-go-lib's
// own message types.
func (w *rpcWorker) invoke(payload []byte, deadline time.Time) (*messages.InvokeResponse, error) {
	return w.invokeEnv(payload, deadline, nil)
}

// invokeEnv is invoke with env as the request's Environment, which
// scf-go-lib copies into the process environment.
func (w *rpcWorker) invokeEnv(payload []byte, deadline time.Time, env map[string]string) (*messages.InvokeResponse, error) {
	req := &messages.InvokeRequest{
		Payload: payload, RequestId: "req-1", FunctionName: "conformance", Namespace: "default",
		TimeLimitInMs: 3000, MemoryLimitInMb: 128,
	}
	if env != nil {
		b, err := json.Marshal(env)
		if err != nil {
			return nil, err
		}
		req.Environment = string(b)
	}
	if !deadline.IsZero() {
		req.Deadline = messages.InvokeRequest_Timestamp{Seconds: deadline.Unix(), Nanos: int64(deadline.Nanosecond())}
	}
	var resp messages.InvokeResponse
	err := w.client.Call("Function.Invoke", req, &resp)
	return &resp, err
}

// exitStatus waits for the worker process to end and returns its status.
func (w *rpcWorker) exitStatus(t *testing.T) int {
	t.Helper()
	select {
	case <-w.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker process did not exit")
	}
	var ee *exec.ExitError
	if !errors.As(w.err, &ee) {
		return 0
	}
	return ee.ExitCode()
}

// rpcBackend drives a worker through net/rpc with envelopes made by a real
// executor. An invocation's deadline is its context's, else now+window;
// zeroDeadline sends none, as a platform leaving the field unset would.
type rpcBackend struct {
	w            *rpcWorker
	window       time.Duration
	zeroDeadline bool
	env          map[string]string // the requests' Environment

	mu       sync.Mutex
	deadline time.Time // of the last request
}

func (b *rpcBackend) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Now().Add(b.window)
	}
	if b.zeroDeadline {
		d = time.Time{}
	}
	b.mu.Lock()
	b.deadline = d
	b.mu.Unlock()
	resp, err := b.w.invokeEnv(backends.EncodeJSON(payload), d, b.env)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", backends.ErrWorkerLost, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("function error %s: %s", resp.Error.Type, resp.Error.Message)
	}
	// What the runtime returns must reach SCF, and the driver's RetMsg, as
	// the JSON object itself: not base64, not a JSON string.
	var obj map[string]string
	if err := json.Unmarshal(resp.Payload, &obj); err != nil || len(obj) != 1 {
		return nil, fmt.Errorf("%w: the reply is not the JSON object {\"gowren\":...}: %.80q", backends.ErrTransport, resp.Payload)
	}
	return backends.DecodeJSON(resp.Payload)
}

func (b *rpcBackend) Limits() backends.Limits {
	return backends.Limits{MaxRequestBytes: 4 << 20, MaxResponseBytes: 4 << 20, Concurrency: 1, Parallel: 1}
}
func (b *rpcBackend) Close() error { return nil }

func TestWorkerRuntime(t *testing.T) {
	t.Parallel()
	w := startWorker(t)
	newEx := func(b *rpcBackend) *fanout.Executor {
		ex := fanout.NewExecutor(b, &fanout.Options{Retries: -1})
		t.Cleanup(func() { ex.Close() })
		return ex
	}
	rb := &rpcBackend{w: w, window: time.Minute}
	ex := newEx(rb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The subtests share one worker process, one after another, as SCF
	// sends one event at a time to an instance.
	t.Run("Results", func(t *testing.T) {
		got, err := fanout.Map(ctx, ex, square, []int{1, 2, 3, -4})
		if err != nil || fmt.Sprint(got) != "[1 4 9 16]" {
			t.Fatalf("Map = %v, %v; want [1 4 9 16]", got, err)
		}
		env, err := fanout.Map(ctx, ex, testfuncs.Getenv, []string{"SCF_RUNTIME"})
		if err != nil || env[0] != "Go1" {
			t.Fatalf("the task saw SCF_RUNTIME=%q (%v), want Go1", env, err)
		}
	})
	t.Run("TaskErrors", func(t *testing.T) {
		got, err := fanout.Map(ctx, ex, failOdd, []int{2, 3})
		var te *fanout.TaskError
		if !errors.As(err, &te) || te.Index != 1 || te.Type != "*backendtest.testError" || te.Message != "odd input 3" {
			t.Fatalf("err = %#v, want task 1's *backendtest.testError \"odd input 3\"", err)
		}
		if got[0] != 2 {
			t.Errorf("the successful task's result is %d, want 2", got[0])
		}
	})
	t.Run("Panic", func(t *testing.T) {
		_, err := fanout.Map(ctx, ex, panicky, []string{"boom"})
		var te *fanout.TaskError
		if !errors.As(err, &te) || !errors.Is(err, fanout.ErrPanic) || !strings.Contains(te.Stack, "backendtest.panicHere") {
			t.Fatalf("err = %v, want ErrPanic with the panicking function in its stack", err)
		}
		if got, err := fanout.Map(ctx, ex, square, []int{5}); err != nil || got[0] != 25 {
			t.Fatalf("after a panic, Map = %v, %v; the worker must go on serving", got, err)
		}
	})
	t.Run("Deadline", func(t *testing.T) {
		// The request's Deadline, a minute away, less the reply's reserve
		// (a tenth of the time left, at most 500 ms: 500 ms for any call
		// that reaches the worker within 55 s) becomes the task's context
		// deadline.
		got, err := fanout.Map(ctx, ex, testfuncs.Deadline, []int{0})
		if err != nil {
			t.Fatal(err)
		}
		rb.mu.Lock()
		want := rb.deadline.Add(-500 * time.Millisecond)
		rb.mu.Unlock()
		if diff := time.UnixMilli(got[0]).Sub(want); diff < -time.Millisecond || diff > time.Millisecond {
			t.Errorf("task deadline %v, want 500 ms before the invocation's, %v", time.UnixMilli(got[0]), want)
		}
	})
	t.Run("DeadlineExpiry", func(t *testing.T) {
		short := newEx(&rpcBackend{w: w, window: 300 * time.Millisecond})
		_, err := fanout.Map(ctx, short, waitCancel, []int{1})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a task waiting past the deadline: err = %v, want DeadlineExceeded", err)
		}
		// A task that ignores its context is abandoned: it would sleep for
		// an hour, so only the worker giving up on it at the deadline makes
		// the reply come before ctx's minute is up.
		_, err = fanout.Map(ctx, short, testfuncs.Sleep, []int{int(time.Hour / time.Millisecond)})
		if !errors.Is(err, fanout.ErrTaskTimeout) {
			t.Fatalf("a task ignoring the deadline: err = %v, want ErrTaskTimeout", err)
		}
	})
	t.Run("ZeroDeadline", func(t *testing.T) {
		// No Deadline in the request: the function's time limit applies
		// instead of a context that expired in 1970, less the reserve.
		zero := newEx(&rpcBackend{w: w, zeroDeadline: true})
		before := time.Now()
		got, err := fanout.Map(ctx, zero, testfuncs.Deadline, []int{0})
		if err != nil {
			t.Fatal(err)
		}
		d := time.UnixMilli(got[0])
		if d.Before(before.Add(2600*time.Millisecond)) || d.After(time.Now().Add(2750*time.Millisecond)) {
			t.Errorf("task deadline %v, want about 2.7s (TimeLimitInMs less a tenth) after %v", d, before)
		}
	})
	t.Run("NoInvoker", func(t *testing.T) {
		// Without the role's keys in its environment (a function with no
		// execution role), a task has no backend to invoke children.
		got, err := fanout.Map(ctx, ex, testfuncs.Children, [][]int{{1}})
		if err != nil || got[0].Invoker != "" || got[0].Doubled != nil {
			t.Fatalf("Children = %+v, %v; want no invoker", got, err)
		}
	})
	t.Run("NotGowren", func(t *testing.T) {
		// An event from the SCF console is refused with a clear error.
		resp, err := w.invoke([]byte(`{"key1":"value1"}`), time.Now().Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Error == nil || !strings.Contains(resp.Error.Message, "not a gowren invocation") {
			t.Fatalf("response %+v, want an error saying the event is not a gowren invocation", resp)
		}
	})
}

func TestWorkerCrash(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		run    func(*fanout.Executor) error
		status int
		output string
	}{
		{"PanicInGoroutine", func(ex *fanout.Executor) error {
			_, err := fanout.Map(context.Background(), ex, testfuncs.PanicInGoroutine, []string{"boom"})
			return err
		}, 2, "testfuncs: boom"},
		{"Exit", func(ex *fanout.Executor) error {
			_, err := fanout.Map(context.Background(), ex, testfuncs.Exit, []int{3})
			return err
		}, 3, "exiting with status 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := startWorker(t)
			ex := fanout.NewExecutor(&rpcBackend{w: w, window: 10 * time.Second}, &fanout.Options{Retries: -1})
			defer ex.Close()
			err := tc.run(ex)
			if !errors.Is(err, backends.ErrWorkerLost) {
				t.Fatalf("err = %v, want the lost worker", err)
			}
			if st := w.exitStatus(t); st != tc.status {
				t.Errorf("the worker exited with status %d, want %d", st, tc.status)
			}
			if !strings.Contains(w.out.String(), tc.output) {
				t.Errorf("the worker's output lacks %q:\n%s", tc.output, w.out)
			}
		})
	}
}

// syncBuffer is a strings.Builder safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
