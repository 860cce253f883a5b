package chaos_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/chaos"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
)

type nopBackend struct{}

func (nopBackend) Invoke(_ context.Context, p []byte) ([]byte, error) { return p, nil }
func (nopBackend) Limits() backends.Limits                            { return backends.Limits{} }
func (nopBackend) Close() error                                       { return nil }

// BenchmarkInvoke measures what the wrapper adds to one Invoke of a backend
// that does nothing: with faults off, and with faults configured whose
// decisions are drawn on every call but never strike.
func BenchmarkInvoke(b *testing.B) {
	for _, bc := range []struct {
		name string
		be   func() backends.Backend
	}{
		{"bare", func() backends.Backend { return nopBackend{} }},
		{"off", func() backends.Backend { return chaos.Wrap(nopBackend{}, chaos.Faults{}) }},
		{"drawn", func() backends.Backend {
			return chaos.Wrap(nopBackend{}, chaos.Faults{Throttle: 1e-12, FailBefore: 1e-12, Straggler: 1e-12})
		}},
	} {
		payload := []byte("payload")
		b.Run(bc.name, func(b *testing.B) {
			be := bc.be()
			defer be.Close()
			ctx := context.Background()
			for b.Loop() {
				be.Invoke(ctx, payload)
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			be := bc.be()
			defer be.Close()
			ctx := context.Background()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					be.Invoke(ctx, payload)
				}
			})
		})
	}
}

// BenchmarkMap measures a whole Map of 1,000 tiny tasks on the local
// backend, bare and wrapped with faults off.
func BenchmarkMap(b *testing.B) {
	in := make([]int, 1000)
	for i := range in {
		in[i] = i
	}
	for _, bc := range []struct {
		name string
		wrap bool
	}{{"local", false}, {"chaos-off", true}} {
		b.Run(bc.name, func(b *testing.B) {
			var be backends.Backend = local.New(nil)
			if bc.wrap {
				be = chaos.Wrap(be, chaos.Faults{})
			}
			ex := fanout.NewExecutor(be, &fanout.Options{Logger: slog.New(slog.DiscardHandler)})
			defer ex.Close()
			ctx := context.Background()
			for b.Loop() {
				if _, err := fanout.Map(ctx, ex, cube, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
