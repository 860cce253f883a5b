package fanout

import (
	"math"
	"time"
)

// Speculation (Options.Speculation): backup copies of real stragglers only.
// The dispatcher keeps the durations of the last specSamples invocations
// that replied, per round of tasks (a batch of B tasks on a worker running P
// at once takes ceil(B/P) rounds). A copy out for longer than
//
//	rounds x max(specFactor x p50, specP99Factor x p99)
//
// and at least specMinAge is a straggler, once specMinSamples invocations
// (or half the job's tasks, if fewer) have replied: three times the typical
// duration, and well past the slowest of the usual ones, so the spread of a
// healthy job sends no backup. In the tail, when the window has more free
// slots than tasks wait to be sent, a backup takes no task's slot and the
// factors drop to specTailFactor and specTailP99Factor. Each task of a straggler gets one backup,
// sent alone, up to specMaxCopies copies in flight and specMaxBackups
// backups; the first result wins and the copies left with nothing to do are
// cancelled. In the tail a task sent again after a failure gets a backup
// at once too (see dispatch): one more failure then costs no round.
const (
	specSamples    = 1024
	specMinSamples = 16
	specFactor     = 3
	specTailFactor = 1.5
	specP99Factor  = 1.5
	// specTailP99Factor replaces specP99Factor in the tail.
	specTailP99Factor = 1.25
	specMinAge        = 100 * time.Millisecond
	specMaxCopies     = 3
	specMaxBackups    = 8
)

// speculator finds stragglers. It is owned by the dispatcher.
type speculator struct {
	durations ring // per round, nanoseconds
	fresh     int
	p50, p99  float64
	scratch   []float64
	lastCheck int64
}

func newSpeculator() speculator { return speculator{durations: newRing(specSamples)} }

// observe records the duration of an invocation that replied.
func (s *speculator) observe(inv *invocation, now int64, parallel int) {
	rounds := (len(inv.tasks) + parallel - 1) / parallel
	s.durations.add(float64(now-inv.sent) / float64(max(rounds, 1)))
	s.fresh++
}

// check asks the table for backups of the stragglers among the copies out
// and returns how long until it should look again (an hour: no need).
func (s *speculator) check(t *table, now int64, freeSlots, parallel int) time.Duration {
	need := min(specMinSamples, max(2, t.n/2))
	if s.durations.n < need || len(t.live) == 0 {
		return time.Hour
	}
	if s.p50 == 0 || s.fresh > len(s.durations.buf)/8 {
		s.p50 = quantile(s.durations.buf, 0.5, &s.scratch)
		s.p99 = quantile(s.durations.buf, 0.99, &s.scratch)
		s.fresh = 0
	}
	factor, p99Factor := float64(specFactor), specP99Factor
	if freeSlots > t.waiting() {
		factor, p99Factor = specTailFactor, specTailP99Factor
	}
	perRound := math.Max(factor*s.p50, p99Factor*s.p99)
	// Look again in a sixteenth of the shortest threshold, not on every
	// wake-up.
	recheck := max(time.Duration(perRound/16), 5*time.Millisecond)
	if d := time.Duration(now - s.lastCheck); d < recheck {
		return recheck - d
	}
	s.lastCheck = now
	for inv := range t.live {
		rounds := (len(inv.tasks) + parallel - 1) / parallel
		threshold := max(int64(float64(rounds)*perRound), int64(specMinAge))
		if now-inv.sent < threshold {
			continue
		}
		for k, i := range inv.tasks {
			tk := &t.tasks[i]
			if inv.got[k] || tk.state != stRunning || tk.copies >= specMaxCopies || tk.backups >= specMaxBackups ||
				hasYoungerCopy(t, inv, i, now, threshold) {
				continue
			}
			t.askBackup(i)
		}
	}
	return recheck
}

// hasYoungerCopy reports whether task i has a copy besides inv's that is
// not a straggler yet: then it needs no further backup.
func hasYoungerCopy(t *table, inv *invocation, i int, now, threshold int64) bool {
	if t.tasks[i].copies <= 1 {
		return false
	}
	for other := range t.live {
		if other != inv && now-other.sent < threshold && other.indexOf(i) >= 0 {
			return true
		}
	}
	return false
}
