package fanout_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/internal/layout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
	"github.com/gowren/gowren/storage/memstore"
)

// Lookup is an input that carries a shared table by reference.
type Lookup struct {
	Table fanout.Ref[[]byte]
	At    int
}

var lookup = fanout.Register("fanout_test.lookup", func(ctx context.Context, l Lookup) (byte, error) {
	t, err := l.Table.Get(ctx)
	if err != nil {
		return 0, err
	}
	return t[l.At], nil
})

// countingStore counts reads of shared values.
type countingStore struct {
	storage.Store
	refReads atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, key string) ([]byte, error) {
	if strings.HasPrefix(key, "refs/") {
		s.refReads.Add(1)
	}
	return s.Store.Get(ctx, key)
}

func TestPutRef(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{Store: memstore.New(nil)}
	defer st.Store.Close()
	ex := fanout.NewExecutor(local.New(&local.Options{Concurrency: 4}), &fanout.Options{Store: st, Logger: quietLogs})
	table := make([]byte, 3<<20) // fresh content: no other test cached it
	if _, err := rand.Read(table); err != nil {
		t.Fatal(err)
	}
	ref, err := fanout.Put(ctx, ex, table)
	if err != nil {
		t.Fatal(err)
	}
	again, err := fanout.Put(ctx, ex, table)
	if err != nil || again != ref {
		t.Fatalf("second Put = %+v, %v; want the same Ref", again, err)
	}
	in := make([]Lookup, 200)
	for i := range in {
		in[i] = Lookup{Table: ref, At: i * 1000}
	}
	out, err := fanout.Map(ctx, ex, lookup, in)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range out {
		if b != table[i*1000] {
			t.Fatalf("out[%d] = %d, want %d", i, b, table[i*1000])
		}
	}
	if n := st.refReads.Load(); n != 1 {
		t.Errorf("the shared value was read %d times, want once per worker process", n)
	}
	if err := ex.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Store.Get(ctx, ref.Key); err == nil {
		t.Error("Close left the Put value in the store")
	}
}

func TestRefDamaged(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(nil)
	defer st.Close()
	ex := newLocal(t, nil, &fanout.Options{Store: st})
	ref, err := fanout.Put(ctx, ex, []byte("original content, long enough"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, ref.Key, []byte("tampered")); err != nil {
		t.Fatal(err)
	}
	_, err = fanout.Map(ctx, ex, lookup, []Lookup{{Table: ref}})
	if err == nil || !strings.Contains(err.Error(), "does not match its hash") {
		t.Fatalf("err = %v, want a hash mismatch", err)
	}
	if _, err := (fanout.Ref[int]{}).Get(ctx); err == nil {
		t.Fatal("zero Ref.Get succeeded")
	}
}

// gate lets a test hold the tasks of a job at a point and learn that they
// got there, without sleeping.
type gate struct {
	reached chan struct{} // a task is at the gate
	open    chan struct{} // closed by the test: tasks go on
	passed  chan struct{} // a task went through
}

// gates holds the gates of running tests by name; tasks find theirs from
// their input.
var gates sync.Map

func newGate(t *testing.T, tasks int) (string, *gate) {
	t.Helper()
	name := t.Name()
	g := &gate{reached: make(chan struct{}, tasks), open: make(chan struct{}), passed: make(chan struct{}, tasks)}
	if _, dup := gates.LoadOrStore(name, g); dup {
		t.Fatalf("gate %s exists", name)
	}
	t.Cleanup(func() { gates.Delete(name) })
	return name, g
}

func gateOf(name string) (*gate, error) {
	g, ok := gates.Load(name)
	if !ok {
		return nil, fmt.Errorf("no gate %q", name)
	}
	return g.(*gate), nil
}

// GatedLookup is a Lookup that waits at a gate before reading its table.
type GatedLookup struct {
	Lookup
	Gate string
}

var gatedLookup = fanout.Register("fanout_test.gatedLookup", func(ctx context.Context, l GatedLookup) (byte, error) {
	g, err := gateOf(l.Gate)
	if err != nil {
		return 0, err
	}
	g.reached <- struct{}{}
	select {
	case <-g.open:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	t, err := l.Table.Get(ctx)
	if err != nil {
		return 0, err
	}
	return t[l.At], nil
})

// holdUntilCancel waits at its gate until its context ends.
var holdUntilCancel = fanout.Register("fanout_test.holdUntilCancel", func(ctx context.Context, name string) (int, error) {
	g, err := gateOf(name)
	if err != nil {
		return 0, err
	}
	g.reached <- struct{}{}
	<-ctx.Done()
	g.passed <- struct{}{}
	return 0, ctx.Err()
})

// watchStore notes the shared values written after the test marked the
// executor closed, and can hold the first write of a shared value until
// released.
type watchStore struct {
	storage.Store
	closed  atomic.Bool   // set by the test once Close returned
	late    atomic.Int64  // shared values written after that
	hold    chan struct{} // when not nil, the first write of a shared value waits for it to close
	entered chan struct{} // that write is held
	writes  atomic.Int64  // writes of shared values begun
}

func (s *watchStore) Put(ctx context.Context, key string, data []byte) error {
	if strings.HasPrefix(key, layout.RefsPrefix) {
		if s.closed.Load() {
			s.late.Add(1)
		}
		if s.writes.Add(1) == 1 && s.hold != nil {
			s.entered <- struct{}{}
			<-s.hold
		}
	}
	return s.Store.Put(ctx, key, data)
}

// storeKeys lists the keys under prefix in st.
func storeKeys(t *testing.T, st storage.Store, prefix string) []string {
	t.Helper()
	var keys []string
	for obj, err := range st.List(context.Background(), prefix) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, obj.Key)
	}
	return keys
}

func TestPutKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memstore.New(nil)
	defer st.Close()
	ex := newLocal(t, nil, &fanout.Options{Store: st})
	ref, err := fanout.Put(ctx, ex, "a shared value")
	if err != nil {
		t.Fatal(err)
	}
	id, hash, ok := layout.ParseRefKey(ref.Key)
	if !ok || hash != ref.Hash {
		t.Fatalf("Ref key %q is not refs/<executor id>/<hash of the value> (hash %s)", ref.Key, ref.Hash)
	}
	other, err := fanout.Put(ctx, ex, "another value")
	if err != nil {
		t.Fatal(err)
	}
	if oid, _, _ := layout.ParseRefKey(other.Key); oid != id {
		t.Errorf("one executor's values in two groups: %q and %q", ref.Key, other.Key)
	}
	if _, err := fanout.Put(ctx, ex, func() {}); err == nil {
		t.Error("Put of a func succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := fanout.Put(cctx, ex, "put under a cancelled context"); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context: %v, want context.Canceled", err)
	}
	if err := ex.Close(); err != nil {
		t.Fatal(err)
	}
	if left := storeKeys(t, st, layout.RefsPrefix); len(left) != 0 {
		t.Errorf("Close left %q", left)
	}
}

func TestPutKeepData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memstore.New(nil)
	defer st.Close()
	ex := newLocal(t, nil, &fanout.Options{Store: st, KeepData: true})
	ref, err := fanout.Put(ctx, ex, []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, ref.Key); err != nil {
		t.Errorf("KeepData: the value is gone after Close: %v", err)
	}
}

// TestPutCloseRace puts values from many goroutines, some the same, while
// the executor closes: every Put either succeeds, and its value is deleted
// by Close, or fails with ErrClosed and writes nothing.
func TestPutCloseRace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := memstore.New(nil)
	defer mem.Close()
	st := &watchStore{Store: mem}
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Store: st, Logger: quietLogs})
	const workers = 16
	enough := make(chan struct{})
	var ok atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for k := 0; ; k++ {
				var err error
				// Set once Close has returned: a Put that starts after
				// that must fail. (One that started before may succeed
				// and return after it.)
				afterClose := st.closed.Load()
				if k%2 == 0 {
					_, err = fanout.Put(ctx, ex, k%7) // the same values from every goroutine
				} else {
					_, err = fanout.Put(ctx, ex, [2]int{w, k}) // values of its own
				}
				if err != nil {
					if !errors.Is(err, fanout.ErrClosed) {
						t.Errorf("Put: %v, want nil or ErrClosed", err)
					}
					return
				}
				if afterClose {
					t.Error("a Put after Close succeeded")
					return
				}
				if ok.Add(1) == 200 {
					close(enough)
				}
			}
		})
	}
	<-enough
	if err := ex.Close(); err != nil {
		t.Fatal(err)
	}
	st.closed.Store(true)
	wg.Wait()
	if _, err := fanout.Put(ctx, ex, "after Close"); !errors.Is(err, fanout.ErrClosed) {
		t.Errorf("Put after Close: %v, want ErrClosed", err)
	}
	if n := st.late.Load(); n > 0 {
		t.Errorf("%d values written after Close", n)
	}
	if left := storeKeys(t, mem, layout.RefsPrefix); len(left) != 0 {
		t.Errorf("%d values put before Close are still in the store, e.g. %q", len(left), left[0])
	}
}

// TestPutDuringClose: Close waits for a Put already writing, and deletes its
// value; a Put that comes once Close has begun fails with ErrClosed.
func TestPutDuringClose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := memstore.New(nil)
	defer mem.Close()
	st := &watchStore{Store: mem, hold: make(chan struct{}), entered: make(chan struct{}, 1)}
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Store: st, Logger: quietLogs})
	name, g := newGate(t, 1)
	job, err := fanout.Start(ctx, ex, holdUntilCancel, []string{name})
	if err != nil {
		t.Fatal(err)
	}
	<-g.reached // the job runs

	type putResult struct {
		ref fanout.Ref[string]
		err error
	}
	first := make(chan putResult, 1)
	go func() {
		ref, err := fanout.Put(ctx, ex, "written while Close begins")
		first <- putResult{ref, err}
	}()
	<-st.entered // that Put is writing

	closed := make(chan error, 1)
	go func() { closed <- ex.Close() }()
	<-g.passed // Close cancelled the job: it has begun

	if _, err := fanout.Put(ctx, ex, "put during Close"); !errors.Is(err, fanout.ErrClosed) {
		t.Errorf("Put during Close: %v, want ErrClosed", err)
	}
	if _, err := fanout.Put(ctx, ex, "written while Close begins"); !errors.Is(err, fanout.ErrClosed) {
		t.Errorf("Put during Close of the value being written: %v, want ErrClosed", err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a Put was writing", err)
	default:
	}
	close(st.hold)
	r := <-first
	if r.err != nil {
		t.Fatalf("the Put that began before Close: %v", r.err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := job.Wait(ctx); !errors.Is(err, fanout.ErrClosed) {
		t.Errorf("Wait: %v, want ErrClosed", err)
	}
	if left := storeKeys(t, mem, layout.RefsPrefix); len(left) != 0 {
		t.Errorf("Close left %q (the Put in flight was not waited for)", left)
	}
}

// TestPutTwoExecutors: two drivers share a store and put the same value;
// the first closes while the second's job has yet to read it. The job must
// not lose the value.
func TestPutTwoExecutors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := filestore.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	first := fanout.NewExecutor(local.New(nil), &fanout.Options{Store: st, Logger: quietLogs})
	defer first.Close()
	second := newLocal(t, nil, &fanout.Options{Store: st})
	table := make([]byte, 64<<10) // fresh content: no other test cached it
	if _, err := rand.Read(table); err != nil {
		t.Fatal(err)
	}
	r1, err := fanout.Put(ctx, first, table)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := fanout.Put(ctx, second, table)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Hash != r2.Hash || r1.Key == r2.Key {
		t.Fatalf("the same value under %q and %q (hashes %s, %s): want one hash, two keys", r1.Key, r2.Key, r1.Hash, r2.Hash)
	}
	const n = 8
	name, g := newGate(t, n)
	in := make([]GatedLookup, n)
	for i := range in {
		in[i] = GatedLookup{Lookup{Table: r2, At: i * 4096}, name}
	}
	job, err := fanout.Start(ctx, second, gatedLookup, in)
	if err != nil {
		t.Fatal(err)
	}
	<-g.reached // the second driver's job is running
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, r1.Key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the first executor's value after its Close: %v, want ErrNotFound", err)
	}
	close(g.open)
	out, err := job.Wait(ctx)
	if err != nil {
		t.Fatalf("the second driver's job after the first closed: %v", err)
	}
	for i, b := range out {
		if b != table[i*4096] {
			t.Fatalf("out[%d] = %d, want %d", i, b, table[i*4096])
		}
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if left := storeKeys(t, st, layout.RefsPrefix); len(left) != 0 {
		t.Errorf("left after both closed: %q", left)
	}
}

// TestRefFetchedOnceAcrossExecutors: a value two executors put is fetched
// once per worker process, whichever Ref a task holds.
func TestRefFetchedOnceAcrossExecutors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := &countingStore{Store: memstore.New(nil)}
	defer st.Store.Close()
	a := newLocal(t, nil, &fanout.Options{Store: st})
	b := newLocal(t, nil, &fanout.Options{Store: st})
	table := make([]byte, 1<<20)
	if _, err := rand.Read(table); err != nil {
		t.Fatal(err)
	}
	for _, ex := range []*fanout.Executor{a, b} {
		ref, err := fanout.Put(ctx, ex, table)
		if err != nil {
			t.Fatal(err)
		}
		in := make([]Lookup, 50)
		for i := range in {
			in[i] = Lookup{Table: ref, At: i * 1000}
		}
		if _, err := fanout.Map(ctx, ex, lookup, in); err != nil {
			t.Fatal(err)
		}
	}
	if n := st.refReads.Load(); n != 1 {
		t.Errorf("the value was read %d times, want once", n)
	}
}
