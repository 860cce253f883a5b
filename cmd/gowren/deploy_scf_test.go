package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/tencentscf"
	"github.com/gowren/gowren/backends/tencentscf/scftest"
	"github.com/gowren/gowren/fanout"
)

func TestDeploySCFUsage(t *testing.T) {
	t.Setenv(tencentscf.EnvRegion, "")
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr error
		says    string
	}{
		{"help", []string{"deploy", "scf", "-h"}, nil, "-function"},
		{"no function", []string{"deploy", "scf", "-region", "ap-guangzhou"}, errUsage, "-function NAME is required"},
		{"no region", []string{"deploy", "scf", "-function", "f1"}, errUsage, "-region REGION"},
		{"bad flag", []string{"deploy", "scf", "-frobnicate"}, errUsage, "flag provided but not defined"},
		{"bad env", []string{"deploy", "scf", "-function", "f1", "-env", "NOVALUE"}, errUsage, "want KEY=VALUE"},
		{"two packages", []string{"deploy", "scf", "-function", "f1", "-region", "ap-guangzhou", "./a", "./b"}, errUsage, "one PACKAGE at most"},
		{"package and binary", []string{"deploy", "scf", "-function", "f1", "-region", "ap-guangzhou", "-binary", "x", "./a"}, errUsage, "not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(ctx, tc.args, &out, &errOut)
			if !errors.Is(err, tc.wantErr) && !(err == nil && tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v (stderr %q)", err, tc.wantErr, errOut.String())
			}
			if !strings.Contains(errOut.String(), tc.says) {
				t.Errorf("stderr %q does not say %q", errOut.String(), tc.says)
			}
		})
	}
	t.Run("no credentials", func(t *testing.T) {
		t.Setenv(tencentscf.EnvSecretID, "")
		err := run(ctx, []string{"deploy", "scf", "-function", "f1", "-region", "ap-guangzhou"}, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), tencentscf.EnvSecretID) {
			t.Errorf("err = %v, want a failure naming %s", err, tencentscf.EnvSecretID)
		}
	})
}

// square is a twin of the test worker's backendtest.square: same name and
// signature, so the deployed worker runs it.
var square = fanout.RegisterTo(fanout.NewRegistry(), "backendtest.square", func(context.Context, int) (int, error) {
	return 0, errors.New("runs on the worker only")
})

func TestDeploySCF(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("SKIP (loud): the deployed linux/amd64 worker cannot run on %s/%s; run this test on linux/amd64", runtime.GOOS, runtime.GOARCH)
	}
	srv, err := scftest.NewServer(&scftest.Options{ActivationPolls: -1, Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	t.Setenv(tencentscf.EnvSecretID, scftest.TestSecretID)
	t.Setenv(tencentscf.EnvSecretKey, scftest.TestSecretKey)
	t.Setenv(tencentscf.EnvRegion, "ap-guangzhou")
	ctx := hangGuard(t) // two deploys, each a go build
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"deploy", "scf", "-function", "cli-worker", "-endpoint", srv.URL(), "-memory", "256", "-timeout", "45s",
		"-env", "A=1", "-env", "B=two=2", "github.com/gowren/gowren/backends/tencentscf/internal/testworker"}, &out, &errOut)
	if err != nil {
		t.Fatalf("deploy: %v\nstderr:\n%s", err, errOut.String())
	}
	info, ok := srv.Function("ap-guangzhou", "default", "cli-worker")
	if !ok || info.MemoryMB != 256 || info.Timeout != 45*time.Second || info.Env["A"] != "1" || info.Env["B"] != "two=2" || info.Runtime != "Go1" || info.Handler != "main" {
		t.Fatalf("the function is %+v", info)
	}
	if !strings.Contains(out.String(), "created SCF function cli-worker in ap-guangzhou") {
		t.Errorf("stdout does not report the creation:\n%s", out.String())
	}
	// No -role: the hint says invoker trees need one, and what its policy
	// must allow.
	if !strings.Contains(out.String(), "need an execution role: redeploy with -role ROLE") ||
		!strings.Contains(out.String(), `{"effect":"allow","action":["scf:InvokeFunction"],"resource":["qcs::scf:ap-guangzhou:uin/UIN:namespace/default/function/cli-worker"]}`) {
		t.Errorf("stdout does not give the invoker trees' CAM statement:\n%s", out.String())
	}
	m := regexp.MustCompile(`export GOWREN_BACKEND='([^']+)'`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("stdout has no GOWREN_BACKEND line:\n%s", out.String())
	}
	// The printed URL opens a backend that runs the deployed worker.
	b, err := backends.Open(ctx, m[1])
	if err != nil {
		t.Fatalf("open %s: %v", m[1], err)
	}
	ex := fanout.NewExecutor(b, nil)
	defer ex.Close()
	got, err := fanout.Map(ctx, ex, square, []int{6, 7})
	if err != nil || got[0] != 36 || got[1] != 49 {
		t.Fatalf("Map on %s = %v, %v", m[1], got, err)
	}
	if l := b.Limits(); l.Timeout != 45*time.Second || l.MemoryMB != 256 {
		t.Errorf("the URL's backend has timeout %v and memory %d MB, want the deployed 45s and 256 MB", l.Timeout, l.MemoryMB)
	}

	// Deploying again without -memory, -timeout and -env keeps the
	// function's settings, and the printed URL says what they are.
	before := len(srv.Calls())
	out.Reset()
	errOut.Reset()
	err = run(ctx, []string{"deploy", "scf", "-function", "cli-worker", "-endpoint", srv.URL(),
		"github.com/gowren/gowren/backends/tencentscf/internal/testworker"}, &out, &errOut)
	if err != nil {
		t.Fatalf("deploy again: %v\nstderr:\n%s", err, errOut.String())
	}
	info, _ = srv.Function("ap-guangzhou", "default", "cli-worker")
	if info.MemoryMB != 256 || info.Timeout != 45*time.Second || info.Env["A"] != "1" {
		t.Errorf("a redeploy without flags changed the function: %+v", info)
	}
	for _, c := range srv.Calls()[before:] {
		if c.Action == "UpdateFunctionConfiguration" {
			t.Errorf("a redeploy without flags sent UpdateFunctionConfiguration %v", c.Params)
		}
	}
	// -stores adds the workers' store allow-list to the environment,
	// keeping the other variables; -role sets the execution role, whose
	// keys the workers of an invoker tree use.
	out.Reset()
	errOut.Reset()
	err = run(ctx, []string{"deploy", "scf", "-function", "cli-worker", "-endpoint", srv.URL(), "-stores", "s3://bkt-1250000000/gowren", "-role", "gowren-worker",
		"github.com/gowren/gowren/backends/tencentscf/internal/testworker"}, &out, &errOut)
	if err != nil {
		t.Fatalf("deploy with -stores: %v\nstderr:\n%s", err, errOut.String())
	}
	info, _ = srv.Function("ap-guangzhou", "default", "cli-worker")
	if info.Env["A"] != "1" || info.Env["B"] != "two=2" || info.Env["GOWREN_WORKER_STORES"] != "s3://bkt-1250000000/gowren" {
		t.Errorf("environment after -stores: %v", info.Env)
	}
	// The role is granted the right to invoke the function, through CAM.
	const policy = `{"version":"2.0","statement":[{"effect":"allow","action":["scf:InvokeFunction"],` +
		`"resource":["qcs::scf:ap-guangzhou:uin/` + scftest.DefaultOwnerUin + `:namespace/default/function/cli-worker"]}]}`
	if got := srv.RolePolicies("gowren-worker"); info.Role != "gowren-worker" || got["gowren-invoke-cli-worker"] != policy ||
		!strings.Contains(out.String(), "with the keys of role gowren-worker, allowed by its CAM policy gowren-invoke-cli-worker") {
		t.Errorf("role %q with policies %v; want %s, and stdout saying so:\n%s", info.Role, got, policy, out.String())
	}
	// Granting again updates the policy (CreatePolicy: the name is in
	// use); -grant=false prints the statement instead.
	for _, grant := range []string{"-grant=true", "-grant=false"} {
		out.Reset()
		errOut.Reset()
		before := len(srv.Calls())
		if err := run(ctx, []string{"deploy", "scf", "-function", "cli-worker", "-endpoint", srv.URL(), grant,
			"github.com/gowren/gowren/backends/tencentscf/internal/testworker"}, &out, &errOut); err != nil {
			t.Fatalf("deploy %s: %v\nstderr:\n%s", grant, err, errOut.String())
		}
		var updates int
		for _, c := range srv.Calls()[before:] {
			if c.Action == "UpdatePolicy" {
				updates++
			}
		}
		if grant == "-grant=true" && (updates != 1 || srv.RolePolicies("gowren-worker")["gowren-invoke-cli-worker"] != policy) {
			t.Errorf("a second grant made %d UpdatePolicy calls, want 1", updates)
		}
		if grant == "-grant=false" && (updates != 0 || !strings.Contains(out.String(), "with the keys of role gowren-worker, whose CAM policy needs")) {
			t.Errorf("-grant=false: %d UpdatePolicy calls, stdout:\n%s", updates, out.String())
		}
	}
	if !strings.Contains(out.String(), "256 MB, timeout 45s") || !strings.Contains(out.String(), "memory=256") || !strings.Contains(out.String(), "timeout=45s") {
		t.Errorf("stdout does not report the function's own settings:\n%s", out.String())
	}
}

func TestDeploySCFRefusesProgramWithoutRuntime(t *testing.T) {
	srv, err := scftest.NewServer(&scftest.Options{Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	t.Setenv(tencentscf.EnvSecretID, scftest.TestSecretID)
	t.Setenv(tencentscf.EnvSecretKey, scftest.TestSecretKey)
	ctx := hangGuard(t) // go list
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"deploy", "scf", "-function", "f1", "-region", "ap-guangzhou", "-endpoint", srv.URL(),
		"github.com/gowren/gowren/backends/tencentscf/testdata/noimport"}, &out, &errOut)
	if err == nil || errors.Is(err, errUsage) {
		t.Fatalf("err = %v, want a refusal", err)
	}
	// The one API call is the check of the credentials, before the build.
	if calls := srv.Calls(); len(calls) != 1 || calls[0].Action != "GetFunction" {
		t.Errorf("calls %+v, want only the GetFunction that checks the credentials", calls)
	}
	for _, want := range []string{"does not import " + tencentscf.ImportPath, `import _ "` + tencentscf.ImportPath + `"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// Credentials SCF refuses fail the deploy before anything is built.
func TestDeploySCFChecksCredentialsFirst(t *testing.T) {
	srv, err := scftest.NewServer(&scftest.Options{Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	t.Setenv(tencentscf.EnvSecretID, scftest.TestSecretID)
	t.Setenv(tencentscf.EnvSecretKey, "wrong")
	t.Setenv(tencentscf.EnvSessionToken, "")
	var out, errOut bytes.Buffer
	err = run(context.Background(), []string{"deploy", "scf", "-function", "f1", "-region", "ap-guangzhou", "-endpoint", srv.URL(),
		"github.com/gowren/gowren/backends/tencentscf/internal/testworker"}, &out, &errOut)
	if err == nil || errors.Is(err, errUsage) {
		t.Fatalf("err = %v, want a refusal", err)
	}
	for _, want := range []string{"Tencent Cloud refused the credentials (AuthFailure.SignatureFailure", tencentscf.EnvSecretKey, "nothing was built"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(errOut.String(), "building") {
		t.Errorf("a build started: %q", errOut.String())
	}
	if _, ok := srv.Function("ap-guangzhou", "default", "f1"); ok {
		t.Error("the function was created")
	}
}
