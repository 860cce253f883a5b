package fanout

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/internal/layout"
	"github.com/gowren/gowren/storage"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sync/errgroup"
)

// Tuning constants; docs/design.md explains each.
const (
	// chunkSize is the target size of one aggregated input object.
	chunkSize = 64 << 20
	// envelopeSlack is what a request needs beyond its inputs and the
	// strings it names (function, store URL).
	envelopeSlack = 256
	// taskSlack is what one task adds to a request beyond its input.
	taskSlack = 48
	// backoffBase and backoffCap bound the exponential backoff of retries.
	backoffBase = 50 * time.Millisecond
	backoffCap  = 10 * time.Second
	// invokeSlack is added to the computed invocation deadline.
	invokeSlack = 5 * time.Second
	// asyncTimeout is how long an asynchronous invocation may stay silent
	// when neither Options.TaskTimeout nor the backend bounds it: AWS
	// Lambda's longest run, 15 minutes.
	asyncTimeout = 15 * time.Minute
	// cleanupTimeout bounds the deletion of a job's objects.
	cleanupTimeout = time.Minute
)

// inputRef locates an input in the store.
type inputRef struct {
	key      string
	off, len int64
}

// jobSpec is what the typed layer hands to start.
type jobSpec struct {
	fn       *funcInfo
	n        int
	kind     int
	flags    uint64
	encode   func(e *msgpack.Encoder, i int) error                 // encodes input i
	accept   func(i int, out []byte, slack *int64) (func(), error) // decodes output i (see decodeBounded), returns what stores it; nil with flagOutputsToStore
	keepData bool
	async    bool
	viaStore bool // replies come through the store: async, or an invoker tree
}

// jobCore runs one job. Its dispatcher goroutine (run, in engine.go) owns
// the fields marked so; the rest is set before the job is launched and read
// only afterwards.
type jobCore struct {
	ex       *Executor
	id       string
	keys     layout.Job // the job's keys in the store
	prefix   string     // keys.Prefix()
	spec     jobSpec
	clock    clock
	ctx      context.Context
	cancel   context.CancelCauseFunc
	ioCtx    context.Context // reads of results: outlives a cancelled job a little
	ioCancel context.CancelFunc
	done     chan struct{} // closed when the job has ended, cleanup included
	loopDone chan struct{} // closed when the dispatcher stopped changing the job

	// Inputs. Input i travels inline as inline[offs[i]:offs[i+1]] when that
	// is not empty, else by reference to refs[i] in the store. In async
	// mode every input is in the store too, for Attach.
	inline  []byte
	offs    []int64
	refs    []inputRef
	chunks  []string // keys of the aggregated input objects
	started time.Time
	tree    int            // fan-out of the invoker tree; 0: none
	chunkNo map[string]int // with a tree: the position of each chunk key in chunks

	// Owned by the dispatcher.
	t            *table
	mem          []member // the backend's members (backends.Group), or the backend alone
	memLive      int      // members not refused for good
	sz           sizer
	spc          speculator
	delays       delayQueue
	expiries     expiryQueue  // accepted async invocations' deadlines
	awaited      awaitedQueue // copies whose replies come through the store, by first task
	senders      *senders
	events       chan event
	statsReq     chan chan JobStats
	busy         int       // I/O operations out
	bounced      []delayed // throttled tasks waiting for a retry, oldest first
	counters     counters
	jobErr       error
	lastThrottle error
	ended        time.Time
	wrote        bool // objects may exist under the job's prefix
	lastBatch    int
	rampWait     time.Duration
	specNext     int64
	dirty        bool // something to publish
	hinted       int  // completed tasks marked in settledBits
	graceOver    bool
	sweep        bool // async: list once more before settling
	// Async bookkeeping.
	seen         map[string]int64 // reply objects read, with their sizes
	toRead       []string
	reading      int
	found        int // replies read since the last listing
	listing      bool
	listStarted  int64
	nextPoll     int64
	pollInterval time.Duration

	// Published by the dispatcher, read by anyone.
	snap        atomic.Pointer[snapshot]
	settledBits []atomic.Uint64
	// Counted by the cleanup, after the dispatcher stopped, and by the
	// lease keeper.
	cleanupLists, cleanupDeletes, leaseWrites atomic.Int64
	driver                                    string // names this driver's lease
	leased                                    bool   // the job has a manifest: keep the lease fresh
}

// JobTime returns the start time written in a job ID, or the zero time.
// Job IDs are "<8 hex>-<UTC start time>": the random part comes first so
// that the keys of concurrent jobs spread over the store's key space (S3
// scales request rates per key range, and time-first IDs would put every
// new job at the same end of jobs/); the time keeps IDs readable.
func JobTime(id string) time.Time { return layout.IDTime(id) }

func (ex *Executor) newJob(id string, spec jobSpec) *jobCore {
	clk := ex.clock
	if clk == nil {
		clk = systemClock{}
	}
	started := clk.Now()
	j := &jobCore{
		ex: ex, id: id, keys: layout.JobOf(id), prefix: layout.JobOf(id).Prefix(), spec: spec, clock: clk, started: started,
		done: make(chan struct{}), loopDone: make(chan struct{}),
		events: make(chan event, 256), statsReq: make(chan chan JobStats),
		senders: newSenders(), settledBits: make([]atomic.Uint64, (spec.n+63)/64),
		sz: newSizer(ex.opts.BatchSize), spc: newSpeculator(),
	}
	j.mem = newMembers(ex, started.UnixNano())
	j.memLive = len(j.mem)
	if ex.opts.Tree >= 2 && ex.store != nil {
		for k := range j.mem {
			if j.mem[k].limits.Nested {
				j.mem[k].nested = true
				j.tree = ex.opts.Tree
			}
		}
	}
	j.spec.viaStore = spec.async || j.tree > 0
	j.ioCtx, j.ioCancel = context.WithCancel(context.Background())
	j.driver = layout.NewID(started)
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	j.t = newTable(spec.n, tablePolicy{retries: ex.opts.Retries, retryTaskErrors: ex.opts.RetryTaskErrors, parallel: ex.limits.Parallel},
		binary.LittleEndian.Uint64(seed[:]))
	if spec.flags&flagOutputsToStore != 0 {
		j.t.outRefs = make([]wireRange, spec.n)
	}
	if j.spec.viaStore {
		j.seen = map[string]int64{}
	}
	j.dirty = true
	j.publish(false)
	return j
}

// start encodes the inputs, writes the ones that do not fit inline to the
// store (all of them in async mode, with the manifest), and launches the
// job. It returns once the job is accepted.
func (ex *Executor) start(ctx context.Context, spec jobSpec) (*jobCore, error) {
	if ex.cfgErr != nil {
		return nil, ex.cfgErr
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fanout: start %q: %w", spec.fn.name, err)
	}
	if spec.async && ex.store == nil {
		return nil, fmt.Errorf("fanout: start %q: %w: async mode keeps replies and the job manifest in a store; set Options.Store or GOWREN_STORE", spec.fn.name, ErrNoStore)
	}
	if err := ex.checkTree(); err != nil {
		return nil, fmt.Errorf("fanout: start %q: %w", spec.fn.name, err)
	}
	if spec.async {
		if _, ok := ex.backend.(backends.AsyncBackend); !ok && !ex.limits.SameHost {
			// Emulated async needs the driver alive anyway; a remote
			// backend without native async gains nothing from it.
			return nil, fmt.Errorf("fanout: start %q: the backend cannot invoke asynchronously", spec.fn.name)
		}
	}
	var checks counters
	if _, native := ex.backend.(backends.AsyncBackend); spec.async && native {
		if err := ex.checkWorker(ctx, spec.fn, &checks); err != nil {
			return nil, fmt.Errorf("fanout: start %q: %w", spec.fn.name, err)
		}
	}
	j := ex.newJob(layout.NewID(time.Now()), spec)
	// The check is part of what the job cost.
	j.counters.invocations += checks.invocations
	j.counters.failedInvocations += checks.failedInvocations
	j.counters.throttles += checks.throttles
	j.counters.bytesSent += checks.bytesSent
	j.counters.bytesReceived += checks.bytesReceived
	if err := j.encodeInputs(ctx); err != nil {
		j.deleteObjects(ctx)
		return nil, err
	}
	if spec.async || ex.opts.KeepData {
		if err := j.writeManifest(ctx); err != nil {
			j.deleteObjects(ctx)
			return nil, err
		}
	}
	if err := j.launch(ctx); err != nil {
		j.deleteObjects(ctx)
		return nil, err
	}
	return j, nil
}

// launch registers the job with the executor and starts its dispatcher.
// The job follows ctx: cancelling ctx cancels the job.
func (j *jobCore) launch(ctx context.Context) error {
	if err := j.ex.register(j); err != nil {
		return err
	}
	j.ctx, j.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { j.cancel(context.Cause(ctx)) })
	go func() {
		defer j.ex.unregister(j)
		defer stop()
		defer j.ioCancel()
		j.run()
	}()
	return nil
}

// requestBudget is the room for inputs in one request of the job, 0 for no
// limit.
func (j *jobCore) requestBudget() int64 {
	ex := j.ex
	limit := ex.limits.MaxRequestBytes
	if j.spec.viaStore && ex.limits.MaxAsyncRequestBytes > 0 {
		limit = ex.limits.MaxAsyncRequestBytes
	}
	if limit <= 0 {
		return 0
	}
	fixed := envelopeSlack + 2*len(j.spec.fn.name) + len(j.spec.fn.digest) + len(j.prefix)
	if ex.store != nil {
		fixed += len(ex.store.URL())
	}
	return max(int64(limit-fixed), 1)
}

// encodeInputs encodes every input. Inputs larger than a quarter of the
// request budget go to the store, packed into aggregated chunk objects of
// about chunkSize, written as they fill (at most two at a time); in async
// mode every input goes there too, the small ones also travelling inline.
func (j *jobCore) encodeInputs(ctx context.Context) error {
	ex := j.ex
	n := j.spec.n
	name := j.spec.fn.name
	j.offs = make([]int64, n+1)
	var buf bytes.Buffer
	e := getEncoder(&buf)
	defer putEncoder(e)
	budget := j.requestBudget()
	storeAbove := int64(math.MaxInt64)
	if budget > 0 {
		storeAbove = budget / 4
	}
	var maxObject int64
	if m, ok := ex.store.(storage.MaxObjectSizer); ok {
		maxObject = m.MaxObjectSize()
	}
	putCtx, cancelPuts := context.WithCancel(ctx)
	defer cancelPuts()
	var (
		chunk   bytes.Buffer
		pending []int // inputs in the current chunk
		puts    errgroup.Group
	)
	puts.SetLimit(2)
	flush := func() {
		if chunk.Len() == 0 {
			return
		}
		key := j.keys.Chunk(len(j.chunks))
		j.chunks = append(j.chunks, key)
		data := bytes.Clone(chunk.Bytes())
		chunk.Reset()
		for _, i := range pending {
			j.refs[i].key = key
		}
		pending = pending[:0]
		j.wrote = true
		j.counters.storeWrites++
		puts.Go(func() error {
			if err := ex.store.Put(putCtx, key, data); err != nil {
				return fmt.Errorf("fanout: start %q: write inputs to %q: %w", name, key, err)
			}
			return nil
		})
	}
	fail := func(err error) error {
		cancelPuts()
		_ = puts.Wait()
		return err
	}
	for i := range n {
		start := buf.Len()
		if err := j.spec.encode(e, i); err != nil {
			return fail(fmt.Errorf("fanout: start %q: encode input %d: %w", name, i, err))
		}
		size := int64(buf.Len() - start)
		big := size > storeAbove
		if big && ex.store == nil && size+taskSlack > budget {
			return fail(fmt.Errorf("fanout: start %q: input %d is %d bytes, over the backend's %d-byte request limit, and the executor has no store to carry it (set Options.Store or GOWREN_STORE): %w",
				name, i, size, ex.limits.MaxRequestBytes, ErrPayloadTooLarge))
		}
		// Without a store, a big input that fits a request alone travels
		// inline.
		// Async mode keeps every input in the store too, for Attach; an
		// invoker tree sends the small ones with its children.
		toStore := ex.store != nil && (big || j.spec.async)
		if !toStore {
			j.offs[i+1] = int64(buf.Len())
			continue
		}
		if maxObject > 0 && size > maxObject {
			return fail(fmt.Errorf("fanout: start %q: input %d is %d bytes, over the store's %d-byte object limit: %w (%w)",
				name, i, size, maxObject, ErrPayloadTooLarge, storage.ErrTooLarge))
		}
		if maxObject > 0 && int64(chunk.Len())+size > maxObject {
			flush()
		}
		if j.refs == nil {
			j.refs = make([]inputRef, n)
		}
		j.refs[i] = inputRef{off: int64(chunk.Len()), len: size}
		pending = append(pending, i)
		chunk.Write(buf.Bytes()[start:])
		if big {
			buf.Truncate(start) // travels by reference
		}
		j.offs[i+1] = int64(buf.Len())
		if chunk.Len() >= chunkSize {
			flush()
		}
		if putCtx.Err() != nil {
			break // a Put failed; Wait reports it
		}
	}
	flush()
	if err := puts.Wait(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fanout: start %q: %w", name, err)
	}
	j.inline = buf.Bytes()
	return nil
}

// inlineSize is the size of input i in a request: 0 when it travels by
// reference.
func (j *jobCore) inlineSize(i int) int64 { return j.offs[i+1] - j.offs[i] }

// inputSize is the size of input i, wherever it is.
func (j *jobCore) inputSize(i int) int64 {
	if n := j.inlineSize(i); n > 0 || j.refs == nil {
		return n
	}
	return j.refs[i].len
}
