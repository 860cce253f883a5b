package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"sync"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
)

var (
	blobLen = fanout.Register("bench.blobLen", func(_ context.Context, b []byte) (int, error) { return len(b), nil })
	blobOf  = fanout.Register("bench.blobOf", func(_ context.Context, n int) ([]byte, error) { return make([]byte, n), nil })
)

// runStorage counts the storage requests per task of small data on a sync
// backend, inputs and outputs over the payload limit, and async mode, on a
// file store wrapped in a storage.Counter: local workers share the driver's
// store, so the counter sees the requests of both, a check on the job's own
// accounting.
func runStorage(ctx context.Context) {
	const small, large, size = 10_000, 1_000, 200 << 10
	ints := make([]int, small)
	sizes := make([]int, large)
	blobs := make([][]byte, large)
	for i := range sizes {
		sizes[i] = size
		blobs[i] = make([]byte, size)
	}
	type row struct {
		id    string // for the RESULT line
		name  string
		lo    *local.Options
		o     fanout.Options
		tasks int
		run   func(*fanout.Executor) (fanout.JobStats, error)
	}
	rows := []row{
		{"a-sync-auto", "(a) small inputs and outputs, sync, automatic batches", nil, fanout.Options{}, small, func(ex *fanout.Executor) (fanout.JobStats, error) {
			return jobStats(fanout.Start(ctx, ex, noop, ints))
		}},
		{"a-sync-single", "(a) the same, one task per invocation", nil, fanout.Options{BatchSize: 1}, small, func(ex *fanout.Executor) (fanout.JobStats, error) {
			return jobStats(fanout.Start(ctx, ex, noop, ints))
		}},
		{"b-large-inputs", "(b) 200 KiB inputs over a 128 KiB payload limit", &local.Options{MaxRequestBytes: 128 << 10}, fanout.Options{}, large, func(ex *fanout.Executor) (fanout.JobStats, error) {
			return jobStats(fanout.Start(ctx, ex, blobLen, blobs))
		}},
		{"b-large-outputs", "(b') 200 KiB outputs over a 128 KiB reply limit", &local.Options{MaxResponseBytes: 128 << 10}, fanout.Options{}, large, func(ex *fanout.Executor) (fanout.JobStats, error) {
			return jobStats(fanout.Start(ctx, ex, blobOf, sizes))
		}},
		{"c-async-auto", "(c) async, small data, automatic batches", nil, fanout.Options{Async: true}, small, func(ex *fanout.Executor) (fanout.JobStats, error) {
			return jobStats(fanout.Start(ctx, ex, noop, ints))
		}},
		{"c-async-single", "(c) async, one task per invocation", nil, fanout.Options{Async: true, BatchSize: 1}, small, func(ex *fanout.Executor) (fanout.JobStats, error) {
			return jobStats(fanout.Start(ctx, ex, noop, ints))
		}},
		{"c-async-events", "(c') async on a platform that only accepts events (as Lambda's Event), one task per invocation, 1,000 in flight", eventPlatform, fanout.Options{Async: true, BatchSize: 1, Concurrency: 1000}, small, func(ex *fanout.Executor) (fanout.JobStats, error) {
			return jobStats(fanout.Start(ctx, ex, noop, ints))
		}},
	}
	fmt.Println()
	fmt.Println("| storage requests | tasks | invocations | driver reads / writes / list pages / deletes | worker reads / writes | per task | per task, counted by the store |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		dir, err := os.MkdirTemp("", "gowren-bench-store-")
		if err != nil {
			log.Fatal(err)
		}
		fs, err := filestore.New(dir, nil)
		if err != nil {
			log.Fatal(err)
		}
		counter := storage.Count(fs)
		o := r.o
		o.Store, o.Logger = counter, quiet
		var be backends.Backend
		if r.lo == eventPlatform {
			be = &events{Backend: local.New(&local.Options{Concurrency: 1000})}
		} else {
			be = local.New(r.lo)
		}
		ex := fanout.NewExecutor(be, &o)
		s, err := r.run(ex)
		ex.Close()
		counter.Close()
		os.RemoveAll(dir)
		if err != nil {
			log.Fatalf("%s: %v", r.name, err)
		}
		c := counter.Counts()
		fmt.Printf("| %s | %d | %d | %d / %d / %d / %d | %d / %d | %.3f | %.3f |\n", r.name, r.tasks, s.Invocations,
			s.StoreReads, s.StoreWrites, s.StoreLists, s.StoreDeletes, s.WorkerStoreReads, s.WorkerStoreWrites,
			s.StoreRequestsPerTask, float64(c.Total())/float64(r.tasks))
		result("storage", "row", r.id, "tasks", r.tasks, "invocations", s.Invocations,
			"driver_reads", s.StoreReads, "driver_writes", s.StoreWrites, "driver_lists", s.StoreLists, "driver_deletes", s.StoreDeletes,
			"worker_reads", s.WorkerStoreReads, "worker_writes", s.WorkerStoreWrites,
			"per_task", s.StoreRequestsPerTask, "counted_per_task", float64(c.Total())/float64(r.tasks))
	}
}

// jobStats waits for the job to end (results in, objects deleted) and
// returns its statistics.
func jobStats[Out any](j *fanout.Job[Out], err error) (fanout.JobStats, error) {
	if err != nil {
		return fanout.JobStats{}, err
	}
	if _, err := j.Wait(context.Background()); err != nil {
		return fanout.JobStats{}, err
	}
	return j.Stats(), nil
}

// eventPlatform marks the row run on events.
var eventPlatform = &local.Options{}

// events is a local backend with asynchronous invocation as Lambda and SCF
// offer it: InvokeAsync returns as soon as the invocation is accepted, and
// the driver learns of its end only from the store.
type events struct {
	backends.Backend
	wg sync.WaitGroup
}

func (e *events) InvokeAsync(ctx context.Context, payload []byte) error {
	e.wg.Go(func() { _, _ = e.Invoke(context.WithoutCancel(ctx), payload) })
	return nil
}

func (e *events) Close() error {
	e.wg.Wait()
	return e.Backend.Close()
}
