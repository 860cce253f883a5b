// Package mc is the computation of the Monte Carlo example: it estimates pi
// and the price of a European call option from random samples, one batch of
// samples per task, and combines the batches. The example's main program
// fans the batches out with gowren; the benchmarks in bench/ run the same
// batches on plain goroutines for comparison.
package mc

import (
	"context"
	"math"
	"math/rand/v2"

	"github.com/gowren/gowren/fanout"
)

// Option is a European call option under Black-Scholes assumptions.
type Option struct {
	Spot     float64 // price of the underlying today
	Strike   float64
	Rate     float64 // risk-free rate, continuously compounded
	Vol      float64 // annual volatility
	Maturity float64 // years
}

// DefaultOption is the option the example prices.
var DefaultOption = Option{Spot: 100, Strike: 105, Rate: 0.05, Vol: 0.2, Maturity: 1}

// Batch is the input of one task: which random stream to draw and how many
// samples.
type Batch struct {
	Seed    uint64
	Index   uint64 // selects the task's own random stream
	Samples int
	Option  Option
}

// Partial is the output of one task: sums that combine by addition.
type Partial struct {
	Samples  int64
	Inside   int64   // points of the unit square inside the quarter circle
	Payoff   float64 // sum of discounted payoffs
	PayoffSq float64 // sum of their squares
}

// Simulate draws b.Samples samples from the task's own stream. It checks ctx
// every 65,536 samples and returns ctx's error once it is done.
func Simulate(ctx context.Context, b Batch) (Partial, error) {
	// Mixed seeds: PCG states that differ only in their low bits would
	// start streams that are needlessly close.
	rng := rand.New(rand.NewPCG(splitmix(b.Seed), splitmix(b.Seed^splitmix(b.Index))))
	o := b.Option
	drift := (o.Rate - o.Vol*o.Vol/2) * o.Maturity
	diffusion := o.Vol * math.Sqrt(o.Maturity)
	discount := math.Exp(-o.Rate * o.Maturity)
	var p Partial
	for i := range b.Samples {
		if i&0xffff == 0 && ctx.Err() != nil {
			return p, ctx.Err()
		}
		x, y := rng.Float64(), rng.Float64()
		if x*x+y*y <= 1 {
			p.Inside++
		}
		st := o.Spot * math.Exp(drift+diffusion*rng.NormFloat64())
		v := discount * max(st-o.Strike, 0)
		p.Payoff += v
		p.PayoffSq += v * v
	}
	p.Samples = int64(b.Samples)
	return p, nil
}

// Simulation is Simulate registered for fan-out.
var Simulation = fanout.Register("montecarlo.simulate", Simulate)

// Batches returns the inputs of a run of tasks x samples.
func Batches(seed uint64, tasks, samples int, o Option) []Batch {
	bs := make([]Batch, tasks)
	for i := range bs {
		bs[i] = Batch{Seed: seed, Index: uint64(i), Samples: samples, Option: o}
	}
	return bs
}

// Estimate is the combined result of all batches.
type Estimate struct {
	Samples     int64
	Pi          float64
	PiStdErr    float64
	Price       float64
	PriceStdErr float64
}

// Combine adds up the partial sums.
func Combine(parts []Partial) Estimate {
	var t Partial
	for _, p := range parts {
		t.Samples += p.Samples
		t.Inside += p.Inside
		t.Payoff += p.Payoff
		t.PayoffSq += p.PayoffSq
	}
	if t.Samples == 0 {
		return Estimate{}
	}
	n := float64(t.Samples)
	q := float64(t.Inside) / n
	mean := t.Payoff / n
	variance := max(t.PayoffSq/n-mean*mean, 0)
	return Estimate{
		Samples:     t.Samples,
		Pi:          4 * q,
		PiStdErr:    4 * math.Sqrt(q*(1-q)/n),
		Price:       mean,
		PriceStdErr: math.Sqrt(variance / n),
	}
}

// BlackScholesCall is the closed-form price of the option.
func BlackScholesCall(o Option) float64 {
	sq := o.Vol * math.Sqrt(o.Maturity)
	d1 := (math.Log(o.Spot/o.Strike) + (o.Rate+o.Vol*o.Vol/2)*o.Maturity) / sq
	d2 := d1 - sq
	return o.Spot*normCDF(d1) - o.Strike*math.Exp(-o.Rate*o.Maturity)*normCDF(d2)
}

// splitmix is SplitMix64's finalizer, a bijective mix of 64 bits.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func normCDF(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }
