package fanout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gowren/gowren/backends"
	// The backends every program has: local:// and process://.
	_ "github.com/gowren/gowren/backends/local"
	_ "github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/memstore"
)

func init() {
	backends.SetDefaultHandler(Handle)
}

// Environment variables read by Open.
const (
	// EnvBackend names the backend URL, e.g. "process://?workers=4".
	EnvBackend = "GOWREN_BACKEND"
	// EnvStore names the store URL, e.g. "file:///tmp/gowren".
	EnvStore = "GOWREN_STORE"
)

var initCalled atomic.Bool

// Init makes the program a worker when a backend started it as one: it then
// serves invocations through that backend's runtime and never returns (the
// process exits when the platform stops it). In a driver it returns at once.
//
// Call it first thing in main, and in TestMain for tests that use the
// process backend, after every function is registered (registration at
// package level guarantees that):
//
//	func main() {
//		fanout.Init()
//		...
//	}
//
// Backends plug their worker runtimes in from their own init functions, the
// way database/sql drivers register; import a cloud backend package in the
// program that is deployed, so its runtime is there.
func Init() {
	initCalled.Store(true)
	rt, ok := backends.DetectRuntime()
	if !ok {
		return
	}
	setWorkerStores(rt)
	if err := rt.Serve(Handle); err != nil {
		fmt.Fprintf(os.Stderr, "gowren: %s worker: %v\n", rt.Name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// checkInit stops a worker process whose main forgot to call Init before
// opening an executor: it would otherwise run the driver again, and under the
// process backend start workers of its own, without end.
func checkInit() {
	if initCalled.Load() {
		return
	}
	if rt, ok := backends.DetectRuntime(); ok {
		fmt.Fprintf(os.Stderr, "gowren: this process was started as a %s worker, but main did not call fanout.Init() "+
			"before opening an executor; call fanout.Init() first thing in main (and in TestMain)\n", rt.Name)
		os.Exit(2)
	}
}

// Options configure an Executor. The zero value (or a nil *Options) gives
// the defaults documented on each field.
type Options struct {
	// Store holds inputs and outputs too large to travel in an invocation,
	// and the map outputs of MapReduce. The Executor does not close a Store
	// it is given. Defaults to a store the Executor creates and removes on
	// Close: in memory (mem://) for backends that run in this process, a
	// temporary directory (file://) for backends on this machine, and none
	// for remote backends, which then need one for large payloads.
	Store storage.Store
	// Concurrency is the most invocations in flight at once. Defaults to
	// the backend's Limits().Concurrency, or 1000 when it has none. The
	// executor lowers its own limit when the platform throttles more than
	// a tenth of a round of invocations (a round: as many as the limit),
	// to what that round let through, and raises it again by one
	// invocation per round of successes; scattered throttles below a
	// tenth only delay the tasks they hit.
	Concurrency int
	// BatchSize is the number of tasks sent in one invocation. Defaults to
	// 0, automatic: one task per invocation until four invocations have
	// replied; then one per invocation still when a task takes at least
	// ten times the invocation overhead (the median of the last 64
	// invocations' round trip less their work); otherwise the size that
	// finishes the remaining work soonest given that overhead, but never
	// more than leaves every invocation slot three batches of the work
	// still to send, counted at the 95th percentile of the recent task
	// times. So batches shrink as the job nears its end and as task times
	// spread, and a few slow tasks cannot hold a large batch hostage. On
	// backends that stream (local, process) each task's result still
	// comes back as soon as it finishes.
	BatchSize int
	// Retries is how many times a task is sent again after an
	// infrastructure failure (a lost worker, a transport error) or an error
	// its function marked with Retryable. Throttled invocations are retried
	// without limit and do not count. Defaults to 2; a negative value
	// disables retries.
	Retries int
	// TaskTimeout bounds each task: its context expires after it, and a
	// task that ignores its context is reported as timed out (wrapping
	// ErrTaskTimeout) and abandoned. Defaults to no timeout beyond the
	// platform's own.
	TaskTimeout time.Duration
	// RetryTaskErrors retries errors returned by the function (and panics
	// and timeouts) as if the function had marked them with Retryable.
	// Defaults to false: a deterministic failure would fail again.
	RetryTaskErrors bool
	// Speculation sends a backup copy of a straggler. Once 16 invocations
	// (or half the tasks of a small job) have replied, a copy that has
	// been out longer than three times the median duration of a round of
	// tasks (a worker running P tasks at once takes ceil(batch/P) rounds),
	// and longer than one and a half times the 99th percentile of those
	// durations, and at least 100 ms, is a straggler: each of its
	// unfinished tasks is sent again, alone. In the tail, when more slots
	// are free than tasks wait to be sent, 1.5 times the median and 1.25
	// times the 99th percentile are enough (a backup then takes no task's
	// slot), and a task sent again after a failure gets a backup at once.
	// The first result wins; the other
	// copy is cancelled where the backend allows and ignored otherwise.
	// Backups do not count against Retries. A job whose tasks take about
	// the same time sends none. Defaults to false.
	Speculation bool
	// Async sends invocations without waiting for them: each worker puts
	// its reply in the store, and the driver learns of completion by listing
	// the job's reply prefix. The job's manifest and inputs are in the store
	// too, so Attach can finish the job after the driver that started it
	// died. Needs a store. Backends without native asynchronous invocation
	// (local, process) are sent synchronous calls whose replies are only
	// checked for errors. MapReduce ignores it. Defaults to false.
	//
	// An asynchronous invocation the driver gave up on (its invoke call
	// failed after the platform accepted the event, or its reply was
	// overdue) may still run and write its reply after the job's objects
	// are deleted. That reply is ignored, never a second result, but the
	// object stays: `gowren clean -older-than 24h` or a lifecycle rule on
	// the store's jobs/ prefix removes such leftovers.
	Async bool
	// Tree is the fan-out of an invoker tree: when a job has many
	// invocations to send at once, the driver sends a few invoker
	// invocations instead, each naming up to Tree of them, and the
	// invokers start them from inside the platform (an invoker with more
	// than Tree starts sub-invokers, each with a share). The driver's own
	// calls then grow with the job only as its Tree-th root, past the
	// laptop's uplink. Replies come through the store (so a tree needs a
	// store every worker reaches): on a cloud platform (Lambda, SCF), in
	// a synchronous job, each invoker calls its children, waits for them
	// (running one of them itself) and writes their replies a few to an
	// object, about once a second, so the driver reads a few objects per
	// invoker instead of one per child; otherwise (async jobs, which
	// Attach must be able to find; local and process) each child writes
	// its own, as in async mode. Small inputs travel with their children
	// in the invokers' requests, large ones in the store. A backend whose
	// workers can invoke it is needed
	// (backends.Limits.Nested: local, process, Lambda, SCF; each deployed
	// so that its functions may invoke themselves, see the README); Start
	// fails otherwise. Defaults to 0: off. 1 is refused: an invoker starts
	// at least two children.
	Tree int
	// Ramp limits how fast a job's invocations in flight grow. Defaults to
	// no limit beyond Concurrency.
	Ramp Ramp
	// Progress, when set (typically to os.Stderr), shows each job's
	// progress: done/total, running, failed, retried, tasks/s and ETA, as a
	// bar redrawn in place on a terminal and as a line every tenth of the
	// job (or every 10 s) on anything else. Defaults to nil: nothing shown.
	Progress io.Writer
	// Prices are the platform's rates, for the cost estimate in JobStats.
	// Defaults to the price list the backend names in Limits().Platform
	// (PricesLambdaARM64, PricesLambdaX86 or PricesSCF), with the memory of
	// its workers when it reports it; a backend that names none gets no
	// estimate: its jobs' Cost is zero. On a backend that runs on this
	// machine (local, process), which bills nothing, set Prices to see what
	// the same work would cost on a cloud platform: JobStats.Cost then says
	// it is such an estimate (Cost.NotBilled).
	Prices *Prices
	// Logger receives the executor's own records: retries at Warn, failed
	// tasks at Error with their logs. Defaults to slog.Default().
	Logger *slog.Logger
	// KeepData keeps a job's objects in the store after its results are
	// gathered, with its manifest and statistics (stats.json), for
	// inspection with the gowren command. Defaults to false: they are
	// deleted. With no Store set, where the default store would vanish
	// with the program (local://, process://), the jobs are kept in the
	// user's cache directory instead (KeptStoreDir), and the executor logs
	// where.
	KeepData bool
	// OnJobEnd, when set, is called with the final statistics of every job
	// the executor runs, once its results are in and its objects cleaned
	// up, before Wait and Map return: the way to see the phases of a
	// MapReduce, whose jobs are not handed out. It runs on the job's own
	// goroutine, so it should return quickly. Defaults to nil.
	OnJobEnd func(JobStats)
}

// Executor runs jobs on a backend. It is safe for concurrent use: many jobs
// may run at once, each with its own concurrency limit.
type Executor struct {
	backend  backends.Backend
	limits   backends.Limits
	opts     Options
	store    storage.Store // nil when there is none
	ownStore func() error  // closes and removes a store the executor made
	cfgErr   error         // a configuration error, reported by Start
	clock    clock         // the dispatchers' time; nil: the system's

	mu     sync.Mutex
	closed bool
	jobs   map[*jobCore]struct{}
	wg     sync.WaitGroup

	// Shared values (ref.go), guarded by mu.
	refsID  string                   // executor ID: Put writes under refs/<refsID>/; set by the first Put
	refs    map[string]bool          // keys Put wrote (true) or tried to write (false); Close deletes them all
	putting map[string]chan struct{} // keys being written, closed when the write ends
	puts    sync.WaitGroup           // Puts writing; Close waits for them

	checked map[string]bool // functions whose worker checkWorker accepted, guarded by mu
}

// NewExecutor returns an Executor running jobs on b. A nil opts gives the
// defaults. The Executor owns b: Close closes it. Configuration errors (a
// mem:// store with workers in other processes) are reported by the first
// Map or Start.
func NewExecutor(b backends.Backend, opts *Options) *Executor {
	checkInit()
	ex := &Executor{backend: b, limits: b.Limits(), jobs: map[*jobCore]struct{}{}}
	if opts != nil {
		ex.opts = *opts
	}
	o := &ex.opts
	if o.Concurrency <= 0 {
		o.Concurrency = ex.limits.Concurrency
		if o.Concurrency <= 0 {
			o.Concurrency = 1000
		}
	}
	switch {
	case o.Retries == 0:
		o.Retries = 2
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ex.store = o.Store
	switch {
	case ex.store == nil && o.KeepData && (ex.limits.InProcess || ex.limits.SameHost):
		ex.store, ex.ownStore, ex.cfgErr = keptStore()
		if ex.store != nil {
			o.Logger.Info("gowren: KeepData with no store: jobs are kept in the user's cache directory; see them with `gowren -store URL jobs`",
				"store", ex.store.URL())
		}
	case ex.store == nil:
		ex.store, ex.ownStore, ex.cfgErr = defaultStore(ex.limits)
	default:
		ex.cfgErr = checkStoreReach(ex.store, ex.limits)
	}
	return ex
}

// KeptStoreDir returns the directory that keeps the jobs of executors with
// Options.KeepData and no store, on backends of this machine:
// <user cache directory>/gowren/store (~/.cache/gowren/store on Linux).
func KeptStoreDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("fanout: KeepData with no store: %w; set Options.Store or GOWREN_STORE", err)
	}
	return filepath.Join(dir, "gowren", "store"), nil
}

// keptStore opens the store of KeptStoreDir.
func keptStore() (storage.Store, func() error, error) {
	dir, err := KeptStoreDir()
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("fanout: KeepData with no store: %w; set Options.Store or GOWREN_STORE", err)
	}
	st, err := storage.Open(context.Background(), (&url.URL{Scheme: "file", Path: dir}).String())
	if err != nil {
		return nil, nil, fmt.Errorf("fanout: KeepData with no store: %w; set Options.Store or GOWREN_STORE", err)
	}
	return st, st.Close, nil
}

func defaultStore(l backends.Limits) (storage.Store, func() error, error) {
	switch {
	case l.InProcess:
		st := memstore.New(nil)
		return st, st.Close, nil
	case l.SameHost:
		return newTempStore()
	default:
		return nil, nil, nil
	}
}

// checkStoreReach rejects stores the backend's workers cannot open.
func checkStoreReach(st storage.Store, l backends.Limits) error {
	u, err := url.Parse(st.URL())
	if err != nil {
		return fmt.Errorf("fanout: store URL %q: %w", st.URL(), err)
	}
	switch {
	case u.Scheme == "mem" && !l.InProcess:
		return fmt.Errorf("fanout: store %s lives in this process's memory, which this backend's workers cannot reach; use file:// (same machine) or s3://", st.URL())
	case u.Scheme == "file" && !l.InProcess && !l.SameHost:
		return fmt.Errorf("fanout: store %s is a local directory, which this backend's remote workers cannot reach; use s3://", st.URL())
	}
	return nil
}

// Open returns an Executor for the backend and store named by the
// environment: GOWREN_BACKEND (default "local://") and GOWREN_STORE (default:
// see Options.Store). The backend and store packages must be linked in;
// local://, process://, mem:// and file:// always are.
func Open(ctx context.Context) (*Executor, error) {
	return OpenWith(ctx, nil)
}

// OpenWith is Open with options for the Executor; the backend and store
// still come from the environment, unless opts sets a Store.
func OpenWith(ctx context.Context, opts *Options) (*Executor, error) {
	checkInit()
	bURL := os.Getenv(EnvBackend)
	if bURL == "" {
		bURL = "local://"
	}
	b, err := backends.Open(ctx, bURL)
	if err != nil {
		return nil, fmt.Errorf("fanout: open %s=%q: %w", EnvBackend, bURL, err)
	}
	o := Options{}
	if opts != nil {
		o = *opts
	}
	var st storage.Store
	if sURL := os.Getenv(EnvStore); sURL != "" && o.Store == nil {
		st, err = storage.Open(ctx, sURL)
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("fanout: open %s=%q: %w", EnvStore, sURL, err)
		}
		if err := checkStoreReach(st, b.Limits()); err != nil {
			st.Close()
			b.Close()
			return nil, err
		}
		o.Store = st
	}
	ex := NewExecutor(b, &o)
	if st != nil {
		ex.ownStore = st.Close
	}
	return ex, nil
}

// Close cancels the jobs still running (their Wait returns an error wrapping
// ErrClosed), waits for them to end, waits for the Puts in flight, deletes
// the values this Executor wrote with Put (unless Options.KeepData), then
// closes the backend and any store the Executor opened itself. A Put that
// comes after Close has begun writes nothing and returns an error wrapping
// ErrClosed. Only this Executor's own values are deleted: another Executor
// (in this driver or another) that Put the same value keeps its own copy.
// Calls after the first return nil.
func (ex *Executor) Close() error {
	ex.mu.Lock()
	if ex.closed {
		ex.mu.Unlock()
		return nil
	}
	ex.closed = true
	for j := range ex.jobs {
		j.cancel(ErrClosed)
	}
	ex.mu.Unlock()
	ex.wg.Wait()
	err := ex.deleteShared()
	err = errors.Join(err, ex.backend.Close())
	if ex.ownStore != nil {
		err = errors.Join(err, ex.ownStore())
	}
	return err
}

// prices returns the rates for cost estimates (zero: none) and whether
// the jobs run on this machine, where nothing bills them: the backend names
// no platform and its workers share the driver's host. A platform the
// backend names bills, even when a test runs it on this machine.
func (ex *Executor) prices() (p Prices, notBilled bool) {
	l := ex.limits
	notBilled = l.Platform == "" && (l.SameHost || l.InProcess)
	if ex.opts.Prices != nil {
		return *ex.opts.Prices, notBilled
	}
	p, ok := PricesFor(l.Platform)
	if ok && l.MemoryMB > 0 {
		p.MemoryMB = l.MemoryMB
	}
	return p, notBilled
}

// Backend returns the executor's backend.
func (ex *Executor) Backend() backends.Backend { return ex.backend }

// Store returns the executor's store, or nil when it has none.
func (ex *Executor) Store() storage.Store { return ex.store }

// register records a running job; it fails once the executor is closed.
func (ex *Executor) register(j *jobCore) error {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.closed {
		return ErrClosed
	}
	ex.jobs[j] = struct{}{}
	ex.wg.Add(1)
	return nil
}

func (ex *Executor) unregister(j *jobCore) {
	ex.mu.Lock()
	delete(ex.jobs, j)
	ex.mu.Unlock()
	ex.wg.Done()
}

// checkWorker makes one synchronous invocation of no task for fn, so that a
// worker that lacks fn, has another version of it, or may not open the
// executor's store says so before an asynchronous job starts: the workers of
// such a job answer the platform, not the driver, and write nothing to a
// store they refuse. The first acceptance is remembered for the executor's
// life. A call that fails for another reason (a throttle, a network error)
// is not a verdict: the job starts, and its invocations meet the problem.
// The invocation made, if any, is counted in c, the job's counters.
func (ex *Executor) checkWorker(ctx context.Context, fn *funcInfo, c *counters) error {
	ex.mu.Lock()
	done := ex.checked[fn.name]
	ex.mu.Unlock()
	if done {
		return nil
	}
	req := &wireRequest{Func: fn.name, Digest: fn.digest, Parallel: 1}
	if ex.store != nil {
		req.Store = ex.store.URL()
	}
	var buf bytes.Buffer
	if err := encodeRequest(&buf, req); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	c.invocations++
	c.bytesSent += int64(buf.Len())
	reply, err := ex.backend.Invoke(cctx, buf.Bytes())
	c.bytesReceived += int64(len(reply))
	if err != nil {
		if errors.Is(err, backends.ErrThrottled) {
			c.throttles++
		} else {
			c.failedInvocations++
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return nil
	}
	r, err := decodeReply(reply)
	if err != nil {
		c.failedInvocations++
		return nil
	}
	if err := invocationError(r.Err); err != nil {
		c.failedInvocations++
		if failsEveryInvocation(err) {
			return err
		}
		return nil
	}
	ex.mu.Lock()
	if ex.checked == nil {
		ex.checked = map[string]bool{}
	}
	ex.checked[fn.name] = true
	ex.mu.Unlock()
	return nil
}

// checkTimeout bounds checkWorker's invocation: a cold start, not a task.
const checkTimeout = 30 * time.Second
