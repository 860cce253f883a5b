package fanout

import "time"

// clock is the dispatcher's time source. Tests inject a fake one to drive
// backoffs, expiries, speculation and the ramp without sleeping.
type clock interface {
	Now() time.Time
	// NewTimer returns a stopped timer.
	NewTimer() clockTimer
}

// clockTimer is a resettable one-shot timer of a clock.
type clockTimer interface {
	C() <-chan time.Time
	// Set makes the timer fire once the clock reaches at (replacing any
	// earlier setting); Stop disarms it. Neither leaves a stale value in
	// C. The deadline is absolute so that it does not drift with the time
	// between the caller's reading of the clock and the call.
	Set(at time.Time)
	Stop()
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer() clockTimer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return sysTimer{t}
}

type sysTimer struct{ t *time.Timer }

func (s sysTimer) C() <-chan time.Time { return s.t.C }

// Reset and Stop rely on Go 1.23's timers: no stale value remains in C.
func (s sysTimer) Set(at time.Time) { s.t.Reset(time.Until(at)) }
func (s sysTimer) Stop()            { s.t.Stop() }
