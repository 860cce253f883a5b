package awslambda_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
	"github.com/gowren/gowren/backends/awslambda/internal/testfuncs"
	"github.com/gowren/gowren/fanout"
)

// A Lambda worker opens only the stores its function's environment allows
// (GOWREN_WORKER_STORES, which `gowren deploy lambda -stores` sets): a job
// on another store fails at once, saying what to do, and the worker never
// touches it. An asynchronous job learns it at Start, from its one check.
func TestWorkerRefusesStore(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync", true: "async"}[async], func(t *testing.T) {
			allowed := "s3://only-this-bucket/gowren"
			ex, srv := fakeExecutor(t, awslambdatest.Options{Workers: 1, Timeout: time.Minute,
				Env: []string{"GOWREN_WORKER_STORES=" + allowed}},
				fanout.Options{Concurrency: 1, Async: async, Retries: 3})
			ctx := guard(t, 2*time.Minute)
			before := len(listDir(t, ex))
			_, err := fanout.Map(ctx, ex, testfuncs.Noop, []int{1, 2, 3})
			if !errors.Is(err, fanout.ErrStoreRefused) || !strings.Contains(err.Error(), allowed) || !strings.Contains(err.Error(), "-stores") {
				t.Fatalf("Map = %v; want ErrStoreRefused naming the allowed stores and the -stores flag", err)
			}
			// Sync: the job's one invocation, not retried. Async: the
			// check, and no event.
			if st := srv.Stats(); st.Invocations != 1 || st.Events != 0 {
				t.Errorf("%d invocations and %d events; want 1 and 0", st.Invocations, st.Events)
			}
			if after := listDir(t, ex); len(after) != before {
				t.Errorf("the store holds %v after a refused job", after)
			}
		})
	}
}

// listDir lists the files under the executor's file store.
func listDir(t *testing.T, ex *fanout.Executor) []string {
	t.Helper()
	dir := strings.TrimPrefix(ex.Store().URL(), "file://")
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	return files
}
