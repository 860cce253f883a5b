package fanout

import (
	"bytes"
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/storage"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sync/errgroup"
)

// Tuning constants; docs/design.md explains each.
const (
	// chunkSize is the target size of one aggregated input object.
	chunkSize = 64 << 20
	// envelopeSlack is what a request needs beyond its inputs and the
	// strings it names (function, store URL).
	envelopeSlack = 256
	// taskSlack is what one task adds to a request beyond its input.
	taskSlack = 48
	// maxAutoBatch caps the automatic batch size.
	maxAutoBatch = 8192
	// overheadRatio: the automatic batch makes the invocation overhead
	// about 1/overheadRatio of the work it carries.
	overheadRatio = 10
	// backoffBase and backoffCap bound the exponential backoff of retries.
	backoffBase = 50 * time.Millisecond
	backoffCap  = 10 * time.Second
	// invokeSlack is added to the computed invocation deadline.
	invokeSlack = 5 * time.Second
	// cleanupTimeout bounds the deletion of a job's objects.
	cleanupTimeout = time.Minute
)

// Task states on the driver.
const (
	stPending uint8 = iota // waiting to be sent (first time or retry)
	stRunning              // in an invocation
	stDone                 // result taken
	stFailed               // error taken
)

// taskRec is the driver's record of one task; times are Unix nanoseconds.
type taskRec struct {
	state    uint8
	isolate  bool // send alone: its last batch lost its worker
	cold     bool
	attempts uint16
	worker   uint32
	bytesIn  int64
	bytesOut int64
	invoked  int64
	started  int64
	finished int64
	received int64
}

// inputRef locates an input that went to the store.
type inputRef struct {
	key      string
	off, len int64
}

// jobSpec is what the typed layer hands to start.
type jobSpec struct {
	fn       *funcInfo
	n        int
	kind     int
	flags    uint64
	encode   func(e *msgpack.Encoder, i int) error // encodes input i
	accept   func(i int, out []byte) error         // decodes output i; nil with flagOutputsToStore
	keepData bool
}

// jobCore runs one job: it owns the dispatcher goroutine and the invocation
// goroutines, and everything they share.
type jobCore struct {
	ex     *Executor
	id     string
	prefix string
	spec   jobSpec
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when the job has ended

	inline  []byte
	offs    []int64 // input i is inline[offs[i]:offs[i+1]] unless stored
	stored  map[int]inputRef
	started time.Time

	mu        sync.Mutex
	tasks     []taskRec
	next      int   // first task never sent
	retryQ    []int // tasks ready to be sent again
	delayed   delayQueue
	finished  int
	failedN   int
	completed []int // task indexes in completion order
	notify    chan struct{}
	wake      chan struct{}
	taskErrs  map[int]*TaskError
	logs      map[int][]LogRecord
	outRefs   []wireRange // with flagOutputsToStore: where each output is
	jobErr    error
	ended     time.Time
	wrote     bool // objects may exist under the job's prefix
	workers   map[string]uint32
	workerIDs []string
	counters  counters
	// adaptive batching, in nanoseconds
	measured     bool
	ewmaTask     float64
	ewmaOverhead float64
	lastBatch    int
}

type counters struct {
	retries, throttles, invocations, failedInvocations, coldStarts int
	bytesSent, bytesReceived                                       int64
	storeReads, storeWrites                                        int
	taskTime                                                       time.Duration
}

func newJobID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}

// start encodes the inputs, writes the ones that do not fit inline to the
// store, and launches the job. It returns once the job is accepted.
func (ex *Executor) start(ctx context.Context, spec jobSpec) (*jobCore, error) {
	if ex.cfgErr != nil {
		return nil, ex.cfgErr
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fanout: start %q: %w", spec.fn.name, err)
	}
	id := newJobID()
	j := &jobCore{
		ex: ex, id: id, prefix: "jobs/" + id + "/", spec: spec,
		done: make(chan struct{}), notify: make(chan struct{}), wake: make(chan struct{}, 1),
		tasks: make([]taskRec, spec.n), started: time.Now(),
	}
	if spec.flags&flagOutputsToStore != 0 {
		j.outRefs = make([]wireRange, spec.n)
	}
	if err := j.encodeInputs(ctx); err != nil {
		j.deleteObjects(ctx)
		return nil, err
	}
	if err := ex.register(j); err != nil {
		j.deleteObjects(ctx)
		return nil, err
	}
	j.ctx, j.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	// The job follows ctx: cancelling it cancels the job.
	stop := context.AfterFunc(ctx, func() { j.cancel(context.Cause(ctx)) })
	go func() {
		defer ex.unregister(j)
		defer stop()
		j.run()
	}()
	return j, nil
}

// requestBudget is the room for inputs in one request of the job, 0 for no
// limit.
func (j *jobCore) requestBudget() int64 {
	ex := j.ex
	if ex.limits.MaxRequestBytes <= 0 {
		return 0
	}
	fixed := envelopeSlack + 2*len(j.spec.fn.name) + len(j.spec.fn.digest) + len(j.prefix)
	if ex.store != nil {
		fixed += len(ex.store.URL())
	}
	return max(int64(ex.limits.MaxRequestBytes-fixed), 1)
}

// encodeInputs encodes every input. Inputs larger than a quarter of the
// request budget go to the store, packed into aggregated chunk objects of
// about chunkSize, written as they fill (at most two at a time). A stored
// input takes no room in j.inline: offs[i+1] == offs[i].
func (j *jobCore) encodeInputs(ctx context.Context) error {
	ex := j.ex
	n := j.spec.n
	name := j.spec.fn.name
	j.offs = make([]int64, n+1)
	var buf bytes.Buffer
	e := getEncoder(&buf)
	defer putEncoder(e)
	budget := j.requestBudget()
	storeAbove := int64(math.MaxInt64)
	if budget > 0 {
		storeAbove = budget / 4
	}
	var maxObject int64
	if m, ok := ex.store.(storage.MaxObjectSizer); ok {
		maxObject = m.MaxObjectSize()
	}
	putCtx, cancelPuts := context.WithCancel(ctx)
	defer cancelPuts()
	var (
		chunk   bytes.Buffer
		chunkNo int
		pending []int // stored inputs in the current chunk
		puts    errgroup.Group
	)
	puts.SetLimit(2)
	flush := func() {
		if chunk.Len() == 0 {
			return
		}
		key := j.prefix + "in/" + strconv.Itoa(chunkNo)
		chunkNo++
		data := bytes.Clone(chunk.Bytes())
		chunk.Reset()
		for _, i := range pending {
			ref := j.stored[i]
			ref.key = key
			j.stored[i] = ref
		}
		pending = pending[:0]
		j.wrote = true
		j.counters.storeWrites++
		puts.Go(func() error {
			if err := ex.store.Put(putCtx, key, data); err != nil {
				return fmt.Errorf("fanout: start %q: write inputs to %q: %w", name, key, err)
			}
			return nil
		})
	}
	fail := func(err error) error {
		cancelPuts()
		_ = puts.Wait()
		return err
	}
	for i := range n {
		start := buf.Len()
		if err := j.spec.encode(e, i); err != nil {
			return fail(fmt.Errorf("fanout: start %q: encode input %d: %w", name, i, err))
		}
		size := int64(buf.Len() - start)
		if size > storeAbove && ex.store == nil {
			if size+taskSlack > budget {
				return fail(fmt.Errorf("fanout: start %q: input %d is %d bytes, over the backend's %d-byte request limit, and the executor has no store to carry it (set Options.Store or GOWREN_STORE): %w",
					name, i, size, ex.limits.MaxRequestBytes, ErrPayloadTooLarge))
			}
			// No store, but it fits alone in a request: keep it inline.
		}
		if size <= storeAbove || ex.store == nil {
			j.offs[i+1] = int64(buf.Len())
			continue
		}
		if maxObject > 0 && size > maxObject {
			return fail(fmt.Errorf("fanout: start %q: input %d is %d bytes, over the store's %d-byte object limit: %w (%w)",
				name, i, size, maxObject, ErrPayloadTooLarge, storage.ErrTooLarge))
		}
		if maxObject > 0 && int64(chunk.Len())+size > maxObject {
			flush()
		}
		if j.stored == nil {
			j.stored = map[int]inputRef{}
		}
		j.stored[i] = inputRef{off: int64(chunk.Len()), len: size}
		pending = append(pending, i)
		chunk.Write(buf.Bytes()[start:])
		buf.Truncate(start)
		j.offs[i+1] = int64(start)
		if chunk.Len() >= chunkSize {
			flush()
		}
		if putCtx.Err() != nil {
			break // a Put failed; Wait reports it
		}
	}
	flush()
	if err := puts.Wait(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fanout: start %q: %w", name, err)
	}
	j.inline = buf.Bytes()
	return nil
}

// signal wakes the dispatcher.
func (j *jobCore) signal() {
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// broadcastLocked wakes every Results reader. j.mu must be held.
func (j *jobCore) broadcastLocked() {
	close(j.notify)
	j.notify = make(chan struct{})
}

// run dispatches batches until every task has a final result or the job is
// cancelled, then settles what is left and cleans up.
func (j *jobCore) run() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, j.ex.opts.Concurrency)
loop:
	for {
		select {
		case sem <- struct{}{}:
		case <-j.ctx.Done():
			break loop
		}
		batch, ok := j.nextBatch()
		if !ok {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.invoke(batch)
			<-sem
			j.signal()
		}()
	}
	wg.Wait()
	j.settle()
	if !j.spec.keepData && !j.ex.opts.KeepData {
		j.deleteObjects(j.ctx)
	}
	j.mu.Lock()
	j.ended = time.Now()
	j.broadcastLocked()
	j.mu.Unlock()
	close(j.done)
	j.cancel(nil)
}

// settle gives every task without a final result the job's error.
func (j *jobCore) settle() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.finished == j.spec.n {
		return
	}
	if j.jobErr == nil {
		cause := context.Cause(j.ctx)
		if cause == nil {
			cause = errors.New("fanout: job ended early")
		}
		j.jobErr = fmt.Errorf("fanout: job %s (%s) stopped with %d of %d tasks unfinished: %w",
			j.id, j.spec.fn.name, j.spec.n-j.finished, j.spec.n, cause)
	}
	for i := range j.tasks {
		t := &j.tasks[i]
		if t.state == stDone || t.state == stFailed {
			continue
		}
		j.failLocked(i, &TaskError{Index: i, Attempts: int(t.attempts), Message: j.jobErr.Error(), Err: j.jobErr, fromJob: true})
	}
	j.broadcastLocked()
}

// nextBatch waits until tasks are ready and takes a batch of them. It
// returns false when the job has ended or is cancelled.
func (j *jobCore) nextBatch() ([]int, bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		j.mu.Lock()
		if j.finished == j.spec.n || j.jobErr != nil {
			j.mu.Unlock()
			return nil, false
		}
		now := time.Now()
		for len(j.delayed) > 0 && !j.delayed[0].at.After(now) {
			j.retryQ = append(j.retryQ, heap.Pop(&j.delayed).(delayed).task)
		}
		if len(j.retryQ) > 0 || j.next < j.spec.n {
			b := j.takeBatchLocked()
			j.mu.Unlock()
			return b, true
		}
		var timerC <-chan time.Time
		if len(j.delayed) > 0 {
			d := j.delayed[0].at.Sub(now)
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			timerC = timer.C
		}
		j.mu.Unlock()
		select {
		case <-j.wake:
		case <-timerC:
		case <-j.ctx.Done():
			return nil, false
		}
	}
}

// takeBatchLocked takes the next batch: retries first (an isolated task
// alone), then tasks never sent, within the batch size and request budget.
func (j *jobCore) takeBatchLocked() []int {
	size := j.batchSizeLocked()
	budget := j.requestBudget()
	var used int64
	fits := func(i int) bool {
		if budget == 0 {
			return true
		}
		need := taskSlack + j.inlineSize(i)
		if used > 0 && used+need > budget {
			return false
		}
		used += need
		return true
	}
	var b []int
	for len(j.retryQ) > 0 && len(b) < size {
		i := j.retryQ[0]
		if j.tasks[i].isolate {
			if len(b) > 0 {
				break
			}
			j.retryQ = j.retryQ[1:]
			return []int{i}
		}
		if !fits(i) {
			return b
		}
		j.retryQ = j.retryQ[1:]
		b = append(b, i)
	}
	for j.next < j.spec.n && len(b) < size {
		if !fits(j.next) {
			break
		}
		b = append(b, j.next)
		j.next++
	}
	j.lastBatch = len(b)
	return b
}

func (j *jobCore) inlineSize(i int) int64 {
	if _, ok := j.stored[i]; ok {
		return 0
	}
	return j.offs[i+1] - j.offs[i]
}

// batchSizeLocked is Options.BatchSize, or the automatic size (see there).
func (j *jobCore) batchSizeLocked() int {
	if bs := j.ex.opts.BatchSize; bs > 0 {
		return bs
	}
	if !j.measured {
		return 1
	}
	remaining := j.spec.n - j.next + len(j.retryQ)
	balance := int(math.Ceil(float64(remaining) / float64(4*j.ex.opts.Concurrency)))
	perTask := math.Max(j.ewmaTask, 50)
	want := int(math.Ceil(overheadRatio * j.ewmaOverhead / perTask))
	return max(1, min(want, balance, maxAutoBatch))
}

// invoke sends one batch and takes in its reply.
func (j *jobCore) invoke(batch []int) {
	ex := j.ex
	req := wireRequest{
		Job: j.id, Func: j.spec.fn.name, Digest: j.spec.fn.digest, Prefix: j.prefix,
		ReplyLimit: int64(ex.limits.MaxResponseBytes), TaskTimeout: ex.opts.TaskTimeout,
		Parallel: ex.limits.Parallel, Flags: j.spec.flags, Tasks: make([]wireTask, len(batch)),
	}
	if ex.store != nil {
		req.Store = ex.store.URL()
	}
	now := time.Now().UnixNano()
	var inlineBytes int64
	j.mu.Lock()
	for k, i := range batch {
		t := &j.tasks[i]
		t.state = stRunning
		t.invoked = now
		wt := wireTask{Index: i, Attempt: int(t.attempts), Kind: j.spec.kind}
		t.attempts++
		if ref, ok := j.stored[i]; ok {
			wt.Key, wt.Off, wt.Len = ref.key, ref.off, ref.len
		} else {
			wt.Input = j.inline[j.offs[i]:j.offs[i+1]]
			inlineBytes += int64(len(wt.Input))
		}
		req.Tasks[k] = wt
	}
	j.mu.Unlock()

	var buf bytes.Buffer
	buf.Grow(int(inlineBytes) + len(batch)*taskSlack + 256)
	if err := encodeRequest(&buf, &req); err != nil {
		j.fail(batch, &TaskError{Message: fmt.Sprintf("encode request: %v", err), Err: err})
		return
	}
	ctx := j.ctx
	if ex.limits.InProcess && ex.store != nil {
		ctx = context.WithValue(ctx, driverStoreKey{}, ex.store)
	}
	if d := j.invokeTimeout(len(batch)); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	sent := time.Now()
	reply, err := ex.backend.Invoke(ctx, buf.Bytes())
	received := time.Now()
	j.mu.Lock()
	j.counters.invocations++
	j.counters.bytesSent += int64(buf.Len())
	j.counters.bytesReceived += int64(len(reply))
	j.mu.Unlock()
	if err != nil {
		if j.ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: no reply within %v: %w", backends.ErrWorkerLost, j.invokeTimeout(len(batch)), err)
		}
		j.invocationFailed(batch, err)
		return
	}
	r, err := decodeReply(reply)
	if err == nil && r.Spilled != "" {
		r, err = j.fetchSpilled(r.Spilled)
	}
	if err != nil {
		j.invocationFailed(batch, fmt.Errorf("%w: undecodable reply of %d bytes: %v", backends.ErrTransport, len(reply), err))
		return
	}
	if r.Err != nil {
		ierr := invocationError(r.Err)
		if errors.Is(ierr, ErrUnknownFunction) || errors.Is(ierr, ErrStaleWorker) || errors.Is(ierr, ErrMalformed) {
			j.abort(fmt.Errorf("fanout: job %s (%s): %w", j.id, j.spec.fn.signature, ierr))
			j.fail(batch, nil)
			return
		}
		j.invocationFailed(batch, fmt.Errorf("%w: %w", backends.ErrWorkerLost, ierr))
		return
	}
	j.takeReply(batch, r, sent, received)
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

func (j *jobCore) fetchSpilled(key string) (*wireReply, error) {
	b, err := j.ex.store.Get(j.ctx, key)
	j.mu.Lock()
	j.counters.storeReads++
	j.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("read spilled reply: %w", err)
	}
	return decodeReply(b)
}

// takeReply records the results of a reply. Output bytes are fetched from
// the store and decoded outside the lock.
func (j *jobCore) takeReply(batch []int, r *wireReply, sent, received time.Time) {
	pos := make(map[int]int, len(batch))
	for k, i := range batch {
		pos[i] = k
	}
	type outcome struct {
		i   int
		res *wireResult
		err *TaskError // final failure
		ok  bool       // value accepted
	}
	outs := make([]outcome, 0, len(r.Results))
	var work int64
	for k := range r.Results {
		res := &r.Results[k]
		if _, ok := pos[res.Index]; !ok {
			continue // not ours: ignore
		}
		delete(pos, res.Index) // a second result for the same task is ignored
		if res.End > res.Start {
			work += res.End - res.Start
		}
		o := outcome{i: res.Index, res: res}
		if res.Err == nil && j.spec.accept != nil {
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
				if err := j.spec.accept(res.Index, data); err != nil {
					o.err = &TaskError{Index: res.Index, Type: "decode", Message: fmt.Sprintf("decode output of %s: %v", j.spec.fn.signature, err)}
				} else {
					o.ok = true
				}
			}
		} else if res.Err == nil {
			o.ok = true
		}
		outs = append(outs, o)
	}

	j.mu.Lock()
	defer j.mu.Unlock()
	if len(batch) > 0 && work > 0 {
		runners := float64(max(1, min(j.ex.limits.Parallel, len(batch))))
		rtt := float64(received.Sub(sent).Nanoseconds())
		perTask := float64(work) / float64(len(r.Results))
		overhead := math.Max(rtt-float64(work)/runners, 0)
		j.observe(perTask, overhead)
	} else if len(batch) > 0 {
		j.observe(0, float64(received.Sub(sent).Nanoseconds()))
	}
	wid := j.workerLocked(r.Worker)
	if r.Cold {
		j.counters.coldStarts++
	}
	now := received.UnixNano()
	for _, o := range outs {
		t := &j.tasks[o.i]
		if t.state != stRunning {
			continue // already settled by another attempt
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
			j.logs[o.i] = o.res.Logs
		}
		if o.res.Key != "" {
			j.wrote = true
			if j.outRefs != nil {
				j.outRefs[o.i] = wireRange{Key: o.res.Key, Len: o.res.Len}
			}
		}
		switch {
		case o.ok:
			t.state = stDone
			j.finished++
			j.completed = append(j.completed, o.i)
		case o.err != nil:
			o.err.Attempts = int(t.attempts)
			o.err.Logs = o.res.Logs
			j.failLocked(o.i, o.err)
		default:
			we := o.res.Err
			if we.Code == codeStore || we.Code == codeCanceled {
				j.wrote = true
				we.Retryable = true
			}
			if we.Retryable && int(t.attempts) <= j.ex.opts.Retries && j.ctx.Err() == nil {
				j.retryLocked(o.i, 0, false, we.Message)
				continue
			}
			te := remoteError(o.i, int(t.attempts), we)
			te.Logs = o.res.Logs
			j.failLocked(o.i, te)
		}
	}
	// Tasks the reply did not mention were lost with the worker's state.
	for i := range pos {
		if j.tasks[i].state == stRunning {
			j.requeueOrFailLocked(i, fmt.Errorf("%w: the reply had no result for task %d", backends.ErrTransport, i), true)
		}
	}
	j.broadcastLocked()
}

func (j *jobCore) observe(perTask, overhead float64) {
	const alpha = 0.3
	if !j.measured {
		j.ewmaTask, j.ewmaOverhead, j.measured = perTask, overhead, true
		return
	}
	j.ewmaTask += alpha * (perTask - j.ewmaTask)
	j.ewmaOverhead += alpha * (overhead - j.ewmaOverhead)
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

// invocationFailed handles an Invoke error for every task of the batch.
func (j *jobCore) invocationFailed(batch []int, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.counters.failedInvocations++
	j.wrote = true // the worker may have written outputs before it failed
	if j.ctx.Err() != nil {
		// The job is ending; settle gives these tasks its error.
		for _, i := range batch {
			if j.tasks[i].state == stRunning {
				j.tasks[i].state = stPending
			}
		}
		return
	}
	throttled := errors.Is(err, backends.ErrThrottled)
	if throttled {
		j.counters.throttles++
	}
	for _, i := range batch {
		if j.tasks[i].state != stRunning {
			continue
		}
		if throttled {
			// The invocation did not run: it costs no attempt.
			j.tasks[i].attempts--
			j.retryLocked(i, backends.RetryAfter(err), false, err.Error())
			continue
		}
		j.requeueOrFailLocked(i, err, len(batch) > 1)
	}
	j.broadcastLocked()
}

// requeueOrFailLocked retries a task after an infrastructure failure, or
// fails it when it is not retryable or out of attempts.
func (j *jobCore) requeueOrFailLocked(i int, err error, isolate bool) {
	t := &j.tasks[i]
	if backends.Retryable(err) && int(t.attempts) <= j.ex.opts.Retries {
		j.retryLocked(i, 0, isolate, err.Error())
		return
	}
	j.failLocked(i, &TaskError{Index: i, Attempts: int(t.attempts), Type: fmt.Sprintf("%T", err), Message: err.Error(), Err: err})
}

// retryLocked puts a task back in the queue after a backoff with full jitter
// (at least retryAfter).
func (j *jobCore) retryLocked(i int, retryAfter time.Duration, isolate bool, why string) {
	t := &j.tasks[i]
	t.state = stPending
	t.isolate = t.isolate || isolate
	j.counters.retries++
	n := max(int(t.attempts), 1)
	ceiling := min(backoffCap, backoffBase<<min(n-1, 20))
	d := max(retryAfter, time.Duration(mrand.Int64N(int64(ceiling)+1)))
	heap.Push(&j.delayed, delayed{at: time.Now().Add(d), task: i})
	if j.counters.retries <= 10 || j.counters.retries%1000 == 0 {
		j.ex.opts.Logger.Warn("gowren: retrying task", "job", j.id, "func", j.spec.fn.name, "task", i,
			"attempt", t.attempts, "after", d.Round(time.Millisecond), "reason", why)
	}
}

// failLocked records a final failure.
func (j *jobCore) failLocked(i int, te *TaskError) {
	t := &j.tasks[i]
	t.state = stFailed
	te.Index = i
	if j.taskErrs == nil {
		j.taskErrs = map[int]*TaskError{}
	}
	j.taskErrs[i] = te
	j.finished++
	j.failedN++
	j.completed = append(j.completed, i)
	if !te.fromJob {
		j.ex.opts.Logger.Error("gowren: task failed", "job", j.id, "func", j.spec.fn.name, "task", i, "attempts", te.Attempts, "error", te.Error())
		for _, l := range te.Logs {
			j.ex.opts.Logger.Error("gowren: task log", "job", j.id, "task", i, "record", l.String())
		}
	}
}

// fail settles a batch with te (nil: leave them to settle, after abort).
func (j *jobCore) fail(batch []int, te *TaskError) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, i := range batch {
		if j.tasks[i].state != stRunning {
			continue
		}
		if te == nil {
			j.tasks[i].state = stPending
			continue
		}
		c := *te
		c.Attempts = int(j.tasks[i].attempts)
		j.failLocked(i, &c)
	}
	j.broadcastLocked()
}

// abort ends the job with err: nothing more is sent.
func (j *jobCore) abort(err error) {
	j.mu.Lock()
	if j.jobErr == nil {
		j.jobErr = err
	}
	j.mu.Unlock()
	j.cancel(err)
}

// deleteObjects removes the job's objects from the store.
func (j *jobCore) deleteObjects(ctx context.Context) {
	st := j.ex.store
	if st == nil || !j.wrote {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var keys []string
	for obj, err := range st.List(ctx, j.prefix) {
		if err != nil {
			j.ex.opts.Logger.Warn("gowren: list job objects for deletion", "job", j.id, "error", err)
			break
		}
		keys = append(keys, obj.Key)
	}
	if len(keys) == 0 {
		return
	}
	if err := st.Delete(ctx, keys...); err != nil {
		j.ex.opts.Logger.Warn("gowren: delete job objects", "job", j.id, "objects", len(keys), "error", err)
	}
}

// delayed is a task waiting for its backoff.
type delayed struct {
	at   time.Time
	task int
}

type delayQueue []delayed

func (q delayQueue) Len() int           { return len(q) }
func (q delayQueue) Less(a, b int) bool { return q[a].at.Before(q[b].at) }
func (q delayQueue) Swap(a, b int)      { q[a], q[b] = q[b], q[a] }
func (q *delayQueue) Push(x any)        { *q = append(*q, x.(delayed)) }
func (q *delayQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}
