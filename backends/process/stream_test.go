package process_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/process"
)

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
		p.t.Errorf("part %.20q after InvokeStream returned", b)
	}
	p.got = append(p.got, string(b))
}

// invoke calls InvokeStream and records that it returned.
func (p *parts) invoke(ctx context.Context, b *process.Backend, payload string) (string, error) {
	reply, err := b.InvokeStream(ctx, []byte(payload), p.part)
	p.mu.Lock()
	p.ended = true
	p.mu.Unlock()
	return string(reply), err
}

func (p *parts) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

func TestStreamPartsInOrder(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, process.Options{Workers: 1})
	p := &parts{t: t}
	reply, err := p.invoke(context.Background(), b, "parts:100")
	if err != nil || reply != "reply" {
		t.Fatalf("InvokeStream = %q, %v; want the reply", reply, err)
	}
	got := p.list()
	if len(got) != 100 {
		t.Fatalf("%d parts, want 100", len(got))
	}
	for i, s := range got {
		if want := fmt.Sprintf("part %d", i); s != want {
			t.Fatalf("part %d is %q, want %q", i, s, want)
		}
	}
	// Invoke on the same worker: its handler gets no part sender.
	if got := invoke(t, b, "parts:3"); got != "cannot send parts" {
		t.Errorf("Invoke: %q, want a handler that cannot send parts", got)
	}
	// And streaming again after that.
	p = &parts{t: t}
	if reply, err := p.invoke(context.Background(), b, "parts:2"); err != nil || reply != "reply" || len(p.list()) != 2 {
		t.Errorf("InvokeStream after Invoke = %q, %v with %d parts; want the reply after 2 parts", reply, err, len(p.list()))
	}
}

func TestStreamPartTooLarge(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, process.Options{Workers: 1, MaxResponseBytes: 1000})
	p := &parts{t: t}
	if reply, err := p.invoke(context.Background(), b, "part-size:1000"); err != nil || reply != "sent: true, too large: false" {
		t.Fatalf("a part of 1000 bytes: %q, %v; want it sent", reply, err)
	}
	if got := p.list(); len(got) != 1 || len(got[0]) != 1000 {
		t.Fatalf("parts of %d bytes each, want one of 1000", len(got))
	}
	p = &parts{t: t}
	if reply, err := p.invoke(context.Background(), b, "part-size:1001"); err != nil || reply != "sent: false, too large: true" {
		t.Fatalf("a part of 1001 bytes: %q, %v; want it refused with ErrPayloadTooLarge", reply, err)
	}
	if got := p.list(); len(got) != 0 {
		t.Errorf("%d parts delivered, want none", len(got))
	}
}

// TestStreamPartTooLargeFromWorker checks the driver's side of the limit: a
// worker that announces a part over MaxResponseBytes is killed without the
// driver reading (or allocating) its body, which never comes.
func TestStreamPartTooLargeFromWorker(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, process.Options{Workers: 1, MaxResponseBytes: 1000})
	pid := invoke(t, b, "pid") // request 1; the next is request 2
	p := &parts{t: t}
	_, err := p.invoke(context.Background(), b, "raw-part:2:1073741824")
	if !errors.Is(err, backends.ErrWorkerLost) || !strings.Contains(err.Error(), "bad frame: part of 1073741824 bytes") {
		t.Fatalf("InvokeStream with a part of 1 GiB announced: %v, want ErrWorkerLost for a bad frame", err)
	}
	if len(p.list()) != 0 {
		t.Error("a part was delivered")
	}
	if next := invoke(t, b, "pid"); next == pid {
		t.Errorf("worker %s that sent a bad part still serves", pid)
	}
}

// TestStreamCancel checks that the parts sent before and the reply sent
// after cancellation reach part, in order, before InvokeStream returns
// ctx's error.
func TestStreamCancel(t *testing.T) {
	t.Parallel()
	// A grace period longer than the test: the reply must arrive.
	b, _ := newBackend(t, process.Options{Workers: 1, CancelGrace: time.Hour})
	f := newFIFO(t)
	ctx, cancel := context.WithCancel(context.Background())
	p := &parts{t: t}
	errc := make(chan error, 1)
	go func() {
		_, err := p.invoke(ctx, b, "part-hold:"+f.path)
		errc <- err
	}()
	pid := f.next(t)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("InvokeStream cancelled: %v, want context.Canceled", err)
	}
	if got, want := p.list(), []string{"early", "late reply"}; !slices.Equal(got, want) {
		t.Errorf("parts %q, want %q", got, want)
	}
	if next := invoke(t, b, "pid"); next != strconv.Itoa(pid) {
		t.Errorf("worker %d replaced by %s: a cancelled invocation that ends in time keeps its worker", pid, next)
	}
}

// TestStreamNoPartAfterReturn has a goroutine of the handler send parts
// until SendPart fails: none reaches part after InvokeStream returned (nor
// the next invocation, which would take it for a bad frame), and SendPart
// says why it failed.
func TestStreamNoPartAfterReturn(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, process.Options{Workers: 1})
	p := &parts{t: t}
	if reply, err := p.invoke(context.Background(), b, "part-after"); err != nil || reply != "reply" {
		t.Fatalf("InvokeStream = %q, %v", reply, err)
	}
	if len(p.list()) == 0 {
		t.Error("no part delivered")
	}
	p = &parts{t: t}
	reply, err := p.invoke(context.Background(), b, "part-after-result")
	if err != nil || !strings.Contains(reply, "already returned its reply") {
		t.Errorf("SendPart after the reply: %q, %v; want an error saying the handler returned", reply, err)
	}
}

// TestRetiredWorkerNotReused checks that a worker whose handler abandoned a
// task that still runs is disposed of however the invocation ends: with a
// reply, a reply too large to send, a handler panic, or a reply after
// cancellation.
func TestRetiredWorkerNotReused(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"reply", "toolarge", "panic", "cancelled"} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stream=%v", mode, stream), func(t *testing.T) {
				t.Parallel()
				b, _ := newBackend(t, process.Options{Workers: 1, MaxResponseBytes: 1000, CancelGrace: time.Hour})
				pid := invoke(t, b, "pid")
				f := newFIFO(t)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				p := &parts{t: t}
				errc := make(chan error, 1)
				go func() {
					var err error
					if stream {
						_, err = p.invoke(ctx, b, "abandon:"+mode+":"+f.path)
					} else {
						_, err = b.Invoke(ctx, []byte("abandon:"+mode+":"+f.path))
					}
					errc <- err
				}()
				if mode == "cancelled" {
					f.next(t)
					cancel()
				}
				err := <-errc
				switch mode {
				case "reply":
					if err != nil {
						t.Fatalf("Invoke: %v", err)
					}
				case "cancelled":
					if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "killed") {
						t.Fatalf("Invoke: %v, want context.Canceled with the reply in time", err)
					}
					if stream && !slices.Equal(p.list(), []string{"abandoned"}) {
						t.Errorf("parts %q, want the late reply", p.list())
					}
				default:
					if err == nil {
						t.Fatal("Invoke succeeded; want an error")
					}
				}
				if next := invoke(t, b, "pid"); next == pid {
					t.Errorf("worker %s, which abandoned a running task, served again", pid)
				}
			})
		}
	}
}
