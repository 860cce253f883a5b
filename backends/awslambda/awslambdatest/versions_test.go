package awslambdatest_test

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
)

// zipOf returns a zip archive holding a bootstrap with the given content.
func zipOf(t *testing.T, content string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.Create("bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(content))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// apiErrorOf returns the code, message and HTTP status of an SDK error.
func apiErrorOf(err error) (code, msg string, status int) {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return "", fmt.Sprint(err), 0
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return api.ErrorCode(), api.ErrorMessage(), status
}

// TestVersionsAndAliases publishes versions and aliases with the SDK, then
// invokes the function by each form of name Lambda accepts: the executed
// version and the ARN the runtime is handed follow the qualifier, and what
// does not exist is not found.
func TestVersionsAndAliases(t *testing.T) {
	s := newServer(t, awslambdatest.Options{Timeout: guardTimeout})
	c := client(s, "AKID")
	ctx := timeout(t, time.Minute)
	const arn = "arn:aws:lambda:us-east-1:123456789012:function:function"

	v1, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("function"), Description: aws.String("first")})
	if err != nil || aws.ToString(v1.Version) != "1" || aws.ToString(v1.FunctionArn) != arn+":1" {
		t.Fatalf("PublishVersion = %+v, %v; want version 1", v1, err)
	}
	if again, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("function")}); err != nil || aws.ToString(again.Version) != "1" {
		t.Fatalf("PublishVersion of unchanged code = %+v, %v; want version 1 again", again, err)
	}
	a, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("function"), Name: aws.String("live"), FunctionVersion: aws.String("1")})
	if err != nil || aws.ToString(a.AliasArn) != arn+":live" || aws.ToString(a.FunctionVersion) != "1" {
		t.Fatalf("CreateAlias = %+v, %v", a, err)
	}
	for _, tc := range []struct {
		name, version string
		err           string
	}{
		{"live", "1", "ResourceConflictException"},
		{"bad", "7", "ResourceNotFoundException"},
		{"42", "1", "ValidationException"},
	} {
		_, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("function"), Name: aws.String(tc.name), FunctionVersion: aws.String(tc.version)})
		if code, _, _ := apiErrorOf(err); code != tc.err {
			t.Errorf("CreateAlias %s -> %s: %v, want %s", tc.name, tc.version, err, tc.err)
		}
	}

	type want struct {
		version, arn string // executed version; ARN the runtime is handed
		status       int    // for an error
		code, inMsg  string
	}
	invokeCases := func(t *testing.T, liveVersion string) {
		for _, tc := range []struct {
			name, function, qualifier string
			want                      want
		}{
			{"unqualified", "function", "", want{version: "$LATEST", arn: arn}},
			{"$LATEST", "function", "$LATEST", want{version: "$LATEST", arn: arn + ":$LATEST"}},
			{"version", "function", "1", want{version: "1", arn: arn + ":1"}},
			{"alias", "function", "live", want{version: liveVersion, arn: arn + ":live"}},
			{"name:alias", "function:live", "", want{version: liveVersion, arn: arn + ":live"}},
			{"name:alias with the same qualifier", "function:live", "live", want{version: liveVersion, arn: arn + ":live"}},
			{"ARN", arn, "", want{version: "$LATEST", arn: arn}},
			{"ARN:version", arn + ":1", "", want{version: "1", arn: arn + ":1"}},
			{"partial ARN", "123456789012:function:function", "", want{version: "$LATEST", arn: arn}},
			{"partial ARN:alias", "123456789012:function:function:live", "", want{version: liveVersion, arn: arn + ":live"}},
			{"unknown version", "function", "99", want{status: 404, code: "ResourceNotFoundException", inMsg: "Function not found: " + arn + ":99"}},
			{"unknown alias", "function:nope", "", want{status: 404, code: "ResourceNotFoundException", inMsg: "Function not found: " + arn + ":nope"}},
			{"two qualifiers", "function:live", "1", want{status: 400, code: "InvalidParameterValueException", inMsg: "does not match the specified qualifier"}},
			{"another region", "arn:aws:lambda:eu-west-1:123456789012:function:function", "", want{status: 404, code: "ResourceNotFoundException", inMsg: "'eu-west-1' are not reachable"}},
			{"another account", "999999999999:function:function", "", want{status: 403, code: "AccessDeniedException", inMsg: "not authorized to perform: lambda:InvokeFunction"}},
			{"not a name", "no such name", "", want{status: 400, code: "ValidationException", inMsg: "at 'functionName' failed to satisfy constraint"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				in := &lambda.InvokeInput{FunctionName: aws.String(tc.function), Payload: []byte(`{"op":"arn"}`)}
				if tc.qualifier != "" {
					in.Qualifier = aws.String(tc.qualifier)
				}
				out, err := c.Invoke(ctx, in)
				if tc.want.code != "" {
					code, msg, status := apiErrorOf(err)
					if code != tc.want.code || status != tc.want.status || !strings.Contains(msg, tc.want.inMsg) {
						t.Errorf("err = %v (%d); want %d %s containing %q", err, status, tc.want.status, tc.want.code, tc.want.inMsg)
					}
					return
				}
				if err != nil || out.FunctionError != nil {
					t.Fatalf("Invoke: %v, %+v", err, out)
				}
				if got := aws.ToString(out.ExecutedVersion); got != tc.want.version || string(out.Payload) != `"`+tc.want.arn+`"` {
					t.Errorf("executed version %q, invoked ARN %s; want %q, %q", got, out.Payload, tc.want.version, tc.want.arn)
				}
			})
		}
	}
	t.Run("live is 1", func(t *testing.T) { invokeCases(t, "1") })

	// A new version while the update is in progress is refused; once it is
	// done, version 2 is published and the alias routed to it.
	up, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("function"), ZipFile: zipOf(t, "v2")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("function")})
	if code, msg, _ := apiErrorOf(err); code != "ResourceConflictException" || !strings.Contains(msg, "An update is in progress") {
		t.Errorf("PublishVersion during an update: %v, want ResourceConflictException", err)
	}
	w8 := lambda.NewFunctionUpdatedV2Waiter(c, func(o *lambda.FunctionUpdatedV2WaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Millisecond, 10*time.Millisecond
	})
	if err := w8.Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("function")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if v2, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("function")}); err != nil || aws.ToString(v2.Version) != "2" {
		t.Fatalf("PublishVersion after the update = %+v, %v; want version 2", v2, err)
	}
	if _, err := c.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String("function"), Name: aws.String("live"), FunctionVersion: aws.String("2")}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: aws.String("function"), Name: aws.String("live")}); err != nil || aws.ToString(got.FunctionVersion) != "2" {
		t.Fatalf("GetAlias = %+v, %v; want version 2", got, err)
	}
	t.Run("live is 2", func(t *testing.T) { invokeCases(t, "2") })

	// The configuration of a version is the one it was published with.
	for _, tc := range []struct{ qualifier, sha, description string }{
		{"1", aws.ToString(v1.CodeSha256), "first"},
		{"live", aws.ToString(up.CodeSha256), ""},
		{"$LATEST", aws.ToString(up.CodeSha256), ""},
	} {
		cfg, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("function"), Qualifier: aws.String(tc.qualifier)})
		if err != nil || aws.ToString(cfg.CodeSha256) != tc.sha || aws.ToString(cfg.Description) != tc.description {
			t.Errorf("configuration of %s: %+v, %v; want code %q, description %q", tc.qualifier, cfg, err, tc.sha, tc.description)
		}
	}
}

// TestPendingInvoke invokes a function just created: Lambda refuses it with
// 409 ResourceConflictException while it is Pending, and runs it once it is
// Active.
func TestPendingInvoke(t *testing.T) {
	s := newServer(t, awslambdatest.Options{PendingPolls: 1})
	c := client(s, "AKID")
	ctx := timeout(t, time.Minute)
	if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("fresh"),
		Role: aws.String("arn:aws:iam::123456789012:role/r"), Runtime: types.RuntimeProvidedal2023, Handler: aws.String("bootstrap"),
		Code: &types.FunctionCode{ZipFile: zipOf(t, "v1")}}); err != nil {
		t.Fatal(err)
	}
	invoke := func() (*lambda.InvokeOutput, error) {
		return c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("fresh"), Payload: []byte(`{"op":"echo"}`)})
	}
	_, err := invoke()
	code, msg, status := apiErrorOf(err)
	const want = "The operation cannot be performed at this time. The function is currently in the following state: Pending"
	if code != "ResourceConflictException" || status != http.StatusConflict || msg != want {
		t.Fatalf("invocation of a Pending function: %v (%d); want 409 ResourceConflictException %q", err, status, want)
	}
	if st := s.Stats(); st.WorkersStarted != 0 || st.Invocations != 0 {
		t.Errorf("stats %+v: a refused invocation ran", st)
	}
	out, err := invoke()
	if err != nil || out.FunctionError != nil || string(out.Payload) != `{"op":"echo"}` {
		t.Fatalf("invocation once Active: %+v, %v", out, err)
	}
	cfg, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("fresh")})
	if err != nil || cfg.State != types.StateActive {
		t.Errorf("state %v, %v; want Active", cfg.State, err)
	}
}

// TestLogTail checks LogType Tail: the last 4 KB of the execution log, with
// what the function printed between Lambda's START and END lines, in
// X-Amz-Log-Result.
func TestLogTail(t *testing.T) {
	s := newServer(t, awslambdatest.Options{Timeout: guardTimeout})
	c := client(s, "AKID")
	ctx := timeout(t, time.Minute)
	invoke := func(event string, logType types.LogType) *lambda.InvokeOutput {
		t.Helper()
		out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(event), LogType: logType})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	decode := func(out *lambda.InvokeOutput) string {
		t.Helper()
		b, err := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
		if err != nil {
			t.Fatalf("LogResult %q: %v", aws.ToString(out.LogResult), err)
		}
		return string(b)
	}
	if out := invoke(`{"op":"log","arg":2}`, ""); out.LogResult != nil {
		t.Errorf("LogResult %q without LogType Tail", aws.ToString(out.LogResult))
	}
	out := invoke(`{"op":"log","arg":2}`, types.LogTypeTail)
	log := decode(out)
	id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
	if len(lines) != 6 || lines[0] != "START RequestId: "+id+" Version: $LATEST" ||
		lines[1] != "testworker: a line to stdout" || lines[2] != "testworker: line 0 to stderr" || lines[3] != "testworker: line 1 to stderr" ||
		!strings.HasPrefix(lines[4], "END RequestId: ") || !strings.HasPrefix(lines[5], "REPORT RequestId: ") || !strings.Contains(lines[5], "\tDuration: ") {
		t.Errorf("execution log:\n%s", log)
	}
	// A failed invocation has its log too.
	if out := invoke(`{"op":"error"}`, types.LogTypeTail); out.FunctionError == nil || !strings.Contains(decode(out), "END RequestId: ") {
		t.Errorf("failed invocation: %q, log %q", aws.ToString(out.FunctionError), decode(out))
	}
	// Only the last 4 KB: the end of the output and Lambda's closing lines.
	long := decode(invoke(`{"op":"log","arg":500}`, types.LogTypeTail))
	if len(long) != 4096 || !strings.Contains(long, "testworker: line 499 to stderr\nEND RequestId: ") || strings.Contains(long, "START") {
		t.Errorf("log of 500 lines: %d bytes, ending %q; want the last 4096 bytes", len(long), long[max(len(long)-300, 0):])
	}
	_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(`{}`), LogType: "Everything"})
	if code, msg, _ := apiErrorOf(err); code != "InvalidParameterValueException" || !strings.Contains(msg, "logType") {
		t.Errorf("LogType Everything: %v, want InvalidParameterValueException about logType", err)
	}
}
