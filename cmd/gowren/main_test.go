package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/internal/layout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
)

var cliSquare = fanout.Register("cli.square", func(_ context.Context, x int) (int, error) { return x * x, nil })

var cliOdd = fanout.Register("cli.odd", func(_ context.Context, x int) (int, error) {
	if x%2 == 1 {
		return 0, fmt.Errorf("odd input %d", x)
	}
	return x, nil
})

func TestCLI(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := filestore.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hash := strings.Repeat("5a", 32)
	for _, k := range []string{
		"jobs/aaaaaaaa-20260101T000000/in/0", "jobs/aaaaaaaa-20260101T000000/out/3.0",
		"jobs/bbbbbbbb-20991231T000000/in/0", "unrelated/object",
		// Shared values left by a driver killed long ago, by one that
		// started in the future, and by a gowren from before executor IDs.
		"refs/eeeeeeee-20260101T000000/" + hash, "refs/ffffffff-20991231T000000/" + hash, "refs/" + hash,
	} {
		if err := st.Put(ctx, k, []byte("data")); err != nil {
			t.Fatal(err)
		}
	}
	// A real job, kept with its manifest and statistics.
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Store: st, KeepData: true})
	job, err := fanout.Start(ctx, ex, cliSquare, []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// And one whose tasks 1 and 3 fail.
	failing, err := fanout.Start(ctx, ex, cliOdd, []int{0, 1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := failing.Wait(ctx); !slices.Equal(fanout.FailedTasks(err), []int{1, 3}) {
		t.Fatalf("the failing job: %v", err)
	}
	ex.Close()
	url := st.URL()
	out := t.TempDir()
	statsJSON, err := json.Marshal(job.Stats())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out+"/stats.json", statsJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr error
		want    []string
	}{
		{"no command", []string{"-store", url}, errUsage, nil},
		{"unknown command", []string{"-store", url, "frobnicate"}, errUsage, nil},
		{"no store", []string{"-store", "", "jobs"}, errUsage, nil},
		{"version", []string{"version"}, nil, []string{"gowren devel"}},
		{"jobs", []string{"-store", url, "jobs"}, nil, []string{"aaaaaaaa-20260101T000000", "bbbbbbbb-20991231T000000", "under refs/: 3 groups", "3 objects, 12 bytes"}},
		{"status without manifest", []string{"-store", url, "status", "aaaaaaaa-20260101T000000"}, nil, []string{"objects   2", "manifest  none"}},
		{"status", []string{"-store", url, "status", job.ID()}, nil, []string{"cli.square(int) int", "finished: 3 ok, 0 failed", "makespan", "requests per task"}},
		{"status of failures", []string{"-store", url, "status", failing.ID()}, nil, []string{"outcome   4 tasks: 2 ok, 2 failed (1, 3)",
			"failed    task 1: odd input 1\n          task 3: odd input 3\n"}},
		{"plot", []string{"-store", url, "plot", "-o", out + "/t.svg", job.ID()}, nil, []string{"wrote " + out + "/t.svg (3 tasks)"}},
		{"plot with flags after the job", []string{"-store", url, "plot", job.ID(), "-o", out + "/after.svg"}, nil, []string{"wrote " + out + "/after.svg (3 tasks)"}},
		{"help of a command", []string{"-store", url, "jobs", "-h"}, nil, nil},
		{"plot from a file", []string{"plot", "-stats", out + "/stats.json", "-o", out + "/f.png"}, nil, []string{"wrote " + out + "/f.png (3 tasks)"}},
		{"plot without stats", []string{"-store", url, "plot", "-o", out + "/u.png", "aaaaaaaa-20260101T000000"}, nil, nil},
		{"plot bad extension", []string{"-store", url, "plot", "-o", out + "/t.gif", job.ID()}, errUsage, nil},
		{"jobs shows the real job", []string{"-store", url, "jobs"}, nil, []string{job.ID(), "cli.square", "finished: 3 ok"}},
		{"status missing", []string{"-store", url, "status", "cccccccc-20260101T000000"}, nil, nil},
		{"status bad id", []string{"-store", url, "status", "../x"}, errUsage, nil},
		{"status not an id", []string{"-store", url, "status", "aaaaaaaa"}, errUsage, nil},
		{"plot bad id", []string{"-store", url, "plot", "-o", out + "/x.png", "../x"}, errUsage, nil},
		{"clean bad id", []string{"-store", url, "clean", "aaaaaaaa-20260101T000000", "jobs/x"}, errUsage, nil},
		{"clean -tmp with a job", []string{"-store", url, "clean", "-tmp", job.ID()}, errUsage, nil},
		{"clean needs a target", []string{"-store", url, "clean"}, errUsage, nil},
		{"clean old", []string{"-store", url, "clean", "-older-than", "24h"}, nil, []string{
			"deleted job aaaaaaaa-20260101T000000", "1 jobs deleted",
			"deleted shared values refs/eeeeeeee-20260101T000000/ (1 objects, 4 bytes)", "1 groups of shared values deleted"}},
		{"jobs after clean", []string{"-store", url, "jobs"}, nil, []string{"bbbbbbbb-20991231T000000", "under refs/: 2 groups"}},
		{"clean by id", []string{"-store", url, "clean", "bbbbbbbb-20991231T000000", job.ID(), failing.ID()}, nil, []string{"3 jobs deleted"}},
		{"clean a missing job", []string{"-store", url, "clean", "dddddddd-20260101T000000"}, nil, nil},
		{"jobs when only shared values are left", []string{"-store", url, "jobs"}, nil, []string{"no jobs", "under refs/: 2 groups"}},
		{"clean all", []string{"-store", url, "clean", "-all"}, nil, []string{"0 jobs deleted", "deleted shared values refs/ffffffff-20991231T000000/", "deleted shared values refs/" + hash + " ", "2 groups of shared values deleted"}},
		{"jobs when empty", []string{"-store", url, "jobs"}, nil, []string{"no jobs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(ctx, tc.args, &out, &errOut)
			if tc.name == "help of a command" && !strings.Contains(errOut.String(), "Lists the jobs in the store") {
				t.Errorf("jobs -h printed %q", errOut.String())
			}
			if tc.name == "status missing" || tc.name == "plot without stats" || tc.name == "clean a missing job" {
				if err == nil || errors.Is(err, errUsage) {
					t.Fatalf("err = %v, want a plain failure", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) && !(err == nil && tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v (stderr %q)", err, tc.wantErr, errOut.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output %q lacks %q", out.String(), w)
				}
			}
			if tc.name == "jobs when empty" && strings.Contains(out.String(), "shared values") {
				t.Errorf("output %q mentions shared values in an empty store", out.String())
			}
		})
	}
	if _, err := st.Get(ctx, "unrelated/object"); err != nil {
		t.Fatalf("clean touched an object outside jobs/: %v", err)
	}
}

// TestS3Store checks that the command knows s3:// stores: the jobs of a
// cloud run are there.
func TestS3Store(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	// Nothing listens on port 9: the command must get as far as trying.
	err := run(ctx, []string{"-store", "s3://bucket/p?region=us-east-1&endpoint=http://127.0.0.1:9", "jobs"}, &out, &errOut)
	if err == nil || errors.Is(err, errUsage) || strings.Contains(err.Error(), "unknown scheme") {
		t.Fatalf("err = %v, want a failure to reach the endpoint", err)
	}
}

// TestOldLayoutStore: a file store written by an earlier gowren (objects
// named KEY%) is refused with an error naming the directory and one of its
// files, never listed as empty, and left as it was.
func TestOldLayoutStore(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "jobs", "aaaaaaaa-20260101T000000", "manifest%")
	if err := os.MkdirAll(filepath.Dir(old), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(old, []byte("{}"), 0o666); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"jobs"}, {"clean", "-all"}} {
		var out, errOut bytes.Buffer
		args := append([]string{"-store", "file://" + filepath.ToSlash(dir)}, cmd...)
		err := run(context.Background(), args, &out, &errOut)
		if !errors.Is(err, filestore.ErrOldLayout) || errors.Is(err, errUsage) {
			t.Fatalf("%s: %v, want ErrOldLayout (exit status 1)", cmd, err)
		}
		if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, "manifest%") {
			t.Errorf("%s: the error %q names neither the directory nor a file", cmd, msg)
		}
		if out.Len() != 0 {
			t.Errorf("%s printed %q", cmd, out.String())
		}
	}
	if _, err := os.Stat(old); err != nil {
		t.Fatalf("the old object is gone: %v", err)
	}
}

// TestLayoutMatchesFanout checks that the keys package layout reads are the
// ones fanout writes: an async job kept with its data, and the shared values
// of a driver that ran with KeepData (as one killed before Close leaves them).
func TestLayoutMatchesFanout(t *testing.T) {
	ctx := context.Background()
	st, err := filestore.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Store: st, Async: true, KeepData: true, BatchSize: 1})
	ref, err := fanout.Put(ctx, ex, []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	job, err := fanout.Start(ctx, ex, cliSquare, []int{0, 1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ex.Close(); err != nil {
		t.Fatal(err)
	}

	id := job.ID()
	if err := layout.ValidateID(id); err != nil {
		t.Fatalf("fanout made job ID %q: %v", id, err)
	}
	if !layout.IDTime(id).Equal(fanout.JobTime(id)) {
		t.Errorf("job %s: layout reads time %v, fanout %v", id, layout.IDTime(id), fanout.JobTime(id))
	}
	j := layout.JobOf(id)
	for _, key := range []string{j.Manifest(), j.Inputs(), j.Stats(), j.Chunk(0)} {
		if _, err := st.Get(ctx, key); err != nil {
			t.Errorf("fanout did not write %s: %v", key, err)
		}
	}
	seen := map[int]bool{}
	for obj, err := range st.List(ctx, j.Outputs()) {
		if err != nil {
			t.Fatal(err)
		}
		i, _, ok := j.ParseOutput(obj.Key)
		if !ok {
			t.Errorf("reply key %q does not parse", obj.Key)
			continue
		}
		seen[i] = true
	}
	if len(seen) != n {
		t.Errorf("replies of %d tasks parsed, want %d", len(seen), n)
	}
	g, err := layout.JobGroup(ctx, st, id)
	if err != nil || g.Outputs < n || g.Inputs < 1 {
		t.Errorf("JobGroup = %+v, %v", g, err)
	}

	exec, hash, ok := layout.ParseRefKey(ref.Key)
	if !ok || hash != ref.Hash {
		t.Fatalf("Ref key %q is not refs/<executor id>/<hash>", ref.Key)
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"-store", st.URL(), "clean", "-older-than", "24h"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, ref.Key); err != nil {
		t.Fatalf("clean -older-than 24h removed the values of a driver started just now: %v (%s)", err, out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"-store", st.URL(), "clean", "-all"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, ref.Key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("clean -all left %s: %v", ref.Key, err)
	}
	if !strings.Contains(out.String(), "deleted shared values "+layout.RefGroup(exec)) {
		t.Errorf("clean -all printed %q", out.String())
	}
}

// clean -tmp removes the temporary stores of drivers that are gone, and
// needs no store.
func TestCleanTmp(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	gone := filepath.Join(tmp, "gowren-4000000-1")
	other := filepath.Join(tmp, "gowren-deploy-2")
	long := time.Now().Add(-time.Hour)
	for _, d := range []string{gone, other} {
		if err := os.MkdirAll(filepath.Join(d, "jobs"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(d, long, long); err != nil {
			t.Fatal(err)
		}
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"-store", "", "clean", "-tmp"}, &out, &errOut); err != nil {
		t.Fatalf("clean -tmp: %v\n%s", err, errOut.String())
	}
	if want := "removed " + gone + "\n1 temporary stores of drivers that are gone removed from " + tmp + "\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("%s: %v", gone, err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("%s: %v", other, err)
	}
}

var cliLogger = fanout.Register("cli.logger", func(ctx context.Context, x int) (int, error) {
	fanout.Logger(ctx).Info("working", "x", x)
	if x == 3 {
		fanout.Logger(ctx).Warn("giving up")
		return 0, fmt.Errorf("three")
	}
	return x, nil
})

// gowren logs prints what the tasks of a kept job logged, ok and failed.
func TestLogs(t *testing.T) {
	ctx := context.Background()
	st, err := filestore.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Store: st, KeepData: true, Logger: slog.New(slog.DiscardHandler)})
	job, err := fanout.Start(ctx, ex, cliLogger, []int{0, 1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Wait(ctx); !slices.Equal(fanout.FailedTasks(err), []int{3}) {
		t.Fatalf("Wait: %v", err)
	}
	ex.Close()
	logs := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"-store", st.URL(), "logs"}, args...), &out, &errOut)
		return out.String(), err
	}
	out, err := logs(job.ID())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if !strings.Contains(out, fmt.Sprintf("INFO working x=%d\n", i)) {
			t.Errorf("logs lack task %d's record:\n%s", i, out)
		}
	}
	out, err = logs(job.ID(), "3")
	if err != nil || !strings.HasPrefix(out, "task 3 (failed, 1 attempt,") || !strings.Contains(out, "WARN giving up") || strings.Contains(out, "x=1") {
		t.Errorf("logs of task 3: %v\n%s", err, out)
	}
	if _, err := logs(job.ID(), "4"); err == nil || !strings.Contains(err.Error(), "no task 4") {
		t.Errorf("logs of task 4: %v", err)
	}
	if _, err := logs(job.ID(), "x"); !errors.Is(err, errUsage) {
		t.Errorf("logs of task x: %v", err)
	}
}
