package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/gowren/gowren/backends/tencentscf"
)

func init() {
	deployers["scf"] = deploySCF
}

const deploySCFUsage = `usage: gowren deploy scf -function NAME [flags] [PACKAGE]

Builds the main package PACKAGE (default ".") for Tencent Cloud SCF's Go1
runtime (linux/amd64, CGO_ENABLED=0, -trimpath, binary "main"), zips it,
creates the function or updates it through the Tencent Cloud API, waits
until it is Active, and prints the GOWREN_BACKEND URL to use it. The program
must call fanout.Init() first thing in main and import
github.com/gowren/gowren/backends/tencentscf; a package (or -binary) without
it is refused.

A new function gets -memory 512 and -timeout 300s unless given. Updating an
existing function uploads its code only when it changed, and changes only
the settings given as flags: the others keep their current values.

Credentials come from TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY
(and TENCENTCLOUD_SESSION_TOKEN for temporary credentials). -role also needs
cam:PassRole on the role. Workers invoke the function themselves (the
invokers of an invoker tree, fanout.Options.Tree) with the keys of the
-role's execution role: deploy creates (or updates) the CAM policy
gowren-invoke-NAME (gowren-invoke-NAMESPACE-NAME outside the default
namespace) allowing scf:InvokeFunction on the function and attaches
it to the role (cam:GetUserAppId, cam:CreatePolicy, cam:UpdatePolicy and
cam:AttachRolePolicy). With -grant=false, or when CAM refuses, it prints the
statement instead. Before building, the function is read once, so that
refused credentials or a missing permission fail at once.

flags:
`

// envFlags collects repeated -env KEY=VALUE flags.
type envFlags map[string]string

func (e envFlags) String() string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (e envFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	e[k] = v
	return nil
}

func deploySCF(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gowren deploy scf", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, deploySCFUsage)
		fs.PrintDefaults()
	}
	env := envFlags{}
	var o tencentscf.DeployOptions
	fs.StringVar(&o.Function, "function", "", "the SCF function's `name` (required)")
	region := fs.String("region", os.Getenv(tencentscf.EnvRegion), "the `region`, e.g. ap-guangzhou (default $"+tencentscf.EnvRegion+")")
	fs.StringVar(&o.Namespace, "namespace", "default", "the SCF `namespace`, which must exist")
	fs.IntVar(&o.MemoryMB, "memory", 0, fmt.Sprintf("memory in `MB`: 64, or a multiple of 128 up to 3072 (CPU scales with it; default %d for a new function, kept on update)",
		tencentscf.DefaultMemoryMB))
	fs.DurationVar(&o.Timeout, "timeout", 0, fmt.Sprintf("the function's `timeout`, whole seconds up to 900s (default %v for a new function, kept on update)",
		tencentscf.DefaultTimeout))
	fs.Var(env, "env", "set an environment variable of the function, `KEY=VALUE` (repeatable; replaces all the function's variables; none given keeps them)")
	fs.StringVar(&o.Stores, "stores", "", "the `stores` the workers may open, comma-separated: a scheme (s3) or store URLs, a URL allowing the stores under its path (default: unchanged; where never set, any s3:// store)")
	fs.StringVar(&o.Role, "role", "", "the CAM `role` the function runs as; workers get its temporary keys (kept on update when not given)")
	fs.StringVar(&o.Description, "description", "", "the function's `description` (kept on update when not given)")
	fs.StringVar(&o.Binary, "binary", "", "deploy this linux/amd64 executable `file` instead of building PACKAGE")
	endpoint := fs.String("endpoint", "", "the Tencent Cloud API `endpoint`: host[:port] or http(s)://host:port (default scf.tencentcloudapi.com)")
	poll := fs.Duration("poll", time.Second, "first `wait` between status checks while SCF deploys")
	grant := fs.Bool("grant", true, "with an execution role, attach to it the CAM policy gowren-invoke-[NAMESPACE-]NAME allowing scf:InvokeFunction on the function, for invoker trees")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	switch {
	case o.Function == "":
		fmt.Fprintln(stderr, "gowren deploy scf: -function NAME is required")
		fs.Usage()
		return errUsage
	case *region == "":
		fmt.Fprintf(stderr, "gowren deploy scf: no region: pass -region REGION (e.g. ap-guangzhou) or set %s\n", tencentscf.EnvRegion)
		return errUsage
	case fs.NArg() > 1:
		fmt.Fprintf(stderr, "gowren deploy scf: one PACKAGE at most, got %q\n", fs.Args())
		return errUsage
	case fs.NArg() == 1 && o.Binary != "":
		fmt.Fprintln(stderr, "gowren deploy scf: pass PACKAGE or -binary, not both")
		return errUsage
	}
	if fs.NArg() == 1 {
		o.Package = fs.Arg(0)
	}
	if len(env) > 0 {
		o.Env = env
	}
	o.PollInterval = *poll
	o.Log = prefixed{w: stderr, prefix: "gowren deploy scf: "}
	cred, err := tencentscf.EnvCredential()
	if err != nil {
		return err
	}
	client, err := tencentscf.NewClient(cred, *region, *endpoint)
	if err != nil {
		return err
	}
	if err := checkSCF(ctx, client, o.Function, o.Namespace); err != nil {
		return err
	}
	res, err := tencentscf.Deploy(ctx, client, &o)
	if err != nil {
		return err
	}
	format := "updated SCF function %s in %s (namespace %s): %.1f MB of code, %d MB, timeout %v\n"
	switch {
	case res.Created:
		format = "created SCF function %s in %s (namespace %s): %.1f MB of code, %d MB, timeout %v\n"
	case !res.CodeUpdated && !res.ConfigUpdated:
		format = "SCF function %s in %s (namespace %s) is up to date: %.1f MB of code, %d MB, timeout %v\n"
	}
	fmt.Fprintf(stdout, format, res.Function, res.Region, res.Namespace, float64(res.ZipBytes)/(1<<20), res.MemoryMB, res.Timeout)
	fmt.Fprintf(stdout, "\nexport GOWREN_BACKEND='%s'\n", res.URL(*endpoint))
	fmt.Fprintf(stdout, "# inputs and outputs over 6 MB, and async jobs, go through a COS bucket in the same region\n")
	fmt.Fprintf(stdout, "# (workers use the keys of the -role's execution role, or deploy with -env AWS_ACCESS_KEY_ID=... -env AWS_SECRET_ACCESS_KEY=...):\n")
	fmt.Fprintf(stdout, "# export GOWREN_STORE='s3://BUCKET-APPID/gowren?region=%s&endpoint=https://cos.%s.myqcloud.com'\n", res.Region, res.Region)
	// Invoker trees: workers invoke the function with the role's keys,
	// whose CAM policy must allow it.
	if res.Role == "" {
		fmt.Fprintf(stdout, "# invoker trees (fanout.Options.Tree) need an execution role: redeploy with -role ROLE (deploy then grants it), a role whose CAM policy has\n")
		fmt.Fprintf(stdout, "# (UIN: your account ID) %s\n", res.InvokerStatement())
		return nil
	}
	var grantErr error
	if *grant {
		if _, grantErr = tencentscf.GrantInvoke(ctx, client, res); grantErr == nil {
			fmt.Fprintf(stdout, "# invoker trees (fanout.Options.Tree): workers invoke the function with the keys of role %s, allowed by its CAM policy %s\n",
				res.Role, res.InvokePolicyName())
			return nil
		}
		fmt.Fprintf(stdout, "# could not grant role %s the right to invoke the function: %v\n", res.Role, grantErr)
	}
	fmt.Fprintf(stdout, "# invoker trees (fanout.Options.Tree): workers invoke the function with the keys of role %s, whose CAM policy needs\n", res.Role)
	fmt.Fprintf(stdout, "# (UIN: your account ID) %s\n", res.InvokerStatement())
	return nil
}

// prefixed writes each line with a prefix.
type prefixed struct {
	w      io.Writer
	prefix string
}

func (p prefixed) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			fmt.Fprint(p.w, p.prefix+line)
		}
	}
	return len(b), nil
}
