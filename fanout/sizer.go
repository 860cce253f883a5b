package fanout

import (
	"math"
	"slices"
)

// The automatic batch size (Options.BatchSize 0). Until minSizerSamples
// invocations have replied, every invocation carries one task. Then, with
// the mean task time t, its 95th percentile t95 (over the last
// taskSamples tasks), the median invocation overhead o (round trip less the
// work, over the last overheadSamples invocations), the tasks waiting to be
// sent R and the invocation slots S (the window):
//
//   - long tasks go alone: when o is at most a tenth of t (1/overheadRatio),
//     batching would save little and cost balance and retries;
//   - otherwise the size B is the smallest within 1% of the best estimated
//     time to finish, rounds(B) x (B t + o) with rounds(B) = ceil(R / (B S)),
//   - among the sizes that leave every slot at least batchesPerSlot batches
//     of the remaining work, counting the slow tasks: B <= R t / (3 S t95),
//     or whose work is at most one overhead, B <= o / t (smaller ones
//     spend more time being sent than running; balance never needs them).
//     So the batches shrink as the job nears its end and as task times
//     spread, and variable tasks go one per invocation well before the end.
//
// The result is at least 1 and at most maxAutoBatch.
const (
	minSizerSamples = 4
	taskSamples     = 512
	overheadSamples = 64
	batchesPerSlot  = 3
	// overheadRatio: tasks longer than this many invocation overheads go
	// one per invocation.
	overheadRatio = 10
	// maxAutoBatch caps the automatic batch size.
	maxAutoBatch = 8192
)

// sizer measures task times and invocation overheads and picks batch sizes.
// It is owned by the dispatcher.
type sizer struct {
	fixed     int // Options.BatchSize; 0: automatic
	tasks     ring
	overheads ring
	replies   int

	// Cached statistics, recomputed once an eighth more samples came in.
	fresh    int // samples since the last refresh
	stale    bool
	mean     float64
	p95      float64
	overhead float64
	scratch  []float64
}

// ring keeps the last len(buf) samples.
type ring struct {
	buf  []float64
	next int
	n    int // samples ever added
}

func newRing(size int) ring { return ring{buf: make([]float64, 0, size)} }

func (r *ring) add(x float64) {
	if len(r.buf) < cap(r.buf) {
		r.buf = append(r.buf, x)
	} else {
		r.buf[r.next] = x
		r.next = (r.next + 1) % len(r.buf)
	}
	r.n++
}

func newSizer(fixed int) sizer {
	return sizer{fixed: fixed, tasks: newRing(taskSamples), overheads: newRing(overheadSamples)}
}

// observeTask records a task's run time on its worker, in nanoseconds.
func (s *sizer) observeTask(ns float64) {
	s.tasks.add(math.Max(ns, 1))
	s.fresh++
	s.stale = s.stale || s.fresh > len(s.tasks.buf)/8
}

// observeInvocation records an invocation's overhead: its round trip less
// the work it carried per runner, in nanoseconds.
func (s *sizer) observeInvocation(overhead float64) {
	s.overheads.add(math.Max(overhead, 0))
	s.replies++
	s.stale = s.stale || s.replies <= 2*minSizerSamples
}

func (s *sizer) refresh() {
	if !s.stale && s.mean > 0 {
		return
	}
	s.stale, s.fresh = false, 0
	if len(s.tasks.buf) > 0 {
		var sum float64
		for _, x := range s.tasks.buf {
			sum += x
		}
		s.mean = sum / float64(len(s.tasks.buf))
		s.p95 = quantile(s.tasks.buf, 0.95, &s.scratch)
	}
	if len(s.overheads.buf) > 0 {
		s.overhead = quantile(s.overheads.buf, 0.5, &s.scratch)
	}
}

// size returns the size of the next batch, with waiting tasks ready to be
// sent and slots invocations allowed in flight.
func (s *sizer) size(waiting, slots int) int {
	if s.fixed > 0 {
		return s.fixed
	}
	if s.replies < minSizerSamples || len(s.tasks.buf) == 0 || waiting <= 1 {
		return 1
	}
	s.refresh()
	return bestBatch(waiting, max(slots, 1), s.mean, s.p95, s.overhead)
}

// bestBatch is the rule of the sizer's doc comment.
func bestBatch(remaining, slots int, mean, p95, overhead float64) int {
	if remaining <= 1 || mean <= 0 || overhead*overheadRatio <= mean {
		return 1
	}
	// Balance: every slot keeps batchesPerSlot batches of the work left,
	// sized by the slow tasks.
	limit := float64(remaining) * mean / (batchesPerSlot * float64(slots) * math.Max(p95, mean))
	// A batch whose work is less than one invocation overhead spends more
	// time being sent than running: balance never needs one that small.
	limit = math.Max(limit, math.Ceil(overhead/mean))
	top := int(math.Min(math.Floor(limit), maxAutoBatch))
	if top <= 1 {
		return 1
	}
	cost := func(b int) float64 {
		rounds := (remaining + b*slots - 1) / (b * slots)
		return float64(rounds) * (float64(b)*mean + overhead)
	}
	// The candidates are the smallest sizes giving each number of rounds.
	best, pick := math.Inf(1), 1
	var sizes []int
	for b := top; b >= 1; {
		rounds := (remaining + b*slots - 1) / (b * slots)
		smallest := (remaining + rounds*slots - 1) / (rounds * slots)
		sizes = append(sizes, smallest)
		best = math.Min(best, cost(smallest))
		b = smallest - 1
	}
	for _, b := range sizes {
		if cost(b) <= 1.01*best {
			pick = b // sizes go down: the last one within 1% is the smallest
		}
	}
	return max(1, pick)
}

// quantile returns the q-quantile of xs (nearest rank), sorting a copy in
// *scratch, which is kept for the next call.
func quantile(xs []float64, q float64, scratch *[]float64) float64 {
	*scratch = append((*scratch)[:0], xs...)
	slices.Sort(*scratch)
	k := int(math.Ceil(q*float64(len(xs)))) - 1
	return (*scratch)[max(0, min(k, len(xs)-1))]
}
