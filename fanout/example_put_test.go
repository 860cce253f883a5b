package fanout_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
)

// Query carries a large shared value by reference.
type Query struct {
	Prices fanout.Ref[map[string]float64]
	Item   string
}

var PriceOf = fanout.Register("example.priceOf", func(ctx context.Context, q Query) (float64, error) {
	prices, err := q.Prices.Get(ctx) // fetched once per worker process
	if err != nil {
		return 0, err
	}
	return prices[q.Item], nil
})

func ExamplePut() {
	ctx := context.Background()
	ex := fanout.NewExecutor(local.New(nil), nil)
	defer ex.Close()

	ref, err := fanout.Put(ctx, ex, map[string]float64{"apple": 0.5, "pear": 0.75})
	if err != nil {
		log.Fatal(err)
	}
	out, err := fanout.Map(ctx, ex, PriceOf, []Query{{ref, "pear"}, {ref, "apple"}})
	fmt.Println(out, err)
	// Output: [0.75 0.5] <nil>
}
