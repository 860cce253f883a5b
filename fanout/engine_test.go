package fanout

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/storage/memstore"
)

// The dispatcher's scheduling, driven by a fake clock: backoffs, the ramp,
// speculation and async expiry happen when the clock says so, and not
// before. Nothing here sleeps: the tests advance the clock once the
// dispatcher has armed its timer, and wait for the calls it makes.

var engineEcho = Register("fanout.engine_test.echo", func(ctx context.Context, x int) (int, error) { return x, nil })

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	armed  chan time.Time // each Reset, with the deadline it set
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_000_000, 0), armed: make(chan time.Time, 1024)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer() clockTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves the clock by d and fires the timers due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.move(d)
}

func (c *fakeClock) move(d time.Duration) {
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if t.armed && !t.at.After(c.now) {
			t.armed = false
			t.ch <- c.now
		}
	}
}

type fakeTimer struct {
	c     *fakeClock
	ch    chan time.Time
	at    time.Time
	armed bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Set(at time.Time) {
	t.c.mu.Lock()
	t.drain()
	t.at, t.armed = at, true
	if !at.After(t.c.now) {
		// Due already: it fires now, as a real timer does, not at the
		// next Advance (which may never come).
		t.armed = false
		t.ch <- t.c.now
	}
	t.c.mu.Unlock()
	select {
	case t.c.armed <- at:
	default:
	}
}

func (t *fakeTimer) Stop() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.armed = false
	t.drain()
}

func (t *fakeTimer) drain() {
	select {
	case <-t.ch:
	default:
	}
}

// waitArmed waits until the dispatcher arms its timer for at least
// at; it returns the deadline.
func (c *fakeClock) waitArmed(t *testing.T, at time.Time) time.Time {
	t.Helper()
	guard := time.NewTimer(time.Minute)
	defer guard.Stop()
	for {
		select {
		case d := <-c.armed:
			if !d.Before(at) {
				return d
			}
		case <-guard.C:
			t.Fatalf("the dispatcher never armed its timer for %v", at)
		}
	}
}

// advanceNext moves the clock to the earliest deadline armed, if that is
// ahead and before limit (a zero limit is none), and fires it. Tests call
// it on a signal from armed; a signal from a setting since replaced or
// stopped moves nothing, and the setting that replaced it sends its own.
func (c *fakeClock) advanceNext(limit time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	for _, tm := range c.timers {
		if tm.armed && (next.IsZero() || tm.at.Before(next)) {
			next = tm.at
		}
	}
	if next.After(c.now) && (limit.IsZero() || next.Before(limit)) {
		c.move(next.Sub(c.now))
	}
}

// scripted is a backend whose calls the test answers.
type scripted struct {
	calls  chan *call
	limits backends.Limits
	store  *memstore.Store
	checks atomic.Int32 // asynchronous jobs' checks answered
}

type call struct {
	ctx     context.Context
	payload []byte
	reply   chan callReply
	async   bool // made by InvokeAsync
}

type callReply struct {
	b   []byte
	err error
}

func (s *scripted) Invoke(ctx context.Context, p []byte) ([]byte, error) {
	c := &call{ctx: ctx, payload: p, reply: make(chan callReply, 1)}
	s.calls <- c
	select {
	case r := <-c.reply:
		return r.b, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *scripted) Limits() backends.Limits { return s.limits }
func (s *scripted) Close() error            { return nil }

// asyncScripted offers InvokeAsync: the call returns at once, accepted.
// The synchronous check an asynchronous job makes first (a request of no
// task) is answered at once, by Handle, and counted in checks.
type asyncScripted struct{ *scripted }

func (s asyncScripted) Invoke(ctx context.Context, p []byte) ([]byte, error) {
	if req, err := decodeRequest(p); err == nil && len(req.Tasks) == 0 {
		s.checks.Add(1)
		return Handle(ctx, p), nil
	}
	return s.scripted.Invoke(ctx, p)
}

func (s asyncScripted) InvokeAsync(ctx context.Context, p []byte) error {
	c := &call{ctx: ctx, payload: p, reply: make(chan callReply, 1), async: true}
	s.calls <- c
	return nil
}

// run answers the call as a worker would.
func (c *call) run(st *memstore.Store) {
	ctx := context.WithValue(context.WithoutCancel(c.ctx), driverStoreKey{}, st)
	c.reply <- callReply{b: Handle(ctx, c.payload)}
}

func (s *scripted) next(t *testing.T) *call {
	t.Helper()
	select {
	case c := <-s.calls:
		return c
	case <-time.After(time.Minute):
		t.Fatal("no call within a minute")
		return nil
	}
}

// none asserts that no call is waiting.
func (s *scripted) none(t *testing.T) {
	t.Helper()
	select {
	case c := <-s.calls:
		t.Fatalf("an unexpected call (%d bytes)", len(c.payload))
	default:
	}
}

func newScripted(t *testing.T, o *Options, async bool) (*Executor, *scripted, *fakeClock) {
	st := memstore.New(nil)
	s := &scripted{calls: make(chan *call, 64), store: st,
		limits: backends.Limits{Concurrency: 8, Parallel: 1, InProcess: true, SameHost: true}}
	var b backends.Backend = s
	if async {
		b = asyncScripted{s}
	}
	opts := Options{Store: st, Logger: slog.New(slog.DiscardHandler)}
	if o != nil {
		opts = *o
		opts.Store, opts.Logger = st, slog.New(slog.DiscardHandler)
	}
	ex := NewExecutor(b, &opts)
	clk := newFakeClock()
	ex.clock = clk
	t.Cleanup(func() {
		ex.Close()
		st.Close()
	})
	return ex, s, clk
}

func TestEngineThrottleWaitsRetryAfter(t *testing.T) {
	ex, s, clk := newScripted(t, &Options{Concurrency: 1, BatchSize: 1}, false)
	start := clk.Now()
	j, err := Start(context.Background(), ex, engineEcho, []int{7})
	if err != nil {
		t.Fatal(err)
	}
	s.next(t).reply <- callReply{err: &backends.ThrottleError{RetryAfter: 5 * time.Second, Reason: "test"}}
	at := clk.waitArmed(t, start.Add(5*time.Second))
	if at.After(start.Add(5*time.Second + backoffBase)) {
		t.Fatalf("resend armed for %v after the throttle, want 5s (the retry-after) plus at most the jitter", at.Sub(start))
	}
	clk.Advance(at.Sub(start) - time.Millisecond)
	s.none(t) // not a moment early
	clk.Advance(time.Millisecond)
	s.next(t).run(s.store)
	out, err := j.Wait(context.Background())
	if err != nil || out[0] != 7 {
		t.Fatalf("Wait: %v, %v", out, err)
	}
	st := j.Stats()
	if st.Throttles != 1 || st.PerTask[0].Attempts != 1 || st.Retries != 0 {
		t.Fatalf("throttles %d, attempts %d, retries %d: want 1, 1, 0", st.Throttles, st.PerTask[0].Attempts, st.Retries)
	}
}

func TestEngineRamp(t *testing.T) {
	ex, s, clk := newScripted(t, &Options{Concurrency: 8, BatchSize: 1, Ramp: Ramp{Step: 2, Interval: 10 * time.Second}}, false)
	start := clk.Now()
	in := []int{0, 1, 2, 3, 4, 5}
	j, err := Start(context.Background(), ex, engineEcho, in)
	if err != nil {
		t.Fatal(err)
	}
	held := []*call{s.next(t), s.next(t)}
	clk.waitArmed(t, start.Add(10*time.Second))
	s.none(t) // two at first
	clk.Advance(10 * time.Second)
	held = append(held, s.next(t), s.next(t))
	clk.waitArmed(t, start.Add(20*time.Second))
	s.none(t) // four after one interval
	for _, c := range held {
		c.run(s.store)
	}
	// Slots freed: the last two go at once, within the ramp's four.
	s.next(t).run(s.store)
	s.next(t).run(s.store)
	if _, err := j.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p := j.Stats().PeakInFlight; p != 4 {
		t.Fatalf("peak in flight %d, want the ramp's 4", p)
	}
}

func TestEngineSpeculationThreshold(t *testing.T) {
	ex, s, clk := newScripted(t, &Options{Concurrency: 4, BatchSize: 1, Speculation: true}, false)
	start := clk.Now()
	in := make([]int, 40)
	j, err := Start(context.Background(), ex, engineEcho, in)
	if err != nil {
		t.Fatal(err)
	}
	// The first call straggles; every other one answers at once (no time
	// passes: every duration is 0, so the threshold is specMinAge).
	straggler := s.next(t)
	for range len(in) - 1 {
		s.next(t).run(s.store)
	}
	// Once the dispatcher has taken those results, only the straggler is
	// out.
	got := 0
	for range j.Results(context.Background()) {
		if got++; got == len(in)-1 {
			break
		}
	}
	for clk.Now().Sub(start) < specMinAge-5*time.Millisecond {
		clk.Advance(5 * time.Millisecond)
		s.none(t)
	}
	clk.Advance(specMinAge - clk.Now().Sub(start))
	// The backup goes now, whether the dispatcher armed its timer before
	// this move or after it: a timer is set for an instant, not a span
	// from whenever it is set.
	backup := s.next(t)
	backup.run(s.store)
	// The straggler is cancelled: its task has its result.
	select {
	case <-straggler.ctx.Done():
	case <-time.After(time.Minute):
		t.Fatal("the straggling copy was not cancelled")
	}
	if _, err := j.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := j.Stats(); st.Backups != 1 || st.Succeeded != len(in) {
		t.Fatalf("backups %d, succeeded %d", st.Backups, st.Succeeded)
	}
}

func TestEngineAsyncExpiry(t *testing.T) {
	ex, s, clk := newScripted(t, &Options{Concurrency: 2, BatchSize: 1, Async: true, TaskTimeout: time.Second}, true)
	start := clk.Now()
	j, err := Start(context.Background(), ex, engineEcho, []int{3})
	if err != nil {
		t.Fatal(err)
	}
	if n := s.checks.Load(); n != 1 {
		t.Fatalf("%d checks before the asynchronous job, want 1", n)
	}
	if lost := s.next(t); !lost.async { // accepted, and never heard of again
		t.Fatal("not an async call")
	}
	deadline := start.Add(ex.opts.TaskTimeout + abandonGrace + invokeSlack)
	// The poller lists now and then; nothing comes until the deadline.
	for clk.Now().Before(deadline.Add(-time.Second)) {
		clk.Advance(time.Second)
		s.none(t)
	}
	clk.Advance(deadline.Sub(clk.Now()))
	// Sent again after its backoff.
	var again *call
	for again == nil {
		select {
		case again = <-s.calls:
		case <-clk.armed:
			clk.advanceNext(time.Time{})
		}
	}
	// The second copy is accepted now or a little later, by the clock.
	expires := clk.Now().Add(deadline.Sub(start))
	again.run(s.store) // writes the reply object
	// The reply is found by listing. The clock moves from poll to poll,
	// never to the second copy's expiry: while a listing is out (in real
	// time), the next deadline armed is that expiry, and the clock waits
	// for the poll the dispatcher arms once the listing is back.
	for done := false; !done; {
		select {
		case <-j.Done():
			done = true
		case <-clk.armed:
			clk.advanceNext(expires)
		}
	}
	out, err := j.Wait(context.Background())
	if err != nil || out[0] != 3 {
		t.Fatalf("Wait: %v, %v", out, err)
	}
	// The first copy expired and the task was sent again, once.
	if st := j.Stats(); st.FailedInvocations != 1 || st.PerTask[0].Attempts != 2 {
		t.Fatalf("failed invocations %d, attempts %d: want 1 and 2", st.FailedInvocations, st.PerTask[0].Attempts)
	}
}

func TestEngineEveryCallThrottled(t *testing.T) {
	ex, s, clk := newScripted(t, &Options{Concurrency: 2, BatchSize: 1}, false)
	ctx, cancel := context.WithCancel(context.Background())
	j, err := Start(ctx, ex, engineEcho, []int{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		select {
		case c := <-s.calls:
			c.reply <- callReply{err: &backends.ThrottleError{Reason: "TooManyRequestsException"}}
		case <-clk.armed:
			clk.Advance(backoffCap)
		}
	}
	cancel()
	_, err = j.Wait(context.Background())
	if !errors.Is(err, context.Canceled) || !contains(err.Error(), "throttled") || !contains(err.Error(), "TooManyRequestsException") {
		t.Fatalf("Wait: %v; want the cancellation, naming the throttling", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// expiring is a context whose deadline the test decides: once expire is
// called it is done with context.DeadlineExceeded.
type expiring struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func (e *expiring) Done() <-chan struct{} { return e.done }
func (e *expiring) Err() error {
	select {
	case <-e.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}
func (e *expiring) expire() { e.once.Do(func() { close(e.done) }) }

// deadlinePlatform runs each invocation with Handle, as a cloud worker
// does, under a deadline that comes when a task says it is stuck; like
// the cloud runtimes, it returns the worker's reply at the deadline.
type deadlinePlatform struct {
	mu  sync.Mutex
	cur *expiring
}

func (p *deadlinePlatform) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	e := &expiring{Context: ctx, done: make(chan struct{})}
	p.mu.Lock()
	p.cur = e
	p.mu.Unlock()
	return Handle(e, payload), nil
}

func (p *deadlinePlatform) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur.expire()
}

func (p *deadlinePlatform) Limits() backends.Limits {
	return backends.Limits{Concurrency: 1, Parallel: 1, InProcess: true, SameHost: true}
}
func (p *deadlinePlatform) Close() error { return nil }

var thePlatform = &deadlinePlatform{}

// stuckFirst gets stuck on its first attempt when its input is 2: it tells
// the platform, whose deadline then comes.
var stuckFirst = Register("fanout.engine_test.stuckFirst", func(ctx context.Context, x int) (int, error) {
	if x == 2 && Task(ctx).Attempt == 0 {
		thePlatform.expire()
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return x * 10, nil
})

// At a platform's deadline, the finished tasks of a batch keep their
// results; the task caught running is sent again alone, and the tasks that
// never started go again without costing an attempt.
func TestEngineDeadlineKeepsFinished(t *testing.T) {
	ex := NewExecutor(thePlatform, &Options{BatchSize: 5, Logger: slog.New(slog.DiscardHandler)})
	defer ex.Close()
	out, err := Map(context.Background(), ex, stuckFirst, []int{0, 1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range out {
		if v != 10*i {
			t.Fatalf("out[%d] = %d", i, v)
		}
	}
	j, err := Start(context.Background(), ex, stuckFirst, []int{0, 1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := j.Stats()
	for i, want := range []int{1, 1, 2, 1, 1} {
		if got := s.PerTask[i].Attempts; got != want {
			t.Errorf("task %d: %d attempts, want %d", i, got, want)
		}
	}
	if s.Retries != 1 {
		t.Errorf("%d retries, want 1 (the task caught running)", s.Retries)
	}
}

// scriptedGroup is a backends.Group of scripted members.
type scriptedGroup struct {
	members []*scripted
}

func (g scriptedGroup) Members() []backends.Backend {
	bs := make([]backends.Backend, len(g.members))
	for k, m := range g.members {
		bs[k] = m
	}
	return bs
}
func (g scriptedGroup) Invoke(ctx context.Context, p []byte) ([]byte, error) {
	return g.members[0].Invoke(ctx, p)
}
func (g scriptedGroup) Limits() backends.Limits { return g.members[0].limits }
func (g scriptedGroup) Close() error            { return nil }

// Members of a group ramp apart: each function of a platform gets its own
// burst, so two members send twice what one would; a member that throttles
// holds its own slot, not the other's.
func TestEngineMembersRampApart(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	mk := func() *scripted {
		return &scripted{calls: make(chan *call, 64), store: st,
			limits: backends.Limits{Concurrency: 8, Parallel: 1, InProcess: true, SameHost: true}}
	}
	a, b := mk(), mk()
	ex := NewExecutor(scriptedGroup{[]*scripted{a, b}}, &Options{Store: st, Logger: slog.New(slog.DiscardHandler),
		Concurrency: 16, BatchSize: 1, Ramp: Ramp{Step: 2, Interval: 10 * time.Second}})
	clk := newFakeClock()
	ex.clock = clk
	defer ex.Close()
	start := clk.Now()
	j, err := Start(context.Background(), ex, engineEcho, make([]int, 10))
	if err != nil {
		t.Fatal(err)
	}
	held := []*call{a.next(t), a.next(t), b.next(t), b.next(t)}
	clk.waitArmed(t, start.Add(10*time.Second))
	a.none(t)
	b.none(t) // two each at first
	// A throttle on a cuts a's window and holds a slot there; b is not
	// affected: one interval on, it has its four.
	held[0].reply <- callReply{err: &backends.ThrottleError{Reason: "test"}}
	held = held[1:]
	clk.Advance(10 * time.Second)
	held = append(held, b.next(t), b.next(t))
	clk.waitArmed(t, start.Add(20*time.Second))
	b.none(t)
	for _, c := range held {
		c.run(st)
	}
	for done := false; !done; { // the rest, wherever there is room
		select {
		case c := <-a.calls:
			c.run(st)
		case c := <-b.calls:
			c.run(st)
		case <-j.Done():
			done = true
		case <-time.After(time.Minute):
			t.Fatal("the job hangs")
		}
	}
	if _, err := j.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := j.Stats(); s.Throttles != 1 || s.Succeeded != 10 || s.Retries != 0 {
		t.Fatalf("throttles %d, succeeded %d, retries %d; want 1, 10, 0", s.Throttles, s.Succeeded, s.Retries)
	}
}
