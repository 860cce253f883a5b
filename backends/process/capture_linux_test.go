package process

import (
	"bytes"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gowren/gowren/backends"
)

// newTestCapture returns a capture of two pipes of its own with a state page
// in memory, the write ends of its stdout and stderr, and what it forwards
// from each (through fwd when not nil).
func newTestCapture(t testing.TB, fwd [2]io.Writer) (c *capture, stdout, stderr *os.File, got [2]*syncBuf) {
	t.Helper()
	c = &capture{state: make([]byte, stateSize)}
	var ws [2]*os.File
	for i, name := range [2]string{"stdout", "stderr"} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		ws[i] = w
		s, err := newStream(name, r)
		if err != nil {
			t.Fatal(err)
		}
		got[i] = &syncBuf{}
		s.fwd = got[i]
		if fwd[i] != nil {
			s.fwd = io.MultiWriter(fwd[i], got[i])
		}
		c.streams[i] = s
	}
	c.start()
	t.Cleanup(func() {
		c.close()
		ws[0].Close()
		ws[1].Close()
	})
	return c, ws[0], ws[1], got
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func write(t testing.TB, f *os.File, s string) {
	t.Helper()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// texts formats lines as "stream:text:tasks" for comparison.
func texts(lines []backends.OutputLine) []string {
	var out []string
	for _, l := range lines {
		var tasks []string
		for _, x := range l.Tasks {
			tasks = append(tasks, string(rune('0'+x)))
		}
		out = append(out, l.Stream+":"+l.Text+":"+strings.Join(tasks, ","))
	}
	slices.Sort(out)
	return out
}

// Each line goes to the tasks running when it was written: to its task alone
// when one runs, to all of them (and says so) when several do, to none
// outside tasks; a change of the running tasks ends an unfinished line. The
// state page names the running tasks after each change.
func TestCaptureAttribution(t *testing.T) {
	c, stdout, stderr, fwd := newTestCapture(t, [2]io.Writer{})
	label := func() string { return string(readLabel(c.state)) }
	write(t, stdout, "boot\n")
	end3 := c.TaskStarted(3)
	if got := label(); got != "task 3" {
		t.Errorf("state page says %q with task 3 running", got)
	}
	write(t, stdout, "one\n")
	end4 := c.TaskStarted(4)
	if got := label(); got != "tasks 3,4" {
		t.Errorf("state page says %q with tasks 3 and 4 running", got)
	}
	write(t, stderr, "both\n")
	write(t, stdout, "part")
	lines3 := end3.End()
	write(t, stdout, "four\n")
	lines4 := end4.End()
	if got := label(); got != "" {
		t.Errorf("state page says %q with no task running", got)
	}
	end5 := c.TaskStarted(5)
	lines5 := end5.End()
	write(t, stdout, "after\n")
	c.close()

	if got, want := texts(lines3), []string{"stderr:both:3,4", "stdout:one:", "stdout:part:3,4"}; !slices.Equal(got, want) {
		t.Errorf("task 3 got %q, want %q", got, want)
	}
	if got, want := texts(lines4), []string{"stderr:both:3,4", "stdout:four:", "stdout:part:3,4"}; !slices.Equal(got, want) {
		t.Errorf("task 4 got %q, want %q", got, want)
	}
	if lines5 != nil {
		t.Errorf("a task that printed nothing got %q", texts(lines5))
	}
	if got, want := fwd[0].String(), "boot\n\x00task 3\x00one\n\x00tasks 3,4\x00part\n\x00task 4\x00four\nafter\n"; got != want {
		t.Errorf("forwarded stdout %q, want %q", got, want)
	}
	if got, want := fwd[1].String(), "\x00tasks 3,4\x00both\n"; got != want {
		t.Errorf("forwarded stderr %q, want %q", got, want)
	}
}

// Take returns the finished lines written so far, once; End the rest, an
// unfinished line included.
func TestCaptureTake(t *testing.T) {
	c, stdout, stderr, _ := newTestCapture(t, [2]io.Writer{})
	out := c.TaskStarted(1)
	write(t, stdout, "a\npar")
	write(t, stderr, "b\n")
	if got, want := texts(out.Take()), []string{"stderr:b:", "stdout:a:"}; !slices.Equal(got, want) {
		t.Errorf("first Take got %q, want %q", got, want)
	}
	if got := out.Take(); got != nil {
		t.Errorf("second Take got %q, want nothing", texts(got))
	}
	write(t, stdout, "tial\nlast")
	if got, want := texts(out.End()), []string{"stdout:last:", "stdout:partial:"}; !slices.Equal(got, want) {
		t.Errorf("End got %q, want %q", got, want)
	}
}

// A task's lines are bounded, and so is each line; the driver still gets
// everything.
func TestCaptureLimits(t *testing.T) {
	c, stdout, _, fwd := newTestCapture(t, [2]io.Writer{})
	end := c.TaskStarted(1)
	write(t, stdout, strings.Repeat("x", maxRecordLine+10)+"\n")
	for range maxTaskLines + 5 {
		write(t, stdout, "l\n")
	}
	lines := end.End()
	c.close()
	if len(lines) != maxTaskLines+1 {
		t.Fatalf("%d lines kept, want %d and a note", len(lines), maxTaskLines)
	}
	if l := lines[0].Text; !strings.HasSuffix(l, "… (10 more bytes)") || len(l) > maxRecordLine+50 {
		t.Errorf("long line kept as %d bytes ending %q", len(l), l[len(l)-20:])
	}
	if l := lines[len(lines)-1]; l.Stream != "gowren" || !strings.HasPrefix(l.Text, "6 further output lines") {
		t.Errorf("last line %+v, want a note of 6 dropped lines", l)
	}
	if n := strings.Count(fwd[0].String(), "\x00task 1\x00l\n"); n != maxTaskLines+5 {
		t.Errorf("forwarded %d short lines, want %d", n, maxTaskLines+5)
	}
}

// pipeHolds is an io.Writer standing for the driver: on each forwarded
// chunk it notes how many bytes the capture pipe still held, which a dying
// worker would leave there for the driver to read.
type pipeHolds struct {
	fd     int
	held   []int
	chunks []int
}

func (p *pipeHolds) Write(b []byte) (int, error) {
	n, err := unix.IoctlGetInt(p.fd, unix.TIOCINQ)
	if err != nil {
		return 0, err
	}
	p.held = append(p.held, n)
	p.chunks = append(p.chunks, len(b))
	return len(b), nil
}

// The capture takes a chunk out of its pipe only once it has forwarded it:
// when a chunk leaves for the driver, the pipe still holds at least the
// bytes it came from, so a worker that dies at that moment loses nothing.
func TestCaptureForwardsBeforeTaking(t *testing.T) {
	holds := &pipeHolds{}
	c, stdout, _, fwd := newTestCapture(t, [2]io.Writer{holds})
	// Set, and written, while the capture holds its lock (its reader runs
	// already), so that all of it is in the pipe (under its 64 KiB) before
	// the first chunk is peeked at.
	c.mu.Lock()
	holds.fd = c.streams[0].fd
	c.streams[0].buf = make([]byte, 4096) // chunks of at most 4 KiB
	var want strings.Builder
	for i := range 1000 {
		line := strings.Repeat("z", i%100) + "\n"
		want.WriteString(line)
		write(t, stdout, line)
	}
	c.drainLocked(c.streams[0])
	c.mu.Unlock()
	if fwd[0].String() != want.String() {
		t.Fatalf("forwarded %d bytes, want %d", len(fwd[0].String()), want.Len())
	}
	if len(holds.held) < 2 {
		t.Fatalf("forwarded in %d chunks, want several", len(holds.held))
	}
	left := want.Len()
	for i, n := range holds.held {
		if n != left {
			t.Errorf("chunk %d forwarded with %d bytes in the pipe, want %d (nothing taken before it is forwarded)", i, n, left)
		}
		left -= holds.chunks[i]
	}
	if n, _ := unix.IoctlGetInt(holds.fd, unix.TIOCINQ); n != 0 {
		t.Errorf("%d bytes left in the pipe once drained", n)
	}
}

// The state page keeps the last label written whole, and a label the driver
// cannot trust reads as none.
func TestStatePage(t *testing.T) {
	page := make([]byte, stateSize)
	if got := readLabel(page); got != nil {
		t.Errorf("fresh page: %q", got)
	}
	for _, l := range []string{"task 1", "tasks 2,3", "", "task 40"} {
		writeLabel(page, []byte(l))
		if got := string(readLabel(page)); got != l {
			t.Errorf("after writing %q, read %q", l, got)
		}
	}
	// A worker killed while writing the next slot: the selected one is
	// whole.
	copy(page[8+stateSlot*(2-int(page[0])):], "garbage")
	if got := string(readLabel(page)); got != "task 40" {
		t.Errorf("after a torn write, read %q", got)
	}
	copy(page[8+stateSlot*(int(page[0])-1)+2:], "not a label")
	if got := readLabel(page); got != nil {
		t.Errorf("a bad label read as %q", got)
	}
}

// BenchmarkCaptureSilentTask measures what capture adds to a task that
// prints nothing: its start and its end.
func BenchmarkCaptureSilentTask(b *testing.B) {
	c, _, _, _ := newTestCapture(b, [2]io.Writer{})
	b.ReportAllocs()
	for b.Loop() {
		if lines := c.TaskStarted(7).End(); lines != nil {
			b.Fatal(lines)
		}
	}
}
