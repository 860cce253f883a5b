package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/fanout"
)

// The contract checks call the backend directly, without an executor: what
// every backend promises whatever its platform (errors after Close, payload
// limits, cancellation), for Invoke and for the optional InvokeAsync and
// InvokeStream when the backend offers them.
//
// A check that needs a real invocation replays a payload captured from an
// executor (see capture), so the suite need not know the wire format.

func testContract(t *testing.T, s *suite) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"AfterClose", testAfterClose},
		{"PayloadTooLarge", testPayloadTooLarge},
		{"AlreadyCancelled", testAlreadyCancelled},
		{"CancelWhileRunning", testCancelWhileRunning},
		{"StreamReply", testStreamReply},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, s)
		})
	}
}

// backend returns a new backend and a function that closes it once; the
// test's end closes it too, if nothing did.
func (s *suite) backend(t *testing.T) (backends.Backend, func() error) {
	t.Helper()
	b, err := s.h.MakeBackend(context.Background())
	if err != nil {
		t.Fatalf("MakeBackend: %v", err)
	}
	closeOnce := sync.OnceValue(b.Close)
	t.Cleanup(func() {
		if err := closeOnce(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b, closeOnce
}

// recorder stands in for a backend of the harness (its Limits, its Close)
// and takes the first payload an executor sends it instead of delivering
// it; the call then lasts until its context ends, like an invocation that
// runs until the job is cancelled.
type recorder struct {
	backends.Backend
	payloads chan []byte
}

func (r *recorder) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	select {
	case r.payloads <- bytes.Clone(payload):
	default: // only the first is wanted
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// capture returns the payload of an invocation that runs f on in, as an
// executor on a backend of the harness encodes it. The executor and its
// store stay open until the test ends, so that the payload can be replayed.
func capture[In, Out any](t *testing.T, s *suite, f *fanout.Func[In, Out], in In) []byte {
	t.Helper()
	ctx := guard(t)
	b, err := s.h.MakeBackend(ctx)
	if err != nil {
		t.Fatalf("MakeBackend: %v", err)
	}
	st, err := s.h.MakeStore(ctx)
	if err != nil {
		b.Close()
		t.Fatalf("MakeStore: %v", err)
	}
	rec := &recorder{Backend: b, payloads: make(chan []byte, 1)}
	ex := fanout.NewExecutor(rec, &fanout.Options{Store: st, Logger: testLogger(t), Retries: -1, BatchSize: 1, Concurrency: 1})
	t.Cleanup(func() {
		if err := ex.Close(); err != nil {
			t.Errorf("Executor.Close: %v", err)
		}
	})
	j, err := fanout.Start(ctx, ex, f, []In{in})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	var p []byte
	select {
	case p = <-rec.payloads:
	case <-ctx.Done():
		t.Fatalf("capture a payload of %s: the executor sent none", f.Name())
	}
	j.Cancel()
	_, _ = j.Wait(ctx) // cancelled: its error says so
	return p
}

// caller makes one kind of synchronous call: Invoke, or InvokeStream.
type caller struct {
	name string
	call func(ctx context.Context, p []byte) ([]byte, error)
}

// callers returns Invoke, and InvokeStream when b offers it. The part
// function InvokeStream gets fails the test when it is called concurrently
// with itself or after InvokeStream returned (until the test ends).
func callers(t *testing.T, b backends.Backend) []caller {
	cs := []caller{{"Invoke", b.Invoke}}
	if sb, ok := b.(backends.StreamBackend); ok {
		cs = append(cs, caller{"InvokeStream", func(ctx context.Context, p []byte) ([]byte, error) {
			parts := newPartLog(t)
			reply, err := sb.InvokeStream(ctx, p, parts.part)
			parts.returned()
			return reply, err
		}})
	}
	return cs
}

// partLog is the part function of one InvokeStream call.
type partLog struct {
	inside atomic.Int32

	mu         sync.Mutex
	parts      [][]byte
	ended      bool
	after      int // parts received after InvokeStream returned
	concurrent bool
}

func newPartLog(t *testing.T) *partLog {
	l := &partLog{}
	t.Cleanup(func() { l.check(t) })
	return l
}

func (l *partLog) part(p []byte) {
	if l.inside.Add(1) != 1 {
		l.mu.Lock()
		l.concurrent = true
		l.mu.Unlock()
	}
	defer l.inside.Add(-1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		l.after++
	}
	l.parts = append(l.parts, bytes.Clone(p))
}

// returned records that InvokeStream returned.
func (l *partLog) returned() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ended = true
}

func (l *partLog) check(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.after > 0 {
		t.Errorf("InvokeStream called part %d times after it returned", l.after)
	}
	if l.concurrent {
		t.Error("InvokeStream called part concurrently with itself")
	}
}

// accepted makes a call until the platform accepts it: a throttle (other
// tests of the suite run at once, and a platform may refuse beyond its
// quota) means the payload was never looked at, so it is sent again after
// the retry-after the platform asked for.
func accepted(ctx context.Context, call func() ([]byte, error)) ([]byte, error) {
	for {
		reply, err := call()
		if !errors.Is(err, backends.ErrThrottled) {
			return reply, err
		}
		t := time.NewTimer(max(backends.RetryAfter(err), 10*time.Millisecond))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (throttled until then: %w)", ctx.Err(), err)
		}
	}
}

// promptly runs call and returns its error, failing the test if it has not
// returned within hangGuard.
func promptly(t *testing.T, what string, call func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- call() }()
	tm := time.NewTimer(hangGuard)
	defer tm.Stop()
	select {
	case err := <-errc:
		return err
	case <-tm.C:
		t.Fatalf("%s did not return within %v", what, hangGuard)
		return nil
	}
}

// testAfterClose checks that every call fails with ErrClosed after Close.
func testAfterClose(t *testing.T, s *suite) {
	p := capture(t, s, square, 3)
	b, closeB := s.backend(t)
	if err := closeB(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := guard(t)
	for _, c := range callers(t, b) {
		if _, err := c.call(ctx, p); !errors.Is(err, backends.ErrClosed) {
			t.Errorf("%s after Close: %v, want an error satisfying errors.Is(err, backends.ErrClosed)", c.name, err)
		}
	}
	if ab, ok := b.(backends.AsyncBackend); ok {
		if err := ab.InvokeAsync(ctx, p); !errors.Is(err, backends.ErrClosed) {
			t.Errorf("InvokeAsync after Close: %v, want an error satisfying errors.Is(err, backends.ErrClosed)", err)
		}
	}
}

// testPayloadTooLarge checks that a payload one byte over a limit is
// refused with ErrPayloadTooLarge, which is not worth retrying.
func testPayloadTooLarge(t *testing.T, s *suite) {
	b, _ := s.backend(t)
	l := b.Limits()
	ab, async := b.(backends.AsyncBackend)
	if l.MaxRequestBytes <= 0 && (!async || l.MaxAsyncRequestBytes <= 0) {
		t.Skip("backend reports no request limit")
	}
	ctx := guard(t)
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, backends.ErrPayloadTooLarge) || backends.Retryable(err) {
			t.Errorf("%s: %v, want an error satisfying errors.Is(err, backends.ErrPayloadTooLarge) that is not Retryable", what, err)
		}
	}
	if n := l.MaxRequestBytes; n > 0 {
		p := make([]byte, n+1)
		for _, c := range callers(t, b) {
			_, err := accepted(ctx, func() ([]byte, error) { return c.call(ctx, p) })
			check(fmt.Sprintf("%s of MaxRequestBytes+1 (%d) bytes", c.name, n+1), err)
		}
	}
	if n := l.MaxAsyncRequestBytes; async && n > 0 {
		_, err := accepted(ctx, func() ([]byte, error) { return nil, ab.InvokeAsync(ctx, make([]byte, n+1)) })
		check(fmt.Sprintf("InvokeAsync of MaxAsyncRequestBytes+1 (%d) bytes", n+1), err)
	}
}

// testAlreadyCancelled checks that a call whose context has already ended
// returns its error, promptly, though its task would run until cancelled.
func testAlreadyCancelled(t *testing.T, s *suite) {
	p := capture(t, s, block, "")
	b, _ := s.backend(t)
	for _, c := range callers(t, b) {
		for _, end := range []struct {
			name string
			ctx  func() (context.Context, context.CancelFunc)
		}{
			{"cancelled", func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			}},
			{"deadline passed", func() (context.Context, context.CancelFunc) {
				return context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			}},
		} {
			ctx, cancel := end.ctx()
			err := promptly(t, c.name, func() error {
				_, err := accepted(ctx, func() ([]byte, error) { return c.call(ctx, p) })
				return err
			})
			cancel()
			if !errors.Is(err, ctx.Err()) {
				t.Errorf("%s with its context %s: %v, want an error satisfying errors.Is(err, %v)", c.name, end.name, err, ctx.Err())
			}
		}
	}
}

// testCancelWhileRunning checks that a call cancelled while its task runs
// returns ctx's error, promptly.
func testCancelWhileRunning(t *testing.T, s *suite) {
	b, _ := s.backend(t)
	l := b.Limits()
	// A task on this machine tells the test that it runs by connecting to
	// a listener; one elsewhere could not reach it, and is given a moment
	// to start instead.
	reach := l.InProcess || l.SameHost
	for _, c := range callers(t, b) {
		t.Run(c.name, func(t *testing.T) {
			var started <-chan struct{}
			addr := ""
			if reach {
				addr, started = listenOnce(t)
			}
			p := capture(t, s, block, addr)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				_, err := accepted(ctx, func() ([]byte, error) { return c.call(ctx, p) })
				errc <- err
			}()
			guard := time.NewTimer(hangGuard)
			defer guard.Stop()
			var moment <-chan time.Time // when the task cannot say it runs
			if started == nil {
				tm := time.NewTimer(time.Second)
				defer tm.Stop()
				moment = tm.C
			}
			select {
			case <-started:
			case <-moment:
			case err := <-errc:
				t.Fatalf("%s returned before its task was cancelled: %v", c.name, err)
			case <-guard.C:
				t.Fatalf("the task did not start within %v", hangGuard)
			}
			cancel()
			select {
			case err := <-errc:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("%s cancelled while its task runs: %v, want an error satisfying errors.Is(err, context.Canceled)", c.name, err)
				}
			case <-guard.C:
				t.Fatalf("%s did not return within %v of its cancellation", c.name, hangGuard)
			}
		})
	}
}

// listenOnce listens on a loopback port and returns its address and a
// channel closed when a first connection arrives. The listener closes when
// the test ends.
func listenOnce(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
			close(started)
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), started
}

// testStreamReply checks that InvokeStream answers as Invoke does: a reply
// for a payload that runs, an error reply for a malformed one.
func testStreamReply(t *testing.T, s *suite) {
	b, _ := s.backend(t)
	sb, ok := b.(backends.StreamBackend)
	if !ok {
		t.Skip("backend does not offer InvokeStream")
	}
	ctx := guard(t)
	p := capture(t, s, square, 7)
	for _, c := range callers(t, sb) {
		reply, err := accepted(ctx, func() ([]byte, error) { return c.call(ctx, p) })
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		} else if err := fanout.ReplyError(reply); err != nil {
			t.Errorf("%s: reply error %v, want a reply", c.name, err)
		}
		reply, err = accepted(ctx, func() ([]byte, error) { return c.call(ctx, []byte("not msgpack at all")) })
		if err != nil {
			t.Errorf("%s of a malformed payload: %v; want an error reply, not a failed invocation", c.name, err)
		} else if err := fanout.ReplyError(reply); !errors.Is(err, fanout.ErrMalformed) {
			t.Errorf("%s of a malformed payload: reply error %v, want ErrMalformed", c.name, err)
		}
	}
}
