package fanout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/chaos"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/internal/layout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/memstore"
)

var treeSquare = Register("fanout.tree_test.square", func(ctx context.Context, x int) (int, error) { return x * x, nil })

func treeInputs(n int) []int {
	in := make([]int, n)
	for i := range in {
		in[i] = i
	}
	return in
}

func checkSquares(t *testing.T, out []int, n int) {
	t.Helper()
	if len(out) != n {
		t.Fatalf("%d results for %d inputs", len(out), n)
	}
	for i, v := range out {
		if v != i*i {
			t.Fatalf("result %d is %d, want %d", i, v, i*i)
		}
	}
}

// runSquares runs treeSquare over n inputs on b with o, its store o.Store
// or a memory store of its own, checks every result and returns the job's
// statistics.
func runSquares(t *testing.T, b backends.Backend, o Options, n int) JobStats {
	t.Helper()
	if o.Store == nil {
		st := memstore.New(nil)
		t.Cleanup(func() { st.Close() })
		o.Store = st
	}
	o.Logger = slog.New(slog.DiscardHandler)
	ex := NewExecutor(b, &o)
	defer ex.Close()
	j, err := Start(context.Background(), ex, treeSquare, treeInputs(n))
	if err != nil {
		t.Fatal(err)
	}
	out, err := j.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkSquares(t, out, n)
	return j.Stats()
}

// driverCalls is how many calls the driver itself made.
func driverCalls(st JobStats) int { return st.Invocations - st.ViaTree + st.Invokers }

func TestTreeLocal(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			const n = 300
			s := runSquares(t, local.New(&local.Options{Concurrency: 64}), Options{Tree: 4, BatchSize: 1, Async: async}, n)
			// The first round fills the window of 64 through the tree: 4
			// invokers of 16, each starting 4 sub-invokers of 4.
			if s.Invokers < 4 || s.ViaTree < 64 {
				t.Fatalf("invokers %d, via the tree %d: want at least 4 and 64", s.Invokers, s.ViaTree)
			}
			if s.Invocations != n || driverCalls(s) >= n {
				t.Fatalf("%d invocations, %d of them made by the driver: want %d, fewer", s.Invocations, driverCalls(s), n)
			}
		})
	}
}

// Under chaos, children go through the wrapper (its rules apply to them)
// and skip the driver's uplink.
func TestTreeChaosInside(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	up := chaos.NewUplink(0, 0)
	cb := chaos.Wrap(local.New(&local.Options{Concurrency: 100}), chaos.Faults{Seed: 1, Uplink: up, Throttle: 0.2})
	ex := NewExecutor(cb, &Options{Store: st, Tree: 10, BatchSize: 1, Concurrency: 100, Logger: slog.New(slog.DiscardHandler)})
	defer ex.Close()
	const n = 200
	out, err := Map(context.Background(), ex, treeSquare, treeInputs(n))
	if err != nil {
		t.Fatal(err)
	}
	checkSquares(t, out, n)
	s := cb.Stats()
	if s.Inside == 0 || s.Uplinked >= s.Calls {
		t.Fatalf("calls %d, over the uplink %d, from inside %d: want the children inside", s.Calls, s.Uplinked, s.Inside)
	}
}

func TestTreeRefused(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	for _, tc := range []struct {
		name string
		b    backends.Backend
		tree int
		want string
	}{
		{"fan-out of one", local.New(nil), 1, "an invoker starts at least 2 children"},
		{"negative", local.New(nil), -3, "an invoker starts at least 2 children"},
		{"workers cannot invoke", notNested{local.New(nil)}, 8, "the backend's workers cannot invoke it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := NewExecutor(tc.b, &Options{Store: st, Tree: tc.tree, Logger: slog.New(slog.DiscardHandler)})
			defer ex.Close()
			_, err := Start(context.Background(), ex, treeSquare, []int{1, 2, 3})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

type notNested struct{ *local.Backend }

func (b notNested) Limits() backends.Limits {
	l := b.Backend.Limits()
	l.Nested = false
	return l
}

// A backend that says its workers can invoke, but whose runtime gives them
// nothing to invoke with: the job stops with one clear error.
func TestTreeNoInvokerInWorker(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	ex := NewExecutor(bare{}, &Options{Store: st, Tree: 2, BatchSize: 1, Concurrency: 8, Logger: slog.New(slog.DiscardHandler)})
	defer ex.Close()
	_, err := Map(context.Background(), ex, treeSquare, treeInputs(20))
	if err == nil || !strings.Contains(err.Error(), "no backend to invoke its children through") {
		t.Fatalf("Map: %v, want the invoker's error", err)
	}
}

// bare runs the handler in the caller's goroutine and sets no invoker.
type bare struct{}

func (bare) Invoke(ctx context.Context, p []byte) ([]byte, error) { return Handle(ctx, p), nil }
func (bare) Close() error                                         { return nil }
func (bare) Limits() backends.Limits {
	return backends.Limits{Concurrency: 8, InProcess: true, SameHost: true, Nested: true}
}

// The first invoker starts two of its children and dies: its answer never
// comes. Its children are sent again, and each task settles once with its
// result.
//
// With collect (a cloud platform's invokers collect their children's
// replies) the invoker runs one child itself and calls the others: the two
// it started and its own may have replied in a bundle; the five it could
// not start fail, and with the invoker's lost answer all eight go again.
func TestTreeInvokerDies(t *testing.T) {
	for _, collect := range []bool{false, true} {
		t.Run(fmt.Sprintf("collect=%v", collect), func(t *testing.T) {
			// Collecting invokers hold a worker while their children run,
			// and may still hold it when the driver sends the next round:
			// a platform has room for more than the job's window (beyond
			// it, it throttles), and local, which queues, must too.
			d := &dying{inner: local.New(&local.Options{Concurrency: 128}), platform: collect}
			const n = 100
			s := runSquares(t, d, Options{Tree: 8, BatchSize: 1, Concurrency: 32}, n)
			if d.died.Load() != 1 || d.started.Load() != 2 {
				t.Fatalf("%d invokers died, having started %d children: want 1 and 2", d.died.Load(), d.started.Load())
			}
			// The window of 32 goes out as 4 invokers of 8 children. The
			// six (five with collect) the dead one never started fail and
			// go again (the ones it started too, unless their results
			// came first).
			if want := 6 - btoi(collect); s.FailedInvocations < want || s.Retries < want {
				t.Fatalf("failed invocations %d, retries %d: want the dead invoker's %d unstarted children failed and sent again",
					s.FailedInvocations, s.Retries, want)
			}
			if s.Succeeded != n {
				t.Fatalf("%d succeeded, want %d", s.Succeeded, n)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// dying is a local backend whose first invoker call (from the driver)
// lets its worker start two children, then loses the worker.
type dying struct {
	inner    *local.Backend
	platform bool // it says it is a cloud platform's: invokers collect
	died     atomic.Int32
	started  atomic.Int32
}

func (d *dying) Limits() backends.Limits {
	l := d.inner.Limits()
	if d.platform {
		l.Platform = backends.PlatformSCF
	}
	return l
}

func (d *dying) Close() error { return d.inner.Close() }

func (d *dying) Invoke(ctx context.Context, p []byte) ([]byte, error) {
	req, err := decodeRequest(p)
	if err != nil || len(req.Kids) == 0 || backends.InvokerOf(ctx) != nil || !d.died.CompareAndSwap(0, 1) {
		return d.inner.Invoke(ctx, p)
	}
	var left atomic.Int32
	left.Store(2)
	ctx = backends.WithInvoker(ctx, childGate{d: d, left: &left})
	d.inner.Invoke(ctx, p) // the reply is lost with the worker
	return nil, fmt.Errorf("invoker killed: %w", backends.ErrWorkerLost)
}

// childGate starts children while left lasts; the worker is gone after.
type childGate struct {
	d    *dying
	left *atomic.Int32
}

func (g childGate) Invoke(ctx context.Context, p []byte) ([]byte, error) {
	if req, err := decodeRequest(p); err == nil && len(req.Kids) > 0 {
		return g.d.inner.Invoke(ctx, p) // a sub-invoker: it goes through this gate too
	}
	if g.left.Add(-1) < 0 {
		return nil, fmt.Errorf("the invoker's process is gone: %w", backends.ErrWorkerLost)
	}
	g.d.started.Add(1)
	return g.d.inner.Invoke(ctx, p)
}
func (g childGate) Limits() backends.Limits { return g.d.inner.Limits() }
func (g childGate) Close() error            { return nil }

func TestInvokerRequestRoundTrip(t *testing.T) {
	req := &wireRequest{Job: "j", Func: "f", Digest: "d", Store: "mem://x", Prefix: "jobs/j/", Flags: flagAsync,
		Kids: []wireKid{
			{ReplyKey: "jobs/j/out/0.0", Kind: inputValue, Tasks: []wireKidTask{{Index: 0, Chunk: 1, Off: 3, Len: 4}, {Index: 5, Attempt: 2, Try: 1, Chunk: 0, Off: 0, Len: 9}}},
			{ReplyKey: "jobs/j/out/9.1", Tasks: []wireKidTask{{Index: 9, Attempt: 1}, {Index: 10, Chunk: 0, Input: []byte{0x2a}}}},
		},
		Chunks: []string{"jobs/j/in/0", "jobs/j/in/1"}, Fanout: 7, Patience: 3 * time.Second}
	var buf bytes.Buffer
	if err := encodeRequest(&buf, req); err != nil {
		t.Fatal(err)
	}
	got, err := decodeRequest(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Kids, req.Kids) || !reflect.DeepEqual(got.Chunks, req.Chunks) || got.Fanout != 7 || got.Patience != 3*time.Second {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, req)
	}
	// A child naming a chunk the request does not list is refused.
	req.Kids[1].Tasks[0].Chunk = 2
	buf.Reset()
	if err := encodeRequest(&buf, req); err != nil {
		t.Fatal(err)
	}
	if _, err := decodeRequest(buf.Bytes()); err == nil || !strings.Contains(err.Error(), "names chunk 2 of 2") {
		t.Fatalf("decode: %v, want the bad chunk named", err)
	}
	// As is a fan-out under 2.
	req.Kids[1].Tasks[0].Chunk, req.Fanout = 0, 1
	buf.Reset()
	_ = encodeRequest(&buf, req)
	if _, err := decodeRequest(buf.Bytes()); err == nil || !strings.Contains(err.Error(), "fan-out 1") {
		t.Fatalf("decode: %v, want the fan-out refused", err)
	}
	// An invoker's reply carries one outcome per child.
	reply := &wireReply{Worker: "w", Kids: []*wireError{nil, {Code: codeChild, Type: "throttled", Message: "429", Retryable: true}}}
	buf.Reset()
	if err := encodeReply(&buf, reply); err != nil {
		t.Fatal(err)
	}
	r, err := decodeReply(buf.Bytes())
	if err != nil || len(r.Kids) != 2 || r.Kids[0] != nil || r.Kids[1].Type != "throttled" {
		t.Fatalf("reply round trip: %+v, %v", r, err)
	}
	if err := invocationError(r.Kids[1]); !errors.Is(err, backends.ErrThrottled) || !errors.Is(err, errKid) {
		t.Fatalf("a throttled child reads back as %v, want a throttle of an invoker's child", err)
	}
}

func TestTreeGroups(t *testing.T) {
	for _, tc := range []struct {
		n, fanout int
		want      [][2]int
	}{
		{2, 4, [][2]int{{0, 2}}},
		{4, 4, [][2]int{{0, 4}}},
		{5, 4, [][2]int{{0, 2}, {2, 5}}},
		{16, 4, [][2]int{{0, 4}, {4, 8}, {8, 12}, {12, 16}}},
		{100, 4, [][2]int{{0, 25}, {25, 50}, {50, 75}, {75, 100}}}, // nests: each group has over 4
	} {
		if got := treeGroups(tc.n, tc.fanout); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("treeGroups(%d, %d) = %v, want %v", tc.n, tc.fanout, got, tc.want)
		}
	}
}

// On a cloud backend without asynchronous calls (SCF's children), an
// invoker waits for its children: none outlives its invocation.
func TestTreeCloudInvokersWait(t *testing.T) {
	c := &cloudish{inner: local.New(&local.Options{Concurrency: 64})}
	if s := runSquares(t, c, Options{Tree: 4, BatchSize: 1, Concurrency: 32}, 80); s.ViaTree < 32 {
		t.Fatalf("%d invocations via the tree, want the first window's 32", s.ViaTree)
	}
	if c.outlived.Load() != 0 {
		t.Fatalf("%d children still running after their invoker returned", c.outlived.Load())
	}
}

// cloudish is a local backend that says its workers are elsewhere, and is
// its workers' invoker. It counts the children that run, or start, after
// their invoker's call returned.
type cloudish struct {
	inner    *local.Backend
	outlived atomic.Int32
}

// invokerCall is one invoker call's children, as its context carries them.
type invokerCall struct {
	mu       sync.Mutex
	running  int
	returned bool
}

type kidsKey struct{}

func (c *cloudish) Limits() backends.Limits {
	l := c.inner.Limits()
	l.SameHost = false
	return l
}
func (c *cloudish) Close() error { return c.inner.Close() }

func (c *cloudish) Invoke(ctx context.Context, p []byte) ([]byte, error) {
	req, err := decodeRequest(p)
	invoker := err == nil && len(req.Kids) > 0
	if backends.InvokerOf(ctx) == nil {
		ctx = backends.WithInvoker(ctx, c)
	}
	if ic, ok := ctx.Value(kidsKey{}).(*invokerCall); ok && !invoker {
		ic.mu.Lock()
		if ic.returned {
			c.outlived.Add(1)
		}
		ic.running++
		ic.mu.Unlock()
		defer func() {
			ic.mu.Lock()
			ic.running--
			ic.mu.Unlock()
		}()
	}
	if !invoker {
		return c.inner.Invoke(ctx, p)
	}
	ic := &invokerCall{}
	reply, err := c.inner.Invoke(context.WithValue(ctx, kidsKey{}, ic), p)
	ic.mu.Lock()
	ic.returned = true
	c.outlived.Add(int32(ic.running))
	ic.mu.Unlock()
	return reply, err
}

// A fan-out wider than the job needs: one invoker starts every child, no
// deeper tree; a job of one invocation goes directly.
func TestTreeWiderThanJob(t *testing.T) {
	o := Options{Tree: 1000, BatchSize: 1}
	s := runSquares(t, local.New(&local.Options{Concurrency: 16}), o, 5)
	if s.Invokers != 1 || s.ViaTree != 5 {
		t.Fatalf("invokers %d, via the tree %d: want one invoker for the 5", s.Invokers, s.ViaTree)
	}
	if sum := s.Summary(); !strings.Contains(sum, "tree      5 of the invocations started by 1 invoker; 1 call from the driver") {
		t.Fatalf("summary:\n%s\nwant the tree's line", sum)
	}
	if s := runSquares(t, local.New(&local.Options{Concurrency: 16}), o, 1); s.Invokers != 0 || s.ViaTree != 0 || s.Invocations != 1 {
		t.Fatalf("invokers %d, via the tree %d, invocations %d: want one direct invocation", s.Invokers, s.ViaTree, s.Invocations)
	}
}

// How an invoker reports a child it could not start.
func TestChildError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		typ  string
		test func(error) bool
	}{
		{&backends.ThrottleError{Reason: "429"}, "throttled", func(err error) bool { return errors.Is(err, backends.ErrThrottled) }},
		// The invoker's worker is stopped (its driver died): retried.
		{fmt.Errorf("process: the driver stopped this worker: %w", backends.ErrClosed), "lost", func(err error) bool { return errors.Is(err, backends.ErrWorkerLost) }},
		{fmt.Errorf("broken pipe: %w", backends.ErrTransport), "lost", func(err error) bool { return errors.Is(err, backends.ErrWorkerLost) }},
		{errors.New("AccessDeniedException"), "refused", func(err error) bool { return !backends.Retryable(err) }},
	} {
		we := childError(tc.err)
		err := invocationError(we)
		if we.Type != tc.typ || !errors.Is(err, errKid) || !tc.test(err) {
			t.Errorf("%v: reported as %q, read back as %v; want %q", tc.err, we.Type, err, tc.typ)
		}
	}
}

// onPlatform presents a local backend as a cloud platform's: the driver
// then has its tree's invokers collect their children's replies (see
// sendInvokers).
type onPlatform struct{ *local.Backend }

func (b onPlatform) Limits() backends.Limits {
	l := b.Backend.Limits()
	l.Platform = backends.PlatformLambdaARM64
	return l
}

// bundleStore fails the first failBundles puts of bundles, and counts the
// bundles and the replies of their own that it took.
type bundleStore struct {
	storage.Store
	failBundles                 atomic.Int64
	bundles, failed, own, aside atomic.Int64
}

func (s *bundleStore) Put(ctx context.Context, key string, data []byte) error {
	if strings.Contains(key, "/out/") && strings.Contains(key, "+") {
		if s.failBundles.Add(-1) >= 0 {
			s.failed.Add(1)
			return fmt.Errorf("bundleStore: put %s: %w", key, errInjected)
		}
		s.bundles.Add(1)
	} else if strings.Contains(key, "/out/") {
		s.own.Add(1)
	} else if strings.Contains(key, "/data/") {
		s.aside.Add(1)
	}
	return s.Store.Put(ctx, key, data)
}

var errInjected = errors.New("injected failure")

func TestTreeCollects(t *testing.T) {
	for _, failBundles := range []int64{0, 2} {
		t.Run(fmt.Sprintf("failBundles=%d", failBundles), func(t *testing.T) {
			st := &bundleStore{Store: memstore.New(nil)}
			defer st.Close()
			st.failBundles.Store(failBundles)
			const n = 200
			// Room beyond the window for the invokers (see
			// TestTreeInvokerDies).
			s := runSquares(t, onPlatform{local.New(&local.Options{Concurrency: 256})},
				Options{Store: st, Tree: 4, BatchSize: 1, Concurrency: 64}, n)
			// Replies of their own: the invocations the driver sent
			// directly, and (lost bundles) the error replies a
			// sub-invoker writes for children it could not report.
			if s.ViaTree < 64 || st.bundles.Load() == 0 || failBundles == 0 && st.own.Load() > int64(s.Invocations-s.ViaTree) {
				t.Fatalf("via the tree %d, bundles %d, replies of their own %d (%d invocations): want the children's replies in bundles",
					s.ViaTree, st.bundles.Load(), st.own.Load(), s.Invocations)
			}
			if s.StoreReads >= s.ViaTree {
				t.Fatalf("the driver read %d objects for %d children", s.StoreReads, s.ViaTree)
			}
			if st.failed.Load() != failBundles {
				t.Fatalf("%d bundle puts failed, want %d", st.failed.Load(), failBundles)
			}
			// The children of a bundle that could not be written ran,
			// but are sent again: their tasks settle once.
			if failBundles > 0 && s.Invocations <= n {
				t.Fatalf("%d invocations for %d tasks after %d lost bundles: want some sent again", s.Invocations, n, failBundles)
			}
		})
	}
}

func TestBundleCoding(t *testing.T) {
	es := []bundleEntry{{"jobs/x/out/0000000001.0", []byte("one")}, {"k", nil}, {"", []byte{0, 1, 2}}}
	b := encodeBundle(es)
	got, err := decodeBundle(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(es) {
		t.Fatalf("%d entries back, want %d", len(got), len(es))
	}
	for k := range es {
		if got[k].key != es[k].key || !bytes.Equal(got[k].reply, es[k].reply) {
			t.Fatalf("entry %d: %q %q, want %q %q", k, got[k].key, got[k].reply, es[k].key, es[k].reply)
		}
	}
	for _, bad := range [][]byte{nil, []byte("gwb0"), b[:len(b)-1], append(append([]byte{}, b...), 5), append([]byte(bundleMagic), 0xff)} {
		if _, err := decodeBundle(bad); !errors.Is(err, errBundle) {
			t.Errorf("decodeBundle(%q) = %v, want errBundle", bad, err)
		}
	}
}

func FuzzDecodeBundle(f *testing.F) {
	f.Add(encodeBundle([]bundleEntry{{"a", []byte("b")}, {"c", nil}}))
	f.Add([]byte(bundleMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := decodeBundle(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeBundle(es), b) {
			t.Fatalf("decoded %d entries that encode to other bytes", len(es))
		}
	})
}

// stuck is a backend whose calls never end before their context does.
type stuck struct{}

func (stuck) Invoke(ctx context.Context, _ []byte) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (stuck) Limits() backends.Limits { return backends.Limits{Nested: true} }
func (stuck) Close() error            { return nil }

// A collecting invoker stops waiting collectMargin before its own
// deadline: the child still running is reported lost, saying why, and the
// one it ran itself is in a bundle, written before the invoker's time ran
// out.
func TestCollectStopsBeforeDeadline(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	input := func(v int) []byte {
		b, err := encodeValue(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	keys := layout.JobOf(layout.NewID(time.Now()))
	req := &wireRequest{Job: keys.ID(), Func: treeSquare.fn.name, Digest: treeSquare.fn.digest, Store: st.URL(), Prefix: keys.Prefix(),
		Flags: flagCollect, Fanout: 2, Patience: time.Second, Kids: []wireKid{
			{Tasks: []wireKidTask{{Index: 0, Input: input(3)}}},
			{Tasks: []wireKidTask{{Index: 1, Input: input(7)}}},
		}}
	ctx, cancel := context.WithTimeout(context.Background(), collectMargin+200*time.Millisecond)
	defer cancel()
	stores := &storeResolver{url: st.URL(), ctx: context.WithValue(ctx, driverStoreKey{}, storage.Store(st))}
	outs := make([]*wireError, 2)
	defaultRegistry.collectKids(ctx, stuck{}, req, outs, stores, nil)
	if ctx.Err() != nil {
		t.Fatal("the invoker answered after its own deadline")
	}
	if outs[0] == nil || outs[0].Type != "lost" || !strings.Contains(outs[0].Message, "before its invoker's own deadline") {
		t.Fatalf("the stuck child's outcome is %+v, want lost before the invoker's deadline", outs[0])
	}
	if outs[1] != nil {
		t.Fatalf("the child the invoker ran itself: %+v", outs[1])
	}
	bundles := outputKeys(t, st, keys)
	if len(bundles) != 1 {
		t.Fatalf("objects %v, want one bundle", bundles)
	}
	b, err := st.Get(context.Background(), bundles[0])
	if err != nil {
		t.Fatal(err)
	}
	es, err := decodeBundle(b)
	if err != nil || len(es) != 1 || es[0].key != req.Kids[1].replyKey(req.Prefix) {
		t.Fatalf("bundle %s: %v entries (%v), want the second child's reply", bundles[0], len(es), err)
	}
	r, err := decodeReply(es[0].reply)
	if err != nil || len(r.Results) != 1 || r.Results[0].Err != nil {
		t.Fatalf("the second child's reply: %+v, %v", r, err)
	}
	var got int
	if err := decodeValue(r.Results[0].Output, &got); err != nil || got != 49 {
		t.Fatalf("the second child's result: %d, %v; want 49", got, err)
	}
}

var treeBlob = Register("fanout.tree_test.blob", func(ctx context.Context, i int) ([]byte, error) {
	return bytes.Repeat([]byte{byte(i)}, 4096), nil
})

// smallReplies is onPlatform with a platform's reply limit of 2 KiB, and
// its workers' invoker: a reply larger than that is spilled to the store.
type smallReplies struct{ *local.Backend }

func (b smallReplies) Limits() backends.Limits {
	l := b.Backend.Limits()
	l.Platform, l.MaxResponseBytes = backends.PlatformLambdaARM64, 2048
	return l
}

func (b smallReplies) Invoke(ctx context.Context, p []byte) ([]byte, error) {
	return b.Backend.Invoke(backends.WithInvoker(ctx, b), p)
}

// A collected child's output over a quarter of the platform's reply limit
// goes to the store; its reply, in a bundle, names it, and the driver reads
// it from there.
func TestTreeCollectsStoredOutputs(t *testing.T) {
	st := &bundleStore{Store: memstore.New(nil)}
	defer st.Close()
	var logs bytes.Buffer
	ex := NewExecutor(smallReplies{local.New(&local.Options{Concurrency: 64})}, // room for the invokers beyond the window
		&Options{Store: st, Tree: 4, BatchSize: 1, Concurrency: 16, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer ex.Close()
	const n = 40
	j, err := Start(context.Background(), ex, treeBlob, treeInputs(n))
	if err != nil {
		t.Fatal(err)
	}
	out, err := j.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range out {
		if len(b) != 4096 || b[0] != byte(i) || b[4095] != byte(i) {
			t.Fatalf("result %d: %d bytes starting %d", i, len(b), b[0])
		}
	}
	// The children's replies came in bundles, their outputs went under
	// data/, and only the invocations the driver sent itself left objects
	// of their own under out/ (an output and a reply each): the driver,
	// which lists out/, never took an output for a reply.
	s := j.Stats()
	direct := int64(s.Invocations - s.ViaTree)
	if st.bundles.Load() == 0 || st.aside.Load() < int64(s.ViaTree) || st.own.Load() > 2*direct {
		t.Fatalf("%d bundles, %d outputs under data/ for %d children, %d other objects under out/ for %d direct invocations",
			st.bundles.Load(), st.aside.Load(), s.ViaTree, st.own.Load(), direct)
	}
	if strings.Contains(logs.String(), "unreadable") {
		t.Fatalf("the driver logged:\n%s", logs.String())
	}
}

var treeSum = Register("fanout.tree_test.sum", func(ctx context.Context, xs []int) (int, error) {
	s := 0
	for _, x := range xs {
		s += x
	}
	return s, nil
})

// MapReduce through an invoker tree: the map outputs go to the store while
// the children's replies do too (each its own, on local); neither
// overwrites the other.
func TestTreeMapReduce(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	ex := NewExecutor(local.New(&local.Options{Concurrency: 16}),
		&Options{Store: st, Tree: 4, BatchSize: 1, Concurrency: 16, Logger: slog.New(slog.DiscardHandler)})
	defer ex.Close()
	const n = 40
	got, err := MapReduce(context.Background(), ex, treeSquare, treeInputs(n), treeSum)
	if err != nil {
		t.Fatal(err)
	}
	if want := (n - 1) * n * (2*n - 1) / 6; got != want {
		t.Fatalf("sum of squares %d, want %d", got, want)
	}
}

// A bundle is named after its highest first task: the driver lists from
// the lowest task it still awaits, and an entry may be a copy it gave up
// on, lower than that (a bundle named after it would not be listed).
func TestBundleName(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	keys := layout.JobOf(layout.NewID(time.Now()))
	ctx := context.Background()
	c := collect(ctx, &storeResolver{url: st.URL(), ctx: context.WithValue(ctx, driverStoreKey{}, storage.Store(st))}, keys.Prefix(), 2)
	c.add(collected{k: 0, index: 7, attempt: 1, bundleEntry: bundleEntry{key: keys.Output(7, 1), reply: []byte("a")}})
	c.add(collected{k: 1, index: 3, attempt: 0, bundleEntry: bundleEntry{key: keys.Output(3, 0), reply: []byte("b")}})
	if failed := c.close(); len(failed) != 0 {
		t.Fatal(failed)
	}
	names := outputKeys(t, st, keys)
	if len(names) != 1 {
		t.Fatalf("objects %v, want one bundle", names)
	}
	if i, a, ok := keys.ParseBundle(names[0]); !ok || i != 7 || a != 1 {
		t.Fatalf("bundle %s is named after task %d attempt %d (%v), want 7 and 1", names[0], i, a, ok)
	}
}

// outputKeys lists the keys under the job's out/ in st.
func outputKeys(t *testing.T, st storage.Store, keys layout.Job) []string {
	t.Helper()
	var names []string
	for obj, err := range st.List(context.Background(), keys.Outputs()) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, obj.Key)
	}
	return names
}
