package process_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/gowren/gowren/backends/process"
)

// benchInvoke measures invocations of payload with ctx on a pool of
// workers, once every worker it needs has started: the first call, left
// out of the measure, starts them.
func benchInvoke(b *testing.B, ctx context.Context, workers int, payload []byte) {
	be := process.New(&process.Options{Workers: workers})
	defer be.Close()
	if _, err := be.Invoke(ctx, payload); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := be.Invoke(ctx, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoundTrip measures one invocation of a small payload on a warm
// worker: the backend's overhead per batch.
func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"64B", 64}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}} {
		b.Run(size.name, func(b *testing.B) {
			b.SetBytes(int64(size.n))
			benchInvoke(b, context.Background(), 1, append([]byte("echo:"), bytes.Repeat([]byte("x"), size.n)...))
		})
	}
}

// BenchmarkRoundTripCancellable is BenchmarkRoundTrip with a context that can
// be cancelled, as the executor's is.
func BenchmarkRoundTripCancellable(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	benchInvoke(b, ctx, 1, []byte("echo:0123456789012345678901234567890123456789012345678901234567890123"))
}

// BenchmarkRoundTripParallel keeps two workers busy.
func BenchmarkRoundTripParallel(b *testing.B) {
	be := process.New(&process.Options{Workers: 2})
	defer be.Close()
	payload := []byte("echo:0123456789012345678901234567890123456789012345678901234567890123")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := be.Invoke(context.Background(), payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkNestedCall measures an invocation whose handler invokes one child
// through the driver (a reverse call) on warm workers, against
// BenchmarkRoundTrip/64B: the reverse call's cost is the difference, less
// one round trip.
func BenchmarkNestedCall(b *testing.B) {
	benchInvoke(b, context.Background(), 2, []byte("call::echo:0123456789012345678901234567890123456789012345678901234567890123"))
}

// BenchmarkNestedCalls measures an invoker that makes 100 reverse calls at
// once, on a pool of 4 workers.
func BenchmarkNestedCalls(b *testing.B) {
	benchInvoke(b, context.Background(), 4, []byte("calls:100"))
}
