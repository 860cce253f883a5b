package tencentscf_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/tencentscf"
	"github.com/gowren/gowren/backends/tencentscf/scftest"
)

func TestOpenURL(t *testing.T) {
	// Not parallel: it sets environment variables.
	bin := workerBinary(t)
	srv := newServer(t, nil)
	if err := srv.AddFunction(scftest.Function{Region: "ap-shanghai", Namespace: "jobs", Name: "worker", Command: []string{bin}}); err != nil {
		t.Fatal(err)
	}
	t.Setenv(tencentscf.EnvSecretID, scftest.TestSecretID)
	t.Setenv(tencentscf.EnvSecretKey, scftest.TestSecretKey)
	t.Setenv(tencentscf.EnvSessionToken, "")
	t.Setenv(tencentscf.EnvRegion, "")
	endpoint := url.QueryEscape(srv.URL())
	ctx := context.Background()

	raw := "scf://worker?region=ap-shanghai&namespace=jobs&concurrency=3&timeout=20s&parallel=2&rate=500&asyncrate=50&memory=1024&endpoint=" + endpoint
	b, err := backends.Open(ctx, raw)
	if err != nil {
		t.Fatalf("Open(%q): %v", raw, err)
	}
	l := b.Limits()
	if l.Concurrency != 3 || l.Timeout != 20*time.Second || l.Parallel != 2 || l.MemoryMB != 1024 || l.Platform != backends.PlatformSCF {
		t.Errorf("Limits() = %+v, want the URL's concurrency, timeout, parallelism and memory, on SCF", l)
	}
	got, err := mapOn(t, sameHost{b.(*tencentscf.Backend)}, nil, square, []int{3, 4})
	if err != nil || got[0] != 9 || got[1] != 16 {
		t.Fatalf("Map through the URL's backend = %v, %v", got, err)
	}

	t.Run("RegionFromEnvironment", func(t *testing.T) {
		t.Setenv(tencentscf.EnvRegion, "ap-shanghai")
		b, err := backends.Open(ctx, "scf://worker?namespace=jobs&endpoint="+endpoint)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mapOn(t, sameHost{b.(*tencentscf.Backend)}, nil, square, []int{2}); err != nil {
			t.Fatal(err)
		}
	})

	for _, tc := range []struct {
		name, url string
		env       map[string]string
		says      string
	}{
		{"NoRegion", "scf://worker", nil, "no region: add ?region=REGION"},
		{"NoFunction", "scf://?region=ap-guangzhou", nil, "no function name"},
		{"BadFunction", "scf://9lives?region=ap-guangzhou", nil, `function name "9lives" is not valid`},
		{"Path", "scf://worker/extra?region=ap-guangzhou", nil, `unexpected path "/extra"`},
		{"UnknownParameter", "scf://worker?region=ap-guangzhou&colour=blue", nil, `unknown parameter "colour"`},
		{"BadConcurrency", "scf://worker?region=ap-guangzhou&concurrency=-1", nil, "concurrency=\"-1\""},
		{"BadTimeout", "scf://worker?region=ap-guangzhou&timeout=20m", nil, "timeout=\"20m\": want a duration up to 900s"},
		{"BadMemory", "scf://worker?region=ap-guangzhou&memory=100", nil, "memory=\"100\": want the function's memory in MB"},
		{"MemoryNotANumber", "scf://worker?region=ap-guangzhou&memory=1GB", nil, "memory=\"1GB\""},
		{"BadEndpoint", "scf://worker?region=ap-guangzhou&endpoint=ftp://x", nil, `endpoint "ftp://x"`},
		{"CredentialsInURL", "scf://id:key@worker?region=ap-guangzhou", nil, "credentials do not go in the URL"},
		{"NoCredentials", "scf://worker?region=ap-guangzhou", map[string]string{tencentscf.EnvSecretID: ""}, "set TENCENTCLOUD_SECRET_ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			b, err := backends.Open(ctx, tc.url)
			if err == nil {
				b.Close()
				t.Fatalf("Open(%q) succeeded", tc.url)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Open(%q): %v; want it to say %q", tc.url, err, tc.says)
			}
			if strings.Contains(err.Error(), scftest.TestSecretKey) {
				t.Errorf("the error shows the secret key: %v", err)
			}
		})
	}
}
