package process

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/gowren/gowren/backends"
)

// smallPayload is the largest payload copied behind its header so that the
// whole invoke frame leaves in one write.
const smallPayload = 32 << 10

// longAgo is a deadline in the past: setting it interrupts blocked I/O.
var longAgo = time.Unix(1, 0)

var (
	// errNotDelivered marks a failure to send a payload: the worker never
	// ran it, so another worker may.
	errNotDelivered = errors.New("payload not delivered")
	// errGraceExpired means that a cancelled invocation did not end within
	// CancelGrace.
	errGraceExpired = errors.New("grace period expired")
)

type notDeliveredError struct{ err error }

func (e *notDeliveredError) Error() string        { return e.err.Error() }
func (e *notDeliveredError) Unwrap() error        { return e.err }
func (e *notDeliveredError) Is(target error) bool { return target == errNotDelivered }

// worker is the driver's handle on one worker process. It is owned by one
// goroutine at a time: the Invoke using it, or the pool while it is idle.
type worker struct {
	b    *Backend
	id   int
	cmd  *exec.Cmd
	pid  int
	req  *os.File      // driver's end of the request pipe (worker fd 3)
	resp *os.File      // driver's end of the reply pipe (worker fd 4)
	r    *bufio.Reader // on resp

	// Owner's state.
	seq  uint64
	wbuf []byte
	pbuf []byte // parts up to maxKeptPart bytes are read into it
	rhdr [headerSize]byte
	chdr [headerSize]byte

	stdout, stderr *lineWriter
	tail           tail // of stderr
	// The driver's ends of the worker's output capture: what the worker
	// left in its pipes is read once it has exited. nil without capture.
	capture *captureEnds

	reqOnce, respOnce sync.Once

	exited  chan struct{} // closed once the process is reaped
	state   *os.ProcessState
	waitErr error

	killMu sync.Mutex
	killed string // why the driver killed the worker, if it did
}

// newCmd returns the command of a worker, before its I/O is set up.
func (b *Backend) newCmd() *exec.Cmd {
	if b.command != nil {
		return exec.Command(b.command[0], b.command[1:]...)
	}
	if runtime.GOOS == "linux" {
		const self = "/proc/self/exe"
		if _, err := os.Stat(self); err == nil {
			arg0 := os.Args[0]
			if arg0 == "" {
				arg0 = self
			}
			return &exec.Cmd{Path: self, Args: []string{arg0}}
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return &exec.Cmd{Err: fmt.Errorf("find own executable: %w", err)}
	}
	return exec.Command(exe)
}

// startLocked starts a worker process; b.mu is held.
func (b *Backend) startLocked() (*worker, error) {
	b.started++
	id := b.started
	if os.Getenv(envWorker) != "" {
		return nil, fmt.Errorf("process: start worker %d: this process was started as a process worker (%s is set) "+
			"but did not call fanout.Init() before anything else: refusing to start workers of its own", id, envWorker)
	}
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("process: start worker %d: %w", id, err)
	}
	respR, respW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		return nil, fmt.Errorf("process: start worker %d: %w", id, err)
	}
	// The capture pipes and state page (see capture), where the system
	// has them.
	capEnds, capFiles, err := newCapture()
	if err != nil {
		closeFiles(reqR, reqW, respR, respW)
		return nil, fmt.Errorf("process: start worker %d: %w", id, err)
	}
	growPipe(reqW)
	growPipe(respR)
	w := &worker{
		b:       b,
		id:      id,
		req:     reqW,
		resp:    respR,
		r:       bufio.NewReaderSize(respR, 64<<10),
		exited:  make(chan struct{}),
		capture: capEnds,
	}
	worker := "[worker " + strconv.Itoa(id)
	w.stdout = &lineWriter{out: b.out, worker: worker}
	w.stderr = &lineWriter{out: b.out, worker: worker, tail: &w.tail}

	cmd := b.newCmd()
	cmd.Env = append(os.Environ(), b.env...)
	cmd.Env = append(cmd.Env, envWorker+"="+strconv.Itoa(id), envGrace+"="+b.grace.String())
	if capEnds != nil {
		cmd.Env = append(cmd.Env, envCapture+"=1")
	}
	cmd.Stdout = w.stdout
	cmd.Stderr = w.stderr
	cmd.ExtraFiles = append([]*os.File{reqR, respW}, capFiles...) // fds 3 and 4, then the capture's from 5
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = waitDelay
	err = cmd.Start()
	closeFiles(reqR, respW)
	if capEnds != nil {
		// The driver keeps the read ends and the state page.
		closeFiles(capFiles[1], capFiles[3])
	}
	if err != nil {
		closeFiles(reqW, respR)
		if capEnds != nil {
			capEnds.close()
		}
		return nil, fmt.Errorf("process: start worker %d: %w", id, err)
	}
	w.cmd = cmd
	w.pid = cmd.Process.Pid
	b.all[w] = struct{}{}
	b.reapers.Add(1)
	go w.reap()
	return w, nil
}

func (w *worker) reap() {
	defer w.b.reapers.Done()
	err := w.cmd.Wait()
	// What the worker could not forward any more, such as the last words
	// of a task that called os.Exit or of a crash, comes after what it
	// forwarded.
	if w.capture != nil {
		w.capture.drain(w.stdout, w.stderr)
	}
	w.stdout.flush()
	w.stderr.flush()
	w.state, w.waitErr = w.cmd.ProcessState, err
	w.b.mu.Lock()
	delete(w.b.all, w)
	w.b.mu.Unlock()
	close(w.exited)
}

// handshake waits for the worker's hello.
func (w *worker) handshake(ctx context.Context, timeout time.Duration) error {
	_ = w.resp.SetReadDeadline(time.Now().Add(timeout))
	stop, fired := func() bool { return true }, chan struct{}(nil)
	if ctx.Done() != nil {
		fired = make(chan struct{})
		stop = context.AfterFunc(ctx, func() {
			_ = w.resp.SetReadDeadline(longAgo)
			close(fired)
		})
	}
	var buf [headerSize + helloSize]byte
	_, err := io.ReadFull(w.r, buf[:])
	if !stop() {
		<-fired
	}
	_ = w.resp.SetReadDeadline(time.Time{})
	const hint = "does main (or TestMain) call fanout.Init() before anything else?"
	switch {
	case err == nil:
	case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
		w.kill("start cancelled")
		return fmt.Errorf("process: start worker %d (pid %d): %w", w.id, w.pid, ctx.Err())
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.kill(fmt.Sprintf("not ready within StartTimeout (%v)", timeout))
		w.waitExit()
		return fmt.Errorf("process: start worker %d (pid %d): not ready within StartTimeout (%v): %s%s",
			w.id, w.pid, timeout, hint, w.tail.String())
	default:
		w.waitExit()
		return fmt.Errorf("process: start worker %d (pid %d): worker exited before serving (%s): %s%s",
			w.id, w.pid, w.status(), hint, w.tail.String())
	}
	h, err := parseHeader(buf[:headerSize])
	if err == nil && (h.typ != frameHello || h.flags != 0 || h.size != helloSize || h.id != 0) {
		err = fmt.Errorf("bad frame: %v of %d bytes for request %d, want hello", h.typ, h.size, h.id)
	}
	if err == nil {
		if v := binary.BigEndian.Uint32(buf[headerSize:]); v != protocolVersion {
			err = fmt.Errorf("protocol version %d, want %d", v, protocolVersion)
		} else if pid := binary.BigEndian.Uint32(buf[headerSize+4:]); int(pid) != w.pid {
			err = fmt.Errorf("hello from pid %d", pid)
		}
	}
	if err != nil {
		w.kill("bad hello")
		w.waitExit()
		return fmt.Errorf("process: start worker %d (pid %d): %v (does Command run a program built with this version of gowren?)%s",
			w.id, w.pid, err, w.tail.String())
	}
	return nil
}

// exchange is the state of one invocation's I/O.
type exchange struct {
	w     *worker
	id    uint64
	fired chan struct{} // closed once ctx's AfterFunc has set past deadlines
	// cancelled: ctx is done and the I/O deadlines are the grace period's.
	cancelled bool
	// cancelDue: a cancel frame is to be sent once the invoke frame is.
	cancelDue bool
	sent      bool // the invoke frame is sent
}

// maxKeptPart bounds the part buffer a worker keeps between invocations; a
// larger part gets a buffer of its own.
const maxKeptPart = 1 << 20

// invoke runs one invocation on w. keep reports whether w can serve again.
//
// When part is not nil the worker is asked for parts, and part is called
// with each, in this goroutine, before invoke returns; otherwise a part is a
// bad frame. When ctx ends and the worker still replies within the grace
// period, invoke returns that reply with ctx's error.
func (w *worker) invoke(ctx context.Context, payload []byte, part func([]byte)) (reply []byte, keep bool, err error) {
	w.seq++
	x := &exchange{w: w, id: w.seq}
	if ctx.Done() != nil {
		x.fired = make(chan struct{})
		fired := x.fired
		stop := context.AfterFunc(ctx, func() {
			_ = w.req.SetWriteDeadline(longAgo)
			_ = w.resp.SetReadDeadline(longAgo)
			close(fired)
		})
		defer func() {
			if !stop() {
				<-fired
				if keep {
					_ = w.req.SetWriteDeadline(time.Time{})
					_ = w.resp.SetReadDeadline(time.Time{})
				}
			}
		}()
	}

	// Send the invoke frame, and a cancel frame if ctx ended meanwhile.
	n := headerSize + invokePrefixSize
	small := len(payload) <= smallPayload
	if small {
		n += len(payload)
	}
	if cap(w.wbuf) < n {
		w.wbuf = make([]byte, max(n, 4<<10))
	}
	buf := w.wbuf[:n]
	putHeader(buf, header{typ: frameInvoke, size: uint32(invokePrefixSize + len(payload)), id: x.id})
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixNano()
	}
	binary.BigEndian.PutUint64(buf[headerSize:], uint64(deadline))
	binary.BigEndian.PutUint32(buf[headerSize+8:], uint32(w.b.maxResponse))
	var options uint32
	if part != nil {
		options |= optStream
	}
	binary.BigEndian.PutUint32(buf[headerSize+12:], options)
	if small {
		copy(buf[headerSize+invokePrefixSize:], payload)
	}
	err = x.write(buf)
	if err == nil && !small {
		err = x.write(payload)
	}
	if err != nil {
		if errors.Is(err, errGraceExpired) {
			return nil, false, x.graceExpired(ctx)
		}
		return nil, false, &notDeliveredError{w.lost("was lost before it got the payload", err.Error())}
	}
	x.sent = true
	if err := x.sendCancel(); err != nil {
		return nil, false, x.readFailed(ctx, err)
	}

	// Read the parts, if any, then the frame that ends the invocation.
	var h header
	for {
		if err := x.readFull(w.rhdr[:]); err != nil {
			return nil, false, x.readFailed(ctx, err)
		}
		h, err = parseHeader(w.rhdr[:])
		if err == nil {
			err = checkReply(h, x.id, w.b.maxResponse, part != nil)
		}
		if err != nil {
			w.kill("it sent a bad frame")
			return nil, false, w.lost("sent a bad frame: "+err.Error(), "")
		}
		if h.typ != framePart {
			break
		}
		p := w.partBuf(int(h.size))
		if err := x.readFull(p); err != nil {
			return nil, false, x.readFailed(ctx, err)
		}
		part(p)
	}
	body := make([]byte, h.size)
	if err := x.readFull(body); err != nil {
		return nil, false, x.readFailed(ctx, err)
	}
	// A worker that retires has a task goroutine it could not stop: it is
	// not used again, whatever the frame that ended the invocation.
	keep = h.flags&flagRetire == 0
	if x.cancelled {
		if h.typ == frameReply {
			reply = body // a late reply, for InvokeStream's part
		}
		return reply, keep, fmt.Errorf("process: invoke: %w", ctx.Err())
	}
	switch h.typ {
	case frameTooLarge:
		return nil, keep, fmt.Errorf("process: invoke: worker %d: reply of %d bytes exceeds MaxResponseBytes (%d): %w",
			w.id, binary.BigEndian.Uint64(body), w.b.maxResponse, backends.ErrPayloadTooLarge)
	case frameFailed:
		return nil, keep, fmt.Errorf("process: invoke: worker %d (pid %d): handler failed: %s", w.id, w.pid, body)
	}
	return body, keep, nil
}

// partBuf returns a buffer of n bytes for a part: part may not keep it, so
// small parts share one.
func (w *worker) partBuf(n int) []byte {
	if n > maxKeptPart {
		return make([]byte, n)
	}
	if cap(w.pbuf) < n {
		w.pbuf = make([]byte, max(n, 4<<10))
	}
	return w.pbuf[:n]
}

// readFailed turns an error reading the reply into Invoke's error.
func (x *exchange) readFailed(ctx context.Context, err error) error {
	if errors.Is(err, errGraceExpired) {
		return x.graceExpired(ctx)
	}
	return x.w.lost("died during the invocation", err.Error())
}

func (x *exchange) graceExpired(ctx context.Context) error {
	w := x.w
	w.kill(fmt.Sprintf("no reply within CancelGrace (%v) after cancel", w.b.grace))
	return fmt.Errorf("process: invoke: worker %d (pid %d) killed: no reply within CancelGrace (%v) after cancel: %w",
		w.id, w.pid, w.b.grace, ctx.Err())
}

// interrupted handles a deadline that interrupted I/O: the first means ctx is
// done, and the grace period starts; the second means the grace period is
// over.
func (x *exchange) interrupted() error {
	if x.cancelled || x.fired == nil {
		return errGraceExpired
	}
	<-x.fired // the AfterFunc has set both deadlines
	x.cancelled, x.cancelDue = true, true
	end := time.Now().Add(x.w.b.grace)
	_ = x.w.req.SetWriteDeadline(end)
	_ = x.w.resp.SetReadDeadline(end)
	return nil
}

// sendCancel sends the cancel frame if one is due and the invoke frame has
// left.
func (x *exchange) sendCancel() error {
	if !x.cancelDue || !x.sent {
		return nil
	}
	x.cancelDue = false
	putHeader(x.w.chdr[:], header{typ: frameCancel, id: x.id})
	return x.write(x.w.chdr[:])
}

func (x *exchange) write(p []byte) error {
	for len(p) > 0 {
		n, err := x.w.req.Write(p)
		p = p[n:]
		if err == nil {
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		if err := x.interrupted(); err != nil {
			return err
		}
	}
	return nil
}

func (x *exchange) readFull(p []byte) error {
	for n := 0; n < len(p); {
		m, err := x.w.r.Read(p[n:])
		n += m
		if err == nil || n == len(p) {
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		if err := x.interrupted(); err != nil {
			return err
		}
		if err := x.sendCancel(); err != nil {
			return err
		}
	}
	return nil
}

// lost waits for the worker to exit and returns the error of an invocation
// it lost: what happened, its exit status, the I/O error and its last
// stderr lines.
func (w *worker) lost(what, ioErr string) error {
	w.waitExit()
	details := w.status()
	if ioErr != "" && ioErr != io.EOF.Error() {
		details += "; " + ioErr
	}
	return fmt.Errorf("process: invoke: worker %d (pid %d) %s (%s): %w%s",
		w.id, w.pid, what, details, backends.ErrWorkerLost, w.tail.String())
}

// status describes how the worker ended; it has exited.
func (w *worker) status() string {
	s := "exit status unknown"
	if w.state != nil {
		s = w.state.String()
	} else if w.waitErr != nil {
		s = w.waitErr.Error()
	}
	w.killMu.Lock()
	defer w.killMu.Unlock()
	switch {
	case w.killed == "":
	case s == "signal: killed":
		s = "killed by the driver: " + w.killed
	default:
		s += ", after the driver killed it: " + w.killed
	}
	return s
}

func (w *worker) hasExited() bool {
	select {
	case <-w.exited:
		return true
	default:
		return false
	}
}

// kill kills the worker and the processes it started, recording why.
func (w *worker) kill(reason string) {
	if w.hasExited() {
		return
	}
	w.killMu.Lock()
	if w.killed == "" {
		w.killed = reason
	}
	w.killMu.Unlock()
	_ = w.cmd.Process.Kill()
	killGroup(w.pid)
}

// waitExit waits for the worker to exit, killing it after the grace period.
func (w *worker) waitExit() {
	if w.hasExited() {
		return
	}
	t := time.NewTimer(w.b.grace)
	defer t.Stop()
	select {
	case <-w.exited:
		return
	case <-t.C:
	}
	w.kill(fmt.Sprintf("did not exit within CancelGrace (%v)", w.b.grace))
	<-w.exited
}

// closeRequests closes the request pipe: the worker exits when it sees the
// end of it.
func (w *worker) closeRequests() { w.reqOnce.Do(func() { w.req.Close() }) }

// dispose ends a worker that is not used again: it closes its request pipe,
// waits for it to exit (killing it after the grace period) and closes the
// reply pipe.
func (w *worker) dispose() {
	w.closeRequests()
	w.waitExit()
	w.respOnce.Do(func() { w.resp.Close() })
}
