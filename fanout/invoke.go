package fanout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/gowren/gowren/backends"
)

// retryableInfra reports whether an invocation failure is worth another
// attempt: throttling, lost workers and transport failures are.
func retryableInfra(err error) bool { return backends.Retryable(err) }

// request builds the envelope of an invocation.
func (j *jobCore) request(inv *invocation) *wireRequest {
	ex := j.ex
	req := &wireRequest{
		Job: j.id, Func: j.spec.fn.name, Digest: j.spec.fn.digest, Prefix: j.prefix,
		ReplyLimit: int64(ex.limits.MaxResponseBytes), TaskTimeout: ex.opts.TaskTimeout,
		Parallel: ex.limits.Parallel, Flags: j.spec.flags, Tasks: make([]wireTask, len(inv.tasks)),
	}
	if ex.store != nil {
		req.Store = ex.store.URL()
	}
	if inv.key != "" {
		// The reply goes to the store, where its size does not matter.
		req.Flags |= flagAsync
		req.ReplyKey = inv.key
		req.ReplyLimit = 0
	}
	for k, i := range inv.tasks {
		wt := wireTask{Index: i, Attempt: inv.attempts[k], Try: inv.tries[k], Kind: j.spec.kind}
		if n := j.inlineSize(i); n > 0 {
			wt.Input = j.inline[j.offs[i]:j.offs[i+1]]
		} else {
			ref := j.refs[i]
			wt.Key, wt.Off, wt.Len = ref.key, ref.off, ref.len
		}
		req.Tasks[k] = wt
	}
	return req
}

// send delivers one invocation and, for a synchronous one, takes in its
// reply. It always releases the invocation or leaves it to the poller.
func (j *jobCore) send(inv *invocation) {
	defer j.signal()
	ex := j.ex
	req := j.request(inv)
	var buf bytes.Buffer
	if err := encodeRequest(&buf, req); err != nil {
		j.mu.Lock()
		for _, i := range inv.tasks {
			if s := j.tasks[i].state; s != stDone && s != stFailed {
				j.failLocked(i, &TaskError{Index: i, Attempts: j.tasks[i].attempts(), Type: "encode", Message: fmt.Sprintf("encode request: %v", err)}, inv)
			}
		}
		j.releaseLocked(inv, nil)
		j.broadcastLocked()
		j.mu.Unlock()
		return
	}
	ctx := inv.ctx
	if ex.limits.InProcess && ex.store != nil {
		ctx = context.WithValue(ctx, driverStoreKey{}, ex.store)
	}
	timeout := j.invokeTimeout(len(inv.tasks))
	if j.spec.async {
		j.sendAsync(ctx, inv, buf.Bytes(), timeout)
		return
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	reply, err := ex.backend.Invoke(ctx, buf.Bytes())
	received := time.Now()
	j.mu.Lock()
	j.counters.invocations++
	j.counters.bytesSent += int64(buf.Len())
	j.counters.bytesReceived += int64(len(reply))
	j.mu.Unlock()
	if err != nil {
		if inv.ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: no reply within %v: %w", backends.ErrWorkerLost, timeout, err)
		}
		j.invocationFailed(inv, err)
		return
	}
	r, err := decodeReply(reply)
	if err == nil && r.Spilled != "" {
		outer := r
		r, _, err = j.fetchReply(r.Spilled)
		if err == nil {
			r.StoreReads, r.StoreWrites = outer.StoreReads, outer.StoreWrites // with the spill's own write
		}
	}
	if err != nil {
		j.invocationFailed(inv, fmt.Errorf("%w: undecodable reply of %d bytes: %v", backends.ErrTransport, len(reply), err))
		return
	}
	j.takeReply(inv, r, received)
}

// invokeTimeout is how long the driver waits for a batch, 0 for no limit:
// the tasks' timeouts run one after another per runner, plus slack.
func (j *jobCore) invokeTimeout(n int) time.Duration {
	per := j.ex.opts.TaskTimeout
	if per <= 0 {
		if j.ex.limits.Timeout > 0 {
			return j.ex.limits.Timeout + invokeSlack
		}
		return 0
	}
	runners := max(1, j.ex.limits.Parallel)
	rounds := (n + runners - 1) / runners
	return time.Duration(rounds)*(per+abandonGrace) + invokeSlack
}

// fetchReply reads a reply the worker put in the store, and returns it with
// the size of its object.
func (j *jobCore) fetchReply(key string) (*wireReply, int64, error) {
	b, err := j.ex.store.Get(j.ctx, key)
	j.mu.Lock()
	j.counters.storeReads++
	j.mu.Unlock()
	if err != nil {
		return nil, 0, fmt.Errorf("read reply %q: %w", key, err)
	}
	r, err := decodeReply(b)
	return r, int64(len(b)), err
}

// invocationFailed handles an invocation that produced no reply.
func (j *jobCore) invocationFailed(inv *invocation, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	defer j.broadcastLocked()
	if _, ok := j.live[inv]; !ok {
		return // released already: a loser cancelled, or an async reply taken
	}
	if j.ctx.Err() != nil || inv.ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
		// The job is ending, or this copy was cancelled as a loser.
		j.releaseLocked(inv, nil)
		for _, i := range inv.tasks {
			if t := &j.tasks[i]; t.state == stRunning && t.copies == 0 {
				t.state = stPending
			}
		}
		return
	}
	j.wrote = true // the worker may have written outputs before it failed
	if errors.Is(err, backends.ErrThrottled) {
		j.counters.throttles++
		j.window.throttled()
		// The invocation did not run: its tasks go back without costing
		// an attempt.
		j.releaseLocked(inv, nil)
		for _, i := range inv.tasks {
			t := &j.tasks[i]
			if inv.backup {
				t.backups--
			} else {
				t.tries--
			}
			if t.throttled < math.MaxUint8 {
				t.throttled++
			}
			if t.state == stRunning && t.copies == 0 {
				j.retryLocked(i, backends.RetryAfter(err), false, true, err.Error())
			}
		}
		return
	}
	j.counters.failedInvocations++
	if !retryableInfra(err) {
		// Not a fault of these tasks: the platform refuses the call itself
		// (no such function, bad credentials, a closed backend). Every
		// invocation would fail the same way, so the job stops with one
		// error instead of one per task.
		if j.jobErr == nil {
			j.jobErr = fmt.Errorf("fanout: job %s (%s): invoke: %w", j.id, j.spec.fn.signature, err)
		}
		j.releaseLocked(inv, nil)
		j.cancel(j.jobErr)
		return
	}
	j.releaseLocked(inv, err)
}

// takeReply records the results of a reply. Outputs in the store are read
// and decoded outside the lock. inv is nil for a reply found in the store
// that no live invocation of this driver is waiting for (Attach).
func (j *jobCore) takeReply(inv *invocation, r *wireReply, received time.Time) {
	if r.StoreReads > 0 || r.StoreWrites > 0 {
		j.mu.Lock()
		j.counters.workerReads += r.StoreReads
		j.counters.workerWrites += r.StoreWrites
		j.mu.Unlock()
	}
	if r.Err != nil {
		ierr := invocationError(r.Err)
		if errors.Is(ierr, ErrUnknownFunction) || errors.Is(ierr, ErrStaleWorker) || errors.Is(ierr, ErrMalformed) {
			j.abort(fmt.Errorf("fanout: job %s (%s): %w", j.id, j.spec.fn.signature, ierr))
			return
		}
		if inv != nil {
			j.invocationFailed(inv, fmt.Errorf("%w: %w", backends.ErrWorkerLost, ierr))
		}
		return
	}
	type outcome struct {
		res    *wireResult
		err    *TaskError // decoding failed
		ok     bool       // value accepted
		commit func()     // stores the decoded value
	}
	outs := make([]outcome, 0, len(r.Results))
	var work int64
	for k := range r.Results {
		res := &r.Results[k]
		if res.Index < 0 || res.Index >= j.spec.n {
			continue
		}
		if res.End > res.Start {
			work += res.End - res.Start
		}
		o := outcome{res: res}
		if res.Err == nil && j.spec.accept != nil && !j.settled(res.Index) {
			data := res.Output
			if res.Key != "" {
				var err error
				data, err = j.ex.store.Get(j.ctx, res.Key)
				j.mu.Lock()
				j.counters.storeReads++
				j.mu.Unlock()
				if err != nil {
					res.Err = &wireError{Code: codeStore, Type: fmt.Sprintf("%T", err), Message: fmt.Sprintf("read output: %v", err), Retryable: true}
				}
			}
			if res.Err == nil {
				commit, err := j.spec.accept(res.Index, data)
				if err != nil {
					o.err = &TaskError{Index: res.Index, Type: "decode", Message: fmt.Sprintf("decode output of %s: %v", j.spec.fn.signature, err)}
				} else {
					o.ok, o.commit = true, commit
				}
			}
		} else if res.Err == nil {
			o.ok = true
		}
		outs = append(outs, o)
	}

	j.mu.Lock()
	defer j.mu.Unlock()
	if inv != nil {
		if _, live := j.live[inv]; live && len(r.Results) > 0 {
			rtt := float64(received.Sub(inv.sent).Nanoseconds())
			runners := float64(max(1, min(j.ex.limits.Parallel, len(inv.tasks))))
			j.observe(float64(work)/float64(len(r.Results)), math.Max(rtt-float64(work)/runners, 0))
			j.window.succeeded()
		}
	}
	if busy := replyBusy(r); busy > 0 {
		j.counters.billed += busy
	}
	wid := j.workerLocked(r.Worker)
	if r.Cold {
		j.counters.coldStarts++
	}
	now := received.UnixNano()
	for _, o := range outs {
		i := o.res.Index
		t := &j.tasks[i]
		if t.state == stDone || t.state == stFailed {
			continue // a duplicate or a late copy: the first result stands
		}
		t.worker, t.cold = wid, r.Cold
		t.started, t.finished, t.received = o.res.Start, o.res.End, now
		t.bytesOut = int64(len(o.res.Output)) + o.res.Len
		if o.res.End > o.res.Start {
			j.counters.taskTime += time.Duration(o.res.End - o.res.Start)
		}
		if len(o.res.Logs) > 0 {
			if j.logs == nil {
				j.logs = map[int][]LogRecord{}
			}
			j.logs[i] = o.res.Logs
		}
		if o.res.Key != "" {
			j.wrote = true
			if j.outRefs != nil {
				j.outRefs[i] = wireRange{Key: o.res.Key, Len: o.res.Len}
			}
		}
		switch {
		case o.ok:
			if o.commit != nil {
				o.commit()
			}
			if t.finished > t.started {
				j.taskTimes = append(j.taskTimes, float64(t.finished-t.started))
			}
			j.doneLocked(i, inv)
		case o.err != nil:
			o.err.Attempts = t.attempts()
			o.err.Logs = o.res.Logs
			j.failLocked(i, o.err, inv)
		default:
			j.taskErrorLocked(inv, i, o.res)
		}
	}
	if inv != nil {
		j.releaseLocked(inv, fmt.Errorf("%w: the reply had no result for the task", backends.ErrTransport))
	}
	j.broadcastLocked()
}

// replyBusy is how long the worker was busy with a reply's batch, rounded
// up to a millisecond.
func replyBusy(r *wireReply) time.Duration {
	var first, last int64
	for _, res := range r.Results {
		if res.Start > 0 && (first == 0 || res.Start < first) {
			first = res.Start
		}
		last = max(last, res.End)
	}
	if first == 0 || last <= first {
		return 0
	}
	d := time.Duration(last - first)
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

// taskErrorLocked handles a result that carries an error: it is final
// unless it is retryable and retries remain, and no other copy is out.
func (j *jobCore) taskErrorLocked(inv *invocation, i int, res *wireResult) {
	t := &j.tasks[i]
	we := res.Err
	retryable := we.Retryable || we.Code == codeStore
	if we.Code == codeCanceled {
		// The worker's context ended while the job still runs: the
		// invocation was cut off, not the task's fault.
		retryable = true
	}
	if j.ex.opts.RetryTaskErrors && (we.Code == codeApp || we.Code == codePanic || we.Code == codeTimeout) {
		retryable = true
	}
	if we.Code == codeStore || we.Code == codeCanceled {
		j.wrote = true
	}
	if retryable && int(t.tries) <= j.ex.opts.Retries {
		if copiesElsewhere(inv, t) {
			j.noteLocked(i, we.Message) // another copy may still succeed
			return
		}
		j.retryLocked(i, 0, false, false, we.Message)
		return
	}
	if copiesElsewhere(inv, t) && retryable {
		j.noteLocked(i, we.Message)
		return
	}
	te := remoteError(i, t.attempts(), we)
	te.Logs = res.Logs
	j.noteLocked(i, we.Message)
	j.failLocked(i, te, inv)
}

// copiesElsewhere reports whether the task has a copy in flight besides
// the one in inv.
func copiesElsewhere(inv *invocation, t *taskRec) bool {
	own := 0
	if inv != nil {
		own = 1
	}
	return int(t.copies) > own
}

func (j *jobCore) settled(i int) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := j.tasks[i].state
	return s == stDone || s == stFailed
}

func (j *jobCore) workerLocked(id string) uint32 {
	if w, ok := j.workers[id]; ok {
		return w
	}
	if j.workers == nil {
		j.workers = map[string]uint32{}
	}
	w := uint32(len(j.workerIDs))
	j.workers[id] = w
	j.workerIDs = append(j.workerIDs, id)
	return w
}
