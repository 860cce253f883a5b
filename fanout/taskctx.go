package fanout

import (
	"context"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/storage"
)

// TaskInfo describes the task a context belongs to.
type TaskInfo struct {
	// Job is the ID of the job.
	Job string
	// Func is the registered name of the function.
	Func string
	// Index is the position of the task's input in the job.
	Index int
	// Attempt counts the earlier copies of the task that may have run
	// (failed attempts, and the first copy when this is a speculative
	// backup); it is 0 the first time. Resends after throttling, which
	// never ran, do not count.
	Attempt int
	// ColdStart reports that this is the first invocation the worker
	// process served.
	ColdStart bool
	// Deadline is when the task's context expires (Options.TaskTimeout or
	// the platform's limit); zero when there is none.
	Deadline time.Time
	// Worker identifies the worker process ("host:pid").
	Worker string
}

type taskKey struct{}

type taskState struct {
	info   TaskInfo
	req    *wireRequest
	task   *wireTask
	stores *storeResolver
	logs   logBuffer
}

func taskFrom(ctx context.Context) *taskState {
	ts, _ := ctx.Value(taskKey{}).(*taskState)
	return ts
}

// Task returns what is known about the task that ctx belongs to. Outside a
// task (in the driver) it returns the zero TaskInfo.
func Task(ctx context.Context) TaskInfo {
	if ts := taskFrom(ctx); ts != nil {
		return ts.info
	}
	return TaskInfo{}
}

// Logger returns a logger for the running task. Its records are kept (up to
// 256 records or 64 KiB per task, lines the task printed included; further
// ones are dropped and the drop is recorded) and travel back to the driver
// with the task's result, where they appear in Result.Logs, TaskError.Logs
// and TaskStats.Logs and, for failed tasks, in the executor's logger.
// Outside a task it returns slog.Default().
func Logger(ctx context.Context) *slog.Logger {
	if ts := taskFrom(ctx); ts != nil {
		return slog.New(&taskLogHandler{buf: &ts.logs})
	}
	return slog.Default()
}

// Store returns the job's store, opened in the worker from the URL the driver
// sent (and cached for the life of the worker process). A task may read and
// write its own objects there; its requests count in the job's
// WorkerStoreReads and WorkerStoreWrites (it is a *storage.Counter around
// the store). Outside a task, or when the job has no store,
// it returns a Store whose every method fails with an error naming the
// reason, never nil.
func Store(ctx context.Context) storage.Store {
	ts := taskFrom(ctx)
	if ts == nil {
		return brokenStore{err: fmt.Errorf("%w: fanout.Store called outside a task", ErrNoStore)}
	}
	st, err := ts.stores.get()
	if err != nil {
		return brokenStore{err: err}
	}
	return st
}

// LogRecord is one record a task wrote through Logger, or one line it
// printed to standard output or standard error where the backend captures
// them (process does; see backends.OutputCapture). A printed line is a
// record of level Info whose Message is the line and whose Attrs say
// "stream=stdout" or "stream=stderr"; a line written while several tasks
// ran in the same worker process goes to each of them, with "tasks=3,4"
// naming them all. A task's records, both kinds, are in the order they were
// written (a line's Time is when the worker read it, a moment later).
type LogRecord struct {
	Time    time.Time  `json:"time"`
	Level   slog.Level `json:"level"`
	Message string     `json:"msg"`
	// Attrs are the record's attributes in slog's text form: "k=v k2=v2".
	Attrs string `json:"attrs,omitempty"`
}

func (r LogRecord) String() string {
	s := r.Time.Format(time.RFC3339Nano) + " " + r.Level.String() + " " + r.Message
	if r.Attrs != "" {
		s += " " + r.Attrs
	}
	return s
}

func levelOf(v int64) slog.Level { return slog.Level(v) }

const (
	maxLogRecords = 256
	maxLogBytes   = 64 << 10
)

// logBuffer keeps a task's records, bounded.
type logBuffer struct {
	mu      sync.Mutex
	out     backends.TaskOutput // the task's captured output while it runs
	recs    []LogRecord
	bytes   int
	dropped int
}

// add adds a record of Logger, after the lines printed before it.
func (b *logBuffer) add(r LogRecord) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.out != nil {
		b.addLinesLocked(b.out.Take())
	}
	b.addLocked(r)
}

func (b *logBuffer) addLocked(r LogRecord) {
	n := len(r.Message) + len(r.Attrs) + 32
	if len(b.recs) >= maxLogRecords || b.bytes+n > maxLogBytes {
		b.dropped++
		return
	}
	b.recs = append(b.recs, r)
	b.bytes += n
}

// setOutput makes out, the task's captured output, join its records: each
// record first takes the lines printed before it, so that lines and
// records keep the order they were written in.
func (b *logBuffer) setOutput(out backends.TaskOutput) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.out = out
}

// endOutput ends the task's captured output, adding the last lines.
func (b *logBuffer) endOutput() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.out != nil {
		b.addLinesLocked(b.out.End())
		b.out = nil
	}
}

// addLinesLocked adds lines the task printed, as records of level Info with
// the attribute stream=stdout or stream=stderr (and tasks=3,4 for a line
// written while several tasks ran in the process).
func (b *logBuffer) addLinesLocked(lines []backends.OutputLine) {
	for _, l := range lines {
		attrs := "stream=" + l.Stream
		if len(l.Tasks) > 0 {
			var s strings.Builder
			for i, x := range l.Tasks {
				if i > 0 {
					s.WriteByte(',')
				}
				s.WriteString(strconv.Itoa(x))
			}
			attrs += " tasks=" + s.String()
		}
		b.addLocked(LogRecord{Time: l.Time, Level: slog.LevelInfo, Message: l.Text, Attrs: attrs})
	}
}

func (b *logBuffer) records() []LogRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	recs := b.recs
	if b.dropped > 0 {
		recs = append(recs[:len(recs):len(recs)], LogRecord{Time: time.Now(), Level: slog.LevelWarn,
			Message: fmt.Sprintf("gowren: %d further log records of this task were dropped (limit %d records, %d bytes)", b.dropped, maxLogRecords, maxLogBytes)})
	}
	return recs
}

// taskLogHandler is a slog.Handler that appends to a task's logBuffer.
type taskLogHandler struct {
	buf    *logBuffer
	prefix string // attributes from WithAttrs, already formatted
	group  string // group prefix from WithGroup, "a.b."
}

func (h *taskLogHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *taskLogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(h.prefix)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, h.group, a)
		return true
	})
	h.buf.add(LogRecord{Time: r.Time, Level: r.Level, Message: r.Message, Attrs: strings.TrimSpace(b.String())})
	return nil
}

func (h *taskLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range as {
		writeAttr(&b, h.group, a)
	}
	return &taskLogHandler{buf: h.buf, prefix: b.String(), group: h.group}
}

func (h *taskLogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &taskLogHandler{buf: h.buf, prefix: h.prefix, group: h.group + name + "."}
}

func writeAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			writeAttr(b, g, ga)
		}
		return
	}
	v := a.Value.String()
	if strings.ContainsAny(v, " =\"") || v == "" {
		v = fmt.Sprintf("%q", v)
	}
	b.WriteString(group + a.Key + "=" + v + " ")
}

// brokenStore is a Store whose every method fails with err.
type brokenStore struct{ err error }

func (s brokenStore) Put(context.Context, string, []byte) error                 { return s.err }
func (s brokenStore) Get(context.Context, string) ([]byte, error)               { return nil, s.err }
func (s brokenStore) Delete(context.Context, ...string) error                   { return s.err }
func (s brokenStore) URL() string                                               { return "" }
func (s brokenStore) Close() error                                              { return nil }
func (s brokenStore) NewWriter(context.Context, string) (io.WriteCloser, error) { return nil, s.err }
func (s brokenStore) GetRange(context.Context, string, int64, int64) ([]byte, error) {
	return nil, s.err
}
func (s brokenStore) NewReader(context.Context, string, int64, int64) (io.ReadCloser, error) {
	return nil, s.err
}
func (s brokenStore) List(context.Context, string) iter.Seq2[storage.ObjectInfo, error] {
	return func(yield func(storage.ObjectInfo, error) bool) { yield(storage.ObjectInfo{}, s.err) }
}
