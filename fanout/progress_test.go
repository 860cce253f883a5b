package fanout_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
)

// openPTY opens a pseudo-terminal of cols columns: the driver writes its
// progress to tty as to a user's terminal, and the test reads what a
// terminal would get from pt. tty must be closed before pt is drained.
func openPTY(t *testing.T, cols int) (pt, tty *os.File) {
	t.Helper()
	pt, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal on this machine (%v): the progress bar cannot be tested", err)
	}
	t.Cleanup(func() { pt.Close() })
	if err := unix.IoctlSetPointerInt(int(pt.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(pt.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: uint16(cols)}); err != nil {
		t.Fatal(err)
	}
	return pt, tty
}

// screen replays terminal output on an emulated screen of one column per
// rune: it returns the final text of every line and the widest any line
// got at any moment (a line wider than the terminal wraps, and every redraw
// of the bar would then scroll instead of overwriting itself).
func screen(out []byte) (lines []string, widest int) {
	var cur []rune
	col := 0
	flush := func() {
		lines = append(lines, strings.TrimRight(string(cur), " "))
		cur, col = cur[:0], 0
	}
	for len(out) > 0 {
		r, size := utf8.DecodeRune(out)
		out = out[size:]
		switch {
		case r == '\n':
			flush()
		case r == '\r':
			col = 0
		case r == 0x1b: // CSI sequences: ESC [ params final
			if len(out) > 0 && out[0] == '[' {
				k := 1
				for k < len(out) && (out[k] < 0x40 || out[k] > 0x7e) {
					k++
				}
				if k < len(out) && out[k] == 'K' { // erase to the end of the line
					cur = cur[:min(col, len(cur))]
				}
				out = out[min(k+1, len(out)):]
			}
		default:
			if col < len(cur) {
				cur[col] = r
			} else {
				cur = append(cur, r)
			}
			col++
			widest = max(widest, col)
		}
	}
	if len(cur) > 0 {
		flush()
	}
	return lines, widest
}

var blockAfter = fanout.Register("fanout_test.blockAfter", func(ctx context.Context, x [2]int) (int, error) {
	if x[0] >= x[1] {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return x[0], nil
})

// The progress bar on a real terminal: it stays within the terminal's
// width at 60 and 120 columns, ends full for a job that ran to its end,
// and, for a cancelled one, says so where it stopped, before Map returns.
func TestProgressOnTerminal(t *testing.T) {
	for _, cols := range []int{60, 120} {
		for _, cancel := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d columns, cancelled %v", cols, cancel), func(t *testing.T) {
				pt, tty := openPTY(t, cols)
				var out bytes.Buffer
				drained := make(chan struct{})
				go func() {
					io.Copy(&out, pt) // ends with EIO once tty is closed
					close(drained)
				}()
				ex := fanout.NewExecutor(local.New(&local.Options{Concurrency: 4}), &fanout.Options{Progress: tty, Logger: quietLogs})
				const n, finish = 1000, 600
				in := make([][2]int, n)
				for i := range in {
					in[i] = [2]int{i, n}
					if cancel {
						in[i][1] = finish
					}
				}
				ctx, stop := context.WithCancel(context.Background())
				defer stop()
				job, err := fanout.Start(ctx, ex, blockAfter, in)
				if err != nil {
					t.Fatal(err)
				}
				if cancel {
					got := 0
					for r := range job.Results(ctx) {
						if r.Err == nil {
							got++
						}
						if got == finish {
							break
						}
					}
					stop()
				}
				_, err = job.Wait(context.Background())
				ex.Close()
				tty.Close() // everything the job printed was written before Wait returned
				<-drained
				if cancel != errors.Is(err, context.Canceled) {
					t.Fatalf("Wait: %v", err)
				}
				lines, widest := screen(out.Bytes())
				if widest > cols {
					t.Errorf("a line reached column %d on a terminal of %d:\n%s", widest, cols, strings.Join(lines, "\n"))
				}
				if len(lines) != 2 || !strings.HasPrefix(lines[0], "gowren: job "+job.ID()+": 1000 tasks of fanout_") {
					t.Fatalf("screen:\n%s\nwant the job's line and the bar's", strings.Join(lines, "\n"))
				}
				bar := lines[1]
				if !cancel && (!strings.Contains(bar, "100%") || !strings.Contains(bar, "(1000/1000)")) {
					t.Errorf("final bar %q, want it full", bar)
				}
				if cancel && (strings.Contains(bar, "100%") || !strings.Contains(bar, "cancelled: 600") || !strings.Contains(bar, " 60%")) {
					t.Errorf("final bar %q, want it at 60%% saying cancelled with 600 results", bar)
				}
			})
		}
	}
}
