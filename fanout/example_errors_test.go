package fanout_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
)

var Invert = fanout.Register("example.invert", func(_ context.Context, x float64) (float64, error) {
	if x == 0 {
		return 0, errors.New("division by zero")
	}
	return 1 / x, nil
})

var Index = fanout.Register("example.index", func(_ context.Context, i int) (string, error) {
	return []string{"a", "b"}[i], nil // panics for i >= 2
})

func ExampleTaskError() {
	ctx := context.Background()
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Logger: quietLogs})
	defer ex.Close()

	out, err := fanout.Map(ctx, ex, Invert, []float64{2, 0, 4})
	fmt.Println(out) // the other results survive
	var te *fanout.TaskError
	if errors.As(err, &te) {
		fmt.Printf("task %d failed: %s (%s)\n", te.Index, te.Message, te.Type)
	}

	_, err = fanout.Map(ctx, ex, Index, []int{0, 5})
	if errors.As(err, &te) && errors.Is(err, fanout.ErrPanic) {
		fmt.Printf("task %d panicked: %s\n", te.Index, te.Message)
	}
	// Output:
	// [0.5 0 0.25]
	// task 1 failed: division by zero (*errors.errorString)
	// task 1 panicked: runtime error: index out of range [5] with length 2
}

var attempts = fanout.Register("example.attempts", func(ctx context.Context, x int) (int, error) {
	if fanout.Task(ctx).Attempt == 0 {
		return 0, fanout.Retryable(errors.New("downstream busy"))
	}
	return x, nil
})

func ExampleRetryable() {
	ctx := context.Background()
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Logger: quietLogs})
	defer ex.Close()

	job, _ := fanout.Start(ctx, ex, attempts, []int{7})
	out, err := job.Wait(ctx)
	fmt.Println(out, err, "retries:", job.Stats().Retries)
	// Output: [7] <nil> retries: 1
}

func ExampleFailedTasks() {
	ctx := context.Background()
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Logger: quietLogs})
	defer ex.Close()

	_, err := fanout.Map(ctx, ex, Invert, []float64{1, 0, 2, 0, 3})
	fmt.Println(err)
	fmt.Println(fanout.FailedTasks(err))
	// Output:
	// 2 of 5 tasks failed: 1, 3; first: task 1: division by zero
	// [1 3]
}
