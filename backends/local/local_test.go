package local_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/backendtest"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
)

func TestMain(m *testing.M) {
	fanout.Init()
	goleak.VerifyTestMain(m)
}

type harness struct{}

func (harness) MakeBackend(context.Context) (backends.Backend, error) {
	return local.New(&local.Options{Concurrency: 4}), nil
}
func (harness) MakeStore(context.Context) (storage.Store, error) { return nil, nil }
func (harness) Close()                                           {}

func TestConformance(t *testing.T) {
	backendtest.RunConformanceTests(t, func(context.Context, *testing.T) (backendtest.Harness, error) {
		return harness{}, nil
	})
}

// streamBackend returns a local backend serving h, closed when the test
// ends.
func streamBackend(t *testing.T, opts local.Options, h backends.Handler) *local.Backend {
	t.Helper()
	opts.Handler = h
	b := local.New(&opts)
	t.Cleanup(func() { b.Close() })
	return b
}

// parts records what InvokeStream passes to part, and fails the test when
// part is called concurrently with itself or after InvokeStream returned.
type parts struct {
	t      *testing.T
	inside atomic.Int32

	mu    sync.Mutex
	got   []string
	ended bool
}

func (p *parts) part(b []byte) {
	if p.inside.Add(1) != 1 {
		p.t.Error("part called concurrently with itself")
	}
	defer p.inside.Add(-1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		p.t.Errorf("part %q after InvokeStream returned", b)
	}
	p.got = append(p.got, string(b))
}

// invoke calls InvokeStream and records that it returned.
func (p *parts) invoke(ctx context.Context, b *local.Backend, payload string) ([]byte, error) {
	reply, err := b.InvokeStream(ctx, []byte(payload), p.part)
	p.mu.Lock()
	p.ended = true
	p.mu.Unlock()
	return reply, err
}

func (p *parts) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

func TestStreamPartsInOrder(t *testing.T) {
	t.Parallel()
	b := streamBackend(t, local.Options{}, func(ctx context.Context, payload []byte) []byte {
		if !backends.CanSendParts(ctx) {
			return []byte("cannot send parts")
		}
		for i := range 10 {
			if err := backends.SendPart(ctx, fmt.Appendf(nil, "part %d of %s", i, payload)); err != nil {
				return []byte(err.Error())
			}
		}
		return []byte("reply")
	})
	p := &parts{t: t}
	reply, err := p.invoke(context.Background(), b, "x")
	if err != nil || string(reply) != "reply" {
		t.Fatalf("InvokeStream = %q, %v; want the reply", reply, err)
	}
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("part %d of x", i))
	}
	if got := p.list(); !slices.Equal(got, want) {
		t.Errorf("parts %q, want %q", got, want)
	}
	// Invoke gives the handler no part sender.
	reply, err = b.Invoke(context.Background(), []byte("x"))
	if err != nil || string(reply) != "cannot send parts" {
		t.Errorf("Invoke = %q, %v; want a handler that cannot send parts", reply, err)
	}
}

// TestStreamPartsFromTasks sends parts from many goroutines at once, as a
// batch's tasks do: part is called one at a time, with every part.
func TestStreamPartsFromTasks(t *testing.T) {
	t.Parallel()
	const n = 50
	b := streamBackend(t, local.Options{}, func(ctx context.Context, _ []byte) []byte {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				buf := fmt.Appendf(nil, "task %02d", i)
				if err := backends.SendPart(ctx, buf); err != nil {
					t.Errorf("SendPart: %v", err)
				}
			})
		}
		wg.Wait()
		return []byte("reply")
	})
	p := &parts{t: t}
	if _, err := p.invoke(context.Background(), b, ""); err != nil {
		t.Fatal(err)
	}
	got := p.list()
	slices.Sort(got)
	for i, s := range got {
		if want := fmt.Sprintf("task %02d", i); s != want {
			t.Fatalf("sorted part %d is %q, want %q (all: %q)", i, s, want, got)
		}
	}
	if len(got) != n {
		t.Errorf("%d parts, want %d", len(got), n)
	}
}

func TestStreamPartTooLarge(t *testing.T) {
	t.Parallel()
	b := streamBackend(t, local.Options{MaxResponseBytes: 100}, func(ctx context.Context, _ []byte) []byte {
		var out []string
		for _, n := range []int{100, 101} {
			err := backends.SendPart(ctx, bytes.Repeat([]byte("p"), n))
			out = append(out, fmt.Sprintf("%d:%v", n, errors.Is(err, backends.ErrPayloadTooLarge)))
		}
		return []byte(strings.Join(out, " "))
	})
	p := &parts{t: t}
	reply, err := p.invoke(context.Background(), b, "")
	if err != nil || string(reply) != "100:false 101:true" {
		t.Fatalf("InvokeStream = %q, %v; want the 101-byte part refused with ErrPayloadTooLarge", reply, err)
	}
	if got := p.list(); len(got) != 1 || len(got[0]) != 100 {
		t.Errorf("parts of %d bytes each delivered, want one of 100", len(got))
	}
}

// TestStreamCancel checks that the reply the handler returns after
// cancellation reaches part, after the parts sent before it.
func TestStreamCancel(t *testing.T) {
	t.Parallel()
	running := make(chan struct{})
	b := streamBackend(t, local.Options{}, func(ctx context.Context, _ []byte) []byte {
		if err := backends.SendPart(ctx, []byte("early")); err != nil {
			return []byte(err.Error())
		}
		close(running)
		<-ctx.Done()
		return []byte("late reply")
	})
	ctx, cancel := context.WithCancel(context.Background())
	p := &parts{t: t}
	errc := make(chan error, 1)
	go func() {
		_, err := p.invoke(ctx, b, "")
		errc <- err
	}()
	<-running
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("InvokeStream cancelled: %v, want context.Canceled", err)
	}
	if got, want := p.list(), []string{"early", "late reply"}; !slices.Equal(got, want) {
		t.Errorf("parts %q, want %q", got, want)
	}
}

// TestStreamNoPartAfterReturn has a goroutine of the handler send parts
// until SendPart fails: part is never called after InvokeStream returned,
// and SendPart fails from then on.
func TestStreamNoPartAfterReturn(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	lastErr := make(chan error, 1)
	b := streamBackend(t, local.Options{}, func(ctx context.Context, _ []byte) []byte {
		first := make(chan struct{})
		wg.Go(func() {
			for i := 0; ; i++ {
				err := backends.SendPart(ctx, []byte("tick"))
				if i == 0 {
					close(first)
				}
				if err != nil {
					lastErr <- err
					return
				}
			}
		})
		<-first
		return []byte("reply")
	})
	p := &parts{t: t}
	if _, err := p.invoke(context.Background(), b, ""); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := <-lastErr; err == nil || !strings.Contains(err.Error(), "already returned") {
		t.Errorf("SendPart after the invocation returned: %v, want an error saying so", err)
	}
	if got := p.list(); len(got) == 0 {
		t.Error("no part delivered")
	}
}
