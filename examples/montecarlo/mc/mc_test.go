package mc_test

import (
	"context"
	"io"
	"log/slog"
	"math"
	"os"
	"testing"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/examples/montecarlo/mc"
	"github.com/gowren/gowren/fanout"
)

func TestMain(m *testing.M) {
	fanout.Init()
	os.Exit(m.Run())
}

func TestBlackScholes(t *testing.T) {
	// Reference value of the textbook case S=100, K=105, r=5%, sigma=20%, T=1.
	if got := mc.BlackScholesCall(mc.DefaultOption); math.Abs(got-8.021352) > 1e-5 {
		t.Fatalf("BlackScholesCall = %.6f, want 8.021352", got)
	}
}

// The estimate is the same wherever the tasks run, and close to the truth.
func TestEstimateOnBackends(t *testing.T) {
	batches := mc.Batches(42, 24, 50_000, mc.DefaultOption)
	var first mc.Estimate
	for i, b := range []backends.Backend{
		local.New(nil),
		process.New(&process.Options{Workers: 2, Env: []string{"GORACE=atexit_sleep_ms=0"}}),
	} {
		ex := fanout.NewExecutor(b, &fanout.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		parts, err := fanout.Map(context.Background(), ex, mc.Simulation, batches)
		ex.Close()
		if err != nil {
			t.Fatal(err)
		}
		est := mc.Combine(parts)
		if est.Samples != 24*50_000 {
			t.Fatalf("%d samples", est.Samples)
		}
		if math.Abs(est.Pi-math.Pi) > 5*est.PiStdErr {
			t.Errorf("pi %.5f is more than 5 standard errors (%.1e) from pi", est.Pi, est.PiStdErr)
		}
		exact := mc.BlackScholesCall(mc.DefaultOption)
		if math.Abs(est.Price-exact) > 5*est.PriceStdErr {
			t.Errorf("price %.4f is more than 5 standard errors (%.1e) from %.4f", est.Price, est.PriceStdErr, exact)
		}
		if i == 0 {
			first = est
		} else if est != first {
			t.Errorf("backend %d gave %+v, the first gave %+v", i, est, first)
		}
	}
}
