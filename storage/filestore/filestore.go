// Package filestore is a storage.Store kept in a directory of the local
// filesystem: a plain directory, whose objects are plain files. It suits a
// laptop, a single machine, a directory shared by the workers of the
// process backend, and folders of files put there by hand (photos, a text
// corpus) that a job reads or partitions.
//
// # Storage URLs
//
// Importing the package registers the "file" scheme with storage.Open:
//
//	file:///abs/dir                    the directory /abs/dir (also file://localhost/abs/dir)
//	file:rel/dir                       a directory relative to the working directory
//	file:///abs/dir?sync=true          fsync every object before it becomes visible
//	file:///abs/dir?max_object_size=N  refuse objects larger than N bytes
//
// The directory is created if missing. A relative path is made absolute when
// the store is opened, so the store's URL (what workers open) is always
// absolute. A file URL with another host than localhost is refused.
//
// # Layout
//
// A key is a path under the directory, byte for byte: the key
// "jobs/7f3a/out/12.0" is the file DIR/jobs/7f3a/out/12.0, and the file
// DIR/2024/beach.jpg is the object "2024/beach.jpg". Nothing is escaped or
// added to names, so any program can read what the store writes, and the
// store lists and reads what any program puts there. Every regular file is
// an object, hidden ones (.DS_Store) included: select objects by name where
// that matters (PartitionOptions.Filter in package fanout).
//
// A key cannot be both an object and a prefix of another key's directories
// here, as a path cannot be both a file and a directory: while "a" is an
// object, writing "a/b" fails, and while "a/b" is, writing "a" fails, both
// with an error wrapping storage.ErrKeyConflict that names the two keys.
// S3 and memstore allow such pairs; gowren's own keys never form one. An
// empty directory is neither: writing its key replaces it.
//
// Writes go to a temporary file named ".gowren-tmp-" and 16 hexadecimal
// digits, in the object's directory, which is then renamed over the object:
// readers see the old object or the new one, whole, and of concurrent
// writers of a key the last rename wins. List skips temporary files, and no
// key may have a segment starting with ".gowren-tmp-"; temporary files left
// by a crashed process can be removed by hand
// (find DIR -name '.gowren-tmp-*' -delete). Delete removes the directories
// it leaves empty, never the store's own directory.
//
// List yields an error naming the file when it meets a name that cannot be
// a key (one storage.ValidateKey refuses: a control character, a
// backslash, invalid UTF-8, a path longer than storage.MaxKeyLen), rather
// than skip it unseen: rename the file, or list a prefix that leaves it
// out. It skips what holds no object: directories (it walks into them),
// FIFOs, sockets and devices. A symbolic link is the object it points to
// when that is a regular file inside the directory; links to directories
// are not followed, and links leading out of the directory are skipped
// (and refused by Get).
//
// # Limits
//
// Each segment must fit in a file name: at most 255 bytes; longer ones are
// refused with storage.ErrInvalidKey. On Windows, so are segments holding
// one of `"*:<>?|` or ending in a dot or a space, and a segment that is a
// reserved device name (CON, NUL, COM1, ...) does not work. On a
// case-insensitive filesystem (the default on macOS and Windows) keys that
// differ only in case, or in Unicode normalization, name the same object.
//
// All access goes through an os.Root, so neither a key nor a symbolic link
// inside the directory can reach a file outside it.
//
// # Earlier layout
//
// Earlier versions of gowren named each object's file after its key plus a
// "%" ("jobs/7f3a/manifest%"), with some characters escaped as %XX. New and
// storage.Open refuse a directory in that layout with an error wrapping
// ErrOldLayout that names the directory and an example file, rather than
// show it as empty or misread it; see ErrOldLayout for what to do.
//
// # Durability
//
// By default objects are not fsynced: a crash of the process never leaves a
// torn object, but a crash of the machine may lose, or truncate, objects
// written shortly before it. Options.Sync (?sync=true) fsyncs each file
// before its rename and the directory after it.
//
// # Errors
//
// Errors name the operation and the key, and wrap the storage sentinels:
// `filestore: get "jobs/x": storage: object not found`.
package filestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/gowren/gowren/storage"
)

// Scheme is the URL scheme of file stores.
const Scheme = "file"

func init() {
	storage.Register(Scheme, openURL)
}

// ErrOldLayout means that a directory holds objects in the layout of
// earlier versions of gowren, each a file named after its key plus "%", which
// this version neither lists nor reads. New refuses such a directory, naming
// it and one of its files. Nothing in it is changed: finish or collect its
// jobs with the gowren that wrote it (gowren status, gowren clean), or move
// its files away; the key of each object is its path without the "%" and
// with each %XX turned back into the character it stands for.
var ErrOldLayout = errors.New("directory in the layout of an earlier gowren")

// Options configure a Store. A nil *Options means the defaults.
type Options struct {
	// Sync fsyncs every object before it becomes visible, and its directory
	// after, so that objects survive a crash of the machine. Defaults to
	// false: objects survive a crash of the process only.
	Sync bool
	// MaxObjectSize caps the size of one object in bytes: Put and NewWriter
	// refuse larger objects with storage.ErrTooLarge. Defaults to 0: no limit.
	MaxObjectSize int64
}

// Store is a storage.Store in a directory. Its methods are safe for
// concurrent use, also by several processes sharing the directory.
type Store struct {
	dir    string // absolute
	root   *os.Root
	opts   Options
	closed atomic.Bool

	mu      sync.Mutex
	writers map[*writer]struct{} // open writers; nil once closed
}

var (
	_ storage.Store          = (*Store)(nil)
	_ storage.MaxObjectSizer = (*Store)(nil)
)

// chunk is how many bytes are read or written between checks of the context.
const chunk = 1 << 20

// New opens the store kept in dir, creating the directory if missing. A
// relative dir is made absolute against the working directory. A nil opts
// means the defaults.
func New(dir string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if dir == "" {
		return nil, errors.New("filestore: new: empty directory name")
	}
	if o.MaxObjectSize < 0 {
		return nil, fmt.Errorf("filestore: new %q: negative MaxObjectSize", dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("filestore: new %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o777); err != nil {
		return nil, fmt.Errorf("filestore: new %q: %w", dir, err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("filestore: new %q: %w", dir, err)
	}
	if example, old := oldLayout(root); old {
		root.Close()
		return nil, fmt.Errorf("filestore: new %q: %w, its objects being files named KEY%% (such as %q), which this version neither lists nor reads: "+
			"finish or clean its jobs with the gowren that wrote them, or move the directory away and start afresh",
			abs, ErrOldLayout, example)
	}
	return &Store{dir: abs, root: root, opts: o, writers: map[*writer]struct{}{}}, nil
}

func openURL(_ context.Context, u *url.URL) (storage.Store, error) {
	bad := func(why string) error {
		return fmt.Errorf("filestore: open %q: %s", u.Redacted(), why)
	}
	var dir string
	switch {
	case u.User != nil || u.Fragment != "":
		return nil, bad("want file:///dir")
	case u.Opaque != "":
		p, err := url.PathUnescape(u.Opaque)
		if err != nil {
			return nil, bad(err.Error())
		}
		dir = filepath.FromSlash(p)
	case u.Host != "" && u.Host != "localhost":
		return nil, bad(fmt.Sprintf("host %q is not this machine: use file:///abs/dir, or file:rel/dir relative to the working directory", u.Host))
	case u.Path == "":
		return nil, bad("no directory")
	default:
		dir = u.Path
		if runtime.GOOS == "windows" && len(dir) >= 3 && dir[0] == '/' && dir[2] == ':' {
			dir = dir[1:] // file:///C:/dir
		}
		dir = filepath.FromSlash(dir)
	}
	var o Options
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "sync":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, bad("sync wants true or false")
			}
			o.Sync = b
		case "max_object_size":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, bad("max_object_size wants a number of bytes")
			}
			o.MaxObjectSize = n
		default:
			return nil, bad(fmt.Sprintf("unknown parameter %q", k))
		}
	}
	return New(dir, &o)
}

// Dir returns the absolute path of the store's directory.
func (s *Store) Dir() string { return s.dir }

// Path returns the file that holds, or would hold, the object under key:
// Dir joined with the key. It fails with storage.ErrInvalidKey for a key the
// store refuses. The path is always inside Dir.
func (s *Store) Path(key string) (string, error) {
	if err := validKey(key); err != nil {
		return "", s.opError("path", key, err)
	}
	return filepath.Join(s.dir, filepath.FromSlash(key)), nil
}

// validKey checks key against storage.ValidateKey and the store's own rules.
func validKey(key string) error {
	if err := storage.ValidateKey(key); err != nil {
		return err
	}
	return checkSegments(key)
}

// URL returns "file:///DIR", with the store's options as query parameters.
func (s *Store) URL() string {
	p := filepath.ToSlash(s.dir)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // C:/dir
	}
	u := url.URL{Scheme: Scheme, Path: p}
	q := url.Values{}
	if s.opts.Sync {
		q.Set("sync", "true")
	}
	if s.opts.MaxObjectSize > 0 {
		q.Set("max_object_size", strconv.FormatInt(s.opts.MaxObjectSize, 10))
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// MaxObjectSize returns the largest object Put and NewWriter accept, in
// bytes: Options.MaxObjectSize, or math.MaxInt64 when there is no limit.
func (s *Store) MaxObjectSize() int64 {
	if s.opts.MaxObjectSize == 0 {
		return math.MaxInt64
	}
	return s.opts.MaxObjectSize
}

func (s *Store) tooLarge(n int64) error {
	if s.opts.MaxObjectSize > 0 && n > s.opts.MaxObjectSize {
		return fmt.Errorf("%w: more than %d bytes", storage.ErrTooLarge, s.opts.MaxObjectSize)
	}
	return nil
}

// Close closes the store. Writers still open are abandoned: their objects
// are not stored and their Close fails with storage.ErrClosed. Readers
// already open keep working until closed. Objects stay on disk. Closing
// again does nothing and returns nil.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.Lock()
	ws := s.writers
	s.writers = nil
	s.mu.Unlock()
	for w := range ws {
		w.mu.Lock()
		w.abortLocked("close", storage.ErrClosed)
		w.mu.Unlock()
		w.detach()
	}
	if err := s.root.Close(); err != nil {
		return fmt.Errorf("filestore: close %q: %w", s.dir, err)
	}
	return nil
}

func (s *Store) opError(op, key string, err error) error {
	if s.closed.Load() && errors.Is(err, fs.ErrClosed) {
		err = storage.ErrClosed // the root was closed under the operation
	}
	return fmt.Errorf("filestore: %s %q: %w", op, key, err)
}

// missing reports whether err means that a file or one of its directories
// does not exist.
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// begin checks that an operation on key can start and returns the key's
// directory ("." for a key of one segment). The key is the object's path.
func (s *Store) begin(ctx context.Context, op, key string) (dir string, err error) {
	if s.closed.Load() {
		return "", s.opError(op, key, storage.ErrClosed)
	}
	if err := validKey(key); err != nil {
		return "", s.opError(op, key, err)
	}
	if err := ctx.Err(); err != nil {
		return "", s.opError(op, key, err)
	}
	return path.Dir(key), nil
}

// createTemp creates a new temporary file for the object key in its
// directory dir, creating dir if needed. It fails with an error wrapping
// storage.ErrKeyConflict when a prefix of key is an object.
func (s *Store) createTemp(ctx context.Context, dir, key string) (*os.File, string, error) {
	const attempts = 100
	for i := 0; ; i++ {
		name := path.Join(dir, fmt.Sprintf("%s%016x", tempPrefix, rand.Uint64()))
		f, err := s.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		switch {
		case err == nil:
			return f, name, nil
		case i >= attempts:
			return nil, "", s.conflictOr(ctx, key, err)
		case errors.Is(err, fs.ErrExist):
			// Name taken: draw another.
		case errors.Is(err, fs.ErrNotExist) && dir != ".":
			// The directory is missing, or a concurrent Delete has just
			// removed it as empty: (re)create it. MkdirAll too may lose
			// races with Delete (ENOENT, or EEXIST for a directory gone
			// again): try again then. EEXIST may also mean that a prefix
			// of the key is a file: the next OpenFile fails with ENOTDIR.
			err := s.root.MkdirAll(dir, 0o777)
			if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrExist) {
				return nil, "", s.conflictOr(ctx, key, err)
			}
		default:
			return nil, "", s.conflictOr(ctx, key, err)
		}
	}
}

// conflictOr returns an error wrapping storage.ErrKeyConflict when the
// object key cannot be written because one of its prefixes is an object (a
// file where a directory must go), or because it is itself a directory
// that is not empty; otherwise err.
func (s *Store) conflictOr(ctx context.Context, key string, err error) error {
	for i := range len(key) {
		if key[i] != '/' {
			continue
		}
		fi, serr := s.root.Stat(key[:i])
		if serr != nil {
			break
		}
		if !fi.IsDir() {
			return fmt.Errorf("%w: %q is an object, so it cannot also be a prefix of %q here; S3 allows both, a file store does not (a file is no directory)",
				storage.ErrKeyConflict, key[:i], key)
		}
	}
	if fi, serr := s.root.Lstat(key); serr == nil && fi.IsDir() {
		for info, lerr := range s.List(ctx, key+"/") {
			if lerr == nil {
				return fmt.Errorf("%w: %q is a prefix of %q, so it cannot also be an object here; S3 allows both, a file store does not (a directory is no file)",
					storage.ErrKeyConflict, key, info.Key)
			}
			break
		}
		return fmt.Errorf("%w: %q is a directory that is not empty, so it cannot be an object", storage.ErrKeyConflict, key)
	}
	return err
}

// commit makes the temporary file f, named tmp, the object key in dir,
// unless ctx is done. It closes f, and removes tmp unless it was renamed.
// An empty directory where the object goes is replaced.
func (s *Store) commit(ctx context.Context, f *os.File, tmp, dir, key string) error {
	var err error
	if s.opts.Sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = s.root.Rename(tmp, key)
		if err != nil {
			if fi, serr := s.root.Lstat(key); serr == nil && fi.IsDir() && s.root.Remove(key) == nil {
				err = s.root.Rename(tmp, key) // the directory was empty
			}
			if err != nil {
				err = s.conflictOr(ctx, key, err)
			}
		}
	}
	if err != nil {
		s.removeTemp(tmp)
		return err
	}
	if s.opts.Sync {
		d, err := s.root.Open(dir)
		if err != nil {
			return err
		}
		err = d.Sync()
		d.Close()
		return err
	}
	return nil
}

// Put stores data under key, replacing any object there: it writes a
// temporary file and renames it over the object. When ctx is cancelled
// first, or a write fails, nothing is stored.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	dir, err := s.begin(ctx, "put", key)
	if err != nil {
		return err
	}
	if err := s.tooLarge(int64(len(data))); err != nil {
		return s.opError("put", key, err)
	}
	f, tmp, err := s.createTemp(ctx, dir, key)
	if err != nil {
		return s.opError("put", key, err)
	}
	for rest := data; len(rest) > 0 && err == nil; {
		if err = ctx.Err(); err == nil {
			n := min(len(rest), chunk)
			_, err = f.Write(rest[:n])
			rest = rest[n:]
		}
	}
	if err != nil {
		f.Close()
		s.removeTemp(tmp)
		return s.opError("put", key, err)
	}
	if err := s.commit(ctx, f, tmp, dir, key); err != nil {
		return s.opError("put", key, err)
	}
	return nil
}

// open opens the object of key for reading and returns its size. Only a
// regular file is an object; it is checked before it is opened, so that a
// FIFO does not block, and after.
func (s *Store) open(ctx context.Context, op, key string) (*os.File, int64, error) {
	if _, err := s.begin(ctx, op, key); err != nil {
		return nil, 0, err
	}
	fi, err := s.root.Stat(key)
	if err == nil && !fi.Mode().IsRegular() {
		err = storage.ErrNotFound // a directory, or no object
	}
	var f *os.File
	if err == nil {
		f, err = s.root.Open(key)
	}
	if err != nil {
		if missing(err) {
			err = storage.ErrNotFound
		}
		return nil, 0, s.opError(op, key, err)
	}
	fi, err = f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = storage.ErrNotFound
	}
	if err != nil {
		f.Close()
		return nil, 0, s.opError(op, key, err)
	}
	return f, fi.Size(), nil
}

// span returns the offset and length that a ranged read of an object of
// the given size returns.
func span(size, offset, length int64) (int64, int64, error) {
	if offset < 0 || offset > size {
		return 0, 0, fmt.Errorf("%w: offset %d, size %d", storage.ErrInvalidRange, offset, size)
	}
	if length < 0 || length > size-offset {
		length = size - offset
	}
	return offset, length, nil
}

// readAt fills b from f at offset, checking ctx between chunks.
func readAt(ctx context.Context, f *os.File, b []byte, offset int64) error {
	for len(b) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(len(b), chunk)
		if _, err := f.ReadAt(b[:n], offset); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		b, offset = b[n:], offset+int64(n)
	}
	return nil
}

// Get returns the object under key, or an error wrapping storage.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	return s.getRange(ctx, "get", key, 0, -1)
}

// GetRange returns at most length bytes of the object from offset,
// following the rules of storage.Store.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	return s.getRange(ctx, "get range", key, offset, length)
}

func (s *Store) getRange(ctx context.Context, op, key string, offset, length int64) ([]byte, error) {
	f, size, err := s.open(ctx, op, key)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	offset, length, err = span(size, offset, length)
	if err != nil {
		return nil, s.opError(op, key, err)
	}
	b := make([]byte, length)
	if err := readAt(ctx, f, b, offset); err != nil {
		return nil, s.opError(op, key, err)
	}
	return b, nil
}

// NewReader returns a reader of the range GetRange would return. Its Read
// fails once ctx is cancelled. Replacing or deleting the object does not
// affect a reader already open.
func (s *Store) NewReader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	f, size, err := s.open(ctx, "new reader", key)
	if err != nil {
		return nil, err
	}
	offset, length, err = span(size, offset, length)
	if err == nil && offset > 0 {
		_, err = f.Seek(offset, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, s.opError("new reader", key, err)
	}
	return &reader{s: s, ctx: ctx, key: key, f: f, left: length}, nil
}

type reader struct {
	s    *Store
	ctx  context.Context // the reader's own operation; not retained past Close
	key  string
	f    *os.File
	left int64
}

func (r *reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, r.s.opError("read", r.key, err)
	}
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.f.Read(p)
	r.left -= int64(n)
	switch {
	case err == io.EOF && r.left > 0:
		err = io.ErrUnexpectedEOF
	case err == io.EOF:
		err = nil // reported by the next Read
	}
	if err != nil {
		return n, r.s.opError("read", r.key, err)
	}
	return n, nil
}

func (r *reader) Close() error {
	if err := r.f.Close(); err != nil {
		return r.s.opError("close reader", r.key, err)
	}
	return nil
}

// NewWriter returns a writer of a new object. It writes to a temporary file,
// renamed over any object under key when Close returns nil. When ctx is
// cancelled before Close completes, the temporary file is removed at once,
// even if Close is never called, and nothing is stored. A key that cannot
// be an object because of another (see "Layout" in the package
// documentation) fails with storage.ErrKeyConflict, from NewWriter when it
// can tell, else from Close. A writer is not safe for concurrent use.
func (s *Store) NewWriter(ctx context.Context, key string) (io.WriteCloser, error) {
	dir, err := s.begin(ctx, "new writer", key)
	if err != nil {
		return nil, err
	}
	// A key that is a directory with objects in it cannot become an
	// object: say so now rather than after the whole stream.
	if fi, err := s.root.Lstat(key); err == nil && fi.IsDir() && !s.emptyDir(key) {
		if err := s.conflictOr(ctx, key, nil); err != nil {
			return nil, s.opError("new writer", key, err)
		}
	}
	f, tmp, err := s.createTemp(ctx, dir, key)
	if err != nil {
		return nil, s.opError("new writer", key, err)
	}
	w := &writer{s: s, ctx: ctx, key: key, f: f, tmp: tmp, dir: dir, cbDone: make(chan struct{})}
	w.stop = context.AfterFunc(ctx, func() {
		defer close(w.cbDone)
		w.mu.Lock()
		defer w.mu.Unlock()
		w.abortLocked("write", ctx.Err())
	})
	s.mu.Lock()
	open := s.writers != nil
	if open {
		s.writers[w] = struct{}{}
	}
	s.mu.Unlock()
	if !open {
		w.mu.Lock()
		w.abortLocked("new writer", storage.ErrClosed)
		err := w.err
		w.mu.Unlock()
		w.detach()
		return nil, err
	}
	return w, nil
}

type writer struct {
	s        *Store
	ctx      context.Context // the writer's own operation; not retained past Close
	key      string
	tmp, dir string

	stop       func() bool   // unregisters the cancellation callback
	cbDone     chan struct{} // closed when the cancellation callback returns
	detachOnce sync.Once

	mu     sync.Mutex
	f      *os.File // nil once committed or abandoned
	n      int64    // bytes written
	err    error    // why the writer failed; sticky
	closed bool     // Close was called
}

// abortLocked abandons the object: it removes the temporary file and makes
// err, wrapped, the writer's error. It does nothing once the writer is
// finished. w.mu must be held.
func (w *writer) abortLocked(op string, err error) {
	if w.f == nil {
		return
	}
	w.f.Close()
	w.s.removeTemp(w.tmp)
	w.f = nil
	w.err = w.s.opError(op, w.key, err)
	w.s.forget(w)
}

// detach unregisters the cancellation callback, waiting for it to return if
// it has started. w.mu must not be held.
func (w *writer) detach() {
	w.detachOnce.Do(func() {
		if !w.stop() {
			<-w.cbDone
		}
	})
}

func (s *Store) forget(w *writer) {
	s.mu.Lock()
	delete(s.writers, w)
	s.mu.Unlock()
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.closed:
		return 0, w.s.opError("write", w.key, errors.New("writer closed"))
	case w.err != nil:
		return 0, w.err
	}
	if err := w.ctx.Err(); err != nil {
		w.abortLocked("write", err)
		return 0, w.err
	}
	if err := w.s.tooLarge(w.n + int64(len(p))); err != nil {
		w.abortLocked("write", err)
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.n += int64(n)
	if err != nil {
		w.abortLocked("write", err)
		return n, w.err
	}
	return n, nil
}

func (w *writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return w.s.opError("close", w.key, errors.New("writer closed"))
	}
	w.closed = true
	w.mu.Unlock()
	w.detach()

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	f := w.f
	w.f = nil
	w.s.forget(w)
	if err := w.s.commit(w.ctx, f, w.tmp, w.dir, w.key); err != nil {
		w.err = w.s.opError("close", w.key, err)
		return w.err
	}
	return nil
}

// List yields the objects whose key starts with prefix, in ascending byte
// order of key: every regular file under the directory, and every symbolic
// link to one inside it (see "Layout" in the package documentation). It
// walks the directory tree depth first, reading one directory at a time, so
// memory grows with the largest directory, not with the store. Objects
// written or deleted during the walk may or may not be seen. A file whose
// name cannot be a key ends the listing with an error naming it. The loop
// body may call any method of the store.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[storage.ObjectInfo, error] {
	return s.ListAfter(ctx, prefix, "")
}

// ListAfter yields, as List does, the objects under prefix whose key sorts
// after startAfter; it does not descend into directories whose keys all
// sort before it.
func (s *Store) ListAfter(ctx context.Context, prefix, startAfter string) iter.Seq2[storage.ObjectInfo, error] {
	return func(yield func(storage.ObjectInfo, error) bool) {
		l := &lister{s: s, ctx: ctx, prefix: prefix, after: startAfter, yield: yield}
		if s.closed.Load() {
			l.fail(storage.ErrClosed)
			return
		}
		if err := storage.ValidatePrefix(prefix); err != nil {
			l.fail(err)
			return
		}
		if err := ctx.Err(); err != nil {
			l.fail(err)
			return
		}
		// The prefix is a directory, then a part of a segment in it.
		dirKey, filter := "", prefix
		dir := "."
		if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
			dirKey, filter = prefix[:i+1], prefix[i+1:]
			dir = prefix[:i]
			if checkSegments(dir) != nil {
				return // no key has such a segment: no objects
			}
		}
		sub, err := s.root.OpenRoot(dir)
		if err != nil {
			if fi, serr := s.root.Stat(dir); missing(err) || (serr == nil && !fi.IsDir()) {
				return // no such directory, or an object: nothing under it
			}
			l.fail(err)
			return
		}
		defer sub.Close()
		l.walk(sub, dirKey, filter)
	}
}

type lister struct {
	s      *Store
	ctx    context.Context
	prefix string
	after  string // yield only keys after this one
	yield  func(storage.ObjectInfo, error) bool
}

func (l *lister) fail(err error) {
	l.yield(storage.ObjectInfo{}, l.s.opError("list", l.prefix, err))
}

type entry struct {
	name  string // in the directory, and the key segment
	order string // name, or name+"/" for a directory: sorts as the keys do
	dir   bool
}

// walk yields the objects under the directory d, whose keys (and paths from
// the store's directory) start with keyPrefix, restricted to the entries
// whose name starts with filter. It returns false when the iteration must
// stop.
func (l *lister) walk(d *os.Root, keyPrefix, filter string) bool {
	des, err := readDir(d)
	if err != nil {
		if missing(err) {
			return true // removed under us
		}
		l.fail(err)
		return false
	}
	entries := make([]entry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		if !strings.HasPrefix(name, filter) || strings.HasPrefix(name, tempPrefix) {
			continue
		}
		e := entry{name: name, order: name, dir: de.IsDir()}
		if e.dir {
			e.order = name + "/"
		}
		entries = append(entries, e)
	}
	des = nil
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.order, b.order) })
	for _, e := range entries {
		if err := l.ctx.Err(); err != nil {
			l.fail(err)
			return false
		}
		if l.s.closed.Load() {
			l.fail(storage.ErrClosed)
			return false
		}
		key := keyPrefix + e.name
		if (!e.dir && key <= l.after) ||
			(e.dir && key+"/" < l.after && !strings.HasPrefix(l.after, key+"/")) {
			continue // every key here sorts before l.after
		}
		if err := nameKey(e.name); err != nil || len(key) > storage.MaxKeyLen {
			if err == nil {
				err = fmt.Errorf("%w: longer than %d bytes", storage.ErrInvalidKey, storage.MaxKeyLen)
			}
			l.fail(fmt.Errorf("%q cannot be listed, its path is no valid key (rename it, or list a prefix without it): %w", key, err))
			return false
		}
		if !e.dir {
			fi, err := d.Lstat(e.name)
			if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
				// Followed inside the store only, from its top (a link
				// may lead to another directory of the store).
				fi, err = l.s.root.Stat(key)
				if err != nil || !fi.Mode().IsRegular() {
					continue // dangling, to a directory, or out of the store
				}
			}
			switch {
			case missing(err):
				continue // deleted under us
			case err != nil:
				l.fail(err)
				return false
			case !fi.Mode().IsRegular():
				continue // a FIFO, socket or device: no object
			}
			if !l.yield(storage.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil) {
				return false
			}
			continue
		}
		child, err := d.OpenRoot(e.name)
		if err != nil {
			if missing(err) {
				continue
			}
			l.fail(err)
			return false
		}
		more := l.walk(child, key+"/", "")
		child.Close()
		if !more {
			return false
		}
	}
	return true
}

// readDir returns the entries of the directory d, with their types (from
// the directory itself where the filesystem records them).
func readDir(d *os.Root) ([]fs.DirEntry, error) {
	f, err := d.Open(".")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ReadDir(-1)
}

// Delete removes the objects under keys (the files, or the links to files,
// that List shows), and the directories it leaves empty; missing keys, and
// keys of what is no object (a directory), are not an error. It checks
// every key before removing any. When ctx is cancelled, the objects removed
// so far stay removed.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if err := validKey(k); err != nil {
			return s.opError("delete", k, err)
		}
	}
	if s.closed.Load() {
		return s.deleteError(keys, storage.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return s.deleteError(keys, err)
	}
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			return s.opError("delete", key, err)
		}
		// Only what List shows is removed: a directory is no object
		// (Remove would take it when empty), nor a FIFO or a link to one.
		fi, err := s.root.Lstat(key)
		if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			fi, err = s.root.Stat(key) // the link goes, if it leads to a file
			if err != nil {
				continue // dangling, or out of the store
			}
		}
		if err == nil && !fi.Mode().IsRegular() {
			continue
		}
		if err == nil {
			err = s.root.Remove(key)
		}
		if err != nil {
			if missing(err) {
				continue
			}
			return s.opError("delete", key, err)
		}
		s.prune(path.Dir(key))
	}
	return nil
}

// prune removes dir and its parents while they are empty, deepest first,
// never the store's own directory. Removing a directory that is not empty
// fails, which ends the climb; a concurrent write that finds its directory
// gone creates it again.
func (s *Store) prune(dir string) {
	for ; dir != "."; dir = path.Dir(dir) {
		if s.root.Remove(dir) != nil {
			return
		}
	}
}

// removeTemp removes the temporary file tmp. It is best effort: List skips
// temporary files anyway. A directory created for it stays: it may be a
// user's, and an empty directory is neither object nor prefix.
func (s *Store) removeTemp(tmp string) {
	_ = s.root.Remove(tmp)
}

// emptyDir reports whether the directory dir holds nothing.
func (s *Store) emptyDir(dir string) bool {
	f, err := s.root.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	return len(names) == 0 && err == io.EOF
}

// deleteError is the error of a Delete of keys as a whole.
func (s *Store) deleteError(keys []string, err error) error {
	switch len(keys) {
	case 0:
		return fmt.Errorf("filestore: delete: %w", err)
	case 1:
		return s.opError("delete", keys[0], err)
	}
	return fmt.Errorf("filestore: delete %q and %d more: %w", keys[0], len(keys)-1, err)
}
