package tencentscf_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tchttp "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/http"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/tencentscf"
	"github.com/gowren/gowren/backends/tencentscf/scftest"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
)

// fileStore is a store in a temporary directory, closed when the test ends.
func fileStore(t *testing.T) storage.Store {
	t.Helper()
	st, err := filestore.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// The classes of SCF's execution statuses and the sentinel each status
// wraps, as the tencentscf backend gives them (docs/design.md lists the
// table); the same as the package's internal test table, checked here
// through the loopback server and the real client.
var statusClasses = []struct {
	code  int
	class string
	is    error
}{
	{400, "fail fast", nil},
	{401, "fail fast", tencentscf.ErrUnauthorized},
	{402, "fail fast", tencentscf.ErrServiceSuspended},
	{403, "fail fast", nil},
	{404, "fail fast", nil},
	{405, "retried", backends.ErrWorkerLost},
	{406, "too large", backends.ErrPayloadTooLarge},
	{407, "too large", backends.ErrPayloadTooLarge},
	{410, "fail fast", tencentscf.ErrServiceSuspended},
	{429, "throttle", backends.ErrThrottled},
	{430, "fail fast", nil},
	{431, "retried", backends.ErrWorkerLost},
	{432, "throttle", backends.ErrThrottled},
	{433, "retried", backends.ErrWorkerLost},
	{434, "retried", backends.ErrWorkerLost},
	{435, "fail fast", tencentscf.ErrFunctionNotFound},
	{436, "fail fast", nil},
	{437, "fail fast", tencentscf.ErrBadDeployment},
	{438, "fail fast", tencentscf.ErrFunctionNotActive},
	{439, "retried", backends.ErrWorkerLost},
	{440, "retried", backends.ErrWorkerLost},
	{441, "fail fast", tencentscf.ErrUnauthorized},
	{442, "fail fast", tencentscf.ErrFunctionNotFound},
	{443, "fail fast", nil},
	{444, "fail fast", tencentscf.ErrBadDeployment},
	{445, "fail fast", tencentscf.ErrBadDeployment},
	{446, "retried", backends.ErrWorkerLost},
	{447, "retried", backends.ErrWorkerLost},
	{449, "retried", backends.ErrWorkerLost},
	{450, "retried", backends.ErrWorkerLost},
	{451, "retried", backends.ErrWorkerLost},
	{452, "retried", backends.ErrWorkerLost},
	{499, "retried", backends.ErrWorkerLost},
	{500, "retried", backends.ErrTransport},
	{532, "retried", backends.ErrWorkerLost},
}

// TestEveryStatusThroughTheServer makes the loopback server end an
// execution with each status of SCF's table and checks the class the
// backend gives it, through the real SDK client and both invocation
// kinds. The function never runs (the server imposes the status first), so
// no worker is started.
func TestEveryStatusThroughTheServer(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &scftest.Options{
		Fail: func(e scftest.Execution) *scftest.Failure {
			code, _ := strconv.Atoi(strings.TrimPrefix(e.Function, "status-"))
			return &scftest.Failure{StatusCode: code, Log: "worker said goodbye"}
		},
		AsyncRate: 1e6, RateBurst: 1000, // the subtests' Invoke calls come at once
	})
	ctx := context.Background()
	for _, tc := range statusClasses {
		name := fmt.Sprintf("status-%d", tc.code)
		if err := srv.AddFunction(scftest.Function{Region: testRegion, Name: name, Command: []string{"/nonexistent/never-started"}}); err != nil {
			t.Fatal(err)
		}
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			t.Parallel()
			b := newBackend(t, srv, testCred(), testRegion, name, nil)
			defer b.Close()
			_, err := b.Invoke(ctx, []byte("payload"))
			tencentscf.CheckClass(t, tc.code, tc.class, tc.is, err)
			var fe *tencentscf.FunctionError
			if errors.As(err, &fe) && (fe.Log != "worker said goodbye" || fe.RequestID == "") {
				t.Errorf("log %q, request %q: want the Result's Log and FunctionRequestId", fe.Log, fe.RequestID)
			}
			tencentscf.CheckClass(t, tc.code, tc.class, tc.is, b.InvokeAsync(ctx, []byte("payload")))
		})
	}
}

// failFirst returns an Options.Fail that ends the first n executions with
// status and counts the executions it saw.
func failFirst(n, status int) (func(scftest.Execution) *scftest.Failure, func() int) {
	var mu sync.Mutex
	seen := 0
	return func(scftest.Execution) *scftest.Failure {
			mu.Lock()
			defer mu.Unlock()
			seen++
			if seen <= n {
				return &scftest.Failure{StatusCode: status}
			}
			return nil
		}, func() int {
			mu.Lock()
			defer mu.Unlock()
			return seen
		}
}

// TestStatusClasses runs a job through the executor for one status of each
// class: a fail-fast status fails the task at its first execution with
// what to do; a retried one is sent again, within Options.Retries; a
// throttle is sent again without costing an attempt.
func TestStatusClasses(t *testing.T) {
	t.Parallel()
	t.Run("FailFast", func(t *testing.T) {
		t.Parallel()
		fail, seen := failFirst(1000, 437)
		srv := errorServer(t, &scftest.Options{Fail: fail}, scftest.Function{})
		b := sameHost{newBackend(t, srv, testCred(), testRegion, "worker", nil)}
		// The executor stops the whole job at a non-retryable invocation
		// error: every invocation would meet it.
		_, err := mapOn(t, b, &fanout.Options{Retries: 3}, square, []int{3})
		if !errors.Is(err, tencentscf.ErrBadDeployment) || backends.Retryable(err) {
			t.Fatalf("err = %v, want ErrBadDeployment, not retryable", err)
		}
		if !strings.Contains(err.Error(), "redeploy with gowren deploy scf") {
			t.Errorf("%q does not say to redeploy", err)
		}
		if n := seen(); n != 1 {
			t.Errorf("%d executions, want 1: status 437 must not be retried", n)
		}
	})
	t.Run("Retried", func(t *testing.T) {
		t.Parallel()
		fail, seen := failFirst(2, 500)
		srv := errorServer(t, &scftest.Options{Fail: fail}, scftest.Function{})
		b := sameHost{newBackend(t, srv, testCred(), testRegion, "worker", nil)}
		got, err := mapOn(t, b, &fanout.Options{Retries: 2}, square, []int{5})
		if err != nil || got[0] != 25 {
			t.Fatalf("Map = %v, %v; want [25] at the third execution", got, err)
		}
		if n := seen(); n != 3 {
			t.Errorf("%d executions, want 3 (two failed with status 500, then one ran)", n)
		}
	})
	t.Run("RetriedWithinRetries", func(t *testing.T) {
		t.Parallel()
		fail, seen := failFirst(1000, 446)
		srv := errorServer(t, &scftest.Options{Fail: fail}, scftest.Function{})
		b := sameHost{newBackend(t, srv, testCred(), testRegion, "worker", nil)}
		_, err := mapOn(t, b, &fanout.Options{Retries: 1}, square, []int{5})
		var te *fanout.TaskError
		if !errors.As(err, &te) || !errors.Is(err, backends.ErrWorkerLost) || te.Attempts != 2 || seen() != 2 {
			t.Fatalf("err = %v after %d executions; want a lost worker after 2", err, seen())
		}
		if !strings.Contains(err.Error(), "gowren program that calls fanout.Init") {
			t.Errorf("%q does not say what to check when the status persists", err)
		}
	})
	t.Run("Throttle", func(t *testing.T) {
		t.Parallel()
		fail, seen := failFirst(3, 429)
		srv := errorServer(t, &scftest.Options{Fail: fail}, scftest.Function{})
		b := sameHost{newBackend(t, srv, testCred(), testRegion, "worker", nil)}
		// No retries at all: throttles do not count as attempts.
		got, err := mapOn(t, b, &fanout.Options{Retries: -1}, square, []int{6})
		if err != nil || got[0] != 36 {
			t.Fatalf("Map = %v, %v; want [36] after three throttles", got, err)
		}
		if n := seen(); n != 4 {
			t.Errorf("%d executions, want 4", n)
		}
	})
}

// TestBadInput: wrong credentials, a qualifier that does not exist and a
// function still deploying each fail fast, not retried, with an error
// saying what to do.
func TestBadInput(t *testing.T) {
	t.Parallel()
	srv := errorServer(t, &scftest.Options{
		Credentials: map[string]scftest.Credential{
			scftest.TestSecretID: {Key: scftest.TestSecretKey},
			"AKIDreadonly":       {Key: "readonly-key", Deny: []string{"InvokeFunction", "Invoke"}},
		},
		ActivationPolls: 1000, // a changed function stays Updating
	}, scftest.Function{})
	if err := srv.AddFunction(scftest.Function{Region: testRegion, Name: "deploying", Command: []string{workerBinary(t)}}); err != nil {
		t.Fatal(err)
	}
	// A configuration change through the API starts an update: the
	// function is Updating until polled often enough.
	req := tchttp.NewCommonRequest("scf", "2018-04-16", "UpdateFunctionConfiguration")
	if err := req.SetActionParameters(map[string]any{"FunctionName": "deploying", "Timeout": 10}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client(testRegion).Send(req, tchttp.NewCommonResponse()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		cred     common.CredentialIface
		function string
		opts     *tencentscf.Options
		async    bool
		is       error
		action   string // the action called exactly once
		says     []string
	}{
		{"WrongSecretKey", common.NewCredential(scftest.TestSecretID, "wrong"), "worker", nil, false, tencentscf.ErrCredentials, "",
			[]string{"AuthFailure.SignatureFailure", "check " + tencentscf.EnvSecretID}},
		{"NotAllowedByCAM", common.NewCredential("AKIDreadonly", "readonly-key"), "worker", nil, false, tencentscf.ErrUnauthorized, "InvokeFunction",
			[]string{"UnauthorizedOperation.CAM", "CAM policy"}},
		{"NotAllowedByCAMAsync", common.NewCredential("AKIDreadonly", "readonly-key"), "worker", nil, true, tencentscf.ErrUnauthorized, "Invoke",
			[]string{"UnauthorizedOperation.CAM", "CAM policy"}},
		{"UnknownQualifier", testCred(), "worker", &tencentscf.Options{Qualifier: "v9"}, false, tencentscf.ErrFunctionNotFound, "InvokeFunction",
			[]string{"ResourceNotFound.Qualifier", `no version or alias "v9" of function "worker"`}},
		{"UnknownQualifierAsync", testCred(), "worker", &tencentscf.Options{Qualifier: "v9"}, true, tencentscf.ErrFunctionNotFound, "Invoke",
			[]string{"status 442", `no version or alias "v9" of function "worker"`}},
		{"StillDeploying", testCred(), "deploying", nil, false, tencentscf.ErrFunctionNotActive, "InvokeFunction",
			[]string{"FailedOperation.FunctionStatusError", "wait until gowren deploy scf has finished"}},
		{"StillDeployingAsync", testCred(), "deploying", nil, true, tencentscf.ErrFunctionNotActive, "Invoke",
			[]string{"FailedOperation.FunctionStatusError", "wait until gowren deploy scf has finished"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: each counts the server's calls of its action.
			b := sameHost{newBackend(t, srv, tc.cred, testRegion, tc.function, tc.opts)}
			before := srv.Stats().Calls[tc.action]
			_, err := mapOn(t, b, &fanout.Options{Retries: 3, Async: tc.async, Store: fileStore(t)}, square, []int{2})
			if err == nil {
				t.Fatal("Map succeeded")
			}
			if !errors.Is(err, tc.is) || backends.Retryable(err) {
				t.Errorf("err = %v, want %v, not retryable", err, tc.is)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
			if tc.action != "" {
				if n := srv.Stats().Calls[tc.action] - before; n != 1 {
					t.Errorf("%d %s calls, want 1: the error must not be retried", n, tc.action)
				}
			}
		})
	}
}

// TestInvokeResultIgnored: the server reports a non-zero InvokeResult for
// successful executions; the backend decides success from ErrMsg and
// RetMsg, so nothing fails and nothing runs twice.
func TestInvokeResultIgnored(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var async []scftest.AsyncResult
	done := make(chan struct{})
	srv := errorServer(t, &scftest.Options{
		InvokeResult: func(int) int64 { return 1 },
		OnAsync: func(r scftest.AsyncResult) {
			mu.Lock()
			defer mu.Unlock()
			if async = append(async, r); len(async) == 1 {
				close(done)
			}
		},
	}, scftest.Function{})
	b := sameHost{newBackend(t, srv, testCred(), testRegion, "worker", nil)}
	got, err := mapOn(t, b, &fanout.Options{BatchSize: 1, Retries: 3}, square, []int{1, 2, 3})
	if err != nil || fmt.Sprint(got) != "[1 4 9]" {
		t.Fatalf("Map = %v, %v", got, err)
	}
	if n := srv.Stats().Invocations[200]; n != 3 {
		t.Errorf("%d executions, want 3: a succeeded invocation was run again", n)
	}
	ab := newBackend(t, srv, testCred(), testRegion, "worker", nil) // mapOn closed b
	defer ab.Close()
	if err := ab.InvokeAsync(context.Background(), []byte("not an envelope")); err != nil {
		t.Fatalf("InvokeAsync: %v; an accepted event with InvokeResult 1 is a success", err)
	}
	<-done
	if n := srv.Stats().Calls["Invoke"]; n != 1 {
		t.Errorf("%d Invoke calls, want 1", n)
	}
}

// TestFunctionErrorFromStackTrace deploys a program that is not a gowren
// worker: its handler's error (status 430) reaches the driver from where
// SCF puts it, stackTrace, and fails the task at once.
func TestFunctionErrorFromStackTrace(t *testing.T) {
	t.Parallel()
	bin := workerBinary(t)
	srv := newServer(t, nil)
	for _, mode := range []string{"error", "panic"} {
		if err := srv.AddFunction(scftest.Function{Region: testRegion, Name: "foreign-" + mode, Command: []string{bin},
			Env: map[string]string{"TESTWORKER_FOREIGN": mode}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		mode, message, stack string
	}{
		{"error", "foreign handler: no such job", "foreign handler: no such job"},
		{"panic", "foreign handler panicked", "main.go"}, // the panic's stack
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			b := sameHost{newBackend(t, srv, testCred(), testRegion, "foreign-"+tc.mode, nil)}
			_, err := mapOn(t, b, &fanout.Options{Retries: 3}, square, []int{2})
			var fe *tencentscf.FunctionError
			if !errors.As(err, &fe) || fe.StatusCode != 430 || backends.Retryable(err) {
				t.Fatalf("err = %v, want status 430, not retried", err)
			}
			if fe.Message != tc.message || !strings.Contains(fe.Stack, tc.stack) {
				t.Errorf("message %q, stack %q; want %q and a stack with %q", fe.Message, fe.Stack, tc.message, tc.stack)
			}
			if !strings.Contains(fe.Log, "foreign handler: "+tc.mode+" mode") {
				t.Errorf("log %q does not have what the handler printed", fe.Log)
			}
			if !strings.Contains(err.Error(), tc.message) || !strings.Contains(err.Error(), "gowren program that calls fanout.Init") {
				t.Errorf("%q does not give the handler's error and what to check", err)
			}
			if n := srv.Stats().Invocations[430]; n < 1 {
				t.Errorf("the server counted %d executions with status 430", n)
			}
		})
	}
}

// TestResultLogAndMemUsage calls InvokeFunction with the real SDK client
// and LogType Tail: the Result's Log has what the function printed during
// the execution and MemUsage the memory it used.
func TestResultLogAndMemUsage(t *testing.T) {
	t.Parallel()
	bin := workerBinary(t)
	srv := newServer(t, nil)
	if err := srv.AddFunction(scftest.Function{Region: testRegion, Name: "echo", Command: []string{bin},
		Env: map[string]string{"TESTWORKER_FOREIGN": "echo"}}); err != nil {
		t.Fatal(err)
	}
	for _, logType := range []string{"Tail", "None"} {
		req := tchttp.NewCommonRequest("scf", "2018-04-16", "InvokeFunction")
		if err := req.SetActionParameters(map[string]any{"FunctionName": "echo", "Event": `{"k":"v"}`, "LogType": logType}); err != nil {
			t.Fatal(err)
		}
		resp := tchttp.NewCommonResponse()
		if err := srv.Client(testRegion).Send(req, resp); err != nil {
			t.Fatal(err)
		}
		var out struct {
			Response struct {
				Result struct {
					RetMsg, ErrMsg, Log string
					MemUsage            int64
				}
			}
		}
		if err := json.Unmarshal(resp.GetBody(), &out); err != nil {
			t.Fatal(err)
		}
		r := out.Response.Result
		if r.ErrMsg != "" || r.RetMsg != `"ok"` {
			t.Fatalf("LogType %s: RetMsg %q, ErrMsg %q", logType, r.RetMsg, r.ErrMsg)
		}
		if wantLog := logType == "Tail"; strings.Contains(r.Log, "foreign handler: echo mode") != wantLog {
			t.Errorf("LogType %s: Log %q", logType, r.Log)
		}
		if runtime.GOOS == "linux" && r.MemUsage < 1<<20 {
			t.Errorf("LogType %s: MemUsage %d bytes; a Go process uses more than a megabyte", logType, r.MemUsage)
		}
	}
}
