package local_test

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/backendtest"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
)

func TestMain(m *testing.M) {
	fanout.Init()
	goleak.VerifyTestMain(m)
}

type harness struct{}

func (harness) MakeBackend(context.Context) (backends.Backend, error) {
	return local.New(&local.Options{Concurrency: 4}), nil
}
func (harness) MakeStore(context.Context) (storage.Store, error) { return nil, nil }
func (harness) Close()                                           {}

func TestConformance(t *testing.T) {
	backendtest.RunConformanceTests(t, func(context.Context, *testing.T) (backendtest.Harness, error) {
		return harness{}, nil
	})
}
