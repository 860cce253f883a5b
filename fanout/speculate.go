package fanout

import (
	"math"
	"slices"
	"time"
)

// Speculation (Options.Speculation). Once specDoneFraction of a job's tasks
// have results, an invocation is a straggler when it has been out longer
// than specFactor times what it should take: its tasks (one after another
// per runner) at the median run time of the completed tasks, plus the
// measured invocation overhead. When the window has more free slots than
// tasks wait to be sent, capacity would idle anyway and the factor drops to
// specTailFactor. Every task of a straggler (a backup too can straggle)
// gets another copy, sent alone, up to specMaxCopies copies in flight and
// specMaxBackups backups that may have run (throttled ones do not count);
// the first result wins.
const (
	specDoneFraction = 0.75
	specFactor       = 3
	specTailFactor   = 1.1
	// specMinAge: no copy younger than this is a straggler.
	specMinAge     = 100 * time.Millisecond
	specMaxCopies  = 3
	specMaxBackups = 8
)

// speculateLocked queues backups of stragglers and returns how long until
// it should look again.
func (j *jobCore) speculateLocked(now time.Time) time.Duration {
	if float64(j.finished) < specDoneFraction*float64(j.spec.n) || len(j.taskTimes) == 0 || len(j.live) == 0 {
		return idleWait
	}
	if j.specMedianN == 0 || len(j.taskTimes) > j.specMedianN+j.specMedianN/8 {
		// Recomputed as the sample grows by an eighth, not on every look.
		j.specMedian, j.specMedianN = medianOf(j.taskTimes, &j.medianBuf), len(j.taskTimes)
	}
	factor := float64(specFactor)
	limit, _ := j.window.limit(now)
	if waiting := j.spec.n - j.next + len(j.retryQ); limit-j.inflight > waiting {
		factor = specTailFactor
	}
	runners := max(1, j.ex.limits.Parallel)
	expected := func(inv *invocation) time.Duration {
		rounds := (len(inv.tasks) + runners - 1) / runners
		return time.Duration(float64(rounds)*j.specMedian + j.overhead)
	}
	// Look again in a fraction of the shortest threshold, not on every
	// wake-up.
	recheck := max(time.Duration(specTailFactor*(j.specMedian+j.overhead))/8, 5*time.Millisecond)
	if now.Sub(j.lastSpec) < recheck {
		return recheck - now.Sub(j.lastSpec)
	}
	j.lastSpec = now
	for inv := range j.live {
		threshold := max(time.Duration(math.Ceil(factor*float64(expected(inv)))), specMinAge)
		if now.Sub(inv.sent) < threshold {
			continue
		}
		for _, i := range inv.tasks {
			t := &j.tasks[i]
			if t.state != stRunning || t.queued || t.copies >= specMaxCopies || t.backups >= specMaxBackups ||
				j.hasYoungerCopy(inv, i, now, threshold) {
				continue
			}
			t.queued = true
			j.counters.backups++
			j.retryQ = append([]int{i}, j.retryQ...)
		}
	}
	return recheck
}

// hasYoungerCopy reports whether task i has a copy, other than the one in
// inv, that is not a straggler yet: then it needs no further backup.
func (j *jobCore) hasYoungerCopy(inv *invocation, i int, now time.Time, threshold time.Duration) bool {
	if j.tasks[i].copies <= 1 {
		return false
	}
	for other := range j.live {
		if other != inv && now.Sub(other.sent) < threshold && other.has(i) {
			return true
		}
	}
	return false
}

// medianOf returns the median of xs, sorting a copy in *scratch (kept for
// the next call, so that a median per reply allocates nothing).
func medianOf(xs []float64, scratch *[]float64) float64 {
	*scratch = append((*scratch)[:0], xs...)
	slices.Sort(*scratch)
	return (*scratch)[len(xs)/2]
}
