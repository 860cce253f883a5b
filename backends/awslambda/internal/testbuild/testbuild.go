// Package testbuild builds the test worker binary once per test binary and
// installs AWS's Lambda Runtime Interface Emulator (aws-lambda-rie) when it
// is missing, for the tests of package awslambda and its subpackages.
package testbuild

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// WorkerPackage is the import path of the test worker's main package.
const WorkerPackage = "github.com/gowren/gowren/backends/awslambda/internal/testworker"

// RIEModule is the emulator's module path and pinned version.
const (
	RIEPackage = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"
	RIEVersion = "v0.0.0-20261030222936-bef5c4ba774d"
)

// EnvToolsDir names a directory where RIE installs aws-lambda-rie instead of
// the user cache directory.
const EnvToolsDir = "GOWREN_TOOLS_DIR"

var (
	dirOnce sync.Once
	dir     string
	dirErr  error

	workerOnce sync.Once
	workerPath string
	workerErr  error

	rieOnce sync.Once
	riePath string
	rieErr  error
)

// goTool is the go command: under go test, the toolchain running the tests,
// which go test puts first on the test binary's PATH.
const goTool = "go"

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func tempDir() (string, error) {
	dirOnce.Do(func() { dir, dirErr = os.MkdirTemp("", "gowren-awslambda-test-") })
	return dir, dirErr
}

// buildFlags are the flags of the go build that awslambda.Build runs for a
// deployment; Worker builds with them too.
var buildFlags = []string{"-tags", "lambda.norpc", "-trimpath", "-buildvcs=false", "-ldflags=-s -w"}

// Worker returns the path of the test worker binary, named bootstrap as on
// Lambda, building it for this machine on the first call of the test
// binary. It builds as `gowren deploy lambda` does (buildFlags,
// CGO_ENABLED=0), so the worker under test is what a deployment runs, and
// on linux/amd64 the deploy tests' x86_64 build finds every package but
// its main in the build cache instead of compiling the whole dependency
// graph once more. It fails tb when the build fails; the build has no
// deadline of its own (go test's -timeout stops a hung one), so that a cold
// build cache on a busy machine cannot fail the test that happens to call
// it first.
func Worker(tb testing.TB) string {
	tb.Helper()
	workerOnce.Do(func() {
		d, err := tempDir()
		if err != nil {
			workerErr = err
			return
		}
		out := filepath.Join(d, "bootstrap")
		args := append(append([]string{"build"}, buildFlags...), "-o", out, WorkerPackage)
		cmd := exec.Command(goTool, args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			workerErr = fmt.Errorf("go build %s: %v\n%s", WorkerPackage, err, b)
			return
		}
		workerPath = out
	})
	if workerErr != nil {
		tb.Fatalf("build the test worker: %v", workerErr)
	}
	return workerPath
}

// RIE returns the path of aws-lambda-rie at RIEVersion, installing it with
// `go install` into $GOWREN_TOOLS_DIR or <user cache dir>/gowren/tools when
// it is not there yet. It fails tb, saying how to install it by hand, when
// that fails.
func RIE(tb testing.TB) string {
	tb.Helper()
	rieOnce.Do(func() {
		base := os.Getenv(EnvToolsDir)
		if base == "" {
			cache, err := os.UserCacheDir()
			if err != nil {
				rieErr = fmt.Errorf("no cache directory (%v); set %s", err, EnvToolsDir)
				return
			}
			base = filepath.Join(cache, "gowren", "tools")
		}
		bin := filepath.Join(base, "aws-lambda-rie@"+RIEVersion)
		p := filepath.Join(bin, "aws-lambda-rie")
		if fileExists(p) {
			riePath = p
			return
		}
		if err := os.MkdirAll(bin, 0o755); err != nil {
			rieErr = err
			return
		}
		cmd := exec.Command(goTool, "install", RIEPackage+"@"+RIEVersion)
		cmd.Dir = bin // outside any module
		cmd.Env = append(os.Environ(), "GOBIN="+bin, "CGO_ENABLED=0", "GOFLAGS=")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil || !fileExists(p) {
			rieErr = fmt.Errorf("go install %s@%s: %v\n%s\ninstall it by hand with: GOBIN=%s go install %s@%s",
				RIEPackage, RIEVersion, err, out.Bytes(), bin, RIEPackage, RIEVersion)
			return
		}
		riePath = p
	})
	if rieErr != nil {
		tb.Fatalf("AWS Lambda Runtime Interface Emulator: %v", rieErr)
	}
	return riePath
}

// Cleanup removes what Worker built. Call it from TestMain after m.Run.
func Cleanup() {
	if dir != "" {
		os.RemoveAll(dir)
	}
}
