package chaos

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gowren/gowren/backends"
)

// Cloud names the platform whose scaling refusals a simulated function sends
// (see Scaling).
type Cloud string

// The clouds whose refusals chaos can send.
const (
	// AWSLambda refuses with HTTP 429 TooManyRequestsException, "Rate
	// Exceeded.", and Lambda's reason (FunctionInvocationRateLimitExceeded
	// when the function may not add environments that fast,
	// ConcurrentInvocationLimitExceeded at the account's concurrency).
	AWSLambda Cloud = "aws-lambda"
	// TencentSCF refuses with status 429 ResourceLimit when the region may
	// not start instances that fast, and 432 ResourceLimitReached when the
	// region's concurrency quota is used up.
	TencentSCF Cloud = "tencent-scf"
)

// Rule names the scaling rule that refused an invocation.
type Rule string

// The rules of Scaling and AccountLimits.
const (
	// RuleRamp: the invocation needed a new environment and the function's
	// own bucket of new environments (Scaling.Burst) was empty.
	RuleRamp Rule = "function scaling rate"
	// RuleAccountRamp: the invocation needed a new environment and the
	// account's bucket of new environments (AccountLimits.Burst) was empty.
	RuleAccountRamp Rule = "account scaling rate"
	// RuleConcurrency: AccountLimits.Concurrency invocations were running.
	RuleConcurrency Rule = "account concurrency"
	// RuleMemory: one more environment of Scaling.MemoryMB would exceed
	// AccountLimits.MemoryMB.
	RuleMemory Rule = "account memory quota"
)

// Scaling is how a simulated function scales, as a cloud platform's rules
// decide: set Faults.Scaling to simulate one function of a platform. The
// zero value (Cloud empty) simulates none of it.
//
// A function keeps execution environments: an Invoke takes the most
// recently used idle one (a warm start, which no rule limits beyond the
// account's concurrency) or needs a new one (paying Faults.ColdStart). A new
// environment takes a token from the function's bucket (Burst) and from
// its Account's bucket (AccountLimits.Burst); an invocation that finds a
// bucket empty, or the account at its concurrency or memory quota, is
// refused with the Cloud's throttle, a *Refusal, and does not reach the
// wrapped backend. An environment stays warm for Faults.IdleTimeout after
// its last invocation. Scaling applies to Invoke only: an InvokeAsync event
// is queued by the platform, not refused.
type Scaling struct {
	// Cloud selects the refusals sent (see AWSLambda and TencentSCF) and
	// turns the simulation on. Defaults to "": no scaling rules, and every
	// other field must be zero.
	Cloud Cloud
	// Burst is how many new environments the function may start at once:
	// the size of its token bucket, full at the start. Defaults to 0: the
	// function itself does not limit how fast it scales.
	Burst int
	// Refill tokens come back to the bucket per RefillEvery, continuously
	// (a token every RefillEvery/Refill), never beyond Burst. Defaults to
	// 0: no refill, the function never has more than Burst environments
	// started (RefillEvery must then be 0 too).
	Refill      int
	RefillEvery time.Duration
	// MemoryMB is the memory of one environment, counted against
	// AccountLimits.MemoryMB while the environment runs an invocation.
	// Defaults to 0; required when the Account has a memory quota.
	MemoryMB int
	// Account holds the limits this function shares with the other
	// functions of its account (or region), possibly of other wrapped
	// backends. Defaults to nil: no account limits.
	Account *Account
}

// LambdaFunction returns the scaling rules of one AWS Lambda function: at
// most 1,000 new execution environments per 10 seconds, refilled
// continuously, each function on its own, within account acct (nil: no
// account limit). Source: the AWS Lambda Developer Guide, "Lambda scaling
// behavior" (https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html).
func LambdaFunction(acct *Account) Scaling {
	return Scaling{Cloud: AWSLambda, Burst: 1000, Refill: 1000, RefillEvery: 10 * time.Second, Account: acct}
}

// LambdaAccount returns the default limits of an AWS account's Lambda in
// one region: 1,000 invocations running at once across its functions (a
// quota AWS raises on request, to tens of thousands). Source: the AWS Lambda
// Developer Guide, "Lambda quotas" and "Lambda scaling behavior".
func LambdaAccount() AccountLimits { return AccountLimits{Concurrency: 1000} }

// SCFFunction returns the scaling rules of one Tencent SCF function of
// memoryMB, within region acct (nil: no region limits). SCF limits how fast
// instances start per region, not per function: see SCFRegion.
func SCFFunction(acct *Account, memoryMB int) Scaling {
	return Scaling{Cloud: TencentSCF, MemoryMB: memoryMB, Account: acct}
}

// SCFRegion returns the default limits of a Tencent Cloud account's SCF in
// one region: a concurrency quota of 128,000 MB (running instances times
// their memory; 64,000 MB in some regions), and at most 500 new instances
// per minute. Sources: Tencent Cloud SCF "Quota Limits"
// (https://www.tencentcloud.com/document/product/583/11637), "Concurrency
// Overview" (https://intl.cloud.tencent.com/document/product/583/37040:
// "500 instances/minute" per region and account) and "Concurrency
// Management" (https://www.tencentcloud.com/document/product/583/39464:
// 432 ResourceLimitReached over the quota).
func SCFRegion() AccountLimits {
	return AccountLimits{MemoryMB: 128000, Burst: 500, Refill: 500, RefillEvery: time.Minute}
}

// AccountLimits are the limits that the functions of one account (or
// region) share. The zero value limits nothing.
type AccountLimits struct {
	// Concurrency caps the invocations running at once across the
	// account's functions. Defaults to 0: no cap.
	Concurrency int
	// MemoryMB caps the memory of the environments running invocations at
	// once (each counts its function's Scaling.MemoryMB). Defaults to 0:
	// no quota.
	MemoryMB int
	// Burst, Refill and RefillEvery are a token bucket of new environments
	// shared by the account's functions, as Scaling's are for one
	// function (SCF limits new instances per region). Default to 0: no
	// shared limit on how fast the account scales.
	Burst       int
	Refill      int
	RefillEvery time.Duration
}

// Validate reports the first field of l that is out of range.
func (l AccountLimits) Validate() error {
	return validateLimits("AccountLimits", l.Concurrency, l.MemoryMB, l.Burst, l.Refill, l.RefillEvery)
}

func validateLimits(what string, concurrency, memoryMB, burst, refill int, every time.Duration) error {
	for _, v := range []struct {
		name string
		v    int64
	}{
		{"Concurrency", int64(concurrency)}, {"MemoryMB", int64(memoryMB)}, {"Burst", int64(burst)},
		{"Refill", int64(refill)}, {"RefillEvery", int64(every)},
	} {
		if v.v < 0 {
			return fmt.Errorf("chaos: %s.%s = %d is negative", what, v.name, v.v)
		}
	}
	switch {
	case refill > 0 && every == 0:
		return fmt.Errorf("chaos: %s.Refill = %d with RefillEvery 0: say per how long the tokens come back", what, refill)
	case refill == 0 && every > 0:
		return fmt.Errorf("chaos: %s.RefillEvery = %v with Refill 0: say how many tokens come back", what, every)
	case refill > 0 && burst == 0:
		return fmt.Errorf("chaos: %s.Refill = %d with Burst 0: the bucket holds Burst tokens, so set Burst", what, refill)
	case burst > 0 && every > 0 && int64(burst) > (1<<62)/int64(every):
		return fmt.Errorf("chaos: %s.Burst = %d per %v is too large to count", what, burst, every)
	}
	return nil
}

// validate checks s as Faults.Scaling.
func (s Scaling) validate() error {
	switch s.Cloud {
	case "":
		if s != (Scaling{}) {
			return errors.New("chaos: Faults.Scaling.Cloud is empty while other Scaling fields are set: name the cloud whose refusals to send (chaos.AWSLambda or chaos.TencentSCF)")
		}
		return nil
	case AWSLambda, TencentSCF:
	default:
		return fmt.Errorf("chaos: Faults.Scaling.Cloud = %q: want chaos.AWSLambda or chaos.TencentSCF", s.Cloud)
	}
	if err := validateLimits("Faults.Scaling", 0, s.MemoryMB, s.Burst, s.Refill, s.RefillEvery); err != nil {
		return err
	}
	if a := s.Account; a != nil && a.l.MemoryMB > 0 {
		if s.MemoryMB == 0 {
			return fmt.Errorf("chaos: Faults.Scaling.MemoryMB is 0 but its Account has a memory quota of %d MB: set the function's memory", a.l.MemoryMB)
		}
		if s.MemoryMB > a.l.MemoryMB {
			return fmt.Errorf("chaos: Faults.Scaling.MemoryMB = %d exceeds its Account's memory quota of %d MB: no invocation could run", s.MemoryMB, a.l.MemoryMB)
		}
	}
	return nil
}

// Account is the state shared by the simulated functions of one account or
// region: invocations running, memory in use, and the shared bucket of new
// environments. Several wrapped backends (several functions) share an
// Account by naming it in their Scaling. The functions sharing an Account
// must share a Clock. An Account is safe for concurrent use.
type Account struct {
	l AccountLimits

	mu        sync.Mutex
	ramp      bucket
	running   int
	runningMB int
	st        AccountStats
	tl        timeline
}

// NewAccount returns an Account with limits l. It panics if l is invalid
// (see AccountLimits.Validate), as a constant configuration is a
// programming error.
func NewAccount(l AccountLimits) *Account {
	if err := l.Validate(); err != nil {
		panic(err.Error())
	}
	return &Account{l: l, ramp: newBucket(l.Burst, l.Refill, l.RefillEvery)}
}

// Limits returns the account's limits.
func (a *Account) Limits() AccountLimits { return a.l }

// AccountStats count what an Account's rules did, over all its functions.
type AccountStats struct {
	// Running is the number of invocations running now (holding an
	// environment, starting or warm); PeakRunning the most at once.
	Running     int
	PeakRunning int
	// RunningMB is the memory of the environments running now; PeakMB the
	// most at once.
	RunningMB int
	PeakMB    int
	// Environments counts the new environments started by its functions.
	Environments int
	// RampThrottles, ConcurrencyThrottles and MemoryThrottles count the
	// invocations refused by the account's rules (RuleAccountRamp,
	// RuleConcurrency, RuleMemory).
	RampThrottles        int
	ConcurrencyThrottles int
	MemoryThrottles      int
}

// Stats returns a snapshot of the account's counts.
func (a *Account) Stats() AccountStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.st
	s.Running, s.RunningMB = a.running, a.runningMB
	return s
}

// TimeToRunning reports how long after the platform saw the first
// invocation of any of the account's functions n invocations were first
// running at once (holding environments); ok is false if that never
// happened (or n < 1).
func (a *Account) TimeToRunning(n int) (d time.Duration, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tl.timeTo(n)
}

// admit applies the account's rules to an invocation of a function with
// environments of mb MB that needs a new environment when fresh; fn is the
// function's own bucket, checked under the same lock so that nothing is
// taken unless everything allows. It returns the rule that refused, or "".
func (a *Account) admit(now time.Time, fresh bool, mb int, fn *bucket) Rule {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tl.saw(now)
	a.ramp.refresh(now)
	switch {
	case a.l.Concurrency > 0 && a.running >= a.l.Concurrency:
		a.st.ConcurrencyThrottles++
		return RuleConcurrency
	case a.l.MemoryMB > 0 && a.runningMB+mb > a.l.MemoryMB:
		a.st.MemoryThrottles++
		return RuleMemory
	case fresh && !fn.has():
		return RuleRamp
	case fresh && !a.ramp.has():
		a.st.RampThrottles++
		return RuleAccountRamp
	}
	if fresh {
		fn.take()
		a.ramp.take()
		a.st.Environments++
	}
	a.running++
	a.runningMB += mb
	a.st.PeakRunning = max(a.st.PeakRunning, a.running)
	a.st.PeakMB = max(a.st.PeakMB, a.runningMB)
	a.tl.reach(a.running, now)
	return ""
}

// leave returns an invocation's share of the account.
func (a *Account) leave(mb int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.running--
	a.runningMB -= mb
}

// bucket is a token bucket of new environments, counted exactly in
// integers: credit is in units of 1/every of a token, each nanosecond adds
// refill units, a token costs every units. A bucket with burst 0 is off:
// it always has tokens.
type bucket struct {
	burst, refill, every int64
	credit               int64
	last                 time.Time
}

func newBucket(burst, refill int, every time.Duration) bucket {
	b := bucket{burst: int64(burst), refill: int64(refill), every: int64(every)}
	if b.every == 0 {
		b.every = 1 // no refill: one unit per token
	}
	b.credit = b.burst * b.every
	return b
}

func (b *bucket) refresh(now time.Time) {
	if b.burst == 0 || b.refill == 0 {
		return
	}
	if b.last.IsZero() {
		b.last = now // full until now
		return
	}
	dt := int64(now.Sub(b.last))
	if dt <= 0 {
		return // the same instant, or a caller's clock behind another's
	}
	b.last = now
	full := b.burst * b.every
	if dt >= (full-b.credit)/b.refill+1 {
		b.credit = full
		return
	}
	b.credit = min(full, b.credit+dt*b.refill)
}

func (b *bucket) has() bool { return b == nil || b.burst == 0 || b.credit >= b.every }

func (b *bucket) take() {
	if b != nil && b.burst > 0 {
		b.credit -= b.every
	}
}

// timeline records when the number of invocations running first reached
// each count.
type timeline struct {
	first   time.Time
	started bool
	reached []time.Duration // reached[k-1]: when k were first running, since first
}

func (t *timeline) saw(now time.Time) {
	if !t.started {
		t.first, t.started = now, true
	}
}

func (t *timeline) reach(running int, now time.Time) {
	for len(t.reached) < running {
		t.reached = append(t.reached, now.Sub(t.first))
	}
}

func (t *timeline) timeTo(n int) (time.Duration, bool) {
	if n < 1 || n > len(t.reached) {
		return 0, false
	}
	return t.reached[n-1], true
}

// Refusal is a simulated platform's refusal of an invocation under its
// scaling rules. It satisfies errors.Is(err, ErrInjected) and
// errors.Is(err, backends.ErrThrottled), and
// errors.As finds its *backends.ThrottleError (whose Reason carries the
// platform's code and message, and whose RetryAfter is
// Faults.ThrottleRetryAfter), so the executor waits and retries it as it
// would the real platform's.
type Refusal struct {
	// Cloud is the simulated platform.
	Cloud Cloud
	// Rule is the rule that refused.
	Rule Rule
	// Status is the platform's status code: 429 for both of Lambda's, 429
	// (ResourceLimit) or 432 (ResourceLimitReached) for SCF's.
	Status int
	// Code is the platform's error code: TooManyRequestsException,
	// ResourceLimit or ResourceLimitReached.
	Code string
	// Throttle is the classification the executor acts on.
	Throttle backends.ThrottleError
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("chaos: invoke: simulated %s refused the invocation (%s, status %d): %v: %v", r.Cloud, r.Rule, r.Status, ErrInjected, &r.Throttle)
}

// Is makes errors.Is(err, ErrInjected) true.
func (r *Refusal) Is(target error) bool { return target == ErrInjected }

// Unwrap returns r's *backends.ThrottleError.
func (r *Refusal) Unwrap() error { return &r.Throttle }

// refusal builds the refusal cloud c sends when rule refuses.
func (s Scaling) refusal(rule Rule, retryAfter time.Duration) *Refusal {
	r := &Refusal{Cloud: s.Cloud, Rule: rule, Status: 429, Throttle: backends.ThrottleError{RetryAfter: retryAfter}}
	var l AccountLimits
	if s.Account != nil {
		l = s.Account.l
	}
	var detail string
	switch rule {
	case RuleRamp:
		detail = fmt.Sprintf("the function starts at most %d new environments at once and %d more per %v", s.Burst, s.Refill, s.RefillEvery)
	case RuleAccountRamp:
		detail = fmt.Sprintf("the account starts at most %d new environments at once and %d more per %v", l.Burst, l.Refill, l.RefillEvery)
	case RuleConcurrency:
		detail = fmt.Sprintf("the account's %d concurrent invocations are running", l.Concurrency)
	case RuleMemory:
		detail = fmt.Sprintf("one more %d MB instance would exceed the account's concurrency quota of %d MB", s.MemoryMB, l.MemoryMB)
	}
	switch s.Cloud {
	case AWSLambda:
		r.Code = "TooManyRequestsException"
		reason := "FunctionInvocationRateLimitExceeded"
		if rule == RuleConcurrency || rule == RuleMemory {
			reason = "ConcurrentInvocationLimitExceeded"
		}
		r.Throttle.Reason = fmt.Sprintf("TooManyRequestsException: Rate Exceeded. (reason %s: %s)", reason, detail)
	case TencentSCF:
		r.Code = "ResourceLimit"
		if rule == RuleConcurrency || rule == RuleMemory {
			r.Status, r.Code = 432, "ResourceLimitReached"
		}
		r.Throttle.Reason = fmt.Sprintf("%s (SCF status %d): %s", r.Code, r.Status, detail)
	}
	return r
}
