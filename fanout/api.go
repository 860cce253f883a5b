package fanout

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/vmihailenco/msgpack/v5"
)

// Map calls f on every input on the executor's backend and returns the
// outputs in input order. It blocks until every task has a result.
//
// When some tasks fail, Map returns every output it has (zero values at the
// failed positions) and a *JobError: "3 of 200 tasks failed: 7, 19, 154;
// first: ...", holding one *TaskError per failed task, in input order
// (errors.As finds them; FailedTasks lists their indices). When ctx is cancelled, Map stops sending tasks, cancels those
// in flight, and returns promptly with an error satisfying
// errors.Is(err, context.Canceled). An input that msgpack cannot encode, or
// that is too large for the backend and the store, fails Map before anything
// runs, with an error naming the input.
func Map[In, Out any](ctx context.Context, ex *Executor, f *Func[In, Out], inputs []In) ([]Out, error) {
	j, err := Start(ctx, ex, f, inputs)
	if err != nil {
		return nil, err
	}
	<-j.core.done
	return j.outcome()
}

// Start launches f on every input and returns once the job is accepted: the
// inputs are encoded and those too large to travel inline are in the store.
// The job runs until every task has a result, ctx is cancelled, Cancel is
// called or the Executor is closed.
func Start[In, Out any](ctx context.Context, ex *Executor, f *Func[In, Out], inputs []In) (*Job[Out], error) {
	if ex == nil || f == nil {
		return nil, errors.New("fanout: Start with a nil Executor or Func")
	}
	j := &Job[Out]{values: make([]Out, len(inputs))}
	core, err := ex.start(ctx, jobSpec{
		fn: f.fn, n: len(inputs), kind: inputValue,
		encode: func(e *msgpack.Encoder, i int) error { return e.Encode(&inputs[i]) },
		accept: j.accept, async: ex.opts.Async,
	})
	if err != nil {
		return nil, err
	}
	j.core = core
	return j, nil
}

// Job is a running or finished job of tasks producing Out. Its methods are
// safe for concurrent use.
type Job[Out any] struct {
	core   *jobCore
	values []Out
}

// ID returns the job's ID, which names its objects in the store
// ("jobs/<ID>/...").
func (j *Job[Out]) ID() string { return j.core.id }

// Done returns a channel closed when the job has ended.
func (j *Job[Out]) Done() <-chan struct{} { return j.core.done }

// Cancel stops the job: nothing more is sent and invocations in flight are
// cancelled. Wait then returns an error satisfying
// errors.Is(err, context.Canceled). Cancel after the job ended does nothing.
func (j *Job[Out]) Cancel() { j.core.cancel(context.Canceled) }

// Wait blocks until the job has ended and returns its outputs in input order,
// with the same errors as Map. When ctx ends first, Wait returns nil and
// ctx's error; the job keeps running (use Cancel to stop it).
func (j *Job[Out]) Wait(ctx context.Context) ([]Out, error) {
	select {
	case <-j.core.done:
		return j.outcome()
	case <-ctx.Done():
		return nil, fmt.Errorf("fanout: wait for job %s: %w", j.core.id, ctx.Err())
	}
}

// accept decodes output i; the returned func stores it, and runs only for
// the copy whose result is taken.
func (j *Job[Out]) accept(i int, b []byte, slack *int64) (func(), error) {
	var v Out
	if err := decodeBounded(b, &v, "output", slack); err != nil {
		return nil, err
	}
	return func() { j.values[i] = v }, nil
}

func (j *Job[Out]) outcome() ([]Out, error) {
	return j.values, j.core.errors()
}

// errors returns the job's error: nil, the job's own error when no task
// failed, else a *JobError holding it and the task errors, in input order.
// Tasks that failed only because the job stopped are covered by the job's
// error. It is called once the dispatcher is done.
func (c *jobCore) errors() error {
	var failed []*TaskError
	for _, x := range c.t.extra {
		if x != nil && x.err != nil && !x.err.fromJob {
			failed = append(failed, x.err)
		}
	}
	if len(failed) == 0 {
		return c.jobErr
	}
	return &JobError{Job: c.id, Tasks: c.spec.n, Failed: failed, Err: c.jobErr}
}

// Result is the outcome of one task.
type Result[Out any] struct {
	// Index is the position of the task's input.
	Index int
	// Value is the output; the zero value when Err is not nil.
	Value Out
	// Err is nil or a *TaskError.
	Err error
	// Stats describe the task's run.
	Stats TaskStats
	// Logs are the records the task wrote through Logger(ctx), and the
	// lines it printed where the backend captures them (see LogRecord).
	Logs []LogRecord
}

// Results yields one Result per task as tasks complete, each index exactly
// once, ending when every task has one. Several callers may iterate at once;
// each sees every result (those already complete first). When ctx ends the
// sequence stops early; breaking out of the loop stops it too. Neither
// cancels the job.
func (j *Job[Out]) Results(ctx context.Context) iter.Seq[Result[Out]] {
	return func(yield func(Result[Out]) bool) {
		c := j.core
		pos := 0
		for {
			s := c.snap.Load()
			for ; pos < len(s.completed); pos++ {
				if !yield(j.result(s, s.completed[pos])) {
					return
				}
			}
			if s.ended {
				return
			}
			select {
			case <-s.next:
			case <-ctx.Done():
				return
			}
		}
	}
}

// result builds the Result of task i, which s lists as completed: its
// record, error and value are no longer written.
func (j *Job[Out]) result(s *snapshot, i int) Result[Out] {
	c := j.core
	r := Result[Out]{Index: i, Stats: c.settledStats(s, i)}
	if x := c.t.extra[i]; x != nil {
		r.Logs = x.logs
		if x.err != nil {
			r.Err = x.err
			return r
		}
	}
	r.Value = j.values[i]
	return r
}

// Stats returns a snapshot of the job's statistics.
func (j *Job[Out]) Stats() JobStats { return j.core.statsNow() }

// MapReduce calls mapper on every input, then reducer once on the slice of
// all map outputs, in input order, and returns the reducer's output. The
// reducer runs on the backend like any task and reads the map outputs from
// the store itself: they never pass through the driver. MapReduce therefore
// needs a store (Options.Store, or the default of local and process
// backends).
//
// If a map task fails, the reducer does not run and the error is the map
// job's *JobError. Cancellation behaves as for Map.
func MapReduce[In, Mid, Out any](ctx context.Context, ex *Executor, mapper *Func[In, Mid], inputs []In, reducer *Func[[]Mid, Out]) (Out, error) {
	var out Out
	if ex == nil || mapper == nil || reducer == nil {
		return out, errors.New("fanout: MapReduce with a nil Executor or Func")
	}
	if ex.cfgErr == nil && ex.store == nil {
		return out, fmt.Errorf("fanout: MapReduce %q/%q: %w: the reducer reads the map outputs from a store; set Options.Store or GOWREN_STORE",
			mapper.Name(), reducer.Name(), ErrNoStore)
	}
	mapJob, err := ex.start(ctx, jobSpec{
		fn: mapper.fn, n: len(inputs), kind: inputValue, flags: flagOutputsToStore, keepData: true,
		encode: func(e *msgpack.Encoder, i int) error { return e.Encode(&inputs[i]) },
	})
	if err != nil {
		return out, err
	}
	defer func() {
		if !ex.opts.KeepData {
			mapJob.deleteObjects(ctx)
		}
	}()
	<-mapJob.done
	if err := mapJob.errors(); err != nil {
		return out, fmt.Errorf("fanout: map phase of job %s: %w", mapJob.id, err)
	}
	reduceJob, err := ex.start(ctx, jobSpec{
		fn: reducer.fn, n: 1, kind: inputGather,
		encode: func(e *msgpack.Encoder, _ int) error { return encodeRangesTo(e, mapJob.t.outRefs) },
		accept: func(_ int, b []byte, slack *int64) (func(), error) {
			var v Out
			if err := decodeBounded(b, &v, "output", slack); err != nil {
				return nil, err
			}
			return func() { out = v }, nil
		},
	})
	if err != nil {
		return out, err
	}
	<-reduceJob.done
	if err := reduceJob.errors(); err != nil {
		return out, fmt.Errorf("fanout: reduce phase (job %s, after map job %s): %w", reduceJob.id, mapJob.id, err)
	}
	return out, nil
}
