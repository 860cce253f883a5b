package tencentscf

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/internal/gopkg"
)

// ImportPath is this package's import path. A program deployed to SCF must
// import it (a blank import is enough) so that fanout.Init serves SCF's
// runtime; Build and Deploy refuse programs that do not.
const ImportPath = "github.com/gowren/gowren/backends/tencentscf"

// What Deploy creates: a Go1 function whose handler is the executable
// "main" at the root of the code package.
const (
	deployRuntime = "Go1"
	deployHandler = "main"
	// maxZip is UpdateFunctionCode's limit on an inline zip.
	maxZip = 20 << 20
	// maxEnv is SCF's limit on a function's environment variables.
	maxEnv = 4 << 10
)

// Settings of a function Deploy creates when DeployOptions leave them zero.
const (
	DefaultMemoryMB = 512
	DefaultTimeout  = 300 * time.Second
)

// defaultDescription describes a function Deploy creates without
// DeployOptions.Description.
const defaultDescription = "gowren worker, deployed by gowren deploy scf"

// DeployOptions configure Deploy. Function is required. The function's
// settings (MemoryMB, Timeout, Env, Role, Description) left zero take their
// defaults when the function is created and keep the function's current
// values when it is updated.
type DeployOptions struct {
	// Function is the SCF function's name.
	Function string
	// Namespace is the function's namespace, which must exist. Defaults to
	// "default".
	Namespace string
	// Package is the main package to build, as go build takes it.
	// Defaults to ".".
	Package string
	// Dir is the directory go build runs in. Defaults to the current
	// directory.
	Dir string
	// Binary, when set, is a linux/amd64 executable to deploy instead of
	// building Package. Defaults to "": Package is built.
	Binary string
	// MemoryMB is the function's memory: 64, or a multiple of 128 from
	// 128 to 3072. SCF gives CPU in proportion. Defaults to
	// DefaultMemoryMB (512) for a new function and to the current memory
	// for an existing one.
	MemoryMB int
	// Timeout is the function's timeout, whole seconds from 1s to 900s.
	// Defaults to DefaultTimeout (300s) for a new function and to the
	// current timeout for an existing one.
	Timeout time.Duration
	// Env, when not nil, replaces the function's environment variables
	// (4 KB in all). Defaults to nil: a new function gets none and an
	// existing one keeps its own.
	Env map[string]string
	// Stores, when not empty, is the allow-list of stores the function's
	// workers may open, written into its environment as
	// GOWREN_WORKER_STORES (see fanout.EnvWorkerStores), e.g.
	// "s3://bucket-1250000000/gowren?region=ap-guangzhou&endpoint=https://cos.ap-guangzhou.myqcloud.com".
	// Defaults to none: the variable is left as it is, and where it is
	// unset workers may open any s3:// store.
	Stores string
	// Role is the CAM role the function runs as, which gives its code
	// temporary credentials; setting it needs cam:PassRole on the role.
	// Defaults to none for a new function and to the current role for an
	// existing one.
	Role string
	// Description describes the function. Defaults to a note that gowren
	// deployed it for a new function and to the current description for an
	// existing one.
	Description string
	// PollInterval is the first wait between status checks while SCF
	// creates or updates the function; later waits grow to ten times it.
	// Defaults to 1s.
	PollInterval time.Duration
	// Log receives progress lines. Defaults to io.Discard.
	Log io.Writer
}

// DeployResult describes a finished deployment.
type DeployResult struct {
	// Function, Region and Namespace name the function.
	Function, Region, Namespace string
	// Created reports that the function was created rather than updated.
	// CodeUpdated reports that the code was uploaded: always for a new
	// function, and for an existing one unless SCF reported the hash of
	// the very same code package. ConfigUpdated reports that the
	// function's settings were sent (on update, only when some differed).
	Created, CodeUpdated, ConfigUpdated bool
	// ZipBytes is the size of the code package.
	ZipBytes int
	// CodeSHA256 is the hex SHA-256 of the code package.
	CodeSHA256 string
	// MemoryMB and Timeout are the function's memory and timeout after the
	// deployment.
	MemoryMB int
	Timeout  time.Duration
	// Role is the function's execution role after the deployment, "" for
	// none.
	Role string
}

// InvokerStatement returns the statement of a CAM policy (JSON) that lets
// the function's execution role invoke the function: its workers need it
// to start their children, as the invokers of an invoker tree
// (fanout.Options.Tree) do. Workers invoke children synchronously only
// (InvokeFunction), so the statement allows nothing else. UIN stands for
// the account's ID, which Deploy does not learn; GrantInvoke puts the
// statement, with it, in a policy attached to the role.
func (r *DeployResult) InvokerStatement() string {
	return r.invokerStatement("UIN")
}

// InvokePolicyName is the name of the CAM policy GrantInvoke attaches to
// the function's role: gowren-invoke-NAME, or gowren-invoke-NAMESPACE-NAME
// outside the default namespace.
func (r *DeployResult) InvokePolicyName() string {
	if r.Namespace == "" || r.Namespace == defaultNamespace {
		return "gowren-invoke-" + r.Function
	}
	return "gowren-invoke-" + r.Namespace + "-" + r.Function
}

// CAM's API, which GrantInvoke calls.
const (
	camService = "cam"
	camVersion = "2019-01-16"
)

// GrantInvoke lets the function's execution role invoke the function, as
// the invokers of an invoker tree need: it learns the account's UIN (CAM
// GetUserAppId), creates the policy InvokePolicyName with
// InvokerStatement (CreatePolicy; UpdatePolicy when a policy of that name
// exists) and attaches it to the role (AttachRolePolicy). c is a client
// of the Cloud API as NewClient makes it, with keys allowed those CAM
// actions. It returns the policy document. A result without a role is an
// error.
func GrantInvoke(ctx context.Context, c *common.Client, r *DeployResult) (string, error) {
	if r.Role == "" {
		return "", errors.New("tencentscf: grant: the function has no execution role")
	}
	var who struct{ OwnerUin string }
	if err := callService(ctx, c, camService, camVersion, "GetUserAppId", map[string]any{}, &who); err != nil {
		return "", fmt.Errorf("tencentscf: grant: cam GetUserAppId: %w", err)
	}
	if who.OwnerUin == "" {
		return "", errors.New("tencentscf: grant: cam GetUserAppId gave no OwnerUin")
	}
	doc := `{"version":"2.0","statement":[` + r.invokerStatement(who.OwnerUin) + `]}`
	name := r.InvokePolicyName()
	p := map[string]any{"PolicyName": name, "PolicyDocument": doc,
		"Description": "gowren: the function's workers invoke it (invoker trees)"}
	err := callService(ctx, c, camService, camVersion, "CreatePolicy", p, nil)
	var te *tcerr.TencentCloudSDKError
	if errors.As(err, &te) && te.Code == "FailedOperation.PolicyNameInUse" {
		err = callService(ctx, c, camService, camVersion, "UpdatePolicy", p, nil)
	}
	if err != nil {
		return "", fmt.Errorf("tencentscf: grant: cam policy %s: %w", name, err)
	}
	if err := callService(ctx, c, camService, camVersion, "AttachRolePolicy", map[string]any{"PolicyName": name, "AttachRoleName": r.Role}, nil); err != nil {
		return "", fmt.Errorf("tencentscf: grant: attach cam policy %s to role %s: %w", name, r.Role, err)
	}
	return doc, nil
}

func (r *DeployResult) invokerStatement(uin string) string {
	ns := r.Namespace
	if ns == "" {
		ns = defaultNamespace
	}
	b, _ := json.Marshal(struct {
		Effect   string   `json:"effect"`
		Action   []string `json:"action"`
		Resource []string `json:"resource"`
	}{"allow", []string{"scf:InvokeFunction"}, []string{fmt.Sprintf("qcs::scf:%s:uin/%s:namespace/%s/function/%s", r.Region, uin, ns, r.Function)}})
	return string(b)
}

// URL is the GOWREN_BACKEND URL for the function, with its timeout and
// memory. Endpoint, when not empty, is added as the endpoint parameter.
func (r *DeployResult) URL(endpoint string) string {
	q := url.Values{}
	q.Set("region", r.Region)
	if r.Namespace != "" && r.Namespace != defaultNamespace {
		q.Set("namespace", r.Namespace)
	}
	q.Set("timeout", r.Timeout.String())
	if r.MemoryMB > 0 {
		q.Set("memory", strconv.Itoa(r.MemoryMB))
	}
	if endpoint != "" {
		q.Set("endpoint", endpoint)
	}
	return (&url.URL{Scheme: "scf", Host: r.Function, RawQuery: q.Encode()}).String()
}

// Deploy builds the main package for SCF's Go1 runtime (see Build), zips
// it deterministically, and creates the function through client, or updates
// an existing one: its code unless SCF reports the hash of the same code
// package (GetFunctionAddress), and only those of its settings that opts
// sets and that differ. It waits until SCF reports the function Active,
// polling with growing waits, and gives up when ctx ends, leaving the
// function as SCF has it. The program must call fanout.Init first thing
// and import this package (ImportPath); Deploy refuses a package, or a
// prebuilt DeployOptions.Binary, without it.
func Deploy(ctx context.Context, client *common.Client, opts *DeployOptions) (*DeployResult, error) {
	o, err := checkDeploy(opts)
	if err != nil {
		return nil, err
	}
	d := &deployer{client: client, o: o, s: site{op: "deploy", function: o.Function, region: client.GetRegion(), namespace: o.Namespace}}
	bin, err := d.binary(ctx)
	if err != nil {
		return nil, err
	}
	// Fast compression first; the best only when that is over the limit.
	zipped, err := gopkg.ZipExecutable(deployHandler, bin, flate.BestSpeed, zipTime)
	if err == nil && len(zipped) > maxZip {
		zipped, err = gopkg.ZipExecutable(deployHandler, bin, flate.BestCompression, zipTime)
	}
	if err != nil {
		return nil, fmt.Errorf("%v: zip: %w", d.s, err)
	}
	if len(zipped) > maxZip {
		return nil, fmt.Errorf("%v: the code package is %d MB, over SCF's %d MB limit for inline uploads", d.s, len(zipped)>>20, maxZip>>20)
	}
	sum := sha256.Sum256(zipped)
	res := &DeployResult{Function: o.Function, Region: client.GetRegion(), Namespace: o.Namespace, ZipBytes: len(zipped),
		CodeSHA256: hex.EncodeToString(sum[:])}
	info, err := d.get(ctx)
	switch {
	case errors.Is(err, errNoFunction):
		d.logf("creating function %s in %s (namespace %s)", o.Function, res.Region, o.Namespace)
		if err := d.call(ctx, "CreateFunction", d.createParams(zipped)); err != nil {
			return nil, err
		}
		res.Created, res.CodeUpdated, res.ConfigUpdated = true, true, true
	case err != nil:
		return nil, err
	default:
		if info.Runtime != "" && info.Runtime != deployRuntime {
			return nil, fmt.Errorf("%v: the function exists with runtime %s; gowren deploys Go1 functions: delete it or choose another name", d.s, info.Runtime)
		}
		if info.Status != statusActive {
			if info, err = d.waitActive(ctx); err != nil {
				return nil, err
			}
		}
		if res.CodeUpdated, err = d.updateCode(ctx, info, zipped, res.CodeSHA256); err != nil {
			return nil, err
		}
		if res.CodeUpdated {
			if info, err = d.waitActive(ctx); err != nil {
				return nil, err
			}
		}
		if res.ConfigUpdated, err = d.updateConfig(ctx, info); err != nil {
			return nil, err
		}
	}
	info, err = d.waitActive(ctx)
	if err != nil {
		return nil, err
	}
	res.MemoryMB, res.Timeout, res.Role = info.MemorySize, time.Duration(info.Timeout)*time.Second, info.Role
	d.logf("function %s is active: %d MB, timeout %v", o.Function, res.MemoryMB, res.Timeout)
	return res, nil
}

// updateCode uploads the code package unless the function already runs the
// same one with the same handler. SCF's GetFunctionAddress reports a
// SHA-256 of the function's code; only when it equals the package's own
// hash is the upload skipped. A hash that cannot be read (the key may not
// be allowed scf:GetFunctionAddress) or that SCF computes over something
// else only costs an upload.
func (d *deployer) updateCode(ctx context.Context, info *functionInfo, zipped []byte, sha string) (bool, error) {
	if info.Handler == deployHandler {
		var addr struct{ CodeSha256 string }
		err := d.callOut(ctx, "GetFunctionAddress", map[string]any{
			"FunctionName": d.o.Function, "Namespace": d.o.Namespace, "Qualifier": "$LATEST",
		}, &addr)
		switch {
		case err != nil && ctx.Err() != nil:
			return false, err
		case err != nil:
			d.logf("cannot read the deployed code's hash, uploading the code: %v", err)
		case sameCode(addr.CodeSha256, sha):
			d.logf("code unchanged (sha256 %s): not uploading", sha)
			return false, nil
		}
	}
	d.logf("uploading code of function %s (%d bytes, sha256 %s)", d.o.Function, len(zipped), sha)
	if err := d.call(ctx, "UpdateFunctionCode", map[string]any{
		"FunctionName": d.o.Function, "Namespace": d.o.Namespace, "Handler": deployHandler,
		"ZipFile": base64.StdEncoding.EncodeToString(zipped), "CodeSource": "ZipFile",
	}); err != nil {
		return false, err
	}
	return true, nil
}

// sameCode reports whether deployed, the hash SCF reports, is shaHex, the
// hex SHA-256 of the code package: written in hex in either case, or in
// base64 as AWS Lambda writes it.
func sameCode(deployed, shaHex string) bool {
	deployed = strings.TrimSpace(deployed)
	if deployed == "" {
		return false
	}
	if strings.EqualFold(deployed, shaHex) {
		return true
	}
	raw, err := hex.DecodeString(shaHex)
	return err == nil && deployed == base64.StdEncoding.EncodeToString(raw)
}

// updateConfig sends UpdateFunctionConfiguration with the settings that
// the options set and that differ from info, the function's; with none, it
// sends nothing.
func (d *deployer) updateConfig(ctx context.Context, info *functionInfo) (bool, error) {
	o := d.o
	p := map[string]any{"FunctionName": o.Function, "Namespace": o.Namespace}
	var changes []string
	if o.MemoryMB != 0 && info.MemorySize != o.MemoryMB {
		p["MemorySize"] = o.MemoryMB
		changes = append(changes, fmt.Sprintf("memory %d MB (was %d)", o.MemoryMB, info.MemorySize))
	}
	if secs := int(o.Timeout / time.Second); secs != 0 && info.Timeout != secs {
		p["Timeout"] = secs
		changes = append(changes, fmt.Sprintf("timeout %v (was %v)", o.Timeout, time.Duration(info.Timeout)*time.Second))
	}
	if env := withStores(o.Env, info.env(), o.Stores); env != nil && !maps.Equal(info.env(), env) {
		p["Environment"] = envParam(env)
		changes = append(changes, "environment "+strings.Join(sortedKeys(env), ","))
	}
	if o.Role != "" && info.Role != o.Role {
		p["Role"] = o.Role
		changes = append(changes, "role "+o.Role)
	}
	if o.Description != "" && info.Description != o.Description {
		p["Description"] = o.Description
		changes = append(changes, "description")
	}
	if len(changes) == 0 {
		d.logf("configuration unchanged")
		return false, nil
	}
	d.logf("updating configuration: %s", strings.Join(changes, "; "))
	if err := d.call(ctx, "UpdateFunctionConfiguration", p); err != nil {
		return false, err
	}
	return true, nil
}

const statusActive = "Active"

var errNoFunction = errors.New("no such function")

func checkDeploy(opts *DeployOptions) (DeployOptions, error) {
	var o DeployOptions
	if opts != nil {
		o = *opts
	}
	fail := func(format string, args ...any) (DeployOptions, error) {
		return o, fmt.Errorf("tencentscf: deploy %q: %s", o.Function, fmt.Sprintf(format, args...))
	}
	if err := validFunctionName(o.Function); err != nil {
		return fail("%v", err)
	}
	if o.Namespace == "" {
		o.Namespace = defaultNamespace
	}
	if o.Package == "" {
		o.Package = "."
	}
	if o.MemoryMB != 0 {
		if err := validMemory(o.MemoryMB); err != nil {
			return fail("%v", err)
		}
	}
	if o.Timeout != 0 && (o.Timeout < time.Second || o.Timeout > MaxTimeout || o.Timeout%time.Second != 0) {
		return fail("timeout %v: SCF takes whole seconds from 1s to 900s", o.Timeout)
	}
	size := 0
	for k, v := range o.Env {
		if k == "" || strings.ContainsAny(k, "= \t\n") {
			return fail("environment variable name %q is not valid", k)
		}
		size += len(k) + len(v)
	}
	if size > maxEnv {
		return fail("environment variables take %d bytes; SCF allows 4 KB", size)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return o, nil
}

type deployer struct {
	client *common.Client
	o      DeployOptions
	s      site
}

func (d *deployer) logf(format string, args ...any) {
	fmt.Fprintf(d.o.Log, format+"\n", args...)
}

// binary returns the executable to deploy: Binary, checked, or Package
// built.
func (d *deployer) binary(ctx context.Context) ([]byte, error) {
	if d.o.Binary != "" {
		b, err := os.ReadFile(d.o.Binary)
		if err != nil {
			return nil, fmt.Errorf("%v: %w", d.s, err)
		}
		if err := checkELF(b); err != nil {
			return nil, fmt.Errorf("%v: %s: %w", d.s, d.o.Binary, err)
		}
		if !linksPackage(b) {
			return nil, fmt.Errorf("%v: %s does not contain package %s, so on SCF fanout.Init would not serve invocations and every one would fail "+
				"(SCF reports the instance exited): add\n\timport _ %q\nto the program's main package and build it again", d.s, d.o.Binary, ImportPath, ImportPath)
		}
		return b, nil
	}
	dir, err := os.MkdirTemp("", "gowren-deploy-")
	if err != nil {
		return nil, fmt.Errorf("%v: %w", d.s, err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, deployHandler)
	d.logf("building %s for linux/amd64", d.o.Package)
	if err := Build(ctx, d.o.Dir, d.o.Package, out); err != nil {
		return nil, fmt.Errorf("%v: %w", d.s, err)
	}
	return os.ReadFile(out)
}

// checkELF reports whether b is a Linux x86-64 executable, which SCF's Go1
// runtime runs.
func checkELF(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not a Linux executable (build it with GOOS=linux GOARCH=amd64): %w", err)
	}
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 || f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("an ELF %v %v file, not an x86-64 executable (build it with GOOS=linux GOARCH=amd64)", f.Class, f.Machine)
	}
	return nil
}

// linksPackage reports whether exe, a Go executable, contains this
// package. Go keeps the full names of the functions it links, such as
// ImportPath+".init.0", for stack traces (in its pclntab), even in an
// executable stripped of symbol tables.
func linksPackage(exe []byte) bool {
	return bytes.Contains(exe, []byte(ImportPath+"."))
}

// Build compiles the main package pkg, in directory dir ("" for the
// current one), into the executable out for SCF's Go1 runtime: GOOS=linux,
// GOARCH=amd64, CGO_ENABLED=0, -trimpath and stripped of symbol tables
// (stack traces keep their function names and lines). It first checks,
// with go list, that pkg is one main package that imports this package
// (ImportPath), without which the function would fail every invocation.
// It runs the go command found in PATH, which ctx ending stops; the
// command's output is part of the error.
func Build(ctx context.Context, dir, pkg, out string) error {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("build %s: no go command in PATH: %w", pkg, err)
	}
	env := append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
	if err := checkImports(ctx, goCmd, dir, pkg, env); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = env
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s: %w\n%s", pkg, err, strings.TrimSpace(output.String()))
	}
	return nil
}

// checkImports checks with go list, for the build's platform, that pkg is
// a single main package and that it imports this package, directly or
// through its dependencies.
func checkImports(ctx context.Context, goCmd, dir, pkg string, env []string) error {
	p, err := gopkg.List(ctx, goCmd, dir, env, "", pkg)
	if err != nil {
		return fmt.Errorf("build %s: %w", pkg, err)
	}
	if p.Name != "main" {
		return fmt.Errorf("build %s: package %s is not a main package (it is package %s)", pkg, p.ImportPath, p.Name)
	}
	if !p.Imports(ImportPath) {
		return fmt.Errorf("build %s: package %s does not import %s, so on SCF fanout.Init would not serve invocations and every one would fail "+
			"(SCF reports the instance exited): add\n\timport _ %q\nto it", pkg, p.ImportPath, ImportPath, ImportPath)
	}
	return nil
}

// zipTime is the modification time of every zipped file, so that the same
// binary always makes the same zip.
var zipTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// envParam is the Environment parameter that sets env.
func envParam(env map[string]string) map[string]any {
	vars := make([]map[string]any, 0, len(env))
	for _, k := range sortedKeys(env) {
		vars = append(vars, map[string]any{"Key": k, "Value": env[k]})
	}
	return map[string]any{"Variables": vars}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// createParams are CreateFunction's parameters: the options, with the
// defaults for the settings they leave zero.
func (d *deployer) createParams(zipped []byte) map[string]any {
	o := d.o
	mem, timeout, desc := o.MemoryMB, o.Timeout, o.Description
	if mem == 0 {
		mem = DefaultMemoryMB
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if desc == "" {
		desc = defaultDescription
	}
	p := map[string]any{
		"FunctionName": o.Function, "Namespace": o.Namespace, "Runtime": deployRuntime,
		"MemorySize": mem, "Timeout": int(timeout / time.Second), "Description": desc,
	}
	if env := withStores(o.Env, nil, o.Stores); env != nil {
		p["Environment"] = envParam(env)
	}
	if o.Role != "" {
		p["Role"] = o.Role
	}
	p["Handler"] = deployHandler
	p["Type"] = "Event"
	p["CodeSource"] = "ZipFile"
	p["Code"] = map[string]any{"ZipFile": base64.StdEncoding.EncodeToString(zipped)}
	return p
}

// functionInfo is the part of GetFunction's response Deploy reads.
type functionInfo struct {
	Status        string
	StatusDesc    string
	Runtime       string
	Handler       string
	MemorySize    int
	Timeout       int // seconds
	Role          string
	Description   string
	Environment   *struct{ Variables []struct{ Key, Value string } }
	StatusReasons []struct {
		ErrorCode    string
		ErrorMessage string
	}
}

// env returns the function's environment variables.
func (f *functionInfo) env() map[string]string {
	m := map[string]string{}
	if f.Environment != nil {
		for _, v := range f.Environment.Variables {
			m[v.Key] = v.Value
		}
	}
	return m
}

// get returns the function's state, or errNoFunction.
func (d *deployer) get(ctx context.Context) (*functionInfo, error) {
	var info functionInfo
	err := d.callOut(ctx, "GetFunction", map[string]any{"FunctionName": d.o.Function, "Namespace": d.o.Namespace}, &info)
	var se *tcerr.TencentCloudSDKError
	if errors.As(err, &se) && (se.Code == "ResourceNotFound.Function" || se.Code == "ResourceNotFound.FunctionName") {
		return nil, errNoFunction
	}
	if err != nil {
		return nil, err
	}
	return &info, nil
}

func (d *deployer) call(ctx context.Context, action string, params map[string]any) error {
	return d.callOut(ctx, action, params, nil)
}

// callOut makes an API call, retrying throttled ones (the management
// actions allow 20 calls a second) with growing waits. Errors are
// classified like Invoke's and keep the SDK error reachable with errors.As.
func (d *deployer) callOut(ctx context.Context, action string, params map[string]any, out any) error {
	s := d.s
	s.op = "deploy: " + action
	wait := d.o.PollInterval
	for {
		err := call(ctx, d.client, action, params, out)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%v: %w", s, ctx.Err())
		}
		if err := s.classifyAPI(err); !errors.Is(err, backends.ErrThrottled) {
			return err
		}
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("%v: %w", s, err)
		}
		wait = min(2*wait, 10*d.o.PollInterval)
	}
}

// waitActive polls GetFunction until the function is Active and returns
// its state then.
func (d *deployer) waitActive(ctx context.Context) (*functionInfo, error) {
	wait := d.o.PollInterval
	for {
		info, err := d.get(ctx)
		if errors.Is(err, errNoFunction) {
			return nil, fmt.Errorf("%v: the function disappeared while deploying", d.s)
		}
		if err != nil {
			return nil, err
		}
		switch st := info.Status; {
		case st == statusActive:
			return info, nil
		case strings.HasSuffix(st, "Failed"):
			msg := info.StatusDesc
			for _, r := range info.StatusReasons {
				msg += fmt.Sprintf("; %s: %s", r.ErrorCode, r.ErrorMessage)
			}
			return nil, fmt.Errorf("%v: SCF reports the function %s: %s", d.s, st, strings.TrimPrefix(msg, "; "))
		default:
			d.logf("waiting: function is %s", st)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("%v: waiting for the function to become Active: %w", d.s, err)
		}
		wait = min(wait*3/2, 10*d.o.PollInterval)
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// envWorkerStores is fanout.EnvWorkerStores.
const envWorkerStores = "GOWREN_WORKER_STORES"

// withStores returns the environment to set: env (or, when it is nil, cur)
// with the store allow-list added when stores is not empty; nil when
// neither env nor stores asks for a change.
func withStores(env, cur map[string]string, stores string) map[string]string {
	if stores == "" {
		return env
	}
	if env == nil {
		env = cur
	}
	env = maps.Clone(env)
	if env == nil {
		env = map[string]string{}
	}
	env[envWorkerStores] = stores
	return env
}
