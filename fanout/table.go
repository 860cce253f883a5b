package fanout

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/gowren/gowren/backends"
)

// The task table is the driver's record of a job's tasks: which wait to be
// sent, which copies are out in which invocations, which have settled and
// how, with each task's attempts and failure history. It is a pure state
// machine: no lock, no clock, no I/O. Its methods take events (a batch was
// sent, a reply or a part of one arrived, an invocation was lost, throttled
// or expired, the job stopped), with the time they happened, and leave
// their decisions in the outbox (retry these tasks at T, cancel these
// copies, abort the job), which the dispatcher drains after every call. One
// goroutine, the job's dispatcher, owns it.
//
// What makes "exactly one result per input" true lives here and nowhere
// else: a task settles (done or failed) once, in settle, which appends it to
// completed; every later outcome for it is ignored.

// Task states.
const (
	stPending uint8 = iota // no copy out and no outcome: never sent, waiting for a retry, or ready
	stRunning              // at least one copy is out
	stDone                 // succeeded; its result is taken
	stFailed               // failed for good
)

// Task flags.
const (
	fIsolate uint8 = 1 << iota // send alone: its last batch lost its worker
	fQueued                    // in the ready queue
	fBackup                    // its ready entry asks for a speculative backup
	fDelayed                   // waiting in the dispatcher's delay queue
)

// task is the scheduling state of one task.
type task struct {
	state  uint8
	flags  uint8
	copies uint8 // copies out that have not reported on it
	// backups counts speculative copies sent, backupNorun those of them
	// that never ran.
	backups, backupNorun uint8
	// sent counts every send: it is the wire attempt of the next copy, so
	// (index, attempt) names one copy. norun counts the sends that never
	// ran: throttled, or ended before the task started.
	sent, norun uint32
	// delays counts the times it was delayed: a delay-queue entry of an
	// earlier one is stale.
	delays uint16
}

// attempts counts the copies that may have run.
func (t *task) attempts() int { return int(t.sent) - int(t.norun) }

// tries counts the copies charged to Options.Retries: those that may have
// run, speculative backups aside.
func (t *task) tries() int {
	return (int(t.sent) - int(t.backups)) - (int(t.norun) - int(t.backupNorun))
}

// taskRec describes a task's run, for its statistics; times are Unix
// nanoseconds. The dispatcher writes it until the task settles and never
// after, so once a published snapshot lists the task as completed, any
// goroutine may read it.
type taskRec struct {
	invoked  int64 // when the copy whose outcome was taken was sent
	started  int64 // worker clock, of the copy whose outcome was taken
	finished int64
	received int64
	bytesOut int64
	worker   uint32
	attempts uint32 // at settling
	cold     bool
}

// taskExtra holds what few tasks have: errors, logs, failure history. Like
// taskRec it is not written after the task settles.
type taskExtra struct {
	err         *TaskError
	logs        []LogRecord
	history     []string
	failedTries []FailedTry
}

// maxHistory bounds the failure history kept per task.
const maxHistory = 16

// invocation is one copy of a batch of tasks, sent in one call.
type invocation struct {
	// Set when it is made, then read-only: senders read these.
	id       uint64
	tasks    []int
	attempts []uint32 // wire attempt of each task's copy
	tries    []int    // TaskInfo.Attempt of each task
	backup   bool     // a speculative copy
	sent     int64    // driver clock, Unix nanoseconds
	key      string   // async: the object its reply goes to

	// Owned by the table.
	hint     int    // where indexOf looks first
	got      []bool // a result of this copy arrived, per task
	left     int    // tasks without one
	accepted bool   // async: the platform took it; its reply comes through the store
	deadline int64  // async: silence past this means it was lost
	counted  bool   // counts against the window
	ended    bool
	round    int // the window's round of the send
	member   int // the backend member it went to (backends.Group), 0 for one backend

	// Owned by the dispatcher.
	cancel      func()
	collected   bool  // sent through an invoker that collects its children's replies (flagCollect)
	first, last int64 // worker clock: first start and last end of its results
	work        int64 // sum of its results' run times
}

// indexOf returns the position of task i in the invocation, or -1.
// Results come in the order of the tasks, so the search starts after the
// last one found.
func (inv *invocation) indexOf(i int) int {
	n := len(inv.tasks)
	for d := range n {
		k := inv.hint + d
		if k >= n {
			k -= n
		}
		if inv.tasks[k] == i {
			inv.hint = k + 1
			if inv.hint == n {
				inv.hint = 0
			}
			return k
		}
	}
	return -1
}

// taskResult is one task's outcome as a reply reports it, decoded by the
// sender.
type taskResult struct {
	index   int
	attempt int
	start   int64 // worker clock
	end     int64
	logs    []LogRecord
	outLen  int64 // size of the output
	outKey  string
	err     *wireError // the worker's error, nil on success
	derr    *TaskError // the driver could not take the output
	commit  func()     // stores the decoded value; nil with no value to keep
}

// replyInfo is what a reply says about the invocation as a whole.
type replyInfo struct {
	worker string
	cold   bool
}

// delayed is a task to make ready again at a time. gen numbers the task's
// delays: an entry of an earlier one is stale.
// throttled marks a retry after throttling, which the dispatcher may bring
// forward when capacity frees.
type delayed struct {
	at        int64
	task      int
	gen       uint16
	throttled bool
}

// retryNote records a decision to retry, for the executor's log.
type retryNote struct {
	task     int
	attempts int
	after    time.Duration
	why      string
}

// outbox holds the decisions of the last events, for the dispatcher.
type outbox struct {
	delay   []delayed     // make these tasks ready at these times
	cancel  []*invocation // copies whose tasks have all settled: stop them
	retried []retryNote   // tasks sent back, for the log
	failed  []int         // tasks that failed for good, for the log
	abort   error         // stop the job with this error
}

func (o *outbox) reset() {
	o.delay = o.delay[:0]
	o.cancel = o.cancel[:0]
	o.retried = o.retried[:0]
	o.failed = o.failed[:0]
	o.abort = nil
}

// tablePolicy is what the table needs of the executor's options.
type tablePolicy struct {
	retries         int  // Options.Retries
	retryTaskErrors bool // Options.RetryTaskErrors
	parallel        int  // tasks a worker runs at once
}

// table is the task table of one job. See the comment at the top of the
// file.
type table struct {
	n      int
	policy tablePolicy
	rng    *rand.Rand

	tasks []task
	recs  []taskRec
	extra []*taskExtra
	// outRefs: where each output is, when the job's outputs go to the
	// store (MapReduce).
	outRefs []wireRange

	next  int   // tasks below were sent at least once (or settled)
	ready []int // retries due and backups asked for, in order
	head  int   // ready[head:] is the queue

	done, failed int
	stopped      int   // of failed: settled by the job's end (abandon), not by a result
	completed    []int // settled tasks, in settling order
	firstSent    int64 // when the first invocation was sent

	live     map[*invocation]struct{}
	byKey    map[string]*invocation // async: by reply key
	inflight int                    // live invocations counted against the window
	inMember []int                  // of inflight, per backend member
	nextID   uint64
	stopping bool // the job is ending: nothing is sent or retried

	// Estimates for progress: tasks running in a worker, and tasks in an
	// invocation waiting for their turn behind them.
	inWorker, inBatch int

	// Decision counts.
	retries, backupsSent, throttledTasks int

	workers   map[string]uint32
	workerIDs []string

	out outbox
}

func newTable(n int, p tablePolicy, seed uint64) *table {
	return &table{
		n: n, policy: p, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		tasks: make([]task, n), recs: make([]taskRec, n), extra: make([]*taskExtra, n),
		live: map[*invocation]struct{}{}, byKey: map[string]*invocation{},
	}
}

// settledCount is the number of tasks with an outcome.
func (t *table) settledCount() int { return t.done + t.failed }

// finished reports whether every task has settled.
func (t *table) finished() bool { return t.done+t.failed == t.n }

// waiting counts tasks ready to be sent now: never sent, or in the ready
// queue.
func (t *table) waiting() int { return t.n - t.next + len(t.ready) - t.head }

func (t *table) extraOf(i int) *taskExtra {
	if t.extra[i] == nil {
		t.extra[i] = &taskExtra{}
	}
	return t.extra[i]
}

// take makes the next invocation: a speculative backup or an isolated retry
// alone; else ready retries, then tasks never sent, up to size tasks and the
// request budget (0: none; need(i) is what task i takes of it). key names
// the reply object of an async invocation (nil: sync). It returns nil when
// nothing waits or the job is stopping.
func (t *table) take(size int, budget int64, need func(int) int64, now int64, key func(first, attempt int) string) *invocation {
	return t.takeFor(0, size, budget, need, now, key)
}

// takeFor is take for an invocation of backend member m.
func (t *table) takeFor(m, size int, budget int64, need func(int) int64, now int64, key func(first, attempt int) string) *invocation {
	if t.stopping {
		return nil
	}
	var batch []int
	backup, alone := false, false
	var used int64
	fits := func(i int) bool {
		if budget <= 0 {
			return true
		}
		n := need(i)
		if used > 0 && used+n > budget {
			return false
		}
		used += n
		return true
	}
	for t.head < len(t.ready) && len(batch) < size {
		i := t.ready[t.head]
		tk := &t.tasks[i]
		asBackup := tk.flags&fBackup != 0 && tk.state == stRunning
		if tk.state != stPending && !asBackup || tk.flags&fDelayed != 0 {
			// Settled meanwhile, out again, or waiting for a retry (the
			// entry asked for a backup of a copy that has failed since):
			// the entry is stale.
			tk.flags &^= fQueued | fBackup
			t.head++
			continue
		}
		if asBackup || tk.flags&fIsolate != 0 {
			if len(batch) > 0 {
				break
			}
			tk.flags &^= fQueued | fBackup
			t.head++
			batch, backup, alone = append(batch, i), asBackup, true
			break
		}
		if !fits(i) {
			break
		}
		tk.flags &^= fQueued | fBackup
		t.head++
		batch = append(batch, i)
	}
	if t.head == len(t.ready) {
		t.ready, t.head = t.ready[:0], 0
	} else if t.head > 1024 && t.head > len(t.ready)/2 {
		t.ready = append(t.ready[:0], t.ready[t.head:]...)
		t.head = 0
	}
	for !alone && t.next < t.n && len(batch) < size {
		i := t.next
		if t.tasks[i].state != stPending || t.tasks[i].flags&(fQueued|fDelayed) != 0 {
			t.next++ // settled already (Attach)
			continue
		}
		if !fits(i) {
			break
		}
		batch = append(batch, i)
		t.next++
	}
	if len(batch) == 0 {
		return nil
	}
	t.nextID++
	inv := &invocation{
		id: t.nextID, tasks: batch, attempts: make([]uint32, len(batch)), tries: make([]int, len(batch)),
		backup: backup, sent: now, got: make([]bool, len(batch)), left: len(batch), counted: true,
	}
	for k, i := range batch {
		tk := &t.tasks[i]
		inv.tries[k] = tk.attempts() // copies before this one that may have run
		inv.attempts[k] = tk.sent
		tk.sent++
		tk.copies++
		tk.state = stRunning
		if backup {
			tk.backups++
			t.backupsSent++
		}
	}
	if t.firstSent == 0 {
		t.firstSent = now
	}
	if key != nil {
		inv.key = key(batch[0], int(inv.attempts[0]))
		t.byKey[inv.key] = inv
	}
	t.live[inv] = struct{}{}
	t.inflight++
	inv.member = m
	for len(t.inMember) <= m {
		t.inMember = append(t.inMember, 0)
	}
	t.inMember[m]++
	t.addLeft(inv, len(batch))
	return inv
}

// addLeft adjusts the progress estimates after inv.left changed by d.
func (t *table) addLeft(inv *invocation, d int) {
	p := max(1, t.policy.parallel)
	before, after := inv.left-d, inv.left
	t.inWorker += min(p, after) - min(p, before)
	t.inBatch += (after - min(p, after)) - (before - min(p, before))
}

// accept records that the platform accepted an async invocation; its reply
// is overdue after deadline.
func (t *table) accept(inv *invocation, deadline int64) {
	if inv.ended {
		return
	}
	inv.accepted = true
	inv.deadline = deadline
}

// reply takes the results of a reply, or of a part of one (final false: the
// invocation goes on). inv is nil for a reply found in the store that no
// copy of this driver is waiting for (Attach, or a copy given up on): its
// results count for tasks still unsettled.
func (t *table) reply(inv *invocation, ri replyInfo, results []taskResult, final bool, now int64) {
	if inv != nil && inv.ended {
		inv = nil // released already: a loser, or expired
	}
	wid := t.worker(ri.worker)
	for k := range results {
		t.result(inv, &results[k], wid, ri.cold, now)
	}
	if inv != nil && final {
		t.end(inv, fmt.Errorf("%w: the reply had no result for the task", backends.ErrTransport), now, false, 0)
	}
}

// worker numbers a worker identity.
func (t *table) worker(id string) uint32 {
	if w, ok := t.workers[id]; ok {
		return w
	}
	if t.workers == nil {
		t.workers = map[string]uint32{}
	}
	w := uint32(len(t.workerIDs))
	t.workers[id] = w
	t.workerIDs = append(t.workerIDs, id)
	return w
}

// result takes one task's outcome from a copy.
func (t *table) result(inv *invocation, r *taskResult, wid uint32, cold bool, now int64) {
	i := r.index
	if i < 0 || i >= t.n {
		return
	}
	tk := &t.tasks[i]
	own := false
	if inv != nil {
		k := inv.indexOf(i)
		if k < 0 || inv.got[k] || uint32(r.attempt) != inv.attempts[k] {
			return // not this copy's task, or reported twice
		}
		inv.got[k] = true
		inv.left--
		t.addLeft(inv, -1)
		tk.copies--
		own = true
	} else if uint32(r.attempt) >= tk.sent {
		// A copy of another driver (Attach): later copies of ours get
		// attempt numbers above it.
		tk.sent = uint32(r.attempt) + 1
	}
	if tk.state == stDone || tk.state == stFailed {
		return // a duplicate or a late copy: the first outcome stands
	}
	if r.err == nil && r.derr == nil {
		t.record(i, r, wid, cold, now, sentOf(inv))
		if r.commit != nil {
			r.commit()
		}
		if r.outKey != "" && t.outRefs != nil {
			t.outRefs[i] = wireRange{Key: r.outKey, Len: r.outLen}
		}
		t.settle(i, stDone, nil, inv)
		return
	}
	if r.derr != nil {
		t.record(i, r, wid, cold, now, sentOf(inv))
		te := r.derr
		te.Attempts, te.Logs = tk.attempts(), r.logs
		t.settle(i, stFailed, te, inv)
		return
	}
	we := r.err
	if t.stopping {
		if we.Code == codeCanceled || we.Code == codeUnstarted || we.Code == codeDeadline {
			t.released(i)
			return // cut off by the job's own end: it settles with the job's error
		}
	}
	if we.Code == codeUnstarted {
		// The invocation ended before the task started: it never ran.
		if own {
			t.noRun(i, inv)
		}
		if tk.copies == 0 && tk.state == stRunning {
			t.retry(i, 0, false, false, "", now)
		}
		return
	}
	retryable := we.Retryable || we.Code == codeStore || we.Code == codeCanceled
	isolate := false
	if we.Code == codeDeadline {
		// The invocation's deadline came while the task ran: its own fault
		// only when it ran alone.
		retryable = inv != nil && len(inv.tasks) > 1
		isolate = retryable
	}
	if t.policy.retryTaskErrors && (we.Code == codeApp || we.Code == codePanic || we.Code == codeTimeout || we.Code == codeDeadline) {
		retryable = true
	}
	t.note(i, we.Message, now, sentOf(inv))
	if retryable {
		if inv == nil || tk.copies > 0 {
			return // another copy may still succeed, or it is yet to be sent
		}
		if tk.tries() <= t.policy.retries {
			t.retry(i, 0, isolate, true, we.Message, now)
			return
		}
	}
	t.record(i, r, wid, cold, now, sentOf(inv))
	te := remoteError(i, tk.attempts(), we)
	te.Logs = r.logs
	t.settle(i, stFailed, te, inv)
}

// record keeps the statistics of the copy whose outcome is taken; sent is
// when that copy was sent (0: not known, a copy of another driver).
func (t *table) record(i int, r *taskResult, wid uint32, cold bool, now, sent int64) {
	rec := &t.recs[i]
	rec.invoked = sent
	rec.worker, rec.cold = wid, cold
	rec.started, rec.finished, rec.received = r.start, r.end, now
	rec.bytesOut = r.outLen
	if len(r.logs) > 0 {
		t.extraOf(i).logs = r.logs
	}
}

// noRun records that inv's copy of task i never ran.
func (t *table) noRun(i int, inv *invocation) {
	tk := &t.tasks[i]
	tk.norun++
	if inv.backup {
		tk.backupNorun++
	}
}

// released handles a task whose copy ended because the job is stopping.
func (t *table) released(i int) {
	if tk := &t.tasks[i]; tk.state == stRunning && tk.copies == 0 {
		tk.state = stPending
	}
}

// sentOf is when inv was sent, 0 for a copy of another driver.
func sentOf(inv *invocation) int64 {
	if inv == nil {
		return 0
	}
	return inv.sent
}

// note records why the attempt of task i sent at sent failed.
func (t *table) note(i int, why string, now, sent int64) {
	x := t.extraOf(i)
	if len(x.history) >= maxHistory {
		return
	}
	x.history = append(x.history, fmt.Sprintf("attempt %d: %s", len(x.history)+1, why))
	x.failedTries = append(x.failedTries, FailedTry{Sent: unixTime(sent), Failed: time.Unix(0, now), Reason: why})
	t.recs[i].invoked = sent
}

// retry sends task i back after a backoff with full jitter, at least
// retryAfter, exponential in its failed and refused sends. charged says
// whether it counts as a retry (a throttled send, which never ran, does
// not).
func (t *table) retry(i int, retryAfter time.Duration, isolate, charged bool, why string, now int64) {
	t.retryAs(i, retryAfter, isolate, charged, false, why, now)
}

// retryAs is retry, saying whether the send was throttled.
func (t *table) retryAs(i int, retryAfter time.Duration, isolate, charged, throttled bool, why string, now int64) {
	tk := &t.tasks[i]
	tk.state = stPending
	if t.stopping {
		return
	}
	if isolate {
		tk.flags |= fIsolate
	}
	d := max(retryAfter, time.Duration(t.rng.Int64N(int64(backoffCeiling(tk))+1)))
	tk.flags |= fDelayed
	tk.delays++
	t.out.delay = append(t.out.delay, delayed{at: now + int64(d), task: i, gen: tk.delays, throttled: throttled})
	if charged {
		t.retries++
		t.out.retried = append(t.out.retried, retryNote{task: i, attempts: tk.attempts(), after: d, why: why})
	}
}

// backoffCeiling bounds the jittered backoff of a task's next send:
// doubling from backoffBase with every send that failed or was refused,
// at most backoffCap.
func backoffCeiling(tk *task) time.Duration {
	n := max(int(tk.sent), 1)
	return min(backoffCap, backoffBase<<min(n-1, 20))
}

// due makes a delayed task ready, unless d is stale. It reports whether
// the entry was current.
func (t *table) due(d delayed) bool {
	tk := &t.tasks[d.task]
	if d.gen != tk.delays || tk.flags&fDelayed == 0 {
		return false
	}
	tk.flags &^= fDelayed
	if tk.state != stPending || tk.flags&fQueued != 0 || t.stopping {
		return true
	}
	tk.flags |= fQueued
	t.ready = append(t.ready, d.task)
	return true
}

// askBackup queues a speculative backup of a running task, ahead of the
// other ready tasks. It reports whether it did.
func (t *table) askBackup(i int) bool {
	tk := &t.tasks[i]
	if tk.state != stRunning || tk.flags&fQueued != 0 || t.stopping {
		return false
	}
	tk.flags |= fQueued | fBackup
	if t.head > 0 {
		t.head--
		t.ready[t.head] = i
	} else {
		t.ready = append([]int{i}, t.ready...)
	}
	return true
}

// settle gives task i its outcome, once. own is the copy that delivered it;
// the other copies of i, once all their tasks have settled, are to be
// cancelled.
func (t *table) settle(i int, state uint8, te *TaskError, own *invocation) {
	tk := &t.tasks[i]
	tk.state = state
	tk.flags &^= fIsolate
	t.recs[i].attempts = uint32(tk.attempts())
	if state == stDone {
		t.done++
	} else {
		t.failed++
		te.Index = i
		x := t.extraOf(i)
		if len(te.History) == 0 {
			te.History = x.history
		}
		x.err = te
		if te.fromJob {
			t.stopped++
		}
		if !te.fromJob {
			t.out.failed = append(t.out.failed, i)
		}
	}
	t.completed = append(t.completed, i)
	if tk.copies == 0 {
		return
	}
	for inv := range t.live {
		if inv == own || inv.indexOf(i) < 0 {
			continue
		}
		if t.allSettled(inv) {
			t.out.cancel = append(t.out.cancel, inv)
		}
	}
}

// allSettled reports whether every task of inv has an outcome or its result
// from inv.
func (t *table) allSettled(inv *invocation) bool {
	for k, i := range inv.tasks {
		if s := t.tasks[i].state; !inv.got[k] && s != stDone && s != stFailed {
			return false
		}
	}
	return true
}

// lost ends an invocation that failed without a reply: a lost worker, a
// transport failure, an overdue async reply. Its tasks without a result
// from it are retried (alone, when it held several) or fail when their
// retries are spent.
func (t *table) lost(inv *invocation, err error, now int64) {
	t.end(inv, err, now, false, 0)
}

// end removes an invocation. For the tasks it holds without a result from
// it: err != nil means the copy failed (retry or fail); throttled means it
// never ran (retry, uncharged); otherwise they are released (the job is
// ending, or the copy was cancelled as a loser).
func (t *table) end(inv *invocation, err error, now int64, throttled bool, retryAfter time.Duration) {
	if inv.ended {
		return
	}
	inv.ended = true
	delete(t.live, inv)
	if inv.key != "" && t.byKey[inv.key] == inv {
		delete(t.byKey, inv.key)
	}
	if inv.counted {
		inv.counted = false
		t.inflight--
		t.inMember[inv.member]--
	}
	left := inv.left
	inv.left = 0
	t.addLeft(inv, -left)
	isolate := len(inv.tasks) > 1
	for k, i := range inv.tasks {
		if inv.got[k] {
			continue
		}
		inv.got[k] = true
		tk := &t.tasks[i]
		tk.copies--
		if tk.state != stRunning || tk.copies > 0 {
			continue
		}
		switch {
		case t.stopping || (err == nil && !throttled):
			tk.state = stPending
			if !t.stopping && tk.flags&(fQueued|fDelayed) == 0 {
				// A copy released while its task still needs a result.
				t.retry(i, 0, false, false, "", now)
			}
		case throttled:
			t.retryAs(i, retryAfter, false, false, true, "", now)
		case !backends.Retryable(err):
			t.note(i, err.Error(), now, inv.sent)
			t.settle(i, stFailed, &TaskError{Index: i, Attempts: tk.attempts(), Type: fmt.Sprintf("%T", err), Message: err.Error(), Err: err}, nil)
		case tk.tries() <= t.policy.retries:
			t.note(i, err.Error(), now, inv.sent)
			t.retry(i, 0, isolate, true, err.Error(), now)
		default:
			t.note(i, err.Error(), now, inv.sent)
			t.settle(i, stFailed, &TaskError{Index: i, Attempts: tk.attempts(), Type: fmt.Sprintf("%T", errors.Unwrap(err)), Message: err.Error(), Err: err}, nil)
		}
	}
}

// throttled ends an invocation the platform refused for now: it never ran,
// so its tasks go back after a backoff (at least retryAfter) without
// costing an attempt.
func (t *table) throttled(inv *invocation, retryAfter time.Duration, now int64) {
	if inv.ended {
		return
	}
	for k, i := range inv.tasks {
		if !inv.got[k] {
			t.noRun(i, inv)
		}
	}
	t.throttledTasks += inv.left
	t.end(inv, nil, now, true, retryAfter)
}

// release ends an invocation whose outcome no longer matters (a loser, or
// the job is ending); its tasks are left as they are, or sent again if they
// still need a result.
func (t *table) release(inv *invocation, now int64) { t.end(inv, nil, now, false, 0) }

// stop makes the job end: nothing more is sent or retried. Tasks out stay
// out, so that their results can still be taken.
func (t *table) stop() { t.stopping = true }

// abandon settles every task still without an outcome with the job's error.
func (t *table) abandon(jobErr error) {
	t.stopping = true
	for i := range t.tasks {
		tk := &t.tasks[i]
		if tk.state == stDone || tk.state == stFailed {
			continue
		}
		t.settle(i, stFailed, &TaskError{Index: i, Attempts: tk.attempts(), Message: jobErr.Error(), Err: jobErr, fromJob: true}, nil)
	}
}
