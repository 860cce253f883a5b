package tencentscf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/tencentyun/scf-go-lib/cloudfunction"
	"github.com/tencentyun/scf-go-lib/functioncontext"

	"github.com/gowren/gowren/backends"
)

// Environment variables of the SCF Go runtime. SCF's Go1 runtime starts the
// function's binary with _LAMBDA_SERVER_PORT set and calls Function.Invoke
// over net/rpc on that port (the protocol of scf-go-lib, inherited from the
// first AWS Lambda Go runtime). AWS's own runtimes set AWS_LAMBDA_RUNTIME_API,
// which tells the two apart.
const (
	envServerPort = "_LAMBDA_SERVER_PORT"
	envAWSRuntime = "AWS_LAMBDA_RUNTIME_API"
)

func init() {
	// SCF functions reach COS through its S3-compatible API; the
	// deployment narrows this with fanout.EnvWorkerStores.
	backends.RegisterRuntime(backends.Runtime{Name: "tencentscf", Detect: detect, Serve: serve, Stores: "s3"})
}

// detect reports whether SCF's Go runtime started this process.
func detect() bool {
	return os.Getenv(envServerPort) != "" && os.Getenv(envAWSRuntime) == ""
}

// serve hands h to scf-go-lib, which listens on _LAMBDA_SERVER_PORT and
// serves net/rpc Function.Invoke calls until the platform stops the
// process. The library exits the process itself on a listen error.
func serve(h backends.Handler) error {
	shareRoleCredentials()
	cloudfunction.StartHandler(&handler{h: h, children: newChildren(os.Getenv, os.Stderr)})
	return errors.New("scf-go-lib returned from StartHandler")
}

// handler adapts a backends.Handler (fanout.Handle) to scf-go-lib's
// byte-level cloudfunction.Handler. Its Invoke unwraps the JSON envelope
// that the driver side sends, runs the handler with the invocation's
// deadline less a reserve for the reply (backends.ReplyReserve), and returns
// the wrapped reply.
//
// scf-go-lib puts the bytes Invoke returns into the runtime's response as
// they are: unlike cloudfunction.Start with a typed function, which
// JSON-encodes the returned value (a []byte would become a base64 JSON
// string), StartHandler does no encoding. The reply therefore reaches the
// platform, and the driver's RetMsg, as the JSON object {"gowren":"..."}.
//
// A payload that is not a gowren envelope (an event sent from the SCF
// console, say) fails the invocation with an error saying so; everything
// else, including malformed envelopes and panicking tasks, is an error reply
// made by the handler.
//
// Each invocation's context carries, unless a wrapper set one first, the
// Backend through which its tasks invoke children of an invoker tree
// (backends.InvokerOf): this function, through the Cloud API, signed with
// the execution role's keys (see children). Of the Environment that
// scf-go-lib copies into the process environment on every request, only
// the role's keys are read, which SCF may renew there.
type handler struct {
	h        backends.Handler
	children *children
}

// Invoke implements cloudfunction.Handler.
func (h *handler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	raw, err := backends.DecodeJSON(payload)
	if err != nil {
		return nil, fmt.Errorf("gowren worker: not a gowren invocation (is this function invoked by gowren's tencentscf backend?): %w", err)
	}
	ctx, cancel := sanitizeDeadline(ctx)
	defer cancel()
	if backends.InvokerOf(ctx) == nil {
		if b := h.children.backend(); b != nil {
			ctx = backends.WithInvoker(ctx, b)
		}
	}
	// SCF ends a call still running at its deadline with status 433 and
	// discards the reply: keep time to send it.
	ctx, cancelReserve := backends.WithReplyReserve(ctx)
	defer cancelReserve()
	return backends.EncodeJSON(h.h(ctx, raw)), nil
}

// saneDeadline is the earliest deadline taken at face value. scf-go-lib
// builds the context's deadline from the request's Deadline field; a
// platform that left it zero would hand every task a context that expired
// in 1970.
var saneDeadline = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

// sanitizeDeadline returns ctx unchanged when its deadline is plausible.
// Otherwise it detaches ctx from its deadline and, when the function
// context gives the function's time limit, applies that instead.
func sanitizeDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && d.After(saneDeadline) {
		return ctx, func() {}
	}
	base := context.WithoutCancel(ctx)
	if lc, ok := functioncontext.FromContext(ctx); ok && lc.TimeLimitInMs > 0 {
		return context.WithTimeout(base, time.Duration(lc.TimeLimitInMs)*time.Millisecond)
	}
	return context.WithCancel(base)
}

// shareRoleCredentials hands the temporary keys of the function's execution
// role, which SCF puts in TENCENTCLOUD_SECRETID, TENCENTCLOUD_SECRETKEY and
// TENCENTCLOUD_SESSIONTOKEN, to the AWS SDK's environment credentials, so
// that an s3:// store on COS works in the worker without keys deployed with
// -env. Keys given explicitly (AWS_ACCESS_KEY_ID set) win. The keys are read
// once, when the worker starts; SCF recycles instances well within their
// lifetime.
func shareRoleCredentials() {
	id, key := os.Getenv(envRoleSecretID), os.Getenv(envRoleSecretKey)
	if id == "" || key == "" || os.Getenv("AWS_ACCESS_KEY_ID") != "" {
		return
	}
	os.Setenv("AWS_ACCESS_KEY_ID", id)
	os.Setenv("AWS_SECRET_ACCESS_KEY", key)
	if tok := os.Getenv(envRoleToken); tok != "" {
		os.Setenv("AWS_SESSION_TOKEN", tok)
	}
}
