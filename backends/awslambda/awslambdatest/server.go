// Package awslambdatest is a loopback AWS Lambda for tests: one HTTP server
// that speaks Lambda's Invoke API and the part of its control plane that
// `gowren deploy lambda` uses to the real AWS SDK client, and the Lambda
// Runtime API to worker processes of a real program running the real
// aws-lambda-go runtime.
//
// Point a *lambda.Client at URL() (Options.BaseEndpoint, the server's
// Region, and credentials signed with Options.SecretAccessKey: any access
// key with DefaultSecretAccessKey by default) and invoke the function
// Options.Function. Each invocation is handed to a worker process through
// the Runtime API, exactly as Lambda hands it to a custom runtime's
// bootstrap:
//
//   - GET /2018-06-01/runtime/invocation/next answers the next invocation
//     with its Lambda-Runtime-Aws-Request-Id, Lambda-Runtime-Deadline-Ms and
//     Lambda-Runtime-Invoked-Function-Arn headers;
//   - POST .../invocation/{id}/response and .../invocation/{id}/error
//     complete it, and POST /2018-06-01/runtime/init/error reports a failed
//     start.
//
// # What it models
//
// docs/design.md ("Loopback Lambda: what is emulated") lists each behaviour
// with the page of AWS's documentation it follows, and what is not
// emulated.
//
//   - Authentication: every request must carry a Signature Version 4
//     signature, which the server recomputes over the method, path, query,
//     signed headers and body: 403 MissingAuthenticationTokenException when
//     unsigned, IncompleteSignatureException for a malformed Authorization
//     header, UnrecognizedClientException for an access key other than
//     Options.AccessKeyID, InvalidSignatureException for a wrong secret,
//     another region or service, or a time more than 5 minutes off.
//   - Function names as Lambda takes them: name, ARN or partial ARN, each
//     with an optional ":QUALIFIER", and the Qualifier query parameter;
//     published versions and aliases (PublishVersion, CreateAlias,
//     GetAlias, UpdateAlias). An alias runs its version, the answer's
//     X-Amz-Executed-Version names the version that ran, and the runtime is
//     handed the ARN as invoked. An unknown version or alias gets 404
//     ResourceNotFoundException, two different qualifiers 400
//     InvalidParameterValueException, an ARN of another region 404, of
//     another account 403 AccessDeniedException.
//   - Invocation types RequestResponse (200 with the function's reply), Event
//     (202; run later, at least once, with retries after function errors as
//     the event invoke config says, 2 by default) and DryRun (204); LogType
//     Tail (X-Amz-Log-Result: the last 4 KB of the execution log, START,
//     what the worker printed, END and REPORT).
//   - Function errors: 200 with X-Amz-Function-Error: Unhandled and an
//     {"errorType","errorMessage"} body, for errors the runtime reports, a
//     worker process that exits (Runtime.ExitError), an invocation that
//     overruns Options.Timeout (Sandbox.Timedout, "Task timed out after ...";
//     the worker is killed, as Lambda resets the environment) and a reply over
//     the limit (Function.ResponseSizeTooLarge).
//   - Service errors with Lambda's codes: 429 TooManyRequestsException with
//     Retry-After and a Reason beyond Options.Concurrency or the scaling ramp,
//     400 InvalidRequestContentException for a body that is not JSON, 413
//     RequestTooLargeException beyond 6 MB (sync) or 1 MB (async), 404
//     ResourceNotFoundException for an unknown function, 409
//     ResourceConflictException for a function still Pending.
//   - Concurrency: an invocation takes one unit of concurrency from its
//     admission until it ends; Options.Concurrency is the account's limit,
//     shared by every function. Execution environments are counted as Lambda
//     counts them, for each function apart: a function needs one more
//     whenever more of its invocations are in flight than it has
//     environments, and Options.Ramp limits how many each function may add
//     per Options.RampWindow (Lambda adds 1,000 every 10 seconds). The
//     environments are logical: their invocations run on Options.Workers real
//     worker processes, queueing for a free one.
//   - In-process mode: with Options.Handler, invocations run on goroutines of
//     this process instead (no Runtime API, no worker processes), for tests
//     and benchmarks of the driver side at scale.
//   - Control plane: CreateFunction, GetFunction, GetFunctionConfiguration,
//     DeleteFunction (the whole function), UpdateFunctionCode,
//     UpdateFunctionConfiguration,
//     PutFunctionEventInvokeConfig, PublishVersion and the alias calls above,
//     with Pending / InProgress states that last Options.PendingPolls reads
//     (so that SDK waiters really wait), ResourceConflictException for an
//     update or a new version while one is in progress, and invocations
//     refused while Pending. Every call is recorded (Calls). Uploaded code
//     is kept (Code) but not run: every function, version and alias runs
//     Options.Command on the same worker processes, whose environment names
//     Options.Function and $LATEST.
//   - Worker environment: Lambda's variables, the role's credentials
//     (RoleAccessKeyID with Options.SecretAccessKey and RoleSessionToken),
//     and AWS_ENDPOINT_URL_LAMBDA set to URL(), so that a worker's own SDK
//     client (an invoker tree's invoker) invokes the server's functions,
//     signed as a function's role would sign. Stats.KeyInvocations counts
//     invocations by the signing key, telling a worker's from a driver's.
package awslambdatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambda/messages"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// Payload limits of the Invoke API, as Lambda's.
const (
	MaxSyncPayload  = 6 << 20
	MaxAsyncPayload = 1 << 20
)

// Options configure a Server. The zero value serves the control plane; to
// run invocations, set Command.
type Options struct {
	// Command is the worker program and its arguments: a program that
	// serves invocations through the Lambda Runtime API (a gowren program
	// importing backends/awslambda, or any custom runtime). Defaults to
	// none: invocations then fail with Runtime.InvalidEntrypoint.
	Command []string
	// Env holds extra "KEY=value" entries for the workers' environment,
	// which is otherwise this process's plus the variables Lambda sets
	// (AWS_LAMBDA_RUNTIME_API, AWS_LAMBDA_FUNCTION_NAME, _HANDLER,
	// AWS_REGION, the role's credentials AWS_ACCESS_KEY_ID,
	// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN: see RoleAccessKeyID)
	// and AWS_ENDPOINT_URL_LAMBDA, the server's URL, so that a worker's SDK
	// client invokes this server's functions. An entry here replaces one of
	// those. Defaults to none.
	Env []string
	// Dir is the workers' working directory (Lambda's /var/task). Defaults
	// to this process's.
	Dir string
	// Workers is the most worker processes that run at once; each serves
	// one invocation at a time. They start on demand and are replaced when
	// they exit. Defaults to 2.
	Workers int
	// Concurrency is the most invocations in flight (running, or waiting
	// for a worker process); a synchronous invocation beyond it gets 429
	// TooManyRequestsException with reason
	// ConcurrentInvocationLimitExceeded, and an asynchronous one waits in
	// the event queue. Defaults to Workers.
	Concurrency int
	// Ramp is the most execution environments each function adds per
	// RampWindow (each function scales on its own); a synchronous
	// invocation that needs one more beyond it gets 429 with reason
	// FunctionInvocationRateLimitExceeded. Defaults to 0: no ramp limit.
	Ramp int
	// RampWindow is the window of Ramp. Defaults to 10s, Lambda's.
	RampWindow time.Duration
	// RetryAfter is the Retry-After of 429 answers, sent in seconds (with a
	// fraction when it is not whole). Defaults to 1s.
	RetryAfter time.Duration
	// Timeout is the function's timeout: an invocation still running after
	// it fails with "Task timed out" and its worker is killed. Defaults to
	// 30s.
	Timeout time.Duration
	// Function is the function that exists from the start (in state
	// Active). Defaults to "function", the name AWS's emulator uses.
	Function string
	// Region is the server's region: the region in ARNs, and the one
	// requests must be signed for (others get 403
	// InvalidSignatureException, and a function ARN of another region 404
	// ResourceNotFoundException). Defaults to "us-east-1".
	Region string
	// Account is the account ID in ARNs; a function ARN of another account
	// gets 403 AccessDeniedException. Defaults to "123456789012".
	Account string
	// AccessKeyID, when set, is the only access key whose signed requests
	// are accepted; others get 403 UnrecognizedClientException. Defaults to
	// any key.
	AccessKeyID string
	// SecretAccessKey is the secret of the accepted access keys. Every
	// request must carry a Signature Version 4 signature made with it for
	// service "lambda" and Region, within 5 minutes of the server's clock,
	// as AWS checks them: an unsigned request gets 403
	// MissingAuthenticationTokenException, a malformed Authorization header
	// 403 IncompleteSignatureException, a wrong signature, region, service
	// or time 403 InvalidSignatureException. Defaults to
	// DefaultSecretAccessKey.
	SecretAccessKey string
	// DenyIAM makes the server's IAM refuse PutRolePolicy with 403
	// AccessDenied, as IAM does for credentials whose policy lacks
	// iam:PutRolePolicy (see iam.go).
	DenyIAM bool
	// PendingPolls is how many reads of a new or updated function's state
	// (GetFunction, GetFunctionConfiguration, or an invocation refused
	// because the function is Pending) still find it Pending or
	// InProgress. Defaults to 1; negative means 0.
	PendingPolls int
	// Handler, when set, runs the invocations in this process instead of
	// in worker processes, without the Runtime API: each on a goroutine of
	// its own, with a context that carries the invocation's deadline and
	// its lambdacontext.LambdaContext (request ID and the function ARN as
	// invoked, as aws-lambda-go's runtime gives them), and ends when the
	// server closes. It may be an aws-lambda-go
	// lambda.Handler, such as awslambda.NewHandler(fanout.Handle). A
	// returned error or a panic becomes a function error named after the
	// error's type, as aws-lambda-go reports it. What the handler prints is
	// not captured: a LogType Tail log has only Lambda's own lines.
	// Defaults to nil: worker processes run Command.
	Handler interface {
		Invoke(ctx context.Context, event []byte) ([]byte, error)
	}
	// StopAbandoned, when set, ends a synchronous invocation whose caller
	// went away before its answer: one that runs is stopped as a timed-out
	// one is (its worker process killed, and replaced when invocations
	// wait), one that waits for a worker is dropped. Lambda lets such an
	// invocation run on to its end, which is the default; tests whose
	// callers give up on tasks that block until the function's timeout
	// set it, so that a timeout long enough to never pace a slow machine
	// does not keep the worker processes from the invocations that follow.
	StopAbandoned bool
	// OnEvent, when set, is called once for every run of an asynchronous
	// invocation that will not be retried, with its outcome. It runs on the
	// server's goroutines and must not block.
	OnEvent func(EventResult)
	// Stderr receives the workers' stdout and stderr, each line prefixed
	// with "[worker N] ". Defaults to os.Stderr.
	Stderr io.Writer
}

// EventResult is the outcome of an asynchronous invocation.
type EventResult struct {
	// RequestID identifies the invocation.
	RequestID string
	// Attempts is the number of times it ran.
	Attempts int
	// Payload is the function's reply, or the error body when FunctionError
	// is set.
	Payload []byte
	// FunctionError is "Unhandled" when the last run failed.
	FunctionError string
}

// Stats counts what the server has seen.
type Stats struct {
	// Invocations is the number of synchronous invocations run, and
	// FunctionInvocations the same by function name (several functions
	// share the server's worker processes).
	Invocations         int
	FunctionInvocations map[string]int
	// Events is the number of asynchronous invocations accepted, and
	// EventRuns the number of their runs, retries included.
	Events, EventRuns int
	// KeyInvocations counts the invocations accepted (synchronous ones
	// admitted, asynchronous ones queued) by the access key that signed
	// them: the tests' drivers use theirs, workers the role's
	// (RoleAccessKeyID unless Options.AccessKeyID is set).
	KeyInvocations map[string]int
	// Throttles is the number of 429 answers.
	Throttles int
	// MaxInFlight is the most invocations in flight at once.
	MaxInFlight int
	// Environments holds the creation time of every execution environment,
	// of every function, in order.
	Environments []time.Time
	// WorkersStarted is the number of worker processes started.
	WorkersStarted int
	// Errors counts the API's error answers by code (their X-Amzn-ErrorType),
	// such as "InvalidSignatureException" or "ResourceConflictException".
	Errors map[string]int
}

// MaxNewEnvironments returns the most environments created within any
// window of length d.
func (s Stats) MaxNewEnvironments(d time.Duration) int {
	most, j := 0, 0
	for i, t := range s.Environments {
		for t.Sub(s.Environments[j]) >= d {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}

// Server is a loopback Lambda. Its methods are safe for concurrent use.
type Server struct {
	o       Options
	ctx     context.Context // ends at Close
	stop    context.CancelFunc
	ln      net.Listener
	srv     *http.Server
	closing chan struct{}
	out     *lineWriter

	ready chan *invocation // admitted, waiting for a worker process

	mu           sync.Mutex
	closed       bool
	inflight     int
	rolePolicies map[string]string      // "role/policy name" to the document (iam.go)
	envs         []time.Time            // creation times, every function's
	fnEnvs       map[string][]time.Time // creation times by function: each scales on its own
	fnFlight     map[string]int         // invocations in flight by function
	events       []*invocation
	eventWake    chan struct{} // signalled when events or capacity change
	workers      map[*worker]struct{}
	idle         int // workers starting or waiting in /next
	waiting      int // invocations in ready
	nextID       int
	stats        Stats
	functions    map[string]*function

	callsMu sync.Mutex // after mu when both are held
	calls   []Call

	sigMu    sync.Mutex // the last signing key derived (see signingKey)
	sigScope string
	sigKey   []byte

	wg sync.WaitGroup // server goroutines and worker reapers
}

// New starts a Server on a loopback port. Close it when done.
func New(opts *Options) (*Server, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.Concurrency <= 0 {
		o.Concurrency = o.Workers
	}
	if o.RampWindow <= 0 {
		o.RampWindow = 10 * time.Second
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Function == "" {
		o.Function = "function"
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.Account == "" {
		o.Account = "123456789012"
	}
	if o.SecretAccessKey == "" {
		o.SecretAccessKey = DefaultSecretAccessKey
	}
	switch {
	case o.PendingPolls == 0:
		o.PendingPolls = 1
	case o.PendingPolls < 0:
		o.PendingPolls = 0
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("awslambdatest: listen: %w", err)
	}
	s := &Server{
		o:         o,
		ln:        ln,
		closing:   make(chan struct{}),
		out:       &lineWriter{w: o.Stderr},
		ready:     make(chan *invocation, o.Concurrency),
		eventWake: make(chan struct{}, 1),
		workers:   map[*worker]struct{}{},
		functions: map[string]*function{},
		fnEnvs:    map[string][]time.Time{},
		fnFlight:  map[string]int{},
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.functions[o.Function] = s.newFunction(o.Function)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2015-03-31/functions/{name}/invocations", s.handleInvoke)
	s.controlRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "UnknownOperationException", "Unknown operation "+r.Method+" "+r.URL.Path)
	})
	s.srv = &http.Server{Handler: s.authenticate(mux)}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(ln)
	}()
	go func() {
		defer s.wg.Done()
		s.dispatchEvents()
	}()
	return s, nil
}

// URL returns the server's endpoint, for a client's BaseEndpoint.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Environments = append([]time.Time(nil), s.envs...)
	st.Errors = maps.Clone(s.stats.Errors)
	st.FunctionInvocations = maps.Clone(s.stats.FunctionInvocations)
	st.KeyInvocations = maps.Clone(s.stats.KeyInvocations)
	return st
}

// Close stops the server: it closes its connections, kills the worker
// processes and waits for them and for its goroutines. Invocations in flight
// fail. Calls after the first return nil.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.stop()
	workers := make([]*worker, 0, len(s.workers))
	for w := range s.workers {
		workers = append(workers, w)
	}
	s.mu.Unlock()
	err := s.srv.Close()
	for _, w := range workers {
		w.kill()
	}
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// maxBody bounds the request bodies the server reads: a control-plane call
// carries a zip archive of up to 50 MB, base64-encoded.
const maxBody = 70 << 20

// authenticate reads the request's body and checks its signature before
// handing it on, as AWS does (see verify).
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w := &errorRecorder{ResponseWriter: rw}
		defer func() {
			if w.code != "" {
				s.mu.Lock()
				if s.stats.Errors == nil {
					s.stats.Errors = map[string]int{}
				}
				s.stats.Errors[w.code]++
				s.mu.Unlock()
			}
		}()
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			apiError(w, http.StatusBadRequest, "InvalidRequestContentException", "Could not read request body: "+err.Error())
			return
		}
		if len(body) > maxBody {
			apiError(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException",
				fmt.Sprintf("Request must be smaller than %d bytes", maxBody))
			return
		}
		if isIAM(r) {
			if e := s.verifyScope(r, body, time.Now(), iamRegion, iamService); e != nil {
				iamError(w, http.StatusForbidden, iamAuthCodes[e.code], e.message)
				return
			}
			s.serveIAM(w, r, body)
			return
		}
		if e := s.verify(r, body, time.Now()); e != nil {
			apiError(w, http.StatusForbidden, e.code, e.message)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// countKeyLocked counts an accepted invocation under the access key that
// signed r (authenticate checked the signature).
func (s *Server) countKeyLocked(r *http.Request) {
	if s.stats.KeyInvocations == nil {
		s.stats.KeyInvocations = map[string]int{}
	}
	s.stats.KeyInvocations[accessKeyOf(r)]++
}

// errorRecorder notes the error code of an answer.
type errorRecorder struct {
	http.ResponseWriter
	code string
}

func (w *errorRecorder) WriteHeader(status int) {
	if status >= 400 {
		w.code = w.Header().Get("X-Amzn-ErrorType")
	}
	w.ResponseWriter.WriteHeader(status)
}

// apiError writes an error of the Lambda API in its REST-JSON form.
func apiError(w http.ResponseWriter, status int, code, message string) {
	writeAPIError(w, status, code, map[string]any{"Type": "User", "message": message})
}

func writeAPIError(w http.ResponseWriter, status int, code string, body map[string]any) {
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.Header().Set("X-Amzn-RequestId", requestID())
	w.WriteHeader(status)
	w.Write(b)
}

// invocation is one run of a function.
type invocation struct {
	id      string
	payload []byte
	async   bool
	fn      string      // the function's name
	version string      // the version that runs: latest or a number
	arn     string      // the function's ARN as invoked (qualified when the call was)
	done    chan result // buffered 1; receives exactly one result
	once    sync.Once

	mu        sync.Mutex
	timer     *time.Timer // the function's timeout, once a worker runs it
	worker    *worker     // the worker that took it
	abandoned bool        // its caller went away (Options.StopAbandoned)
}

// result is an invocation's outcome.
type result struct {
	payload []byte
	errType string // non-empty for a function error
	log     []byte // the function's output while it ran (its last maxLogTail bytes)
}

func (inv *invocation) complete(r result) bool {
	ok := false
	inv.once.Do(func() {
		ok = true
		inv.mu.Lock()
		if inv.timer != nil {
			inv.timer.Stop()
		}
		inv.mu.Unlock()
		inv.done <- r
	})
	return ok
}

func functionErrorBody(errType, message string) []byte {
	b, _ := json.Marshal(map[string]string{"errorType": errType, "errorMessage": message})
	return b
}

func (s *Server) handleInvoke(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	t, e := s.resolveLocked("Invoke", r.PathValue("name"), r.URL.Query().Get("Qualifier"))
	if e == nil {
		// An invocation is refused while the function is Pending; Lambda
		// reads its state to decide, as GetFunction does.
		t.fn.read()
		if t.fn.state == "Pending" {
			e = s.notReadyLocked(t.fn)
		}
	}
	var memory int
	if e == nil {
		memory = t.fn.memory
	}
	s.mu.Unlock()
	if e != nil {
		e.write(w)
		return
	}
	typ := r.Header.Get("X-Amz-Invocation-Type")
	limit := MaxSyncPayload
	switch typ {
	case "", "RequestResponse":
		typ = "RequestResponse"
	case "Event":
		limit = MaxAsyncPayload
	case "DryRun":
		w.Header().Set("X-Amzn-RequestId", requestID())
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		apiError(w, http.StatusBadRequest, "InvalidParameterValueException",
			"1 validation error detected: Value '"+typ+"' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]")
		return
	}
	tail := false
	switch lt := r.Header.Get("X-Amz-Log-Type"); lt {
	case "", "None":
	case "Tail":
		tail = typ == "RequestResponse" // Lambda sends logs of synchronous invocations only
	default:
		apiError(w, http.StatusBadRequest, "InvalidParameterValueException",
			"1 validation error detected: Value '"+lt+"' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [Tail, None]")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		apiError(w, http.StatusBadRequest, "InvalidRequestContentException", "Could not read request body: "+err.Error())
		return
	}
	if len(body) > limit {
		apiError(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException",
			fmt.Sprintf("Request must be smaller than %d bytes for the InvokeFunction operation", limit))
		return
	}
	if len(body) > 0 && !json.Valid(body) {
		apiError(w, http.StatusBadRequest, "InvalidRequestContentException",
			"Could not parse request body into json: the body is not valid JSON")
		return
	}
	inv := &invocation{id: requestID(), payload: body, done: make(chan result, 1),
		fn: t.fn.name, version: t.version, arn: t.arn}
	if typ == "Event" {
		inv.async = true
		s.mu.Lock()
		s.events = append(s.events, inv)
		s.stats.Events++
		s.countKeyLocked(r)
		s.mu.Unlock()
		s.wakeEvents()
		w.Header().Set("X-Amzn-RequestId", inv.id)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if reason, ok := s.admit(inv.fn); !ok {
		s.throttle(w, reason)
		return
	}
	s.mu.Lock()
	s.stats.Invocations++
	if s.stats.FunctionInvocations == nil {
		s.stats.FunctionInvocations = map[string]int{}
	}
	s.stats.FunctionInvocations[inv.fn]++
	s.countKeyLocked(r)
	s.mu.Unlock()
	s.enqueue(inv)
	started := time.Now()
	select {
	case res := <-inv.done:
		s.release(inv.fn)
		h := w.Header()
		h.Set("X-Amzn-RequestId", inv.id)
		h.Set("X-Amz-Executed-Version", inv.version)
		h.Set("Content-Type", "application/json")
		if res.errType != "" {
			h.Set("X-Amz-Function-Error", "Unhandled")
		}
		if tail {
			h.Set("X-Amz-Log-Result", base64.StdEncoding.EncodeToString(executionLog(inv, res, time.Since(started), memory)))
		}
		w.WriteHeader(http.StatusOK)
		w.Write(res.payload)
	case <-r.Context().Done():
		// The caller went away; as on Lambda, the invocation runs on,
		// unless the options say to stop it.
		if s.o.StopAbandoned {
			s.abandon(inv)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			select {
			case <-inv.done:
			case <-s.closing:
			}
			s.release(inv.fn)
		}()
	case <-s.closing:
		s.release(inv.fn)
		apiError(w, http.StatusServiceUnavailable, "ServiceException", "the server is closing")
	}
}

// abandon ends inv, whose caller went away: its worker is killed when one
// runs it; otherwise the worker that takes it will drop it (see next).
func (s *Server) abandon(inv *invocation) {
	inv.mu.Lock()
	inv.abandoned = true
	w := inv.worker
	inv.mu.Unlock()
	if w == nil {
		inv.complete(result{errType: "Gowren.Abandoned", payload: functionErrorBody("Gowren.Abandoned", "the caller went away")})
		return
	}
	w.stop(inv, result{errType: "Gowren.Abandoned", payload: functionErrorBody("Gowren.Abandoned", "the caller went away")})
}

// throttle answers 429 TooManyRequestsException.
func (s *Server) throttle(w http.ResponseWriter, reason string) {
	s.mu.Lock()
	s.stats.Throttles++
	s.mu.Unlock()
	secs := s.o.RetryAfter.Seconds()
	ra := strconv.FormatFloat(secs, 'f', -1, 64)
	w.Header().Set("Retry-After", ra)
	writeAPIError(w, http.StatusTooManyRequests, "TooManyRequestsException", map[string]any{
		"Type": "User", "Reason": reason, "message": "Rate Exceeded.",
	})
}

// admit takes one unit of concurrency for an invocation of function fn,
// adding an environment of fn when needed, or says why it cannot. The
// concurrency limit is the account's, shared by every function; the ramp
// is each function's own, as Lambda scales each function on its own.
func (s *Server) admit(fn string) (reason string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight >= s.o.Concurrency {
		return "ConcurrentInvocationLimitExceeded", false
	}
	if s.fnFlight[fn] >= len(s.fnEnvs[fn]) {
		now := time.Now()
		if s.o.Ramp > 0 && recentEnvs(s.fnEnvs[fn], now, s.o.RampWindow) >= s.o.Ramp {
			return "FunctionInvocationRateLimitExceeded", false
		}
		s.envs = append(s.envs, now)
		s.fnEnvs[fn] = append(s.fnEnvs[fn], now)
	}
	s.inflight++
	s.fnFlight[fn]++
	s.stats.MaxInFlight = max(s.stats.MaxInFlight, s.inflight)
	return "", true
}

// recentEnvs counts the environments of envs created within window before
// now.
func recentEnvs(envs []time.Time, now time.Time, window time.Duration) int {
	n := 0
	for i := len(envs) - 1; i >= 0 && now.Sub(envs[i]) < window; i-- {
		n++
	}
	return n
}

// release returns the unit of concurrency of an invocation of fn.
func (s *Server) release(fn string) {
	s.mu.Lock()
	s.inflight--
	s.fnFlight[fn]--
	s.mu.Unlock()
	s.wakeEvents()
}

func (s *Server) wakeEvents() {
	select {
	case s.eventWake <- struct{}{}:
	default:
	}
}

// dispatchEvents runs queued asynchronous invocations as concurrency allows,
// retrying function errors as the event invoke config says.
func (s *Server) dispatchEvents() {
	var runs sync.WaitGroup
	defer runs.Wait()
	var rampTimer *time.Timer
	for {
		select {
		case <-s.closing:
			return
		case <-s.eventWake:
		}
		for {
			s.mu.Lock()
			if len(s.events) == 0 {
				s.mu.Unlock()
				break
			}
			next := s.events[0].fn // only this loop takes events off the queue
			s.mu.Unlock()
			reason, ok := s.admit(next)
			if !ok {
				if reason == "FunctionInvocationRateLimitExceeded" {
					// Look again when the ramp window has moved on.
					if rampTimer != nil {
						rampTimer.Stop()
					}
					rampTimer = time.AfterFunc(s.o.RampWindow/10, s.wakeEvents)
				}
				break
			}
			s.mu.Lock()
			inv := s.events[0]
			s.events = s.events[1:]
			fn := s.functions[inv.fn]
			retries := 2
			if fn != nil && fn.retries != nil {
				retries = *fn.retries
			}
			s.stats.EventRuns++
			s.mu.Unlock()
			runs.Add(1)
			go func() {
				defer runs.Done()
				s.runEvent(inv, retries)
			}()
		}
	}
}

func (s *Server) runEvent(inv *invocation, retries int) {
	attempts := 0
	for {
		attempts++
		s.enqueue(inv)
		var res result
		select {
		case res = <-inv.done:
		case <-s.closing:
			return
		}
		if res.errType != "" && attempts <= retries {
			s.mu.Lock()
			s.stats.EventRuns++
			s.mu.Unlock()
			inv = &invocation{id: inv.id, payload: inv.payload, async: true, done: make(chan result, 1),
				fn: inv.fn, version: inv.version, arn: inv.arn}
			continue // keeps its unit of concurrency
		}
		s.release(inv.fn)
		if s.o.OnEvent != nil {
			er := EventResult{RequestID: inv.id, Attempts: attempts, Payload: res.payload}
			if res.errType != "" {
				er.FunctionError = "Unhandled"
			}
			s.o.OnEvent(er)
		}
		return
	}
}

// enqueue hands an admitted invocation to the worker processes, starting
// one when none is free.
func (s *Server) enqueue(inv *invocation) {
	if s.o.Handler != nil {
		s.runInProcess(inv)
		return
	}
	s.mu.Lock()
	s.waiting++
	start := s.idle < s.waiting && len(s.workers) < s.o.Workers && !s.closed
	var w *worker
	if start {
		w = s.newWorkerLocked()
	}
	s.mu.Unlock()
	s.ready <- inv
	if w != nil {
		s.startWorker(w)
	}
}

// runInProcess runs inv with Options.Handler.
func (s *Server) runInProcess(inv *invocation) {
	deadline := time.Now().Add(s.o.Timeout)
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	ctx = lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: inv.id, InvokedFunctionArn: inv.arn})
	timedOut := func() {
		secs := strconv.FormatFloat(s.o.Timeout.Seconds(), 'f', 2, 64)
		inv.complete(result{errType: "Sandbox.Timedout",
			payload: functionErrorBody("Sandbox.Timedout", "RequestId: "+inv.id+" Error: Task timed out after "+secs+" seconds")})
	}
	inv.mu.Lock()
	inv.timer = time.AfterFunc(s.o.Timeout, timedOut)
	inv.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		var res result
		func() {
			defer func() {
				if p := recover(); p != nil {
					typ := reflect.TypeOf(p).String()
					res = result{errType: typ, payload: functionErrorBody(typ, fmt.Sprint(p))}
				}
			}()
			out, err := s.o.Handler.Invoke(ctx, inv.payload)
			if !time.Now().Before(deadline) {
				// Lambda stops the function at its deadline: whatever it
				// answers then is lost.
				timedOut()
				return
			}
			if err != nil {
				typ := reflect.TypeOf(err).String()
				var ie messages.InvokeResponse_Error
				if errors.As(err, &ie) {
					typ = ie.Type
				}
				res = result{errType: typ, payload: functionErrorBody(typ, err.Error())}
				return
			}
			if len(out) > MaxSyncPayload && !inv.async {
				res = result{errType: "Function.ResponseSizeTooLarge", payload: functionErrorBody("Function.ResponseSizeTooLarge",
					fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", MaxSyncPayload))}
				return
			}
			res = result{payload: out}
		}()
		inv.complete(res)
	}()
}

func (s *Server) arn(name string) string {
	return "arn:aws:lambda:" + s.o.Region + ":" + s.o.Account + ":function:" + name
}

// maxLogTail is how much of an execution log Lambda returns with
// LogType Tail: its last 4 KB.
const maxLogTail = 4 << 10

// executionLog is the log of a synchronous invocation as Lambda writes it to
// CloudWatch, cut to its last maxLogTail bytes: a START line, what the
// function printed, an END and a REPORT line.
func executionLog(inv *invocation, res result, took time.Duration, memoryMB int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "START RequestId: %s Version: %s\n", inv.id, inv.version)
	b.Write(res.log)
	if len(res.log) > 0 && res.log[len(res.log)-1] != '\n' {
		b.WriteByte('\n')
	}
	ms := float64(took) / float64(time.Millisecond)
	fmt.Fprintf(&b, "END RequestId: %s\nREPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: %d MB\t\n",
		inv.id, inv.id, ms, int64(math.Ceil(ms)), memoryMB)
	out := b.Bytes()
	if len(out) > maxLogTail {
		out = out[len(out)-maxLogTail:]
	}
	return out
}

func requestID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// lineWriter serializes workers' output lines onto one writer.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// prefixWriter is one worker's stdout and stderr: it writes whole lines,
// prefixed, to a lineWriter. exec.Cmd's copying goroutines call Write, and
// Cmd.Wait waits for them, so it needs no goroutine of its own.
type prefixWriter struct {
	lw     *lineWriter
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		p.emit(p.buf[:i+1])
		p.buf = p.buf[i+1:]
	}
	if len(p.buf) > 64<<10 {
		p.emit(append(p.buf, '\n'))
		p.buf = nil
	}
	return len(b), nil
}

// flush writes a last line without its newline.
func (p *prefixWriter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		p.emit(append(p.buf, '\n'))
		p.buf = nil
	}
}

func (p *prefixWriter) emit(line []byte) {
	p.lw.mu.Lock()
	defer p.lw.mu.Unlock()
	p.lw.w.Write(append([]byte(p.prefix), line...))
}
