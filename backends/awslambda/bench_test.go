package awslambda_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/gowren/gowren/backends/awslambda"
	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
	"github.com/gowren/gowren/backends/awslambda/internal/testfuncs"
	"github.com/gowren/gowren/fanout"
)

// cpuTime returns the CPU time this process has used: driver and loopback
// Lambda server together, not the worker processes.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSyncInvocations measures synchronous invocations per second of
// no-op tasks, one task per invocation, from one driver through the real SDK
// client to the loopback Lambda server, whose worker processes run the real
// aws-lambda-go runtime. It reports invocations/s and the CPU time of this
// process (driver and server) per invocation. Each worker process runs
// with GOMAXPROCS=1, as a sandbox with one vCPU: on this host the driver,
// the server and all the environments share two cores.
//
// The in-process variant runs the tasks with the worker's handler in this
// process, without the Runtime API and its two HTTP exchanges per
// invocation: it measures the driver and the Invoke API alone.
func BenchmarkSyncInvocations(b *testing.B) {
	for _, workers := range []int{0, 2, 4, 8} {
		name := fmt.Sprintf("workers=%d", workers)
		if workers == 0 {
			name = "in-process"
		}
		b.Run(name, func(b *testing.B) {
			so := awslambdatest.Options{Workers: max(workers, 1), Concurrency: 10000, Timeout: time.Minute, Stderr: nullWriter{}, Env: []string{"GOMAXPROCS=1"}}
			if workers == 0 {
				so.Handler = awslambda.NewHandler(fanout.Handle)
			}
			srv := newFake(b, so)
			be := awslambda.New(newClient(b, srv.URL(), awslambda.NewHTTPClient(1000, time.Minute).Transport), "function",
				&awslambda.Options{Concurrency: 32, Timeout: time.Minute})
			ex := fanout.NewExecutor(sameHost{be}, &fanout.Options{Store: fileStore(b), BatchSize: 1, Concurrency: 32})
			defer ex.Close()
			// Warm up: start the worker processes.
			if _, err := fanout.Map(guard(b, time.Minute), ex, testfuncs.Noop, make([]int, 4*so.Workers)); err != nil {
				b.Fatal(err)
			}
			in := make([]int, b.N)
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			if _, err := fanout.Map(guard(b, 10*time.Minute), ex, testfuncs.Noop, in); err != nil {
				b.Fatal(err)
			}
			wall, cpu := time.Since(start), cpuTime()-cpu0
			b.ReportMetric(float64(b.N)/wall.Seconds(), "inv/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/inv")
		})
	}
}

type nullWriter struct{}

func (nullWriter) Write(p []byte) (int, error) { return len(p), nil }
