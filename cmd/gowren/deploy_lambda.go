package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/gowren/gowren/backends/awslambda"
)

func init() {
	deployers["lambda"] = deployLambda
}

const deployLambdaUsage = `usage: gowren deploy lambda [flags] [PACKAGE]

Builds the main package PACKAGE (default ".") for AWS Lambda's
provided.al2023 runtime (linux/arm64 unless -arch x86_64, CGO_ENABLED=0,
-tags lambda.norpc, -trimpath, binary "bootstrap"), zips it, creates the
function or updates it (the code only when its hash changed), waits until
it is active, sets its asynchronous retries to 0 (gowren retries), and
prints the GOWREN_BACKEND URL to use it: the function's region, memory,
architecture and timeout as Lambda reports them after the deployment (memory
and arch price the jobs' cost estimates). The program must call
fanout.Init() first thing in main and import
github.com/gowren/gowren/backends/awslambda.

With -shards K it deploys K identical functions, NAME-0 ... NAME-(K-1),
from the one build (each gets an upload only when its code differs), and
prints a lambda://NAME?shards=K URL that spreads each job over them: Lambda
adds at most 1,000 execution environments every 10 seconds to each function,
so K shards ramp up K times faster. The account's concurrency limit still
caps them together.

Each shard's environment gets GOWREN_SHARDS=K (a function deployed alone
loses it), so that workers of an invoker tree (fanout.Options.Tree), which
invoke the function themselves, spread their children over the K shards.
Invoker trees need the function's role to allow lambda:InvokeFunction on
the function (or on NAME-*): deploy puts that inline policy,
gowren-invoke-NAME, on the role (IAM PutRolePolicy; the credentials need
iam:PutRolePolicy on it). With -grant=false, or when IAM refuses, it prints
the "aws iam put-role-policy" command that does it instead. IAM's endpoint
is AWS's, or AWS_ENDPOINT_URL_IAM, or -endpoint when that is given.

Credentials and region come from the usual AWS configuration: AWS_PROFILE
or -profile, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, SSO, AWS_REGION or
-region. Creating a function needs -role. Before building, the function is
read once, so that refused credentials, a missing permission or a missing
-role fail at once.

flags:
`

// lambdaEnv collects repeated -env KEY=VALUE flags.
type lambdaEnv map[string]string

func (e lambdaEnv) String() string { return fmt.Sprint(map[string]string(e)) }

func (e lambdaEnv) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE (KEY= to remove a variable), got %q", s)
	}
	e[k] = v
	return nil
}

func deployLambda(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gowren deploy lambda", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, deployLambdaUsage)
		fs.PrintDefaults()
	}
	env := lambdaEnv{}
	var o awslambda.DeployOptions
	fs.StringVar(&o.Name, "name", "", "the function's `name` (default: the last element of the package's import path)")
	region := fs.String("region", "", "the AWS `region`, e.g. us-east-1 (default: $AWS_REGION or the profile's)")
	profile := fs.String("profile", "", "the shared config `profile` (default: $AWS_PROFILE or default)")
	fs.StringVar(&o.Role, "role", "", "the `ARN` of the IAM role the function runs as (required to create it)")
	fs.StringVar(&o.Arch, "arch", "arm64", "the `architecture`: arm64 or x86_64")
	fs.IntVar(&o.MemoryMB, "memory", 0, fmt.Sprintf("memory in `MB`, 128 to 10240; a vCPU per 1769 MB (default %d for a new function, else unchanged)", awslambda.DefaultMemoryMB))
	fs.DurationVar(&o.Timeout, "timeout", 0, fmt.Sprintf("the function's `timeout`, whole seconds up to 15m (default %v for a new function, else unchanged)", awslambda.DefaultFunctionTimeout))
	fs.Var(env, "env", "set an environment variable of the function, `KEY=VALUE`; KEY= removes it (repeatable)")
	fs.StringVar(&o.Stores, "stores", "", "the `stores` the workers may open, comma-separated: a scheme (s3) or store URLs, a URL allowing the stores under its path (default: unchanged; where never set, any s3:// store)")
	fs.IntVar(&o.Shards, "shards", 0, fmt.Sprintf("deploy `K` identical functions NAME-0 ... NAME-(K-1), 1 to %d, for lambda://NAME?shards=K (default: one function, NAME)", awslambda.MaxShards))
	tags := fs.String("tags", "", "extra build `tags`, comma-separated")
	endpoint := fs.String("endpoint", "", "the Lambda API endpoint `URL` (default: AWS's for the region)")
	fs.DurationVar(&o.PollInterval, "poll", time.Second, "the shortest `wait` between status checks while Lambda deploys")
	grant := fs.Bool("grant", true, "put the inline policy gowren-invoke-NAME allowing lambda:InvokeFunction on the function (or its shards) on its role, for invoker trees")
	quiet := fs.Bool("q", false, "print only the GOWREN_BACKEND line")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	switch fs.NArg() {
	case 0:
	case 1:
		o.Package = fs.Arg(0)
	default:
		fmt.Fprintln(stderr, "gowren deploy lambda: give one package at most")
		fs.Usage()
		return errUsage
	}
	usage := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "gowren deploy lambda: "+format+"\n", a...)
		return errUsage
	}
	switch {
	case o.Arch != "arm64" && o.Arch != "x86_64":
		return usage("-arch %q: want arm64 or x86_64", o.Arch)
	case o.MemoryMB != 0 && (o.MemoryMB < 128 || o.MemoryMB > 10240):
		return usage("-memory %d: want 128 to 10240 (MB)", o.MemoryMB)
	case o.Shards < 0 || o.Shards > awslambda.MaxShards:
		return usage("-shards %d: want 1 to %d functions (or leave it out for one)", o.Shards, awslambda.MaxShards)
	case o.Timeout != 0 && (o.Timeout < time.Second || o.Timeout > 15*time.Minute || o.Timeout%time.Second != 0):
		return usage("-timeout %v: want whole seconds from 1s to 15m", o.Timeout)
	case *endpoint != "":
		if u, err := url.Parse(*endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usage("-endpoint %q: want an http:// or https:// URL", *endpoint)
		}
	}
	if len(env) > 0 {
		o.Env = env
	}
	if *tags != "" {
		o.Tags = strings.Split(*tags, ",")
	}
	if !*quiet {
		o.Log = stderr
	}

	var loadOpts []func(*config.LoadOptions) error
	if *region != "" {
		loadOpts = append(loadOpts, config.WithRegion(*region))
	}
	if *profile != "" {
		loadOpts = append(loadOpts, config.WithSharedConfigProfile(*profile))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return fmt.Errorf("deploy lambda: load the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return usage("no AWS region: pass -region or set AWS_REGION")
	}
	client := lambda.NewFromConfig(cfg, func(lo *lambda.Options) {
		if *endpoint != "" {
			lo.BaseEndpoint = aws.String(*endpoint)
		}
	})
	// The name the deploy will use, so that the check reads the same
	// function.
	if o.Name == "" {
		if name, ok := lambdaDefaultName(ctx, o.Package, o.Arch, o.Tags); ok {
			o.Name = name
		}
	}
	if o.Name != "" {
		if err := checkLambda(ctx, client, cfg, o.Name, o.Role); err != nil {
			return err
		}
	}
	res, err := awslambda.Deploy(ctx, client, &o)
	if err != nil {
		return err
	}
	if !*quiet {
		results := res.Shards
		if results == nil {
			results = []*awslambda.DeployResult{res}
		}
		for _, r := range results {
			what := "code unchanged"
			switch {
			case r.Created:
				what = "created"
			case r.CodeUpdated:
				what = "code updated"
			}
			if !r.Created && r.ConfigUpdated {
				what += ", configuration updated"
			}
			fmt.Fprintf(stdout, "function %s: %s\n  %s, %s, %d MB, timeout %v, code %d bytes (sha256 %s)\n",
				r.Function, what, r.FunctionARN, r.Arch, r.MemoryMB, r.Timeout, r.CodeSize, r.CodeSHA256)
		}
		what := "it"
		if res.Shards != nil {
			what = fmt.Sprintf("the %d shards", len(res.Shards))
		}
		if res.InvokePolicy != "" {
			policyName := "gowren-invoke-" + res.Function
			var err error
			if *grant {
				err = grantInvoke(ctx, cfg, *endpoint, roleName(res.Role), policyName, res.InvokePolicy)
				if err == nil {
					fmt.Fprintf(stdout, "role %s: policy %s allows the workers to invoke %s (invoker trees, fanout.Options.Tree)\n",
						roleName(res.Role), policyName, what)
				}
			}
			if !*grant || err != nil {
				if err != nil {
					fmt.Fprintf(stdout, "could not grant the role the right to invoke %s: %v\n", what, err)
				}
				fmt.Fprintf(stdout, "for invoker trees (fanout.Options.Tree) the workers invoke %s themselves: allow the role once with\n", what)
				fmt.Fprintf(stdout, "  aws iam put-role-policy --role-name %s --policy-name %s --policy-document '%s'\n",
					roleName(res.Role), policyName, res.InvokePolicy)
			}
		}
		fmt.Fprintf(stdout, "drive %s with (and GOWREN_STORE=s3://BUCKET/PREFIX for payloads over 6 MB):\n", what)
	}
	backend := res.BackendURL
	if *endpoint != "" {
		backend += "&endpoint=" + url.QueryEscape(*endpoint)
	}
	fmt.Fprintf(stdout, "GOWREN_BACKEND=%s\n", backend)
	return nil
}

// grantInvoke puts the inline policy name, doc, on role. IAM is global: in
// AWS's main partition its requests are signed for us-east-1 whatever the
// function's region (the SDK's endpoint rules do that for AWS's endpoint;
// an endpoint of one's own gets the same).
func grantInvoke(ctx context.Context, cfg aws.Config, endpoint, role, name, doc string) error {
	client := iam.NewFromConfig(cfg, func(o *iam.Options) {
		if endpoint != "" && o.BaseEndpoint == nil {
			o.BaseEndpoint = aws.String(endpoint)
		}
		if o.BaseEndpoint != nil && !strings.HasPrefix(o.Region, "cn-") && !strings.HasPrefix(o.Region, "us-gov-") {
			o.Region = "us-east-1"
		}
	})
	_, err := client.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(name), PolicyDocument: aws.String(doc)})
	if err != nil {
		return fmt.Errorf("iam put-role-policy on role %s: %w", role, err)
	}
	return nil
}

// roleName returns the name of the IAM role of an ARN
// (arn:aws:iam::ACCOUNT:role/PATH/NAME), or ROLE when it has none.
func roleName(arn string) string {
	_, rest, ok := strings.Cut(arn, ":role/")
	if !ok || rest == "" {
		return "ROLE"
	}
	return rest[strings.LastIndexByte(rest, '/')+1:]
}
