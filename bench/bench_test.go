package main

import (
	"context"
	"os"
	"testing"
	"time"

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

// BenchmarkSkew runs the skewed job with scattered long tasks of 150 ms
// among short ones of 15 ms on four slots (one case of the skew scenario)
// and reports its makespan over the ideal.
func BenchmarkSkew(b *testing.B) {
	for _, kind := range []string{"process", "local"} {
		b.Run(kind, func(b *testing.B) {
			ex := slotExecutor(kind, skewSlots, fanout.Options{})
			b.Cleanup(func() { ex.Close() })
			warm(b, ex)
			b.ResetTimer()
			var sum float64
			for n := range b.N {
				_, ratio, err := skewOnce(context.Background(), ex, skewCase{kind, "scattered", 15}, uint64(n+1))
				if err != nil {
					b.Fatal(err)
				}
				sum += ratio
			}
			b.ReportMetric(sum/float64(b.N), "x_ideal")
		})
	}
}

// BenchmarkSpeculationWaste runs the speculation scenario's job and reports
// the backups sent per task.
func BenchmarkSpeculationWaste(b *testing.B) {
	ex := slotExecutor("local", specSlots, fanout.Options{Speculation: true})
	b.Cleanup(func() { ex.Close() })
	var backups int
	for n := range b.N {
		run, _, err := specOnce(context.Background(), ex, uint64(n+1))
		if err != nil {
			b.Fatal(err)
		}
		backups += run.stats.Backups
	}
	b.ReportMetric(float64(backups)/float64(b.N*specTasks), "backups/task")
}

// BenchmarkCut cancels the cut scenario's job at 40% of its ideal makespan
// and reports the share of finished tasks whose results it returned.
func BenchmarkCut(b *testing.B) {
	for _, kind := range []string{"local", "process"} {
		b.Run(kind, func(b *testing.B) {
			ex := slotExecutor(kind, cutSlots, fanout.Options{})
			b.Cleanup(func() { ex.Close() })
			warm(b, ex)
			b.ResetTimer()
			var kept float64
			for n := range b.N {
				ms := cutInputs(1, uint64(n))
				o, err := cutOnce(context.Background(), ex, kind, "cancel", ms, idealOf(ms, cutSlots)*4/10)
				if err != nil {
					b.Fatal(err)
				}
				kept += o.keptRate()
			}
			b.ReportMetric(kept/float64(b.N), "kept")
		})
	}
}

func TestResultLine(t *testing.T) {
	tests := []struct {
		name string
		kv   []any
		want string
	}{
		{"empty", nil, "RESULT x"},
		{"kinds", []any{"a", 1, "b", 1.23456, "c", 2.0, "d", "two words", "e", []int{1, 2}, "f", []float64{0.5, 1}, "g", true},
			"RESULT x a=1 b=1.2346 c=2 d=two_words e=1,2 f=0.5,1 g=true"},
		{"small", []any{"r", 0.00004}, "RESULT x r=0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resultLine("x", tt.kv...); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSelectScenarios(t *testing.T) {
	got, err := selectScenarios("core, cut")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"noop", "rss", "montecarlo", "cut"} {
		if !got[name] {
			t.Errorf("%s not selected", name)
		}
	}
	if len(got) != 4 {
		t.Errorf("selected %v, want 4 scenarios", got)
	}
	if _, err := selectScenarios("nope"); err == nil {
		t.Error("an unknown scenario was accepted")
	}
}

func TestSkewInputs(t *testing.T) {
	for _, layout := range []string{"scattered", "end"} {
		ms := skewInputs(layout, 15, 1)
		long := 0
		for _, m := range ms {
			if m == 150 {
				long++
			}
		}
		if len(ms) != skewTasks || long != skewTasks/4 {
			t.Errorf("%s: %d tasks, %d long", layout, len(ms), long)
		}
		if got, want := idealOf(ms, skewSlots), 4875*time.Millisecond; got != want {
			t.Errorf("%s: ideal %v, want %v", layout, got, want)
		}
	}
}
