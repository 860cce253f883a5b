package main

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/awslambda"
	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
)

// awsEnv isolates the test from the machine's AWS configuration and gives it
// static credentials.
func awsEnv(t *testing.T, region string) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_PROFILE":                 "",
		"AWS_ACCESS_KEY_ID":           "AKIDTEST",
		"AWS_SECRET_ACCESS_KEY":       "secret",
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  region,
		"AWS_DEFAULT_REGION":          "",
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_LAMBDA":     "",
	} {
		t.Setenv(k, v)
	}
}

func TestDeployLambdaUsage(t *testing.T) {
	awsEnv(t, "")
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr error
		inErr   string
	}{
		{"help", []string{"deploy", "lambda", "-h"}, nil, "usage: gowren deploy lambda"},
		{"default architecture", []string{"deploy", "lambda", "-h"}, nil, `the architecture: arm64 or x86_64 (default "arm64")`},
		{"unknown flag", []string{"deploy", "lambda", "-frobnicate"}, errUsage, "flag provided but not defined"},
		{"bad arch", []string{"deploy", "lambda", "-arch", "sparc"}, errUsage, `-arch "sparc"`},
		{"bad memory", []string{"deploy", "lambda", "-memory", "64"}, errUsage, "-memory 64"},
		{"bad timeout", []string{"deploy", "lambda", "-timeout", "20m"}, errUsage, "-timeout 20m0s"},
		{"bad endpoint", []string{"deploy", "lambda", "-endpoint", "localhost:1"}, errUsage, "-endpoint"},
		{"two packages", []string{"deploy", "lambda", "./a", "./b"}, errUsage, "one package at most"},
		{"no region", []string{"deploy", "lambda", "."}, errUsage, "no AWS region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(ctx, tc.args, &out, &errOut)
			if !errors.Is(err, tc.wantErr) && !(err == nil && tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v (stderr %q)", err, tc.wantErr, errOut.String())
			}
			if !strings.Contains(errOut.String(), tc.inErr) {
				t.Errorf("stderr %q lacks %q", errOut.String(), tc.inErr)
			}
		})
	}
}

func TestDeployLambda(t *testing.T) {
	awsEnv(t, "eu-central-1")
	srv, err := awslambdatest.New(&awslambdatest.Options{Region: "eu-central-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := hangGuard(t) // each deploy is a go build
	pkg := "../../backends/awslambda/testdata/app"
	// x86_64: the build then shares its packages with the other deploy
	// tests' linux/amd64 builds (the default arm64 is the help's, above, and
	// the awslambda package's TestDeploy builds for it), so that a cold
	// build cache pays for one cross-compiled dependency graph less.
	deploy := func(extra ...string) (string, string, error) {
		args := append([]string{"deploy", "lambda", "-endpoint", srv.URL(), "-poll", "10ms", "-arch", "x86_64"}, extra...)
		var out, errOut bytes.Buffer
		err := run(ctx, append(args, pkg), &out, &errOut)
		return out.String(), errOut.String(), err
	}
	_, stderr, err := deploy("-name", "cli")
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "needs a role") || strings.Contains(stderr, "building") {
		t.Fatalf("without -role: %v (stderr %q); want a failure asking for a role, before any build", err, stderr)
	}
	out, stderr, err := deploy("-name", "cli", "-role", "arn:aws:iam::123456789012:role/gowren", "-memory", "2048", "-env", "A=1",
		"-stores", "s3://bkt/gowren")
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, stderr)
	}
	cfg, _ := srv.Config("cli")
	if env := cfg["Environment"].(map[string]any)["Variables"].(map[string]string); env["A"] != "1" || env["GOWREN_WORKER_STORES"] != "s3://bkt/gowren" {
		t.Errorf("environment %v; want A=1 and the -stores allow-list in GOWREN_WORKER_STORES", env)
	}
	// The URL names the function's memory and architecture, which price
	// the jobs' cost estimates.
	wantURL := "GOWREN_BACKEND=lambda://cli?region=eu-central-1&memory=2048&arch=x86_64&timeout=300s&endpoint=" + url.QueryEscape(srv.URL())
	policy := `{"Version":"2012-10-17","Statement":[{"Sid":"GowrenInvokerTree","Effect":"Allow","Action":"lambda:InvokeFunction",` +
		`"Resource":["arn:aws:lambda:eu-central-1:123456789012:function:cli","arn:aws:lambda:eu-central-1:123456789012:function:cli:*"]}]}`
	for _, want := range []string{"function cli: created", "x86_64, 2048 MB", wantURL,
		"role gowren: policy gowren-invoke-cli allows the workers to invoke it"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	// The grant went through IAM's API (the loopback's, by -endpoint).
	if got, ok := srv.RolePolicy("gowren", "gowren-invoke-cli"); !ok || got != policy {
		t.Errorf("the role's policy gowren-invoke-cli is %q (%v), want %s", got, ok, policy)
	}
	// Without the grant, the command that does it is printed instead.
	out, _, err = deploy("-name", "cli", "-grant=false")
	if want := "aws iam put-role-policy --role-name gowren --policy-name gowren-invoke-cli --policy-document '" + policy + "'"; err != nil || !strings.Contains(out, want) {
		t.Errorf("-grant=false: %v, output %q lacks %q", err, out, want)
	}
	if !strings.Contains(stderr, "building") || len(srv.Code("cli")) == 0 {
		t.Errorf("no build progress (%q) or no code uploaded", stderr)
	}
	// Without -memory, the redeploy keeps the function's 2048 MB and says so.
	out, _, err = deploy("-name", "cli", "-q")
	if err != nil || strings.TrimSpace(out) != wantURL {
		t.Fatalf("quiet redeploy: %q, %v; want only %q", out, err, wantURL)
	}
	var updates int
	for _, c := range srv.Calls() {
		if c.Op == "UpdateFunctionCode" || c.Op == "UpdateFunctionConfiguration" {
			updates++
		}
	}
	if updates != 0 {
		t.Errorf("%d updates for an unchanged redeploy, want 0", updates)
	}
}

// Credentials IAM refuses to grant with leave the deploy done, and print
// the command that grants instead.
func TestDeployLambdaGrantRefused(t *testing.T) {
	awsEnv(t, "eu-central-1")
	srv, err := awslambdatest.New(&awslambdatest.Options{Region: "eu-central-1", DenyIAM: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var out, errOut bytes.Buffer
	err = run(hangGuard(t), []string{"deploy", "lambda", "-endpoint", srv.URL(), "-poll", "10ms", "-arch", "x86_64", "-name", "denied",
		"-role", "arn:aws:iam::123456789012:role/gowren", "../../backends/awslambda/testdata/app"}, &out, &errOut)
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"function denied: created", "could not grant the role the right to invoke it", "AccessDenied",
		"aws iam put-role-policy --role-name gowren --policy-name gowren-invoke-denied", "GOWREN_BACKEND=lambda://denied"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output %q lacks %q", out.String(), want)
		}
	}
}

// Credentials Lambda refuses fail the deploy before anything is built, the
// function named after the package as the deploy would name it.
func TestDeployLambdaChecksCredentialsFirst(t *testing.T) {
	awsEnv(t, "eu-central-1")
	srv, err := awslambdatest.New(&awslambdatest.Options{Region: "eu-central-1", AccessKeyID: "AKIDOTHER"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := hangGuard(t) // go list
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"deploy", "lambda", "-endpoint", srv.URL(), "-role", "arn:aws:iam::123456789012:role/gowren",
		"../../backends/awslambda/testdata/app"}, &out, &errOut)
	if err == nil || errors.Is(err, errUsage) {
		t.Fatalf("err = %v, want a refusal", err)
	}
	for _, want := range []string{"AWS refused the credentials (UnrecognizedClientException", "AWS_ACCESS_KEY_ID", "nothing was built"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(errOut.String(), "building") || len(srv.Code("app")) != 0 {
		t.Errorf("a build started (stderr %q) or code was uploaded", errOut.String())
	}
}

// TestDeployLambdaShards deploys three shards with the CLI: one build, a
// line per shard, and a GOWREN_BACKEND URL with shards=3 that opens them.
func TestDeployLambdaShards(t *testing.T) {
	awsEnv(t, "eu-central-1")
	srv, err := awslambdatest.New(&awslambdatest.Options{Region: "eu-central-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := hangGuard(t) // a go build
	var out, errOut bytes.Buffer
	// x86_64, as TestDeployLambda, to share its build.
	err = run(ctx, []string{"deploy", "lambda", "-endpoint", srv.URL(), "-poll", "10ms", "-arch", "x86_64", "-name", "sh",
		"-shards", "3", "-role", "arn:aws:iam::123456789012:role/gowren", "../../backends/awslambda/testdata/app"}, &out, &errOut)
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, errOut.String())
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	if n := strings.Count(errOut.String(), "building "); n != 1 {
		t.Errorf("%d builds, want 1:\n%s", n, errOut.String())
	}
	for _, fn := range []string{"sh-0", "sh-1", "sh-2"} {
		if !strings.Contains(out.String(), "function "+fn+": created") || len(srv.Code(fn)) == 0 {
			t.Errorf("no %s created:\n%s", fn, out.String())
		}
	}
	want := `{"Version":"2012-10-17","Statement":[{"Sid":"GowrenInvokerTree","Effect":"Allow","Action":"lambda:InvokeFunction","Resource":["arn:aws:lambda:eu-central-1:123456789012:function:sh-*"]}]}`
	if got, ok := srv.RolePolicy("gowren", "gowren-invoke-sh"); !ok || got != want ||
		!strings.Contains(out.String(), "role gowren: policy gowren-invoke-sh allows the workers to invoke the 3 shards") {
		t.Errorf("the role's policy for the shards is %q (%v), want %s:\n%s", got, ok, want, out.String())
	}
	backend := "lambda://sh?region=eu-central-1&shards=3&memory=1024&arch=x86_64&timeout=300s&endpoint=" + url.QueryEscape(srv.URL())
	if !strings.Contains(out.String(), "drive the 3 shards with") || !strings.Contains(out.String(), "GOWREN_BACKEND="+backend+"\n") {
		t.Fatalf("output lacks GOWREN_BACKEND=%s:\n%s", backend, out.String())
	}
	b, err := backends.Open(ctx, backend)
	if err != nil {
		t.Fatalf("open the printed URL: %v", err)
	}
	defer b.Close()
	if err := b.(*awslambda.Shards).Check(ctx); err != nil {
		t.Errorf("the deployed shards fail their check: %v", err)
	}
}

func TestDeployLambdaShardsUsage(t *testing.T) {
	awsEnv(t, "eu-central-1")
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"deploy", "lambda", "-shards", "1001", "."}, &out, &errOut)
	if !errors.Is(err, errUsage) || !strings.Contains(errOut.String(), "-shards 1001: want 1 to 1000") {
		t.Fatalf("err = %v, stderr %q; want a usage error naming -shards", err, errOut.String())
	}
}
