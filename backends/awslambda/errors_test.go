package awslambda_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/awslambda"
)

// TestInvokeErrors checks the classification of Lambda's answers, sent by a
// loopback server to the real SDK client.
func TestInvokeErrors(t *testing.T) {
	type answer struct {
		status  int
		headers map[string]string
		body    string
	}
	gowrenReply := string(backends.EncodeJSON([]byte("reply")))
	for _, tc := range []struct {
		name      string
		answer    answer
		hijack    bool // close the connection without answering
		want      error
		notWant   error
		retryable bool
		inMsg     []string
		check     func(t *testing.T, err error)
	}{
		{name: "success", answer: answer{200, nil, gowrenReply}},
		{name: "throttled", answer: answer{429, map[string]string{"X-Amzn-ErrorType": "TooManyRequestsException", "Retry-After": "3"},
			`{"Reason":"ReservedFunctionConcurrentInvocationLimitExceeded","Type":"User","message":"Rate Exceeded."}`},
			want: backends.ErrThrottled, retryable: true, check: func(t *testing.T, err error) {
				var te *backends.ThrottleError
				if !errors.As(err, &te) || te.RetryAfter != 3*time.Second || te.Reason != "ReservedFunctionConcurrentInvocationLimitExceeded" {
					t.Errorf("ThrottleError %+v; want 3s and the reason", te)
				}
			}},
		{name: "throttled without retry-after", answer: answer{429, map[string]string{"X-Amzn-ErrorType": "TooManyRequestsException"},
			`{"message":"Rate Exceeded."}`}, want: backends.ErrThrottled, retryable: true},
		{name: "update in progress", answer: answer{409, map[string]string{"X-Amzn-ErrorType": "ResourceConflictException"},
			`{"message":"An update is in progress"}`}, want: backends.ErrThrottled, retryable: true},
		{name: "not found", answer: answer{404, map[string]string{"X-Amzn-ErrorType": "ResourceNotFoundException"},
			`{"Type":"User","message":"Function not found: arn:aws:lambda:us-east-1:123456789012:function:fn"}`},
			want: awslambda.ErrFunctionNotFound, inMsg: []string{"gowren deploy lambda", "us-east-1"}},
		{name: "request too large", answer: answer{413, map[string]string{"X-Amzn-ErrorType": "RequestTooLargeException"},
			`{"message":"Request must be smaller than 6291456 bytes for the InvokeFunction operation"}`}, want: backends.ErrPayloadTooLarge},
		{name: "invalid content", answer: answer{400, map[string]string{"X-Amzn-ErrorType": "InvalidRequestContentException"},
			`{"message":"Could not parse request body into json"}`}, inMsg: []string{"must be JSON"}},
		{name: "bad credentials", answer: answer{403, map[string]string{"X-Amzn-ErrorType": "UnrecognizedClientException"},
			`{"message":"The security token included in the request is invalid."}`}, want: awslambda.ErrAuth,
			inMsg: []string{"access key AKIDTEST", "region us-east-1", "AWS_ACCESS_KEY_ID"}},
		{name: "no permission", answer: answer{403, map[string]string{"X-Amzn-ErrorType": "AccessDeniedException"},
			`{"Type":"User","message":"User: arn:aws:iam::123456789012:user/u is not authorized to perform: lambda:InvokeFunction"}`}, want: awslambda.ErrAuth,
			inMsg: []string{"lambda:InvokeFunction on the function"}},
		{name: "broken configuration", answer: answer{502, map[string]string{"X-Amzn-ErrorType": "KMSAccessDeniedException"},
			`{"message":"Lambda was unable to decrypt the environment variables"}`}, inMsg: []string{"configuration is broken"}},
		{name: "service error", answer: answer{500, map[string]string{"X-Amzn-ErrorType": "ServiceException"},
			`{"message":"internal"}`}, want: backends.ErrTransport, retryable: true},
		{name: "bad gateway without a body", answer: answer{503, nil, ``}, want: backends.ErrTransport, retryable: true},
		{name: "connection dropped", hijack: true, want: backends.ErrTransport, retryable: true},
		{name: "runtime exited", answer: answer{200, map[string]string{"X-Amz-Function-Error": "Unhandled"},
			`{"errorType":"Runtime.ExitError","errorMessage":"RequestId: 1 Error: Runtime exited with error: signal: killed"}`},
			want: backends.ErrWorkerLost, retryable: true, inMsg: []string{"Runtime.ExitError", "signal: killed"}},
		{name: "emulator's crash answer", answer: answer{502, nil,
			`{"errorType":"Runtime.ExitError","errorMessage":"RequestId: 1 Error: Runtime exited with error: exit status 2"}`},
			want: backends.ErrWorkerLost, retryable: true, inMsg: []string{"exit status 2"}},
		{name: "timed out", answer: answer{200, map[string]string{"X-Amz-Function-Error": "Unhandled"},
			`{"errorType":"Sandbox.Timedout","errorMessage":"RequestId: 1 Error: Task timed out after 900.00 seconds"}`},
			want: backends.ErrWorkerLost, retryable: true, inMsg: []string{"Task timed out", "gowren deploy lambda -timeout"},
			check: func(t *testing.T, err error) {
				var fe *awslambda.FunctionError
				if !errors.As(err, &fe) || !fe.Timeout || fe.Unhandled != "Unhandled" {
					t.Errorf("FunctionError %+v; want Timeout and the header", fe)
				}
			}},
		{name: "timed out, old form", answer: answer{200, map[string]string{"X-Amz-Function-Error": "Unhandled"},
			`{"errorMessage":"2026-01-01T00:00:00.000Z 1 Task timed out after 3.00 seconds"}`}, want: backends.ErrWorkerLost, retryable: true},
		{name: "error-shaped payload without header", answer: answer{200, nil,
			`{"errorMessage":"boom","errorType":"Runtime.Unknown"}`}, want: backends.ErrWorkerLost, retryable: true, inMsg: []string{"boom"}},
		{name: "reply too large", answer: answer{200, map[string]string{"X-Amz-Function-Error": "Unhandled"},
			`{"errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"}`},
			want: backends.ErrPayloadTooLarge},
		{name: "event rejected by the worker", answer: answer{200, map[string]string{"X-Amz-Function-Error": "Unhandled"},
			`{"errorMessage":"gowren worker: the event is not a gowren invocation","errorType":"Gowren.InvalidEvent"}`}, want: awslambda.ErrNotWorker},
		{name: "not a gowren worker", answer: answer{200, nil, `{"statusCode":200,"body":"hello"}`}, want: awslambda.ErrNotWorker,
			inMsg: []string{"fanout.Init"}},
		{name: "not JSON at all", answer: answer{200, nil, `hello`}, want: awslambda.ErrNotWorker},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/2015-03-31/functions/fn/invocations" || r.Header.Get("X-Amz-Invocation-Type") != "RequestResponse" {
					t.Errorf("request %s %s type %q", r.Method, r.URL.Path, r.Header.Get("X-Amz-Invocation-Type"))
				}
				if tc.hijack {
					c, _, _ := w.(http.Hijacker).Hijack()
					c.Close()
					return
				}
				for k, v := range tc.answer.headers {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.answer.status)
				w.Write([]byte(tc.answer.body))
			}))
			defer srv.Close()
			b := awslambda.New(newClient(t, srv.URL, nil), "fn", nil)
			defer b.Close()
			reply, err := b.Invoke(context.Background(), []byte("payload"))
			if tc.want == nil && tc.inMsg == nil {
				if err != nil || string(reply) != "reply" {
					t.Fatalf("Invoke = %q, %v; want the reply", reply, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Invoke succeeded with %q", reply)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if got := backends.Retryable(err); got != tc.retryable {
				t.Errorf("Retryable(%v) = %v, want %v", err, got, tc.retryable)
			}
			for _, s := range tc.inMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if tc.check != nil {
				tc.check(t, err)
			}
		})
	}
}

// TestInvokeOneAttempt checks that the SDK does not retry: the executor owns
// retries.
func TestInvokeOneAttempt(t *testing.T) {
	var calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("X-Amzn-ErrorType", "ServiceException")
		w.WriteHeader(500)
		w.Write([]byte(`{"message":"try again"}`))
	}))
	defer srv.Close()
	b := awslambda.New(newClient(t, srv.URL, nil), "fn", nil)
	defer b.Close()
	if _, err := b.Invoke(context.Background(), []byte("x")); !errors.Is(err, backends.ErrTransport) {
		t.Fatalf("err = %v, want ErrTransport", err)
	}
	if calls != 1 {
		t.Errorf("%d requests, want 1", calls)
	}
}

func TestInvokeLimitsAndLifecycle(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	b := awslambda.New(newClient(t, srv.URL, nil), "fn", &awslambda.Options{Qualifier: "prod", Concurrency: 7, Timeout: time.Minute, Parallel: 2})
	l := b.Limits()
	if l.MaxRequestBytes != backends.MaxRawForJSON(6<<20) || l.MaxResponseBytes != l.MaxRequestBytes ||
		l.MaxAsyncRequestBytes != backends.MaxRawForJSON(1<<20) || l.Concurrency != 7 || l.Timeout != time.Minute ||
		l.Parallel != 2 || l.SameHost || l.InProcess {
		t.Errorf("Limits = %+v", l)
	}
	if b.Function() != "fn:prod" {
		t.Errorf("Function() = %q", b.Function())
	}
	// Close ends an invocation in flight. (The oversized payload, the
	// cancellation and the calls after Close are checked by backendtest's
	// Contract group.)
	errc := make(chan error, 1)
	go func() { _, err := b.Invoke(context.Background(), []byte("x")); errc <- err }()
	<-arrived
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, backends.ErrClosed) {
		t.Errorf("closed in flight: %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestUnknownRegion invokes a function in a region that does not exist
// (well formed, so Open accepts it): the SDK makes up the endpoint
// lambda.REGION.amazonaws.com, whose name does not resolve. A DNS server on
// loopback that answers every question with NXDOMAIN stands in for the
// network's, so the test needs no network; the SDK's endpoint resolution,
// Go's resolver and the classification are the real ones.
func TestUnknownRegion(t *testing.T) {
	const region = "xx-nowhere-1"
	dns := nxdomainServer(t)
	dialer := &net.Dialer{Resolver: &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", dns)
		},
	}}
	tr := &http.Transport{DialContext: dialer.DialContext}
	defer tr.CloseIdleConnections()
	c := lambda.New(lambda.Options{
		Region:      region,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		HTTPClient:  &http.Client{Transport: tr},
	})
	b := awslambda.New(c, "fn", nil)
	defer b.Close()
	_, err := b.Invoke(guard(t, time.Minute), []byte("x"))
	if err == nil {
		t.Fatal("Invoke succeeded in a region that does not exist")
	}
	t.Logf("the user sees: %v", err)
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("err = %v, want a *net.DNSError for a name not found", err)
	}
	for _, want := range []string{"cannot resolve the Lambda endpoint", `"lambda.` + region + `.amazonaws.com"`, `region "` + region + `"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if backends.Retryable(err) || errors.Is(err, backends.ErrTransport) {
		t.Errorf("err = %v is retryable; a wrong region stays wrong", err)
	}
}

// nxdomainServer starts a DNS server on a loopback UDP port that answers
// every query "no such name", and returns its address.
func nxdomainServer(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			if reply := nxdomain(buf[:n]); reply != nil {
				pc.WriteTo(reply, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// nxdomain returns the NXDOMAIN answer to a DNS query of one question, or
// nil when the query is not one.
func nxdomain(q []byte) []byte {
	const header = 12
	if len(q) < header || q[4] != 0 || q[5] != 1 {
		return nil
	}
	// The question: a name of length-prefixed labels, then type and class.
	i := header
	for i < len(q) && q[i] != 0 {
		i += 1 + int(q[i])
	}
	end := i + 1 + 4
	if end > len(q) {
		return nil
	}
	r := append([]byte(nil), q[:end]...)
	r[2] = 0x80 | q[2]&0x79 // a response; the query's opcode and RD
	r[3] = 0x80 | 3         // recursion available; NXDOMAIN
	clear(r[6:header])      // no answer, authority or additional records
	return r
}

// errClass is what TestInvokeErrorClasses expects of an error code.
type errClass string

const (
	throttle  errClass = "throttle: waited out, costs no attempt"
	transient errClass = "transient: retried as an attempt"
	config    errClass = "the function's configuration: fails fast"
	request   errClass = "the request: fails fast"
	auth      errClass = "credentials or permission: fails fast"
	notFound  errClass = "function not found: fails fast"
	tooLarge  errClass = "payload too large"
	other     errClass = "unknown client error: fails fast"
)

// TestInvokeErrorClasses answers every error of the Invoke action in
// Lambda's API reference (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html,
// "Errors", with its HTTP status), and the authentication errors AWS sends
// for any action, to the real SDK client, and checks how the backend
// classifies each.
func TestInvokeErrorClasses(t *testing.T) {
	for _, tc := range []struct {
		code   string
		status int
		class  errClass
		inMsg  string
	}{
		// The Errors of the Invoke action.
		{"DurableExecutionAlreadyStartedException", 409, request, "not start"},
		{"EC2AccessDeniedException", 502, config, "AWSLambdaVPCAccessExecutionRole"},
		{"EC2ThrottledException", 502, throttle, "EC2 throttled"},
		{"EC2UnexpectedException", 502, transient, "unexpected EC2 error"},
		{"EFSIOException", 410, transient, "EFS"},
		{"EFSMountConnectivityException", 408, transient, "security group"},
		{"EFSMountFailureException", 403, config, "access point"},
		{"EFSMountTimeoutException", 408, transient, "timed out"},
		{"ENILimitReachedException", 502, config, "network interfaces"},
		{"InvalidParameterValueException", 400, request, "function name and qualifier"},
		{"InvalidRequestContentException", 400, request, "must be JSON"},
		{"InvalidRuntimeException", 502, config, "provided.al2023"},
		{"InvalidSecurityGroupIDException", 502, config, "security group"},
		{"InvalidSubnetIDException", 502, config, "subnet"},
		{"InvalidZipFileException", 502, config, "unzip"},
		{"KMSAccessDeniedException", 502, config, "kms:Decrypt"},
		{"KMSDisabledException", 502, config, "disabled"},
		{"KMSInvalidStateException", 502, config, "KMS key"},
		{"KMSNotFoundException", 502, config, "does not exist"},
		{"NoPublishedVersionException", 400, request, "publish-version"},
		{"RecursiveInvocationException", 400, config, "recursive loop"},
		{"RequestTooLargeException", 413, tooLarge, "too large"},
		{"ResourceConflictException", 409, throttle, "not ready"},
		{"ResourceNotFoundException", 404, notFound, "gowren deploy lambda"},
		{"ResourceNotReadyException", 502, throttle, "VPC connection"},
		{"S3FilesMountConnectivityException", 408, transient, "S3 Files"},
		{"S3FilesMountFailureException", 403, config, "S3 Files"},
		{"S3FilesMountTimeoutException", 408, transient, "S3 Files"},
		{"SerializedRequestEntityTooLargeException", 413, tooLarge, "too large"},
		{"ServiceException", 500, transient, "internal error"},
		{"SnapStartException", 400, config, "afterRestore"},
		{"SnapStartNotReadyException", 409, throttle, "SnapStart"},
		{"SnapStartTimeoutException", 408, transient, "snapshot"},
		{"SubnetIPAddressLimitReachedException", 502, config, "free IP address"},
		{"TooManyRequestsException", 429, throttle, "throttled"},
		{"UnsupportedMediaTypeException", 415, request, "content type"},
		// What AWS answers any action when it refuses the caller.
		{"AccessDeniedException", 403, auth, "lambda:InvokeFunction"},
		{"ExpiredTokenException", 403, auth, "session token has expired"},
		{"IncompleteSignatureException", 403, auth, "malformed"},
		{"InvalidSignatureException", 403, auth, "AWS_SECRET_ACCESS_KEY"},
		{"MissingAuthenticationTokenException", 403, auth, "not signed"},
		{"UnrecognizedClientException", 403, auth, "AWS_ACCESS_KEY_ID"},
		{"ThrottlingException", 400, throttle, "throttled"},
		// Codes the backend does not know go by their status.
		{"SomeFutureException", 400, other, "SomeFutureException"},
		{"SomeFutureFault", 503, transient, "SomeFutureFault"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Amzn-ErrorType", tc.code)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				w.Write([]byte(`{"Type":"User","message":"what Lambda says"}`))
			}))
			defer srv.Close()
			b := awslambda.New(newClient(t, srv.URL, nil), "fn", nil)
			defer b.Close()
			_, err := b.Invoke(context.Background(), []byte("x"))
			if err == nil {
				t.Fatal("Invoke succeeded")
			}
			t.Logf("the user sees: %v", err)
			is := map[errClass]bool{
				throttle:  errors.Is(err, backends.ErrThrottled),
				transient: errors.Is(err, backends.ErrTransport),
				auth:      errors.Is(err, awslambda.ErrAuth),
				notFound:  errors.Is(err, awslambda.ErrFunctionNotFound),
				tooLarge:  errors.Is(err, backends.ErrPayloadTooLarge),
				config:    strings.Contains(err.Error(), "configuration is broken") && strings.Contains(err.Error(), "gowren deploy lambda"),
				request:   strings.Contains(err.Error(), "rejected the request as invalid"),
			}
			for class, yes := range is {
				if yes != (class == tc.class) {
					t.Errorf("classified as %q: %v; want %q", class, yes, tc.class)
				}
			}
			if want := tc.class == throttle || tc.class == transient; backends.Retryable(err) != want {
				t.Errorf("Retryable = %v, want %v", !want, want)
			}
			for _, s := range []string{tc.inMsg, "what Lambda says"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}
