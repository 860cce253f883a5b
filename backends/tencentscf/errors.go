package tencentscf

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"

	"github.com/gowren/gowren/backends"
)

// Errors a Backend's Invoke wraps besides the backends sentinels; test for
// them with errors.Is. None is retryable: each needs a change only the user
// can make, which the error's text names.
var (
	// ErrFunctionNotFound means SCF has no such function, namespace or
	// version in the client's region (API error ResourceNotFound.*,
	// status 435 FunctionNotFound or 442 QualifierNotFound): the name,
	// region, namespace or qualifier is wrong, or the function was never
	// deployed (deploy it with "gowren deploy scf").
	ErrFunctionNotFound = errors.New("tencentscf: function not found")
	// ErrCredentials means the Tencent Cloud API refused the request's
	// credentials or signature (AuthFailure.*).
	ErrCredentials = errors.New("tencentscf: credentials refused")
	// ErrUnauthorized means the credentials are valid but their CAM
	// policy does not allow the action (UnauthorizedOperation.*, status
	// 401 InvalidCredentials or 441 UnauthorizedOperation).
	ErrUnauthorized = errors.New("tencentscf: not authorized")
	// ErrFunctionNotActive means the function exists but cannot run now:
	// it is being created or updated, or its last change failed (API
	// error FailedOperation.FunctionStatusError, status 438
	// FunctionStatusError). Wait for the deployment to end ("gowren deploy
	// scf" waits for it) or deploy again, then run the job again.
	ErrFunctionNotActive = errors.New("tencentscf: function not active")
	// ErrBadDeployment means the deployed function cannot start: its code
	// package has no executable named by its handler (status 437
	// HandlerNotFound), or its image or container does not start (444,
	// 445). Redeploy it with "gowren deploy scf".
	ErrBadDeployment = errors.New("tencentscf: deployed function cannot start")
	// ErrServiceSuspended means SCF is suspended for the account: overdue
	// payment or an exhausted balance (status 402 ServiceSuspended, 410
	// InsufficientBalance, API error *.InsufficientBalance). Top the
	// account up or resume the service in the console.
	ErrServiceSuspended = errors.New("tencentscf: service suspended for the account")
)

// FunctionError is a failed execution as SCF reports it in an invocation's
// Result: the function returned an error, panicked, timed out, ran out of
// memory or its process exited, or the platform refused to run it. Invoke
// wraps it together with the sentinel that classifies it.
type FunctionError struct {
	// StatusCode is SCF's status code from the table of function status
	// codes (https://www.tencentcloud.com/document/product/583/35311):
	// 430 the function returned an error or panicked, 433 timeout, 434
	// out of memory, 439 the process exited, 432 concurrency quota, and
	// so on; 0 when the platform gave none.
	StatusCode int
	// Message is the error: for a function's own error (status 430 and
	// 443), the first line of the error SCF reports in stackTrace, as
	// SCF's errorMessage then only says "user code exception caught";
	// otherwise SCF's errorMessage.
	Message string
	// Stack is SCF's stackTrace: for a function's own error the error's
	// text and, for a panic, its stack (at most 32 KiB).
	Stack string
	// Log is the tail of the execution's output (at most 4 KB), which SCF
	// returns in the Result's Log: for a process that exited, what it
	// printed before it died.
	Log string
	// MemUsage is the memory the execution used, in bytes, as SCF reports
	// it; 0 when it reports none.
	MemUsage int64
	// RequestID is the invocation's FunctionRequestId, for the SCF logs.
	RequestID string
}

// Error describes the failure with its status code, message, request ID
// and the last line of its log.
func (e *FunctionError) Error() string {
	s := "function failed"
	if e.StatusCode != 0 {
		s += " with status " + strconv.Itoa(e.StatusCode)
		if st, ok := statuses[e.StatusCode]; ok {
			s += " " + st.name
		}
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RequestID != "" {
		s += " (request " + e.RequestID + ")"
	}
	if last := lastLine(e.Log); last != "" && !strings.Contains(e.Message, last) {
		s += "; last output: " + last
	}
	return s
}

// Bounds of the platform text quoted in errors.
const (
	maxMessage = 512
	maxLine    = 256
	maxStack   = 32 << 10
	maxLog     = 4 << 10
)

func clip(s string) string { return clipTo(strings.TrimSpace(s), maxMessage) }

func clipTo(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// lastLine is the last non-empty line of s, clipped.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[i+1:])
	}
	return clipTo(s, maxLine)
}

// firstLine is the first non-empty line of s, clipped.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return clipTo(s, maxMessage)
}

// invokeResult is the Result object of InvokeFunction and Invoke, as the
// API reference documents it (the Result data type, linked from
// https://www.tencentcloud.com/document/api/583/41408).
// Its InvokeResult member is left out on purpose: Tencent marks it "no
// longer maintained, do not use", so success is decided from ErrMsg and
// RetMsg alone.
type invokeResult struct {
	Log               string
	RetMsg            string
	ErrMsg            string
	MemUsage          int64
	Duration          float64
	BillDuration      int64
	FunctionRequestId string
}

// platformError is the JSON object SCF puts in ErrMsg for a failed
// execution, e.g. {"errorCode":-1,"errorMessage":"user code exception
// caught","requestId":"...","stackTrace":"...","statusCode":430}, as
// the runtime guides show it (https://www.tencentcloud.com/document/product/583/40324).
type platformError struct {
	ErrorMessage string `json:"errorMessage"`
	StackTrace   any    `json:"stackTrace"`
	StatusCode   int    `json:"statusCode"`
}

// genericMessage is SCF's errorMessage for every error of the function
// itself; the error is in stackTrace.
const genericMessage = "user code exception caught"

// failure reads a Result and returns nil when the execution succeeded, or
// the failure. A Result is a failure when ErrMsg holds SCF's error object
// with a status code outside 2xx, or other text while RetMsg is not a
// gowren reply: text the platform put in ErrMsg beside a reply the function
// returned does not undo the reply, so that a succeeded task is never run
// twice.
func (r *invokeResult) failure() *FunctionError {
	errMsg := strings.TrimSpace(r.ErrMsg)
	if errMsg == "" {
		return nil
	}
	fe := &FunctionError{RequestID: r.FunctionRequestId, Message: clip(errMsg),
		Log: clipTail(r.Log, maxLog), MemUsage: r.MemUsage}
	var pe platformError
	if jerr := json.Unmarshal([]byte(errMsg), &pe); jerr != nil || pe.StatusCode == 0 {
		if _, rerr := unwrapReply(r.RetMsg); rerr == nil {
			return nil
		}
		if jerr == nil && pe.ErrorMessage != "" { // an object without a status code
			fe.Message = clip(pe.ErrorMessage)
			fe.Stack = stackText(pe.StackTrace)
		}
		return fe
	}
	if pe.StatusCode >= 200 && pe.StatusCode < 300 {
		return nil
	}
	fe.StatusCode = pe.StatusCode
	fe.Stack = stackText(pe.StackTrace)
	fe.Message = clip(pe.ErrorMessage)
	if (fe.Message == "" || strings.EqualFold(fe.Message, genericMessage)) && fe.Stack != "" {
		fe.Message = firstLine(fe.Stack)
	}
	if fe.Message == "" {
		if st, ok := statuses[fe.StatusCode]; ok {
			fe.Message = st.name
		}
	}
	return fe
}

// asyncFailure reads the Result of an asynchronous Invoke, which the API
// documents as empty but for FunctionRequestId: only SCF's error object
// with a failure status is a refusal. Anything else means the event was
// accepted, so that an accepted event is never sent, and run, twice.
func (r *invokeResult) asyncFailure() *FunctionError {
	if fe := r.failure(); fe != nil && fe.StatusCode != 0 {
		return fe
	}
	return nil
}

// stackText renders a stackTrace member: a string as it is, a list one
// element a line.
func stackText(v any) string {
	var s string
	switch v := v.(type) {
	case nil:
	case string:
		s = v
	case []any:
		var b strings.Builder
		for _, e := range v {
			if str, ok := e.(string); ok {
				b.WriteString(str)
			} else {
				j, _ := json.Marshal(e)
				b.Write(j)
			}
			b.WriteByte('\n')
		}
		s = b.String()
	default:
		j, _ := json.Marshal(v)
		s = string(j)
	}
	return clipTo(strings.TrimSpace(s), maxStack)
}

// clipTail keeps the last n bytes of s.
func clipTail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// site names the function an error is about.
type site struct {
	op, function, region, namespace, qualifier string
}

func (s site) String() string {
	q := ""
	if s.qualifier != "" {
		q = ", qualifier " + s.qualifier
	}
	return fmt.Sprintf("tencentscf: %s %q (region %s, namespace %s%s)", s.op, s.function, s.region, s.namespace, q)
}

// class is what the executor does with an execution status.
type class int

const (
	// failFast: a configuration, deployment or account problem, or the
	// function's own error; retrying cannot help, so the task fails at
	// once with what to do.
	failFast class = iota
	// retried: the instance or the platform failed; the execution may
	// have run part of the batch. Retried up to the executor's Retries.
	retried
	// throttled: refused for now, nothing ran; retried after a backoff
	// without costing an attempt.
	throttled
	// tooLarge: an event or response over SCF's limits; the executor
	// sends the data through the store instead.
	tooLarge
)

// status is one row of SCF's table of function status codes.
type status struct {
	name  string // a one-word name, after the status message of the table
	class class
	kind  error             // the sentinel wrapped: nil for none
	hint  func(site) string // what to do
}

func say(s string) func(site) string { return func(site) string { return s } }

const redeployHint = "is the deployed binary a gowren program that calls fanout.Init, built for linux/amd64? (redeploy with gowren deploy scf)"

// statuses classifies every status code of SCF's table of function status
// codes (https://www.tencentcloud.com/document/product/583/35311, and
// the Chinese edition https://cloud.tencent.com/document/product/583/42611,
// which also lists 403). Codes not in the table are classified by
// classifyFunction: 5xx as transport failures, others as lost workers.
var statuses = map[int]status{
	400: {"InvalidParameterValue", failFast, nil, say("SCF refused the event as not JSON; gowren always sends JSON, so report this as a gowren bug")},
	401: {"InvalidCredentials", failFast, ErrUnauthorized, say("the account may not invoke this function: grant scf:InvokeFunction and scf:Invoke on it (see the README for the CAM policy gowren needs)")},
	402: {"ServiceSuspended", failFast, ErrServiceSuspended, say("SCF is suspended for this account: settle the overdue payment and resume the service in the SCF console")},
	403: {"ResourceUnavailable", failFast, nil, say("SCF refused to run the function (resource unavailable): check in the SCF console that the function and the service are available to this account")},
	404: {"InvalidSubnetID", failFast, nil, say("the function's VPC subnet is invalid: fix the function's network configuration in the SCF console")},
	405: {"ContainerStateExited", retried, backends.ErrWorkerLost, say("the function's container exited; if every invocation fails so, " + redeployHint)},
	406: {"RequestTooLarge", tooLarge, backends.ErrPayloadTooLarge, say("the event exceeds SCF's limit (6 MB synchronous, 128 KB asynchronous)")},
	407: {"ResponseTooLarge", tooLarge, backends.ErrPayloadTooLarge, say("the response exceeds SCF's 6 MB limit")},
	410: {"InsufficientBalance", failFast, ErrServiceSuspended, say("the account is in arrears: top it up")},
	429: {"ResourceLimit", throttled, nil, nil},
	430: {"UserCodeException", failFast, nil, say("the function's handler returned an error; " + redeployHint)},
	432: {"ResourceLimitReached", throttled, nil, nil},
	433: {"TimeLimitReached", retried, backends.ErrWorkerLost, say("the function ran past its timeout (raise it with gowren deploy scf -timeout)")},
	434: {"MemoryLimitReached", retried, backends.ErrWorkerLost, say("the function ran out of memory (raise it with gowren deploy scf -memory)")},
	435: {"FunctionNotFound", failFast, ErrFunctionNotFound, func(s site) string {
		return fmt.Sprintf("no function %q in namespace %s of region %s: check the name, region and namespace, or deploy it with gowren deploy scf", s.function, s.namespace, s.region)
	}},
	436: {"InvalidParameterValue", failFast, nil, say("SCF refused the invocation's parameters; check the URL's namespace and qualifier")},
	437: {"HandlerNotFound", failFast, ErrBadDeployment, say("the function's code package has no executable named by its handler: redeploy with gowren deploy scf")},
	438: {"FunctionStatusError", failFast, ErrFunctionNotActive, say("the function is not active: it is being deployed (wait until gowren deploy scf has finished), its last deployment failed (deploy again), or SCF is suspended for the account (top it up); then run again")},
	439: {"UserProcessExit", retried, backends.ErrWorkerLost, say("the worker process exited during the invocation")},
	441: {"UnauthorizedOperation", failFast, ErrUnauthorized, say("CAM refused the invocation: grant the credentials scf:InvokeFunction and scf:Invoke on the function (see the README for the CAM policy gowren needs)")},
	442: {"QualifierNotFound", failFast, ErrFunctionNotFound, func(s site) string {
		return fmt.Sprintf("no version or alias %q of function %q: fix the URL's qualifier or publish the version", s.qualifier, s.function)
	}},
	443: {"UserCodeError", failFast, nil, say("the function's handler failed; " + redeployHint)},
	444: {"PullImageFailed", failFast, ErrBadDeployment, say("SCF cannot pull the function's image: check the image, or redeploy with gowren deploy scf")},
	445: {"ContainerInitError", failFast, ErrBadDeployment, say("the function's container does not start: " + redeployHint)},
	446: {"PortBindingFailed", retried, backends.ErrWorkerLost, say("the worker did not start serving in time; if every invocation fails so, " + redeployHint)},
	447: {"PullImageTimeOut", retried, backends.ErrWorkerLost, say("pulling the function's image timed out")},
	449: {"InsufficientResources", retried, backends.ErrWorkerLost, say("the region has no capacity for the function's memory size now; if it persists, lower it with gowren deploy scf -memory")},
	450: {"InitContainerTimeout", retried, backends.ErrWorkerLost, say("the function's container did not start in time")},
	499: {"RequestCanceled", retried, backends.ErrWorkerLost, say("SCF cancelled the execution")},
	500: {"InternalError", retried, backends.ErrTransport, say("SCF had an internal error")},
	532: {"ResourceExhausted", retried, backends.ErrWorkerLost, say("the region has no compute capacity now")},
}

// classifyFunction turns a failed execution into an Invoke error.
func (s site) classifyFunction(fe *FunctionError) error {
	c := fe.StatusCode
	st, ok := statuses[c]
	switch {
	case ok:
	case c >= 500:
		st = status{"", retried, backends.ErrTransport, say("SCF reported a server error")}
	default:
		st = status{"", retried, backends.ErrWorkerLost, say(fmt.Sprintf("status %d is not in SCF's table of status codes; treated as a lost worker", c))}
		if c == 0 {
			st.hint = say("SCF reported a failure without a status code; treated as a lost worker")
		}
	}
	switch st.class {
	case throttled:
		return fmt.Errorf("%v: %w: %w", s, &backends.ThrottleError{Reason: fmt.Sprintf("SCF status %d %s (concurrency quota or scaling rate)", c, st.name)}, fe)
	case failFast:
		if st.kind == nil {
			return fmt.Errorf("%v: %s: %w", s, st.hint(s), fe)
		}
	}
	return fmt.Errorf("%v: %w: %s: %w", s, st.kind, st.hint(s), fe)
}

// classifyAPI turns an error from the SDK into an Invoke error. The caller
// has ruled out cancellation. The codes are the common ones of Tencent
// Cloud API 3.0 and SCF's (https://cloud.tencent.com/document/api/583/30771)
// and those the API reference lists for Invoke and InvokeFunction
// (https://www.tencentcloud.com/document/api/583/17243,
// https://www.tencentcloud.com/document/api/583/41408).
func (s site) classifyAPI(err error) error {
	var se *tcerr.TencentCloudSDKError
	if !errors.As(err, &se) {
		return fmt.Errorf("%v: %w: %w", s, backends.ErrTransport, err)
	}
	code := se.Code
	msg := clip(se.Message)
	detail := fmt.Sprintf("%s: %s", code, msg)
	if se.RequestId != "" {
		detail += " (request " + se.RequestId + ")"
	}
	// wrap keeps the SDK error reachable with errors.As.
	wrap := func(kind error, hint string) error {
		if hint != "" {
			hint = ": " + hint
		}
		return fmt.Errorf("%v: %w%s: %w", s, kind, hint, &sdkError{detail: detail, err: se})
	}
	plain := func(hint string) error {
		return fmt.Errorf("%v: %s: %w", s, hint, &sdkError{detail: detail, err: se})
	}
	switch {
	case strings.HasPrefix(code, "RequestLimitExceeded"),
		code == "LimitExceeded", strings.HasPrefix(code, "ResourceInsufficient"),
		strings.HasPrefix(code, "LimitExceeded.") && strings.Contains(code, "Concurrency"):
		return wrap(&backends.ThrottleError{Reason: code}, "")
	case code == "FailedOperation.FunctionStatusError", code == "FailedOperation.FunctionNameStatusError",
		code == "FailedOperation.FunctionVersionStatusNotActive":
		return wrap(ErrFunctionNotActive, statuses[438].hint(s))
	case code == "FailedOperation.OperationConflict":
		return wrap(&backends.ThrottleError{Reason: code + " (another operation on the function is under way)", RetryAfter: time.Second}, "")
	case code == "ResourceNotFound.Function", code == "ResourceNotFound.FunctionName",
		code == "InvalidParameterValue.FunctionName", code == "InvalidParameter.FunctionName":
		return wrap(ErrFunctionNotFound, statuses[435].hint(s))
	case code == "ResourceNotFound.Namespace", code == "ResourceUnavailable.Namespace", code == "InvalidParameterValue.Namespace":
		return wrap(ErrFunctionNotFound, fmt.Sprintf("no namespace %q in region %s", s.namespace, s.region))
	case code == "ResourceNotFound.Qualifier", code == "ResourceNotFound.Version", code == "ResourceNotFound.FunctionVersion",
		code == "ResourceNotFound.Alias", code == "InvalidParameterValue.Qualifier":
		return wrap(ErrFunctionNotFound, statuses[442].hint(s))
	case code == "UnsupportedRegion", code == "UnsupportedOperation.Region", code == "InvalidParameterValue.Region",
		code == "UnauthorizedOperation.Region":
		return plain(fmt.Sprintf("region %q does not offer SCF or is misspelled (e.g. ap-guangzhou)", s.region))
	case code == "AuthFailure.UnauthorizedOperation", strings.HasPrefix(code, "UnauthorizedOperation"):
		return wrap(ErrUnauthorized, "the credentials' CAM policy does not allow this action on the function (see the README for the policy gowren needs)")
	case code == "AuthFailure.SignatureExpire":
		return wrap(ErrCredentials, "the request's timestamp is more than 5 minutes off: check this machine's clock")
	case strings.HasPrefix(code, "AuthFailure"):
		return wrap(ErrCredentials, fmt.Sprintf("check %s and %s (and %s for temporary credentials)", EnvSecretID, EnvSecretKey, EnvSessionToken))
	case code == "RequestSizeLimitExceeded", code == "InvalidParameterValue.LimitExceeded", code == "InvalidParameter.RequestTooLarge":
		return wrap(backends.ErrPayloadTooLarge, "")
	case strings.HasSuffix(code, ".InsufficientBalance"):
		return wrap(ErrServiceSuspended, "the account is in arrears: top it up")
	case code == "InvalidParameterValue.FunctionType":
		return plain("the function is not an event function (a web function?): deploy it with gowren deploy scf")
	case code == "LimitExceeded.Quota":
		return plain("an SCF quota of the account is exhausted: see the quotas in the SCF console")
	case strings.HasPrefix(code, "InternalError"), code == "FailedOperation.InvokeFunction",
		code == "ClientError.NetworkError", code == "ClientError.IOError", code == "ClientError.ParseJsonError":
		return wrap(backends.ErrTransport, "")
	case code == "ClientError.HttpStatusCodeError":
		switch {
		case strings.Contains(se.Message, " 429 "):
			return wrap(&backends.ThrottleError{Reason: "HTTP 429"}, "")
		case strings.Contains(se.Message, " 413 "):
			return wrap(backends.ErrPayloadTooLarge, "")
		}
		return wrap(backends.ErrTransport, "")
	case strings.HasPrefix(code, "ResourceUnavailable"):
		return wrap(&backends.ThrottleError{Reason: code}, "")
	}
	return plain("the Tencent Cloud API refused the request")
}

// sdkError carries an SDK error with a clipped description: the SDK's own
// messages can quote a whole response body.
type sdkError struct {
	detail string
	err    *tcerr.TencentCloudSDKError
}

func (e *sdkError) Error() string { return e.detail }
func (e *sdkError) Unwrap() error { return e.err }
