//go:build unix

package process

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gowren/gowren/backends"
)

// newTestCapture returns a capture of two pipes of its own, the write ends
// of its stdout and stderr, and what it forwards from each.
func newTestCapture(t testing.TB) (c *capture, stdout, stderr *os.File, fwd [2]*bytes.Buffer) {
	t.Helper()
	c = &capture{}
	var ws [2]*os.File
	for i, name := range [2]string{"stdout", "stderr"} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		ws[i] = w
		rc, err := r.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var fd int
		if err := rc.Control(func(x uintptr) { fd = int(x) }); err != nil {
			t.Fatal(err)
		}
		fwd[i] = &bytes.Buffer{}
		c.streams[i] = &stream{name: name, fd: fd, r: r, fwd: fwd[i], buf: make([]byte, 64<<10)}
	}
	c.start()
	t.Cleanup(func() {
		c.close()
		ws[0].Close()
		ws[1].Close()
	})
	return c, ws[0], ws[1], fwd
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
// outside tasks; a change of the running tasks ends an unfinished line.
func TestCaptureAttribution(t *testing.T) {
	c, stdout, stderr, fwd := newTestCapture(t)
	write(t, stdout, "boot\n")
	end3 := c.TaskStarted(3)
	write(t, stdout, "one\n")
	end4 := c.TaskStarted(4)
	write(t, stderr, "both\n")
	write(t, stdout, "part")
	lines3 := end3.End()
	write(t, stdout, "four\n")
	lines4 := end4.End()
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
	c, stdout, stderr, _ := newTestCapture(t)
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
	c, stdout, _, fwd := newTestCapture(t)
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

// BenchmarkCaptureSilentTask measures what capture adds to a task that
// prints nothing: its start and its end.
func BenchmarkCaptureSilentTask(b *testing.B) {
	c, _, _, _ := newTestCapture(b)
	b.ReportAllocs()
	for b.Loop() {
		if lines := c.TaskStarted(7).End(); lines != nil {
			b.Fatal(lines)
		}
	}
}
