package process_test

import (
	"context"
	"os"
	"testing"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/backendtest"
	"github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/storage"
)

type harness struct{ t *testing.T }

func (h harness) MakeBackend(context.Context) (backends.Backend, error) {
	return process.New(&process.Options{
		Workers: 4,
		Env: []string{
			handlerEnv + "=fanout",
			"GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0",
		},
		Stderr: tWriter(h),
	}), nil
}

func (harness) MakeStore(context.Context) (storage.Store, error) { return nil, nil }
func (harness) Close()                                           {}

// tWriter sends worker output to the test log, shown when a test fails or
// with -v.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}

func TestConformance(t *testing.T) {
	backendtest.RunConformanceTests(t, func(_ context.Context, t *testing.T) (backendtest.Harness, error) {
		return harness{t}, nil
	})
}
