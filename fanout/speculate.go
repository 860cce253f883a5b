package fanout

import (
	"slices"
	"time"
)

// Speculation (Options.Speculation): the rule and its constants.
const (
	// specDoneFraction of the tasks must have results before backups.
	specDoneFraction = 0.75
	// specFactor times the median round trip makes a straggler.
	specFactor = 3
	// specMinAge: no copy younger than this is a straggler.
	specMinAge = 100 * time.Millisecond
)

// speculateLocked queues a backup copy of every straggler and returns how
// long until it should look again.
func (j *jobCore) speculateLocked(now time.Time) time.Duration {
	if float64(j.finished) < specDoneFraction*float64(j.spec.n) || len(j.rtts) == 0 || len(j.live) == 0 {
		return idleWait
	}
	if len(j.rtts) > j.specMedianN+j.specMedianN/8 || j.specMedianN == 0 {
		// Recomputed as the sample grows by an eighth, not on every look.
		j.specMedian, j.specMedianN = medianOf(j.rtts), len(j.rtts)
	}
	median := j.specMedian
	threshold := max(time.Duration(specFactor*median), specMinAge)
	// Look again in a fraction of the threshold, not on every wake-up.
	recheck := max(threshold/8, 5*time.Millisecond)
	if now.Sub(j.lastSpec) < recheck {
		return recheck - now.Sub(j.lastSpec)
	}
	j.lastSpec = now
	for inv := range j.live {
		if inv.backup || now.Sub(inv.sent) < threshold {
			continue
		}
		for _, i := range inv.tasks {
			t := &j.tasks[i]
			if t.state != stRunning || t.backup || t.copies != 1 {
				continue
			}
			t.backup = true
			j.counters.backups++
			j.retryQ = append([]int{i}, j.retryQ...)
		}
	}
	return recheck
}

// medianOf returns the median of xs (sorting a copy).
func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
