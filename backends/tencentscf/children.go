package tencentscf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gowren/gowren/backends"
)

// Environment variables SCF sets in a function's process (its list of
// built-in variables). The role's keys are there only when the function
// runs as an execution role; SCF reserves the TENCENTCLOUD_ and SCF_
// prefixes, so a deployment cannot set them itself.
const (
	envRoleSecretID  = "TENCENTCLOUD_SECRETID"
	envRoleSecretKey = "TENCENTCLOUD_SECRETKEY"
	envRoleToken     = "TENCENTCLOUD_SESSIONTOKEN"
	envFunctionName  = "SCF_FUNCTIONNAME"
	envNamespace     = "SCF_NAMESPACE"
	envVersion       = "SCF_FUNCTIONVERSION"
	envTimeout       = "SCF_TIMEOUT"
	envMemory        = "SCF_MEMORYSIZE"
)

// childConcurrency bounds the children one worker process has in flight.
// It is high enough that the tree's fan-out, not this bound, limits an
// invoker; SCF's concurrency quota answers beyond it (status 432, a
// throttle).
const childConcurrency = 1000

// children makes the Backend through which a worker's tasks invoke other
// invocations of the worker's own function (backends.InvokerOf), once per
// process, on the first invocation whose environment has what it needs:
// the execution role's keys, the function's name and its region. Until
// then, and for good in a function without a role, it has none.
//
// The Backend signs with the role's keys as SCF last put them in the
// environment: scf-go-lib copies each request's Environment there before
// the handler runs, so backend renews them on every invocation.
type children struct {
	getenv func(string) string
	log    io.Writer // says once why a configured environment made no Backend
	cred   roleCredential

	mu     sync.Mutex
	b      backends.Backend
	warned bool
}

func newChildren(getenv func(string) string, log io.Writer) *children {
	return &children{getenv: getenv, log: log}
}

// backend returns the Backend for children, nil when the process cannot
// invoke its function. It is safe for concurrent use.
func (c *children) backend() backends.Backend {
	c.cred.renew(c.getenv)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.b != nil || !c.cred.present() {
		return c.b
	}
	b, err := newChildBackend(c.getenv, &c.cred)
	if err != nil {
		if !c.warned {
			c.warned = true
			fmt.Fprintf(c.log, "gowren worker: tasks cannot invoke children of an invoker tree: %v\n", err)
		}
		return nil
	}
	c.b = b
	return b
}

// newChildBackend returns a Backend for the function the environment
// names, through the Cloud API endpoint of EnvEndpoint (default: the
// public one), signing with cred.
func newChildBackend(getenv func(string) string, cred *roleCredential) (backends.Backend, error) {
	fn := getenv(envFunctionName)
	if err := validFunctionName(fn); err != nil {
		return nil, fmt.Errorf("%s: %w", envFunctionName, err)
	}
	region := getenv(EnvRegion)
	if region == "" {
		return nil, fmt.Errorf("%s is not set", EnvRegion)
	}
	o := Options{
		Namespace:   getenv(envNamespace),
		Qualifier:   getenv(envVersion), // children run the code of their invoker
		Concurrency: childConcurrency,
	}
	if s, err := strconv.Atoi(getenv(envTimeout)); err == nil && s > 0 && time.Duration(s)*time.Second <= MaxTimeout {
		o.Timeout = time.Duration(s) * time.Second
	}
	if mb, err := strconv.Atoi(getenv(envMemory)); err == nil && validMemory(mb) == nil {
		o.MemoryMB = mb
	}
	client, tr, err := newClient(cred, region, getenv(EnvEndpoint))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvEndpoint, err)
	}
	b := New(client, fn, &o)
	b.transport = tr
	l := b.Limits()
	l.MaxAsyncRequestBytes = 0
	return &childBackend{b: b, limits: l}, nil
}

// childBackend is the Backend a worker's tasks invoke children through:
// the worker's own function, synchronously (InvokeFunction).
//
// It is deliberately not a backends.AsyncBackend, so an invoker waits for
// its leaf children rather than starting them with Invoke (Event). SCF
// allows 100 Invoke calls a second, and that limit is shared by every
// invoker of the job and by the driver, which no token bucket inside one
// worker can keep to: a tree of invokers starting their children
// asynchronously would spend its time on RequestLimitExceeded and
// backoff. InvokeFunction allows 10,000 calls a second, takes events of
// 6 MB rather than 128 KB, and returns the children's results to their
// invoker without the store. The price is that an invoker stays running
// while its children run, so the function's timeout must cover them.
type childBackend struct {
	b      *Backend
	limits backends.Limits
}

// Invoke is Backend.Invoke on the worker's own function. A refusal of the
// role's keys or of its CAM policy says that the role is the one to fix.
func (c *childBackend) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	reply, err := c.b.Invoke(ctx, payload)
	if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrCredentials) {
		return nil, fmt.Errorf("%w; a worker invokes its children with the keys of its function's execution role, whose CAM policy must allow scf:InvokeFunction on the function (gowren deploy scf prints the statement)", err)
	}
	return reply, err
}

// Limits reports the function's limits, without asynchronous invocations;
// Nested is true.
func (c *childBackend) Limits() backends.Limits { return c.limits }

// Close does nothing: one Backend serves every invocation the process
// runs, and lives as long as the process. A task that closes it, as
// closing an Executor made over it does, leaves it working for the
// others.
func (c *childBackend) Close() error { return nil }

// roleCredential is the execution role's temporary keys, as SCF last put
// them in the environment, for the Cloud API client to sign with (it
// implements common.CredentialIface). It is safe for concurrent use.
type roleCredential struct{ keys atomic.Pointer[roleKeys] }

type roleKeys struct{ id, key, token string }

// renew takes the keys from the environment when it has some.
func (r *roleCredential) renew(getenv func(string) string) {
	k := roleKeys{getenv(envRoleSecretID), getenv(envRoleSecretKey), getenv(envRoleToken)}
	if k.id == "" || k.key == "" {
		return
	}
	if cur := r.keys.Load(); cur != nil && *cur == k {
		return
	}
	r.keys.Store(&k)
}

func (r *roleCredential) present() bool { return r.keys.Load() != nil }

func (r *roleCredential) load() roleKeys {
	if k := r.keys.Load(); k != nil {
		return *k
	}
	return roleKeys{}
}

func (r *roleCredential) GetSecretId() string  { return r.load().id }
func (r *roleCredential) GetSecretKey() string { return r.load().key }
func (r *roleCredential) GetToken() string     { return r.load().token }

// GetCredential returns the three keys of one renewal together, so that a
// request is never signed with the id of one and the key of another.
func (r *roleCredential) GetCredential() (string, string, string) {
	k := r.load()
	return k.id, k.key, k.token
}
