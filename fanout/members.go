package fanout

import (
	"time"

	"github.com/gowren/gowren/backends"
)

// member is one backend of a job: the backend itself, or one member of a
// backends.Group (several functions, regions or clouds in one job). Each
// has its own window, ramp and throttle accounting, so a member that
// throttles, fails or refuses never holds the others back. Owned by the
// dispatcher; b and limits are set at creation and read by the senders too.
type member struct {
	b      backends.Backend
	limits backends.Limits
	win    window
	held   int           // window slots its throttled sends hold
	dead   error         // refused for good (bad credentials, no such function): sent nothing more
	nested bool          // its workers start the children of an invoker tree (Options.Tree)
	round  []*invocation // with a tree: the invocations of this dispatch round, not sent yet
}

// newMembers returns the members of the executor's backend.
func newMembers(ex *Executor, start int64) []member {
	g, ok := ex.backend.(backends.Group)
	if !ok || len(g.Members()) == 0 {
		return []member{{b: ex.backend, limits: ex.limits, win: newWindow(ex.opts.Concurrency, ex.opts.Ramp, start)}}
	}
	bs := g.Members()
	ms := make([]member, len(bs))
	for k, b := range bs {
		l := b.Limits()
		c := l.Concurrency
		if c <= 0 || c > ex.opts.Concurrency {
			c = ex.opts.Concurrency
		}
		ms[k] = member{b: b, limits: l, win: newWindow(c, ex.opts.Ramp, start)}
	}
	return ms
}

// limit returns the job's window now, the sum of its live members'.
func (j *jobCore) limit(now int64) int {
	total := 0
	for k := range j.mem {
		if j.mem[k].dead == nil {
			l, _ := j.mem[k].win.limit(now)
			total += l
		}
	}
	return min(total, j.ex.opts.Concurrency)
}

// pick returns the member with the most room in its window for one more
// invocation, or -1 when none has any (then it sets rampWait to when the
// first ramp opens more), and the job's window, as limit returns it.
func (j *jobCore) pick(now int64) (member, window int) {
	t := j.t
	best, room, total := -1, 0, 0
	var wait time.Duration
	for k := range j.mem {
		m := &j.mem[k]
		if m.dead != nil {
			continue
		}
		limit, rampWait := m.win.limit(now)
		total += limit
		in := 0
		if k < len(t.inMember) {
			in = t.inMember[k]
		}
		// Held slots never stop a member outright: with nothing in
		// flight, no invocation would end to free them.
		if free := limit - in - min(m.held, limit-1); free > room {
			best, room = k, free
		} else if free <= 0 && rampWait > 0 && (wait == 0 || rampWait < wait) {
			wait = rampWait
		}
	}
	total = min(total, j.ex.opts.Concurrency)
	if best < 0 || t.inflight >= j.ex.opts.Concurrency {
		j.rampWait = wait
		return -1, total
	}
	return best, total
}
