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
// them with errors.Is. None is retryable.
var (
	// ErrFunctionNotFound means SCF has no such function, namespace or
	// version in the client's region: the name, region, namespace or
	// qualifier is wrong, or the function was never deployed (deploy it
	// with "gowren deploy scf").
	ErrFunctionNotFound = errors.New("tencentscf: function not found")
	// ErrCredentials means the Tencent Cloud API refused the request's
	// credentials or signature (AuthFailure.*).
	ErrCredentials = errors.New("tencentscf: credentials refused")
	// ErrUnauthorized means the credentials are valid but their CAM
	// policy does not allow the action (UnauthorizedOperation.*).
	ErrUnauthorized = errors.New("tencentscf: not authorized")
)

// FunctionError is a failed execution as SCF reports it in an invocation's
// result: the function returned an error, panicked, timed out, ran out of
// memory or its process exited. Invoke wraps it together with the
// backends sentinel that classifies it.
type FunctionError struct {
	// StatusCode is SCF's status code: 430 the function returned an error
	// or panicked, 433 timeout, 434 out of memory, 439 the process exited,
	// 432 concurrency quota exceeded; see SCF's "function status codes".
	StatusCode int
	// Message is the platform's or the function's error message.
	Message string
	// RequestID is the invocation's FunctionRequestId, for the SCF logs.
	RequestID string
}

// Error describes the failure with its status code and request ID.
func (e *FunctionError) Error() string {
	s := "function failed"
	if e.StatusCode != 0 {
		s += " with status " + strconv.Itoa(e.StatusCode)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RequestID != "" {
		s += " (request " + e.RequestID + ")"
	}
	return s
}

// maxMessage bounds the platform text quoted in an error.
const maxMessage = 512

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxMessage {
		return s[:maxMessage] + "..."
	}
	return s
}

// invokeResult is the Result object of InvokeFunction and Invoke.
type invokeResult struct {
	Log               string
	RetMsg            string
	ErrMsg            string
	MemUsage          int64
	Duration          float64
	BillDuration      int64
	FunctionRequestId string
	InvokeResult      int64
}

// platformError is the JSON object SCF puts in ErrMsg for a failed
// execution, e.g. {"errorCode":-1,"errorMessage":"user code exception
// caught","statusCode":430,"stackTrace":"..."}.
type platformError struct {
	ErrorCode    int    `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
	ErrorType    string `json:"errorType"`
	StackTrace   any    `json:"stackTrace"`
	StatusCode   int    `json:"statusCode"`
}

// functionError reads a failed Result. The status code comes from the JSON
// in ErrMsg, else from InvokeResult when it holds one.
func functionError(r *invokeResult) *FunctionError {
	fe := &FunctionError{RequestID: r.FunctionRequestId, Message: clip(r.ErrMsg)}
	var pe platformError
	if err := json.Unmarshal([]byte(r.ErrMsg), &pe); err == nil {
		fe.StatusCode = pe.StatusCode
		if pe.ErrorMessage != "" {
			fe.Message = clip(pe.ErrorMessage)
		}
	}
	if fe.StatusCode == 0 && r.InvokeResult >= 200 {
		fe.StatusCode = int(r.InvokeResult)
	}
	if fe.Message == "" {
		fe.Message = clip(r.Log)
	}
	return fe
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

// classifyFunction turns a failed execution into an Invoke error.
func (s site) classifyFunction(fe *FunctionError) error {
	switch c := fe.StatusCode; {
	case c == 429 || c == 432:
		return fmt.Errorf("%v: %w: %w", s, &backends.ThrottleError{Reason: fmt.Sprintf("SCF status %d (concurrency quota or scaling rate)", c)}, fe)
	case c == 406 || c == 407:
		return fmt.Errorf("%v: %w: %w", s, backends.ErrPayloadTooLarge, fe)
	case c == 433:
		return fmt.Errorf("%v: %w: the function ran past its timeout (raise it with gowren deploy scf -timeout): %w", s, backends.ErrWorkerLost, fe)
	case c == 434:
		return fmt.Errorf("%v: %w: the function ran out of memory (raise it with gowren deploy scf -memory): %w", s, backends.ErrWorkerLost, fe)
	case c == 430:
		return fmt.Errorf("%v: the function's handler failed; is the deployed binary a gowren program that calls fanout.Init? (redeploy with gowren deploy scf): %w", s, fe)
	case c == 400:
		return fmt.Errorf("%v: the platform refused the event: %w", s, fe)
	case c == 401:
		return fmt.Errorf("%v: %w: %w", s, ErrUnauthorized, fe)
	case c == 402 || c == 410:
		return fmt.Errorf("%v: the SCF service is suspended for this account (overdue payment?): %w", s, fe)
	case c == 435:
		return fmt.Errorf("%v: %w: %w", s, ErrFunctionNotFound, fe)
	case c >= 500:
		return fmt.Errorf("%v: %w: %w", s, backends.ErrTransport, fe)
	default: // 405, 439 (the process exited) and the unknown
		return fmt.Errorf("%v: %w: %w", s, backends.ErrWorkerLost, fe)
	}
}

// classifyAPI turns an error from the SDK into an Invoke error. The caller
// has ruled out cancellation.
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
		code == "FailedOperation.FunctionVersionStatusNotActive", code == "FailedOperation.OperationConflict":
		return wrap(&backends.ThrottleError{Reason: code + " (the function is being deployed)", RetryAfter: time.Second}, "")
	case code == "ResourceNotFound.Function", code == "ResourceNotFound.FunctionName", code == "InvalidParameterValue.FunctionName":
		return wrap(ErrFunctionNotFound, fmt.Sprintf("no function %q in namespace %s of region %s: check the name, region and namespace, or deploy it with gowren deploy scf",
			s.function, s.namespace, s.region))
	case code == "ResourceNotFound.Namespace", code == "ResourceUnavailable.Namespace":
		return wrap(ErrFunctionNotFound, fmt.Sprintf("no namespace %q in region %s", s.namespace, s.region))
	case code == "ResourceNotFound.Qualifier", code == "ResourceNotFound.Version", code == "ResourceNotFound.FunctionVersion",
		code == "ResourceNotFound.Alias", code == "InvalidParameterValue.Qualifier":
		return wrap(ErrFunctionNotFound, fmt.Sprintf("no version or alias %q of function %q", s.qualifier, s.function))
	case code == "UnsupportedRegion", code == "UnsupportedOperation.Region", code == "InvalidParameterValue.Region",
		code == "UnauthorizedOperation.Region":
		return plain(fmt.Sprintf("region %q does not offer SCF or is misspelled (e.g. ap-guangzhou)", s.region))
	case code == "AuthFailure.UnauthorizedOperation", strings.HasPrefix(code, "UnauthorizedOperation"):
		return wrap(ErrUnauthorized, "the credentials' CAM policy does not allow this action on the function (see the README for the policy gowren needs)")
	case code == "AuthFailure.SignatureExpire":
		return wrap(ErrCredentials, "the request's timestamp is more than 5 minutes off: check this machine's clock")
	case strings.HasPrefix(code, "AuthFailure"):
		return wrap(ErrCredentials, fmt.Sprintf("check %s and %s (and %s for temporary credentials)", EnvSecretID, EnvSecretKey, EnvSessionToken))
	case code == "RequestSizeLimitExceeded", code == "InvalidParameterValue.LimitExceeded":
		return wrap(backends.ErrPayloadTooLarge, "")
	case code == "ResourceUnavailable.InsufficientBalance", code == "FailedOperation.InsufficientBalance":
		return plain("the account is in arrears: top it up")
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
