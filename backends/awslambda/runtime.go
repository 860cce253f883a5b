package awslambda

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambda/messages"

	"github.com/gowren/gowren/backends"
)

// EnvRuntimeAPI is the environment variable through which Lambda (and AWS's
// Runtime Interface Emulator) gives the bootstrap binary the address of the
// Lambda Runtime API. A process where it is set is a Lambda worker.
const EnvRuntimeAPI = "AWS_LAMBDA_RUNTIME_API"

func init() {
	backends.RegisterRuntime(backends.Runtime{
		Name:   "awslambda",
		Detect: func() bool { return os.Getenv(EnvRuntimeAPI) != "" },
		Serve:  serve,
		// A Lambda function reaches S3 (or an S3-compatible store); the
		// deployment narrows this with fanout.EnvWorkerStores.
		Stores: "s3",
	})
}

// serve runs aws-lambda-go's invoke loop with h. The loop ends the process
// itself when the Runtime API fails (Lambda then starts a new one).
//
// lambda.Start takes the byte-level lambda.Handler as it is: its Invoke
// gets the event's bytes and its reply bytes are the response, exactly as
// with the deprecated lambda.StartHandler (both end in
// lambda.StartWithOptions with no option).
func serve(h backends.Handler) error {
	lambda.Start(NewHandler(h))
	return errors.New("awslambda: the Lambda runtime loop returned")
}

// NewHandler returns the aws-lambda-go handler through which the worker
// runtime serves h (fanout.Handle in a gowren program): it unwraps the
// JSON event, calls h with the invocation's context less the reply reserve
// (see the package documentation) and wraps the reply. An event that is not
// a gowren invocation gets an error of type "Gowren.InvalidEvent". It
// serves tests in process (awslambdatest.Options.Handler) and programs that
// run aws-lambda-go's loop themselves rather than through fanout.Init. It is
// safe for concurrent use when h is.
//
// In a Lambda function (AWS_LAMBDA_FUNCTION_NAME set), the context h gets
// carries the backend through which it invokes the function's own workers,
// as the invoker of an invoker tree (fanout.Options.Tree) starts its
// children: backends.InvokerOf(ctx), unless a wrapper set one first. It
// invokes the function itself, at the version the worker runs; on a shard
// NAME-i of a function deployed with `gowren deploy lambda -shards K`
// (EnvShards set to K), the K shards in turn. Its Lambda client is made at
// its first invocation, once per handler (the runtime makes one handler per
// process), with the credentials of the function's role, its region, and
// the Lambda endpoint of AWS_ENDPOINT_URL_LAMBDA or AWS_ENDPOINT_URL when
// set. NewHandler reads the environment once; when it lacks what invoking
// needs (the region, the role's credentials, a valid EnvShards), it says
// what on stderr (the function's log) and InvokerOf stays nil, so that an
// invoker tree fails with an error saying the backend cannot invoke.
func NewHandler(h backends.Handler) lambda.Handler {
	inv, err := workerInvoker(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gowren worker:", err)
	}
	return &handler{h: h, invoker: inv}
}

// handler is the byte-level aws-lambda-go handler: it unwraps the JSON
// event, runs the gowren Handler and wraps its reply.
type handler struct {
	h       backends.Handler
	invoker backends.Backend // nil when the worker cannot invoke its function
}

// Invoke implements lambda.Handler.
func (w *handler) Invoke(ctx context.Context, event []byte) ([]byte, error) {
	payload, err := backends.DecodeJSON(event)
	if err != nil {
		// A value of this type is reported as is, with our error type.
		return nil, messages.InvokeResponse_Error{
			Type:    errTypeInvalidEvent,
			Message: "gowren worker: the event is not a gowren invocation: " + err.Error(),
		}
	}
	ctx, cancel := backends.WithReplyReserve(ctx)
	defer cancel()
	if w.invoker != nil && backends.InvokerOf(ctx) == nil {
		ctx = backends.WithInvoker(ctx, w.invoker)
	}
	return backends.EncodeJSON(w.h(ctx, payload)), nil
}
