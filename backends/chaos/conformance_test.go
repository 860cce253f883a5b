package chaos_test

import (
	"context"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/backendtest"
	"github.com/gowren/gowren/backends/chaos"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/storage"
)

type harness struct{ faults chaos.Faults }

func (h harness) MakeBackend(context.Context) (backends.Backend, error) {
	return chaos.Wrap(local.New(&local.Options{Concurrency: 4}), h.faults), nil
}
func (harness) MakeStore(context.Context) (storage.Store, error) { return nil, nil }
func (harness) Close()                                           {}

func conformance(t *testing.T, f chaos.Faults) {
	backendtest.RunConformanceTests(t, func(context.Context, *testing.T) (backendtest.Harness, error) {
		return harness{f}, nil
	})
}

// With faults off, the wrapper is the backend it wraps.
func TestConformance(t *testing.T) { conformance(t, chaos.Faults{}) }

// Faults that lose nothing and cost no attempt (latency, cold starts,
// duplicate deliveries, a cap lower than the wrapped backend's) keep every
// promise of the suite.
func TestConformanceBenignFaults(t *testing.T) {
	conformance(t, chaos.Faults{
		Seed:               1,
		Latency:            time.Millisecond,
		LatencyJitter:      time.Millisecond,
		ColdStart:          5 * time.Millisecond,
		Duplicate:          0.2,
		Concurrency:        2,
		ThrottleRetryAfter: time.Millisecond,
	})
}
