package awslambda_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/awslambda"
	"github.com/gowren/gowren/backends/awslambda/internal/testbuild"
	"github.com/gowren/gowren/backends/awslambda/internal/testfuncs"
	"github.com/gowren/gowren/backends/backendtest"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
)

// AWS's Runtime Interface Emulator runs one bootstrap and serves the Invoke
// API for the function "function", but fails when it receives a second
// invocation while one runs, and it cannot cancel an invocation. The tests
// therefore run a pool of emulators, each serving one invocation at a time:
// riePool is the HTTP transport of the SDK client, and sends each request
// to a free emulator.
//
// The emulators' function timeout is a guard, not a pace: long enough that
// no invocation meets it however busy the machine is (a 6 MB batch through
// JSON and the runtime takes seconds on two loaded cores), so what the
// conformance suite sees does not depend on the machine's speed. An
// invocation that its caller gave up on (the suite's cancellation tests
// block until cancelled) would hold its emulator until that timeout; the
// pool kills such an emulator and starts a new one instead, as Lambda
// would give the function a new execution environment.

// rieGuardTimeout is the function timeout of the conformance run's
// emulators, in seconds; rieShortTimeout is the one TestRIEFailures'
// timeout check meets, with a process that is stopped and cannot answer.
const (
	rieGuardTimeout = 120
	rieShortTimeout = 3
)

// rieEndpoint is the SDK client's endpoint; riePool replaces its host with
// a free emulator's, so nothing ever connects to it.
const rieEndpoint = "http://aws-lambda-rie.invalid"

type emulator struct {
	addr   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// kill ends the emulator and the bootstrap it runs, and waits for the
// emulator. The emulator starts the bootstrap in a process group of its
// own, so killing the emulator's group would leave the bootstrap running
// until its invocation ends (and holding the emulator's output pipe, which
// Wait waits for): the emulator is stopped first, so that it starts no
// other, then its children's groups are killed, then its own.
func (e *emulator) kill() {
	pid := e.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGSTOP)
	for _, child := range childrenOf(pid) {
		_ = syscall.Kill(-child, syscall.SIGKILL)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-e.exited
}

// childrenOf returns the processes whose parent is pid, from /proc (none
// where there is no /proc).
func childrenOf(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // it exited
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(pid) {
			continue
		}
		if child, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
			out = append(out, child)
		}
	}
	return out
}

type riePool struct {
	t       testing.TB
	rie     string
	worker  string
	timeout int // the function timeout, in seconds
	free    chan *emulator
	tr      *http.Transport
	wg      sync.WaitGroup // requests that outlive their callers, replacements

	mu      sync.Mutex
	running map[*emulator]bool
	started int   // emulators started, to name their output
	err     error // of the first replacement that failed
}

// freePort returns a loopback address whose port was free a moment ago; the
// emulator takes addresses, not listeners.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startRIEPool starts n emulators running the test worker with a function
// timeout of timeout seconds.
func startRIEPool(t testing.TB, n, timeout int) *riePool {
	p := &riePool{
		t: t, rie: testbuild.RIE(t), worker: testbuild.Worker(t), timeout: timeout,
		free: make(chan *emulator, n), tr: &http.Transport{MaxIdleConnsPerHost: 4}, running: map[*emulator]bool{},
	}
	t.Cleanup(p.close)
	for range n {
		e, err := p.start()
		if err != nil {
			t.Fatal(err)
		}
		p.free <- e
	}
	return p
}

// start starts an emulator and waits until it listens, trying again on
// other ports when one was taken between freePort and the emulator's listen.
func (p *riePool) start() (*emulator, error) {
	var err error
	for range 3 {
		var e *emulator
		if e, err = p.startOnce(); err == nil {
			return e, nil
		}
	}
	return nil, err
}

func (p *riePool) startOnce() (*emulator, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	apiAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.started++
	out := &prefixed{t: p.t, prefix: fmt.Sprintf("[rie %d, timeout %ds] ", p.started, p.timeout)}
	p.mu.Unlock()
	e := &emulator{addr: addr, exited: make(chan struct{})}
	cmd := exec.Command(p.rie,
		"--runtime-interface-emulator-address", addr,
		"--runtime-api-address", apiAddr,
		"--log-level", "error",
		p.worker)
	cmd.Dir = filepath.Dir(p.worker)
	cmd.Env = append(os.Environ(),
		"AWS_LAMBDA_FUNCTION_TIMEOUT="+strconv.Itoa(p.timeout),
		"AWS_LAMBDA_FUNCTION_NAME=function",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512",
		"GOWREN_WORKER_STORES=file") // the tests' stores are directories
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Should a bootstrap outlive its emulator all the same, Wait does not
	// wait for it to close the output pipe it inherited.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %v", p.rie, err)
	}
	e.cmd = cmd
	go func() {
		cmd.Wait()
		close(e.exited)
	}()
	if err := waitListening(e); err != nil {
		e.kill()
		return nil, err
	}
	p.mu.Lock()
	p.running[e] = true
	p.mu.Unlock()
	return e, nil
}

// waitListening waits until the emulator accepts connections. It gives no
// other sign of being ready, so this polls its port, until it exits or a
// minute passes: a guard against a hung start, not a pace.
func waitListening(e *emulator) error {
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.DialTimeout("tcp", e.addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the emulator at %s does not listen after a minute: %v", e.addr, err)
		}
		select {
		case <-e.exited:
			return fmt.Errorf("the emulator at %s exited: %v", e.addr, e.cmd.ProcessState)
		case <-time.After(10 * time.Millisecond): // polling a port the process will open
		}
	}
}

// replace kills e, whose invocation nobody waits for any more, once its
// round trip has ended (the kill ends it), and puts a new emulator in its
// place.
func (p *riePool) replace(e *emulator, roundTrip <-chan struct{}) {
	e.kill()
	<-roundTrip
	p.mu.Lock()
	delete(p.running, e)
	p.mu.Unlock()
	fresh, err := p.start()
	if err != nil {
		p.mu.Lock()
		if p.err == nil {
			p.err = fmt.Errorf("replace an emulator: %w", err)
		}
		p.mu.Unlock()
		return // the pool is one emulator short; close reports why
	}
	p.free <- fresh
}

// RoundTrip sends req to a free emulator. When req's context ends first it
// returns at once, and the emulator, whose invocation cannot be cancelled,
// is replaced.
func (p *riePool) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		return nil, err // do not take an emulator only to replace it
	}
	var e *emulator
	select {
	case e = <-p.free:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	out := req.Clone(context.WithoutCancel(ctx))
	out.URL.Host, out.Host = e.addr, e.addr
	type answer struct {
		resp *http.Response
		err  error
	}
	ch := make(chan answer, 1)
	ended := make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(ended)
		resp, err := p.tr.RoundTrip(out)
		if err == nil {
			var body []byte
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			resp.Body = io.NopCloser(bytes.NewReader(body))
		}
		ch <- answer{resp, err}
	}()
	select {
	case a := <-ch:
		p.free <- e
		return a.resp, a.err
	case <-ctx.Done():
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.replace(e, ended)
		}()
		return nil, ctx.Err()
	}
}

func (p *riePool) close() {
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for e := range p.running {
		e.kill()
	}
	p.tr.CloseIdleConnections()
	if p.err != nil {
		p.t.Error(p.err)
	}
}

// prefixed logs an emulator's output lines to the test log.
type prefixed struct {
	t      testing.TB
	prefix string
}

func (w *prefixed) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.Logf("%s%s", w.prefix, line)
	}
	return len(b), nil
}

const rieEmulators = 3

type rieHarness struct {
	t     *testing.T
	pool  *riePool
	store storage.Store
}

func (h *rieHarness) MakeBackend(context.Context) (backends.Backend, error) {
	return sameHost{awslambda.New(newClient(h.t, rieEndpoint, h.pool), "function", &awslambda.Options{
		Concurrency: rieEmulators, Timeout: rieGuardTimeout * time.Second})}, nil
}

func (h *rieHarness) MakeStore(context.Context) (storage.Store, error) { return h.store, nil }
func (h *rieHarness) Close()                                           {}

// TestConformanceRIE runs the conformance suite with the worker binary under
// AWS's Runtime Interface Emulator, through the real SDK client.
func TestConformanceRIE(t *testing.T) {
	backendtest.RunConformanceTests(t, func(_ context.Context, t *testing.T) (backendtest.Harness, error) {
		return &rieHarness{t: t, pool: startRIEPool(t, rieEmulators, rieGuardTimeout), store: fileStore(t)}, nil
	})
}

// TestRIEFailures checks how the emulator's answers to a crashed runtime
// and to a timed-out invocation are classified, and that it starts a new
// runtime after each.
func TestRIEFailures(t *testing.T) {
	// The executor's wait for a reply (the backend's Timeout and a little
	// more) is a guard; the emulators enforce their own function timeouts.
	executor := func(pool *riePool) *fanout.Executor {
		b := awslambda.New(newClient(t, rieEndpoint, pool), "function",
			&awslambda.Options{Concurrency: 1, Timeout: rieGuardTimeout * time.Second})
		ex := fanout.NewExecutor(sameHost{b}, &fanout.Options{Store: fileStore(t), Retries: -1})
		t.Cleanup(func() { ex.Close() })
		return ex
	}
	ctx := hangGuard(t)
	newRuntime := func(ex *fanout.Executor, after string) {
		t.Helper()
		envs, err := fanout.Map(ctx, ex, testfuncs.EnvInfo, []int{0})
		if err != nil {
			t.Fatalf("after the %s: %v", after, err)
		}
		if !envs[0].Cold || envs[0].RuntimeAPI == "" {
			t.Errorf("after the %s: environment %+v; want a cold start of a new runtime", after, envs[0])
		}
	}

	// The emulator answers a runtime that exited with HTTP 502 and an
	// error body, without the X-Amz-Function-Error header.
	crash := executor(startRIEPool(t, 1, rieGuardTimeout))
	_, err := fanout.Map(ctx, crash, testfuncs.Exit, []int{4})
	var fe *awslambda.FunctionError
	if !errors.As(err, &fe) || fe.Type != "Runtime.ExitError" || !strings.Contains(fe.Message, "exit status 4") ||
		!errors.Is(err, backends.ErrWorkerLost) {
		t.Errorf("crash: %v; want a Runtime.ExitError FunctionError wrapping ErrWorkerLost", err)
	}
	newRuntime(crash, "crash")

	// It answers a timed-out invocation with the bare text "Task timed
	// out after 3.00 seconds" and status 200. The task stops its own
	// process, so nothing can answer before the timeout, however fast or
	// slow the machine.
	timeout := executor(startRIEPool(t, 1, rieShortTimeout))
	_, err = fanout.Map(ctx, timeout, testfuncs.Freeze, []int{1})
	if !errors.As(err, &fe) || !fe.Timeout || !strings.Contains(err.Error(), "Task timed out after 3.00 seconds") {
		t.Errorf("timeout: %v; want a FunctionError with Timeout naming the emulator's timeout", err)
	}
	newRuntime(timeout, "timeout")
}
