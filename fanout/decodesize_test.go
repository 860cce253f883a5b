package fanout

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/storage/memstore"
	"github.com/vmihailenco/msgpack/v5"
)

// Tile is the type of the issue: 32 KiB of nils as a []Tile asked for
// 384 MiB.
type Tile struct{ Pix [4096]byte }

// Types the decoded-size tests and the fuzz target decode into.
type (
	manyFields struct {
		A, B, C   int
		S         string
		L         []int16
		M         map[string][]byte
		Any       any
		Tiles     []*Tile
		Inner     *manyFields
		T         time.Time
		Alias     []float64  `msgpack:"alias,alias:al"`
		Skipped   [64]int64  `msgpack:"-"`
		*Embedded            // inlined: its fields are promoted, allocated on first use
		Big       [300]int64 // 2400 bytes: a nil for the struct allocates a zero copy
	}
	Embedded struct {
		E1 []string
		E2 [16]uint64
	}
	bigStruct struct {
		Words [2000]uint32
	}
	selfDecoder struct{ b []byte }
)

func (s selfDecoder) MarshalBinary() ([]byte, error) { return s.b, nil }
func (s *selfDecoder) UnmarshalBinary(b []byte) error {
	s.b = append([]byte(nil), b...)
	return nil
}

// header encodings.
func arr32(n int) []byte { return binary.BigEndian.AppendUint32([]byte{0xdd}, uint32(n)) }
func map32(n int) []byte { return binary.BigEndian.AppendUint32([]byte{0xdf}, uint32(n)) }

// allocated returns the bytes the heap handed out while f ran.
func allocated(f func()) int64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return int64(after.TotalAlloc - before.TotalAlloc)
}

// hostile are the bad inputs of issue 11: each decodes to hundreds or
// thousands of times its size without the bound.
var hostile = []struct {
	name    string
	target  func() any // a pointer to the type
	typ     string
	payload []byte
}{
	{"nil tiles", func() any { return new([]Tile) }, "[]fanout.Tile",
		append(arr32(32768), bytes.Repeat([]byte{0xc0}, 32768)...)},
	{"nested empty elements", func() any { return new([]Tile) }, "[]fanout.Tile",
		append(arr32(20000), bytes.Repeat([]byte{0x90}, 20000)...)}, // [] for a struct: a zero copy
	{"nested empty slices", func() any { return new([][][]int) }, "[][][]int",
		append(arr32(10000), bytes.Repeat([]byte{0x91, 0x90}, 10000)...)},
	{"map of arrays", func() any { return new(map[int32][4096]byte) }, "map[int32][4096]uint8",
		append(map32(10000), bytes.Repeat([]byte{0x00, 0xc0}, 10000)...)},
	{"map of tiles", func() any { return new(map[string]Tile) }, "map[string]fanout.Tile",
		append(map32(10000), bytes.Repeat([]byte{0xa0, 0x80}, 10000)...)},
	{"pointers to arrays", func() any { return new([]*[4096]byte) }, "[]*[4096]uint8",
		append(arr32(10000), bytes.Repeat([]byte{0xc4, 0x00}, 10000)...)},
	{"pointer to pointers to arrays", func() any { return new(*[]**[512]int64) }, "*[]**[512]int64",
		append(arr32(10000), bytes.Repeat([]byte{0x90}, 10000)...)},
	{"interface values", func() any { return new([]any) }, "[]interface {}",
		append(arr32(20000), bytes.Repeat([]byte{0x80}, 20000)...)},
	{"struct fields", func() any { return new([]manyFields) }, "[]fanout.manyFields",
		append(arr32(5000), bytes.Repeat([]byte{0xc0}, 5000)...)},
	{"embedded pointer", func() any { return new([]manyFields) }, "[]fanout.manyFields",
		append(arr32(3000), bytes.Repeat([]byte{0x81, 0xa2, 'E', '1', 0xc0}, 3000)...)},
}

// TestDecodeBoundRefusesHostile: every bad input is refused before
// decoding, with an error naming the type, and the attempt allocates a
// small multiple of the payload, not what it asked for.
func TestDecodeBoundRefusesHostile(t *testing.T) {
	for _, c := range hostile {
		t.Run(c.name, func(t *testing.T) {
			// Allocating the target and building the plan are not the
			// payload's: do them first.
			planFor(reflect.TypeOf(c.target()).Elem())
			v := c.target()
			var err error
			got := allocated(func() { err = decodeBounded(c.payload, v, "input", nil) })
			if !errors.Is(err, ErrDecodeLimit) {
				t.Fatalf("decode = %v, want ErrDecodeLimit", err)
			}
			want := fmt.Sprintf("input of %d bytes would decode to about ", len(c.payload))
			if msg := err.Error(); !strings.HasPrefix(msg, want) || !strings.Contains(msg, " as "+c.typ+" (limit 16 x the payload): refused") {
				t.Errorf("error %q, want %q... as %s (limit 16 x the payload): refused", msg, want, c.typ)
			}
			if limit := int64(20 * len(c.payload)); got > limit {
				t.Errorf("the refused decode allocated %d bytes, more than 20 x the %d-byte payload", got, len(c.payload))
			}
			var se *decodeSizeError
			if !errors.As(err, &se) || se.cost <= decodeLimit(len(c.payload)) {
				t.Errorf("error %#v does not carry a cost over the limit %d", err, decodeLimit(len(c.payload)))
			}
		})
	}
}

// TestDecodeBoundNamesTask: on the worker, a refused input fails its task
// (not the batch), with ErrDecodeLimit and a message naming the task and
// the type; the other tasks of the batch run.
func TestDecodeBoundNamesTask(t *testing.T) {
	var reg Registry
	var ran atomic.Int32
	tiles := RegisterTo(&reg, "tiles", func(_ context.Context, ts []Tile) (int, error) { ran.Add(1); return len(ts), nil })
	good, _ := msgpack.Marshal([]Tile{{}, {}})
	tooLong := arr32(1 << 30) // declares a billion tiles, holds none
	for _, c := range append(hostile[:1:1], struct {
		name    string
		target  func() any
		typ     string
		payload []byte
	}{"declared length past the bytes", nil, "[]fanout.Tile", tooLong}) {
		t.Run(c.name, func(t *testing.T) {
			ran.Store(0)
			req := &wireRequest{Job: "j", Func: tiles.Name(), Digest: tiles.fn.digest, Tasks: []wireTask{
				{Index: 6, Input: good}, {Index: 7, Input: c.payload}, {Index: 8, Input: good}}}
			var buf bytes.Buffer
			if err := encodeRequest(&buf, req); err != nil {
				t.Fatal(err)
			}
			r, err := decodeReply(reg.Handle(context.Background(), buf.Bytes()))
			if err != nil || r.Err != nil || len(r.Results) != 3 {
				t.Fatalf("reply %+v, %v: want three results", r, err)
			}
			if ran.Load() != 2 || r.Results[0].Err != nil || r.Results[2].Err != nil {
				t.Errorf("the good tasks: ran %d, errors %v %v", ran.Load(), r.Results[0].Err, r.Results[2].Err)
			}
			we := r.Results[1].Err
			if we == nil {
				t.Fatal("task 7 succeeded")
			}
			te := remoteError(7, 1, we)
			msg := te.Error()
			if !strings.HasPrefix(msg, "task 7: ") || !strings.Contains(msg, c.typ) {
				t.Errorf("error %q does not name task 7 and %s", msg, c.typ)
			}
			if c.target != nil && (!errors.Is(te, ErrDecodeLimit) || !strings.Contains(msg, "input of 32773 bytes would decode to about")) {
				t.Errorf("error %q (%v): want ErrDecodeLimit and the sizes", msg, te.Err)
			}
		})
	}
}

// replyBackend answers every invocation with the reply its function makes
// of the request: a worker that returns whatever the test wants.
type replyBackend struct {
	reply func(*wireRequest) *wireReply
}

func (b *replyBackend) Invoke(_ context.Context, payload []byte) ([]byte, error) {
	req, err := decodeRequest(payload)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = encodeReply(&buf, b.reply(req))
	return buf.Bytes(), err
}

func (b *replyBackend) Limits() backends.Limits {
	return backends.Limits{MaxRequestBytes: 6 << 20, MaxResponseBytes: 6 << 20, Concurrency: 2, Parallel: 1, InProcess: true, SameHost: true}
}

func (b *replyBackend) Close() error { return nil }

// TestDecodeBoundDriver: a hostile worker's outputs, inline or in the
// store, fail their tasks on the driver with ErrDecodeLimit instead of
// exhausting its memory.
func TestDecodeBoundDriver(t *testing.T) {
	var reg Registry
	f := RegisterTo(&reg, "driver.tiles", func(_ context.Context, n int) ([]Tile, error) { return make([]Tile, n), nil })
	hostileOut := hostile[0].payload
	good, _ := msgpack.Marshal([]Tile{{}})
	st := memstore.New(nil)
	if err := st.Put(context.Background(), "hostile", hostileOut); err != nil {
		t.Fatal(err)
	}
	b := &replyBackend{reply: func(req *wireRequest) *wireReply {
		r := &wireReply{Worker: "w"}
		for _, tk := range req.Tasks {
			res := wireResult{Index: tk.Index, Attempt: tk.Attempt}
			switch tk.Index {
			case 1:
				res.Output = hostileOut
			case 2:
				res.Key, res.Len = "hostile", int64(len(hostileOut))
			default:
				res.Output = good
			}
			r.Results = append(r.Results, res)
		}
		return r
	}}
	ex := NewExecutor(b, &Options{Store: st, BatchSize: 1, KeepData: true})
	defer ex.Close()
	var out [][]Tile
	var err error
	got := allocated(func() { out, err = Map(context.Background(), ex, f, []int{1, 1, 1, 1}) })
	if !errors.Is(err, ErrDecodeLimit) {
		t.Fatalf("Map = %v, want ErrDecodeLimit", err)
	}
	var je *JobError
	if !errors.As(err, &je) || len(je.Failed) != 2 || !slices.Equal(FailedTasks(err), []int{1, 2}) {
		t.Fatalf("Map = %v, want tasks 1 and 2 failed", err)
	}
	for k, i := range []int{1, 2} {
		want := fmt.Sprintf("task %d: output of %d bytes would decode to about", i, len(hostileOut))
		if msg := je.Failed[k].Error(); !strings.Contains(msg, want) || !strings.Contains(msg, "as []fanout.Tile (limit 16 x the payload)") {
			t.Errorf("error %q: want %q ... as []fanout.Tile", msg, want)
		}
	}
	if len(out) != 4 || len(out[0]) != 1 || len(out[3]) != 1 || out[1] != nil || out[2] != nil {
		t.Errorf("outputs %d, want the good ones", len(out))
	}
	// Two refused outputs that asked for 384 MiB each: the whole job,
	// executor and all, stays far below one of them.
	if got > 64<<20 {
		t.Errorf("the job allocated %d MiB", got>>20)
	}
}

// TestDecodeBoundAcceptsLegit: values the msgpack encoder makes, of the
// shapes programs send, decode as before; and the model is an upper bound
// of what the decode allocates.
func TestDecodeBoundAcceptsLegit(t *testing.T) {
	small := make([]int, 100_000)
	for i := range small {
		small[i] = i % 100
	}
	words := map[string]int{}
	for i := range 20_000 {
		words["w"+strconv.Itoa(i)] = i % 50
	}
	now := time.Unix(1_700_000_000, 5).UTC()
	nested := make([][]int32, 2000)
	for i := range nested {
		nested[i] = []int32{int32(i), 1, 2}
	}
	for _, v := range []any{
		small,
		words,
		nested,
		[]string{"a", "bb", strings.Repeat("c", 100_000), ""},
		map[string]string{"k": "v", "long": strings.Repeat("x", 5000)},
		make([]Tile, 64),
		[]*Tile{{}, nil, {}},
		&manyFields{A: 1, S: "s", L: []int16{1, 2}, M: map[string][]byte{"a": {1}}, Any: []any{1, "x", 2.5, map[string]any{"y": nil}},
			Tiles: []*Tile{{}}, Inner: &manyFields{B: 2, Embedded: &Embedded{}}, T: now, Alias: []float64{1.5}, Embedded: &Embedded{E1: []string{"e"}}},
		[]any{1, int64(1 << 40), "str", []byte("bin"), nil, true, 1.5, now, []any{}, map[string]any{}},
		map[string]any{"a": 1, "b": []any{"c"}},
		[]time.Time{now, now.Add(time.Hour)},
		[]selfDecoder{{b: []byte("abc")}, {b: nil}},
		bigStruct{},
		map[int32][4096]byte{1: {}, 2: {}},
		strings.Repeat("z", 3<<20),
	} {
		t.Run(fmt.Sprintf("%T", v), func(t *testing.T) {
			b, err := msgpack.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			typ := reflect.TypeOf(v)
			p := planFor(typ)
			// Warm msgpack's caches for the type (not the payload's cost).
			if err := decodeBounded(b, reflect.New(typ).Interface(), "", nil); err != nil {
				t.Fatalf("decode: %v", err)
			}
			dst := reflect.New(typ)
			got := allocated(func() { err = decodeBounded(b, dst.Interface(), "", nil) })
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			// The same value as msgpack's own decoder makes. (Not
			// msgpack.Unmarshal: it leaves a goroutine per pointer type
			// behind, see valueDecoder.)
			want := reflect.New(typ)
			if err := msgpack.NewDecoder(bytes.NewReader(b)).Decode(want.Interface()); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(dst.Elem().Interface(), want.Elem().Interface()) {
				t.Errorf("decoded %v, msgpack %v", dst.Elem(), want.Elem())
			}
			cost, err := p.cost(b)
			if err != nil {
				t.Fatal(err)
			}
			if got > cost+noise() {
				t.Errorf("%d-byte payload: the model says %d bytes, the decode allocated %d", len(b), cost, got)
			}
			t.Logf("%d bytes: model %d (%.1f x), allocated %d (%.1f x)", len(b), cost, float64(cost)/float64(len(b)), got, float64(got)/float64(len(b)))
		})
	}
}

// decodeMachinery is what a decode may allocate besides the model's count
// when the pool of decoders is empty: a decoder and its reader.
const decodeMachinery = 512

// noise is the allowance for allocations of other goroutines between the
// two readings of the allocator's counts: none in a fuzz worker, which runs
// nothing else; some in a test binary, where earlier tests may leave
// goroutines behind.
func noise() int64 {
	if fuzzWorker() {
		return decodeMachinery
	}
	return decodeMachinery + 64<<10
}

func fuzzWorker() bool {
	f := flag.Lookup("test.fuzzworker")
	return f != nil && f.Value.String() == "true"
}

// FuzzDecodedSize decodes arbitrary bytes into typed targets (fixed-size
// arrays, nested slices, maps of arrays, pointers to arrays, structs with
// many fields, interface values) and checks with the allocator's own
// counts that an accepted payload allocates no more than the model says,
// and so no more than decodeLimit. With GOWREN_DECODE_RATIO set to a file,
// each fuzz worker appends the worst ratio it has seen to it.
func FuzzDecodedSize(f *testing.F) {
	targets := []func() any{
		func() any { return new([]Tile) },
		func() any { return new([][]int32) },
		func() any { return new(map[int32][4096]byte) },
		func() any { return new(map[string][]int64) },
		func() any { return new([]*[256]byte) },
		func() any { return new(*[512]int64) },
		func() any { return new([]manyFields) },
		func() any { return new([]any) },
		func() any { return new(map[string]any) },
		func() any { return new([]string) },
		func() any { return new(map[string]string) },
		func() any { return new([][4]bigStruct) },
		func() any { return new([]selfDecoder) },
		func() any { return new(map[Tile]*Tile) },
		func() any { return new(any) },
	}
	smallInts := make([][]int32, 300)
	for i := range smallInts {
		smallInts[i] = []int32{1, 2, 3, 4, 5, 6, 7, 8}
	}
	manyAny := make([]any, 3000)
	for i := range manyAny {
		manyAny[i] = i % 100
	}
	samples := []any{
		[]Tile{{}}, smallInts, map[int32][4096]byte{7: {}}, map[string][]int64{"a": {1, 1 << 40}},
		[]*[256]byte{{}, nil}, &[512]int64{}, []manyFields{{A: 1, Embedded: &Embedded{E1: []string{"x"}}, Any: map[string]any{"x": []any{1}}}},
		manyAny, map[string]any{"k": []any{1.5}}, []string{"a", "bcd"},
		map[string]string{"a": "b"}, [][4]bigStruct{{}}, []selfDecoder{{b: []byte("x")}}, map[Tile]*Tile{{}: {}},
		time.Unix(1, 0),
	}
	for i, s := range samples {
		b, err := msgpack.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		// Warm the caches msgpack fills on the first use of each type.
		if err := decodeBounded(b, targets[i](), "", nil); err != nil {
			f.Fatalf("sample %T: %v", s, err)
		}
		f.Add(append([]byte{byte(i)}, b...))
	}
	for _, c := range hostile {
		f.Add(append([]byte{0}, c.payload[:min(len(c.payload), 4096)]...))
	}
	more, _ := msgpack.Marshal([]any{1, "a", nil, []any{map[string]any{}}})
	f.Add(append([]byte{7}, more...))
	// msgpack keeps the values of embedded *struct fields stocked by a
	// goroutine of its own, which replaces a value taken by one decode while
	// the next one is measured. In a fuzz worker, which runs nothing else,
	// one P and a yield before each measurement let it finish first.
	if fuzzWorker() {
		runtime.GOMAXPROCS(1)
	}
	var worst [2]float64 // the fuzz function runs one input at a time
	ratioLog := os.Getenv("GOWREN_DECODE_RATIO")
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		target := targets[int(data[0])%len(targets)]
		b := data[1:]
		v := target()
		p := planFor(reflect.TypeOf(v).Elem())
		var err error
		runtime.Gosched()
		got := allocated(func() { err = decodeBounded(b, v, "", nil) })
		if errors.Is(err, ErrDecodeLimit) {
			if got > 20*int64(len(b))+noise() {
				t.Fatalf("refusing %d bytes as %v allocated %d", len(b), p.t, got)
			}
			return
		}
		cost, cerr := p.cost(b)
		if err != nil {
			// Failed part way: what it allocated until then is in the
			// model too (plus the error's message).
			if cerr == nil && got > cost+decodeMachinery+noise() {
				t.Fatalf("%d bytes as %v failed (%v) after allocating %d, the model says %d", len(b), p.t, err, got, cost)
			}
			return
		}
		if cerr != nil {
			t.Fatalf("decoded what the model cannot walk: %v", cerr)
		}
		if got > cost+noise() {
			t.Fatalf("%d bytes as %v: the model says %d bytes, the decode allocated %d", len(b), p.t, cost, got)
		}
		if got > decodeLimit(len(b))+noise() {
			t.Fatalf("%d bytes as %v allocated %d, over the limit %d", len(b), p.t, got, decodeLimit(len(b)))
		}
		// The ratio to the limit's own measure, 16 x (len + 4 KiB), and
		// the plain ratio for payloads of 1 KiB and more.
		bound := float64(got) / float64(len(b)+decodeSlack/decodeFactor)
		plain := 0.0
		if len(b) >= 1<<10 {
			plain = float64(got) / float64(len(b))
		}
		if ratioLog != "" && (bound > worst[0] || plain > worst[1]) {
			worst[0], worst[1] = max(worst[0], bound), max(worst[1], plain)
			if fh, err := os.OpenFile(ratioLog, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				fmt.Fprintf(fh, "bound %.3f plain %.3f: %d bytes as %v allocated %d\n", bound, plain, len(b), p.t, got)
				fh.Close()
			}
		}
	})
}
