package fanout

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/gowren/gowren/storage"
)

// Ramp limits how fast a job's invocations in flight may grow: at most Step
// at first and Step more every Interval, like the scaling rate of AWS Lambda
// (1,000 execution environments every 10 seconds). The zero Ramp sets no
// limit.
type Ramp struct {
	Step     int
	Interval time.Duration
}

// window is a job's limit on invocations in flight: an additive-increase,
// multiplicative-decrease congestion window driven by throttling, capped by
// Options.Concurrency and by the ramp. It is judged by rounds: a round ends
// when as many invocations as the window holds have ended, and the window is
// halved when more than throttleShare of the round's invocations were
// throttled. A platform cap C is thus found (past about 1.1 C the share goes
// over a tenth) while scattered throttles, which say nothing about the load,
// do not shrink the job to a trickle.
type window struct {
	max   float64
	cwnd  float64
	ramp  Ramp
	start time.Time
	// The current round.
	ended, throttles int
}

// throttleShare is the share of a round's invocations that must be
// throttled for the window to shrink.
const throttleShare = 0.1

func newWindow(max int, r Ramp, start time.Time) window {
	if r.Step <= 0 || r.Interval <= 0 {
		r = Ramp{}
	}
	return window{max: float64(max), cwnd: float64(max), ramp: r, start: start}
}

// limit returns the invocations allowed in flight now and, when the ramp is
// what limits, how long until it allows more.
func (w *window) limit(now time.Time) (int, time.Duration) {
	l := max(1, int(w.cwnd))
	if w.ramp.Step == 0 {
		return l, 0
	}
	steps := int(now.Sub(w.start)/w.ramp.Interval) + 1
	if ceil := steps * w.ramp.Step; ceil < l {
		next := w.start.Add(time.Duration(steps) * w.ramp.Interval)
		return ceil, next.Sub(now)
	}
	return l, 0
}

// throttled records a throttled invocation.
func (w *window) throttled() {
	w.ended++
	w.throttles++
	w.endRound()
}

// succeeded records an invocation that ran, growing the window by about one
// invocation per round.
func (w *window) succeeded() {
	w.ended++
	w.cwnd = math.Min(w.max, w.cwnd+1/w.cwnd)
	w.endRound()
}

// endRound halves the window as soon as the round's throttles exceed
// throttleShare of a round (no need to wait for its end: a hard cap shows at
// once), and starts a new round when the current one is complete.
func (w *window) endRound() {
	size := max(int(w.cwnd), 8)
	switch {
	case float64(w.throttles) > throttleShare*float64(size):
		w.cwnd = math.Max(1, w.cwnd/2)
	case w.ended < size:
		return
	}
	w.ended, w.throttles = 0, 0
}

// invocation is one batch in flight.
type invocation struct {
	tasks    []int
	attempts []int // wire attempt of each task
	tries    []int // TaskInfo.Attempt of each task
	backup   bool  // a speculative copy
	ctx      context.Context
	cancel   context.CancelFunc
	sent     time.Time
	key      string    // async: the object the reply goes to
	deadline time.Time // async: when silence means it was lost
	counted  bool      // still counted in j.inflight
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
	stopProgress := func() {}
	if w := j.ex.opts.Progress; w != nil {
		stop := make(chan struct{})
		var pwg sync.WaitGroup
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			j.showProgress(w, stop)
		}()
		stopProgress = func() { close(stop); pwg.Wait() }
	}
	if j.spec.async {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.poll()
		}()
	}
	pool := newSenders()
	var timer *time.Timer
	for {
		inv, wait, more := j.step(time.Now())
		if !more {
			break
		}
		if inv != nil {
			pool.do(inv, j.send)
			continue
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-j.wake:
		case <-timer.C:
		case <-j.ctx.Done():
		}
	}
	if timer != nil {
		timer.Stop()
	}
	// Copies still out (speculative losers, the job's end) are not wanted.
	j.mu.Lock()
	for inv := range j.live {
		inv.cancel()
	}
	j.mu.Unlock()
	j.cancel(errJobEnded)
	pool.close()
	wg.Wait()
	j.settle()
	stopProgress() // after settling, so that the last line is final
	if j.ex.opts.KeepData || j.spec.keepData {
		j.writeStats()
	} else {
		j.deleteObjects(j.ctx)
	}
	j.mu.Lock()
	j.ended = time.Now()
	j.mu.Unlock()
	if f := j.ex.opts.OnJobEnd; f != nil {
		f(j.stats())
	}
	j.mu.Lock()
	j.broadcastLocked()
	j.mu.Unlock()
	close(j.done)
}

// senders runs invocations on goroutines that stay for the job: an idle one
// takes the next invocation, and a new one starts only when none is idle.
// Reusing them saves growing a fresh goroutine's stack through the deep
// call chains of the cloud SDKs on every invocation.
type senders struct {
	work chan *invocation // unbuffered: a send succeeds only to an idle sender
	wg   sync.WaitGroup
}

func newSenders() *senders { return &senders{work: make(chan *invocation)} }

// do runs send(inv) on an idle sender or a new one.
func (s *senders) do(inv *invocation, send func(*invocation)) {
	select {
	case s.work <- inv:
		return
	default:
	}
	s.wg.Go(func() {
		send(inv)
		for inv := range s.work {
			send(inv)
		}
	})
}

// close waits for the senders to finish what they run and stop.
func (s *senders) close() {
	close(s.work)
	s.wg.Wait()
}

// errJobEnded cancels what is left of a job that has all its results.
var errJobEnded = errors.New("fanout: job ended")

// idleWait is how long the dispatcher sleeps when nothing can wake it
// sooner; wake-ups come through j.wake.
const idleWait = time.Hour

// step decides the dispatcher's next move: an invocation to send, or how long
// to wait. It returns more=false when the job is over.
func (j *jobCore) step(now time.Time) (inv *invocation, wait time.Duration, more bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.finished == j.spec.n || j.jobErr != nil || j.ctx.Err() != nil {
		return nil, 0, false
	}
	wait = idleWait
	for len(j.delayed) > 0 && !j.delayed[0].at.After(now) {
		j.retryQ = append(j.retryQ, heap.Pop(&j.delayed).(delayed).task)
	}
	if len(j.delayed) > 0 {
		wait = min(wait, j.delayed[0].at.Sub(now))
	}
	if j.spec.async {
		wait = min(wait, j.expireLocked(now))
	}
	if j.ex.opts.Speculation {
		wait = min(wait, j.speculateLocked(now))
	}
	if len(j.retryQ) == 0 && j.next >= j.spec.n {
		return nil, wait, true
	}
	limit, rampWait := j.window.limit(now)
	if j.inflight >= limit {
		if rampWait > 0 {
			wait = min(wait, rampWait)
		}
		return nil, wait, true
	}
	batch, backup := j.takeBatchLocked()
	if len(batch) == 0 {
		return nil, wait, true
	}
	return j.newInvocationLocked(batch, backup, now), 0, true
}

// newInvocationLocked marks the batch's tasks as sent.
func (j *jobCore) newInvocationLocked(batch []int, backup bool, now time.Time) *invocation {
	inv := &invocation{tasks: batch, attempts: make([]int, len(batch)), tries: make([]int, len(batch)), backup: backup, sent: now, counted: true}
	inv.ctx, inv.cancel = context.WithCancel(j.ctx)
	ns := now.UnixNano()
	for k, i := range batch {
		t := &j.tasks[i]
		t.state = stRunning
		t.copies++
		t.invoked = ns
		inv.attempts[k] = int(t.sent)
		inv.tries[k] = t.attempts() // copies before this one that may have run
		t.sent++
		t.queued = false // whatever queued it, this send serves it
		if backup {
			t.backups++
		} else {
			t.tries++
		}
	}
	if j.spec.async {
		inv.key = outputKey(j.prefix, batch[0], inv.attempts[0])
	}
	j.inflight++
	j.tasksInFlight += len(batch)
	j.counters.peakInFlight = max(j.counters.peakInFlight, j.inflight)
	j.live[inv] = struct{}{}
	return inv
}

// takeBatchLocked takes the next batch: a speculative backup or an isolated
// retry alone, else retries and then tasks never sent, within the batch size
// and the request budget.
func (j *jobCore) takeBatchLocked() (batch []int, backup bool) {
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
	for len(j.retryQ) > 0 && len(batch) < size {
		i := j.retryQ[0]
		t := &j.tasks[i]
		if t.state != stPending && !(t.state == stRunning && t.queued) {
			j.retryQ = j.retryQ[1:] // settled meanwhile, or a stale entry
			continue
		}
		alone := t.isolate || t.state == stRunning
		if alone {
			if len(batch) > 0 {
				return batch, false
			}
			j.retryQ = j.retryQ[1:]
			return []int{i}, t.state == stRunning
		}
		if !fits(i) {
			return batch, false
		}
		j.retryQ = j.retryQ[1:]
		batch = append(batch, i)
	}
	for j.next < j.spec.n && len(batch) < size {
		if j.tasks[j.next].state != stPending {
			j.next++ // settled by Attach before it was ever sent
			continue
		}
		if !fits(j.next) {
			break
		}
		batch = append(batch, j.next)
		j.next++
	}
	if len(batch) > 0 {
		j.lastBatch = len(batch)
	}
	return batch, false
}

// batchSizeLocked is Options.BatchSize, or the automatic size. Until
// replies have been measured it is 1. Then, with t the measured time of a
// task and o the overhead of an invocation, it picks the size B that
// minimizes the estimated time to finish what remains, rounds x (B t + o),
// where rounds = ceil(remaining / (B x slots)), preferring the smallest B
// within 1% of the best: batching pays only where the overhead is a real
// share of the work, and small batches keep stragglers and failures cheap.
// Long tasks thus go one per invocation unless invoking costs several
// percent of a task; tiny ones go in large batches.
func (j *jobCore) batchSizeLocked() int {
	if bs := j.ex.opts.BatchSize; bs > 0 {
		return bs
	}
	if !j.measured {
		return 1
	}
	now := time.Now()
	task := math.Max(j.ewmaTask, 1)
	// The work left: the tasks not sent yet, plus the tasks' worth of work
	// the invocations in flight still hold their slots for, so that a batch
	// just sent counts in full and one about to end counts for little.
	remaining := float64(j.spec.n - j.next + len(j.retryQ))
	runners := max(1, j.ex.limits.Parallel)
	for inv := range j.live {
		rounds := (len(inv.tasks) + runners - 1) / runners
		left := float64(rounds)*task - float64(now.Sub(inv.sent))
		if left > 0 {
			remaining += left / task * float64(min(runners, len(inv.tasks)))
		}
	}
	slots, _ := j.window.limit(now)
	return bestBatch(int(math.Ceil(remaining)), slots, task, j.overhead)
}

// bestBatch is the batch-size rule of batchSizeLocked.
func bestBatch(remaining, slots int, task, overhead float64) int {
	if remaining <= 0 || slots <= 0 {
		return 1
	}
	cost := func(b int) float64 {
		rounds := (remaining + b*slots - 1) / (b * slots)
		return float64(rounds) * (float64(b)*task + overhead)
	}
	// The candidates are the smallest sizes giving each number of rounds.
	var sizes []int
	for k := 1; ; {
		b := (remaining + k*slots - 1) / (k * slots)
		if b <= maxAutoBatch {
			sizes = append(sizes, b)
		}
		if b == 1 {
			break
		}
		// Next k whose size is smaller.
		k = (remaining + (b-1)*slots - 1) / ((b - 1) * slots)
		if k <= 0 {
			break
		}
	}
	if len(sizes) == 0 {
		return maxAutoBatch
	}
	best := math.Inf(1)
	for _, b := range sizes {
		best = math.Min(best, cost(b))
	}
	pick := maxAutoBatch
	for _, b := range sizes {
		if cost(b) <= 1.01*best && b < pick {
			pick = b
		}
	}
	return max(1, pick)
}

// observe records the per-task time and the overhead of an invocation. The
// task time is a moving average; the overhead is the median of the last
// overheadSamples invocations, because a few stragglers or cold starts
// would drag an average far from the typical cost.
func (j *jobCore) observe(perTask, overhead float64) {
	const alpha = 0.3
	if len(j.overheads) < overheadSamples {
		j.overheads = append(j.overheads, overhead)
	} else {
		j.overheads[j.nextOverhead] = overhead
		j.nextOverhead = (j.nextOverhead + 1) % overheadSamples
	}
	j.overhead = medianOf(j.overheads, &j.medianBuf)
	if !j.measured {
		j.ewmaTask, j.measured = perTask, true
		return
	}
	j.ewmaTask += alpha * (perTask - j.ewmaTask)
}

// overheadSamples is how many recent invocation overheads are kept.
const overheadSamples = 64

// releaseLocked ends an invocation: its copies leave their tasks, and the
// tasks it leaves without a result or another copy go back to the queue.
// lost says why such tasks had no result.
func (j *jobCore) releaseLocked(inv *invocation, lost error) {
	if _, ok := j.live[inv]; !ok {
		return
	}
	delete(j.live, inv)
	j.tasksInFlight -= len(inv.tasks)
	if inv.key != "" {
		delete(j.outstanding, inv.key)
	}
	if inv.counted {
		inv.counted = false
		j.inflight--
	}
	inv.cancel()
	for _, i := range inv.tasks {
		t := &j.tasks[i]
		if t.copies > 0 {
			t.copies--
		}
		if t.state == stRunning && t.copies == 0 && lost != nil {
			j.requeueOrFailLocked(i, lost, len(inv.tasks) > 1)
		}
	}
}

// requeueOrFailLocked retries a task after an infrastructure failure, or
// fails it when the failure is not retryable or its retries are spent.
func (j *jobCore) requeueOrFailLocked(i int, err error, isolate bool) {
	t := &j.tasks[i]
	if retryableInfra(err) && int(t.tries) <= j.ex.opts.Retries {
		j.retryLocked(i, 0, isolate, false, err.Error())
		return
	}
	j.noteLocked(i, err.Error())
	j.failLocked(i, &TaskError{Index: i, Attempts: t.attempts(), Type: fmt.Sprintf("%T", err), Message: err.Error(), Err: err}, nil)
}

// retryLocked puts a task back in the queue after a backoff with full jitter
// (at least retryAfter), exponential in the task's failed and throttled
// sends. A throttled task is not counted as a retry, nor
// noted in its history: it never ran.
func (j *jobCore) retryLocked(i int, retryAfter time.Duration, isolate, throttled bool, why string) {
	t := &j.tasks[i]
	if !throttled {
		j.noteLocked(i, why)
		j.counters.retries++
	}
	t.state = stPending
	t.isolate = t.isolate || isolate
	d := max(retryAfter, time.Duration(mrand.Int64N(int64(backoffCeiling(t))+1)))
	heap.Push(&j.delayed, delayed{at: time.Now().Add(d), task: i})
	if !throttled && (j.counters.retries <= 10 || j.counters.retries%1000 == 0) {
		j.ex.opts.Logger.Warn("gowren: retrying task", "job", j.id, "func", j.spec.fn.name, "task", i,
			"attempts", t.attempts(), "after", d.Round(time.Millisecond), "reason", why)
	}
}

// backoffCeiling bounds the jittered backoff of t's next send: doubling
// from backoffBase with every failed send, and with every throttled one too
// (those do not count against Retries), so that a platform that keeps
// refusing without a retry-after is not hammered; at most backoffCap.
func backoffCeiling(t *taskRec) time.Duration {
	n := max(int(t.tries)+int(t.throttled), 1)
	return min(backoffCap, backoffBase<<min(n-1, 20))
}

// noteLocked records why an attempt of task i failed, for its TaskError.
func (j *jobCore) noteLocked(i int, why string) {
	const maxHistory = 16
	if j.history == nil {
		j.history = map[int][]string{}
	}
	h := j.history[i]
	if len(h) < maxHistory {
		j.history[i] = append(h, fmt.Sprintf("attempt %d: %s", len(h)+1, why))
		if j.failedTries == nil {
			j.failedTries = map[int][]FailedTry{}
		}
		j.failedTries[i] = append(j.failedTries[i], FailedTry{Sent: unixTime(j.tasks[i].invoked), Failed: time.Now(), Reason: why})
	}
}

// doneLocked records a result.
func (j *jobCore) doneLocked(i int, own *invocation) {
	j.tasks[i].state = stDone
	j.finished++
	j.completed = append(j.completed, i)
	j.cancelLosersLocked(i, own)
}

// failLocked records a final failure.
func (j *jobCore) failLocked(i int, te *TaskError, own *invocation) {
	t := &j.tasks[i]
	t.state = stFailed
	te.Index = i
	if len(te.History) == 0 {
		te.History = j.history[i]
	}
	if j.taskErrs == nil {
		j.taskErrs = map[int]*TaskError{}
	}
	j.taskErrs[i] = te
	j.finished++
	j.failedN++
	j.completed = append(j.completed, i)
	j.cancelLosersLocked(i, own)
	if !te.fromJob {
		j.ex.opts.Logger.Error("gowren: task failed", "job", j.id, "func", j.spec.fn.name, "task", i, "attempts", te.Attempts, "error", te.Error())
		for _, l := range te.Logs {
			j.ex.opts.Logger.Error("gowren: task log", "job", j.id, "task", i, "record", l.String())
		}
	}
}

// cancelLosersLocked cancels the invocations left with nothing to do once
// task i settled while another copy of it was out. own is the invocation
// that delivered the outcome, if any: its copy is not another one.
func (j *jobCore) cancelLosersLocked(i int, own *invocation) {
	others := int(j.tasks[i].copies)
	if _, live := j.live[own]; live {
		others-- // the outcome came through own, which holds a copy of i
	}
	if others <= 0 {
		return
	}
	for inv := range j.live {
		if !inv.has(i) {
			continue
		}
		settled := true
		for _, k := range inv.tasks {
			if s := j.tasks[k].state; s != stDone && s != stFailed {
				settled = false
				break
			}
		}
		if settled {
			// A synchronous copy is cancelled; an asynchronous one runs
			// on but no longer counts against the window.
			j.releaseLocked(inv, nil)
		}
	}
}

func (inv *invocation) has(i int) bool {
	for _, k := range inv.tasks {
		if k == i {
			return true
		}
	}
	return false
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
		if cause == nil || cause == errJobEnded {
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
		j.failLocked(i, &TaskError{Index: i, Attempts: t.attempts(), Message: j.jobErr.Error(), Err: j.jobErr, fromJob: true}, nil)
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
	j.mu.Lock()
	j.counters.storeLists += storage.ListRequests(len(keys))
	j.counters.storeDeletes += storage.DeleteRequests(len(keys))
	j.mu.Unlock()
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
