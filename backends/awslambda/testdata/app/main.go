// Command app is the program the deploy tests build: a minimal gowren
// worker for Lambda.
package main

import (
	"context"

	_ "github.com/gowren/gowren/backends/awslambda"
	"github.com/gowren/gowren/fanout"
)

var _ = fanout.Register("app.double", func(_ context.Context, x int) (int, error) { return 2 * x, nil })

func main() {
	fanout.Init()
}
