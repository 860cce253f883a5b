package fanout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/gowren/gowren/internal/layout"
	"github.com/gowren/gowren/storage"
	"golang.org/x/sync/errgroup"
)

// Async mode. Each invocation's reply goes to the store object
// jobs/<id>/out/<index>.<attempt>, named after the first task of its batch;
// the driver learns of completion by listing jobs/<id>/out/ and reads the new
// objects. The job's manifest (jobs/<id>/manifest) and input index
// (jobs/<id>/inputs) let Attach rebuild the job in another driver.

// ErrUnknownJob means the store holds no manifest for the job ID.
var ErrUnknownJob = errors.New("fanout: unknown job")

// ManifestVersion is the version of the manifest this build writes.
const ManifestVersion = 1

// Manifest describes a job in its store, as JSON at jobs/<id>/manifest. It
// is written when the job starts in async mode (or with Options.KeepData),
// and read by Attach and by the gowren command.
type Manifest struct {
	Version   int       `json:"version"`
	Job       string    `json:"job"`
	Func      string    `json:"func"`
	Signature string    `json:"signature"`
	Digest    string    `json:"digest"`
	Tasks     int       `json:"tasks"`
	Created   time.Time `json:"created"`
	Async     bool      `json:"async"`
	// Kind and Flags are wire details Attach needs to resend tasks.
	Kind  int    `json:"kind"`
	Flags uint64 `json:"flags"`
	// Chunks are the aggregated input objects.
	Chunks []string `json:"chunks,omitempty"`
}

// inputIndex locates every input of an async job in the chunks.
type inputIndex struct {
	Chunk []int
	Off   []int64
	Len   []int64
}

func (j *jobCore) writeManifest(ctx context.Context) error {
	m := Manifest{
		Version: ManifestVersion, Job: j.id, Func: j.spec.fn.name, Signature: j.spec.fn.signature,
		Digest: j.spec.fn.digest, Tasks: j.spec.n, Created: j.started.UTC(), Async: j.spec.async,
		Kind: j.spec.kind, Flags: j.spec.flags, Chunks: j.chunks,
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("fanout: start %q: manifest: %w", j.spec.fn.name, err)
	}
	st := j.ex.store
	if st == nil {
		return nil // KeepData without a store: nothing to keep
	}
	// The lease is the job's heartbeat: gowren jobs tells a job whose
	// driver runs from one whose driver died by it, sync jobs too.
	if err := j.renewLease(ctx); err != nil {
		return fmt.Errorf("fanout: start %q: %w", j.spec.fn.name, err)
	}
	j.leased = true
	if j.spec.async {
		idx := inputIndex{Chunk: make([]int, j.spec.n), Off: make([]int64, j.spec.n), Len: make([]int64, j.spec.n)}
		chunkNo := map[string]int{}
		for k, key := range j.chunks {
			chunkNo[key] = k
		}
		for i, r := range j.refs {
			idx.Chunk[i], idx.Off[i], idx.Len[i] = chunkNo[r.key], r.off, r.len
		}
		ib, err := encodeValue(&idx)
		if err != nil {
			return fmt.Errorf("fanout: start %q: input index: %w", j.spec.fn.name, err)
		}
		if err := st.Put(ctx, j.keys.Inputs(), ib); err != nil {
			return fmt.Errorf("fanout: start %q: write input index: %w", j.spec.fn.name, err)
		}
		j.counters.storeWrites++
	}
	// The manifest goes last: a job with a manifest is complete.
	if err := st.Put(ctx, j.keys.Manifest(), b); err != nil {
		return fmt.Errorf("fanout: start %q: write manifest: %w", j.spec.fn.name, err)
	}
	j.counters.storeWrites++
	j.wrote = true
	return nil
}

// writeStats saves the job's statistics next to its manifest (KeepData).
func (j *jobCore) writeStats() {
	st := j.ex.store
	if st == nil || (!j.wrote && !j.ex.opts.KeepData) {
		return
	}
	b, err := json.MarshalIndent(j.stats(), "", "  ")
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(j.ctx), cleanupTimeout)
	defer cancel()
	if err := st.Put(ctx, j.keys.Stats(), b); err != nil {
		j.ex.opts.Logger.Warn("gowren: write job stats", "job", j.id, "error", err)
	}
}

// ReadManifest reads the manifest of a job from a store. A job without one
// gives an error wrapping ErrUnknownJob.
func ReadManifest(ctx context.Context, st storage.Store, jobID string) (*Manifest, error) {
	if err := checkJobID(jobID); err != nil {
		return nil, err
	}
	b, err := st.Get(ctx, layout.JobOf(jobID).Manifest())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w %q in %s (no manifest: the job never existed there, was cleaned up, or was not started in async mode or with KeepData)",
			ErrUnknownJob, jobID, st.URL())
	}
	if err != nil {
		return nil, fmt.Errorf("fanout: read manifest of job %s: %w", jobID, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("fanout: manifest of job %s: %w", jobID, err)
	}
	if m.Version != ManifestVersion {
		return nil, fmt.Errorf("fanout: manifest of job %s has version %d, this build reads %d", jobID, m.Version, ManifestVersion)
	}
	if m.Job != jobID || m.Tasks < 0 {
		return nil, fmt.Errorf("fanout: manifest of job %s describes job %q with %d tasks", jobID, m.Job, m.Tasks)
	}
	return &m, nil
}

func checkJobID(id string) error {
	if err := layout.ValidateID(id); err != nil {
		return fmt.Errorf("%w: %w", ErrUnknownJob, err)
	}
	return nil
}

// Jobs yields the manifests of the jobs in a store, oldest first. Jobs
// without a manifest are skipped; a manifest that cannot be read is yielded
// as an error, and the sequence goes on.
func Jobs(ctx context.Context, st storage.Store) iter.Seq2[*Manifest, error] {
	return func(yield func(*Manifest, error) bool) {
		var ids []string
		for obj, err := range st.List(ctx, layout.JobsPrefix) {
			if err != nil {
				yield(nil, err)
				return
			}
			rest, _ := strings.CutPrefix(obj.Key, layout.JobsPrefix)
			if id, _, _ := strings.Cut(rest, "/"); obj.Key == layout.JobOf(id).Manifest() {
				ids = append(ids, id)
			}
		}
		slices.SortStableFunc(ids, func(a, b string) int { return JobTime(a).Compare(JobTime(b)) })
		for _, id := range ids {
			m, err := ReadManifest(ctx, st, id)
			if !yield(m, err) {
				return
			}
		}
	}
}

// Progress counts the tasks of an async job whose replies are in the store.
type Progress struct {
	Tasks     int
	Succeeded int
	Failed    int // final errors (retryable ones are not counted)
	Replies   int // replies read (an invoker's bundle holds several)
}

// JobProgress reads the replies of an async job from its store, without
// running anything.
func JobProgress(ctx context.Context, st storage.Store, jobID string) (*Progress, error) {
	m, err := ReadManifest(ctx, st, jobID)
	if err != nil {
		return nil, err
	}
	p := &Progress{Tasks: m.Tasks}
	state := make([]uint8, m.Tasks)
	keys := layout.JobOf(jobID)
	for obj, err := range st.List(ctx, keys.Outputs()) {
		if err != nil {
			return nil, err
		}
		ok, bundle := keys.Replies(obj.Key)
		if !ok {
			continue
		}
		b, err := st.Get(ctx, obj.Key)
		if err != nil {
			continue
		}
		replies := [][]byte{b}
		if bundle {
			// The replies an invoker collected.
			es, err := decodeBundle(b)
			if err != nil {
				continue
			}
			replies = replies[:0]
			for _, e := range es {
				replies = append(replies, e.reply)
			}
		}
		for _, b := range replies {
			p.count(ctx, st, b, state)
		}
	}
	return p, nil
}

// count adds a reply's results to p; state is each task's, 0 while it has
// none, 1 succeeded, 2 failed for good. A reply an invoker's child spilled
// to the store (too large for its invoker) is read there.
func (p *Progress) count(ctx context.Context, st storage.Store, b []byte, state []uint8) {
	r, err := decodeReply(b)
	if err == nil && r.Spilled != "" {
		if b, err = st.Get(ctx, r.Spilled); err == nil {
			r, err = decodeReply(b)
		}
	}
	if err != nil {
		return
	}
	p.Replies++
	for _, res := range r.Results {
		if res.Index < 0 || res.Index >= len(state) || state[res.Index] != 0 {
			continue
		}
		switch {
		case res.Err == nil:
			state[res.Index] = 1
			p.Succeeded++
		case !res.Err.Retryable:
			state[res.Index] = 2
			p.Failed++
		}
	}
}

// Attach finds an async job in the executor's store after the driver that
// started it went away, and returns it running again: replies already in the
// store are taken, tasks without one are sent again (tasks the first driver
// left running may then run twice; the first result wins), and the job
// gathers everything as if it had never stopped.
//
// f must be the function the job was started with: a job of another
// function, or of this function with other types (a changed program), is
// refused with an error saying which. An unknown job ID gives an error
// wrapping ErrUnknownJob.
//
// Attaching while the first driver still runs works too: both gather every
// result. Each driver keeps a lease in the store while it runs, and a driver
// that finishes deletes the job's objects only when no other driver's lease
// is fresh, so neither deletes them under the other.
func Attach[In, Out any](ctx context.Context, ex *Executor, f *Func[In, Out], jobID string) (*Job[Out], error) {
	if ex == nil || f == nil {
		return nil, errors.New("fanout: Attach with a nil Executor or Func")
	}
	if ex.cfgErr != nil {
		return nil, ex.cfgErr
	}
	if ex.store == nil {
		return nil, fmt.Errorf("fanout: attach to job %s: %w: the job lives in a store; set Options.Store or GOWREN_STORE", jobID, ErrNoStore)
	}
	m, err := ReadManifest(ctx, ex.store, jobID)
	if err != nil {
		return nil, err
	}
	if m.Func != f.Name() || m.Digest != f.fn.digest {
		return nil, fmt.Errorf("fanout: attach to job %s: it runs %s, not %s: %w", jobID, m.Signature, f.fn.signature, ErrStaleWorker)
	}
	if !m.Async {
		return nil, fmt.Errorf("fanout: attach to job %s: it was not started in async mode, so its replies never reached the store", jobID)
	}
	j := &Job[Out]{values: make([]Out, m.Tasks)}
	core := ex.newJob(jobID, jobSpec{
		fn: f.fn, n: m.Tasks, kind: m.Kind, flags: m.Flags, async: true,
		accept: j.accept,
	})
	core.started = m.Created
	core.chunks = m.Chunks
	core.wrote = true
	if err := core.loadInputs(ctx); err != nil {
		return nil, err
	}
	// Take what is already there, so that only the rest is sent again.
	if err := core.scanReplies(ctx); err != nil {
		return nil, fmt.Errorf("fanout: attach to job %s: %w", jobID, err)
	}
	if err := core.renewLease(ctx); err != nil {
		return nil, fmt.Errorf("fanout: attach to job %s: %w", jobID, err)
	}
	core.leased = true
	if core.jobErr != nil {
		return nil, core.jobErr
	}
	if err := core.launch(ctx); err != nil {
		return nil, err
	}
	j.core = core
	return j, nil
}

// scanReplies reads every reply already in the store of an async job
// before it is launched (Attach), so that only tasks without one are sent.
// It runs before the dispatcher exists, on the caller's goroutine.
func (j *jobCore) scanReplies(ctx context.Context) error {
	var lists int
	var keys []storage.ObjectInfo
	for obj, err := range storage.ListAfter(ctx, j.ex.store, j.keys.Outputs(), "") {
		if err != nil {
			return fmt.Errorf("list replies: %w", err)
		}
		lists++
		if ok, _ := j.keys.Replies(obj.Key); ok {
			keys = append(keys, obj)
		}
	}
	j.counters.storeLists += storage.ListRequests(lists)
	evs := make([]event, len(keys))
	var g errgroup.Group
	g.SetLimit(ioParallel)
	for k, obj := range keys {
		g.Go(func() error {
			b, err := j.ex.store.Get(ctx, obj.Key)
			ev := event{kind: evRead, key: obj.Key, storeReads: 1, at: j.now()}
			switch {
			case errors.Is(err, storage.ErrNotFound):
				ev.err = err
			case err != nil:
				return fmt.Errorf("read reply %q: %w", obj.Key, err)
			default:
				j.takeObject(&ev, b)
			}
			evs[k] = ev
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, ev := range evs {
		j.counters.storeReads += ev.storeReads
		j.counters.workerReads += ev.workerReads
		j.counters.workerWrites += ev.workerWrites
		if ev.err != nil {
			continue
		}
		j.seen[ev.key] = ev.size
		if ev.parts == nil {
			ev.parts = []event{ev}
		}
		for _, p := range ev.parts {
			if p.err != nil {
				continue
			}
			if p.ierr != nil {
				if failsEveryInvocation(p.ierr) {
					j.jobErr = fmt.Errorf("fanout: job %s (%s): %w", j.id, j.spec.fn.signature, p.ierr)
					return nil
				}
				continue
			}
			p.final, p.at = true, ev.at
			j.takeResults(nil, p)
			j.drain(ev.at)
		}
	}
	return nil
}

// loadInputs reads the input index of an async job: every input is then
// sent by reference to the chunks.
func (j *jobCore) loadInputs(ctx context.Context) error {
	b, err := j.ex.store.Get(ctx, j.keys.Inputs())
	if err != nil {
		return fmt.Errorf("fanout: attach to job %s: read input index: %w", j.id, err)
	}
	var idx inputIndex
	if err := decodeValue(b, &idx); err != nil {
		return fmt.Errorf("fanout: attach to job %s: input index: %w", j.id, err)
	}
	n := j.spec.n
	if len(idx.Chunk) != n || len(idx.Off) != n || len(idx.Len) != n {
		return fmt.Errorf("fanout: attach to job %s: input index covers %d tasks, the manifest %d", j.id, len(idx.Chunk), n)
	}
	j.offs = make([]int64, n+1)
	j.refs = make([]inputRef, n)
	for i := range n {
		c := idx.Chunk[i]
		if c < 0 || c >= len(j.chunks) || idx.Off[i] < 0 || idx.Len[i] <= 0 {
			return fmt.Errorf("fanout: attach to job %s: input index entry %d is out of range", j.id, i)
		}
		j.refs[i] = inputRef{key: j.chunks[c], off: idx.Off[i], len: idx.Len[i]}
	}
	return nil
}

// encodeAsyncReply is the worker's side: the reply goes to the store.
func putReply(ctx context.Context, st storage.Store, key string, r *wireReply) error {
	var buf bytes.Buffer
	if err := encodeReply(&buf, r); err != nil {
		return err
	}
	return st.Put(ctx, key, buf.Bytes())
}

// Leases. Every driver running a job that has a manifest (an async job,
// or one kept with KeepData: the one that started it, and any that
// attached to it) keeps an object jobs/<id>/drivers/<driver> and rewrites
// it every leaseEvery: the job's heartbeat, by which gowren jobs tells a
// running job from one whose driver died (DriverAlive). A driver that finishes deletes the job's
// objects only when no other driver's lease is fresh: one written less than
// leaseTTL before its own last one, both times as the store reports them,
// so the drivers' clocks need not agree. Otherwise it deletes just its
// lease and leaves the objects to the driver still running (Attach while
// the original driver runs). A driver that died leaves a lease that goes
// stale; gowren clean removes its objects by age.
const (
	leaseEvery = time.Minute
	leaseTTL   = 3 * leaseEvery
)

// LeaseEvery is how often a running driver rewrites its lease on a job,
// the object jobs/<id>/drivers/<driver id>. LeaseTTL is how long a lease
// stays fresh: a lease older than that belongs to a driver that is gone
// (it missed two renewals in a row).
const (
	LeaseEvery = leaseEvery
	LeaseTTL   = leaseTTL
)

// DriverAlive reports whether a job's driver runs, judged by renewed, the
// time the store gives the newest object under jobs/<id>/drivers/: a lease
// written less than LeaseTTL before now is fresh. The zero time (no lease)
// is not. renewed comes from the store's clock and now from the caller's,
// so clocks more than a minute or so apart blur the verdict; a job that
// ended, with its statistics saved (KeepData), may still have a fresh
// lease: check for stats.json first.
func DriverAlive(renewed, now time.Time) bool {
	return !renewed.IsZero() && now.Sub(renewed) < leaseTTL
}

// renewLease writes the driver's lease.
func (j *jobCore) renewLease(ctx context.Context) error {
	key := j.keys.Driver(j.driver)
	b := fmt.Appendf(nil, `{"driver":%q,"job":%q}`, workerID, j.id)
	if err := j.ex.store.Put(ctx, key, b); err != nil {
		return fmt.Errorf("write the driver's lease %q: %w", key, err)
	}
	j.leaseWrites.Add(1)
	return nil
}

// keepLease rewrites the lease every leaseEvery until stop is closed.
func (j *jobCore) keepLease(stop <-chan struct{}) {
	t := time.NewTicker(leaseEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := j.renewLease(j.ioCtx); err != nil && j.ioCtx.Err() == nil {
				j.ex.opts.Logger.Warn("gowren: renew the driver's lease", "job", j.id, "error", err)
			}
		}
	}
}

// othersRunning reports whether another driver's lease on the job is
// fresh. It renews its own first, for a time of the store's clock to
// compare with.
func (j *jobCore) othersRunning(ctx context.Context) bool {
	if err := j.renewLease(ctx); err != nil {
		return false
	}
	var own time.Time
	var others []time.Time
	mine := j.keys.Driver(j.driver)
	n := 0
	for obj, err := range j.ex.store.List(ctx, j.keys.Drivers()) {
		if err != nil {
			return false
		}
		n++
		if obj.Key == mine {
			own = obj.ModTime
		} else {
			others = append(others, obj.ModTime)
		}
	}
	j.cleanupLists.Add(int64(storage.ListRequests(n)))
	for _, t := range others {
		if own.Sub(t) < leaseTTL {
			return true
		}
	}
	return false
}
