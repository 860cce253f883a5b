package process

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gowren/gowren/backends"
)

// Output capture, Linux only: it needs tee(2).
//
// The driver makes two pipes per worker, one for its stdout and one for its
// stderr, keeps their read ends and hands the worker both ends. The worker
// (capture) puts the write ends in place of its fds 1 and 2 and reads the
// read ends itself, so it knows which tasks run when each line was written.
// It peeks at what a pipe holds (tee(2) into a private pipe), forwards it to
// the driver on its original fds 1 and 2, tagged with the running tasks, and
// only then takes it out of the pipe. Whatever the moment the worker dies
// (os.Exit, log.Fatal, a crash, SIGKILL), each byte is either forwarded or
// still in the pipe, where the driver reads it once the worker has exited:
// nothing is lost, and a chunk forwarded just before the end may come twice.
//
// For the lines the driver reads from the pipes itself, the worker keeps the
// running tasks' tag in a page of memory it shares with the driver (a
// memfd): no system call per change, and the driver reads it after the
// worker's death.

const (
	// stateSize is the size of the state page: a selector byte at 0, and
	// two slots of a length (2 bytes) and a label, written in turn so that
	// a worker killed while writing one leaves the other whole.
	stateSize = 4096
	stateSlot = 2044
	// maxLabel bounds a tag's label ("task 17", "tasks 3,4"): about 300
	// running tasks are named, the rest are left out.
	maxLabel = stateSlot - 2
	// maxRecordLine bounds the text of a line kept for a task.
	maxRecordLine = 4 << 10
	// maxTaskLines and maxTaskBytes bound the lines kept for one task, as
	// fanout bounds its log records.
	maxTaskLines = 256
	maxTaskBytes = 64 << 10
)

// captureEnds is the driver's side of a worker's output capture.
type captureEnds struct {
	out, err *os.File // the read ends of the stdout and stderr pipes
	state    *os.File // the state page
}

// newCapture makes the pipes and the state page of a worker's capture. It
// returns the driver's ends and the files to pass to the worker from fd
// captureFD on, which the caller closes once the worker has started.
func newCapture() (*captureEnds, []*os.File, error) {
	var fs [4]*os.File // out read, out write, err read, err write
	var err error
	for i := 0; i < 4 && err == nil; i += 2 {
		fs[i], fs[i+1], err = os.Pipe()
	}
	var state *os.File
	if err == nil {
		state, err = newStatePage()
	}
	if err != nil {
		closeFiles(fs[:]...)
		return nil, nil, fmt.Errorf("output capture: %w", err)
	}
	growPipeTo(fs[0], capturePipeSize)
	growPipeTo(fs[2], capturePipeSize)
	return &captureEnds{out: fs[0], err: fs[2], state: state}, []*os.File{fs[0], fs[1], fs[2], fs[3], state}, nil
}

func newStatePage() (*os.File, error) {
	fd, err := unix.MemfdCreate("gowren-capture", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.Ftruncate(fd, stateSize); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "gowren-capture-state"), nil
}

func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// drain passes to stdout and stderr what the worker left in its pipes,
// lines that start there tagged with the tasks that ran when it died; the
// worker has exited. It closes the driver's ends.
func (e *captureEnds) drain(stdout, stderr *lineWriter) {
	page := make([]byte, stateSize)
	if n, _ := e.state.ReadAt(page, 0); n == stateSize {
		label := readLabel(page)
		stdout.setLabel(label)
		stderr.setLabel(label)
	}
	drainPipe(e.out, stdout)
	drainPipe(e.err, stderr)
	e.close()
}

// close closes the driver's ends.
func (e *captureEnds) close() { closeFiles(e.out, e.err, e.state) }

// setLabel names the tasks of the lines that come without a tag from now
// on: the worker has died, and the driver reads what it left in its pipes.
func (l *lineWriter) setLabel(label []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.label = append(l.label[:0], label...)
}

// readLabel returns the label in the state page, nil if none.
func readLabel(page []byte) []byte {
	k := int(page[0]) - 1
	if k < 0 || k > 1 {
		return nil
	}
	slot := page[8+k*stateSlot : 8+(k+1)*stateSlot]
	n := int(binary.LittleEndian.Uint16(slot))
	if n == 0 || n > maxLabel || !validLabel(slot[2:2+n]) {
		return nil
	}
	return slot[2 : 2+n]
}

// writeLabel puts label in the slot not in use, then selects it.
func writeLabel(page, label []byte) {
	k := 0
	if page[0] == 1 {
		k = 1
	}
	slot := page[8+k*stateSlot : 8+(k+1)*stateSlot]
	binary.LittleEndian.PutUint16(slot, uint16(copy(slot[2:], label)))
	page[0] = byte(k + 1)
}

// drainPipe copies to w what the read end r of a pipe holds, without
// waiting for more: a program a task started may still hold its write end.
func drainPipe(r *os.File, w io.Writer) {
	c, err := r.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 32<<10)
	_ = c.Control(func(fd uintptr) {
		if syscall.SetNonblock(int(fd), true) != nil {
			return
		}
		for {
			n, err := syscall.Read(int(fd), buf)
			if n > 0 {
				_, _ = w.Write(buf[:n])
			}
			if err == syscall.EINTR {
				continue
			}
			if err != nil || n <= 0 {
				return
			}
		}
	})
}

// capture is the worker side of output capture; it implements
// backends.OutputCapture.
//
// A change of the running tasks first drains both pipes, so every line
// written before the change is attributed under the old set, and ends an
// unfinished line there; a task's start skips the draining right after the
// previous task of the batch ended. A task that prints nothing costs one
// poll(2) that finds nothing, at its end.
type capture struct {
	mu      sync.Mutex
	streams [2]*stream
	running []*capturedTask // in order of start
	label   []byte          // the running tasks: "task 17", "tasks 3,4"; empty when none
	tag     []byte          // "\x00" label "\x00", at the start of each forwarded line; empty when none
	shared  []int           // the running tasks' indexes, sorted, when more than one runs
	state   []byte          // the state page shared with the driver; nil in tests
	closed  bool
	// justEnded: the last change was the end of the only running task, in
	// the current invocation (sync clears it).
	justEnded bool
	readers   sync.WaitGroup
}

// stream is one of the captured fds.
type stream struct {
	name  string // "stdout" or "stderr"
	std   int    // 1 or 2; 0 in tests, which capture pipes of their own
	fd    int    // the pipe's read end, non-blocking
	r     *os.File
	peekR int       // a private pipe that tee(2) copies into, to read
	peekW int       // what is peeked at without taking it from fd
	fwd   io.Writer // the process's original fd std, to the driver
	fwdFD int       // its fd

	buf    []byte // read buffer
	out    []byte // to forward
	mid    bool   // a line was begun on fwd
	fwdLen int    // bytes of that line so far
	line   []byte // the current line, for the running tasks
	cut    int    // bytes of it beyond maxRecordLine, not kept
}

// capturedTask is a running task's output; its fields are guarded by c.mu.
type capturedTask struct {
	c       *capture
	index   int
	lines   []backends.OutputLine // not taken yet
	count   int                   // lines kept so far, taken or not
	bytes   int                   // and their size
	dropped int
}

// startCapture sets up capture on the pipes and the state page the driver
// passed at fds captureFD.. and starts reading the pipes.
func startCapture() (*capture, error) {
	c := &capture{}
	// Everything is checked before fds 1 and 2 change.
	for i, name := range [2]string{"stdout", "stderr"} {
		rfd, wfd := captureFD+2*i, captureFD+2*i+1
		var st syscall.Stat_t
		if err := syscall.Fstat(wfd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
			return nil, fmt.Errorf("capture %s: fd %d is not a pipe", name, wfd)
		}
		r, err := inheritedPipe(rfd, "gowren-"+name)
		if err != nil {
			return nil, fmt.Errorf("capture %s: %w", name, err)
		}
		s, err := newStream(name, r)
		if err != nil {
			return nil, fmt.Errorf("capture %s: %w", name, err)
		}
		s.std = i + 1
		c.streams[i] = s
	}
	stateFD := captureFD + 4
	page, err := unix.Mmap(stateFD, 0, stateSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("capture: map the state page: %w", err)
	}
	_ = unix.Close(stateFD)
	c.state = page
	for i, s := range c.streams {
		fwd, err := unix.FcntlInt(uintptr(s.std), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("capture %s: %w", s.name, err)
		}
		s.fwd, s.fwdFD = os.NewFile(uintptr(fwd), s.name), fwd
		wfd := captureFD + 2*i + 1
		if err := unix.Dup2(wfd, s.std); err != nil {
			return nil, fmt.Errorf("capture %s: %w", s.name, err)
		}
		_ = unix.Close(wfd)
	}
	c.start()
	return c, nil
}

// newStream returns the stream of the non-blocking pipe read end r, with
// the private pipe it peeks through.
func newStream(name string, r *os.File) (*stream, error) {
	rc, err := r.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	if err := rc.Control(func(x uintptr) { fd = int(x) }); err != nil {
		return nil, err
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	return &stream{name: name, fd: fd, r: r, peekR: p[0], peekW: p[1], buf: make([]byte, 64<<10)}, nil
}

// start starts the readers of the streams.
func (c *capture) start() {
	for _, s := range c.streams {
		c.readers.Add(1)
		go c.read(s)
	}
}

// read forwards what s receives until the capture closes.
func (c *capture) read(s *stream) {
	defer c.readers.Done()
	rc, err := s.r.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(uintptr) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.closed || c.drainLocked(s)
	})
}

// drainLocked forwards what s's pipe holds until it is empty, one chunk at
// a time: it peeks at a chunk, forwards it, and only then takes it out of
// the pipe (see the top of this file). It reports whether the pipe is done
// for (end of file or an error).
func (c *capture) drainLocked(s *stream) (done bool) {
	for {
		n, err := unix.Tee(s.fd, s.peekW, len(s.buf), unix.SPLICE_F_NONBLOCK)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil || n <= 0:
			return true
		}
		p := s.buf[:n]
		if err := readAll(s.peekR, p); err != nil {
			return true
		}
		c.feedLocked(s, p)
		c.forwardLocked(s)
		if err := readAll(s.fd, p); err != nil { // the chunk is passed on: take it
			return true
		}
	}
}

// readAll reads len(p) bytes from the non-blocking fd, which holds them.
func readAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Read(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n <= 0 {
			return io.ErrUnexpectedEOF
		}
		p = p[n:]
	}
	return nil
}

// feedLocked splits p into lines for the driver and the running tasks.
func (c *capture) feedLocked(s *stream, p []byte) {
	for len(p) > 0 {
		if !s.mid {
			s.out = append(s.out, c.tag...)
			s.mid = true
		}
		end := bytes.IndexByte(p, '\n')
		newline := end >= 0
		if !newline {
			end = len(p)
		}
		if room := maxLine - len(c.tag) - s.fwdLen; end > room {
			// Too long: cut it here, for the driver and the tasks alike.
			end = room
			c.addLocked(s, p[:end])
			p = p[end:]
			c.endLineLocked(s)
			continue
		}
		c.addLocked(s, p[:end])
		if !newline {
			return
		}
		c.endLineLocked(s)
		p = p[end+1:]
	}
}

// addLocked appends part of a line.
func (c *capture) addLocked(s *stream, seg []byte) {
	s.out = append(s.out, seg...)
	s.fwdLen += len(seg)
	if len(c.running) == 0 {
		return
	}
	keep := min(len(seg), maxRecordLine-len(s.line))
	s.line = append(s.line, seg[:keep]...)
	s.cut += len(seg) - keep
}

// endLineLocked ends the current line of s, for the driver and the tasks.
func (c *capture) endLineLocked(s *stream) {
	s.out = append(s.out, '\n')
	s.mid, s.fwdLen = false, 0
	if len(c.running) > 0 {
		text := string(s.line)
		if s.cut > 0 {
			text += "… (" + strconv.Itoa(s.cut) + " more bytes)"
		}
		l := backends.OutputLine{Time: time.Now(), Stream: s.name, Text: text, Tasks: c.shared}
		for _, t := range c.running {
			t.add(l)
		}
	}
	s.line, s.cut = s.line[:0], 0
}

// forwardLocked writes what is to forward to the driver.
func (c *capture) forwardLocked(s *stream) {
	if len(s.out) == 0 {
		return
	}
	_, _ = s.fwd.Write(s.out) // a driver gone away is not the task's failure
	s.out = s.out[:0]
	if cap(s.out) > 4*maxLine {
		s.out = nil // don't hold on to the buffer of a burst
	}
}

// changeLocked drains both pipes, if drain is set, and ends unfinished
// lines, then applies change to the running tasks.
func (c *capture) changeLocked(drain bool, change func()) {
	var waiting [2]bool
	if drain {
		waiting = c.waitingLocked()
	}
	for i, s := range c.streams {
		if waiting[i] {
			c.drainLocked(s)
		}
		if s.mid {
			c.endLineLocked(s)
			c.forwardLocked(s)
		}
	}
	change()
	// The label and the tag are only ever copied out of, so their buffers
	// are reused.
	c.label, c.tag, c.shared = c.label[:0], c.tag[:0], nil
	switch len(c.running) {
	case 0:
	case 1:
		c.label = append(c.label, "task "...)
		c.label = strconv.AppendInt(c.label, int64(c.running[0].index), 10)
	default:
		for _, t := range c.running {
			c.shared = append(c.shared, t.index)
		}
		slices.Sort(c.shared)
		c.label = append(c.label, "tasks "...)
		for i, x := range c.shared {
			if len(c.label)+21 > maxLabel {
				break // not all of them: see maxLabel
			}
			if i > 0 {
				c.label = append(c.label, ',')
			}
			c.label = strconv.AppendInt(c.label, int64(x), 10)
		}
	}
	if len(c.label) > 0 {
		c.tag = append(c.tag, 0)
		c.tag = append(c.tag, c.label...)
		c.tag = append(c.tag, 0)
	}
	if c.state != nil {
		writeLabel(c.state, c.label)
	}
}

// waitingLocked tells which pipes hold something to read, in one system
// call: most tasks print nothing.
func (c *capture) waitingLocked() (waiting [2]bool) {
	if c.closed {
		return waiting
	}
	var fds [2]unix.PollFd
	for i, s := range c.streams {
		fds[i] = unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN}
	}
	for {
		_, err := unix.Poll(fds[:], 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return [2]bool{true, true} // reading will tell
		}
		break
	}
	for i := range fds {
		waiting[i] = fds[i].Revents != 0
	}
	return waiting
}

// sync forwards what the pipes hold, so that the output of an invocation
// reaches the driver before its reply does.
func (c *capture) sync() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.justEnded = false // the next invocation may be long in coming
	waiting := c.waitingLocked()
	for i, s := range c.streams {
		if waiting[i] {
			c.drainLocked(s)
		}
	}
}

// TaskStarted implements backends.OutputCapture.
func (c *capture) TaskStarted(index int) backends.TaskOutput {
	t := &capturedTask{c: c, index: index}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Right after a task ended alone in this invocation, the pipes were
	// just drained: what they received since came from no task, and
	// counts as this one's (see the package doc), which saves a system
	// call per task of a batch.
	drain := !c.justEnded || len(c.running) > 0
	c.justEnded = false
	c.changeLocked(drain, func() { c.running = append(c.running, t) })
	return t
}

// Take implements backends.TaskOutput.
func (t *capturedTask) Take() []backends.OutputLine {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	waiting := c.waitingLocked()
	for i, s := range c.streams {
		if waiting[i] {
			c.drainLocked(s)
		}
	}
	lines := t.lines
	t.lines = nil
	return lines
}

// End implements backends.TaskOutput.
func (t *capturedTask) End() []backends.OutputLine {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changeLocked(true, func() {
		if i := slices.Index(c.running, t); i >= 0 {
			c.running = slices.Delete(c.running, i, i+1)
		}
	})
	c.justEnded = len(c.running) == 0
	if t.dropped > 0 {
		t.lines = append(t.lines, backends.OutputLine{Time: time.Now(), Stream: "gowren",
			Text: fmt.Sprintf("%d further output lines of this task were dropped (limit %d lines, %d bytes)",
				t.dropped, maxTaskLines, maxTaskBytes)})
		t.dropped = 0
	}
	lines := t.lines
	t.lines = nil
	return lines
}

// close puts the original fds 1 and 2 back, so that what the process still
// writes goes straight to the driver, forwards what the pipes hold, and
// waits for the readers.
func (c *capture) close() {
	c.mu.Lock()
	for _, s := range c.streams {
		if s.std != 0 {
			_ = unix.Dup2(s.fwdFD, s.std)
		}
	}
	c.changeLocked(true, func() {})
	c.closed = true
	c.mu.Unlock()
	for _, s := range c.streams {
		s.r.Close() // wakes its reader
	}
	c.readers.Wait()
	for _, s := range c.streams {
		_ = unix.Close(s.peekR)
		_ = unix.Close(s.peekW)
	}
}

func (t *capturedTask) add(l backends.OutputLine) {
	n := len(l.Text) + 32
	if t.count >= maxTaskLines || t.bytes+n > maxTaskBytes {
		t.dropped++
		return
	}
	t.lines = append(t.lines, l)
	t.count++
	t.bytes += n
}
