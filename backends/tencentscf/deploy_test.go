package tencentscf_test

import (
	"archive/zip"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"

	"github.com/gowren/gowren/backends/tencentscf"
	"github.com/gowren/gowren/backends/tencentscf/internal/testfuncs"
	"github.com/gowren/gowren/backends/tencentscf/scftest"
)

// actions lists the actions of calls, with the error code of failed ones.
func actions(calls []scftest.Call) []string {
	var out []string
	for _, c := range calls {
		a := c.Action
		if c.ErrorCode != "" {
			a += "!" + c.ErrorCode
		}
		out = append(out, a)
	}
	return out
}

func TestDeploy(t *testing.T) {
	t.Parallel()
	bin := workerBinary(t) // shares the build cache with Deploy's build
	srv := newServer(t, &scftest.Options{ActivationPolls: 2})
	client, err := tencentscf.NewClient(testCred(), testRegion, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	// Deploy builds the worker again (from the build cache: only its link
	// is done again), which a busy machine may make slow: only a hung test
	// is stopped.
	ctx := hangGuard(t)
	var log bytes.Buffer
	res, err := tencentscf.Deploy(ctx, client, &tencentscf.DeployOptions{
		Function: "deployed", Package: testworkerPkg, MemoryMB: 256, Timeout: 30 * time.Second,
		Env: map[string]string{"GOWREN_TEST_VAR": "hello"}, PollInterval: time.Millisecond, Log: &log,
	})
	if err != nil {
		t.Fatalf("Deploy: %v\n%s", err, log.String())
	}
	if !res.Created || res.Function != "deployed" || res.Region != testRegion || res.Timeout != 30*time.Second {
		t.Errorf("result %+v", res)
	}
	if got, want := strings.Join(actions(srv.Calls()), " "),
		"GetFunction!ResourceNotFound.Function CreateFunction GetFunction GetFunction GetFunction"; got != want {
		t.Errorf("API calls\n%s\nwant\n%s", got, want)
	}
	create := srv.Calls()[1].Params
	for k, want := range map[string]string{
		"Runtime": "Go1", "Handler": "main", "MemorySize": "256", "Timeout": "30", "Namespace": "default", "Type": "Event",
		"Environment": "map[Variables:[map[Key:GOWREN_TEST_VAR Value:hello]]]",
	} {
		if got := fmt.Sprint(create[k]); got != want {
			t.Errorf("CreateFunction %s = %q, want %q", k, got, want)
		}
	}
	info, _ := srv.Function(testRegion, "default", "deployed")
	if info.Status != "Active" || info.MemoryMB != 256 || info.Timeout != 30*time.Second {
		t.Errorf("the function is %+v", info)
	}
	checkZip(t, info.Zip)

	// The deployed code runs under the SCF runtime and sees its
	// environment.
	b := sameHost{newBackend(t, srv, testCred(), testRegion, "deployed", &tencentscf.Options{Timeout: 30 * time.Second})}
	got, err := mapOn(t, b, nil, testfuncs.Getenv, []string{"GOWREN_TEST_VAR"})
	if err != nil || got[0] != "hello" {
		t.Fatalf("the deployed function: %q, %v; want [hello]", got, err)
	}

	// Deploying again a prebuilt binary without settings keeps them all:
	// memory, timeout and environment. The code is uploaded only if the
	// binary differs from the one Deploy built.
	deploy := func(opts tencentscf.DeployOptions) (*tencentscf.DeployResult, string) {
		t.Helper()
		before := len(srv.Calls())
		opts.Function, opts.PollInterval = "deployed", time.Millisecond
		res, err := tencentscf.Deploy(ctx, client, &opts)
		if err != nil {
			t.Fatalf("Deploy %+v: %v", opts, err)
		}
		if res.Created {
			t.Errorf("Deploy %+v created the function", opts)
		}
		return res, strings.Join(actions(srv.Calls()[before:]), " ")
	}
	sameBinary := bytes.Equal(checkZip(t, info.Zip), mustRead(t, bin))
	res, calls := deploy(tencentscf.DeployOptions{Binary: bin})
	if res.CodeUpdated == sameBinary || res.ConfigUpdated || strings.Contains(calls, "UpdateFunctionConfiguration") {
		t.Errorf("redeploy without settings (same binary %v): code updated %v, config updated %v, calls %s",
			sameBinary, res.CodeUpdated, res.ConfigUpdated, calls)
	}
	again, _ := srv.Function(testRegion, "default", "deployed")
	if exe := checkZip(t, again.Zip); !bytes.Equal(exe, mustRead(t, bin)) {
		t.Error("the deployed executable is not the binary given")
	}
	if again.MemoryMB != 256 || again.Timeout != 30*time.Second || again.Env["GOWREN_TEST_VAR"] != "hello" || again.Description == "" {
		t.Errorf("a redeploy without settings changed them: the function is %+v", again)
	}
	if res.MemoryMB != 256 || res.Timeout != 30*time.Second {
		t.Errorf("result %+v, want the function's own 256 MB and 30s", res)
	}

	// The same code with new memory and timeout: no upload, one
	// configuration update with those two only.
	res, calls = deploy(tencentscf.DeployOptions{Binary: bin, MemoryMB: 512, Timeout: time.Minute})
	if want := "GetFunction GetFunctionAddress UpdateFunctionConfiguration GetFunction GetFunction GetFunction"; calls != want {
		t.Errorf("API calls of a configuration change\n%s\nwant\n%s", calls, want)
	}
	update := srv.Calls()[len(srv.Calls())-4].Params
	if _, ok := update["Environment"]; ok || fmt.Sprint(update["MemorySize"]) != "512" || fmt.Sprint(update["Timeout"]) != "60" || update["Description"] != nil {
		t.Errorf("UpdateFunctionConfiguration %v, want memory and timeout only", update)
	}
	if res.CodeUpdated || !res.ConfigUpdated || res.MemoryMB != 512 || res.Timeout != time.Minute {
		t.Errorf("result %+v", res)
	}
	again, _ = srv.Function(testRegion, "default", "deployed")
	if again.MemoryMB != 512 || again.Timeout != time.Minute || again.Env["GOWREN_TEST_VAR"] != "hello" {
		t.Errorf("after the update the function is %+v", again)
	}
	b = sameHost{newBackend(t, srv, testCred(), testRegion, "deployed", &tencentscf.Options{Timeout: 60 * time.Second})}
	got, err = mapOn(t, b, nil, testfuncs.Getenv, []string{"SCF_MEMORYSIZE"})
	if err != nil || got[0] != "512" {
		t.Fatalf("the updated function: %q, %v; want [512]", got, err)
	}
	if u := res.URL(srv.URL()); !strings.HasPrefix(u, "scf://deployed?") || !strings.Contains(u, "region=ap-guangzhou") ||
		!strings.Contains(u, "timeout=1m0s") || !strings.Contains(u, "memory=512") {
		t.Errorf("URL = %q, want the region, the timeout and the memory", u)
	}

	// Nothing to change: nothing sent.
	res, calls = deploy(tencentscf.DeployOptions{Binary: bin, MemoryMB: 512, Timeout: time.Minute, Env: map[string]string{"GOWREN_TEST_VAR": "hello"}})
	if want := "GetFunction GetFunctionAddress GetFunction"; calls != want || res.CodeUpdated || res.ConfigUpdated {
		t.Errorf("an unchanged redeploy: calls %s (want %s), code updated %v, config updated %v", calls, want, res.CodeUpdated, res.ConfigUpdated)
	}

	// Other code is uploaded; the settings stay.
	small := smallELF(t)
	res, calls = deploy(tencentscf.DeployOptions{Binary: small})
	if want := "GetFunction GetFunctionAddress UpdateFunctionCode GetFunction GetFunction GetFunction GetFunction"; calls != want || !res.CodeUpdated || res.ConfigUpdated {
		t.Errorf("new code: calls %s (want %s), code updated %v, config updated %v", calls, want, res.CodeUpdated, res.ConfigUpdated)
	}
	again, _ = srv.Function(testRegion, "default", "deployed")
	if !bytes.Equal(checkZip(t, again.Zip), mustRead(t, small)) || again.MemoryMB != 512 || again.Timeout != time.Minute {
		t.Errorf("after new code the function is %+v", again)
	}
}

// checkZip checks the code package: one executable "main" at the root, a
// Linux x86-64 binary, with a fixed time.
func checkZip(t *testing.T, data []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("the uploaded code is not a zip: %v", err)
	}
	if len(zr.File) != 1 {
		t.Fatalf("the zip holds %d files, want 1", len(zr.File))
	}
	f := zr.File[0]
	if f.Name != "main" || f.Mode() != 0o755 || !f.Modified.Equal(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)) || f.Method != zip.Deflate {
		t.Errorf("zip entry %q mode %v modified %v method %d; want main, -rwxr-xr-x, 2020-01-01, deflate", f.Name, f.Mode(), f.Modified, f.Method)
	}
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	exe, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.NewFile(bytes.NewReader(exe))
	if err != nil || ef.Machine != elf.EM_X86_64 {
		t.Fatalf("main is not a Linux x86-64 executable: %v", err)
	}
	if ef.Section(".symtab") != nil {
		t.Error("main keeps its symbol table; the build should strip it")
	}
	return exe
}

// smallELF returns a small Linux x86-64 executable for deploys whose code
// never runs: a copy of true(1) when it is one, with the package's path
// appended so that it passes Deploy's check for the worker runtime (which
// looks for the package's function names in the executable), else the test
// worker. Uploading it costs far less than the 17 MB worker under the race
// detector.
func smallELF(t *testing.T) string {
	t.Helper()
	p := plainELF(t)
	if p == "" {
		return workerBinary(t)
	}
	out := filepath.Join(t.TempDir(), "main")
	exe := append(mustRead(t, p), []byte("\x00"+tencentscf.ImportPath+".init.0\x00")...)
	if err := os.WriteFile(out, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// plainELF returns the path of true(1) when it is a Linux x86-64
// executable, one that is not a gowren worker, or "".
func plainELF(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("true")
	if err != nil {
		return ""
	}
	f, err := elf.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 || bytes.Contains(mustRead(t, p), []byte(tencentscf.ImportPath)) {
		return ""
	}
	return p
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDeployErrors(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &scftest.Options{ActivationPolls: 1000})
	client, err := tencentscf.NewClient(testCred(), testRegion, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	notELF := filepath.Join(t.TempDir(), "main")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	type testCase struct {
		name   string
		client *common.Client
		opts   tencentscf.DeployOptions
		says   []string
		is     error
	}
	addImport := `import _ "` + tencentscf.ImportPath + `"`
	cases := []testCase{
		{"BadName", client, tencentscf.DeployOptions{Function: "1bad"}, []string{`function name "1bad" is not valid`}, nil},
		{"Memory", client, tencentscf.DeployOptions{Function: "f1", MemoryMB: 100}, []string{"memory 100 MB"}, nil},
		{"Timeout", client, tencentscf.DeployOptions{Function: "f1", Timeout: 1500 * time.Millisecond}, []string{"timeout 1.5s"}, nil},
		{"Env", client, tencentscf.DeployOptions{Function: "f1", Env: map[string]string{"BIG": strings.Repeat("x", 5000)}}, []string{"4 KB"}, nil},
		{"NotELF", client, tencentscf.DeployOptions{Function: "f1", Binary: notELF}, []string{"not a Linux executable", "GOOS=linux"}, nil},
		{"NoPackage", client, tencentscf.DeployOptions{Function: "f1", Package: "./no/such/package"}, []string{"build ./no/such/package"}, nil},
		{"NoRuntimeImport", client, tencentscf.DeployOptions{Function: "f1", Package: "./testdata/noimport"},
			[]string{"does not import " + tencentscf.ImportPath, addImport, "every one would fail"}, nil},
		{"NotMain", client, tencentscf.DeployOptions{Function: "f1", Package: "github.com/gowren/gowren/backends"},
			[]string{"not a main package"}, nil},
		{"Namespace", client, tencentscf.DeployOptions{Function: "f1", Namespace: "nosuch", Binary: smallELF(t)},
			[]string{`no namespace "nosuch"`}, tencentscf.ErrFunctionNotFound},
		{"Credentials", srv.ClientWith(common.NewCredential(scftest.TestSecretID, "wrong"), testRegion),
			tencentscf.DeployOptions{Function: "f1", Binary: smallELF(t)}, []string{"AuthFailure.SignatureFailure"}, tencentscf.ErrCredentials},
	}
	if plain := plainELF(t); plain != "" {
		cases = append(cases, testCase{"BinaryWithoutRuntime", client, tencentscf.DeployOptions{Function: "f1", Binary: plain},
			[]string{"does not contain package " + tencentscf.ImportPath, addImport}, nil})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := hangGuard(t) // some cases run go list
			before := len(srv.Calls())
			_, err := tencentscf.Deploy(ctx, tc.client, &tc.opts)
			if err == nil {
				t.Fatal("Deploy succeeded")
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want %v", err, tc.is)
			}
			if (tc.opts.Binary == "" || tc.name == "BinaryWithoutRuntime") && len(srv.Calls()) != before {
				t.Errorf("invalid options reached the API: %v", actions(srv.Calls()[before:]))
			}
		})
	}
}

func TestDeployCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	// The function never turns Active; the deploy's context ends while it
	// waits, after the third status check.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	checks := 0
	srv := newServer(t, &scftest.Options{ActivationPolls: 1 << 30, Intercept: func(c scftest.Call) *scftest.APIError {
		mu.Lock()
		defer mu.Unlock()
		if c.Action == "GetFunction" {
			if checks++; checks == 4 {
				cancel()
			}
		}
		return nil
	}})
	client, err := tencentscf.NewClient(testCred(), testRegion, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	_, err = tencentscf.Deploy(ctx, client, &tencentscf.DeployOptions{Function: "f1", Binary: smallELF(t), PollInterval: time.Millisecond})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), `"f1"`) {
		t.Fatalf("err = %v, want the cancellation, naming the function", err)
	}
	if got := strings.Join(actions(srv.Calls())[:2], " "); got != "GetFunction!ResourceNotFound.Function CreateFunction" {
		t.Errorf("calls %v, want the function created before the wait", actions(srv.Calls()))
	}
}

func TestDeploySkipsUnchangedCode(t *testing.T) {
	t.Parallel()
	var deny atomic.Bool
	srv := newServer(t, &scftest.Options{ActivationPolls: -1, Intercept: func(c scftest.Call) *scftest.APIError {
		if c.Action == "GetFunctionAddress" && deny.Load() {
			return &scftest.APIError{Code: "UnauthorizedOperation.CAM", Message: "not allowed scf:GetFunctionAddress"}
		}
		return nil
	}})
	client, err := tencentscf.NewClient(testCred(), testRegion, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := &tencentscf.DeployOptions{Function: "f1", Binary: smallELF(t), PollInterval: time.Millisecond}
	first, err := tencentscf.Deploy(ctx, client, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		deny       bool
		wantUpload bool
	}{
		// SCF reports the hash of the same package: no upload.
		{"SameHash", false, false},
		// The hash cannot be read: the code is uploaded, and the deploy
		// succeeds.
		{"HashDenied", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			deny.Store(tc.deny)
			var log bytes.Buffer
			o := *opts
			o.Log = &log
			res, err := tencentscf.Deploy(ctx, client, &o)
			if err != nil {
				t.Fatalf("Deploy: %v\n%s", err, log.String())
			}
			uploaded := srv.Stats().Calls["UpdateFunctionCode"] > 0
			if res.CodeUpdated != tc.wantUpload || uploaded != tc.wantUpload || res.CodeSHA256 != first.CodeSHA256 {
				t.Errorf("code updated %v, UpdateFunctionCode called %v, want %v; sha256 %s, first %s\n%s",
					res.CodeUpdated, uploaded, tc.wantUpload, res.CodeSHA256, first.CodeSHA256, log.String())
			}
		})
	}
}
