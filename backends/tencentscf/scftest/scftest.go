// Package scftest is a loopback stand-in for Tencent Cloud's SCF, for tests
// of the tencentscf backend and of programs that use it. It speaks the real
// wire protocols on both sides:
//
//   - to clients, the Tencent Cloud API 3.0 over HTTP, as the official Go
//     SDK (tencentcloud-sdk-go common) sends it: POST with a JSON body, the
//     X-TC-Action, X-TC-Version, X-TC-Region and X-TC-Timestamp headers and
//     a TC3-HMAC-SHA256 signature, which the server verifies; replies are
//     {"Response": {...}} objects with the API's error codes;
//   - to functions, SCF's Go1 runtime protocol: the function's binary is
//     started with _LAMBDA_SERVER_PORT set and invoked through net/rpc
//     Function.Invoke with scf-go-lib's own message types, one invocation
//     per process at a time, as SCF runs one event per instance.
//
// It implements the actions gowren uses: InvokeFunction (synchronous),
// Invoke (RequestResponse and Event), GetFunction, GetFunctionAddress (the
// code's hash only), CreateFunction, UpdateFunctionCode and
// UpdateFunctionConfiguration. Created functions run
// the executable named by Handler from the uploaded zip.
//
// # Limits
//
// The server enforces SCF's limits, scaled by Options where a test needs
// to: the 6 MB synchronous and 128 KB asynchronous event sizes and the 6 MB
// response size (status 406 and 407), the per-region concurrency quota in
// MB (status 432 for synchronous invocations; asynchronous ones queue), the
// function's timeout (status 433, the instance is killed), a process that
// exits during an invocation (status 439), and per-second rate limits on
// InvokeFunction (10,000) and Invoke (100), refused with the API's
// RequestLimitExceeded error.
//
// # Results
//
// An execution's outcome is the Result object of the API reference: RetMsg
// the function's return value; ErrMsg, for a failure, SCF's JSON error
// object {"errorCode":-1,"errorMessage":...,"requestId":...,
// "stackTrace":...,"statusCode":N} with a status code of SCF's table of
// function status codes; Log the last 4 KB of what the instance printed
// during the execution, when the call asked for it (LogType Tail);
// MemUsage the instance's peak resident memory in bytes (on Linux; 0
// elsewhere); Duration and BillDuration; and InvokeResult, which Tencent
// no longer maintains (0 on success, -1 on failure, or Options.InvokeResult).
// An error the function's handler returns, or a panic it recovers, is
// status 430 with errorMessage "user code exception caught" and the error
// (and the panic's stack) in stackTrace, where SCF puts it.
//
// Statuses the server produces itself: 405 (the process exited before it
// served), 406, 407, 430, 432, 433, 437 (the handler's executable is
// missing or not executable), 439, 442 (Invoke naming a version or alias
// that does not exist; InvokeFunction answers ResourceNotFound.Qualifier),
// 446 (the process did not listen in time) and 500 (the server is closing).
// Options.Fail imposes any other.
//
// # Execution roles
//
// A function that runs as a role (Function.Role, or Role in CreateFunction
// and UpdateFunctionConfiguration) gets, in its worker processes'
// environment, the keys of the Credential whose Role it is, in
// TENCENTCLOUD_SECRETID, TENCENTCLOUD_SECRETKEY and
// TENCENTCLOUD_SESSIONTOKEN, as SCF gives a function its role's temporary
// keys; calls signed with them must carry the token, as every call must
// carry its credential's token (X-TC-Token).
//
// # Fault injection
//
// Options.Intercept sees every authenticated API call and may answer it
// with an error of its choosing; Options.Fail ends executions with a
// status of its choosing; Credential.Deny refuses actions as a CAM policy
// does; KillInstances kills the running worker processes of a function.
// They are for fault tests.
package scftest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
)

// The credentials a Server accepts by default.
const (
	TestSecretID  = "AKIDgowrenTestSecretId0000000000000"
	TestSecretKey = "gowrenTestSecretKey000000000000000"
)

// DefaultRegions are the regions a Server serves by default.
var DefaultRegions = []string{"ap-guangzhou", "ap-shanghai", "ap-beijing", "ap-chengdu", "ap-hongkong", "ap-singapore", "ap-tokyo", "na-siliconvalley", "eu-frankfurt"}

// Credential is a key, and for temporary credentials a token, the server
// accepts for a SecretId.
type Credential struct {
	Key   string
	Token string
	// Deny lists the actions the credentials' CAM policy does not allow:
	// calls of them are refused with UnauthorizedOperation.CAM after the
	// signature verified, as the API refuses valid credentials without
	// the permission. A CAM action is written "cam:CreatePolicy" and
	// refused with UnauthorizedOperation.
	Deny []string
	// Role, when set, makes these the temporary keys of that execution
	// role: the worker processes of a function that runs as Role get the
	// SecretId, Key and Token in TENCENTCLOUD_SECRETID,
	// TENCENTCLOUD_SECRETKEY and TENCENTCLOUD_SESSIONTOKEN, as SCF hands a
	// function its role's keys. Defaults to none.
	Role string
}

// Options configure a Server. The zero value, like a nil *Options, means
// defaults everywhere.
type Options struct {
	// Credentials maps the SecretIds the server accepts to their keys.
	// Defaults to {TestSecretID: {Key: TestSecretKey}}.
	Credentials map[string]Credential
	// OwnerUin is the account's UIN, as CAM's GetUserAppId answers it
	// (cam.go). Defaults to DefaultOwnerUin.
	OwnerUin string
	// Regions are the regions served; others get UnsupportedRegion.
	// Defaults to DefaultRegions.
	Regions []string
	// ConcurrencyQuotaMB is each region's concurrency quota: the memory of
	// all instances running at once. Defaults to 128,000 (SCF's default in
	// its large regions).
	ConcurrencyQuotaMB int
	// SyncRate and AsyncRate are the per-second limits on InvokeFunction
	// and on Invoke calls, per region. Default to 10,000 and 100.
	SyncRate, AsyncRate float64
	// RateBurst is how many calls above the rate a limiter lets through
	// at once. Defaults to a tenth of a second's worth.
	RateBurst int
	// MaxSyncEventBytes, MaxAsyncEventBytes and MaxResponseBytes default to
	// SCF's 6 MB, 128 KB and 6 MB.
	MaxSyncEventBytes, MaxAsyncEventBytes, MaxResponseBytes int
	// ActivationPolls is how many GetFunction calls report Creating or
	// Updating after a change before the function turns Active. Defaults
	// to 1; negative means it is Active at once.
	ActivationPolls int
	// Env holds extra "KEY=value" entries for worker processes, whose
	// environment is otherwise what SCF's Go runtime sets plus the
	// function's variables. Defaults to none.
	Env []string
	// Stderr receives the workers' stdout and stderr, each line prefixed
	// with "[scf FUNCTION#N] ". Defaults to os.Stderr.
	Stderr io.Writer
	// StartTimeout bounds how long a worker may take to listen on its
	// port. Defaults to 10s.
	StartTimeout time.Duration
	// TimeoutGrace is how long past an invocation's deadline the server
	// waits for its reply before it reports status 433 and kills the
	// instance. Defaults to 500ms.
	TimeoutGrace time.Duration
	// Now is the server's clock, against which request timestamps are
	// checked. Defaults to time.Now.
	Now func() time.Time
	// Intercept, when set, sees every authenticated call before the server
	// handles it; a non-nil result is sent as the call's error response.
	// It may be called concurrently.
	Intercept func(c Call) *APIError
	// OnAsync, when set, is called with the outcome of every asynchronous
	// invocation, from the goroutine that ran it.
	OnAsync func(r AsyncResult)
	// Fail, when set, sees every execution before it runs; a non-nil
	// result ends it with that status without running the function, as
	// SCF reports a status of its table (see Failure). For an
	// asynchronous invocation the failure is the Invoke call's Result, as
	// for an event SCF refuses. It may be called concurrently.
	Fail func(e Execution) *Failure
	// InvokeResult, when set, gives the Result's InvokeResult member for
	// an execution that ended with status (200 for success). Defaults to
	// 0 for success and -1 for failures. Tencent marks the member as no
	// longer maintained; tests set it to check that clients ignore it.
	InvokeResult func(status int) int64
}

// Execution is an execution about to run, as Options.Fail sees it.
type Execution struct {
	Region, Namespace, Function string
	// Qualifier is the version or alias the call named, "" for none.
	Qualifier string
	RequestID string
	// Async is true for an asynchronous invocation (Invoke, Event).
	Async bool
}

// Failure is a status Options.Fail imposes on an execution. The Result's
// ErrMsg is SCF's error object {"errorCode":-1,"errorMessage":Message,
// "requestId":...,"stackTrace":StackTrace,"statusCode":StatusCode}, and
// its Log is Log when the caller asked for the log (LogType Tail).
type Failure struct {
	// StatusCode is a failure status of SCF's table of function status
	// codes, such as 437 (HandlerNotFound) or 432.
	StatusCode int
	// Message is the errorMessage. Defaults to the status message of the
	// table for StatusCode, e.g. "HandlerNotFound".
	Message string
	// StackTrace is the stackTrace member; none when empty. SCF puts a
	// function's own error there (status 430), with errorMessage "user
	// code exception caught".
	StackTrace string
	// Log is the execution's log.
	Log string
}

// Function is a function added with AddFunction.
type Function struct {
	// Region defaults to the first of Options.Regions.
	Region string
	// Namespace defaults to "default"; it is created if missing.
	Namespace string
	// Name is the function's name.
	Name string
	// Command is the worker program and its arguments, started as SCF's
	// Go runtime starts a function's binary.
	Command []string
	// MemoryMB defaults to 128.
	MemoryMB int
	// Timeout defaults to 3s, SCF's default.
	Timeout time.Duration
	// Env holds the function's environment variables.
	Env map[string]string
	// Role is the execution role the function runs as; its workers get
	// the keys of the Credential with that Role. Defaults to none.
	Role string
}

// Call is one API call as the server saw it.
type Call struct {
	Action    string
	Region    string
	SecretID  string
	Params    map[string]any // ZipFile values are replaced by "<N bytes>"
	ErrorCode string         // "" for a successful call
}

// APIError is an error response of the API.
type APIError struct {
	Code    string
	Message string
}

// Error returns "Code: Message".
func (e *APIError) Error() string { return e.Code + ": " + e.Message }

// AsyncResult is the outcome of an asynchronous invocation.
type AsyncResult struct {
	Function   string
	RequestID  string
	StatusCode int    // 200 on success
	RetMsg     string // the function's return value
	ErrMsg     string
	Log        string // the execution's output, its last 4 KB
}

// Stats counts what the server did.
type Stats struct {
	// Calls counts API calls by action, errors included.
	Calls map[string]int
	// Errors counts error responses by code.
	Errors map[string]int
	// Invocations counts executions by status code (200 for success).
	Invocations map[int]int
	// ColdStarts counts worker processes started.
	ColdStarts int
	// PeakInstances is the most instances busy at once in any region.
	PeakInstances int
}

// Server is a loopback SCF. Its methods are safe for concurrent use.
type Server struct {
	opts    Options
	hs      *httptest.Server
	workDir string
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc

	mu         sync.Mutex
	cond       *sync.Cond // signalled when quota frees up or the server closes
	funcs      map[fkey]*function
	namespaces map[string]map[string]bool // region -> namespaces
	busyMB     map[string]int
	busy       map[string]int // region -> busy instances
	limiters   map[string]*bucket
	calls      []Call
	stats      Stats
	// CAM (cam.go): policies by name, and the names attached to each role.
	camPolicies map[string]string
	camAttached map[string][]string
	closed      bool
	workers     int // workers started so far, names the next one
	wg          sync.WaitGroup
}

type fkey struct{ region, namespace, name string }

// NewServer starts a Server on a loopback port. Close stops it.
func NewServer(opts *Options) (*Server, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Credentials == nil {
		o.Credentials = map[string]Credential{TestSecretID: {Key: TestSecretKey}}
	}
	if len(o.Regions) == 0 {
		o.Regions = DefaultRegions
	}
	if o.ConcurrencyQuotaMB <= 0 {
		o.ConcurrencyQuotaMB = 128000
	}
	if o.SyncRate <= 0 {
		o.SyncRate = 10000
	}
	if o.AsyncRate <= 0 {
		o.AsyncRate = 100
	}
	if o.MaxSyncEventBytes <= 0 {
		o.MaxSyncEventBytes = 6 << 20
	}
	if o.MaxAsyncEventBytes <= 0 {
		o.MaxAsyncEventBytes = 128 << 10
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = 6 << 20
	}
	if o.ActivationPolls == 0 {
		o.ActivationPolls = 1
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 10 * time.Second
	}
	if o.TimeoutGrace <= 0 {
		o.TimeoutGrace = 500 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	dir, err := os.MkdirTemp("", "scftest-")
	if err != nil {
		return nil, fmt.Errorf("scftest: %w", err)
	}
	s := &Server{
		opts:       o,
		workDir:    dir,
		funcs:      map[fkey]*function{},
		namespaces: map[string]map[string]bool{},
		busyMB:     map[string]int{},
		busy:       map[string]int{},
		limiters:   map[string]*bucket{},
		stats:      Stats{Calls: map[string]int{}, Errors: map[string]int{}, Invocations: map[int]int{}},
	}
	s.cond = sync.NewCond(&s.mu)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, r := range o.Regions {
		s.namespaces[r] = map[string]bool{"default": true}
	}
	s.hs = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s, nil
}

// URL returns the server's base URL, "http://127.0.0.1:PORT", which is
// also the endpoint to give tencentscf.NewClient or an scf:// URL.
func (s *Server) URL() string { return s.hs.URL }

// Client returns an SDK client for region that signs with TestSecretID and
// sends to the server.
func (s *Server) Client(region string) *common.Client {
	return s.ClientWith(common.NewCredential(TestSecretID, TestSecretKey), region)
}

// ClientWith returns an SDK client for region with the given credentials
// that sends to the server.
func (s *Server) ClientWith(cred common.CredentialIface, region string) *common.Client {
	prof := profile.NewClientProfile()
	prof.HttpProfile.Scheme = "HTTP"
	prof.HttpProfile.Endpoint = strings.TrimPrefix(s.hs.URL, "http://")
	prof.HttpProfile.ReqTimeout = 300
	prof.Language = "en-US"
	return common.NewCommonClient(cred, region, prof)
}

// AddFunction creates an Active function that runs f.Command.
func (s *Server) AddFunction(f Function) error {
	if f.Region == "" {
		f.Region = s.opts.Regions[0]
	}
	if f.Namespace == "" {
		f.Namespace = "default"
	}
	if f.MemoryMB <= 0 {
		f.MemoryMB = 128
	}
	if f.Timeout <= 0 {
		f.Timeout = 3 * time.Second
	}
	if f.Name == "" || len(f.Command) == 0 {
		return errors.New("scftest: AddFunction needs a Name and a Command")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.namespaces[f.Region] == nil {
		return fmt.Errorf("scftest: AddFunction %q: region %q is not served", f.Name, f.Region)
	}
	k := fkey{f.Region, f.Namespace, f.Name}
	if s.funcs[k] != nil {
		return fmt.Errorf("scftest: AddFunction %q: exists", f.Name)
	}
	s.namespaces[f.Region][f.Namespace] = true
	s.funcs[k] = &function{
		key: k, status: statusActive, command: slices.Clone(f.Command), runtime: "Go1", handler: f.Command[0],
		memoryMB: f.MemoryMB, timeout: f.Timeout, env: maps.Clone(f.Env), role: f.Role, version: 1, instances: map[*instance]bool{},
		modTime: time.Now(),
	}
	return nil
}

// AddNamespace creates a namespace in region.
func (s *Server) AddNamespace(region, namespace string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.namespaces[region] != nil {
		s.namespaces[region][namespace] = true
	}
}

// FunctionInfo describes a function as the server holds it.
type FunctionInfo struct {
	Status      string
	Runtime     string
	Handler     string
	MemoryMB    int
	Timeout     time.Duration
	Env         map[string]string
	Role        string
	Description string
	Zip         []byte // the code last uploaded, nil for AddFunction's
	Version     int    // counts code and configuration updates
}

// Function returns what the server holds about a function.
func (s *Server) Function(region, namespace, name string) (FunctionInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.funcs[fkey{region, namespace, name}]
	if f == nil {
		return FunctionInfo{}, false
	}
	return FunctionInfo{Status: f.status, Runtime: f.runtime, Handler: f.handler, MemoryMB: f.memoryMB, Timeout: f.timeout,
		Env: maps.Clone(f.env), Role: f.role, Description: f.description, Zip: slices.Clone(f.zip), Version: f.version}, true
}

// Calls returns the API calls made so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Stats returns counts of what the server did so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Calls = maps.Clone(st.Calls)
	st.Errors = maps.Clone(st.Errors)
	st.Invocations = maps.Clone(st.Invocations)
	return st
}

// Close stops the server: it kills every worker process, waits for the
// asynchronous invocations and the request handlers to end, and removes
// the extracted code. Calls after the first return nil.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	s.cond.Broadcast()
	var all []*instance
	for _, f := range s.funcs {
		for in := range f.instances {
			all = append(all, in)
		}
		f.idle = nil
	}
	s.mu.Unlock()
	for _, in := range all {
		in.kill()
	}
	s.hs.Close()
	s.wg.Wait()
	return os.RemoveAll(s.workDir)
}

// maxBody bounds a request body: room for a 50 MB zip in base64.
const maxBody = 80 << 20

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := newID()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return // the client went away
	}
	call := Call{Action: r.Header.Get("X-TC-Action"), Region: r.Header.Get("X-TC-Region")}
	resp, apiErr := s.handle(r, body, &call)
	if apiErr != nil {
		call.ErrorCode = apiErr.Code
	}
	s.mu.Lock()
	s.calls = append(s.calls, call)
	if call.Action != "" {
		s.stats.Calls[call.Action]++
	}
	if apiErr != nil {
		s.stats.Errors[apiErr.Code]++
	}
	s.mu.Unlock()
	var out map[string]any
	if apiErr != nil {
		out = map[string]any{"Error": map[string]any{"Code": apiErr.Code, "Message": apiErr.Message}}
	} else {
		out = resp
		if out == nil {
			out = map[string]any{}
		}
	}
	out["RequestId"] = reqID
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-TC-RequestId", reqID)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(map[string]any{"Response": out})
}

// handle checks a request's headers and signature and runs its action.
func (s *Server) handle(r *http.Request, body []byte, call *Call) (map[string]any, *APIError) {
	if len(body) > maxBody {
		return nil, &APIError{"RequestSizeLimitExceeded", "The request body is too large."}
	}
	if r.Method != http.MethodPost {
		return nil, &APIError{"UnsupportedProtocol", "This server accepts POST requests only."}
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return nil, &APIError{"InvalidParameter", "Content-Type must be application/json, not " + ct + "."}
	}
	for _, h := range []string{"X-TC-Action", "X-TC-Version", "X-TC-Timestamp"} {
		if r.Header.Get(h) == "" {
			return nil, &APIError{"MissingParameter", "The request is missing the header " + h + "."}
		}
	}
	var service string
	if _, after, ok := strings.Cut(r.Header.Get("Authorization"), "Credential="); ok {
		parts := strings.SplitN(after, "/", 4)
		call.SecretID = parts[0]
		if len(parts) > 2 {
			service = parts[2]
		}
	}
	if v := r.Header.Get("X-TC-Version"); service == camService && v != camVersion {
		return nil, &APIError{"NoSuchVersion", "CAM has no API version " + v + "; use " + camVersion + "."}
	} else if service != camService && v != "2018-04-16" {
		return nil, &APIError{"NoSuchVersion", "SCF has no API version " + v + "; use 2018-04-16."}
	}
	if e := s.verifyTC3(r, body, s.opts.Now()); e != nil {
		return nil, e
	}
	if service == camService {
		if slices.Contains(s.opts.Credentials[call.SecretID].Deny, "cam:"+call.Action) {
			return nil, &APIError{"UnauthorizedOperation", fmt.Sprintf("The CAM policy of %s does not allow cam:%s.", call.SecretID, call.Action)}
		}
		params := map[string]any{}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&params); err != nil {
			return nil, &APIError{"InvalidParameter", "The request body is not a JSON object: " + err.Error()}
		}
		call.Params = params
		return s.camCall(call.Action, params)
	}
	if slices.Contains(s.opts.Credentials[call.SecretID].Deny, call.Action) {
		return nil, &APIError{"UnauthorizedOperation.CAM", fmt.Sprintf("The CAM policy of %s does not allow scf:%s.", call.SecretID, call.Action)}
	}
	if call.Region == "" {
		return nil, &APIError{"MissingParameter", "The request is missing the header X-TC-Region."}
	}
	s.mu.Lock()
	served := s.namespaces[call.Region] != nil
	s.mu.Unlock()
	if !served {
		return nil, &APIError{"UnsupportedRegion", "SCF is not available in region " + call.Region + "."}
	}
	params := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&params); err != nil {
		return nil, &APIError{"InvalidParameter", "The request body is not a JSON object: " + err.Error()}
	}
	call.Params = redact(params)
	if s.opts.Intercept != nil {
		if e := s.opts.Intercept(*call); e != nil {
			return nil, e
		}
	}
	act := actions[call.Action]
	if act == nil {
		return nil, &APIError{"InvalidAction", "SCF has no action " + call.Action + " (or this server does not implement it)."}
	}
	return act(s, call.Region, params)
}

// redact copies params with zip contents replaced by their size.
func redact(p map[string]any) map[string]any {
	out := make(map[string]any, len(p))
	for k, v := range p {
		switch {
		case k == "ZipFile":
			if s, ok := v.(string); ok {
				v = fmt.Sprintf("<%d bytes>", len(s))
			}
		case k == "Code":
			if m, ok := v.(map[string]any); ok {
				v = redact(m)
			}
		}
		out[k] = v
	}
	return out
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// bucket is a token bucket for one region's calls of one action.
type bucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// allow takes a token if there is one. The caller holds s.mu.
func (b *bucket) allow(now time.Time) bool {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// limit applies the rate limit of action in region.
func (s *Server) limit(region, action string, rate float64) *APIError {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := region + "/" + action
	b := s.limiters[k]
	if b == nil {
		burst := float64(s.opts.RateBurst)
		if burst <= 0 {
			burst = max(1, rate/10)
		}
		b = &bucket{rate: rate, burst: burst, tokens: burst, last: time.Now()}
		s.limiters[k] = b
	}
	if !b.allow(time.Now()) {
		return &APIError{"RequestLimitExceeded", fmt.Sprintf("Your current request times exceed the frequency limit `%g` per second of %s; please reduce the frequency of calls.", rate, action)}
	}
	return nil
}

// sortedKeys is for stable messages.
func sortedKeys(m map[string]string) []string {
	keys := slices.Collect(maps.Keys(m))
	sort.Strings(keys)
	return keys
}
