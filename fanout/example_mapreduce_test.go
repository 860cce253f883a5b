package fanout_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
)

var (
	CountWords = fanout.Register("example.countWords", func(_ context.Context, line string) (int, error) {
		return len(strings.Fields(line)), nil
	})
	Total = fanout.Register("example.total", func(_ context.Context, counts []int) (int, error) {
		t := 0
		for _, c := range counts {
			t += c
		}
		return t, nil
	})
)

func ExampleMapReduce() {
	ctx := context.Background()
	ex := fanout.NewExecutor(local.New(nil), nil) // default store: in memory
	defer ex.Close()

	lines := []string{"the quick brown fox", "jumps over", "the lazy dog"}
	// The reducer runs as a task and reads the map outputs from the store.
	words, err := fanout.MapReduce(ctx, ex, CountWords, lines, Total)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(words)
	// Output: 9
}
