package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/chaos"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/fanout"
)

// The scenarios of issue [engine]: how close the scheduler comes to the
// ideal on skewed jobs, under scattered throttles and under a platform cap,
// how many backups speculation sends without stragglers, and how many
// finished tasks' results a cancelled job still returns. They use only the
// public API, so that they run against any version of the engine.

// sleepRun is what one job of sleeping tasks did.
type sleepRun struct {
	makespan time.Duration // from before Start to Wait's return
	stats    fanout.JobStats
	// batches are the sizes of the invocations, as the tasks' Invoked times
	// group them (tasks sent in one invocation share it), largest first;
	// nil when the engine does not report Invoked times.
	batches []int
}

// runSleep runs the sleep function over ms (task i sleeps ms[i]
// milliseconds), checks that every task returned its own input exactly
// once, and waits for the job to end. When ctx ends first, the job stops
// and runSleep returns what it did with an error wrapping ctx's.
func runSleep(ctx context.Context, ex *fanout.Executor, ms []int) (sleepRun, error) {
	start := time.Now()
	j, err := fanout.Start(ctx, ex, sleep, ms)
	if err != nil {
		return sleepRun{}, err
	}
	seen := make([]bool, len(ms))
	sent := map[int64]int{}
	// Results and Wait see the job to its end, even once ctx stopped it.
	wait := context.WithoutCancel(ctx)
	for r := range j.Results(wait) {
		if r.Err != nil && ctx.Err() != nil {
			continue // stopped with the job
		}
		if r.Err != nil || r.Value != ms[r.Index] {
			return sleepRun{}, fmt.Errorf("task %d: got %v, %v; want %d", r.Index, r.Value, r.Err, ms[r.Index])
		}
		if seen[r.Index] {
			return sleepRun{}, fmt.Errorf("task %d: a second result", r.Index)
		}
		seen[r.Index] = true
		if !r.Stats.Invoked.IsZero() {
			sent[r.Stats.Invoked.UnixNano()]++
		}
	}
	_, werr := j.Wait(wait)
	run := sleepRun{makespan: time.Since(start), stats: j.Stats()}
	for _, n := range sent {
		run.batches = append(run.batches, n)
	}
	slices.Sort(run.batches)
	slices.Reverse(run.batches)
	if err := ctx.Err(); err != nil {
		return run, fmt.Errorf("job stopped after %v: %w", run.makespan.Round(time.Millisecond), err)
	}
	if werr != nil {
		return run, werr
	}
	if i := slices.Index(seen, false); i >= 0 {
		return run, fmt.Errorf("task %d: no result", i)
	}
	return run, nil
}

// idealOf is the makespan of a perfect scheduler with no overhead running
// tasks of ms milliseconds on slots slots: the longest task, or the work
// spread evenly, whichever is longer.
func idealOf(ms []int, slots int) time.Duration {
	total, longest := 0, 0
	for _, m := range ms {
		total += m
		longest = max(longest, m)
	}
	return time.Duration(max(float64(longest), float64(total)/float64(slots)) * float64(time.Millisecond))
}

// minMedMax returns the smallest, middle and largest of xs.
func minMedMax(xs []float64) (lo, mid, hi float64) {
	return slices.Min(xs), median(xs), slices.Max(xs)
}

// Skewed jobs: 400 sleeping tasks on 4 slots, a quarter of them 10 x
// longer than the rest, scattered at seeded random positions or all at the
// end of the inputs; automatic batches. A batch of long tasks sent late, or
// a large batch taken early, leaves slots idle at the end.
const (
	skewTasks  = 400
	skewSlots  = 4
	skewFactor = 10
)

type skewCase struct {
	backend string // "process" or "local"
	layout  string // "scattered" or "end"
	shortMS int
}

func skewCases() []skewCase {
	var cs []skewCase
	for _, be := range []string{"process", "local"} {
		for _, layout := range []string{"scattered", "end"} {
			for _, short := range []int{15, 30} {
				cs = append(cs, skewCase{be, layout, short})
			}
		}
	}
	return cs
}

// skewInputs returns the task lengths of a skewed job; seed places the long
// tasks of the scattered layout.
func skewInputs(layout string, shortMS int, seed uint64) []int {
	ms := make([]int, skewTasks)
	for i := range ms {
		ms[i] = shortMS
	}
	long := skewTasks / 4
	switch layout {
	case "end":
		for i := skewTasks - long; i < skewTasks; i++ {
			ms[i] = skewFactor * shortMS
		}
	case "scattered":
		r := rand.New(rand.NewPCG(seed, 0x5ce3))
		for _, i := range r.Perm(skewTasks)[:long] {
			ms[i] = skewFactor * shortMS
		}
	default:
		panic("skew layout " + layout)
	}
	return ms
}

// slotExecutor returns an executor with automatic batches on
// process://?workers=slots or on local with slots goroutines.
func slotExecutor(kind string, slots int, opts fanout.Options) *fanout.Executor {
	var be backends.Backend
	switch kind {
	case "process":
		be = process.New(&process.Options{Workers: slots})
	case "local":
		be = local.New(&local.Options{Concurrency: slots})
	default:
		log.Fatalf("unknown backend kind %q", kind)
	}
	opts.Logger = quiet
	return fanout.NewExecutor(be, &opts)
}

// skewOnce runs one skewed job and returns it with its ratio to the ideal.
func skewOnce(ctx context.Context, ex *fanout.Executor, c skewCase, seed uint64) (sleepRun, float64, error) {
	ms := skewInputs(c.layout, c.shortMS, seed)
	run, err := runSleep(ctx, ex, ms)
	if err != nil {
		return run, 0, fmt.Errorf("skew %s %s %d ms: %w", c.backend, c.layout, c.shortMS, err)
	}
	return run, run.makespan.Seconds() / idealOf(ms, skewSlots).Seconds(), nil
}

func runSkew(ctx context.Context, rounds int, seed uint64) {
	exs := map[string]*fanout.Executor{}
	for _, kind := range []string{"process", "local"} {
		exs[kind] = slotExecutor(kind, skewSlots, fanout.Options{})
		warm(nil, exs[kind])
	}
	defer func() {
		for _, ex := range exs {
			ex.Close()
		}
	}()
	cases := skewCases()
	type tally struct {
		ratios, makespans  []float64
		invocations, lasts []int
		largest            []int
	}
	got := make([]tally, len(cases))
	for r := range rounds {
		// Round by round, so drift of the machine hits every case alike.
		fmt.Fprintf(os.Stderr, "skew: round %d of %d\n", r+1, rounds)
		for k, c := range cases {
			run, ratio, err := skewOnce(ctx, exs[c.backend], c, seed+uint64(r))
			if err != nil {
				log.Fatal(err)
			}
			t := &got[k]
			t.ratios = append(t.ratios, ratio)
			t.makespans = append(t.makespans, run.makespan.Seconds())
			t.invocations = append(t.invocations, run.stats.Invocations)
			t.lasts = append(t.lasts, run.stats.BatchSize)
			t.largest = append(t.largest, firstOr(run.batches, 0))
		}
	}
	fmt.Println()
	fmt.Printf("Skewed jobs: %d sleeping tasks, a quarter %d x longer, on %d slots, automatic batches; ratio = makespan / max(longest task, work / %d); %d rounds\n\n",
		skewTasks, skewFactor, skewSlots, skewSlots, rounds)
	fmt.Println("| backend | long tasks | short / long | ideal | makespan (median) | ratio min / median / max | invocations | batch size: last / largest |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- |")
	for k, c := range cases {
		t := got[k]
		ideal := idealOf(skewInputs(c.layout, c.shortMS, seed), skewSlots)
		lo, mid, hi := minMedMax(t.ratios)
		fmt.Printf("| %s | %s | %d / %d ms | %.3f s | %.3f s | %.3f / %.3f / %.3f | %s | %s / %s |\n",
			c.backend, c.layout, c.shortMS, skewFactor*c.shortMS, ideal.Seconds(), median(t.makespans), lo, mid, hi,
			resultValue(t.invocations), resultValue(t.lasts), resultValue(t.largest))
		result("skew", "backend", c.backend, "layout", c.layout, "short_ms", c.shortMS, "long_ms", skewFactor*c.shortMS,
			"tasks", skewTasks, "slots", skewSlots, "rounds", rounds, "ideal_s", ideal.Seconds(),
			"ratio_min", lo, "ratio_median", mid, "ratio_max", hi, "ratios", t.ratios, "makespans_s", t.makespans,
			"invocations", t.invocations, "batch_last", t.lasts, "batch_largest", t.largest, "target", 1.15)
	}
}

func firstOr(xs []int, def int) int {
	if len(xs) == 0 {
		return def
	}
	return xs[0]
}

// Scattered throttles: 7% of invocations refused with a throttle that gives
// no advice (no cap, no retry-after), 5,000 x 200 ms at concurrency 500,
// against the same job without throttles. A window that halves on every
// throttle spends the job at a fraction of its concurrency.
const (
	throttleTasks       = 5000
	throttleTaskMS      = 200
	throttleConcurrency = 500
	throttleRate        = 0.07
	// throttleLimit stops a throttled job that has collapsed its window
	// (the old engine took 85 s once), so that the harness ends; its
	// ratio is then a lower bound.
	throttleLimit = 20 * time.Second
)

func throttleOnce(ctx context.Context, rate float64, seed uint64) (sleepRun, chaos.Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, throttleLimit)
	defer cancel()
	b := chaos.Wrap(local.New(&local.Options{Concurrency: throttleConcurrency}), chaos.Faults{Seed: seed, Throttle: rate})
	ex := fanout.NewExecutor(b, &fanout.Options{Concurrency: throttleConcurrency, Logger: quiet})
	defer ex.Close()
	ms := make([]int, throttleTasks)
	for i := range ms {
		ms[i] = throttleTaskMS
	}
	run, err := runSleep(ctx, ex, ms)
	return run, b.Stats(), err
}

// runThrottle runs the pair (no throttles, throttled) rounds times, each
// throttled job compared with the clean one just before it.
func runThrottle(ctx context.Context, rounds int, seed uint64) {
	ideal := time.Duration((throttleTasks+throttleConcurrency-1)/throttleConcurrency*throttleTaskMS) * time.Millisecond
	fmt.Println()
	fmt.Printf("Scattered throttles: %d x %d ms at concurrency %d on chaos.Wrap(local), %.0f%% of invocations throttled (no cap, no retry-after), against the same job without throttles; ideal %.1f s\n\n",
		throttleTasks, throttleTaskMS, throttleConcurrency, 100*throttleRate, ideal.Seconds())
	fmt.Println("| round | no throttles | throttled | ratio | invocations (clean / throttled) | throttles (injected / seen by the job) | window at the end | peak in flight |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- |")
	for r := range rounds {
		clean, _, err := throttleOnce(ctx, 0, seed+uint64(r))
		if err != nil {
			log.Fatalf("throttle, clean job: %v", err)
		}
		hit, cs, err := throttleOnce(ctx, throttleRate, seed+uint64(r))
		stopped := errors.Is(err, context.DeadlineExceeded)
		if err != nil && !stopped {
			log.Fatalf("throttle, throttled job: %v", err)
		}
		ratio := hit.makespan.Seconds() / clean.makespan.Seconds()
		took, bound := fmt.Sprintf("%.2f s", hit.makespan.Seconds()), ""
		if stopped {
			took = fmt.Sprintf("stopped after %.0f s, %d of %d tasks done", throttleLimit.Seconds(), hit.stats.Succeeded, throttleTasks)
			bound = ">= "
		}
		fmt.Printf("| %d | %.2f s | %s | %s%.3f | %d / %d | %d / %d | %d | %d |\n", r+1, clean.makespan.Seconds(), took, bound, ratio,
			clean.stats.Invocations, hit.stats.Invocations, cs.Throttles, hit.stats.Throttles, hit.stats.Window, hit.stats.PeakInFlight)
		result("throttle", "round", r+1, "tasks", throttleTasks, "task_ms", throttleTaskMS, "concurrency", throttleConcurrency, "rate", throttleRate,
			"ideal_s", ideal.Seconds(), "clean_s", clean.makespan.Seconds(), "throttled_s", hit.makespan.Seconds(), "ratio", ratio,
			"throttles", cs.Throttles, "job_throttles", hit.stats.Throttles, "window_end", hit.stats.Window,
			"invocations_clean", clean.stats.Invocations, "invocations_throttled", hit.stats.Invocations,
			"peak_in_flight", hit.stats.PeakInFlight, "retries", hit.stats.Retries, "stopped", stopped, "done", hit.stats.Succeeded, "target", 1.2)
	}
}

// A real cap: the platform admits 300 invocations at once (chaos
// Faults.Concurrency) and throttles the rest, under an executor window of
// 1,000. Enough 200 ms tasks to keep 300 slots busy for about 15 s. The
// invocations in flight are sampled every 50 ms from the chaos wrapper, the
// job's Running and Window every 500 ms (a JobStats snapshot covers every
// task, so it is not free).
const (
	capLimit       = 300
	capConcurrency = 1000
	capTaskMS      = 200
	capSeconds     = 15
	capTasks       = capSeconds * 1000 / capTaskMS * capLimit
	// capLimitTime stops a job that keeps far fewer than the cap in flight
	// (the old engine took 42 to 49 s), so that the harness ends.
	capLimitTime = 60 * time.Second
)

type capSample struct {
	at                        time.Duration
	inFlight, running, window int
	job                       bool // running and window are set
}

func runCap(ctx context.Context, seed uint64) {
	b := chaos.Wrap(local.New(&local.Options{Concurrency: capConcurrency}), chaos.Faults{Seed: seed, Concurrency: capLimit})
	ex := fanout.NewExecutor(b, &fanout.Options{Concurrency: capConcurrency, Logger: quiet})
	defer ex.Close()
	ms := make([]int, capTasks)
	for i := range ms {
		ms[i] = capTaskMS
	}
	jctx, cancel := context.WithTimeout(ctx, capLimitTime)
	defer cancel()
	start := time.Now()
	j, err := fanout.Start(jctx, ex, sleep, ms)
	if err != nil {
		log.Fatal(err)
	}
	var samples []capSample
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			s := capSample{at: time.Since(start), inFlight: b.Stats().InFlight}
			if n%10 == 0 {
				js := j.Stats()
				s.running, s.window, s.job = js.Running, js.Window, true
			}
			samples = append(samples, s)
		}
	})
	out, err := j.Wait(ctx)
	took := time.Since(start)
	close(stop)
	wg.Wait()
	stopped := jctx.Err() != nil
	switch {
	case stopped:
	case err != nil:
		log.Fatalf("cap: %v", err)
	default:
		for i, v := range out {
			if v != capTaskMS {
				log.Fatalf("cap: task %d returned %d", i, v)
			}
		}
	}
	st, cs := j.Stats(), b.Stats()
	// The median in flight in each second of the job, for the eye.
	var perSecond [][]float64
	for _, s := range samples {
		k := int(s.at / time.Second)
		for len(perSecond) <= k {
			perSecond = append(perSecond, nil)
		}
		perSecond[k] = append(perSecond[k], float64(s.inFlight))
	}
	timeline := make([]int, 0, len(perSecond))
	for _, xs := range perSecond {
		if len(xs) > 0 {
			timeline = append(timeline, int(median(xs)))
		}
	}
	var inFlight, running, window []float64
	for _, s := range samples {
		if s.at < took/2 {
			continue
		}
		inFlight = append(inFlight, float64(s.inFlight))
		if s.job {
			running = append(running, float64(s.running))
			window = append(window, float64(s.window))
		}
	}
	if len(inFlight) == 0 {
		log.Fatalf("cap: no samples in the second half of a %v job", took)
	}
	slices.Sort(inFlight)
	q := func(p float64) float64 { return inFlight[min(len(inFlight)-1, int(p*float64(len(inFlight))))] }
	med := median(inFlight)
	ideal := time.Duration(capTasks/capLimit*capTaskMS) * time.Millisecond
	medOr := func(xs []float64) float64 {
		if len(xs) == 0 {
			return 0
		}
		return median(xs)
	}
	fmt.Println()
	fmt.Printf("A real cap: chaos Faults{Concurrency: %d} under executor Concurrency %d, %d x %d ms; invocations in flight sampled every 50 ms, over the second half of the job\n\n",
		capLimit, capConcurrency, capTasks, capTaskMS)
	fmt.Println("| makespan | ideal | in flight: median (p10 / p90) | job's Running / Window (median) | cap throttles | job throttles | invocations | peak in flight |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- |")
	makespan := fmt.Sprintf("%.2f s", took.Seconds())
	if stopped {
		makespan = fmt.Sprintf("stopped after %.0f s, %d of %d tasks done", capLimitTime.Seconds(), st.Succeeded, capTasks)
	}
	fmt.Printf("| %s | %.1f s | %.0f (%.0f / %.0f) | %.0f / %.0f | %d | %d | %d | %d |\n", makespan, ideal.Seconds(),
		med, q(0.1), q(0.9), medOr(running), medOr(window), cs.CapThrottles, st.Throttles, st.Invocations, cs.PeakInFlight)
	fmt.Printf("\nIn flight, median of each second: %s\n", strings.Trim(fmt.Sprint(timeline), "[]"))
	result("cap", "cap", capLimit, "concurrency", capConcurrency, "tasks", capTasks, "task_ms", capTaskMS,
		"makespan_s", took.Seconds(), "ideal_s", ideal.Seconds(), "inflight_median", med, "inflight_p10", q(0.1), "inflight_p90", q(0.9),
		"inflight_vs_cap", med/capLimit, "samples", len(inFlight), "running_median", medOr(running), "window_median", medOr(window),
		"window_end", st.Window, "cap_throttles", cs.CapThrottles, "job_throttles", st.Throttles, "invocations", st.Invocations,
		"peak_in_flight", cs.PeakInFlight, "inflight_per_s", timeline, "stopped", stopped, "done", st.Succeeded, "target", capLimit, "tolerance", 0.1)
}

// Speculation waste: 4,000 tasks of 20 to 50 ms (uniform, seeded), no
// faults, speculation on. No task is a straggler (the longest is 1.4 x the
// median), so every backup is waste. 256 slots: the job is then about 16
// rounds deep, as jobs on cloud functions are (a few rounds, not hundreds),
// so the tail, where free slots invite backups, is a real share of it; the
// driver keeps up on two cores (about 7,000 tasks/s); and automatic batching
// puts several tasks in an invocation, whose age a per-invocation rule
// compares with one task's median. With 64 slots the old engine sent no
// backup at all (its copies must be out 100 ms, and its invocations held
// one or two tasks of at most 50 ms), which would test nothing.
const (
	specTasks = 4000
	specSlots = 256
)

func specInputs(seed uint64) []int {
	r := rand.New(rand.NewPCG(seed, 0x5bec))
	ms := make([]int, specTasks)
	for i := range ms {
		ms[i] = 20 + r.IntN(31)
	}
	return ms
}

func specOnce(ctx context.Context, ex *fanout.Executor, seed uint64) (sleepRun, time.Duration, error) {
	ms := specInputs(seed)
	run, err := runSleep(ctx, ex, ms)
	return run, idealOf(ms, specSlots), err
}

// runSpeculation runs the job rounds times, each with other task lengths.
func runSpeculation(ctx context.Context, rounds int, seed uint64) {
	ex := slotExecutor("local", specSlots, fanout.Options{Speculation: true})
	defer ex.Close()
	fmt.Println()
	fmt.Printf("Speculation waste: %d tasks of 20-50 ms (uniform), no faults, Speculation on, local with %d slots\n\n", specTasks, specSlots)
	fmt.Println("| round | backups | backups / tasks | makespan | ideal | invocations |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	for r := range rounds {
		run, ideal, err := specOnce(ctx, ex, seed+uint64(r))
		if err != nil {
			log.Fatalf("speculation: %v", err)
		}
		rate := float64(run.stats.Backups) / specTasks
		fmt.Printf("| %d | %d | %.2f%% | %.3f s | %.3f s | %d |\n", r+1, run.stats.Backups, 100*rate,
			run.makespan.Seconds(), ideal.Seconds(), run.stats.Invocations)
		result("speculation", "round", r+1, "tasks", specTasks, "slots", specSlots, "backups", run.stats.Backups,
			"backup_rate", rate, "makespan_s", run.makespan.Seconds(), "ideal_s", ideal.Seconds(),
			"ratio_ideal", run.makespan.Seconds()/ideal.Seconds(), "invocations", run.stats.Invocations, "target", 0.01)
	}
}

// Cut off by cancel or deadline: jobs of 2,000 tasks of 2 to 20 ms on 4
// slots, stopped at a seeded random moment between a tenth and nine tenths
// of the ideal makespan, by Job.Cancel or by a deadline on Start's context.
// Each task records that it finished just before it returns its value: in a
// set in this process on the local backend, as a marker file per task in a
// temporary directory on the process backend, whose tasks run in worker
// processes. Once the job has ended, the finished tasks are counted and
// compared with the results the job returned.
//
// The results come from Start and Results: Results gives each index once
// with its own Err, so a returned result is one with Err == nil (and its
// value is checked). Map and Wait cannot tell: their joined error leaves
// out the tasks that failed only because the job stopped, and their slice
// holds zero values there.
const (
	cutTasks = 2000
	cutSlots = 4
)

// cutTask is the input of the cut scenario's function.
type cutTask struct {
	Run   uint64 // the driver's record of finished tasks (local backend)
	Dir   string // where to leave a marker file instead (process backend)
	Index int
	MS    int
}

// cutRuns maps a run number to its *finishedSet, for tasks on the local
// backend.
var (
	cutRuns   sync.Map
	cutRunSeq atomic.Uint64
)

type finishedSet struct{ done []atomic.Bool }

var cutSleep = fanout.Register("bench.cutSleep", func(ctx context.Context, t cutTask) (int, error) {
	timer := time.NewTimer(time.Duration(t.MS) * time.Millisecond)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if t.Dir != "" {
		if err := os.WriteFile(filepath.Join(t.Dir, strconv.Itoa(t.Index)), nil, 0o644); err != nil {
			return 0, err
		}
	} else if s, ok := cutRuns.Load(t.Run); ok {
		s.(*finishedSet).done[t.Index].Store(true)
	}
	return t.Index + 1, nil
})

// cutOutcome is what one cut job did.
type cutOutcome struct {
	at       time.Duration // when the job was told to stop, after Start was called
	ended    time.Duration // when Wait returned, after Start was called
	finished int           // tasks that recorded their end before the job ended
	returned int           // results with Err == nil
	kept     int           // finished tasks among them
	early    bool          // the job ended before the cut
	stats    fanout.JobStats
}

// keptRate is the share of finished tasks whose results the job returned.
func (o cutOutcome) keptRate() float64 {
	if o.finished == 0 {
		return 1
	}
	return float64(o.kept) / float64(o.finished)
}

func cutInputs(seed, k uint64) []int {
	r := rand.New(rand.NewPCG(seed, 0xc07+k))
	ms := make([]int, cutTasks)
	for i := range ms {
		ms[i] = 2 + r.IntN(19)
	}
	return ms
}

// cutMoment is the k-th cut of the job: between 10% and 90% of its ideal
// makespan.
func cutMoment(ms []int, seed, k uint64) time.Duration {
	r := rand.New(rand.NewPCG(seed, 0xc7+k))
	return time.Duration((0.1 + 0.8*r.Float64()) * float64(idealOf(ms, cutSlots)))
}

// cutOnce runs a job of tasks sleeping ms and stops it at `at`, by Cancel
// (trigger "cancel") or a deadline ("deadline").
func cutOnce(ctx context.Context, ex *fanout.Executor, kind, trigger string, ms []int, at time.Duration) (cutOutcome, error) {
	in := make([]cutTask, len(ms))
	var set *finishedSet
	var dir string
	if kind == "process" {
		d, err := os.MkdirTemp("", "gowren-bench-cut-")
		if err != nil {
			return cutOutcome{}, err
		}
		defer os.RemoveAll(d)
		dir = d
	} else {
		set = &finishedSet{done: make([]atomic.Bool, len(ms))}
		run := cutRunSeq.Add(1)
		cutRuns.Store(run, set)
		defer cutRuns.Delete(run)
		for i := range in {
			in[i].Run = run
		}
	}
	for i := range in {
		in[i].Dir, in[i].Index, in[i].MS = dir, i, ms[i]
	}
	start := time.Now()
	jctx := ctx
	if trigger == "deadline" {
		var cancel context.CancelFunc
		jctx, cancel = context.WithDeadline(ctx, start.Add(at))
		defer cancel()
	}
	j, err := fanout.Start(jctx, ex, cutSleep, in)
	if err != nil {
		return cutOutcome{}, err
	}
	if trigger == "cancel" {
		t := time.AfterFunc(time.Until(start.Add(at)), j.Cancel)
		defer t.Stop()
	}
	o := cutOutcome{at: at}
	ok := make([]bool, len(ms))
	for r := range j.Results(context.Background()) {
		if r.Err != nil {
			continue
		}
		if r.Value != r.Index+1 {
			return o, fmt.Errorf("task %d returned %d", r.Index, r.Value)
		}
		ok[r.Index] = true
		o.returned++
	}
	_, err = j.Wait(context.Background())
	o.ended = time.Since(start)
	o.stats = j.Stats()
	// Counted at once: a task that records its end after the job ended
	// finished too late for any engine to return it.
	done := make([]bool, len(ms))
	if set != nil {
		for i := range done {
			done[i] = set.done[i].Load()
		}
	} else {
		ents, rerr := os.ReadDir(dir)
		if rerr != nil {
			return o, rerr
		}
		for _, e := range ents {
			i, perr := strconv.Atoi(e.Name())
			if perr != nil || i < 0 || i >= len(done) {
				return o, fmt.Errorf("stray marker %q", e.Name())
			}
			done[i] = true
		}
	}
	for i := range done {
		if done[i] {
			o.finished++
			if ok[i] {
				o.kept++
			}
		}
	}
	switch {
	case err == nil:
		o.early = true
	case !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded):
		return o, fmt.Errorf("job ended with %w", err)
	}
	return o, nil
}

func runCut(ctx context.Context, cuts int, seed uint64) {
	fmt.Println()
	fmt.Printf("Cut off: %d tasks of 2-20 ms on %d slots, stopped at a random moment by Job.Cancel or a deadline; kept = finished tasks whose results the job returned\n\n",
		cutTasks, cutSlots)
	fmt.Println("| backend | trigger | cut at | ended | finished | returned | kept |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	for _, kind := range []string{"local", "process"} {
		ex := slotExecutor(kind, cutSlots, fanout.Options{})
		warm(nil, ex)
		for _, trigger := range []string{"cancel", "deadline"} {
			for k := range uint64(cuts) {
				ms := cutInputs(seed, k)
				at := cutMoment(ms, seed, k)
				o, err := cutOnce(ctx, ex, kind, trigger, ms, at)
				if err != nil {
					log.Fatalf("cut %s %s: %v", kind, trigger, err)
				}
				note := ""
				if o.early {
					note = " (ended before the cut)"
				}
				fmt.Printf("| %s | %s | %.2f s | %.2f s | %d | %d | %d (%.2f%%)%s |\n", kind, trigger, o.at.Seconds(), o.ended.Seconds(),
					o.finished, o.returned, o.kept, 100*o.keptRate(), note)
				result("cut", "backend", kind, "trigger", trigger, "run", k+1, "tasks", cutTasks, "slots", cutSlots,
					"at_s", o.at.Seconds(), "ended_s", o.ended.Seconds(), "finished", o.finished, "returned", o.returned,
					"kept", o.kept, "kept_rate", o.keptRate(), "returned_unfinished", o.returned-o.kept, "early", o.early,
					"invocations", o.stats.Invocations, "batch_last", o.stats.BatchSize, "target", 0.99)
			}
		}
		ex.Close()
	}
}
