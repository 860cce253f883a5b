package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/internal/layout"
	"github.com/gowren/gowren/storage/filestore"
)

// Gated is an input of cliHold: with a Gate, the task waits there.
type Gated struct {
	Gate string
	X    int
}

// gates are the gates of the running tests, by name.
var gates sync.Map

type gate struct {
	reached chan struct{} // a task is at the gate
	open    chan struct{} // closed by the test: the tasks go on
}

func newGate(t *testing.T, name string, tasks int) *gate {
	g := &gate{reached: make(chan struct{}, tasks), open: make(chan struct{})}
	if _, dup := gates.LoadOrStore(name, g); dup {
		t.Fatalf("gate %s exists", name)
	}
	t.Cleanup(func() { gates.Delete(name) })
	return g
}

var cliHold = fanout.Register("cli.hold", func(ctx context.Context, in Gated) (int, error) {
	if in.Gate == "" {
		return in.X, nil
	}
	v, ok := gates.Load(in.Gate)
	if !ok {
		return 0, fmt.Errorf("no gate %q", in.Gate)
	}
	g := v.(*gate)
	g.reached <- struct{}{}
	select {
	case <-g.open:
		return in.X, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
})

// cli runs the command at a given time.
func cli(t *testing.T, now time.Time, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = runAt(context.Background(), func() time.Time { return now }, args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// stateOf returns the STATE column of job's line in the output of jobs.
func stateOf(t *testing.T, jobsOut, job string) string {
	t.Helper()
	header, _, _ := strings.Cut(jobsOut, "\n")
	col := strings.Index(header, "STATE")
	for _, line := range strings.Split(jobsOut, "\n") {
		if strings.HasPrefix(line, job+" ") {
			if col < 0 || len(line) < col {
				t.Fatalf("line %q has no STATE column (header %q)", line, header)
			}
			return line[col:]
		}
	}
	t.Fatalf("jobs printed no line for %s:\n%s", job, jobsOut)
	return ""
}

// TestJobStates runs jobs that finish, are cancelled, and run (sync and
// async), and checks what jobs, status and clean make of them: a running
// job's driver is alive while its heartbeat is fresh, and gone once it is
// older than fanout.LeaseTTL, judged by a clock moved forward instead of
// a driver killed; cancelled tasks are not counted as failed; clean keeps
// the jobs of running drivers unless -force.
func TestJobStates(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := filestore.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	url := st.URL()
	ex := fanout.NewExecutor(local.New(&local.Options{Concurrency: 1}), &fanout.Options{Store: st, KeepData: true, BatchSize: 1, Concurrency: 1})
	defer ex.Close()
	asyncEx := fanout.NewExecutor(local.New(nil), &fanout.Options{Store: st, KeepData: true, Async: true, BatchSize: 1})
	defer asyncEx.Close()

	finished, err := fanout.Start(ctx, ex, cliHold, []Gated{{X: 1}, {X: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := finished.Wait(ctx); err != nil {
		t.Fatal(err)
	}

	// Cancelled while task 0 runs: tasks 1 to 3 were never sent.
	g := newGate(t, "cancelled", 1)
	cctx, cancel := context.WithCancel(ctx)
	cancelled, err := fanout.Start(cctx, ex, cliHold, []Gated{{Gate: "cancelled"}, {X: 1}, {X: 2}, {X: 3}})
	if err != nil {
		t.Fatal(err)
	}
	<-g.reached
	cancel()
	if _, err := cancelled.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled job: %v", err)
	}

	// A sync and an async job, each held at a gate until the end.
	g = newGate(t, "sync", 1)
	syncJob, err := fanout.Start(ctx, ex, cliHold, []Gated{{Gate: "sync"}, {X: 1}})
	if err != nil {
		t.Fatal(err)
	}
	<-g.reached
	defer func() { close(g.open); syncJob.Wait(ctx) }()
	ga := newGate(t, "async", 1)
	asyncJob, err := fanout.Start(ctx, asyncEx, cliHold, []Gated{{Gate: "async"}, {X: 1}})
	if err != nil {
		t.Fatal(err)
	}
	<-ga.reached
	defer func() { close(ga.open); asyncJob.Wait(ctx) }()

	now := time.Now()
	later := now.Add(fanout.LeaseTTL + time.Minute) // the drivers look dead

	out, _, err := cli(t, now, "-store", url, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		job  string
		want string // a regular expression for the STATE column
	}{
		{finished.ID(), `^finished: 2 ok, 0 failed$`},
		{cancelled.ID(), `^cancelled: 0 ok, [01] failed, [34] cancelled$`},
		{syncJob.ID(), `^running: driver alive \(heartbeat \d+s ago\), results were in the driver \(sync job\)$`},
		{asyncJob.ID(), `^running: driver alive \(heartbeat \d+s ago\), [01]/2 results in the store$`},
	} {
		if got := stateOf(t, out, tc.job); !regexp.MustCompile(tc.want).MatchString(got) {
			t.Errorf("job %s: state %q, want %s", tc.job, got, tc.want)
		}
	}
	out, _, err = cli(t, later, "-store", url, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ job, want string }{
		{finished.ID(), `^finished: 2 ok, 0 failed$`},
		{syncJob.ID(), `^driver gone \(last heartbeat \d+m\d+s ago\): its results were lost with it; run the job again$`},
		{asyncJob.ID(), `^driver gone \(last heartbeat \d+m\d+s ago\): [01]/2 results in the store; attach to finish it$`},
	} {
		if got := stateOf(t, out, tc.job); !regexp.MustCompile(tc.want).MatchString(got) {
			t.Errorf("later, job %s: state %q, want %s", tc.job, got, tc.want)
		}
	}

	// status says the same, with the heartbeat's time, and for the
	// cancelled job why it stopped.
	out, _, err = cli(t, now, "-store", url, "status", syncJob.ID())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"state     running: driver alive", "heartbeat ", "ago, 1 driver): alive;"} {
		if !strings.Contains(out, want) {
			t.Errorf("status of a running job lacks %q:\n%s", want, out)
		}
	}
	out, _, err = cli(t, later, "-store", url, "status", syncJob.ID())
	if err != nil || !strings.Contains(out, "state     driver gone") || !strings.Contains(out, "ago, 1 driver): gone;") {
		t.Errorf("status of a job whose driver is gone: %v\n%s", err, out)
	}
	out, _, err = cli(t, now, "-store", url, "status", cancelled.ID())
	if err != nil || !regexp.MustCompile(`outcome   4 tasks: 0 ok, [01] failed, [34] cancelled\n`).MatchString(out) ||
		!regexp.MustCompile(`\nstopped   .*context canceled\n`).MatchString(out) || strings.Contains(out, "heartbeat") {
		t.Errorf("status of the cancelled job: %v\n%s", err, out)
	}

	// clean keeps the running jobs, naming them, unless -force.
	hash := strings.Repeat("5a", 32)
	refKey := "refs/eeeeeeee-20260101T000000/" + hash
	if err := st.Put(ctx, refKey, []byte("v")); err != nil {
		t.Fatal(err)
	}
	exists := func(id string) bool {
		g, err := layout.JobGroup(ctx, st, id)
		if err != nil {
			t.Fatal(err)
		}
		return g.Objects > 0
	}
	out, errOut, err := cli(t, now, "-store", url, "clean", syncJob.ID())
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "-force") || !strings.Contains(err.Error(), syncJob.ID()) ||
		!strings.Contains(errOut, "kept job "+syncJob.ID()+": its driver is running") || !exists(syncJob.ID()) {
		t.Errorf("clean of a running job: %v\nstdout %q\nstderr %q", err, out, errOut)
	}
	out, errOut, err = cli(t, now, "-store", url, "clean", "-all")
	if err == nil || !strings.Contains(err.Error(), "2 jobs not deleted because their drivers are running") {
		t.Errorf("clean -all with running jobs: %v", err)
	}
	if !exists(syncJob.ID()) || !exists(asyncJob.ID()) || exists(finished.ID()) || exists(cancelled.ID()) {
		t.Errorf("clean -all deleted the running jobs, or kept the ended ones:\n%s%s", out, errOut)
	}
	if _, err := st.Get(ctx, refKey); err != nil || !strings.Contains(errOut, "kept the 1 groups of shared values") {
		t.Errorf("clean -all deleted shared values while drivers run: %v\n%s", err, errOut)
	}
	// A driver that is gone does not hold its job back; -force deletes a
	// running one.
	out, _, err = cli(t, later, "-store", url, "clean", asyncJob.ID())
	if err != nil || exists(asyncJob.ID()) {
		t.Errorf("clean of a job whose driver is gone: %v\n%s", err, out)
	}
	out, _, err = cli(t, now, "-store", url, "clean", "-force", "-all")
	if err != nil || exists(syncJob.ID()) || !strings.Contains(out, "1 groups of shared values deleted") {
		t.Errorf("clean -force -all: %v\n%s", err, out)
	}
}

// TestStoreMistakes checks the store URLs that used to go wrong quietly: a
// path where a URL belongs gets a suggestion, and a file:// directory that
// does not exist an error, without being created.
func TestStoreMistakes(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "typo")
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, store string
		env         bool
		usage       bool
		says        string
	}{
		{"absolute path", dir, false, true, `-store "` + dir + `" is a path, not a store URL: did you mean file://` + dir + "?"},
		{"relative path", "./rel", false, true, "did you mean file://" + filepath.Join(wd, "rel") + "?"},
		{"bare name in the environment", "rel", true, true, `$GOWREN_STORE "rel" is a path, not a store URL: did you mean file://` + filepath.Join(wd, "rel") + "?"},
		{"missing directory", "file://" + missing, false, false, "directory " + missing + " does not exist"},
		{"missing relative directory", "file:typo-" + filepath.Base(dir), false, false, "does not exist"},
		{"a file", "file://" + filepath.Join(dir, "f"), false, false, "is a file, not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"-store", tc.store, "jobs"}
			if tc.env {
				t.Setenv(fanout.EnvStore, tc.store)
				args = []string{"jobs"}
			}
			for _, cmd := range [][]string{args, append(args[:len(args)-1:len(args)-1], "clean", "-all")} {
				_, _, err := cli(t, time.Now(), cmd...)
				if err == nil || errors.Is(err, errUsage) != tc.usage || !strings.Contains(err.Error(), tc.says) {
					t.Errorf("%q: %v; want an error saying %q (usage error: %v)", cmd, err, tc.says, tc.usage)
				}
			}
			if _, err := os.Stat(missing); !os.IsNotExist(err) {
				t.Errorf("%s was created: %v", missing, err)
			}
		})
	}
}

func TestStopKind(t *testing.T) {
	for _, tc := range []struct{ reason, want string }{
		{"fanout: job x (f) stopped with 5 of 5 tasks unfinished: context canceled", "cancelled"},
		{"fanout: job x (f) stopped with 52 of 54 tasks unfinished: interrupt signal received", "cancelled"},
		{"fanout: job x (f) stopped with 1 of 3 tasks unfinished: context deadline exceeded", "deadline exceeded"},
		{"fanout: job x (f): fanout: stale worker", "stopped"},
	} {
		if got := stopKind(tc.reason); got != tc.want {
			t.Errorf("stopKind(%q) = %q, want %q", tc.reason, got, tc.want)
		}
	}
}
