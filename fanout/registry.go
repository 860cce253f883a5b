package fanout

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Func is a function registered under a name. Pass it to Map, Start or
// MapReduce; only its name and signature digest travel to workers, which look
// the function up in their own registry. A Func is immutable and safe for
// concurrent use.
type Func[In, Out any] struct {
	fn *funcInfo
}

// Name returns the name the function was registered under.
func (f *Func[In, Out]) Name() string { return f.fn.name }

// funcInfo is the untyped part of a registered function.
type funcInfo struct {
	name      string
	signature string // "name(In) Out", for messages
	digest    string // hash of name and the structure of In and Out
	// run decodes the input, calls the function with panics recovered,
	// and encodes the output. It is called on the worker.
	run func(ctx context.Context, in []byte) ([]byte, *wireError)
}

// Registry maps names to functions. The zero value is an empty registry ready
// to use; it is safe for concurrent use. Most programs use the default
// registry through Register; a Registry value is for programs (and tests)
// that want functions of their own, served with (*Registry).Handle.
type Registry struct {
	mu    sync.RWMutex
	funcs map[string]*funcInfo
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{} }

var defaultRegistry = NewRegistry()

// Register adds fn to the default registry under name and returns the handle
// to pass to Map. Call it at package level (in a var declaration), so that a
// worker, which is the same binary, has every function registered before
// Init serves. It panics when name is empty, already registered, or fn is
// nil, and when In or Out holds a struct type that msgpack would send empty
// (no exported field, no encoder of its own: its values would arrive as
// zero values): these are programming errors found at start-up.
//
// The name travels in every invocation and must be stable across builds:
// choose it once ("resize", "mc.price") and keep it when the Go function is
// renamed. In and Out travel as msgpack: exported struct fields, slices, maps,
// numbers, strings, time.Time and types with msgpack encoders work; channels
// and functions do not (Map reports them). A struct with an unexported field
// is refused unless the field is tagged `msgpack:"-"` (it stays behind) or
// the type encodes itself. A value held in an interface (any) arrives as
// msgpack decodes it: an integer as the smallest type that holds it (int8
// for 7), a struct as map[string]any, a slice as []any. Register panics
// when called after Init: a worker serves from Init on and would never
// have the function.
func Register[In, Out any](name string, fn func(context.Context, In) (Out, error)) *Func[In, Out] {
	f := RegisterTo(defaultRegistry, name, fn)
	if initCalled.Load() {
		// Registered, so that this driver is not left half-way; but a
		// worker serves from Init on and never gets here.
		panic(fmt.Sprintf("fanout: Register(%q) after fanout.Init: a worker runs Init first thing in main and serves from there, "+
			"so it never registers %q and every task of it would fail as an unknown function; register it at package level "+
			"(var F = fanout.Register(...))", name, name))
	}
	return f
}

// RegisterTo is Register for a Registry of the program's own.
func RegisterTo[In, Out any](r *Registry, name string, fn func(context.Context, In) (Out, error)) *Func[In, Out] {
	if name == "" {
		panic("fanout: Register with an empty name")
	}
	if fn == nil {
		panic(fmt.Sprintf("fanout: Register %q with a nil function", name))
	}
	inT, outT := reflect.TypeFor[In](), reflect.TypeFor[Out]()
	for _, side := range []struct {
		what string
		t    reflect.Type
	}{{"input", inT}, {"output", outT}} {
		path, bad, field := sentEmpty(side.t, side.t.String(), map[reflect.Type]bool{})
		switch {
		case bad != nil && field != "":
			panic(fmt.Sprintf("fanout: Register %q: %s type %v: field %s of %s is unexported, so msgpack leaves it out and "+
				"it would arrive as its zero value; export it, tag it `msgpack:\"-\"` to say it stays behind, or give %v "+
				"EncodeMsgpack/DecodeMsgpack (or MarshalBinary/UnmarshalBinary) methods", name, side.what, side.t, field, describePath(path, bad), bad))
		case bad != nil:
			panic(fmt.Sprintf("fanout: Register %q: %s type %v: %s is a struct with no exported field and no msgpack encoder, "+
				"so its values would travel empty and arrive as zero values; export its fields or give it EncodeMsgpack/DecodeMsgpack "+
				"(or MarshalBinary/UnmarshalBinary) methods", name, side.what, side.t, describePath(path, bad)))
		}
	}
	// Build the decoded-size models now: the worker needs In's, the
	// driver Out's.
	planFor(inT)
	planFor(outT)
	info := &funcInfo{
		name:      name,
		signature: fmt.Sprintf("%s(%v) %v", name, inT, outT),
		digest:    signatureDigest(name, inT, outT),
	}
	info.run = func(ctx context.Context, in []byte) ([]byte, *wireError) {
		var v In
		if err := decodeBounded(in, &v, "input", nil); err != nil {
			if errors.Is(err, ErrDecodeLimit) {
				return nil, &wireError{Code: codeDecodeLimit, Type: fmt.Sprintf("%T", err), Message: err.Error()}
			}
			return nil, &wireError{Code: codeDecode, Type: fmt.Sprintf("%T", err),
				Message: fmt.Sprintf("decode input as %v: %v", inT, err)}
		}
		out, err := callRecovered(ctx, fn, v)
		if err != nil {
			return nil, err
		}
		b, encErr := encodeValue(out)
		if encErr != nil {
			return nil, &wireError{Code: codeEncode, Type: fmt.Sprintf("%T", encErr),
				Message: fmt.Sprintf("encode output of type %v: %v", outT, encErr)}
		}
		return b, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.funcs == nil {
		r.funcs = map[string]*funcInfo{}
	}
	if old, dup := r.funcs[name]; dup {
		panic(fmt.Sprintf("fanout: function %q registered twice (first as %s)", name, old.signature))
	}
	r.funcs[name] = info
	return &Func[In, Out]{fn: info}
}

func (r *Registry) lookup(name string) *funcInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.funcs[name]
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.funcs))
	for n := range r.funcs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// callRecovered calls fn, turning a panic into a wireError with its stack and
// an error into a wireError naming the error's type.
func callRecovered[In, Out any](ctx context.Context, fn func(context.Context, In) (Out, error), v In) (out Out, werr *wireError) {
	defer func() {
		if p := recover(); p != nil {
			werr = panicError(p)
		}
	}()
	out, err := fn(ctx, v)
	if err != nil {
		return out, appError(ctx, err)
	}
	return out, nil
}

func encodeValue(v any) ([]byte, error) {
	return msgpack.Marshal(v)
}

// signatureDigest hashes the name and the structure of In and Out, so that a
// worker built from an older version of the program, whose function has the
// same name but other types (a field added, a type changed), is detected
// before it decodes anything.
func signatureDigest(name string, in, out reflect.Type) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s", name, typeString(in), typeString(out))
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// typeString describes a type by its structure as msgpack sees it: named
// types by package path and name plus their underlying structure, structs by
// their exported fields and tags.
func typeString(t reflect.Type) string {
	var b strings.Builder
	writeType(&b, t, map[reflect.Type]bool{})
	return b.String()
}

func writeType(b *strings.Builder, t reflect.Type, seen map[reflect.Type]bool) {
	if t.Name() != "" {
		if t.PkgPath() != "" {
			b.WriteString(t.PkgPath())
			b.WriteByte('.')
		}
		b.WriteString(t.Name())
		if seen[t] || t.PkgPath() == "" {
			return
		}
		seen[t] = true
		if t.Kind() != reflect.Struct {
			b.WriteByte('=')
			b.WriteString(t.Kind().String())
			if t.Kind() != reflect.Slice && t.Kind() != reflect.Map && t.Kind() != reflect.Pointer && t.Kind() != reflect.Array {
				return
			}
		}
	}
	switch t.Kind() {
	case reflect.Pointer:
		b.WriteByte('*')
		writeType(b, t.Elem(), seen)
	case reflect.Slice:
		b.WriteString("[]")
		writeType(b, t.Elem(), seen)
	case reflect.Array:
		b.WriteString("[" + strconv.Itoa(t.Len()) + "]")
		writeType(b, t.Elem(), seen)
	case reflect.Map:
		b.WriteString("map[")
		writeType(b, t.Key(), seen)
		b.WriteByte(']')
		writeType(b, t.Elem(), seen)
	case reflect.Struct:
		b.WriteByte('{')
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			b.WriteString(f.Name)
			if tag, ok := f.Tag.Lookup("msgpack"); ok {
				b.WriteString(" " + strconv.Quote(tag))
			}
			b.WriteByte(' ')
			writeType(b, f.Type, seen)
			b.WriteByte(';')
		}
		b.WriteByte('}')
	default:
		if t.Name() == "" {
			b.WriteString(t.String())
		}
	}
}

// Interfaces by which a type encodes itself in msgpack.
var selfEncoding = []reflect.Type{
	reflect.TypeFor[msgpack.CustomEncoder](),
	reflect.TypeFor[msgpack.Marshaler](),
	reflect.TypeFor[encoding.BinaryMarshaler](),
	reflect.TypeFor[encoding.TextMarshaler](),
}

func encodesItself(t reflect.Type) bool {
	for _, i := range selfEncoding {
		if t.Implements(i) || reflect.PointerTo(t).Implements(i) {
			return true
		}
	}
	return false
}

// sentEmpty finds, in t or the types it holds, a struct type without an
// encoder of its own whose values msgpack would not carry whole: one with
// fields but none exported or embedded (it travels as an empty map), or one
// with an unexported field not tagged `msgpack:"-"` (the field is left
// out, and arrives as its zero value). It returns the path to it (for the
// message), the type, and the unexported field ("" for the first case); a
// nil type when there is none.
func sentEmpty(t reflect.Type, path string, seen map[reflect.Type]bool) (string, reflect.Type, string) {
	if seen[t] {
		return "", nil, ""
	}
	seen[t] = true
	if encodesItself(t) {
		return "", nil, ""
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return sentEmpty(t.Elem(), path+"[elem]", seen)
	case reflect.Map:
		if p, bad, f := sentEmpty(t.Key(), path+"[key]", seen); bad != nil {
			return p, bad, f
		}
		return sentEmpty(t.Elem(), path+"[value]", seen)
	case reflect.Struct:
		visible, hidden := false, ""
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Tag.Get("msgpack") == "-" || f.Name == "_" {
				continue
			}
			if !f.IsExported() && !f.Anonymous {
				if hidden == "" {
					hidden = f.Name
				}
				continue
			}
			visible = true
			if p, bad, fld := sentEmpty(f.Type, path+"."+f.Name, seen); bad != nil {
				return p, bad, fld
			}
		}
		switch {
		case !visible && hidden != "":
			return path, t, ""
		case hidden != "":
			return path, t, hidden
		}
	}
	return "", nil, ""
}

func describePath(path string, t reflect.Type) string {
	if path == t.String() {
		return "it"
	}
	return fmt.Sprintf("%v (at %s)", t, path)
}
