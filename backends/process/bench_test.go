package process_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/gowren/gowren/backends/process"
)

// BenchmarkRoundTrip measures one invocation of a small payload on a warm
// worker: the backend's overhead per batch.
func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"64B", 64}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}} {
		b.Run(size.name, func(b *testing.B) {
			be := process.New(&process.Options{Workers: 1})
			defer be.Close()
			payload := append([]byte("echo:"), bytes.Repeat([]byte("x"), size.n)...)
			ctx := context.Background()
			if _, err := be.Invoke(ctx, payload); err != nil { // start the worker
				b.Fatal(err)
			}
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := be.Invoke(ctx, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRoundTripCancellable is BenchmarkRoundTrip with a context that can
// be cancelled, as the executor's is.
func BenchmarkRoundTripCancellable(b *testing.B) {
	be := process.New(&process.Options{Workers: 1})
	defer be.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	payload := []byte("echo:0123456789012345678901234567890123456789012345678901234567890123")
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
	be := process.New(&process.Options{Workers: 2})
	defer be.Close()
	payload := []byte("call::echo:0123456789012345678901234567890123456789012345678901234567890123")
	ctx := context.Background()
	if _, err := be.Invoke(ctx, payload); err != nil { // start both workers
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := be.Invoke(ctx, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNestedCalls measures an invoker that makes 100 reverse calls at
// once, on a pool of 4 workers.
func BenchmarkNestedCalls(b *testing.B) {
	be := process.New(&process.Options{Workers: 4})
	defer be.Close()
	payload := []byte("calls:100")
	ctx := context.Background()
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
