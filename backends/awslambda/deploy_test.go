package awslambda_test

import (
	"archive/zip"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/awslambda"
	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
)

// checkBootstrap checks that zipped holds exactly an executable bootstrap
// for linux on machine, and returns it.
func checkBootstrap(t *testing.T, zipped []byte, machine elf.Machine) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		t.Fatalf("not a zip: %v", err)
	}
	if len(zr.File) != 1 || zr.File[0].Name != "bootstrap" {
		t.Fatalf("zip holds %d files, first %q; want only bootstrap", len(zr.File), zr.File[0].Name)
	}
	f := zr.File[0]
	if m := f.Mode(); !m.IsRegular() || m.Perm() != 0o755 {
		t.Errorf("bootstrap mode %v, want -rwxr-xr-x", m)
	}
	if !f.Modified.Equal(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("bootstrap modified %v, want the fixed time", f.Modified)
	}
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.NewFile(bytes.NewReader(exe))
	if err != nil {
		t.Fatalf("bootstrap is not an ELF binary: %v", err)
	}
	if ef.Machine != machine || ef.Type != elf.ET_EXEC || ef.OSABI != elf.ELFOSABI_NONE {
		t.Errorf("bootstrap is %v %v, want an executable for %v", ef.Machine, ef.Type, machine)
	}
	return exe
}

func TestZipDeterministic(t *testing.T) {
	exe := bytes.Repeat([]byte("not really a binary "), 1000)
	a, err := awslambda.Zip(exe)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := awslambda.Zip(slices.Clone(exe))
	if !bytes.Equal(a, b) || awslambda.CodeSHA256(a) != awslambda.CodeSHA256(b) {
		t.Fatal("two zips of the same binary differ")
	}
	c, _ := awslambda.Zip(append(slices.Clone(exe), '!'))
	if awslambda.CodeSHA256(a) == awslambda.CodeSHA256(c) {
		t.Fatal("zips of different binaries have the same hash")
	}
}

func TestBuildRefuses(t *testing.T) {
	ctx := hangGuard(t) // eight go list runs: seconds, or minutes on a busy machine
	for _, tc := range []struct {
		opts awslambda.DeployOptions
		want string
	}{
		{awslambda.DeployOptions{Package: "./testdata/noimport"}, "does not import " + awslambda.ImportPath},
		{awslambda.DeployOptions{Package: "github.com/gowren/gowren/backends"}, "not a main package"},
		{awslambda.DeployOptions{Package: "./testdata/nosuch"}, "go list"},
		{awslambda.DeployOptions{Package: "./testdata/app", Arch: "sparc"}, `architecture "sparc"`},
		{awslambda.DeployOptions{Package: "./testdata/app", MemoryMB: 64}, "memory 64 MB"},
		{awslambda.DeployOptions{Package: "./testdata/app", Timeout: 1500 * time.Millisecond}, "timeout 1.5s"},
		{awslambda.DeployOptions{Package: "./testdata/app", Env: map[string]string{"1X": "y"}}, `variable name "1X"`},
		{awslambda.DeployOptions{Package: "./testdata/app", Name: "no spaces"}, `function name "no spaces"`},
	} {
		_, _, err := awslambda.Build(ctx, &tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%+v) = %v, want an error containing %q", tc.opts, err, tc.want)
		}
	}
}

func TestDeploy(t *testing.T) {
	srv, err := awslambdatest.New(&awslambdatest.Options{Stderr: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := newClient(t, srv.URL(), nil)
	// Deploy cross-compiles the program, for arm64 and then for x86_64:
	// on a cold build cache with the cores busy that takes minutes, so
	// only a hung test is stopped. (The x86_64 build shares every package
	// but its main with the test worker's, see testbuild.Worker.)
	ctx := hangGuard(t)
	var log strings.Builder
	opts := func(o awslambda.DeployOptions) *awslambda.DeployOptions {
		o.Package = "./testdata/app"
		o.PollInterval = 10 * time.Millisecond
		o.Log = &log
		return &o
	}
	ops := func(from int) []string {
		var s []string
		for _, call := range srv.Calls()[from:] {
			s = append(s, call.Op)
		}
		return s
	}

	t.Run("needs a role to create", func(t *testing.T) {
		_, err := awslambda.Deploy(ctx, c, opts(awslambda.DeployOptions{}))
		if err == nil || !strings.Contains(err.Error(), "needs a role") {
			t.Fatalf("err = %v, want one asking for a role", err)
		}
		if got := ops(0); !slices.Equal(got, []string{"GetFunction"}) {
			t.Errorf("calls %v, want only GetFunction", got)
		}
	})

	role := "arn:aws:iam::123456789012:role/gowren"
	var first *awslambda.DeployResult
	t.Run("create", func(t *testing.T) {
		from := len(srv.Calls())
		res, err := awslambda.Deploy(ctx, c, opts(awslambda.DeployOptions{Role: role, Env: map[string]string{"GOWREN_X": "1"}}))
		if err != nil {
			t.Fatalf("Deploy: %v\n%s", err, log.String())
		}
		first = res
		// Named after the package; Pending for one read, then Active.
		want := []string{"GetFunction", "CreateFunction", "GetFunction", "GetFunction", "PutFunctionEventInvokeConfig"}
		if got := ops(from); !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
		if !res.Created || res.Function != "app" || res.Arch != "arm64" || res.MemoryMB != awslambda.DefaultMemoryMB ||
			res.Timeout != awslambda.DefaultFunctionTimeout || res.BackendURL != "lambda://app?region=us-east-1&memory=1024&arch=arm64&timeout=300s" {
			t.Errorf("result %+v", res)
		}
		create := srv.Calls()[from+1].Params
		code, _ := create["Code"].(map[string]any)
		for k, v := range map[string]any{"Runtime": "provided.al2023", "Handler": "bootstrap", "Role": role, "PackageType": "Zip"} {
			if create[k] != v {
				t.Errorf("CreateFunction %s = %v, want %v", k, create[k], v)
			}
		}
		if code["ZipFile"] != res.CodeSHA256 || !slices.Equal(create["Architectures"].([]any), []any{"arm64"}) {
			t.Errorf("CreateFunction code %v, architectures %v", code, create["Architectures"])
		}
		if env, _ := create["Environment"].(map[string]any); env == nil || env["Variables"].(map[string]any)["GOWREN_X"] != "1" {
			t.Errorf("CreateFunction environment %v", create["Environment"])
		}
		arn := "arn:aws:lambda:us-east-1:123456789012:function:app"
		if res.Role != role || res.InvokePolicy != `{"Version":"2012-10-17","Statement":[{"Sid":"GowrenInvokerTree","Effect":"Allow",`+
			`"Action":"lambda:InvokeFunction","Resource":["`+arn+`","`+arn+`:*"]}]}` {
			t.Errorf("role %q, invoke policy %s; want %s and lambda:InvokeFunction on %s and its qualifiers", res.Role, res.InvokePolicy, role, arn)
		}
		if put := srv.Calls()[from+4].Params; put["MaximumRetryAttempts"] != float64(0) {
			t.Errorf("PutFunctionEventInvokeConfig %v, want MaximumRetryAttempts 0", put)
		}
		checkBootstrap(t, srv.Code("app"), elf.EM_AARCH64)
	})
	if first == nil {
		t.Fatal("no function to update")
	}

	t.Run("unchanged code is not uploaded", func(t *testing.T) {
		// An update made by someone else is in progress: Deploy waits.
		if _, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
			FunctionName: aws.String("app"), Description: aws.String("touched")}); err != nil {
			t.Fatal(err)
		}
		from := len(srv.Calls())
		res, err := awslambda.Deploy(ctx, c, opts(awslambda.DeployOptions{Name: "app", MemoryMB: 2048, Env: map[string]string{"GOWREN_X": "", "GOWREN_Y": "2"}}))
		if err != nil {
			t.Fatalf("Deploy: %v\n%s", err, log.String())
		}
		want := []string{"GetFunction", "GetFunction", "UpdateFunctionConfiguration", "GetFunction", "GetFunction", "PutFunctionEventInvokeConfig"}
		if got := ops(from); !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v (wait for the update in progress, then change the configuration only)", got, want)
		}
		if res.Created || res.CodeUpdated || !res.ConfigUpdated || res.CodeSHA256 != first.CodeSHA256 || res.MemoryMB != 2048 {
			t.Errorf("result %+v; want the same code hash and a configuration update", res)
		}
		cfg, _ := srv.Config("app")
		env := cfg["Environment"].(map[string]any)["Variables"].(map[string]string)
		if len(env) != 1 || env["GOWREN_Y"] != "2" {
			t.Errorf("environment %v, want GOWREN_X removed and GOWREN_Y set", env)
		}
		for _, call := range srv.Calls()[from:] {
			if call.Status >= 300 {
				t.Errorf("%s answered %d", call.Op, call.Status)
			}
		}
	})

	t.Run("new code is uploaded", func(t *testing.T) {
		from := len(srv.Calls())
		o := opts(awslambda.DeployOptions{Name: "app", Timeout: 30 * time.Second, Arch: "x86_64"})
		o.Package = "./testdata/app2"
		res, err := awslambda.Deploy(ctx, c, o)
		if err != nil {
			t.Fatalf("Deploy: %v\n%s", err, log.String())
		}
		want := []string{"GetFunction", "UpdateFunctionCode", "GetFunction", "GetFunction",
			"UpdateFunctionConfiguration", "GetFunction", "GetFunction", "PutFunctionEventInvokeConfig"}
		if got := ops(from); !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
		if !res.CodeUpdated || res.CodeSHA256 == first.CodeSHA256 || res.Timeout != 30*time.Second || res.Arch != "x86_64" ||
			srv.Calls()[from+1].Params["ZipFile"] != res.CodeSHA256 {
			t.Errorf("result %+v", res)
		}
		checkBootstrap(t, srv.Code("app"), elf.EM_X86_64)
		// The URL carries the function's settings after the deployment:
		// the memory set by the previous one, the new architecture and
		// timeout.
		wantURL := "lambda://app?region=us-east-1&memory=2048&arch=x86_64&timeout=30s"
		if res.BackendURL != wantURL {
			t.Fatalf("BackendURL %q, want %q", res.BackendURL, wantURL)
		}
		isolateAWS(t, "AKIDTEST", "")
		b, err := awslambda.Open(ctx, res.BackendURL)
		if err != nil {
			t.Fatalf("Open(%q): %v", res.BackendURL, err)
		}
		defer b.Close()
		if l := b.Limits(); l.MemoryMB != 2048 || l.Platform != backends.PlatformLambdaX86 || l.Timeout != 30*time.Second {
			t.Errorf("Open(%q).Limits() = %+v; want 2048 MB, x86_64, 30s", res.BackendURL, l)
		}
	})
	t.Log(log.String())
}

// TestDeployShards deploys three shards from one build, then redeploys
// them after one shard's code was changed out of band: only that shard gets
// the build again, the unchanged ones get nothing. Without a role, the
// first shard that cannot be created stops the deployment. (Each Deploy is
// a build: the test keeps to three.)
func TestDeployShards(t *testing.T) {
	srv, err := awslambdatest.New(&awslambdatest.Options{Stderr: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := newClient(t, srv.URL(), nil)
	ctx := hangGuard(t) // each Deploy is a go build: see TestDeploy
	_, err = awslambda.Deploy(ctx, c, &awslambda.DeployOptions{Package: "./testdata/app", Shards: 20})
	if err == nil || strings.Count(err.Error(), "needs a role") != 1 || !strings.Contains(err.Error(), `deploy shard "app-`) {
		t.Fatalf("without a role: %v; want one error naming a shard and asking for a role", err)
	}
	for _, c := range srv.Calls() {
		if c.Op != "GetFunction" {
			t.Errorf("without a role: call %s %s, want none but GetFunction", c.Op, c.Function)
		}
	}

	deploy := func() (*awslambda.DeployResult, string, []awslambdatest.Call) {
		t.Helper()
		var log strings.Builder
		from := len(srv.Calls())
		res, err := awslambda.Deploy(ctx, c, &awslambda.DeployOptions{Package: "./testdata/app", Shards: 3,
			Role: "arn:aws:iam::123456789012:role/gowren", PollInterval: 10 * time.Millisecond, Log: &log})
		if err != nil {
			t.Fatalf("Deploy: %v\n%s", err, log.String())
		}
		return res, log.String(), srv.Calls()[from:]
	}
	// count returns how many calls of op there were, by function.
	count := func(calls []awslambdatest.Call, op string) map[string]int {
		n := map[string]int{}
		for _, c := range calls {
			if c.Op == op {
				n[c.Function]++
			}
		}
		return n
	}
	shards := []string{"app-0", "app-1", "app-2"}

	res, log, calls := deploy()
	if n := strings.Count(log, "building "); n != 1 {
		t.Errorf("%d builds, want 1:\n%s", n, log)
	}
	creates := count(calls, "CreateFunction")
	for _, fn := range shards {
		if creates[fn] != 1 || !strings.Contains(log, fn+": creating function "+fn) || !bytes.Equal(srv.Code(fn), srv.Code("app-0")) {
			t.Errorf("%s: %d creates, want 1 with the same code as app-0:\n%s", fn, creates[fn], log)
		}
	}
	if up := count(calls, "UpdateFunctionCode"); len(creates) != 3 || len(up) != 0 {
		t.Errorf("creates %v, uploads %v; want the three shards created, nothing updated", creates, up)
	}
	wantURL := "lambda://app?region=us-east-1&shards=3&memory=1024&arch=arm64&timeout=300s"
	if !res.Created || res.Function != "app" || res.BackendURL != wantURL || len(res.Shards) != 3 {
		t.Fatalf("result %+v; want app created as three shards, URL %s", res, wantURL)
	}
	for i, r := range res.Shards {
		if r.Function != shards[i] || !r.Created || r.CodeSHA256 != res.CodeSHA256 || !strings.HasSuffix(r.FunctionARN, ":function:"+shards[i]) {
			t.Errorf("shard %d: %+v", i, r)
		}
	}
	// Each shard's workers learn that their children go to the three.
	shardsEnv := func(fn string) (string, bool) {
		cfg, _ := srv.Config(fn)
		env, _ := cfg["Environment"].(map[string]any)
		vars, _ := env["Variables"].(map[string]string)
		v, ok := vars[awslambda.EnvShards]
		return v, ok
	}
	for _, fn := range shards {
		if v, _ := shardsEnv(fn); v != "3" {
			t.Errorf("%s: %s=%q, want 3", fn, awslambda.EnvShards, v)
		}
	}
	var policy struct {
		Statement []struct {
			Effect, Action string
			Resource       []string
		}
	}
	if err := json.Unmarshal([]byte(res.InvokePolicy), &policy); err != nil || len(policy.Statement) != 1 ||
		policy.Statement[0].Action != "lambda:InvokeFunction" || policy.Statement[0].Effect != "Allow" ||
		!slices.Equal(policy.Statement[0].Resource, []string{"arn:aws:lambda:us-east-1:123456789012:function:app-*"}) ||
		res.Role != "arn:aws:iam::123456789012:role/gowren" {
		t.Errorf("invoke policy %s (%v), role %q; want lambda:InvokeFunction on function:app-* for the shards' role", res.InvokePolicy, err, res.Role)
	}

	// Someone uploads other code to app-1.
	other, err := awslambda.Zip([]byte("another build"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("app-1"), ZipFile: other}); err != nil {
		t.Fatal(err)
	}
	res, log, calls = deploy()
	if up := count(calls, "UpdateFunctionCode"); len(up) != 1 || up["app-1"] != 1 || !res.CodeUpdated ||
		!bytes.Equal(srv.Code("app-1"), srv.Code("app-0")) {
		t.Errorf("uploads %v (%+v); want one, to app-1, of the build app-0 has:\n%s", up, res, log)
	}
	if !res.Shards[1].CodeUpdated || res.Shards[0].CodeUpdated || res.Shards[2].CodeUpdated {
		t.Errorf("shards' CodeUpdated %v %v %v, want only app-1's", res.Shards[0].CodeUpdated, res.Shards[1].CodeUpdated, res.Shards[2].CodeUpdated)
	}
	if len(count(calls, "CreateFunction")) != 0 || !strings.Contains(log, "app-0: code unchanged: not uploading") ||
		!strings.Contains(log, "app-2: code unchanged: not uploading") || strings.Count(log, "building ") != 1 {
		t.Errorf("the redeploy created a function, or did not say app-0 and app-2 are unchanged:\n%s", log)
	}

	// A shard deployed as a function of its own is no shard any more.
	var alone strings.Builder
	if _, err := awslambda.Deploy(ctx, c, &awslambda.DeployOptions{Package: "./testdata/app", Name: "app-2",
		PollInterval: 10 * time.Millisecond, Log: &alone}); err != nil {
		t.Fatalf("Deploy app-2 alone: %v\n%s", err, alone.String())
	}
	if v, ok := shardsEnv("app-2"); ok {
		t.Errorf("app-2 deployed alone keeps %s=%q", awslambda.EnvShards, v)
	}
	if v, _ := shardsEnv("app-1"); v != "3" {
		t.Errorf("app-1: %s=%q after app-2 was deployed alone, want 3", awslambda.EnvShards, v)
	}
}

func TestDeployShardsRefuses(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		opts awslambda.DeployOptions
		want string
	}{
		{awslambda.DeployOptions{Package: "./testdata/app", Shards: -1}, "-1 shards: want 1 to 1000"},
		{awslambda.DeployOptions{Package: "./testdata/app", Shards: 1001}, "1001 shards"},
		{awslambda.DeployOptions{Package: "./testdata/app", Shards: 10, Name: strings.Repeat("n", 63)}, "too long for 10 shards"},
	} {
		_, err := awslambda.Deploy(ctx, newClient(t, "http://127.0.0.1:1", nil), &tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Deploy(%+v) = %v, want an error containing %q", tc.opts, err, tc.want)
		}
	}
}
