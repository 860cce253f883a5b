package fanout

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/internal/layout"
)

// The invoker tree (Options.Tree). When a dispatch round has several
// invocations for a member whose workers can invoke (Limits.Nested), the
// driver does not send them itself: it sends a few invoker invocations,
// each naming up to Fanout of them as children (more: an invoker starts
// sub-invokers, each with a share of them), and the invokers start the
// children from inside the platform. Every child replies through the store,
// as in async mode, whether or not the job is asynchronous; an invoker
// answers with one outcome per child: started, or why not. A child's small
// input travels in the invoker's request; a large one is a range of the
// job's chunk objects, of which the request carries only the numbers.
//
// What an invoker cannot start goes back to the dispatcher as the failure
// of that child (throttled, lost or refused) and is sent again like any
// failed invocation; an invoker that dies mid-way fails all of its
// children, and the ones it had started may run twice: their tasks still
// settle once.

// treePatience is how long an invoker retries a child the platform
// throttles before it reports it throttled, when the request does not say.
const treePatience = 30 * time.Second

// treeBackoffMax bounds an invoker's wait between two tries of a throttled
// child.
const treeBackoffMax = 2 * time.Second

// fanOut serves an invoker's request: it starts the children, directly when
// there are at most Fanout of them, else through sub-invokers, and answers
// with their outcomes. An invoker nobody waits for (a sub-invoker started
// asynchronously or on a goroutine: its request has flagAsync) writes the
// outcome of each child it could not start as that child's reply instead.
func (r *Registry) fanOut(ctx context.Context, req *wireRequest, cold bool, stores *storeResolver, policy *storePolicy) []byte {
	out := &wireReply{Worker: workerID, Cold: cold, Kids: make([]*wireError, len(req.Kids))}
	b := backends.InvokerOf(ctx)
	if b == nil {
		we := &wireError{Code: codeNoInvoker, Message: "this worker has no backend to invoke its children through " +
			"(its runtime sets none: backends.InvokerOf); Options.Tree needs a backend whose workers can invoke it (Limits.Nested), " +
			"deployed so that they may (see the README, \"Invoker tree\")"}
		for k := range out.Kids {
			out.Kids[k] = we
		}
		orphaned(ctx, req, out.Kids, stores)
		return errorReply(we)
	}
	switch {
	case len(req.Kids) <= req.Fanout && req.Flags&flagCollect != 0:
		r.collectKids(ctx, b, req, out.Kids, stores, policy)
	case len(req.Kids) <= req.Fanout:
		startAll(len(req.Kids), startMode(b), func(k int) { out.Kids[k] = startChild(ctx, b, req, &req.Kids[k], stores) })
	default:
		groups := treeGroups(len(req.Kids), req.Fanout)
		startAll(len(groups), startMode(b), func(k int) {
			g := groups[k]
			startInvoker(ctx, b, req, g, out.Kids[g[0]:g[1]], stores)
		})
	}
	orphaned(ctx, req, out.Kids, stores)
	var buf bytes.Buffer
	if err := encodeReply(&buf, out); err != nil {
		return errorReply(&wireError{Code: codeInternal, Message: fmt.Sprintf("encode an invoker's reply: %v", err)})
	}
	return buf.Bytes()
}

// treeStarters is how many goroutines of an invoker start its calls when
// none of them waits for its child to run: few, reused, so that each grows
// its stack through the cloud SDK's deep call chain once, not once per
// call (that copying was a fifth of the loopback cloud's CPU).
const treeStarters = 16

// startAll runs start(0) ... start(n-1) on goroutines and waits for them:
// on treeStarters goroutines, or on n when mode waits for each child to
// run (they must all run at once).
func startAll(n, mode int, start func(int)) {
	par := n
	if mode != startWait {
		par = min(n, treeStarters)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range par {
		wg.Go(func() {
			for k := int(next.Add(1) - 1); k < n; k = int(next.Add(1) - 1) {
				start(k)
			}
		})
	}
	wg.Wait()
}

// orphaned writes, for an invoker nobody waits for, the outcome of each
// child it could not start as that child's reply, for the driver to find.
func orphaned(ctx context.Context, req *wireRequest, outs []*wireError, stores *storeResolver) {
	if req.Flags&flagAsync == 0 {
		return
	}
	st, err := stores.get()
	if err != nil {
		return // the driver's deadline for the children finds them
	}
	for k, we := range outs {
		if we != nil {
			_ = putReply(context.WithoutCancel(ctx), st, req.Kids[k].replyKey(req.Prefix), &wireReply{Err: we, Worker: workerID})
		}
	}
}

// treeGroups splits n children into the groups of one level of the tree:
// at most fanout groups of near-equal size, each a [lo, hi) range, as few as
// leave each group at most fanout children when that is possible.
func treeGroups(n, fanout int) [][2]int {
	g := min(fanout, (n+fanout-1)/fanout)
	g = max(g, 1)
	groups := make([][2]int, g)
	lo := 0
	for k := range groups {
		hi := lo + (n-lo)/(g-k)
		groups[k] = [2]int{lo, hi}
		lo = hi
	}
	return groups
}

// How an invoker starts a call on its backend.
const (
	startAsync    = iota // InvokeAsync: the platform queues it (Lambda's Event)
	startWait            // Invoke, waited for: a cloud platform without asynchronous calls (SCF) freezes or ends a worker once its invocation returned, so a call still out then may never leave
	startDetached        // Invoke on a goroutine that outlives the invocation: backends on this machine (local, process), whose workers go on
)

func startMode(b backends.Backend) int {
	switch _, async := b.(backends.AsyncBackend); {
	case async:
		return startAsync
	case b.Limits().SameHost:
		return startDetached
	}
	return startWait
}

// startInvoker starts the children kids[g[0]:g[1]] of req through a
// sub-invoker, and fills outs with what it knows of them: the sub-invoker's
// answer when it waits for it, else whether the sub-invoker could be
// started (the sub-invoker then writes the children it cannot start as
// their replies, see orphaned).
func startInvoker(ctx context.Context, b backends.Backend, req *wireRequest, g [2]int, outs []*wireError, stores *storeResolver) {
	sub := *req
	sub.Kids = req.Kids[g[0]:g[1]]
	mode := startMode(b)
	if mode != startWait {
		sub.Flags |= flagAsync // nobody waits for its answer
	}
	fail := func(we *wireError) {
		for k := range outs {
			outs[k] = we
		}
	}
	var buf bytes.Buffer
	if err := encodeRequest(&buf, &sub); err != nil {
		fail(&wireError{Code: codeChild, Type: "refused", Message: fmt.Sprintf("encode a sub-invoker's request: %v", err)})
		return
	}
	payload := buf.Bytes()
	what := fmt.Sprintf("sub-invoker of %d children", len(outs))
	reply, err := startCall(ctx, b, mode, req.Patience, req.Patience+invokeSlack, payload, func(we *wireError) {
		outs := make([]*wireError, len(sub.Kids))
		for k := range outs {
			outs[k] = we
		}
		orphaned(ctx, &sub, outs, stores)
	})
	if err != nil {
		fail(childError(fmt.Errorf("%s: %w", what, err)))
		return
	}
	if mode != startWait {
		return // started
	}
	r, err := decodeReply(reply)
	switch {
	case err != nil:
		fail(childError(fmt.Errorf("%s: %w: undecodable reply: %v", what, backends.ErrTransport, err)))
	case r.Err != nil:
		fail(r.Err) // the driver classifies it as it would the invoker's own
	case len(r.Kids) != len(outs):
		fail(childError(fmt.Errorf("%s answered for %d: %w", what, len(r.Kids), backends.ErrTransport)))
	default:
		copy(outs, r.Kids)
	}
}

// startCall makes a call of an invoker in mode, retrying throttles for up
// to patience. It returns the reply when it waited for one. A detached
// call, bounded by limit (0: none), that fails (or whose worker refuses
// it) is reported to lost, on its goroutine, after the invoker's
// invocation may have returned.
func startCall(ctx context.Context, b backends.Backend, mode int, patience, limit time.Duration, payload []byte, lost func(*wireError)) ([]byte, error) {
	switch mode {
	case startAsync:
		ab := b.(backends.AsyncBackend)
		return invokeRetrying(ctx, patience, func() ([]byte, error) { return nil, ab.InvokeAsync(ctx, payload) })
	case startWait:
		return invokeRetrying(ctx, patience, func() ([]byte, error) { return b.Invoke(ctx, payload) })
	}
	go func() {
		cctx, cancel := context.WithoutCancel(ctx), context.CancelFunc(func() {})
		if limit > 0 {
			cctx, cancel = context.WithTimeout(cctx, limit)
		}
		defer cancel()
		reply, err := invokeRetrying(cctx, patience, func() ([]byte, error) { return b.Invoke(cctx, payload) })
		if we := callOutcome(reply, err); we != nil {
			lost(we)
		}
	}()
	return nil, nil
}

// startChild starts one child of req, in the mode its backend allows (see
// startMode): it returns once the platform took the call, once the child
// ran, or at once, the child's failure to start then written as its reply.
func startChild(ctx context.Context, b backends.Backend, req *wireRequest, kid *wireKid, stores *storeResolver) *wireError {
	child, payload, we := childRequest(req, kid, true, 0)
	if we != nil {
		return we
	}
	mode := startMode(b)
	if mode == startDetached {
		// Opened now, while the invoker's context lives: the store that
		// takes the child's reply if it cannot start.
		_, _ = stores.get()
	}
	reply, err := startCall(ctx, b, mode, req.Patience, callLimit(req, child), payload, func(we *wireError) {
		if st, err := stores.get(); err == nil {
			_ = putReply(context.WithoutCancel(ctx), st, child.ReplyKey, &wireReply{Err: we, Worker: workerID})
		}
	})
	switch {
	case err != nil:
		return childError(err)
	case mode != startWait:
		return nil // started: it writes its reply, or lost does
	}
	return callOutcome(reply, nil)
}

// childRequest builds the request of a child of req: one that puts its
// reply in the store at the child's key (async), or one that returns it,
// inline up to replyLimit bytes (0: any size) and spilled to the store
// above that.
func childRequest(req *wireRequest, kid *wireKid, async bool, replyLimit int64) (*wireRequest, []byte, *wireError) {
	child := *req
	child.Kids, child.Chunks, child.Fanout = nil, nil, 0
	child.Flags &^= flagAsync | flagCollect
	child.ReplyKey, child.ReplyLimit = "", replyLimit
	if async {
		child.Flags |= flagAsync
		child.ReplyKey, child.ReplyLimit = kid.replyKey(req.Prefix), 0
	} else {
		child.Flags |= flagOutputsAside // its reply reaches the driver in a bundle
	}
	child.Tasks = make([]wireTask, len(kid.Tasks))
	for x, t := range kid.Tasks {
		wt := wireTask{Index: t.Index, Attempt: t.Attempt, Try: t.Try, Kind: kid.Kind, Input: t.Input}
		if t.Input == nil {
			wt.Key, wt.Off, wt.Len = req.Chunks[t.Chunk], t.Off, t.Len
		}
		child.Tasks[x] = wt
	}
	var buf bytes.Buffer
	if err := encodeRequest(&buf, &child); err != nil {
		return nil, nil, &wireError{Code: codeChild, Type: "refused", Message: fmt.Sprintf("encode a child's request: %v", err)}
	}
	return &child, buf.Bytes(), nil
}

// collectKids starts the children of an invoker that collects their
// replies (flagCollect) and has no more than Fanout of them: each call
// waits for its child's reply, the invoker runs the last child itself (it
// holds an environment of the platform while it waits anyway, so the tree
// takes no more of them than its children), and the replies go to the
// store in bundles (see collect). outs gets the outcome of each child as
// startChild gives it, and a lost one for a child whose reply could not be
// written.
func (r *Registry) collectKids(ctx context.Context, b backends.Backend, req *wireRequest, outs []*wireError, stores *storeResolver, policy *storePolicy) {
	n := len(req.Kids)
	col := collect(ctx, stores, req.Prefix, n)
	replyLimit := int64(b.Limits().MaxResponseBytes)
	// The invoker stops waiting collectMargin before its own deadline
	// (its function's timeout), to write what it has and answer.
	wait, stopWaiting := ctx, context.CancelFunc(func() {})
	if dl, ok := ctx.Deadline(); ok {
		wait, stopWaiting = context.WithDeadline(ctx, dl.Add(-collectMargin))
	}
	defer stopWaiting()
	startAll(n, startWait, func(k int) {
		growStack(k)
		kid := &req.Kids[k]
		child, payload, we := childRequest(req, kid, false, replyLimit)
		if we != nil {
			outs[k] = we
			return
		}
		var reply []byte
		var err error
		if k == n-1 {
			// Its parts, if it sent any, are not the invoker's.
			reply = r.handle(backends.WithPartSender(wait, nil), payload, policy)
		} else {
			cctx, cancel := wait, context.CancelFunc(func() {})
			if limit := callLimit(req, child); limit > 0 {
				cctx, cancel = context.WithTimeout(wait, limit)
			}
			reply, err = invokeRetrying(cctx, req.Patience, func() ([]byte, error) { return b.Invoke(cctx, payload) })
			cancel()
			if err != nil && wait.Err() != nil && ctx.Err() == nil {
				err = fmt.Errorf("%w: still running %v before its invoker's own deadline (the function's timeout), when the invoker "+
					"stops waiting to write its children's replies; a task must end well within the function's timeout (%v)",
					backends.ErrWorkerLost, collectMargin, err)
			}
		}
		if we := callOutcome(reply, err); we != nil {
			outs[k] = we
			return
		}
		t := kid.Tasks[0]
		col.add(collected{k: k, index: t.Index, attempt: t.Attempt, bundleEntry: bundleEntry{key: kid.replyKey(req.Prefix), reply: reply}})
	})
	for k, err := range col.close() {
		outs[k] = childError(fmt.Errorf("%w: it ran, but %w", backends.ErrWorkerLost, err))
	}
}

// collectMargin is how long before its own deadline a collecting invoker
// stops waiting for its children: time to write their replies and answer.
const collectMargin = 3 * time.Second

// growStack grows the calling goroutine's stack in one step, while it is
// nearly empty, towards what a call through a cloud SDK's deep middleware
// chain takes; grown as that chain descends, it doubles, and is copied,
// several times over. With a goroutine per child waiting for its reply,
// that copying was a fifth of the WAN bench's emulated cloud's CPU, a
// seventh with this.
//
//go:noinline
func growStack(k int) byte {
	var pad [16 << 10]byte
	return pad[k&(len(pad)-1)]
}

// callOutcome is what a child's call that the invoker waited for came to:
// nil when it ran (its reply is in the store), else why not.
func callOutcome(reply []byte, err error) *wireError {
	if err != nil {
		return childError(err)
	}
	switch r, derr := decodeReply(reply); {
	case derr != nil:
		return childError(fmt.Errorf("%w: undecodable reply: %v", backends.ErrTransport, derr))
	case r.Err != nil:
		return r.Err // its worker refused it: its reply says why
	}
	return nil
}

// callLimit bounds an invoker's call of child, a child of req: as the
// driver bounds a batch (its tasks' timeouts one after another per runner,
// plus slack), and the invoker's patience with throttles; 0 for no limit.
func callLimit(req, child *wireRequest) time.Duration {
	if child.TaskTimeout <= 0 {
		return 0
	}
	return batchTimeout(len(child.Tasks), child.Parallel, child.TaskTimeout) + req.Patience
}

// invokeRetrying makes a call, trying again while the platform throttles
// it, for up to patience: with backoff and jitter, and after at least the
// wait the platform asked for.
func invokeRetrying(ctx context.Context, patience time.Duration, call func() ([]byte, error)) ([]byte, error) {
	if patience <= 0 {
		patience = treePatience
	}
	give := time.Now().Add(patience)
	wait := backoffBase
	for {
		reply, err := call()
		if err == nil || !errors.Is(err, backends.ErrThrottled) {
			return reply, err
		}
		d := max(backends.RetryAfter(err), wait/2+rand.N(wait/2+1))
		if time.Now().Add(d).After(give) {
			return nil, err
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
		wait = min(2*wait, treeBackoffMax)
	}
}

// childError is the outcome of a child that could not be started, as the
// driver reads it back (see kidError).
func childError(err error) *wireError {
	we := &wireError{Code: codeChild, Type: "lost", Message: err.Error(), Retryable: true}
	switch {
	case errors.Is(err, backends.ErrThrottled):
		we.Type = "throttled"
	case errors.Is(err, backends.ErrClosed):
		// The invoker's own worker is going away (its driver stopped
		// it, or died): the child never started, and may be sent again.
	case !backends.Retryable(err):
		we.Type, we.Retryable = "refused", false
	}
	return we
}

// errKid marks the failure of a child an invoker could not start.
var errKid = errors.New("an invoker could not start it")

// kidError is the error of a child's failed start, classified as the
// invoker saw it: a throttle (sent again after a backoff), a refusal for
// good (the platform refuses the call itself: the job or member stops), or
// a call that may have run (retried).
func kidError(we *wireError) error {
	switch we.Type {
	case "throttled":
		return fmt.Errorf("%w: %w", errKid, &backends.ThrottleError{Reason: we.Message})
	case "refused":
		return fmt.Errorf("%w: %s", errKid, we.Message)
	default:
		return fmt.Errorf("%w: %w: %s", backends.ErrWorkerLost, errKid, we.Message)
	}
}

// replyKey is where the child's reply goes: ReplyKey, or when that is
// empty (the driver leaves it out, saving most of a child's bytes), the key
// of its first task's output, as the driver names every async reply.
func (k *wireKid) replyKey(prefix string) string {
	if k.ReplyKey != "" || len(k.Tasks) == 0 {
		return k.ReplyKey
	}
	return layout.Job(prefix).Output(k.Tasks[0].Index, k.Tasks[0].Attempt)
}

// checkTree reports what keeps Options.Tree from working with the
// executor's backend and store.
func (ex *Executor) checkTree() error {
	t := ex.opts.Tree
	switch {
	case t == 0:
		return nil
	case t < 2:
		return fmt.Errorf("Options.Tree %d: an invoker starts at least 2 children (0 turns the tree off)", t)
	case ex.store == nil:
		return fmt.Errorf("%w: Options.Tree: the children of an invoker tree reply through a store; set Options.Store or GOWREN_STORE", ErrNoStore)
	}
	nested := ex.limits.Nested
	if g, ok := ex.backend.(backends.Group); ok {
		for _, m := range g.Members() {
			nested = nested || m.Limits().Nested
		}
	}
	if !nested {
		return fmt.Errorf("Options.Tree %d: the backend's workers cannot invoke it (%T reports no backends.Limits.Nested); "+
			"use one whose workers can (local, process, lambda, scf) or set Tree to 0", t, ex.backend)
	}
	return nil
}

// treeTaskBytes bounds the encoded size of a child's task in an invoker's
// request, beside its inline input; treeKidBytes a child's own fields.
const (
	treeTaskBytes = 7*9 + 5
	treeKidBytes  = 16 + 64 // with a reply key, when it has one
)

// sendRounds sends the invocations dispatch collected for members with a
// tree: one alone directly, more through invokers of at most Tree
// children each (fewer, larger groups nest: see treeGroups), and more
// invokers where a group's request would not fit the member's payload
// limit.
func (j *jobCore) sendRounds() {
	if j.chunkNo == nil {
		j.chunkNo = make(map[string]int, len(j.chunks))
		for k, c := range j.chunks {
			j.chunkNo[c] = k
		}
	}
	for k := range j.mem {
		m := &j.mem[k]
		invs := m.round
		m.round = nil
		switch len(invs) {
		case 0:
			continue
		case 1:
			j.sendDirect(invs[0])
			continue
		}
		// Half the smaller of the payload limits: a sub-invoker, which may
		// be started asynchronously, takes a share of its invoker's
		// request.
		limit := int64(minLimit(m.limits.MaxRequestBytes, m.limits.MaxAsyncRequestBytes)) / 2
		for _, g := range treeGroups(len(invs), j.tree) {
			j.sendInvokers(k, invs[g[0]:g[1]], limit)
		}
	}
}

// sendInvokers sends invs through one invoker, or through several when one
// request would pass limit bytes (0: no limit).
func (j *jobCore) sendInvokers(k int, invs []*invocation, limit int64) {
	size := int64(len(j.spec.fn.name) + len(j.spec.fn.digest) + len(j.prefix) + envelopeSlack)
	for _, c := range j.chunks {
		size += int64(len(c)) + 2
	}
	for _, inv := range invs {
		size += treeKidBytes + treeTaskBytes*int64(len(inv.tasks))
		for _, i := range inv.tasks {
			size += j.inlineSize(i)
		}
	}
	if limit > 0 && size > limit && len(invs) > 1 {
		h := len(invs) / 2
		j.sendInvokers(k, invs[:h], limit)
		j.sendInvokers(k, invs[h:], limit)
		return
	}
	j.counters.invokers++
	j.counters.viaTree += len(invs)
	_, queues := j.mem[k].b.(backends.AsyncBackend)
	collect := j.mem[k].limits.Platform != "" && (!j.spec.async || queues)
	if collect {
		// On a cloud platform an invoker collects its children's
		// replies into bundles, and the driver reads a few objects over
		// its uplink instead of one per child. In a synchronous job the
		// driver waits for the invoker; in an async one the platform
		// queues it (see sendTree), and the bundles are in the store for
		// a driver that attaches later. An async job on a platform that
		// cannot queue an invocation (SCF's Invoke is too scarce for
		// that) keeps a reply object per child, its invokers answering
		// at once, and so do children on the driver's machine (no
		// platform: local, process), whose replies cost no uplink, and
		// whose fixed pool of workers would have to hold the waiting
		// invokers and their children at once.
		for _, inv := range invs {
			inv.collected = true
			heap.Push(&j.awaited, inv) // polled for until its reply comes
		}
	}
	j.busy++
	ctx := j.ctx
	j.senders.do(func() { j.sendTree(ctx, k, invs, collect) })
}

// sendTree makes one invoker invocation on member k for invs and posts
// the children's outcomes.
func (j *jobCore) sendTree(ctx context.Context, k int, invs []*invocation, collect bool) {
	ex := j.ex
	req := j.envelope() // without flagAsync: the driver waits for its answer, but see queued
	req.ReplyLimit = 0  // the children's results go to the store; the answer is small
	req.Kids, req.Chunks, req.Fanout, req.Patience = make([]wireKid, len(invs)), j.chunks, j.tree, treePatience
	if collect {
		req.Flags |= flagCollect
	}
	// An async job's collecting invoker is queued by the platform, as the
	// job's own invocations are: it runs, and writes its children's
	// replies, whatever becomes of the driver. Nobody waits for its
	// answer, so it writes a child it could not run as that child's reply
	// (flagAsync: see orphaned), and the driver takes its children as
	// accepted once the platform took it.
	queued := collect && j.spec.async
	if queued {
		req.Flags |= flagAsync
	}
	ev := event{kind: evKids, terminal: true, kids: invs, kidErrs: make([]error, len(invs))}
	failAll := func(err error) {
		for x := range ev.kidErrs {
			ev.kidErrs[x] = err
		}
		ev.at = j.now()
		j.post(ev)
	}
	for x, inv := range invs {
		kid := wireKid{Kind: j.spec.kind, Tasks: make([]wireKidTask, len(inv.tasks))}
		if inv.key != j.keys.Output(inv.tasks[0], int(inv.attempts[0])) {
			kid.ReplyKey = inv.key // not the key the invoker derives
		}
		for y, i := range inv.tasks {
			kt := wireKidTask{Index: i, Attempt: int(inv.attempts[y]), Try: inv.tries[y]}
			if j.inlineSize(i) > 0 {
				// A small input travels with its child: the child reads
				// nothing from the store for it.
				kt.Input = j.inline[j.offs[i]:j.offs[i+1]]
			} else {
				ref := j.refs[i]
				kt.Chunk, kt.Off, kt.Len = j.chunkNo[ref.key], ref.off, ref.len
			}
			kid.Tasks[y] = kt
		}
		req.Kids[x] = kid
	}
	var buf bytes.Buffer
	if err := encodeRequest(&buf, req); err != nil {
		failAll(fmt.Errorf("%w: an invoker's request: %v", errEncode, err))
		return
	}
	ev.bytesSent = int64(buf.Len())
	ctx = backends.WithInvoker(ctx, nil) // the invoker's own worker sets its own
	if ex.limits.InProcess {
		ctx = context.WithValue(ctx, driverStoreKey{}, ex.store)
	}
	// An invoker waits for its platform to take each child, retrying
	// throttles for up to its patience, at every level of the tree.
	depth := 1
	for c := len(invs); c > j.tree; c = (c + j.tree - 1) / j.tree {
		depth++
	}
	timeout := time.Duration(depth) * (treePatience + invokeSlack)
	b := j.mem[k].b
	if queued {
		// sendInvokers queues only on a backends.AsyncBackend.
		if err := b.(backends.AsyncBackend).InvokeAsync(ctx, buf.Bytes()); err != nil {
			failAll(fmt.Errorf("invoker of %d invocations: %w", len(invs), err))
			return
		}
		ev.at = j.now()
		j.post(ev) // every child started, as far as the driver can tell
		return
	}
	if _, async := b.(backends.AsyncBackend); collect || !async && !j.mem[k].limits.SameHost {
		// Its invokers wait for their children (see startChild and
		// collectKids).
		most := 0
		for _, inv := range invs {
			most = max(most, len(inv.tasks))
		}
		if d := j.invokeTimeout(most); d > 0 {
			timeout += d
		} else {
			timeout = 0
		}
	}
	callCtx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		callCtx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	reply, err := b.Invoke(callCtx, buf.Bytes())
	ev.bytesReceived = int64(len(reply))
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: no reply within %v: %w", backends.ErrWorkerLost, timeout, err)
		}
		failAll(fmt.Errorf("invoker of %d invocations: %w", len(invs), err))
		return
	}
	r, err := decodeReply(reply)
	switch {
	case err != nil:
		failAll(fmt.Errorf("invoker of %d invocations: %w: undecodable reply: %v", len(invs), backends.ErrTransport, err))
	case r.Err != nil:
		ev.ierr = invocationError(r.Err)
		ev.ri = replyInfo{worker: r.Worker, cold: r.Cold}
		ev.at = j.now()
		j.post(ev)
	case len(r.Kids) != len(invs):
		failAll(fmt.Errorf("invoker answered for %d of %d invocations: %w", len(r.Kids), len(invs), backends.ErrTransport))
	default:
		for x, we := range r.Kids {
			if we != nil {
				ev.kidErrs[x] = invocationError(we)
			}
		}
		ev.ri = replyInfo{worker: r.Worker, cold: r.Cold}
		ev.at = j.now()
		j.post(ev)
	}
}

// kidsStarted applies an invoker's answer: a child started is accepted, as
// an async invocation is, and waits for its reply in the store; one that
// was not fails as its invoker classified it.
func (j *jobCore) kidsStarted(ev event) {
	if ev.ri.cold {
		j.counters.coldStarts++
	}
	for x, inv := range ev.kids {
		switch err := ev.kidErrs[x]; {
		case ev.ierr != nil:
			j.replyError(inv, ev.ierr, ev.at)
		case err == nil:
			if !inv.ended && !inv.accepted {
				j.ran(inv)
				j.accept(inv, ev.at+int64(j.asyncDeadline(len(inv.tasks))))
			}
		case errors.Is(err, errKid):
			j.failed(inv, err, ev.at) // classified by its invoker
		default:
			j.replyError(inv, err, ev.at) // a sub-invoker's worker failed its request
		}
	}
}

// minLimit is the smaller of two limits where 0 means none.
func minLimit(a, b int) int {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}
