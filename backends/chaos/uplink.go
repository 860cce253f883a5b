package chaos

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// Uplink is the network link from the driver to the cloud: every call made
// from the driver sends its payload over it, one after another, and the
// request reaches the platform Latency after its last byte left. Calls
// made from inside the cloud (see InsideCloud) do not use it. Several
// wrapped backends (functions, clouds) driven from one machine share one
// Uplink through Faults.Uplink. The functions sharing an Uplink must share
// a Clock. An Uplink is safe for concurrent use.
//
// Only requests are modelled: replies, and the time a refusal takes to come
// back, are not.
type Uplink struct {
	latency time.Duration
	bps     int64

	mu     sync.Mutex
	freeAt time.Time // when the link has sent everything queued so far
}

// NewUplink returns an Uplink whose requests arrive latency after they are
// sent, at bytesPerSecond (0: no bandwidth limit, only the latency). It
// panics if either is negative, as a constant configuration is a
// programming error.
func NewUplink(latency time.Duration, bytesPerSecond int64) *Uplink {
	if latency < 0 {
		panic(fmt.Sprintf("chaos: NewUplink: latency = %v is negative", latency))
	}
	if bytesPerSecond < 0 {
		panic(fmt.Sprintf("chaos: NewUplink: bytesPerSecond = %d is negative", bytesPerSecond))
	}
	return &Uplink{latency: latency, bps: bytesPerSecond}
}

// Transfer returns how long n bytes take to serialise on the link alone
// (without the latency and the calls queued before them).
func (u *Uplink) Transfer(n int) time.Duration {
	if u.bps == 0 || n <= 0 {
		return 0
	}
	if int64(n) <= math.MaxInt64/int64(time.Second) {
		return time.Duration(int64(n) * int64(time.Second) / u.bps)
	}
	return time.Duration(float64(n) / float64(u.bps) * float64(time.Second))
}

// send queues n bytes sent at now and returns how long until they reach
// the platform.
func (u *Uplink) send(now time.Time, n int) time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	start := now
	if u.freeAt.After(now) {
		start = u.freeAt
	}
	u.freeAt = start.Add(u.Transfer(n))
	return u.freeAt.Sub(now) + u.latency
}

type insideKey struct{}

// InsideCloud returns a context marking the calls made with it as made
// from inside the cloud, as an invoker (a worker invoking other workers)
// makes them: they skip the Uplink. A chaos backend marks the context it
// gives the wrapped backend so, so that a worker invoking through a chaos
// backend from its task context is inside the cloud without doing
// anything.
func InsideCloud(ctx context.Context) context.Context {
	if IsInsideCloud(ctx) {
		return ctx
	}
	return context.WithValue(ctx, insideKey{}, true)
}

// IsInsideCloud reports whether ctx was marked by InsideCloud.
func IsInsideCloud(ctx context.Context) bool {
	v, _ := ctx.Value(insideKey{}).(bool)
	return v
}
