package process_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/process"
)

// Reverse calls: a worker's handler invokes the backend through
// backends.InvokerOf, the driver runs the call on its pool and sends the
// answer back (see the "call" commands of testHandler).

func TestNestedCall(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, process.Options{Workers: 3, MaxRequestBytes: 1 << 20, MaxResponseBytes: 1 << 20})
	tests := []struct {
		name, payload, want string
	}{
		{"child", "call::echo:from the child", "reply from the child"},
		{"grandchild", "call::call::echo:deep", "reply reply deep"},
		{"empty reply", "call::echo:", "reply "},
		{"child's worker dies", "call::exit:7", "[lost]"},
		{"child's reply too large", "call::big:" + strconv.Itoa(1<<20+1), "[toolarge]"},
		{"child's payload too large", "call-big:" + strconv.Itoa(1<<20), "[toolarge]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := invoke(t, b, tt.payload); !strings.HasPrefix(got, tt.want) && !strings.HasSuffix(got, tt.want) {
				t.Errorf("%s: got %.300q, want %q", tt.payload, got, tt.want)
			}
		})
	}
	t.Run("invoker", func(t *testing.T) {
		want := fmt.Sprintf("%+v async=false stream=false close=<nil>", b.Limits())
		if got := invoke(t, b, "invoker"); got != want {
			t.Errorf("the worker's invoker: got %q, want %q (the pool's limits, no optional capability)", got, want)
		}
		if !b.Limits().Nested {
			t.Errorf("Limits().Nested is false")
		}
	})
}

func TestNestedCallsConcurrent(t *testing.T) {
	t.Parallel()
	// Two invokers of 100 children each share a pool of 4 workers: each
	// answer reaches the call that asked for it.
	b, _ := newBackend(t, process.Options{Workers: 4})
	const n = 100
	want := make([]string, n)
	for i := range want {
		want[i] = "reply " + strconv.Itoa(i)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			reply, err := b.Invoke(context.Background(), []byte("calls:"+strconv.Itoa(n)))
			if err != nil {
				t.Errorf("calls:%d: %v", n, err)
				return
			}
			if got := strings.Split(string(reply), ","); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("calls:%d: got %.200q", n, reply)
			}
		})
	}
	wg.Wait()
	// The invokers' workers serve again.
	if got := invoke(t, b, "calls:3"); got != "reply 0,reply 1,reply 2" {
		t.Errorf("calls:3 after the burst: %q", got)
	}
}

// spy is a Backend that counts the calls that go through it to b.
type spy struct {
	*process.Backend
	calls atomic.Int64
}

func (s *spy) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	s.calls.Add(1)
	return s.Backend.Invoke(ctx, payload)
}

func TestNestedCallThroughInvoker(t *testing.T) {
	t.Parallel()
	// A wrapper that puts itself on the invocation's context (as chaos
	// does) gets the reverse calls.
	b, _ := newBackend(t, process.Options{Workers: 3})
	s := &spy{Backend: b}
	ctx := backends.WithInvoker(context.Background(), s)
	reply, err := b.Invoke(ctx, []byte("call::call::echo:x"))
	if err != nil || string(reply) != "reply reply x" {
		t.Fatalf("call::call::echo:x: %q, %v", reply, err)
	}
	if got := s.calls.Load(); got != 2 {
		t.Errorf("%d calls went through the context's invoker, want 2 (child and grandchild)", got)
	}
}

func TestNestedCancel(t *testing.T) {
	t.Parallel()
	t.Run("parent cancelled", func(t *testing.T) {
		t.Parallel()
		b, _ := newBackend(t, process.Options{Workers: 2, CancelGrace: time.Hour})
		f := newFIFO(t)
		ctx, cancel := context.WithCancel(context.Background())
		res := goInvoke(ctx, b, "call:"+f.path+":hold-note:"+f.path)
		parent := f.next(t)
		child := f.next(t)
		cancel()
		if again := f.next(t); again != child {
			t.Fatalf("pid %d after cancel, want the child %d noting it was cancelled", again, child)
		}
		if r := <-res; !errors.Is(r.err, context.Canceled) {
			t.Fatalf("cancelled parent: %+v, want context.Canceled", r)
		}
		// Both kept their workers: the cancel frames ended them in time.
		reply := invoke(t, b, "call:"+f.path+":pid")
		pids := map[int]bool{f.next(t): true}
		pid, _ := strconv.Atoi(strings.TrimPrefix(reply, "reply "))
		pids[pid] = true
		if !pids[parent] || !pids[child] {
			t.Errorf("workers after cancel: %v, want the parent %d and the child %d", pids, parent, child)
		}
	})
	t.Run("call cancelled by the worker", func(t *testing.T) {
		t.Parallel()
		b, _ := newBackend(t, process.Options{Workers: 2, CancelGrace: time.Hour})
		// The parent reads this FIFO itself: the test must not.
		path := filepath.Join(t.TempDir(), "fifo")
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a broken test fails instead of hanging
		defer cancel()
		reply, err := b.Invoke(ctx, []byte("call-cancel:"+path))
		if err != nil {
			t.Fatalf("call-cancel: %v", err)
		}
		var started, saw string
		var answer string
		if _, err := fmt.Sscanf(string(reply), "child %s started, ", &started); err != nil {
			t.Fatalf("call-cancel: %q", reply)
		}
		answer = string(reply)
		saw = "child " + started + " saw cancel"
		if !strings.Contains(answer, "[canceled]") || !strings.HasSuffix(answer, saw) {
			t.Errorf("call-cancel: %q, want the call to fail with context.Canceled and the child to see the cancel", answer)
		}
	})
	t.Run("deadline reaches the child", func(t *testing.T) {
		t.Parallel()
		b, _ := newBackend(t, process.Options{Workers: 2})
		d := time.Now().Add(time.Hour).Round(0)
		ctx, cancel := context.WithDeadline(context.Background(), d)
		defer cancel()
		reply, err := b.Invoke(ctx, []byte("call::deadline"))
		if want := "reply " + strconv.FormatInt(d.UnixNano(), 10); err != nil || string(reply) != want {
			t.Errorf("call::deadline: %q, %v, want %q", reply, err, want)
		}
	})
}

func TestNestedCallAfterReturn(t *testing.T) {
	t.Parallel()
	// One worker: the call its goroutine makes once its handler returned
	// comes while it is idle, and runs on that same worker.
	b, _ := newBackend(t, process.Options{Workers: 1})
	in := filepath.Join(t.TempDir(), "in")
	if err := syscall.Mkfifo(in, 0o600); err != nil {
		t.Fatal(err)
	}
	out := newFIFO(t)
	if got := invoke(t, b, "call-later:"+in+":"+out.path); got != "returned" {
		t.Fatalf("call-later: %q", got)
	}
	f, err := os.OpenFile(in, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
	_ = out.f.SetReadDeadline(time.Now().Add(time.Minute)) // a broken test fails instead of hanging
	line, err := out.r.ReadString('\n')
	if err != nil || line != "reply late\n" {
		t.Errorf("a call after the handler returned: %q, %v, want %q", line, err, "reply late")
	}
}

func TestNestedWorkerKilled(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, process.Options{Workers: 2, CancelGrace: time.Hour})
	f := newFIFO(t)
	res := goInvoke(context.Background(), b, "call:"+f.path+":hold-note:"+f.path)
	parent := f.next(t)
	child := f.next(t)
	if err := syscall.Kill(parent, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if r := <-res; !errors.Is(r.err, backends.ErrWorkerLost) {
		t.Fatalf("invoker killed: %+v, want ErrWorkerLost", r)
	}
	if again := f.next(t); again != child {
		t.Fatalf("pid %d, want the child %d noting it was cancelled", again, child)
	}
	// The pool serves on: the child's worker and a new one.
	if got := invoke(t, b, "call::echo:after"); got != "reply after" {
		t.Errorf("after the invoker died: %q", got)
	}
}

func TestNestedClose(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, process.Options{Workers: 2, CancelGrace: time.Hour})
	f := newFIFO(t)
	res := goInvoke(context.Background(), b, "call:"+f.path+":hold-note:"+f.path)
	f.next(t)
	child := f.next(t)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if r := <-res; !errors.Is(r.err, backends.ErrClosed) {
		t.Errorf("invoker in flight during Close: %+v, want ErrClosed", r)
	}
	if again := f.next(t); again != child {
		t.Errorf("pid %d, want the child %d noting it was cancelled", again, child)
	}
}
