// Package awslambda is the gowren backend for AWS Lambda: the driver invokes
// a deployed function through the AWS SDK for Go v2, and the same program,
// deployed as that function, serves the invocations through the official
// aws-lambda-go runtime.
//
// Import it in the program you deploy and in the driver (a blank import is
// enough): it registers the lambda:// URL scheme and the worker runtime.
//
//	import _ "github.com/gowren/gowren/backends/awslambda"
//
// # Backends
//
// New wraps a *lambda.Client of the SDK; a URL opened by fanout.Open or
// backends.Open builds one from the default AWS configuration (environment,
// shared config files, SSO, instance roles):
//
//	lambda://FUNCTION?region=R&qualifier=Q&endpoint=URL&concurrency=N&timeout=D&parallel=N&memory=MB&arch=A
//
// FUNCTION is the function's name. region defaults to the AWS configuration's
// (AWS_REGION, the profile); qualifier names a version or alias (default: the
// unqualified function, $LATEST); endpoint replaces the service endpoint (a
// loopback server in tests); concurrency, timeout and parallel set the
// Options fields of the same names. memory (128 to 10240) and arch (arm64 or
// x86_64) tell the driver how the function is configured, for cost
// estimates: they set Options.MemoryMB and Options.Arch, and change nothing
// on Lambda. Without them a job is priced as arm64 with 1,769 MB. `gowren
// deploy lambda` prints a URL with the deployed function's region, memory,
// architecture and timeout.
//
// Invoke is a synchronous (RequestResponse) invocation; InvokeAsync, which
// makes the Backend a backends.AsyncBackend, an asynchronous (Event) one that
// returns once Lambda has queued it (HTTP 202). Lambda accepts only JSON
// payloads, so the binary envelope travels inside {"gowren":"<base64>"}
// (backends.EncodeJSON), and Limits reports the raw sizes that fit:
// 4,718,580 bytes of the 6 MB (6,291,456-byte) synchronous limit and 786,420
// of the 1 MB asynchronous one. Larger inputs and outputs go through the
// executor's store (s3:// for Lambda).
//
// # Worker runtime
//
// When AWS_LAMBDA_RUNTIME_API is set (Lambda, or AWS's Runtime Interface
// Emulator, starts the bootstrap binary so), fanout.Init serves invocations
// through aws-lambda-go's lambda.StartHandler with a byte-level handler:
// unwrap the JSON, run fanout.Handle, wrap the reply. The task context's
// deadline is the invocation's deadline less a small reserve (a tenth of the
// time left, at most 500 ms), so that a task that honours its context still
// gets its "timed out" reply out before Lambda stops the invocation. The first
// invocation of each execution environment reports a cold start.
//
// NewHandler is that handler, for programs and tests that run it themselves
// (awslambdatest runs it in process).
//
// # Deploying
//
// Deploy (and `gowren deploy lambda`) builds a main package for
// linux/arm64, zips it as bootstrap (deterministically, so an unchanged
// program is not uploaded again), creates or updates the function on the
// provided.al2023 runtime, waits until Lambda reports it ready, and sets its
// asynchronous retries to 0. Package awslambdatest is a loopback Lambda for
// tests.
//
// # Errors
//
// Invoke classifies failures for the executor's retry policy:
//
//   - TooManyRequestsException (HTTP 429), and a function still being
//     created or updated: a *backends.ThrottleError with Lambda's Retry-After
//     and reason (errors.Is(err, backends.ErrThrottled)); the invocation did
//     not run.
//   - A runtime that crashed or exited (Runtime.ExitError), any other
//     unhandled function error, and an invocation stopped at the function's
//     timeout ("Task timed out"): a *FunctionError wrapping
//     backends.ErrWorkerLost; its Timeout field tells timeouts apart.
//   - Service errors (HTTP 5xx) and network failures: backends.ErrTransport.
//   - A payload over Lambda's limits (RequestTooLargeException, HTTP 413, or
//     a reply over 6 MB): backends.ErrPayloadTooLarge.
//   - A function that does not exist: ErrFunctionNotFound, naming function
//     and region, and saying to deploy with `gowren deploy lambda`. A function
//     that does not run a gowren worker: ErrNotWorker. Rejected credentials,
//     an unknown region, an invalid request: plain errors saying so. None of
//     these is retryable.
//   - Cancellation: the ctx error (context.Canceled or
//     context.DeadlineExceeded); after Close, backends.ErrClosed.
//
// Invoke never retries: the SDK client it uses has retries disabled, because
// the executor owns retries (throttles wait without costing an attempt,
// failed batches are split, results are kept once per task) and because an
// SDK retry of a synchronous invocation whose reply was lost would run the
// batch again without the executor knowing.
package awslambda

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/gowren/gowren/backends"
)

// Lambda's payload limits, in bytes of the JSON request or response body.
const (
	// MaxSyncPayload is the limit on a synchronous invocation's request and
	// on its response: 6 MB (6,291,456 bytes).
	MaxSyncPayload = 6 << 20
	// MaxAsyncPayload is the limit on an asynchronous (Event) invocation's
	// request: 1 MB (1,048,576 bytes).
	MaxAsyncPayload = 1 << 20
)

// Defaults of Options.
const (
	// DefaultConcurrency is the default Options.Concurrency: the default
	// account limit of concurrent executions per region.
	DefaultConcurrency = 1000
	// DefaultTimeout is the default Options.Timeout: Lambda's largest
	// function timeout, 15 minutes.
	DefaultTimeout = 15 * time.Minute
)

// Errors of Invoke that are not classified by package backends; test them
// with errors.Is.
var (
	// ErrFunctionNotFound means Lambda has no such function (or version or
	// alias) in the region: deploy it with `gowren deploy lambda`.
	ErrFunctionNotFound = errors.New("awslambda: function not found")
	// ErrNotWorker means the function answered, but not as a gowren worker
	// does: it runs another program, or one that does not import this
	// package or call fanout.Init.
	ErrNotWorker = errors.New("awslambda: the function is not a gowren worker")
)

// Options configure a Backend. A nil *Options gives the defaults.
type Options struct {
	// Qualifier is the version or alias to invoke. Defaults to none: the
	// unqualified function ($LATEST).
	Qualifier string
	// Concurrency is the number of invocations the function runs at once,
	// which the executor uses as its default concurrency. Invocations beyond
	// the account's or function's limit are throttled by Lambda and retried
	// by the executor. Defaults to DefaultConcurrency (1000, the default
	// account limit).
	Concurrency int
	// Timeout is the function's configured timeout; the executor gives up on
	// an invocation a little after it. Defaults to DefaultTimeout (15
	// minutes, the largest Lambda allows).
	Timeout time.Duration
	// Parallel is the number of tasks of one batch a worker runs at once.
	// Functions with more memory have more vCPUs (one per 1,769 MB).
	// Defaults to 1.
	Parallel int
	// MemoryMB is the function's configured memory. It does not change the
	// function; it becomes Limits.MemoryMB, which cost estimates
	// (fanout.JobStats.Cost) multiply the billed time by. Defaults to 0:
	// unknown, and the executor assumes its price list's 1,769 MB.
	MemoryMB int
	// Arch is the function's architecture, "arm64" or "x86_64" ("amd64"
	// is taken for x86_64). It selects the price list of cost estimates
	// (Limits.Platform): x86_64 costs about a quarter more per GB-second.
	// Defaults to arm64, which any other value also means.
	Arch string
}

// platform returns the Limits.Platform of a function architecture.
func platform(arch string) string {
	switch arch {
	case string(types.ArchitectureX8664), "amd64":
		return backends.PlatformLambdaX86
	}
	return backends.PlatformLambdaARM64
}

// Backend invokes one Lambda function. It is safe for concurrent use.
type Backend struct {
	client    *lambda.Client
	function  string
	qualifier *string
	region    string
	limits    backends.Limits
	transport *http.Transport // closed by Close when the Backend made it

	closing context.Context // cancelled by Close, with ErrClosed as cause
	stop    context.CancelCauseFunc

	mu     sync.RWMutex
	closed bool
	wg     sync.WaitGroup // invocations in flight
}

var (
	_ backends.Backend      = (*Backend)(nil)
	_ backends.AsyncBackend = (*Backend)(nil)
)

// New returns a Backend that invokes function with client. It does not call
// Lambda. The Backend makes its own client from client's options with the
// SDK's retries disabled (see the package documentation) and otherwise
// shares client's configuration: credentials, region, endpoint and HTTP
// client. NewHTTPClient makes an HTTP client fit for thousands of
// invocations in flight; the SDK's default one keeps only 10 idle
// connections per host. A nil opts gives the defaults.
func New(client *lambda.Client, function string, opts *Options) *Backend {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Parallel <= 0 {
		o.Parallel = 1
	}
	co := client.Options()
	b := &Backend{
		client: lambda.New(co, func(o *lambda.Options) {
			o.Retryer = aws.NopRetryer{}
			o.RetryMaxAttempts = 0
			o.APIOptions = append(o.APIOptions, captureRuntimeError(function))
		}),
		function: function,
		region:   co.Region,
		limits: backends.Limits{
			MaxRequestBytes:      backends.MaxRawForJSON(MaxSyncPayload),
			MaxResponseBytes:     backends.MaxRawForJSON(MaxSyncPayload),
			MaxAsyncRequestBytes: backends.MaxRawForJSON(MaxAsyncPayload),
			Concurrency:          o.Concurrency,
			Timeout:              o.Timeout,
			Parallel:             o.Parallel,
			MemoryMB:             max(o.MemoryMB, 0),
			Platform:             platform(o.Arch),
		},
	}
	if o.Qualifier != "" {
		b.qualifier = aws.String(o.Qualifier)
	}
	b.closing, b.stop = context.WithCancelCause(context.Background())
	return b
}

// Function returns the function's name, with ":qualifier" when there is one.
func (b *Backend) Function() string {
	if b.qualifier != nil {
		return b.function + ":" + *b.qualifier
	}
	return b.function
}

// Limits reports Lambda's payload limits (the raw sizes whose JSON wrapping
// fits them), the configured concurrency, timeout and parallelism, and the
// function's memory and platform (Options.MemoryMB and Options.Arch), which
// price cost estimates. Workers run neither in this process nor on this
// host.
func (b *Backend) Limits() backends.Limits { return b.limits }

// Close cancels the invocations in flight (they return errors wrapping
// backends.ErrClosed), waits for them to return, and closes the idle
// connections of an HTTP client the Backend made itself. Invocations already
// running on Lambda run to their end there. Calls after the first return
// nil.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.stop(backends.ErrClosed)
	b.wg.Wait()
	if b.transport != nil {
		b.transport.CloseIdleConnections()
	}
	return nil
}

// begin registers an invocation; the returned context ends with ctx or
// Close. It returns ErrClosed after Close.
func (b *Backend) begin(ctx context.Context) (context.Context, func(), error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return nil, nil, fmt.Errorf("awslambda: invoke %q: %w", b.Function(), backends.ErrClosed)
	}
	b.wg.Add(1)
	ctx, cancel := context.WithCancelCause(ctx)
	unhook := context.AfterFunc(b.closing, func() { cancel(backends.ErrClosed) })
	return ctx, func() {
		unhook()
		cancel(nil)
		b.wg.Done()
	}, nil
}

// Invoke runs a synchronous (RequestResponse) invocation of the function with
// payload and returns the worker's reply. It makes one attempt; failures are
// classified as the package documentation says. When ctx ends first it
// returns an error wrapping ctx's error; the invocation itself may go on
// running on Lambda until the function's timeout.
func (b *Backend) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	if len(payload) > b.limits.MaxRequestBytes {
		return nil, fmt.Errorf("awslambda: invoke %q: payload of %d bytes is over the %d-byte limit of a synchronous invocation: %w",
			b.Function(), len(payload), b.limits.MaxRequestBytes, backends.ErrPayloadTooLarge)
	}
	ctx, done, err := b.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	out, err := b.client.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String(b.function),
		Qualifier:      b.qualifier,
		InvocationType: types.InvocationTypeRequestResponse,
		Payload:        backends.EncodeJSON(payload),
	})
	if err != nil {
		return nil, b.invokeError(ctx, "invoke", err)
	}
	return b.reply(out)
}

// InvokeAsync queues an asynchronous (Event) invocation of the function with
// payload and returns once Lambda has accepted it (HTTP 202). Lambda runs it
// later, at least once; the worker writes its reply to the store named in the
// payload, and the reply Lambda gets is discarded. Failures before
// acceptance are classified as for Invoke.
func (b *Backend) InvokeAsync(ctx context.Context, payload []byte) error {
	if len(payload) > b.limits.MaxAsyncRequestBytes {
		return fmt.Errorf("awslambda: invoke %q asynchronously: payload of %d bytes is over the %d-byte limit of an asynchronous invocation: %w",
			b.Function(), len(payload), b.limits.MaxAsyncRequestBytes, backends.ErrPayloadTooLarge)
	}
	ctx, done, err := b.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	out, err := b.client.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String(b.function),
		Qualifier:      b.qualifier,
		InvocationType: types.InvocationTypeEvent,
		Payload:        backends.EncodeJSON(payload),
	})
	if err != nil {
		return b.invokeError(ctx, "invoke asynchronously", err)
	}
	if out.StatusCode != http.StatusAccepted {
		return fmt.Errorf("awslambda: invoke %q asynchronously: Lambda answered status %d, want 202: %w",
			b.Function(), out.StatusCode, backends.ErrTransport)
	}
	return nil
}

// Check makes a DryRun invocation: Lambda verifies that the function exists
// and that the caller may invoke it, without running it. Errors are
// classified as for Invoke.
func (b *Backend) Check(ctx context.Context) error {
	ctx, done, err := b.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	_, err = b.client.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String(b.function),
		Qualifier:      b.qualifier,
		InvocationType: types.InvocationTypeDryRun,
	})
	if err != nil {
		return b.invokeError(ctx, "check", err)
	}
	return nil
}

// reply turns a successful Invoke call into the worker's reply, or into a
// FunctionError when the function failed.
func (b *Backend) reply(out *lambda.InvokeOutput) ([]byte, error) {
	p := out.Payload
	if out.FunctionError == nil && bytes.HasPrefix(p, []byte(`{"gowren":`)) {
		if reply, err := backends.DecodeJSON(p); err == nil {
			return reply, nil
		}
	}
	header := aws.ToString(out.FunctionError)
	if fe := functionError(b.Function(), header, p); fe != nil {
		return nil, fe
	}
	reply, err := backends.DecodeJSON(p)
	if err != nil {
		return nil, fmt.Errorf("awslambda: invoke %q: the reply (%d bytes: %.80q) is not a gowren reply: %w; "+
			"deploy this program with `gowren deploy lambda` (its main must call fanout.Init and import backends/awslambda)",
			b.Function(), len(p), p, ErrNotWorker)
	}
	return reply, nil
}

// FunctionError is an invocation that reached the function but failed
// outside gowren's handler: the runtime exited or crashed, Lambda stopped it
// at the function's timeout, its reply was over Lambda's limit, or the
// function rejected the event. It wraps the error that classifies it:
// backends.ErrWorkerLost, backends.ErrPayloadTooLarge or ErrNotWorker.
type FunctionError struct {
	// Function is the function's name, with ":qualifier" when there is one.
	Function string
	// Unhandled is the X-Amz-Function-Error header ("Unhandled" or
	// "Handled"); empty when Lambda (or an emulator) did not send it.
	Unhandled string
	// Type is the error's type as the runtime or Lambda reported it, such
	// as "Runtime.ExitError" or "Sandbox.Timedout".
	Type string
	// Message is the error's message.
	Message string
	// Timeout reports that Lambda stopped the invocation at the function's
	// timeout ("Task timed out").
	Timeout bool

	kind error
}

func (e *FunctionError) Error() string {
	var s strings.Builder
	fmt.Fprintf(&s, "awslambda: function %q failed", e.Function)
	if e.Type != "" {
		s.WriteString(": " + e.Type)
	}
	if e.Message != "" {
		s.WriteString(": " + e.Message)
	}
	switch {
	case e.Timeout:
		s.WriteString(" (the invocation ran into the function's timeout: raise it with `gowren deploy lambda -timeout`, send fewer tasks per invocation, or set a TaskTimeout below it)")
	case e.kind == ErrNotWorker:
		s.WriteString(" (deploy this program with `gowren deploy lambda`)")
	}
	return s.String()
}

// Unwrap returns the classification: backends.ErrWorkerLost,
// backends.ErrPayloadTooLarge or ErrNotWorker.
func (e *FunctionError) Unwrap() error { return e.kind }

// Error types reported by the worker runtime of this package.
const (
	// errTypeInvalidEvent is the type of the error the worker returns for
	// an event that is not a gowren invocation.
	errTypeInvalidEvent = "Gowren.InvalidEvent"
)

// functionError recognises a failed invocation from the X-Amz-Function-Error
// header or from an error-shaped payload, which is all AWS's emulator sends.
// It returns nil for a payload that is neither.
func functionError(function, header string, p []byte) *FunctionError {
	fe := &FunctionError{Function: function, Unhandled: header}
	p = bytes.TrimSpace(p)
	switch {
	case bytes.HasPrefix(p, []byte("{")):
		var v struct {
			Type    *string `json:"errorType"`
			Message *string `json:"errorMessage"`
		}
		if json.Unmarshal(p, &v) != nil || (v.Type == nil && v.Message == nil) {
			if header == "" {
				return nil
			}
			fe.Message = fmt.Sprintf("%.200s", p)
		} else {
			fe.Type, fe.Message = aws.ToString(v.Type), aws.ToString(v.Message)
		}
	case bytes.HasPrefix(p, []byte("Task timed out")):
		// The emulator answers a timed-out invocation with this text.
		fe.Type, fe.Message = "Sandbox.Timedout", string(p)
	default:
		if header == "" {
			return nil
		}
		fe.Message = fmt.Sprintf("%.200s", p)
	}
	switch {
	case fe.Type == "Sandbox.Timedout" || strings.Contains(fe.Message, "Task timed out"):
		fe.Timeout = true
		fe.kind = backends.ErrWorkerLost
	case fe.Type == "Function.ResponseSizeTooLarge" || strings.Contains(fe.Message, "payload size exceeded"):
		fe.kind = backends.ErrPayloadTooLarge
	case fe.Type == errTypeInvalidEvent || fe.Type == "Runtime.InvalidEntrypoint":
		fe.kind = ErrNotWorker
	default:
		fe.kind = backends.ErrWorkerLost
	}
	return fe
}

// captureRuntimeError returns SDK middleware that recognises a function error
// answered with an HTTP 5xx status and no X-Amzn-ErrorType header, as AWS's
// emulator answers a crashed runtime (502 with {"errorType":
// "Runtime.ExitError",...}); the SDK would otherwise report an
// "UnknownError" and lose the runtime's message.
func captureRuntimeError(function string) func(*middleware.Stack) error {
	return func(s *middleware.Stack) error {
		return s.Deserialize.Add(middleware.DeserializeMiddlewareFunc("GowrenRuntimeError", func(
			ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler,
		) (middleware.DeserializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleDeserialize(ctx, in)
			if err != nil {
				return out, md, err
			}
			resp, ok := out.RawResponse.(*smithyhttp.Response)
			if !ok || resp.StatusCode < 500 || resp.Header.Get("X-Amzn-ErrorType") != "" {
				return out, md, nil
			}
			head, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			if rerr == nil {
				if fe := functionError(function, "", head); fe != nil && fe.Type != "" {
					return out, md, fe
				}
			}
			resp.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
			return out, md, nil
		}), middleware.After)
	}
}

// configErrors are service errors that a retry cannot fix: the function's
// configuration or its network or keys are broken.
var configErrors = map[string]bool{
	"InvalidRuntimeException":              true,
	"InvalidZipFileException":              true,
	"InvalidSecurityGroupIDException":      true,
	"InvalidSubnetIDException":             true,
	"KMSAccessDeniedException":             true,
	"KMSDisabledException":                 true,
	"KMSInvalidStateException":             true,
	"KMSNotFoundException":                 true,
	"EC2AccessDeniedException":             true,
	"SubnetIPAddressLimitReachedException": true,
	"UnsupportedMediaTypeException":        true,
	"RecursiveInvocationException":         true,
}

// authErrors are the codes AWS answers when credentials are missing,
// invalid, expired or not allowed to invoke the function.
var authErrors = map[string]bool{
	"AccessDeniedException":       true,
	"AccessDenied":                true,
	"UnrecognizedClientException": true,
	"InvalidSignatureException":   true,
	"ExpiredTokenException":       true,
	"ExpiredToken":                true,
	"IncompleteSignature":         true,
	"MissingAuthenticationToken":  true,
	"InvalidClientTokenId":        true,
	"SignatureDoesNotMatch":       true,
}

// invokeError classifies an error of the SDK's Invoke.
func (b *Backend) invokeError(ctx context.Context, op string, err error) error {
	fn := b.Function()
	if ctx.Err() != nil {
		cause := context.Cause(ctx)
		if errors.Is(cause, backends.ErrClosed) {
			return fmt.Errorf("awslambda: %s %q: %w", op, fn, cause)
		}
		return fmt.Errorf("awslambda: %s %q: %w", op, fn, ctx.Err())
	}
	var fe *FunctionError
	if errors.As(err, &fe) {
		return fe
	}
	var te *types.TooManyRequestsException
	if errors.As(err, &te) {
		reason := string(te.Reason)
		if reason == "" {
			reason = aws.ToString(te.Type)
		}
		if reason == "" {
			reason = "TooManyRequestsException"
		}
		return fmt.Errorf("awslambda: %s %q: %w", op, fn,
			&backends.ThrottleError{RetryAfter: parseRetryAfter(aws.ToString(te.RetryAfterSeconds)), Reason: reason})
	}
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return fmt.Errorf("awslambda: %s: function %q not found in region %s (%s): %w; deploy it with `gowren deploy lambda -name %s -region %s`, or check the function name and region",
			op, fn, b.regionName(), nf.ErrorMessage(), ErrFunctionNotFound, b.function, b.regionName())
	}
	var tooLarge *types.RequestTooLargeException
	if errors.As(err, &tooLarge) {
		return fmt.Errorf("awslambda: %s %q: Lambda refused the request as too large (%s): %w",
			op, fn, tooLarge.ErrorMessage(), backends.ErrPayloadTooLarge)
	}
	var invalid *types.InvalidRequestContentException
	if errors.As(err, &invalid) {
		return fmt.Errorf("awslambda: %s %q: Lambda rejected the request body as invalid (%s); the payload must be JSON",
			op, fn, invalid.ErrorMessage())
	}
	for _, code := range []string{"ResourceConflictException", "ResourceNotReadyException"} {
		var api smithy.APIError
		if errors.As(err, &api) && api.ErrorCode() == code {
			// The function is being created or updated: it did not run;
			// try again shortly.
			return fmt.Errorf("awslambda: %s %q: function not ready (%s): %w", op, fn, api.ErrorMessage(),
				&backends.ThrottleError{RetryAfter: time.Second, Reason: code})
		}
	}
	var params smithy.InvalidParamsError
	if errors.As(err, &params) {
		return fmt.Errorf("awslambda: %s %q: invalid request: %w", op, fn, err)
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		code := api.ErrorCode()
		switch {
		case authErrors[code]:
			return fmt.Errorf("awslambda: %s %q: AWS refused the credentials or the permission (%s: %s); "+
				"the caller needs lambda:InvokeFunction on the function: %w", op, fn, code, api.ErrorMessage(), err)
		case configErrors[code]:
			return fmt.Errorf("awslambda: %s %q: the function's configuration is broken (%s: %s); fix it or redeploy with `gowren deploy lambda`",
				op, fn, code, api.ErrorMessage())
		case httpStatus(err) >= 500 || api.ErrorFault() == smithy.FaultServer:
			return fmt.Errorf("awslambda: %s %q: %w: %w", op, fn, backends.ErrTransport, err)
		}
		return fmt.Errorf("awslambda: %s %q: %w", op, fn, err)
	}
	if st := httpStatus(err); st >= 500 {
		return fmt.Errorf("awslambda: %s %q: %w: %w", op, fn, backends.ErrTransport, err)
	} else if st >= 400 {
		return fmt.Errorf("awslambda: %s %q: %w", op, fn, err)
	}
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return fmt.Errorf("awslambda: %s %q: cannot resolve the Lambda endpoint %q: is region %q right? %w",
			op, fn, dns.Name, b.regionName(), err)
	}
	if isCredentialsError(err) {
		return fmt.Errorf("awslambda: %s %q: no usable AWS credentials (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws sso login`): %w",
			op, fn, err)
	}
	var de *smithy.DeserializationError
	if errors.As(err, &de) {
		return fmt.Errorf("awslambda: %s %q: undecodable answer from Lambda: %w: %w", op, fn, backends.ErrTransport, err)
	}
	// No response at all: the request or its reply was lost on the way.
	return fmt.Errorf("awslambda: %s %q: %w: %w", op, fn, backends.ErrTransport, err)
}

func (b *Backend) regionName() string {
	if b.region == "" {
		return "(none)"
	}
	return b.region
}

// isCredentialsError recognises the SDK's failure to find or refresh
// credentials, which happens before any request is sent.
func isCredentialsError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "get credentials") || strings.Contains(s, "retrieve credentials") ||
		strings.Contains(s, "get identity")
}

// httpStatus returns the HTTP status of an SDK error that has a response, or 0.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.HTTPStatusCode()
	}
	return 0
}

// parseRetryAfter reads a Retry-After value: seconds (Lambda's form) or an
// HTTP date. It returns 0 for an empty or unreadable value.
func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil && secs > 0 && secs < 24*3600 {
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
