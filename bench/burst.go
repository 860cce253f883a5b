package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"syscall"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/chaos"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/backends/multi"
	"github.com/gowren/gowren/fanout"
)

// The burst scenarios (issue [burst]): jobs of sleeping tasks on simulated
// clouds that scale as the real ones do (backends/chaos: Lambda adds 1,000
// environments per 10 s per function; SCF 500 instances per minute per
// region within 128,000 MB), on the real clock. makespan_ratio is the
// makespan over the ideal of the same capacity without ramp limits:
// ceil(tasks / total concurrency) x task time.

// burstLatency is the simulated invocation latency of every call.
const burstLatency = 20 * time.Millisecond

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	ru := selfUsage()
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfUsage is this process's resource usage (Maxrss in KiB, as Linux
// gives it), zero where it cannot be read.
func selfUsage() syscall.Rusage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return syscall.Rusage{}
	}
	return ru
}

// burstJob runs tasks of taskTime on b and reports its line.
func burstJob(ctx context.Context, name string, b backends.Backend, tasks int, taskTime time.Duration, concurrency int, acct []*chaos.Account) {
	burstTreeJob(ctx, name, b, tasks, taskTime, concurrency, 0, acct)
}

// burstTreeJob is burstJob with an invoker tree of fan-out tree (0: none).
func burstTreeJob(ctx context.Context, name string, b backends.Backend, tasks int, taskTime time.Duration, concurrency, tree int, acct []*chaos.Account) {
	ex := fanout.NewExecutor(b, &fanout.Options{Concurrency: concurrency, BatchSize: 1, Retries: -1, Tree: tree,
		Logger: slog.New(slog.DiscardHandler)})
	defer ex.Close()
	ms := make([]int, tasks)
	for i := range ms {
		ms[i] = int(taskTime / time.Millisecond)
	}
	cpu0 := cpuTime()
	var run sleepRun
	var err error
	share, samples, split := cpuSplit(func() { run, err = runSleep(ctx, ex, ms) })
	cpu := cpuTime() - cpu0
	if err != nil {
		fmt.Printf("| %s | failed: %v |\n", name, err)
		return
	}
	ideal := time.Duration(math.Ceil(float64(tasks)/float64(concurrency))) * taskTime
	ratio := run.makespan.Seconds() / ideal.Seconds()
	// When all ran: the last task to start, from the job's submission.
	var last time.Time
	for _, t := range run.stats.PerTask {
		if t.Started.After(last) {
			last = t.Started
		}
	}
	allRunning := last.Sub(run.stats.Submitted)
	st := run.stats
	fromDriver := st.Invocations - st.ViaTree + st.Invokers
	fmt.Printf("| %s | %d x %v at concurrency %d | %.2f s | %.2f s | %.3f | %.1f s | %d throttles, %d invocations (%d from the driver), %.1f us CPU per task |\n",
		name, tasks, taskTime, concurrency, run.makespan.Seconds(), ideal.Seconds(), ratio, allRunning.Seconds(),
		st.Throttles, st.Invocations, fromDriver, float64(cpu.Microseconds())/float64(tasks))
	kv := []any{"makespan_s", run.makespan, "makespan_ratio", ratio}
	if name != "burst-multicloud" {
		kv = append(kv, "seconds_to_all_running", allRunning)
	}
	kv = append(kv, "tasks", tasks, "ideal_s", ideal, "throttles", st.Throttles, "invocations", st.Invocations,
		"invocations_from_driver", fromDriver, "driver_bytes_sent", st.BytesSent,
		"cpu_us_per_task", float64(cpu.Microseconds())/float64(tasks))
	if split {
		// The driver's own CPU: the process's less the simulated cloud's
		// (see cpuSplit).
		kv = append(kv, "driver_cpu_us_per_task", share*float64(cpu.Microseconds())/float64(tasks), "cpu_samples", samples)
	}
	for k, a := range acct {
		if d, ok := a.TimeToRunning(min(tasks, concurrency)); ok {
			kv = append(kv, fmt.Sprintf("account%d_to_all_running_s", k), d)
		}
	}
	result(name, kv...)
}

// runBurst runs burst-single, burst-sharded and burst-multicloud. scale
// shortens every duration (task times and refill periods) by its factor,
// for a quicker look; 1 is the setting.
func runBurst(ctx context.Context, scale float64, shards int) {
	fmt.Println()
	fmt.Println("| scenario | job | makespan | ideal | ratio | all running after | notes |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	dur := func(d time.Duration) time.Duration { return time.Duration(float64(d) * scale) }
	const tasks = 10_000
	scaled := func(s chaos.Scaling) chaos.Scaling {
		s.RefillEvery = dur(s.RefillEvery)
		return s
	}

	// One function, account cap 10,000: today's way.
	acct := chaos.NewAccount(chaos.AccountLimits{Concurrency: tasks})
	one := chaos.Wrap(local.New(&local.Options{Concurrency: tasks}),
		chaos.Faults{Scaling: scaled(chaos.LambdaFunction(acct)), Latency: burstLatency})
	burstJob(ctx, "burst-single", cloudSide{one}, tasks, dur(10*time.Second), tasks, []*chaos.Account{acct})

	// The same job over shards: functions of one account, each ramping
	// on its own.
	acct = chaos.NewAccount(chaos.AccountLimits{Concurrency: tasks})
	members := make([]backends.Backend, shards)
	for k := range members {
		members[k] = cloudSide{chaos.Wrap(local.New(&local.Options{Concurrency: tasks / shards}),
			chaos.Faults{Scaling: scaled(chaos.LambdaFunction(acct)), Latency: burstLatency})}
	}
	burstJob(ctx, "burst-sharded", multi.New(members...), tasks, dur(10*time.Second), tasks, []*chaos.Account{acct})

	// The sharded job from a laptop: every call from the driver crosses an
	// uplink of 80 ms round trip and 20 Mbit/s, first sending every
	// invocation itself, then through invokers of fan-out 100, whose
	// children start inside the cloud. Each call costs the link what the
	// WAN run measured on the wire besides its payload.
	for _, tree := range []int{0, 100} {
		acct = chaos.NewAccount(chaos.AccountLimits{Concurrency: tasks})
		up := chaos.NewUplink(40*time.Millisecond, 20_000_000/8).RequestOverhead(wanRequestOverhead)
		for k := range members {
			members[k] = cloudSide{chaos.Wrap(local.New(&local.Options{Concurrency: tasks / shards}),
				chaos.Faults{Scaling: scaled(chaos.LambdaFunction(acct)), Latency: burstLatency, Uplink: up})}
		}
		name := "burst-sharded-uplink"
		if tree > 0 {
			name = "burst-sharded-tree-uplink"
		}
		burstTreeJob(ctx, name, multi.New(members...), tasks, dur(10*time.Second), tasks, tree, []*chaos.Account{acct})
	}

	// One job across clouds: a Lambda function (account cap 1,000), an
	// SCF function of 512 MB (250 at once in a region of 128,000 MB, 500
	// new a minute) and local spill.
	lacct := chaos.NewAccount(chaos.LambdaAccount())
	region := chaos.SCFRegion()
	region.RefillEvery = dur(region.RefillEvery)
	sacct := chaos.NewAccount(region)
	lambda := chaos.Wrap(local.New(&local.Options{Concurrency: 1000}),
		chaos.Faults{Scaling: scaled(chaos.LambdaFunction(lacct)), Latency: burstLatency})
	scf := chaos.Wrap(local.New(&local.Options{Concurrency: 250}),
		chaos.Faults{Scaling: chaos.SCFFunction(sacct, 512), Latency: burstLatency})
	spill := local.New(&local.Options{Concurrency: 50})
	g := multi.New(cloudSide{lambda}, cloudSide{scf}, cloudSide{spill})
	burstJob(ctx, "burst-multicloud", g, 2*tasks, dur(5*time.Second), g.Limits().Concurrency, []*chaos.Account{lacct, sacct})
}
