// Command bench measures gowren's driver overhead and compares its wall time
// with plain goroutines, printing a Markdown table for bench/RESULTS.md.
//
//	go run ./bench                                  # everything, a few minutes
//	go run ./bench -rounds 1                        # quicker, noisier
//	go run ./bench -rounds 1 -storage=false -nospec=false   # skip the storage table and the 90 s run of (b) without speculation
//
// The same measurements exist as Go benchmarks: go test -bench . ./bench
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/examples/montecarlo/mc"
	"github.com/gowren/gowren/fanout"
)

const (
	noopTasks = 100_000
	mcTasks   = 64
	mcSamples = 2_000_000
)

var noop = fanout.Register("bench.noop", func(_ context.Context, x int) (int, error) { return x, nil })

func main() {
	fanout.Init()
	rounds := flag.Int("rounds", 5, "repetitions of each measurement (the median is reported)")
	cloud := flag.Bool("cloud", true, "also run the simulated-cloud scenarios (about two minutes)")
	stores := flag.Bool("storage", true, "also count the storage requests per task of small, large and async jobs")
	noSpecOnly := flag.Bool("nospec", true, "with -cloud, also run scenario (b) without speculation (about 90 s)")
	mode := flag.String("mode", "", "internal: rss-local or rss-process measures one job's peak RSS in a fresh process")
	flag.Parse()
	if strings.HasPrefix(*mode, "rss-") {
		rssChild(strings.TrimPrefix(*mode, "rss-"))
		return
	}
	ctx := context.Background()
	fmt.Printf("gowren bench: %s, GOMAXPROCS %d, %s\n\n", runtime.Version(), runtime.GOMAXPROCS(0), time.Now().UTC().Format(time.RFC3339))

	fmt.Println("| measurement | value |")
	fmt.Println("| --- | --- |")
	for _, kind := range []string{"local", "process"} {
		ex := newExecutor(kind)
		warm(nil, ex)
		in := make([]int, noopTasks)
		var per []float64
		for range *rounds {
			start := time.Now()
			if _, err := fanout.Map(ctx, ex, noop, in); err != nil {
				log.Fatal(err)
			}
			per = append(per, float64(time.Since(start).Nanoseconds())/noopTasks)
		}
		ex.Close()
		fmt.Printf("| no-op task, %s, %d tasks: driver time per task | %.2f us |\n", kind, noopTasks, median(per)/1000)
	}
	for _, kind := range []string{"local", "process"} {
		fmt.Printf("| peak RSS of the driver, %d no-op tasks on %s | %s |\n", noopTasks, kind, rssOf(kind))
	}

	batches := mc.Batches(1, mcTasks, mcSamples, mc.DefaultOption)
	exs := map[string]*fanout.Executor{}
	for _, kind := range []string{"local", "process"} {
		exs[kind] = newExecutor(kind)
		warm(nil, exs[kind])
	}
	times := map[string][]float64{}
	for range *rounds {
		// Interleaved, so drift of the machine hits all three alike.
		start := time.Now()
		if _, err := goroutines(ctx, batches); err != nil {
			log.Fatal(err)
		}
		times["goroutines"] = append(times["goroutines"], time.Since(start).Seconds())
		for _, kind := range []string{"local", "process"} {
			start := time.Now()
			if _, err := fanout.Map(ctx, exs[kind], mc.Simulation, batches); err != nil {
				log.Fatal(err)
			}
			times[kind] = append(times[kind], time.Since(start).Seconds())
		}
	}
	for _, ex := range exs {
		ex.Close()
	}
	base := median(times["goroutines"])
	fmt.Printf("| Monte Carlo, %d tasks x %d samples, plain goroutines | %.3f s |\n", mcTasks, mcSamples, base)
	for _, kind := range []string{"local", "process"} {
		m := median(times[kind])
		fmt.Printf("| Monte Carlo on %s | %.3f s, %.3f x goroutines |\n", kind, m, m/base)
	}
	if *stores {
		runStorage(ctx)
	}
	if *cloud {
		runCloud(ctx, *noSpecOnly)
	}
}

// runCloud runs the simulated-cloud scenarios once each.
func runCloud(ctx context.Context, withoutSpeculation bool) {
	a := scenario{name: "(a)", tasks: 10000, taskMS: 1000, concurrency: 1000, faults: cloudLatency()}
	c := scenario{name: "(c)", tasks: 200, taskMS: 100, concurrency: 2}
	b := scenario{name: "(b)", tasks: 10000, taskMS: 1000, concurrency: 1000, faults: faultMix(1)}
	bs := b
	bs.speculation = true
	fmt.Println()
	fmt.Println("| scenario | makespan | ideal | ratio | invocations | notes |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	var fault time.Duration
	runs := []scenario{a, c, b, bs}
	if !withoutSpeculation {
		runs = []scenario{a, c, bs}
	}
	for _, s := range runs {
		o, err := s.run(ctx)
		if err != nil {
			log.Fatal(err)
		}
		st, cs := o.stats, o.chaos
		note := fmt.Sprintf("batch %d, peak in flight %d", st.BatchSize, st.PeakInFlight)
		ratio := fmt.Sprintf("%.3f x ideal", o.makespan.Seconds()/s.ideal().Seconds())
		switch s.name {
		case "(a)":
			fault = o.makespan
		case "(b)":
			ratio = fmt.Sprintf("%.3f x (a)", o.makespan.Seconds()/fault.Seconds())
			note = fmt.Sprintf("speculation %v; injected: %d failed before, %d after, %d throttles, %d duplicates, %d crashes, %d stragglers; %d retries, %d backups; every result correct, each once",
				s.speculation, cs.FailedBefore, cs.FailedAfter, cs.Throttles, cs.Duplicates, cs.Crashes, cs.Stragglers, st.Retries, st.Backups)
		}
		fmt.Printf("| %s %d x %d ms, concurrency %d | %.2f s | %.1f s | %s | %d | %s |\n",
			s.name, s.tasks, s.taskMS, s.concurrency, o.makespan.Seconds(), s.ideal().Seconds(), ratio, st.Invocations, note)
	}
}

// goroutines runs the batches on GOMAXPROCS goroutines pulling from a
// channel: the baseline a Go programmer would write by hand.
func goroutines(ctx context.Context, batches []mc.Batch) ([]mc.Partial, error) {
	out := make([]mc.Partial, len(batches))
	errs := make([]error, len(batches))
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i], errs[i] = mc.Simulate(ctx, batches[i])
			}
		}()
	}
	for i := range batches {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// warm starts the backend's workers so that start-up is not measured.
func warm(b interface{ Fatal(...any) }, ex *fanout.Executor) {
	in := make([]int, 64)
	if _, err := fanout.Map(context.Background(), ex, noop, in); err != nil {
		if b != nil {
			b.Fatal(err)
		}
		log.Fatal(err)
	}
}

// rssOf runs one 100,000-task job in a fresh copy of this program and
// returns its peak resident set size.
func rssOf(kind string) string {
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	out, err := exec.Command(exe, "-mode", "rss-"+kind).Output()
	if err != nil {
		log.Fatalf("rss child: %v", err)
	}
	kb, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		log.Fatalf("rss child said %q", out)
	}
	return fmt.Sprintf("%.1f MB", float64(kb)/1024)
}

func rssChild(kind string) {
	ex := newExecutor(kind)
	if _, err := fanout.Map(context.Background(), ex, noop, make([]int, noopTasks)); err != nil {
		log.Fatal(err)
	}
	ex.Close()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	fmt.Println(ru.Maxrss) // kilobytes on Linux
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newExecutor returns an executor on a local or process backend with
// GOMAXPROCS workers.
func newExecutor(kind string) *fanout.Executor {
	var be backends.Backend
	switch kind {
	case "local":
		be = local.New(nil)
	case "process":
		be = process.New(&process.Options{Workers: runtime.GOMAXPROCS(0)})
	default:
		log.Fatalf("unknown backend kind %q", kind)
	}
	return fanout.NewExecutor(be, &fanout.Options{Logger: quiet})
}
