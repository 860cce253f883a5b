package fanout

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/storage"
)

// Sentinel errors; test for them with errors.Is.
var (
	// ErrUnknownFunction means a worker has no function under the name the
	// driver sent: the worker binary is not the driver's program, or was
	// built before the function was added. Redeploy it.
	ErrUnknownFunction = errors.New("fanout: unknown function")
	// ErrStaleWorker means a worker has a function of that name with
	// other input or output types than the driver's: the deployed binary
	// is older (or newer) than the driver. Redeploy it.
	ErrStaleWorker = errors.New("fanout: stale worker")
	// ErrPayloadTooLarge means an input or output exceeded what the
	// backend and the store accept. It is the same value as
	// backends.ErrPayloadTooLarge.
	ErrPayloadTooLarge = backends.ErrPayloadTooLarge
	// ErrClosed means the Executor was closed before or during the call.
	ErrClosed = errors.New("fanout: executor closed")
	// ErrPanic is wrapped by the TaskError of a task that panicked.
	ErrPanic = errors.New("fanout: task panicked")
	// ErrTaskTimeout is wrapped by the TaskError of a task that overran
	// Options.TaskTimeout or the platform's deadline. Such an error also
	// satisfies errors.Is(err, context.DeadlineExceeded).
	ErrTaskTimeout = errors.New("fanout: task timed out")
	// ErrMalformed means a worker received a payload that is not a valid
	// envelope; ReplyError reports it.
	ErrMalformed = errors.New("fanout: malformed payload")
	// ErrNoStore means the job needed a store (an input or output too large
	// to travel inline) and the Executor has none.
	ErrNoStore = errors.New("fanout: no store")
	// ErrDecodeLimit is wrapped by the error of an input or output refused
	// because decoding it would allocate more than 16 times its encoded
	// size (plus 64 KiB): 32 KiB of nils for a []T whose T holds a
	// [4096]byte would otherwise ask for 384 MiB. The TaskError of such a
	// task is not retried. See "Decoded size" in docs/design.md.
	ErrDecodeLimit = errors.New("fanout: decoded size over the limit")
)

// TaskError is the failure of one task: the error its function returned, a
// panic, a timeout, or an infrastructure failure that outlasted the retries.
// Type, Message and Stack describe the remote error as the worker saw it; Err
// is the classified cause (ErrPanic, ErrTaskTimeout, ErrStaleWorker,
// backends.ErrWorkerLost, context.Canceled, ...) for errors.Is, or nil for an
// error the function returned.
type TaskError struct {
	// Index is the position of the task's input in the job.
	Index int
	// Attempts is how many times the task was sent to a worker.
	Attempts int
	// Type is the Go type of the remote error ("*fs.PathError") or of the
	// value passed to panic.
	Type string
	// Message is the remote error's text or the panic value.
	Message string
	// Stack is the goroutine stack of a panic, empty otherwise.
	Stack string
	// Retryable reports that the function marked the error with Retryable.
	Retryable bool
	// Err is the classified cause, or nil for an error the function returned.
	Err error
	// Logs are the records the task wrote through Logger(ctx) in its last
	// attempt, and the lines it printed where the backend captures them
	// (see LogRecord), if any reached the driver.
	Logs []LogRecord
	// History says why each attempt failed, oldest first ("attempt 1:
	// worker lost ..."), up to 16 entries.
	History []string

	fromJob bool // the job's own error (cancel, abort), not the task's
}

func (e *TaskError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "task %d", e.Index)
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (%d attempts)", e.Attempts)
	}
	b.WriteString(": ")
	switch {
	case errors.Is(e.Err, ErrPanic):
		b.WriteString("panic: ")
		b.WriteString(e.Message)
		if fn, at := panicSite(e.Stack); at != "" {
			fmt.Fprintf(&b, " (in %s at %s)", fn, at)
		}
	case e.Message != "":
		b.WriteString(e.Message)
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString("failed")
	}
	return b.String()
}

// Unwrap returns the classified cause.
func (e *TaskError) Unwrap() error { return e.Err }

// panicSite finds, in a panic's stack as the worker sent it, the frame that
// panicked: the first below the panic call that is neither the Go runtime
// nor this package. It returns its function and file:line, or "" when the
// stack has no such frame.
func panicSite(stack string) (fn, at string) {
	lines := strings.Split(stack, "\n")
	// A frame is a function line followed by a tab-indented file:line.
	from := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "panic(") {
			from = i + 2
			break
		}
	}
	if from == 0 {
		return "", ""
	}
	for i := from; i+1 < len(lines); i++ {
		f := lines[i]
		if f == "" || strings.HasPrefix(f, "\t") || !strings.HasPrefix(lines[i+1], "\t") {
			continue
		}
		if strings.HasPrefix(f, "runtime.") || strings.HasPrefix(f, "panic(") || strings.HasPrefix(f, thisPackage+".") {
			continue
		}
		if k := strings.LastIndexByte(f, '('); k > 0 {
			f = f[:k]
		}
		loc := strings.TrimSpace(lines[i+1])
		if k := strings.LastIndex(loc, " +0x"); k > 0 {
			loc = loc[:k]
		}
		return f, loc
	}
	return "", ""
}

// thisPackage is this package's import path, as stacks name its functions.
const thisPackage = "github.com/gowren/gowren/fanout"

// JobError is the error of a job some of whose tasks failed, as Map, Wait and
// MapReduce return it. Its message counts the failed tasks, names the first
// of them and gives the first one's error:
//
//	3 of 200 tasks failed: 7, 19, 154; first: task 7: panic: assignment to entry in nil map (in main.work at /src/app/main.go:42)
//
// It unwraps to the job's own error, if any, and to every task's
// *TaskError, so errors.Is and errors.As see them all, as they would in
// errors.Join. FailedTasks lists the failed indices.
type JobError struct {
	// Job is the job's ID; Tasks its number of tasks.
	Job   string
	Tasks int
	// Failed holds one error per failed task, in input order.
	Failed []*TaskError
	// Err is the job's own error (a cancellation, a deadline, a worker
	// that cannot serve the job), or nil when the job ran to its end.
	Err error
}

// maxNamed bounds the task indices a JobError's message names.
const maxNamed = 10

// writeIndices writes the first maxNamed of n task indices, index(k) the
// k-th, as "7, 19, 154" and then " and 4 more" for the rest.
func writeIndices(b *strings.Builder, n int, index func(k int) int) {
	for k := range min(n, maxNamed) {
		if k > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(index(k)))
	}
	if n > maxNamed {
		fmt.Fprintf(b, " and %d more", n-maxNamed)
	}
}

func (e *JobError) Error() string {
	var b strings.Builder
	if e.Err != nil {
		b.WriteString(e.Err.Error())
		b.WriteString("; ")
	}
	if len(e.Failed) == 1 && e.Tasks == 1 {
		fmt.Fprintf(&b, "the task failed: %v", e.Failed[0])
		return b.String()
	}
	fmt.Fprintf(&b, "%d of %d tasks failed: ", len(e.Failed), e.Tasks)
	writeIndices(&b, len(e.Failed), func(k int) int { return e.Failed[k].Index })
	if len(e.Failed) > 0 {
		fmt.Fprintf(&b, "; first: %v", e.Failed[0])
	}
	return b.String()
}

// Unwrap returns the job's error, if any, and every task's error.
func (e *JobError) Unwrap() []error {
	errs := make([]error, 0, len(e.Failed)+1)
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	for _, te := range e.Failed {
		errs = append(errs, te)
	}
	return errs
}

// FailedTasks returns the input indices of the tasks that failed, in order,
// from an error of Map, Wait or MapReduce (a *JobError, or any error
// wrapping *TaskErrors); nil when err names none.
func FailedTasks(err error) []int {
	var je *JobError
	if errors.As(err, &je) {
		idx := make([]int, len(je.Failed))
		for k, te := range je.Failed {
			idx[k] = te.Index
		}
		return idx
	}
	var idx []int
	var walk func(error)
	walk = func(err error) {
		switch x := err.(type) {
		case nil:
		case *TaskError:
			idx = append(idx, x.Index)
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	slices.Sort(idx)
	return slices.Compact(idx)
}

// retryableError marks an error as worth retrying; see Retryable.
type retryableError struct{ err error }

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// Retryable marks err, returned by a registered function, as transient: the
// executor sends the task again (up to Options.Retries times) instead of
// failing it. Use it for errors such as a rate-limited downstream API. It
// returns nil for a nil err.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryableError{err: err}
}

// maxStack bounds the stack trace sent back for one panic.
const maxStack = 32 << 10

func panicError(p any) *wireError {
	stack := debug.Stack()
	if len(stack) > maxStack {
		stack = append(stack[:maxStack:maxStack], "\n... (truncated)"...)
	}
	return &wireError{Code: codePanic, Type: fmt.Sprintf("%T", p), Message: fmt.Sprint(p), Stack: string(stack)}
}

func appError(ctx context.Context, err error) *wireError {
	var re *retryableError
	retry := errors.As(err, &re)
	typ := err
	if retry && re.err != nil {
		typ = re.err
	}
	we := &wireError{Code: codeApp, Type: fmt.Sprintf("%T", typ), Message: err.Error(), Retryable: retry}
	// A function that gives up because its context ended reports the
	// cause, so the driver can classify it.
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		if errors.Is(err, context.DeadlineExceeded) {
			we.Code = codeTimeout
		} else {
			we.Code = codeCanceled
		}
	}
	return we
}

// remoteError turns a wireError from a worker into the error the driver
// reports, classified for errors.Is.
func remoteError(index, attempts int, we *wireError) *TaskError {
	te := &TaskError{Index: index, Attempts: attempts, Type: we.Type, Message: we.Message, Stack: we.Stack, Retryable: we.Retryable}
	switch we.Code {
	case codePanic:
		te.Err = ErrPanic
	case codeTimeout, codeDeadline:
		te.Err = errTimeout
	case codeCanceled, codeUnstarted:
		te.Err = context.Canceled
	case codeTooLarge:
		te.Err = ErrPayloadTooLarge
	case codeUnknown:
		te.Err = ErrUnknownFunction
	case codeStale:
		te.Err = ErrStaleWorker
	case codeMalformed, codeVersion:
		te.Err = ErrMalformed
	case codeGone:
		te.Err = storage.ErrNotFound
	case codeDecodeLimit:
		te.Err = ErrDecodeLimit
	}
	return te
}

var errTimeout = fmt.Errorf("%w: %w", ErrTaskTimeout, context.DeadlineExceeded)

// ReplyError decodes a worker reply and returns the error it carries for the
// invocation as a whole (a malformed payload, an unknown function, a stale
// worker), or nil when the invocation was accepted. A reply that cannot be
// decoded is itself an error. It is meant for backend authors and their
// tests; the executor uses the same logic internally.
func ReplyError(reply []byte) error {
	r, err := decodeReply(reply)
	if err != nil {
		return fmt.Errorf("%w: reply: %v", ErrMalformed, err)
	}
	return invocationError(r.Err)
}

// failsEveryInvocation reports whether a worker's invocation-level error
// would fail every invocation of the job the same way: an unknown function,
// a stale worker, a malformed request, a refused store. (A store refused
// never reaches an asynchronous job's replies: the worker writes nothing.)
func failsEveryInvocation(err error) bool {
	return errors.Is(err, ErrUnknownFunction) || errors.Is(err, ErrStaleWorker) || errors.Is(err, ErrMalformed) ||
		errors.Is(err, ErrStoreRefused) || errors.Is(err, errNoInvoker)
}

// errNoInvoker: an invoker's worker cannot invoke its children. Every
// invoker of the job would answer the same.
var errNoInvoker = errors.New("fanout: Options.Tree: an invoker cannot invoke")

// invocationError classifies an invocation-level wireError.
func invocationError(we *wireError) error {
	if we == nil {
		return nil
	}
	switch we.Code {
	case codeUnknown:
		return fmt.Errorf("%w: %s", ErrUnknownFunction, we.Message)
	case codeStale:
		return fmt.Errorf("%w: %s", ErrStaleWorker, we.Message)
	case codeMalformed, codeVersion:
		return fmt.Errorf("%w: %s", ErrMalformed, we.Message)
	case codeStoreRefused:
		return fmt.Errorf("%w: %s", ErrStoreRefused, we.Message)
	case codeNoInvoker:
		return fmt.Errorf("%w: %s", errNoInvoker, we.Message)
	case codeChild:
		return kidError(we)
	default:
		return fmt.Errorf("fanout: worker failed the invocation (%s): %s", we.Code, we.Message)
	}
}
