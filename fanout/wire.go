package fanout

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// The wire protocol. A request carries a batch of tasks of one job; a reply
// carries one result per task. Both are msgpack arrays whose first element is
// the protocol version; every struct is an array of fields in a fixed order.
// A decoder reads the fields it knows and skips any that follow, so a later
// version may append fields without breaking older workers. See
// docs/design.md ("Wire protocol") for the layout.

// wireVersion is the protocol version this build speaks.
const wireVersion = 1

// Bounds on what a decoder accepts, checked before allocating.
const (
	maxTasksPerRequest = 1 << 20
	maxLogsPerTask     = 4096
)

// Request flags.
const (
	// flagOutputsToStore asks the worker to write every output to the
	// store, whatever its size (the map phase of MapReduce).
	flagOutputsToStore = 1 << iota
	// flagAsync asks the worker to put its reply in the store at
	// ReplyKey and to answer the invocation with an empty reply.
	flagAsync
	// flagCollect asks an invoker (Options.Tree) to wait for its
	// children's replies and write them to the store in bundles (see
	// collect) instead of having each child write its own.
	flagCollect
	// flagOutputsAside asks the worker to store outputs under data/, not
	// out/: a collecting invoker's child, whose stored outputs the driver,
	// listing out/ for replies and bundles, must not take for replies.
	flagOutputsAside
)

// Task input kinds.
const (
	// inputValue: the input is the msgpack encoding of the task's In.
	inputValue = iota
	// inputGather: the input is a msgpack list of wireRange; the task's In
	// is the msgpack array of the objects' contents, in order.
	inputGather
)

type wireRequest struct {
	Job         string
	Func        string
	Digest      string
	Store       string // URL of the job's store; "" when there is none
	Prefix      string // key prefix of the job's objects, ending in "/"
	ReplyLimit  int64  // largest reply the worker may return inline; 0: none
	TaskTimeout time.Duration
	Parallel    int
	Flags       uint64
	Tasks       []wireTask
	ReplyKey    string // with flagAsync: where the reply goes
	// An invoker's request (Options.Tree) has no tasks but children to
	// start: each an invocation of the same envelope with flagAsync, whose
	// inputs are ranges of the job's chunks. Fanout is how many calls an
	// invoker makes at most (more children: it starts sub-invokers), and
	// Patience how long it retries a child the platform throttles.
	Kids     []wireKid
	Chunks   []string
	Fanout   int
	Patience time.Duration
}

// wireKid is a child invocation in an invoker's request.
type wireKid struct {
	ReplyKey string
	Kind     int // of every task's input
	Tasks    []wireKidTask
}

// wireKidTask is a task of a child: its input is Input, or when that is
// nil, Len bytes at Off in the chunk object Chunks[Chunk].
type wireKidTask struct {
	Index, Attempt, Try, Chunk int
	Off, Len                   int64
	Input                      []byte
}

type wireTask struct {
	Index   int
	Attempt int // numbers every send of the task: names its reply objects
	Try     int // earlier copies that may have run: TaskInfo.Attempt
	Kind    int
	Input   []byte // inline input, when Key is ""
	Key     string // object holding the input
	Off     int64  // offset of the input in that object
	Len     int64  // its length
}

type wireRange struct {
	Key string
	Off int64
	Len int64 // negative: to the end of the object
}

type wireReply struct {
	Err     *wireError // the invocation as a whole failed
	Worker  string     // worker identity, for stats
	Cold    bool       // first invocation this worker served
	Spilled string     // the whole reply is in this store object instead
	Results []wireResult
	// StoreReads and StoreWrites count the storage requests the worker
	// made for the batch's data: inputs, gathered objects, shared values,
	// outputs and the reply itself (fields 7 and 8, absent before them).
	StoreReads  int
	StoreWrites int
	// Kids is an invoker's answer: for each child of its request, in
	// order, nil when the child was started (its reply goes to the
	// store), else why not (field 9).
	Kids []*wireError
}

type wireResult struct {
	Index   int
	Attempt int
	Output  []byte // inline output, when Key is "" and Err is nil
	Key     string // object holding the output
	Len     int64  // its length
	Err     *wireError
	Start   int64 // worker clock, Unix nanoseconds
	End     int64
	Logs    []LogRecord
}

// Error codes carried by wireError.Code.
const (
	codeApp         = "error"        // the function returned an error
	codePanic       = "panic"        // the function panicked
	codeTimeout     = "timeout"      // the task overran its deadline
	codeCanceled    = "canceled"     // the invocation was cancelled before the task ended
	codeUnstarted   = "unstarted"    // the invocation ended before the task started: it never ran
	codeDeadline    = "deadline"     // the invocation's deadline came while the task ran
	codeDecode      = "decode"       // the input could not be decoded into In
	codeDecodeLimit = "decode-limit" // decoding the input would allocate too much (ErrDecodeLimit)
	codeEncode      = "encode"       // the output could not be encoded
	codeTooLarge    = "too-large"    // the output did not fit the reply and there is no store
	codeStore       = "store"        // reading the input or writing the output failed
	codeGone        = "gone"         // the input's object is not in the store: no retry can read it
	codeMalformed   = "malformed"    // the request was not a valid envelope
	codeUnknown     = "unknown-function"
	codeStale       = "stale-worker"
	codeVersion     = "version"
	// codeStoreRefused: the job's store is not in the worker's allow-list.
	codeStoreRefused = "store-refused"
	codeInternal     = "internal"
	// codeNoInvoker: an invoker's worker has no backend to invoke its
	// children through (backends.InvokerOf).
	codeNoInvoker = "no-invoker"
	// codeChild: an invoker could not start a child. Type says how it
	// failed: "throttled", "lost" (it may have run) or "refused" (the
	// platform refuses the call itself).
	codeChild = "child"
)

type wireError struct {
	Code      string
	Type      string
	Message   string
	Stack     string
	Retryable bool
}

var encPool = sync.Pool{New: func() any {
	e := msgpack.NewEncoder(nil)
	return e
}}

func getEncoder(buf *bytes.Buffer) *msgpack.Encoder {
	e := encPool.Get().(*msgpack.Encoder)
	e.Reset(buf)
	return e
}

func putEncoder(e *msgpack.Encoder) {
	e.Reset(nil)
	encPool.Put(e)
}

// encodeRequest appends the encoding of r to buf.
func encodeRequest(buf *bytes.Buffer, r *wireRequest) error {
	e := getEncoder(buf)
	defer putEncoder(e)
	w := wireWriter{e: e}
	w.arrayLen(16)
	w.int(wireVersion)
	w.str(r.Job)
	w.str(r.Func)
	w.str(r.Digest)
	w.str(r.Store)
	w.str(r.Prefix)
	w.int(r.ReplyLimit)
	w.int(int64(r.TaskTimeout))
	w.int(int64(r.Parallel))
	w.uint(r.Flags)
	w.arrayLen(len(r.Tasks))
	for i := range r.Tasks {
		t := &r.Tasks[i]
		w.arrayLen(8)
		w.int(int64(t.Index))
		w.int(int64(t.Attempt))
		w.int(int64(t.Kind))
		w.bytes(t.Input)
		w.str(t.Key)
		w.int(t.Off)
		w.int(t.Len)
		w.int(int64(t.Try))
	}
	w.str(r.ReplyKey)
	w.arrayLen(len(r.Kids))
	for i := range r.Kids {
		k := &r.Kids[i]
		w.arrayLen(3)
		w.str(k.ReplyKey)
		w.int(int64(k.Kind))
		w.arrayLen(len(k.Tasks))
		for _, t := range k.Tasks {
			w.arrayLen(7)
			w.int(int64(t.Index))
			w.int(int64(t.Attempt))
			w.int(int64(t.Try))
			w.int(int64(t.Chunk))
			w.int(t.Off)
			w.int(t.Len)
			w.bytes(t.Input)
		}
	}
	w.arrayLen(len(r.Chunks))
	for _, c := range r.Chunks {
		w.str(c)
	}
	w.int(int64(r.Fanout))
	w.int(int64(r.Patience))
	return w.err
}

// decodeRequest decodes a request, checking every size before allocating.
func decodeRequest(b []byte) (*wireRequest, error) {
	if err := checkMsgpack(b); err != nil {
		return nil, err
	}
	d := newWireReader(b)
	defer d.release()
	n := d.arrayLen()
	if d.err == nil && n < 1 {
		return nil, errors.New("empty envelope")
	}
	if v := d.int(); d.err == nil && v != wireVersion {
		return nil, &versionError{got: int(v)}
	}
	if d.err == nil && n < 11 {
		return nil, fmt.Errorf("envelope has %d fields, want 11", n)
	}
	r := &wireRequest{}
	r.Job = d.str()
	r.Func = d.str()
	r.Digest = d.str()
	r.Store = d.str()
	r.Prefix = d.str()
	r.ReplyLimit = d.int()
	r.TaskTimeout = time.Duration(d.int())
	r.Parallel = int(d.int())
	r.Flags = d.uint()
	nt := d.arrayLen()
	if d.err != nil {
		return nil, d.err
	}
	if nt > maxTasksPerRequest {
		return nil, fmt.Errorf("%d tasks in one request, limit %d", nt, maxTasksPerRequest)
	}
	r.Tasks = make([]wireTask, nt)
	for i := range r.Tasks {
		t := &r.Tasks[i]
		fn := d.arrayLen()
		if d.err == nil && fn < 7 {
			return nil, fmt.Errorf("task %d has %d fields, want 7", i, fn)
		}
		t.Index = int(d.int())
		t.Attempt = int(d.int())
		t.Kind = int(d.int())
		t.Input = d.bytes()
		t.Key = d.str()
		t.Off = d.int()
		t.Len = d.int()
		if fn > 7 {
			t.Try = int(d.int())
		}
		d.skipN(fn - 8)
		if d.err != nil {
			return nil, d.err
		}
		if t.Index < 0 || t.Attempt < 0 || t.Try < 0 || t.Off < 0 {
			return nil, fmt.Errorf("task %d: negative index, attempt or offset", i)
		}
	}
	if n > 11 {
		r.ReplyKey = d.str()
	}
	if n > 15 {
		if err := decodeKids(d, r); err != nil {
			return nil, err
		}
	}
	d.skipN(n - 16)
	return r, d.err
}

// decodeKids decodes an invoker's children, its chunk list, fan-out and
// patience, checking every count and every chunk number.
func decodeKids(d *wireReader, r *wireRequest) error {
	nk := d.arrayLen()
	if d.err != nil {
		return d.err
	}
	if nk > maxTasksPerRequest {
		return fmt.Errorf("%d children in one request, limit %d", nk, maxTasksPerRequest)
	}
	if nk > 0 {
		r.Kids = make([]wireKid, nk)
	}
	tasks := 0
	for i := range r.Kids {
		k := &r.Kids[i]
		fn := d.arrayLen()
		if d.err == nil && fn < 3 {
			return fmt.Errorf("child %d has %d fields, want 3", i, fn)
		}
		k.ReplyKey = d.str()
		k.Kind = int(d.int())
		nt := d.arrayLen()
		if d.err != nil {
			return d.err
		}
		if nt == 0 {
			return fmt.Errorf("child %d has no task", i)
		}
		if tasks += nt; tasks > maxTasksPerRequest {
			return fmt.Errorf("over %d tasks in one invoker's children", maxTasksPerRequest)
		}
		k.Tasks = make([]wireKidTask, nt)
		for x := range k.Tasks {
			tn := d.arrayLen()
			if d.err == nil && tn < 6 {
				return fmt.Errorf("child %d, task %d has %d fields, want 6", i, x, tn)
			}
			t := &k.Tasks[x]
			t.Index, t.Attempt, t.Try, t.Chunk = int(d.int()), int(d.int()), int(d.int()), int(d.int())
			t.Off, t.Len = d.int(), d.int()
			if tn > 6 {
				t.Input = d.bytes()
			}
			d.skipN(tn - 7)
			if d.err != nil {
				return d.err
			}
			if t.Index < 0 || t.Attempt < 0 || t.Try < 0 || t.Chunk < 0 || t.Off < 0 || t.Len < 0 {
				return fmt.Errorf("child %d, task %d: a negative number", i, x)
			}
		}
		d.skipN(fn - 3)
	}
	nc := d.arrayLen()
	if d.err != nil {
		return d.err
	}
	if nc > 0 {
		r.Chunks = make([]string, nc) // checkMsgpack bounds nc by the payload
	}
	for i := range r.Chunks {
		r.Chunks[i] = d.str()
	}
	r.Fanout = int(d.int())
	r.Patience = time.Duration(d.int())
	if d.err != nil {
		return d.err
	}
	for i := range r.Kids {
		for _, t := range r.Kids[i].Tasks {
			if t.Input == nil && t.Chunk >= len(r.Chunks) {
				return fmt.Errorf("child %d names chunk %d of %d", i, t.Chunk, len(r.Chunks))
			}
		}
	}
	if len(r.Kids) > 0 && (r.Fanout < 2 || len(r.Tasks) > 0) {
		return fmt.Errorf("an invoker's request with fan-out %d and %d tasks of its own", r.Fanout, len(r.Tasks))
	}
	return nil
}

type versionError struct{ got int }

func (e *versionError) Error() string {
	return fmt.Sprintf("wire version %d, this build speaks %d: driver and worker come from different gowren releases; redeploy the worker", e.got, wireVersion)
}

func encodeReply(buf *bytes.Buffer, r *wireReply) error {
	e := getEncoder(buf)
	defer putEncoder(e)
	w := wireWriter{e: e}
	w.arrayLen(9)
	w.int(wireVersion)
	w.errv(r.Err)
	w.str(r.Worker)
	w.bool(r.Cold)
	w.str(r.Spilled)
	w.arrayLen(len(r.Results))
	for i := range r.Results {
		res := &r.Results[i]
		w.arrayLen(9)
		w.int(int64(res.Index))
		w.int(int64(res.Attempt))
		w.bytes(res.Output)
		w.str(res.Key)
		w.int(res.Len)
		w.errv(res.Err)
		w.int(res.Start)
		w.int(res.End)
		w.arrayLen(len(res.Logs))
		for _, l := range res.Logs {
			w.arrayLen(4)
			w.int(l.Time.UnixNano())
			w.int(int64(l.Level))
			w.str(l.Message)
			w.str(l.Attrs)
		}
	}
	w.int(int64(r.StoreReads))
	w.int(int64(r.StoreWrites))
	w.arrayLen(len(r.Kids))
	for _, k := range r.Kids {
		w.errv(k)
	}
	return w.err
}

func decodeReply(b []byte) (*wireReply, error) {
	if err := checkMsgpack(b); err != nil {
		return nil, err
	}
	d := newWireReader(b)
	defer d.release()
	n := d.arrayLen()
	if d.err == nil && n < 1 {
		return nil, errors.New("empty reply")
	}
	if v := d.int(); d.err == nil && v != wireVersion {
		return nil, &versionError{got: int(v)}
	}
	if d.err == nil && n < 6 {
		return nil, fmt.Errorf("reply has %d fields, want 6", n)
	}
	r := &wireReply{}
	r.Err = d.errv()
	r.Worker = d.str()
	r.Cold = d.bool()
	r.Spilled = d.str()
	nr := d.arrayLen()
	if d.err != nil {
		return nil, d.err
	}
	if nr > maxTasksPerRequest {
		return nil, fmt.Errorf("%d results in one reply, limit %d", nr, maxTasksPerRequest)
	}
	r.Results = make([]wireResult, nr)
	for i := range r.Results {
		res := &r.Results[i]
		fn := d.arrayLen()
		if d.err == nil && fn < 9 {
			return nil, fmt.Errorf("result %d has %d fields, want 9", i, fn)
		}
		res.Index = int(d.int())
		res.Attempt = int(d.int())
		res.Output = d.bytes()
		res.Key = d.str()
		res.Len = d.int()
		res.Err = d.errv()
		res.Start = d.int()
		res.End = d.int()
		nl := d.arrayLen()
		if d.err != nil {
			return nil, d.err
		}
		if nl > maxLogsPerTask {
			return nil, fmt.Errorf("result %d has %d log records, limit %d", i, nl, maxLogsPerTask)
		}
		if nl > 0 {
			res.Logs = make([]LogRecord, nl)
		}
		for k := range res.Logs {
			ln := d.arrayLen()
			if d.err == nil && ln < 4 {
				return nil, fmt.Errorf("log record has %d fields, want 4", ln)
			}
			res.Logs[k] = LogRecord{
				Time:    time.Unix(0, d.int()),
				Level:   levelOf(d.int()),
				Message: d.str(),
				Attrs:   d.str(),
			}
			d.skipN(ln - 4)
		}
		d.skipN(fn - 9)
		if d.err != nil {
			return nil, d.err
		}
	}
	if n >= 8 {
		r.StoreReads = int(d.int())
		r.StoreWrites = int(d.int())
		if n >= 9 {
			nk := d.arrayLen()
			if d.err != nil {
				return nil, d.err
			}
			if nk > maxTasksPerRequest {
				return nil, fmt.Errorf("%d children in one reply, limit %d", nk, maxTasksPerRequest)
			}
			if nk > 0 {
				r.Kids = make([]*wireError, nk)
			}
			for k := range r.Kids {
				r.Kids[k] = d.errv()
			}
			d.skipN(n - 9)
		}
	} else {
		d.skipN(n - 6)
	}
	return r, d.err
}

func encodeRangesTo(e *msgpack.Encoder, rs []wireRange) error {
	w := wireWriter{e: e}
	w.arrayLen(len(rs))
	for _, r := range rs {
		w.arrayLen(3)
		w.str(r.Key)
		w.int(r.Off)
		w.int(r.Len)
	}
	return w.err
}

func decodeRanges(b []byte) ([]wireRange, error) {
	if err := checkMsgpack(b); err != nil {
		return nil, err
	}
	d := newWireReader(b)
	defer d.release()
	n := d.arrayLen()
	if d.err != nil {
		return nil, d.err
	}
	rs := make([]wireRange, n) // checkMsgpack bounds n by len(b)
	for i := range rs {
		fn := d.arrayLen()
		if d.err == nil && fn < 3 {
			return nil, fmt.Errorf("range %d has %d fields, want 3", i, fn)
		}
		rs[i] = wireRange{Key: d.str(), Off: d.int(), Len: d.int()}
		d.skipN(fn - 3)
	}
	return rs, d.err
}

// wireWriter writes msgpack values, remembering the first error.
type wireWriter struct {
	e   *msgpack.Encoder
	err error
}

func (w *wireWriter) arrayLen(n int) {
	if w.err == nil {
		w.err = w.e.EncodeArrayLen(n)
	}
}

func (w *wireWriter) int(v int64) {
	if w.err == nil {
		w.err = w.e.EncodeInt(v)
	}
}

func (w *wireWriter) uint(v uint64) {
	if w.err == nil {
		w.err = w.e.EncodeUint(v)
	}
}

func (w *wireWriter) bool(v bool) {
	if w.err == nil {
		w.err = w.e.EncodeBool(v)
	}
}

func (w *wireWriter) str(s string) {
	if w.err == nil {
		w.err = w.e.EncodeString(s)
	}
}

func (w *wireWriter) bytes(b []byte) {
	if w.err == nil {
		w.err = w.e.EncodeBytes(b)
	}
}

func (w *wireWriter) errv(e *wireError) {
	if e == nil {
		if w.err == nil {
			w.err = w.e.EncodeNil()
		}
		return
	}
	w.arrayLen(5)
	w.str(e.Code)
	w.str(e.Type)
	w.str(e.Message)
	w.str(e.Stack)
	w.bool(e.Retryable)
}

// wireReader reads msgpack values from a buffer already checked by
// checkMsgpack, remembering the first error (a type mismatch).
type wireReader struct {
	r   bytes.Reader
	d   *msgpack.Decoder
	err error
}

var readerPool = sync.Pool{New: func() any {
	return &wireReader{d: msgpack.NewDecoder(nil)}
}}

func newWireReader(b []byte) *wireReader {
	w := readerPool.Get().(*wireReader)
	w.r.Reset(b)
	w.d.Reset(&w.r)
	w.err = nil
	return w
}

func (w *wireReader) release() {
	w.r.Reset(nil)
	w.d.Reset(nil)
	readerPool.Put(w)
}

func (w *wireReader) fail(err error) {
	if w.err == nil && err != nil {
		w.err = fmt.Errorf("at offset %d: %w", w.r.Size()-int64(w.r.Len()), err)
	}
}

func (w *wireReader) arrayLen() int {
	if w.err != nil {
		return 0
	}
	n, err := w.d.DecodeArrayLen()
	w.fail(err)
	if n < 0 { // nil array
		return 0
	}
	return n
}

func (w *wireReader) int() int64 {
	if w.err != nil {
		return 0
	}
	v, err := w.d.DecodeInt64()
	w.fail(err)
	return v
}

func (w *wireReader) uint() uint64 {
	if w.err != nil {
		return 0
	}
	v, err := w.d.DecodeUint64()
	w.fail(err)
	return v
}

func (w *wireReader) bool() bool {
	if w.err != nil {
		return false
	}
	v, err := w.d.DecodeBool()
	w.fail(err)
	return v
}

func (w *wireReader) str() string {
	if w.err != nil {
		return ""
	}
	v, err := w.d.DecodeString()
	w.fail(err)
	return v
}

func (w *wireReader) bytes() []byte {
	if w.err != nil {
		return nil
	}
	v, err := w.d.DecodeBytes()
	w.fail(err)
	return v
}

func (w *wireReader) skipN(n int) {
	for ; n > 0 && w.err == nil; n-- {
		w.fail(w.d.Skip())
	}
}

func (w *wireReader) errv() *wireError {
	if w.err != nil {
		return nil
	}
	c, err := w.d.PeekCode()
	if err != nil {
		w.fail(err)
		return nil
	}
	if c == 0xc0 {
		w.fail(w.d.DecodeNil())
		return nil
	}
	n := w.arrayLen()
	if w.err == nil && n < 5 {
		w.fail(fmt.Errorf("error has %d fields, want 5", n))
		return nil
	}
	e := &wireError{Code: w.str(), Type: w.str(), Message: w.str(), Stack: w.str(), Retryable: w.bool()}
	w.skipN(n - 5)
	return e
}
