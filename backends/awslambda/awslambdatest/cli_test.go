package awslambdatest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
)

// awsCLI returns the path of the AWS CLI. When it is missing, the test
// fails in CI (CI or GOWREN_CI set: .ci/run installs it) and is skipped
// elsewhere, saying so on stderr even without -v.
func awsCLI(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("aws")
	if err == nil {
		return path
	}
	msg := "the AWS CLI (aws) is not on PATH, so the loopback Lambda's fidelity check against a second real client " +
		"cannot run: install it (Debian: apt-get install awscli; .ci/run does)"
	if os.Getenv("CI") != "" || os.Getenv("GOWREN_CI") != "" {
		t.Fatal(msg)
	}
	fmt.Fprintln(os.Stderr, "WARNING: "+t.Name()+": "+msg)
	t.Skip(msg)
	return ""
}

// exchange is one request and its answer, as the recorder saw them.
type exchange struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
}

// recorder is a reverse proxy in front of the server that records every
// exchange. It keeps the client's Host header, which the signature covers.
type recorder struct {
	url string
	mu  sync.Mutex
	log []exchange
}

func newRecorder(t *testing.T, target string) *recorder {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		rec.mu.Lock()
		rec.log = append(rec.log, exchange{resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, resp.Header.Clone(), b})
		rec.mu.Unlock()
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	rec.url = srv.URL
	return rec
}

// take returns the exchanges recorded since the last call.
func (r *recorder) take() []exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.log
	r.log = nil
	return l
}

// cliResult is what the AWS CLI made of an answer.
type cliResult struct {
	exitCode       int
	out            map[string]any // its JSON output
	errCode, errOp string         // from its error line
	errMsg         string
	stderr         string
}

var cliErrorRE = regexp.MustCompile(`An error occurred \(([^)]+)\) when calling the (\w+) operation(?: \(reached max retries: \d+\))?: (.*)`)

// answer is what both clients must get for a scenario: gowren's own tests
// expect the same of the SDK client.
type answer struct {
	status      int
	errorType   string // X-Amzn-ErrorType, and the code the clients report
	message     string // the error's message, or its first line; "" for no error
	version     string // X-Amz-Executed-Version
	functionErr string // X-Amz-Function-Error
	body        string // the body, for an answer that is not an error; "" for any
	retryAfter  string
	logTail     bool // X-Amz-Log-Result holds an execution log
}

// TestAWSCLIFidelity drives the loopback Lambda with a second real client,
// the AWS CLI (botocore, its own SigV4 signer and REST-JSON parser),
// through the calls gowren's tests make with the Go SDK: a synchronous,
// asynchronous and DryRun invocation, a function error, a log tail, a
// payload that is not JSON, an unknown function, version and alias, an
// alias, wrong credentials, a function still Pending and a throttle. For
// each, it checks the status, headers and error body the server sent
// against what gowren's tests expect, what the CLI made of them (exit
// code, output, error code and message), and that the Go SDK client gets
// the same answer.
func TestAWSCLIFidelity(t *testing.T) {
	cliPath := awsCLI(t)
	events := make(chan awslambdatest.EventResult, 2)
	s := newServer(t, awslambdatest.Options{Workers: 1, Concurrency: 1, Timeout: guardTimeout, RetryAfter: 1500 * time.Millisecond,
		PendingPolls: 1, StopAbandoned: true, OnEvent: func(r awslambdatest.EventResult) { events <- r }})
	rec := newRecorder(t, s.URL())
	ctx := timeout(t, 5*time.Minute)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	version, err := exec.CommandContext(ctx, cliPath, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("aws --version: %v: %s", err, version)
	}
	t.Logf("second client: %s", bytes.TrimSpace(version))

	// The CLI's environment: this process's without its AWS settings, and
	// static credentials, one attempt per call (no retries to blur what
	// the server answered) and no pager.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	env = append(env, "AWS_ACCESS_KEY_ID=AKIDCLI", "AWS_SECRET_ACCESS_KEY="+awslambdatest.DefaultSecretAccessKey,
		"AWS_DEFAULT_REGION=us-east-1", "AWS_CONFIG_FILE="+filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "credentials"), "AWS_EC2_METADATA_DISABLED=true",
		"AWS_MAX_ATTEMPTS=1", "AWS_RETRY_MODE=standard", "AWS_PAGER=")
	outFile := filepath.Join(dir, "out")
	cli := func(t *testing.T, extraEnv []string, args ...string) cliResult {
		t.Helper()
		os.Remove(outFile)
		cmd := exec.CommandContext(ctx, cliPath, append([]string{"--endpoint-url", rec.url, "--output", "json"}, args...)...)
		cmd.Env = append(append([]string(nil), env...), extraEnv...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var res cliResult
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			res.exitCode = ee.ExitCode()
		case err != nil:
			t.Fatalf("aws %s: %v", strings.Join(args, " "), err)
		}
		res.stderr = stderr.String()
		if stdout.Len() > 0 {
			if err := json.Unmarshal(stdout.Bytes(), &res.out); err != nil {
				t.Fatalf("aws %s: output %q: %v", strings.Join(args, " "), stdout.String(), err)
			}
		}
		if m := cliErrorRE.FindStringSubmatch(res.stderr); m != nil {
			res.errCode, res.errOp, res.errMsg = m[1], m[2], strings.TrimSpace(m[3])
		}
		return res
	}
	goClient := func(key, secret, region string) *lambda.Client {
		return lambda.New(lambda.Options{Region: region, BaseEndpoint: aws.String(rec.url), Retryer: aws.NopRetryer{},
			Credentials: credentials.NewStaticCredentialsProvider(key, secret, "")})
	}
	sdk := goClient("AKIDSDK", awslambdatest.DefaultSecretAccessKey, "us-east-1")
	payloads := 0
	invokeArgs := func(function, payload string, extra ...string) []string {
		payloads++
		in := file(fmt.Sprintf("in%d", payloads), payload)
		return append([]string{"lambda", "invoke", "--function-name", function, "--payload", "fileb://" + in}, append(extra, outFile)...)
	}

	// check compares one recorded exchange with the answer.
	check := func(t *testing.T, who string, ex []exchange, want answer) exchange {
		t.Helper()
		if len(ex) != 1 {
			t.Fatalf("%s: %d exchanges recorded, want 1", who, len(ex))
		}
		e := ex[0]
		var body struct {
			Message string `json:"message"`
		}
		if want.errorType != "" {
			json.Unmarshal(e.body, &body)
		}
		h := e.header
		if e.status != want.status || h.Get("X-Amzn-ErrorType") != want.errorType || !strings.HasPrefix(body.Message, want.message) ||
			h.Get("X-Amz-Executed-Version") != want.version || h.Get("X-Amz-Function-Error") != want.functionErr ||
			h.Get("Retry-After") != want.retryAfter || (want.body != "" && string(e.body) != want.body) ||
			h.Get("X-Amzn-RequestId") == "" {
			t.Errorf("%s: the server answered %d %v %s; want %+v", who, e.status, h, e.body, want)
		}
		if want.logTail {
			log, err := base64.StdEncoding.DecodeString(h.Get("X-Amz-Log-Result"))
			if err != nil || !strings.HasPrefix(string(log), "START RequestId: "+h.Get("X-Amzn-RequestId")) {
				t.Errorf("%s: X-Amz-Log-Result %q: %v", who, h.Get("X-Amz-Log-Result"), err)
			}
		} else if h.Get("X-Amz-Log-Result") != "" {
			t.Errorf("%s: X-Amz-Log-Result %q unasked", who, h.Get("X-Amz-Log-Result"))
		}
		return e
	}
	// checkCLI checks what the CLI made of the answer.
	checkCLI := func(t *testing.T, res cliResult, op string, want answer) {
		t.Helper()
		if want.errorType != "" {
			if res.exitCode == 0 || res.errCode != want.errorType || res.errOp != op || res.errMsg != strings.TrimSpace(want.message) {
				t.Errorf("the CLI exited %d saying %q; want an error %s of %s: %q", res.exitCode, res.stderr, want.errorType, op, want.message)
			}
			return
		}
		if res.exitCode != 0 {
			t.Fatalf("the CLI exited %d: %s", res.exitCode, res.stderr)
		}
		if op != "Invoke" {
			return
		}
		if got, _ := res.out["StatusCode"].(float64); int(got) != want.status {
			t.Errorf("the CLI reports status %v, want %d", res.out["StatusCode"], want.status)
		}
		if got, _ := res.out["ExecutedVersion"].(string); got != want.version {
			t.Errorf("the CLI reports version %q, want %q", got, want.version)
		}
		if got, _ := res.out["FunctionError"].(string); got != want.functionErr {
			t.Errorf("the CLI reports function error %q, want %q", got, want.functionErr)
		}
		if _, ok := res.out["LogResult"]; ok != want.logTail {
			t.Errorf("the CLI reports LogResult %v, want one: %v", res.out["LogResult"], want.logTail)
		}
		if want.body != "" {
			if got, err := os.ReadFile(outFile); err != nil || string(got) != want.body {
				t.Errorf("the CLI wrote %q, %v; want %q", got, err, want.body)
			}
		}
	}
	// same checks that the two clients' exchanges match: the answers are
	// the server's, whoever asks.
	same := func(t *testing.T, cliEx, sdkEx exchange, samePath bool) {
		t.Helper()
		for _, h := range []string{"X-Amzn-ErrorType", "X-Amz-Function-Error", "X-Amz-Executed-Version", "Retry-After", "Content-Type"} {
			if cliEx.header.Get(h) != sdkEx.header.Get(h) {
				t.Errorf("%s: the CLI got %q, the SDK %q", h, cliEx.header.Get(h), sdkEx.header.Get(h))
			}
		}
		if cliEx.status != sdkEx.status || cliEx.method != sdkEx.method || (samePath && cliEx.path != sdkEx.path) {
			t.Errorf("the CLI's %s %s got %d, the SDK's %s %s %d", cliEx.method, cliEx.path, cliEx.status, sdkEx.method, sdkEx.path, sdkEx.status)
		}
	}

	const arn = "arn:aws:lambda:us-east-1:123456789012:function:function"
	zip := filepath.Join(dir, "code.zip")
	if err := os.WriteFile(zip, zipOf(t, "#!/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, sc := range []struct {
		name string
		cli  []string
		env  []string // extra environment of the CLI
		op   string
		sdk  func() error
		want answer
		// after, when set, waits for what the calls started to end.
		after func(t *testing.T)
		// otherFunction is set when the SDK's call names another
		// function than the CLI's.
		otherFunction bool
	}{
		{name: "sync", cli: invokeArgs("function", `{"op":"echo","arg":1}`), op: "Invoke",
			sdk: func() error {
				_, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(`{"op":"echo","arg":1}`)})
				return err
			},
			want: answer{status: 200, version: "$LATEST", body: `{"op":"echo","arg":1}`}},
		{name: "log tail", cli: invokeArgs("function", `{"op":"log","arg":1}`, "--log-type", "Tail"), op: "Invoke",
			sdk: func() error {
				_, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(`{"op":"log","arg":1}`), LogType: types.LogTypeTail})
				return err
			},
			want: answer{status: 200, version: "$LATEST", logTail: true}},
		{name: "function error", cli: invokeArgs("function", `{"op":"error"}`), op: "Invoke",
			sdk: func() error {
				_, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(`{"op":"error"}`)})
				return err
			},
			want: answer{status: 200, version: "$LATEST", functionErr: "Unhandled"}},
		{name: "async", cli: invokeArgs("function", `{"op":"echo"}`, "--invocation-type", "Event"), op: "Invoke",
			sdk: func() error {
				_, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(`{"op":"echo"}`), InvocationType: types.InvocationTypeEvent})
				return err
			},
			want: answer{status: 202},
			after: func(t *testing.T) {
				// Both events run on the only unit of concurrency, which
				// the calls that follow need.
				for range 2 {
					select {
					case r := <-events:
						if r.FunctionError != "" {
							t.Errorf("event: %+v", r)
						}
					case <-ctx.Done():
						t.Fatal("the events did not run")
					}
				}
			}},
		{name: "dry run", cli: invokeArgs("function", `{}`, "--invocation-type", "DryRun"), op: "Invoke",
			sdk: func() error {
				_, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(`{}`), InvocationType: types.InvocationTypeDryRun})
				return err
			},
			want: answer{status: 204}},
		{name: "not JSON", cli: invokeArgs("function", `not json`), op: "Invoke",
			sdk: func() error {
				_, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(`not json`)})
				return err
			},
			want: answer{status: 400, errorType: "InvalidRequestContentException", message: "Could not parse request body into json: the body is not valid JSON"}},
		{name: "unknown function", cli: invokeArgs("nosuch", `{}`), op: "Invoke",
			sdk: func() error {
				_, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("nosuch"), Payload: []byte(`{}`)})
				return err
			},
			want: answer{status: 404, errorType: "ResourceNotFoundException", message: "Function not found: arn:aws:lambda:us-east-1:123456789012:function:nosuch"}},
		{name: "unknown version", cli: invokeArgs("function", `{}`, "--qualifier", "99"), op: "Invoke",
			sdk: func() error {
				_, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("function"), Qualifier: aws.String("99"), Payload: []byte(`{}`)})
				return err
			},
			want: answer{status: 404, errorType: "ResourceNotFoundException", message: "Function not found: " + arn + ":99"}},
		{name: "publish a version", cli: []string{"lambda", "publish-version", "--function-name", "function"}, op: "PublishVersion",
			want: answer{status: 201}},
		{name: "create an alias", cli: []string{"lambda", "create-alias", "--function-name", "function", "--name", "live", "--function-version", "1"},
			op: "CreateAlias", want: answer{status: 201}},
		{name: "alias", cli: invokeArgs("function", `{"op":"echo"}`, "--qualifier", "live"), op: "Invoke",
			sdk: func() error {
				_, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("function"), Qualifier: aws.String("live"), Payload: []byte(`{"op":"echo"}`)})
				return err
			},
			want: answer{status: 200, version: "1", body: `{"op":"echo"}`}},
		{name: "unknown alias in an ARN", cli: invokeArgs(arn+":nope", `{}`), op: "Invoke",
			sdk: func() error {
				_, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(arn + ":nope"), Payload: []byte(`{}`)})
				return err
			},
			want: answer{status: 404, errorType: "ResourceNotFoundException", message: "Function not found: " + arn + ":nope"}},
		{name: "unsigned", cli: append([]string{"--no-sign-request"}, invokeArgs("function", `{}`)...), op: "Invoke",
			sdk: func() error {
				anon := lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: aws.String(rec.url), Retryer: aws.NopRetryer{}, Credentials: aws.AnonymousCredentials{}})
				_, err := anon.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(`{}`)})
				return err
			},
			want: answer{status: 403, errorType: "MissingAuthenticationTokenException", message: "Missing Authentication Token"}},
		{name: "wrong secret", cli: invokeArgs("function", `{}`), env: []string{"AWS_SECRET_ACCESS_KEY=wrong"}, op: "Invoke",
			sdk: func() error {
				_, err := goClient("AKIDSDK", "wrong", "us-east-1").Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(`{}`)})
				return err
			},
			want: answer{status: 403, errorType: "InvalidSignatureException",
				message: "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."}},
		{name: "wrong region", cli: append([]string{"--region", "eu-west-1"}, invokeArgs("function", `{}`)...), op: "Invoke",
			sdk: func() error {
				_, err := goClient("AKIDSDK", awslambdatest.DefaultSecretAccessKey, "eu-west-1").Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(`{}`)})
				return err
			},
			want: answer{status: 403, errorType: "InvalidSignatureException", message: "Credential should be scoped to a valid region, not 'eu-west-1'. "}},
		{name: "create a function", cli: []string{"lambda", "create-function", "--function-name", "fresh-cli", "--runtime", "provided.al2023",
			"--handler", "bootstrap", "--role", "arn:aws:iam::123456789012:role/r", "--zip-file", "fileb://" + zip}, op: "CreateFunction",
			sdk: func() error {
				code, _ := os.ReadFile(zip)
				_, err := sdk.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("fresh-sdk"), Runtime: types.RuntimeProvidedal2023,
					Handler: aws.String("bootstrap"), Role: aws.String("arn:aws:iam::123456789012:role/r"), Code: &types.FunctionCode{ZipFile: code}})
				return err
			},
			want: answer{status: 201}},
		{name: "pending", cli: invokeArgs("fresh-cli", `{}`), op: "Invoke",
			sdk: func() error {
				_, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("fresh-sdk"), Payload: []byte(`{}`)})
				return err
			},
			want: answer{status: 409, errorType: "ResourceConflictException",
				message: "The operation cannot be performed at this time. The function is currently in the following state: Pending"},
			otherFunction: true},
	} {
		t.Run(sc.name, func(t *testing.T) {
			res := cli(t, sc.env, sc.cli...)
			cliEx := check(t, "CLI", rec.take(), sc.want)
			checkCLI(t, res, sc.op, sc.want)
			if sc.sdk == nil {
				return
			}
			err := sc.sdk()
			if (err != nil) != (sc.want.errorType != "") {
				t.Errorf("the SDK: %v", err)
			}
			sdkEx := check(t, "SDK", rec.take(), sc.want)
			if sc.op == "Invoke" {
				same(t, cliEx, sdkEx, !sc.otherFunction)
			}
			if sc.after != nil {
				sc.after(t)
			}
		})
	}

	// Throttling: with the only unit of concurrency held, both clients get
	// 429 with Retry-After and the reason.
	holdCtx, release := context.WithCancel(ctx)
	h := newHolder(t, client(s, "AKID"))
	h.hold(holdCtx)
	want := answer{status: 429, errorType: "TooManyRequestsException", message: "Rate Exceeded.", retryAfter: "1.5"}
	res := cli(t, nil, invokeArgs("function", `{"op":"echo"}`)...)
	ex := rec.take()
	cliEx := check(t, "CLI", ex, want)
	checkCLI(t, res, "Invoke", want)
	var reason struct{ Reason string }
	if json.Unmarshal(cliEx.body, &reason); reason.Reason != "ConcurrentInvocationLimitExceeded" {
		t.Errorf("throttle body %s, want the reason ConcurrentInvocationLimitExceeded", cliEx.body)
	}
	_, err = sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(`{"op":"echo"}`)})
	var tm *types.TooManyRequestsException
	if !errors.As(err, &tm) || aws.ToString(tm.RetryAfterSeconds) != "1.5" || tm.Reason != types.ThrottleReasonConcurrentInvocationLimitExceeded {
		t.Errorf("the SDK: %v, want TooManyRequestsException with Retry-After 1.5", err)
	}
	same(t, cliEx, check(t, "SDK", rec.take(), want), true)
	release()
	<-h.errs
}
