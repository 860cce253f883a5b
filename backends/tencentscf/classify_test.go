package tencentscf

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/internal/gopkg"
)

var testSite = site{op: "invoke", function: "fn", region: "ap-guangzhou", namespace: "default"}

func TestClassifyAPI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code      string
		is        error // nil: not retryable and none of the sentinels
		retryable bool
	}{
		{"RequestLimitExceeded", backends.ErrThrottled, true},
		{"RequestLimitExceeded.UinLimitExceeded", backends.ErrThrottled, true},
		{"LimitExceeded", backends.ErrThrottled, true},
		{"LimitExceeded.TotalConcurrencyMemory", backends.ErrThrottled, true},
		{"ResourceInsufficient", backends.ErrThrottled, true},
		{"FailedOperation.OperationConflict", backends.ErrThrottled, true},
		// A function being deployed fails fast: the driver cannot know
		// when, or whether, it turns Active.
		{"FailedOperation.FunctionStatusError", ErrFunctionNotActive, false},
		{"FailedOperation.FunctionNameStatusError", ErrFunctionNotActive, false},
		{"FailedOperation.FunctionVersionStatusNotActive", ErrFunctionNotActive, false},
		{"ResourceNotFound.Function", ErrFunctionNotFound, false},
		{"ResourceNotFound.FunctionName", ErrFunctionNotFound, false},
		{"InvalidParameter.FunctionName", ErrFunctionNotFound, false},
		{"ResourceNotFound.Namespace", ErrFunctionNotFound, false},
		{"ResourceNotFound.Version", ErrFunctionNotFound, false},
		{"ResourceNotFound.Qualifier", ErrFunctionNotFound, false},
		{"AuthFailure.SignatureFailure", ErrCredentials, false},
		{"AuthFailure.SecretIdNotFound", ErrCredentials, false},
		{"AuthFailure.SignatureExpire", ErrCredentials, false},
		{"AuthFailure.UnauthorizedOperation", ErrUnauthorized, false},
		{"UnauthorizedOperation.CAM", ErrUnauthorized, false},
		{"RequestSizeLimitExceeded", backends.ErrPayloadTooLarge, false},
		{"InvalidParameter.RequestTooLarge", backends.ErrPayloadTooLarge, false},
		{"InternalError", backends.ErrTransport, true},
		{"InternalError.System", backends.ErrTransport, true},
		{"FailedOperation.InvokeFunction", backends.ErrTransport, true},
		{"ClientError.NetworkError", backends.ErrTransport, true},
		{"UnsupportedRegion", nil, false},
		{"LimitExceeded.Memory", nil, false},
		{"LimitExceeded.Quota", nil, false},
		{"InvalidParameterValue", nil, false},
		{"InvalidParameterValue.Param", nil, false},
		{"InvalidParameterValue.ClientContext", nil, false},
		{"InvalidParameterValue.FunctionType", nil, false},
		{"ResourceUnavailable.InsufficientBalance", ErrServiceSuspended, false},
		{"FailedOperation.InsufficientBalance", ErrServiceSuspended, false},
	} {
		t.Run(tc.code, func(t *testing.T) {
			sdk := tcerr.NewTencentCloudSDKError(tc.code, "message", "req-1")
			err := testSite.classifyAPI(sdk)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("%v is not %v", err, tc.is)
			}
			if got := backends.Retryable(err); got != tc.retryable {
				t.Errorf("Retryable(%v) = %v, want %v", err, got, tc.retryable)
			}
			var se *tcerr.TencentCloudSDKError
			if !errors.As(err, &se) || se.Code != tc.code {
				t.Errorf("%v does not unwrap to the SDK error", err)
			}
			if !strings.Contains(err.Error(), `invoke "fn" (region ap-guangzhou, namespace default)`) || !strings.Contains(err.Error(), "req-1") {
				t.Errorf("%q does not name the function, region, namespace and request", err)
			}
		})
	}
	t.Run("NotAnSDKError", func(t *testing.T) {
		if err := testSite.classifyAPI(errors.New("boom")); !errors.Is(err, backends.ErrTransport) {
			t.Errorf("a plain error: %v, want ErrTransport", err)
		}
	})
	t.Run("HTTP429", func(t *testing.T) {
		sdk := tcerr.NewTencentCloudSDKError("ClientError.HttpStatusCodeError", "Request fail with http status code: 429 Too Many Requests, with body: ", "")
		if err := testSite.classifyAPI(sdk); !errors.Is(err, backends.ErrThrottled) {
			t.Errorf("HTTP 429: %v, want ErrThrottled", err)
		}
	})
	t.Run("LongMessage", func(t *testing.T) {
		sdk := tcerr.NewTencentCloudSDKError("ClientError.ParseJsonError", strings.Repeat("x", 1<<20), "")
		if err := testSite.classifyAPI(sdk); len(err.Error()) > 2*maxMessage {
			t.Errorf("error of %d bytes: a message quoting a whole body must be clipped", len(err.Error()))
		}
	})
}

// statusTable is SCF's table of function status codes
// (https://www.tencentcloud.com/document/product/583/35311, with 403 and
// 532 from earlier editions), each with the class gowren gives it and the
// sentinel it wraps (nil: none). 431, 440, 448, 451, 452 and 502 are in
// no edition: they stand for codes the table may gain, classified by the
// default for their range.
var statusTable = []struct {
	code  int
	class string // "success", "fail fast", "retried", "throttle" or "too large"
	is    error
}{
	{200, "success", nil},
	{202, "success", nil},
	{400, "fail fast", nil},
	{401, "fail fast", ErrUnauthorized},
	{402, "fail fast", ErrServiceSuspended},
	{403, "fail fast", nil},
	{404, "fail fast", nil},
	{405, "retried", backends.ErrWorkerLost},
	{406, "too large", backends.ErrPayloadTooLarge},
	{407, "too large", backends.ErrPayloadTooLarge},
	{410, "fail fast", ErrServiceSuspended},
	{429, "throttle", backends.ErrThrottled},
	{430, "fail fast", nil},
	{431, "retried", backends.ErrWorkerLost},
	{432, "throttle", backends.ErrThrottled},
	{433, "retried", backends.ErrWorkerLost},
	{434, "retried", backends.ErrWorkerLost},
	{435, "fail fast", ErrFunctionNotFound},
	{436, "fail fast", nil},
	{437, "fail fast", ErrBadDeployment},
	{438, "fail fast", ErrFunctionNotActive},
	{439, "retried", backends.ErrWorkerLost},
	{440, "retried", backends.ErrWorkerLost},
	{441, "fail fast", ErrUnauthorized},
	{442, "fail fast", ErrFunctionNotFound},
	{443, "fail fast", nil},
	{444, "fail fast", ErrBadDeployment},
	{445, "fail fast", ErrBadDeployment},
	{446, "retried", backends.ErrWorkerLost},
	{447, "retried", backends.ErrWorkerLost},
	{448, "retried", backends.ErrWorkerLost},
	{449, "retried", backends.ErrWorkerLost},
	{450, "retried", backends.ErrWorkerLost},
	{451, "retried", backends.ErrWorkerLost},
	{452, "retried", backends.ErrWorkerLost},
	{499, "retried", backends.ErrWorkerLost},
	{500, "retried", backends.ErrTransport},
	{502, "retried", backends.ErrTransport},
	{532, "retried", backends.ErrWorkerLost},
}

// CheckClass is checkClass for the package's external tests.
var CheckClass = checkClass

// checkClass checks that err, the error of an execution that ended with
// status code, is of class and wraps is.
func checkClass(t *testing.T, code int, class string, is, err error) {
	t.Helper()
	if class == "success" {
		if err != nil {
			t.Errorf("status %d: %v, want success", code, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("status %d: no error, want %s", code, class)
	}
	if is != nil && !errors.Is(err, is) {
		t.Errorf("status %d: %v is not %v", code, err, is)
	}
	retryable, throttled := backends.Retryable(err), errors.Is(err, backends.ErrThrottled)
	switch class {
	case "fail fast", "too large":
		if retryable {
			t.Errorf("status %d: %v is retryable, want %s", code, err, class)
		}
	case "retried":
		if !retryable || throttled {
			t.Errorf("status %d: %v: retryable %v, throttled %v; want a retried failure, not a throttle", code, err, retryable, throttled)
		}
	case "throttle":
		if !throttled || !retryable {
			t.Errorf("status %d: %v: want a throttle", code, err)
		}
	default:
		t.Fatalf("unknown class %q", class)
	}
	var fe *FunctionError
	if !errors.As(err, &fe) || fe.StatusCode != code {
		t.Errorf("status %d: %v does not carry a *FunctionError with the status", code, err)
	}
	if !strings.Contains(err.Error(), "status "+strconv.Itoa(code)) {
		t.Errorf("status %d: %q does not name the status", code, err)
	}
}

func TestClassifyEveryStatus(t *testing.T) {
	t.Parallel()
	listed := map[int]bool{}
	for _, tc := range statusTable {
		listed[tc.code] = true
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			r := invokeResult{FunctionRequestId: "req-1",
				ErrMsg: fmt.Sprintf(`{"errorCode":-1,"errorMessage":"platform says %d","requestId":"req-1","statusCode":%d}`, tc.code, tc.code)}
			if tc.class == "success" {
				r.RetMsg = string(backends.EncodeJSON([]byte("reply")))
			}
			var err error
			if fe := r.failure(); fe != nil {
				err = testSite.classifyFunction(fe)
			}
			checkClass(t, tc.code, tc.class, tc.is, err)
			if err == nil {
				return
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf("platform says %d", tc.code)) || !strings.Contains(msg, "req-1") {
				t.Errorf("%q does not quote the platform's message and request", msg)
			}
			// Every failure says what happened or what to do beyond
			// the platform's words: the text between the site and the
			// FunctionError.
			site, fe := testSite.String()+": ", "function failed with status"
			if i := strings.Index(msg, fe); !strings.HasPrefix(msg, site) || i < len(site)+10 {
				t.Errorf("%q has no explanation of its own", msg)
			}
		})
	}
	// The code's table and the test's agree.
	for code, st := range statuses {
		if !listed[code] {
			t.Errorf("status %d (%s) is classified but not in the test's table", code, st.name)
		}
	}
}

func TestFailureFields(t *testing.T) {
	t.Parallel()
	reply := string(backends.EncodeJSON([]byte("reply")))
	for _, tc := range []struct {
		name                 string
		result               invokeResult
		ok                   bool
		status               int
		message, stack, says string
	}{
		{name: "empty ErrMsg is success", result: invokeResult{RetMsg: reply}, ok: true},
		{name: "status 200 in ErrMsg", result: invokeResult{RetMsg: reply, ErrMsg: `{"statusCode":200}`}, ok: true},
		{name: "text in ErrMsg beside a gowren reply", result: invokeResult{RetMsg: reply, ErrMsg: "warning: slow start"}, ok: true},
		{name: "text in ErrMsg without a reply", result: invokeResult{ErrMsg: "something odd"},
			status: 0, message: "something odd", says: "without a status code"},
		{name: "the user's error from stackTrace",
			result: invokeResult{ErrMsg: `{"errorCode":-1,"errorMessage":"user code exception caught","stackTrace":"open /tmp/x: permission denied\nmain.go:12 main.handler","statusCode":430}`},
			status: 430, message: "open /tmp/x: permission denied", stack: "open /tmp/x: permission denied\nmain.go:12 main.handler", says: "fanout.Init"},
		{name: "a stackTrace list",
			result: invokeResult{ErrMsg: `{"errorMessage":"user code exception caught","stackTrace":["Error: boom","at f (index.js:3)"],"statusCode":430}`},
			status: 430, message: "Error: boom", stack: "Error: boom\nat f (index.js:3)"},
		{name: "the platform's own message",
			result: invokeResult{ErrMsg: `{"errorCode":-1,"errorMessage":"Invoking task timed out after 3 seconds","statusCode":433}`},
			status: 433, message: "Invoking task timed out after 3 seconds", says: "-timeout"},
		{name: "no message: the table's",
			result: invokeResult{ErrMsg: `{"statusCode":437}`}, status: 437, message: "HandlerNotFound", says: "redeploy"},
		{name: "the log's last line",
			result: invokeResult{ErrMsg: `{"errorMessage":"User process exit when running","statusCode":439}`, Log: "starting\nfatal error: concurrent map writes\n"},
			status: 439, message: "User process exit when running", says: "last output: fatal error: concurrent map writes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe := tc.result.failure()
			if tc.ok {
				if fe != nil {
					t.Fatalf("failure() = %v, want success", fe)
				}
				return
			}
			if fe == nil {
				t.Fatal("failure() = nil, want a failure")
			}
			if fe.StatusCode != tc.status || fe.Message != tc.message || fe.Stack != tc.stack {
				t.Errorf("status %d, message %q, stack %q; want %d, %q, %q", fe.StatusCode, fe.Message, fe.Stack, tc.status, tc.message, tc.stack)
			}
			if err := testSite.classifyFunction(fe); !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%q does not say %q", err, tc.says)
			}
		})
	}
	t.Run("InvokeResultIgnored", func(t *testing.T) {
		// Tencent marks InvokeResult "no longer maintained": whatever it
		// holds, a Result without ErrMsg is a success, and one with an
		// error object a failure.
		for _, tc := range []struct {
			body string
			ok   bool
		}{
			{`{"Result":{"RetMsg":` + strconv.Quote(reply) + `,"ErrMsg":"","InvokeResult":1}}`, true},
			{`{"Result":{"RetMsg":` + strconv.Quote(reply) + `,"ErrMsg":"","InvokeResult":-1}}`, true},
			{`{"Result":{"RetMsg":"","ErrMsg":"{\"statusCode\":433}","InvokeResult":0}}`, false},
		} {
			var out struct{ Result *invokeResult }
			if err := json.Unmarshal([]byte(tc.body), &out); err != nil {
				t.Fatal(err)
			}
			if ok := out.Result.failure() == nil; ok != tc.ok {
				t.Errorf("%s: success %v, want %v", tc.body, ok, tc.ok)
			}
		}
	})
	t.Run("Async", func(t *testing.T) {
		// An accepted event is never taken for a refusal: only an error
		// object with a status refuses one.
		for _, tc := range []struct {
			errMsg  string
			refused bool
		}{
			{"", false},
			{"queued", false},
			{`{"errorMessage":"note"}`, false},
			{`{"statusCode":202}`, false},
			{`{"errorMessage":"RequestTooLarge","statusCode":406}`, true},
		} {
			r := invokeResult{ErrMsg: tc.errMsg, FunctionRequestId: "req-2"}
			if refused := r.asyncFailure() != nil; refused != tc.refused {
				t.Errorf("ErrMsg %q: refused %v, want %v", tc.errMsg, refused, tc.refused)
			}
		}
	})
	t.Run("Bounds", func(t *testing.T) {
		huge := strings.Repeat("x", 1<<20)
		r := invokeResult{ErrMsg: fmt.Sprintf(`{"errorMessage":%q,"stackTrace":%q,"statusCode":430}`, huge, huge), Log: huge}
		fe := r.failure()
		if len(fe.Message) > maxMessage+3 || len(fe.Stack) > maxStack+3 || len(fe.Log) > maxLog+3 || len(fe.Error()) > 2*maxMessage {
			t.Errorf("message %d, stack %d, log %d, Error() %d bytes: platform text must be bounded", len(fe.Message), len(fe.Stack), len(fe.Log), len(fe.Error()))
		}
	})
}

func TestUnwrapReply(t *testing.T) {
	t.Parallel()
	want := []byte{0, 1, 2, 0xff}
	obj := string(backends.EncodeJSON(want))
	for _, tc := range []struct {
		name, ret string
		ok        bool
	}{
		{"object", obj, true},
		{"object with spaces", " " + obj + "\n", true},
		{"object encoded as a string", fmt.Sprintf("%q", obj), true},
		{"another program's object", `{"hello":"world"}`, false},
		{"a string", `"hello from scf"`, false},
		{"empty", ``, false},
		{"null", `null`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := unwrapReply(tc.ret)
			if tc.ok {
				if err != nil || string(got) != string(want) {
					t.Errorf("unwrapReply(%q) = %q, %v; want %q", tc.ret, got, err, want)
				}
			} else if err == nil || !strings.Contains(err.Error(), "gowren reply") {
				t.Errorf("unwrapReply(%q) = %v, want an error saying it is not a gowren reply", tc.ret, err)
			}
		})
	}
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	// A fake clock: rate 10/s (100 ms per call), bursts of 3.
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	l := newLimiter(10, 3)
	l.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	var waits []time.Duration
	for range 5 {
		waits = append(waits, l.reserve())
	}
	wantWaits := []time.Duration{-200 * time.Millisecond, -100 * time.Millisecond, 0, 100 * time.Millisecond, 200 * time.Millisecond}
	for i := range waits {
		if (waits[i] <= 0) != (wantWaits[i] <= 0) || waits[i] > 0 && waits[i] != wantWaits[i] {
			t.Fatalf("waits %v, want %v (three at once, then 100 ms apart)", waits, wantWaits)
		}
	}
	advance(time.Second) // idle: the bucket refills, but only to its burst
	waits = waits[:0]
	for range 4 {
		waits = append(waits, l.reserve())
	}
	if waits[2] > 0 || waits[3] != 100*time.Millisecond {
		t.Errorf("after a second idle, waits %v; want three free, the fourth 100 ms", waits)
	}

	t.Run("Cancel", func(t *testing.T) {
		l := newLimiter(0.001, 1) // one call per 1000 s
		if err := l.wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := l.wait(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("wait with a cancelled context: %v", err)
		}
	})
}

func TestZipExecutable(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("\x7fELF gowren worker "), 5000)
	a, err := gopkg.ZipExecutable("main", data, flate.BestSpeed, zipTime)
	if err != nil {
		t.Fatal(err)
	}
	b, err := gopkg.ZipExecutable("main", data, flate.BestSpeed, zipTime)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("two zips of the same file differ (%v)", err)
	}
	for _, level := range []int{flate.BestSpeed, flate.BestCompression} {
		z, _ := gopkg.ZipExecutable("main", data, level, zipTime)
		zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
		if err != nil || len(zr.File) != 1 {
			t.Fatalf("level %d: %v", level, err)
		}
		f := zr.File[0]
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) || f.Name != "main" || f.Mode() != 0o755 || !f.Modified.Equal(zipTime) {
			t.Errorf("level %d: entry %q mode %v time %v, content equal %v (%v)", level, f.Name, f.Mode(), f.Modified, bytes.Equal(got, data), err)
		}
	}
}
