package fanout

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/gowren/gowren/backends"
)

// JobStats describe a job. Counts cover the whole job so far; a snapshot
// taken while the job runs has its Ended time zero. JobStats marshals to
// JSON; with Options.KeepData it is saved as jobs/<id>/stats.json.
type JobStats struct {
	ID        string `json:"id"`
	Func      string `json:"func"`
	Tasks     int    `json:"tasks"`
	Succeeded int    `json:"succeeded"`
	// Failed counts tasks that failed on their own (their error, a panic,
	// retries used up); Cancelled those settled without a result because
	// the job stopped first (cancelled, its deadline passed, or aborted),
	// whose TaskStats.Error is the job's error. Once the job ended,
	// Succeeded + Failed + Cancelled is Tasks.
	Failed    int `json:"failed"`
	Cancelled int `json:"cancelled"`
	// Running counts tasks running in a worker now (a worker runs as many
	// tasks of its batch at once as the backend's Limits().Parallel);
	// Queued counts tasks sent in an invocation that wait there for their
	// turn; Pending counts tasks not in any invocation (never sent yet, or
	// waiting for a retry).
	Running int `json:"running"`
	Queued  int `json:"queued"`
	Pending int `json:"pending"`
	// Retries counts tasks sent again after a failure (throttled resends,
	// which never ran, are counted in Throttles instead); Backups counts
	// speculative copies.
	Retries int `json:"retries"`
	Backups int `json:"backups"`
	// Throttles counts invocations the platform refused with throttling;
	// FailedInvocations those that failed otherwise (lost workers,
	// transport failures, timeouts).
	Throttles         int `json:"throttles"`
	Invocations       int `json:"invocations"`
	FailedInvocations int `json:"failed_invocations"`
	// With an invoker tree (Options.Tree): Invokers counts the invoker
	// invocations the driver sent, ViaTree the invocations of Invocations
	// that invokers started instead of the driver. The driver itself made
	// Invocations - ViaTree + Invokers calls.
	Invokers   int `json:"invokers,omitempty"`
	ViaTree    int `json:"via_tree,omitempty"`
	ColdStarts int `json:"cold_starts"`
	// PeakInFlight is the most invocations in flight at once; Window the
	// current limit (Concurrency, lowered by throttling, raised again as
	// invocations succeed).
	PeakInFlight int `json:"peak_in_flight"`
	Window       int `json:"window"`
	// BatchSize is the number of tasks in the last invocation sent.
	BatchSize int `json:"batch_size"`
	// BytesSent and BytesReceived count invocation payloads and replies.
	BytesSent     int64 `json:"bytes_sent"`
	BytesReceived int64 `json:"bytes_received"`
	// StoreReads, StoreWrites, StoreLists and StoreDeletes count the
	// driver's storage requests as an S3 store bills them: a List of n keys
	// is one request per page of 1,000, a delete one per batch of 1,000
	// keys. WorkerStoreReads (gets and list pages) and WorkerStoreWrites
	// (puts and deletes) count the workers' requests, as their replies
	// report them: for the job's data (inputs, gathered objects, shared
	// values, outputs, replies) and the functions' own through Store(ctx),
	// such as a Chunk's reads; those of invocations whose reply never
	// arrived are not counted. StoreRequestsPerTask is the sum of all six
	// over Tasks. The cleanup's requests are in once Done is closed.
	StoreReads           int     `json:"store_reads"`
	StoreWrites          int     `json:"store_writes"`
	StoreLists           int     `json:"store_lists"`
	StoreDeletes         int     `json:"store_deletes"`
	WorkerStoreReads     int     `json:"worker_store_reads"`
	WorkerStoreWrites    int     `json:"worker_store_writes"`
	StoreRequestsPerTask float64 `json:"store_requests_per_task"`
	// TaskTime is the sum of the tasks' run times on the workers; TaskP50,
	// TaskP95 and TaskP99 are percentiles of those run times over the
	// tasks with a result.
	TaskTime time.Duration `json:"task_time"`
	TaskP50  time.Duration `json:"task_p50"`
	TaskP95  time.Duration `json:"task_p95"`
	TaskP99  time.Duration `json:"task_p99"`
	// Submitted is when Start was called; Ended when the job ended (zero
	// while it runs). Elapsed is the time between, or up to now.
	Submitted time.Time     `json:"submitted"`
	Ended     time.Time     `json:"ended"`
	Elapsed   time.Duration `json:"elapsed"`
	// Makespan runs from the first invocation sent to the last result
	// received; SetupTime from Start to the first invocation (encoding the
	// inputs, writing the large ones to the store).
	Makespan  time.Duration `json:"makespan"`
	SetupTime time.Duration `json:"setup_time"`
	// InvokeOverhead is what an invocation costs beyond the work it
	// carries (round trip less task time, a moving average): what the
	// automatic batch size amortizes.
	InvokeOverhead time.Duration `json:"invoke_overhead"`
	// Throughput is tasks with a result per second of makespan.
	Throughput float64 `json:"throughput"`
	// BilledTime sums, over invocations, the time the worker was busy with
	// the batch, each rounded up to a millisecond as Lambda bills it.
	BilledTime time.Duration `json:"billed_time"`
	// Cost estimates what the job cost from BilledTime, the invocations and
	// the prices of the platform it ran on (Options.Prices). On a backend
	// that runs on this machine (local, process) nothing bills the job: Cost
	// is zero, or with Options.Prices set an estimate of what the same work
	// would cost at those prices, marked NotBilled. Cost.String says which.
	Cost Cost `json:"cost"`
	// PerTask describes every task, in input order.
	PerTask []TaskStats `json:"per_task,omitempty"`
}

// TaskStats describe one task. Started and Finished come from the worker's
// clock (of the attempt whose result was taken), the other times from the
// driver's.
type TaskStats struct {
	Index int `json:"index"`
	// Outcome is "ok", "failed", "cancelled" (no result: the job stopped
	// first), "running" or "pending".
	Outcome   string    `json:"outcome"`
	Attempts  int       `json:"attempts"`
	Submitted time.Time `json:"submitted"`
	Invoked   time.Time `json:"invoked"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	Received  time.Time `json:"received"`
	Worker    string    `json:"worker,omitempty"`
	ColdStart bool      `json:"cold_start,omitempty"`
	// BytesIn and BytesOut are the sizes of the encoded input and output.
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
	// Error is the final error of a failed task, or for a cancelled one the
	// error that stopped the job (ending in "context canceled" when it was
	// cancelled); History says why each failed attempt failed, and
	// FailedTries when (the first 16).
	Error       string      `json:"error,omitempty"`
	History     []string    `json:"history,omitempty"`
	FailedTries []FailedTry `json:"failed_tries,omitempty"`
	// Logs are the records the task wrote through Logger(ctx), and the
	// lines it printed where the backend captures them (see LogRecord), in
	// the attempt whose result was taken (for a failed task, its last); with
	// Options.KeepData they are saved in stats.json, where `gowren logs`
	// reads them.
	Logs []LogRecord `json:"logs,omitempty"`
}

// FailedTry is an attempt of a task that failed and was retried, or was the
// last: from when the driver sent it to when it learned of the failure
// (driver clock).
type FailedTry struct {
	Sent   time.Time `json:"sent"`
	Failed time.Time `json:"failed"`
	Reason string    `json:"reason"`
}

// Prices are the rates of a serverless platform, for JobStats.Cost.
type Prices struct {
	// Name says whose prices these are.
	Name string `json:"name"`
	// MemoryMB is the memory of one worker.
	MemoryMB int `json:"memory_mb"`
	// PerGBSecond is the price of one second of one GB of memory.
	PerGBSecond float64 `json:"per_gb_second"`
	// PerMillionRequests is the price of a million invocations.
	PerMillionRequests float64 `json:"per_million_requests"`
}

// Prices of AWS Lambda (us-east-1, first tier, as published in 2026) for a
// worker of 1,769 MB, the size that gets one full vCPU.
var (
	PricesLambdaARM64 = Prices{Name: "AWS Lambda arm64", MemoryMB: 1769, PerGBSecond: 0.0000133334, PerMillionRequests: 0.20}
	PricesLambdaX86   = Prices{Name: "AWS Lambda x86_64", MemoryMB: 1769, PerGBSecond: 0.0000166667, PerMillionRequests: 0.20}
	// PricesSCF holds Tencent Cloud SCF's pay-as-you-go rates on the
	// international site, as its Billing Overview (version of 2023-02-01,
	// https://www.tencentcloud.com/document/product/583/17299) and Pricing
	// (583/12281) pages state them: 0.0000167 USD per GBs and 0.002 USD per
	// 10,000 invocations, before the free tier and the monthly basic
	// package; for a worker of gowren deploy scf's default 512 MB.
	PricesSCF = Prices{Name: "Tencent Cloud SCF", MemoryMB: 512, PerGBSecond: 0.0000167, PerMillionRequests: 0.20}
)

// PricesFor returns the price list of a platform named as in
// backends.Limits.Platform (backends.PlatformLambdaARM64,
// PlatformLambdaX86, PlatformSCF), and false for any other name.
func PricesFor(platform string) (Prices, bool) {
	switch platform {
	case backends.PlatformLambdaARM64:
		return PricesLambdaARM64, true
	case backends.PlatformLambdaX86:
		return PricesLambdaX86, true
	case backends.PlatformSCF:
		return PricesSCF, true
	}
	return Prices{}, false
}

// Cost is an estimate of what a job cost on a platform with the given
// prices, in US dollars. With no prices (Prices.Name empty) it is zero: the
// job ran where nothing bills it, or on a platform whose prices gowren does
// not know.
type Cost struct {
	Prices    Prices  `json:"prices"`
	GBSeconds float64 `json:"gb_seconds"`
	Compute   float64 `json:"compute"`
	Requests  float64 `json:"requests"`
	Total     float64 `json:"total"`
	// NotBilled reports that the job ran on this machine, where nothing
	// bills it (its backend names no platform in Limits().Platform and runs
	// its workers on the driver's host: local, process): a Total above zero
	// is then what the same billed time and invocations would cost at
	// Prices, for comparison, not what the job cost.
	NotBilled bool `json:"not_billed,omitempty"`
}

// String says what the cost is in a line of text, as gowren status prints
// it: "none: ran on this machine ...", "$0.000212 estimated on AWS Lambda
// arm64 at 1769 MB (15.2 GB-s)", or for a job that ran on this machine
// with Options.Prices set, "$0.000212: estimate of the same work on AWS
// Lambda arm64 at 1769 MB (15.2 GB-s; not billed: ran on this machine)".
func (c Cost) String() string {
	switch {
	case c.Prices.Name == "" && c.NotBilled:
		return "none: ran on this machine (Options.Prices gives an estimate of the same work on a cloud platform)"
	case c.Prices.Name == "":
		return "unknown: the backend names no price list (Options.Prices sets one)"
	case c.NotBilled:
		return fmt.Sprintf("$%.6f: estimate of the same work on %s at %d MB (%.1f GB-s; not billed: ran on this machine)",
			c.Total, c.Prices.Name, c.Prices.MemoryMB, c.GBSeconds)
	}
	return fmt.Sprintf("$%.6f estimated on %s at %d MB (%.1f GB-s)", c.Total, c.Prices.Name, c.Prices.MemoryMB, c.GBSeconds)
}

// estimate prices the billed time and invocations at p; zero p prices
// nothing.
func estimate(p Prices, notBilled bool, billed time.Duration, invocations int) Cost {
	c := Cost{Prices: p, NotBilled: notBilled, GBSeconds: billed.Seconds() * float64(p.MemoryMB) / 1024}
	c.Compute = c.GBSeconds * p.PerGBSecond
	c.Requests = float64(invocations) * p.PerMillionRequests / 1e6
	c.Total = c.Compute + c.Requests
	return c
}

// stats builds the job's statistics. Only the dispatcher calls it while
// the job runs (Stats asks it to); anyone may once it is done.
func (c *jobCore) stats() JobStats {
	t := c.t
	k := &c.counters
	s := JobStats{
		ID: c.id, Func: c.spec.fn.name, Tasks: c.spec.n,
		Succeeded: t.done, Failed: t.failed - t.stopped, Cancelled: t.stopped,
		Retries: t.retries, Backups: t.backupsSent, Throttles: k.throttles,
		PeakInFlight: k.peakInFlight, StoreLists: k.storeLists + int(c.cleanupLists.Load()),
		Invocations: k.invocations, FailedInvocations: k.failedInvocations, Invokers: k.invokers, ViaTree: k.viaTree,
		ColdStarts: k.coldStarts, BatchSize: c.lastBatch,
		BytesSent: k.bytesSent, BytesReceived: k.bytesReceived,
		StoreReads: k.storeReads, StoreWrites: k.storeWrites + int(c.leaseWrites.Load()),
		StoreDeletes: int(c.cleanupDeletes.Load()), WorkerStoreReads: k.workerReads,
		WorkerStoreWrites: k.workerWrites,
		TaskTime:          k.taskTime, Submitted: c.started, Ended: c.ended,
		BilledTime: k.billed, PerTask: make([]TaskStats, c.spec.n),
		Running: t.inWorker, Queued: t.inBatch,
	}
	c.sz.refresh()
	s.InvokeOverhead = time.Duration(c.sz.overhead)
	if c.spec.n > 0 {
		s.StoreRequestsPerTask = float64(s.StoreReads+s.StoreWrites+s.StoreLists+s.StoreDeletes+
			s.WorkerStoreReads+s.WorkerStoreWrites) / float64(c.spec.n)
	}
	now := c.clock.Now()
	s.Window = c.limit(now.UnixNano())
	end := c.ended
	if end.IsZero() {
		end = now
	}
	s.Elapsed = end.Sub(c.started)
	first, last := t.firstSent, int64(0)
	var runs []time.Duration
	for i := range t.tasks {
		rec := &t.recs[i]
		ts := c.taskStats(i, t.workerIDs)
		switch t.tasks[i].state {
		case stRunning:
			ts.Outcome = "running"
			ts.Attempts = t.tasks[i].attempts()
		case stPending:
			ts.Outcome = "pending"
			ts.Attempts = t.tasks[i].attempts()
			s.Pending++
		}
		s.PerTask[i] = ts
		if rec.received > last {
			last = rec.received
		}
		if t.tasks[i].state == stDone && rec.finished > rec.started {
			runs = append(runs, time.Duration(rec.finished-rec.started))
		}
	}
	for inv := range t.live {
		for k, i := range inv.tasks {
			if !inv.got[k] && s.PerTask[i].Invoked.Before(time.Unix(0, inv.sent)) {
				s.PerTask[i].Invoked = time.Unix(0, inv.sent) // its latest copy out
			}
		}
	}
	if first != 0 {
		s.SetupTime = time.Unix(0, first).Sub(c.started)
		if last > first {
			s.Makespan = time.Duration(last - first)
		}
	}
	if s.Makespan > 0 {
		s.Throughput = float64(s.Succeeded+s.Failed) / s.Makespan.Seconds()
	}
	if len(runs) > 0 {
		slices.Sort(runs)
		s.TaskP50, s.TaskP95, s.TaskP99 = percentile(runs, 0.50), percentile(runs, 0.95), percentile(runs, 0.99)
	}
	p, notBilled := c.ex.prices()
	s.Cost = estimate(p, notBilled, s.BilledTime, s.Invocations)
	return s
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	k := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(k, len(sorted)-1))]
}

// taskStats describes task i from its record; the outcome is "ok",
// "failed" or "cancelled" once it settled, "ok" otherwise (the caller knows
// better).
func (c *jobCore) taskStats(i int, workerIDs []string) TaskStats {
	rec := &c.t.recs[i]
	ts := TaskStats{
		Index: i, Attempts: int(rec.attempts), Submitted: c.started, Invoked: unixTime(rec.invoked),
		Started: unixTime(rec.started), Finished: unixTime(rec.finished), Received: unixTime(rec.received),
		ColdStart: rec.cold, BytesIn: c.inputSize(i), BytesOut: rec.bytesOut, Outcome: "ok",
	}
	if x := c.t.extra[i]; x != nil {
		ts.History, ts.FailedTries, ts.Logs = x.history, x.failedTries, x.logs
		if x.err != nil {
			ts.Outcome, ts.Error, ts.Logs = "failed", x.err.Error(), x.err.Logs
			if x.err.fromJob {
				ts.Outcome, ts.Error = "cancelled", x.err.Message
			}
		}
	}
	if rec.received != 0 && int(rec.worker) < len(workerIDs) {
		ts.Worker = workerIDs[rec.worker]
	}
	return ts
}

// settledStats describes task i, which the snapshot s lists as completed.
func (c *jobCore) settledStats(s *snapshot, i int) TaskStats { return c.taskStats(i, s.workerIDs) }

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// StopReason returns the error that stopped the job before every task had
// a result (for a cancelled job, one ending in "context canceled"), as its
// cancelled tasks record it; "" when no task was cancelled.
func (s *JobStats) StopReason() string {
	if s.Cancelled == 0 {
		return ""
	}
	for _, t := range s.PerTask {
		if t.Outcome == "cancelled" {
			return t.Error
		}
	}
	return "the job stopped"
}

// Summary describes the job in the lines `gowren status` prints for it:
// its tasks by outcome, the failed ones named, makespan and task-time
// percentiles, invocations and retries, storage requests, the cost (as
// Cost.String says it), and the error of each failed task (the first maxNamed).
func (s *JobStats) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "outcome   %d tasks: %d ok, %d failed", s.Tasks, s.Succeeded, s.Failed)
	if s.Cancelled > 0 {
		fmt.Fprintf(&b, ", %d cancelled", s.Cancelled)
	}
	if s.Running+s.Queued+s.Pending > 0 {
		fmt.Fprintf(&b, ", %d running, %d queued, %d pending", s.Running, s.Queued, s.Pending)
	}
	var failed []TaskStats
	for _, t := range s.PerTask {
		if t.Outcome == "failed" {
			failed = append(failed, t)
		}
	}
	if len(failed) > 0 {
		b.WriteString(" (")
		writeIndices(&b, len(failed), func(k int) int { return failed[k].Index })
		b.WriteString(")")
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "makespan  %v (%.1f tasks/s), task time p50 %v p95 %v p99 %v\n",
		s.Makespan.Round(time.Millisecond), s.Throughput, s.TaskP50, s.TaskP95, s.TaskP99)
	fmt.Fprintf(&b, "attempts  %d invocations, %d retries, %d backups, %d throttles, %d cold starts\n",
		s.Invocations, s.Retries, s.Backups, s.Throttles, s.ColdStarts)
	if s.Invokers > 0 {
		calls := s.Invocations - s.ViaTree + s.Invokers
		fmt.Fprintf(&b, "tree      %d of the invocations started by %s; %s from the driver\n",
			s.ViaTree, counted(s.Invokers, "invoker"), counted(calls, "call"))
	}
	fmt.Fprintf(&b, "storage   %.3f requests per task (driver %d reads, %d writes, %d list pages, %d deletes; workers %d reads, %d writes)\n",
		s.StoreRequestsPerTask, s.StoreReads, s.StoreWrites, s.StoreLists, s.StoreDeletes, s.WorkerStoreReads, s.WorkerStoreWrites)
	fmt.Fprintf(&b, "cost      %v\n", s.Cost)
	if why := s.StopReason(); why != "" {
		fmt.Fprintf(&b, "stopped   %s\n", why)
	}
	for k, t := range failed {
		if k == maxNamed {
			fmt.Fprintf(&b, "          ... and %d more failed tasks\n", len(failed)-maxNamed)
			break
		}
		label := "failed   "
		if k > 0 {
			label = "         "
		}
		msg := t.Error
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i] + " ..."
		}
		fmt.Fprintf(&b, "%s %s\n", label, msg)
	}
	return b.String()
}

// counted is n and the noun, plural unless n is 1.
func counted(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
