//go:build unix

package process

import (
	"bytes"
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

// capture is the worker side of output capture. The driver hands a worker
// two pipes besides the protocol's; capture puts their write ends in place
// of fds 1 and 2 and reads their read ends itself, so that it knows which
// tasks were running when each line was written. It forwards every line to
// the driver on the original fds, behind a tag naming those tasks, and keeps
// a copy for each of them (backends.OutputCapture).
//
// A change of the running tasks first drains both pipes, so every line
// written before the change is attributed under the old set, and ends an
// unfinished line there; a task's start skips the draining right after the
// previous task of the batch ended. A task that prints nothing costs one
// poll(2) that finds nothing, at its end.
//
// What is still in a pipe when the worker dies (a task that calls os.Exit
// or log.Fatal, a Go crash) is read by the driver, which keeps the read
// ends, once the worker has exited.
type capture struct {
	mu      sync.Mutex
	streams [2]*stream
	running []*capturedTask // in order of start
	tag     []byte          // at the start of each forwarded line; empty when no task runs
	shared  []int           // the running tasks' indexes, sorted, when more than one runs
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

const (
	// maxRecordLine bounds the text of a line kept for a task.
	maxRecordLine = 4 << 10
	// maxTaskLines and maxTaskBytes bound the lines kept for one task, as
	// fanout bounds its log records.
	maxTaskLines = 256
	maxTaskBytes = 64 << 10
)

// startCapture sets up capture on the pipes the driver passed at fds
// captureFD.. and starts reading them.
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
		c.streams[i] = &stream{name: name, std: i + 1, fd: rfd, r: r, buf: make([]byte, 64<<10)}
	}
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

// drainLocked reads s until its pipe is empty, and forwards what it read
// as it reads it; it reports whether the pipe is done for (end of file or an
// error).
func (c *capture) drainLocked(s *stream) (done bool) {
	for {
		n, err := syscall.Read(s.fd, s.buf)
		if n > 0 {
			// Forwarded at once: what the process holds is lost if it
			// dies, what the pipe holds is not.
			c.feedLocked(s, s.buf[:n])
			c.forwardLocked(s)
		}
		switch {
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			return false
		case err != nil || n <= 0:
			return true
		}
	}
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
			end, newline = room, false
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
	// The tag is only ever copied out of, so its buffer is reused.
	c.tag, c.shared = c.tag[:0], nil
	switch len(c.running) {
	case 0:
	case 1:
		c.tag = append(c.tag, "\x00task "...)
		c.tag = strconv.AppendInt(c.tag, int64(c.running[0].index), 10)
		c.tag = append(c.tag, 0)
	default:
		for _, t := range c.running {
			c.shared = append(c.shared, t.index)
		}
		slices.Sort(c.shared)
		c.tag = append(c.tag, "\x00tasks "...)
		for i, x := range c.shared {
			if i > 0 {
				c.tag = append(c.tag, ',')
			}
			c.tag = strconv.AppendInt(c.tag, int64(x), 10)
		}
		c.tag = append(c.tag, 0)
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
	// Right after a task ended alone in this invocation, the pipes were
	// just drained: what they received since came from no task, and
	// counts as this one's (see the package doc), which saves a system
	// call per task of a batch.
	drain := !c.justEnded || len(c.running) > 0
	c.justEnded = false
	c.changeLocked(drain, func() { c.running = append(c.running, t) })
	c.mu.Unlock()
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
