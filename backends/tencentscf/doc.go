// Package tencentscf is the gowren backend for Tencent Cloud's Serverless
// Cloud Function (SCF). The driver invokes one SCF function through the
// Tencent Cloud API 3.0 (the official Go SDK's common client, TC3-HMAC-SHA256
// signatures); the function is the driver's own program, whose
// fanout.Init serves the invocations through scf-go-lib, SCF's Go runtime
// library. The same program runs on AWS Lambda by changing one URL.
//
// Import the package in the program you deploy (a blank import is enough):
// it registers the scf:// URL scheme and the worker runtime.
//
// # Backends
//
// New takes a client (NewClient makes one) and a function name. A Backend
// implements backends.AsyncBackend: Invoke calls InvokeFunction (synchronous,
// up to 10,000 calls a second, 6 MB events and responses); InvokeAsync calls
// Invoke with InvocationType Event (asynchronous, 100 calls a second, 128 KB
// events). Own token buckets keep each kind under those rates, and at most
// Options.Concurrency synchronous invocations are in flight. Payloads travel
// as the JSON event {"gowren":"<base64 envelope>"}; Limits reports SCF's
// limits less that wrapping, so the executor sends larger inputs and outputs
// through the store.
//
// # URLs
//
//	scf://FUNCTION?region=ap-guangzhou&namespace=default&qualifier=$LATEST&endpoint=HOST&memory=512
//
// region defaults to $TENCENTCLOUD_REGION; namespace to "default";
// qualifier to SCF's choice; endpoint to scf.tencentcloudapi.com (an
// http:// URL reaches a loopback server). concurrency, timeout, parallel,
// rate and asyncrate set the Options of the same names. memory is the
// function's memory in MB (64, or a multiple of 128 up to 3072), which
// only the cost estimates use: jobs are priced at SCF's rates
// (fanout.PricesSCF) for that memory. gowren deploy scf prints a URL with
// the deployed timeout and memory. Credentials come from
// TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY, and
// TENCENTCLOUD_SESSION_TOKEN for temporary ones; never from the URL.
//
// # Store
//
// Inputs and outputs over the synchronous limits, MapReduce's intermediate
// data and the results of asynchronous jobs go through a store both the
// driver and the workers reach: on Tencent Cloud a COS bucket in the
// function's region, through storage/s3store with COS's S3-compatible
// endpoint, e.g.
//
//	GOWREN_STORE='s3://BUCKET-APPID/gowren?region=ap-guangzhou&endpoint=https://cos.ap-guangzhou.myqcloud.com'
//
// s3store takes a COS SecretId/SecretKey from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, on the driver and on the workers alike. Workers
// get them one of two ways. A function deployed with an execution role
// (gowren deploy scf -role) receives the role's temporary keys from SCF,
// and the worker runtime hands them to s3store when it starts; the role
// then needs the COS permissions. Without a role, or to use other keys,
// give the function a key limited to the bucket with gowren deploy scf
// -env AWS_ACCESS_KEY_ID=... -env AWS_SECRET_ACCESS_KEY=...: keys set
// that way win over the role's.
//
// # Deploying
//
// Deploy, and the "gowren deploy scf" command built on it, checks that the
// main package imports this package (ImportPath), compiles it for
// linux/amd64 (binary "main"), uploads it as a Go1 function with handler
// "main", and waits until SCF reports it Active. Redeploying uploads the
// code only when SCF reports a different hash for it, and changes only the
// settings the options give: memory, timeout, environment, role and
// description left zero keep the function's current values.
//
// # Worker runtime
//
// SCF's Go1 runtime starts the binary with _LAMBDA_SERVER_PORT set and calls
// Function.Invoke over net/rpc. In such a process (and not under AWS, which
// sets AWS_LAMBDA_RUNTIME_API) fanout.Init serves through scf-go-lib's
// cloudfunction.StartHandler. The request's deadline, less a reserve of a
// tenth of the time left (at most 500 ms) for sending the reply, becomes the
// tasks' context deadline; when SCF sends none, the function's time limit
// is used. Tasks still running when their context ends are reported as
// timed out (fanout.ErrTaskTimeout) in a reply that reaches the driver
// before SCF's own deadline, rather than lost with the invocation.
// The runtime library copies each request's Environment into the process
// environment; gowren reads only the role's keys from it (below).
//
// # Invoker trees
//
// A worker invokes children of its own function itself when an executor
// runs a job as an invoker tree (fanout.Options.Tree; Limits reports
// Nested). The runtime sets, on each invocation's context, a Backend for
// the function's own name, namespace, version and region, as SCF gives
// them in the process environment (SCF_FUNCTIONNAME, SCF_NAMESPACE,
// SCF_FUNCTIONVERSION, TENCENTCLOUD_REGION), signed with the temporary
// keys of the function's execution role (TENCENTCLOUD_SECRETID,
// TENCENTCLOUD_SECRETKEY, TENCENTCLOUD_SESSIONTOKEN), which it takes again
// at every invocation, as SCF may renew them. It reaches the Cloud API at
// EnvEndpoint (GOWREN_SCF_ENDPOINT), by default scf.tencentcloudapi.com.
// The Backend is made once per process; without a role, tasks find none.
// The role's CAM policy must allow scf:InvokeFunction on the function
// (DeployResult.InvokerStatement gives the statement; gowren deploy scf
// prints it).
//
// That Backend invokes synchronously only (InvokeFunction) and is not a
// backends.AsyncBackend, so an invoker waits for its children: SCF's
// asynchronous Invoke is limited to 100 calls a second per region, for all
// invokers and the driver together, which per-process token buckets
// cannot keep to, while InvokeFunction allows 10,000 a second. The
// function's timeout must therefore cover an invoker's children.
//
// # Errors
//
// Every execution status of SCF's table of function status codes and every
// API error code Invoke and InvokeFunction document has a class
// (docs/design.md has the table):
//
//   - throttles, retried after a backoff without costing an attempt: the
//     API's RequestLimitExceeded, the concurrency quota (status 432) and
//     the scaling rate (429), as a *backends.ThrottleError;
//   - retried, up to the executor's Retries: backends.ErrWorkerLost when
//     the execution timed out (433), ran out of memory (434), its process
//     or container exited or did not start in time (439, 405, 446, 450)
//     or the region lacked capacity (449); backends.ErrTransport for
//     network failures and the platform's internal errors (500);
//   - failing at once, with what to do: ErrFunctionNotFound (function,
//     namespace, version or region: 435, 442), ErrCredentials
//     (AuthFailure.*), ErrUnauthorized (the CAM policy: 401, 441),
//     ErrFunctionNotActive (still deploying, or its deployment failed:
//     438, FailedOperation.FunctionStatusError), ErrBadDeployment (437,
//     444, 445), ErrServiceSuspended (402, 410), a function's own error
//     (430, 443: the deployed program is not a gowren worker), and
//     backends.ErrPayloadTooLarge (406, 407).
//
// Success is decided from the Result's ErrMsg and RetMsg; its InvokeResult,
// which Tencent no longer maintains, is never read. A failed execution
// carries a *FunctionError with SCF's status code, its message (for a
// function's own error, taken from stackTrace, where SCF puts it), its
// stack and the tail of its log; every API error keeps the SDK's
// *errors.TencentCloudSDKError reachable with errors.As. Errors of the
// tasks themselves, a stale deployed binary (fanout.ErrStaleWorker) and
// unknown functions travel in the reply and reach the executor unchanged.
package tencentscf
