// Command bench measures gowren's driver overhead, its scheduling against
// the ideal, and its behaviour under faults, printing Markdown tables for
// bench/RESULTS.md and, for every scenario, machine-readable lines
//
//	RESULT <name> key=value ...
//
// (see result). Run it from the module root:
//
//	go run ./bench                                  # everything, about 8 minutes on 2 idle cores
//	go run ./bench -rounds 1                        # quicker, noisier
//	go run ./bench -rounds 1 -storage=false -nospec=false   # skip the storage table and the 90 s run of (b) without speculation
//	go run ./bench -scenarios engine -faultruns 5   # the targets of issue [engine]
//	go run ./bench -scenarios skew,cut              # some scenarios only
//	go run ./bench -scenario wan                    # burst-tree-wan alone; as root (network namespaces)
//
// The scenarios (-scenarios takes a comma-separated list of these names, or
// the groups all, core and engine):
//
//	noop         driver time per no-op task, 100,000 tasks, local and process
//	rss          peak RSS of a fresh driver running 100,000 no-op tasks
//	montecarlo   the Monte Carlo example against plain goroutines
//	storage      storage requests per task (also off with -storage=false)
//	cloud        simulated cloud: (a), (c), (b) without speculation (unless
//	             -nospec=false), and -faultruns pairs of (a) and (b) with
//	             speculation (also off with -cloud=false)
//	skew         400 sleeping tasks, a quarter 10 x longer, on 4 slots
//	throttle     5,000 x 200 ms with 7% of invocations throttled, against the
//	             same job without throttles
//	cap          a platform cap of 300 under an executor window of 1,000
//	speculation  backups sent for 4,000 tasks of 20-50 ms without faults
//	cut          jobs cancelled (Cancel, deadline) part-way: how many
//	             finished tasks' results the job returned
//	burst        10,000 sleeping tasks on simulated clouds that ramp as
//	             Lambda and SCF do (burst-single, burst-sharded, the
//	             sharded job behind a simulated uplink with and without an
//	             invoker tree, burst-multicloud), then burst-wan and
//	             burst-tree-wan: without and with an invoker tree, over real
//	             sockets on a WAN-shaped path between two network
//	             namespaces (needs root; see wan.go), once per -wantrees
//	wan          burst-wan and burst-tree-wan alone
//
// core is noop, rss and montecarlo; engine is the scenarios of issue
// [engine]: skew, noop, rss, throttle, cap, cloud, speculation and cut.
//
// Some of the measurements exist as Go benchmarks too: go test -bench . ./bench
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
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

// scenarioNames lists the scenarios in the order they run.
var scenarioNames = []string{"noop", "rss", "montecarlo", "storage", "cloud", "skew", "throttle", "cap", "speculation", "cut", "burst", "wan"}

var scenarioGroups = map[string][]string{
	// all leaves out burst, which takes about five minutes of 10,000
	// sleeping tasks, and wan, its last part: run them by name.
	"all":    scenarioNames[:len(scenarioNames)-2],
	"core":   {"noop", "rss", "montecarlo"},
	"engine": {"skew", "noop", "rss", "throttle", "cap", "cloud", "speculation", "cut"},
}

// selectScenarios parses the -scenarios list into a set.
func selectScenarios(list string) (map[string]bool, error) {
	set := map[string]bool{}
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if g, ok := scenarioGroups[name]; ok {
			for _, n := range g {
				set[n] = true
			}
			continue
		}
		if !slices.Contains(scenarioNames, name) {
			return nil, fmt.Errorf("unknown scenario %q: want a comma-separated list of %s, or all, core, engine",
				name, strings.Join(scenarioNames, ", "))
		}
		set[name] = true
	}
	return set, nil
}

func main() {
	fanout.Init()
	rounds := flag.Int("rounds", 3, "repetitions of each measurement of the core table (the median is reported), of each skew combination and of the throttle pair; the speculation job runs max(5, rounds) times")
	cloud := flag.Bool("cloud", true, "run the simulated-cloud scenarios (a), (b), (c) when selected (about two minutes)")
	stores := flag.Bool("storage", true, "count the storage requests per task of small, large and async jobs when selected")
	noSpecOnly := flag.Bool("nospec", true, "with the cloud scenario, also run (b) without speculation (about 90 s)")
	faultRuns := flag.Int("faultruns", 1, "with the cloud scenario, how many times to run the pair (a), (b) with speculation")
	cuts := flag.Int("cuts", 3, "cut scenario: cancellation moments per backend and trigger")
	seed := flag.Uint64("seed", 1, "seed of the skew, speculation and cut task lengths and positions, the throttle and cap faults, and the cut moments (the fault mix of (b) keeps its own)")
	burstScale := flag.Float64("burstscale", 1, "burst scenario: scale every duration (task times, refill periods) by this factor; 1 is the issue's setting")
	burstShards := flag.Int("shards", 10, "burst scenario: functions of burst-sharded")
	list := flag.String("scenarios", "all", "comma-separated scenarios to run: "+strings.Join(scenarioNames, ", ")+", or the groups all, core, engine")
	flag.StringVar(list, "scenario", "all", "the same as -scenarios")
	wanTrees := flag.String("wantrees", "0,100", "burst scenario, burst-tree-wan: the invoker tree fan-outs to run, comma-separated (0: the driver sends every task)")
	wanTasks := flag.Int("wantasks", 10_000, "burst scenario, burst-tree-wan: the job's tasks (10,000 is the issue's setting)")
	wanTask := flag.Duration("wantask", 10*time.Second, "burst scenario, burst-tree-wan: how long each task sleeps")
	wanAsync := flag.Bool("wanasync", false, "burst scenario, burst-tree-wan: send asynchronous invocations")
	wanRate := flag.String("wanrate", wanRate, "burst scenario, burst-tree-wan: the driver's uplink rate, as tc's tbf takes it, or off (a control: no limit)")
	wanRTT := flag.Duration("wanrtt", wanRTT, "burst scenario, burst-tree-wan: the round trip the proxy adds (0 for a control)")
	wanPrefault := flag.Int("wanprefault", 2048, "burst scenario, burst-tree-wan: MiB of memory the emulated cloud faults in before the job, as a platform's environments have theirs (0: none, each first touch faults during the job)")
	mode := flag.String("mode", "", "internal: rss-local or rss-process measures one job's peak RSS in a fresh process; wan-cloud, wan-driver and wan-proxy are the sides of burst-tree-wan")
	wanConfig := flag.String("wanconf", "", "internal: the configuration of -mode wan-cloud, wan-driver and wan-proxy, as JSON")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if side, ok := strings.CutPrefix(*mode, "wan-"); ok {
		var conf wanConf
		if err := json.Unmarshal([]byte(*wanConfig), &conf); err != nil {
			log.Fatalf("-wanconf: %v", err)
		}
		switch side {
		case "cloud":
			wanCloud(conf)
		case "driver":
			wanDriver(conf)
		case "proxy":
			wanProxy(conf)
		default:
			log.Fatalf("unknown -mode %q: want rss-local, rss-process, wan-cloud, wan-driver or wan-proxy", *mode)
		}
		return
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if strings.HasPrefix(*mode, "rss-") {
		rssChild(strings.TrimPrefix(*mode, "rss-"))
		return
	}
	run, err := selectScenarios(*list)
	if err != nil {
		log.Fatal(err)
	}
	if !*cloud {
		delete(run, "cloud")
	}
	if !*stores {
		delete(run, "storage")
	}
	*rounds = max(*rounds, 1)
	trees, err := parseTrees(*wanTrees)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	fmt.Printf("gowren bench: %s, GOMAXPROCS %d, %s%s\n", runtime.Version(), runtime.GOMAXPROCS(0), time.Now().UTC().Format(time.RFC3339), loadAverage())
	defer func() { fmt.Printf("\nend: %s%s\n", time.Now().UTC().Format(time.RFC3339), loadAverage()) }()
	if run["noop"] || run["rss"] || run["montecarlo"] {
		fmt.Println()
		fmt.Println("| measurement | value |")
		fmt.Println("| --- | --- |")
	}
	if run["noop"] {
		runNoop(ctx, *rounds)
	}
	if run["rss"] {
		for _, kind := range []string{"local", "process"} {
			mb := rssOf(kind)
			fmt.Printf("| peak RSS of the driver, %d no-op tasks on %s | %.1f MB |\n", noopTasks, kind, mb)
			result("rss", "backend", kind, "tasks", noopTasks, "mb", mb, "target_mb", 60)
		}
	}
	if run["montecarlo"] {
		runMonteCarlo(ctx, *rounds)
	}
	flushResults()
	for _, sc := range []struct {
		name string
		run  func()
	}{
		{"storage", func() { runStorage(ctx) }},
		{"cloud", func() { runCloud(ctx, *noSpecOnly, max(*faultRuns, 1)) }},
		{"skew", func() { runSkew(ctx, *rounds, *seed) }},
		{"throttle", func() { runThrottle(ctx, *rounds, *seed) }},
		{"cap", func() { runCap(ctx, *seed) }},
		{"speculation", func() { runSpeculation(ctx, max(*rounds, 5), *seed) }},
		{"cut", func() { runCut(ctx, max(*cuts, 1), *seed) }},
		{"burst", func() {
			runBurst(ctx, *burstScale, max(*burstShards, 1))
			flushResults()
			runWAN(ctx, max(*wanTasks, 1), *wanTask, trees, *wanAsync, *wanRate, max(*wanRTT, 0), int64(max(*wanPrefault, 0))<<20)
		}},
		{"wan", func() {
			if !run["burst"] {
				runWAN(ctx, max(*wanTasks, 1), *wanTask, trees, *wanAsync, *wanRate, max(*wanRTT, 0), int64(max(*wanPrefault, 0))<<20)
			}
		}},
	} {
		if run[sc.name] {
			sc.run()
			flushResults()
		}
	}
}

// runNoop measures the driver time per no-op task.
func runNoop(ctx context.Context, rounds int) {
	for _, kind := range []string{"local", "process"} {
		ex := newExecutor(kind)
		warm(nil, ex)
		in := make([]int, noopTasks)
		var per []float64
		for range rounds {
			start := time.Now()
			if _, err := fanout.Map(ctx, ex, noop, in); err != nil {
				log.Fatal(err)
			}
			per = append(per, float64(time.Since(start).Nanoseconds())/noopTasks)
		}
		ex.Close()
		us := median(per) / 1000
		fmt.Printf("| no-op task, %s, %d tasks: driver time per task | %.2f us |\n", kind, noopTasks, us)
		kv := []any{"backend", kind, "tasks", noopTasks, "rounds", rounds, "us_per_task", us, "min", slices.Min(per) / 1000, "max", slices.Max(per) / 1000}
		if kind == "local" {
			kv = append(kv, "target_us", 2)
		}
		result("noop", kv...)
	}
}

// runMonteCarlo compares the Monte Carlo example on plain goroutines and on
// the local and process backends.
func runMonteCarlo(ctx context.Context, rounds int) {
	batches := mc.Batches(1, mcTasks, mcSamples, mc.DefaultOption)
	exs := map[string]*fanout.Executor{}
	for _, kind := range []string{"local", "process"} {
		exs[kind] = newExecutor(kind)
		warm(nil, exs[kind])
	}
	times := map[string][]float64{}
	for range rounds {
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
	result("montecarlo", "backend", "goroutines", "tasks", mcTasks, "samples", mcSamples, "s", base)
	for _, kind := range []string{"local", "process"} {
		m := median(times[kind])
		fmt.Printf("| Monte Carlo on %s | %.3f s, %.3f x goroutines |\n", kind, m, m/base)
		result("montecarlo", "backend", kind, "tasks", mcTasks, "samples", mcSamples, "s", m, "ratio", m/base)
	}
}

// runCloud runs the simulated-cloud scenarios: (a), (c) and, when
// withoutSpeculation, (b) without speculation once each, and then (b) with
// speculation; faultRuns > 1 repeats the pair (a), (b) with speculation, each
// (b) compared with the (a) just before it.
func runCloud(ctx context.Context, withoutSpeculation bool, faultRuns int) {
	a := scenario{name: "(a)", tasks: 10000, taskMS: 1000, concurrency: 1000, faults: cloudLatency()}
	c := scenario{name: "(c)", tasks: 200, taskMS: 100, concurrency: 2}
	b := scenario{name: "(b)", tasks: 10000, taskMS: 1000, concurrency: 1000, faults: faultMix(1)}
	bs := b
	bs.speculation = true
	fmt.Println()
	fmt.Println("| scenario | makespan | ideal | ratio | invocations | notes |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	var fault time.Duration
	for run := 1; run <= faultRuns; run++ {
		runs := []scenario{a, bs}
		if run == 1 {
			runs = []scenario{a, c, bs}
			if withoutSpeculation {
				runs = []scenario{a, c, b, bs}
			}
		}
		for _, s := range runs {
			o, err := s.run(ctx)
			if err != nil {
				log.Fatal(err)
			}
			st, cs := o.stats, o.chaos
			note := fmt.Sprintf("batch %d, peak in flight %d", st.BatchSize, st.PeakInFlight)
			ideal := o.makespan.Seconds() / s.ideal().Seconds()
			ratio := fmt.Sprintf("%.3f x ideal", ideal)
			switch s.name {
			case "(a)":
				fault = o.makespan
				result("cloud", "scenario", "a", "run", run, "tasks", s.tasks, "task_ms", s.taskMS, "concurrency", s.concurrency,
					"makespan_s", o.makespan.Seconds(), "ideal_s", s.ideal().Seconds(), "ratio_ideal", ideal,
					"invocations", st.Invocations, "target", 1.05)
			case "(c)":
				result("cloud", "scenario", "c", "run", run, "tasks", s.tasks, "task_ms", s.taskMS, "concurrency", s.concurrency,
					"makespan_s", o.makespan.Seconds(), "ideal_s", s.ideal().Seconds(), "ratio_ideal", ideal,
					"invocations", st.Invocations, "target_s", 10.2)
			case "(b)":
				vsA := o.makespan.Seconds() / fault.Seconds()
				ratio = fmt.Sprintf("%.3f x (a)", vsA)
				note = fmt.Sprintf("speculation %v; injected: %d failed before, %d after, %d throttles, %d duplicates, %d crashes, %d stragglers; %d retries, %d backups; every result correct, each once",
					s.speculation, cs.FailedBefore, cs.FailedAfter, cs.Throttles, cs.Duplicates, cs.Crashes, cs.Stragglers, st.Retries, st.Backups)
				kv := []any{"run", run, "a_s", fault.Seconds(), "b_s", o.makespan.Seconds(), "ratio", vsA,
					"invocations", st.Invocations, "retries", st.Retries, "backups", st.Backups,
					"failed_before", cs.FailedBefore, "failed_after", cs.FailedAfter, "throttles", cs.Throttles,
					"duplicates", cs.Duplicates, "crashes", cs.Crashes, "stragglers", cs.Stragglers}
				if s.speculation {
					result("faultmix", append(kv, "target", 1.4)...)
				} else {
					result("cloud", append([]any{"scenario", "b-nospec"}, kv...)...)
				}
			}
			fmt.Printf("| %s %d x %d ms, concurrency %d | %.2f s | %.1f s | %s | %d | %s |\n",
				s.name, s.tasks, s.taskMS, s.concurrency, o.makespan.Seconds(), s.ideal().Seconds(), ratio, st.Invocations, note)
		}
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
// returns its peak resident set size in MB.
func rssOf(kind string) float64 {
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
	return float64(kb) / 1024
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

// loadAverage returns ", load average 1 5 15" from /proc/loadavg, or "" where
// there is none: other work on the machine skews every ratio.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return ", load average " + strings.Join(f[:3], " ")
}

// median returns the middle value of xs (the upper one of an even count).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// pendingResults holds the RESULT lines of the scenario running, printed
// by flushResults after its table so that the table stays whole.
var pendingResults []string

// result records one machine-readable line, "RESULT name key=value ...",
// from alternating keys and values, for flushResults to print. Floats get
// up to four decimals (no exponent), slices of numbers are comma-separated,
// and spaces in strings become underscores, so that a line splits on spaces
// into its fields.
func result(name string, kv ...any) {
	pendingResults = append(pendingResults, resultLine(name, kv...))
}

// flushResults prints the RESULT lines recorded since the last call.
func flushResults() {
	if len(pendingResults) == 0 {
		return
	}
	fmt.Println()
	for _, l := range pendingResults {
		fmt.Println(l)
	}
	pendingResults = nil
}

func resultLine(name string, kv ...any) string {
	var b strings.Builder
	b.WriteString("RESULT ")
	b.WriteString(name)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%s", kv[i], resultValue(kv[i+1]))
	}
	return b.String()
}

func resultValue(v any) string {
	switch v := v.(type) {
	case float64:
		s := strconv.FormatFloat(v, 'f', 4, 64)
		s = strings.TrimRight(s, "0")
		return strings.TrimSuffix(s, ".")
	case time.Duration:
		return resultValue(v.Seconds())
	case []float64:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = resultValue(x)
		}
		return strings.Join(parts, ",")
	case []int:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = strconv.Itoa(x)
		}
		return strings.Join(parts, ",")
	case string:
		return strings.ReplaceAll(v, " ", "_")
	}
	return fmt.Sprint(v)
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
