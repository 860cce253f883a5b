package main

import (
	"context"
	"testing"
	"time"
)

// hangGuard returns a context for steps whose length depends on the
// machine rather than on the code under test, such as the go build of a
// deploy on a cold cache while other tests load the cores: it ends only
// shortly before the test binary's own deadline (go test -timeout), leaving
// a tenth of the time left (at most 30s) for the test to fail with its own
// message. It stops a hung test and never times a slow one.
func hangGuard(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), dl.Add(-min(time.Until(dl)/10, 30*time.Second)))
	}
	t.Cleanup(cancel)
	return ctx
}
