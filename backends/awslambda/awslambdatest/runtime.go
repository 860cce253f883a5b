package awslambdatest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// worker is one worker process (a running execution environment) with its
// own Runtime API endpoint.
type worker struct {
	s   *Server
	n   int
	ln  net.Listener
	srv *http.Server
	cmd *exec.Cmd
	out *prefixWriter

	mu       sync.Mutex
	state    int         // workerStarting, workerIdle, workerBusy
	current  *invocation // the invocation it runs
	served   int
	initErr  []byte // body of a POST to /runtime/init/error
	initType string
	killed   bool
	exited   chan struct{}

	// The process's stdout and stderr go to one pipe, which readLogs reads
	// into out and into log: what the process wrote since its current
	// invocation began, for LogType Tail.
	logs    *os.File // the pipe's read end
	logDone chan struct{}
	logMu   sync.Mutex
	logCond *sync.Cond
	logRead int64 // bytes read from the pipe
	logEOF  bool
	log     []byte // its last maxLogTail bytes
}

const (
	workerStarting = iota
	workerIdle
	workerBusy
)

// newWorkerLocked registers a worker about to start; it counts as idle.
func (s *Server) newWorkerLocked() *worker {
	s.nextID++
	w := &worker{s: s, n: s.nextID, exited: make(chan struct{})}
	s.workers[w] = struct{}{}
	s.idle++
	s.stats.WorkersStarted++
	return w
}

// startWorker starts w's Runtime API and process. A failure to start fails
// one waiting invocation, as a broken bootstrap does on Lambda.
func (s *Server) startWorker(w *worker) {
	err := w.start()
	if err != nil {
		fmt.Fprintf(s.o.Stderr, "awslambdatest: start worker %d: %v\n", w.n, err)
		close(w.exited)
		s.workerGone(w, result{errType: "Runtime.InvalidEntrypoint",
			payload: functionErrorBody("Runtime.InvalidEntrypoint", "RequestId: %s Error: "+err.Error())})
	}
}

func (w *worker) start() error {
	s := w.s
	if len(s.o.Command) == 0 {
		return errors.New("no worker program (Options.Command)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	w.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", w.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", w.response)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", w.invocationError)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", w.initError)
	w.srv = &http.Server{Handler: mux}
	w.out = &prefixWriter{lw: s.out, prefix: "[worker " + strconv.Itoa(w.n) + "] "}
	cmd := exec.Command(s.o.Command[0], s.o.Command[1:]...)
	cmd.Dir = s.o.Dir
	taskRoot := s.o.Dir
	if taskRoot == "" {
		taskRoot = filepath.Dir(s.o.Command[0])
	}
	cmd.Env = append(os.Environ(),
		"AWS_LAMBDA_RUNTIME_API="+ln.Addr().String(),
		"AWS_LAMBDA_FUNCTION_NAME="+s.o.Function,
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024",
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/"+s.o.Function,
		"AWS_LAMBDA_LOG_STREAM_NAME=awslambdatest/worker-"+strconv.Itoa(w.n),
		"AWS_REGION="+s.o.Region,
		"AWS_DEFAULT_REGION="+s.o.Region,
		"AWS_EXECUTION_ENV=AWS_Lambda_provided.al2023",
		"LAMBDA_TASK_ROOT="+taskRoot,
		"_HANDLER=bootstrap",
		// A worker here reaches this machine's directories too; a
		// deployed function's default allows s3:// stores only.
		"GOWREN_WORKER_STORES=s3,file",
		// The credentials of the function's role, as Lambda gives them,
		// valid for this server; and its endpoint, so that the SDK
		// clients a worker makes (to invoke functions) reach it.
		"AWS_ACCESS_KEY_ID="+s.roleKey(),
		"AWS_SECRET_ACCESS_KEY="+s.o.SecretAccessKey,
		"AWS_SESSION_TOKEN="+RoleSessionToken,
		"AWS_ENDPOINT_URL_LAMBDA="+s.URL(),
	)
	cmd.Env = append(cmd.Env, s.o.Env...)
	pr, pw, err := os.Pipe()
	if err != nil {
		ln.Close()
		return err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w.cmd = cmd
	err = cmd.Start()
	pw.Close() // the process has its own copy
	if err != nil {
		pr.Close()
		ln.Close()
		return err
	}
	w.logs, w.logDone = pr, make(chan struct{})
	w.logCond = sync.NewCond(&w.logMu)
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		w.readLogs()
	}()
	go func() {
		defer s.wg.Done()
		_ = w.srv.Serve(ln)
	}()
	go func() {
		defer s.wg.Done()
		w.reap()
	}()
	return nil
}

// reap waits for the process to end and fails the invocation it held.
func (w *worker) reap() {
	err := w.cmd.Wait()
	<-w.logDone // the process's output, to its end
	w.srv.Close()
	close(w.exited)
	w.mu.Lock()
	inv, initErr, initType, served := w.current, w.initErr, w.initType, w.served
	w.current = nil
	w.mu.Unlock()
	status := "exit status 0"
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			status = ee.ProcessState.String()
		} else {
			status = err.Error()
		}
	}
	var res result
	switch {
	case initErr != nil:
		res = result{errType: initType, payload: initErr}
	default:
		res = result{errType: "Runtime.ExitError",
			payload: []byte("Runtime exited with error: " + status)} // formatted below with the request id
	}
	res.log = w.takeLog(false)
	if inv != nil {
		w.s.finish(inv, res)
		w.s.workerGone(w, result{})
		return
	}
	if served == 0 {
		// It died before taking an invocation: the invocation that made it
		// start fails, as on Lambda.
		w.s.workerGone(w, res)
		return
	}
	w.s.workerGone(w, result{})
}

// finish completes inv with res, filling the request id into error messages.
func (s *Server) finish(inv *invocation, res result) {
	if res.errType == "Runtime.ExitError" {
		res.payload = functionErrorBody(res.errType, "RequestId: "+inv.id+" Error: "+string(res.payload))
	} else if res.errType == "Runtime.InvalidEntrypoint" {
		res.payload = []byte(fmt.Sprintf(string(res.payload), inv.id))
	}
	inv.complete(res)
}

// workerGone forgets w. When fail has an error type and an invocation waits,
// that invocation fails with it.
func (s *Server) workerGone(w *worker, fail result) {
	s.mu.Lock()
	delete(s.workers, w)
	w.mu.Lock()
	if w.state != workerBusy {
		s.idle--
	}
	w.mu.Unlock()
	var victim *invocation
	if fail.errType != "" && s.waiting > 0 {
		select {
		case victim = <-s.ready:
			s.waiting--
		default:
		}
	}
	// Keep enough workers for the invocations that wait.
	var nw *worker
	if !s.closed && s.idle < s.waiting && len(s.workers) < s.o.Workers {
		nw = s.newWorkerLocked()
	}
	s.mu.Unlock()
	if victim != nil {
		s.finish(victim, fail)
	}
	if nw != nil {
		s.startWorker(nw)
	}
}

// kill ends the worker's process group.
func (w *worker) kill() {
	w.mu.Lock()
	w.killed = true
	cmd := w.cmd
	w.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// next hands the worker the next invocation, waiting for one.
func (w *worker) next(rw http.ResponseWriter, r *http.Request) {
	s := w.s
	w.mu.Lock()
	if w.current != nil {
		// Asking for the next one without answering the last: Lambda
		// treats the runtime as broken.
		w.mu.Unlock()
		http.Error(rw, `{"errorType":"InvalidStateTransition","errorMessage":"next without a response"}`, http.StatusForbidden)
		return
	}
	wasBusy := w.state == workerBusy
	w.state = workerIdle
	w.mu.Unlock()
	if wasBusy {
		s.mu.Lock()
		s.idle++
		s.mu.Unlock()
	}
	var inv *invocation
	for inv == nil {
		select {
		case inv = <-s.ready:
		case <-r.Context().Done():
			return
		case <-s.closing:
			// Hold the request until the connection is closed or the worker
			// killed: an empty 200 would read as an invocation without headers.
			select {
			case <-r.Context().Done():
			case <-w.exited:
			}
			return
		}
		inv.mu.Lock()
		if inv.abandoned {
			// Its caller went away while it waited (Options.StopAbandoned):
			// it has ended already.
			inv.mu.Unlock()
			inv = nil
			s.mu.Lock()
			s.waiting--
			s.mu.Unlock()
			continue
		}
		inv.worker = w
		inv.mu.Unlock()
	}
	deadline := time.Now().Add(s.o.Timeout)
	s.mu.Lock()
	s.waiting--
	s.idle--
	s.mu.Unlock()
	w.mu.Lock()
	w.state = workerBusy
	w.current = inv
	w.served++
	w.mu.Unlock()
	inv.mu.Lock()
	inv.timer = time.AfterFunc(s.o.Timeout, func() { w.timeout(inv) })
	inv.mu.Unlock()
	select {
	case <-w.exited:
		// The process died as it was handed the invocation; reap may
		// have looked before current was set.
		s.finish(inv, result{errType: "Runtime.ExitError", payload: []byte("Runtime exited before it read the invocation")})
		return
	default:
	}
	w.takeLog(true) // what it wrote before belongs to no invocation
	h := rw.Header()
	h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
	h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(deadline.UnixMilli(), 10))
	h.Set("Lambda-Runtime-Invoked-Function-Arn", inv.arn)
	h.Set("Lambda-Runtime-Trace-Id", "Root=1-00000000-"+inv.id[:8]+";Sampled=0")
	h.Set("Content-Type", "application/json")
	rw.WriteHeader(http.StatusOK)
	rw.Write(inv.payload)
}

// timeout fails an invocation that overran the function's timeout and kills
// its worker, as Lambda resets the environment.
func (w *worker) timeout(inv *invocation) {
	secs := strconv.FormatFloat(w.s.o.Timeout.Seconds(), 'f', 2, 64)
	w.stop(inv, result{errType: "Sandbox.Timedout", log: w.takeLog(true),
		payload: functionErrorBody("Sandbox.Timedout", "RequestId: "+inv.id+" Error: Task timed out after "+secs+" seconds")})
}

// stop completes inv, which w runs, with res and kills w, unless inv has
// ended already.
func (w *worker) stop(inv *invocation, res result) {
	if inv.complete(res) {
		w.mu.Lock()
		if w.current == inv {
			w.current = nil
		}
		w.mu.Unlock()
		w.kill()
	}
}

// take ends the worker's current invocation if it is id.
func (w *worker) take(rw http.ResponseWriter, id string) *invocation {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.current == nil || w.current.id != id {
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusBadRequest)
		rw.Write(functionErrorBody("InvalidRequestID", "Invalid request ID: "+id))
		return nil
	}
	inv := w.current
	w.current = nil
	return inv
}

func (w *worker) response(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxSyncPayload+1))
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	inv := w.take(rw, r.PathValue("id"))
	if inv == nil {
		return
	}
	log := w.takeLog(true)
	if len(body) > MaxSyncPayload && !inv.async {
		inv.complete(result{errType: "Function.ResponseSizeTooLarge", log: log, payload: functionErrorBody("Function.ResponseSizeTooLarge",
			fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", MaxSyncPayload))})
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusRequestEntityTooLarge)
		rw.Write(functionErrorBody("RequestEntityTooLarge", fmt.Sprintf("Exceeded maximum allowed payload size (%d bytes).", MaxSyncPayload)))
		return
	}
	inv.complete(result{payload: body, log: log})
	rw.WriteHeader(http.StatusAccepted)
	rw.Write([]byte(`{"status":"OK"}`))
}

func (w *worker) invocationError(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxSyncPayload))
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	inv := w.take(rw, r.PathValue("id"))
	if inv == nil {
		return
	}
	inv.complete(result{errType: errorType(r, body), payload: errorPayload(r, body), log: w.takeLog(true)})
	rw.WriteHeader(http.StatusAccepted)
	rw.Write([]byte(`{"status":"OK"}`))
}

func (w *worker) initError(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	w.initErr, w.initType = errorPayload(r, body), errorType(r, body)
	w.mu.Unlock()
	rw.WriteHeader(http.StatusAccepted)
	rw.Write([]byte(`{"status":"OK"}`))
	// The environment failed to start: Lambda stops it.
	w.kill()
}

// errorType is the type a runtime gives an error: the
// Lambda-Runtime-Function-Error-Type header, else the body's errorType.
func errorType(r *http.Request, body []byte) string {
	if t := r.Header.Get("Lambda-Runtime-Function-Error-Type"); t != "" {
		return t
	}
	var v struct {
		Type string `json:"errorType"`
	}
	if json.Unmarshal(body, &v) == nil && v.Type != "" {
		return v.Type
	}
	return "Runtime.Unknown"
}

// errorPayload is what the caller of a failed invocation gets: the
// runtime's error body when it is JSON, else one made of it.
func errorPayload(r *http.Request, body []byte) []byte {
	if json.Valid(body) && len(body) > 0 {
		return body
	}
	return functionErrorBody(errorType(r, body), string(body))
}

// readLogs copies the process's output to out and keeps its tail in log,
// until the pipe ends (the process and whatever inherited the pipe exited).
// Each read from the pipe and the count of bytes read change together under
// logMu, so that drainLocked knows exactly what is left in the pipe.
func (w *worker) readLogs() {
	defer close(w.logDone)
	defer w.logs.Close()
	defer w.out.flush()
	end := func() {
		w.logMu.Lock()
		w.logEOF = true
		w.logMu.Unlock()
		w.logCond.Broadcast()
	}
	rc, err := w.logs.SyscallConn()
	if err != nil {
		end()
		return
	}
	buf := make([]byte, 32<<10)
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			w.logMu.Lock()
			defer w.logMu.Unlock()
			n, rerr = syscall.Read(int(fd), buf)
			if rerr == syscall.EAGAIN || rerr == syscall.EINTR {
				return false // wait until readable
			}
			if n > 0 {
				w.logRead += int64(n)
				w.log = append(w.log, buf[:n]...)
				if len(w.log) > maxLogTail {
					w.log = append(w.log[:0], w.log[len(w.log)-maxLogTail:]...)
				}
			}
			return true
		})
		if n > 0 {
			w.logCond.Broadcast()
			w.out.Write(buf[:n])
			continue
		}
		if err != nil || rerr != nil || n == 0 {
			end()
			return
		}
	}
}

// takeLog returns what the process wrote since the last call, and forgets
// it. With drain, it first waits until the reader has taken from the pipe
// what the process had written when takeLog was called: a runtime writes
// its output before it posts the invocation's response, so the output is
// all there when the response is handled.
func (w *worker) takeLog(drain bool) []byte {
	w.logMu.Lock()
	defer w.logMu.Unlock()
	if drain {
		w.drainLocked()
	}
	out := w.log
	w.log = nil
	return out
}

// drainLocked waits until the reader has read everything that is in the
// pipe now. w.logMu is held.
func (w *worker) drainLocked() {
	rc, err := w.logs.SyscallConn()
	if err != nil {
		return
	}
	pending := 0
	if err := rc.Control(func(fd uintptr) {
		if n, err := unix.IoctlGetInt(int(fd), fionread); err == nil {
			pending = n
		}
	}); err != nil {
		return
	}
	for target := w.logRead + int64(pending); w.logRead < target && !w.logEOF; {
		w.logCond.Wait()
	}
}
