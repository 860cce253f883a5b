// Package backends is the contract between the gowren executor and the
// platforms that run its invocations, and the registry of both their driver
// sides (URL schemes) and worker sides (runtimes).
//
// A Backend carries opaque payloads: the executor encodes a batch of tasks,
// Invoke delivers it to a worker and returns the worker's reply. The worker
// side of every backend ends in one Handler (fanout.Handle), so a backend knows
// nothing about functions, types or tasks.
//
// # Backends
//
// Each backend lives in its own package and registers a URL scheme from init:
//
//	local://?concurrency=N          backends/local: goroutines in this process
//	process://?workers=N            backends/process: subprocesses of this binary
//	lambda://FUNCTION?region=...    backends/awslambda (separate package)
//	scf://FUNCTION?region=...       backends/tencentscf (separate package)
//
// # Worker runtimes
//
// The same binary is driver and worker. A backend package whose workers run
// this binary registers a Runtime from init; fanout.Init asks every registered
// runtime whether this process was started as its worker and, if one says
// yes, serves invocations through it and never returns. A runtime that can
// capture what its process prints offers an OutputCapture on each
// invocation's context, and fanout.Handle tells it when each task starts
// and ends (TaskStarted), so that every line reaches the task that wrote it.
//
// # Errors
//
// Invoke classifies failures with the sentinels below so that the executor can
// decide what to retry: ErrThrottled (wait, honouring RetryAfter, and retry),
// ErrWorkerLost and ErrTransport (retry; the tasks may or may not have run),
// ErrPayloadTooLarge (do not retry; send the data through the store). An error
// reply from the worker is not an Invoke error: it travels in the reply bytes.
package backends

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Backend runs invocations. Implementations are safe for concurrent use.
type Backend interface {
	// Invoke delivers payload to one worker and returns its reply. It
	// blocks until the reply arrives, the invocation fails, or ctx is done;
	// in the last case it returns an error satisfying errors.Is(err,
	// ctx.Err()) and stops the invocation where the platform allows.
	Invoke(ctx context.Context, payload []byte) ([]byte, error)
	// Limits describes what the backend accepts. It does not change while
	// the backend is open.
	Limits() Limits
	// Close stops the backend's workers and waits for its goroutines.
	// Invoke after Close returns ErrClosed.
	Close() error
}

// AsyncBackend is a Backend that can also start an invocation without waiting
// for it. The worker then writes its reply to the store named in the payload
// and the driver learns of completion by listing the store.
type AsyncBackend interface {
	Backend
	// InvokeAsync returns once the platform has accepted the invocation.
	InvokeAsync(ctx context.Context, payload []byte) error
}

// Group is a Backend made of members that an executor schedules apart: one
// job's invocations spread over several functions, regions or clouds, each
// member with its own window, ramp and throttle accounting, so that a
// member that throttles, fails or refuses for good never holds the others
// back (see backends/multi). Its own Invoke serves callers other than an
// executor.
type Group interface {
	Backend
	// Members returns the member backends, in a fixed order.
	Members() []Backend
}

// StreamBackend is a Backend whose workers can send parts of a reply ahead
// of it: a handler that runs a batch of tasks sends each task's result as it
// finishes (see SendPart), so the driver sees it before the batch ends.
// Backends on one machine (local, process) offer it; cloud platforms, which
// return one response per call, do not.
type StreamBackend interface {
	Backend
	// InvokeStream is Invoke, and calls part with each part the worker's
	// handler sent with SendPart, in the order sent, before it returns.
	// part is never called concurrently with itself nor after
	// InvokeStream returned; it may be called from another goroutine than
	// InvokeStream's, and must not keep the slice after it returns.
	//
	// When ctx ends, InvokeStream returns an error satisfying
	// errors.Is(err, ctx.Err()), as Invoke does; a reply the handler
	// still returned after the cancellation (it holds the results of the
	// tasks that finished) is passed to part first, when it arrives
	// within the time the backend gives a cancelled worker.
	InvokeStream(ctx context.Context, payload []byte, part func([]byte)) ([]byte, error)
}

// partSenderKey carries a worker runtime's part sender in a handler's
// context.
type partSenderKey struct{}

// WithPartSender returns ctx carrying send, through which a handler's
// SendPart calls reach the driver. A runtime that serves InvokeStream sets
// it on the context of each invocation it runs; send must be safe for
// concurrent use and report an error when the part could not be sent. A
// nil send takes the sender away: a handler that serves another invocation
// inside its own (an invoker of a tree running one of its children) does
// not stream that one's parts as its own.
func WithPartSender(ctx context.Context, send func([]byte) error) context.Context {
	return context.WithValue(ctx, partSenderKey{}, send)
}

// CanSendParts reports whether the invocation of ctx streams: whether
// SendPart can deliver parts ahead of the reply.
func CanSendParts(ctx context.Context) bool {
	send, ok := ctx.Value(partSenderKey{}).(func([]byte) error)
	return ok && send != nil
}

// SendPart sends data to the driver ahead of the reply of the invocation of
// ctx, when its backend streams (CanSendParts). It returns an error when it
// cannot: the invocation does not stream, or the part was not delivered
// (the caller then sends what it held with the reply). The handler must not
// call it after it returned its reply.
func SendPart(ctx context.Context, data []byte) error {
	send, ok := ctx.Value(partSenderKey{}).(func([]byte) error)
	if !ok || send == nil {
		return errNoStream
	}
	return send(data)
}

var errNoStream = errors.New("backends: the invocation does not stream parts")

// invokerKey carries, in a handler's context, the backend its worker may
// invoke other workers through.
type invokerKey struct{ b Backend }

// WithInvoker returns ctx carrying b: the backend through which the handler
// of the invocation of ctx invokes other workers of its own platform, as an
// invoker of an invoker tree starts its children (fanout.Options.Tree).
//
// A worker runtime whose workers can invoke (Limits.Nested) sets it on each
// invocation's context only when InvokerOf(ctx) is nil: a wrapper around
// the backend (chaos) sets itself first, so that children go through the
// outermost backend and its rules apply to them too. WithInvoker(ctx, nil)
// clears it; a driver clears it on the contexts of the calls it makes, so a
// job started from inside a task never reaches the task's own platform by
// mistake.
func WithInvoker(ctx context.Context, b Backend) context.Context {
	return context.WithValue(ctx, invokerKey{}, invokerKey{b})
}

// InvokerOf returns the backend WithInvoker set on ctx, nil if none.
func InvokerOf(ctx context.Context) Backend {
	k, _ := ctx.Value(invokerKey{}).(invokerKey)
	return k.b
}

// Limits describes a backend. Zero fields mean "no limit" or "no".
type Limits struct {
	// MaxRequestBytes is the largest payload Invoke accepts.
	MaxRequestBytes int
	// MaxResponseBytes is the largest reply a worker may send back.
	MaxResponseBytes int
	// MaxAsyncRequestBytes is the largest payload InvokeAsync accepts.
	MaxAsyncRequestBytes int
	// Concurrency is the number of invocations the backend runs at once;
	// further ones wait or are throttled. The executor uses it as its
	// default concurrency.
	Concurrency int
	// Timeout is the longest an invocation may run on the platform.
	Timeout time.Duration
	// Parallel is the number of tasks of one batch a worker runs at once;
	// 0 or 1 runs them one after another.
	Parallel int
	// MemoryMB is the memory of one worker, when the platform bills by it.
	MemoryMB int
	// Platform names the price list of the platform, for cost estimates:
	// PlatformLambdaARM64, PlatformLambdaX86 or PlatformSCF; "" when
	// unknown or when nothing bills the invocations (the executor then
	// estimates no cost unless fanout.Options.Prices is set).
	Platform string
	// InProcess reports that workers run inside the driver's process, so
	// they share its memory (and a mem:// store).
	InProcess bool
	// SameHost reports that workers run on the driver's machine, so they
	// share its file system (and a file:// store).
	SameHost bool
	// Nested reports that the backend's workers can invoke the backend
	// themselves, from inside the platform: its worker runtime gives each
	// invocation's context a Backend for that (see InvokerOf). An
	// executor's invoker tree (fanout.Options.Tree) needs it.
	Nested bool
}

// Platforms with a price list in the executor (see Limits.Platform).
const (
	PlatformLambdaARM64 = "aws-lambda-arm64"
	PlatformLambdaX86   = "aws-lambda-x86_64"
	PlatformSCF         = "tencent-scf"
)

// Errors that classify a failed invocation; test them with errors.Is.
var (
	// ErrThrottled means the platform refused the invocation for now; it
	// did not run. Retry after RetryAfter(err).
	ErrThrottled = errors.New("backends: throttled")
	// ErrWorkerLost means the worker died or vanished during the
	// invocation; its tasks may have run. Retrying is safe for the
	// executor (it keeps one result per task).
	ErrWorkerLost = errors.New("backends: worker lost")
	// ErrTransport means the request or reply was lost in transit; the
	// tasks may have run.
	ErrTransport = errors.New("backends: transport failure")
	// ErrPayloadTooLarge means a payload or reply exceeded a limit.
	ErrPayloadTooLarge = errors.New("payload too large")
	// ErrClosed means the backend was used after Close.
	ErrClosed = errors.New("backends: backend closed")
)

// ThrottleError is a throttling refusal with the platform's advice on when to
// retry. It satisfies errors.Is(err, ErrThrottled).
type ThrottleError struct {
	// RetryAfter is how long the platform asked to wait; 0 if it did not say.
	RetryAfter time.Duration
	// Reason is the platform's explanation, such as
	// "ReservedFunctionConcurrentInvocationLimitExceeded".
	Reason string
}

func (e *ThrottleError) Error() string {
	s := "backends: throttled"
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %v)", e.RetryAfter)
	}
	return s
}

// Is makes errors.Is(err, ErrThrottled) true.
func (e *ThrottleError) Is(target error) bool { return target == ErrThrottled }

// Retryable reports whether an Invoke error is worth retrying: throttling,
// lost workers and transport failures are; cancellation, closed backends,
// oversized payloads and anything unclassified are not.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	return errors.Is(err, ErrThrottled) || errors.Is(err, ErrWorkerLost) || errors.Is(err, ErrTransport)
}

// RetryAfter returns the wait a ThrottleError in err's chain asks for, or 0.
func RetryAfter(err error) time.Duration {
	var te *ThrottleError
	if errors.As(err, &te) {
		return te.RetryAfter
	}
	return 0
}

// Handler is the worker side of every backend: it takes an invocation payload
// and returns the reply. It never panics and never fails: errors travel inside
// the reply. fanout.Handle is the Handler of the default registry.
type Handler func(ctx context.Context, payload []byte) []byte

var (
	handlerMu      sync.RWMutex
	defaultHandler Handler
)

// SetDefaultHandler records the Handler that in-process backends call when
// their options name none. Package fanout calls it from init with
// fanout.Handle; a backend package never needs to.
func SetDefaultHandler(h Handler) {
	handlerMu.Lock()
	defer handlerMu.Unlock()
	defaultHandler = h
}

// DefaultHandler returns the Handler recorded by SetDefaultHandler, or nil.
func DefaultHandler() Handler {
	handlerMu.RLock()
	defer handlerMu.RUnlock()
	return defaultHandler
}

var abandoned atomic.Int64

// NoteAbandoned adjusts the number of tasks this worker process gave up on
// whose goroutines are still running: +1 when a task is abandoned (it
// overran its deadline ignoring its context, or its invocation ended while it
// ran), -1 when such a goroutine finally returns. fanout.Handle calls it.
func NoteAbandoned(delta int) { abandoned.Add(int64(delta)) }

// Abandoned returns the number of abandoned task goroutines still running in
// this process. A runtime that can replace its worker (process) retires one
// for which it is above zero after the current reply: such goroutines would
// take CPU and memory from every task that follows.
func Abandoned() int { return int(abandoned.Load()) }

// Runtime is the worker side of a backend whose workers run this binary.
type Runtime struct {
	// Name names the runtime in messages ("process", "awslambda").
	Name string
	// Detect reports whether this process was started as a worker of the
	// runtime (usually from environment variables the platform sets).
	Detect func() bool
	// Serve serves invocations with h until the platform ends the worker.
	// It returns only on a fatal error or when the platform says stop.
	Serve func(h Handler) error
	// Stores is the allow-list of stores the worker may open when the
	// environment sets none (fanout.EnvWorkerStores, same syntax): "s3"
	// for a cloud platform's workers. Empty allows every store, for
	// runtimes whose only caller is the driver that started them.
	Stores string
}

var (
	runtimesMu sync.RWMutex
	runtimes   []Runtime
)

// RegisterRuntime adds a worker runtime. It is meant to be called from a
// backend package's init function and panics on an incomplete Runtime.
func RegisterRuntime(r Runtime) {
	if r.Name == "" || r.Detect == nil || r.Serve == nil {
		panic("backends: RegisterRuntime with an incomplete Runtime")
	}
	runtimesMu.Lock()
	defer runtimesMu.Unlock()
	runtimes = append(runtimes, r)
}

// DetectRuntime returns the first registered runtime, in registration order,
// that recognises this process as its worker.
func DetectRuntime() (Runtime, bool) {
	runtimesMu.RLock()
	defer runtimesMu.RUnlock()
	for _, r := range runtimes {
		if r.Detect() {
			return r, true
		}
	}
	return Runtime{}, false
}

// Opener opens a backend from a parsed URL whose scheme was registered for it.
type Opener func(ctx context.Context, u *url.URL) (Backend, error)

var (
	openersMu sync.RWMutex
	openers   = map[string]Opener{}
)

// Register makes a backend available under a URL scheme (without "://"). It
// is meant to be called from a backend package's init function and panics
// when the scheme is empty, open is nil, or the scheme is taken.
func Register(scheme string, open Opener) {
	openersMu.Lock()
	defer openersMu.Unlock()
	if scheme == "" || open == nil {
		panic("backends: Register with an empty scheme or nil opener")
	}
	if _, dup := openers[scheme]; dup {
		panic(fmt.Sprintf("backends: Register called twice for scheme %q", scheme))
	}
	openers[scheme] = open
}

// Schemes returns the registered URL schemes, sorted.
func Schemes() []string {
	openersMu.RLock()
	defer openersMu.RUnlock()
	s := make([]string, 0, len(openers))
	for k := range openers {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// Open opens the backend named by rawURL with the opener registered for its
// scheme. An unknown scheme is an error that lists the known ones.
//
// A function named with its version or alias, as the clouds write it
// ("lambda://fn:prod"), is read as "lambda://fn?qualifier=prod".
func Open(ctx context.Context, rawURL string) (Backend, error) {
	u, err := ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("backends: open %q: %w", rawURL, err)
	}
	openersMu.RLock()
	open := openers[u.Scheme]
	openersMu.RUnlock()
	if open == nil {
		return nil, fmt.Errorf("backends: open %q: unknown scheme %q (registered: %s; import the backend package)",
			rawURL, u.Scheme, strings.Join(Schemes(), ", "))
	}
	return open(ctx, u)
}

// ParseURL parses a backend URL as url.Parse does, except that a host of the
// form NAME:QUALIFIER, where QUALIFIER is not a port number, is read as NAME
// with the query parameter qualifier=QUALIFIER: "lambda://fn:prod" is
// "lambda://fn?qualifier=prod".
func ParseURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err == nil {
		return u, nil
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, err
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	name, qualifier, ok := strings.Cut(rest[:end], ":")
	if !ok || name == "" || qualifier == "" || strings.ContainsAny(qualifier, ":@[]") {
		return nil, err
	}
	if _, perr := strconv.Atoi(qualifier); perr == nil {
		return nil, err // a real port number that failed for another reason
	}
	u, err2 := url.Parse(scheme + "://" + name + rest[end:])
	if err2 != nil {
		return nil, err
	}
	q := u.Query()
	if prev := q.Get("qualifier"); prev != "" && prev != qualifier {
		return nil, fmt.Errorf("qualifier %q in the name and %q in the query", qualifier, prev)
	}
	q.Set("qualifier", qualifier)
	u.RawQuery = q.Encode()
	return u, nil
}

// ReplyReserve is how much of the time left before an invocation's
// deadline a worker runtime keeps back for sending the reply: a tenth, at
// most 500 ms. A platform ends an invocation still running at its deadline
// and discards what it would have returned; with the reserve, tasks that
// honour their context end early enough for the reply, which reports them
// as timed out, to reach the driver.
func ReplyReserve(left time.Duration) time.Duration {
	if left <= 0 {
		return 0
	}
	return min(left/10, 500*time.Millisecond)
}

// WithReplyReserve returns ctx with its deadline, if it has one, brought
// ReplyReserve forward.
func WithReplyReserve(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, dl.Add(-ReplyReserve(time.Until(dl))))
}
