// Package testfuncs registers the functions the tencentscf tests run on
// workers besides backendtest's. A test worker binary and the test binary
// both link it, so driver and worker agree on names and signatures.
package testfuncs

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/fanout"
)

var (
	// Exit ends the worker process with the given status, as a crashing
	// task would.
	Exit = fanout.Register("tencentscf.test.exit", func(_ context.Context, code int) (int, error) {
		fmt.Fprintf(os.Stderr, "testfuncs: exiting with status %d\n", code)
		os.Exit(code)
		return 0, nil
	})
	// PanicInGoroutine panics where nothing recovers it: the process dies.
	PanicInGoroutine = fanout.Register("tencentscf.test.panicInGoroutine", func(_ context.Context, msg string) (string, error) {
		go func() { panic("testfuncs: " + msg) }()
		select {} // the panic ends the process
	})
	// Getenv returns the worker's value of an environment variable.
	Getenv = fanout.Register("tencentscf.test.getenv", func(_ context.Context, key string) (string, error) {
		return os.Getenv(key), nil
	})
	// Deadline returns the task context's deadline in Unix milliseconds, or
	// 0 when it has none.
	Deadline = fanout.Register("tencentscf.test.deadline", func(ctx context.Context, _ int) (int64, error) {
		d, ok := ctx.Deadline()
		if !ok {
			return 0, nil
		}
		return d.UnixMilli(), nil
	})
	// Sleep sleeps for the given milliseconds, ignoring its context.
	Sleep = fanout.Register("tencentscf.test.sleep", func(_ context.Context, ms int) (int, error) {
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return ms, nil
	})
	// Double doubles its input; Children runs it as children.
	Double = fanout.Register("tencentscf.test.double", func(_ context.Context, x int) (int, error) {
		return 2 * x, nil
	})
	// Children reports the backend its invocation's context offers for
	// invoking children (backends.InvokerOf) and, when there is one, runs
	// Double on its input through it, with an executor of its own.
	Children = fanout.Register("tencentscf.test.children", func(ctx context.Context, xs []int) (ChildReport, error) {
		inv := backends.InvokerOf(ctx)
		if inv == nil {
			return ChildReport{PID: os.Getpid()}, nil
		}
		_, async := inv.(backends.AsyncBackend)
		r := ChildReport{Invoker: fmt.Sprintf("%p", inv), PID: os.Getpid(), Async: async, Nested: inv.Limits().Nested}
		ex := fanout.NewExecutor(inv, &fanout.Options{Retries: -1})
		defer ex.Close()
		var err error
		r.Doubled, err = fanout.Map(ctx, ex, Double, xs)
		return r, err
	})
)

// ChildReport is what Children saw.
type ChildReport struct {
	// Invoker identifies the backend InvokerOf returned ("" for none):
	// the same in one process means the same backend.
	Invoker string
	// PID is the worker process's.
	PID int
	// Async and Nested report whether the backend is an
	// backends.AsyncBackend and what its Limits say.
	Async, Nested bool
	// Doubled holds the children's results.
	Doubled []int
}
