package fanout

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/internal/layout"
	"github.com/gowren/gowren/storage"
)

// The dispatcher. One goroutine per job (run) owns the task table, the
// window, the batch sizer, the delay queue, speculation and the async
// poller's bookkeeping. Everything else only does I/O and posts events:
// senders make the invocations, readers read reply objects, the lister lists
// the reply prefix. Results, Stats and the progress display read what the
// dispatcher publishes. Time comes from the executor's clock.

// evKind says what an event reports.
type evKind uint8

const (
	evReply    evKind = iota // results of an invocation: a part, or its reply (final)
	evFailed                 // the call failed without a reply
	evAccepted               // async: the platform took the invocation
	evAcked                  // async on a backend without it: the reply is in the store
	evRead                   // a reply object was read
	evListed                 // the reply prefix was listed
	evKids                   // an invoker answered for its children, or failed
)

// event is what an I/O goroutine posts to the dispatcher. terminal marks the
// last event of an I/O operation.
type event struct {
	kind     evKind
	terminal bool
	inv      *invocation
	at       int64 // driver clock

	results []taskResult
	ri      replyInfo
	final   bool
	busy    [2]int64 // worker clock: first start and last end of the results
	work    int64    // sum of the results' run times
	err     error    // the call failed (evFailed), or the read (evRead, evListed)
	ierr    error    // the worker failed the invocation as a whole

	// Accounting.
	bytesSent, bytesReceived  int64
	storeReads, storeLists    int
	workerReads, workerWrites int

	// An invoker's children (evKids), with their outcomes: a nil error
	// for a child started.
	kids    []*invocation
	kidErrs []error

	// Async.
	key  string
	size int64
	objs []storage.ObjectInfo
	// A bundle read (evRead): one part per reply in it, each with its
	// key, results or ierr, or err when it cannot be decoded.
	parts []event
}

// counters are the job's counts, owned by the dispatcher.
type counters struct {
	throttles, invocations, failedInvocations, coldStarts int
	invokers, viaTree                                     int
	peakInFlight                                          int
	bytesSent, bytesReceived                              int64
	storeReads, storeWrites, storeLists                   int
	workerReads, workerWrites                             int
	taskTime, billed                                      time.Duration
}

// snapshot is what the dispatcher publishes for other goroutines: the tasks
// settled so far, in order, and the counts the progress display shows.
// next is closed when a newer snapshot replaces it.
type snapshot struct {
	completed []int
	workerIDs []string
	done      int
	failed    int // stopped included
	stopped   int // settled by the job's end, with no result of their own
	inWorker  int
	inBatch   int
	retries   int
	ended     bool
	next      chan struct{}
}

// Async polling of the reply prefix: fast while replies arrive, backing
// off to pollMax while none do; at most ioParallel reads or lists at once.
const (
	pollMin    = 20 * time.Millisecond
	pollMax    = time.Second
	ioParallel = 64
	// stopGrace bounds how long a stopping job waits for the I/O still
	// out (the last replies, their outputs) before giving up on it.
	stopGrace = 30 * time.Second
)

// errJobEnded cancels what is left of a job that has all its results.
var errJobEnded = errors.New("fanout: job ended")

// run is the dispatcher: it sends batches until every task has settled or
// the job stops, takes in the results, then settles what is left, cleans up
// and closes done.
func (j *jobCore) run() {
	defer close(j.done)
	stopProgress := j.startProgress()
	stopLease := func() {}
	if j.leased {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { j.keepLease(stop) })
		stopLease = func() { close(stop); wg.Wait() }
	}
	timer := j.clock.NewTimer()
	defer timer.Stop()
	stopping := j.ctx.Done()
	var graceC <-chan time.Time
	for {
		now := j.now()
		j.fire(now)
		j.dispatch(now)
		j.publish(false)
		if j.over(now) {
			break
		}
		if wait := j.nextWake(now); wait < time.Hour {
			timer.Set(time.Unix(0, now).Add(wait))
		} else {
			timer.Stop()
		}
		select {
		case ev := <-j.events:
			j.handle(ev)
		more:
			for range 256 { // take what else is there before deciding
				select {
				case ev := <-j.events:
					j.handle(ev)
				default:
					break more
				}
			}
		case <-timer.C():
		case <-stopping:
			stopping = nil
			j.beginStop()
			g := time.NewTimer(stopGrace)
			defer g.Stop()
			graceC = g.C
		case <-graceC:
			graceC = nil
			j.graceOver = true
			j.ioCancel() // the reads still out give up
		case reply := <-j.statsReq:
			reply <- j.stats()
		}
	}
	j.finish()
	close(j.loopDone)
	stopProgress()
	stopLease()
	j.cleanup()
	j.publish(true) // Results ends after the cleanup
}

// now reads the clock as Unix nanoseconds.
func (j *jobCore) now() int64 { return j.clock.Now().UnixNano() }

// post hands an event to the dispatcher; once it is done, events are
// dropped.
func (j *jobCore) post(ev event) {
	select {
	case j.events <- ev:
	case <-j.loopDone:
	}
}

// handle applies one event.
func (j *jobCore) handle(ev event) {
	if ev.terminal {
		j.busy--
	}
	c := &j.counters
	c.bytesSent += ev.bytesSent
	c.bytesReceived += ev.bytesReceived
	c.storeReads += ev.storeReads
	c.storeLists += ev.storeLists
	c.workerReads += ev.workerReads
	c.workerWrites += ev.workerWrites
	inv := ev.inv
	switch ev.kind {
	case evReply:
		if ev.ierr != nil {
			j.replyError(inv, ev.ierr, ev.at)
		} else {
			j.takeResults(inv, ev)
		}
	case evRead:
		j.readDone(ev)
		if ev.err != nil {
			break
		}
		j.wrote = true
		if ev.parts == nil {
			j.takeRead(ev)
			break
		}
		for _, p := range ev.parts {
			if p.err != nil {
				j.ex.opts.Logger.Warn("gowren: unreadable reply in a bundle", "job", j.id, "bundle", ev.key, "key", p.key, "error", p.err)
				continue
			}
			p.at = ev.at
			j.takeRead(p)
		}
	case evFailed:
		j.failed(inv, ev.err, ev.at)
	case evAccepted:
		j.wrote = true
		if !inv.ended && !inv.accepted {
			j.ran(inv)
			j.accept(inv, ev.at+int64(j.asyncDeadline(len(inv.tasks))))
		}
	case evAcked:
		j.wrote = true
		if !inv.ended {
			j.queueRead(inv.key, anySize)
		}
	case evListed:
		j.listing = false
		j.listed(ev)
	case evKids:
		j.wrote = true
		if len(ev.kids) > 0 && ev.kids[0].collected {
			j.nextPoll = 0 // what its invoker wrote is there now
		}
		j.kidsStarted(ev)
	}
	j.drain(ev.at)
}

// takeRead applies a reply read from the store, alone or in a bundle, to
// the copy whose key it has.
func (j *jobCore) takeRead(ev event) {
	inv := j.t.byKey[ev.key]
	ev.final = true
	if ev.ierr != nil {
		if inv != nil {
			j.replyError(inv, ev.ierr, ev.at)
		}
		return
	}
	j.takeResults(inv, ev)
}

// takeResults applies the results of a reply, a part of one, or a reply
// object.
func (j *jobCore) takeResults(inv *invocation, ev event) {
	t := j.t
	c := &j.counters
	for k := range ev.results {
		r := &ev.results[k]
		if r.err == nil && r.end > r.start {
			j.sz.observeTask(float64(r.end - r.start))
			c.taskTime += time.Duration(r.end - r.start)
		}
		if r.outKey != "" {
			j.wrote = true
		}
	}
	if inv != nil && !inv.ended {
		if ev.busy[0] > 0 && (inv.first == 0 || ev.busy[0] < inv.first) {
			inv.first = ev.busy[0]
		}
		inv.last = max(inv.last, ev.busy[1])
		inv.work += ev.work
		if ev.final {
			if ev.ri.cold {
				c.coldStarts++
			}
			c.billed += busyTime(inv.first, inv.last)
			j.ran(inv)
			if len(ev.results) > 0 || inv.work > 0 {
				runners := float64(max(1, min(j.ex.limits.Parallel, len(inv.tasks))))
				rtt := float64(ev.at - inv.sent)
				j.sz.observeInvocation(rtt - float64(inv.work)/runners)
				j.spc.observe(inv, ev.at, max(1, j.ex.limits.Parallel))
				if j.specNext > ev.at+int64(time.Minute) {
					j.specNext = 0 // it was waiting for samples
				}
			}
		}
	} else if ev.final && ev.ri.cold {
		c.coldStarts++
	}
	t.reply(inv, ev.ri, ev.results, ev.final, ev.at)
	j.dirty = true
}

// busyTime is how long a worker was busy with a batch, rounded up to a
// millisecond as Lambda bills it.
func busyTime(first, last int64) time.Duration {
	if first == 0 || last <= first {
		return 0
	}
	d := time.Duration(last - first)
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

// failed handles a call that ended without a reply.
func (j *jobCore) failed(inv *invocation, err error, at int64) {
	t := j.t
	throttled := errors.Is(err, backends.ErrThrottled)
	if throttled {
		j.counters.throttles++ // the platform refused it, wanted or not
		j.lastThrottle = err
	}
	if inv.ended {
		return // released already: a loser, or the job ended
	}
	j.dirty = true
	m := &j.mem[inv.member]
	if throttled {
		if inv.round >= 0 {
			m.win.outcome(inv.round, true)
			inv.round = -1
		}
		// Its slot stays taken (see ran): under a platform cap, a slot
		// freed by a bounce would send task after task into the full
		// platform.
		m.held = min(m.held+1, j.t.n)
		t.throttled(inv, backends.RetryAfter(err), at)
		return
	}
	j.ran(inv)
	if t.stopping || errors.Is(err, context.Canceled) && j.ctx.Err() != nil {
		t.release(inv, at)
		return
	}
	j.wrote = true // the worker may have written outputs before it failed
	j.counters.failedInvocations++
	if !backends.Retryable(err) && !errors.Is(err, errEncode) {
		// Not a fault of these tasks: the platform refuses the call
		// itself (no such function, bad credentials, a closed backend).
		// Every invocation would fail the same way, so the job stops
		// with one error instead of one per task; in a job over several
		// members, only that member stops.
		t.release(inv, at)
		j.refused(inv.member, fmt.Errorf("fanout: job %s (%s): invoke: %w", j.id, j.spec.fn.signature, err))
		return
	}
	t.lost(inv, err, at)
	j.specNext = 0 // a backup that failed may leave a straggler alone again
}

// replyError handles a reply that fails the invocation as a whole. An
// unknown function, a stale worker or a malformed request would fail every
// invocation the same way: the job stops with one error.
func (j *jobCore) replyError(inv *invocation, ierr error, at int64) {
	if failsEveryInvocation(ierr) {
		err := fmt.Errorf("fanout: job %s (%s): %w", j.id, j.spec.fn.signature, ierr)
		if inv == nil || len(j.mem) == 1 {
			j.abort(err)
			return
		}
		if !inv.ended {
			j.ran(inv)
			j.t.release(inv, at)
		}
		j.refused(inv.member, err)
		return
	}
	if inv != nil {
		if errors.Is(ierr, errKid) {
			j.failed(inv, ierr, at) // classified by the invoker: a throttle, a loss or a refusal
			return
		}
		j.failed(inv, fmt.Errorf("%w: %w", backends.ErrWorkerLost, ierr), at)
	}
}

// ran records that a send of round ran (was not throttled): an invocation
// ended, and the capacity it used is free. The task that bounced first
// takes it now, not when its backoff ends (a platform cap otherwise leaves
// the unlucky tasks of a job sleeping in backoff while the platform idles),
// and the slots throttles hold stay held. With no task waiting, one held
// slot is let go: the job probes for more capacity one send per
// invocation that ends.
func (j *jobCore) ran(inv *invocation) {
	if inv.round < 0 {
		return
	}
	m := &j.mem[inv.member]
	m.win.outcome(inv.round, false)
	inv.round = -1
	for len(j.bounced) > 0 {
		d := j.bounced[0]
		j.bounced[0] = delayed{}
		j.bounced = j.bounced[1:]
		if j.t.due(d) {
			return
		}
	}
	if m.held > 0 {
		m.held--
	}
}

// refused stops sending to member k, which refuses the job for good, with
// err; the job stops with err when no member is left (at once when it has
// one backend). The member's error is logged once, naming the member with
// its String method when its backend has one (fmt.Stringer).
func (j *jobCore) refused(k int, err error) {
	m := &j.mem[k]
	if m.dead != nil {
		return
	}
	if name, ok := m.b.(fmt.Stringer); ok && len(j.mem) > 1 {
		// Name the member (such as the Lambda function of a shard), since
		// a worker's reply does not say where it ran.
		err = fmt.Errorf("backend member %d, %s: %w", k, name.String(), err)
	}
	m.dead = err
	j.memLive--
	if j.memLive == 0 {
		if len(j.mem) == 1 {
			j.abort(err)
			return
		}
		errs := make([]error, len(j.mem))
		for k := range j.mem {
			errs[k] = j.mem[k].dead
		}
		j.abort(fmt.Errorf("fanout: job %s: every backend member refused it: %w", j.id, errors.Join(errs...)))
		return
	}
	j.ex.opts.Logger.Warn("gowren: a backend member refuses the job; the others go on", "job", j.id, "member", k, "error", err)
}

// releaseHeld lets go of one slot a throttle held, of the member holding
// the most.
func (j *jobCore) releaseHeld() {
	best := -1
	for k := range j.mem {
		if j.mem[k].held > 0 && (best < 0 || j.mem[k].held > j.mem[best].held) {
			best = k
		}
	}
	if best >= 0 {
		j.mem[best].held--
	}
}

// errEncode marks an invocation whose request could not be encoded: its
// tasks fail, the job goes on.
var errEncode = errors.New("encode request")

// abort stops the job with err: nothing more is sent, and the tasks without
// an outcome get err.
func (j *jobCore) abort(err error) {
	if j.jobErr == nil {
		j.jobErr = err
	}
	j.cancel(err)
}

// drain carries out the table's decisions.
func (j *jobCore) drain(now int64) {
	t := j.t
	o := &t.out
	for _, d := range o.delay {
		heap.Push(&j.delays, d)
		if d.throttled {
			j.bounced = append(j.bounced, d)
		}
	}
	for _, inv := range o.cancel {
		j.releaseLoser(inv, now)
	}
	log := j.ex.opts.Logger
	for _, r := range o.retried {
		if t.retries <= 10 || t.retries%1000 == 0 {
			log.Warn("gowren: retrying task", "job", j.id, "func", j.spec.fn.name, "task", r.task,
				"attempts", r.attempts, "after", r.after.Round(time.Millisecond), "reason", r.why)
		}
	}
	for _, i := range o.failed {
		te := t.extra[i].err
		log.Error("gowren: task failed", "job", j.id, "func", j.spec.fn.name, "task", i, "attempts", te.Attempts, "error", te.Error())
		for _, l := range te.Logs {
			log.Error("gowren: task log", "job", j.id, "task", i, "record", l.String())
		}
	}
	if o.abort != nil {
		j.abort(o.abort)
	}
	o.reset()
	// Senders skip decoding outputs of tasks that settled.
	for ; j.hinted < len(t.completed); j.hinted++ {
		i := t.completed[j.hinted]
		j.settledBits[i/64].Or(1 << (i % 64))
	}
}

// releaseLoser ends a copy whose tasks all settled through others: a
// synchronous one is cancelled, an asynchronous one no longer counts.
func (j *jobCore) releaseLoser(inv *invocation, now int64) {
	if inv.ended {
		return
	}
	j.ran(inv)
	if inv.cancel != nil {
		inv.cancel()
	}
	j.t.release(inv, now)
}

// isSettled reports, to any goroutine, whether task i has settled (a hint:
// false may be stale).
func (j *jobCore) isSettled(i int) bool {
	return j.settledBits[i/64].Load()&(1<<(i%64)) != 0
}

// fire makes due retries ready and expires overdue async invocations.
func (j *jobCore) fire(now int64) {
	for len(j.delays) > 0 && j.delays[0].at <= now {
		d := heap.Pop(&j.delays).(delayed)
		if j.t.due(d) && d.throttled {
			j.releaseHeld() // the slot a throttle held goes to the retry
		}
	}
	if j.spec.viaStore && !j.t.stopping {
		for len(j.expiries) > 0 && j.expiries[0].at <= now {
			e := heap.Pop(&j.expiries).(expiry)
			if !e.current() {
				continue // answered, or accepted again since
			}
			inv := e.inv
			j.counters.failedInvocations++
			j.dirty = true
			j.t.lost(inv, fmt.Errorf("%w: no reply object %q within %v", backends.ErrWorkerLost, inv.key,
				time.Duration(inv.deadline-inv.sent).Round(time.Second)), now)
			j.drain(now)
		}
	}
	if j.spec.viaStore && j.shouldList(now) {
		j.startList(now)
	}
	if j.ex.opts.Speculation && !j.t.stopping && now >= j.specNext {
		j.specNext = now + int64(j.spc.check(j.t, now, j.limit(now)-j.t.inflight, max(1, j.ex.limits.Parallel)))
	}
}

// expiry is an accepted async invocation's deadline, in the dispatcher's
// queue of them.
type expiry struct {
	at  int64
	inv *invocation
}

// current reports whether e is still its invocation's deadline: not
// answered, nor accepted again since.
func (e expiry) current() bool { return !e.inv.ended && e.inv.accepted && e.inv.deadline == e.at }

// expiryQueue is a min-heap of deadlines. An entry whose invocation ended
// or got another deadline is dropped when it comes up.
type expiryQueue []expiry

func (q expiryQueue) Len() int           { return len(q) }
func (q expiryQueue) Less(a, b int) bool { return q[a].at < q[b].at }
func (q expiryQueue) Swap(a, b int)      { q[a], q[b] = q[b], q[a] }
func (q *expiryQueue) Push(x any)        { *q = append(*q, x.(expiry)) }
func (q *expiryQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = expiry{}
	*q = old[:len(old)-1]
	return e
}

// accept marks an async invocation accepted by its platform, overdue after
// deadline.
func (j *jobCore) accept(inv *invocation, deadline int64) {
	j.t.accept(inv, deadline)
	if inv.accepted && inv.deadline == deadline {
		heap.Push(&j.expiries, expiry{at: deadline, inv: inv})
		if !inv.collected { // in the queue since it was sent
			heap.Push(&j.awaited, inv)
		}
	}
}

// awaitedQueue holds the copies whose replies the store brings (accepted,
// or sent through an invoker that collects), lowest first task first; an
// entry whose copy ended is stale, and dropped when it comes to the top.
type awaitedQueue []*invocation

func (q awaitedQueue) Len() int           { return len(q) }
func (q awaitedQueue) Less(a, b int) bool { return q[a].tasks[0] < q[b].tasks[0] }
func (q awaitedQueue) Swap(a, b int)      { q[a], q[b] = q[b], q[a] }
func (q *awaitedQueue) Push(x any)        { *q = append(*q, x.(*invocation)) }
func (q *awaitedQueue) Pop() any {
	old := *q
	inv := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return inv
}

// lowestAwaited returns the awaited copy with the lowest first task, nil
// when none is, dropping stale entries on the way.
func (j *jobCore) lowestAwaited() *invocation {
	for len(j.awaited) > 0 {
		if inv := j.awaited[0]; !inv.ended && (inv.accepted || inv.collected) {
			return inv
		}
		heap.Pop(&j.awaited)
	}
	return nil
}

// nextExpiry returns the earliest deadline of an accepted invocation still
// waiting for its reply, dropping stale entries on the way.
func (j *jobCore) nextExpiry() (int64, bool) {
	for len(j.expiries) > 0 {
		if e := j.expiries[0]; e.current() {
			return e.at, true
		}
		heap.Pop(&j.expiries)
	}
	return 0, false
}

// nextWake returns how long the dispatcher may sleep: until the next retry
// is due, an async reply overdue, the next poll, speculation's next look or
// the ramp's next step.
func (j *jobCore) nextWake(now int64) time.Duration {
	wait := time.Hour
	at := func(t int64) {
		wait = min(wait, max(time.Duration(t-now), 0))
	}
	if len(j.delays) > 0 {
		at(j.delays[0].at)
	}
	if j.spec.viaStore && !j.t.stopping {
		if e, ok := j.nextExpiry(); ok {
			at(e)
		}
		if j.pollWanted() && !j.listing {
			at(j.nextPoll)
		}
	}
	if j.ex.opts.Speculation && !j.t.stopping && len(j.t.live) > 0 {
		at(j.specNext)
	}
	if j.rampWait > 0 {
		wait = min(wait, j.rampWait)
	}
	return wait
}

// dispatch sends batches while the window has room.
func (j *jobCore) dispatch(now int64) {
	t := j.t
	j.rampWait = 0
	if t.stopping {
		return
	}
	budget := j.requestBudget()
	var key func(int, int) string
	if j.spec.viaStore {
		key = j.keys.Output
	}
	if j.tree > 0 {
		defer j.sendRounds()
	}
	for {
		k, limit := j.pick(now)
		if k < 0 {
			return
		}
		size := j.sz.size(t.waiting(), limit)
		inv := t.takeFor(k, size, budget, j.need, now, key)
		if inv == nil {
			return
		}
		inv.round = j.mem[k].win.sent()
		j.counters.invocations++
		j.counters.peakInFlight = max(j.counters.peakInFlight, t.inflight)
		j.lastBatch = len(inv.tasks)
		j.dirty = true
		if m := &j.mem[k]; m.nested {
			m.round = append(m.round, inv) // sent below, through invokers
		} else {
			j.sendDirect(inv)
		}
		if j.ex.opts.Speculation && !inv.backup && limit-t.inflight > t.waiting() {
			// The tail, with slots to spare: a task sent again after a
			// failure gets a backup at once, so that one more failure
			// does not cost the job another round.
			for k, i := range inv.tasks {
				if inv.tries[k] > 0 && t.tasks[i].backups < specMaxBackups {
					t.askBackup(i)
				}
			}
		}
	}
}

// sendDirect has a sender make invocation inv, with a context of its own
// that releasing the copy cancels.
func (j *jobCore) sendDirect(inv *invocation) {
	ctx, cancel := context.WithCancel(j.ctx)
	inv.cancel = cancel
	j.busy++
	j.senders.do(func() { j.send(ctx, inv) })
}

// need is what task i takes of a request's budget.
func (j *jobCore) need(i int) int64 { return taskSlack + j.inlineSize(i) }

// over reports whether the dispatcher is done: every task settled (or the
// job stopped) and no I/O is out. On the way it lets go of the copies that
// are no longer needed.
func (j *jobCore) over(now int64) bool {
	t := j.t
	if !t.finished() && !t.stopping {
		return false
	}
	if t.finished() && !t.stopping {
		t.stop()
		j.cancel(errJobEnded)
	}
	for inv := range t.live {
		if inv.cancel != nil {
			inv.cancel()
		}
		if inv.accepted || t.finished() {
			// Nothing to wait for: an accepted async copy replies through
			// the store, and every task has its outcome.
			j.releaseLoser(inv, now)
		}
	}
	if j.busy > 0 && !j.graceOver {
		return false
	}
	if j.sweep && !j.graceOver {
		// Async: a last look for the replies already in the store.
		j.sweep = false
		if !t.finished() && j.ioCtx.Err() == nil {
			j.startSweep()
			return false
		}
	}
	return j.pendingReads() == 0 || j.graceOver
}

// beginStop starts the end of a job cut off before every task settled: by
// Cancel, its context, Close, or an abort.
func (j *jobCore) beginStop() {
	if j.spec.viaStore && !j.t.finished() {
		j.sweep = true
	}
	j.t.stop()
	j.dirty = true
}

// finish settles what is left with the job's error.
func (j *jobCore) finish() {
	t := j.t
	if j.busy > 0 {
		// Only when the grace ran out: a backend that ignores
		// cancellation. Its calls are not waited for; their events are
		// dropped.
		j.ex.opts.Logger.Warn("gowren: calls still out when the job ended; not waited for", "job", j.id, "calls", j.busy)
	} else {
		j.senders.close()
	}
	for inv := range t.live {
		t.release(inv, j.now())
	}
	if !t.finished() {
		if j.jobErr == nil {
			cause := context.Cause(j.ctx)
			if cause == nil || cause == errJobEnded {
				cause = errors.New("fanout: job ended early")
			}
			msg := fmt.Sprintf("fanout: job %s (%s) stopped with %d of %d tasks unfinished", j.id, j.spec.fn.name, t.n-t.settledCount(), t.n)
			if j.counters.throttles > 0 {
				msg += fmt.Sprintf(" (the platform throttled %d invocations; the last said: %v)", j.counters.throttles, j.lastThrottle)
			}
			j.jobErr = fmt.Errorf("%s: %w", msg, cause)
		}
		t.abandon(j.jobErr)
		j.drain(j.now())
	}
	j.ended = j.clock.Now()
	j.dirty = true
	j.publish(false)
}

// publish makes the table's progress visible to other goroutines.
func (j *jobCore) publish(final bool) {
	if !j.dirty && !final {
		return
	}
	j.dirty = false
	t := j.t
	s := &snapshot{
		completed: t.completed[:len(t.completed):len(t.completed)],
		workerIDs: t.workerIDs[:len(t.workerIDs):len(t.workerIDs)],
		done:      t.done, failed: t.failed, stopped: t.stopped, inWorker: t.inWorker, inBatch: t.inBatch,
		retries: t.retries, ended: final, next: make(chan struct{}),
	}
	old := j.snap.Swap(s)
	if old != nil {
		close(old.next)
	}
}

// senders runs I/O on goroutines that stay for the job: an idle one takes
// the next function, and a new one starts only when none is idle. Reusing
// them saves growing a fresh goroutine's stack through the deep call chains
// of the cloud SDKs on every invocation.
type senders struct {
	work chan func() // unbuffered: a send succeeds only to an idle sender
	wg   sync.WaitGroup
}

func newSenders() *senders { return &senders{work: make(chan func())} }

// do runs f on an idle goroutine or a new one. It never blocks.
func (s *senders) do(f func()) {
	select {
	case s.work <- f:
		return
	default:
	}
	s.wg.Go(func() {
		f()
		for f := range s.work {
			f()
		}
	})
}

// close waits for the goroutines to finish what they run and stop.
func (s *senders) close() {
	close(s.work)
	s.wg.Wait()
}

// delayQueue is a min-heap of tasks by the time they are due.
type delayQueue []delayed

func (q delayQueue) Len() int           { return len(q) }
func (q delayQueue) Less(a, b int) bool { return q[a].at < q[b].at }
func (q delayQueue) Swap(a, b int)      { q[a], q[b] = q[b], q[a] }
func (q *delayQueue) Push(x any)        { *q = append(*q, x.(delayed)) }
func (q *delayQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// Async bookkeeping of the dispatcher: which reply objects were read (at
// which size), which are to be read, and when to list.

// Sizes with a meaning in jobCore.seen.
const (
	readingReply = -1 // being read
	anySize      = -2 // queueRead: read it whatever its size
)

// queueRead asks for the reply object key to be read, unless it was read at
// size already (at any size, with anySize) or is being read.
func (j *jobCore) queueRead(key string, size int64) {
	if got, ok := j.seen[key]; ok && (got == readingReply || got == size || size == anySize) {
		return
	}
	j.seen[key] = readingReply
	j.toRead = append(j.toRead, key)
	j.startReads()
}

// startReads starts queued reads, at most ioParallel at once.
func (j *jobCore) startReads() {
	for len(j.toRead) > 0 && j.reading < ioParallel {
		key := j.toRead[0]
		j.toRead = j.toRead[1:]
		j.reading++
		j.busy++
		j.senders.do(func() { j.readReply(key) })
	}
}

func (j *jobCore) pendingReads() int { return len(j.toRead) + j.reading }

// readDone ends a read.
func (j *jobCore) readDone(ev event) {
	j.reading--
	switch {
	case errors.Is(ev.err, storage.ErrNotFound), ev.err != nil && j.ioCtx.Err() != nil:
		delete(j.seen, ev.key) // to be looked at again
	case ev.err != nil:
		// A torn or foreign object: note it and go on.
		j.ex.opts.Logger.Warn("gowren: unreadable reply object", "job", j.id, "key", ev.key, "error", ev.err)
		j.seen[ev.key] = ev.size
	default:
		j.seen[ev.key] = ev.size
		j.found++
	}
	j.startReads()
}

// pollWanted reports whether the reply prefix needs listing: replies are
// awaited.
func (j *jobCore) pollWanted() bool {
	return j.lowestAwaited() != nil
}

func (j *jobCore) shouldList(now int64) bool {
	return !j.listing && !j.t.stopping && j.nextPoll <= now && j.pollWanted()
}

// startList lists the reply prefix from the lowest batch still out: each
// reply is named after its batch's first task, so a big job does not list
// its finished part again and again. (A late reply of a copy given up on
// may then go unseen; its tasks were sent again.)
func (j *jobCore) startList(now int64) {
	low := -1
	if inv := j.lowestAwaited(); inv != nil {
		low = inv.tasks[0]
	}
	after := ""
	if low > 0 {
		// Just below every reply of the batch that starts at low.
		after = j.keys.Outputs() + layout.OutputName(low, 0)[:layout.IndexWidth]
	}
	j.listing = true
	j.busy++
	j.listStarted = now
	j.senders.do(func() { j.listReplies(after) })
}

// startSweep lists every reply of a stopping async job once more, so that
// the results already in the store are returned with the job's error.
func (j *jobCore) startSweep() {
	j.listing = true
	j.busy++
	j.senders.do(func() { j.listReplies("") })
}

// listed takes a listing: the objects not read yet, or rewritten since, are
// read.
func (j *jobCore) listed(ev event) {
	if ev.err != nil && j.ctx.Err() == nil {
		j.ex.opts.Logger.Warn("gowren: list job replies", "job", j.id, "error", ev.err)
	}
	before := len(j.toRead) + j.reading
	for _, obj := range ev.objs {
		if ok, _ := j.keys.Replies(obj.Key); ok {
			j.queueRead(obj.Key, obj.Size)
		}
	}
	if len(j.toRead)+j.reading > before || j.found > 0 {
		j.pollInterval = pollMin
	} else {
		j.pollInterval = min(max(2*j.pollInterval, pollMin), pollMax)
	}
	j.found = 0
	j.nextPoll = j.listStarted + int64(j.pollInterval)
}

// asyncDeadline is how long an async invocation may stay silent before its
// tasks are sent again.
func (j *jobCore) asyncDeadline(n int) time.Duration {
	if d := j.invokeTimeout(n); d > 0 {
		return d
	}
	return asyncTimeout
}

// statsNow serves a Stats call: from the dispatcher while it runs, directly
// once it is done.
func (j *jobCore) statsNow() JobStats {
	reply := make(chan JobStats, 1)
	select {
	case j.statsReq <- reply:
		return <-reply
	case <-j.loopDone:
		return j.stats()
	}
}

// cleanup runs once the dispatcher is done: it saves the statistics
// (KeepData) or deletes the job's objects, then reports the job to
// Options.OnJobEnd.
func (j *jobCore) cleanup() {
	if j.ex.opts.KeepData || j.spec.keepData {
		j.writeStats()
	} else {
		j.deleteObjects(j.ctx)
	}
	if f := j.ex.opts.OnJobEnd; f != nil {
		f(j.stats())
	}
}

// deleteObjects removes the job's objects from the store.
func (j *jobCore) deleteObjects(ctx context.Context) {
	st := j.ex.store
	if st == nil || !j.wrote {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if j.spec.async && j.othersRunning(ctx) {
		// Another driver attached to the job and still runs: its objects
		// are its to delete.
		j.ex.opts.Logger.Info("gowren: another driver runs the job; leaving its objects to it", "job", j.id)
		if err := st.Delete(ctx, j.keys.Driver(j.driver)); err == nil {
			j.cleanupDeletes.Add(1)
		}
		return
	}
	var keys []string
	for obj, err := range st.List(ctx, j.prefix) {
		if err != nil {
			j.ex.opts.Logger.Warn("gowren: list job objects for deletion", "job", j.id, "error", err)
			break
		}
		keys = append(keys, obj.Key)
	}
	j.cleanupLists.Add(int64(storage.ListRequests(len(keys))))
	j.cleanupDeletes.Add(int64(storage.DeleteRequests(len(keys))))
	if len(keys) == 0 {
		return
	}
	if err := st.Delete(ctx, keys...); err != nil {
		j.ex.opts.Logger.Warn("gowren: delete job objects", "job", j.id, "objects", len(keys), "error", err)
	}
}
