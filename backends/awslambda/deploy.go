package awslambda

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"golang.org/x/sync/errgroup"

	"github.com/gowren/gowren/backends/internal/gopkg"
)

// ImportPath is this package's import path: a program deployed to Lambda must
// import it so that fanout.Init serves invocations.
const ImportPath = "github.com/gowren/gowren/backends/awslambda"

// Deploy defaults and the runtime the function runs on.
const (
	// Runtime is the Lambda runtime of deployed functions: Amazon Linux
	// 2023 with a custom runtime, the binary named bootstrap.
	Runtime = types.RuntimeProvidedal2023
	// DefaultMemoryMB is the memory of a new function.
	DefaultMemoryMB = 1024
	// minMemoryMB and maxMemoryMB bound a function's memory.
	minMemoryMB, maxMemoryMB = 128, 10240
	// DefaultFunctionTimeout is the timeout of a new function.
	DefaultFunctionTimeout = 5 * time.Minute
)

// DeployOptions configure Deploy. Fields left zero keep a function's current
// value when it is updated and take the default when it is created.
type DeployOptions struct {
	// Name is the function's name. Defaults to the last element of the
	// package's import path ("montecarlo" for .../examples/montecarlo).
	Name string
	// Package is the main package to build, as `go build` takes it.
	// Defaults to ".".
	Package string
	// Dir is the directory `go build` runs in. Defaults to the current one.
	Dir string
	// Arch is the function's architecture, "arm64" or "x86_64". Defaults to
	// "arm64" (Graviton: about 20% cheaper per GB-second).
	Arch string
	// Role is the ARN of the IAM role the function runs as. Required to
	// create a function; an update changes it only when set.
	Role string
	// MemoryMB is the function's memory, 128 to 10,240 MB; Lambda gives a
	// vCPU per 1,769 MB. Defaults to DefaultMemoryMB on creation.
	MemoryMB int
	// Timeout is the function's timeout, whole seconds from 1s to 15m.
	// Defaults to DefaultFunctionTimeout on creation.
	Timeout time.Duration
	// Env sets environment variables of the function; on update they are
	// merged into the current ones, and an empty value removes a variable.
	// Deploy itself sets EnvShards (to Shards, or removes it when Shards is
	// 0). Defaults to none.
	Env map[string]string
	// Stores, when not empty, is the allow-list of stores the function's
	// workers may open, written into its environment as
	// GOWREN_WORKER_STORES (see fanout.EnvWorkerStores), e.g.
	// "s3://my-bucket/gowren?region=eu-west-1". Defaults to none: the
	// variable is left as it is, and where it is unset workers may open
	// any s3:// store.
	Stores string
	// Shards, when 1 or more, deploys that many identical functions from
	// one build: Name-0 ... Name-(Shards-1), for lambda://Name?shards=K
	// (see Shards). Each is created or updated as a single function is,
	// its code uploaded only when its hash differs from the build's, so a
	// redeploy uploads to the shards whose code changed and to no other.
	// At most MaxShards; Name with its longest suffix must fit Lambda's 64
	// characters. Defaults to 0: one function, named Name.
	Shards int
	// Tags are extra build tags, added to lambda.norpc. Defaults to none.
	Tags []string
	// Log receives progress lines. Defaults to io.Discard.
	Log io.Writer
	// PollInterval is the shortest wait between two reads of the function's
	// state while it is created or updated (the SDK waiters' MinDelay).
	// Defaults to 1s.
	PollInterval time.Duration
	// MaxWait bounds each wait for the function to become active or
	// updated. Defaults to 5 minutes.
	MaxWait time.Duration
}

// DeployResult says what Deploy did.
type DeployResult struct {
	// FunctionARN is the function's ARN.
	FunctionARN string
	// Function is the function's name.
	Function string
	// Region is the client's region.
	Region string
	// Created reports a new function; CodeUpdated an upload of new code
	// (false when the code was unchanged); ConfigUpdated a change of
	// configuration.
	Created, CodeUpdated, ConfigUpdated bool
	// CodeSHA256 is the base64 SHA-256 of the zip, as Lambda reports it.
	CodeSHA256 string
	// CodeSize is the zip's size in bytes.
	CodeSize int
	// Arch, MemoryMB and Timeout are the function's settings after Deploy.
	Arch     string
	MemoryMB int
	Timeout  time.Duration
	// BackendURL is the URL to put in GOWREN_BACKEND to drive the function,
	// with its region, memory, architecture and timeout as Lambda reports
	// them after Deploy, such as
	// lambda://app?region=us-east-1&memory=1024&arch=arm64&timeout=300s;
	// with shards, lambda://app?region=us-east-1&shards=3&memory=...
	BackendURL string
	// Role is the ARN of the function's execution role, as Lambda reports
	// it after Deploy (shard 0's for shards).
	Role string
	// InvokePolicy is an IAM policy document (JSON) allowing
	// lambda:InvokeFunction on the function (and its versions and aliases),
	// or on every shard NAME-*: what the function's role needs for its
	// workers to invoke their children in an invoker tree
	// (fanout.Options.Tree). Deploy does not change the role, which the
	// caller passed (DeployOptions.Role) or the function already had;
	// `gowren deploy lambda` puts the policy on it (IAM PutRolePolicy), or
	// add it yourself, e.g. with `aws iam put-role-policy`. Empty when
	// Lambda reported no function ARN.
	InvokePolicy string
	// Shards holds what Deploy did to each shard when DeployOptions.Shards
	// is set, shard i at index i; nil otherwise. The result itself then
	// describes them together: Function is their common name, FunctionARN
	// is empty, Created, CodeUpdated and ConfigUpdated report that some
	// shard was, and Arch, MemoryMB and Timeout are shard 0's.
	Shards []*DeployResult
}

var nameChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

func (o *DeployOptions) validate() error {
	switch o.Arch {
	case "":
		o.Arch = string(types.ArchitectureArm64)
	case string(types.ArchitectureArm64), string(types.ArchitectureX8664):
	case "amd64":
		o.Arch = string(types.ArchitectureX8664)
	default:
		return fmt.Errorf("architecture %q: want arm64 or x86_64", o.Arch)
	}
	if o.Name != "" && !functionName.MatchString(o.Name) {
		return fmt.Errorf("function name %q: want 1 to 64 letters, digits, - or _", o.Name)
	}
	if o.Shards < 0 || o.Shards > MaxShards {
		return fmt.Errorf("%d shards: want 1 to %d, or 0 for one function", o.Shards, MaxShards)
	}
	if o.Shards > 0 && len(o.Name)+len(shardSuffix(o.Shards-1)) > 64 {
		return fmt.Errorf("function name %q is too long for %d shards: with the suffix %q it is over Lambda's 64 characters", o.Name, o.Shards, shardSuffix(o.Shards-1))
	}
	if o.MemoryMB != 0 && (o.MemoryMB < minMemoryMB || o.MemoryMB > maxMemoryMB) {
		return fmt.Errorf("memory %d MB: want %d to %d", o.MemoryMB, minMemoryMB, maxMemoryMB)
	}
	if o.Timeout != 0 && (o.Timeout < time.Second || o.Timeout > 15*time.Minute || o.Timeout%time.Second != 0) {
		return fmt.Errorf("timeout %v: want whole seconds from 1s to 15m", o.Timeout)
	}
	for k := range o.Env {
		if !envName.MatchString(k) {
			return fmt.Errorf("environment variable name %q: want a letter followed by letters, digits or _", k)
		}
	}
	if o.Package == "" {
		o.Package = "."
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 5 * time.Minute
	}
	return nil
}

var envName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

func goArch(arch string) string {
	if arch == string(types.ArchitectureX8664) {
		return "amd64"
	}
	return "arm64"
}

// Build cross-compiles the main package of opts for Lambda (linux, the
// architecture of opts.Arch, CGO_ENABLED=0, -tags lambda.norpc, -trimpath,
// no VCS stamp, symbols stripped) and returns the binary zipped as
// bootstrap (see Zip). It first checks that the package is a main package
// importing this package, and returns the package's import path, from which
// Deploy names the function by default. Cancelling ctx stops the build.
func Build(ctx context.Context, opts *DeployOptions) (zipped []byte, importPath string, err error) {
	o := *opts
	if err := o.validate(); err != nil {
		return nil, "", fmt.Errorf("awslambda: build: %w", err)
	}
	env := append(os.Environ(), "GOOS=linux", "GOARCH="+goArch(o.Arch), "CGO_ENABLED=0")
	tags := strings.Join(append([]string{"lambda.norpc"}, o.Tags...), ",")
	p, err := gopkg.List(ctx, "go", o.Dir, env, tags, o.Package)
	if err != nil {
		return nil, "", fmt.Errorf("awslambda: build %q: %w", o.Package, err)
	}
	if p.Name != "main" {
		return nil, "", fmt.Errorf("awslambda: build %q: package %s is not a main package (it is package %s)", o.Package, p.ImportPath, p.Name)
	}
	if !p.Imports(ImportPath) {
		return nil, "", fmt.Errorf("awslambda: build %q: package %s does not import %s, so on Lambda fanout.Init would not serve invocations: add\n\timport _ %q\nto it", o.Package, p.ImportPath, ImportPath, ImportPath)
	}
	dir, err := os.MkdirTemp("", "gowren-deploy-")
	if err != nil {
		return nil, "", fmt.Errorf("awslambda: build %q: %w", o.Package, err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "bootstrap")
	var stderr bytes.Buffer
	// internal/testbuild builds the tests' worker with the same flags.
	build := exec.CommandContext(ctx, "go", "build", "-tags", tags, "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", bin, o.Package)
	build.Dir, build.Env, build.Stdout, build.Stderr = o.Dir, env, &stderr, &stderr
	if err := build.Run(); err != nil {
		return nil, "", fmt.Errorf("awslambda: build %q for linux/%s: %v\n%s", o.Package, goArch(o.Arch), err, stderr.Bytes())
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		return nil, "", fmt.Errorf("awslambda: build %q: %w", o.Package, err)
	}
	zipped, err = Zip(exe)
	if err != nil {
		return nil, "", fmt.Errorf("awslambda: build %q: %w", o.Package, err)
	}
	return zipped, p.ImportPath, nil
}

// zipTime is the modification time of the zipped bootstrap: fixed, so that
// the same binary always gives the same zip and the same code hash.
var zipTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Zip returns a zip archive holding exe as an executable file named
// bootstrap, as the provided.al2023 runtime wants it. The archive depends
// only on exe (fixed time stamp and permissions), so an unchanged binary
// has an unchanged code hash and Deploy skips its upload.
func Zip(exe []byte) ([]byte, error) {
	// Level 5 is archive/zip's own default, which this used before.
	zipped, err := gopkg.ZipExecutable("bootstrap", exe, 5, zipTime)
	if err != nil {
		return nil, fmt.Errorf("zip bootstrap: %w", err)
	}
	return zipped, nil
}

// CodeSHA256 returns the hash Lambda reports for a zip (CodeSha256): the
// base64 of its SHA-256.
func CodeSHA256(zipped []byte) string {
	sum := sha256.Sum256(zipped)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Deploy builds the main package of opts (Build) and creates the Lambda
// function, or updates it: the code only when its hash differs from the
// deployed one (or the architecture changes), the configuration only where
// it differs. With opts.Shards it does so for each shard, from the one
// build. It waits until Lambda reports the function active and the
// update successful, then sets the function's asynchronous invocations to
// be retried 0 times (the gowren executor owns retries). The client's
// retries and region apply; nil opts is an error (Role is needed to create
// a function). Cancelling ctx stops the build or the wait, leaving the
// function as Lambda has it.
func Deploy(ctx context.Context, client *lambda.Client, opts *DeployOptions) (*DeployResult, error) {
	if opts == nil {
		return nil, errors.New("awslambda: deploy: no options")
	}
	o := *opts
	o.Env = maps.Clone(opts.Env)
	if o.Stores != "" {
		if o.Env == nil {
			o.Env = map[string]string{}
		}
		o.Env[envWorkerStores] = o.Stores
	}
	if o.Env == nil {
		o.Env = map[string]string{}
	}
	// The workers of a shard invoke their children on all the shards
	// (see NewHandler); a function deployed alone loses a shard count it
	// may have had.
	o.Env[EnvShards] = ""
	if o.Shards > 0 {
		o.Env[EnvShards] = strconv.Itoa(o.Shards)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("awslambda: deploy: %w", err)
	}
	fmt.Fprintf(o.Log, "building %s for linux/%s\n", o.Package, goArch(o.Arch))
	zipped, importPath, err := Build(ctx, &o)
	if err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = strings.Trim(nameChars.ReplaceAllString(path.Base(importPath), "-"), "-")
		if limit := 64 - len(shardSuffix(o.Shards-1)); o.Shards > 0 && len(o.Name) > limit {
			o.Name = o.Name[:limit]
		} else if len(o.Name) > 64 {
			o.Name = o.Name[:64]
		}
		if o.Name == "" {
			return nil, fmt.Errorf("awslambda: deploy %s: cannot name the function after the package; pass a name", importPath)
		}
	}
	sha := CodeSHA256(zipped)
	fmt.Fprintf(o.Log, "code: %d bytes, sha256 %s\n", len(zipped), sha)
	if o.Shards == 0 {
		d := &deployer{client: client, o: &o, zip: zipped, sha: sha}
		res, err := d.run(ctx)
		if err != nil {
			return nil, fmt.Errorf("awslambda: deploy function %q: %w", o.Name, err)
		}
		return res, nil
	}
	return deployShards(ctx, client, &o, zipped, sha)
}

// shardDeploys is how many shards Deploy creates or updates at once:
// Lambda's control plane allows a few calls per second per function, and
// each deployment mostly waits for its function to become ready.
const shardDeploys = 8

// deployShards deploys the build to each shard of o, shardDeploys at a
// time, and sums up their results. The first shard that fails stops the
// others (an error such as a missing role would repeat for each); the
// shards deployed before it stay deployed.
func deployShards(ctx context.Context, client *lambda.Client, o *DeployOptions, zipped []byte, sha string) (*DeployResult, error) {
	o.Log = &lockedWriter{w: o.Log} // the shards' deployers write lines at once
	shards := make([]*DeployResult, o.Shards)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(shardDeploys)
	for i := range o.Shards {
		so := *o
		so.Name = ShardName(o.Name, i)
		g.Go(func() error {
			if gctx.Err() != nil {
				return nil // another shard failed, or ctx ended
			}
			d := &deployer{client: client, o: &so, zip: zipped, sha: sha, prefix: so.Name + ": "}
			res, err := d.run(gctx)
			if err != nil {
				return fmt.Errorf("awslambda: deploy shard %q of %d: %w", so.Name, o.Shards, err)
			}
			shards[i] = res
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("%w (the shards deployed before the failure stay deployed; run the deployment again to finish)", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("awslambda: deploy %d shards of %q: %w", o.Shards, o.Name, err)
	}
	first := shards[0]
	res := &DeployResult{Function: o.Name, Region: first.Region, CodeSHA256: sha, CodeSize: len(zipped),
		Arch: first.Arch, MemoryMB: first.MemoryMB, Timeout: first.Timeout, Shards: shards}
	for _, r := range shards {
		res.Created = res.Created || r.Created
		res.CodeUpdated = res.CodeUpdated || r.CodeUpdated
		res.ConfigUpdated = res.ConfigUpdated || r.ConfigUpdated
		if r.Arch != first.Arch || r.MemoryMB != first.MemoryMB || r.Timeout != first.Timeout {
			fmt.Fprintf(o.Log, "%s: %s, %d MB, timeout %v, unlike %s (%s, %d MB, timeout %v): pass -arch, -memory and -timeout to make the shards alike\n",
				r.Function, r.Arch, r.MemoryMB, r.Timeout, first.Function, first.Arch, first.MemoryMB, first.Timeout)
		}
	}
	res.Role = first.Role
	res.InvokePolicy = invokePolicy(first.FunctionARN, o.Name, o.Shards)
	res.BackendURL = backendURL(res, o.Shards)
	return res, nil
}

type deployer struct {
	client *lambda.Client
	o      *DeployOptions
	zip    []byte
	sha    string
	prefix string // of its log lines: the shard's name and ": " when deploying shards
}

// lockedWriter serialises the writes of several goroutines to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// logf writes a progress line.
func (d *deployer) logf(format string, a ...any) {
	fmt.Fprintf(d.o.Log, d.prefix+format+"\n", a...)
}

func (d *deployer) run(ctx context.Context) (*DeployResult, error) {
	o := d.o
	res := &DeployResult{Function: o.Name, Region: d.client.Options().Region, CodeSHA256: d.sha, CodeSize: len(d.zip)}
	got, err := d.client.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(o.Name)})
	var nf *types.ResourceNotFoundException
	var cfg *types.FunctionConfiguration
	switch {
	case errors.As(err, &nf):
		cfg, err = d.create(ctx)
		if err != nil {
			return nil, err
		}
		res.Created, res.CodeUpdated, res.ConfigUpdated = true, true, true
	case err != nil:
		return nil, fmt.Errorf("get function: %w", err)
	default:
		cfg = got.Configuration
		if cfg == nil {
			return nil, errors.New("get function: Lambda answered no configuration")
		}
		if cfg.State == types.StatePending {
			if cfg, err = d.waitActive(ctx); err != nil {
				return nil, err
			}
		}
		if cfg.LastUpdateStatus == types.LastUpdateStatusInProgress {
			d.logf("waiting for an update in progress")
			if cfg, err = d.waitUpdated(ctx); err != nil {
				return nil, err
			}
		}
		if cfg, res.CodeUpdated, err = d.updateCode(ctx, cfg); err != nil {
			return nil, err
		}
		if cfg, res.ConfigUpdated, err = d.updateConfig(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if _, err := d.client.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName:         aws.String(o.Name),
		MaximumRetryAttempts: aws.Int32(0),
	}); err != nil {
		return nil, fmt.Errorf("set asynchronous retries to 0: %w", err)
	}
	res.FunctionARN = aws.ToString(cfg.FunctionArn)
	res.Arch = string(types.ArchitectureX8664) // Lambda's default when it reports none
	if len(cfg.Architectures) > 0 {
		res.Arch = string(cfg.Architectures[0])
	}
	res.MemoryMB = int(aws.ToInt32(cfg.MemorySize))
	res.Timeout = time.Duration(aws.ToInt32(cfg.Timeout)) * time.Second
	res.Role = aws.ToString(cfg.Role)
	res.InvokePolicy = invokePolicy(res.FunctionARN, o.Name, 0)
	res.BackendURL = backendURL(res, 0)
	return res, nil
}

// invokePolicy returns the IAM policy document that allows invoking the
// function name (with its versions and aliases) or, when shards is not 0,
// its shards name-0 ... name-(shards-1) (as name-*), in the region and
// account of arn, the ARN of the function or of a shard. It returns "" when
// arn is not a Lambda function's ARN.
func invokePolicy(arn, name string, shards int) string {
	prefix, _, ok := strings.Cut(arn, ":function:")
	if !ok || !strings.HasPrefix(prefix, "arn:") {
		return ""
	}
	prefix += ":function:"
	resources := []string{prefix + name, prefix + name + ":*"}
	if shards > 0 {
		resources = []string{prefix + name + "-*"}
	}
	type statement struct {
		Sid, Effect, Action string
		Resource            []string
	}
	doc := struct {
		Version   string
		Statement []statement
	}{"2012-10-17", []statement{{"GowrenInvokerTree", "Allow", "lambda:InvokeFunction", resources}}}
	b, _ := json.Marshal(doc)
	return string(b)
}

// backendURL returns the lambda:// URL of a deployed function, or of its
// shards when shards is not 0, with the settings Lambda reported after the
// deployment: memory and architecture for cost estimates, timeout for the
// executor's deadlines.
func backendURL(res *DeployResult, shards int) string {
	var params []string
	if res.Region != "" {
		params = append(params, "region="+res.Region)
	}
	if shards > 0 {
		params = append(params, fmt.Sprintf("shards=%d", shards))
	}
	if res.MemoryMB >= minMemoryMB && res.MemoryMB <= maxMemoryMB {
		params = append(params, fmt.Sprintf("memory=%d", res.MemoryMB))
	}
	if res.Arch == string(types.ArchitectureArm64) || res.Arch == string(types.ArchitectureX8664) {
		params = append(params, "arch="+res.Arch)
	}
	if res.Timeout >= time.Second {
		params = append(params, fmt.Sprintf("timeout=%ds", int(res.Timeout/time.Second)))
	}
	return "lambda://" + res.Function + "?" + strings.Join(params, "&")
}

func (d *deployer) create(ctx context.Context) (*types.FunctionConfiguration, error) {
	o := d.o
	if o.Role == "" {
		return nil, errors.New("the function does not exist, and creating it needs a role: pass the ARN of an IAM role that Lambda may assume " +
			"(with the AWSLambdaBasicExecutionRole policy and access to your store's bucket)")
	}
	mem, timeout := o.MemoryMB, o.Timeout
	if mem == 0 {
		mem = DefaultMemoryMB
	}
	if timeout == 0 {
		timeout = DefaultFunctionTimeout
	}
	env := map[string]string{}
	for k, v := range o.Env {
		if v != "" {
			env[k] = v
		}
	}
	d.logf("creating function %s (%s, %s, %d MB, %v)", o.Name, Runtime, o.Arch, mem, timeout)
	in := &lambda.CreateFunctionInput{
		FunctionName:  aws.String(o.Name),
		Runtime:       Runtime,
		Handler:       aws.String("bootstrap"),
		Role:          aws.String(o.Role),
		Code:          &types.FunctionCode{ZipFile: d.zip},
		Architectures: []types.Architecture{types.Architecture(o.Arch)},
		MemorySize:    aws.Int32(int32(mem)),
		Timeout:       aws.Int32(int32(timeout / time.Second)),
		Description:   aws.String("gowren worker"),
		PackageType:   types.PackageTypeZip,
	}
	if len(env) > 0 {
		in.Environment = &types.Environment{Variables: env}
	}
	if _, err := d.client.CreateFunction(ctx, in); err != nil {
		return nil, fmt.Errorf("create function: %w", err)
	}
	return d.waitActive(ctx)
}

func (d *deployer) updateCode(ctx context.Context, cfg *types.FunctionConfiguration) (*types.FunctionConfiguration, bool, error) {
	o := d.o
	arch := types.ArchitectureX8664 // Lambda's default when it reports none
	if len(cfg.Architectures) > 0 {
		arch = cfg.Architectures[0]
	}
	if aws.ToString(cfg.CodeSha256) == d.sha && string(arch) == o.Arch {
		d.logf("code unchanged: not uploading")
		return cfg, false, nil
	}
	d.logf("uploading code (%s)", o.Arch)
	if _, err := d.client.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{
		FunctionName:  aws.String(o.Name),
		ZipFile:       d.zip,
		Architectures: []types.Architecture{types.Architecture(o.Arch)},
	}); err != nil {
		return nil, false, fmt.Errorf("update function code: %w", err)
	}
	cfg, err := d.waitUpdated(ctx)
	return cfg, true, err
}

func (d *deployer) updateConfig(ctx context.Context, cfg *types.FunctionConfiguration) (*types.FunctionConfiguration, bool, error) {
	o := d.o
	in := &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String(o.Name)}
	var changes []string
	if cfg.Runtime != Runtime {
		in.Runtime = Runtime
		changes = append(changes, "runtime "+string(Runtime))
	}
	if aws.ToString(cfg.Handler) != "bootstrap" {
		in.Handler = aws.String("bootstrap")
		changes = append(changes, "handler bootstrap")
	}
	if o.Role != "" && aws.ToString(cfg.Role) != o.Role {
		in.Role = aws.String(o.Role)
		changes = append(changes, "role "+o.Role)
	}
	if o.MemoryMB != 0 && int(aws.ToInt32(cfg.MemorySize)) != o.MemoryMB {
		in.MemorySize = aws.Int32(int32(o.MemoryMB))
		changes = append(changes, fmt.Sprintf("memory %d MB", o.MemoryMB))
	}
	if o.Timeout != 0 && time.Duration(aws.ToInt32(cfg.Timeout))*time.Second != o.Timeout {
		in.Timeout = aws.Int32(int32(o.Timeout / time.Second))
		changes = append(changes, fmt.Sprintf("timeout %v", o.Timeout))
	}
	if len(o.Env) > 0 {
		cur := map[string]string{}
		if cfg.Environment != nil {
			cur = maps.Clone(cfg.Environment.Variables)
		}
		next := maps.Clone(cur)
		for k, v := range o.Env {
			if v == "" {
				delete(next, k)
			} else {
				next[k] = v
			}
		}
		if !maps.Equal(cur, next) {
			in.Environment = &types.Environment{Variables: next}
			keys := slices.Sorted(maps.Keys(next))
			changes = append(changes, "environment "+strings.Join(keys, ","))
		}
	}
	if len(changes) == 0 {
		return cfg, false, nil
	}
	d.logf("updating configuration: %s", strings.Join(changes, "; "))
	if _, err := d.client.UpdateFunctionConfiguration(ctx, in); err != nil {
		return nil, false, fmt.Errorf("update function configuration: %w", err)
	}
	cfg, err := d.waitUpdated(ctx)
	return cfg, true, err
}

func (d *deployer) waitActive(ctx context.Context) (*types.FunctionConfiguration, error) {
	d.logf("waiting for the function to become active")
	w := lambda.NewFunctionActiveV2Waiter(d.client, func(wo *lambda.FunctionActiveV2WaiterOptions) {
		wo.MinDelay = d.o.PollInterval
		wo.MaxDelay = max(wo.MaxDelay, d.o.PollInterval)
	})
	out, err := w.WaitForOutput(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(d.o.Name)}, d.o.MaxWait)
	if err != nil {
		return nil, fmt.Errorf("wait for the function to become active: %w", err)
	}
	return out.Configuration, nil
}

func (d *deployer) waitUpdated(ctx context.Context) (*types.FunctionConfiguration, error) {
	w := lambda.NewFunctionUpdatedV2Waiter(d.client, func(wo *lambda.FunctionUpdatedV2WaiterOptions) {
		wo.MinDelay = d.o.PollInterval
		wo.MaxDelay = max(wo.MaxDelay, d.o.PollInterval)
	})
	out, err := w.WaitForOutput(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(d.o.Name)}, d.o.MaxWait)
	if err != nil {
		return nil, fmt.Errorf("wait for the update to finish: %w", err)
	}
	return out.Configuration, nil
}

// envWorkerStores is fanout.EnvWorkerStores.
const envWorkerStores = "GOWREN_WORKER_STORES"
