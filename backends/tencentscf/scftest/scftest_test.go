package scftest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	tchttp "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/http"

	"github.com/gowren/gowren/backends/tencentscf/scftest"
)

const region = "ap-guangzhou"

func newServer(t *testing.T, opts *scftest.Options) *scftest.Server {
	t.Helper()
	srv, err := scftest.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	// A function that is never executed: these tests stop at the API.
	if err := srv.AddFunction(scftest.Function{Region: region, Name: "fn", Command: []string{"/nonexistent/never-run"}}); err != nil {
		t.Fatal(err)
	}
	return srv
}

// send makes one API call with the real SDK client and returns the API
// error code, "" on success.
func send(t *testing.T, c *common.Client, action string, params map[string]any) (string, map[string]any) {
	t.Helper()
	req := tchttp.NewCommonRequest("scf", "2018-04-16", action)
	if err := req.SetActionParameters(params); err != nil {
		t.Fatal(err)
	}
	resp := tchttp.NewCommonResponse()
	err := c.Send(req, resp)
	var se *tcerr.TencentCloudSDKError
	if errors.As(err, &se) {
		return se.Code, nil
	}
	if err != nil {
		t.Fatalf("%s: %v", action, err)
	}
	var out struct{ Response map[string]any }
	if err := jsonUnmarshal(resp.GetBody(), &out); err != nil {
		t.Fatal(err)
	}
	return "", out.Response
}

// tamper returns a transport that changes each request after the SDK has
// signed it.
type tamper func(*http.Request)

func (f tamper) RoundTrip(r *http.Request) (*http.Response, error) {
	f(r)
	return http.DefaultTransport.RoundTrip(r)
}

func setBody(r *http.Request, b []byte) {
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
}

func TestSignature(t *testing.T) {
	t.Parallel()
	srv := newServer(t, nil)
	get := map[string]any{"FunctionName": "fn"}

	// The real SDK's TC3-HMAC-SHA256 signature verifies.
	code, resp := send(t, srv.Client(region), "GetFunction", get)
	if code != "" || resp["Status"] != "Active" {
		t.Fatalf("GetFunction signed by the SDK: code %q, response %v", code, resp)
	}

	for _, tc := range []struct {
		name string
		f    tamper
		want string
	}{
		{"Body", func(r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			setBody(r, bytes.Replace(b, []byte(`"fn"`), []byte(`"fx"`), 1))
		}, "AuthFailure.SignatureFailure"},
		{"Timestamp", func(r *http.Request) {
			ts, _ := strconv.ParseInt(r.Header.Get("X-TC-Timestamp"), 10, 64)
			r.Header.Set("X-TC-Timestamp", strconv.FormatInt(ts-600, 10))
		}, "AuthFailure.SignatureExpire"},
		{"TimestampBySecond", func(r *http.Request) {
			ts := []byte(r.Header.Get("X-TC-Timestamp"))
			ts[len(ts)-1] ^= 1
			r.Header.Set("X-TC-Timestamp", string(ts))
		}, "AuthFailure.SignatureFailure"},
		{"Signature", func(r *http.Request) {
			a := r.Header.Get("Authorization")
			last := a[len(a)-1]
			if last == '0' {
				last = '1'
			} else {
				last = '0'
			}
			r.Header.Set("Authorization", a[:len(a)-1]+string(last))
		}, "AuthFailure.SignatureFailure"},
		{"ContentType", func(r *http.Request) {
			r.Header.Set("Content-Type", "application/json; charset=utf-8")
		}, "AuthFailure.SignatureFailure"},
		{"NoAuthorization", func(r *http.Request) { r.Header.Del("Authorization") }, "AuthFailure.SignatureFailure"},
		{"NotTC3", func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "TC3-HMAC-SHA256", "HMAC-SHA1", 1))
		}, "AuthFailure.InvalidAuthorization"},
		{"NoAction", func(r *http.Request) { r.Header.Del("X-TC-Action") }, "MissingParameter"},
		{"WrongVersion", func(r *http.Request) { r.Header.Set("X-TC-Version", "2017-01-01") }, "NoSuchVersion"},
		{"NoRegion", func(r *http.Request) { r.Header.Del("X-TC-Region") }, "MissingParameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := srv.Client(region)
			c.WithHttpTransport(tc.f)
			if code, _ := send(t, c, "GetFunction", get); code != tc.want {
				t.Errorf("tampered request: code %q, want %s", code, tc.want)
			}
		})
	}

	t.Run("Credentials", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			cred common.CredentialIface
			want string
		}{
			{"WrongKey", common.NewCredential(scftest.TestSecretID, "wrong"), "AuthFailure.SignatureFailure"},
			{"UnknownID", common.NewCredential("AKIDunknown", scftest.TestSecretKey), "AuthFailure.SecretIdNotFound"},
			{"UnexpectedToken", common.NewTokenCredential(scftest.TestSecretID, scftest.TestSecretKey, "tok"), "AuthFailure.TokenFailure"},
		} {
			if code, _ := send(t, srv.ClientWith(tc.cred, region), "GetFunction", get); code != tc.want {
				t.Errorf("%s: code %q, want %s", tc.name, code, tc.want)
			}
		}
	})
}

func TestTemporaryCredentials(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &scftest.Options{Credentials: map[string]scftest.Credential{"AKIDtemp": {Key: "k", Token: "session"}}})
	get := map[string]any{"FunctionName": "fn"}
	if code, _ := send(t, srv.ClientWith(common.NewTokenCredential("AKIDtemp", "k", "session"), region), "GetFunction", get); code != "" {
		t.Errorf("with the session token: %q", code)
	}
	if code, _ := send(t, srv.ClientWith(common.NewCredential("AKIDtemp", "k"), region), "GetFunction", get); code != "AuthFailure.TokenFailure" {
		t.Errorf("without the session token: %q, want AuthFailure.TokenFailure", code)
	}
}

func TestClockSkew(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &scftest.Options{Now: func() time.Time { return time.Now().Add(6 * time.Minute) }})
	if code, _ := send(t, srv.Client(region), "GetFunction", map[string]any{"FunctionName": "fn"}); code != "AuthFailure.SignatureExpire" {
		t.Errorf("a request 6 minutes old: %q, want AuthFailure.SignatureExpire", code)
	}
}

func TestAPIChecks(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &scftest.Options{SyncRate: 1, RateBurst: 1, MaxSyncEventBytes: 1 << 10})
	c := srv.Client(region)
	// The first call takes the only token: it reaches the function, whose
	// event is too large (status 406, before any worker starts).
	code, resp := send(t, c, "InvokeFunction", map[string]any{"FunctionName": "fn", "Event": `"` + strings.Repeat("x", 2<<10) + `"`})
	if code != "" {
		t.Fatalf("InvokeFunction: %s", code)
	}
	res, _ := resp["Result"].(map[string]any)
	if !strings.Contains(res["ErrMsg"].(string), `"statusCode":406`) || res["InvokeResult"].(float64) == 0 {
		t.Errorf("oversized event: Result %v, want a failure with status 406", res)
	}
	// The second, within the same second, is over the API's rate.
	if code, _ := send(t, c, "InvokeFunction", map[string]any{"FunctionName": "fn", "Event": "{}"}); code != "RequestLimitExceeded" {
		t.Errorf("a call over the rate: %q, want RequestLimitExceeded", code)
	}
	for _, tc := range []struct {
		action string
		params map[string]any
		want   string
	}{
		{"Frobnicate", nil, "InvalidAction"},
		{"GetFunction", map[string]any{"FunctionName": "nosuch"}, "ResourceNotFound.Function"},
		{"GetFunction", map[string]any{"FunctionName": "fn", "Namespace": "nosuch"}, "ResourceNotFound.Namespace"},
		{"Invoke", map[string]any{"FunctionName": "fn", "InvocationType": "Sometimes"}, "InvalidParameterValue.InvokeType"},
		{"CreateFunction", map[string]any{"FunctionName": "fn2", "Runtime": "Go1", "Handler": "main", "Code": map[string]any{"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}, "InvalidParameterValue.Handler"},
		{"CreateFunction", map[string]any{"FunctionName": "other", "Runtime": "Python3.6", "Handler": "index.main"}, "InvalidParameterValue.Runtime"},
		{"UpdateFunctionConfiguration", map[string]any{"FunctionName": "fn", "MemorySize": 100}, "InvalidParameterValue.MemorySize"},
	} {
		if code, _ := send(t, c, tc.action, tc.params); code != tc.want {
			t.Errorf("%s %v: %q, want %s", tc.action, tc.params, code, tc.want)
		}
	}
	if n := srv.Stats().Errors["RequestLimitExceeded"]; n != 1 {
		t.Errorf("Stats counts %d RequestLimitExceeded, want 1", n)
	}
	if code, _ := send(t, srv.Client("mars-1"), "GetFunction", map[string]any{"FunctionName": "fn"}); code != "UnsupportedRegion" {
		t.Errorf("an unknown region: %q, want UnsupportedRegion", code)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// result calls an invoking action with the real SDK client and returns its
// Result and the ErrMsg error object decoded.
func result(t *testing.T, c *common.Client, action string, params map[string]any) (map[string]any, map[string]any) {
	t.Helper()
	code, resp := send(t, c, action, params)
	if code != "" {
		t.Fatalf("%s: %s", action, code)
	}
	res, _ := resp["Result"].(map[string]any)
	var errObj map[string]any
	if s, _ := res["ErrMsg"].(string); s != "" {
		if err := json.Unmarshal([]byte(s), &errObj); err != nil {
			t.Fatalf("ErrMsg %q is not SCF's error object: %v", s, err)
		}
	}
	return res, errObj
}

func TestImposedStatus(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []scftest.Execution
	srv := newServer(t, &scftest.Options{
		Fail: func(e scftest.Execution) *scftest.Failure {
			mu.Lock()
			seen = append(seen, e)
			mu.Unlock()
			if e.Async {
				return &scftest.Failure{StatusCode: 441}
			}
			return &scftest.Failure{StatusCode: 430, StackTrace: "boom\nmain.go:7 main.f", Log: "printed"}
		},
		InvokeResult: func(status int) int64 { return int64(status) * 10 },
	})
	c := srv.Client(region)
	res, obj := result(t, c, "InvokeFunction", map[string]any{"FunctionName": "fn", "Event": "{}", "LogType": "Tail"})
	if obj["statusCode"] != 430.0 || obj["errorMessage"] != "user code exception caught" || obj["stackTrace"] != "boom\nmain.go:7 main.f" ||
		res["Log"] != "printed" || res["InvokeResult"] != 4300.0 || res["FunctionRequestId"] == "" || obj["requestId"] != res["FunctionRequestId"] {
		t.Errorf("imposed 430: Result %v, error object %v", res, obj)
	}
	// Without LogType Tail, no Log.
	if res, _ := result(t, c, "InvokeFunction", map[string]any{"FunctionName": "fn", "Event": "{}"}); res["Log"] != "" {
		t.Errorf("LogType None: Log %q", res["Log"])
	}
	// An asynchronous invocation's failure is the Invoke call's Result,
	// with the table's status message.
	if _, obj := result(t, c, "Invoke", map[string]any{"FunctionName": "fn", "InvocationType": "Event", "ClientContext": "{}"}); obj["statusCode"] != 441.0 || obj["errorMessage"] != "UnauthorizedOperation" {
		t.Errorf("imposed 441 on an event: %v", obj)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 || seen[0].Function != "fn" || seen[0].Region != region || seen[0].Namespace != "default" || seen[0].Async || !seen[2].Async {
		t.Errorf("Fail saw %+v", seen)
	}
	if st := srv.Stats(); st.Invocations[430] != 2 || st.Invocations[441] != 1 || st.ColdStarts != 0 {
		t.Errorf("stats %+v: want the imposed statuses counted and no worker started", st)
	}
}

func TestStatusesOfTheServer(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &scftest.Options{Credentials: map[string]scftest.Credential{
		scftest.TestSecretID: {Key: scftest.TestSecretKey},
		"AKIDnoinvoke":       {Key: "k", Deny: []string{"InvokeFunction"}},
	}})
	c := srv.Client(region)
	// fn's executable does not exist: SCF's HandlerNotFound.
	if res, obj := result(t, c, "InvokeFunction", map[string]any{"FunctionName": "fn", "Event": "{}"}); obj["statusCode"] != 437.0 || res["InvokeResult"] != -1.0 {
		t.Errorf("a missing executable: Result %v, error object %v; want status 437", res, obj)
	}
	// A version that does not exist: an API error for InvokeFunction,
	// status 442 for Invoke, sync or async.
	if code, _ := send(t, c, "InvokeFunction", map[string]any{"FunctionName": "fn", "Qualifier": "3"}); code != "ResourceNotFound.Qualifier" {
		t.Errorf("InvokeFunction of version 3: %q, want ResourceNotFound.Qualifier", code)
	}
	for _, typ := range []string{"RequestResponse", "Event"} {
		if _, obj := result(t, c, "Invoke", map[string]any{"FunctionName": "fn", "Qualifier": "3", "InvocationType": typ}); obj["statusCode"] != 442.0 {
			t.Errorf("Invoke (%s) of version 3: %v, want status 442", typ, obj)
		}
	}
	if code, _ := send(t, c, "GetFunction", map[string]any{"FunctionName": "fn", "Qualifier": "3"}); code != "ResourceNotFound.Version" {
		t.Errorf("GetFunction of version 3: %q", code)
	}
	if code, _ := send(t, c, "InvokeFunction", map[string]any{"FunctionName": "fn", "LogType": "All"}); code != "InvalidParameterValue.LogType" {
		t.Errorf("LogType All: %q", code)
	}
	// Valid credentials whose policy does not allow the action.
	deny := srv.ClientWith(common.NewCredential("AKIDnoinvoke", "k"), region)
	if code, _ := send(t, deny, "InvokeFunction", map[string]any{"FunctionName": "fn"}); code != "UnauthorizedOperation.CAM" {
		t.Errorf("a denied action: %q, want UnauthorizedOperation.CAM", code)
	}
	if code, _ := send(t, deny, "GetFunction", map[string]any{"FunctionName": "fn"}); code != "" {
		t.Errorf("an allowed action: %q", code)
	}
}
