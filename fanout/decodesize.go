package fanout

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Decoding bounded by the payload.
//
// checkMsgpack bounds every count by the bytes behind it, but not what the
// decoder makes of a count: msgpack/v5 sizes a slice by its declared length
// times the element size (and allocates it twice, a MakeSlice appended to a
// nil slice), a nil for a struct larger than 1 KiB allocates a zero copy of
// it (reflect.Zero), every map entry and pointer allocates its element, and
// so on. 32 KiB of nils for a []T with a 4 KiB T asked for 384 MiB.
//
// So every user value (task inputs on the worker; outputs and MapReduce
// results on the driver, from replies or the store) is decoded through a
// costPlan built once per Go type: a model of what msgpack/v5 v5.4.1
// allocates for each kind of value, walked together with the bytes before
// anything is decoded. The walk
// adds up the bytes the decode would allocate (rounded up to the Go
// allocator's size classes, garbage included: what matters is how much the
// process must find, not what it keeps) and refuses the payload when the sum
// exceeds decodeLimit(len). Types whose decode cannot allocate more than a
// few times the payload (numbers, strings, byte slices, structs of those) skip
// the walk. See docs/design.md ("Decoded size") for the model and its limits.

const (
	// decodeFactor and decodeSlack make the limit: a value of n encoded
	// bytes may allocate decodeFactor*n + decodeSlack bytes while decoding.
	// The slack covers the rounding of large allocations to whole pages
	// (a []int of one-byte numbers takes 16 x its payload plus that) and
	// lets small values of big types through; a reply's outputs share one
	// slack.
	decodeFactor = 16
	decodeSlack  = 64 << 10

	// opaqueFactor and opaqueBase bound what a type that decodes itself
	// (msgpack.CustomDecoder, msgpack.Unmarshaler, encoding.BinaryUnmarshaler,
	// encoding.TextUnmarshaler) allocates: the library's copy of its bytes
	// plus whatever its own code makes of them, trusted to stay within a few
	// times its encoded size. The same charge covers a value whose msgpack
	// type does not match the Go type (an error for the library, unless the
	// program registered a decoder with msgpack.Register).
	opaqueFactor = 8
	opaqueBase   = 96

	// zeroValSize: reflect.Zero allocates a zero copy of types larger than
	// this (abi.ZeroValSize), which msgpack does for a nil struct.
	zeroValSize = 1024
	// mapSlotMax: map keys and elements larger than this are stored out of
	// line, one allocation each.
	mapSlotMax = 128
	// msgpackAllocCap: msgpack caps map size hints and the capacity of a
	// []string at this many elements, growing past it by appending.
	msgpackAllocCap = 1_000_000
)

// decodeLimit is the most a value of n encoded bytes may allocate when
// decoded.
func decodeLimit(n int) int64 { return decodeFactor*int64(n) + decodeSlack }

// decodeSizeError is a value refused for what it would decode to; it
// wraps ErrDecodeLimit.
type decodeSizeError struct {
	what string // "input", "output"
	n    int    // encoded bytes
	cost int64  // what the decode would allocate, at least
	typ  reflect.Type
}

func (e *decodeSizeError) Error() string {
	what := e.what
	if what == "" {
		what = "value"
	}
	return fmt.Sprintf("%s of %d bytes would decode to about %s as %v (limit %d x the payload): refused",
		what, e.n, byteSize(e.cost), e.typ, decodeFactor)
}

func (e *decodeSizeError) Unwrap() error { return ErrDecodeLimit }

// byteSize formats n bytes for a message: "384 MiB", "12 KiB", "700 bytes".
func byteSize(n int64) string {
	switch {
	case n >= 10<<30:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 10<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 10<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// costKind says how msgpack decodes a Go type, as far as allocation goes.
type costKind uint8

const (
	costFree      costKind = iota // numbers, bools, [N]byte, kinds msgpack refuses
	costString                    // string
	costBytes                     // []byte
	costArray                     // [N]T, T not byte
	costSlice                     // []T
	costStrings                   // []string: msgpack's own path, no double allocation
	costMap                       // map[K]V
	costStringMap                 // map[string]string: msgpack's own path
	costAnyMap                    // map[string]any: msgpack's DecodeMap
	costPointer                   // *T
	costStruct                    // struct, decoded field by field
	costAny                       // interface types: whatever DecodeInterface makes
	costTime                      // time.Time: msgpack's time extension
	costOpaque                    // decodes itself: see opaqueFactor
)

// costNode is the allocation model of one Go type.
type costNode struct {
	kind costKind
	t    reflect.Type
	// zero is what a nil allocates for a struct (reflect.Zero).
	zero int64
	// elem is the element (slices, arrays, pointers, maps), key the map key.
	elem, key *costNode
	// n: elements of an array; elemSize: bytes per slice element.
	n        int
	elemSize int64
	elemPtrs bool
	// newElem: a pointer's (or a nilable opaque type's) pointee allocation.
	newElem int64
	// Maps: bytes per slot, and the allocations of one entry (msgpack's
	// reflect.New of the key and of the value, plus out-of-line copies).
	slot, perEntry int64
	// Structs: fields by every name msgpack accepts, and in order (for
	// the array form).
	fields map[string]*costField
	list   []*costField
	words  int // uint64 words of a bit set over the fields
	hops   int // embedded pointers on the way to promoted fields
	// nonEmpty: an interface type with methods (errors.New for an error).
	nonEmpty bool
	// safe: decoding this type allocates at most a few times its encoded
	// size whatever the bytes, so the walk is skipped.
	safe bool
}

// costField is a struct field as msgpack's decoder finds it.
type costField struct {
	name string
	node *costNode
	id   int      // fields sharing storage (aliases) share an id
	over []uint64 // bit set of the ids whose storage overlaps this one's
	hops []costHop
}

// costHop is an embedded pointer on the way to a promoted field: msgpack
// allocates its struct the first time one of its fields is decoded.
type costHop struct {
	id   int
	cost int64
}

// costPlan is the model of a root type, built once.
type costPlan struct {
	t    reflect.Type
	root *costNode
}

var costPlans sync.Map // reflect.Type -> *costPlan

// planFor returns the plan of t, building it on first use.
func planFor(t reflect.Type) *costPlan {
	if p, ok := costPlans.Load(t); ok {
		return p.(*costPlan)
	}
	b := costBuilder{memo: map[reflect.Type]*costNode{}}
	p := &costPlan{t: t, root: b.node(t)}
	b.markSafe()
	actual, _ := costPlans.LoadOrStore(t, p)
	return actual.(*costPlan)
}

var (
	timeType       = reflect.TypeFor[time.Time]()
	stringType     = reflect.TypeFor[string]()
	emptyIfaceType = reflect.TypeFor[any]()
	selfDecoding   = []reflect.Type{
		reflect.TypeFor[msgpack.CustomDecoder](),
		reflect.TypeFor[msgpack.Unmarshaler](),
		reflect.TypeFor[encoding.BinaryUnmarshaler](),
		reflect.TypeFor[encoding.TextUnmarshaler](),
	}
)

func decodesItself(t reflect.Type) bool {
	for _, i := range selfDecoding {
		if t.Implements(i) || (t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(i)) {
			return true
		}
	}
	return false
}

type costBuilder struct {
	memo  map[reflect.Type]*costNode
	nodes []*costNode
}

func (b *costBuilder) node(t reflect.Type) *costNode {
	if n, ok := b.memo[t]; ok {
		return n
	}
	n := &costNode{t: t}
	b.memo[t] = n
	b.nodes = append(b.nodes, n)
	switch {
	case t == timeType:
		n.kind = costTime
		return n
	case t.Kind() != reflect.Pointer && decodesItself(t):
		n.kind = costOpaque
		if t.Kind() == reflect.Struct || t.Kind() == reflect.Array {
			n.zero = zeroCost(t)
		}
		switch t.Kind() {
		case reflect.Map, reflect.Slice, reflect.Chan, reflect.Interface:
			n.newElem = allocFor(t.Elem(), int64(t.Elem().Size()))
		}
		return n
	}
	switch t.Kind() {
	case reflect.String:
		n.kind = costString
	case reflect.Slice:
		switch {
		case t.Elem().Kind() == reflect.Uint8:
			n.kind = costBytes
		case t.Elem() == stringType:
			n.kind = costStrings
			n.elem = b.node(t.Elem())
		default:
			n.kind = costSlice
			n.elemSize = int64(t.Elem().Size())
			n.elemPtrs = hasPointers(t.Elem())
			n.elem = b.node(t.Elem())
		}
	case reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			n.kind = costFree
			break
		}
		n.kind = costArray
		n.n = t.Len()
		n.elem = b.node(t.Elem())
	case reflect.Map:
		switch {
		case t.Key() == stringType && t.Elem() == stringType:
			n.kind = costStringMap
			n.slot = 32
		case t.Key() == stringType && t.Elem() == emptyIfaceType:
			n.kind = costAnyMap
			n.slot = 32
			n.elem = b.node(t.Elem())
		default:
			n.kind = costMap
			n.key = b.node(t.Key())
			n.elem = b.node(t.Elem())
			ks, vs := int64(t.Key().Size()), int64(t.Elem().Size())
			kc, vc := allocFor(t.Key(), ks), allocFor(t.Elem(), vs)
			n.perEntry = kc + vc
			if ks > mapSlotMax {
				n.perEntry += kc
				ks = 8
			}
			if vs > mapSlotMax {
				n.perEntry += vc
				vs = 8
			}
			n.slot = roundUp(ks, 8) + roundUp(vs, 8)
		}
	case reflect.Pointer:
		n.kind = costPointer
		n.newElem = allocFor(t.Elem(), int64(t.Elem().Size()))
		n.elem = b.node(t.Elem())
	case reflect.Interface:
		n.kind = costAny
		n.nonEmpty = t.NumMethod() > 0
	case reflect.Struct:
		n.kind = costStruct
		n.zero = zeroCost(t)
		b.structFields(n, t)
	default:
		n.kind = costFree
	}
	return n
}

func zeroCost(t reflect.Type) int64 {
	if t.Size() > zeroValSize {
		return allocFor(t, int64(t.Size()))
	}
	return 0
}

// markSafe finds the types whose decode stays within a few times its
// payload whatever the bytes: no slices but []byte, no maps, pointers,
// interfaces or self-decoding types, no struct big enough for reflect.Zero
// to allocate. It iterates to a fixed point because types may be recursive
// (through pointers, slices or maps, which are unsafe anyway).
func (b *costBuilder) markSafe() {
	for _, n := range b.nodes {
		switch n.kind {
		case costFree, costString, costBytes, costTime, costArray, costStruct:
			n.safe = n.zero == 0
		}
	}
	for changed := true; changed; {
		changed = false
		for _, n := range b.nodes {
			if !n.safe {
				continue
			}
			ok := true
			switch n.kind {
			case costArray:
				ok = n.elem.safe
			case costStruct:
				for _, f := range n.list {
					ok = ok && f.node.safe && len(f.hops) == 0
				}
				for _, f := range n.fields {
					ok = ok && f.node.safe && len(f.hops) == 0
				}
			}
			if !ok {
				n.safe = false
				changed = true
			}
		}
	}
}

// structFields mirrors msgpack's getFields (v5.4.1): which names decode into
// which fields, including the fields of embedded structs it inlines.
func (b *costBuilder) structFields(n *costNode, t reflect.Type) {
	type rawField struct {
		name  string
		index []int
		t     reflect.Type
		alias string
	}
	var collect func(t reflect.Type) (m map[string]*rawField, list []*rawField)
	collect = func(t reflect.Type) (map[string]*rawField, []*rawField) {
		m := map[string]*rawField{}
		var list []*rawField
		add := func(f *rawField) {
			m[f.name] = f
			list = append(list, f)
		}
		for i := range t.NumField() {
			sf := t.Field(i)
			name, opts := parseMsgpackTag(sf.Tag.Get("msgpack"))
			if name == "-" {
				continue
			}
			if !sf.IsExported() && !sf.Anonymous {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			f := &rawField{name: name, index: sf.Index, t: sf.Type}
			if _, ok := opts["intern"]; ok {
				f.t = nil // decoded by msgpack's interning code: opaque
			}
			if sf.Anonymous && !hasOpt(opts, "noinline") {
				inline := false
				if hasOpt(opts, "inline") && sf.Type.Kind() == reflect.Struct {
					_, inner := collect(sf.Type)
					for _, g := range inner {
						if _, dup := m[g.name]; dup {
							continue
						}
						add(&rawField{name: g.name, index: append(append([]int(nil), sf.Index...), g.index...), t: g.t, alias: g.alias})
					}
					inline = true
				} else if st := derefStruct(sf.Type); st != nil {
					_, inner := collect(st)
					inline = true
					for _, g := range inner {
						if _, dup := m[g.name]; dup {
							inline = false
							break
						}
					}
					if inline {
						for _, g := range inner {
							add(&rawField{name: g.name, index: append(append([]int(nil), sf.Index...), g.index...), t: g.t, alias: g.alias})
						}
					}
				}
				if inline {
					m[name] = f
					continue
				}
			}
			add(f)
			if a, ok := opts["alias"]; ok {
				f.alias = a
				m[a] = f
			}
		}
		return m, list
	}
	m, list := collect(t)
	// Give every distinct field an id and find which overlap: one index
	// path a prefix of the other (an embedded struct and its promoted
	// fields).
	ids := map[*rawField]int{}
	var distinct []*rawField
	for _, f := range list {
		if _, ok := ids[f]; !ok {
			ids[f] = len(distinct)
			distinct = append(distinct, f)
		}
	}
	for _, f := range m {
		if _, ok := ids[f]; !ok {
			ids[f] = len(distinct)
			distinct = append(distinct, f)
		}
	}
	words := (len(distinct) + 63) / 64
	hopIDs := map[string]int{}
	made := make([]*costField, len(distinct))
	for i, f := range distinct {
		cf := &costField{name: f.name, id: i, over: make([]uint64, words)}
		if f.t == nil {
			cf.node = &costNode{kind: costOpaque}
		} else {
			cf.node = b.node(f.t)
		}
		for j, g := range distinct {
			if isPrefix(f.index, g.index) || isPrefix(g.index, f.index) {
				cf.over[j/64] |= 1 << (j % 64)
			}
		}
		// Embedded pointers on the way: every prefix of the index that
		// ends at a pointer field (but the field itself).
		ft := t
		for k := 0; k < len(f.index)-1; k++ {
			sf := ft.Field(f.index[k])
			ft = sf.Type
			if ft.Kind() == reflect.Pointer {
				key := fmt.Sprint(f.index[:k+1])
				id, ok := hopIDs[key]
				if !ok {
					id = len(hopIDs)
					hopIDs[key] = id
				}
				cf.hops = append(cf.hops, costHop{id: id, cost: allocFor(ft.Elem(), int64(ft.Elem().Size()))})
				ft = ft.Elem()
			}
		}
		made[i] = cf
	}
	n.words, n.hops = words, len(hopIDs)
	n.fields = make(map[string]*costField, len(m))
	for name, f := range m {
		n.fields[name] = made[ids[f]]
	}
	for _, f := range list {
		n.list = append(n.list, made[ids[f]])
	}
}

// derefStruct returns the struct type t is or points to (through any
// number of pointers), when msgpack would inline it: a plain struct, not
// one that decodes itself.
func derefStruct(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == timeType || decodesItself(t) || encodesItself(t) {
		return nil
	}
	return t
}

func isPrefix(p, q []int) bool {
	if len(p) > len(q) {
		return false
	}
	for i := range p {
		if p[i] != q[i] {
			return false
		}
	}
	return true
}

// parseMsgpackTag splits a msgpack struct tag: "name,opt,opt:value".
func parseMsgpackTag(tag string) (string, map[string]string) {
	name, rest, _ := strings.Cut(tag, ",")
	var opts map[string]string
	for rest != "" {
		var o string
		o, rest, _ = strings.Cut(rest, ",")
		k, v, _ := strings.Cut(o, ":")
		if opts == nil {
			opts = map[string]string{}
		}
		opts[k] = strings.Trim(v, "'")
	}
	return strings.Trim(name, "'"), opts
}

func hasOpt(opts map[string]string, k string) bool {
	_, ok := opts[k]
	return ok
}

// Size classes of the Go allocator (internal/runtime/gc, unchanged since
// Go 1.21): an allocation of n bytes takes the smallest class that holds it;
// larger ones take whole 8 KiB pages.
var sizeClasses = [...]int64{16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
	288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792,
	2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240,
	10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768}

// allocFor is what allocating n bytes of values of type t costs: with the
// 8-byte header the allocator adds to objects over 512 bytes that hold
// pointers.
func allocFor(t reflect.Type, n int64) int64 {
	if n > 512 && hasPointers(t) {
		n += 8
	}
	return allocSize(n)
}

// hasPointers reports whether values of t hold pointers.
func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.String, reflect.Interface,
		reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	}
	return false
}

// allocSize is what an allocation of n bytes without pointers costs, at
// least 16 bytes (the tiny allocator's block).
func allocSize(n int64) int64 {
	if n <= 0 {
		return 0
	}
	if n <= 32768 {
		lo, hi := 0, len(sizeClasses)-1
		for lo < hi {
			mid := (lo + hi) / 2
			if sizeClasses[mid] < n {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		return sizeClasses[lo]
	}
	return roundUp(n, 8192)
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// bufRead is what msgpack's internal buffer may grow by to read n bytes
// (strings, struct keys, skipped values, extension data): a first read
// allocates at least 64 bytes (charged once per decode), a longer one grows
// it at most to twice its length, one past 1 MiB grows it 1 MiB at a time.
func bufRead(n int) int64 {
	switch {
	case n <= 64:
		return 0
	case n <= 1<<20:
		return allocSize(2 * int64(n))
	}
	return 8 * int64(n)
}

// mapCost is what msgpack's MakeMapWithSize(hint) allocates for a map
// with slots of slot bytes (Go's swiss tables: groups of 8 slots and 8
// control bytes, loaded to 7/8, tables of at most 1024 slots under a
// directory). A map of one table never grows while it takes at most hint
// keys. One of several tables splits (into two new ones) when more than
// 7/8 of its slots fill: the keys are spread by a hash seeded at random
// per map, so a table's load is binomial around hint/tables, and when six
// standard deviations above that may reach 7/8 the tables are counted
// twice.
func mapCost(hint int64, slot int64) int64 {
	const header = 48
	group := 8 + 8*slot
	if hint <= 8 {
		if hint == 0 {
			return allocSize(header)
		}
		return allocSize(header) + allocSize(group+8)
	}
	target := hint * 8 / 7
	dir := pow2((target + 1023) / 1024)
	capacity := max(pow2(target/dir), 8)
	tables := dir * (allocSize(48) + allocSize(capacity/8*group+8))
	if mean := float64(hint) / float64(dir); dir > 1 && mean+6*math.Sqrt(mean)+1 > float64(capacity*7/8) {
		tables *= 2
	}
	return allocSize(header) + allocSize(dir*8) + tables
}

func pow2(n int64) int64 {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len64(uint64(n-1))
}

// maxCost caps the sums: more than any machine has, far from overflowing.
const maxCost = 1 << 60

// cost returns what decoding b (already checked by checkMsgpack) as p's
// type would allocate, up to maxCost: a walk as long as b, whatever the
// types. It returns an error for bytes it cannot walk, which the decoder
// would refuse too.
func (p *costPlan) cost(b []byte) (int64, error) {
	w := costWalker{b: b, cost: 64}
	w.value(p.root, 0)
	// checkMsgpack's stack of open containers leaves its 16 places on
	// the stack for deeper nesting, doubling.
	for c := 16; c < w.deepest+2; {
		c *= 2
		w.add(allocSize(8 * int64(c)))
	}
	return w.cost, w.err
}

// costWalker walks msgpack bytes together with a type's costNode, adding
// up what msgpack's decoder would allocate. Every read is bounds-checked:
// the library reads extension data as a map in one place, so the walk does
// not rely on checkMsgpack's view of the structure.
type costWalker struct {
	b       []byte
	off     int
	cost    int64
	deepest int // containers open at once, at most
	err     error
}

func (w *costWalker) add(n int64) {
	w.cost = min(w.cost+min(n, maxCost), maxCost)
}

func (w *costWalker) fail(format string, args ...any) {
	if w.err == nil {
		w.err = fmt.Errorf("msgpack: "+format, args...)
	}
}

// Head classes.
const (
	hNil = iota
	hBool
	hInt   // fixint, int8-64, uint8-64
	hFloat // float32, float64
	hStr
	hBin
	hArray
	hMap
	hExt
	hBad
)

// head is a decoded msgpack header. For str, bin and ext, n is the data
// length and the data follows at w.off; for arrays and maps, n is the
// count of elements (entries for maps).
type head struct {
	c    byte
	cls  int
	n    int
	ext  int8 // extension type
	wide bool // an int or float taking more than one byte after the code
}

func (w *costWalker) uint(size int) int {
	if len(w.b)-w.off < size {
		w.fail("truncated at offset %d", w.off)
		w.off = len(w.b)
		return 0
	}
	var v uint64
	switch size {
	case 1:
		v = uint64(w.b[w.off])
	case 2:
		v = uint64(binary.BigEndian.Uint16(w.b[w.off:]))
	case 4:
		v = uint64(binary.BigEndian.Uint32(w.b[w.off:]))
	}
	w.off += size
	return int(v)
}

// next reads a header, checking that what it announces fits in the bytes
// left (data in full; at least one byte per element).
func (w *costWalker) next() head {
	if w.err != nil {
		return head{cls: hBad}
	}
	if w.off >= len(w.b) {
		w.fail("truncated at offset %d", w.off)
		return head{cls: hBad}
	}
	c := w.b[w.off]
	w.off++
	h := head{c: c}
	switch {
	case c <= 0x7f || c >= 0xe0:
		h.cls = hInt
	case c <= 0x8f:
		h.cls, h.n = hMap, int(c&0x0f)
	case c <= 0x9f:
		h.cls, h.n = hArray, int(c&0x0f)
	case c <= 0xbf:
		h.cls, h.n = hStr, int(c&0x1f)
	default:
		switch c {
		case 0xc0:
			h.cls = hNil
		case 0xc2, 0xc3:
			h.cls = hBool
		case 0xc4, 0xc5, 0xc6:
			h.cls, h.n = hBin, w.uint(1<<(c-0xc4))
		case 0xd9, 0xda, 0xdb:
			h.cls, h.n = hStr, w.uint(1<<(c-0xd9))
		case 0xc7, 0xc8, 0xc9:
			h.cls, h.n = hExt, w.uint(1<<(c-0xc7))
			h.ext = int8(w.uint(1))
		case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
			h.cls, h.n = hExt, 1<<(c-0xd4)
			h.ext = int8(w.uint(1))
		case 0xca, 0xcb:
			h.cls, h.wide = hFloat, true
			w.skipBytes(4 << (c - 0xca))
		case 0xcc, 0xd0:
			h.cls = hInt
			w.skipBytes(1)
		case 0xcd, 0xd1:
			h.cls, h.wide = hInt, true
			w.skipBytes(2)
		case 0xce, 0xd2:
			h.cls, h.wide = hInt, true
			w.skipBytes(4)
		case 0xcf, 0xd3:
			h.cls, h.wide = hInt, true
			w.skipBytes(8)
		case 0xdc, 0xdd:
			h.cls, h.n = hArray, w.uint(2<<(c-0xdc))
		case 0xde, 0xdf:
			h.cls, h.n = hMap, w.uint(2<<(c-0xde))
		default:
			w.fail("reserved code 0x%x at offset %d", c, w.off-1)
			return head{cls: hBad}
		}
	}
	left := len(w.b) - w.off
	switch h.cls {
	case hStr, hBin, hExt:
		if h.n > left {
			w.fail("%d bytes announced at offset %d, %d left", h.n, w.off, left)
			h.cls = hBad
		}
	case hArray:
		if h.n > left {
			w.fail("%d values announced at offset %d, %d bytes left", h.n, w.off, left)
			h.cls = hBad
		}
	case hMap:
		if h.n > left/2 {
			w.fail("%d entries announced at offset %d, %d bytes left", h.n, w.off, left)
			h.cls = hBad
		}
	}
	if w.err != nil {
		h.cls = hBad
	}
	return h
}

func (w *costWalker) skipBytes(n int) {
	if len(w.b)-w.off < n {
		w.fail("truncated at offset %d", w.off)
		w.off = len(w.b)
		return
	}
	w.off += n
}

// rest skips what follows header h, as msgpack's Skip does: reading string,
// binary and extension data through its buffer.
func (w *costWalker) rest(h head, depth int) {
	switch h.cls {
	case hStr, hBin:
		w.add(bufRead(h.n))
		w.skipBytes(h.n)
	case hExt:
		w.add(bufRead(h.n + 1))
		w.skipBytes(h.n)
	case hArray:
		w.enter(depth)
		for i := 0; i < h.n && w.err == nil; i++ {
			w.rest(w.next(), depth+1)
		}
	case hMap:
		w.enter(depth)
		for i := 0; i < 2*h.n && w.err == nil; i++ {
			w.rest(w.next(), depth+1)
		}
	}
}

func (w *costWalker) enter(depth int) {
	w.deepest = max(w.deepest, depth+1)
	if depth >= maxMsgDepth {
		w.fail("nesting deeper than %d at offset %d", maxMsgDepth, w.off)
	}
}

// mismatch charges a value of a msgpack type the Go type does not take:
// msgpack fails there, unless a decoder registered for the type takes it,
// which is charged like a type that decodes itself.
func (w *costWalker) mismatch(h head, depth int) {
	start := w.off
	w.rest(h, depth)
	w.add(opaqueFactor*int64(w.off-start+1) + opaqueBase)
}

// str charges a string read into a Go string.
func (w *costWalker) str(h head) {
	w.add(bufRead(h.n))
	if h.n > 1 {
		w.add(allocSize(int64(h.n)))
	}
	w.skipBytes(h.n)
}

// value walks one value decoded into a value of n's type.
func (w *costWalker) value(n *costNode, depth int) {
	start := w.off
	h := w.next()
	if h.cls == hBad {
		return
	}
	switch n.kind {
	case costFree:
		switch {
		case h.cls == hNil, h.cls == hInt, h.cls == hFloat, h.cls == hBool:
		case n.t != nil && n.t.Kind() == reflect.Array && (h.cls == hStr || h.cls == hBin):
			w.skipBytes(h.n) // read straight into the array
		default:
			w.mismatch(h, depth)
		}
	case costString:
		switch h.cls {
		case hNil:
		case hStr, hBin:
			w.str(h)
		default:
			w.mismatch(h, depth)
		}
	case costBytes:
		switch h.cls {
		case hNil:
		case hStr, hBin:
			w.add(allocSize(int64(h.n)))
			w.skipBytes(h.n)
		default:
			w.mismatch(h, depth)
		}
	case costTime:
		switch h.cls {
		case hNil:
		case hExt:
			w.add(bufRead(h.n))
			w.skipBytes(h.n)
		default:
			w.mismatch(h, depth) // the legacy forms, a string to parse
		}
	case costOpaque:
		if h.cls == hNil {
			w.add(n.zero)
			return
		}
		w.rest(h, depth)
		w.add(n.newElem + opaqueFactor*int64(w.off-start) + opaqueBase)
	case costArray:
		switch {
		case h.cls == hNil:
		case h.cls == hArray && h.n <= n.n:
			w.enter(depth)
			for i := 0; i < h.n && w.err == nil; i++ {
				w.value(n.elem, depth+1)
			}
		case h.cls == hArray:
			w.rest(h, depth) // msgpack refuses it before decoding any
		default:
			w.mismatch(h, depth)
		}
	case costSlice:
		switch h.cls {
		case hNil:
		case hArray:
			w.enter(depth)
			if h.n == 0 {
				w.add(allocSize(24)) // MakeSlice's header
				return
			}
			// MakeSlice(n) appended to the nil slice: two arrays, and
			// three slice headers (MakeSlice's, AppendSlice's, the
			// Slice it copies into).
			arr := int64(maxCost)
			if n.elemSize == 0 || int64(h.n) < maxCost/n.elemSize {
				arr = int64(h.n) * n.elemSize
			}
			if arr > 512 && n.elemPtrs {
				arr += 8
			}
			w.add(3*allocSize(24) + 2*allocSize(arr))
			for i := 0; i < h.n && w.err == nil; i++ {
				w.value(n.elem, depth+1)
			}
		default:
			w.mismatch(h, depth)
		}
	case costStrings:
		switch h.cls {
		case hNil:
		case hArray:
			w.enter(depth)
			c := int64(min(h.n, msgpackAllocCap))
			w.add(allocFor(n.t, 16*c))
			if h.n > msgpackAllocCap {
				w.add(3 * allocFor(n.t, 16*int64(h.n)))
			}
			for i := 0; i < h.n && w.err == nil; i++ {
				w.value(n.elem, depth+1)
			}
		default:
			w.mismatch(h, depth)
		}
	case costMap, costStringMap, costAnyMap:
		w.mapValue(n, h, depth)
	case costPointer:
		if h.cls == hNil {
			return
		}
		w.off = start
		w.add(n.newElem)
		w.value(n.elem, depth)
	case costStruct:
		w.structValue(n, h, depth)
	case costAny:
		w.anyValue(h, depth)
		if n.nonEmpty {
			w.add(16) // errors.New for an error
		}
	}
}

func (w *costWalker) mapValue(n *costNode, h head, depth int) {
	if h.cls == hExt {
		// DecodeMapLen skips an extension header and reads the map from
		// its data.
		h = w.next()
	}
	switch h.cls {
	case hNil:
		return
	case hMap:
	default:
		w.mismatch(h, depth)
		return
	}
	w.enter(depth)
	hint := int64(h.n)
	if n.kind != costAnyMap {
		hint = min(hint, msgpackAllocCap)
	}
	w.add(mapCost(hint, n.slot))
	if int64(h.n) > hint {
		w.add(2 * mapCost(int64(h.n), n.slot)) // grows past the capped hint
	}
	for i := 0; i < h.n && w.err == nil; i++ {
		switch n.kind {
		case costMap:
			w.add(n.perEntry)
			w.value(n.key, depth+1)
			w.value(n.elem, depth+1)
		default:
			w.mapKey(depth + 1)
			if n.kind == costStringMap {
				w.mapKey(depth + 1)
			} else {
				w.anyValue(w.next(), depth+1)
			}
		}
	}
}

// mapKey walks a key decoded with DecodeString.
func (w *costWalker) mapKey(depth int) {
	h := w.next()
	switch h.cls {
	case hNil:
	case hStr, hBin:
		w.str(h)
	case hBad:
	default:
		w.mismatch(h, depth)
	}
}

func (w *costWalker) structValue(n *costNode, h head, depth int) {
	switch h.cls {
	case hNil:
		w.add(n.zero)
		return
	case hArray:
		w.enter(depth)
		if h.n == 0 {
			w.add(n.zero)
			return
		}
		if h.n != len(n.list) {
			w.rest(h, depth) // msgpack refuses it before decoding any
			return
		}
		for _, f := range n.list {
			if w.err != nil {
				return
			}
			w.value(f.node, depth+1)
		}
		return
	case hMap:
	default:
		w.mismatch(h, depth)
		return
	}
	w.enter(depth)
	// Fields decoded so far, and embedded pointers allocated so far.
	var seenBuf, hopsBuf [2]uint64
	seen, hops := seenBuf[:], hopsBuf[:]
	if n.words > len(seenBuf) {
		seen = make([]uint64, n.words)
	}
	if n.hops > 64*len(hopsBuf) {
		hops = make([]uint64, (n.hops+63)/64)
	}
	for i := 0; i < h.n && w.err == nil; i++ {
		k := w.next()
		var f *costField
		switch k.cls {
		case hNil:
		case hStr, hBin:
			w.add(bufRead(k.n))
			f = n.fields[string(w.b[w.off:w.off+k.n])]
			w.skipBytes(k.n)
		case hBad:
			return
		default:
			w.mismatch(k, depth+1) // msgpack fails on the key
		}
		if f == nil {
			w.rest(w.next(), depth+1)
			continue
		}
		for j, m := range f.over {
			if seen[j]&m != 0 {
				w.fail("field %q of %v given twice at offset %d", f.name, n.t, w.off)
				return
			}
		}
		seen[f.id/64] |= 1 << (f.id % 64)
		for _, hop := range f.hops {
			if hops[hop.id/64]&(1<<(hop.id%64)) == 0 {
				hops[hop.id/64] |= 1 << (hop.id % 64)
				w.add(hop.cost)
			}
		}
		w.value(f.node, depth+1)
	}
}

// anyValue walks a value decoded by DecodeInterface (into any, or as an
// element of one).
func (w *costWalker) anyValue(h head, depth int) {
	const boxed = 16 // a value boxed in an interface: at least a tiny block
	switch h.cls {
	case hNil, hBool, hBad:
	case hInt:
		if h.wide {
			w.add(boxed)
		}
	case hFloat:
		w.add(boxed)
	case hStr:
		w.str(h)
		if h.n > 0 {
			w.add(boxed)
		}
	case hBin:
		w.add(allocSize(int64(h.n)) + allocSize(24))
		w.skipBytes(h.n)
	case hArray:
		w.enter(depth)
		w.add(allocFor(emptyIfaceType, 16*int64(h.n)) + allocSize(24))
		for i := 0; i < h.n && w.err == nil; i++ {
			w.anyValue(w.next(), depth+1)
		}
	case hMap:
		w.enter(depth)
		w.add(mapCost(int64(h.n), 32))
		for i := 0; i < h.n && w.err == nil; i++ {
			w.mapKey(depth + 1)
			w.anyValue(w.next(), depth+1)
		}
	case hExt:
		w.add(bufRead(h.n))
		if h.ext == -1 { // time: a new time.Time, boxed
			w.add(2 * allocSize(24))
		} else {
			w.add(opaqueFactor*int64(h.n+2) + opaqueBase)
		}
		w.skipBytes(h.n)
	}
}

// valueDecoder is a pooled msgpack decoder over a byte slice. msgpack's
// Unmarshal turns on UsePreallocateValues, which starts a goroutine per
// pointer type that keeps 256 values of it allocated ahead, for good: a
// cost that is not the payload's, so values are decoded without it. (msgpack
// does it anyway for embedded *struct fields, one goroutine per such type.)
type valueDecoder struct {
	r bytes.Reader
	d *msgpack.Decoder
}

var valueDecoders = sync.Pool{New: func() any {
	return &valueDecoder{d: msgpack.NewDecoder(nil)}
}}

// decodeValue decodes b into v, a pointer, after checking b's structure
// (checkMsgpack) and, for v's type, what the decode would allocate.
func decodeValue(b []byte, v any) error {
	return decodeBounded(b, v, "", nil)
}

// decodeBounded is decodeValue naming what b is ("input", "output") in a
// size error. slack, when not nil, is the slack left to share between the
// values of one reply: a value allocating more than decodeFactor times its
// size draws on it.
func decodeBounded(b []byte, v any, what string, slack *int64) error {
	return decodeWith(b, v, what, slack, true)
}

// decodeVerified decodes bytes whose hash was checked against one the
// driver made when it encoded them (a Ref's value): they decode to about
// what the driver's value took, so only their structure is checked. A
// shared lookup table of small numbers may well take more than the bound.
func decodeVerified(b []byte, v any) error {
	return decodeWith(b, v, "", nil, false)
}

func decodeWith(b []byte, v any, what string, slack *int64, bounded bool) (err error) {
	if err := checkMsgpack(b); err != nil {
		return err
	}
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer {
		return fmt.Errorf("msgpack: decode into %T, not a pointer", v)
	}
	p := planFor(t.Elem())
	if bounded && !p.root.safe {
		s := int64(decodeSlack)
		if slack != nil {
			s = *slack
		}
		limit := decodeFactor*int64(len(b)) + s
		cost, err := p.cost(b)
		if err != nil {
			return err
		}
		if cost > limit {
			return &decodeSizeError{what: what, n: len(b), cost: cost, typ: p.t}
		}
		if slack != nil && cost > decodeFactor*int64(len(b)) {
			*slack -= cost - decodeFactor*int64(len(b))
		}
	}
	vd := valueDecoders.Get().(*valueDecoder)
	defer func() {
		// msgpack panics on a few mismatches (a nil for a time.Time, a
		// string for a fmt.Stringer): an error like any other.
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack: decode %v: %v", p.t, r)
		}
		vd.r.Reset(nil)
		vd.d.Reset(nil)
		valueDecoders.Put(vd)
	}()
	vd.r.Reset(b)
	vd.d.Reset(&vd.r)
	return vd.d.Decode(v)
}
