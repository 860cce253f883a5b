package fanout_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gowren/gowren/fanout"
)

// Square is registered at package level, so a worker (the same binary) has
// it before fanout.Init serves.
var Square = fanout.Register("example.square", func(_ context.Context, x int) (int, error) {
	return x * x, nil
})

func ExampleMap() {
	ctx := context.Background()
	ex, err := fanout.Open(ctx) // GOWREN_BACKEND / GOWREN_STORE, else local goroutines
	if err != nil {
		log.Fatal(err)
	}
	defer ex.Close()

	squares, err := fanout.Map(ctx, ex, Square, []int{1, 2, 3, 4})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(squares)
	// Output: [1 4 9 16]
}
