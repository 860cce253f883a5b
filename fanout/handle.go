package fanout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/internal/layout"
	"github.com/gowren/gowren/storage"
)

// Handle is the worker side of every backend: it decodes an invocation
// payload, checks the function and its signature, runs the batch of tasks and
// returns the encoded reply. It serves the default registry (see Register).
//
// Handle never panics and never returns an error: a malformed payload, an
// unknown function, a stale signature, a panicking or failing task all become
// error replies, which the executor (or ReplyError) decodes. When ctx is
// cancelled it returns promptly, reporting unfinished tasks as cancelled;
// tasks that ignore their context are abandoned, not waited for. It is safe
// for concurrent use.
func Handle(ctx context.Context, payload []byte) []byte {
	return defaultRegistry.Handle(ctx, payload)
}

// served is set by the first invocation this process handles; the reply of
// that invocation reports a cold start.
var served atomic.Bool

var workerID = func() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "worker"
	}
	return host + ":" + strconv.Itoa(os.Getpid())
}()

// abandonGrace is how long past its deadline a task that ignores its context
// is waited for before it is reported as timed out and abandoned.
const abandonGrace = time.Second

// Handle is the package-level Handle for the functions of r.
func (r *Registry) Handle(ctx context.Context, payload []byte) []byte {
	return r.handle(ctx, payload, workerStorePolicy.Load())
}

// handle serves one invocation, opening only the stores policy allows.
func (r *Registry) handle(ctx context.Context, payload []byte, policy *storePolicy) (reply []byte) {
	defer func() {
		if p := recover(); p != nil {
			reply = errorReply(&wireError{Code: codeInternal, Type: fmt.Sprintf("%T", p),
				Message: fmt.Sprintf("worker: internal error: %v", p), Stack: string(debug.Stack())})
		}
	}()
	cold := !served.Swap(true)
	req, err := decodeRequest(payload)
	if err != nil {
		code := codeMalformed
		var ve *versionError
		if errors.As(err, &ve) {
			code = codeVersion
		}
		return errorReply(&wireError{Code: code, Message: fmt.Sprintf("malformed request of %d bytes: %v", len(payload), err)})
	}
	// The function and its signature are checked, and the store against
	// the worker's allow-list, before any store is opened: a request this
	// binary cannot serve, or that names a store the deployment did not
	// allow, touches nothing. Its error goes back in the invocation's
	// answer only (an asynchronous job checks its function and store with
	// one synchronous invocation first, see Executor.checkWorker).
	fn := r.lookup(req.Func)
	if fn == nil {
		return errorReply(&wireError{Code: codeUnknown, Message: fmt.Sprintf(
			"function %q is not registered in this worker (it has: %s); is the deployed binary the driver's program?",
			req.Func, listNames(r.Names(), 20))})
	}
	if fn.digest != req.Digest {
		return errorReply(&wireError{Code: codeStale, Message: fmt.Sprintf(
			"function %q is %s in this worker (digest %s) but the driver's has digest %s: the worker binary is out of date; redeploy it",
			req.Func, fn.signature, fn.digest, req.Digest)})
	}
	if req.Store != "" {
		if err := policy.check(req.Store); err != nil {
			return errorReply(&wireError{Code: codeStoreRefused, Message: err.Error()})
		}
	}
	stores := &storeResolver{url: req.Store, ctx: ctx}
	if len(req.Kids) > 0 {
		return r.fanOut(ctx, req, cold, stores, policy)
	}
	b := &batchRun{fn: fn, req: req, cold: cold, stores: stores, capture: backends.OutputCaptureOf(ctx),
		stream: len(req.Tasks) > 1 && req.Flags&flagAsync == 0 && backends.CanSendParts(ctx)}
	results := b.run(ctx)
	out := &wireReply{Worker: workerID, Cold: cold, Results: results}
	if req.Flags&flagAsync != 0 {
		// The reply goes to the store; the invocation's own answer only
		// says whether that worked. Its counts include its own write.
		st, err := stores.get()
		if err == nil {
			out.StoreReads, out.StoreWrites = stores.counts()
			out.StoreWrites++ // this put
			err = putReply(context.WithoutCancel(ctx), st, req.ReplyKey, out)
		}
		if err != nil {
			return errorReply(&wireError{Code: codeStore, Type: fmt.Sprintf("%T", err), Retryable: true,
				Message: fmt.Sprintf("write reply %q: %v", req.ReplyKey, err)})
		}
		return encodedAck
	}
	return b.encode(ctx, out)
}

// encodedAck is the answer to an asynchronous invocation whose reply is in
// the store.
var encodedAck = func() []byte {
	var buf bytes.Buffer
	if err := encodeReply(&buf, &wireReply{Worker: workerID}); err != nil {
		panic(err)
	}
	return buf.Bytes()
}()

func listNames(names []string, max int) string {
	if len(names) == 0 {
		return "no functions"
	}
	if len(names) > max {
		return strings.Join(names[:max], ", ") + fmt.Sprintf(" and %d more", len(names)-max)
	}
	return strings.Join(names, ", ")
}

func errorReply(we *wireError) []byte {
	var buf bytes.Buffer
	r := &wireReply{Err: we, Worker: workerID}
	if err := encodeReply(&buf, r); err != nil {
		// Only a broken encoder gets here; reply with the bare minimum.
		return []byte{0x96, 0x01, 0xc0, 0xa0, 0xc2, 0xa0, 0x90}
	}
	return buf.Bytes()
}

// Task states in a batch.
const (
	taskPending int32 = iota
	taskRunning
	taskDone
	taskAbandoned
)

type batchRun struct {
	cold    bool
	fn      *funcInfo
	req     *wireRequest
	stores  *storeResolver
	stream  bool                   // send results ahead of the reply (backends.SendPart)
	capture backends.OutputCapture // the runtime's capture of the process's output; nil: none
}

type taskDoneMsg struct {
	i   int
	res wireResult
}

// partEvery is how often, at most, a streaming batch sends the results of
// the tasks that finished since its last part: the first result goes at
// once, the next ones together.
const partEvery = 20 * time.Millisecond

// run executes the batch with up to req.Parallel runners and returns the
// results the reply must carry, in task order: one per task, except those
// sent ahead in parts. Tasks that overrun their deadline by abandonGrace,
// or are still running when ctx ends, are reported as timed out or
// cancelled and abandoned; tasks that never started then are reported as
// such, so the driver sends them again.
func (b *batchRun) run(ctx context.Context) []wireResult {
	tasks := b.req.Tasks
	results := make([]wireResult, len(tasks))
	if len(tasks) == 0 {
		return results
	}
	state := make([]atomic.Int32, len(tasks))
	started := make([]atomic.Int64, len(tasks)) // Unix nanos, for abandonment
	doneCh := make(chan taskDoneMsg, len(tasks))
	var next atomic.Int64

	runner := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= len(tasks) || ctx.Err() != nil {
				return
			}
			if !state[i].CompareAndSwap(taskPending, taskRunning) {
				continue
			}
			started[i].Store(time.Now().UnixNano())
			res := b.runTask(ctx, &tasks[i])
			if !state[i].CompareAndSwap(taskRunning, taskDone) {
				// Abandoned: its result is not wanted and a replacement
				// runner took over.
				backends.NoteAbandoned(-1)
				return
			}
			doneCh <- taskDoneMsg{i, res}
		}
	}
	parallel := max(1, min(b.req.Parallel, len(tasks)))
	for range parallel {
		go runner()
	}

	p := parts{b: b, ctx: ctx, sent: make([]bool, len(tasks)), results: results}
	defer p.stop()
	take := func(m taskDoneMsg) {
		results[m.i] = m.res
		p.add(m.i)
	}
	remaining := len(tasks)
	// Overruns are looked for when the timer fires, not after every
	// result: a task that starts after a check cannot overrun before the
	// next check, which is armed at most limit ahead.
	limit := b.req.TaskTimeout + abandonGrace
	var timer *time.Timer
	var timeoutC <-chan time.Time
	if b.req.TaskTimeout > 0 {
		timer = time.NewTimer(limit)
		defer timer.Stop()
		timeoutC = timer.C
	}
	for remaining > 0 {
		select {
		case m := <-doneCh:
			take(m)
			remaining--
		case <-p.due():
			p.flush()
		case <-timeoutC:
			cutoff := time.Now().Add(-limit).UnixNano()
			for i := range tasks {
				if state[i].Load() == taskRunning && started[i].Load() <= cutoff && abandon(&state[i]) {
					take(taskDoneMsg{i, abandonedResult(&tasks[i], started[i].Load(), codeTimeout,
						fmt.Sprintf("task overran its %v timeout and ignored its context; abandoned", b.req.TaskTimeout), false)})
					remaining--
					go runner() // take over the remaining tasks
				}
			}
			next := limit
			if at, ok := earliestOverrun(state, started, limit); ok {
				next = max(time.Until(at), time.Millisecond)
			}
			timer.Reset(next)
		case <-ctx.Done():
			code, msg := codeCanceled, "invocation cancelled before the task finished"
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				code, msg = codeDeadline, "invocation deadline reached before the task finished"
			}
			for i := range tasks {
				if state[i].CompareAndSwap(taskPending, taskAbandoned) {
					results[i] = abandonedResult(&tasks[i], 0, codeUnstarted, "the invocation ended before the task started", true)
					remaining--
				} else if abandon(&state[i]) {
					results[i] = abandonedResult(&tasks[i], started[i].Load(), code, msg, len(tasks) > 1)
					remaining--
				}
			}
			// Tasks that finished are on their way: their runner sends
			// right after marking them done.
			for remaining > 0 {
				m := <-doneCh
				results[m.i] = m.res
				remaining--
			}
		}
	}
	return p.rest()
}

// parts sends the results of a streaming batch ahead of its reply.
type parts struct {
	b       *batchRun
	ctx     context.Context
	results []wireResult
	sent    []bool // sent in a part
	pending []int  // finished, not sent yet
	last    time.Time
	timer   *time.Timer
	armed   bool
}

// add notes that task i finished; its result leaves at once if no part
// left within partEvery, else with the next part.
func (p *parts) add(i int) {
	if !p.b.stream {
		return
	}
	p.pending = append(p.pending, i)
	if wait := partEvery - time.Since(p.last); wait <= 0 {
		p.flush()
	} else if !p.armed {
		if p.timer == nil {
			p.timer = time.NewTimer(wait)
		} else {
			p.timer.Reset(wait)
		}
		p.armed = true
	}
}

// due fires when pending results are to leave.
func (p *parts) due() <-chan time.Time {
	if !p.armed {
		return nil
	}
	return p.timer.C
}

// flush sends the pending results in one part. A part that cannot be sent
// (too large, or the pipe is gone) stays for the reply, and streaming
// stops.
func (p *parts) flush() {
	p.armed = false
	if len(p.pending) == 0 || !p.b.stream {
		return
	}
	rs := make([]wireResult, len(p.pending))
	for k, i := range p.pending {
		rs[k] = p.results[i]
	}
	var buf bytes.Buffer
	err := encodeReply(&buf, &wireReply{Worker: workerID, Cold: p.b.cold, Results: rs})
	if limit := p.b.req.ReplyLimit; err == nil && limit > 0 && int64(buf.Len()) > limit {
		err = ErrPayloadTooLarge
	}
	if err == nil {
		err = backends.SendPart(p.ctx, buf.Bytes())
	}
	if err != nil {
		p.b.stream = false
		p.pending = p.pending[:0]
		return
	}
	for _, i := range p.pending {
		p.sent[i] = true
	}
	p.pending = p.pending[:0]
	p.last = time.Now()
}

func (p *parts) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
}

// rest returns the results not sent in parts, in task order.
func (p *parts) rest() []wireResult {
	out := p.results[:0:0]
	for i, r := range p.results {
		if !p.sent[i] {
			out = append(out, r)
		}
	}
	if len(out) == len(p.results) {
		return p.results
	}
	return out
}

// abandon gives up on a running task, counting its goroutine, which may
// outlive the invocation, until it returns (see backends.NoteAbandoned).
func abandon(state *atomic.Int32) bool {
	backends.NoteAbandoned(1) // before the swap, so the runner's -1 never comes first
	if state.CompareAndSwap(taskRunning, taskAbandoned) {
		return true
	}
	backends.NoteAbandoned(-1)
	return false
}

func earliestOverrun(state []atomic.Int32, started []atomic.Int64, limit time.Duration) (time.Time, bool) {
	var earliest int64
	found := false
	for i := range state {
		if state[i].Load() != taskRunning {
			continue
		}
		s := started[i].Load()
		if s != 0 && (!found || s < earliest) {
			earliest, found = s, true
		}
	}
	if !found {
		return time.Time{}, false
	}
	return time.Unix(0, earliest).Add(limit), true
}

func abandonedResult(t *wireTask, start int64, code, msg string, retryable bool) wireResult {
	now := time.Now().UnixNano()
	if start == 0 {
		start = now
	}
	return wireResult{Index: t.Index, Attempt: t.Attempt, Start: start, End: now,
		Err: &wireError{Code: code, Type: "context", Message: msg, Retryable: retryable}}
}

// runTask runs one task and never panics.
func (b *batchRun) runTask(ctx context.Context, t *wireTask) (res wireResult) {
	res = wireResult{Index: t.Index, Attempt: t.Attempt}
	defer func() {
		if p := recover(); p != nil {
			res.Err = panicError(p)
			res.Output, res.Key = nil, ""
		}
		if res.End == 0 {
			res.End = time.Now().UnixNano()
		}
	}()
	res.Start = time.Now().UnixNano()
	input, werr := b.input(ctx, t)
	if werr != nil {
		res.Err = werr
		return res
	}
	tctx := ctx
	if b.req.TaskTimeout > 0 {
		var cancel context.CancelFunc
		tctx, cancel = context.WithTimeout(ctx, b.req.TaskTimeout)
		defer cancel()
	}
	ts := &taskState{req: b.req, task: t, stores: b.stores}
	ts.info = TaskInfo{Job: b.req.Job, Func: b.req.Func, Index: t.Index, Attempt: t.Try,
		ColdStart: b.cold, Worker: workerID}
	if dl, ok := tctx.Deadline(); ok {
		ts.info.Deadline = dl
	}
	tctx = context.WithValue(tctx, taskKey{}, ts)
	res.Start = time.Now().UnixNano()
	out, werr := b.call(tctx, ts, input)
	res.End = time.Now().UnixNano()
	res.Logs = ts.logs.records()
	if werr != nil {
		switch {
		case werr.Code == codeApp && tctx.Err() != nil && ctx.Err() == nil && errors.Is(tctx.Err(), context.DeadlineExceeded):
			// The function returned after its own timeout fired.
			werr.Code = codeTimeout
		case werr.Code == codeTimeout && errors.Is(ctx.Err(), context.DeadlineExceeded):
			// It gave up at the invocation's deadline, not its own: in a
			// batch it may have started late, so the driver sends it
			// again alone (older drivers see Retryable).
			werr.Code = codeDeadline
			werr.Retryable = len(b.req.Tasks) > 1
		}
		res.Err = werr
		return res
	}
	return b.placeOutput(ctx, res, out)
}

// call runs the task's function. Where the worker runtime captures the
// process's output (backends.TaskStarted), the lines written while it ran
// join its log records.
func (b *batchRun) call(ctx context.Context, ts *taskState, input []byte) (out []byte, werr *wireError) {
	if b.capture == nil {
		return b.fn.run(ctx, input)
	}
	ts.logs.setOutput(b.capture.TaskStarted(ts.task.Index))
	defer ts.logs.endOutput()
	return b.fn.run(ctx, input)
}

// outputKey is where an output of the batch goes in the store: under
// out/, unless replies go there too (an async invocation's, whose reply
// is named after its first task as that task's output would be) or a
// collecting invoker's bundles do (flagOutputsAside): then under data/.
func (b *batchRun) outputKey(index, attempt int) string {
	if b.req.Flags&(flagOutputsAside|flagAsync) != 0 {
		return layout.Job(b.req.Prefix).Data(index, attempt)
	}
	return layout.Job(b.req.Prefix).Output(index, attempt)
}

// placeOutput puts the output inline, or in the store when asked to or when
// it is too large to travel in the reply.
func (b *batchRun) placeOutput(ctx context.Context, res wireResult, out []byte) wireResult {
	limit := b.req.ReplyLimit
	toStore := b.req.Flags&flagOutputsToStore != 0 || (limit > 0 && int64(len(out)) > limit/4)
	if !toStore {
		res.Output = out
		return res
	}
	st, err := b.stores.get()
	if err != nil {
		if b.req.Flags&flagOutputsToStore == 0 && int64(len(out)) <= limit {
			res.Output = out // no store, but it may still fit
			return res
		}
		res.Err = &wireError{Code: codeTooLarge, Type: "fanout.ErrPayloadTooLarge", Message: fmt.Sprintf(
			"output of %d bytes exceeds the %d-byte reply limit and cannot go to the store: %v", len(out), limit, err)}
		return res
	}
	key := b.outputKey(res.Index, res.Attempt)
	if err := st.Put(ctx, key, out); err != nil {
		res.Err = &wireError{Code: codeStore, Type: fmt.Sprintf("%T", err), Message: fmt.Sprintf("write output: %v", err), Retryable: true}
		return res
	}
	res.Key, res.Len = key, int64(len(out))
	return res
}

// input returns the encoded input of t, reading it from the store if needed.
func (b *batchRun) input(ctx context.Context, t *wireTask) ([]byte, *wireError) {
	raw := t.Input
	if t.Key != "" {
		st, err := b.stores.get()
		if err != nil {
			return nil, &wireError{Code: codeStore, Type: fmt.Sprintf("%T", err), Message: fmt.Sprintf("open store for input: %v", err), Retryable: true}
		}
		raw, err = st.GetRange(ctx, t.Key, t.Off, t.Len)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, goneError("read input", err)
		}
		if err != nil {
			return nil, &wireError{Code: codeStore, Type: fmt.Sprintf("%T", err), Message: fmt.Sprintf("read input: %v", err), Retryable: true}
		}
		if int64(len(raw)) != t.Len {
			return nil, &wireError{Code: codeStore, Type: "fanout.shortRead", Message: fmt.Sprintf("read input %q [%d,+%d): got %d bytes", t.Key, t.Off, t.Len, len(raw)), Retryable: true}
		}
	}
	if t.Kind == inputGather {
		return b.gather(ctx, raw)
	}
	return raw, nil
}

// gather builds the msgpack array of the objects a gather input names.
func (b *batchRun) gather(ctx context.Context, list []byte) ([]byte, *wireError) {
	ranges, err := decodeRanges(list)
	if err != nil {
		return nil, &wireError{Code: codeMalformed, Message: fmt.Sprintf("gather list: %v", err)}
	}
	st, err := b.stores.get()
	if err != nil {
		return nil, &wireError{Code: codeStore, Type: fmt.Sprintf("%T", err), Message: fmt.Sprintf("open store for gather: %v", err), Retryable: true}
	}
	parts := make([][]byte, len(ranges))
	errs := make([]error, len(ranges))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, r := range ranges {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			parts[i], errs[i] = st.GetRange(ctx, r.Key, r.Off, r.Len)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); errors.Is(err, storage.ErrNotFound) {
		return nil, goneError("gather", err)
	} else if err != nil {
		return nil, &wireError{Code: codeStore, Type: fmt.Sprintf("%T", err), Message: fmt.Sprintf("gather: %v", err), Retryable: true}
	}
	var buf bytes.Buffer
	e := getEncoder(&buf)
	err = e.EncodeArrayLen(len(parts))
	putEncoder(e)
	if err != nil {
		return nil, &wireError{Code: codeInternal, Message: err.Error()}
	}
	for _, p := range parts {
		buf.Write(p)
	}
	return buf.Bytes(), nil
}

// encode encodes the reply, moving outputs to the store (largest first) when
// it exceeds the reply limit, and as a last resort the whole reply.
func (b *batchRun) encode(ctx context.Context, r *wireReply) []byte {
	r.StoreReads, r.StoreWrites = b.stores.counts()
	var buf bytes.Buffer
	if err := encodeReply(&buf, r); err != nil {
		return errorReply(&wireError{Code: codeInternal, Message: fmt.Sprintf("encode reply: %v", err)})
	}
	limit := b.req.ReplyLimit
	if limit <= 0 || int64(buf.Len()) <= limit {
		return buf.Bytes()
	}
	// Largest inline outputs first.
	order := make([]int, 0, len(r.Results))
	for i := range r.Results {
		if len(r.Results[i].Output) > 0 {
			order = append(order, i)
		}
	}
	sort.Slice(order, func(a, c int) bool { return len(r.Results[order[a]].Output) > len(r.Results[order[c]].Output) })
	size := int64(buf.Len())
	st, stErr := b.stores.get()
	for _, i := range order {
		if size <= limit {
			break
		}
		res := &r.Results[i]
		n := int64(len(res.Output))
		if stErr != nil {
			res.Err = &wireError{Code: codeTooLarge, Type: "fanout.ErrPayloadTooLarge", Message: fmt.Sprintf(
				"output of %d bytes does not fit the %d-byte reply with the rest of the batch, and cannot go to the store: %v", n, limit, stErr)}
		} else {
			key := b.outputKey(res.Index, res.Attempt)
			if err := st.Put(ctx, key, res.Output); err != nil {
				res.Err = &wireError{Code: codeStore, Type: fmt.Sprintf("%T", err), Message: fmt.Sprintf("write output: %v", err), Retryable: true}
			} else {
				res.Key, res.Len = key, n
			}
		}
		res.Output = nil
		size -= n
	}
	buf.Reset()
	r.StoreReads, r.StoreWrites = b.stores.counts()
	if err := encodeReply(&buf, r); err != nil {
		return errorReply(&wireError{Code: codeInternal, Message: fmt.Sprintf("encode reply: %v", err)})
	}
	if int64(buf.Len()) <= limit {
		return buf.Bytes()
	}
	// Logs and error messages alone overflow the reply.
	if stErr == nil && len(r.Results) > 0 {
		key := layout.Job(b.req.Prefix).Reply(r.Results[0].Index, r.Results[0].Attempt)
		if err := st.Put(ctx, key, buf.Bytes()); err == nil {
			buf.Reset()
			reads, writes := b.stores.counts()
			if encodeReply(&buf, &wireReply{Worker: r.Worker, Cold: r.Cold, Spilled: key, StoreReads: reads, StoreWrites: writes}) == nil {
				return buf.Bytes()
			}
		}
	}
	return errorReply(&wireError{Code: codeTooLarge, Message: fmt.Sprintf(
		"reply of %d bytes exceeds the %d-byte limit even without outputs", buf.Len(), limit)})
}

// storeResolver opens the job's store on first use. In the driver's own
// process (the local backend) it uses the driver's store instance, so a
// mem:// store is shared.
type storeResolver struct {
	url  string
	ctx  context.Context
	once sync.Once
	st   storage.Store
	err  error
}

// counts returns the storage requests made through the resolver's store
// for the invocation, the library's and the tasks' own through Store(ctx):
// reads (gets and list pages) and writes (puts and deletes).
func (s *storeResolver) counts() (reads, writes int) {
	c, ok := s.st.(*storage.Counter)
	if !ok {
		return 0, 0
	}
	n := c.Counts()
	return int(n.Gets + n.Lists), int(n.Puts + n.Deletes)
}

func (s *storeResolver) get() (storage.Store, error) {
	s.once.Do(func() {
		if s.url == "" {
			s.err = fmt.Errorf("%w: the job has no store", ErrNoStore)
			return
		}
		st, ok := s.ctx.Value(driverStoreKey{}).(storage.Store)
		if !ok || st.URL() != s.url {
			if st, s.err = workerStores.open(s.ctx, s.url); s.err != nil {
				return
			}
		}
		// Counted per invocation, for the reply; the instance below is
		// shared.
		s.st = storage.Count(st)
	})
	return s.st, s.err
}

// driverStoreKey carries the executor's store into in-process invocations.
type driverStoreKey struct{}

// workerStores caches the stores a worker opened, by URL, for the life of
// the process: a warm worker reuses its connections.
var workerStores = &storeCache{m: map[string]storage.Store{}}

type storeCache struct {
	mu sync.Mutex
	m  map[string]storage.Store
}

func (c *storeCache) open(ctx context.Context, url string) (storage.Store, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[url]; ok {
		return st, nil
	}
	st, err := storage.Open(context.WithoutCancel(ctx), url)
	if err != nil {
		return nil, err
	}
	c.m[url] = st
	return st, nil
}

// goneError reports an input object missing from the store: deleted (by
// gowren clean, a lifecycle rule, a user) while the job ran or before it
// was attached. Retrying cannot bring it back.
func goneError(what string, err error) *wireError {
	return &wireError{Code: codeGone, Type: fmt.Sprintf("%T", err), Message: fmt.Sprintf(
		"%s: %v (the object was deleted while the job needed it; start the job again)", what, err)}
}
