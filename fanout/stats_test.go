package fanout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/memstore"
)

func TestStatsInvariants(t *testing.T) {
	ex := newLocal(t, &local.Options{Concurrency: 3}, &fanout.Options{Retries: -1})
	in := []float64{1, 0, 2, 4, 0, 8}
	j, err := fanout.Start(context.Background(), ex, Invert, in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Wait(context.Background()); err == nil {
		t.Fatal("want failures for the zeros")
	}
	s := j.Stats()
	if s.Tasks != len(in) || s.Succeeded != 4 || s.Failed != 2 || s.Running != 0 || s.Pending != 0 {
		t.Fatalf("counts %+v", s)
	}
	if len(s.PerTask) != len(in) {
		t.Fatalf("%d per-task stats", len(s.PerTask))
	}
	for i, ts := range s.PerTask {
		if ts.Index != i || ts.Attempts < 1 || ts.Started.After(ts.Finished) || ts.Invoked.After(ts.Received) || ts.Worker == "" {
			t.Errorf("task %d: %+v", i, ts)
		}
		if want := map[bool]string{true: "failed", false: "ok"}[in[i] == 0]; ts.Outcome != want {
			t.Errorf("task %d outcome %q, want %q", i, ts.Outcome, want)
		}
		if ts.Outcome == "failed" && ts.Error == "" {
			t.Errorf("task %d failed without an error", i)
		}
	}
	if s.Makespan <= 0 || s.Makespan > s.Elapsed || s.Throughput <= 0 || s.TaskP50 > s.TaskP99 {
		t.Errorf("times %+v", s)
	}
	if s.BilledTime <= 0 {
		t.Errorf("billed %v", s.BilledTime)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back fanout.JobStats
	if err := json.Unmarshal(b, &back); err != nil || back.Succeeded != s.Succeeded || len(back.PerTask) != len(in) {
		t.Fatalf("JSON round trip: %v, %+v", err, back)
	}
}

func TestProgressOnNonTerminal(t *testing.T) {
	var out lineLog
	ex := newLocal(t, nil, &fanout.Options{Progress: &out})
	in := make([]int, 50)
	j, err := fanout.Start(context.Background(), ex, nap, in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	want := "gowren: fanout_test.nap " + j.ID() + ": 50/50 done, 0 running, 0 queued, 0 failed, 0 retried"
	if !strings.HasPrefix(last, want) || !strings.HasSuffix(last, "ETA 0s") {
		t.Fatalf("last progress line %q, want it to start with %q and end with ETA 0s", last, want)
	}
	if strings.Contains(out.String(), "\r") || strings.Contains(out.String(), "\x1b[") {
		t.Error("terminal control characters in plain progress output")
	}
}

var selfStored = fanout.Register("fanout_test.selfStored", func(ctx context.Context, x int) (int, error) {
	st := fanout.Store(ctx)
	key := fmt.Sprintf("own/%s/%d", fanout.Task(ctx).Job, x)
	if err := st.Put(ctx, key, []byte{byte(x)}); err != nil {
		return 0, err
	}
	b, err := st.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	return int(b[0]), nil
})

var bigOut = fanout.Register("fanout_test.bigOut", func(_ context.Context, n int) ([]byte, error) {
	return make([]byte, n), nil
})

// storeJob runs f over in with one task per invocation and a memstore, and
// returns its statistics once its objects are deleted.
func storeJob[In, Out any](t *testing.T, lo *local.Options, o *fanout.Options, f *fanout.Func[In, Out], in []In) fanout.JobStats {
	t.Helper()
	ctx := context.Background()
	counter := storage.Count(memstore.New(nil))
	o.Store = counter
	o.BatchSize = 1
	ex := newLocal(t, lo, o)
	j, err := fanout.Start(ctx, ex, f, in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	<-j.Done()
	s := j.Stats()
	if s.Invocations != len(in) || s.FailedInvocations != 0 {
		t.Fatalf("%d invocations, %d failed; want %d, 0", s.Invocations, s.FailedInvocations, len(in))
	}
	// Local workers use the driver's store: the counter saw every request.
	got := s.StoreReads + s.StoreWrites + s.StoreLists + s.StoreDeletes + s.WorkerStoreReads + s.WorkerStoreWrites
	if c := counter.Counts(); int64(got) != c.Total() {
		t.Errorf("the job counted %d storage requests, the store %d (%+v)", got, c.Total(), c)
	}
	return s
}

// TestStoreRequests checks the storage request accounting of the cases that
// bench/ reports: small data on a sync backend takes none; inputs over the
// payload limit one aggregated write per job and one ranged read per task;
// outputs over it a write and a read each; async mode a reply write and
// read per invocation, with inputs still inline, and few listings.
func TestStoreRequests(t *testing.T) {
	const n = 60
	sizes := make([]int, n)
	blobs := make([][]byte, n)
	for i := range sizes {
		sizes[i] = 4 << 10
		blobs[i] = make([]byte, 4<<10)
	}
	sum := func(s fanout.JobStats) int {
		return s.StoreReads + s.StoreWrites + s.StoreLists + s.StoreDeletes + s.WorkerStoreReads + s.WorkerStoreWrites
	}
	perTask := func(t *testing.T, s fanout.JobStats) {
		t.Helper()
		if got, want := s.StoreRequestsPerTask, float64(sum(s))/n; math.Abs(got-want) > 1e-9 {
			t.Errorf("StoreRequestsPerTask = %v, want %v", got, want)
		}
	}
	t.Run("small sync", func(t *testing.T) {
		s := storeJob(t, nil, &fanout.Options{}, double, make([]int, n))
		if sum(s) != 0 || s.StoreRequestsPerTask != 0 {
			t.Errorf("stats %+v: want no storage request", s)
		}
	})
	t.Run("large inputs", func(t *testing.T) {
		s := storeJob(t, &local.Options{MaxRequestBytes: 2 << 10}, &fanout.Options{}, bytesLen, blobs)
		if s.StoreWrites != 1 || s.WorkerStoreReads != n || s.WorkerStoreWrites != 0 || s.StoreReads != 0 {
			t.Errorf("driver %d writes %d reads, workers %d reads %d writes; want 1, 0, %d, 0",
				s.StoreWrites, s.StoreReads, s.WorkerStoreReads, s.WorkerStoreWrites, n)
		}
		if s.StoreLists != 1 || s.StoreDeletes != 1 {
			t.Errorf("cleanup: %d lists, %d deletes; want 1 and 1", s.StoreLists, s.StoreDeletes)
		}
		perTask(t, s)
		if s.StoreRequestsPerTask > 2 {
			t.Errorf("%.3f requests per task, want at most 2", s.StoreRequestsPerTask)
		}
	})
	t.Run("large outputs", func(t *testing.T) {
		s := storeJob(t, &local.Options{MaxResponseBytes: 2 << 10}, &fanout.Options{}, bigOut, sizes)
		if s.WorkerStoreWrites != n || s.StoreReads != n || s.StoreWrites != 0 || s.WorkerStoreReads != 0 {
			t.Errorf("workers %d writes %d reads, driver %d reads %d writes; want %d, 0, %d, 0",
				s.WorkerStoreWrites, s.WorkerStoreReads, s.StoreReads, s.StoreWrites, n, n)
		}
		if s.StoreLists != 1 || s.StoreDeletes != 1 {
			t.Errorf("cleanup: %d lists, %d deletes; want 1 and 1", s.StoreLists, s.StoreDeletes)
		}
		perTask(t, s)
	})
	t.Run("a task's own requests", func(t *testing.T) {
		in := make([]int, n)
		for i := range in {
			in[i] = i
		}
		s := storeJob(t, nil, &fanout.Options{}, selfStored, in)
		if s.WorkerStoreReads != n || s.WorkerStoreWrites != n || s.StoreReads+s.StoreWrites+s.StoreLists+s.StoreDeletes != 0 {
			t.Errorf("workers %d reads %d writes, driver %d/%d/%d/%d; want %d, %d and none",
				s.WorkerStoreReads, s.WorkerStoreWrites, s.StoreReads, s.StoreWrites, s.StoreLists, s.StoreDeletes, n, n)
		}
		perTask(t, s)
	})
	t.Run("async", func(t *testing.T) {
		s := storeJob(t, nil, &fanout.Options{Async: true}, double, make([]int, n))
		// The driver writes the inputs, their index, its lease (at the
		// start and once more at the end) and the manifest once; each
		// invocation's reply is written once and read once.
		if s.StoreWrites != 5 || s.WorkerStoreWrites != n || s.StoreReads != n || s.WorkerStoreReads != 0 {
			t.Errorf("driver %d writes %d reads, workers %d writes %d reads; want 5, %d, %d, 0",
				s.StoreWrites, s.StoreReads, s.WorkerStoreWrites, s.WorkerStoreReads, n, n)
		}
		// Local workers answer when their reply is in the store, so the
		// driver reads it by key: listing is for platforms that do not
		// answer, and for Attach. The cleanup lists the leases, then the
		// job's objects.
		if s.StoreLists < 2 || s.StoreLists > 2+n/10 || s.StoreDeletes != 1 {
			t.Errorf("%d lists (polls and cleanup), %d deletes", s.StoreLists, s.StoreDeletes)
		}
		perTask(t, s)
	})
}

func TestOnJobEnd(t *testing.T) {
	var mu sync.Mutex
	var ended []fanout.JobStats
	ex := newLocal(t, nil, &fanout.Options{Store: memstore.New(nil), OnJobEnd: func(s fanout.JobStats) {
		mu.Lock()
		defer mu.Unlock()
		ended = append(ended, s)
	}})
	lines := []string{"a b", "c", "d e f"}
	total, err := fanout.MapReduce(context.Background(), ex, CountWords, lines, Total)
	if err != nil || total != 6 {
		t.Fatalf("MapReduce = %d, %v", total, err)
	}
	if _, err := fanout.Map(context.Background(), ex, double, []int{1, 2}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Both phases of the MapReduce and the Map, each ended before its call
	// returned, with final statistics.
	if len(ended) != 3 {
		t.Fatalf("%d jobs reported, want 3", len(ended))
	}
	for k, want := range []struct {
		fn    string
		tasks int
	}{{CountWords.Name(), len(lines)}, {Total.Name(), 1}, {double.Name(), 2}} {
		s := ended[k]
		if s.Func != want.fn || s.Tasks != want.tasks || s.Succeeded != want.tasks || s.Ended.IsZero() || len(s.PerTask) != want.tasks {
			t.Errorf("job %d: %s, %d tasks, %d succeeded, ended %v; want %s with %d", k, s.Func, s.Tasks, s.Succeeded, s.Ended, want.fn, want.tasks)
		}
	}
}
