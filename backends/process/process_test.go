package process_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/process"
)

// syncBuffer is an io.Writer for Options.Stderr that tests can read.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

// newBackend returns a backend closed at the end of the test, with its
// workers' output in the returned buffer.
func newBackend(t *testing.T, opts process.Options) (*process.Backend, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	if opts.Stderr == nil {
		opts.Stderr = out
	}
	// A worker built with -race otherwise sleeps a second before exiting.
	opts.Env = append(opts.Env, "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	b := process.New(&opts)
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b, out
}

func invoke(t *testing.T, b *process.Backend, payload string) string {
	t.Helper()
	reply, err := b.Invoke(context.Background(), []byte(payload))
	if err != nil {
		t.Fatalf("Invoke(%.20q): %v", payload, err)
	}
	return string(reply)
}

// fifo lets test workers tell the test that they run (see "hold" and "hang").
type fifo struct {
	path string
	f    *os.File
	r    *bufio.Reader
}

func newFIFO(t *testing.T) *fifo {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	// Read-write: opening does not wait for a writer and reading never
	// ends.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &fifo{path: path, f: f, r: bufio.NewReader(f)}
}

// next returns the pid of the next worker that says it runs.
func (f *fifo) next(t *testing.T) int {
	t.Helper()
	_ = f.f.SetReadDeadline(time.Now().Add(time.Minute)) // a broken test fails instead of hanging
	line, err := f.r.ReadString('\n')
	if err != nil {
		t.Fatalf("waiting for a worker to start: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("fifo: %v", err)
	}
	return pid
}

type result struct {
	reply string
	err   error
}

// goInvoke runs Invoke in a goroutine and returns where its result arrives.
func goInvoke(ctx context.Context, b *process.Backend, payload string) <-chan result {
	c := make(chan result, 1)
	go func() {
		reply, err := b.Invoke(ctx, []byte(payload))
		c <- result{string(reply), err}
	}()
	return c
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, process.Options{Workers: 2})
	for _, n := range []int{0, 1, 100, 32 << 10, 32<<10 + 1, 1 << 20, 6<<20 - 5} {
		data := bytes.Repeat([]byte{'a', 'b', 'c', 0, 0xff}, n/5+1)[:n]
		reply, err := b.Invoke(context.Background(), append([]byte("echo:"), data...))
		if err != nil {
			t.Fatalf("echo %d bytes: %v", n, err)
		}
		if !bytes.Equal(reply, data) {
			t.Fatalf("echo %d bytes: got %d bytes back, different", n, len(reply))
		}
	}
	// Concurrent round trips all come back to their sender.
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 20 {
				want := fmt.Sprintf("%d-%d", i, j)
				reply, err := b.Invoke(context.Background(), []byte("echo:"+want))
				if err != nil || string(reply) != want {
					t.Errorf("echo %q: got %q, %v", want, reply, err)
				}
			}
		})
	}
	wg.Wait()
}

func TestLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts *process.Options
		want backends.Limits
	}{
		{"defaults", nil, backends.Limits{MaxRequestBytes: 6 << 20, MaxResponseBytes: 6 << 20, Concurrency: runtimeProcs(), Parallel: 1, SameHost: true, Nested: true}},
		{"set", &process.Options{Workers: 3, MaxRequestBytes: 10, MaxResponseBytes: 20}, backends.Limits{MaxRequestBytes: 10, MaxResponseBytes: 20, Concurrency: 3, Parallel: 1, SameHost: true, Nested: true}},
		{"clamped", &process.Options{MaxRequestBytes: 2 << 30, MaxResponseBytes: -1}, backends.Limits{MaxRequestBytes: 1 << 30, MaxResponseBytes: 6 << 20, Concurrency: runtimeProcs(), Parallel: 1, SameHost: true, Nested: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := process.New(tt.opts)
			defer b.Close()
			if got := b.Limits(); got != tt.want {
				t.Errorf("Limits() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

func TestWorkerEnvironment(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, process.Options{Workers: 1, Env: []string{"PROCESS_TEST_EXTRA=extra"}})
	if got, want := invoke(t, b, "env"), "||||extra"; got != want {
		t.Errorf("worker environment: got %q, want %q (Serve unsets its variables; Env reaches the worker)", got, want)
	}
	// Programs a task starts inherit none of the pipes but fds 1 and 2 (the
	// capture pipes' write ends).
	if got, want := invoke(t, b, "cloexec"), "3:false 4:false 5:false 6:false 7:false 8:false 9:false"; got != want {
		t.Errorf("protocol and capture fds (fd:inherited): got %q, want %q", got, want)
	}
	if pid, _ := strconv.Atoi(invoke(t, b, "pid")); pid == os.Getpid() || pid == 0 {
		t.Errorf("worker pid %d: not a subprocess", pid)
	}
	// The driver's deadline reaches the worker.
	d := time.Now().Add(time.Hour).Round(0)
	ctx, cancel := context.WithDeadline(context.Background(), d)
	defer cancel()
	reply, err := b.Invoke(ctx, []byte("deadline"))
	if err != nil || string(reply) != strconv.FormatInt(d.UnixNano(), 10) {
		t.Errorf("deadline: got %q, %v, want %d", reply, err, d.UnixNano())
	}
	if got := invoke(t, b, "deadline"); got != "none" {
		t.Errorf("no deadline: got %q", got)
	}
}

func TestWorkersAreReused(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, process.Options{Workers: 1})
	first := invoke(t, b, "pid")
	for range 5 {
		if pid := invoke(t, b, "pid"); pid != first {
			t.Fatalf("worker pid %s, then %s: want one warm worker", first, pid)
		}
	}
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	t.Run("distinct workers", func(t *testing.T) {
		t.Parallel()
		b, _ := newBackend(t, process.Options{Workers: 2})
		var mu sync.Mutex
		pids := map[string]bool{}
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for range 10 {
					pid := invoke(t, b, "pid")
					mu.Lock()
					pids[pid] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(pids) > 2 {
			t.Errorf("%d workers served with Workers=2: %v", len(pids), pids)
		}
	})
	t.Run("waits for a free worker", func(t *testing.T) {
		t.Parallel()
		b, _ := newBackend(t, process.Options{Workers: 2})
		f := newFIFO(t)
		ctx1, cancel1 := context.WithCancel(context.Background())
		ctx2, cancel2 := context.WithCancel(context.Background())
		defer cancel2()
		hold1 := goInvoke(ctx1, b, "hold:"+f.path)
		pid1 := f.next(t)
		hold2 := goInvoke(ctx2, b, "hold:"+f.path)
		pid2 := f.next(t)
		third := goInvoke(context.Background(), b, "pid")
		select {
		case r := <-third:
			t.Fatalf("third invocation ran while both workers were busy: %+v", r)
		default:
		}
		cancel1() // frees the first worker, which the third gets
		if r := <-hold1; !errors.Is(r.err, context.Canceled) {
			t.Errorf("cancelled hold: %+v, want context.Canceled", r)
		}
		r := <-third
		if r.err != nil || r.reply != strconv.Itoa(pid1) {
			t.Errorf("third invocation: %+v, want the pid of the freed worker %d (busy: %d)", r, pid1, pid2)
		}
		cancel2()
		<-hold2
	})
	t.Run("cancel while waiting", func(t *testing.T) {
		t.Parallel()
		b, _ := newBackend(t, process.Options{Workers: 1})
		f := newFIFO(t)
		ctx1, cancel1 := context.WithCancel(context.Background())
		defer cancel1()
		hold := goInvoke(ctx1, b, "hold:"+f.path)
		f.next(t)
		ctx2, cancel2 := context.WithCancel(context.Background())
		waiting := goInvoke(ctx2, b, "pid")
		cancel2()
		if r := <-waiting; !errors.Is(r.err, context.Canceled) {
			t.Errorf("waiting invocation: %+v, want context.Canceled", r)
		}
		cancel1()
		<-hold
	})
}

func TestOutput(t *testing.T) {
	t.Parallel()
	b, out := newBackend(t, process.Options{Workers: 1})
	if got := invoke(t, b, "print:hello"); got != "printed" {
		t.Fatalf("print: %q", got)
	}
	const lines = 10 << 10 // 1 MiB
	if got := invoke(t, b, "flood:"+strconv.Itoa(lines)); got != "flooded" {
		t.Fatalf("flood: %q", got)
	}
	if got := invoke(t, b, "long-line:200000"); got != "printed" {
		t.Fatalf("long line: %q", got)
	}
	// Frames are intact after all that output.
	if got := invoke(t, b, "echo:still fine"); got != "still fine" {
		t.Fatalf("echo after output: %q", got)
	}
	if _, err := b.Invoke(context.Background(), []byte("print-partial:no newline")); !errors.Is(err, backends.ErrWorkerLost) {
		t.Fatalf("print-partial: %v", err)
	}
	b.Close() // all output is copied once the workers are gone

	text := out.String()
	for _, want := range []string{"[worker 1] hello (stdout)\n", "[worker 1] hello (stderr)\n", "[worker 1] no newline\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	floodLine := "[worker 1] " + strings.Repeat("x", 99) + "\n"
	if n := strings.Count(text, floodLine); n != lines {
		t.Errorf("output has %d flood lines, want %d", n, lines)
	}
	var long int
	for line := range strings.Lines(text) {
		if !strings.HasPrefix(line, "[worker ") {
			t.Fatalf("output line without prefix: %.80q", line)
		}
		if _, rest, _ := strings.Cut(line, "] "); strings.HasPrefix(rest, "y") {
			long += len(rest) - 1
			if len(rest) > 64<<10+1 {
				t.Errorf("long line not cut: %d bytes", len(rest))
			}
		}
	}
	if long != 200000 {
		t.Errorf("long line: %d bytes in output, want 200000", long)
	}
}

func TestWorkerDeath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		payload string
		want    []string // in the error
	}{
		{"exit:7", []string{"exit status 7", "test worker: exiting with 7"}},
		{"kill", []string{"signal: killed"}},
		{"panic", []string{"exit status 2", "panic: test worker panic"}},
	}
	for _, tt := range tests {
		t.Run(tt.payload, func(t *testing.T) {
			t.Parallel()
			b, _ := newBackend(t, process.Options{Workers: 1})
			pid := invoke(t, b, "pid")
			_, err := b.Invoke(context.Background(), []byte(tt.payload))
			if !errors.Is(err, backends.ErrWorkerLost) || !backends.Retryable(err) {
				t.Fatalf("Invoke(%q) = %v, want a retryable ErrWorkerLost", tt.payload, err)
			}
			t.Logf("error: %v", err)
			for _, want := range append(tt.want, "worker 1", "pid "+pid) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if next := invoke(t, b, "pid"); next == pid {
				t.Errorf("next invocation ran on the dead worker's pid %s", pid)
			}
		})
	}
}

// TestWorkerLastWords checks that what a task prints right before its worker
// dies (os.Exit, log.Fatal, a panic nothing recovers, SIGKILL, all of a
// flood) reaches the driver's output, naming the task, and the error.
func TestWorkerLastWords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		payload string
		status  string
		lines   []string // on Options.Stderr after "[worker 1 task 17] ", and in the error
	}{
		{"task:17:exit:7", "exit status 7", []string{"test worker: exiting with 7"}},
		{"task:17:fatal:bad input", "exit status 1", []string{"test worker: fatal bad input"}},
		{"task:17:panic", "exit status 2", []string{"panic: test worker panic"}},
		{"task:17:last-kill:goodbye", "signal: killed", []string{"test worker: goodbye"}},
		{"task:17:flood-exit:3000", "exit status 4", nil},
	}
	for _, tt := range tests {
		t.Run(tt.payload, func(t *testing.T) {
			t.Parallel()
			b, out := newBackend(t, process.Options{Workers: 1})
			_, err := b.Invoke(context.Background(), []byte(tt.payload))
			if !errors.Is(err, backends.ErrWorkerLost) {
				t.Fatalf("Invoke(%q) = %v, want ErrWorkerLost", tt.payload, err)
			}
			if !strings.Contains(err.Error(), tt.status) {
				t.Errorf("error %q lacks %q", err, tt.status)
			}
			b.Close() // all output is copied once the workers are gone
			text := out.String()
			for _, line := range tt.lines {
				if !strings.Contains(err.Error(), line) {
					t.Errorf("error %q lacks %q", err, line)
				}
				if !strings.Contains(text, "[worker 1 task 17] ") || !strings.Contains(text, line+"\n") {
					t.Errorf("output lacks %q from task 17:\n%s", line, text)
				}
			}
			if n, ok := strings.CutPrefix(tt.payload, "task:17:flood-exit:"); ok {
				lines, _ := strconv.Atoi(n)
				for i := range lines {
					for _, s := range []string{"out", "err"} {
						if want := fmt.Sprintf("[worker 1 task 17] %s %d\n", s, i); !strings.Contains(text, want) {
							t.Fatalf("output lacks %q (%d bytes of output)", want, len(text))
						}
					}
				}
			}
		})
	}
}

// What a task prints is attributed to it, in the driver's output and in
// the lines the worker gives the task; what is printed while two tasks run
// goes to both; what is printed outside tasks names the worker only.
func TestTaskOutput(t *testing.T) {
	t.Parallel()
	b, out := newBackend(t, process.Options{Workers: 1})
	if got, want := invoke(t, b, "task:3:print:hello"), "printed|stdout:hello (stdout):[];stderr:hello (stderr):[]"; got != want {
		t.Errorf("task 3 replied %q, want %q", got, want)
	}
	if got, want := invoke(t, b, "task:4:echo:quiet"), "quiet|"; got != want {
		t.Errorf("task 4 replied %q, want %q", got, want)
	}
	if got := invoke(t, b, "print:outside"); got != "printed" {
		t.Errorf("print replied %q", got)
	}
	if got, want := invoke(t, b, "overlap:shared"), "stdout:shared:[3 4]"; got != want {
		t.Errorf("overlapping task 4 got %q, want %q", got, want)
	}
	b.Close()
	text := out.String()
	for _, want := range []string{"[worker 1 task 3] hello (stdout)\n", "[worker 1 task 3] hello (stderr)\n",
		"[worker 1 tasks 3,4] shared\n",
		"[worker 1] outside (stdout)\n", "[worker 1] outside (stderr)\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "task 4]") {
		t.Errorf("output names task 4 alone, which printed nothing alone:\n%s", text)
	}
}

// TestIdleWorkerDeath checks that a worker that died while idle is replaced
// without failing the next invocation: it never got its payload.
func TestIdleWorkerDeath(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, process.Options{Workers: 1})
	pid, _ := strconv.Atoi(invoke(t, b, "pid"))
	exited := watchExit(t, pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := exited(); err != nil {
		t.Fatalf("waiting for worker %d to die: %v", pid, err)
	}
	if next := invoke(t, b, "pid"); next == strconv.Itoa(pid) {
		t.Errorf("dead worker %d still serves", pid)
	}
}

// watchExit returns a function that waits until process pid has exited and
// released its files, which its pidfd tells (Linux 5.10 and later).
func watchExit(t *testing.T, pid int) func() error {
	t.Helper()
	const sysPidfdOpen, pidfdNonblock = 434, syscall.O_NONBLOCK
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), pidfdNonblock, 0)
	if errno != 0 {
		t.Skipf("pidfd_open: %v", errno)
	}
	f := os.NewFile(fd, "pidfd")
	t.Cleanup(func() { f.Close() })
	return func() error {
		rc, err := f.SyscallConn()
		if err != nil {
			return err
		}
		_ = f.SetReadDeadline(time.Now().Add(time.Minute))
		// The callback asks the pidfd itself whether it is readable (the
		// process is gone) rather than trusting that a second call means
		// so: a readiness the poller saw before this read began is
		// forgotten when the read starts, and would never come again.
		return rc.Read(pidfdReadable)
	}
}

// pidfdReadable polls fd without waiting: readable once its process exited.
func pidfdReadable(fd uintptr) bool {
	const pollIn = 0x1
	pfd := struct {
		fd              int32
		events, revents int16
	}{int32(fd), pollIn, 0}
	var now syscall.Timespec // zero: do not wait
	n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&now)), 0, 0, 0)
	return errno == 0 && n == 1 && pfd.revents&pollIn != 0
}

func TestHandlerPanic(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, process.Options{Workers: 1})
	pid := invoke(t, b, "pid")
	_, err := b.Invoke(context.Background(), []byte("handler-panic"))
	if err == nil || !strings.Contains(err.Error(), "handler panic") || errors.Is(err, backends.ErrWorkerLost) {
		t.Fatalf("Invoke(handler-panic) = %v, want the panic, worker kept", err)
	}
	if next := invoke(t, b, "pid"); next != pid {
		t.Errorf("worker %s replaced by %s after a recovered panic", pid, next)
	}
}

func TestBadFrame(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, process.Options{Workers: 1})
	pid := invoke(t, b, "pid")
	_, err := b.Invoke(context.Background(), []byte("garbage"))
	if !errors.Is(err, backends.ErrWorkerLost) || !strings.Contains(err.Error(), "bad frame") {
		t.Fatalf("Invoke(garbage) = %v, want ErrWorkerLost for a bad frame", err)
	}
	if next := invoke(t, b, "pid"); next == pid {
		t.Errorf("worker %s that sent a bad frame still serves", pid)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	t.Run("handler returns", func(t *testing.T) {
		t.Parallel()
		// A grace period longer than the test: only the cancel frame
		// can end this invocation.
		b, _ := newBackend(t, process.Options{Workers: 1, CancelGrace: time.Hour})
		f := newFIFO(t)
		ctx, cancel := context.WithCancel(context.Background())
		res := goInvoke(ctx, b, "hold:"+f.path)
		pid := f.next(t)
		cancel()
		if r := <-res; !errors.Is(r.err, context.Canceled) {
			t.Fatalf("cancelled invocation: %+v, want context.Canceled", r)
		}
		if next := invoke(t, b, "pid"); next != strconv.Itoa(pid) {
			t.Errorf("worker %d replaced by %s: a cancelled invocation that ends in time keeps its worker", pid, next)
		}
	})
	t.Run("handler hangs", func(t *testing.T) {
		t.Parallel()
		b, _ := newBackend(t, process.Options{Workers: 1, CancelGrace: 100 * time.Millisecond})
		f := newFIFO(t)
		ctx, cancel := context.WithCancel(context.Background())
		res := goInvoke(ctx, b, "hang:"+f.path)
		pid := f.next(t)
		cancel()
		r := <-res
		if !errors.Is(r.err, context.Canceled) || !strings.Contains(r.err.Error(), "killed") {
			t.Fatalf("cancelled hanging invocation: %+v, want context.Canceled, worker killed", r)
		}
		if next := invoke(t, b, "pid"); next == strconv.Itoa(pid) {
			t.Errorf("hanging worker %d still serves", pid)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		t.Parallel()
		// (The error is checked by backendtest's Contract group; here, that
		// it comes before a worker is started.) A worker cannot even start:
		// the invocation must end first.
		b, _ := newBackend(t, process.Options{Workers: 1, Command: []string{"/nonexistent/worker"}})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := b.Invoke(ctx, []byte("pid")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Invoke with a cancelled ctx: %v, want context.Canceled", err)
		}
	})
}

func TestStartFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts process.Options
		want []string
	}{
		{"exits before serving", process.Options{Env: []string{"PROCESS_TEST_MODE=no-serve"}},
			[]string{"exited before serving", "exit status 3", "fanout.Init()", "test worker: not serving"}},
		{"not a gowren program", process.Options{Command: []string{"true"}},
			[]string{"exited before serving", "exit status 0", "fanout.Init()"}},
		// The worker must print before StartTimeout ends for its line to be
		// in the error: a race-built test binary loaded by other tests can
		// take more than 200ms to get there, hence 3s.
		{"stalls", process.Options{Env: []string{"PROCESS_TEST_MODE=stall"}, StartTimeout: 3 * time.Second},
			[]string{"not ready within StartTimeout (3s)", "fanout.Init()", "test worker: stalling"}},
		{"missing command", process.Options{Command: []string{"/nonexistent/worker"}},
			[]string{"start worker 1", "/nonexistent/worker"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.opts.Workers = 1
			b, _ := newBackend(t, tt.opts)
			_, err := b.Invoke(context.Background(), []byte("pid"))
			t.Logf("error: %v", err)
			if err == nil || backends.Retryable(err) {
				t.Fatalf("Invoke = %v, want a start error that is not retryable", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestPayloadTooLarge(t *testing.T) {
	t.Parallel()
	t.Run("request", func(t *testing.T) {
		t.Parallel()
		// (The error is checked by backendtest's Contract group; here, that
		// the payload is refused unsent, and the limit's exact size sent.)
		// A worker cannot even start: the payload must be refused first.
		b, _ := newBackend(t, process.Options{MaxRequestBytes: 100, Command: []string{"/nonexistent/worker"}})
		_, err := b.Invoke(context.Background(), make([]byte, 101))
		if !errors.Is(err, backends.ErrPayloadTooLarge) || backends.Retryable(err) {
			t.Fatalf("Invoke(101 bytes) = %v, want ErrPayloadTooLarge", err)
		}
		if _, err := b.Invoke(context.Background(), make([]byte, 100)); errors.Is(err, backends.ErrPayloadTooLarge) {
			t.Fatalf("Invoke(100 bytes) = %v, want it sent", err)
		}
	})
	t.Run("reply", func(t *testing.T) {
		t.Parallel()
		b, _ := newBackend(t, process.Options{Workers: 1, MaxResponseBytes: 1000})
		pid := invoke(t, b, "pid")
		if got := invoke(t, b, "big:1000"); len(got) != 1000 {
			t.Errorf("reply of 1000 bytes: got %d", len(got))
		}
		_, err := b.Invoke(context.Background(), []byte("big:1001"))
		if !errors.Is(err, backends.ErrPayloadTooLarge) || !strings.Contains(err.Error(), "1001") {
			t.Fatalf("reply of 1001 bytes: %v, want ErrPayloadTooLarge", err)
		}
		if next := invoke(t, b, "pid"); next != pid {
			t.Errorf("worker %s replaced by %s after refusing a large reply", pid, next)
		}
	})
}

func TestClose(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, process.Options{Workers: 3, CancelGrace: 100 * time.Millisecond})
	f := newFIFO(t)
	idle := invoke(t, b, "pid")
	hold := goInvoke(context.Background(), b, "hold:"+f.path)
	hang := goInvoke(context.Background(), b, "hang:"+f.path)
	f.next(t)
	f.next(t)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for name, c := range map[string]<-chan result{"hold": hold, "hang": hang} {
		if r := <-c; !errors.Is(r.err, backends.ErrClosed) {
			t.Errorf("%s in flight during Close: %+v, want ErrClosed", name, r)
		}
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	pid, _ := strconv.Atoi(idle)
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("idle worker %d after Close: kill(0) = %v, want ESRCH", pid, err)
	}
}

func TestConcurrentClose(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, process.Options{Workers: 2})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				_, err := b.Invoke(context.Background(), []byte("echo:x"))
				if errors.Is(err, backends.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Invoke during Close: %v", err)
					return
				}
			}
		})
	}
	invoke(t, b, "echo:started")
	var closers sync.WaitGroup
	for range 3 {
		closers.Go(func() { b.Close() })
	}
	closers.Wait()
	wg.Wait()
}

// TestDriverDeath checks that a worker exits when its driver dies: a driver
// subprocess starts a worker that keeps a FIFO open, and is then killed; the
// FIFO reaches its end when the worker is gone.
func TestDriverDeath(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	driver := exec.Command(exe)
	driver.Env = append(os.Environ(), "PROCESS_TEST_MODE=driver", "PROCESS_TEST_FIFO="+path)
	stdin, err := driver.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var driverOut syncBuffer
	driver.Stderr = &driverOut
	if err := driver.Start(); err != nil {
		t.Fatal(err)
	}
	defer driver.Wait()
	defer driver.Process.Kill()

	// Blocks until the worker opens the FIFO to write.
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_ = f.SetReadDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(f)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the worker's pid: %v (driver: %s)", err, driverOut.String())
	}
	workerPID, _ := strconv.Atoi(strings.TrimSpace(line))
	stdin.Write([]byte{1}) // the driver kills itself
	if err := driver.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("driver: %v, want killed (output: %s)", err, driverOut.String())
	}
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Fatalf("waiting for worker %d to exit: %q, %v", workerPID, rest, err)
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url     string
		workers int    // when it opens
		err     string // otherwise, in the error
	}{
		{url: "process://", workers: runtime.GOMAXPROCS(0)},
		{url: "process:///", workers: runtime.GOMAXPROCS(0)},
		{url: "process://?workers=3", workers: 3},
		{url: "process://?workers=0", err: "workers=0"},
		{url: "process://?workers=-2", err: "workers=-2"},
		{url: "process://?workers=many", err: "workers=many"},
		{url: "process://?workers=2&workers=3", err: "workers given 2 times"},
		{url: "process://?worker=3", err: `unknown parameter "worker"`},
		{url: "process://?workers=2&timeout=1s", err: `unknown parameter "timeout"`},
		{url: "process://?workers=%zz", err: "invalid URL escape"},
		{url: "process://host?workers=3", err: "takes no host or path"},
		{url: "process:///path", err: "takes no host or path"},
		{url: "process:opaque", err: "takes no host or path"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			b, err := backends.Open(context.Background(), tt.url)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Open(%q) = %v, want an error with %q", tt.url, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%q): %v", tt.url, err)
			}
			defer b.Close()
			if got := b.Limits().Concurrency; got != tt.workers {
				t.Errorf("Open(%q): Concurrency %d, want %d", tt.url, got, tt.workers)
			}
		})
	}
}
