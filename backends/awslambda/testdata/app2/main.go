// Command app2 is a second program for the deploy tests: other code, so
// other hash.
package main

import (
	"context"

	_ "github.com/gowren/gowren/backends/awslambda"
	"github.com/gowren/gowren/fanout"
)

var _ = fanout.Register("app.triple", func(_ context.Context, x int) (int, error) { return 3 * x, nil })

func main() {
	fanout.Init()
}
