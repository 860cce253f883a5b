package fanout

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
)

// The task table under random event sequences: duplicates, late replies,
// parts, losses, throttles, expiries, cancels, backups, foreign replies
// (Attach), a stop mid-way. After every event the table's invariants hold;
// at the end every index has settled exactly once and no task is stuck.

// source is where a simulation draws its choices: a seeded generator for
// the property test, the fuzzer's bytes for the fuzz target.
type source interface{ intn(n int) int }

type randSource struct{ r *rand.Rand }

func (s randSource) intn(n int) int { return s.r.IntN(n) }

type byteSource struct {
	b   []byte
	pos int
}

func (s *byteSource) intn(n int) int {
	if s.pos >= len(s.b) {
		return 0
	}
	v := int(s.b[s.pos])
	s.pos++
	return v % n
}

func (s *byteSource) exhausted() bool { return s.pos >= len(s.b) }

// sim drives a table as the dispatcher would, with a simulated backend
// holding the invocations out.
type sim struct {
	tb      testing.TB
	t       *table
	src     source
	now     int64
	out     []*invocation // held by the simulated backend
	gone    []*invocation // ended: their replies may still come, late
	delays  []delayed
	commits []int // per task: values stored
	async   bool
	steps   int
}

func newSim(tb testing.TB, n, retries int, src source, async bool) *sim {
	s := &sim{
		tb: tb, src: src, now: 1e9, commits: make([]int, n), async: async,
		t: newTable(n, tablePolicy{retries: retries, parallel: 1 + src.intn(3)}, uint64(n)),
	}
	return s
}

// drain does what the dispatcher does with the table's decisions.
func (s *sim) drain() {
	o := &s.t.out
	s.delays = append(s.delays, o.delay...)
	cancel := append([]*invocation(nil), o.cancel...)
	o.reset()
	for _, inv := range cancel {
		s.t.release(inv, s.now)
		s.drain()
	}
}

func (s *sim) key() func(int, int) string {
	if !s.async {
		return nil
	}
	return func(first, attempt int) string { return fmt.Sprintf("out/%d.%d", first, attempt) }
}

// result makes a random outcome for task i of a copy.
func (s *sim) result(i int, attempt uint32) taskResult {
	r := taskResult{index: i, attempt: int(attempt), start: s.now - 10, end: s.now}
	switch s.src.intn(12) {
	case 0, 1, 2, 3, 4:
		r.commit = func() { s.commits[i]++ }
	case 5:
		r.err = &wireError{Code: codeApp, Message: "app error"}
	case 6:
		r.err = &wireError{Code: codeApp, Message: "transient", Retryable: true}
	case 7:
		r.err = &wireError{Code: codeCanceled, Message: "cancelled"}
	case 8:
		r.err = &wireError{Code: codeUnstarted, Message: "not started"}
	case 9:
		r.err = &wireError{Code: codeDeadline, Message: "deadline"}
	case 10:
		r.err = &wireError{Code: codeStore, Message: "store"}
	case 11:
		r.derr = &TaskError{Type: "decode", Message: "undecodable"}
	}
	return r
}

// results reports on a random subset of inv's tasks, with now and then a
// duplicate, a wrong attempt or an index out of range.
func (s *sim) results(inv *invocation) []taskResult {
	var rs []taskResult
	for k, i := range inv.tasks {
		if s.src.intn(3) == 0 {
			continue
		}
		rs = append(rs, s.result(i, inv.attempts[k]))
		switch s.src.intn(20) {
		case 0:
			rs = append(rs, s.result(i, inv.attempts[k])) // a duplicate
		case 1:
			rs = append(rs, s.result(i, inv.attempts[k]+1)) // another copy's attempt
		case 2:
			rs = append(rs, taskResult{index: s.t.n + 3, attempt: 0})
		}
	}
	return rs
}

func (s *sim) remove(k int) *invocation {
	inv := s.out[k]
	s.out = append(s.out[:k], s.out[k+1:]...)
	s.gone = append(s.gone, inv)
	return inv
}

// step applies one random event.
func (s *sim) step() {
	s.steps++
	t := s.t
	switch op := s.src.intn(16); {
	case op < 4:
		inv := t.take(1+s.src.intn(4), 0, nil, s.now, s.key())
		if inv != nil {
			s.out = append(s.out, inv)
			if s.async && s.src.intn(2) == 0 {
				t.accept(inv, s.now+int64(time.Second))
			}
		}
	case op < 11 && len(s.out) > 0:
		k := s.src.intn(len(s.out))
		inv := s.out[k]
		ri := replyInfo{worker: fmt.Sprintf("w%d", s.src.intn(3)), cold: s.src.intn(2) == 0}
		switch s.src.intn(7) {
		case 0, 1:
			t.reply(inv, ri, s.results(inv), false, s.now) // a part
		case 2, 3:
			s.remove(k)
			t.reply(inv, ri, s.results(inv), true, s.now)
		case 4:
			s.remove(k)
			t.lost(inv, fmt.Errorf("%w: simulated", backends.ErrWorkerLost), s.now)
		case 5:
			s.remove(k)
			t.throttled(inv, time.Duration(s.src.intn(3))*time.Millisecond, s.now)
		case 6:
			s.remove(k)
			if s.src.intn(4) == 0 {
				t.lost(inv, errors.New("simulated: not retryable"), s.now)
			} else {
				t.release(inv, s.now)
			}
		}
	case op == 11 && len(s.gone) > 0:
		// A late reply of a copy that ended: duplicate delivery.
		inv := s.gone[s.src.intn(len(s.gone))]
		t.reply(inv, replyInfo{worker: "late"}, s.results(inv), true, s.now)
	case op == 12:
		// A reply no copy of this driver waits for (Attach).
		i := s.src.intn(t.n)
		t.reply(nil, replyInfo{worker: "other"}, []taskResult{s.result(i, uint32(s.src.intn(4)))}, true, s.now)
	case op == 13:
		s.now += int64(time.Duration(s.src.intn(200)) * time.Millisecond)
		s.fireDue()
	case op == 14:
		t.askBackup(s.src.intn(t.n))
	case op == 15 && s.src.intn(40) == 0:
		t.stop()
	}
	s.drain()
	s.check()
}

// fireDue makes the due tasks ready, as the dispatcher's delay queue does.
func (s *sim) fireDue() {
	keep := s.delays[:0]
	var due []delayed
	for _, d := range s.delays {
		if d.at <= s.now || d.throttled && s.src.intn(3) == 0 { // brought forward, as capacity frees
			due = append(due, d)
		} else {
			keep = append(keep, d)
		}
	}
	s.delays = keep
	for _, d := range due {
		s.t.due(d)
	}
}

// check asserts the table's invariants.
func (s *sim) check() {
	s.tb.Helper()
	t := s.t
	fail := func(format string, args ...any) {
		s.tb.Helper()
		s.tb.Fatalf("after %d events: "+format, append([]any{s.steps}, args...)...)
	}
	copies := make([]int, t.n)
	inflight, inWorker, inBatch := 0, 0, 0
	p := max(1, t.policy.parallel)
	for inv := range t.live {
		if inv.ended {
			fail("an ended invocation is live")
		}
		left := 0
		for k, i := range inv.tasks {
			if !inv.got[k] {
				copies[i]++
				left++
			}
		}
		if left != inv.left {
			fail("invocation %d: left %d, counted %d", inv.id, inv.left, left)
		}
		if inv.counted {
			inflight++
		}
		inWorker += min(p, left)
		inBatch += left - min(p, left)
	}
	if inflight != t.inflight || inWorker != t.inWorker || inBatch != t.inBatch {
		fail("inflight %d/%d, in worker %d/%d, in batch %d/%d (table/recount)", t.inflight, inflight, t.inWorker, inWorker, t.inBatch, inBatch)
	}
	ready := map[int]bool{}
	for _, i := range t.ready[t.head:] {
		ready[i] = true
	}
	delayed := map[int]bool{}
	for _, d := range s.delays {
		delayed[d.task] = true
	}
	done, failed := 0, 0
	for i := range t.tasks {
		tk := &t.tasks[i]
		if int(tk.copies) != copies[i] {
			fail("task %d: copies %d, %d out", i, tk.copies, copies[i])
		}
		if tk.norun > tk.sent || tk.attempts() < 0 || tk.tries() < 0 {
			fail("task %d: sent %d, norun %d, backups %d/%d", i, tk.sent, tk.norun, tk.backups, tk.backupNorun)
		}
		switch tk.state {
		case stDone:
			done++
			if s.commits[i] != 1 {
				fail("task %d done with %d values stored", i, s.commits[i])
			}
		case stFailed:
			failed++
			if s.commits[i] != 0 || t.extra[i] == nil || t.extra[i].err == nil {
				fail("task %d failed with %d values stored and error %v", i, s.commits[i], t.extra[i])
			}
		case stRunning:
			if copies[i] == 0 {
				fail("task %d running with no copy out", i)
			}
		case stPending:
			if copies[i] != 0 {
				fail("task %d pending with %d copies out", i, copies[i])
			}
			// Not stuck: it will be sent, unless the job is stopping.
			if !t.stopping && i < t.next && !ready[i] && !delayed[i] {
				fail("task %d is pending but neither fresh, ready nor delayed", i)
			}
			if (tk.flags&fDelayed != 0) != delayed[i] {
				fail("task %d: delayed flag %v, in the delay queue %v", i, tk.flags&fDelayed != 0, delayed[i])
			}
		}
	}
	if done != t.done || failed != t.failed || done+failed != len(t.completed) {
		fail("done %d/%d, failed %d/%d, completed %d", t.done, done, t.failed, failed, len(t.completed))
	}
	seen := make([]bool, t.n)
	for _, i := range t.completed {
		if seen[i] {
			fail("task %d completed twice", i)
		}
		seen[i] = true
	}
}

// finish drives the job to its end: everything out replies with success,
// every delay passes; a stopped job is abandoned.
func (s *sim) finish() {
	t := s.t
	for round := 0; !t.finished(); round++ {
		if round > 10*t.n+100 {
			s.tb.Fatalf("stuck: %d of %d settled after %d rounds; stopping %v", t.settledCount(), t.n, round, t.stopping)
		}
		if t.stopping {
			t.abandon(errors.New("stopped"))
			s.drain()
			break
		}
		s.now += int64(backoffCap)
		s.fireDue()
		for {
			inv := t.take(3, 0, nil, s.now, s.key())
			if inv == nil {
				break
			}
			s.out = append(s.out, inv)
		}
		out := s.out
		s.out = nil
		for _, inv := range out {
			rs := make([]taskResult, len(inv.tasks))
			for k, i := range inv.tasks {
				rs[k] = taskResult{index: i, attempt: int(inv.attempts[k]), commit: func() { s.commits[i]++ }}
			}
			t.reply(inv, replyInfo{worker: "final"}, rs, true, s.now)
			s.drain()
		}
		s.check()
	}
	s.check()
	if len(t.completed) != t.n {
		s.tb.Fatalf("%d tasks completed, want %d", len(t.completed), t.n)
	}
	for i := range t.tasks {
		if st := t.tasks[i].state; st != stDone && st != stFailed {
			s.tb.Fatalf("task %d ends in state %d", i, st)
		}
	}
}

func TestTableProperties(t *testing.T) {
	for seed := range uint64(300) {
		for _, async := range []bool{false, true} {
			src := randSource{rand.New(rand.NewPCG(seed, 7))}
			n := 1 + src.intn(30)
			s := newSim(t, n, src.intn(4), src, async)
			for range 50 + src.intn(400) {
				s.step()
			}
			s.finish()
			if t.Failed() {
				t.Fatalf("seed %d async %v", seed, async)
			}
		}
	}
}

func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte("a long enough string of choices to make a few invocations and reply to them"))
	f.Fuzz(func(t *testing.T, b []byte) {
		src := &byteSource{b: b}
		n := 1 + src.intn(20)
		s := newSim(t, n, src.intn(4), src, src.intn(2) == 0)
		for !src.exhausted() {
			s.step()
		}
		s.finish()
	})
}

func TestTableSettlesOnce(t *testing.T) {
	// Two copies of one task (a backup): the first result wins, the other
	// copy is cancelled, and its late result is ignored.
	tb := newTable(1, tablePolicy{retries: 2, parallel: 1}, 1)
	first := tb.take(1, 0, nil, 0, nil)
	if !tb.askBackup(0) {
		t.Fatal("no backup of a running task")
	}
	backup := tb.take(1, 0, nil, 10, nil)
	if backup == nil || !backup.backup || backup.attempts[0] != 1 || backup.tries[0] != 1 {
		t.Fatalf("backup %+v: want attempt 1, try 1", backup)
	}
	var stored int
	ok := func(inv *invocation) []taskResult {
		return []taskResult{{index: 0, attempt: int(inv.attempts[0]), commit: func() { stored++ }}}
	}
	tb.reply(backup, replyInfo{}, ok(backup), true, 20)
	if tb.done != 1 || len(tb.out.cancel) != 1 || tb.out.cancel[0] != first {
		t.Fatalf("done %d, cancel %v: want the first copy cancelled", tb.done, tb.out.cancel)
	}
	tb.release(first, 21)
	tb.reply(first, replyInfo{}, ok(first), true, 30)
	if stored != 1 || tb.done != 1 || len(tb.completed) != 1 || tb.recs[0].attempts != 2 {
		t.Fatalf("stored %d, done %d, completed %v, attempts %d", stored, tb.done, tb.completed, tb.recs[0].attempts)
	}
}

func TestTableThrottleCostsNoAttempt(t *testing.T) {
	tb := newTable(1, tablePolicy{retries: 0, parallel: 1}, 1)
	for range 5 {
		inv := tb.take(1, 0, nil, 0, nil)
		tb.throttled(inv, 2*time.Second, 0)
		if len(tb.out.delay) != 1 || tb.out.delay[0].at < int64(2*time.Second) {
			t.Fatalf("delay %v: want the retry-after honoured", tb.out.delay)
		}
		d := tb.out.delay[0]
		tb.out.reset()
		tb.due(d)
	}
	if tk := tb.tasks[0]; tk.attempts() != 0 || tk.tries() != 0 || tk.sent != 5 {
		t.Fatalf("after 5 throttles: attempts %d, tries %d, sent %d", tk.attempts(), tk.tries(), tk.sent)
	}
	// With no retries allowed, a lost worker now fails it, at attempt 1.
	inv := tb.take(1, 0, nil, 0, nil)
	if inv.tries[0] != 0 || inv.attempts[0] != 5 {
		t.Fatalf("fresh copy: try %d, wire attempt %d", inv.tries[0], inv.attempts[0])
	}
	tb.lost(inv, fmt.Errorf("%w: gone", backends.ErrWorkerLost), 0)
	if tb.failed != 1 || tb.extra[0].err.Attempts != 1 || !errors.Is(tb.extra[0].err, backends.ErrWorkerLost) {
		t.Fatalf("failed %d, error %+v", tb.failed, tb.extra[0].err)
	}
}

func TestTableUnstartedAndDeadline(t *testing.T) {
	tb := newTable(3, tablePolicy{retries: 1, parallel: 1}, 1)
	inv := tb.take(3, 0, nil, 0, nil)
	tb.reply(inv, replyInfo{}, []taskResult{
		{index: 0, attempt: 0, commit: func() {}},
		{index: 1, attempt: 0, err: &wireError{Code: codeDeadline, Message: "deadline"}},
		{index: 2, attempt: 0, err: &wireError{Code: codeUnstarted, Message: "not started"}},
	}, true, 0)
	// The deadline of a shared batch is retried, alone; the task that
	// never started costs no attempt.
	if tb.done != 1 || tb.failed != 0 || len(tb.out.delay) != 2 {
		t.Fatalf("done %d failed %d delays %v", tb.done, tb.failed, tb.out.delay)
	}
	if tb.tasks[1].flags&fIsolate == 0 || tb.tasks[2].attempts() != 0 || tb.tasks[1].tries() != 1 {
		t.Fatalf("task 1 flags %b tries %d, task 2 attempts %d", tb.tasks[1].flags, tb.tasks[1].tries(), tb.tasks[2].attempts())
	}
	for _, d := range tb.out.delay {
		tb.due(d)
	}
	tb.out.reset()
	alone := tb.take(3, 0, nil, 0, nil)
	if len(alone.tasks) != 1 || alone.tasks[0] != 1 {
		t.Fatalf("isolated retry sent with %v", alone.tasks)
	}
	// Alone, a deadline is the task's own: it fails.
	tb.reply(alone, replyInfo{}, []taskResult{{index: 1, attempt: int(alone.attempts[0]), err: &wireError{Code: codeDeadline, Message: "deadline"}}}, true, 0)
	if tb.failed != 1 || !errors.Is(tb.extra[1].err, ErrTaskTimeout) {
		t.Fatalf("failed %d, err %v", tb.failed, tb.extra[1].err)
	}
}
