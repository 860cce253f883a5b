// Package awslambdatest is a loopback AWS Lambda for tests: one HTTP server
// that speaks Lambda's Invoke API and the part of its control plane that
// `gowren deploy lambda` uses to the real AWS SDK client, and the Lambda
// Runtime API to worker processes of a real program running the real
// aws-lambda-go runtime.
//
// Point a *lambda.Client at URL() (Options.BaseEndpoint, any static
// credentials) and invoke the function Options.Function. Each invocation is
// handed to a worker process through the Runtime API, exactly as Lambda hands
// it to a custom runtime's bootstrap:
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
//   - Invocation types RequestResponse (200 with the function's reply), Event
//     (202; run later, at least once, with retries after function errors as
//     the event invoke config says, 2 by default) and DryRun (204).
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
//     ResourceNotFoundException for an unknown function, 403 for a request
//     signed with another access key than Options.AccessKeyID.
//   - Concurrency: an invocation takes one unit of concurrency from its
//     admission until it ends. Execution environments are counted as Lambda
//     counts them: one more is needed whenever more invocations are in flight
//     than environments exist, and Options.Ramp limits how many may be added
//     per Options.RampWindow (Lambda adds 1,000 every 10 seconds). The
//     environments are logical: their invocations run on Options.Workers real
//     worker processes, queueing for a free one.
//   - In-process mode: with Options.Handler, invocations run on goroutines of
//     this process instead (no Runtime API, no worker processes), for tests
//     and benchmarks of the driver side at scale.
//   - Control plane: CreateFunction, GetFunction, GetFunctionConfiguration,
//     UpdateFunctionCode, UpdateFunctionConfiguration and
//     PutFunctionEventInvokeConfig, with Pending / InProgress states that last
//     Options.PendingPolls reads (so that SDK waiters really wait) and
//     ResourceConflictException for an update while one is in progress. Every
//     call is recorded (Calls). Uploaded code is kept (Code) but not run:
//     every function runs Options.Command.
package awslambdatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambda/messages"
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
	// (AWS_LAMBDA_RUNTIME_API, AWS_LAMBDA_FUNCTION_NAME, _HANDLER, ...).
	// Defaults to none.
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
	// Ramp is the most execution environments added per RampWindow; a
	// synchronous invocation that needs one more beyond it gets 429 with
	// reason FunctionInvocationRateLimitExceeded. Defaults to 0: no ramp
	// limit.
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
	// Region is the region in ARNs. Defaults to "us-east-1".
	Region string
	// AccessKeyID, when set, is the only access key whose signed requests
	// are accepted; others get 403 UnrecognizedClientException. Defaults to
	// any key (requests must still be signed).
	AccessKeyID string
	// PendingPolls is how many reads of a new or updated function still
	// report it Pending or InProgress. Defaults to 1; negative means 0.
	PendingPolls int
	// Handler, when set, runs the invocations in this process instead of
	// in worker processes, without the Runtime API: each on a goroutine of
	// its own, with a context that carries the invocation's deadline and
	// ends when the server closes. It may be an aws-lambda-go
	// lambda.Handler, such as awslambda.NewHandler(fanout.Handle). A
	// returned error or a panic becomes a function error named after the
	// error's type, as aws-lambda-go reports it. Defaults to nil: worker
	// processes run Command.
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
	// Invocations is the number of synchronous invocations run.
	Invocations int
	// Events is the number of asynchronous invocations accepted, and
	// EventRuns the number of their runs, retries included.
	Events, EventRuns int
	// Throttles is the number of 429 answers.
	Throttles int
	// MaxInFlight is the most invocations in flight at once.
	MaxInFlight int
	// Environments holds the creation time of every execution environment.
	Environments []time.Time
	// WorkersStarted is the number of worker processes started.
	WorkersStarted int
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

	mu        sync.Mutex
	closed    bool
	inflight  int
	envs      []time.Time // creation times
	events    []*invocation
	eventWake chan struct{} // signalled when events or capacity change
	workers   map[*worker]struct{}
	idle      int // workers starting or waiting in /next
	waiting   int // invocations in ready
	nextID    int
	stats     Stats
	functions map[string]*function

	callsMu sync.Mutex // after mu when both are held
	calls   []Call

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

// authenticate refuses unsigned requests and, with Options.AccessKeyID, those
// signed with another key, as AWS does.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") {
			apiError(w, http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token")
			return
		}
		if s.o.AccessKeyID != "" && !strings.Contains(auth, "Credential="+s.o.AccessKeyID+"/") {
			apiError(w, http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid.")
			return
		}
		next.ServeHTTP(w, r)
	})
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
	name := r.PathValue("name")
	if !s.exists(name) {
		apiError(w, http.StatusNotFound, "ResourceNotFoundException", "Function not found: "+s.arn(name))
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
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		apiError(w, http.StatusBadRequest, "InvalidParameterValueException",
			"1 validation error detected: Value '"+typ+"' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]")
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
	inv := &invocation{id: requestID(), payload: body, done: make(chan result, 1)}
	if typ == "Event" {
		inv.async = true
		s.mu.Lock()
		s.events = append(s.events, inv)
		s.stats.Events++
		s.mu.Unlock()
		s.wakeEvents()
		w.Header().Set("X-Amzn-RequestId", inv.id)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if reason, ok := s.admit(); !ok {
		s.throttle(w, reason)
		return
	}
	s.mu.Lock()
	s.stats.Invocations++
	s.mu.Unlock()
	s.enqueue(inv)
	select {
	case res := <-inv.done:
		s.release()
		h := w.Header()
		h.Set("X-Amzn-RequestId", inv.id)
		h.Set("X-Amz-Executed-Version", "$LATEST")
		h.Set("Content-Type", "application/json")
		if res.errType != "" {
			h.Set("X-Amz-Function-Error", "Unhandled")
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
			s.release()
		}()
	case <-s.closing:
		s.release()
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

// admit takes one unit of concurrency for an invocation, adding an
// environment when needed, or says why it cannot.
func (s *Server) admit() (reason string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight >= s.o.Concurrency {
		return "ConcurrentInvocationLimitExceeded", false
	}
	if s.inflight >= len(s.envs) {
		now := time.Now()
		if s.o.Ramp > 0 && s.recentEnvsLocked(now) >= s.o.Ramp {
			return "FunctionInvocationRateLimitExceeded", false
		}
		s.envs = append(s.envs, now)
	}
	s.inflight++
	s.stats.MaxInFlight = max(s.stats.MaxInFlight, s.inflight)
	return "", true
}

func (s *Server) recentEnvsLocked(now time.Time) int {
	n := 0
	for i := len(s.envs) - 1; i >= 0 && now.Sub(s.envs[i]) < s.o.RampWindow; i-- {
		n++
	}
	return n
}

// release returns an invocation's unit of concurrency.
func (s *Server) release() {
	s.mu.Lock()
	s.inflight--
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
			s.mu.Unlock()
			reason, ok := s.admit()
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
			fn := s.functions[s.o.Function]
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
			inv = &invocation{id: inv.id, payload: inv.payload, async: true, done: make(chan result, 1)}
			continue // keeps its unit of concurrency
		}
		s.release()
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

func (s *Server) exists(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.functions[name] != nil
}

func (s *Server) arn(name string) string {
	return "arn:aws:lambda:" + s.o.Region + ":123456789012:function:" + name
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
