package fanout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Progress display (Options.Progress): a bar redrawn in place on a
// terminal, plain lines now and then on anything else, so that CI logs stay
// readable.
const (
	barInterval = 200 * time.Millisecond
	// A plain line is printed when a tenth more of the job is done, or
	// every lineInterval, whichever comes first.
	lineCheck    = 500 * time.Millisecond
	lineInterval = 10 * time.Second
)

type progressCounts struct {
	done, failed, running, queued, retries int
	elapsed                                time.Duration
}

// progressCounts reads the dispatcher's latest snapshot.
func (j *jobCore) progressCounts() progressCounts {
	s := j.snap.Load()
	// Tasks settled only because the job stopped have no result: they are
	// neither done nor failed here.
	return progressCounts{done: s.done + s.failed - s.stopped, failed: s.failed - s.stopped, running: s.inWorker, queued: s.inBatch,
		retries: s.retries, elapsed: j.clock.Now().Sub(j.started)}
}

// startProgress starts the progress display, when there is one, and
// returns what stops it, once the job's last counts are published.
func (j *jobCore) startProgress() (stop func()) {
	w := j.ex.opts.Progress
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { j.showProgress(w, done) })
	return func() { close(done); wg.Wait() }
}

// terminalWidth reports whether w is a terminal, and its width in columns
// (80 when it cannot be read or is implausibly small).
func terminalWidth(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	if c, _, err := term.GetSize(int(f.Fd())); err == nil && c > 20 {
		return c, true
	}
	return 80, true
}

// showProgress draws the job's progress on w until stop is closed, then
// once more with the final counts.
func (j *jobCore) showProgress(w io.Writer, stop <-chan struct{}) {
	n := j.spec.n
	name := fmt.Sprintf("%s %s", j.spec.fn.name, j.id)
	if cols, ok := terminalWidth(w); ok {
		// The job is named once; the bar's line stays within the terminal,
		// or every redraw would scroll instead of overwriting it.
		head := fmt.Sprintf("gowren: job %s: %d tasks of %s", j.id, n, j.spec.fn.name)
		fmt.Fprintln(w, clip(head, cols-1))
		width := min(max(cols/5, 10), 30)
		room := cols - width - len(fmt.Sprintf(" 100%% || (%d/%d) ", n, n)) - 1
		bar := progressbar.NewOptions(n,
			progressbar.OptionSetWriter(w),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(false), // the description has the ETA
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionSetWidth(width),
		)
		t := time.NewTicker(barInterval)
		defer t.Stop()
		update := func() {
			c := j.progressCounts()
			rate, eta := progressRate(c, n)
			// The most that fits, from the whole story down to the ETA.
			var desc string
			for _, d := range []string{
				fmt.Sprintf("%d running, %d queued, %d failed, %d retried, %.1f tasks/s, ETA %s", c.running, c.queued, c.failed, c.retries, rate, eta),
				fmt.Sprintf("%d running, %d queued, %d failed, ETA %s", c.running, c.queued, c.failed, eta),
				fmt.Sprintf("%d run, %d queued, %d failed, ETA %s", c.running, c.queued, c.failed, eta),
				fmt.Sprintf("%d run, %d q, %d fail, ETA %s", c.running, c.queued, c.failed, eta),
				fmt.Sprintf("%d run, %d q, ETA %s", c.running, c.queued, eta),
				"ETA " + eta,
			} {
				if desc = d; len(d) <= room {
					break
				}
			}
			// Padded: a shorter description overwrites a longer one.
			bar.Describe(pad(clip(desc, room), room))
			_ = bar.Set(c.done)
		}
		for {
			select {
			case <-t.C:
				update()
			case <-stop:
				update()
				if end := j.endState(); end != "" {
					// Not a full bar: say how far the job got.
					c := j.progressCounts()
					desc := fmt.Sprintf("%s: %d of %d tasks have a result, %d failed", end, c.done, n, c.failed)
					if len(desc) > room {
						desc = fmt.Sprintf("%s: %d/%d", end, c.done, n)
					}
					bar.Describe(pad(clip(desc, room), room))
					_ = bar.RenderBlank()
				} else {
					_ = bar.Finish()
				}
				fmt.Fprintln(w)
				return
			}
		}
	}
	line := func(c progressCounts) {
		rate, eta := progressRate(c, n)
		fmt.Fprintf(w, "gowren: %s: %d/%d done, %d running, %d queued, %d failed, %d retried, %.1f tasks/s, ETA %s\n",
			name, c.done, n, c.running, c.queued, c.failed, c.retries, rate, eta)
	}
	t := time.NewTicker(lineCheck)
	defer t.Stop()
	last := progressCounts{done: -1}
	var lastAt time.Time
	for {
		select {
		case <-t.C:
			c := j.progressCounts()
			step := max(n/10, 1)
			if c.done-last.done >= step || time.Since(lastAt) >= lineInterval {
				line(c)
				last, lastAt = c, time.Now()
			}
		case <-stop:
			c := j.progressCounts()
			if end := j.endState(); end != "" {
				fmt.Fprintf(w, "gowren: %s: %s: %d/%d have a result, %d failed, %d retried\n", name, end, c.done, n, c.failed, c.retries)
				return
			}
			line(c)
			return
		}
	}
}

// progressRate is the job's average rate so far, in tasks per second, and
// the time left at that rate ("?" before the first result).
func progressRate(c progressCounts, n int) (float64, string) {
	rate := float64(c.done) / max(c.elapsed.Seconds(), 1e-9)
	switch {
	case c.done >= n:
		return rate, "0s"
	case c.done == 0:
		return rate, "?"
	}
	return rate, time.Duration(float64(n-c.done) / rate * float64(time.Second)).Round(time.Second).String()
}

// endState names how a job that did not run to its end stopped:
// "cancelled", "deadline exceeded" or "stopped"; "" for a job that ran to
// its end. It is read once the dispatcher has finished.
func (j *jobCore) endState() string {
	switch err := j.jobErr; {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline exceeded"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	default:
		return "stopped"
	}
}

// clip cuts s to at most n bytes (the texts clipped are ASCII but for
// function names, which are cut on a rune boundary).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n = max(n, 0)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// pad fills s with spaces to n bytes.
func pad(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return s + strings.Repeat(" ", n-len(s))
}
