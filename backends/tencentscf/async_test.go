package tencentscf_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gowren/gowren/backends/backendtest"
	"github.com/gowren/gowren/backends/tencentscf"
	"github.com/gowren/gowren/backends/tencentscf/scftest"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage/filestore"
)

// TestAsyncInputOverEventLimit runs an asynchronous job whose input is
// larger than SCF's 128 KB limit on asynchronous events: the input goes
// through the store, every event stays under the limit, and the job
// succeeds.
func TestAsyncInputOverEventLimit(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	largest := 0 // the largest asynchronous event the server received
	srv := errorServer(t, &scftest.Options{Intercept: func(c scftest.Call) *scftest.APIError {
		if c.Action == "Invoke" {
			ev, _ := c.Params["ClientContext"].(string)
			mu.Lock()
			largest = max(largest, len(ev))
			mu.Unlock()
		}
		return nil
	}}, scftest.Function{})
	st, err := filestore.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b := sameHost{newBackend(t, srv, testCred(), testRegion, "worker", nil)}
	ex := fanout.NewExecutor(b, &fanout.Options{Async: true, Store: st})
	defer ex.Close()

	big := backendtest.Blob{Seed: 7, Data: make([]byte, 300<<10)}
	for i := range big.Data {
		big.Data[i] = big.Seed + byte(i)
	}
	small := backendtest.Blob{Seed: 1, Data: []byte{1, 2, 3}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job, err := fanout.Start(ctx, ex, echoLen, []backendtest.Blob{big, small})
	if err != nil {
		t.Fatal(err)
	}
	got, err := job.Wait(ctx)
	if err != nil || len(got) != 2 || got[0] != len(big.Data) || got[1] != 3 {
		t.Fatalf("Wait = %v, %v; want [%d 3]", got, err, len(big.Data))
	}
	calls := srv.Stats().Calls
	// One synchronous call: the check before the job (fanout checks the
	// worker's function and store before an asynchronous job).
	if calls["Invoke"] == 0 || calls["InvokeFunction"] != 1 {
		t.Errorf("API calls %v: want asynchronous invocations (Invoke) and the one check (InvokeFunction)", calls)
	}
	mu.Lock()
	defer mu.Unlock()
	if largest == 0 || largest > tencentscf.AsyncEventLimit {
		t.Errorf("the largest asynchronous event was %d bytes; want events under SCF's %d-byte limit", largest, tencentscf.AsyncEventLimit)
	}
	if s := job.Stats(); s.StoreWrites == 0 || s.WorkerStoreReads == 0 {
		t.Errorf("the driver wrote %d objects and the workers read %d: the input did not go through the store", s.StoreWrites, s.WorkerStoreReads)
	}
}

// TestCostEstimate checks that jobs on SCF are priced at SCF's rates for
// the memory the backend reports.
func TestCostEstimate(t *testing.T) {
	t.Parallel()
	srv := errorServer(t, nil, scftest.Function{MemoryMB: 1024})
	b := sameHost{newBackend(t, srv, testCred(), testRegion, "worker", &tencentscf.Options{MemoryMB: 1024})}
	ex := fanout.NewExecutor(b, nil)
	defer ex.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job, err := fanout.Start(ctx, ex, square, []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	c := job.Stats().Cost
	want := fanout.PricesSCF
	want.MemoryMB = 1024
	if c.Prices != want || c.Requests <= 0 || c.Total < c.Requests {
		t.Errorf("cost %+v, want SCF's prices for 1024 MB", c)
	}
}
