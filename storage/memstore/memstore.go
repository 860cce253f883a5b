// Package memstore is a storage.Store that keeps its objects in the memory of
// the current process. It is the store of tests and of the local backends:
// workers that run in the same process open it again from its URL.
//
// # Storage URLs
//
// Importing the package registers the "mem" scheme with storage.Open:
//
//	mem://NAME                      the store named NAME, shared by every handle open on it
//	mem://                          a fresh store with a new unique name
//	mem://NAME?max_object_size=N    a handle that refuses objects larger than N bytes
//
// A NAME is made of ASCII letters, digits, '-', '_' and '.'.
//
// # Lifetime
//
// The objects of a named store live as long as at least one handle on it is
// open: every New and every Open adds a handle, every Close removes one, and
// the Close of the last handle drops the objects. Opening the same name again
// afterwards gives an empty store.
//
// # Errors
//
// Errors name the operation and the key, and wrap the storage sentinels:
// `memstore: get "jobs/x": storage: object not found`.
package memstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gowren/gowren/storage"
)

// Scheme is the URL scheme of memory stores.
const Scheme = "mem"

func init() {
	storage.Register(Scheme, openURL)
}

// Options configure a Store. A nil *Options means the defaults.
type Options struct {
	// MaxObjectSize caps the size of one object in bytes: Put and NewWriter
	// refuse larger objects with storage.ErrTooLarge. Use it to make tests
	// meet the limits of a real store. Defaults to 0: no limit beyond memory.
	MaxObjectSize int64
}

// Store is a handle on a memory store. Its methods are safe for concurrent
// use. Create one with New or with storage.Open of a mem:// URL.
type Store struct {
	name   string
	data   *data
	max    int64 // 0: no limit
	closed atomic.Bool
}

var (
	_ storage.Store          = (*Store)(nil)
	_ storage.MaxObjectSizer = (*Store)(nil)
)

type object struct {
	b   []byte // never modified once stored
	mod time.Time
}

// data is the content of one named store, shared by its handles.
type data struct {
	refs int // guarded by registryMu

	mu   sync.RWMutex
	objs map[string]object // nil once the last handle is closed
}

var (
	registryMu sync.Mutex
	registry   = map[string]*data{}
	anonSeq    uint64 // guarded by registryMu
)

// New returns a handle on a new, empty store with a unique name; its URL
// opens the same store again. A nil opts means the defaults. New panics if
// opts.MaxObjectSize is negative.
func New(opts *Options) *Store {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxObjectSize < 0 {
		panic("memstore: negative MaxObjectSize")
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	var name string
	for {
		anonSeq++
		name = "anon-" + strconv.FormatUint(anonSeq, 10)
		if registry[name] == nil {
			break
		}
	}
	return attachLocked(name, o.MaxObjectSize)
}

// attachLocked returns a new handle on the store called name, creating the
// store if needed. registryMu must be held.
func attachLocked(name string, max int64) *Store {
	d := registry[name]
	if d == nil {
		d = &data{objs: map[string]object{}}
		registry[name] = d
	}
	d.refs++
	return &Store{name: name, data: d, max: max}
}

func openURL(_ context.Context, u *url.URL) (storage.Store, error) {
	bad := func(why string) error {
		return fmt.Errorf("memstore: open %q: %s", u.Redacted(), why)
	}
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.Fragment != "" {
		return nil, bad("want mem://NAME")
	}
	name := u.Host
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return nil, bad("a store name is made of ASCII letters, digits, '-', '_' and '.'")
		}
	}
	var o Options
	for k, vs := range u.Query() {
		switch k {
		case "max_object_size":
			n, err := strconv.ParseInt(vs[len(vs)-1], 10, 64)
			if err != nil || n < 0 {
				return nil, bad("max_object_size wants a number of bytes")
			}
			o.MaxObjectSize = n
		default:
			return nil, bad(fmt.Sprintf("unknown parameter %q", k))
		}
	}
	if name == "" {
		return New(&o), nil
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	return attachLocked(name, o.MaxObjectSize), nil
}

// Name returns the name of the store, as in its URL.
func (s *Store) Name() string { return s.name }

// URL returns "mem://NAME", with the handle's options as query parameters.
// storage.Open of it in this process gives another handle on the same
// objects, as long as one handle is open.
func (s *Store) URL() string {
	u := url.URL{Scheme: Scheme, Host: s.name}
	if s.max > 0 {
		u.RawQuery = "max_object_size=" + strconv.FormatInt(s.max, 10)
	}
	return u.String()
}

// MaxObjectSize returns the largest object Put and NewWriter accept, in
// bytes: Options.MaxObjectSize, or math.MaxInt64 when there is no limit.
func (s *Store) MaxObjectSize() int64 {
	if s.max == 0 {
		return math.MaxInt64
	}
	return s.max
}

// Close closes the handle. Closing the last handle on a store drops its
// objects. Calls on a closed handle give storage.ErrClosed; closing it again
// does nothing and returns nil.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	s.data.refs--
	if s.data.refs == 0 {
		if registry[s.name] == s.data {
			delete(registry, s.name)
		}
		s.data.mu.Lock()
		s.data.objs = nil
		s.data.mu.Unlock()
	}
	return nil
}

func opError(op, key string, err error) error {
	return fmt.Errorf("memstore: %s %q: %w", op, key, err)
}

// check reports why an operation on key cannot start.
func (s *Store) check(ctx context.Context, op, key string) error {
	if s.closed.Load() {
		return opError(op, key, storage.ErrClosed)
	}
	if err := storage.ValidateKey(key); err != nil {
		return opError(op, key, err)
	}
	if err := ctx.Err(); err != nil {
		return opError(op, key, err)
	}
	return nil
}

// Put stores a copy of data under key, replacing any object there.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	if err := s.check(ctx, "put", key); err != nil {
		return err
	}
	if s.max > 0 && int64(len(data)) > s.max {
		return opError("put", key, fmt.Errorf("%w: %d bytes, limit %d", storage.ErrTooLarge, len(data), s.max))
	}
	return s.store("put", key, append([]byte{}, data...))
}

// store makes b, which the caller gives up, the object under key.
func (s *Store) store(op, key string, b []byte) error {
	d := s.data
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.objs == nil {
		return opError(op, key, storage.ErrClosed)
	}
	d.objs[key] = object{b: b, mod: time.Now()}
	return nil
}

// lookup returns the object under key.
func (s *Store) lookup(op, key string) (object, error) {
	d := s.data
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.objs == nil {
		return object{}, opError(op, key, storage.ErrClosed)
	}
	o, ok := d.objs[key]
	if !ok {
		return object{}, opError(op, key, storage.ErrNotFound)
	}
	return o, nil
}

// Get returns a copy of the object under key, which the caller may modify,
// or an error wrapping storage.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := s.check(ctx, "get", key); err != nil {
		return nil, err
	}
	o, err := s.lookup("get", key)
	if err != nil {
		return nil, err
	}
	return append([]byte{}, o.b...), nil
}

// span returns the part of b that a ranged read returns.
func span(op, key string, b []byte, offset, length int64) ([]byte, error) {
	size := int64(len(b))
	if offset < 0 || offset > size {
		return nil, opError(op, key, fmt.Errorf("%w: offset %d, size %d", storage.ErrInvalidRange, offset, size))
	}
	end := size
	if length >= 0 && length < size-offset {
		end = offset + length
	}
	return b[offset:end], nil
}

// GetRange returns a copy of at most length bytes of the object from offset,
// following the rules of storage.Store.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	if err := s.check(ctx, "get range", key); err != nil {
		return nil, err
	}
	o, err := s.lookup("get range", key)
	if err != nil {
		return nil, err
	}
	b, err := span("get range", key, o.b, offset, length)
	if err != nil {
		return nil, err
	}
	return append([]byte{}, b...), nil
}

// NewReader returns a reader of the range GetRange would return. Its Read
// fails once ctx is cancelled. Replacing or deleting the object does not
// affect a reader already open.
func (s *Store) NewReader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := s.check(ctx, "new reader", key); err != nil {
		return nil, err
	}
	o, err := s.lookup("new reader", key)
	if err != nil {
		return nil, err
	}
	b, err := span("new reader", key, o.b, offset, length)
	if err != nil {
		return nil, err
	}
	return &reader{ctx: ctx, key: key, r: bytes.NewReader(b)}, nil
}

type reader struct {
	ctx context.Context // the reader's own operation; not retained past Close
	key string
	r   *bytes.Reader
}

func (r *reader) Read(p []byte) (int, error) {
	if r.r == nil {
		return 0, opError("read", r.key, errors.New("reader closed"))
	}
	if err := r.ctx.Err(); err != nil {
		return 0, opError("read", r.key, err)
	}
	return r.r.Read(p)
}

func (r *reader) Close() error {
	r.r = nil
	return nil
}

// NewWriter returns a writer that buffers a new object in memory. The
// object replaces any object under key when Close returns nil. If ctx is
// cancelled before Close, or the object grows past MaxObjectSize, Close
// fails and nothing is stored. A writer is not safe for concurrent use.
func (s *Store) NewWriter(ctx context.Context, key string) (io.WriteCloser, error) {
	if err := s.check(ctx, "new writer", key); err != nil {
		return nil, err
	}
	return &writer{s: s, ctx: ctx, key: key}, nil
}

type writer struct {
	s      *Store
	ctx    context.Context // the writer's own operation; not retained past Close
	key    string
	buf    bytes.Buffer
	err    error // sticky: the first failure
	closed bool
}

func (w *writer) Write(p []byte) (int, error) {
	switch {
	case w.closed:
		return 0, opError("write", w.key, errors.New("writer closed"))
	case w.err != nil:
		return 0, w.err
	}
	if err := w.ctx.Err(); err != nil {
		w.fail("write", err)
		return 0, w.err
	}
	if w.s.max > 0 && int64(w.buf.Len())+int64(len(p)) > w.s.max {
		w.fail("write", fmt.Errorf("%w: more than %d bytes", storage.ErrTooLarge, w.s.max))
		return 0, w.err
	}
	return w.buf.Write(p)
}

func (w *writer) fail(op string, err error) {
	w.err = opError(op, w.key, err)
	w.buf = bytes.Buffer{}
}

func (w *writer) Close() error {
	if w.closed {
		return opError("close", w.key, errors.New("writer closed"))
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if w.s.closed.Load() {
		w.fail("close", storage.ErrClosed)
		return w.err
	}
	if err := w.ctx.Err(); err != nil {
		w.fail("close", err)
		return w.err
	}
	b := bytes.Clone(w.buf.Bytes())
	if b == nil {
		b = []byte{}
	}
	w.buf = bytes.Buffer{}
	return w.s.store("close", w.key, b)
}

// List yields the objects whose key starts with prefix, in ascending byte
// order of key. It works on a snapshot taken when iteration starts, so the
// loop body may call any method of the store.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[storage.ObjectInfo, error] {
	return s.ListAfter(ctx, prefix, "")
}

// ListAfter yields, as List does, the objects under prefix whose key sorts
// after startAfter.
func (s *Store) ListAfter(ctx context.Context, prefix, startAfter string) iter.Seq2[storage.ObjectInfo, error] {
	return func(yield func(storage.ObjectInfo, error) bool) {
		fail := func(err error) { yield(storage.ObjectInfo{}, opError("list", prefix, err)) }
		if s.closed.Load() {
			fail(storage.ErrClosed)
			return
		}
		if err := storage.ValidatePrefix(prefix); err != nil {
			fail(err)
			return
		}
		if err := ctx.Err(); err != nil {
			fail(err)
			return
		}
		d := s.data
		d.mu.RLock()
		if d.objs == nil {
			d.mu.RUnlock()
			fail(storage.ErrClosed)
			return
		}
		var infos []storage.ObjectInfo
		for k, o := range d.objs {
			if strings.HasPrefix(k, prefix) && k > startAfter {
				infos = append(infos, storage.ObjectInfo{Key: k, Size: int64(len(o.b)), ModTime: o.mod})
			}
		}
		d.mu.RUnlock()
		slices.SortFunc(infos, func(a, b storage.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
		for _, info := range infos {
			if err := ctx.Err(); err != nil {
				fail(err)
				return
			}
			if !yield(info, nil) {
				return
			}
		}
	}
}

// Delete removes the objects under keys; missing keys are not an error. It
// checks every key before removing any.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if err := storage.ValidateKey(k); err != nil {
			return opError("delete", k, err)
		}
	}
	if s.closed.Load() {
		return deleteError(keys, storage.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return deleteError(keys, err)
	}
	d := s.data
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.objs == nil {
		return deleteError(keys, storage.ErrClosed)
	}
	for _, k := range keys {
		delete(d.objs, k)
	}
	return nil
}

// deleteError is the error of a Delete of keys as a whole.
func deleteError(keys []string, err error) error {
	switch len(keys) {
	case 0:
		return fmt.Errorf("memstore: delete: %w", err)
	case 1:
		return opError("delete", keys[0], err)
	}
	return fmt.Errorf("memstore: delete %q and %d more: %w", keys[0], len(keys)-1, err)
}
