// Command montecarlo estimates pi and prices a European call option by Monte
// Carlo simulation, fanned out over many tasks with gowren. Each task draws
// its own random stream (seed, task index), so the result does not depend on
// where or in what order the tasks run.
//
//	go run ./examples/montecarlo                        # embedded default: local goroutines
//	go run ./examples/montecarlo -backend process://    # worker subprocesses of this binary
//	GOWREN_BACKEND='lambda://montecarlo?region=us-east-1' go run ./examples/montecarlo
//	go run ./examples/montecarlo -estimate aws-lambda-arm64  # what the same work would cost on Lambda
//
// It prints the estimates, the wall time and the job's cost: on this
// machine none, unless -estimate names a platform whose prices to apply to
// the work done (aws-lambda-arm64, aws-lambda-x86_64 or tencent-scf); on a
// cloud platform its estimated bill.
//
// For AWS Lambda or Tencent SCF, deploy this same program first
// (go run ./cmd/gowren deploy lambda ./examples/montecarlo); see the README.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math"
	"os"
	"os/signal"
	"time"

	// The cloud backends and the S3 store, so that GOWREN_BACKEND and
	// GOWREN_STORE can name them and the program can be deployed as is.
	_ "github.com/gowren/gowren/backends/awslambda"
	_ "github.com/gowren/gowren/backends/tencentscf"
	"github.com/gowren/gowren/examples/montecarlo/mc"
	"github.com/gowren/gowren/fanout"
	_ "github.com/gowren/gowren/jobplot" // JobStats.WritePlot
	_ "github.com/gowren/gowren/storage/s3store"
)

func main() {
	// A worker started by a backend serves here and never returns.
	fanout.Init()

	backend := flag.String("backend", "", "backend URL (default: $GOWREN_BACKEND, else local://)")
	tasks := flag.Int("tasks", 200, "number of tasks")
	samples := flag.Int("samples", 1_000_000, "samples per task")
	seed := flag.Uint64("seed", 1, "random seed")
	progress := flag.Bool("progress", false, "show the job's progress on stderr")
	plotFile := flag.String("plot", "", "write the job's timeline to this .png or .svg file")
	estimate := flag.String("estimate", "", "price the work at this platform's rates: aws-lambda-arm64, aws-lambda-x86_64 or tencent-scf (default: the backend's; none on this machine)")
	tree := flag.Int("tree", 0, "send the invocations through an invoker tree of this fan-out (0: the driver sends each)")
	flag.Parse()
	if *backend != "" {
		os.Setenv(fanout.EnvBackend, *backend)
	}
	if *tasks < 1 || *samples < 1 {
		log.Fatal("montecarlo: -tasks and -samples must be positive")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	opts := fanout.Options{Tree: *tree}
	if *progress {
		opts.Progress = os.Stderr
	}
	if *estimate != "" {
		p, ok := fanout.PricesFor(*estimate)
		if !ok {
			log.Fatalf("montecarlo: -estimate %q: want aws-lambda-arm64, aws-lambda-x86_64 or tencent-scf", *estimate)
		}
		opts.Prices = &p
	}
	ex, err := fanout.OpenWith(ctx, &opts)
	if err != nil {
		log.Fatal(err)
	}
	defer ex.Close()

	opt := mc.DefaultOption
	start := time.Now()
	job, err := fanout.Start(ctx, ex, mc.Simulation, mc.Batches(*seed, *tasks, *samples, opt))
	if err != nil {
		log.Fatal(err)
	}
	// The job follows ctx (Ctrl-C cancels it); Wait returns once it has
	// ended, with the results of the tasks that finished.
	parts, err := job.Wait(context.Background())
	if err != nil {
		if *plotFile != "" { // the timeline shows what failed, and when
			<-job.Done()
			if perr := job.Stats().SavePlot(*plotFile); perr == nil {
				fmt.Fprintf(os.Stderr, "timeline of the failed job written to %s\n", *plotFile)
			}
		}
		log.Fatal(err)
	}
	wall := time.Since(start)
	est := mc.Combine(parts)
	exact := mc.BlackScholesCall(opt)
	st := job.Stats()

	name := os.Getenv(fanout.EnvBackend)
	if name == "" {
		name = "local://"
	}
	fmt.Printf("gowren Monte Carlo on %s: %d tasks x %d samples = %d samples\n", name, *tasks, *samples, est.Samples)
	fmt.Printf("pi          %.6f   error %+.2e   (std err %.1e)\n", est.Pi, est.Pi-math.Pi, est.PiStdErr)
	fmt.Printf("call price  %.4f     Black-Scholes %.4f   error %+.2e   (std err %.1e)\n",
		est.Price, exact, est.Price-exact, est.PriceStdErr)
	fmt.Printf("wall time   %v   (%d invocations, %d retries, %.0f samples/s)\n",
		wall.Round(time.Millisecond), st.Invocations, st.Retries, float64(est.Samples)/wall.Seconds())
	if st.Invokers > 0 {
		fmt.Printf("tree        invocations started by invokers: %d; invoker calls from the driver: %d\n", st.ViaTree, st.Invokers)
	}
	fmt.Printf("cost        %v\n", st.Cost)
	if *plotFile != "" {
		if err := st.SavePlot(*plotFile); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("timeline    written to %s\n", *plotFile)
	}
}
