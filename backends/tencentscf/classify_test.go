package tencentscf

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
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
		{"FailedOperation.FunctionStatusError", backends.ErrThrottled, true},
		{"ResourceNotFound.Function", ErrFunctionNotFound, false},
		{"ResourceNotFound.FunctionName", ErrFunctionNotFound, false},
		{"ResourceNotFound.Namespace", ErrFunctionNotFound, false},
		{"ResourceNotFound.Version", ErrFunctionNotFound, false},
		{"AuthFailure.SignatureFailure", ErrCredentials, false},
		{"AuthFailure.SecretIdNotFound", ErrCredentials, false},
		{"AuthFailure.SignatureExpire", ErrCredentials, false},
		{"AuthFailure.UnauthorizedOperation", ErrUnauthorized, false},
		{"UnauthorizedOperation.CAM", ErrUnauthorized, false},
		{"RequestSizeLimitExceeded", backends.ErrPayloadTooLarge, false},
		{"InternalError", backends.ErrTransport, true},
		{"InternalError.System", backends.ErrTransport, true},
		{"ClientError.NetworkError", backends.ErrTransport, true},
		{"UnsupportedRegion", nil, false},
		{"LimitExceeded.Memory", nil, false},
		{"InvalidParameterValue.Param", nil, false},
		{"ResourceUnavailable.InsufficientBalance", nil, false},
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

func TestClassifyFunction(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		result    invokeResult
		status    int
		is        error
		retryable bool
		says      string
	}{
		{invokeResult{InvokeResult: -1, ErrMsg: `{"errorCode":-1,"errorMessage":"Invoking task timed out after 3 seconds","statusCode":433}`},
			433, backends.ErrWorkerLost, true, "timed out after 3 seconds"},
		{invokeResult{InvokeResult: -1, ErrMsg: `{"errorCode":-1,"errorMessage":"memory","statusCode":434}`}, 434, backends.ErrWorkerLost, true, "-memory"},
		{invokeResult{InvokeResult: -1, ErrMsg: `{"errorCode":-1,"errorMessage":"User process exit when running","statusCode":439}`}, 439, backends.ErrWorkerLost, true, "process exit"},
		{invokeResult{InvokeResult: -1, ErrMsg: `{"errorCode":-1,"errorMessage":"quota","statusCode":432}`}, 432, backends.ErrThrottled, true, "quota"},
		{invokeResult{InvokeResult: 429, ErrMsg: "ResourceLimit"}, 429, backends.ErrThrottled, true, "ResourceLimit"},
		{invokeResult{InvokeResult: -1, ErrMsg: `{"errorCode":-1,"errorMessage":"too large","statusCode":406}`}, 406, backends.ErrPayloadTooLarge, false, "too large"},
		{invokeResult{InvokeResult: -1, ErrMsg: `{"errorCode":-1,"errorMessage":"user code exception caught","statusCode":430}`}, 430, nil, false, "fanout.Init"},
		{invokeResult{InvokeResult: -1, ErrMsg: `{"statusCode":435,"errorMessage":"gone"}`}, 435, ErrFunctionNotFound, false, "gone"},
		{invokeResult{InvokeResult: -1, ErrMsg: `{"statusCode":500,"errorMessage":"internal"}`}, 500, backends.ErrTransport, true, "internal"},
		{invokeResult{InvokeResult: 1, ErrMsg: "something odd"}, 0, backends.ErrWorkerLost, true, "something odd"},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			fe := functionError(&tc.result)
			if fe.StatusCode != tc.status {
				t.Errorf("StatusCode = %d, want %d", fe.StatusCode, tc.status)
			}
			err := testSite.classifyFunction(fe)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("%v is not %v", err, tc.is)
			}
			if got := backends.Retryable(err); got != tc.retryable {
				t.Errorf("Retryable(%v) = %v, want %v", err, got, tc.retryable)
			}
			var got *FunctionError
			if !errors.As(err, &got) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%v: want a *FunctionError saying %q", err, tc.says)
			}
		})
	}
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
