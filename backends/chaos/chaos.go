// Package chaos wraps any backend with seeded, reproducible faults and
// latency, so that a pipeline can be tested on a laptop against what cloud
// function platforms do to it: throttling, invocations that fail before or
// after their tasks ran, duplicate deliveries, workers that die mid-batch,
// stragglers, invoke latency, cold starts, and a concurrency cap; and it
// simulates how cloud platforms scale (Faults.Scaling: Lambda's and SCF's
// rates of new environments, account caps and quotas, and their refusals)
// and the driver's link to the cloud (Faults.Uplink).
//
//	b := chaos.Wrap(local.New(nil), chaos.Faults{
//		Seed:       42,
//		FailBefore: 0.05, // 5% of invocations fail before their tasks run
//		FailAfter:  0.05, // 5% run, then their reply is lost
//		Throttle:   0.05, // 5% are refused with a ThrottleError
//		Duplicate:  0.02, // 2% run twice
//		Crash:      0.01, // 1% lose their worker part-way through
//		Straggler:  0.01, StragglerFactor: 10,
//		Latency:    50 * time.Millisecond, ColdStart: 300 * time.Millisecond,
//		Concurrency: 100, // a Lambda-like cap: a 101st call in flight is throttled
//	})
//	ex := fanout.NewExecutor(b, &fanout.Options{Retries: 10, Concurrency: 150})
//	defer ex.Close()
//	out, err := fanout.Map(ctx, ex, f, inputs) // every result, exactly once
//	fmt.Printf("%+v\n", b.Stats())               // what was injected
//
// Every fault is off when its field is zero: Wrap(b, Faults{}) behaves as b.
//
// # Faults
//
// Each call to Invoke meets the faults in this order (steps 2 to 5 end
// the call without reaching the wrapped backend):
//
//  1. The uplink (Faults.Uplink), unless the call comes from inside the
//     cloud: its payload travels to the platform.
//  2. The concurrency cap (Faults.Concurrency): a call arriving while that
//     many are in flight is refused with a *backends.ThrottleError.
//  3. Throttle: refused with a *backends.ThrottleError.
//  4. FailBefore: fails with an error wrapping Faults.FailBeforeErr; the
//     wrapped backend is not called.
//  5. The platform's scaling rules (Faults.Scaling): the call takes a warm
//     idle container or needs a new one, which the rules may refuse with a
//     *Refusal.
//  6. Latency, then a cold start if the container is new.
//  7. The wrapped backend is called, twice when Duplicate strikes (both
//     copies run; the first copy's reply is returned). Crash cancels the
//     wrapped call's context part-way and the call fails with
//     backends.ErrWorkerLost: some tasks of the batch ran, others did not.
//  8. FailAfter: the wrapped backend ran the invocation; its reply is
//     dropped and the call fails with an error wrapping Faults.FailAfterErr.
//  9. Straggler: the reply is held back for (StragglerFactor-1) times the
//     wrapped call's duration.
//
// InvokeAsync (offered when the wrapped backend is a backends.AsyncBackend)
// meets the uplink, Throttle, FailBefore, Latency, Duplicate (the event is
// delivered twice, the second time after up to DuplicateDelay) and
// FailAfter (the event was accepted and will run, but the call reports a
// failure). Crashes, stragglers, cold starts, the cap and the scaling rules
// do not apply to it: once the platform accepted an asynchronous invocation
// it runs out of the wrapper's sight (the platform queues events rather
// than refusing them).
//
// # Scaling
//
// Faults.Scaling makes the wrapped backend one function of a simulated
// platform that scales as the real one does. The function keeps execution
// environments (containers): an Invoke reuses the most recently used idle
// one, or needs a new one. New environments come from token buckets: the
// function's own (Scaling.Burst at once, then Scaling.Refill per
// Scaling.RefillEvery, refilled continuously) and, shared by the functions
// of one Account, the account's (AccountLimits.Burst and its refill). The
// Account also caps the invocations running at once across its functions
// (AccountLimits.Concurrency) and their memory (AccountLimits.MemoryMB, each
// counting its function's Scaling.MemoryMB). A call the rules refuse ends
// with a *Refusal, the platform's answer: AWS Lambda's 429
// TooManyRequestsException "Rate Exceeded.", SCF's 429 ResourceLimit (too
// many new instances) or 432 ResourceLimitReached (over the quota). A
// Refusal is a throttle (errors.Is(err, backends.ErrThrottled)), so the
// executor waits and resends as it does for the real platform's.
//
// The presets follow the platforms' documented defaults: LambdaFunction
// (1,000 new environments per 10 s per function, refilled continuously)
// with LambdaAccount (1,000 running at once per account and region, raised
// on request), and SCFFunction with SCFRegion (500 new instances per minute
// and 128,000 MB running per region). With LambdaFunction, 10,000
// invocations asked for at once are all running after 90 s at the soonest:
// 1,000 at once, then 1,000 more every 10 s. Backend.TimeToRunning and
// Account.TimeToRunning report when n were first running.
//
// Environments and Accounts are plain counters under a mutex, and delays
// are timers of the Clock, so 10,000 invocations in flight cost little
// beyond their callers' goroutines; with a fake Clock a test steps through
// the ramp.
//
// # Uplink
//
// Faults.Uplink is the driver's network link to the cloud, shared by the
// functions (and clouds) one driver calls: a call's payload waits for the
// payloads sent before it, takes its size over the bandwidth, and reaches
// the platform the link's latency later. Calls from inside the cloud skip
// it: a context marked with InsideCloud says so, and the wrapper marks the
// context it gives the wrapped backend, so a worker that invokes other
// workers from its task's context (an invoker) does not pay the uplink.
//
// # Streaming
//
// The Backend Wrap returns is never a backends.StreamBackend, even when the
// wrapped backend is one (local, process): chaos simulates a cloud function
// platform, which returns a batch's results together in one response, and
// its faults (a crash part-way, a reply lost after the tasks ran, a
// straggler's held-back reply) act on whole replies. A part delivered ahead
// of a reply that is then lost would be a fault no platform has. The
// executor therefore gathers results from a wrapped backend as it would from
// Lambda or SCF.
//
// # Determinism
//
// Calls are numbered 0, 1, 2, ... in the order they reach the wrapper
// (Invoke and InvokeAsync together; calls refused by the concurrency cap
// are not numbered, so the cap, which depends on timing, does not shift
// the faults of the calls it admits). Every random decision for call n
// (which faults strike, the latency jitter, where a crash cuts, when a
// duplicate starts) is drawn from a stream that depends only on Faults.Seed
// and n. So the same seed and the same sequence of calls give the same
// faults, whatever the payloads; when calls are concurrent, the decisions
// for the first N calls are the same set every run, and only which payload
// arrives as call n depends on scheduling. Each decision has its own
// draw, so changing one rate (FailAfter, say) changes only that fault's
// decisions: every other draw of every call stays as it was.
//
// Decisions are not derived from the payload: gowren payloads carry a random
// job ID, so a payload hash would differ on every run; and a retry must be
// able to draw a different fate from the attempt it replaces.
//
// Calls refused by the scaling rules are numbered: they met Throttle and
// FailBefore before the platform refused them. So with Faults.Scaling on a
// real clock, which payload meets which fault also depends on timing.
//
// The concurrency cap, the container pool, the scaling rules and the
// uplink depend on how many calls are in flight and on time, and crash
// points without CrashWithin depend on measured durations; with an
// injected Clock (Faults.Clock) and sequential calls, those are
// reproducible too.
//
// # Errors
//
// Every injected error satisfies errors.Is(err, ErrInjected) and the
// classification the executor acts on: errors.Is(err, backends.ErrThrottled)
// with backends.RetryAfter(err) == Faults.ThrottleRetryAfter for throttles
// (a *Refusal of the scaling rules among them),
// backends.ErrWorkerLost for crashes, and FailBeforeErr or FailAfterErr for
// failures. Errors of the wrapped backend are returned as they are.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gowren/gowren/backends"
)

// ErrInjected is wrapped by every error the chaos backend makes up, so a
// test can tell injected failures from real ones.
var ErrInjected = errors.New("injected fault")

// DefaultStragglerFactor is the slow-down of a straggler when
// Faults.StragglerFactor is zero.
const DefaultStragglerFactor = 10

// DefaultIdleTimeout is how long a simulated container stays warm when
// Faults.IdleTimeout is zero.
const DefaultIdleTimeout = 10 * time.Minute

// Faults says what to inject. The zero value injects nothing. Probabilities
// are in [0, 1]; each is drawn independently per call (see the package
// documentation for the order in which they apply).
type Faults struct {
	// Seed selects the sequence of random decisions: the same seed and the
	// same sequence of calls give the same faults. Defaults to 0, itself a
	// valid seed.
	Seed uint64

	// Throttle is the probability that a call is refused with a
	// *backends.ThrottleError without calling the wrapped backend, as a
	// platform's rate limit does. Defaults to 0: never.
	Throttle float64
	// ThrottleRetryAfter is the RetryAfter of every injected throttle
	// (Throttle and Concurrency). Defaults to 0: the error gives no advice.
	ThrottleRetryAfter time.Duration

	// FailBefore is the probability that a call fails before its tasks
	// ran: the wrapped backend is not called. Defaults to 0: never.
	FailBefore float64
	// FailBeforeErr is the error those failures wrap. Defaults to
	// backends.ErrTransport (retried by the executor).
	FailBeforeErr error
	// FailAfter is the probability that the wrapped backend runs the
	// invocation but its reply is lost: the tasks ran (their side effects
	// happened) and the call fails. Defaults to 0: never.
	FailAfter float64
	// FailAfterErr is the error those failures wrap. Defaults to
	// backends.ErrWorkerLost (retried by the executor).
	FailAfterErr error

	// Crash is the probability that the worker dies during an Invoke: the
	// wrapped call's context is cancelled at a random point, so some tasks
	// of a batch ran and others did not, and the call fails with
	// backends.ErrWorkerLost. The simulated container dies with it.
	// Defaults to 0: never.
	Crash float64
	// CrashWithin bounds where a crash strikes: at a uniformly random time
	// in [0, CrashWithin) after the wrapped call starts. Defaults to the
	// moving average of the wrapped backend's Invoke durations so far, so
	// that crashes land mid-invocation without tuning; until one has
	// completed, a crash lets the call finish and loses its reply.
	CrashWithin time.Duration

	// Duplicate is the probability that an invocation is delivered twice,
	// as platforms with at-least-once delivery do. Invoke runs both copies
	// (concurrently) and returns the first copy's reply once both ended;
	// InvokeAsync delivers the event twice. Defaults to 0: never.
	Duplicate float64
	// DuplicateDelay delays the second copy by a random time in
	// [0, DuplicateDelay). For InvokeAsync the second delivery then happens
	// after the call returned (Close waits for it). Defaults to 0: the
	// copies start together.
	DuplicateDelay time.Duration

	// Straggler is the probability that an Invoke is slowed down: its
	// reply is held back so that the call takes StragglerFactor times the
	// wrapped call's duration. Defaults to 0: never.
	Straggler float64
	// StragglerFactor is the slow-down of a straggler, at least 1.
	// Defaults to DefaultStragglerFactor (10).
	StragglerFactor float64

	// Latency is added to every call that reaches the wrapped backend,
	// before it is called: the platform's invoke overhead. Defaults to 0.
	Latency time.Duration
	// LatencyJitter adds a uniformly random [0, LatencyJitter) to Latency.
	// Defaults to 0.
	LatencyJitter time.Duration

	// ColdStart is paid by an Invoke that finds no warm simulated
	// container idle: the wrapper keeps a pool of containers, a call takes
	// the most recently used idle one or starts a new one, paying
	// ColdStart, and gives it back when it returns. Defaults to 0: no
	// cold start delay, and no containers are simulated unless Scaling is
	// set.
	ColdStart time.Duration
	// IdleTimeout is how long an idle container stays warm. Defaults to
	// DefaultIdleTimeout (10 minutes).
	IdleTimeout time.Duration

	// Concurrency caps the Invoke calls in flight, like a Lambda
	// function's concurrency limit: a call arriving while Concurrency calls
	// are in flight is refused with a *backends.ThrottleError without
	// calling the wrapped backend. Limits().Concurrency reports the cap.
	// Defaults to 0: no cap beyond the wrapped backend's.
	Concurrency int

	// Scaling simulates a cloud platform's scaling rules for this
	// function: how fast it may start new environments, the account's
	// concurrency and memory quota it shares with other functions, and the
	// refusals the platform sends (see Scaling, LambdaFunction and
	// SCFFunction). New environments pay ColdStart. Defaults to the zero
	// Scaling: none.
	Scaling Scaling

	// Uplink is the driver's link to the cloud: an Invoke or InvokeAsync
	// made from the driver first sends its payload over it (latency plus
	// bytes over bandwidth, one call after another); calls whose context
	// is marked by InsideCloud skip it. Defaults to nil: no link cost.
	Uplink *Uplink

	// Clock measures durations and times every delay. Tests inject a fake
	// one to check delays without waiting for them. Defaults to the system
	// clock.
	Clock Clock
}

// Validate reports the first field of f that is out of range: a probability
// outside [0, 1], a negative duration or cap, or a StragglerFactor below 1.
func (f Faults) Validate() error {
	for _, p := range []struct {
		name string
		v    float64
	}{
		{"Throttle", f.Throttle}, {"FailBefore", f.FailBefore}, {"FailAfter", f.FailAfter},
		{"Crash", f.Crash}, {"Duplicate", f.Duplicate}, {"Straggler", f.Straggler},
	} {
		if !(p.v >= 0 && p.v <= 1) {
			return fmt.Errorf("chaos: Faults.%s = %v is not a probability in [0, 1]", p.name, p.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ThrottleRetryAfter", f.ThrottleRetryAfter}, {"CrashWithin", f.CrashWithin},
		{"DuplicateDelay", f.DuplicateDelay}, {"Latency", f.Latency}, {"LatencyJitter", f.LatencyJitter},
		{"ColdStart", f.ColdStart}, {"IdleTimeout", f.IdleTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("chaos: Faults.%s = %v is negative", d.name, d.v)
		}
	}
	if f.StragglerFactor != 0 && !(f.StragglerFactor >= 1 && !math.IsInf(f.StragglerFactor, 1)) {
		return fmt.Errorf("chaos: Faults.StragglerFactor = %v: want a finite factor of at least 1 (or 0 for the default %d)", f.StragglerFactor, DefaultStragglerFactor)
	}
	if f.Concurrency < 0 {
		return fmt.Errorf("chaos: Faults.Concurrency = %d is negative", f.Concurrency)
	}
	return f.Scaling.validate()
}

// Stats count what a chaos backend did since Wrap. Every count covers
// Invoke and InvokeAsync together.
type Stats struct {
	// Calls counts the calls received (Invoke and InvokeAsync) before
	// Close.
	Calls int
	// InnerCalls counts calls made to the wrapped backend, both copies of
	// a duplicate included.
	InnerCalls int
	// Throttles counts calls refused by the Throttle probability.
	Throttles int
	// CapThrottles counts calls refused because Concurrency calls were in
	// flight.
	CapThrottles int
	// FailedBefore and FailedAfter count the injected failures.
	FailedBefore int
	FailedAfter  int
	// Duplicates counts invocations delivered twice.
	Duplicates int
	// Crashes counts invocations whose worker was made to die.
	Crashes int
	// Stragglers counts replies held back.
	Stragglers int
	// ColdStarts counts simulated containers (execution environments)
	// started, WarmStarts calls that reused an idle one, and Expired
	// containers dropped after IdleTimeout. All stay 0 unless
	// Faults.ColdStart or Faults.Scaling is set.
	ColdStarts int
	WarmStarts int
	Expired    int
	// RampThrottles, AccountRampThrottles, ConcurrencyThrottles and
	// MemoryThrottles count the Invoke calls refused by Faults.Scaling,
	// by rule: RuleRamp, RuleAccountRamp, RuleConcurrency, RuleMemory.
	RampThrottles        int
	AccountRampThrottles int
	ConcurrencyThrottles int
	MemoryThrottles      int
	// Running is the number of Invoke calls holding a simulated container
	// now (starting or running the wrapped call); PeakRunning the most at
	// once. Both stay 0 unless Faults.ColdStart or Faults.Scaling is set.
	Running     int
	PeakRunning int
	// Uplinked counts the calls that went over Faults.Uplink; Inside the
	// calls that skipped it, made from inside the cloud.
	Uplinked int
	Inside   int
	// InFlight is the number of Invoke calls in flight now (past the
	// uplink); PeakInFlight the most admitted at once (never more than Faults.Concurrency when
	// that is set).
	InFlight     int
	PeakInFlight int
}

// Clock is the time source of a chaos backend: Now measures durations and
// NewTimer times every delay. Implementations must be safe for concurrent
// use.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer whose channel receives once d has passed.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer made by a Clock, as time.Timer.
type Timer interface {
	// C returns the channel on which the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it stopped
	// it before it fired.
	Stop() bool
}

type systemClock struct{}

func (systemClock) Now() time.Time                 { return time.Now() }
func (systemClock) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time { return t.t.C }
func (t sysTimer) Stop() bool          { return t.t.Stop() }

// Backend is a backend with faults injected. Wrap returns one; when the
// wrapped backend is a backends.AsyncBackend, so is the Backend Wrap
// returns (a type assertion finds InvokeAsync), and not otherwise. It is
// never a backends.StreamBackend (see the package documentation).
//
// Invoke, InvokeAsync, Limits and Stats are safe for concurrent use.
// Invoke and InvokeAsync return promptly when their context ends (with an
// error satisfying errors.Is(err, ctx.Err())) or when Close is called during
// an injected delay (backends.ErrClosed). Close stops the injected delays,
// waits for the calls in flight and the wrapper's own goroutines (delayed
// duplicate deliveries), then closes the wrapped backend and returns its
// error. Calls after Close return backends.ErrClosed.
type Backend interface {
	backends.Backend
	// Stats returns a snapshot of the counts of what was injected.
	Stats() Stats
	// TimeToRunning reports how long after the first Invoke reached the
	// simulated platform n Invoke calls were first running at once
	// (holding containers, see Stats.Running); ok is false if that never
	// happened, n < 1, or neither Faults.ColdStart nor Faults.Scaling is
	// set.
	TimeToRunning(n int) (d time.Duration, ok bool)
}

// Wrap returns b with the faults f injected. The returned Backend owns b:
// its Close closes b. Wrap panics if b is nil or f is invalid (see
// Faults.Validate), as a constant configuration is a programming error.
func Wrap(b backends.Backend, f Faults) Backend {
	if b == nil {
		panic("chaos: Wrap of a nil backend")
	}
	if err := f.Validate(); err != nil {
		panic(err.Error())
	}
	if f.FailBeforeErr == nil {
		f.FailBeforeErr = backends.ErrTransport
	}
	if f.FailAfterErr == nil {
		f.FailAfterErr = backends.ErrWorkerLost
	}
	if f.StragglerFactor == 0 {
		f.StragglerFactor = DefaultStragglerFactor
	}
	if f.IdleTimeout == 0 {
		f.IdleTimeout = DefaultIdleTimeout
	}
	if f.Clock == nil {
		f.Clock = systemClock{}
	}
	w := &wrapper{inner: b, f: f, done: make(chan struct{})}
	w.random = f.Throttle > 0 || f.FailBefore > 0 || f.FailAfter > 0 || f.Crash > 0 ||
		f.Duplicate > 0 || f.Straggler > 0 || f.LatencyJitter > 0
	w.pool = f.ColdStart > 0 || f.Scaling.Cloud != ""
	w.active = w.random || f.Latency > 0 || w.pool || f.Concurrency > 0 || f.Uplink != nil
	w.ramp = newBucket(f.Scaling.Burst, f.Scaling.Refill, f.Scaling.RefillEvery)
	if f.Scaling.Cloud != "" {
		for _, r := range []Rule{RuleRamp, RuleAccountRamp, RuleConcurrency, RuleMemory} {
			w.refusals[ruleIndex(r)] = *f.Scaling.refusal(r, f.ThrottleRetryAfter)
		}
	}
	w.limits = b.Limits()
	lower := func(c int) {
		if c > 0 && (w.limits.Concurrency <= 0 || w.limits.Concurrency > c) {
			w.limits.Concurrency = c
		}
	}
	lower(f.Concurrency)
	if a := f.Scaling.Account; a != nil {
		lower(a.l.Concurrency)
		if a.l.MemoryMB > 0 {
			lower(a.l.MemoryMB / f.Scaling.MemoryMB)
		}
	}
	// One type per set of capabilities, so that a type assertion finds
	// only what the wrapped backend offers; InvokeStream is never offered.
	if ab, ok := b.(backends.AsyncBackend); ok {
		aw := &asyncWrapper{wrapper: w, async: ab}
		w.self = aw
		return aw
	}
	w.self = w
	return w
}

// cloud returns the context the wrapped backend gets: inside the cloud, and
// with this wrapper as the backend a worker invokes its children through
// (unless a wrapper further out set one), so the simulated platform's rules
// apply to the calls an invoker makes as to the driver's.
func (w *wrapper) cloud(ctx context.Context) context.Context {
	ctx = InsideCloud(ctx)
	if backends.InvokerOf(ctx) == nil {
		ctx = backends.WithInvoker(ctx, w.self)
	}
	return ctx
}

// wrapper is the Backend for a wrapped backend without InvokeAsync, and the
// core of asyncWrapper.
type wrapper struct {
	inner  backends.Backend
	self   backends.Backend // what Wrap returned: the wrapper as its callers see it
	f      Faults
	limits backends.Limits
	random bool // some decision needs the per-call random stream
	active bool // anything at all is injected
	pool   bool // containers are simulated (ColdStart or Scaling)

	mu     sync.RWMutex
	closed bool
	done   chan struct{} // closed by Close: injected delays end
	wg     sync.WaitGroup
	once   sync.Once
	errC   error

	seq    atomic.Int64 // numbers the calls the cap admitted: call n draws from stream n
	meanNs atomic.Int64 // moving average of successful wrapped Invoke durations

	// idleMu guards the function's containers and scaling state.
	idleMu   sync.Mutex
	idle     []time.Time // idle-since of warm containers, oldest first
	ramp     bucket      // the function's new containers (Scaling.Burst)
	refusals [4]Refusal  // the platform's answer per rule, in ruleIndex order
	running  int         // Invoke calls holding a container
	tl       timeline

	calls, innerCalls, throttles, capThrottles atomic.Int64
	failedBefore, failedAfter, duplicates      atomic.Int64
	crashes, stragglers, cold, warm, expired   atomic.Int64
	inFlight, peak                             atomic.Int64
	refused                                    [4]atomic.Int64 // by rule, in ruleIndex order
	peakRunning, uplinked, inside              atomic.Int64
}

// asyncWrapper is the Backend for a wrapped AsyncBackend.
type asyncWrapper struct {
	*wrapper
	async backends.AsyncBackend
}

// Limits returns the wrapped backend's limits, with Concurrency lowered to
// Faults.Concurrency, the Scaling account's Concurrency, and its MemoryMB
// quota over the function's MemoryMB, when those are set and lower.
func (w *wrapper) Limits() backends.Limits { return w.limits }

// Stats returns a snapshot of the counts of what was injected.
func (w *wrapper) Stats() Stats {
	return Stats{
		Calls: int(w.calls.Load()), InnerCalls: int(w.innerCalls.Load()),
		Throttles: int(w.throttles.Load()), CapThrottles: int(w.capThrottles.Load()),
		FailedBefore: int(w.failedBefore.Load()), FailedAfter: int(w.failedAfter.Load()),
		Duplicates: int(w.duplicates.Load()), Crashes: int(w.crashes.Load()),
		Stragglers: int(w.stragglers.Load()), ColdStarts: int(w.cold.Load()),
		WarmStarts: int(w.warm.Load()), Expired: int(w.expired.Load()),
		InFlight: int(w.inFlight.Load()), PeakInFlight: int(w.peak.Load()),
		RampThrottles: int(w.refused[0].Load()), AccountRampThrottles: int(w.refused[1].Load()),
		ConcurrencyThrottles: int(w.refused[2].Load()), MemoryThrottles: int(w.refused[3].Load()),
		Running: w.runningNow(), PeakRunning: int(w.peakRunning.Load()),
		Uplinked: int(w.uplinked.Load()), Inside: int(w.inside.Load()),
	}
}

func (w *wrapper) runningNow() int {
	w.idleMu.Lock()
	defer w.idleMu.Unlock()
	return w.running
}

// TimeToRunning reports when n Invoke calls were first running at once.
func (w *wrapper) TimeToRunning(n int) (time.Duration, bool) {
	w.idleMu.Lock()
	defer w.idleMu.Unlock()
	return w.tl.timeTo(n)
}

// Close ends injected delays, waits for the calls in flight and the
// wrapper's goroutines, then closes the wrapped backend. It is idempotent
// and returns the wrapped backend's Close error.
func (w *wrapper) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.done)
	}
	w.mu.Unlock()
	w.wg.Wait()
	w.once.Do(func() { w.errC = w.inner.Close() })
	return w.errC
}

// enter registers a call; it reports false once the backend is closed.
func (w *wrapper) enter() bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return false
	}
	w.wg.Add(1)
	return true
}

// plan holds the random decisions for one call.
type plan struct {
	throttle, failBefore, crash, failAfter, duplicate, straggle bool
	crashAt, dupAt, jitter                                      float64 // fractions in [0, 1)
}

// plan draws the decisions of call n. The draws happen in a fixed order
// whatever the faults configured, so a decision depends only on (seed, n).
func (w *wrapper) plan(n uint64) plan {
	if !w.random {
		return plan{}
	}
	s := newStream(w.f.Seed, n)
	var p plan
	p.throttle = s.float() < w.f.Throttle
	p.failBefore = s.float() < w.f.FailBefore
	p.crash = s.float() < w.f.Crash
	p.crashAt = s.float()
	p.failAfter = s.float() < w.f.FailAfter
	p.duplicate = s.float() < w.f.Duplicate
	p.dupAt = s.float()
	p.straggle = s.float() < w.f.Straggler
	p.jitter = s.float()
	return p
}

// stream is a SplitMix64 generator: small, fast and well mixed, so the
// stream of call n is independent of that of call n+1.
type stream struct{ x uint64 }

const golden = 0x9e3779b97f4a7c15

func newStream(seed, n uint64) stream { return stream{x: mix64(seed ^ mix64(n+golden))} }

func (s *stream) float() float64 {
	s.x += golden
	return float64(mix64(s.x)>>11) / (1 << 53)
}

func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func frac(d time.Duration, f float64) time.Duration { return time.Duration(float64(d) * f) }

// sleep waits d on the clock; it returns early with ctx's error or, after
// Close, backends.ErrClosed.
func (w *wrapper) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := w.f.Clock.NewTimer(d)
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	case <-w.done:
		t.Stop()
		return backends.ErrClosed
	}
}

func (w *wrapper) throttled(reason string) error {
	return fmt.Errorf("chaos: invoke: %w: %w", ErrInjected,
		&backends.ThrottleError{RetryAfter: w.f.ThrottleRetryAfter, Reason: reason})
}

// front injects what happens before a call reaches the platform, the same
// for Invoke and InvokeAsync: a throttle and a failure before it ran
// (saying what had not happened).
func (w *wrapper) front(p plan, op, before string) error {
	if p.throttle {
		w.throttles.Add(1)
		return w.throttled("rate exceeded")
	}
	if p.failBefore {
		w.failedBefore.Add(1)
		return fmt.Errorf("chaos: %s: %s: %w: %w", op, before, ErrInjected, w.f.FailBeforeErr)
	}
	return nil
}

// latency waits the invoke latency of a call that reaches the platform.
func (w *wrapper) latency(ctx context.Context, p plan, op string) error {
	if err := w.sleep(ctx, w.f.Latency+frac(w.f.LatencyJitter, p.jitter)); err != nil {
		return fmt.Errorf("chaos: %s: latency: %w", op, err)
	}
	return nil
}

// uplink sends a call's payload over Faults.Uplink unless the call comes
// from inside the cloud.
func (w *wrapper) uplink(ctx context.Context, n int, op string) error {
	if w.f.Uplink == nil {
		return nil
	}
	if IsInsideCloud(ctx) {
		w.inside.Add(1)
		return nil
	}
	w.uplinked.Add(1)
	if err := w.sleep(ctx, w.f.Uplink.send(w.f.Clock.Now(), n)); err != nil {
		return fmt.Errorf("chaos: %s: uplink: %w", op, err)
	}
	return nil
}

// Invoke calls the wrapped backend's Invoke with the faults injected; see
// the package documentation for their order.
func (w *wrapper) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	if !w.enter() {
		return nil, fmt.Errorf("chaos: invoke: %w", backends.ErrClosed)
	}
	defer w.wg.Done()
	w.calls.Add(1)
	if err := w.uplink(ctx, len(payload), "invoke"); err != nil {
		return nil, err
	}
	cur := w.inFlight.Add(1)
	defer w.inFlight.Add(-1)
	if c := w.f.Concurrency; c > 0 && cur > int64(c) {
		w.capThrottles.Add(1)
		return nil, w.throttled(fmt.Sprintf("concurrency cap of %d reached", c))
	}
	n := uint64(w.seq.Add(1) - 1)
	for p := w.peak.Load(); cur > p; p = w.peak.Load() {
		if w.peak.CompareAndSwap(p, cur) {
			break
		}
	}
	if !w.active {
		w.innerCalls.Add(1)
		return w.inner.Invoke(w.cloud(ctx), payload)
	}
	p := w.plan(n)
	if err := w.front(p, "invoke", "failed before the tasks ran"); err != nil {
		return nil, err
	}
	fresh := false
	if w.pool {
		var err error
		if fresh, err = w.admit(); err != nil {
			return nil, err
		}
	}
	if err := w.latency(ctx, p, "invoke"); err != nil {
		w.leave(!fresh) // a new container never started
		return nil, err
	}
	if fresh && w.f.ColdStart > 0 {
		if err := w.sleep(ctx, w.f.ColdStart); err != nil {
			w.leave(false)
			return nil, fmt.Errorf("chaos: invoke: cold start: %w", err)
		}
	}
	start := w.f.Clock.Now()
	reply, crash, err := w.run(w.cloud(ctx), payload, p)
	took := w.f.Clock.Now().Sub(start)
	w.leave(crash == "") // a crashed worker's container dies with it
	if err := ctx.Err(); err != nil && (crash != "" || p.failAfter) {
		return nil, fmt.Errorf("chaos: invoke: %w", err) // ended by the caller first
	}
	switch {
	case crash != "":
		w.crashes.Add(1)
		return nil, fmt.Errorf("chaos: invoke: worker crashed %s: %w: %w", crash, ErrInjected, backends.ErrWorkerLost)
	case p.failAfter:
		w.failedAfter.Add(1)
		return nil, fmt.Errorf("chaos: invoke: reply lost after the tasks ran: %w: %w", ErrInjected, w.f.FailAfterErr)
	case err != nil:
		return nil, err
	}
	if old := w.meanNs.Load(); old == 0 {
		w.meanNs.Store(max(int64(took), 1))
	} else {
		w.meanNs.Store(max(old+(int64(took)-old)/8, 1))
	}
	if p.straggle {
		w.stragglers.Add(1)
		if err := w.sleep(ctx, time.Duration(float64(took)*(w.f.StragglerFactor-1))); err != nil {
			return nil, fmt.Errorf("chaos: invoke: straggler: %w", err)
		}
	}
	return reply, nil
}

// run calls the wrapped Invoke, twice for a duplicate, and cuts it short
// for a crash. crash is non-empty (saying when) if the worker crashed.
func (w *wrapper) run(ctx context.Context, payload []byte, p plan) (reply []byte, crash string, err error) {
	if p.duplicate {
		w.duplicates.Add(1)
		var dup sync.WaitGroup
		defer dup.Wait()
		dup.Go(func() {
			if w.sleep(ctx, frac(w.f.DuplicateDelay, p.dupAt)) != nil {
				return
			}
			w.innerCalls.Add(1)
			w.inner.Invoke(ctx, payload) // the platform's extra copy: its reply goes nowhere
		})
	}
	w.innerCalls.Add(1)
	if !p.crash {
		reply, err = w.inner.Invoke(ctx, payload)
		return reply, "", err
	}
	within := w.f.CrashWithin
	if within <= 0 {
		within = time.Duration(w.meanNs.Load())
	}
	if within <= 0 {
		w.inner.Invoke(ctx, payload)
		return nil, "before replying", nil
	}
	at := frac(within, p.crashAt)
	ictx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if at <= 0 {
		cancel(fmt.Errorf("chaos: worker crashed at start: %w", backends.ErrWorkerLost))
		w.inner.Invoke(ictx, payload)
		return nil, "at start", nil
	}
	t := w.f.Clock.NewTimer(at)
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		select {
		case <-t.C():
			cancel(fmt.Errorf("chaos: worker crashed after %v: %w", at, backends.ErrWorkerLost))
		case <-stop:
			t.Stop()
		}
	})
	w.inner.Invoke(ictx, payload)
	close(stop)
	watch.Wait()
	return nil, fmt.Sprintf("%v into the invocation", at), nil
}

// admit gives an Invoke a container: the most recently used warm idle one
// (expired ones are dropped first) or a new one, as Faults.Scaling allows.
// It reports whether the container is new, or returns the refusal.
func (w *wrapper) admit() (fresh bool, err error) {
	w.idleMu.Lock()
	defer w.idleMu.Unlock()
	now := w.f.Clock.Now()
	i := 0
	for i < len(w.idle) && now.Sub(w.idle[i]) > w.f.IdleTimeout {
		i++
	}
	if i > 0 {
		w.expired.Add(int64(i))
		w.idle = append(w.idle[:0], w.idle[i:]...)
	}
	fresh = len(w.idle) == 0
	w.tl.saw(now)
	if sc := w.f.Scaling; sc.Cloud != "" {
		w.ramp.refresh(now)
		var rule Rule
		switch {
		case sc.Account != nil:
			rule = sc.Account.admit(now, fresh, sc.MemoryMB, &w.ramp)
		case fresh && !w.ramp.has():
			rule = RuleRamp
		case fresh:
			w.ramp.take()
		}
		if rule != "" {
			w.refused[ruleIndex(rule)].Add(1)
			r := w.refusals[ruleIndex(rule)] // made once by Wrap: a refusal costs one allocation
			return false, &r
		}
	}
	if fresh {
		w.cold.Add(1)
	} else {
		w.idle = w.idle[:len(w.idle)-1] // the most recently used
		w.warm.Add(1)
	}
	w.running++
	if int64(w.running) > w.peakRunning.Load() {
		w.peakRunning.Store(int64(w.running)) // written under idleMu only
	}
	w.tl.reach(w.running, now)
	return fresh, nil
}

func ruleIndex(r Rule) int {
	switch r {
	case RuleRamp:
		return 0
	case RuleAccountRamp:
		return 1
	case RuleConcurrency:
		return 2
	}
	return 3
}

// leave ends an admitted call's hold on its container, giving the container
// back to the idle pool when keep (not when the worker crashed or the
// container never started), and its share of the account. It does nothing
// when containers are not simulated.
func (w *wrapper) leave(keep bool) {
	if !w.pool {
		return
	}
	w.idleMu.Lock()
	defer w.idleMu.Unlock()
	w.running--
	if keep {
		w.idle = append(w.idle, w.f.Clock.Now())
	}
	if a := w.f.Scaling.Account; a != nil && w.f.Scaling.Cloud != "" {
		a.leave(w.f.Scaling.MemoryMB)
	}
}

// InvokeAsync calls the wrapped backend's InvokeAsync with Throttle,
// FailBefore, Latency, Duplicate and FailAfter injected.
func (w *asyncWrapper) InvokeAsync(ctx context.Context, payload []byte) error {
	if !w.enter() {
		return fmt.Errorf("chaos: invoke async: %w", backends.ErrClosed)
	}
	defer w.wg.Done()
	w.calls.Add(1)
	if err := w.uplink(ctx, len(payload), "invoke async"); err != nil {
		return err
	}
	n := uint64(w.seq.Add(1) - 1)
	ctx = w.cloud(ctx) // what the platform runs is inside the cloud
	if !w.active {
		w.innerCalls.Add(1)
		return w.async.InvokeAsync(ctx, payload)
	}
	p := w.plan(n)
	if err := w.front(p, "invoke async", "failed before the event was accepted"); err != nil {
		return err
	}
	if err := w.latency(ctx, p, "invoke async"); err != nil {
		return err
	}
	w.innerCalls.Add(1)
	if err := w.async.InvokeAsync(ctx, payload); err != nil {
		return err
	}
	if p.duplicate {
		w.duplicates.Add(1)
		if d := frac(w.f.DuplicateDelay, p.dupAt); d <= 0 {
			w.innerCalls.Add(1)
			w.async.InvokeAsync(ctx, payload)
		} else {
			// A late second delivery, after this call returned: it keeps
			// ctx's values but not its cancellation, and Close waits for it.
			own := append([]byte(nil), payload...)
			bctx := context.WithoutCancel(ctx)
			w.wg.Add(1) // this call holds a count, so Close is not past Wait
			go func() {
				defer w.wg.Done()
				if w.sleep(bctx, d) != nil {
					return
				}
				w.innerCalls.Add(1)
				w.async.InvokeAsync(bctx, own)
			}()
		}
	}
	if p.failAfter {
		w.failedAfter.Add(1)
		return fmt.Errorf("chaos: invoke async: the event was accepted but the reply lost: %w: %w", ErrInjected, w.f.FailAfterErr)
	}
	return nil
}
