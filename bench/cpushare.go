package main

import (
	"bytes"
	"context"
	"runtime"
	"runtime/pprof"
	"slices"

	"github.com/google/pprof/profile"

	"github.com/gowren/gowren/backends"
)

// The simulated clouds of the burst scenarios run in the driver's process:
// the process's CPU time is the driver's and the cloud's together. A
// cloudSide member labels the goroutines of its invocations (and those
// they start: the workers, the simulated platform's rules, an invoker's
// children) with side=cloud, and a CPU profile of the job tells the
// driver's share: the samples without that label.

// cloudSide labels the invocations of its backend as the cloud's.
type cloudSide struct{ backends.Backend }

var cloudLabels = pprof.Labels("side", "cloud")

func (c cloudSide) Invoke(ctx context.Context, payload []byte) (reply []byte, err error) {
	pprof.Do(ctx, cloudLabels, func(ctx context.Context) { reply, err = c.Backend.Invoke(ctx, payload) })
	return reply, err
}

// cpuSplit profiles the CPU while it runs f and returns the share of the
// samples not labeled side=cloud, and the number of samples; ok is false
// when no profile could be taken (another one runs: -cpuprofile).
func cpuSplit(f func()) (driverShare float64, samples int, ok bool) {
	var buf bytes.Buffer
	// 1 kHz rather than the default 100 Hz: a job of seconds of CPU gives
	// thousands of samples. (The runtime then notes on stderr that the
	// rate was set before the profile started.)
	runtime.SetCPUProfileRate(1000)
	if err := pprof.StartCPUProfile(&buf); err != nil {
		runtime.SetCPUProfileRate(0)
		f()
		return 0, 0, false
	}
	f()
	pprof.StopCPUProfile()
	p, err := profile.Parse(&buf)
	if err != nil {
		return 0, 0, false
	}
	var all, cloud int64
	for _, s := range p.Sample {
		v := s.Value[len(s.Value)-1] // CPU nanoseconds
		all += v
		if slices.Contains(s.Label["side"], "cloud") {
			cloud += v
		}
		samples += int(s.Value[0])
	}
	if all == 0 {
		return 0, 0, false
	}
	return float64(all-cloud) / float64(all), samples, true
}
