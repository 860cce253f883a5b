package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/gowren/gowren/fanout"
)

// The functions the suite runs. They are registered in the default registry
// when this package is linked, so a worker binary that imports backendtest
// (a test binary, or a main built for an emulator) has them.

// testError is the error type fail returns, so the suite can check that the
// remote type name travels.
type testError struct{ msg string }

func (e *testError) Error() string { return e.msg }

// Blob is an input or output of a chosen size.
type Blob struct {
	Seed byte
	Data []byte
}

// Span is what span returns: the task's view of itself.
type Span struct {
	Job     string
	Index   int
	Attempt int
	Worker  string
	Start   int64
	End     int64
}

var (
	square = fanout.Register("backendtest.square", func(_ context.Context, x int) (int, error) {
		return x * x, nil
	})
	failOdd = fanout.Register("backendtest.failOdd", func(_ context.Context, x int) (int, error) {
		if x%2 == 1 {
			return 0, &testError{msg: "odd input " + strconv.Itoa(x)}
		}
		return x, nil
	})
	panicky = fanout.Register("backendtest.panicky", func(_ context.Context, s string) (string, error) {
		if s == "boom" {
			panicHere(s)
		}
		return s, nil
	})
	// echoLen returns the length of its input and checks its content.
	echoLen = fanout.Register("backendtest.echoLen", func(_ context.Context, b Blob) (int, error) {
		for i, c := range b.Data {
			if c != b.Seed+byte(i) {
				return 0, fmt.Errorf("byte %d is %d, want %d", i, c, b.Seed+byte(i))
			}
		}
		return len(b.Data), nil
	})
	// makeBlob returns a blob of n bytes.
	makeBlob = fanout.Register("backendtest.makeBlob", func(_ context.Context, n int) (Blob, error) {
		return newBlob(byte(n), n), nil
	})
	// waitCancel blocks until its context ends.
	waitCancel = fanout.Register("backendtest.waitCancel", func(ctx context.Context, _ int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	// block connects to the address it is given, when not empty, to say
	// that it runs, then waits until its context ends. The contract
	// checks replay its payload to have a task that runs until cancelled.
	block = fanout.Register("backendtest.block", func(ctx context.Context, addr string) (int, error) {
		if addr != "" {
			var d net.Dialer
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			c, err := d.DialContext(dctx, "tcp", addr)
			cancel()
			if err == nil {
				c.Close()
			}
		}
		<-ctx.Done()
		return 0, ctx.Err()
	})
	// gate returns its Value at once, or, with Hold, once the test that
	// listens at Addr writes a byte to the connection it makes or closes
	// it (or its context ends, unless Ignore): the test decides when the
	// task finishes.
	gate = fanout.Register("backendtest.gate", func(ctx context.Context, g Gate) (int, error) {
		if !g.Hold {
			return g.Value, nil
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", g.Addr)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		if !g.Ignore {
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
		}
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, err
		}
		return g.Value, nil
	})
	// span sleeps for the given milliseconds and reports what it saw.
	span = fanout.Register("backendtest.span", func(ctx context.Context, ms int) (Span, error) {
		info := fanout.Task(ctx)
		s := Span{Job: info.Job, Index: info.Index, Attempt: info.Attempt, Worker: info.Worker, Start: time.Now().UnixNano()}
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return s, ctx.Err()
		}
		s.End = time.Now().UnixNano()
		return s, nil
	})
	// logs writes n records, then fails when n is negative.
	logs = fanout.Register("backendtest.logs", func(ctx context.Context, n int) (int, error) {
		l := fanout.Logger(ctx)
		for i := range max(n, -n) {
			l.Info("step", "i", i, "task", fanout.Task(ctx).Index)
		}
		if n < 0 {
			return 0, errors.New("failed after logging")
		}
		return n, nil
	})
	// flaky fails its first attempt with a retryable error.
	flaky = fanout.Register("backendtest.flaky", func(ctx context.Context, x int) (int, error) {
		if fanout.Task(ctx).Attempt == 0 {
			return 0, fanout.Retryable(errors.New("transient failure"))
		}
		return x + 1, nil
	})
	// storeRoundTrip writes its input to the job's store and reads it back.
	storeRoundTrip = fanout.Register("backendtest.storeRoundTrip", func(ctx context.Context, s string) (string, error) {
		st := fanout.Store(ctx)
		info := fanout.Task(ctx)
		key := "backendtest/" + info.Job + "/" + strconv.Itoa(info.Index)
		if err := st.Put(ctx, key, []byte(s)); err != nil {
			return "", err
		}
		defer st.Delete(context.WithoutCancel(ctx), key)
		b, err := st.Get(ctx, key)
		return string(b), err
	})
	// sum is a reducer.
	sum = fanout.Register("backendtest.sum", func(_ context.Context, xs []int) (int, error) {
		t := 0
		for _, x := range xs {
			t += x
		}
		return t, nil
	})
	// staleTarget exists in the worker as func(int) int; the suite calls
	// it as func(string) string.
	_ = fanout.Register("backendtest.stale", func(_ context.Context, x int) (int, error) { return x, nil })
)

//go:noinline
func panicHere(s string) { panic("backendtest: " + s) }

func newBlob(seed byte, n int) Blob {
	b := Blob{Seed: seed, Data: make([]byte, n)}
	for i := range b.Data {
		b.Data[i] = seed + byte(i)
	}
	return b
}

func checkBlob(b Blob, n int) error {
	if len(b.Data) != n {
		return fmt.Errorf("blob of %d bytes, want %d", len(b.Data), n)
	}
	if want := newBlob(b.Seed, n); !bytes.Equal(b.Data, want.Data) {
		return errors.New("blob content differs")
	}
	return nil
}

// Gate is the input of the gate function.
type Gate struct {
	Addr   string
	Hold   bool
	Ignore bool // ignore the context
	Value  int
}
