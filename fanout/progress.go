package fanout

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

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
	return progressCounts{done: s.done + s.failed, failed: s.failed, running: s.inWorker, queued: s.inBatch,
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
		fmt.Fprintf(w, "gowren: job %s: %d tasks of %s\n", j.id, n, j.spec.fn.name)
		width := min(30, cols/4)
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
			desc := fmt.Sprintf("%d running, %d queued, %d failed, %d retried, %.1f tasks/s, ETA %s", c.running, c.queued, c.failed, c.retries, rate, eta)
			if len(desc) > room {
				desc = fmt.Sprintf("%d run, %d fail, %d retry, ETA %s", c.running, c.failed, c.retries, eta)
			}
			if len(desc) > room {
				desc = desc[:max(room, 0)]
			}
			bar.Describe(desc)
			_ = bar.Set(c.done)
		}
		for {
			select {
			case <-t.C:
				update()
			case <-stop:
				update()
				_ = bar.Finish()
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
			line(j.progressCounts())
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
