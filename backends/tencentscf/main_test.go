package tencentscf_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gowren/gowren/backends/tencentscf"
	"github.com/gowren/gowren/backends/tencentscf/scftest"
	"github.com/gowren/gowren/fanout"
)

// testworkerPkg is the worker program the tests run under the SCF runtime.
const testworkerPkg = "github.com/gowren/gowren/backends/tencentscf/internal/testworker"

var (
	buildOnce sync.Once
	buildDir  string
	buildPath string
	buildErr  error
)

// workerBinary builds the test worker once per test binary, exactly as
// gowren deploy scf builds a function (tencentscf.Build), and returns its
// path. The build is timed by no clock but go test's own (see hangGuard): on
// a cold cache with the cores busy it takes minutes.
func workerBinary(t testing.TB) string {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("SKIP (loud): the SCF worker is built for linux/amd64, SCF's platform, and cannot run on %s/%s; run these tests on linux/amd64",
			runtime.GOOS, runtime.GOARCH)
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "tencentscf-test-")
		if buildErr != nil {
			return
		}
		buildPath = filepath.Join(buildDir, "main")
		buildErr = tencentscf.Build(hangGuard(t), "", testworkerPkg, buildPath)
	})
	if buildErr != nil {
		t.Fatalf("build the test worker: %v", buildErr)
	}
	return buildPath
}

// hangGuard returns a context for steps whose length depends on the
// machine rather than on the code under test, such as a go build on a cold
// cache while other tests load the cores: it ends only shortly before the
// test binary's own deadline (go test -timeout), leaving a tenth of the
// time left (at most 30s) for the test to fail with its own message, and
// when t ends. It stops a hung test and never times a slow one.
func hangGuard(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			ctx, cancel = context.WithDeadline(context.Background(), dl.Add(-min(time.Until(dl)/10, 30*time.Second)))
		}
	}
	t.Cleanup(cancel)
	return ctx
}

func TestMain(m *testing.M) {
	fanout.Init() // the test binary is never a worker; Init returns
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// newServer starts a loopback SCF, closed when the test ends, with worker
// output in the test log.
func newServer(t *testing.T, opts *scftest.Options) *scftest.Server {
	t.Helper()
	var o scftest.Options
	if opts != nil {
		o = *opts
	}
	if o.Stderr == nil {
		o.Stderr = tWriter{t}
	}
	srv, err := scftest.NewServer(&o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close the server: %v", err)
		}
	})
	return srv
}

// tWriter sends output to the test log, shown when a test fails or with -v.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = tWriter{}
