package fanout_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage/memstore"
)

var Cube = fanout.Register("example.cube", func(_ context.Context, x int) (int, error) { return x * x * x, nil })

// An async job keeps its manifest and replies in the store, so a second
// driver can find it with Attach: here the same process plays both.
func ExampleAttach() {
	ctx := context.Background()
	st := memstore.New(nil) // in a real deployment: s3://, reachable by both drivers
	defer st.Close()

	first := fanout.NewExecutor(local.New(nil), &fanout.Options{Store: st, Async: true, KeepData: true})
	job, err := fanout.Start(ctx, first, Cube, []int{1, 2, 3})
	if err != nil {
		log.Fatal(err)
	}
	id := job.ID()
	job.Wait(ctx)
	first.Close()

	second := fanout.NewExecutor(local.New(nil), &fanout.Options{Store: st, Async: true})
	defer second.Close()
	again, err := fanout.Attach(ctx, second, Cube, id)
	if err != nil {
		log.Fatal(err)
	}
	out, err := again.Wait(ctx)
	fmt.Println(out, err, "invocations:", again.Stats().Invocations)
	// Output: [1 8 27] <nil> invocations: 0
}

func ExampleRegisterTo() {
	reg := fanout.NewRegistry() // functions of its own, served by reg.Handle
	half := fanout.RegisterTo(reg, "half", func(_ context.Context, x float64) (float64, error) { return x / 2, nil })

	ex := fanout.NewExecutor(local.New(&local.Options{Handler: reg.Handle}), nil)
	defer ex.Close()
	out, err := fanout.Map(context.Background(), ex, half, []float64{1, 3})
	fmt.Println(reg.Names(), out, err)
	// Output: [half] [0.5 1.5] <nil>
}
