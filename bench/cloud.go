package main

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/gowren/gowren/backends/chaos"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
)

// The simulated-cloud scenarios of bench/RESULTS.md: tasks that sleep, on a
// chaos-wrapped local backend with Lambda-like latency, cold starts and
// faults.

var sleep = fanout.Register("bench.sleep", func(ctx context.Context, ms int) (int, error) {
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return ms, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
})

// scenario describes one simulated run.
type scenario struct {
	name        string
	tasks       int
	taskMS      int
	concurrency int
	faults      chaos.Faults
	speculation bool
}

// faultMix is scenario (b)'s: 10% failures (half before the tasks ran, half
// after), 5% throttles, 2% duplicates, 1% crashes, 1% stragglers at 10x.
func faultMix(seed uint64) chaos.Faults {
	return chaos.Faults{
		Seed: seed, FailBefore: 0.05, FailAfter: 0.05, Throttle: 0.05, Duplicate: 0.02,
		Crash: 0.01, Straggler: 0.01, StragglerFactor: 10,
		Latency: 50 * time.Millisecond, ColdStart: 300 * time.Millisecond,
	}
}

func cloudLatency() chaos.Faults {
	return chaos.Faults{Latency: 50 * time.Millisecond, ColdStart: 300 * time.Millisecond}
}

type outcome struct {
	makespan time.Duration
	stats    fanout.JobStats
	chaos    chaos.Stats
}

// run runs the scenario once and checks every result.
func (s scenario) run(ctx context.Context) (outcome, error) {
	b := chaos.Wrap(local.New(&local.Options{Concurrency: s.concurrency}), s.faults)
	ex := fanout.NewExecutor(b, &fanout.Options{
		Concurrency: s.concurrency, Retries: 20, Speculation: s.speculation, Logger: quiet,
	})
	defer ex.Close()
	in := make([]int, s.tasks)
	for i := range in {
		in[i] = s.taskMS
	}
	start := time.Now()
	j, err := fanout.Start(ctx, ex, sleep, in)
	if err != nil {
		return outcome{}, err
	}
	seen := make([]int, s.tasks)
	for r := range j.Results(ctx) {
		seen[r.Index]++
		if r.Err != nil || r.Value != s.taskMS {
			return outcome{}, fmt.Errorf("%s: task %d: %v, %v", s.name, r.Index, r.Value, r.Err)
		}
	}
	took := time.Since(start)
	for i, n := range seen {
		if n != 1 {
			return outcome{}, fmt.Errorf("%s: task %d yielded %d results", s.name, i, n)
		}
	}
	return outcome{makespan: took, stats: j.Stats(), chaos: b.Stats()}, nil
}

// ideal is the makespan of a perfect scheduler on a platform with no
// latency: rounds of tasks.
func (s scenario) ideal() time.Duration {
	rounds := math.Ceil(float64(s.tasks) / float64(s.concurrency))
	return time.Duration(rounds) * time.Duration(s.taskMS) * time.Millisecond
}
