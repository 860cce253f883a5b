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
// invocation while one runs. The tests therefore run a pool of emulators,
// each serving one invocation at a time: riePool is the HTTP transport of
// the SDK client, and sends each request to a free emulator.

// rieTimeout is the function timeout the emulators enforce, in seconds.
const rieTimeout = 3

type emulator struct {
	addr   string
	cmd    *exec.Cmd
	exited chan struct{}
}

type riePool struct {
	free chan *emulator
	emus []*emulator
	tr   *http.Transport
	wg   sync.WaitGroup // requests that outlive their callers
}

// freePort returns a loopback port that was free a moment ago; the emulator
// takes addresses, not listeners.
func freePort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startRIEPool starts n emulators running the test worker.
func startRIEPool(t testing.TB, n int) *riePool {
	rie := testbuild.RIE(t)
	worker := testbuild.Worker(t)
	p := &riePool{free: make(chan *emulator, n), tr: &http.Transport{MaxIdleConnsPerHost: 4}}
	t.Cleanup(p.close)
	for i := range n {
		e := &emulator{addr: freePort(t), exited: make(chan struct{})}
		cmd := exec.Command(rie,
			"--runtime-interface-emulator-address", e.addr,
			"--runtime-api-address", freePort(t),
			"--log-level", "error",
			worker)
		cmd.Dir = filepath.Dir(worker)
		cmd.Env = append(os.Environ(),
			"AWS_LAMBDA_FUNCTION_TIMEOUT="+strconv.Itoa(rieTimeout),
			"AWS_LAMBDA_FUNCTION_NAME=function",
			"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512")
		out := &prefixed{t: t, prefix: fmt.Sprintf("[rie %d] ", i)}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the bootstrap is its child
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", rie, err)
		}
		e.cmd = cmd
		go func() {
			cmd.Wait()
			close(e.exited)
		}()
		p.emus = append(p.emus, e)
	}
	for _, e := range p.emus {
		waitListening(t, e)
		p.free <- e
	}
	return p
}

// waitListening waits until the emulator accepts connections. It gives no
// other sign of being ready, so this probes its port, a bounded number of
// times.
func waitListening(t testing.TB, e *emulator) {
	for range 1000 {
		c, err := net.DialTimeout("tcp", e.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-e.exited:
			t.Fatalf("the emulator at %s exited: %v", e.addr, e.cmd.ProcessState)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("the emulator at %s does not listen after 10s", e.addr)
}

// RoundTrip sends req to a free emulator. When req's context ends first it
// returns at once, but the emulator stays taken until its invocation ends:
// a second invocation would crash it.
func (p *riePool) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
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
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() { p.free <- e }()
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
		return a.resp, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *riePool) close() {
	p.wg.Wait()
	for _, e := range p.emus {
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		<-e.exited
	}
	p.tr.CloseIdleConnections()
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
	c := newClient(h.t, "http://"+h.pool.emus[0].addr, h.pool)
	return sameHost{awslambda.New(c, "function", &awslambda.Options{
		Concurrency: rieEmulators, Timeout: rieTimeout * time.Second})}, nil
}

func (h *rieHarness) MakeStore(context.Context) (storage.Store, error) { return h.store, nil }
func (h *rieHarness) Close()                                           {}

// TestConformanceRIE runs the conformance suite with the worker binary under
// AWS's Runtime Interface Emulator, through the real SDK client.
func TestConformanceRIE(t *testing.T) {
	backendtest.RunConformanceTests(t, func(_ context.Context, t *testing.T) (backendtest.Harness, error) {
		return &rieHarness{t: t, pool: startRIEPool(t, rieEmulators), store: fileStore(t)}, nil
	})
}

// TestRIEFailures checks how the emulator's answers to a crashed runtime
// and to a timed-out invocation are classified.
func TestRIEFailures(t *testing.T) {
	pool := startRIEPool(t, 1)
	b := awslambda.New(newClient(t, "http://"+pool.emus[0].addr, pool), "function",
		&awslambda.Options{Concurrency: 1, Timeout: rieTimeout * time.Second})
	ex := fanout.NewExecutor(sameHost{b}, &fanout.Options{Store: fileStore(t), Retries: -1})
	defer ex.Close()
	ctx := guard(t, time.Minute)

	// The emulator answers a runtime that exited with HTTP 502 and an
	// error body, without the X-Amz-Function-Error header.
	_, err := fanout.Map(ctx, ex, testfuncs.Exit, []int{4})
	var fe *awslambda.FunctionError
	if !errors.As(err, &fe) || fe.Type != "Runtime.ExitError" || !strings.Contains(fe.Message, "exit status 4") ||
		!errors.Is(err, backends.ErrWorkerLost) {
		t.Errorf("crash: %v; want a Runtime.ExitError FunctionError wrapping ErrWorkerLost", err)
	}
	// It answers a timed-out invocation with the bare text "Task timed
	// out after 3.00 seconds" and status 200.
	_, err = fanout.Map(ctx, ex, testfuncs.Freeze, []int{1})
	if !errors.As(err, &fe) || !fe.Timeout || !strings.Contains(err.Error(), "Task timed out after 3.00 seconds") {
		t.Errorf("timeout: %v; want a FunctionError with Timeout naming the emulator's timeout", err)
	}
	// And it restarts the runtime for the next invocation.
	envs, err := fanout.Map(ctx, ex, testfuncs.EnvInfo, []int{0})
	if err != nil {
		t.Fatalf("after the crash and the timeout: %v", err)
	}
	if !envs[0].Cold || envs[0].RuntimeAPI == "" {
		t.Errorf("environment %+v; want a cold start of a new runtime", envs[0])
	}
}
