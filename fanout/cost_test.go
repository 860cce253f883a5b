package fanout_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
)

// remote is a local backend that describes itself as a cloud platform.
// sameHost says whether it still reports SameHost, as the loopback
// platforms of the cloud backends' tests do.
type remote struct {
	backends.Backend
	platform string
	memoryMB int
	sameHost bool
}

func (r remote) Limits() backends.Limits {
	l := r.Backend.Limits()
	l.InProcess, l.SameHost, l.Platform, l.MemoryMB = false, r.sameHost, r.platform, r.memoryMB
	return l
}

// A job is priced as a bill only where a platform bills it; on this
// machine only with Options.Prices, as an estimate of the same work
// elsewhere, and saying so.
func TestCost(t *testing.T) {
	scf1024 := fanout.PricesSCF
	scf1024.MemoryMB = 1024
	tests := []struct {
		name    string
		backend func() backends.Backend
		prices  *fanout.Prices
		want    fanout.Prices
		billed  bool   // Cost.NotBilled is false
		line    string // Cost.String starts with it
	}{
		{"local", func() backends.Backend { return local.New(nil) }, nil,
			fanout.Prices{}, false, "none: ran on this machine"},
		{"local with Lambda's prices", func() backends.Backend { return local.New(nil) }, &fanout.PricesLambdaARM64,
			fanout.PricesLambdaARM64, false, "$"},
		{"SCF", func() backends.Backend { return remote{local.New(nil), backends.PlatformSCF, 1024, false} }, nil,
			scf1024, true, "$"},
		{"SCF on loopback", func() backends.Backend { return remote{local.New(nil), backends.PlatformSCF, 1024, true} }, nil,
			scf1024, true, "$"},
		{"Lambda x86_64 with no memory given", func() backends.Backend { return remote{local.New(nil), backends.PlatformLambdaX86, 0, false} }, nil,
			fanout.PricesLambdaX86, true, "$"},
		{"SCF with the user's prices", func() backends.Backend { return remote{local.New(nil), backends.PlatformSCF, 1024, false} }, &fanout.PricesLambdaARM64,
			fanout.PricesLambdaARM64, true, "$"},
		{"a platform with no price list", func() backends.Backend { return remote{local.New(nil), "", 0, false} }, nil,
			fanout.Prices{}, true, "unknown: the backend names no price list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ex := fanout.NewExecutor(tt.backend(), &fanout.Options{Prices: tt.prices, Logger: quietLogs})
			defer ex.Close()
			j, err := fanout.Start(context.Background(), ex, Square, []int{1, 2, 3, 4})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := j.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			s := j.Stats()
			c := s.Cost
			if c.Prices != tt.want || c.NotBilled == tt.billed {
				t.Fatalf("cost %+v, want prices %+v and billed %v", c, tt.want, tt.billed)
			}
			gbs := s.BilledTime.Seconds() * float64(tt.want.MemoryMB) / 1024
			total := gbs*tt.want.PerGBSecond + float64(s.Invocations)*tt.want.PerMillionRequests/1e6
			if s.BilledTime <= 0 || math.Abs(c.GBSeconds-gbs) > 1e-12 || math.Abs(c.Total-total) > 1e-15 || (tt.want.Name != "") != (c.Total > 0) {
				t.Errorf("cost %+v from %v billed and %d invocations, want %v GB-s and $%v", c, s.BilledTime, s.Invocations, gbs, total)
			}
			line := c.String()
			if !strings.HasPrefix(line, tt.line) || !strings.Contains(s.Summary(), "\ncost      "+line+"\n") {
				t.Errorf("Cost.String() = %q, want it to start with %q and in the summary:\n%s", line, tt.line, s.Summary())
			}
			if tt.want.Name == "" {
				return
			}
			if !strings.Contains(line, tt.want.Name) {
				t.Errorf("Cost.String() = %q does not name the prices %q", line, tt.want.Name)
			}
			// Not billed: says it is an estimate of the same work elsewhere.
			if elsewhere := strings.Contains(line, "estimate of the same work on") && strings.Contains(line, "not billed: ran on this machine"); elsewhere == tt.billed {
				t.Errorf("Cost.String() = %q for a job billed: %v", line, tt.billed)
			}
		})
	}
}

func TestPricesFor(t *testing.T) {
	for _, tt := range []struct {
		platform string
		want     fanout.Prices
		ok       bool
	}{
		{backends.PlatformLambdaARM64, fanout.PricesLambdaARM64, true},
		{backends.PlatformLambdaX86, fanout.PricesLambdaX86, true},
		{backends.PlatformSCF, fanout.PricesSCF, true},
		{"", fanout.Prices{}, false},
		{"gcp-cloud-run", fanout.Prices{}, false},
	} {
		if p, ok := fanout.PricesFor(tt.platform); p != tt.want || ok != tt.ok {
			t.Errorf("PricesFor(%q) = %+v, %v; want %+v, %v", tt.platform, p, ok, tt.want, tt.ok)
		}
	}
}
