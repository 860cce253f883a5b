// Package local is the backend that runs invocations on goroutines of the
// driver's own process. It is the embedded default of fanout.Open.
//
// Payloads still travel as bytes both ways, exactly as to a cloud function:
// an input or output type that msgpack cannot carry, or a payload over the
// limits, fails here first, on the laptop, not in the cloud. The default
// limits are those of AWS Lambda's synchronous invocations (6 MB each way), so
// that a program that works locally also fits the cloud; the store then
// carries what is larger, as it would there.
//
// # Streaming
//
// A Backend is a backends.StreamBackend: under InvokeStream the handler's
// context carries a part sender, so the results that fanout.Handle sends
// with backends.SendPart as each task finishes reach the driver before the
// batch ends. Under Invoke the handler cannot send parts
// (backends.CanSendParts is false). A part, like a reply, is at most
// MaxResponseBytes.
//
// URL: local://?concurrency=N (N defaults to GOMAXPROCS).
package local

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strconv"
	"sync"

	"github.com/gowren/gowren/backends"
)

func init() {
	backends.Register("local", func(_ context.Context, u *url.URL) (backends.Backend, error) {
		opts, err := parseURL(u)
		if err != nil {
			return nil, err
		}
		return New(opts), nil
	})
}

// DefaultMaxPayload is the default request and response limit: AWS Lambda's
// 6 MB synchronous payload limit.
const DefaultMaxPayload = 6 << 20

// Options configure a local Backend. A nil *Options gives the defaults.
type Options struct {
	// Concurrency is the most invocations running at once; further ones
	// wait. Defaults to GOMAXPROCS.
	Concurrency int
	// MaxRequestBytes and MaxResponseBytes are the payload limits.
	// Defaults to DefaultMaxPayload; negative means no limit.
	MaxRequestBytes  int
	MaxResponseBytes int
	// Handler serves the invocations. Defaults to the handler registered
	// by package fanout (fanout.Handle).
	Handler backends.Handler
}

// Backend runs invocations on goroutines. It is safe for concurrent use.
type Backend struct {
	sem     chan struct{}
	handler backends.Handler
	limits  backends.Limits

	mu     sync.RWMutex
	closed bool
	wg     sync.WaitGroup
}

var _ backends.StreamBackend = (*Backend)(nil)

// New returns a local Backend.
func New(opts *Options) *Backend {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Concurrency <= 0 {
		o.Concurrency = runtime.GOMAXPROCS(0)
	}
	limit := func(v int) int {
		switch {
		case v == 0:
			return DefaultMaxPayload
		case v < 0:
			return 0
		}
		return v
	}
	return &Backend{
		sem:     make(chan struct{}, o.Concurrency),
		handler: o.Handler,
		limits: backends.Limits{
			MaxRequestBytes:  limit(o.MaxRequestBytes),
			MaxResponseBytes: limit(o.MaxResponseBytes),
			Concurrency:      o.Concurrency,
			Parallel:         1,
			InProcess:        true,
			SameHost:         true,
			Nested:           true,
		},
	}
}

func parseURL(u *url.URL) (*Options, error) {
	o := &Options{}
	if u.Host != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("local: URL %q: expected local://?concurrency=N", u.String())
	}
	for k, vs := range u.Query() {
		switch k {
		case "concurrency":
			n, err := strconv.Atoi(vs[0])
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("local: URL %q: concurrency=%q is not a positive integer", u.String(), vs[0])
			}
			o.Concurrency = n
		default:
			return nil, fmt.Errorf("local: URL %q: unknown parameter %q (known: concurrency)", u.String(), k)
		}
	}
	return o, nil
}

// Limits reports the configured limits; InProcess, SameHost and Nested
// are true.
func (b *Backend) Limits() backends.Limits { return b.limits }

// Invoke runs the handler on payload in the calling goroutine once a
// concurrency slot is free. It returns ctx's error if ctx ends while waiting
// for a slot; once running, the handler itself returns promptly on
// cancellation (fanout.Handle abandons tasks that ignore their context).
func (b *Backend) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	return b.invoke(ctx, payload, nil)
}

// InvokeStream is Invoke with the handler's context carrying a part sender
// (see backends.StreamBackend): each part the handler sends with
// backends.SendPart is copied and passed to part before SendPart returns, so
// a slow part slows the handler down. Parts are passed one at a time, never
// after InvokeStream returned: SendPart then fails, as it does for a part
// over MaxResponseBytes (with an error wrapping backends.ErrPayloadTooLarge).
//
// When ctx ends while the handler runs, the reply the handler returns (with
// the results of the tasks that finished) is passed to part, and
// InvokeStream returns an error satisfying errors.Is(err, ctx.Err()). A nil
// part makes InvokeStream Invoke.
func (b *Backend) InvokeStream(ctx context.Context, payload []byte, part func([]byte)) ([]byte, error) {
	return b.invoke(ctx, payload, part)
}

// invoke is Invoke, or InvokeStream when part is not nil.
func (b *Backend) invoke(ctx context.Context, payload []byte, part func([]byte)) ([]byte, error) {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return nil, backends.ErrClosed
	}
	b.wg.Add(1)
	b.mu.RUnlock()
	defer b.wg.Done()
	if max := b.limits.MaxRequestBytes; max > 0 && len(payload) > max {
		return nil, fmt.Errorf("local: request of %d bytes exceeds the %d-byte limit: %w", len(payload), max, backends.ErrPayloadTooLarge)
	}
	h := b.handler
	if h == nil {
		h = backends.DefaultHandler()
		if h == nil {
			return nil, errors.New("local: no handler: import github.com/gowren/gowren/fanout or set Options.Handler")
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local: invoke: %w", err)
	}
	if backends.InvokerOf(ctx) == nil {
		// The handler's children (an invoker tree) come back here.
		ctx = backends.WithInvoker(ctx, b)
	}
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("local: wait for a slot: %w", ctx.Err())
	}
	defer func() { <-b.sem }()
	hctx := ctx
	var late []byte // a reply returned after ctx ended, for part
	if part != nil {
		p := &parts{fn: part, max: b.limits.MaxResponseBytes}
		hctx = backends.WithPartSender(ctx, p.send)
		defer func() { p.end(late) }()
	}
	// The handler gets its own copy, as a remote worker would.
	reply := h(hctx, append([]byte(nil), payload...))
	max := b.limits.MaxResponseBytes
	if err := ctx.Err(); err != nil {
		if max <= 0 || len(reply) <= max {
			late = reply
		}
		return nil, fmt.Errorf("local: invoke: %w", err)
	}
	if max > 0 && len(reply) > max {
		return nil, fmt.Errorf("local: reply of %d bytes exceeds the %d-byte limit: %w", len(reply), max, backends.ErrPayloadTooLarge)
	}
	return reply, nil
}

// parts passes the parts of one streaming invocation to InvokeStream's part
// function, one at a time, until the invocation ends.
type parts struct {
	fn  func([]byte)
	max int // largest part; 0 means no limit

	mu    sync.Mutex
	ended bool
}

var errEnded = errors.New("local: send part: the invocation already returned")

// send is the handler's part sender.
func (p *parts) send(data []byte) error {
	if p.max > 0 && len(data) > p.max {
		return fmt.Errorf("local: send part of %d bytes: over the %d-byte reply limit: %w", len(data), p.max, backends.ErrPayloadTooLarge)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return errEnded
	}
	// A copy, as a remote worker's part would be: neither side's memory
	// is shared with the other.
	p.fn(append([]byte{}, data...))
	return nil
}

// end passes last to the part function, unless it is nil, and refuses all
// parts from then on. It waits for a part being passed.
func (p *parts) end(last []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if last != nil {
		p.fn(last)
	}
	p.ended = true
}

// Close waits for invocations in flight to return; Invoke afterwards returns
// backends.ErrClosed. It is idempotent.
func (b *Backend) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.wg.Wait()
	return nil
}
