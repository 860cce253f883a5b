// Package testfuncs registers the functions that the awslambda tests run on
// worker binaries besides those of backendtest. Both the tests (drivers) and
// the test worker binary import it, so the registrations match.
package testfuncs

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/fanout"
)

// Env is what EnvInfo returns: the worker's view of its environment.
type Env struct {
	FunctionName string
	RuntimeAPI   string
	Handler      string
	// Deadline is the task context's deadline; zero without one.
	Deadline time.Time
	Cold     bool
	Worker   string
}

var (
	// Exit ends the worker process with the given status, as a crash would.
	Exit = fanout.Register("awslambdatest.exit", func(_ context.Context, code int) (int, error) {
		os.Exit(code)
		return 0, nil
	})
	// Freeze stops the worker process (SIGSTOP), so that nothing in it
	// answers and the platform's timeout must end the invocation.
	Freeze = fanout.Register("awslambdatest.freeze", func(_ context.Context, _ int) (int, error) {
		// The signal may take effect a little later: wait for it.
		_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		select {}
	})
	// EnvInfo reports the worker's environment and task context.
	EnvInfo = fanout.Register("awslambdatest.env", func(ctx context.Context, _ int) (Env, error) {
		info := fanout.Task(ctx)
		e := Env{
			FunctionName: os.Getenv("AWS_LAMBDA_FUNCTION_NAME"),
			RuntimeAPI:   os.Getenv("AWS_LAMBDA_RUNTIME_API"),
			Handler:      os.Getenv("_HANDLER"),
			Cold:         info.ColdStart,
			Worker:       info.Worker,
		}
		if dl, ok := ctx.Deadline(); ok {
			e.Deadline = dl
		}
		return e, nil
	})
	// Hold writes a line to the FIFO at its input path, so that a test
	// knows it runs, then waits for its context to end.
	Hold = fanout.Register("awslambdatest.hold", func(ctx context.Context, path string) (int, error) {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return 0, err
		}
		fmt.Fprintf(f, "%d\n", os.Getpid())
		f.Close()
		<-ctx.Done()
		return 0, ctx.Err()
	})
	// Sleep waits for the given milliseconds, or until its context ends.
	Sleep = fanout.Register("awslambdatest.sleep", func(ctx context.Context, ms int) (int, error) {
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return ms, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	// Noop returns its input: the cheapest task, for throughput.
	Noop = fanout.Register("awslambdatest.noop", func(_ context.Context, x int) (int, error) {
		return x, nil
	})
	// Digest returns the length and the hex SHA-256 of its input, so that
	// a test can check that a large input arrived whole.
	Digest = fanout.Register("awslambdatest.digest", func(_ context.Context, b []byte) (string, error) {
		return DigestOf(b), nil
	})
)

// Children is the input of InvokeChildren.
type Children struct {
	// N is the number of children to invoke.
	N int
	// Async sends each child with InvokeAsync and a payload that is not a
	// gowren request (the child's worker answers it with an error reply,
	// which Lambda discards); otherwise the children run Noop on 0 ... N-1
	// in a job of an executor on the invoker, one task per invocation.
	Async bool
}

// ChildrenReport is what InvokeChildren returns.
type ChildrenReport struct {
	// Invoker is the invoker's description (fmt.Sprint); empty when the
	// task's context has none.
	Invoker string
	// Nested is the invoker's Limits().Nested.
	Nested bool
	// Results are the children's results of a synchronous run.
	Results []int
}

// InvokeChildren invokes children through the backend the worker runtime
// put in the task's context (backends.InvokerOf), as the invoker of an
// invoker tree does, and reports it. Without one it reports an empty
// Invoker and invokes nothing.
var InvokeChildren = fanout.Register("awslambdatest.children", func(ctx context.Context, c Children) (ChildrenReport, error) {
	inv := backends.InvokerOf(ctx)
	if inv == nil {
		return ChildrenReport{}, nil
	}
	r := ChildrenReport{Invoker: fmt.Sprint(inv), Nested: inv.Limits().Nested}
	if c.Async {
		ab, ok := inv.(backends.AsyncBackend)
		if !ok {
			return r, fmt.Errorf("the invoker %s has no InvokeAsync", inv)
		}
		for i := range c.N {
			if err := ab.InvokeAsync(ctx, []byte("not a gowren request")); err != nil {
				return r, fmt.Errorf("child %d: %w", i, err)
			}
		}
		return r, nil
	}
	ex := fanout.NewExecutor(inv, &fanout.Options{Concurrency: 1, BatchSize: 1})
	defer ex.Close()
	in := make([]int, c.N)
	for i := range in {
		in[i] = i
	}
	out, err := fanout.Map(ctx, ex, Noop, in)
	r.Results = out
	return r, err
})

// DigestOf is what Digest returns for b.
func DigestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%d:%x", len(b), sum)
}
