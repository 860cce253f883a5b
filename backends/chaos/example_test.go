package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/chaos"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
)

var cube = fanout.Register("chaos_example.cube", func(_ context.Context, x int) (int, error) {
	return x * x * x, nil
})

// A pipeline tested against a mix of faults: every result arrives, once.
func Example_faultMix() {
	ctx := context.Background()
	b := chaos.Wrap(local.New(nil), chaos.Faults{
		Seed:       1,
		Throttle:   0.1,
		FailBefore: 0.1,
		FailAfter:  0.1,
		Crash:      0.05,
		Duplicate:  0.05,
		Straggler:  0.05, StragglerFactor: 3,
		Latency: time.Millisecond, ColdStart: 5 * time.Millisecond,
	})
	ex := fanout.NewExecutor(b, &fanout.Options{
		BatchSize: 1,
		Retries:   10,
		Logger:    slog.New(slog.DiscardHandler), // quiet retries
	})
	defer ex.Close()

	out, err := fanout.Map(ctx, ex, cube, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out)
	st := b.Stats()
	fmt.Println("invocations refused or failed:", st.Throttles+st.FailedBefore+st.FailedAfter+st.Crashes > 0)
	// Output:
	// [1 8 27 64 125 216 343 512 729 1000]
	// invocations refused or failed: true
}

// The same seed gives the same faults to the same sequence of calls.
func Example_deterministic() {
	ctx := context.Background()
	for range 2 {
		b := chaos.Wrap(local.New(nil), chaos.Faults{Seed: 4, Throttle: 0.2, FailBefore: 0.2, FailAfter: 0.2})
		var outcomes []string
		for range 8 {
			_, err := b.Invoke(ctx, []byte("ping")) // a worker answers garbage with an error reply
			switch {
			case err == nil:
				outcomes = append(outcomes, "ok")
			case errors.Is(err, backends.ErrThrottled):
				outcomes = append(outcomes, "throttled")
			case errors.Is(err, backends.ErrTransport):
				outcomes = append(outcomes, "before")
			case errors.Is(err, backends.ErrWorkerLost):
				outcomes = append(outcomes, "after")
			}
		}
		b.Close()
		fmt.Println(outcomes)
	}
	// Output:
	// [after throttled ok before ok before throttled ok]
	// [after throttled ok before ok before throttled ok]
}

// Two simulated Lambda functions, one job on each, share one account and
// the driver's uplink: each may start at most 2 new environments (a
// scaled-down ramp), the account runs at most 3 invocations at once, and
// the platform's refusals are throttles the executor waits out.
func Example_scaling() {
	ctx := context.Background()
	acct := chaos.NewAccount(chaos.AccountLimits{Concurrency: 3})
	link := chaos.NewUplink(time.Millisecond, 10<<20) // 1 ms away, 10 MiB/s up
	fn := chaos.Scaling{Cloud: chaos.AWSLambda, Burst: 2, Refill: 2, RefillEvery: time.Hour, Account: acct}
	var sum int
	for range 2 {
		b := chaos.Wrap(local.New(nil), chaos.Faults{Scaling: fn, Uplink: link})
		ex := fanout.NewExecutor(b, &fanout.Options{Concurrency: 4, Logger: slog.New(slog.DiscardHandler)})
		out, err := fanout.Map(ctx, ex, cube, []int{1, 2, 3, 4, 5, 6})
		if err != nil {
			log.Fatal(err)
		}
		ex.Close()
		for _, v := range out {
			sum += v
		}
		st := b.Stats()
		fmt.Println("environments within the ramp:", st.ColdStarts >= 1 && st.ColdStarts <= 2)
	}
	fmt.Println("sum:", sum, "peak running in the account at most 3:", acct.Stats().PeakRunning <= 3)
	// Output:
	// environments within the ramp: true
	// environments within the ramp: true
	// sum: 882 peak running in the account at most 3: true
}
