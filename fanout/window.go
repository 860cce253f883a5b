package fanout

import (
	"math"
	"time"
)

// Ramp limits how fast a job's invocations in flight may grow: at most Step
// at first and Step more every Interval, like the scaling rate of AWS Lambda
// (1,000 execution environments every 10 seconds). The zero Ramp sets no
// limit.
type Ramp struct {
	Step     int
	Interval time.Duration
}

// window is a job's limit on invocations in flight: a congestion window
// driven by throttling, capped by Options.Concurrency and by the ramp.
//
// Throttles are judged against the successes of the same sends, never
// against whatever happened to end meanwhile: a throttle comes back at once
// and a success only when its tasks are done, so counting outcomes as they
// end would overstate the throttles of a job with long tasks many times
// over. Sends are grouped in rounds of max(window, minRound) sends. A round
// is judged once its throttles exceed throttleShare of its sends (it cannot
// end below the share then), or once all its sends have an outcome. A round
// over the share shrinks the window to what the round let through, window x
// (1 - share), refined to window x ok/sent when its last send has ended,
// and never below the sends of earlier rounds still running (see running):
// a platform cap C under a window W is found in one step (W - C of W sends
// throttled leaves C), while scattered throttles, which say nothing about
// the load, leave the window alone. The rounds sent before a cut are echoes
// of the same overload and judged no more. Every success grows the window
// by 1/window (one invocation per window of successes), up to Concurrency.
type window struct {
	max, cwnd float64
	ramp      Ramp
	start     int64

	next   int         // id of the next round
	rounds []roundStat // open rounds, oldest first; the last is being sent
}

// roundStat counts the outcomes of one round's sends.
type roundStat struct {
	id                   int
	cwnd                 float64 // the window when the round began
	size                 int     // sends that make the round
	sent, throttled, ok  int
	judged, echo, cutNow bool
}

const (
	// throttleShare is the share of a round's sends that must be
	// throttled for the window to shrink.
	throttleShare = 0.1
	// minRound is the fewest sends a round is judged on: below it, one
	// throttle would already be a tenth.
	minRound = 20
)

func newWindow(max int, r Ramp, start int64) window {
	if r.Step <= 0 || r.Interval <= 0 {
		r = Ramp{}
	}
	w := window{max: float64(max), cwnd: float64(max), ramp: r, start: start}
	w.newRound()
	return w
}

func (w *window) newRound() {
	w.rounds = append(w.rounds, roundStat{id: w.next, cwnd: w.cwnd, size: max(int(w.cwnd), minRound)})
	w.next++
}

// limit returns the invocations allowed in flight at now and, when the ramp
// is what limits, how long until it allows more.
func (w *window) limit(now int64) (int, time.Duration) {
	l := max(1, int(w.cwnd))
	if w.ramp.Step == 0 {
		return l, 0
	}
	steps := int(time.Duration(now-w.start)/w.ramp.Interval) + 1
	if ceil := steps * w.ramp.Step; ceil < l {
		next := w.start + int64(time.Duration(steps)*w.ramp.Interval)
		return ceil, time.Duration(next - now)
	}
	return l, 0
}

// sent records a send and returns its round.
func (w *window) sent() int {
	if cur := &w.rounds[len(w.rounds)-1]; cur.sent >= cur.size {
		w.newRound()
	}
	cur := &w.rounds[len(w.rounds)-1]
	cur.sent++
	return cur.id
}

// outcome records how a send of round ended: throttled, or it ran.
func (w *window) outcome(round int, throttled bool) {
	if !throttled {
		w.cwnd = math.Min(w.max, w.cwnd+1/math.Max(w.cwnd, 1))
	}
	k := -1
	for x := range w.rounds {
		if w.rounds[x].id == round {
			k = x
			break
		}
	}
	if k < 0 {
		return
	}
	r := &w.rounds[k]
	if throttled {
		r.throttled++
	} else {
		r.ok++
	}
	resolved := r.throttled+r.ok >= r.sent
	over := float64(r.throttled) > throttleShare*float64(r.sent)
	if !r.judged && !r.echo {
		switch {
		case over && (r.sent >= r.size || resolved && r.sent >= minRound):
			w.cut(k)
		case resolved && r.sent >= minRound:
			r.judged = true
			if k == len(w.rounds)-1 {
				w.newRound() // a sparse round: judge the next sends afresh
			}
		}
	}
	r = &w.rounds[k]
	if !resolved {
		return
	}
	if r.cutNow {
		// All its sends have ended: the share it showed at the cut was
		// a lower bound.
		r.cutNow = false
		target := math.Max(r.cwnd*float64(r.ok)/float64(r.sent), w.running(k))
		if target < w.cwnd {
			w.cwnd = math.Max(1, target)
		}
	}
	if k < len(w.rounds)-1 {
		w.rounds = append(w.rounds[:k], w.rounds[k+1:]...)
	}
}

// running estimates how many invocations the platform runs for the job
// when the round at k is judged: the sends of the round that ran, and
// every send still out (throttles come back at once, so a send still out
// is almost surely running). A round whose sends bounce because others
// hold the platform's capacity, one free slot sending task after task into
// it, would otherwise read as a capacity of nothing.
func (w *window) running(k int) float64 {
	n := w.rounds[k].ok
	for x := range w.rounds {
		r := &w.rounds[x]
		n += r.sent - r.throttled - r.ok
	}
	return float64(n)
}

// cut shrinks the window for the round at k; the other open rounds, sent
// before the cut, become echoes, and the next sends start a new round.
func (w *window) cut(k int) {
	r := &w.rounds[k]
	r.judged, r.cutNow = true, true
	share := float64(r.throttled) / float64(r.sent)
	w.cwnd = math.Max(1, math.Min(w.cwnd, math.Max(r.cwnd*(1-share), w.running(k))))
	for x := range w.rounds {
		if x != k {
			w.rounds[x].echo = true
		}
	}
	w.newRound()
}
