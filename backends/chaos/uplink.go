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
// back, are not. A request costs the link its payload, as the backend's
// caller hands it to the wrapper, plus RequestOverhead bytes: none unless
// set, where a real request also carries its HTTP headers and signature,
// the platform's encoding of the payload (base64 inside JSON for Lambda and
// SCF) and its share of TCP's connection set-up and acknowledgements.
type Uplink struct {
	latency  time.Duration
	bps      int64
	overhead int

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

// RequestOverhead sets the bytes every request sends over the link besides
// its payload, and returns u; set it before the link carries calls. For
// Lambda from a laptop, about 1,270 bytes per call for a payload of a
// few hundred: the WAN bench (bench/wan.go) measured 1,406 bytes on the
// wire per synchronous invocation of 139 payload bytes, a new connection
// each. It panics if n is negative.
func (u *Uplink) RequestOverhead(n int) *Uplink {
	if n < 0 {
		panic(fmt.Sprintf("chaos: Uplink.RequestOverhead: n = %d is negative", n))
	}
	u.mu.Lock()
	u.overhead = n
	u.mu.Unlock()
	return u
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
	u.freeAt = start.Add(u.Transfer(n + u.overhead))
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
