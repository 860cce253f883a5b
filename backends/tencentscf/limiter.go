package tencentscf

import (
	"context"
	"sync"
	"time"
)

// limiter spaces calls to at most rate per second, allowing bursts of burst
// calls: a token bucket kept as the time at which the bucket will be full
// again (the generic cell rate algorithm). It is safe for concurrent use.
type limiter struct {
	interval time.Duration // time per token
	slack    time.Duration // (burst-1) * interval
	now      func() time.Time

	mu  sync.Mutex
	tat time.Time // theoretical arrival time of the next call
}

// newLimiter returns a limiter for rate calls per second (rate > 0) in
// bursts of up to burst (at least 1).
func newLimiter(rate float64, burst int) *limiter {
	iv := time.Duration(float64(time.Second) / rate)
	if iv <= 0 {
		iv = 1
	}
	return &limiter{interval: iv, slack: time.Duration(max(burst, 1)-1) * iv, now: time.Now}
}

// reserve books the next slot and returns how long the caller must wait
// for it.
func (l *limiter) reserve() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.tat.Before(now) {
		l.tat = now
	}
	at := l.tat.Add(-l.slack)
	l.tat = l.tat.Add(l.interval)
	return at.Sub(now)
}

// wait blocks until the caller may make its call, or ctx is done. A slot
// booked by a call that gives up on ctx is not handed back: the limiter
// errs on the side of calling less often.
func (l *limiter) wait(ctx context.Context) error {
	d := l.reserve()
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
