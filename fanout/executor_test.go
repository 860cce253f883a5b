package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/memstore"
)

func TestMain(m *testing.M) {
	fanout.Init()
	if dir := os.Getenv("FANOUT_TEST_DRIVER_STORE"); dir != "" {
		os.Exit(childDriver(dir))
	}
	if os.Getenv("FANOUT_TEST_TEMP_DRIVER") != "" {
		os.Exit(tempStoreDriver())
	}
	// msgpack/v5 fills an embedded *struct field from a channel that a
	// goroutine of its own keeps stocked, one goroutine per such type for
	// the life of the process (decode_typgen.go): not ours to stop.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/vmihailenco/msgpack/v5.cachedValue.func1"))
}

var (
	double = fanout.Register("fanout_test.double", func(_ context.Context, x int) (int, error) { return 2 * x, nil })
	noop   = fanout.Register("fanout_test.noop", func(_ context.Context, x int) (int, error) { return x, nil })
	nap    = fanout.Register("fanout_test.nap", func(ctx context.Context, ms int) (int, error) {
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return ms, nil
	})
	chanIn    = fanout.Register("fanout_test.chanIn", func(_ context.Context, c chan int) (int, error) { return 0, nil })
	bytesLen  = fanout.Register("fanout_test.bytesLen", func(_ context.Context, b []byte) (int, error) { return len(b), nil })
	quietLogs = slog.New(slog.NewTextHandler(io.Discard, nil))
)

func newLocal(t *testing.T, lo *local.Options, o *fanout.Options) *fanout.Executor {
	t.Helper()
	if o == nil {
		o = &fanout.Options{}
	}
	if o.Logger == nil {
		o.Logger = quietLogs
	}
	ex := fanout.NewExecutor(local.New(lo), o)
	t.Cleanup(func() { ex.Close() })
	return ex
}

var lateRuns atomic.Int64

func TestRegisterPanics(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func()
		want string
	}{
		{"empty name", func() { fanout.Register("", func(context.Context, int) (int, error) { return 0, nil }) }, "empty name"},
		{"nil func", func() { fanout.Register[int, int]("fanout_test.nil", nil) }, "nil function"},
		{"duplicate", func() {
			fanout.Register("fanout_test.double", func(context.Context, int) (int, error) { return 0, nil })
		}, "registered twice"},
		{"input sent empty", func() {
			fanout.Register("fanout_test.hidden", func(context.Context, hidden) (int, error) { return 0, nil })
		}, "input type fanout_test.hidden: it is a struct with no exported field"},
		{"unexported field dropped", func() {
			fanout.Register("fanout_test.partly", func(context.Context, []partly) (int, error) { return 0, nil })
		}, "field count of fanout_test.partly (at []fanout_test.partly[elem]) is unexported"},
		{"after Init", func() {
			// A name of its own each run: the first run registered it
			// (Register panics after registering), so -count=2 would
			// otherwise find it registered twice.
			fanout.Register(fmt.Sprintf("fanout_test.late%d", lateRuns.Add(1)), func(context.Context, int) (int, error) { return 0, nil })
		}, `) after fanout.Init: a worker runs Init first`},
		{"output holding a struct sent empty", func() {
			fanout.Register("fanout_test.hiddenOut", func(context.Context, int) (map[string][]*wrapsHidden, error) { return nil, nil })
		}, "fanout_test.hidden (at map[string][]*fanout_test.wrapsHidden[value][elem][elem].H)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				p := recover()
				if p == nil || !strings.Contains(fmt.Sprint(p), tc.want) {
					t.Fatalf("panic %v, want one mentioning %q", p, tc.want)
				}
			}()
			tc.fn()
		})
	}
}

// partly has an unexported field msgpack would leave out.
type partly struct {
	Name  string
	count int
}

var _ = partly{count: 1}

// partlyTagged says its unexported field stays behind: it travels.
type partlyTagged struct {
	Name  string
	count int `msgpack:"-"`
}

var _ = partlyTagged{count: 1}

// hidden has fields, none exported: msgpack would send it as an empty map.
type hidden struct{ a, b int }

var _ = hidden{a: 1, b: 2} // the fields exist to be unexported

type wrapsHidden struct{ H hidden }

// Types that travel although they look like hidden: empty structs, those
// with an encoder of their own, time.Time, embedded fields.
type (
	nothing    struct{}
	selfCoded  struct{ v int }
	embeds     struct{ Visible }
	Visible    struct{ X int }
	skipHidden struct {
		X int
		H hidden `msgpack:"-"`
	}
)

func (s selfCoded) MarshalBinary() ([]byte, error) { return []byte{byte(s.v)}, nil }
func (s *selfCoded) UnmarshalBinary(b []byte) error {
	s.v = int(b[0])
	return nil
}

// Registered at package level: a panic here would stop the test binary.
var (
	_         = fanout.Register("fanout_test.nothing", func(context.Context, nothing) (time.Time, error) { return time.Time{}, nil })
	_         = fanout.Register("fanout_test.embeds", func(context.Context, embeds) (skipHidden, error) { return skipHidden{}, nil })
	_         = fanout.Register("fanout_test.partlyTagged", func(context.Context, partlyTagged) (int, error) { return 0, nil })
	selfCoder = fanout.Register("fanout_test.selfCoded", func(_ context.Context, s selfCoded) (selfCoded, error) { return selfCoded{s.v + 1}, nil })
)

func TestRegisterAcceptsTypesThatTravel(t *testing.T) {
	out, err := fanout.Map(context.Background(), newLocal(t, nil, nil), selfCoder, []selfCoded{{v: 41}})
	if err != nil || out[0].v != 42 {
		t.Fatalf("Map = %+v, %v; want v 42", out, err)
	}
}

func TestUnencodableInput(t *testing.T) {
	ex := newLocal(t, nil, nil)
	_, err := fanout.Map(context.Background(), ex, chanIn, []chan int{make(chan int)})
	if err == nil || !strings.Contains(err.Error(), "chan int") || !strings.Contains(err.Error(), "input 0") {
		t.Fatalf("err = %v, want an encode error naming input 0 and chan int", err)
	}
}

func TestTooLargeWithoutStore(t *testing.T) {
	// A remote-like backend (neither in-process nor same-host) has no
	// default store.
	b := remoteLike{local.New(&local.Options{MaxRequestBytes: 1 << 10})}
	ex := fanout.NewExecutor(b, &fanout.Options{Logger: quietLogs})
	defer ex.Close()
	_, err := fanout.Map(context.Background(), ex, bytesLen, [][]byte{make([]byte, 10), make([]byte, 4<<10)})
	if !errors.Is(err, fanout.ErrPayloadTooLarge) || !strings.Contains(err.Error(), "input 1") {
		t.Fatalf("err = %v, want ErrPayloadTooLarge naming input 1", err)
	}
	// What fits alone travels inline even without a store.
	out, err := fanout.Map(context.Background(), ex, bytesLen, [][]byte{make([]byte, 600)})
	if err != nil || out[0] != 600 {
		t.Fatalf("Map = %v, %v", out, err)
	}
}

func TestStoreObjectLimit(t *testing.T) {
	st := memstore.New(&memstore.Options{MaxObjectSize: 64 << 10})
	defer st.Close()
	ex := newLocal(t, &local.Options{MaxRequestBytes: 16 << 10}, &fanout.Options{Store: st})
	_, err := fanout.Map(context.Background(), ex, bytesLen, [][]byte{make([]byte, 100<<10)})
	if !errors.Is(err, fanout.ErrPayloadTooLarge) || !strings.Contains(err.Error(), "object limit") {
		t.Fatalf("err = %v, want ErrPayloadTooLarge naming the store's object limit", err)
	}
	// Inputs under the object limit but over the inline limit go through
	// the store, and leave nothing behind.
	in := [][]byte{make([]byte, 10<<10), make([]byte, 20<<10), make([]byte, 30<<10)}
	j, err := fanout.Start(context.Background(), ex, bytesLen, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := j.Wait(context.Background())
	if err != nil || !reflect.DeepEqual(out, []int{10 << 10, 20 << 10, 30 << 10}) {
		t.Fatalf("Wait = %v, %v", out, err)
	}
	if s := j.Stats(); s.StoreWrites < 1 {
		t.Errorf("StoreWrites = %d, want the inputs to go through the store", s.StoreWrites)
	}
	for obj, err := range st.List(context.Background(), "jobs/") {
		t.Errorf("object %q (err %v) left in the store after the job", obj.Key, err)
	}
}

func TestAggregatedInputObject(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	ex := newLocal(t, &local.Options{MaxRequestBytes: 8 << 10}, &fanout.Options{Store: st, KeepData: true})
	in := make([][]byte, 50)
	for i := range in {
		in[i] = make([]byte, 4<<10) // each over a quarter of the budget
	}
	j, err := fanout.Start(context.Background(), ex, bytesLen, in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if inputs := storeKeys(t, st, "jobs/"+j.ID()+"/in/"); len(inputs) != 1 {
		t.Fatalf("input objects %q, want exactly one aggregated object for the job", inputs)
	}
}

type remoteLike struct{ *local.Backend }

func (r remoteLike) Limits() (l backends.Limits) {
	l = r.Backend.Limits()
	l.InProcess, l.SameHost = false, false
	return l
}

func TestClosedExecutor(t *testing.T) {
	ex := fanout.NewExecutor(local.New(nil), nil)
	if err := ex.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ex.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := fanout.Start(context.Background(), ex, double, []int{1}); !errors.Is(err, fanout.ErrClosed) {
		t.Fatalf("Start after Close: %v, want ErrClosed", err)
	}
}

func TestCloseCancelsRunningJobs(t *testing.T) {
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Logger: quietLogs})
	j, err := fanout.Start(context.Background(), ex, nap, []int{60000, 60000})
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = j.Wait(context.Background())
	if !errors.Is(err, fanout.ErrClosed) {
		t.Fatalf("Wait after Close: %v, want ErrClosed", err)
	}
}

func TestAutomaticBatching(t *testing.T) {
	ex := newLocal(t, &local.Options{Concurrency: 2}, nil)
	in := make([]int, 20000)
	j, err := fanout.Start(context.Background(), ex, noop, in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := j.Stats(); s.Invocations > len(in)/10 {
		t.Errorf("%d invocations for %d no-op tasks; tiny tasks should be batched", s.Invocations, len(in))
	}

	// Long tasks go one per invocation. (Near the end of a job the rule
	// may batch a few when that saves invocation overhead without costing
	// makespan; within its 1 % tolerance it prefers single tasks, so the
	// tasks are long enough for any invocation overhead of a loaded machine
	// to stay under it.)
	long := []int{200, 200, 200, 200, 200, 200, 200, 200}
	j2, err := fanout.Start(context.Background(), ex, nap, long)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j2.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := j2.Stats(); s.Invocations != len(long) {
		t.Errorf("%d invocations for %d long tasks, want one each", s.Invocations, len(long))
	}
}

func TestResultsConcurrentReaders(t *testing.T) {
	ex := newLocal(t, nil, nil)
	in := make([]int, 1000)
	for i := range in {
		in[i] = i
	}
	j, err := fanout.Start(context.Background(), ex, double, in)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	counts := make([]int, 3)
	for r := range counts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen := map[int]bool{}
			for res := range j.Results(context.Background()) {
				if seen[res.Index] || res.Value != 2*res.Index {
					t.Errorf("reader %d: bad or repeated result %+v", r, res)
				}
				seen[res.Index] = true
			}
			counts[r] = len(seen)
		}()
	}
	wg.Wait()
	for r, n := range counts {
		if n != len(in) {
			t.Errorf("reader %d saw %d results, want %d", r, n, len(in))
		}
	}
}

func TestResultsStopEarly(t *testing.T) {
	ex := newLocal(t, nil, nil)
	j, err := fanout.Start(context.Background(), ex, double, []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range j.Results(context.Background()) {
		n++
		break
	}
	if n != 1 {
		t.Fatalf("loop ran %d times", n)
	}
	if _, err := j.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestWaitContext(t *testing.T) {
	ex := newLocal(t, nil, nil)
	j, err := fanout.Start(context.Background(), ex, nap, []int{60000})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := j.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait(cancelled ctx) = %v", err)
	}
	if !j.Stats().Ended.IsZero() {
		t.Fatal("the job ended when only the wait was cancelled")
	}
	j.Cancel()
	<-j.Done()
}

func TestOpenFromEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name, backend, store, wantErr string
	}{
		{"default", "", "", ""},
		{"local with concurrency", "local://?concurrency=3", "", ""},
		{"unknown scheme", "nosuch://", "", "unknown scheme"},
		{"bad parameter", "local://?concurrency=x", "", "concurrency"},
		{"unknown parameter", "local://?workers=2", "", "unknown parameter"},
		{"mem store", "", "mem://", ""},
		{"file store", "", "file://" + t.TempDir(), ""},
		{"mem store with process workers", "process://?workers=1", "mem://", "cannot reach"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(fanout.EnvBackend, tc.backend)
			t.Setenv(fanout.EnvStore, tc.store)
			ex, err := fanout.Open(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Open = %v, want error mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ex.Close()
			out, err := fanout.Map(context.Background(), ex, double, []int{1, 2, 3})
			if err != nil || !reflect.DeepEqual(out, []int{2, 4, 6}) {
				t.Fatalf("Map = %v, %v", out, err)
			}
		})
	}
}

func TestSignatureDigestDetectsTypeChanges(t *testing.T) {
	type pointV1 struct{ X, Y float64 }
	type pointV2 struct {
		X, Y float64
		Z    float64
	}
	r := fanout.NewRegistry()
	a := fanout.RegisterTo(r, "p1", func(context.Context, pointV1) (int, error) { return 0, nil })
	ex := newLocal(t, &local.Options{Handler: r.Handle}, nil)
	r2 := fanout.NewRegistry()
	stale := fanout.RegisterTo(r2, "p1", func(context.Context, pointV2) (int, error) { return 0, nil })
	if _, err := fanout.Map(context.Background(), ex, a, []pointV1{{1, 2}}); err != nil {
		t.Fatalf("same signature: %v", err)
	}
	if _, err := fanout.Map(context.Background(), ex, stale, []pointV2{{1, 2, 3}}); !errors.Is(err, fanout.ErrStaleWorker) {
		t.Fatalf("added field: %v, want ErrStaleWorker", err)
	}
}

// dropsInputs deletes a job's input objects before the first invocation
// reaches the workers, as `gowren clean` or a lifecycle rule might.
type dropsInputs struct {
	backends.Backend
	st   storage.Store
	once sync.Once
}

func (d *dropsInputs) Invoke(ctx context.Context, p []byte) ([]byte, error) {
	d.once.Do(func() {
		var keys []string
		for obj, err := range d.st.List(ctx, "jobs/") {
			if err == nil && strings.Contains(obj.Key, "/in/") {
				keys = append(keys, obj.Key)
			}
		}
		_ = d.st.Delete(ctx, keys...)
	})
	return d.Backend.Invoke(ctx, p)
}

func TestInputObjectGone(t *testing.T) {
	st := memstore.New(nil)
	b := &dropsInputs{Backend: local.New(&local.Options{MaxRequestBytes: 2 << 10}), st: st}
	ex := fanout.NewExecutor(b, &fanout.Options{Store: st, BatchSize: 1, Logger: quietLogs})
	defer ex.Close()
	_, err := fanout.Map(context.Background(), ex, bytesLen, [][]byte{make([]byte, 4<<10)})
	var te *fanout.TaskError
	if !errors.As(err, &te) || !errors.Is(err, storage.ErrNotFound) || te.Attempts != 1 || !strings.Contains(te.Message, "deleted") {
		t.Fatalf("err = %v, want a TaskError wrapping storage.ErrNotFound after one attempt, saying the input was deleted", err)
	}
}
