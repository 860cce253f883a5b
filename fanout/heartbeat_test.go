package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/internal/layout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/memstore"
)

// Tasks a job settles only because it stopped are cancelled, not failed:
// a cancelled job's statistics count them apart, name the error that
// stopped it, and its saved stats.json says the same.
func TestCancelledTasksCountApart(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	// One task at a time: task 0 holds, the others are never sent.
	ex := newLocal(t, &local.Options{Concurrency: 1}, &fanout.Options{Store: st, KeepData: true, BatchSize: 1, Concurrency: 1})
	gate, g := newGate(t, 1)
	in := []Held{{Gate: gate, Hold: true}, {Value: 1}, {Value: 2}, {Value: 3}, {Value: 4}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	job, err := fanout.Start(ctx, ex, held, in)
	if err != nil {
		t.Fatal(err)
	}
	<-g.reached
	cancel()
	if _, err := job.Wait(context.Background()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	s := job.Stats()
	if s.Succeeded+s.Failed+s.Cancelled != s.Tasks || s.Cancelled < 4 || s.Failed > 1 {
		t.Fatalf("%d ok, %d failed, %d cancelled of %d; want tasks 1-4 (never sent) cancelled and every task counted once",
			s.Succeeded, s.Failed, s.Cancelled, s.Tasks)
	}
	for _, ts := range s.PerTask[1:] {
		if ts.Outcome != "cancelled" || !strings.HasSuffix(ts.Error, "tasks unfinished: context canceled") {
			t.Errorf("task %d: outcome %q, error %q; want cancelled by %q", ts.Index, ts.Outcome, ts.Error, context.Canceled)
		}
	}
	if got := s.StopReason(); got != s.PerTask[1].Error {
		t.Errorf("StopReason = %q, want the job's error %q", got, s.PerTask[1].Error)
	}
	sum := s.Summary()
	for _, want := range []string{", 0 failed, ", " cancelled\n", "stopped   " + s.PerTask[1].Error + "\n"} {
		if !strings.Contains(sum, want) {
			t.Errorf("Summary lacks %q:\n%s", want, sum)
		}
	}
	b, err := st.Get(context.Background(), layout.JobOf(job.ID()).Stats())
	if err != nil {
		t.Fatal(err)
	}
	var saved fanout.JobStats
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	if saved.Cancelled != s.Cancelled || saved.Failed != s.Failed {
		t.Errorf("stats.json: %d failed, %d cancelled; want %d and %d", saved.Failed, saved.Cancelled, s.Failed, s.Cancelled)
	}
}

// A sync job kept with KeepData has a heartbeat too: its driver's lease,
// written with the manifest, which DriverAlive judges by the store's time.
func TestSyncJobHeartbeat(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	ex := newLocal(t, nil, &fanout.Options{Store: st, KeepData: true})
	gate, g := newGate(t, 1)
	ctx := context.Background()
	job, err := fanout.Start(ctx, ex, held, []Held{{Gate: gate, Hold: true}, {Value: 1}})
	if err != nil {
		t.Fatal(err)
	}
	<-g.reached
	var renewed time.Time
	leases := 0
	for obj, err := range st.List(ctx, layout.JobOf(job.ID()).Drivers()) {
		if err != nil {
			t.Fatal(err)
		}
		leases++
		renewed = obj.ModTime
	}
	close(g.open)
	if _, err := job.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if leases != 1 {
		t.Fatalf("a running sync KeepData job has %d driver leases, want 1", leases)
	}
	if !fanout.DriverAlive(renewed, renewed.Add(fanout.LeaseTTL-time.Second)) {
		t.Errorf("a lease %v old is not alive", fanout.LeaseTTL-time.Second)
	}
	if fanout.DriverAlive(renewed, renewed.Add(fanout.LeaseTTL)) || fanout.DriverAlive(time.Time{}, renewed) {
		t.Errorf("a lease %v old, or none, is alive", fanout.LeaseTTL)
	}
	if fanout.LeaseTTL < 2*fanout.LeaseEvery {
		t.Errorf("LeaseTTL %v leaves no room for a late renewal every %v", fanout.LeaseTTL, fanout.LeaseEvery)
	}
	// Without KeepData a sync job writes nothing, no lease either.
	plain := newLocal(t, nil, &fanout.Options{Store: st})
	before := countObjects(t, st)
	if _, err := fanout.Map(ctx, plain, double, []int{1, 2}); err != nil {
		t.Fatal(err)
	}
	if after := countObjects(t, st); after != before {
		t.Errorf("a plain sync job left %d objects", after-before)
	}
}

func countObjects(t *testing.T, st storage.Store) int {
	t.Helper()
	n := 0
	for _, err := range st.List(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}
