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
// sends (when the driver asked for them) and the reply. It returns nil
// when the driver closes fd 3 (on Close, or because it died), after giving a
// running invocation, whose context it cancels, the grace period to end.
func serve(h backends.Handler) error {
	name := os.Getenv(envWorker)
	grace, err := time.ParseDuration(os.Getenv(envGrace))
	if err != nil || grace < 0 {
		grace = defaultCancelGrace
	}
	captured := os.Getenv(envCapture) != ""
	os.Unsetenv(envWorker)
	os.Unsetenv(envGrace)
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
		h:     h,
		grace: grace,
		r:     bufio.NewReaderSize(req, 64<<10),
		w:     bufio.NewWriterSize(rep, 64<<10),
	}
	if captured {
		if s.capture, err = startCapture(); err != nil {
			return fmt.Errorf("process: serve worker %s: %w", name, err)
		}
		defer s.capture.close()
	}
	return s.run()
}

type server struct {
	h       backends.Handler
	grace   time.Duration
	r       *bufio.Reader
	capture *capture // nil: the driver did not ask for capture

	mu  sync.Mutex
	cur *invocation // the running invocation, nil when idle

	wmu     sync.Mutex
	w       *bufio.Writer
	hdr     [headerSize]byte
	stopped bool // no more frames: the driver is gone or closing
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

// writeLocked writes one frame; s.wmu is held.
func (s *server) writeLocked(t frameType, flags uint8, id uint64, body []byte) error {
	if s.stopped {
		return errStopped
	}
	putHeader(s.hdr[:], header{typ: t, flags: flags, size: uint32(len(body)), id: id})
	if _, err := s.w.Write(s.hdr[:]); err != nil {
		return err
	}
	if _, err := s.w.Write(body); err != nil {
		return err
	}
	return s.w.Flush()
}

// stop ends serving once the driver has closed the request stream: no reply
// will be read, so none is sent; a running invocation is cancelled and given
// the grace period to return.
func (s *server) stop() error {
	s.wmu.Lock()
	s.stopped = true
	s.wmu.Unlock()
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
