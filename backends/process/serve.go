package process

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gowren/gowren/backends"
)

// Environment variables the driver sets on a worker. Serve removes them, so
// that programs a task starts neither inherit them nor think they are workers.
const (
	// envWorker holds the worker's number; its presence makes a process a
	// worker.
	envWorker = "GOWREN_PROCESS_WORKER"
	// envGrace holds Options.CancelGrace: how long a worker whose driver
	// went away waits for a running invocation before it exits.
	envGrace = "GOWREN_PROCESS_GRACE"
	// envLimits holds the pool's limits, which a handler's invoker
	// reports: "MaxRequestBytes,MaxResponseBytes,Workers".
	envLimits = "GOWREN_PROCESS_LIMITS"
	// envCapture, set, says that the driver passed the capture pipes: the
	// read and write ends of the stdout pipe at fds captureFD and
	// captureFD+1, those of the stderr pipe at captureFD+2 and +3, and the
	// state page at captureFD+4 (Linux only, see capture).
	envCapture = "GOWREN_PROCESS_CAPTURE"

	// Child file descriptors of the two pipes (cmd.ExtraFiles).
	requestFD = 3
	replyFD   = 4
	captureFD = 5
)

func init() {
	backends.RegisterRuntime(backends.Runtime{Name: "process", Detect: detect, Serve: serve})
	backends.Register("process", open)
}

// detect reports whether the process backend started this process as a
// worker.
func detect() bool { return os.Getenv(envWorker) != "" }

// serve is the worker side: it says hello on fd 4, then runs each invoke
// frame from fd 3 with h, one at a time, and writes the parts the handler
// sends (when the driver asked for them), the reverse calls it makes through
// backends.InvokerOf, and the reply. It returns nil when the driver closes
// fd 3 (on Close, or because it died), after giving a running invocation,
// whose context it cancels, the grace period to end.
func serve(h backends.Handler) error {
	name := os.Getenv(envWorker)
	grace, err := time.ParseDuration(os.Getenv(envGrace))
	if err != nil || grace < 0 {
		grace = defaultCancelGrace
	}
	limits := parseLimits(os.Getenv(envLimits))
	captured := os.Getenv(envCapture) != ""
	os.Unsetenv(envWorker)
	os.Unsetenv(envGrace)
	os.Unsetenv(envLimits)
	os.Unsetenv(envCapture)
	nameProcess()
	req, err := inheritedPipe(requestFD, "gowren-requests")
	var rep *os.File
	if err == nil {
		rep, err = inheritedPipe(replyFD, "gowren-replies")
	}
	if err != nil {
		return fmt.Errorf("process: serve worker %s: %w (was this process started by the process backend?)", name, err)
	}
	s := &server{
		h:      h,
		grace:  grace,
		limits: limits,
		r:      bufio.NewReaderSize(req, 64<<10),
		w:      bufio.NewWriterSize(rep, 64<<10),
		calls:  make(map[uint64]*call),
	}
	s.invoker = &invoker{s: s}
	if captured {
		if s.capture, err = startCapture(); err != nil {
			return fmt.Errorf("process: serve worker %s: %w", name, err)
		}
		defer s.capture.close()
	}
	return s.run()
}

// parseLimits parses envLimits; what it cannot parse it leaves at zero: no
// limit on the worker's side, the driver still checks.
func parseLimits(v string) backends.Limits {
	var n [3]int
	for i, f := range strings.SplitN(v, ",", 3) {
		n[i], _ = strconv.Atoi(f)
		n[i] = max(n[i], 0)
	}
	return backends.Limits{
		MaxRequestBytes:  min(n[0], maxLimit),
		MaxResponseBytes: min(n[1], maxLimit),
		Concurrency:      n[2],
		Parallel:         1,
		SameHost:         true,
		Nested:           true,
	}
}

// server is the worker's side of the protocol. The goroutine of run reads
// fd 3 and never writes; everything written to fd 4 is written under wmu.
// Lock order: wmu before mu.
type server struct {
	h       backends.Handler
	invoker *invoker // what InvokerOf returns in the handlers
	grace   time.Duration
	limits  backends.Limits // the pool's, as the driver told
	r       *bufio.Reader
	capture *capture // nil: the driver did not ask for capture

	mu    sync.Mutex
	cur   *invocation      // the running invocation, nil when idle
	calls map[uint64]*call // reverse calls waiting for their answer

	wmu      sync.Mutex
	w        *bufio.Writer
	hdr      [headerSize]byte
	stopped  bool   // no more frames: the driver is gone or closing
	lastCall uint64 // the id of the last call sent
}

// call is a reverse call waiting for the driver's answer: whoever removes
// it from server.calls sets reply and err, then closes done.
type call struct {
	id    uint64
	done  chan struct{}
	reply []byte
	err   error
}

type invocation struct {
	id       uint64
	maxReply int
	cancel   context.CancelFunc
	done     chan struct{} // closed when the handler goroutine ends
	ended    bool          // the handler returned: no more parts; guarded by server.wmu
}

var (
	errStopped = errors.New("worker stopped")
	errEnded   = errors.New("the invocation's handler already returned its reply")
)

func (s *server) run() error {
	var hello [helloSize]byte
	binary.BigEndian.PutUint32(hello[0:4], protocolVersion)
	binary.BigEndian.PutUint32(hello[4:8], uint32(os.Getpid()))
	if err := s.send(frameHello, 0, 0, hello[:]); err != nil {
		return fmt.Errorf("process: serve: hello: %w", err)
	}
	var hb [headerSize]byte
	for {
		if _, err := io.ReadFull(s.r, hb[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return s.stop()
			}
			return fmt.Errorf("process: serve: read: %w", err)
		}
		h, err := parseHeader(hb[:])
		if err == nil && h.flags != 0 {
			err = fmt.Errorf("bad frame: %v with flags %#02x", h.typ, h.flags)
		}
		if err != nil {
			return fmt.Errorf("process: serve: %w", err)
		}
		switch h.typ {
		case frameInvoke:
			if h.size < invokePrefixSize || h.size > maxLimit+invokePrefixSize {
				return fmt.Errorf("process: serve: bad frame: invoke of %d bytes", h.size)
			}
			body := make([]byte, h.size)
			if _, err := io.ReadFull(s.r, body); err != nil {
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					return s.stop()
				}
				return fmt.Errorf("process: serve: read: %w", err)
			}
			if err := s.start(h.id, body); err != nil {
				return err
			}
		case frameResult, frameCallFail:
			if err := checkAnswer(h, s.maxResult()); err != nil {
				return fmt.Errorf("process: serve: %w", err)
			}
			body := make([]byte, h.size)
			if _, err := io.ReadFull(s.r, body); err != nil {
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					return s.stop()
				}
				return fmt.Errorf("process: serve: read: %w", err)
			}
			s.mu.Lock()
			c := s.calls[h.id]
			delete(s.calls, h.id)
			s.mu.Unlock()
			if c == nil {
				continue // its caller gave up on it
			}
			if h.typ == frameResult {
				c.reply = body
			} else {
				c.err = decodeCallFail(body)
			}
			close(c.done)
		case frameCancel:
			if h.size != 0 {
				return fmt.Errorf("process: serve: bad frame: cancel of %d bytes", h.size)
			}
			s.mu.Lock()
			if s.cur != nil && s.cur.id == h.id {
				s.cur.cancel()
			}
			s.mu.Unlock()
		default:
			return fmt.Errorf("process: serve: bad frame: unexpected %v", h.typ)
		}
	}
}

// start runs the handler on an invoke frame's body in a goroutine of its own,
// so that cancel frames and the end of the request stream are seen while it
// runs.
func (s *server) start(id uint64, body []byte) error {
	deadline := int64(binary.BigEndian.Uint64(body[0:8]))
	options := binary.BigEndian.Uint32(body[12:16])
	if options&^optStream != 0 {
		return fmt.Errorf("process: serve: bad frame: invoke %d with unknown options %#x", id, options)
	}
	inv := &invocation{
		id:       id,
		maxReply: int(binary.BigEndian.Uint32(body[8:12])),
		done:     make(chan struct{}),
	}
	payload := body[invokePrefixSize:]
	ctx := context.Background()
	if s.capture != nil {
		ctx = backends.WithOutputCapture(ctx, s.capture)
	}
	if options&optStream != 0 {
		ctx = backends.WithPartSender(ctx, func(part []byte) error { return s.sendPart(inv, part) })
	}
	if backends.InvokerOf(ctx) == nil {
		ctx = backends.WithInvoker(ctx, s.invoker)
	}
	if deadline != 0 {
		ctx, inv.cancel = context.WithDeadline(ctx, time.Unix(0, deadline))
	} else {
		ctx, inv.cancel = context.WithCancel(ctx)
	}
	s.mu.Lock()
	busy := s.cur != nil
	if !busy {
		s.cur = inv
	}
	s.mu.Unlock()
	if busy {
		inv.cancel()
		return fmt.Errorf("process: serve: bad frame: invoke %d while busy", id)
	}
	go s.handle(ctx, inv, payload)
	return nil
}

func (s *server) handle(ctx context.Context, inv *invocation, payload []byte) {
	defer close(inv.done)
	reply, failure := s.call(ctx, payload)
	if s.capture != nil {
		s.capture.sync()
	}
	s.wmu.Lock()
	inv.ended = true // a part sent from now on is refused
	s.wmu.Unlock()
	inv.cancel()
	// Idle again before the reply leaves: the driver may send the next
	// invocation as soon as it has read it.
	s.mu.Lock()
	s.cur = nil
	s.mu.Unlock()
	// However the invocation ends, a worker with a task goroutine it could
	// not stop asks to be retired.
	var flags uint8
	if backends.Abandoned() > 0 {
		flags = flagRetire
	}
	var err error
	switch {
	case failure != "":
		if len(failure) > maxFailedSize {
			failure = failure[:maxFailedSize]
		}
		err = s.send(frameFailed, flags, inv.id, []byte(failure))
	case len(reply) > inv.maxReply:
		var size [tooLargeSize]byte
		binary.BigEndian.PutUint64(size[:], uint64(len(reply)))
		err = s.send(frameTooLarge, flags, inv.id, size[:])
	default:
		err = s.send(frameReply, flags, inv.id, reply)
	}
	if err != nil && err != errStopped {
		// The driver is gone; the request stream will end too.
		fmt.Fprintf(os.Stderr, "process: serve: reply to request %d: %v\n", inv.id, err)
	}
}

// call runs the handler, which should never panic; if it does anyway, the
// driver gets the panic instead of a dead worker.
func (s *server) call(ctx context.Context, payload []byte) (reply []byte, failure string) {
	defer func() {
		if r := recover(); r != nil {
			failure = fmt.Sprintf("panic: %v\n\n%s", r, debug.Stack())
		}
	}()
	return s.h(ctx, payload), ""
}

// sendPart is the part sender of a streaming invocation: it writes part as a
// part frame ahead of the reply. It refuses a part over the invocation's
// reply limit (the driver would not accept it) and, once the handler has
// returned or the driver is gone, any part at all.
func (s *server) sendPart(inv *invocation, part []byte) error {
	if len(part) > inv.maxReply {
		return fmt.Errorf("process: send part of %d bytes: over the invocation's reply limit (%d bytes): %w",
			len(part), inv.maxReply, backends.ErrPayloadTooLarge)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if inv.ended {
		return fmt.Errorf("process: send part: %w", errEnded)
	}
	if err := s.writeLocked(framePart, 0, inv.id, part); err != nil {
		return fmt.Errorf("process: send part: %w", err)
	}
	return nil
}

// send writes one frame, unless the server has stopped.
func (s *server) send(t frameType, flags uint8, id uint64, body []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(t, flags, id, body)
}

// writeLocked writes one frame whose body is the concatenation of body;
// s.wmu is held.
func (s *server) writeLocked(t frameType, flags uint8, id uint64, body ...[]byte) error {
	if s.stopped {
		return errStopped
	}
	var n int
	for _, b := range body {
		n += len(b)
	}
	putHeader(s.hdr[:], header{typ: t, flags: flags, size: uint32(n), id: id})
	if _, err := s.w.Write(s.hdr[:]); err != nil {
		return err
	}
	for _, b := range body {
		if _, err := s.w.Write(b); err != nil {
			return err
		}
	}
	return s.w.Flush()
}

// maxResult is the largest result frame the driver may send.
func (s *server) maxResult() int {
	if s.limits.MaxResponseBytes > 0 {
		return s.limits.MaxResponseBytes
	}
	return maxLimit
}

// failCalls ends every reverse call still waiting with err.
func (s *server) failCalls(err error) {
	s.mu.Lock()
	calls := s.calls
	s.calls = make(map[uint64]*call)
	s.mu.Unlock()
	for _, c := range calls {
		c.err = fmt.Errorf("process: invoke through the driver: %w", err)
		close(c.done)
	}
}

// invoker is the Backend a handler invokes children through
// (backends.InvokerOf): each Invoke is a reverse call, which the driver runs
// on its pool as it runs its own invocations. A call may outlive the
// invocation whose handler made it, as the worker process does.
type invoker struct{ s *server }

var _ backends.Backend = (*invoker)(nil)

// Invoke sends payload to the driver as a reverse call and waits for its
// answer; it is safe for concurrent use, also after the handler returned.
// When ctx ends first, the driver is told to cancel the call and Invoke
// returns ctx's error at once. When the driver stops the worker, Invoke
// fails with an error wrapping backends.ErrClosed; the driver's errors keep
// their kind (errors.Is finds backends.ErrThrottled, ErrWorkerLost and the
// like).
func (x *invoker) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	s := x.s
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("process: invoke through the driver: %w", err)
	}
	if max := s.limits.MaxRequestBytes; (max > 0 && len(payload) > max) || len(payload) > maxLimit {
		return nil, fmt.Errorf("process: invoke through the driver: payload of %d bytes exceeds MaxRequestBytes (%d): %w",
			len(payload), s.limits.MaxRequestBytes, backends.ErrPayloadTooLarge)
	}
	var prefix [callPrefixSize]byte
	if d, ok := ctx.Deadline(); ok {
		binary.BigEndian.PutUint64(prefix[:], uint64(d.UnixNano()))
	}
	c := &call{done: make(chan struct{})}
	s.wmu.Lock()
	if s.stopped {
		s.wmu.Unlock()
		return nil, fmt.Errorf("process: invoke through the driver: %w (%w)", errStopped, backends.ErrClosed)
	}
	s.lastCall++
	c.id = s.lastCall
	s.mu.Lock()
	s.calls[c.id] = c
	s.mu.Unlock()
	err := s.writeLocked(frameCall, 0, c.id, prefix[:], payload)
	s.wmu.Unlock()
	if err != nil {
		s.forget(c)
		return nil, fmt.Errorf("process: invoke through the driver: send: %w (%w)", err, backends.ErrClosed)
	}
	select {
	case <-c.done:
		return c.reply, c.err
	case <-ctx.Done():
	}
	if !s.forget(c) {
		// Answered meanwhile, or failed as the driver stopped the worker.
		<-c.done
		return c.reply, c.err
	}
	// An error means the driver is gone: the call ends with it.
	_ = s.send(frameCallCancel, 0, c.id, nil)
	return nil, fmt.Errorf("process: invoke through the driver: %w", ctx.Err())
}

// forget removes c from the calls waiting for an answer and reports
// whether it was still there.
func (s *server) forget(c *call) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls[c.id] != c {
		return false
	}
	delete(s.calls, c.id)
	return true
}

// Limits returns the driver's pool limits, with Nested set.
func (x *invoker) Limits() backends.Limits { return x.s.limits }

// Close does nothing: the pool is the driver's.
func (x *invoker) Close() error { return nil }

// stop ends serving once the driver has closed the request stream: no reply
// will be read, so none is sent; a running invocation is cancelled and given
// the grace period to return.
func (s *server) stop() error {
	s.wmu.Lock()
	s.stopped = true
	s.wmu.Unlock()
	s.failCalls(fmt.Errorf("the driver stopped this worker: %w", backends.ErrClosed))
	s.mu.Lock()
	inv := s.cur
	s.mu.Unlock()
	if inv != nil {
		inv.cancel()
		t := time.NewTimer(s.grace)
		defer t.Stop()
		select {
		case <-inv.done:
		case <-t.C:
		}
	}
	return nil
}
