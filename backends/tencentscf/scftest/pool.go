package scftest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/rpc"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	exited  chan struct{} // closed when the process has been reaped and its output read
	tail    *tailWriter   // the last output of the process

	// The process writes its stdout and stderr to a pipe that the server
	// holds open for writing too: after a reply it writes a mark to it, and
	// once the reader has seen the mark, all the process printed before it
	// replied has been read (see syncOutput).
	pipeW   *os.File
	outDone chan struct{} // closed when the reader has met the end of the pipe
	marked  chan string   // marks the reader met
	marks   atomic.Int64

	mu      sync.Mutex
	capture *tailWriter // output of the execution under way, nil between executions

	killOnce sync.Once
}

// kill ends the process and waits until it is reaped and its output read.
func (in *instance) kill() {
	in.killOnce.Do(func() {
		_ = in.cmd.Process.Kill()
		if in.client != nil {
			in.client.Close()
		}
	})
	<-in.exited
}

// markPrefix starts a mark in the output pipe; the process never prints a
// NUL byte followed by this.
var markPrefix = []byte("\x00scftest-mark ")

// readOutput reads the process's output until the pipe ends, sending each
// line to w and the tails, and each mark to in.marked.
func (in *instance) readOutput(r *os.File, w io.Writer) {
	defer close(in.outDone)
	defer r.Close()
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		if i := bytes.Index(line, markPrefix); i >= 0 {
			in.output(w, line[:i])
			id := string(bytes.TrimSpace(line[i+len(markPrefix):]))
			select {
			case in.marked <- id:
			default: // a mark nobody waits for any more
			}
		} else if len(line) > 0 {
			in.output(w, line)
		}
		if err != nil {
			return
		}
	}
}

func (in *instance) output(w io.Writer, b []byte) {
	if len(b) == 0 {
		return
	}
	_, _ = w.Write(b)
	_, _ = in.tail.Write(b)
	in.mu.Lock()
	if in.capture != nil {
		_, _ = in.capture.Write(b)
	}
	in.mu.Unlock()
}

// beginCapture starts collecting the output of an execution.
func (in *instance) beginCapture() {
	in.mu.Lock()
	in.capture = &tailWriter{max: logMax}
	in.mu.Unlock()
}

// endCapture returns the output of the execution: all the process printed
// before it replied or, when it is dead, before it died.
func (in *instance) endCapture(ctx <-chan struct{}) string {
	in.syncOutput(ctx)
	in.mu.Lock()
	defer in.mu.Unlock()
	c := in.capture
	in.capture = nil
	if c == nil {
		return ""
	}
	return c.String()
}

// syncOutput returns once the reader has read everything the process
// wrote to the pipe before now: it writes a mark behind it and waits for
// the reader to meet it, or for the pipe to end.
func (in *instance) syncOutput(ctx <-chan struct{}) {
	id := strconv.FormatInt(in.marks.Add(1), 10)
	if _, err := fmt.Fprintf(in.pipeW, "%s%s\n", markPrefix, id); err != nil {
		select { // the process is gone: its output ends with the pipe
		case <-in.outDone:
		case <-ctx:
		}
		return
	}
	for {
		select {
		case got := <-in.marked:
			if got == id {
				return
			}
		case <-in.outDone:
			return
		case <-ctx:
			return
		}
	}
}

// peakRSS returns the process's peak resident memory in bytes (VmHWM in
// /proc/PID/status), 0 where there is no such file.
func (in *instance) peakRSS() int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(in.cmd.Process.Pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return kb << 10
				}
			}
		}
	}
	return 0
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
	Log               string
}

// resultMap is the API's Result object for r; its Log only when the caller
// asked for it.
func (s *Server) resultMap(r result, tail bool) map[string]any {
	var invokeResult int64
	if r.status != 200 {
		invokeResult = -1
	}
	if s.opts.InvokeResult != nil {
		invokeResult = s.opts.InvokeResult(r.status)
	}
	log := ""
	if tail {
		log = r.Log
	}
	return map[string]any{"Result": map[string]any{
		"RetMsg": r.RetMsg, "ErrMsg": r.ErrMsg, "Log": log, "FunctionRequestId": r.FunctionRequestId,
		"Duration": r.Duration, "BillDuration": int64(r.Duration), "MemUsage": r.MemUsage, "InvokeResult": invokeResult,
	}}
}

// failed is the result of a failed execution, with SCF's JSON error
// object in ErrMsg.
func failed(id string, status int, msg string) result { return failedWith(id, status, msg, "") }

// failedWith is failed with a stackTrace member.
func failedWith(id string, status int, msg, stack string) result {
	obj := map[string]any{"errorCode": -1, "errorMessage": msg, "requestId": id, "statusCode": status}
	if stack != "" {
		obj["stackTrace"] = stack
	}
	b, _ := json.Marshal(obj)
	return result{status: status, ErrMsg: string(b), FunctionRequestId: id}
}

// statusMessages are the status messages of SCF's table of function status
// codes, the default errorMessage of a Failure.
var statusMessages = map[int]string{
	400: "InvalidParameterValue", 401: "InvalidCredentials", 402: "ServiceSuspended", 403: "ResourceUnavailable",
	404: "InvalidSubnetID", 405: "ContainerStateExited", 406: "RequestTooLarge",
	407: "The size of response exceeds the upper limit (6MB)", 410: "InsufficientBalance", 429: "ResourceLimit",
	430: "user code exception caught", 432: "ResourceLimitReached", 433: "TimeLimitReached", 434: "MemoryLimitReached",
	435: "FunctionNotFound", 436: "InvalidParameterValue", 437: "HandlerNotFound", 438: "FunctionStatusError",
	439: "User process exit when running", 441: "UnauthorizedOperation", 442: "QualifierNotFound", 443: "UserCodeError",
	444: "PullImageFailed", 445: "ContainerInitError", 446: "PortBindingFailed", 447: "PullImageTimeOut",
	449: "InsufficientResources", 450: "InitContainerTimeout", 499: "RequestCanceled", 500: "InternalError",
	532: "ResourceExhausted",
}

func statusMessage(code int) string {
	if m, ok := statusMessages[code]; ok {
		return m
	}
	return "status " + strconv.Itoa(code)
}

// startError is a failure to start an instance, with the status SCF
// reports for it.
type startError struct {
	status int
	msg    string
	log    string // what the process printed
}

func (e *startError) Error() string { return e.msg }

var shuttingDown = &startError{status: 500, msg: "the server is shutting down"}

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
		var se *startError
		if !errors.As(err, &se) {
			se = &startError{status: 500, msg: err.Error()}
		}
		r := failed(id, se.status, statusMessage(se.status)+": "+se.msg)
		r.Log = se.log
		return s.count(r)
	}
	start := time.Now()
	in.beginCapture()
	r := s.run(f, in, id, event, mem, timeout)
	r.Duration = float64(time.Since(start).Microseconds()) / 1000
	r.FunctionRequestId = id
	r.Log = in.endCapture(s.ctx.Done())
	if in.alive() {
		r.MemUsage = in.peakRSS()
	}
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
		in.kill() // its output, in the Log, says why it died
		return failed(id, 439, "User process exit when running: "+c.Error.Error())
	}
	if e := resp.Error; e != nil {
		// SCF's errorMessage says only that the code failed; the error,
		// and a panic's stack, are its stackTrace.
		if e.ShouldExit {
			in.kill()
		}
		stack := []string{e.Message}
		for _, fr := range e.StackTrace {
			stack = append(stack, fmt.Sprintf("%s:%d %s", fr.Path, fr.Line, fr.Label))
		}
		return failedWith(id, 430, statusMessage(430), strings.Join(stack, "\n"))
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
		if se := (*startError)(nil); !errors.As(err, &se) || se.status != 405 {
			break // only a process that exited may have met a taken port
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
		return nil, shuttingDown
	}
	s.workers++
	s.stats.ColdStarts++
	name := fmt.Sprintf("%s#%d", f.key.name, s.workers)
	command, version, env, role := f.command, f.version, f.env, f.role
	timeout, mem := f.timeout, f.memoryMB
	s.wg.Add(2) // the reader and the reaper, started below
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
	cmd.Env = append(cmd.Env, s.roleEnv(role)...)
	for _, k := range sortedKeys(env) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	cmd.Env = append(cmd.Env, s.opts.Env...)
	pr, pw, err := os.Pipe()
	if err != nil {
		s.wg.Add(-2)
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	in := &instance{name: name, version: version, cmd: cmd, exited: make(chan struct{}), tail: &tailWriter{max: tailMax},
		pipeW: pw, outDone: make(chan struct{}), marked: make(chan string, 1)}
	if err := cmd.Start(); err != nil {
		s.wg.Add(-2)
		pr.Close()
		pw.Close()
		// SCF's Go1 runtime runs the executable the handler names.
		status := 405
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, exec.ErrNotFound) {
			status = 437
		}
		return nil, &startError{status: status, msg: fmt.Sprintf("start %s: %v", command[0], err)}
	}
	go func() {
		defer s.wg.Done()
		in.readOutput(pr, &prefixWriter{w: s.opts.Stderr, prefix: "[scf " + name + "] "})
	}()
	go func() {
		defer s.wg.Done()
		_ = cmd.Wait()
		pw.Close()
		select {
		case <-in.outDone:
		case <-time.After(time.Second): // a child of the process holds the pipe open
			pr.Close()
			<-in.outDone
		}
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
			return nil, &startError{status: 405, msg: fmt.Sprintf("worker %s exited before serving", name), log: in.tail.String()}
		case <-s.ctx.Done():
			in.kill()
			return nil, shuttingDown
		case <-time.After(5 * time.Millisecond): // polling a port the process will open
		}
		if time.Now().After(deadline) {
			in.kill()
			return nil, &startError{status: 446, msg: fmt.Sprintf("worker %s did not listen on %s within %v", name, addr, s.opts.StartTimeout), log: in.tail.String()}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.killAsync(in)
		return nil, shuttingDown
	}
	f.instances[in] = true
	return in, nil
}

// roleEnv returns the environment through which SCF hands a function the
// temporary keys of its execution role: those of the Credential whose Role
// is role (the first SecretId in order when several are), none when no
// Credential has it or role is "".
func (s *Server) roleEnv(role string) []string {
	if role == "" {
		return nil
	}
	ids := slices.Sorted(maps.Keys(s.opts.Credentials))
	for _, id := range ids {
		if c := s.opts.Credentials[id]; c.Role == role {
			return []string{"TENCENTCLOUD_SECRETID=" + id, "TENCENTCLOUD_SECRETKEY=" + c.Key, "TENCENTCLOUD_SESSIONTOKEN=" + c.Token}
		}
	}
	return nil
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

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	buf []byte
}

// Sizes of the tails kept: of a process's output, for messages about its
// death; of an execution's output, for the Result's Log, which SCF bounds
// at 4 KB.
const (
	tailMax = 2 << 10
	logMax  = 4 << 10
)

func (t *tailWriter) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.max:]...)
	}
	return len(b), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
