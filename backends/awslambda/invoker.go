package awslambda

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/gowren/gowren/backends"
)

// EnvShards is the environment variable through which a worker learns that
// its function is one of K shards: Deploy (`gowren deploy lambda -shards
// K`) sets it to K on each shard NAME-0 ... NAME-(K-1), and removes it from
// a function deployed alone. A worker of shard NAME-i invokes its children
// on all K shards; without it, on its own function.
const EnvShards = "GOWREN_SHARDS"

// Environment variables Lambda sets for a function's runtime.
const (
	envFunctionName    = "AWS_LAMBDA_FUNCTION_NAME"
	envFunctionVersion = "AWS_LAMBDA_FUNCTION_VERSION"
	envFunctionMemory  = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
)

// selfEnv is what a worker's environment says about the function it runs
// in: where its handlers invoke their children.
type selfEnv struct {
	function  string // the function's name, or NAME when it is shard NAME-i
	shards    int    // K when it is a shard NAME-i of K, else 0
	region    string
	qualifier string // the version the worker runs, "" for $LATEST
	memoryMB  int
}

// readSelfEnv reads the environment Lambda gives a function's workers:
// AWS_LAMBDA_FUNCTION_NAME, AWS_REGION (else AWS_DEFAULT_REGION),
// AWS_LAMBDA_FUNCTION_VERSION, AWS_LAMBDA_FUNCTION_MEMORY_SIZE, the
// credentials of the function's role (AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, or a container credentials URI) and EnvShards. It
// returns ok false and no error in a process that is not a Lambda function
// (no function name), and an error saying what is missing or wrong when the
// environment does not let the worker invoke its function.
func readSelfEnv(getenv func(string) string) (e selfEnv, ok bool, err error) {
	name := getenv(envFunctionName)
	if name == "" {
		return selfEnv{}, false, nil
	}
	if !functionName.MatchString(name) {
		return selfEnv{}, false, fmt.Errorf("%s=%q is not a function name", envFunctionName, name)
	}
	e.function = name
	e.region = getenv("AWS_REGION")
	if e.region == "" {
		e.region = getenv("AWS_DEFAULT_REGION")
	}
	if e.region == "" {
		return selfEnv{}, false, fmt.Errorf("function %s: AWS_REGION is not set", name)
	}
	keys := getenv("AWS_ACCESS_KEY_ID") != "" && getenv("AWS_SECRET_ACCESS_KEY") != ""
	container := getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") != "" || getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != ""
	if !keys && !container {
		return selfEnv{}, false, fmt.Errorf("function %s: no credentials of the function's role in the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_CONTAINER_CREDENTIALS_FULL_URI)", name)
	}
	if v := getenv(envFunctionVersion); v != "" && v != "$LATEST" {
		e.qualifier = v
	}
	if mb, err := strconv.Atoi(getenv(envFunctionMemory)); err == nil && mb >= minMemoryMB && mb <= maxMemoryMB {
		e.memoryMB = mb
	}
	if v := getenv(EnvShards); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 || k > MaxShards {
			return selfEnv{}, false, fmt.Errorf("function %s: %s=%q is not a number of shards from 1 to %d", name, EnvShards, v, MaxShards)
		}
		base, i, found := cutShardSuffix(name)
		if !found || i >= k {
			return selfEnv{}, false, fmt.Errorf("function %s: %s=%d, but the name is not NAME-i with i below %d: redeploy with `gowren deploy lambda -name NAME -shards %d`",
				name, EnvShards, k, k, k)
		}
		e.function, e.shards = base, k
		// A published version of one shard is not the same code as that
		// version of another: shards are invoked unqualified, as deployed.
		e.qualifier = ""
	}
	return e, true, nil
}

// cutShardSuffix splits a shard's name NAME-i into NAME and i.
func cutShardSuffix(name string) (base string, i int, ok bool) {
	j := strings.LastIndexByte(name, '-')
	if j <= 0 || j == len(name)-1 {
		return "", 0, false
	}
	digits := name[j+1:]
	if len(digits) > 1 && digits[0] == '0' {
		return "", 0, false
	}
	i, err := strconv.Atoi(digits)
	if err != nil || i < 0 || digits[0] == '+' {
		return "", 0, false
	}
	return name[:j], i, true
}

// selfInvoker is the backend through which a Lambda worker's handlers
// invoke their own function, or the shards it belongs to: the invoker of an
// invoker tree starts its children through it (see backends.InvokerOf).
// Its Lambda client is made at its first invocation, once for the process,
// from the default AWS configuration, which on Lambda is the environment:
// the role's credentials, the region, and the endpoint of
// AWS_ENDPOINT_URL_LAMBDA or AWS_ENDPOINT_URL when set. It is safe for
// concurrent use.
type selfInvoker struct {
	env    selfEnv
	opts   Options
	limits backends.Limits
	next   atomic.Uint64 // the shard the next invocation goes to, modulo K
	open   func() ([]*Backend, error)
}

var (
	_ backends.Backend      = (*selfInvoker)(nil)
	_ backends.AsyncBackend = (*selfInvoker)(nil)
)

// newSelfInvoker returns the invoker of the function e describes. It makes
// no client and no call.
func newSelfInvoker(e selfEnv) *selfInvoker {
	s := &selfInvoker{env: e, opts: Options{Qualifier: e.qualifier, MemoryMB: e.memoryMB, Arch: goArchName()}}
	s.limits = limitsOf(withDefaults(&s.opts))
	if e.shards > 0 {
		// Each process starts its turn at a shard of its own, so that the
		// children of many invokers spread over all the shards, not over
		// the first few.
		s.next.Store(rand.Uint64N(uint64(e.shards)))
	}
	s.open = sync.OnceValues(s.connect)
	return s
}

// goArchName is the Lambda architecture of this binary.
func goArchName() string {
	if goruntime.GOARCH == "amd64" {
		return "x86_64"
	}
	return "arm64"
}

// connect makes the client and the backends of the function or its shards.
func (s *selfInvoker) connect() ([]*Backend, error) {
	// Loading the configuration reads the environment and files, and makes
	// no call: credentials are fetched when the first request is signed.
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion(s.env.region))
	if err != nil {
		return nil, fmt.Errorf("awslambda: %s: load the AWS configuration: %w", s, err)
	}
	tr := newTransport(s.opts.Concurrency, s.opts.Timeout)
	client := lambda.NewFromConfig(cfg, func(o *lambda.Options) {
		o.HTTPClient = &http.Client{Transport: tr}
	})
	if s.env.shards == 0 {
		b := New(client, s.env.function, &s.opts)
		b.transport = tr
		return []*Backend{b}, nil
	}
	sh := NewShards(client, s.env.function, s.env.shards, &s.opts)
	for _, b := range sh.shards {
		b.transport = tr
	}
	return sh.shards, nil
}

// backend returns the function's Backend, or the shard whose turn it is.
func (s *selfInvoker) backend() (*Backend, error) {
	bs, err := s.open()
	if err != nil {
		return nil, err
	}
	if len(bs) == 1 {
		return bs[0], nil
	}
	return bs[(s.next.Add(1)-1)%uint64(len(bs))], nil
}

// Invoke invokes the function (or the next shard in turn) synchronously, as
// Backend.Invoke does.
func (s *selfInvoker) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	b, err := s.backend()
	if err != nil {
		return nil, err
	}
	return b.Invoke(ctx, payload)
}

// InvokeAsync queues an asynchronous invocation of the function (or of the
// next shard in turn), as Backend.InvokeAsync does.
func (s *selfInvoker) InvokeAsync(ctx context.Context, payload []byte) error {
	b, err := s.backend()
	if err != nil {
		return err
	}
	return b.InvokeAsync(ctx, payload)
}

// Limits reports the limits of a Backend of the function with the default
// Options, its memory and the architecture of this binary.
func (s *selfInvoker) Limits() backends.Limits { return s.limits }

// Close does nothing: the invoker serves every invocation of the process
// and lives as long as it.
func (s *selfInvoker) Close() error { return nil }

// String names the function or shards the worker invokes.
func (s *selfInvoker) String() string {
	if s.env.shards > 0 {
		return fmt.Sprintf("the worker's invoker of the %d shards of %s in %s", s.env.shards, s.env.function, s.env.region)
	}
	fn := s.env.function
	if s.env.qualifier != "" {
		fn += ":" + s.env.qualifier
	}
	return fmt.Sprintf("the worker's invoker of lambda function %q in %s", fn, s.env.region)
}

// workerInvoker returns the invoker of the function the process runs in,
// per its environment, or nil: outside Lambda, and when the environment
// lacks what invoking needs (the error says what, for the worker's log).
func workerInvoker(getenv func(string) string) (backends.Backend, error) {
	e, ok, err := readSelfEnv(getenv)
	if err != nil {
		return nil, fmt.Errorf("awslambda: workers cannot invoke their function (invoker trees, fanout.Options.Tree, will fail): %w", err)
	}
	if !ok {
		return nil, nil
	}
	return newSelfInvoker(e), nil
}
