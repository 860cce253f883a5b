package fanout_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
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
	if s.BilledTime <= 0 || s.Cost.Total <= 0 || s.Cost.Requests <= 0 {
		t.Errorf("cost %+v from billed %v", s.Cost, s.BilledTime)
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
	want := "gowren: fanout_test.nap " + j.ID() + ": 50/50 done, 0 running, 0 failed, 0 retried"
	if !strings.HasPrefix(last, want) || !strings.HasSuffix(last, "ETA 0s") {
		t.Fatalf("last progress line %q, want it to start with %q and end with ETA 0s", last, want)
	}
	if strings.Contains(out.String(), "\r") || strings.Contains(out.String(), "\x1b[") {
		t.Error("terminal control characters in plain progress output")
	}
}
