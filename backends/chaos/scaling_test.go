package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/chaos"
)

// holdBackend holds every call it receives until release is closed (or the
// call's context ends), announcing each on in: an invocation that keeps its
// container busy, as a long task does.
type holdBackend struct {
	in      chan struct{}
	release chan struct{}
}

func newHold(capacity int) *holdBackend {
	return &holdBackend{in: make(chan struct{}, capacity), release: make(chan struct{})}
}

func (h *holdBackend) Invoke(ctx context.Context, p []byte) ([]byte, error) {
	h.in <- struct{}{}
	select {
	case <-h.release:
		return p, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *holdBackend) Limits() backends.Limits { return backends.Limits{} }
func (h *holdBackend) Close() error            { return nil }

// driver makes calls at once and tells admitted calls from refused ones.
type driver struct {
	t    *testing.T
	h    *holdBackend
	wg   sync.WaitGroup
	once sync.Once
}

// newDriver returns a driver of calls to backends wrapping h; when the test
// ends it releases every held call and waits for them.
func newDriver(t *testing.T, h *holdBackend) *driver {
	d := &driver{t: t, h: h}
	t.Cleanup(d.finish)
	return d
}

func (d *driver) finish() {
	d.once.Do(func() { close(d.h.release) })
	d.wg.Wait()
}

// demand makes one Invoke per element of calls, all at once, and waits
// until each reached the wrapped backend (and holds its container) or was
// refused; it returns the refusals. A few goroutines make the calls, each
// going on to the next call after a refusal; a call that is held keeps its
// goroutine, and another takes its place. So a round costs a goroutine per
// admitted call, not per call.
func (d *driver) demand(calls ...backends.Backend) []error {
	d.t.Helper()
	errs := make(chan error, len(calls))
	var next atomic.Int64
	worker := func() {
		for {
			i := int(next.Add(1)) - 1
			if i >= len(calls) {
				return
			}
			if _, err := calls[i].Invoke(context.Background(), nil); err != nil {
				errs <- err
			}
		}
	}
	for range min(len(calls), 4) {
		d.wg.Go(worker)
	}
	guard := time.NewTimer(hangGuard)
	defer guard.Stop()
	var refused []error
	for range calls {
		select {
		case <-d.h.in:
			if int(next.Load()) < len(calls) {
				d.wg.Go(worker) // in place of the one now held
			}
		case err := <-errs:
			refused = append(refused, err)
		case <-guard.C:
			d.t.Fatal("calls neither ran nor were refused")
		}
	}
	return refused
}

// times returns n copies of b, for demand.
func times(b backends.Backend, n int) []backends.Backend {
	out := make([]backends.Backend, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// checkRefusals checks that every error is the refusal of rule that cloud
// sends, classified as a throttle with retryAfter.
func checkRefusals(t *testing.T, errs []error, cloud chaos.Cloud, rule chaos.Rule, status int, code string, retryAfter time.Duration) {
	t.Helper()
	for _, err := range errs {
		var r *chaos.Refusal
		if !errors.As(err, &r) {
			t.Fatalf("refusal %v is not a *chaos.Refusal", err)
		}
		if r.Cloud != cloud || r.Rule != rule || r.Status != status || r.Code != code {
			t.Fatalf("refusal %v: got cloud %s, rule %q, status %d, code %s; want %s, %q, %d, %s", err, r.Cloud, r.Rule, r.Status, r.Code, cloud, rule, status, code)
		}
		if !errors.Is(err, backends.ErrThrottled) || !errors.Is(err, chaos.ErrInjected) || !backends.Retryable(err) {
			t.Fatalf("refusal %v is not an injected, retryable throttle", err)
		}
		if got := backends.RetryAfter(err); got != retryAfter {
			t.Fatalf("refusal %v: RetryAfter = %v, want %v", err, got, retryAfter)
		}
		if !strings.Contains(err.Error(), code) {
			t.Fatalf("refusal %v does not name the platform's code %s", err, code)
		}
	}
}

func TestLambdaRampsThousandPerTenSeconds(t *testing.T) {
	t.Parallel()
	const want = 10000
	clk := newFakeClock()
	limits := chaos.LambdaAccount()
	limits.Concurrency = want // raised on request from the default 1,000
	acct := chaos.NewAccount(limits)
	h := newHold(want)
	b := chaos.Wrap(h, chaos.Faults{Scaling: chaos.LambdaFunction(acct), Clock: clk, ThrottleRetryAfter: time.Second})
	t.Cleanup(func() { b.Close() })
	d := newDriver(t, h)

	pending, refusals := want, 0
	for round := 0; pending > 0; round++ {
		if round > 0 {
			clk.Advance(10 * time.Second)
		}
		refused := d.demand(times(b, pending)...)
		running := want - len(refused)
		if wantRunning := min(1000*(round+1), want); running != wantRunning {
			t.Fatalf("after %d s: %d running, want %d", 10*round, running, wantRunning)
		}
		if got := b.Stats().Running; got != running {
			t.Fatalf("after %d s: Stats.Running = %d, want %d", 10*round, got, running)
		}
		// Every refusal is counted by kind below; read the first and last
		// of each round in full (reading all 45,000 triples the test's time
		// under -race).
		sample := refused
		if len(sample) > 2 {
			sample = []error{refused[0], refused[len(refused)-1]}
		}
		checkRefusals(t, sample, chaos.AWSLambda, chaos.RuleRamp, 429, "TooManyRequestsException", time.Second)
		for _, err := range sample {
			if !strings.Contains(err.Error(), "TooManyRequestsException: Rate Exceeded") {
				t.Fatalf("refusal %v does not read as Lambda's", err)
			}
		}
		refusals += len(refused)
		pending = len(refused)
		if round > 10 {
			t.Fatal("no convergence after 100 s")
		}
	}
	for _, c := range []struct {
		n    int
		want time.Duration
	}{{1, 0}, {1000, 0}, {1001, 10 * time.Second}, {2000, 10 * time.Second}, {5500, 50 * time.Second}, {10000, 90 * time.Second}} {
		if got, ok := b.TimeToRunning(c.n); !ok || got != c.want {
			t.Errorf("TimeToRunning(%d) = %v, %v; want %v", c.n, got, ok, c.want)
		}
		if got, ok := acct.TimeToRunning(c.n); !ok || got != c.want {
			t.Errorf("account TimeToRunning(%d) = %v, %v; want %v", c.n, got, ok, c.want)
		}
	}
	if _, ok := b.TimeToRunning(want + 1); ok {
		t.Errorf("TimeToRunning(%d) reported a time; never that many ran", want+1)
	}
	st := b.Stats()
	if st.ColdStarts != want || st.WarmStarts != 0 || st.PeakRunning != want || st.RampThrottles != refusals || refusals != 45000 {
		t.Errorf("Stats = %+v; want %d cold starts, %d running at peak, 45,000 ramp throttles (counted %d)", st, want, want, refusals)
	}
	if st.InnerCalls != want || st.Calls != want+refusals {
		t.Errorf("Stats = %+v: want %d calls reaching the backend of %d", st, want, want+refusals)
	}
	if as := acct.Stats(); as.PeakRunning != want || as.Environments != want || as.ConcurrencyThrottles != 0 {
		t.Errorf("account stats = %+v", as)
	}
}

func TestRampRefillsContinuously(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	h := newHold(100)
	b := chaos.Wrap(h, chaos.Faults{Clock: clk, Scaling: chaos.Scaling{Cloud: chaos.AWSLambda, Burst: 10, Refill: 10, RefillEvery: 10 * time.Second}})
	t.Cleanup(func() { b.Close() })
	d := newDriver(t, h)
	if refused := d.demand(times(b, 11)...); len(refused) != 1 {
		t.Fatalf("%d of 11 refused at t=0, want 1 (the burst is 10)", len(refused))
	}
	for _, step := range []struct {
		advance time.Duration
		ran     int // of 3 demanded
	}{
		{999 * time.Millisecond, 0},  // a token every second: not yet
		{time.Millisecond, 1},        // t=1s
		{2500 * time.Millisecond, 2}, // t=3.5s: two more tokens, half of one left
		{500 * time.Millisecond, 1},  // t=4s
		{time.Hour, 3},               // the bucket refilled up to its burst of 10
	} {
		clk.Advance(step.advance)
		if ran := 3 - len(d.demand(times(b, 3)...)); ran != step.ran {
			t.Fatalf("after %v more: %d of 3 ran, want %d", step.advance, ran, step.ran)
		}
	}
	if got := b.Stats().ColdStarts; got != 17 {
		t.Errorf("%d environments started, want 17", got)
	}
}

func TestWarmReuseTakesNoToken(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	h := newHold(100)
	// Two environments ever (no refill): only reuse lets more calls run.
	b := chaos.Wrap(h, chaos.Faults{Clock: clk, IdleTimeout: time.Minute, Scaling: chaos.Scaling{Cloud: chaos.AWSLambda, Burst: 2}})
	t.Cleanup(func() { b.Close() })
	for round := range 3 {
		d := newDriver(t, h)
		refused := d.demand(times(b, 3)...)
		if len(refused) != 1 {
			t.Fatalf("round %d: %d of 3 refused, want 1", round, len(refused))
		}
		checkRefusals(t, refused, chaos.AWSLambda, chaos.RuleRamp, 429, "TooManyRequestsException", 0)
		d.finish() // the two return; their environments are warm
		h.release = make(chan struct{})
		clk.Advance(30 * time.Second)
	}
	st := b.Stats()
	if st.ColdStarts != 2 || st.WarmStarts != 4 || st.RampThrottles != 3 || st.Running != 0 {
		t.Errorf("Stats = %+v: want 2 cold starts, 4 warm ones, 3 ramp throttles, none running", st)
	}
	// Past IdleTimeout the warm environments are gone, and the bucket is
	// empty: a call needs a new environment and is refused.
	clk.Advance(2 * time.Minute)
	d := newDriver(t, h)
	if refused := d.demand(b); len(refused) != 1 {
		t.Fatalf("after the environments expired: %d refused, want 1", len(refused))
	}
	if st := b.Stats(); st.Expired != 2 {
		t.Errorf("Expired = %d, want 2", st.Expired)
	}
}

func TestFunctionsShareAnAccount(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	acct := chaos.NewAccount(chaos.AccountLimits{Concurrency: 3000})
	h := newHold(4000)
	f := chaos.Faults{Clock: clk, Scaling: chaos.LambdaFunction(acct)}
	a, b := chaos.Wrap(h, f), chaos.Wrap(h, f)
	t.Cleanup(func() { a.Close(); b.Close() })
	d := newDriver(t, h)
	for _, fn := range []chaos.Backend{a, b} {
		if got := fn.Limits().Concurrency; got != 3000 {
			t.Errorf("Limits().Concurrency = %d, want the account's 3000", got)
		}
	}

	// Each function ramps on its own: 1,000 each at once, 2,000 together.
	refused := d.demand(append(times(a, 2000), times(b, 2000)...)...)
	checkRefusals(t, refused, chaos.AWSLambda, chaos.RuleRamp, 429, "TooManyRequestsException", 0)
	if sa, sb := a.Stats(), b.Stats(); sa.Running != 1000 || sb.Running != 1000 || len(refused) != 2000 {
		t.Fatalf("at t=0: %d and %d running, %d refused; want 1000 each, 2000 refused", sa.Running, sb.Running, len(refused))
	}
	// Ten seconds later each may add 1,000 more, but the account caps the
	// two together at 3,000.
	clk.Advance(10 * time.Second)
	refused = d.demand(append(times(a, 1000), times(b, 1000)...)...)
	checkRefusals(t, refused, chaos.AWSLambda, chaos.RuleConcurrency, 429, "TooManyRequestsException", 0)
	for _, err := range refused {
		if !strings.Contains(err.Error(), "ConcurrentInvocationLimitExceeded") {
			t.Fatalf("refusal %v does not give Lambda's reason", err)
		}
	}
	sa, sb, as := a.Stats(), b.Stats(), acct.Stats()
	if len(refused) != 1000 || sa.Running+sb.Running != 3000 || as.Running != 3000 || as.PeakRunning != 3000 {
		t.Fatalf("at t=10s: %d refused, %d+%d running, account %+v; want 1000 refused, 3000 running", len(refused), sa.Running, sb.Running, as)
	}
	if sa.ConcurrencyThrottles+sb.ConcurrencyThrottles != 1000 || as.ConcurrencyThrottles != 1000 || sa.RampThrottles+sb.RampThrottles != 2000 {
		t.Errorf("throttles by kind: %+v, %+v, account %+v", sa, sb, as)
	}
	if as.Environments != 3000 || sa.ColdStarts+sb.ColdStarts != 3000 {
		t.Errorf("environments: account %d, functions %d+%d; want 3000", as.Environments, sa.ColdStarts, sb.ColdStarts)
	}
}

func TestSCFRegionRateAndQuota(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	region := chaos.NewAccount(chaos.SCFRegion())
	h := newHold(2000)
	small := chaos.Wrap(h, chaos.Faults{Clock: clk, Scaling: chaos.SCFFunction(region, 128)})
	big := chaos.Wrap(h, chaos.Faults{Clock: clk, Scaling: chaos.SCFFunction(region, 512)})
	t.Cleanup(func() { small.Close(); big.Close() })
	d := newDriver(t, h)
	if got := small.Limits().Concurrency; got != 1000 {
		t.Errorf("a 128 MB function's Limits().Concurrency = %d, want 1000 (128,000 MB / 128 MB)", got)
	}

	// 500 new instances per minute in the region, refilled continuously;
	// the instances are small enough for the quota not to bind yet.
	for _, step := range []struct {
		advance      time.Duration
		demand, want int
	}{
		{0, 1000, 500},               // 64,000 MB
		{30 * time.Second, 500, 250}, // 96,000 MB
	} {
		clk.Advance(step.advance)
		refused := d.demand(times(small, step.demand)...)
		if ran := step.demand - len(refused); ran != step.want {
			t.Fatalf("after %v more: %d of %d ran, want %d", step.advance, ran, step.demand, step.want)
		}
		checkRefusals(t, refused, chaos.TencentSCF, chaos.RuleAccountRamp, 429, "ResourceLimit", 0)
	}
	// A minute later the rate would allow 500 more, but 32,000 MB are left
	// in the quota: 250 instances of 128 MB.
	clk.Advance(time.Minute)
	refused := d.demand(times(small, 300)...)
	if len(refused) != 50 {
		t.Fatalf("%d of 300 refused at the quota, want 50", len(refused))
	}
	checkRefusals(t, refused, chaos.TencentSCF, chaos.RuleMemory, 432, "ResourceLimitReached", 0)
	// The quota is the region's: another function is over it too.
	refused = d.demand(big)
	checkRefusals(t, refused, chaos.TencentSCF, chaos.RuleMemory, 432, "ResourceLimitReached", 0)
	if len(refused) != 1 {
		t.Fatalf("the other function's call was not refused")
	}
	want := chaos.AccountStats{Running: 1000, PeakRunning: 1000, RunningMB: 128000, PeakMB: 128000,
		Environments: 1000, RampThrottles: 750, MemoryThrottles: 51}
	if st := region.Stats(); st != want {
		t.Errorf("region stats %+v, want %+v", st, want)
	}
	if st := small.Stats(); st.AccountRampThrottles != 750 || st.MemoryThrottles != 50 || st.ColdStarts != 1000 {
		t.Errorf("function stats %+v", st)
	}
}

func TestSCFDefaultWorkers(t *testing.T) {
	t.Parallel()
	// 128,000 MB of 512 MB workers: 250 at once, the rest refused with 432.
	h := newHold(300)
	b := chaos.Wrap(h, chaos.Faults{Clock: newFakeClock(), Scaling: chaos.SCFFunction(chaos.NewAccount(chaos.SCFRegion()), 512)})
	t.Cleanup(func() { b.Close() })
	d := newDriver(t, h)
	refused := d.demand(times(b, 300)...)
	if len(refused) != 50 {
		t.Fatalf("%d of 300 refused, want 50", len(refused))
	}
	checkRefusals(t, refused, chaos.TencentSCF, chaos.RuleMemory, 432, "ResourceLimitReached", 0)
	if st := b.Stats(); st.MemoryThrottles != 50 || st.PeakRunning != 250 {
		t.Errorf("Stats = %+v: want 50 memory throttles, 250 running at peak", st)
	}
}

// TestUplinkRequestOverhead checks that every request costs the link its
// overhead besides its payload.
func TestUplinkRequestOverhead(t *testing.T) {
	t.Parallel()
	const latency = 20 * time.Millisecond
	clk := newFakeClock()
	link := chaos.NewUplink(latency, 1000000).RequestOverhead(500) // 1 ms per 1,000 bytes
	b := chaos.Wrap(&fakeBackend{}, chaos.Faults{Clock: clk, Uplink: link})
	closeAtEnd(t, b)
	payload := strings.Repeat("x", 1000)
	var res []<-chan result
	for range 2 {
		res = append(res, invokeAsync(t, context.Background(), b, payload))
	}
	var delays []time.Duration
	for range 2 {
		delays = append(delays, clk.nextTimer(t).d)
	}
	slices.Sort(delays)
	clk.Advance(delays[1]) // let both calls through before checking
	if want := []time.Duration{latency + 1500*time.Microsecond, latency + 3*time.Millisecond}; !slices.Equal(delays, want) {
		t.Errorf("uplink delays %v, want %v: 1,500 bytes a request", delays, want)
	}
	for _, r := range res {
		if got := recv(t, r, "call after the uplink"); got.err != nil {
			t.Fatal(got.err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("RequestOverhead(-1) did not panic")
		}
	}()
	link.RequestOverhead(-1)
}

func TestUplink(t *testing.T) {
	t.Parallel()
	const (
		latency = 20 * time.Millisecond
		bytes   = 1000
		bps     = 1000000 // 1 ms per call
	)
	clk := newFakeClock()
	link := chaos.NewUplink(latency, bps)
	inner := &fakeBackend{}
	b := chaos.Wrap(inner, chaos.Faults{Clock: clk, Uplink: link})
	closeAtEnd(t, b)
	other := chaos.Wrap(&fakeBackend{}, chaos.Faults{Clock: clk, Uplink: link}) // another function, same link
	closeAtEnd(t, other)
	payload := strings.Repeat("x", bytes)

	// Four calls from the driver at once: each waits for the ones queued
	// before it on the link, then the latency.
	var res []<-chan result
	for i := range 4 {
		if i%2 == 0 {
			res = append(res, invokeAsync(t, context.Background(), b, payload))
		} else {
			res = append(res, invokeAsync(t, context.Background(), other, payload))
		}
	}
	var delays []time.Duration
	for range 4 {
		tm := clk.nextTimer(t)
		delays = append(delays, tm.d)
	}
	slices.Sort(delays)
	if want := []time.Duration{latency + time.Millisecond, latency + 2*time.Millisecond, latency + 3*time.Millisecond, latency + 4*time.Millisecond}; !slices.Equal(delays, want) {
		t.Fatalf("uplink delays %v, want %v", delays, want)
	}
	for _, r := range res {
		if returned(r) {
			t.Fatal("a call returned before its payload reached the platform")
		}
	}
	if inner.calls.Load() != 0 {
		t.Fatal("the platform ran a call before its payload arrived")
	}
	clk.Advance(latency + 4*time.Millisecond)
	for _, r := range res {
		if got := recv(t, r, "call after the uplink"); got.err != nil || string(got.reply) != "reply:"+payload {
			t.Fatalf("call = %q, %v", got.reply, got.err)
		}
	}

	// Calls from inside the cloud skip the link: no timer, at once.
	inside := chaos.InsideCloud(context.Background())
	for range 3 {
		if _, err := b.Invoke(inside, []byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	clk.noTimer(t)

	// A worker that invokes from its task's context is inside the cloud:
	// the wrapper marks the context it gives the wrapped backend.
	nested := &fakeBackend{}
	var parent chaos.Backend
	nested.fn = func(ctx context.Context, p []byte) ([]byte, error) {
		if string(p) == "parent" {
			return parent.Invoke(ctx, []byte("child"))
		}
		return []byte("child ran"), nil
	}
	parent = chaos.Wrap(nested, chaos.Faults{Clock: clk, Uplink: link})
	closeAtEnd(t, parent)
	r := invokeAsync(t, context.Background(), parent, "parent")
	tm := clk.nextTimer(t) // the link is idle again: latency plus its 6 bytes
	if want := latency + link.Transfer(len("parent")); tm.d != want {
		t.Errorf("an idle link delayed a call by %v, want %v", tm.d, want)
	}
	tm.fire()
	if got := recv(t, r, "nested call"); got.err != nil || string(got.reply) != "child ran" {
		t.Fatalf("nested call = %q, %v", got.reply, got.err)
	}
	clk.noTimer(t)
	if st := parent.Stats(); st.Uplinked != 1 || st.Inside != 1 {
		t.Errorf("nested: Stats = %+v, want 1 call over the link and 1 from inside", st)
	}
	if sb, so := b.Stats(), other.Stats(); sb.Uplinked != 2 || so.Uplinked != 2 || sb.Inside != 3 {
		t.Errorf("Stats = %+v and %+v: want 2 uplinked each, 3 inside", sb, so)
	}
}

func TestScalingValidate(t *testing.T) {
	t.Parallel()
	quota := chaos.NewAccount(chaos.AccountLimits{MemoryMB: 1000})
	for _, tc := range []struct {
		name  string
		s     chaos.Scaling
		field string
	}{
		{"no cloud", chaos.Scaling{Burst: 10}, "Scaling.Cloud"},
		{"unknown cloud", chaos.Scaling{Cloud: "azure"}, "Scaling.Cloud"},
		{"negative burst", chaos.Scaling{Cloud: chaos.AWSLambda, Burst: -1}, "Scaling.Burst"},
		{"refill without period", chaos.Scaling{Cloud: chaos.AWSLambda, Burst: 10, Refill: 10}, "Scaling.Refill"},
		{"period without refill", chaos.Scaling{Cloud: chaos.AWSLambda, Burst: 10, RefillEvery: time.Second}, "Scaling.RefillEvery"},
		{"refill without burst", chaos.Scaling{Cloud: chaos.AWSLambda, Refill: 10, RefillEvery: time.Second}, "Scaling.Refill"},
		{"no memory under a quota", chaos.Scaling{Cloud: chaos.TencentSCF, Account: quota}, "Scaling.MemoryMB"},
		{"memory over the quota", chaos.Scaling{Cloud: chaos.TencentSCF, MemoryMB: 2000, Account: quota}, "Scaling.MemoryMB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := chaos.Faults{Scaling: tc.s}.Validate()
			if err == nil || !strings.Contains(err.Error(), "Faults."+tc.field) {
				t.Fatalf("Validate = %v, want an error naming Faults.%s", err, tc.field)
			}
		})
	}
	for _, tc := range []struct {
		name  string
		l     chaos.AccountLimits
		field string
	}{
		{"negative concurrency", chaos.AccountLimits{Concurrency: -1}, "Concurrency"},
		{"negative memory", chaos.AccountLimits{MemoryMB: -1}, "MemoryMB"},
		{"account refill without period", chaos.AccountLimits{Burst: 5, Refill: 5}, "Refill"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.l.Validate()
			if err == nil || !strings.Contains(err.Error(), "AccountLimits."+tc.field) {
				t.Fatalf("Validate = %v, want an error naming AccountLimits.%s", err, tc.field)
			}
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "AccountLimits."+tc.field) {
					t.Errorf("NewAccount panicked with %v, want the validation error", r)
				}
			}()
			chaos.NewAccount(tc.l)
		})
	}
	for _, f := range []func(){
		func() { chaos.NewUplink(-time.Second, 0) },
		func() { chaos.NewUplink(0, -1) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "negative") {
					t.Errorf("NewUplink panicked with %v, want an error saying what is negative", r)
				}
			}()
			f()
		}()
	}
	for _, s := range []chaos.Scaling{chaos.LambdaFunction(nil), chaos.LambdaFunction(chaos.NewAccount(chaos.LambdaAccount())),
		chaos.SCFFunction(chaos.NewAccount(chaos.SCFRegion()), 512)} {
		if err := (chaos.Faults{Scaling: s}).Validate(); err != nil {
			t.Errorf("preset %+v: %v", s, err)
		}
	}
}
