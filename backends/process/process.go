// Package process is a gowren backend whose workers are subprocesses of the
// driver's own binary, each serving one invocation at a time like a cloud
// function's container. It runs a program's real worker path on one machine:
// payloads are serialized, limits are enforced, and a task that crashes its
// worker process loses the worker, not the driver.
//
// Import it (a blank import is enough) to register the URL scheme and the
// worker runtime:
//
//	process://?workers=N
//
// # Workers
//
// Workers start on demand, up to Options.Workers, and are reused, except
// one whose handler gave up on a task that is still running (fanout.Handle
// abandons a task that ignores its cancellation, see backends.Abandoned):
// it is stopped once its invocation ends, however it ended. A worker is
// this binary started again with the environment variable
// GOWREN_PROCESS_WORKER set, so main must call fanout.Init before anything
// else: in a worker, Init serves invocations and never returns. Driver and
// worker exchange length-prefixed frames over two extra pipes (the worker's
// fds 3 and 4), never over stdout or stderr, so a task may print freely. A
// worker whose driver dies sees its request pipe close and exits.
//
// Each worker leads a process group of its own, so a Ctrl-C on the terminal
// reaches the driver only, which then stops its workers; killing a worker
// kills what its tasks started too. A handler's context carries the deadline
// of Invoke's ctx. Workers built with -race sleep a second when they exit
// (the race detector's atexit_sleep_ms); tests can add
// "GORACE=atexit_sleep_ms=0" to Options.Env to make Close faster.
//
// # Output
//
// On Linux, each line a worker writes to its stdout or stderr goes to Options.Stderr
// prefixed with "[worker N task I] ", naming the task that was running in
// the worker when the line was written, or "[worker N] " when none was (the
// worker starting, a goroutine left behind by an earlier task). The line
// also joins that task's log records (a fanout.LogRecord with the
// attribute stream=stdout or stream=stderr; fanout.Handle tells the worker
// when each task starts and ends), so it travels with the task's result, is
// saved in stats.json with fanout.Options.KeepData and is printed by
// "gowren logs".
//
// Attribution rule: a line belongs to the tasks running in the worker
// process while it was written. A worker runs one batch's tasks one after
// another, so that is one task, exactly; should several run at once (a task
// abandoned for overrunning its timeout still running beside the next), the
// line goes to each of them, prefixed "[worker N tasks 3,4] " and recorded
// with tasks=3,4. When a task starts or ends, a line still unfinished (no
// newline yet) is ended there. Programs a task starts inherit the task's
// stdout and stderr, so their lines count as the task's while it runs. One
// exception saves a system call per task: a line that something else (a
// goroutine left running) writes between two tasks of a batch may count as
// the next task's.
//
// How: the worker puts the write ends of two pipes from the driver in
// place of its fds 1 and 2 and reads them itself, so it knows which tasks
// run when it reads a line; a task's end, and its start unless another
// task of the batch just ended, first drain the pipes (one poll(2) when
// nothing is waiting). The worker peeks at what a pipe holds (tee(2)),
// forwards it to the driver and only then takes it out of the pipe, and the
// driver reads what a worker left in the pipes once it has exited: what a
// task printed right before os.Exit, log.Fatal, a crash or a SIGKILL still
// reaches Options.Stderr and the error's last lines, named after the task
// that was running (a chunk forwarded just before the end may appear
// twice). A task's printed lines are bounded like its log records: 256
// lines or 64 KiB, each line kept up to 4 KiB (Options.Stderr gets them
// whole, cut every 64 KiB).
//
// Elsewhere than on Linux, the driver reads the workers' stdout and stderr
// itself: lines are prefixed "[worker N] " and do not join the tasks' logs.
//
// # Streaming
//
// A Backend is a backends.StreamBackend: InvokeStream passes to its part
// function each part the worker's handler sends with backends.SendPart
// (fanout.Handle sends each task's result as it finishes), as it arrives,
// ahead of the reply. Only an invocation made with InvokeStream gives its
// handler a part sender; under Invoke, backends.CanSendParts is false in
// the worker. A part, like a reply, is at most MaxResponseBytes.
//
// # Invoker trees
//
// Workers can invoke the backend themselves (Limits.Nested), as the
// invokers of an invoker tree do (fanout.Options.Tree): a worker cannot
// start processes of its own, so the handler's context carries a small
// backends.Backend (backends.InvokerOf) whose Invoke is a reverse call. The
// worker sends the payload to the driver over its pipe, the driver runs it
// like any Invoke, on its pool or through the backend that the invoking
// call's context names with backends.WithInvoker (a wrapper such as chaos),
// and sends the reply back. Reverse calls run concurrently, as many as the
// handler makes; each waits for a free worker like any invocation, and the
// invoker's worker keeps its own meanwhile: with Options.Workers invokers all
// waiting for children, none runs until their contexts end. The invoker
// reports the pool's Limits and is not a StreamBackend or AsyncBackend; its
// Close does nothing.
//
// A reverse call carries its context's deadline. When that context ends,
// the driver cancels the call (its worker gets a cancel, as under Invoke) and
// the invoker returns at once. A call belongs to the worker process, not to
// the invocation: a handler may start children in goroutines and return, as
// an invoker does on this machine, and their calls go on, while the worker
// is idle or serves its next invocation. The calls of a worker that dies are
// cancelled; when the driver stops a worker (Close), the calls it still
// waits for fail with an error wrapping backends.ErrClosed. The driver's
// errors keep their kind in the worker: errors.Is finds
// backends.ErrThrottled (with its RetryAfter), ErrWorkerLost, ErrTransport,
// ErrPayloadTooLarge, ErrClosed and the context's errors in the error the
// invoker returns.
//
// # Errors
//
// Invoke wraps backends.ErrWorkerLost when a worker dies during an
// invocation (the error names the worker, its pid, its exit status and its
// last stderr lines), backends.ErrPayloadTooLarge for a payload or reply over
// the limits, backends.ErrClosed after Close, and ctx.Err() when ctx ends
// first. A worker that exits before it serves, or does not say hello within
// Options.StartTimeout, gives an error that is not retryable: retrying would
// not help a binary that does not call fanout.Init.
package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gowren/gowren/backends"
)

const (
	// defaultMaxBytes is AWS Lambda's limit on a synchronous invocation's
	// request and response.
	defaultMaxBytes     = 6 << 20
	defaultStartTimeout = 10 * time.Second
	defaultCancelGrace  = 2 * time.Second
	// waitDelay bounds how long a dead worker's stdout and stderr are read
	// when a program it started keeps them open.
	waitDelay = time.Second
	// maxAttempts bounds how often Invoke picks another worker when the
	// chosen one turns out dead before it got the payload.
	maxAttempts = 3
)

// Options configure a Backend. The zero value, like a nil *Options, means
// defaults everywhere.
type Options struct {
	// Workers is the most worker processes that run at once, which is also
	// the most invocations in flight; further Invoke calls wait for a free
	// worker. Defaults to runtime.GOMAXPROCS(0).
	Workers int
	// Command is the path and arguments of the worker program, which must
	// call fanout.Init first thing and link this package. Defaults to this
	// program's own executable with no arguments (on Linux /proc/self/exe,
	// so that workers run the very binary of the driver even if its file
	// was rebuilt since; elsewhere os.Executable()).
	Command []string
	// Env holds extra "KEY=value" entries for the workers' environment,
	// which is otherwise the driver's at the time each worker starts.
	// Defaults to none.
	Env []string
	// Stderr receives the workers' stdout and stderr, line by line, each
	// line prefixed with "[worker N task I] " (see Output) or "[worker N] "
	// and lines longer than 64 KiB cut. Writes are serialized and their
	// errors ignored; a Writer that blocks stalls the workers that print.
	// Defaults to os.Stderr.
	Stderr io.Writer
	// StartTimeout is how long a new worker may take from its start until
	// it is ready to serve. Defaults to 10s.
	StartTimeout time.Duration
	// CancelGrace is how long a worker may take to answer once its
	// invocation is cancelled, or to exit once the backend is closed,
	// before it is killed. Defaults to 2s.
	CancelGrace time.Duration
	// MaxRequestBytes is the largest payload Invoke sends. Defaults to
	// 6 MiB, the limit of AWS Lambda's synchronous invocations, so that a
	// program meets cloud limits locally first. At most 1 GiB.
	MaxRequestBytes int
	// MaxResponseBytes is the largest reply a worker sends back. Defaults
	// to 6 MiB, like MaxRequestBytes. At most 1 GiB.
	MaxResponseBytes int
}

// Backend runs invocations on worker subprocesses. It is safe for concurrent
// use.
type Backend struct {
	workers      int
	command      []string // nil: this program
	env          []string
	out          *output
	startTimeout time.Duration
	grace        time.Duration
	maxRequest   int
	maxResponse  int

	slots   chan struct{} // one token per invocation in flight
	closing chan struct{} // closed by Close

	mu      sync.Mutex
	closed  bool
	idle    []*worker // used last at the end
	all     map[*worker]struct{}
	started int // workers started so far; names the next one

	reapers   sync.WaitGroup // one goroutine per worker process
	readers   sync.WaitGroup // one goroutine per worker that said hello
	calls     sync.WaitGroup // one goroutine per reverse call in flight
	closeOnce sync.Once
}

var _ backends.StreamBackend = (*Backend)(nil)

// New returns a Backend configured by opts; nil opts means defaults. It starts
// no process: workers start on demand.
func New(opts *Options) *Backend {
	var o Options
	if opts != nil {
		o = *opts
	}
	b := &Backend{
		workers:      o.Workers,
		command:      slices.Clone(o.Command),
		env:          slices.Clone(o.Env),
		out:          &output{w: o.Stderr},
		startTimeout: o.StartTimeout,
		grace:        o.CancelGrace,
		maxRequest:   limit(o.MaxRequestBytes),
		maxResponse:  limit(o.MaxResponseBytes),
		closing:      make(chan struct{}),
		all:          make(map[*worker]struct{}),
	}
	if b.workers <= 0 {
		b.workers = runtime.GOMAXPROCS(0)
	}
	if len(b.command) == 0 {
		b.command = nil
	}
	if b.out.w == nil {
		b.out.w = os.Stderr
	}
	if b.startTimeout <= 0 {
		b.startTimeout = defaultStartTimeout
	}
	if b.grace <= 0 {
		b.grace = defaultCancelGrace
	}
	b.slots = make(chan struct{}, b.workers)
	return b
}

func limit(n int) int {
	if n <= 0 {
		return defaultMaxBytes
	}
	return min(n, maxLimit)
}

// Limits reports the configured worker count and payload limits. Workers run
// on this host but not in this process, run one batch's tasks one after
// another, and can invoke the backend (Nested; see Invoker trees in the
// package doc).
func (b *Backend) Limits() backends.Limits {
	return backends.Limits{
		MaxRequestBytes:  b.maxRequest,
		MaxResponseBytes: b.maxResponse,
		Concurrency:      b.workers,
		Parallel:         1,
		SameHost:         true,
		Nested:           true,
	}
}

// Invoke sends payload to a free worker, starting one if none is idle and
// fewer than Options.Workers run, and returns its reply. It waits for a free
// worker while all are busy. The worker's handler gets a context with ctx's
// deadline.
//
// When ctx ends before the reply is read, Invoke returns an error satisfying
// errors.Is(err, ctx.Err()); a running invocation gets a cancel (its
// handler's context is cancelled) and its worker is killed unless it answers
// within Options.CancelGrace. A payload over MaxRequestBytes is refused
// unsent, and a reply over MaxResponseBytes is not sent back, both with an
// error wrapping backends.ErrPayloadTooLarge. A worker that dies during the
// invocation gives an error wrapping backends.ErrWorkerLost and is replaced
// on demand. An invocation in flight when Close is called fails with
// backends.ErrClosed.
func (b *Backend) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	return b.invoke(ctx, payload, nil)
}

// InvokeStream is Invoke, and calls part with each part the worker's
// handler sends with backends.SendPart, in order, before it returns (see
// backends.StreamBackend). part is called from InvokeStream's goroutine, as
// the parts arrive, so a slow part slows the worker down; it must not keep
// the slice. A part may be at most MaxResponseBytes: the handler's SendPart
// refuses a larger one with an error wrapping backends.ErrPayloadTooLarge.
// SendPart also fails once the handler has returned.
//
// When ctx ends, the worker's handler is cancelled; parts it still sends
// are passed to part and so is its reply, if it arrives within
// Options.CancelGrace; then InvokeStream returns an error satisfying
// errors.Is(err, ctx.Err()). A nil part makes InvokeStream Invoke.
func (b *Backend) InvokeStream(ctx context.Context, payload []byte, part func([]byte)) ([]byte, error) {
	return b.invoke(ctx, payload, part)
}

// invoke is Invoke, or InvokeStream when part is not nil.
func (b *Backend) invoke(ctx context.Context, payload []byte, part func([]byte)) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("process: invoke: %w", err)
	}
	if b.isClosed() {
		return nil, fmt.Errorf("process: invoke: %w", backends.ErrClosed)
	}
	if len(payload) > b.maxRequest {
		return nil, fmt.Errorf("process: invoke: payload of %d bytes exceeds MaxRequestBytes (%d): %w",
			len(payload), b.maxRequest, backends.ErrPayloadTooLarge)
	}
	select {
	case b.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("process: invoke: waiting for a worker: %w", ctx.Err())
	case <-b.closing:
		return nil, fmt.Errorf("process: invoke: %w", backends.ErrClosed)
	}
	defer func() { <-b.slots }()
	for attempt := 1; ; attempt++ {
		w, err := b.acquire(ctx)
		if err != nil {
			return nil, err
		}
		reply, keep, err := w.invoke(ctx, payload, part)
		if keep {
			b.release(w)
		} else {
			w.dispose()
		}
		if ctxErr := ctxDone(ctx); ctxErr != nil {
			// Even a reply that arrived as ctx ended: the worker saw the
			// same deadline, so it holds little more than ctx's error.
			// InvokeStream passes it on: it holds the results of the
			// tasks that finished.
			if part != nil && reply != nil {
				part(reply)
			}
			if err == nil || !errors.Is(err, ctxErr) {
				err = fmt.Errorf("process: invoke: %w", ctxErr)
			}
			return nil, err
		}
		if err == nil {
			return reply, nil
		}
		if b.isClosed() && !errors.Is(err, backends.ErrPayloadTooLarge) {
			return nil, fmt.Errorf("process: invoke: %w", backends.ErrClosed)
		}
		if errors.Is(err, errNotDelivered) && attempt < maxAttempts {
			continue // it never saw the payload: try another worker
		}
		return nil, err
	}
}

// ctxDone is ctx.Err(), except that it reports a passed deadline even before
// ctx's timer has fired: the worker, which got the same deadline, may have
// answered first.
func ctxDone(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

func (b *Backend) isClosed() bool {
	select {
	case <-b.closing:
		return true
	default:
		return false
	}
}

// acquire returns an idle worker, or starts one; the caller holds a slot, so
// fewer than b.workers are busy.
func (b *Backend) acquire(ctx context.Context) (*worker, error) {
	var dead []*worker
	defer func() {
		for _, w := range dead {
			w.dispose()
		}
	}()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, fmt.Errorf("process: invoke: %w", backends.ErrClosed)
	}
	for len(b.idle) > 0 {
		w := b.idle[len(b.idle)-1]
		b.idle[len(b.idle)-1] = nil
		b.idle = b.idle[:len(b.idle)-1]
		if w.hasExited() || w.isGone() {
			dead = append(dead, w) // died while idle; nothing was lost
			continue
		}
		b.mu.Unlock()
		return w, nil
	}
	// Starting under the lock lets Close know every process there is.
	w, err := b.startLocked()
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := w.handshake(ctx, b.startTimeout); err != nil {
		w.dispose()
		if ctxErr := ctx.Err(); ctxErr != nil {
			if !errors.Is(err, ctxErr) {
				err = fmt.Errorf("process: start worker %d: %w", w.id, ctxErr)
			}
			return nil, err
		}
		if b.isClosed() {
			return nil, fmt.Errorf("process: invoke: %w", backends.ErrClosed)
		}
		return nil, err
	}
	w.startReader()
	return w, nil
}

// release makes w idle again, or stops it if the backend is closed or the
// worker is no longer usable.
func (b *Backend) release(w *worker) {
	b.mu.Lock()
	if !b.closed && !w.isBroken() {
		b.idle = append(b.idle, w)
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	w.dispose()
}

// Close stops all workers: it closes their request pipes, which makes them
// exit, kills those still running after Options.CancelGrace, and waits for
// every process and goroutine of the backend. Invocations in flight fail with
// backends.ErrClosed; so do later ones. Close is idempotent, and a second
// call waits for the first.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		close(b.closing)
		idle := b.idle
		b.idle = nil
		all := make([]*worker, 0, len(b.all))
		for w := range b.all {
			all = append(all, w)
		}
		b.mu.Unlock()
		for _, w := range all {
			w.closeRequests()
		}
		t := time.NewTimer(b.grace)
		defer t.Stop()
		expired := false
		for _, w := range all {
			if !expired {
				select {
				case <-w.exited:
					continue
				case <-t.C:
					expired = true
				}
			}
			w.kill("still running CancelGrace after Close")
		}
		b.reapers.Wait()
		b.readers.Wait() // the processes are gone: the readers see the end of their pipes
		b.calls.Wait()   // which cancelled the calls
		for _, w := range idle {
			w.dispose() // all exited: this only closes files
		}
	})
	return nil
}

// open makes a Backend from a process:// URL.
func open(_ context.Context, u *url.URL) (backends.Backend, error) {
	if u.Opaque != "" || u.User != nil || u.Host != "" || (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return nil, fmt.Errorf("process: open %q: the URL takes no host or path: use process://?workers=N", u.Redacted())
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("process: open %q: %w", u.Redacted(), err)
	}
	var opts Options
	for _, k := range slices.Sorted(maps.Keys(q)) {
		v := q[k]
		switch k {
		case "workers":
			if len(v) != 1 {
				return nil, fmt.Errorf("process: open %q: workers given %d times", u.Redacted(), len(v))
			}
			n, err := strconv.Atoi(v[0])
			if err != nil || n < 1 {
				return nil, fmt.Errorf("process: open %q: workers=%s: want a positive integer", u.Redacted(), v[0])
			}
			opts.Workers = n
		default:
			return nil, fmt.Errorf("process: open %q: unknown parameter %q (known: workers)", u.Redacted(), k)
		}
	}
	return New(&opts), nil
}
