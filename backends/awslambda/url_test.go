package awslambda_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/awslambda"
	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
	"github.com/gowren/gowren/backends/awslambda/internal/testfuncs"
	"github.com/gowren/gowren/fanout"
)

// isolateAWS gives the test an AWS environment of its own: no shared config
// files, no instance metadata (never reached from tests), and the given
// credentials (none when key is empty).
func isolateAWS(t *testing.T, key, region string) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE":                        filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE":            filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED":              "true",
		"AWS_PROFILE":                            "",
		"AWS_DEFAULT_PROFILE":                    "",
		"AWS_ACCESS_KEY_ID":                      key,
		"AWS_SECRET_ACCESS_KEY":                  map[bool]string{true: "secret"}[key != ""],
		"AWS_SESSION_TOKEN":                      "",
		"AWS_WEB_IDENTITY_TOKEN_FILE":            "",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		"AWS_REGION":                             region,
		"AWS_DEFAULT_REGION":                     "",
		"AWS_ENDPOINT_URL":                       "",
		"AWS_ENDPOINT_URL_LAMBDA":                "",
	} {
		t.Setenv(k, v)
	}
}

func TestOpenURLErrors(t *testing.T) {
	isolateAWS(t, "AKID", "")
	for _, tc := range []struct{ url, want string }{
		{"lambda://", "function name"},
		{"lambda://fn/extra", "function name"},
		{"lambda://" + strings.Repeat("f", 65), "function name"},
		{"lambda://fn?region=mars", `region="mars"`},
		{"lambda://fn?region=us-east-1&nosuch=1", `unknown parameter "nosuch"`},
		{"lambda://fn?region=us-east-1&timeout=soon", `timeout="soon"`},
		{"lambda://fn?region=us-east-1&concurrency=0", `concurrency="0"`},
		{"lambda://fn?region=us-east-1&parallel=-1", `parallel="-1"`},
		{"lambda://fn?region=us-east-1&endpoint=ftp://x", `endpoint="ftp://x"`},
		{"lambda://fn?region=us-east-1&qualifier=", `qualifier=""`},
		{"lambda://fn?region=us-east-1&memory=64", `memory="64"`},
		{"lambda://fn?region=us-east-1&memory=10241", `memory="10241"`},
		{"lambda://fn?region=us-east-1&memory=1GB", `memory="1GB"`},
		{"lambda://fn?region=us-east-1&arch=sparc", `arch="sparc"`},
		{"lambda://fn?region=us-east-1&arch=", `arch=""`},
		{"lambda://fn", "no AWS region"},
	} {
		_, err := backends.Open(context.Background(), tc.url)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v, want an error containing %q", tc.url, err, tc.want)
		}
	}
}

func TestOpenURL(t *testing.T) {
	isolateAWS(t, "AKIDTEST", "eu-west-1")
	srv := newFake(t, awslambdatest.Options{Workers: 2, AccessKeyID: "AKIDTEST", Region: "eu-west-1"})
	b, err := backends.Open(context.Background(), "lambda://function?endpoint="+srv.URL()+"&concurrency=3&timeout=45&parallel=2&memory=1024&arch=x86_64")
	if err != nil {
		t.Fatal(err)
	}
	lb := b.(*awslambda.Backend)
	if l := lb.Limits(); l.Concurrency != 3 || l.Timeout != 45*time.Second || l.Parallel != 2 ||
		l.MemoryMB != 1024 || l.Platform != backends.PlatformLambdaX86 {
		t.Errorf("Limits = %+v", l)
	}
	ex := fanout.NewExecutor(sameHost{lb}, &fanout.Options{Store: fileStore(t)})
	defer ex.Close()
	ctx := guard(t, time.Minute)
	j, err := fanout.Start(ctx, ex, testfuncs.Noop, []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	out, err := j.Wait(ctx)
	if err != nil || len(out) != 3 || out[2] != 3 {
		t.Fatalf("Map = %v, %v", out, err)
	}
	// The job is priced as the URL says the function is configured.
	if p := j.Stats().Cost.Prices; p.Name != fanout.PricesLambdaX86.Name || p.MemoryMB != 1024 ||
		p.PerGBSecond != fanout.PricesLambdaX86.PerGBSecond {
		t.Errorf("cost estimated with %+v, want x86_64 prices at 1024 MB", p)
	}
}

// TestOpenURLPricing checks that memory and arch reach Limits, which the
// executor prices jobs with.
func TestOpenURLPricing(t *testing.T) {
	isolateAWS(t, "AKIDTEST", "eu-west-1")
	for _, tc := range []struct {
		name     string
		query    string
		memory   int
		platform string
	}{
		{"defaults", "", 0, backends.PlatformLambdaARM64},
		{"arm64", "?memory=1024&arch=arm64", 1024, backends.PlatformLambdaARM64},
		{"x86_64", "?arch=x86_64&memory=3008", 3008, backends.PlatformLambdaX86},
		{"memory only", "?memory=128", 128, backends.PlatformLambdaARM64},
		{"arch only", "?arch=x86_64", 0, backends.PlatformLambdaX86},
		{"largest", "?memory=10240", 10240, backends.PlatformLambdaARM64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := awslambda.Open(context.Background(), "lambda://fn"+tc.query)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if l := b.Limits(); l.MemoryMB != tc.memory || l.Platform != tc.platform {
				t.Errorf("Limits MemoryMB %d, Platform %q; want %d, %q", l.MemoryMB, l.Platform, tc.memory, tc.platform)
			}
		})
	}
}

func TestOptionsPricing(t *testing.T) {
	c := newClient(t, "http://127.0.0.1:1", nil)
	for _, tc := range []struct {
		name     string
		opts     *awslambda.Options
		memory   int
		platform string
	}{
		{"nil", nil, 0, backends.PlatformLambdaARM64},
		{"arm64", &awslambda.Options{MemoryMB: 512, Arch: "arm64"}, 512, backends.PlatformLambdaARM64},
		{"x86_64", &awslambda.Options{MemoryMB: 2048, Arch: "x86_64"}, 2048, backends.PlatformLambdaX86},
		{"amd64", &awslambda.Options{Arch: "amd64"}, 0, backends.PlatformLambdaX86},
		{"negative memory", &awslambda.Options{MemoryMB: -1}, 0, backends.PlatformLambdaARM64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := awslambda.New(c, "fn", tc.opts)
			defer b.Close()
			if l := b.Limits(); l.MemoryMB != tc.memory || l.Platform != tc.platform {
				t.Errorf("Limits MemoryMB %d, Platform %q; want %d, %q", l.MemoryMB, l.Platform, tc.memory, tc.platform)
			}
		})
	}
}

func TestNoCredentials(t *testing.T) {
	isolateAWS(t, "", "us-east-1")
	srv := newFake(t, awslambdatest.Options{})
	b, err := awslambda.Open(context.Background(), "lambda://function?endpoint="+srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = b.Invoke(guard(t, time.Minute), []byte("x"))
	if err == nil || backends.Retryable(err) || !strings.Contains(err.Error(), "no usable AWS credentials") {
		t.Fatalf("err = %v, want a non-retryable error saying there are no credentials", err)
	}
	if errors.Is(err, backends.ErrTransport) {
		t.Errorf("err = %v is classified as a transport failure", err)
	}
}

func TestOpenQualifiedName(t *testing.T) {
	isolateAWS(t, "AKIDTEST", "eu-west-1")
	b, err := backends.Open(context.Background(), "lambda://montecarlo:prod?region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := b.(*awslambda.Backend).Function(); got != "montecarlo:prod" {
		t.Errorf("Function() = %q, want montecarlo:prod", got)
	}
}
