package fanout

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gowren/gowren/backends"
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
	// maxAutoBatch caps the automatic batch size.
	maxAutoBatch = 8192
	// overheadRatio: the automatic batch makes the invocation overhead
	// about 1/overheadRatio of the work it carries.
	overheadRatio = 10
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

// Task states on the driver.
const (
	stPending uint8 = iota // waiting to be sent (first time or retry)
	stRunning              // at least one copy is in an invocation
	stDone                 // result taken
	stFailed               // error taken
)

// taskRec is the driver's record of one task; times are Unix nanoseconds.
type taskRec struct {
	state     uint8
	isolate   bool  // send alone: its last batch lost its worker
	queued    bool  // a speculative backup waits in retryQ
	backups   uint8 // speculative copies sent
	cold      bool  // the result came from a cold worker
	copies    uint8 // copies in invocations now
	throttled uint8 // sends refused by throttling (saturating): backoff grows with them
	sent      uint32
	tries     uint32 // sends that count against Options.Retries
	worker    uint32
	bytesOut  int64
	invoked   int64
	started   int64
	finished  int64
	received  int64
}

// attempts is what a task's stats and errors report: the copies that may
// have run.
func (t *taskRec) attempts() int {
	return int(t.tries) + int(t.backups)
}

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
	encode   func(e *msgpack.Encoder, i int) error   // encodes input i
	accept   func(i int, out []byte) (func(), error) // decodes output i, returns what stores it; nil with flagOutputsToStore
	keepData bool
	async    bool
}

// jobCore runs one job: it owns the dispatcher goroutine and the invocation
// goroutines, and everything they share.
type jobCore struct {
	ex     *Executor
	id     string
	prefix string
	spec   jobSpec
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when the job has ended

	// Inputs. Input i travels inline as inline[offs[i]:offs[i+1]] when that
	// is not empty, else by reference to refs[i] in the store. In async
	// mode every input is in the store too, for Attach.
	inline  []byte
	offs    []int64
	refs    []inputRef
	chunks  []string // keys of the aggregated input objects
	started time.Time

	mu          sync.Mutex
	tasks       []taskRec
	next        int   // first task never sent
	retryQ      []int // tasks ready to be sent again
	delayed     delayQueue
	finished    int
	failedN     int
	completed   []int // task indexes in completion order
	notify      chan struct{}
	wake        chan struct{}
	taskErrs    map[int]*TaskError
	logs        map[int][]LogRecord
	history     map[int][]string
	failedTries map[int][]FailedTry // when each noted attempt ran
	outRefs     []wireRange         // with flagOutputsToStore: where each output is
	jobErr      error
	ended       time.Time
	wrote       bool // objects may exist under the job's prefix
	workers     map[string]uint32
	workerIDs   []string
	counters    counters

	// Scheduling.
	live     map[*invocation]struct{}
	inflight int // invocations counted against the window
	window   window
	// Automatic batch size, in nanoseconds.
	measured      bool
	ewmaTask      float64
	overhead      float64   // median of overheads
	overheads     []float64 // recent invocation overheads (ring)
	medianBuf     []float64 // scratch for medians (under mu)
	nextOverhead  int
	tasksInFlight int
	lastBatch     int
	// Speculation.
	taskTimes   []float64 // worker run times of completed tasks, ns
	lastSpec    time.Time
	specMedian  float64 // median of taskTimes[:specMedianN]
	specMedianN int
	// Async mode.
	outstanding map[string]*invocation // by reply key
	seen        map[string]int64       // reply keys taken, with their sizes
	kick        chan struct{}          // makes the poller list now
}

type counters struct {
	retries, backups, throttles, invocations, failedInvocations, coldStarts int
	peakInFlight                                                            int
	bytesSent, bytesReceived                                                int64
	storeReads, storeWrites, storeLists, storeDeletes                       int
	workerReads, workerWrites                                               int
	taskTime, billed                                                        time.Duration
}

// newJobID returns "<8 hex>-<UTC start time>". The random part comes first
// so that the keys of concurrent jobs spread over the store's key space:
// S3 scales request rates per key range, and time-first IDs would put every
// new job at the same end of jobs/. The time keeps IDs readable.
func newJobID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:]) + "-" + time.Now().UTC().Format("20060102T150405")
}

// JobTime returns the start time written in a job ID, or the zero time.
func JobTime(id string) time.Time {
	_, ts, ok := strings.Cut(id, "-")
	if !ok {
		return time.Time{}
	}
	t, err := time.Parse("20060102T150405", ts)
	if err != nil {
		return time.Time{}
	}
	return t
}

func (ex *Executor) newJob(id string, spec jobSpec) *jobCore {
	j := &jobCore{
		ex: ex, id: id, prefix: "jobs/" + id + "/", spec: spec,
		done: make(chan struct{}), notify: make(chan struct{}), wake: make(chan struct{}, 1),
		kick: make(chan struct{}, 1), tasks: make([]taskRec, spec.n), started: time.Now(),
		live: map[*invocation]struct{}{},
	}
	j.window = newWindow(ex.opts.Concurrency, ex.opts.Ramp, j.started)
	if spec.flags&flagOutputsToStore != 0 {
		j.outRefs = make([]wireRange, spec.n)
	}
	if spec.async {
		j.outstanding = map[string]*invocation{}
		j.seen = map[string]int64{}
	}
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
	if spec.async {
		if _, ok := ex.backend.(backends.AsyncBackend); !ok && !ex.limits.SameHost {
			// Emulated async needs the driver alive anyway; a remote
			// backend without native async gains nothing from it.
			return nil, fmt.Errorf("fanout: start %q: the backend cannot invoke asynchronously", spec.fn.name)
		}
	}
	j := ex.newJob(newJobID(), spec)
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
		j.run()
	}()
	return nil
}

// requestBudget is the room for inputs in one request of the job, 0 for no
// limit.
func (j *jobCore) requestBudget() int64 {
	ex := j.ex
	limit := ex.limits.MaxRequestBytes
	if j.spec.async && ex.limits.MaxAsyncRequestBytes > 0 {
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
		key := j.prefix + "in/" + strconv.Itoa(len(j.chunks))
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
