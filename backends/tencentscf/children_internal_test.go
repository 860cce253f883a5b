package tencentscf

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
)

// fakeEnv is a process environment that a test changes as SCF would.
type fakeEnv struct {
	mu sync.Mutex
	m  map[string]string
}

func (e *fakeEnv) get(k string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.m[k]
}

func (e *fakeEnv) set(k, v string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[k] = v
}

// scfEnv is what SCF sets for a function with an execution role.
func scfEnv() map[string]string {
	return map[string]string{
		envRoleSecretID: "AKIDrole", envRoleSecretKey: "rolekey", envRoleToken: "roletoken",
		envFunctionName: "tree", envNamespace: "jobs", envVersion: "$LATEST", envTimeout: "120", envMemory: "512",
		EnvRegion: "ap-shanghai",
	}
}

func TestChildrenBackend(t *testing.T) {
	t.Parallel()
	env := &fakeEnv{m: scfEnv()}
	var log strings.Builder
	c := newChildren(env.get, &log)
	b := c.backend()
	if b == nil {
		t.Fatalf("no backend from a complete environment; log: %s", log.String())
	}
	if again := c.backend(); again != b {
		t.Errorf("the second invocation got another backend: %p, want %p", again, b)
	}
	if _, ok := b.(backends.AsyncBackend); ok {
		t.Error("the children's backend is an AsyncBackend; children go through InvokeFunction only")
	}
	l := b.Limits()
	if !l.Nested || l.MaxAsyncRequestBytes != 0 || l.Timeout != 120*time.Second || l.MemoryMB != 512 || l.Concurrency != childConcurrency {
		t.Errorf("limits %+v, want Nested, no async, the function's 120s and 512 MB, concurrency %d", l, childConcurrency)
	}
	inner := b.(*childBackend).b
	if s := inner.site("invoke"); s.function != "tree" || s.namespace != "jobs" || s.qualifier != "$LATEST" || s.region != "ap-shanghai" {
		t.Errorf("the backend invokes %+v, want function tree in namespace jobs, qualifier $LATEST, region ap-shanghai", s)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if c.backend() != b || inner.closed {
		t.Error("Close of the children's backend closed the process's backend")
	}
	if log.Len() != 0 {
		t.Errorf("warnings for a complete environment: %s", log.String())
	}

	// SCF renews the role's keys through the environment: the next
	// invocation signs with the new ones, all three together.
	env.set(envRoleSecretID, "AKIDrenewed")
	env.set(envRoleSecretKey, "renewedkey")
	env.set(envRoleToken, "renewedtoken")
	c.backend()
	cred := inner.client.GetCredential()
	if id, key, tok := cred.GetCredential(); id != "AKIDrenewed" || key != "renewedkey" || tok != "renewedtoken" {
		t.Errorf("after renewal the client signs with %q %q %q", id, key, tok)
	}
	// Keys that vanish from the environment leave the last ones in use.
	env.set(envRoleSecretID, "")
	c.backend()
	if id := cred.GetSecretId(); id != "AKIDrenewed" {
		t.Errorf("after the keys vanished the client signs with %q", id)
	}
}

func TestChildrenMissingEnvironment(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		unset []string
		set   map[string]string
		warns string // "" for no warning
	}{
		{"NoRole", []string{envRoleSecretID, envRoleSecretKey, envRoleToken}, nil, ""},
		{"NoSecretKey", []string{envRoleSecretKey}, nil, ""},
		{"NoFunctionName", []string{envFunctionName}, nil, envFunctionName},
		{"BadFunctionName", nil, map[string]string{envFunctionName: "9lives"}, envFunctionName},
		{"NoRegion", []string{EnvRegion}, nil, EnvRegion},
		{"BadEndpoint", nil, map[string]string{EnvEndpoint: "ftp://example.com"}, EnvEndpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := scfEnv()
			for _, k := range tc.unset {
				delete(m, k)
			}
			for k, v := range tc.set {
				m[k] = v
			}
			var log strings.Builder
			c := newChildren((&fakeEnv{m: m}).get, &log)
			for range 2 {
				if b := c.backend(); b != nil {
					t.Fatalf("backend %T from an environment without %v %v", b, tc.unset, tc.set)
				}
			}
			switch got := log.String(); {
			case tc.warns == "" && got != "":
				t.Errorf("warned %q; a function without a role is not an error", got)
			case tc.warns != "" && (!strings.Contains(got, tc.warns) || strings.Count(got, "\n") != 1):
				t.Errorf("warned %q, want one line naming %s", got, tc.warns)
			}
		})
	}
}

// TestChildrenRoleLater: keys that reach the environment only with a
// later request still give the process its backend.
func TestChildrenRoleLater(t *testing.T) {
	t.Parallel()
	m := scfEnv()
	delete(m, envRoleSecretID)
	env := &fakeEnv{m: m}
	c := newChildren(env.get, &strings.Builder{})
	if c.backend() != nil {
		t.Fatal("a backend without keys")
	}
	env.set(envRoleSecretID, "AKIDlate")
	if c.backend() == nil {
		t.Fatal("no backend once the keys arrived")
	}
}
