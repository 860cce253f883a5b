package scftest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tencentyun/scf-go-lib/cloudfunction/messages"
)

// function is a function the server holds.
type function struct {
	key      fkey
	status   string
	polls    int // GetFunction calls left before a pending status turns Active
	command  []string
	runtime  string
	handler  string
	memoryMB int
	timeout  time.Duration
	env      map[string]string
	role     string
	zip      []byte
	version  int // bumped by every change; instances of older versions retire
	modTime  time.Time

	description string

	idle      []*instance
	instances map[*instance]bool
}

// instance is one worker process of a function.
type instance struct {
	name    string
	version int
	cmd     *exec.Cmd
	client  *rpc.Client
	exited  chan struct{} // closed when the process has been reaped
	tail    *tailWriter

	killOnce sync.Once
}

// kill ends the process and waits until it is reaped.
func (in *instance) kill() {
	in.killOnce.Do(func() {
		_ = in.cmd.Process.Kill()
		if in.client != nil {
			in.client.Close()
		}
	})
	<-in.exited
}

// killAsync kills an instance without waiting. Close waits for it.
func (s *Server) killAsync(in *instance) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		in.kill()
	}()
}

// alive reports whether the process still runs.
func (in *instance) alive() bool {
	select {
	case <-in.exited:
		return false
	default:
		return true
	}
}

// result is an execution's outcome, in the shape of the API's Result.
type result struct {
	status            int // 200 or SCF's status code
	RetMsg            string
	ErrMsg            string
	FunctionRequestId string
	Duration          float64
	MemUsage          int64
}

func resultMap(r result) map[string]any {
	invokeResult := 0
	if r.status != 200 {
		invokeResult = -1
	}
	return map[string]any{"Result": map[string]any{
		"RetMsg": r.RetMsg, "ErrMsg": r.ErrMsg, "Log": "", "FunctionRequestId": r.FunctionRequestId,
		"Duration": r.Duration, "BillDuration": int64(r.Duration), "MemUsage": r.MemUsage, "InvokeResult": invokeResult,
	}}
}

// failed is the result of a failed execution, with SCF's JSON error
// object in ErrMsg.
func failed(id string, status int, msg string) result {
	b, _ := json.Marshal(map[string]any{"errorCode": -1, "errorMessage": msg, "requestId": id, "statusCode": status})
	return result{status: status, ErrMsg: string(b), FunctionRequestId: id}
}

func (s *Server) count(r result) result {
	s.mu.Lock()
	s.stats.Invocations[r.status]++
	s.mu.Unlock()
	return r
}

// KillInstances kills the worker processes of a function, busy or idle, as
// a platform losing its machines would. Invocations they were running
// report status 439.
func (s *Server) KillInstances(region, namespace, name string) int {
	s.mu.Lock()
	f := s.funcs[fkey{region, namespace, name}]
	var all []*instance
	if f != nil {
		for in := range f.instances {
			all = append(all, in)
		}
		clear(f.instances)
		f.idle = nil
	}
	s.mu.Unlock()
	for _, in := range all {
		in.kill()
	}
	return len(all)
}

// acquire reserves the function's memory in its region's quota. A
// synchronous invocation over the quota fails at once (status 432); an
// asynchronous one waits, as SCF queues events. It reports false when the
// server closes while waiting.
func (s *Server) acquire(f *function, async bool) (ok bool, over *result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.closed {
			return false, nil
		}
		if s.busyMB[f.key.region]+f.memoryMB <= s.opts.ConcurrencyQuotaMB {
			s.busyMB[f.key.region] += f.memoryMB
			s.busy[f.key.region]++
			s.stats.PeakInstances = max(s.stats.PeakInstances, s.busy[f.key.region])
			return true, nil
		}
		if !async {
			r := failed(newID(), 432, fmt.Sprintf("ResourceLimitReached: Function [%s] concurrency exceeded region unreserved quota %d MB", f.key.name, s.opts.ConcurrencyQuotaMB))
			return false, &r
		}
		s.cond.Wait()
	}
}

func (s *Server) release(f *function, memoryMB int) {
	s.mu.Lock()
	s.busyMB[f.key.region] -= memoryMB
	s.busy[f.key.region]--
	s.mu.Unlock()
	s.cond.Broadcast()
}

// execute runs one event on an instance of f and returns its outcome.
func (s *Server) execute(f *function, event string, async bool) result {
	ok, over := s.acquire(f, async)
	if over != nil {
		return s.count(*over)
	}
	id := newID()
	if !ok {
		return s.count(failed(id, 500, "InternalError: the server is shutting down"))
	}
	s.mu.Lock()
	mem, timeout, version := f.memoryMB, f.timeout, f.version
	s.mu.Unlock()
	defer s.release(f, mem)

	in, err := s.instanceFor(f)
	if err != nil {
		return s.count(failed(id, 405, "ContainerStateExited: "+err.Error()))
	}
	start := time.Now()
	r := s.run(f, in, id, event, mem, timeout)
	r.Duration = float64(time.Since(start).Microseconds()) / 1000
	r.FunctionRequestId = id
	s.mu.Lock()
	if in.alive() && in.version == f.version && version == f.version && !s.closed {
		f.idle = append(f.idle, in)
	} else {
		delete(f.instances, in)
		s.killAsync(in)
	}
	s.mu.Unlock()
	return s.count(r)
}

// run calls Function.Invoke on the instance as SCF's Go runtime does.
func (s *Server) run(f *function, in *instance, id, event string, memoryMB int, timeout time.Duration) result {
	env, _ := json.Marshal(f.env)
	deadline := time.Now().Add(timeout)
	req := &messages.InvokeRequest{
		Payload:            []byte(event),
		RequestId:          id,
		Deadline:           messages.InvokeRequest_Timestamp{Seconds: deadline.Unix(), Nanos: int64(deadline.Nanosecond())},
		Namespace:          f.key.namespace,
		FunctionName:       f.key.name,
		FunctionVersion:    "$LATEST",
		MemoryLimitInMb:    int32(memoryMB),
		TimeLimitInMs:      int32(timeout / time.Millisecond),
		Environment:        string(env),
		TencentcloudRegion: f.key.region,
	}
	var resp messages.InvokeResponse
	c := in.client.Go("Function.Invoke", req, &resp, make(chan *rpc.Call, 1))
	timer := time.NewTimer(time.Until(deadline) + s.opts.TimeoutGrace)
	defer timer.Stop()
	timedOut := func() result {
		in.kill()
		return failed(id, 433, fmt.Sprintf("Invoking task timed out after %d seconds", int(timeout/time.Second)))
	}
	select {
	case <-c.Done:
		// A reply that came after the deadline (and its grace) is
		// too late, even when select saw it first.
		select {
		case <-timer.C:
			return timedOut()
		default:
		}
	case <-timer.C:
		return timedOut()
	case <-s.ctx.Done():
		in.kill()
		return failed(id, 500, "InternalError: the server is shutting down")
	}
	if c.Error != nil {
		in.kill()
		msg := "User process exit when running: " + c.Error.Error()
		if t := in.tail.String(); t != "" {
			msg += "; last output: " + t
		}
		return failed(id, 439, msg)
	}
	if e := resp.Error; e != nil {
		if e.ShouldExit {
			in.kill()
		}
		var stack []string
		for _, fr := range e.StackTrace {
			stack = append(stack, fmt.Sprintf("%s:%d %s", fr.Path, fr.Line, fr.Label))
		}
		b, _ := json.Marshal(map[string]any{"errorCode": -1, "errorMessage": e.Message, "errorType": e.Type,
			"stackTrace": strings.Join(stack, "\n"), "requestId": id, "statusCode": 430})
		return result{status: 430, ErrMsg: string(b)}
	}
	if len(resp.Payload) > s.opts.MaxResponseBytes {
		return failed(id, 407, fmt.Sprintf("The size of response exceeds the upper limit (%d bytes)", s.opts.MaxResponseBytes))
	}
	return result{status: 200, RetMsg: string(resp.Payload)}
}

// instanceFor takes an idle instance of f's current version or starts one.
func (s *Server) instanceFor(f *function) (*instance, error) {
	s.mu.Lock()
	for len(f.idle) > 0 {
		in := f.idle[len(f.idle)-1]
		f.idle = f.idle[:len(f.idle)-1]
		if in.alive() && in.version == f.version {
			s.mu.Unlock()
			return in, nil
		}
		delete(f.instances, in)
		s.killAsync(in)
	}
	s.mu.Unlock()
	var err error
	for range 3 { // a port taken between our probe and the worker's listen
		var in *instance
		if in, err = s.start(f); err == nil {
			return in, nil
		}
	}
	return nil, err
}

// start runs a worker process as SCF's Go1 runtime does: the function's
// binary with _LAMBDA_SERVER_PORT naming the port to serve net/rpc on,
// and waits until it accepts connections.
func (s *Server) start(f *function) (*instance, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("the server is shutting down")
	}
	s.workers++
	s.stats.ColdStarts++
	name := fmt.Sprintf("%s#%d", f.key.name, s.workers)
	command, version, env := f.command, f.version, f.env
	timeout, mem := f.timeout, f.memoryMB
	s.wg.Add(1) // the reaper
	s.mu.Unlock()

	cmd := exec.Command(command[0], command[1:]...)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.TempDir(),
		"TMPDIR=" + os.TempDir(),
		"_LAMBDA_SERVER_PORT=" + strconv.Itoa(port),
		"SCF_RUNTIME=Go1",
		"SCF_FUNCTIONNAME=" + f.key.name,
		"SCF_FUNCTIONVERSION=$LATEST",
		"SCF_NAMESPACE=" + f.key.namespace,
		"SCF_MEMORYSIZE=" + strconv.Itoa(mem),
		"SCF_TIMEOUT=" + strconv.Itoa(int(timeout/time.Second)),
		"TENCENTCLOUD_REGION=" + f.key.region,
		"FUNCTION_NAME=" + f.key.name,
		"FUNCTION_MEMORY_SIZE=" + strconv.Itoa(mem),
		"FUNCTION_VERSION=$LATEST",
		// A worker here reaches this machine's directories too; a
		// deployed function's default allows s3:// stores only.
		"GOWREN_WORKER_STORES=s3,file",
	}
	for _, k := range sortedKeys(env) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	cmd.Env = append(cmd.Env, s.opts.Env...)
	tail := &tailWriter{}
	out := io.MultiWriter(&prefixWriter{w: s.opts.Stderr, prefix: "[scf " + name + "] "}, tail)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	in := &instance{name: name, version: version, cmd: cmd, exited: make(chan struct{}), tail: tail}
	if err := cmd.Start(); err != nil {
		s.wg.Done()
		return nil, fmt.Errorf("start %s: %w", command[0], err)
	}
	go func() {
		defer s.wg.Done()
		_ = cmd.Wait()
		close(in.exited)
	}()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(s.opts.StartTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			in.client = rpc.NewClient(conn)
			break
		}
		select {
		case <-in.exited:
			return nil, fmt.Errorf("worker %s exited before serving: %s", name, tail.String())
		case <-s.ctx.Done():
			in.kill()
			return nil, errors.New("the server is shutting down")
		case <-time.After(5 * time.Millisecond): // polling a port the process will open
		}
		if time.Now().After(deadline) {
			in.kill()
			return nil, fmt.Errorf("worker %s did not listen on %s within %v: %s", name, addr, s.opts.StartTimeout, tail.String())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.killAsync(in)
		return nil, errors.New("the server is shutting down")
	}
	f.instances[in] = true
	return in, nil
}

// prefixWriter writes each line with a prefix; writes are serialized.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

var outputMu sync.Mutex // one line at a time across all workers

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		outputMu.Lock()
		_, _ = fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		outputMu.Unlock()
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// tailWriter keeps the last lines written to it.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 2 << 10

func (t *tailWriter) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > tailMax {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-tailMax:]...)
	}
	return len(b), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
