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

// longAgo is a deadline in the past: setting it interrupts blocked I/O
// (only the hello is read with deadlines).
var longAgo = time.Unix(1, 0)

// errNotDelivered marks a failure to send a payload: the worker never ran
// it, so another worker may.
var errNotDelivered = errors.New("payload not delivered")

type notDeliveredError struct{ err error }

func (e *notDeliveredError) Error() string        { return e.err.Error() }
func (e *notDeliveredError) Unwrap() error        { return e.err }
func (e *notDeliveredError) Is(target error) bool { return target == errNotDelivered }

// worker is the driver's handle on one worker process. It is owned by one
// goroutine at a time: the Invoke using it, or the pool while it is idle.
// Once it has said hello, a reader goroutine reads all it sends, for the
// rest of its life: it passes an invocation's frames to the owner and
// serves the reverse calls the worker makes, whenever it makes them, each
// in a goroutine that writes the answer to req itself. Every write to req
// is made under wmu.
type worker struct {
	b    *Backend
	id   int
	cmd  *exec.Cmd
	pid  int
	req  *os.File      // driver's end of the request pipe (worker fd 3)
	resp *os.File      // driver's end of the reply pipe (worker fd 4)
	r    *bufio.Reader // on resp; the reader's once it runs

	// Owner's state.
	seq  uint64
	wbuf []byte
	chdr [headerSize]byte

	// Reader's state.
	lastCall uint64 // the id of the last reverse call read
	pbuf     []byte // parts up to maxKeptPart bytes are read into it

	// Set by the reader before it closes gone.
	gone     chan struct{}
	readErr  error
	badFrame error // the worker sent a bad frame and was killed

	xmu    sync.Mutex
	cur    *exchange       // the invocation the reader passes frames to
	values context.Context // of the last invocation, without its cancellation: a reverse call's context gets them

	callMu sync.Mutex
	calls  map[uint64]context.CancelFunc // reverse calls in flight; nil once the reader is done

	stdout, stderr *lineWriter
	tail           tail // of stderr
	// The driver's ends of the worker's output capture: what the worker
	// left in its pipes is read once it has exited. nil without capture.
	capture *captureEnds

	reqOnce, respOnce sync.Once

	wmu sync.Mutex // held for each frame written to req
	// broken: an answer to a reverse call was cut short, so the request
	// stream is no longer framed. Guarded by wmu.
	broken bool

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
		gone:    make(chan struct{}),
		calls:   make(map[uint64]context.CancelFunc),
		capture: capEnds,
	}
	worker := "[worker " + strconv.Itoa(id)
	w.stdout = &lineWriter{out: b.out, worker: worker}
	w.stderr = &lineWriter{out: b.out, worker: worker, tail: &w.tail}

	cmd := b.newCmd()
	cmd.Env = append(os.Environ(), b.env...)
	cmd.Env = append(cmd.Env, envWorker+"="+strconv.Itoa(id), envGrace+"="+b.grace.String(),
		fmt.Sprintf("%s=%d,%d,%d", envLimits, b.maxRequest, b.maxResponse, b.workers))
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

// exchange is the state of one invocation, shared by its owner (the
// goroutine of Invoke) and the worker's reader.
type exchange struct {
	w      *worker
	id     uint64
	stream bool // the invocation asked for parts

	// The reader sends the invocation's parts and its last frame here; it
	// waits on ack after a part, whose buffer it reuses.
	frames chan frame
	ack    chan struct{}
	left   chan struct{} // closed when the owner returns: nothing more is received

	mu      sync.Mutex
	over    bool        // the owner is done with the exchange
	timer   *time.Timer // kills the worker once CancelGrace has passed since ctx ended
	expired bool        // the timer fired: the worker was killed
}

// frame is one frame the reader read for an invocation.
type frame struct {
	h    header
	body []byte
}

// maxKeptPart bounds the part buffer a worker keeps between invocations; a
// larger part gets a buffer of its own.
const maxKeptPart = 1 << 20

// invoke runs one invocation on w. keep reports whether w can serve again.
//
// When part is not nil the worker is asked for parts, and part is called
// with each, in this goroutine, before invoke returns; otherwise a part is a
// bad frame. When ctx ends, the worker gets a cancel frame and CancelGrace
// to answer, after which it is killed; when it still replies in time, invoke
// returns that reply with ctx's error.
func (w *worker) invoke(ctx context.Context, payload []byte, part func([]byte)) (reply []byte, keep bool, err error) {
	w.seq++
	x := &exchange{w: w, id: w.seq, stream: part != nil,
		frames: make(chan frame), ack: make(chan struct{}), left: make(chan struct{})}
	w.setCurrent(x, ctx)
	defer func() {
		w.setCurrent(nil, nil)
		close(x.left)
	}()
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, x.startGrace)
		defer stop()
	}
	defer x.finish() // again when a reply came: it is idempotent

	// Send the invoke frame. A write blocked by a worker that does not
	// read ends when the grace period kills it.
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
	w.wmu.Lock()
	_, err = w.req.Write(buf)
	if err == nil && !small {
		_, err = w.req.Write(payload)
	}
	w.wmu.Unlock()
	if err != nil {
		if x.hasExpired() {
			return nil, false, x.graceExpired(ctx)
		}
		return nil, false, &notDeliveredError{w.lost("was lost before it got the payload", err.Error())}
	}

	// Wait for the parts, if any, then the frame that ends the invocation;
	// send a cancel frame when ctx ends.
	cancelled := false
	var f frame
	for {
		done := ctx.Done()
		if cancelled {
			done = nil
		}
		select {
		case f = <-x.frames:
		case <-done:
			cancelled = true
			putHeader(w.chdr[:], header{typ: frameCancel, id: x.id})
			w.wmu.Lock()
			_, _ = w.req.Write(w.chdr[:]) // an error means the worker is gone: the reader says so
			w.wmu.Unlock()
			continue
		case <-w.gone:
			if x.hasExpired() {
				return nil, false, x.graceExpired(ctx)
			}
			if w.badFrame != nil {
				return nil, false, w.lost("sent a bad frame: "+w.badFrame.Error(), "")
			}
			return nil, false, w.lost("died during the invocation", w.readErr.Error())
		}
		if f.h.typ != framePart {
			break
		}
		if !x.hasExpired() {
			part(f.body)
		}
		x.ack <- struct{}{}
	}
	if x.finish() {
		return nil, false, x.graceExpired(ctx)
	}
	// A worker that retires has a task goroutine it could not stop: it is
	// not used again, whatever the frame that ended the invocation.
	keep = f.h.flags&flagRetire == 0
	if cancelled {
		if f.h.typ == frameReply {
			reply = f.body // a late reply, for InvokeStream's part
		}
		return reply, keep, fmt.Errorf("process: invoke: %w", ctx.Err())
	}
	switch f.h.typ {
	case frameTooLarge:
		return nil, keep, fmt.Errorf("process: invoke: worker %d: reply of %d bytes exceeds MaxResponseBytes (%d): %w",
			w.id, binary.BigEndian.Uint64(f.body), w.b.maxResponse, backends.ErrPayloadTooLarge)
	case frameFailed:
		return nil, keep, fmt.Errorf("process: invoke: worker %d (pid %d): handler failed: %s", w.id, w.pid, f.body)
	}
	return f.body, keep, nil
}

// startGrace runs when the invocation's ctx ends: the worker has
// CancelGrace to answer before it is killed.
func (x *exchange) startGrace() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.over {
		x.timer = time.AfterFunc(x.w.b.grace, x.expire)
	}
}

func (x *exchange) expire() {
	x.mu.Lock()
	if x.over {
		x.mu.Unlock()
		return
	}
	x.expired = true
	x.mu.Unlock()
	x.w.kill(fmt.Sprintf("no reply within CancelGrace (%v) after cancel", x.w.b.grace))
}

func (x *exchange) hasExpired() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.expired
}

// finish ends the exchange: the grace period, if it runs, no longer kills
// the worker. It reports whether it already did.
func (x *exchange) finish() (expired bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.over = true
	if x.timer != nil {
		x.timer.Stop()
	}
	return x.expired
}

func (x *exchange) graceExpired(ctx context.Context) error {
	w := x.w
	return fmt.Errorf("process: invoke: worker %d (pid %d) killed: no reply within CancelGrace (%v) after cancel: %w",
		w.id, w.pid, w.b.grace, ctx.Err())
}

// setCurrent makes x the invocation the reader passes frames to, nil for
// none; ctx is its context, whose values the reverse calls the worker makes
// from now on get.
func (w *worker) setCurrent(x *exchange, ctx context.Context) {
	w.xmu.Lock()
	defer w.xmu.Unlock()
	w.cur = x
	if ctx != nil {
		w.values = context.WithoutCancel(ctx)
	}
}

// current returns the invocation the reader passes frames to, nil for none,
// and the context whose values a reverse call gets.
func (w *worker) current() (*exchange, context.Context) {
	w.xmu.Lock()
	defer w.xmu.Unlock()
	return w.cur, w.values
}

// startReader starts the goroutine that reads the worker's frames for the
// rest of its life, once it has said hello.
func (w *worker) startReader() {
	w.b.readers.Add(1)
	go w.read()
}

// read reads the worker's frames until its reply pipe ends: it serves
// reverse calls itself and passes an invocation's frames to its owner. Then
// it cancels the reverse calls still out and closes w.gone; a bad frame
// kills the worker first.
func (w *worker) read() {
	defer w.b.readers.Done()
	err := w.readFrames()
	if errors.Is(err, errBadFrame) {
		w.badFrame = err
		w.kill("it sent a bad frame")
	}
	w.readErr = err
	w.callMu.Lock()
	calls := w.calls
	w.calls = nil
	w.callMu.Unlock()
	for _, cancel := range calls {
		cancel()
	}
	close(w.gone)
}

var errBadFrame = errors.New("bad frame")

func (w *worker) readFrames() error {
	var hb [headerSize]byte
	for {
		if _, err := io.ReadFull(w.r, hb[:]); err != nil {
			return err
		}
		h, err := parseHeader(hb[:])
		x, values := w.current()
		switch {
		case err != nil:
		case x == nil && h.typ != frameCall && h.typ != frameCallCancel:
			err = fmt.Errorf("%v for request %d between invocations", h.typ, h.id)
		case x == nil:
			err = checkReply(h, 0, 0, w.b.maxRequest, false)
		default:
			err = checkReply(h, x.id, w.b.maxResponse, w.b.maxRequest, x.stream)
		}
		if err == nil && h.typ == frameCall && h.id <= w.lastCall {
			err = fmt.Errorf("call %d after call %d", h.id, w.lastCall)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errBadFrame, err)
		}
		switch h.typ {
		case frameCall:
			w.lastCall = h.id
			body := make([]byte, h.size)
			if _, err := io.ReadFull(w.r, body); err != nil {
				return err
			}
			w.startCall(values, h.id, body)
		case frameCallCancel:
			w.cancelCall(h.id)
		case framePart:
			p := w.partBuf(int(h.size))
			if _, err := io.ReadFull(w.r, p); err != nil {
				return err
			}
			select {
			case x.frames <- frame{h, p}:
				select {
				case <-x.ack:
				case <-x.left:
				}
			case <-x.left: // only a worker that answers what it never got
			}
		default:
			body := make([]byte, h.size)
			if _, err := io.ReadFull(w.r, body); err != nil {
				return err
			}
			w.setCurrent(nil, nil) // a second reply would be a bad frame
			select {
			case x.frames <- frame{h, body}:
			case <-x.left: // only a worker that answers what it never got
			}
		}
	}
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

// isGone reports whether the reader has seen the end of the worker's
// frames.
func (w *worker) isGone() bool {
	select {
	case <-w.gone:
		return true
	default:
		return false
	}
}

// isBroken reports whether the request stream was cut mid-frame.
func (w *worker) isBroken() bool {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return w.broken
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
