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
// lambda://NAME?shards=K&... (OpenShards, NewShards) spreads each job over
// K identical functions NAME-0 ... NAME-(K-1), which `gowren deploy lambda
// -shards K` deploys from one build: Lambda adds at most 1,000 execution
// environments every 10 seconds to each function, so K shards ramp up K
// times faster. A Shards is a backends.Group; its concurrency= is the total
// for all shards (see Shards).
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
// # Invoker trees
//
// A worker can invoke its own function: each invocation's context carries
// (backends.InvokerOf) a backend of the function the worker runs in, so the
// invoker of an invoker tree (fanout.Options.Tree) starts its children from
// inside Lambda, and Limits reports Nested. The worker's Lambda client is
// made at the first child's invocation, once per process, from the
// environment Lambda gives the function: AWS_LAMBDA_FUNCTION_NAME and
// AWS_LAMBDA_FUNCTION_VERSION (children run the version the worker runs),
// AWS_REGION, the credentials of the function's role, and the endpoint of
// AWS_ENDPOINT_URL_LAMBDA or AWS_ENDPOINT_URL when set. A shard NAME-i
// knows it is one from EnvShards (GOWREN_SHARDS=K, which Deploy sets on
// each shard) and sends its children to the K shards in turn, starting at a
// random one. The role needs lambda:InvokeFunction on the function, or on
// NAME-* for shards: DeployResult.InvokePolicy is that policy. When the
// environment lacks what invoking needs, the worker says so on stderr and
// gives no invoker, so that an invoker tree fails with an error saying the
// backend cannot invoke.
//
// # Deploying
//
// Deploy (and `gowren deploy lambda`) builds a main package for
// linux/arm64, zips it as bootstrap (deterministically, so an unchanged
// program is not uploaded again), creates or updates the function on the
// provided.al2023 runtime, waits until Lambda reports it ready, and sets its
// asynchronous retries to 0. With DeployOptions.Shards it does so for each
// shard, uploading only to the shards whose code differs. Package awslambdatest is a loopback Lambda for
// tests.
//
// # Errors
//
// Invoke classifies failures for the executor's retry policy. Every error of
// the Invoke action in Lambda's API reference has a class (TestInvokeErrorClasses
// answers each to the real SDK client):
//
//   - Throttles, a *backends.ThrottleError (errors.Is(err,
//     backends.ErrThrottled)), waited out without costing an attempt; the
//     invocation did not run: TooManyRequestsException (HTTP 429, with
//     Lambda's Retry-After and reason), ThrottlingException,
//     EC2ThrottledException, and a function not ready yet with a 1 s wait:
//     ResourceConflictException (still Pending after CreateFunction, or
//     being updated), SnapStartNotReadyException, ResourceNotReadyException.
//   - A runtime that crashed or exited (Runtime.ExitError), any other
//     unhandled function error, and an invocation stopped at the function's
//     timeout ("Task timed out"): a *FunctionError wrapping
//     backends.ErrWorkerLost; its Timeout field tells timeouts apart.
//   - Failures on Lambda's side, backends.ErrTransport, retried as an
//     attempt: ServiceException and other 5xx answers, EC2UnexpectedException,
//     EFSIOException, EFSMountTimeoutException, EFSMountConnectivityException,
//     the S3 Files mount timeout and connectivity errors,
//     SnapStartTimeoutException, and network failures.
//   - A payload over Lambda's limits (RequestTooLargeException,
//     SerializedRequestEntityTooLargeException, HTTP 413, or a reply over
//     6 MB): backends.ErrPayloadTooLarge.
//   - A function, version or alias that does not exist: ErrFunctionNotFound,
//     naming function, qualifier and region, and saying to deploy with
//     `gowren deploy lambda` (for a shard, with -shards K). Credentials or permissions AWS refuses
//     (MissingAuthenticationTokenException, UnrecognizedClientException,
//     InvalidSignatureException, IncompleteSignatureException,
//     ExpiredTokenException, AccessDeniedException): ErrAuth, naming the
//     access key and region and saying what to check (the key, the secret,
//     the region, the clock, the permission). A function that does not run
//     a gowren worker: ErrNotWorker. A broken function configuration (VPC,
//     KMS, EFS, runtime, code, SnapStart hook, recursive loop) and an
//     invalid request: errors saying what to fix. None of these is
//     retryable: the executor stops the job with one error.
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
	// ErrAuth means AWS refused the request's credentials (unsigned, an
	// unknown access key, a signature made with the wrong secret, for
	// another region or at a wrong time, an expired session) or the
	// caller's permission to invoke the function. The error says which
	// and what to check.
	ErrAuth = errors.New("awslambda: AWS refused the credentials or the permission")
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
	client     *lambda.Client
	function   string
	qualifier  *string
	region     string
	limits     backends.Limits
	transport  *http.Transport // closed by Close when the Backend made it
	shardOf    string          // NAME when the function is shard NAME-i (NewShards)
	shardCount int             // K, the number of shards of NAME

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
	o := withDefaults(opts)
	co := client.Options()
	b := &Backend{
		client: lambda.New(co, func(o *lambda.Options) {
			o.Retryer = aws.NopRetryer{}
			o.RetryMaxAttempts = 0
			o.APIOptions = append(o.APIOptions, captureRuntimeError(function))
		}),
		function: function,
		region:   co.Region,
		limits:   limitsOf(o),
	}
	if o.Qualifier != "" {
		b.qualifier = aws.String(o.Qualifier)
	}
	b.closing, b.stop = context.WithCancelCause(context.Background())
	return b
}

// withDefaults returns *opts (the zero Options when nil) with the defaults
// of its unset fields.
func withDefaults(opts *Options) Options {
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
	return o
}

// limitsOf returns the Limits of a Backend with the options o (defaults
// applied).
func limitsOf(o Options) backends.Limits {
	return backends.Limits{
		MaxRequestBytes:      backends.MaxRawForJSON(MaxSyncPayload),
		MaxResponseBytes:     backends.MaxRawForJSON(MaxSyncPayload),
		MaxAsyncRequestBytes: backends.MaxRawForJSON(MaxAsyncPayload),
		Concurrency:          o.Concurrency,
		Timeout:              o.Timeout,
		Parallel:             o.Parallel,
		MemoryMB:             max(o.MemoryMB, 0),
		Platform:             platform(o.Arch),
		// The worker runtime gives each handler a backend of its own
		// function (see NewHandler).
		Nested: true,
	}
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
// host; they can invoke their own function (Nested: see NewHandler).
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

// errClass is what Invoke makes of an error code of Lambda's.
type errClass int

const (
	// classThrottle: Lambda refused for now; a *backends.ThrottleError,
	// waited out without costing an attempt.
	classThrottle errClass = iota + 1
	// classNotReady: the function is being created, updated or restored; a
	// *backends.ThrottleError with a 1 s Retry-After.
	classNotReady
	// classTransient: a failure on Lambda's side that a new attempt may not
	// meet; backends.ErrTransport, retried as an attempt.
	classTransient
	// classConfig: the function's configuration is broken; fails fast.
	classConfig
	// classRequest: Lambda refused the request itself; fails fast.
	classRequest
	// classAuth: AWS refused the credentials or their permission; ErrAuth,
	// fails fast.
	classAuth
	// classNotFound: ErrFunctionNotFound, fails fast.
	classNotFound
	// classTooLarge: backends.ErrPayloadTooLarge.
	classTooLarge
)

// codeInfo is the class of an error code and what the user should do.
type codeInfo struct {
	class errClass
	hint  string
}

// invokeErrors classifies every error the Invoke action of Lambda's API
// reference lists (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html,
// "Errors"), and the errors AWS answers for every action when it refuses
// the credentials or the caller (the reference's common errors, and the
// codes Lambda's front end really sends, such as
// MissingAuthenticationTokenException). A code missing here is classified
// by its HTTP status.
var invokeErrors = map[string]codeInfo{
	// Throttling and functions that are not ready: wait, then try again.
	"TooManyRequestsException":   {classThrottle, ""},
	"ThrottlingException":        {classThrottle, ""},
	"EC2ThrottledException":      {classThrottle, "Amazon EC2 throttled Lambda while it set up the function's VPC access"},
	"ResourceConflictException":  {classNotReady, "the function is being created or updated"},
	"SnapStartNotReadyException": {classNotReady, "SnapStart is still initializing the function"},
	"ResourceNotReadyException":  {classNotReady, "the function is inactive and Lambda is restoring its VPC connection"},

	// Failures on Lambda's side: a new attempt.
	"ServiceException":                  {classTransient, "Lambda's internal error"},
	"ServiceUnavailable":                {classTransient, "Lambda is unavailable"},
	"InternalFailure":                   {classTransient, "Lambda's internal error"},
	"EC2UnexpectedException":            {classTransient, "an unexpected EC2 error while Lambda set up the function's VPC access"},
	"EFSIOException":                    {classTransient, "an I/O error on the function's EFS file system"},
	"EFSMountTimeoutException":          {classTransient, "mounting the function's EFS file system timed out"},
	"EFSMountConnectivityException":     {classTransient, "no network connection to the function's EFS file system; if it persists, check the mount target's security group"},
	"S3FilesMountTimeoutException":      {classTransient, "mounting the function's S3 Files access point timed out"},
	"S3FilesMountConnectivityException": {classTransient, "no network connection to the function's S3 Files access point; if it persists, check its network configuration"},
	"SnapStartTimeoutException":         {classTransient, "Lambda could not restore the SnapStart snapshot in time"},

	// The function's configuration: fix it, then redeploy.
	"EC2AccessDeniedException":             {classConfig, "the execution role lacks the EC2 permissions VPC access needs (the AWSLambdaVPCAccessExecutionRole policy has them)"},
	"ENILimitReachedException":             {classConfig, "the VPC has reached its limit of network interfaces: delete unused ones or ask for a higher quota"},
	"SubnetIPAddressLimitReachedException": {classConfig, "a subnet of the function's VPC configuration has no free IP address: add subnets or free addresses"},
	"InvalidSecurityGroupIDException":      {classConfig, "a security group of the function's VPC configuration does not exist: fix the configuration"},
	"InvalidSubnetIDException":             {classConfig, "a subnet of the function's VPC configuration does not exist: fix the configuration"},
	"InvalidRuntimeException":              {classConfig, "the function's runtime is not supported (gowren deploys on provided.al2023)"},
	"InvalidZipFileException":              {classConfig, "Lambda cannot unzip the function's code"},
	"KMSAccessDeniedException":             {classConfig, "Lambda may not use the KMS key of the function's environment variables: grant the execution role kms:Decrypt on it"},
	"KMSDisabledException":                 {classConfig, "the KMS key of the function's environment variables is disabled: enable it or configure another"},
	"KMSInvalidStateException":             {classConfig, "the KMS key of the function's environment variables cannot decrypt in its state: check the key"},
	"KMSNotFoundException":                 {classConfig, "the KMS key of the function's environment variables does not exist: configure another"},
	"EFSMountFailureException":             {classConfig, "the function cannot mount its EFS file system (permission or configuration): check the access point and the execution role"},
	"S3FilesMountFailureException":         {classConfig, "the function cannot mount its S3 Files access point (permission or configuration): check it and the execution role"},
	"SnapStartException":                   {classConfig, "the function's SnapStart afterRestore hook failed: fix it or turn SnapStart off"},
	"RecursiveInvocationException":         {classConfig, "Lambda stopped the function in a recursive loop with other AWS resources: break the loop, or change the function's recursive loop setting"},

	// The request: Lambda will refuse it again.
	"InvalidParameterValueException":           {classRequest, "check the function name and qualifier"},
	"ValidationException":                      {classRequest, "check the function name and qualifier"},
	"InvalidRequestContentException":           {classRequest, "the payload must be JSON"},
	"UnsupportedMediaTypeException":            {classRequest, "the request's content type must be JSON"},
	"NoPublishedVersionException":              {classRequest, "the function has no published version: publish one (aws lambda publish-version) or invoke it without a qualifier"},
	"DurableExecutionAlreadyStartedException":  {classRequest, "Lambda answered as for a durable execution, which gowren does not start: check that the function is a gowren worker"},
	"ResourceNotFoundException":                {classNotFound, ""},
	"RequestTooLargeException":                 {classTooLarge, ""},
	"SerializedRequestEntityTooLargeException": {classTooLarge, ""},

	// Credentials and permissions.
	"MissingAuthenticationTokenException": {classAuth, "the request was not signed: configure AWS credentials (AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or `aws sso login`)"},
	"MissingAuthenticationToken":          {classAuth, "the request was not signed: configure AWS credentials (AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or `aws sso login`)"},
	"UnrecognizedClientException":         {classAuth, "AWS does not know the access key: check AWS_ACCESS_KEY_ID or the profile's key (a temporary key also needs its AWS_SESSION_TOKEN)"},
	"InvalidClientTokenId":                {classAuth, "AWS does not know the access key: check AWS_ACCESS_KEY_ID or the profile's key (a temporary key also needs its AWS_SESSION_TOKEN)"},
	"InvalidSignatureException":           {classAuth, ""}, // hint from the message: see signatureHint
	"SignatureDoesNotMatch":               {classAuth, ""},
	"IncompleteSignatureException":        {classAuth, "the request's Authorization header is malformed: check the endpoint (a proxy may rewrite headers)"},
	"IncompleteSignature":                 {classAuth, "the request's Authorization header is malformed: check the endpoint (a proxy may rewrite headers)"},
	"ExpiredTokenException":               {classAuth, "the session token has expired: get new credentials (`aws sso login`, or a new AWS_SESSION_TOKEN)"},
	"ExpiredToken":                        {classAuth, "the session token has expired: get new credentials (`aws sso login`, or a new AWS_SESSION_TOKEN)"},
	"RequestExpired":                      {classAuth, "the request arrived too late after it was signed: check the system clock"},
	"AccessDeniedException":               {classAuth, "the caller needs lambda:InvokeFunction on the function (and on the version or alias it names)"},
	"AccessDenied":                        {classAuth, "the caller needs lambda:InvokeFunction on the function (and on the version or alias it names)"},
	"NotAuthorized":                       {classAuth, "the caller needs lambda:InvokeFunction on the function (and on the version or alias it names)"},
}

// signatureHint says what to check when AWS finds that a request's
// signature does not match, from the message that says why.
func signatureHint(message, region string) string {
	switch {
	case strings.Contains(message, "scoped to a valid region"):
		return "the request was signed for another region than the endpoint's: make the region (" + region +
			", from ?region= in the lambda:// URL, AWS_REGION or the profile) the function's, and the endpoint that region's"
	case strings.Contains(message, "Signature expired") || strings.Contains(message, "not yet current"):
		return "the system clock is more than 5 minutes off: set it right (NTP)"
	case strings.Contains(message, "correct service"):
		return "the request was signed for another service than lambda: check the endpoint"
	}
	return "the secret access key does not belong to the access key ID: check AWS_SECRET_ACCESS_KEY or the profile's key, " +
		"and that the region (" + region + ") is the endpoint's"
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
			reason = "TooManyRequestsException"
		}
		return fmt.Errorf("awslambda: %s %q: Lambda throttled the invocation (%s): %w", op, fn, te.ErrorMessage(),
			&backends.ThrottleError{RetryAfter: parseRetryAfter(aws.ToString(te.RetryAfterSeconds)), Reason: reason})
	}
	var params smithy.InvalidParamsError
	if errors.As(err, &params) {
		return fmt.Errorf("awslambda: %s %q: invalid request: %w", op, fn, err)
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		code, msg := api.ErrorCode(), api.ErrorMessage()
		info, known := invokeErrors[code]
		switch {
		case !known && (httpStatus(err) >= 500 || api.ErrorFault() == smithy.FaultServer):
			info.class = classTransient
		case !known:
			return fmt.Errorf("awslambda: %s %q: Lambda refused the request (%s: %s): %w", op, fn, code, msg, err)
		}
		switch info.class {
		case classThrottle:
			return fmt.Errorf("awslambda: %s %q: %s (%s: %s): %w", op, fn, orDefault(info.hint, "throttled"), code, msg,
				&backends.ThrottleError{RetryAfter: parseRetryAfter(retryAfterHeader(err)), Reason: code})
		case classNotReady:
			// The function did not run; it will be ready shortly.
			return fmt.Errorf("awslambda: %s %q: function not ready: %s (%s: %s); gowren waits and tries again: %w",
				op, fn, info.hint, code, msg, &backends.ThrottleError{RetryAfter: time.Second, Reason: code})
		case classTransient:
			return fmt.Errorf("awslambda: %s %q: %s: %w: %w", op, fn, orDefault(info.hint, "Lambda failed"), backends.ErrTransport, err)
		case classConfig:
			return fmt.Errorf("awslambda: %s %q: the function's configuration is broken (%s: %s): %s; then redeploy with `gowren deploy lambda`",
				op, fn, code, msg, info.hint)
		case classRequest:
			return fmt.Errorf("awslambda: %s %q: Lambda rejected the request as invalid (%s: %s); %s", op, fn, code, msg, info.hint)
		case classAuth:
			hint := info.hint
			if hint == "" {
				hint = signatureHint(msg, b.regionName())
			}
			who := ""
			if key := b.accessKey(ctx); key != "" {
				who = " signed with access key " + key
			}
			return fmt.Errorf("awslambda: %s %q: AWS refused the request%s for region %s (%s: %s): %s: %w",
				op, fn, who, b.regionName(), code, firstLine(msg), hint, ErrAuth)
		case classNotFound:
			also := ""
			if b.qualifier != nil {
				also = ", publish the version or create the alias " + strconv.Quote(*b.qualifier)
			}
			return fmt.Errorf("awslambda: %s: function %q not found in region %s (%s): %w; %s%s, or check the function name, qualifier and region",
				op, fn, b.regionName(), msg, ErrFunctionNotFound, b.deployHint(), also)
		case classTooLarge:
			return fmt.Errorf("awslambda: %s %q: Lambda refused the request as too large (%s: %s): %w",
				op, fn, code, msg, backends.ErrPayloadTooLarge)
		}
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

// firstLine returns s up to its first line break: AWS follows a signature
// mismatch with the canonical request it computed, which is for debugging
// a signer, not for the user.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// retryAfterHeader returns the Retry-After header of an SDK error's
// response, or "".
func retryAfterHeader(err error) string {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.Header.Get("Retry-After")
	}
	return ""
}

// accessKey returns the access key ID the client signs with, or "" when the
// credentials cannot be had.
func (b *Backend) accessKey(ctx context.Context) string {
	p := b.client.Options().Credentials
	if p == nil {
		return ""
	}
	c, err := p.Retrieve(ctx)
	if err != nil {
		return ""
	}
	return c.AccessKeyID
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
