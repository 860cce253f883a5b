package fanout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/storage"
)

// The I/O side of a job: senders make invocations, readers read reply
// objects, the lister lists the reply prefix. Each only does I/O and
// decoding and posts what happened to the dispatcher (engine.go); none
// touches the task table.

// envelope returns the fields every request of the job carries.
func (j *jobCore) envelope() *wireRequest {
	ex := j.ex
	req := &wireRequest{
		Job: j.id, Func: j.spec.fn.name, Digest: j.spec.fn.digest, Prefix: j.prefix,
		ReplyLimit: int64(ex.limits.MaxResponseBytes), TaskTimeout: ex.opts.TaskTimeout,
		Parallel: ex.limits.Parallel, Flags: j.spec.flags,
	}
	if ex.store != nil {
		req.Store = ex.store.URL()
	}
	return req
}

// request builds the envelope of an invocation.
func (j *jobCore) request(inv *invocation) *wireRequest {
	req := j.envelope()
	req.Tasks = make([]wireTask, len(inv.tasks))
	if inv.key != "" {
		// The reply goes to the store, where its size does not matter.
		req.Flags |= flagAsync
		req.ReplyKey = inv.key
		req.ReplyLimit = 0
	}
	for k, i := range inv.tasks {
		wt := wireTask{Index: i, Attempt: int(inv.attempts[k]), Try: inv.tries[k], Kind: j.spec.kind}
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

// send makes one invocation and posts its outcome: the reply (and, on a
// streaming backend, its parts first), or the failure.
func (j *jobCore) send(ctx context.Context, inv *invocation) {
	ex := j.ex
	var buf bytes.Buffer
	if err := encodeRequest(&buf, j.request(inv)); err != nil {
		j.post(event{kind: evFailed, terminal: true, inv: inv, at: j.now(), err: fmt.Errorf("%w: %v", errEncode, err)})
		return
	}
	if ex.limits.InProcess && ex.store != nil {
		ctx = context.WithValue(ctx, driverStoreKey{}, ex.store)
	}
	timeout := j.invokeTimeout(len(inv.tasks))
	if j.spec.viaStore {
		j.sendAsync(ctx, inv, buf.Bytes(), timeout)
		return
	}
	callCtx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var reply []byte
	var err error
	b := j.mem[inv.member].b
	if sb, ok := b.(backends.StreamBackend); ok {
		// Parts come only from batches; but a reply that crosses a
		// cancellation comes through part too, so it is not lost.
		reply, err = sb.InvokeStream(callCtx, buf.Bytes(), func(part []byte) {
			ev := event{kind: evReply, inv: inv, bytesReceived: int64(len(part))}
			j.decodeInto(&ev, part)
			ev.at = j.now()
			if ev.kind == evReply && ev.ierr == nil {
				j.post(ev)
			}
		})
	} else {
		reply, err = b.Invoke(callCtx, buf.Bytes())
	}
	ev := event{kind: evReply, terminal: true, inv: inv, final: true, bytesSent: int64(buf.Len()), bytesReceived: int64(len(reply))}
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: no reply within %v: %w", backends.ErrWorkerLost, timeout, err)
		}
		ev.kind, ev.err, ev.at = evFailed, err, j.now()
		j.post(ev)
		return
	}
	j.decodeInto(&ev, reply)
	ev.at = j.now()
	j.post(ev)
}

// decodeInto decodes a reply (or a part of one) into ev: its results, read
// and decoded, or why it could not be read.
func (j *jobCore) decodeInto(ev *event, b []byte) {
	r, err := decodeReply(b)
	if err == nil && r.Spilled != "" {
		outer := r
		var data []byte
		data, err = j.ex.store.Get(j.ioCtx, r.Spilled)
		ev.storeReads++
		if err == nil {
			r, err = decodeReply(data)
		}
		if err == nil {
			r.StoreReads, r.StoreWrites = outer.StoreReads, outer.StoreWrites // with the spill's own write
		}
	}
	if err != nil {
		ev.kind, ev.err = evFailed, fmt.Errorf("%w: undecodable reply of %d bytes: %v", backends.ErrTransport, len(b), err)
		return
	}
	j.takeReply(ev, r)
}

// takeReply fills ev from a decoded reply. Outputs in the store are read,
// and every output is decoded here, on the I/O goroutine, unless its task
// has settled already; the dispatcher only keeps the winner.
func (j *jobCore) takeReply(ev *event, r *wireReply) {
	ev.workerReads += r.StoreReads
	ev.workerWrites += r.StoreWrites
	ev.ri = replyInfo{worker: r.Worker, cold: r.Cold}
	if r.Err != nil {
		ev.ierr = invocationError(r.Err)
		return
	}
	ev.results = make([]taskResult, 0, len(r.Results))
	// The outputs of one reply share one slack (see decodeBounded), so
	// many tiny outputs cannot each take it.
	slack := int64(decodeSlack)
	for k := range r.Results {
		res := &r.Results[k]
		if res.Index < 0 || res.Index >= j.spec.n {
			continue
		}
		if res.Start > 0 && (ev.busy[0] == 0 || res.Start < ev.busy[0]) {
			ev.busy[0] = res.Start
		}
		ev.busy[1] = max(ev.busy[1], res.End)
		if res.End > res.Start {
			ev.work += res.End - res.Start
		}
		tr := taskResult{
			index: res.Index, attempt: res.Attempt, start: res.Start, end: res.End, logs: res.Logs,
			outLen: int64(len(res.Output)) + res.Len, outKey: res.Key, err: res.Err,
		}
		if res.Err == nil && j.spec.accept != nil && !j.isSettled(res.Index) {
			data := res.Output
			if res.Key != "" {
				var err error
				data, err = j.ex.store.Get(j.ioCtx, res.Key)
				ev.storeReads++
				if err != nil {
					tr.err = &wireError{Code: codeStore, Type: fmt.Sprintf("%T", err), Message: fmt.Sprintf("read output: %v", err), Retryable: true}
				}
			}
			if tr.err == nil {
				commit, err := j.spec.accept(res.Index, data, &slack)
				switch {
				case errors.Is(err, ErrDecodeLimit):
					tr.derr = &TaskError{Index: res.Index, Type: "decode", Message: err.Error(), Err: ErrDecodeLimit}
				case err != nil:
					tr.derr = &TaskError{Index: res.Index, Type: "decode", Message: fmt.Sprintf("decode output of %s: %v", j.spec.fn.signature, err)}
				default:
					tr.commit = commit
				}
			}
		}
		ev.results = append(ev.results, tr)
	}
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
	return batchTimeout(n, j.ex.limits.Parallel, per)
}

// batchTimeout is how long a batch of n tasks of timeout per may take on a
// worker running parallel of them at once: the rounds' timeouts, each with
// its abandon grace, plus slack.
func batchTimeout(n, parallel int, per time.Duration) time.Duration {
	runners := max(1, parallel)
	rounds := (n + runners - 1) / runners
	return time.Duration(rounds)*(per+abandonGrace) + invokeSlack
}

// sendAsync starts an asynchronous invocation. Backends with native
// asynchronous invocation get InvokeAsync; the others (local, process) a
// synchronous call whose reply only acknowledges: the results are read
// from the store, as for a native one.
func (j *jobCore) sendAsync(ctx context.Context, inv *invocation, payload []byte, timeout time.Duration) {
	ev := event{kind: evAccepted, terminal: true, inv: inv, bytesSent: int64(len(payload))}
	b := j.mem[inv.member].b
	if ab, ok := b.(backends.AsyncBackend); ok {
		if err := ab.InvokeAsync(ctx, payload); err != nil {
			ev.kind, ev.err = evFailed, err
		}
		ev.at = j.now()
		j.post(ev)
		return
	}
	j.post(event{kind: evAccepted, inv: inv, bytesSent: ev.bytesSent, at: j.now()})
	ev.bytesSent = 0
	if timeout <= 0 {
		timeout = asyncTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	reply, err := b.Invoke(ctx, payload)
	ev.at = j.now()
	ev.bytesReceived = int64(len(reply))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("%w: no reply within %v: %w", backends.ErrWorkerLost, timeout, err)
		}
		ev.kind, ev.err = evFailed, err
		j.post(ev)
		return
	}
	r, err := decodeReply(reply)
	switch {
	case err != nil:
		ev.kind, ev.err = evFailed, fmt.Errorf("%w: undecodable reply: %v", backends.ErrTransport, err)
	case r.Err != nil:
		ev.kind, ev.final = evReply, true
		j.takeReply(&ev, r)
	default:
		// The worker says its reply is in the store, under the key the
		// driver chose: it is read there, without listing.
		ev.kind = evAcked
	}
	j.post(ev)
}

// readReply reads a reply object and posts it.
func (j *jobCore) readReply(key string) {
	ev := event{kind: evRead, terminal: true, key: key, storeReads: 1}
	if b, err := j.ex.store.Get(j.ioCtx, key); err != nil {
		ev.err = fmt.Errorf("read reply %q: %w", key, err)
	} else {
		j.takeObject(&ev, b)
	}
	ev.at = j.now()
	j.post(ev)
}

// takeObject fills ev, whose key names it, from a reply object read from
// the store: a bundle gives a part per reply in it (see readBundle).
func (j *jobCore) takeObject(ev *event, b []byte) {
	ev.size = int64(len(b))
	if _, bundle := j.keys.Replies(ev.key); bundle {
		j.readBundle(ev, b)
		return
	}
	r, err := decodeReply(b)
	if err != nil {
		ev.err = fmt.Errorf("reply %q: %w", ev.key, err)
		return
	}
	j.takeReply(ev, r)
}

// readBundle decodes a bundle into ev's parts, one per reply in it.
func (j *jobCore) readBundle(ev *event, b []byte) {
	es, err := decodeBundle(b)
	if err != nil {
		ev.err = fmt.Errorf("bundle %q: %w", ev.key, err)
		return
	}
	ev.parts = make([]event, len(es))
	for k, e := range es {
		p := &ev.parts[k]
		p.key = e.key
		j.decodeInto(p, e.reply)
		if p.kind == evFailed {
			p.err = fmt.Errorf("reply %q: %w", e.key, p.err)
		}
		ev.storeReads += p.storeReads
		ev.workerReads += p.workerReads
		ev.workerWrites += p.workerWrites
	}
}

// listReplies lists the reply prefix from after on and posts the objects.
func (j *jobCore) listReplies(after string) {
	ev := event{kind: evListed, terminal: true}
	for obj, err := range storage.ListAfter(j.ioCtx, j.ex.store, j.keys.Outputs(), after) {
		if err != nil {
			ev.err = err
			break
		}
		ev.objs = append(ev.objs, obj)
	}
	ev.storeLists = storage.ListRequests(len(ev.objs))
	ev.at = j.now()
	j.post(ev)
}
