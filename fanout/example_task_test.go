package fanout_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
)

var Describe = fanout.Register("example.describe", func(ctx context.Context, x int) (string, error) {
	info := fanout.Task(ctx)
	fanout.Logger(ctx).Info("working", "x", x) // travels back with the result
	return fmt.Sprintf("task %d, attempt %d", info.Index, info.Attempt), nil
})

func ExampleTask() {
	ctx := context.Background()
	ex := fanout.NewExecutor(local.New(nil), nil)
	defer ex.Close()

	out, err := fanout.Map(ctx, ex, Describe, []int{10, 20})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out)
	// Output: [task 0, attempt 0 task 1, attempt 0]
}

func ExampleLogger() {
	ctx := context.Background()
	ex := fanout.NewExecutor(local.New(nil), nil)
	defer ex.Close()

	job, err := fanout.Start(ctx, ex, Describe, []int{42})
	if err != nil {
		log.Fatal(err)
	}
	for r := range job.Results(ctx) {
		for _, rec := range r.Logs {
			fmt.Println(rec.Level, rec.Message, rec.Attrs)
		}
	}
	// Output: INFO working x=42
}

var Stash = fanout.Register("example.stash", func(ctx context.Context, s string) (int, error) {
	st := fanout.Store(ctx) // the job's store, opened in the worker
	key := "example/" + fanout.Task(ctx).Job + "/" + s
	if err := st.Put(ctx, key, []byte(s)); err != nil {
		return 0, err
	}
	defer st.Delete(ctx, key)
	b, err := st.Get(ctx, key)
	return len(b), err
})

func ExampleStore() {
	ctx := context.Background()
	ex := fanout.NewExecutor(local.New(nil), nil)
	defer ex.Close()

	out, err := fanout.Map(ctx, ex, Stash, []string{"abc", "de"})
	fmt.Println(out, err)
	// Output: [3 2] <nil>
}
