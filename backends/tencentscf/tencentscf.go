package tencentscf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"

	"github.com/gowren/gowren/backends"
)

// SCF's limits (https://www.tencentcloud.com/document/product/583/11637 and
// the InvokeFunction and Invoke API pages).
const (
	// SyncEventLimit is the largest event of a synchronous invocation, and
	// the largest response, in bytes.
	SyncEventLimit = 6 << 20
	// AsyncEventLimit is the largest event of an asynchronous invocation.
	AsyncEventLimit = 128 << 10
	// SyncRateLimit is InvokeFunction's default rate limit, per second.
	SyncRateLimit = 10000
	// AsyncRateLimit is Invoke's default rate limit, per second.
	AsyncRateLimit = 100
	// MaxTimeout is the longest timeout a function can have.
	MaxTimeout = 900 * time.Second
)

// Defaults of Options.
const (
	defaultNamespace   = "default"
	defaultConcurrency = 128
)

// Options configure a Backend. The zero value, like a nil *Options, means
// defaults everywhere.
type Options struct {
	// Namespace is the function's SCF namespace. Defaults to "default".
	Namespace string
	// Qualifier is the version or alias to invoke. Defaults to "", which
	// lets SCF pick ($DEFAULT, else $LATEST).
	Qualifier string
	// Concurrency is the most invocations the Backend has in flight at
	// once; further Invoke calls wait. SCF's concurrency quota is counted
	// in memory: 128,000 MB per region in the large regions (64,000 MB in
	// others) shared by all functions, so a function of M MB runs at most
	// quota/M instances; beyond that SCF answers status 432, which the
	// executor retries. Defaults to 128.
	Concurrency int
	// Timeout is the function's configured timeout: the longest an
	// invocation may run. The executor gives up on an invocation a little
	// after it. Defaults to 900s, SCF's maximum.
	Timeout time.Duration
	// Parallel is the number of tasks of one batch a worker runs at once.
	// Defaults to 1.
	Parallel int
	// SyncRate bounds InvokeFunction calls per second. Defaults to
	// 10,000, the API's limit.
	SyncRate float64
	// AsyncRate bounds Invoke calls (asynchronous invocations) per second.
	// Defaults to 100, the API's limit.
	AsyncRate float64
	// MemoryMB is the function's configured memory, which SCF bills by;
	// Limits reports it for the executor's cost estimate. It changes
	// nothing about the invocations. Defaults to 0, unknown: the estimate
	// then assumes fanout.PricesSCF's memory.
	MemoryMB int
}

// Backend invokes one SCF function through the Tencent Cloud API. It is
// safe for concurrent use.
type Backend struct {
	client    *common.Client
	transport *http.Transport // closed by Close when the Backend made the client
	function  string
	namespace string
	qualifier string
	limits    backends.Limits
	syncRate  *limiter
	asyncRate *limiter
	slots     chan struct{} // one token per synchronous invocation in flight

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
	closeCtx context.Context // cancelled by Close
	stop     context.CancelFunc
}

var _ backends.AsyncBackend = (*Backend)(nil)

// New returns a Backend that invokes function through client, a Tencent
// Cloud API client for the function's region (NewClient makes one). The
// client's request timeout must exceed the function's timeout; NewClient's
// does. A nil opts means defaults.
func New(client *common.Client, function string, opts *Options) *Backend {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Namespace == "" {
		o.Namespace = defaultNamespace
	}
	if o.Concurrency <= 0 {
		o.Concurrency = defaultConcurrency
	}
	if o.Timeout <= 0 {
		o.Timeout = MaxTimeout
	}
	if o.Parallel <= 0 {
		o.Parallel = 1
	}
	if o.SyncRate <= 0 {
		o.SyncRate = SyncRateLimit
	}
	if o.AsyncRate <= 0 {
		o.AsyncRate = AsyncRateLimit
	}
	closeCtx, stop := context.WithCancel(context.Background())
	return &Backend{
		client:    client,
		function:  function,
		namespace: o.Namespace,
		qualifier: o.Qualifier,
		limits: backends.Limits{
			MaxRequestBytes:      backends.MaxRawForJSON(SyncEventLimit),
			MaxResponseBytes:     backends.MaxRawForJSON(SyncEventLimit),
			MaxAsyncRequestBytes: backends.MaxRawForJSON(AsyncEventLimit),
			Concurrency:          o.Concurrency,
			Timeout:              o.Timeout,
			Parallel:             o.Parallel,
			MemoryMB:             max(o.MemoryMB, 0),
			Platform:             backends.PlatformSCF,
			Nested:               true,
		},
		syncRate:  newLimiter(o.SyncRate, burst(o.SyncRate)),
		asyncRate: newLimiter(o.AsyncRate, burst(o.AsyncRate)),
		slots:     make(chan struct{}, o.Concurrency),
		closeCtx:  closeCtx,
		stop:      stop,
	}
}

// burst allows a tenth of a second's worth of calls at once.
func burst(rate float64) int { return max(1, int(rate/10)) }

// Limits reports SCF's payload limits less the JSON wrapping, the
// configured concurrency, timeout, parallelism and memory, and
// backends.PlatformSCF as the platform, so that cost estimates use SCF's
// prices. Workers run on other machines. Nested is true: a worker whose
// function runs as an execution role invokes its function's children
// itself (see the package's Worker runtime section); in a function
// without a role, or a role whose policy lacks scf:InvokeFunction on the
// function, a task finds no backends.InvokerOf or its calls are refused.
func (b *Backend) Limits() backends.Limits { return b.limits }

func (b *Backend) site(op string) site {
	return site{op: op, function: b.function, region: b.client.GetRegion(), namespace: b.namespace, qualifier: b.qualifier}
}

// begin registers a call in flight and returns its context, which Close
// cancels, and the function that ends the call.
func (b *Backend) begin(ctx context.Context, s site) (context.Context, func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, nil, fmt.Errorf("%v: %w", s, backends.ErrClosed)
	}
	b.inflight.Add(1)
	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.closeCtx, cancel)
	return cctx, func() {
		stop()
		cancel()
		b.inflight.Done()
	}, nil
}

// ended returns the error for a call whose context ended: the caller's
// ctx error, or ErrClosed when Close ended it.
func (b *Backend) ended(s site, ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%v: %w", s, err)
	}
	return fmt.Errorf("%v: %w", s, backends.ErrClosed)
}

// Invoke runs the function synchronously (InvokeFunction) with payload
// wrapped in a JSON event and returns the function's unwrapped reply. It
// waits while Options.Concurrency invocations are in flight and to keep
// under Options.SyncRate. Cancelling ctx abandons the HTTP request; SCF
// lets the execution run to its end regardless.
//
// Success is decided from the documented fields of the Result, ErrMsg and
// RetMsg, never from its InvokeResult, which Tencent no longer maintains.
//
// Errors: backends.ErrPayloadTooLarge for a payload over the limit;
// a *backends.ThrottleError for the API's rate limit and for SCF's
// concurrency quota and scaling rate (status 432, 429);
// backends.ErrWorkerLost when the function timed out, ran out of memory,
// its process or container exited or did not start in time;
// backends.ErrTransport for network failures and the platform's internal
// errors; ErrFunctionNotFound, ErrCredentials, ErrUnauthorized,
// ErrFunctionNotActive, ErrBadDeployment and ErrServiceSuspended for
// configuration, deployment and account errors, which are not retried;
// backends.ErrClosed after Close; ctx's error when ctx ends first. Every
// execution status of SCF's table is classified (see docs/design.md); a
// failed execution carries a *FunctionError.
func (b *Backend) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	s := b.site("invoke")
	cctx, done, err := b.begin(ctx, s)
	if err != nil {
		return nil, err
	}
	defer done()
	if len(payload) > b.limits.MaxRequestBytes {
		return nil, fmt.Errorf("%v: %w: payload of %d bytes, limit %d (SCF's 6 MB event less the JSON wrapping)",
			s, backends.ErrPayloadTooLarge, len(payload), b.limits.MaxRequestBytes)
	}
	select {
	case b.slots <- struct{}{}:
	case <-cctx.Done():
		return nil, b.ended(s, ctx)
	}
	defer func() { <-b.slots }()
	if b.syncRate.wait(cctx) != nil {
		return nil, b.ended(s, ctx)
	}
	params := b.params()
	params["Event"] = string(backends.EncodeJSON(payload))
	// Tail: a failed execution's Result then carries the last 4 KB of its
	// output, what a crashed worker printed before it died.
	params["LogType"] = "Tail"
	var out struct{ Result *invokeResult }
	if err := call(cctx, b.client, "InvokeFunction", params, &out); err != nil {
		if cctx.Err() != nil {
			return nil, b.ended(s, ctx)
		}
		return nil, s.classifyAPI(err)
	}
	r := out.Result
	if r == nil {
		return nil, fmt.Errorf("%v: %w: the response has no Result", s, backends.ErrTransport)
	}
	if fe := r.failure(); fe != nil {
		return nil, s.classifyFunction(fe)
	}
	reply, err := unwrapReply(r.RetMsg)
	if err != nil {
		return nil, fmt.Errorf("%v: %w (request %s); is the deployed binary a gowren program that calls fanout.Init? (redeploy with gowren deploy scf)",
			s, err, r.FunctionRequestId)
	}
	return reply, nil
}

// unwrapReply decodes the function's return value: the JSON object the
// worker runtime returns, or that object encoded once more as a JSON string
// (as a platform that treats the return value as text might deliver it).
func unwrapReply(ret string) ([]byte, error) {
	b := []byte(strings.TrimSpace(ret))
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err == nil {
			b = []byte(s)
		}
	}
	if !bytes.HasPrefix(b, []byte("{")) {
		return nil, fmt.Errorf("the function returned %.60q, not a gowren reply", ret)
	}
	reply, err := backends.DecodeJSON(b)
	if err != nil {
		return nil, fmt.Errorf("the function returned something other than a gowren reply: %w", err)
	}
	return reply, nil
}

// InvokeAsync starts the function asynchronously (Invoke with
// InvocationType Event) with payload wrapped in a JSON event and returns
// once SCF has queued it. It waits to keep under Options.AsyncRate (SCF
// allows 100 Invoke calls a second). The worker writes its reply to the
// store named in the payload. Errors are those of Invoke; a payload over
// Limits().MaxAsyncRequestBytes (SCF's 128 KB less the wrapping) is
// backends.ErrPayloadTooLarge.
func (b *Backend) InvokeAsync(ctx context.Context, payload []byte) error {
	s := b.site("invoke async")
	cctx, done, err := b.begin(ctx, s)
	if err != nil {
		return err
	}
	defer done()
	if len(payload) > b.limits.MaxAsyncRequestBytes {
		return fmt.Errorf("%v: %w: payload of %d bytes, limit %d (SCF's 128 KB asynchronous event less the JSON wrapping)",
			s, backends.ErrPayloadTooLarge, len(payload), b.limits.MaxAsyncRequestBytes)
	}
	if b.asyncRate.wait(cctx) != nil {
		return b.ended(s, ctx)
	}
	params := b.params()
	params["InvocationType"] = "Event"
	params["ClientContext"] = string(backends.EncodeJSON(payload))
	var out struct{ Result *invokeResult }
	if err := call(cctx, b.client, "Invoke", params, &out); err != nil {
		if cctx.Err() != nil {
			return b.ended(s, ctx)
		}
		return s.classifyAPI(err)
	}
	// SCF documents the Result of an asynchronous invocation as empty but
	// for FunctionRequestId; a refusal it reports there anyway (an error
	// object with a status) is classified as for a synchronous one.
	// InvokeResult is never read (see invokeResult).
	if r := out.Result; r != nil {
		if fe := r.asyncFailure(); fe != nil {
			return s.classifyFunction(fe)
		}
	}
	return nil
}

func (b *Backend) params() map[string]any {
	p := map[string]any{"FunctionName": b.function, "Namespace": b.namespace}
	if b.qualifier != "" {
		p["Qualifier"] = b.qualifier
	}
	return p
}

// Close makes further calls fail with backends.ErrClosed, cancels the calls
// in flight (they return ErrClosed) and waits for them, and closes the idle
// connections of a client the Backend made itself. Calls after the first
// return nil.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.stop()
	b.mu.Unlock()
	b.inflight.Wait()
	if b.transport != nil {
		b.transport.CloseIdleConnections()
	}
	return nil
}

// URL parameters of scf:// URLs.
var urlParams = map[string]string{
	"region":      "the function's region, e.g. ap-guangzhou (default $" + EnvRegion + ")",
	"namespace":   "the SCF namespace (default \"default\")",
	"qualifier":   "the version or alias to invoke",
	"endpoint":    "the API endpoint: host[:port] or http(s)://host:port (default scf.tencentcloudapi.com)",
	"concurrency": "invocations in flight at once (default 128)",
	"timeout":     "the function's timeout, e.g. 60s (default 900s)",
	"parallel":    "tasks of a batch a worker runs at once (default 1)",
	"rate":        "InvokeFunction calls per second (default 10000)",
	"asyncrate":   "asynchronous Invoke calls per second (default 100)",
	"memory":      "the function's memory in MB, for cost estimates: 64, or a multiple of 128 up to 3072",
}

func init() {
	backends.Register("scf", open)
}

// open opens scf://FUNCTION?region=...&namespace=...&qualifier=...&endpoint=...
// with credentials from the environment (EnvCredential).
func open(_ context.Context, u *url.URL) (backends.Backend, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("tencentscf: open %q: %s", u.Redacted(), fmt.Sprintf(format, args...))
	}
	fn := u.Host
	if fn == "" {
		fn = u.Opaque
	}
	if err := validFunctionName(fn); err != nil {
		return nil, fail("%v (want scf://FUNCTION?region=REGION)", err)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fail("unexpected path %q (want scf://FUNCTION?region=REGION)", u.Path)
	}
	if u.User != nil {
		return nil, fail("credentials do not go in the URL: set %s and %s", EnvSecretID, EnvSecretKey)
	}
	q := u.Query()
	for k := range q {
		if _, ok := urlParams[k]; !ok {
			keys := make([]string, 0, len(urlParams))
			for k := range urlParams {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return nil, fail("unknown parameter %q (known: %s)", k, strings.Join(keys, ", "))
		}
	}
	region := q.Get("region")
	if region == "" {
		region = os.Getenv(EnvRegion)
	}
	if region == "" {
		return nil, fail("no region: add ?region=REGION (e.g. ap-guangzhou) or set %s", EnvRegion)
	}
	var o Options
	o.Namespace = q.Get("namespace")
	o.Qualifier = q.Get("qualifier")
	for _, p := range []struct {
		name string
		dst  *int
	}{{"concurrency", &o.Concurrency}, {"parallel", &o.Parallel}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, fail("%s=%q: want a positive integer", p.name, v)
			}
			*p.dst = n
		}
	}
	for _, p := range []struct {
		name string
		dst  *float64
	}{{"rate", &o.SyncRate}, {"asyncrate", &o.AsyncRate}} {
		if v := q.Get(p.name); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f <= 0 {
				return nil, fail("%s=%q: want a positive number", p.name, v)
			}
			*p.dst = f
		}
	}
	if v := q.Get("memory"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || validMemory(n) != nil {
			return nil, fail("memory=%q: want the function's memory in MB: 64, or a multiple of 128 from 128 to 3072", v)
		}
		o.MemoryMB = n
	}
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > MaxTimeout {
			return nil, fail("timeout=%q: want a duration up to 900s, e.g. 60s", v)
		}
		o.Timeout = d
	}
	cred, err := EnvCredential()
	if err != nil {
		return nil, fail("%v", err)
	}
	client, tr, err := newClient(cred, region, q.Get("endpoint"))
	if err != nil {
		return nil, fail("%v", err)
	}
	b := New(client, fn, &o)
	b.transport = tr
	return b, nil
}

// validMemory checks SCF's rule for a function's memory: 64 MB, or a
// multiple of 128 MB from 128 to 3072.
func validMemory(mb int) error {
	if mb != 64 && (mb < 128 || mb > 3072 || mb%128 != 0) {
		return fmt.Errorf("memory %d MB: SCF takes 64, or a multiple of 128 from 128 to 3072", mb)
	}
	return nil
}

// validFunctionName checks SCF's rules for function names: 2 to 60
// letters, digits, '-' and '_', starting with a letter and not ending with
// '-' or '_'.
func validFunctionName(s string) error {
	if s == "" {
		return errors.New("no function name")
	}
	ok := len(s) >= 2 && len(s) <= 60
	for i, c := range s {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		switch {
		case i == 0 && !letter:
			ok = false
		case !letter && !(c >= '0' && c <= '9') && c != '-' && c != '_':
			ok = false
		}
	}
	if last := s[len(s)-1]; last == '-' || last == '_' {
		ok = false
	}
	if !ok {
		return fmt.Errorf("function name %q is not valid for SCF (2-60 letters, digits, - and _, starting with a letter)", s)
	}
	return nil
}
