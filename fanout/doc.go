// Package fanout runs typed Go functions over many inputs on a backend of
// goroutines, worker processes or cloud functions, PyWren-style, and gathers
// the typed results in input order.
//
// The same binary is driver and worker. A function is registered by name at
// package level, so the worker has it too; only inputs travel, never code:
//
//	var Square = fanout.Register("square", func(ctx context.Context, x int) (int, error) {
//		return x * x, nil
//	})
//
//	func main() {
//		fanout.Init() // a worker serves here and never returns
//		ex, err := fanout.Open(ctx)
//		...
//		squares, err := fanout.Map(ctx, ex, Square, []int{1, 2, 3})
//	}
//
// # Running jobs
//
// Map runs a job and returns its outputs. Start returns a Job at once:
// Results yields outputs as they complete, Wait gathers them in order, Stats
// describes the job, Cancel stops it. MapReduce runs a reducer on the backend
// over all the map outputs, which it reads from the store itself. Put stores
// a large value once and returns a Ref that tasks resolve with Get, once per
// worker process.
//
// The executor batches tasks into invocations (Options.BatchSize, automatic
// by default), keeps inputs and outputs inline when they fit the backend's
// limits and sends the rest through the store (one aggregated object per job
// for inputs, read with ranged GETs), retries infrastructure failures with
// backoff and jitter, backs off when the platform throttles, and can send
// backup copies of stragglers (Options.Speculation).
//
// # Backends
//
// Open picks the backend from GOWREN_BACKEND: local:// (the default:
// goroutines, payloads still serialized), process:// (subprocesses of this
// binary), and, when their packages are imported, lambda:// (AWS Lambda) and
// scf:// (Tencent SCF). NewExecutor takes any backends.Backend, such as one
// wrapped by backends/chaos to inject faults.
//
// # Storage URLs
//
// GOWREN_STORE or Options.Store names the store: mem:// (the default for
// local), file:///dir (a temporary directory is the default for process),
// s3://bucket/prefix (storage/s3store; also MinIO, COS, R2). Cloud backends
// need one for payloads beyond their limits, for MapReduce and for async
// jobs.
//
// # In a task
//
// Task(ctx) describes the task (job, index, attempt, worker, deadline),
// Logger(ctx) is a slog.Logger whose records travel back with the result,
// and Store(ctx) is the job's store.
//
// # Async jobs
//
// With Options.Async each worker writes its reply to the store and the
// driver learns of completion by listing it; a manifest describes the job.
// If the driver dies, Attach in another driver finishes the job, and the
// gowren command's status shows how far it got.
//
// # Errors
//
// A failed task is a *TaskError with the remote error's type, message and
// stack (for panics), its attempts and why each failed; Map and Wait return
// the outputs they have plus a *JobError that counts the failed tasks, names
// them and gives the first one's error (a panic's with the function and line
// that panicked), and unwraps to every *TaskError; FailedTasks lists the
// failed indices, and JobStats.Summary describes the job as
// `gowren status` does.
// Problems of the whole job are reported once: ErrUnknownFunction and
// ErrStaleWorker (the worker is another build of the program: redeploy),
// ErrMalformed, ErrPayloadTooLarge, ErrNoStore, ErrClosed, a backend that
// refuses every call, and cancellation (errors.Is(err, context.Canceled)).
// An input or output whose decoding would allocate more than 16 times its
// encoded size (plus 64 KiB) fails its task with ErrDecodeLimit.
// Functions mark transient errors with Retryable.
//
// # Guarantees
//
// Every input gets exactly one result, in input order, counted once in the
// statistics, although a task may run more than once (retries, backups,
// duplicate deliveries): side effects of functions are at-least-once.
// Nothing from a payload is executed, and every payload is checked before
// anything is allocated: its structure, and what decoding it into the
// function's types would allocate (at most 16 times its size plus 64 KiB).
// Cancellation stops dispatch, cancels what is in flight and leaks no
// goroutine.
package fanout
