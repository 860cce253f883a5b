package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage/filestore"
)

// Ways for a task to take its worker process down with it.
var die = fanout.Register("fanout_test.die", func(ctx context.Context, how string) (string, error) {
	switch how {
	case "exit":
		os.Exit(3)
	case "fatal":
		log.Fatalf("task %d gives up", fanout.Task(ctx).Index)
	case "kill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		<-ctx.Done()
	case "kill-once":
		if fanout.Task(ctx).Attempt == 0 {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			<-ctx.Done()
		}
	case "panic-outside-task":
		done := make(chan struct{})
		go func() { panic("a goroutine the task started") }()
		<-done
	case "oom":
		// Cap the address space, then allocate past it: the Go runtime
		// dies with "out of memory" as it would under a memory limit.
		lim := syscall.Rlimit{Cur: 1 << 30, Max: 1 << 30}
		if err := syscall.Setrlimit(syscall.RLIMIT_AS, &lim); err != nil {
			return "", err
		}
		var hoard [][]byte
		for {
			hoard = append(hoard, make([]byte, 64<<20))
			hoard[len(hoard)-1][0] = 1 // touched, so it is kept
		}
	case "print":
		// Output must not disturb the frames on the protocol pipes.
		big := strings.Repeat("noise ", 50000)
		fmt.Println(big)
		fmt.Fprintln(os.Stderr, big)
	}
	return how, nil
})

// lineLog collects worker output lines for assertions.
type lineLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newProcess(t *testing.T, workers int, o *fanout.Options) (*fanout.Executor, *lineLog) {
	t.Helper()
	out := &lineLog{}
	b := process.New(&process.Options{
		Workers: workers,
		Stderr:  out,
		Env:     []string{"GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0"},
	})
	if o == nil {
		o = &fanout.Options{}
	}
	o.Logger = quietLogs
	ex := fanout.NewExecutor(b, o)
	t.Cleanup(func() { ex.Close() })
	return ex, out
}

func TestProcessWorkerDeath(t *testing.T) {
	for _, how := range []string{"exit", "kill", "panic-outside-task", "oom"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			ex, _ := newProcess(t, 2, &fanout.Options{BatchSize: 4})
			in := []string{"a", "b", how, "c", "d", "e", "f", "g"}
			j, err := fanout.Start(context.Background(), ex, die, in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := j.Wait(context.Background())
			for i, s := range in {
				if s != how && out[i] != s {
					t.Errorf("out[%d] = %q, want %q: batch-mates of the dying task must succeed", i, out[i], s)
				}
			}
			var te *fanout.TaskError
			if !errors.As(err, &te) || te.Index != 2 {
				t.Fatalf("err = %v, want a TaskError for task 2", err)
			}
			if !errors.Is(err, backends.ErrWorkerLost) {
				t.Errorf("err = %v, want it to wrap backends.ErrWorkerLost", err)
			}
			if te.Attempts != 3 {
				t.Errorf("Attempts = %d, want 3 (Retries defaults to 2)", te.Attempts)
			}
			if len(unjoin(err)) != 1 {
				t.Errorf("%d errors, want only the dying task's: %v", len(unjoin(err)), err)
			}
			// The pool recovers: the same executor keeps working.
			more, err := fanout.Map(context.Background(), ex, die, []string{"x", "y"})
			if err != nil || more[0] != "x" || more[1] != "y" {
				t.Fatalf("after the deaths: %q, %v", more, err)
			}
		})
	}
}

// The last words of a task that takes its worker down (log.Fatal) reach the
// driver's stderr, named after the task, and the task's error.
func TestProcessLastWords(t *testing.T) {
	ex, log := newProcess(t, 1, &fanout.Options{BatchSize: 1, Retries: -1})
	_, err := fanout.Map(context.Background(), ex, die, []string{"a", "fatal", "b"})
	var te *fanout.TaskError
	if !errors.As(err, &te) || te.Index != 1 || !strings.Contains(err.Error(), "task 1 gives up") {
		t.Fatalf("err = %v, want task 1's error quoting its last words", err)
	}
	ex.Close() // the workers' output is all copied once they are gone
	text := log.String()
	found := false
	for line := range strings.Lines(text) {
		found = found || strings.HasPrefix(line, "[worker 1 task 1] ") && strings.HasSuffix(line, " task 1 gives up\n")
	}
	if !found {
		t.Errorf("driver's stderr lacks the last words of task 1, named after it:\n%s", text)
	}
}

// TestProcessWorkerKilledOnce: a worker SIGKILLed mid-task is replaced, and
// the task's retry on the new worker succeeds; the stats count the lost
// invocation and the retry.
func TestProcessWorkerKilledOnce(t *testing.T) {
	ex, _ := newProcess(t, 2, &fanout.Options{BatchSize: 1})
	in := []string{"a", "kill-once", "b", "c"}
	j, err := fanout.Start(context.Background(), ex, die, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := j.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range in {
		if out[i] != s {
			t.Errorf("out[%d] = %q, want %q", i, out[i], s)
		}
	}
	s := j.Stats()
	if s.Retries != 1 || s.FailedInvocations != 1 || s.Succeeded != len(in) {
		t.Errorf("%d retries, %d failed invocations, %d succeeded; want 1, 1, %d", s.Retries, s.FailedInvocations, s.Succeeded, len(in))
	}
	if ts := s.PerTask[1]; ts.Attempts != 2 || len(ts.FailedTries) != 1 || !strings.Contains(ts.FailedTries[0].Reason, "worker") {
		t.Errorf("task 1: %d attempts, failed tries %+v; want 2 and one lost worker", ts.Attempts, ts.FailedTries)
	}
}

func TestProcessTaskOutput(t *testing.T) {
	ex, log := newProcess(t, 1, nil)
	out, err := fanout.Map(context.Background(), ex, die, []string{"print", "print"})
	if err != nil || out[0] != "print" {
		t.Fatalf("Map = %q, %v", out, err)
	}
	ex.Close() // the workers' output is all copied once they are gone
	if !strings.Contains(log.String(), "[worker 1 task 0] noise noise") || !strings.Contains(log.String(), "[worker 1 task 1] noise noise") {
		t.Errorf("worker output did not reach Stderr with a worker and task prefix (got %d bytes)", len(log.String()))
	}
}

// printer prints its input to stdout and stderr, and logs it; given "" it
// does nothing; given "child" it starts a program that prints.
var printer = fanout.Register("fanout_test.printer", func(ctx context.Context, s string) (string, error) {
	if s == "child" {
		cmd := exec.CommandContext(ctx, "sh", "-c", "echo child says hi")
		cmd.Stdout = os.Stdout
		return s, cmd.Run()
	}
	if s != "" {
		fmt.Println("out " + s)
		fanout.Logger(ctx).Info("logged " + s)
		fmt.Fprintln(os.Stderr, "err "+s)
	}
	return s, nil
})

// What a task prints joins its own log records, and no other task's, in
// the order written, and the lines on the driver's Stderr name it; a task that prints nothing
// gets no record.
func TestProcessTaskOutputAttributed(t *testing.T) {
	ex, log := newProcess(t, 1, &fanout.Options{BatchSize: 4})
	in := []string{"a", "", "b", "", "child"}
	j, err := fanout.Start(context.Background(), ex, printer, in)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for r := range j.Results(context.Background()) {
		n++
		if r.Err != nil {
			t.Fatalf("task %d: %v", r.Index, r.Err)
		}
		var got []string
		for _, rec := range r.Logs {
			got = append(got, rec.Message+" "+rec.Attrs)
		}
		var want []string // in the order written
		if s := in[r.Index]; s == "child" {
			want = []string{"child says hi stream=stdout"}
		} else if s != "" {
			want = []string{"out " + s + " stream=stdout", "logged " + s + " ", "err " + s + " stream=stderr"}
		}
		if !slices.Equal(got, want) {
			t.Errorf("task %d logs %q, want %q", r.Index, got, want)
		}
	}
	if n != len(in) {
		t.Fatalf("%d results, want %d", n, len(in))
	}
	ex.Close() // the workers' output is all copied once they are gone
	text := log.String()
	for _, want := range []string{"[worker 1 task 0] out a\n", "[worker 1 task 0] err a\n", "[worker 1 task 2] out b\n",
		"[worker 1 task 2] err b\n", "[worker 1 task 4] child says hi\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("driver output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "task 1]") || strings.Contains(text, "task 3]") {
		t.Errorf("driver output names a task that printed nothing:\n%s", text)
	}
}

var (
	stubborn = fanout.Register("fanout_test.stubborn", func(ctx context.Context, x int) (int, error) {
		if x < 0 {
			select {} // ignores its context
		}
		return x, nil
	})
	whoami = fanout.Register("fanout_test.whoami", func(ctx context.Context, _ int) (string, error) {
		return fanout.Task(ctx).Worker, nil
	})
)

// A worker left with a task goroutine it could not stop is retired after its
// reply, and the next invocation gets a fresh process.
func TestProcessRetiresWorkerWithStrayTask(t *testing.T) {
	ex, _ := newProcess(t, 1, &fanout.Options{TaskTimeout: 200 * time.Millisecond, BatchSize: 4})
	j, err := fanout.Start(context.Background(), ex, stubborn, []int{1, -1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	var hung string
	for r := range j.Results(context.Background()) {
		if r.Index != 1 {
			// The stuck task's batch-mates run on.
			if r.Err != nil || r.Value != []int{1, -1, 2, 3}[r.Index] {
				t.Errorf("task %d: %v, %v", r.Index, r.Value, r.Err)
			}
			continue
		}
		if !errors.Is(r.Err, fanout.ErrTaskTimeout) {
			t.Fatalf("err = %v, want ErrTaskTimeout", r.Err)
		}
		hung = r.Stats.Worker
	}
	if hung == "" {
		t.Fatal("the timed-out task reports no worker")
	}
	out, err := fanout.Map(context.Background(), ex, whoami, []int{1})
	if err != nil {
		t.Fatal(err)
	}
	if out[0] == hung {
		t.Fatalf("worker %s served again after abandoning a task", hung)
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// An invoker tree on process://: invokers' children go through the driver's
// pool, and reply through the job's temporary store.
func TestProcessTree(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			o := &fanout.Options{Tree: 3, BatchSize: 1, Concurrency: 12, Async: async}
			if async {
				st, err := filestore.New(t.TempDir(), nil)
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				o.Store = st
			}
			ex, _ := newProcess(t, 3, o)
			in := make([]int, 60)
			for i := range in {
				in[i] = i
			}
			j, err := fanout.Start(context.Background(), ex, double, in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := j.Wait(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range out {
				if v != 2*i {
					t.Fatalf("result %d is %d, want %d", i, v, 2*i)
				}
			}
			if s := j.Stats(); s.Invokers < 1 || s.ViaTree < 12 {
				t.Fatalf("invokers %d, via the tree %d: want the first window of 12 through invokers", s.Invokers, s.ViaTree)
			}
		})
	}
}
