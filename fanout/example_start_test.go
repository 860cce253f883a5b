package fanout_test

import (
	"context"
	"fmt"
	"log"
	"slices"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
)

var Shout = fanout.Register("example.shout", func(_ context.Context, s string) (string, error) {
	return s + "!", nil
})

func ExampleStart() {
	ctx := context.Background()
	ex := fanout.NewExecutor(local.New(nil), nil)
	defer ex.Close()

	job, err := fanout.Start(ctx, ex, Shout, []string{"a", "b", "c"})
	if err != nil {
		log.Fatal(err)
	}
	// Results arrive as tasks complete, in any order.
	var got []string
	for r := range job.Results(ctx) {
		if r.Err != nil {
			log.Fatal(r.Err)
		}
		got = append(got, fmt.Sprintf("%d:%s", r.Index, r.Value))
	}
	slices.Sort(got)
	fmt.Println(got)
	fmt.Println("tasks:", job.Stats().Tasks, "failed:", job.Stats().Failed)
	// Output:
	// [0:a! 1:b! 2:c!]
	// tasks: 3 failed: 0
}

func ExampleJob_Wait() {
	ctx := context.Background()
	ex := fanout.NewExecutor(local.New(nil), nil)
	defer ex.Close()

	job, err := fanout.Start(ctx, ex, Shout, []string{"x", "y"})
	if err != nil {
		log.Fatal(err)
	}
	out, err := job.Wait(ctx) // in input order
	fmt.Println(out, err)
	// Output: [x! y!] <nil>
}
