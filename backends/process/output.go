package process

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

const (
	// maxLine bounds a line of worker output: a longer one is cut into
	// lines of maxLine bytes.
	maxLine = 64 << 10
	// tailLines is how many of its last stderr lines a worker error quotes.
	tailLines = 10
	// maxTailLine bounds each quoted line.
	maxTailLine = 512
	// maxTag bounds the tag of a forwarded line.
	maxTag = 4 << 10
)

// output is Options.Stderr shared by all workers of a backend: one Write per
// batch of whole lines, so lines of different workers never mix.
type output struct {
	mu sync.Mutex
	w  io.Writer
}

func (o *output) write(p []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = o.w.Write(p) // a failing Stderr must not kill the worker with EPIPE
}

// lineWriter receives one stream (stdout or stderr) of one worker, as os/exec
// copies it, and writes it to the backend's output line by line with a
// prefix: "[worker N] ", or "[worker N task I] " and "[worker N tasks I,J] "
// for a line the worker's capture tagged with the tasks that were running
// when it was written (or, for what a dead worker left in its pipes, the
// label set by setLabel). It keeps the stream's last lines when tail is
// non-nil.
type lineWriter struct {
	out    *output
	worker string // "[worker N"
	tail   *tail
	label  []byte // names the tasks of lines without a tag; nil: none

	mu      sync.Mutex
	partial []byte // the current line, without its newline
	batch   []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		end := len(p)
		if i >= 0 {
			end = i
		}
		if room := maxLine - len(l.partial); end > room {
			// Too long: cut it and keep going with the rest.
			l.partial = append(l.partial, p[:room]...)
			l.emit()
			p = p[room:]
			continue
		}
		l.partial = append(l.partial, p[:end]...)
		if i < 0 {
			break
		}
		l.emit()
		p = p[i+1:]
	}
	if len(l.batch) > 0 {
		l.out.write(l.batch)
		l.batch = l.batch[:0]
	}
	if cap(l.batch) > 4*maxLine {
		l.batch = nil // don't hold on to the buffer of a burst
	}
	return n, nil
}

// emit moves the current line into the batch to write.
func (l *lineWriter) emit() {
	tasks, line := cutTag(l.partial)
	if tasks == nil && len(l.label) > 0 {
		tasks = l.label
	}
	l.batch = append(l.batch, l.worker...)
	if tasks != nil {
		l.batch = append(l.batch, ' ')
		l.batch = append(l.batch, tasks...)
	}
	l.batch = append(l.batch, "] "...)
	l.batch = append(l.batch, line...)
	l.batch = append(l.batch, '\n')
	if l.tail != nil {
		l.tail.add(line)
	}
	l.partial = l.partial[:0]
}

// cutTag splits a line that the worker's capture forwarded into its tag's
// text ("task 17" or "tasks 3,4") and the line itself. A line without a
// well-formed tag is returned whole, with nil tasks.
func cutTag(line []byte) (tasks, rest []byte) {
	if len(line) < 2 || line[0] != 0 {
		return nil, line
	}
	end := bytes.IndexByte(line[1:min(len(line), 1+maxTag)], 0)
	if end < 0 {
		return nil, line
	}
	tag := line[1 : 1+end]
	if !validLabel(tag) {
		return nil, line
	}
	return tag, line[2+end:]
}

// validLabel reports whether label names tasks as the worker's capture
// does: "task 17" or "tasks 3,4".
func validLabel(label []byte) bool {
	list, ok := bytes.CutPrefix(label, []byte("task "))
	if !ok {
		list, ok = bytes.CutPrefix(label, []byte("tasks "))
	}
	return ok && len(list) > 0 && len(bytes.Trim(list, "0123456789,")) == 0
}

// flush writes a last line that had no newline; the worker has exited.
func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.emit()
		l.out.write(l.batch)
		l.batch = nil
	}
	l.partial = nil
}

// tail keeps the last non-empty lines of a stream, and the last Go panic or
// fatal error line, which a long stack trace would otherwise push out.
type tail struct {
	mu    sync.Mutex
	lines []string // ring of at most tailLines
	next  int
	panic string
	// panicSeq and seq tell whether panic is still among lines.
	seq, panicSeq int
}

func (t *tail) add(line []byte) {
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	s := string(line)
	if len(s) > maxTailLine {
		s = strings.ToValidUTF8(s[:maxTailLine], "") + "…"
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	if strings.HasPrefix(s, "panic: ") || strings.HasPrefix(s, "fatal error: ") {
		t.panic, t.panicSeq = s, t.seq
	}
	if len(t.lines) < tailLines {
		t.lines = append(t.lines, s)
		return
	}
	t.lines[t.next] = s
	t.next = (t.next + 1) % tailLines
}

// String formats the kept lines for an error message, or returns "" when
// there are none.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\nlast stderr lines:")
	if t.panic != "" && t.seq-t.panicSeq >= len(t.lines) {
		b.WriteString("\n\t" + t.panic + "\n\t...")
	}
	for i := range t.lines {
		b.WriteString("\n\t" + t.lines[(t.next+i)%len(t.lines)])
	}
	return b.String()
}
