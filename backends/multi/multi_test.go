package multi_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/backendtest"
	"github.com/gowren/gowren/backends/chaos"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/backends/multi"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
)

func TestMain(m *testing.M) {
	fanout.Init()
	goleak.VerifyTestMain(m)
}

// counting counts the invocations a member receives.
type counting struct {
	backends.Backend
	calls atomic.Int64
}

func (c *counting) Invoke(ctx context.Context, p []byte) ([]byte, error) {
	c.calls.Add(1)
	return c.Backend.Invoke(ctx, p)
}

var errNotFound = errors.New("function not found")

// refusing refuses every call for good, as a member with bad credentials
// or a deleted function does.
type refusing struct {
	calls atomic.Int64
	err   error
}

func (r *refusing) Invoke(context.Context, []byte) ([]byte, error) {
	r.calls.Add(1)
	return nil, r.err
}
func (r *refusing) Limits() backends.Limits {
	return backends.Limits{Concurrency: 8, InProcess: true, SameHost: true}
}
func (r *refusing) Close() error { return nil }

var square = fanout.Register("multi_test.square", func(_ context.Context, x int) (int, error) { return x * x, nil })

func inputs(n, base int) []int {
	in := make([]int, n)
	for i := range in {
		in[i] = base + i
	}
	return in
}

func check(t *testing.T, in, out []int) {
	t.Helper()
	for i, x := range in {
		if out[i] != x*x {
			t.Fatalf("out[%d] = %d, want %d", i, out[i], x*x)
		}
	}
}

// A job spreads over every member with room, and each task settles once.
func TestSpreadsOverMembers(t *testing.T) {
	a := &counting{Backend: local.New(&local.Options{Concurrency: 2})}
	b := &counting{Backend: local.New(&local.Options{Concurrency: 6})}
	g := multi.New(a, b)
	if l := g.Limits(); l.Concurrency != 8 || !l.InProcess {
		t.Fatalf("Limits %+v: want concurrency 8 (2 + 6), in process", l)
	}
	ex := fanout.NewExecutor(g, &fanout.Options{BatchSize: 1, Logger: slog.New(slog.DiscardHandler)})
	defer ex.Close()
	in := inputs(400, 1000)
	out, err := fanout.Map(context.Background(), ex, square, in)
	if err != nil {
		t.Fatal(err)
	}
	check(t, in, out)
	if a.calls.Load() == 0 || b.calls.Load() == 0 || a.calls.Load()+b.calls.Load() < 400 {
		t.Errorf("calls: %d and %d; want both members used, 400 in all", a.calls.Load(), b.calls.Load())
	}
}

// A member that refuses for good is dropped, with its error logged once;
// the job finishes on the others. When every member refuses, the job's
// error names each one's.
func TestRefusingMember(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	bad := &refusing{err: fmt.Errorf("%w: no such function f in eu-west-1", errNotFound)}
	good := &counting{Backend: local.New(&local.Options{Concurrency: 4})}
	ex := fanout.NewExecutor(multi.New(bad, good), &fanout.Options{BatchSize: 1, Logger: logger})
	in := inputs(200, 2000)
	out, err := fanout.Map(context.Background(), ex, square, in)
	ex.Close()
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	check(t, in, out)
	mu.Lock()
	n := strings.Count(logs.String(), "refuses the job")
	mu.Unlock()
	if n != 1 || bad.calls.Load() == 0 {
		t.Errorf("%d warnings about the refusing member (%d calls to it); want exactly 1", n, bad.calls.Load())
	}

	other := &refusing{err: errors.New("bad key")}
	ex = fanout.NewExecutor(multi.New(&refusing{err: bad.err}, other), &fanout.Options{BatchSize: 1, Logger: slog.New(slog.DiscardHandler)})
	defer ex.Close()
	_, err = fanout.Map(context.Background(), ex, square, inputs(10, 3000))
	if !errors.Is(err, errNotFound) || !strings.Contains(err.Error(), "eu-west-1") || !strings.Contains(err.Error(), "bad key") ||
		!strings.Contains(err.Error(), "every backend member refused") {
		t.Fatalf("Map on refusing members: %v; want an error naming both", err)
	}
}

// named is a refusing member that names itself, as a Lambda shard does.
type named struct{ refusing }

func (*named) String() string { return `lambda function "f-2"` }

// The warning about a member that refuses names it when its backend has a
// String method: a worker's reply does not say where it ran.
func TestRefusingMemberNamed(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	bad := &named{refusing{err: errNotFound}}
	ex := fanout.NewExecutor(multi.New(local.New(&local.Options{Concurrency: 2}), bad), &fanout.Options{BatchSize: 1, Logger: logger})
	defer ex.Close()
	in := inputs(50, 6000)
	out, err := fanout.Map(context.Background(), ex, square, in)
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	check(t, in, out)
	mu.Lock()
	log := logs.String()
	mu.Unlock()
	if bad.calls.Load() == 0 || strings.Count(log, "refuses the job") != 1 || !strings.Contains(log, `backend member 1, lambda function \"f-2\"`) {
		t.Errorf("after %d calls to the refusing member, the log %q lacks one warning naming it", bad.calls.Load(), log)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Each member's window finds its own cap: a member capped at 2 is never
// sent more than 2 at once for long, while the other takes the rest; and
// when every member throttles at times, every task still settles once.
func TestMembersThrottleApart(t *testing.T) {
	small := chaos.Wrap(local.New(&local.Options{Concurrency: 16}), chaos.Faults{Seed: 3, Concurrency: 2, Throttle: 0.05})
	large := chaos.Wrap(local.New(&local.Options{Concurrency: 16}), chaos.Faults{Seed: 4, Concurrency: 12, Throttle: 0.05})
	ex := fanout.NewExecutor(multi.New(small, large), &fanout.Options{BatchSize: 1, Retries: -1, Logger: slog.New(slog.DiscardHandler)})
	defer ex.Close()
	in := inputs(600, 4000)
	job, err := fanout.Start(context.Background(), ex, square, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := job.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	check(t, in, out)
	ss, ls := small.Stats(), large.Stats()
	if ss.PeakInFlight > 2 || ls.PeakInFlight > 12 {
		t.Errorf("peaks %d and %d: chaos admits at most its cap", ss.PeakInFlight, ls.PeakInFlight)
	}
	if ls.InnerCalls <= ss.InnerCalls {
		t.Errorf("the member capped at 12 ran %d invocations, the one capped at 2 ran %d: want the larger to take more", ls.InnerCalls, ss.InnerCalls)
	}
	if st := job.Stats(); st.Succeeded != len(in) || st.Throttles == 0 {
		t.Errorf("stats: %d succeeded, %d throttles; want %d and some", st.Succeeded, st.Throttles, len(in))
	}
}

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	u := "multi://?b=" + url.QueryEscape("local://?concurrency=3") + "&b=" + url.QueryEscape("local://?concurrency=5")
	b, err := backends.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	g, ok := b.(backends.Group)
	if !ok || len(g.Members()) != 2 || b.Limits().Concurrency != 8 {
		t.Fatalf("Open(%s) = %T with limits %+v", u, b, b.Limits())
	}
	ex := fanout.NewExecutor(b, &fanout.Options{Logger: slog.New(slog.DiscardHandler)})
	in := inputs(20, 5000)
	out, err := fanout.Map(ctx, ex, square, in)
	ex.Close()
	if err != nil {
		t.Fatal(err)
	}
	check(t, in, out)
	for _, tc := range []struct{ url, want string }{
		{"multi://", "names no member"},
		{"multi://?x=1&b=local%3A%2F%2F", `unknown parameter "x"`},
		{"multi://host?b=local%3A%2F%2F", "not in the host or path"},
		{"multi://?b=nosuch%3A%2F%2F", "member 0 (nosuch://)"},
	} {
		if _, err := backends.Open(ctx, tc.url); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%s) = %v, want an error containing %q", tc.url, err, tc.want)
		}
	}
}

type harness struct{}

func (harness) MakeBackend(context.Context) (backends.Backend, error) {
	return multi.New(local.New(&local.Options{Concurrency: 2}), local.New(&local.Options{Concurrency: 2})), nil
}
func (harness) MakeStore(context.Context) (storage.Store, error) { return nil, nil }
func (harness) Close()                                           {}

// The contract every backend keeps, kept by a group of members.
func TestConformance(t *testing.T) {
	backendtest.RunConformanceTests(t, func(context.Context, *testing.T) (backendtest.Harness, error) {
		return harness{}, nil
	})
}
