// Command gowren inspects, plots and cleans the jobs that gowren programs
// leave in a store, and deploys a gowren program as a cloud function.
//
// Usage:
//
//	gowren [-store URL] jobs                      list jobs with their state, objects, size and age
//	gowren [-store URL] status JOB                show a job: function, tasks, state, statistics
//	gowren [-store URL] clean [-older-than D] [-force] [-all | JOB...]   delete job data and shared values
//	gowren [-store URL] plot [-o FILE] JOB        draw a job's timeline (PNG or SVG)
//	gowren plot -stats FILE [-o FILE]             the same from a statistics JSON file
//	gowren deploy lambda|scf [flags] [PACKAGE]    build and deploy a function
//	gowren version
//
// Flags may come before or after a command's arguments. The store URL comes
// from -store or GOWREN_STORE (file:///dir, s3://bucket/prefix?region=...,
// the same URL the program used). Jobs leave objects behind when they ran in
// async mode or with Options.KeepData, or when their driver died before
// cleaning up. So do the values a driver shared with fanout.Put, one group
// refs/<executor id>/ per Executor, when it was killed before Close or ran
// with KeepData: `jobs` counts them, `clean -older-than D` removes those of
// drivers started more than D ago (choose D longer than any driver runs),
// `clean -all` all of them.
//
// A job's state says whether its driver runs: a driver renews a lease in the
// store (jobs/<id>/drivers/<driver>) every fanout.LeaseEvery while it runs a
// job that has a manifest, and a job whose newest lease is older than
// fanout.LeaseTTL has lost its driver. `clean` keeps the jobs of running
// drivers, and with -all the shared values too, unless -force.
//
// Exit status: 0 on success, 1 when the command failed, 2 on a usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/internal/layout"
	_ "github.com/gowren/gowren/jobplot" // JobStats.WritePlot
	"github.com/gowren/gowren/storage"
	_ "github.com/gowren/gowren/storage/filestore"
	_ "github.com/gowren/gowren/storage/memstore"
	_ "github.com/gowren/gowren/storage/s3store"
)

// errUsage marks errors that exit with status 2.
var errUsage = errors.New("usage")

func main() {
	fanout.Init()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		if err != errUsage { // it says what was wrong
			fmt.Fprintln(os.Stderr, "gowren:", err)
		}
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "gowren:", err)
		os.Exit(1)
	}
}

const usage = `usage: gowren [-store URL] <command> [arguments]

commands:
  jobs                               list the jobs in the store
  status JOB                         show the objects of a job
  logs JOB [TASK]                    print what a job's tasks logged and printed
  clean [-older-than D] [-force] [-all | JOB...]  delete job data (and, without JOB, shared values)
  plot [-o FILE] JOB | -stats FILE   draw a job's timeline and concurrency (PNG or SVG)
  deploy lambda|scf [flags] [PACKAGE]  build a main package and deploy it as a cloud function
  version                            print the gowren version

The store is -store URL, else $GOWREN_STORE (file:///dir, s3://bucket/prefix?region=...).
Run 'gowren <command> -h' for a command's flags.
`

// version is the CLI's version; release builds set it with -ldflags -X.
var version = "devel"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runAt(ctx, time.Now, args, stdout, stderr)
}

// runAt is run with the clock that ages and heartbeats are judged by.
func runAt(ctx context.Context, now func() time.Time, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gowren", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	storeURL := fs.String("store", os.Getenv(fanout.EnvStore), "store URL")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "gowren", version)
		return nil
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "deploy":
		return deploy(ctx, rest, stdout, stderr)
	case "jobs", "status", "clean", "plot", "logs":
	default:
		fmt.Fprintf(stderr, "gowren: unknown command %q\n\n", cmd)
		fs.Usage()
		return errUsage
	}
	sub := flag.NewFlagSet("gowren "+cmd, flag.ContinueOnError)
	sub.SetOutput(stderr)
	sub.Usage = func() {
		fmt.Fprint(stderr, subUsage[cmd])
		sub.PrintDefaults()
	}
	var olderThan time.Duration
	var all, tmp, force bool
	var out, statsFile string
	switch cmd {
	case "clean":
		sub.DurationVar(&olderThan, "older-than", 0, "only jobs and shared values whose driver started longer ago than this (e.g. 24h)")
		sub.BoolVar(&all, "all", false, "every job and shared value (with -older-than: every one older than that)")
		sub.BoolVar(&force, "force", false, "delete jobs whose driver is still running too (their heartbeat is fresh), and with -all the shared values while a driver runs")
		sub.BoolVar(&tmp, "tmp", false, "remove the temporary stores (process:// defaults) of drivers that are gone from "+os.TempDir()+"; needs no store")
	case "plot":
		sub.StringVar(&out, "o", "timeline.png", "output file; .png or .svg")
		sub.StringVar(&statsFile, "stats", "", "read the statistics from this JSON file instead of the store")
	}
	args, err := parseInterleaved(sub, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if cmd == "plot" && statsFile != "" {
		if len(args) != 0 {
			fmt.Fprintln(stderr, "usage: gowren plot [-o FILE] JOB | -stats FILE")
			return errUsage
		}
		b, err := os.ReadFile(statsFile)
		if err != nil {
			return err
		}
		return plotStats(b, statsFile, out, stdout)
	}
	if cmd == "clean" && tmp {
		if len(args) != 0 || all {
			fmt.Fprintln(stderr, "usage: gowren clean -tmp (alone)")
			return errUsage
		}
		removed := fanout.SweepTempStores(os.TempDir(), func(p string, err error) {
			fmt.Fprintf(stderr, "gowren clean: %s: %v\n", p, err)
		})
		for _, p := range removed {
			fmt.Fprintf(stdout, "removed %s\n", p)
		}
		fmt.Fprintf(stdout, "%d temporary stores of drivers that are gone removed from %s\n", len(removed), os.TempDir())
		return nil
	}
	if *storeURL == "" {
		fmt.Fprintf(stderr, "gowren %s: no store: pass -store URL or set %s\n", cmd, fanout.EnvStore)
		return errUsage
	}
	from := "$" + fanout.EnvStore
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "store" {
			from = "-store"
		}
	})
	if err := checkStore(*storeURL, from); err != nil {
		return err
	}
	st, err := storage.Open(ctx, *storeURL)
	if err != nil {
		return err
	}
	defer st.Close()
	switch cmd {
	case "jobs":
		if len(args) != 0 {
			fmt.Fprintln(stderr, "gowren jobs: takes no arguments")
			return errUsage
		}
		return listJobs(ctx, st, now(), stdout)
	case "status":
		if len(args) != 1 {
			fmt.Fprintln(stderr, "usage: gowren status JOB")
			return errUsage
		}
		return status(ctx, st, args[0], now(), stdout)
	case "logs":
		if len(args) < 1 || len(args) > 2 {
			fmt.Fprintln(stderr, "usage: gowren logs JOB [TASK]")
			return errUsage
		}
		task := -1
		if len(args) == 2 {
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 0 {
				fmt.Fprintf(stderr, "gowren logs: task %q: want a task index, 0 or more\n", args[1])
				return errUsage
			}
			task = n
		}
		return showLogs(ctx, st, args[0], task, stdout)
	case "plot":
		if len(args) != 1 {
			fmt.Fprintln(stderr, "usage: gowren plot [-o FILE] JOB | -stats FILE")
			return errUsage
		}
		id := args[0]
		if err := checkID(id); err != nil {
			return err
		}
		b, err := st.Get(ctx, layout.JobOf(id).Stats())
		if err != nil {
			return fmt.Errorf("job %s: no saved statistics (run it with Options.KeepData, or pass -stats FILE): %w", id, err)
		}
		return plotStats(b, "job "+id, out, stdout)
	default: // clean
		if (len(args) == 0 && !all && olderThan == 0) || (len(args) > 0 && all) {
			fmt.Fprintln(stderr, "usage: gowren clean [-older-than D] [-all | JOB...]: name jobs, or pass -all or -older-than")
			return errUsage
		}
		return clean(ctx, st, args, cleanOptions{olderThan: olderThan, force: force, now: now()}, stdout, stderr)
	}
}

// checkID rejects what is not a job ID, as a usage error.
func checkID(id string) error {
	if err := layout.ValidateID(id); err != nil {
		return fmt.Errorf("%w: job %w", errUsage, err)
	}
	return nil
}

func listJobs(ctx context.Context, st storage.Store, now time.Time, w io.Writer) error {
	jobs, err := layout.Jobs(ctx, st)
	if err != nil {
		return err
	}
	refs, err := layout.RefGroups(ctx, st)
	if err != nil {
		return err
	}
	if len(jobs) == 0 {
		fmt.Fprintln(w, "no jobs in", st.URL())
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "JOB\tFUNC\tTASKS\tOBJECTS\tBYTES\tAGE\tSTATE")
		for _, j := range jobs {
			fn, tasks, state := "?", "?", "no manifest"
			if m, err := fanout.ReadManifest(ctx, st, j.ID); err == nil {
				fn, tasks = m.Func, strconv.Itoa(m.Tasks)
				state = jobState(ctx, st, m, j, now)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", j.ID, fn, tasks, j.Objects, j.Bytes, age(j.Created, now), state)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(refs) > 0 {
		objects, bytes := 0, int64(0)
		for _, g := range refs {
			objects += g.Objects
			bytes += g.Bytes
		}
		// Oldest first: the first with a time is the oldest known.
		oldest := "?"
		if i := slices.IndexFunc(refs, func(g layout.Group) bool { return !g.Created.IsZero() }); i >= 0 {
			oldest = age(refs[i].Created, now)
		}
		fmt.Fprintf(w, "shared values (fanout.Put) under %s: %d groups (one per driver's Executor), %d objects, %d bytes; oldest driver started %s ago\n",
			layout.RefsPrefix, len(refs), objects, bytes, oldest)
	}
	return nil
}

// driverRunning reports whether a job's driver is alive: the job has not
// saved its statistics, and a driver renewed its lease (the job's
// heartbeat) less than fanout.LeaseTTL ago.
func driverRunning(g layout.Group, now time.Time) bool {
	return !g.Finished && fanout.DriverAlive(g.Heartbeat, now)
}

// jobState says how far a job got and whether its driver runs:
//
//	finished: 3 ok, 0 failed                   its statistics were saved
//	cancelled: 2 ok, 0 failed, 52 cancelled    the same, for a job stopped early
//	running: ...                               its driver's heartbeat is fresh
//	driver gone: ...                           its driver stopped renewing its lease
//	unfinished: ...                            no statistics and no lease
//
// with, for an async job that did not finish, the results in the store.
func jobState(ctx context.Context, st storage.Store, m *fanout.Manifest, g layout.Group, now time.Time) string {
	if g.Finished {
		s, err := readStats(ctx, st, m.Job)
		if err != nil {
			return "finished, statistics unreadable: " + err.Error()
		}
		if s.Cancelled > 0 {
			return fmt.Sprintf("%s: %d ok, %d failed, %d cancelled", stopKind(s.StopReason()), s.Succeeded, s.Failed, s.Cancelled)
		}
		return fmt.Sprintf("finished: %d ok, %d failed", s.Succeeded, s.Failed)
	}
	results := "results were in the driver (sync job)"
	if m.Async {
		p, err := fanout.JobProgress(ctx, st, m.Job)
		if err != nil {
			return "unreadable: " + err.Error()
		}
		results = fmt.Sprintf("%d/%d results in the store", p.Succeeded+p.Failed, p.Tasks)
	}
	switch {
	case fanout.DriverAlive(g.Heartbeat, now):
		return fmt.Sprintf("running: driver alive (heartbeat %s ago), %s", age(g.Heartbeat, now), results)
	case g.Heartbeat.IsZero() && m.Async:
		return "unfinished, no driver heartbeat: " + results + " (attach to finish it)"
	case g.Heartbeat.IsZero():
		return "unfinished, no driver heartbeat: " + results
	case m.Async:
		return fmt.Sprintf("driver gone (last heartbeat %s ago): %s; attach to finish it", age(g.Heartbeat, now), results)
	default:
		return fmt.Sprintf("driver gone (last heartbeat %s ago): its results were lost with it; run the job again", age(g.Heartbeat, now))
	}
}

// stopKind names what stopped a job from the error its cancelled tasks
// record: its context was cancelled (also by a signal, as
// signal.NotifyContext does on Ctrl-C), its deadline passed, or something
// else stopped it (an abort).
func stopKind(reason string) string {
	switch {
	case strings.HasSuffix(reason, context.Canceled.Error()), strings.HasSuffix(reason, " signal received"):
		return "cancelled"
	case strings.HasSuffix(reason, context.DeadlineExceeded.Error()):
		return "deadline exceeded"
	default:
		return "stopped"
	}
}

func readStats(ctx context.Context, st storage.Store, id string) (*fanout.JobStats, error) {
	b, err := st.Get(ctx, layout.JobOf(id).Stats())
	if err != nil {
		return nil, err
	}
	var s fanout.JobStats
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("job %s: stats.json: %w", id, err)
	}
	return &s, nil
}

// plotStats draws statistics read from JSON into the file out.
func plotStats(b []byte, from, out string, stdout io.Writer) error {
	var s fanout.JobStats
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%s: not job statistics: %w", from, err)
	}
	format := strings.TrimPrefix(strings.ToLower(filepath.Ext(out)), ".")
	if format != "png" && format != "svg" {
		return fmt.Errorf("%w: -o %s: the name must end in .png or .svg", errUsage, out)
	}
	if err := s.SavePlot(out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d tasks)\n", out, len(s.PerTask))
	return nil
}

// age is how long before now t was, to the second; "?" for the zero time.
func age(t, now time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return max(now.Sub(t), 0).Round(time.Second).String()
}

func status(ctx context.Context, st storage.Store, id string, now time.Time, w io.Writer) error {
	if err := checkID(id); err != nil {
		return err
	}
	j, err := layout.JobGroup(ctx, st, id)
	if err != nil {
		return err
	}
	if j.Objects == 0 {
		return fmt.Errorf("job %s: no objects in %s (finished jobs are cleaned up unless run with KeepData)", id, st.URL())
	}
	fmt.Fprintf(w, "job       %s\ncreated   %s (%s ago)\nobjects   %d (%d bytes: %d input, %d output objects)\n",
		j.ID, j.Created.Format(time.RFC3339), age(j.Created, now), j.Objects, j.Bytes, j.Inputs, j.Outputs)
	m, err := fanout.ReadManifest(ctx, st, id)
	if err != nil {
		fmt.Fprintf(w, "manifest  none (%v)\n", err)
		return nil
	}
	mode := "sync"
	if m.Async {
		mode = "async"
	}
	fmt.Fprintf(w, "function  %s\ntasks     %d (%s, %d input chunks)\nstate     %s\n",
		m.Signature, m.Tasks, mode, len(m.Chunks), jobState(ctx, st, m, j, now))
	if j.Drivers > 0 && !j.Finished {
		verdict := "gone"
		if fanout.DriverAlive(j.Heartbeat, now) {
			verdict = "alive"
		}
		drivers := "1 driver"
		if j.Drivers > 1 {
			drivers = strconv.Itoa(j.Drivers) + " drivers"
		}
		fmt.Fprintf(w, "heartbeat %s (%s ago, %s): %s; a running driver renews its lease every %v, and counts as gone %v after the last\n",
			j.Heartbeat.UTC().Format(time.RFC3339), age(j.Heartbeat, now), drivers, verdict, fanout.LeaseEvery, fanout.LeaseTTL)
	}
	if s, err := readStats(ctx, st, id); err == nil {
		fmt.Fprint(w, s.Summary())
	}
	return nil
}

// cleanOptions are clean's flags, and the time it judges ages and
// heartbeats by.
type cleanOptions struct {
	olderThan time.Duration // 0: any age
	force     bool          // delete jobs whose driver runs too
	now       time.Time
}

// clean deletes the jobs named in ids, or, with none named, every job and
// group of shared values (older than olderThan when it is not 0). A job
// whose driver is alive is kept unless force, and so, with -all, are the
// shared values; clean then fails saying so, after deleting the rest.
func clean(ctx context.Context, st storage.Store, ids []string, o cleanOptions, w, stderr io.Writer) error {
	for _, id := range ids {
		if err := checkID(id); err != nil {
			return err
		}
	}
	jobs, err := layout.Jobs(ctx, st)
	if err != nil {
		return err
	}
	old := func(g layout.Group) bool {
		return o.olderThan == 0 || (!g.Created.IsZero() && o.now.Sub(g.Created) >= o.olderThan)
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	deleted := 0
	var running []string
	for _, j := range jobs {
		if len(want) > 0 && !want[j.ID] {
			continue
		}
		delete(want, j.ID)
		if !old(j) {
			continue
		}
		if !o.force && driverRunning(j, o.now) {
			running = append(running, j.ID)
			fmt.Fprintf(stderr, "gowren clean: kept job %s: its driver is running (heartbeat %s ago)\n", j.ID, age(j.Heartbeat, o.now))
			continue
		}
		if err := deleteGroup(ctx, st, j); err != nil {
			return fmt.Errorf("clean job %s: %w", j.ID, err)
		}
		deleted++
		fmt.Fprintf(w, "deleted job %s (%d objects, %d bytes)\n", j.ID, j.Objects, j.Bytes)
	}
	fmt.Fprintf(w, "%d jobs deleted\n", deleted)
	errRunning := func() error {
		if len(running) == 0 {
			return nil
		}
		return fmt.Errorf("%d jobs not deleted because their drivers are running (%s): wait for them to end, stop them, or pass -force to delete them anyway (their drivers then fail)",
			len(running), strings.Join(running, ", "))
	}
	if len(ids) > 0 {
		missing := make([]string, 0, len(want))
		for id := range want {
			missing = append(missing, id)
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return errors.Join(fmt.Errorf("no job %s in %s", strings.Join(missing, ", "), st.URL()), errRunning())
		}
		return errRunning()
	}
	// Shared values: a group per Executor, deleted by its Close; what is
	// left belongs to a driver that was killed, ran with KeepData, or still
	// runs (hence the age). Which group a running driver uses is not
	// written anywhere, so -all keeps them all while one runs.
	refs, err := layout.RefGroups(ctx, st)
	if err != nil {
		return err
	}
	if o.olderThan == 0 && len(running) > 0 && len(refs) > 0 {
		fmt.Fprintf(stderr, "gowren clean: kept the %d groups of shared values: a running driver may be using them\n", len(refs))
		return errRunning()
	}
	deleted = 0
	for _, g := range refs {
		if !old(g) {
			continue
		}
		if err := deleteGroup(ctx, st, g); err != nil {
			return fmt.Errorf("clean shared values %s: %w", g.Prefix, err)
		}
		deleted++
		fmt.Fprintf(w, "deleted shared values %s (%d objects, %d bytes)\n", g.Prefix, g.Objects, g.Bytes)
	}
	fmt.Fprintf(w, "%d groups of shared values deleted\n", deleted)
	return errRunning()
}

// deleteGroup deletes the objects under a group's prefix.
func deleteGroup(ctx context.Context, st storage.Store, g layout.Group) error {
	var keys []string
	for obj, err := range st.List(ctx, g.Prefix) {
		if err != nil {
			return err
		}
		keys = append(keys, obj.Key)
	}
	return st.Delete(ctx, keys...)
}

// subUsage introduces each command's -h output.
var subUsage = map[string]string{
	"logs": "usage: gowren [-store URL] logs JOB [TASK]\n\nPrints the records the job's tasks wrote through fanout.Logger(ctx), and the lines\n" +
		"they printed where the backend captures them (process://, with stream=stdout or\n" +
		"stream=stderr), task by task, or those of task TASK, from the statistics saved with\n" +
		"the job (Options.KeepData).\n\nflags:\n",
	"jobs": "usage: gowren [-store URL] jobs\n\nLists the jobs in the store: ID, function, objects, size, age and state;\n" +
		"then counts the values drivers shared with fanout.Put that are still there (refs/).\n\n" +
		"A job's state is one of:\n" +
		"  finished: N ok, N failed              it ended; its statistics were saved (KeepData)\n" +
		"  cancelled: N ok, N failed, N cancelled  it ended early (also \"deadline exceeded\", \"stopped\");\n" +
		"                                        cancelled tasks had no result, they did not fail\n" +
		"  running: driver alive (heartbeat Ns ago)  its driver renewed its lease less than " + fanout.LeaseTTL.String() + " ago\n" +
		"  driver gone (last heartbeat ... ago)  its driver stopped renewing it: killed, or its machine died;\n" +
		"                                        attach to an async job to finish it\n" +
		"  unfinished, no driver heartbeat       written by a gowren from before heartbeats\n",
	"status": "usage: gowren [-store URL] status JOB\n\nShows a job: its objects, function, tasks, state and, when saved, its statistics.\n",
	"clean": "usage: gowren [-store URL] clean [-older-than D] [-force] [-all | JOB...]\n       gowren clean -tmp\n\n" +
		"Deletes the objects of the jobs named, of every job (-all), or of the jobs older than D.\n" +
		"A job whose driver is running (see gowren jobs -h) is kept, and clean fails naming it,\n" +
		"unless -force.\n" +
		"Without JOB it also deletes the values drivers shared with fanout.Put (refs/<executor id>/):\n" +
		"all of them (-all; kept while a driver runs, unless -force), or those of drivers started\n" +
		"more than D ago. Which values a running driver uses is not recorded, so with -older-than\n" +
		"choose D longer than any driver runs.\n" +
		"-tmp removes instead the temporary stores that drivers on process:// left in $TMPDIR\n" +
		"(gowren-<pid>-*) when they could not remove them; never those of drivers still running.\n\nflags:\n",
	"plot": "usage: gowren [-store URL] plot [-o FILE] JOB\n       gowren plot -stats FILE [-o FILE]\n\n" +
		"Draws a job's timeline (one line per task, coloured by outcome) and its concurrency\n" +
		"over time, from the statistics saved with the job (Options.KeepData) or a JSON file.\n\nflags:\n",
}

// parseInterleaved parses fs's flags wherever they are among the arguments
// ("plot JOB -o t.png" as well as "plot -o t.png JOB") and returns the
// arguments that are not flags. After "--" every argument is one.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		left := fs.Args()
		if len(left) == 0 {
			return rest, nil
		}
		if consumed := len(args) - len(left); consumed > 0 && args[consumed-1] == "--" {
			return append(rest, left...), nil
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
}
