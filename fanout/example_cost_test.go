package fanout_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
)

// A job that ran on this machine cost nothing, and its statistics say so.
func ExampleCost() {
	ctx := context.Background()
	ex := fanout.NewExecutor(local.New(nil), nil)
	defer ex.Close()
	job, err := fanout.Start(ctx, ex, Square, []int{1, 2, 3})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := job.Wait(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(job.Stats().Cost)
	// Output: none: ran on this machine (Options.Prices gives an estimate of the same work on a cloud platform)
}

// What would the same work cost on Tencent Cloud SCF? Options.Prices asks
// for the estimate on a backend that bills nothing; Cost.String marks it as
// one ("$0.000001: estimate of the same work on Tencent Cloud SCF at 512 MB
// (0.0 GB-s; not billed: ran on this machine)").
func ExamplePricesFor() {
	ctx := context.Background()
	scf, _ := fanout.PricesFor(backends.PlatformSCF)
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Prices: &scf})
	defer ex.Close()
	job, err := fanout.Start(ctx, ex, Square, []int{1, 2, 3})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := job.Wait(ctx); err != nil {
		log.Fatal(err)
	}
	c := job.Stats().Cost
	fmt.Println(c.Prices.Name, c.Total > 0, c.NotBilled)
	// Output: Tencent Cloud SCF true true
}
