package tencentscf

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"debug/elf"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"

	"github.com/gowren/gowren/backends"
)

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

// Defaults of DeployOptions.
const (
	DefaultMemoryMB = 512
	DefaultTimeout  = 300 * time.Second
)

// DeployOptions configure Deploy. Function is required; every other field
// has a default.
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
	// 128 to 3072. SCF gives CPU in proportion. Defaults to 512.
	MemoryMB int
	// Timeout is the function's timeout, whole seconds from 1s to 900s.
	// Defaults to 300s.
	Timeout time.Duration
	// Env, when not nil, replaces the function's environment variables
	// (4 KB in all). Defaults to nil: a new function gets none and an
	// existing one keeps its own.
	Env map[string]string
	// Role is the CAM role the function runs as, which gives its code
	// temporary credentials. Defaults to none.
	Role string
	// Description describes the function. Defaults to a note that gowren
	// deployed it.
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
	Created bool
	// ZipBytes is the size of the uploaded code package.
	ZipBytes int
	// Timeout is the function's timeout.
	Timeout time.Duration
}

// URL is the GOWREN_BACKEND URL for the function. Endpoint, when not empty,
// is added as the endpoint parameter.
func (r *DeployResult) URL(endpoint string) string {
	q := url.Values{}
	q.Set("region", r.Region)
	if r.Namespace != "" && r.Namespace != defaultNamespace {
		q.Set("namespace", r.Namespace)
	}
	q.Set("timeout", r.Timeout.String())
	if endpoint != "" {
		q.Set("endpoint", endpoint)
	}
	return (&url.URL{Scheme: "scf", Host: r.Function, RawQuery: q.Encode()}).String()
}

// Deploy builds the main package for SCF's Go1 runtime (linux/amd64,
// CGO_ENABLED=0, -trimpath, symbols stripped, binary "main"), zips it
// deterministically, creates the function through client or updates its
// code and configuration, and waits until SCF reports it Active. It polls
// with growing waits and gives up when ctx ends. The program must call
// fanout.Init first thing and link this package (a blank import is enough)
// for the worker runtime.
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
	zipped, err := zipExecutable(deployHandler, bin, flate.BestSpeed)
	if err == nil && len(zipped) > maxZip {
		zipped, err = zipExecutable(deployHandler, bin, flate.BestCompression)
	}
	if err != nil {
		return nil, fmt.Errorf("%v: zip: %w", d.s, err)
	}
	if len(zipped) > maxZip {
		return nil, fmt.Errorf("%v: the code package is %d MB, over SCF's %d MB limit for inline uploads", d.s, len(zipped)>>20, maxZip>>20)
	}
	res := &DeployResult{Function: o.Function, Region: client.GetRegion(), Namespace: o.Namespace, ZipBytes: len(zipped), Timeout: o.Timeout}
	info, err := d.get(ctx)
	switch {
	case errors.Is(err, errNoFunction):
		d.logf("creating function %s in %s (namespace %s)", o.Function, res.Region, o.Namespace)
		if err := d.call(ctx, "CreateFunction", d.createParams(zipped)); err != nil {
			return nil, err
		}
		res.Created = true
	case err != nil:
		return nil, err
	default:
		if info.Runtime != "" && info.Runtime != deployRuntime {
			return nil, fmt.Errorf("%v: the function exists with runtime %s; gowren deploys Go1 functions: delete it or choose another name", d.s, info.Runtime)
		}
		if info.Status != statusActive {
			if err := d.waitActive(ctx); err != nil {
				return nil, err
			}
		}
		d.logf("updating code of function %s in %s (namespace %s)", o.Function, res.Region, o.Namespace)
		if err := d.call(ctx, "UpdateFunctionCode", map[string]any{
			"FunctionName": o.Function, "Namespace": o.Namespace, "Handler": deployHandler,
			"ZipFile": base64.StdEncoding.EncodeToString(zipped), "CodeSource": "ZipFile",
		}); err != nil {
			return nil, err
		}
		if err := d.waitActive(ctx); err != nil {
			return nil, err
		}
		d.logf("updating configuration: %d MB, timeout %v", o.MemoryMB, o.Timeout)
		if err := d.call(ctx, "UpdateFunctionConfiguration", d.configParams()); err != nil {
			return nil, err
		}
	}
	if err := d.waitActive(ctx); err != nil {
		return nil, err
	}
	d.logf("function %s is active", o.Function)
	return res, nil
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
	if o.MemoryMB == 0 {
		o.MemoryMB = DefaultMemoryMB
	}
	if m := o.MemoryMB; m != 64 && (m < 128 || m > 3072 || m%128 != 0) {
		return fail("memory %d MB: SCF takes 64, or a multiple of 128 from 128 to 3072", m)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Timeout < time.Second || o.Timeout > MaxTimeout || o.Timeout%time.Second != 0 {
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
	if o.Description == "" {
		o.Description = "gowren worker, deployed by gowren deploy scf"
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

// Build compiles the main package pkg, in directory dir ("" for the
// current one), into the executable out for SCF's Go1 runtime: GOOS=linux,
// GOARCH=amd64, CGO_ENABLED=0, -trimpath and stripped of symbol tables
// (stack traces keep their function names and lines). It runs the go
// command found in PATH, which ctx ending stops; the command's output is
// part of the error.
func Build(ctx context.Context, dir, pkg, out string) error {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("build %s: no go command in PATH: %w", pkg, err)
	}
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s: %w\n%s", pkg, err, strings.TrimSpace(output.String()))
	}
	return nil
}

// zipTime is the modification time of every zipped file, so that the same
// binary always makes the same zip.
var zipTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// zipExecutable returns a zip holding one executable file, compressed at
// the given flate level. The same input always makes the same bytes.
func zipExecutable(name string, data []byte, level int) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) { return flate.NewWriter(w, level) })
	h := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: zipTime}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (d *deployer) configParams() map[string]any {
	p := map[string]any{
		"FunctionName": d.o.Function, "Namespace": d.o.Namespace, "Runtime": deployRuntime,
		"MemorySize": d.o.MemoryMB, "Timeout": int(d.o.Timeout / time.Second), "Description": d.o.Description,
	}
	if d.o.Env != nil {
		keys := make([]string, 0, len(d.o.Env))
		for k := range d.o.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		vars := make([]map[string]any, 0, len(keys))
		for _, k := range keys {
			vars = append(vars, map[string]any{"Key": k, "Value": d.o.Env[k]})
		}
		p["Environment"] = map[string]any{"Variables": vars}
	}
	if d.o.Role != "" {
		p["Role"] = d.o.Role
	}
	return p
}

func (d *deployer) createParams(zipped []byte) map[string]any {
	p := d.configParams()
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
	StatusReasons []struct {
		ErrorCode    string
		ErrorMessage string
	}
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

// waitActive polls GetFunction until the function is Active.
func (d *deployer) waitActive(ctx context.Context) error {
	wait := d.o.PollInterval
	for {
		info, err := d.get(ctx)
		if errors.Is(err, errNoFunction) {
			return fmt.Errorf("%v: the function disappeared while deploying", d.s)
		}
		if err != nil {
			return err
		}
		switch st := info.Status; {
		case st == statusActive:
			return nil
		case strings.HasSuffix(st, "Failed"):
			msg := info.StatusDesc
			for _, r := range info.StatusReasons {
				msg += fmt.Sprintf("; %s: %s", r.ErrorCode, r.ErrorMessage)
			}
			return fmt.Errorf("%v: SCF reports the function %s: %s", d.s, st, strings.TrimPrefix(msg, "; "))
		default:
			d.logf("waiting: function is %s", st)
		}
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("%v: waiting for the function to become Active: %w", d.s, err)
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
