package fanout_test

import (
	"context"
	"os"
	"testing"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/backendtest"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
)

// The fault suite on the two backends this package ships with: each chaos
// fault alone and all together, sync and async. (The cloud backends run it
// over their loopback servers in their own tests.)

type faultHarness struct {
	t    *testing.T
	kind string
}

func (h faultHarness) MakeBackend(context.Context) (backends.Backend, error) {
	if h.kind == "local" {
		return local.New(&local.Options{Concurrency: 6}), nil
	}
	return process.New(&process.Options{Workers: 4, Stderr: &lineLog{},
		Env: []string{"GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0"}}), nil
}

func (h faultHarness) MakeStore(context.Context) (storage.Store, error) {
	st, err := filestore.New(h.t.TempDir(), nil)
	if err == nil {
		h.t.Cleanup(func() { st.Close() })
	}
	return st, err
}

func (faultHarness) Close() {}

func TestFaultSuite(t *testing.T) {
	for _, kind := range []string{"local", "process"} {
		t.Run(kind, func(t *testing.T) {
			backendtest.RunFaultSuite(t, func(_ context.Context, t *testing.T) (backendtest.Harness, error) {
				return faultHarness{t: t, kind: kind}, nil
			})
		})
	}
}
