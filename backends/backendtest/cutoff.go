package backendtest

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/fanout"
)

// Checks of jobs cut off while tasks run, through a real executor: a job
// whose task ignores cancellation still ends promptly; and on a backend
// that streams (backends.StreamBackend), a task's result reaches the driver
// when the task finishes, not when its batch does, and a job cut off keeps
// the results of its finished tasks.

// gates listens on loopback for held gate tasks; each connection is one
// task waiting to be released.
type gates struct {
	ln    net.Listener
	conns chan net.Conn
}

func newGates(t *testing.T) *gates {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	g := &gates{ln: ln, conns: make(chan net.Conn, 64)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(g.conns)
				return
			}
			g.conns <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return g
}

// held waits for a held task to connect.
func (g *gates) held(ctx context.Context, t *testing.T) net.Conn {
	t.Helper()
	select {
	case c, ok := <-g.conns:
		if !ok {
			t.Fatal("listener closed")
		}
		t.Cleanup(func() { c.Close() })
		return c
	case <-ctx.Done():
		t.Fatal("no held task connected")
		return nil
	}
}

func streams(t *testing.T, s *suite) bool {
	b, err := s.h.MakeBackend(context.Background())
	if err != nil {
		t.Fatalf("MakeBackend: %v", err)
	}
	defer b.Close()
	_, ok := b.(backends.StreamBackend)
	return ok
}

func testStreamedResults(t *testing.T, s *suite) {
	if !streams(t, s) {
		t.Skip("the backend does not stream (no InvokeStream): a batch's results come together")
	}
	ex, _ := s.executor(t, &fanout.Options{BatchSize: 2, Concurrency: 1})
	g := newGates(t)
	ctx := guard(t)
	j, err := fanout.Start(ctx, ex, gate, []Gate{{Value: 10}, {Addr: g.ln.Addr().String(), Hold: true, Value: 11}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	next, stop := iterPull(j.Results(ctx))
	defer stop()
	// Task 1 is held: task 0's result must come out of the running batch.
	conn := g.held(ctx, t)
	r, ok := next()
	if !ok || r.Index != 0 || r.Err != nil || r.Value != 10 {
		t.Fatalf("first result %+v (%v): want task 0's, while task 1 still runs in the same invocation", r, ok)
	}
	if st := j.Stats(); st.Invocations != 1 {
		t.Fatalf("%d invocations, want the one batch of 2", st.Invocations)
	}
	conn.Write([]byte{1})
	r, ok = next()
	if !ok || r.Index != 1 || r.Err != nil || r.Value != 11 {
		t.Fatalf("second result %+v (%v)", r, ok)
	}
}

func testCancelKeepsFinished(t *testing.T, s *suite) {
	if !streams(t, s) {
		t.Skip("the backend does not stream (no InvokeStream): a cancelled call returns no results")
	}
	const n = 6
	ex, _ := s.executor(t, &fanout.Options{BatchSize: n, Concurrency: 1})
	g := newGates(t)
	ctx := guard(t)
	in := make([]Gate, n)
	for i := range in {
		in[i] = Gate{Value: 100 + i}
	}
	in[3] = Gate{Addr: g.ln.Addr().String(), Hold: true}
	j, err := fanout.Start(ctx, ex, gate, in)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	g.held(ctx, t) // tasks 0, 1 and 2 are done; 3 holds 4 and 5 back
	j.Cancel()
	out, err := j.Wait(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait: %v, want context.Canceled", err)
	}
	for i := range 3 {
		if out[i] != 100+i {
			t.Errorf("task %d finished before the cancel, but its result is %d, want %d", i, out[i], 100+i)
		}
	}
	got := map[int]bool{}
	for r := range j.Results(ctx) {
		if r.Err == nil {
			got[r.Index] = true
		}
	}
	for i := range 3 {
		if !got[i] {
			t.Errorf("Results has no value for task %d, finished before the cancel", i)
		}
	}
	if got[3] || got[4] || got[5] {
		t.Errorf("results of tasks that never finished: %v", got)
	}
}

func testCancelIgnored(t *testing.T, s *suite) {
	ex, _ := s.executor(t, &fanout.Options{BatchSize: 1, Concurrency: 2})
	g := newGates(t)
	ctx := guard(t)
	// Task 1 ignores its context: it waits for a byte that never comes
	// (until the test ends and closes its connection).
	j, err := fanout.Start(ctx, ex, gate, []Gate{{Value: 5}, {Addr: g.ln.Addr().String(), Hold: true, Ignore: true}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	g.held(ctx, t)
	for r := range j.Results(ctx) {
		if r.Index == 0 {
			break // taken: the cancel must not lose it
		}
	}
	j.Cancel()
	out, err := j.Wait(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait: %v, want context.Canceled although a task ignores it", err)
	}
	if out[0] != 5 {
		t.Errorf("task 0 finished before the cancel, but its result is %d", out[0])
	}
}

// iterPull turns a sequence into a next function, as iter.Pull does.
func iterPull[V any](seq func(func(V) bool)) (func() (V, bool), func()) {
	ch := make(chan V)
	done := make(chan struct{})
	go func() {
		defer close(ch)
		seq(func(v V) bool {
			select {
			case ch <- v:
				return true
			case <-done:
				return false
			}
		})
	}()
	next := func() (V, bool) {
		v, ok := <-ch
		return v, ok
	}
	return next, func() { close(done) }
}
