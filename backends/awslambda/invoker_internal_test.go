package awslambda

import (
	"strings"
	"testing"
)

func TestReadSelfEnv(t *testing.T) {
	lambdaEnv := map[string]string{
		"AWS_LAMBDA_FUNCTION_NAME":        "app",
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
		"AWS_REGION":                      "eu-west-1",
		"AWS_ACCESS_KEY_ID":               "ASIAROLE",
		"AWS_SECRET_ACCESS_KEY":           "secret",
		"AWS_SESSION_TOKEN":               "token",
	}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range lambdaEnv {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    selfEnv
		ok      bool
		wantErr string
	}{
		{name: "not Lambda", env: map[string]string{"AWS_REGION": "eu-west-1"}},
		{name: "function", env: lambdaEnv, ok: true,
			want: selfEnv{function: "app", region: "eu-west-1", memoryMB: 2048}},
		{name: "published version", env: with("AWS_LAMBDA_FUNCTION_VERSION", "7"), ok: true,
			want: selfEnv{function: "app", region: "eu-west-1", memoryMB: 2048, qualifier: "7"}},
		{name: "default region", env: with("AWS_REGION", "", "AWS_DEFAULT_REGION", "us-west-2"), ok: true,
			want: selfEnv{function: "app", region: "us-west-2", memoryMB: 2048}},
		{name: "container credentials", env: with("AWS_ACCESS_KEY_ID", "", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:9/creds"), ok: true,
			want: selfEnv{function: "app", region: "eu-west-1", memoryMB: 2048}},
		{name: "shard", env: with("AWS_LAMBDA_FUNCTION_NAME", "app-12", "GOWREN_SHARDS", "13", "AWS_LAMBDA_FUNCTION_VERSION", "3"), ok: true,
			want: selfEnv{function: "app", shards: 13, region: "eu-west-1", memoryMB: 2048}},
		{name: "shard of a dashed name", env: with("AWS_LAMBDA_FUNCTION_NAME", "my-app-0", "GOWREN_SHARDS", "1"), ok: true,
			want: selfEnv{function: "my-app", shards: 1, region: "eu-west-1", memoryMB: 2048}},
		{name: "no region", env: with("AWS_REGION", ""), wantErr: "AWS_REGION is not set"},
		{name: "no credentials", env: with("AWS_SECRET_ACCESS_KEY", ""), wantErr: "no credentials"},
		{name: "shard count not a number", env: with("AWS_LAMBDA_FUNCTION_NAME", "app-0", "GOWREN_SHARDS", "three"), wantErr: `GOWREN_SHARDS="three"`},
		{name: "too many shards", env: with("AWS_LAMBDA_FUNCTION_NAME", "app-0", "GOWREN_SHARDS", "1001"), wantErr: "from 1 to 1000"},
		{name: "shard index too high", env: with("AWS_LAMBDA_FUNCTION_NAME", "app-3", "GOWREN_SHARDS", "3"), wantErr: "not NAME-i with i below 3"},
		{name: "not a shard name", env: with("GOWREN_SHARDS", "3"), wantErr: "not NAME-i"},
		{name: "leading zero", env: with("AWS_LAMBDA_FUNCTION_NAME", "app-01", "GOWREN_SHARDS", "3"), wantErr: "not NAME-i"},
		{name: "bad name", env: with("AWS_LAMBDA_FUNCTION_NAME", "a b"), wantErr: "not a function name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := readSelfEnv(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || ok {
					t.Fatalf("readSelfEnv = %+v, %v, %v; want an error containing %q", got, ok, err, tc.wantErr)
				}
				inv, err := workerInvoker(func(k string) string { return tc.env[k] })
				if inv != nil || err == nil || !strings.Contains(err.Error(), "invoker trees") {
					t.Errorf("workerInvoker = %v, %v; want no invoker and an error about invoker trees", inv, err)
				}
				return
			}
			if err != nil || ok != tc.ok || got != tc.want {
				t.Fatalf("readSelfEnv = %+v, %v, %v; want %+v, %v", got, ok, err, tc.want, tc.ok)
			}
			inv, err := workerInvoker(func(k string) string { return tc.env[k] })
			if err != nil || (inv != nil) != tc.ok {
				t.Errorf("workerInvoker = %v, %v; want an invoker: %v", inv, err, tc.ok)
			}
		})
	}
}

// The invoker makes its client once, at its first use, and turns over the
// shards from where its process starts.
func TestSelfInvokerOnce(t *testing.T) {
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	s := newSelfInvoker(selfEnv{function: "app", shards: 4, region: "eu-west-1", memoryMB: 512})
	if l := s.Limits(); !l.Nested || l.MemoryMB != 512 || l.Concurrency != DefaultConcurrency {
		t.Errorf("limits %+v; want Nested, 512 MB, the default concurrency", l)
	}
	start := s.next.Load()
	seen := map[string]int{}
	var first *Backend
	for i := range 8 {
		b, err := s.backend()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = b
			if want := ShardName("app", int(start)); b.Function() != want {
				t.Errorf("first shard %s, want %s (where the turn starts)", b.Function(), want)
			}
		}
		seen[b.Function()]++
	}
	if len(seen) != 4 || seen["app-0"] != 2 || seen["app-3"] != 2 {
		t.Errorf("shards used %v, want each of the 4 twice", seen)
	}
	bs, _ := s.open()
	if bs[start] != first || len(bs) != 4 {
		t.Errorf("a second open made new backends")
	}
}
