package main

import (
	"context"
	"os"
	"testing"

	"github.com/gowren/gowren/examples/montecarlo/mc"
	"github.com/gowren/gowren/fanout"
)

func TestMain(m *testing.M) {
	fanout.Init()
	os.Exit(m.Run())
}

func executor(tb testing.TB, kind string) *fanout.Executor {
	ex := newExecutor(kind)
	tb.Cleanup(func() { ex.Close() })
	return ex
}

// BenchmarkNoop runs jobs of 100,000 no-op tasks and reports the driver's
// time per task.
func BenchmarkNoop(b *testing.B) {
	for _, kind := range []string{"local", "process"} {
		b.Run(kind, func(b *testing.B) {
			ex := executor(b, kind)
			in := make([]int, noopTasks)
			warm(b, ex)
			b.ResetTimer()
			for range b.N {
				if _, err := fanout.Map(context.Background(), ex, noop, in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*noopTasks), "ns/task")
		})
	}
}

// BenchmarkMonteCarlo runs the Monte Carlo example's batches on plain
// goroutines and through gowren's local and process backends.
func BenchmarkMonteCarlo(b *testing.B) {
	batches := mc.Batches(1, mcTasks, mcSamples, mc.DefaultOption)
	b.Run("goroutines", func(b *testing.B) {
		for range b.N {
			if _, err := goroutines(context.Background(), batches); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, kind := range []string{"local", "process"} {
		b.Run(kind, func(b *testing.B) {
			ex := executor(b, kind)
			warm(b, ex)
			b.ResetTimer()
			for range b.N {
				if _, err := fanout.Map(context.Background(), ex, mc.Simulation, batches); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestHarnessAgrees checks that the plain-goroutine baseline computes what
// gowren computes, so the benchmark compares like with like.
func TestHarnessAgrees(t *testing.T) {
	batches := mc.Batches(7, 16, 2000, mc.DefaultOption)
	want, err := goroutines(context.Background(), batches)
	if err != nil {
		t.Fatal(err)
	}
	ex := executor(t, "local")
	got, err := fanout.Map(context.Background(), ex, mc.Simulation, batches)
	if err != nil {
		t.Fatal(err)
	}
	if mc.Combine(got) != mc.Combine(want) {
		t.Fatalf("gowren %+v, goroutines %+v", mc.Combine(got), mc.Combine(want))
	}
}
