package awslambda

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/gowren/gowren/backends"
)

func init() {
	backends.Register("lambda", func(ctx context.Context, u *url.URL) (backends.Backend, error) {
		return openURL(ctx, u.String())
	})
}

// transportSlack is how much longer than the function's timeout the HTTP
// client waits for a reply: the executor's own deadline should fire first.
const transportSlack = time.Minute

// NewHTTPClient returns an HTTP client for invoking Lambda with up to
// concurrency invocations in flight, each lasting up to timeout (the
// function's timeout; 0 means DefaultTimeout): it keeps an idle connection
// per invocation in flight instead of the 10 per host of Go's and the SDK's
// defaults, does not cap connections per host (the executor bounds the
// invocations in flight, and a cap here would queue them invisibly), sends
// TCP keep-alives every 30 s so that NAT gateways keep long invocations'
// connections open, and waits for response headers a minute longer than the
// function may run. Requests are bounded by their context, not by a client
// timeout.
func NewHTTPClient(concurrency int, timeout time.Duration) *http.Client {
	return &http.Client{Transport: newTransport(concurrency, timeout)}
}

func newTransport(concurrency int, timeout time.Duration) *http.Transport {
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          concurrency,
		MaxIdleConnsPerHost:   concurrency,
		MaxConnsPerHost:       0,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: timeout + transportSlack,
	}
}

var (
	functionName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	regionName   = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
)

// MaxShards is the most functions a lambda://NAME?shards=K URL (and
// `gowren deploy lambda -shards K`) spreads a job over.
const MaxShards = 1000

// Open returns a Backend for a URL of the form
//
//	lambda://FUNCTION?region=R&qualifier=Q&endpoint=URL&concurrency=N&timeout=D&parallel=N&memory=MB&arch=A
//
// (see the package documentation); lambda://FUNCTION:Q is the same as
// ?qualifier=Q. It loads the default AWS configuration
// (environment, shared files, SSO, instance role) for credentials and, when
// the URL has no region, the region, and builds the client with
// NewHTTPClient. It makes no call to Lambda; use Check for that. A URL
// with shards=K names K functions: open it with OpenShards, or with
// fanout.Open and backends.Open, which call Open or OpenShards for lambda://
// URLs.
func Open(ctx context.Context, rawURL string) (*Backend, error) {
	p, err := parseURL(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	if p.shards > 0 {
		return nil, fmt.Errorf("awslambda: URL %q: shards=%d names %d functions, not one: open it with awslambda.OpenShards, backends.Open or fanout.Open", rawURL, p.shards, p.shards)
	}
	return p.open(), nil
}

// OpenShards returns the Shards of a URL of the form
//
//	lambda://NAME?shards=K&region=R&...
//
// with the parameters Open takes: the K functions NAME-0 ... NAME-(K-1) that
// `gowren deploy lambda -name NAME -shards K` deploys, each invoked with
// the URL's region, qualifier, timeout, parallelism, memory and
// architecture. concurrency=N is the total for the shards together (see
// Shards). Like Open it makes no call to Lambda; use Check for that.
func OpenShards(ctx context.Context, rawURL string) (*Shards, error) {
	p, err := parseURL(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	if p.shards == 0 {
		return nil, fmt.Errorf("awslambda: URL %q has no shards=K: open one function with awslambda.Open", rawURL)
	}
	return p.openShards(), nil
}

// openURL opens a lambda:// URL of one function or of shards.
func openURL(ctx context.Context, rawURL string) (backends.Backend, error) {
	p, err := parseURL(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	if p.shards > 0 {
		return p.openShards(), nil
	}
	return p.open(), nil
}

func (p *parsedURL) open() *Backend {
	b := New(p.client, p.function, &p.opts)
	b.transport = p.transport
	return b
}

// openShards returns the Shards of p; they share one HTTP transport, sized
// for the concurrency of them all, and each closes its idle connections.
func (p *parsedURL) openShards() *Shards {
	s := NewShards(p.client, p.function, p.shards, &p.opts)
	for _, b := range s.shards {
		b.transport = p.transport
	}
	return s
}

// parsedURL is a lambda:// URL taken apart, with its client.
type parsedURL struct {
	function  string
	shards    int // 0: one function
	opts      Options
	client    *lambda.Client
	transport *http.Transport
}

func parseURL(ctx context.Context, rawURL string) (*parsedURL, error) {
	u, err := backends.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("awslambda: URL %q: %w", rawURL, err)
	}
	if u.Scheme != "lambda" {
		return nil, fmt.Errorf("awslambda: URL %q: scheme is not lambda://", rawURL)
	}
	fn := u.Host
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.User != nil || !functionName.MatchString(fn) {
		return nil, fmt.Errorf("awslambda: URL %q: want lambda://FUNCTION?region=... with a function name of 1 to 64 letters, digits, - or _ (an alias or version as lambda://FUNCTION:QUALIFIER or ?qualifier=)", rawURL)
	}
	var opts Options
	var region, endpoint string
	shards := 0
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		bad := func(why string) error {
			return fmt.Errorf("awslambda: URL %q: %s=%q: %s", rawURL, k, v, why)
		}
		switch k {
		case "shards":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxShards {
				return nil, bad(fmt.Sprintf("not a number of functions from 1 to %d (the functions NAME-0 ... NAME-(K-1) that `gowren deploy lambda -shards K` deploys)", MaxShards))
			}
			shards = n
		case "region":
			if !regionName.MatchString(v) {
				return nil, bad("not an AWS region name such as us-east-1")
			}
			region = v
		case "qualifier":
			if v == "" {
				return nil, bad("empty")
			}
			opts.Qualifier = v
		case "endpoint":
			e, err := url.Parse(v)
			if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
				return nil, bad("not an http:// or https:// URL")
			}
			endpoint = v
		case "concurrency", "parallel":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, bad("not a positive integer")
			}
			if k == "concurrency" {
				opts.Concurrency = n
			} else {
				opts.Parallel = n
			}
		case "timeout":
			d, err := time.ParseDuration(v)
			if err != nil {
				if secs, err2 := strconv.Atoi(v); err2 == nil {
					d, err = time.Duration(secs)*time.Second, nil
				}
			}
			if err != nil || d <= 0 {
				return nil, bad("not a positive duration such as 300s or 5m")
			}
			opts.Timeout = d
		case "memory":
			n, err := strconv.Atoi(v)
			if err != nil || n < minMemoryMB || n > maxMemoryMB {
				return nil, bad(fmt.Sprintf("not a memory size in MB from %d to %d", minMemoryMB, maxMemoryMB))
			}
			opts.MemoryMB = n
		case "arch":
			if v != string(types.ArchitectureArm64) && v != string(types.ArchitectureX8664) {
				return nil, bad("not a Lambda architecture: want arm64 or x86_64")
			}
			opts.Arch = v
		default:
			return nil, fmt.Errorf("awslambda: URL %q: unknown parameter %q (known: region, qualifier, endpoint, concurrency, timeout, parallel, memory, arch, shards)", rawURL, k)
		}
	}
	if shards > 0 && len(fn) > 64-len(shardSuffix(shards-1)) {
		return nil, fmt.Errorf("awslambda: URL %q: function name %q is too long for %d shards: %s with its suffix %q is over Lambda's 64 characters",
			rawURL, fn, shards, fn, shardSuffix(shards-1))
	}
	var loadOpts []func(*config.LoadOptions) error
	if region != "" {
		loadOpts = append(loadOpts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("awslambda: URL %q: load the AWS configuration: %w", rawURL, err)
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("awslambda: URL %q: no AWS region: add ?region=... to the URL or set AWS_REGION", rawURL)
	}
	tr := newTransport(opts.Concurrency, opts.Timeout)
	client := lambda.NewFromConfig(cfg, func(o *lambda.Options) {
		o.HTTPClient = &http.Client{Transport: tr}
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
	return &parsedURL{function: fn, shards: shards, opts: opts, client: client, transport: tr}, nil
}
