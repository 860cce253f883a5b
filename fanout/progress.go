package fanout

import (
	"fmt"
	"io"
	"os"
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
	done, failed, running, retries int
	elapsed                        time.Duration
}

func (j *jobCore) progressCounts() progressCounts {
	j.mu.Lock()
	defer j.mu.Unlock()
	c := progressCounts{done: j.finished, failed: j.failedN, retries: j.counters.retries, elapsed: time.Since(j.started)}
	for i := range j.tasks {
		if j.tasks[i].state == stRunning {
			c.running++
		}
	}
	return c
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// showProgress draws the job's progress on w until stop is closed, then
// once more with the final counts.
func (j *jobCore) showProgress(w io.Writer, stop <-chan struct{}) {
	n := j.spec.n
	name := fmt.Sprintf("%s %s", j.spec.fn.name, j.id)
	if isTerminal(w) {
		bar := progressbar.NewOptions(n,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(name),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("tasks"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionSetWidth(30),
		)
		t := time.NewTicker(barInterval)
		defer t.Stop()
		update := func() {
			c := j.progressCounts()
			bar.Describe(fmt.Sprintf("%s: %d running, %d failed, %d retried", name, c.running, c.failed, c.retries))
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
		rate := float64(c.done) / max(c.elapsed.Seconds(), 1e-9)
		eta := "?"
		if rate > 0 && c.done < n {
			eta = time.Duration(float64(n-c.done) / rate * float64(time.Second)).Round(time.Second).String()
		} else if c.done == n {
			eta = "0s"
		}
		fmt.Fprintf(w, "gowren: %s: %d/%d done, %d running, %d failed, %d retried, %.1f tasks/s, ETA %s\n",
			name, c.done, n, c.running, c.failed, c.retries, rate, eta)
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
