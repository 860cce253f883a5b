// Package storage is the object-storage contract of gowren and the registry of
// its drivers.
//
// A Store holds flat keys ("jobs/1a2b3c4d-20261126T010203/in/0") mapped to
// immutable byte objects. The executor keeps in it whatever does not fit in an
// invocation payload: aggregated inputs, large outputs, map outputs read by a
// reducer. A worker opens the same store from its URL, so every driver must
// produce a URL that a worker can open again.
//
// # Storage URLs
//
// Drivers register a URL scheme from their init function, the way database/sql
// drivers do; Open picks the driver by scheme:
//
//	mem://NAME                      storage/memstore: in this process only
//	file:///DIR                     storage/filestore: a directory on this machine
//	s3://BUCKET/PREFIX?region=...   storage/s3store (separate package)
//
// Import a driver package (blank import is enough) to make its scheme known.
//
// # Keys
//
// A key is a non-empty UTF-8 string of at most 1024 bytes, made of segments
// separated by "/". ValidateKey states the rules every driver enforces, so a
// key that works on one store works on all. One difference remains: a file
// store keeps each key as a path, so there "a" and "a/b" cannot both be
// objects (ErrKeyConflict), while S3 and memstore hold both; gowren's own
// keys never form such a pair.
//
// # Errors
//
// Get, GetRange and NewReader return an error satisfying
// errors.Is(err, ErrNotFound) for a missing object. Invalid keys give
// ErrInvalidKey, bad ranges ErrInvalidRange. Drivers wrap errors once, naming
// the operation and the key: `filestore: get "jobs/x/out/1.0": ...`.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Errors that every driver reports in the same way; test them with errors.Is.
var (
	// ErrNotFound means the object does not exist.
	ErrNotFound = errors.New("storage: object not found")
	// ErrInvalidKey means the key breaks the rules of ValidateKey.
	ErrInvalidKey = errors.New("storage: invalid key")
	// ErrInvalidRange means a ranged read asked for an offset outside the object.
	ErrInvalidRange = errors.New("storage: invalid range")
	// ErrTooLarge means the object is larger than the store accepts
	// (see MaxObjectSizer).
	ErrTooLarge = errors.New("storage: object too large")
	// ErrClosed means the store was used after Close.
	ErrClosed = errors.New("storage: store closed")
	// ErrKeyConflict means a store that keeps keys as paths (filestore)
	// refused to write an object whose key is a prefix of another object's
	// key up to a "/", or has such a prefix that is an object: there "a"
	// and "a/b" cannot both be objects, as a path cannot be both a file
	// and a directory. S3 and memstore allow such pairs, and gowren's own
	// keys never form one.
	ErrKeyConflict = errors.New("storage: key conflicts with another object")
)

// MaxKeyLen is the longest key, in bytes, that every driver accepts.
const MaxKeyLen = 1024

// ObjectInfo describes one object returned by List.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Store is an object store. All methods are safe for concurrent use.
// Every method that takes a context stops early when it is cancelled and then
// returns an error satisfying errors.Is(err, ctx.Err()).
type Store interface {
	// Put stores data under key, replacing any object there. The object
	// appears whole or not at all.
	Put(ctx context.Context, key string, data []byte) error
	// Get returns the whole object, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// GetRange returns at most length bytes starting at offset; fewer when the
	// object ends first. A negative length reads to the end. An offset below
	// zero or past the end of the object gives ErrInvalidRange; an offset
	// equal to the size gives an empty slice.
	GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error)
	// NewReader streams the range that GetRange would return. A missing
	// object or bad range is reported by NewReader itself, not by the first
	// Read. The caller must Close the reader.
	NewReader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// NewWriter streams a new object. It becomes visible, replacing any
	// object under key, only when Close returns nil; when ctx is cancelled
	// before Close, or a Write fails, nothing is stored.
	NewWriter(ctx context.Context, key string) (io.WriteCloser, error)
	// List yields the objects whose key starts with prefix, in ascending
	// byte order of key, fetching them a page at a time. An error ends the
	// sequence: it is yielded once, with a zero ObjectInfo.
	List(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error]
	// Delete removes the objects. Keys that do not exist are not an error.
	Delete(ctx context.Context, keys ...string) error
	// URL returns a URL from which Open gives a Store with the same
	// objects, in this process or (for shared stores) in a worker.
	URL() string
	// Close releases the store's resources. Using it afterwards gives
	// ErrClosed. Close does not delete objects, except for stores whose data
	// lives only as long as they are open (see memstore).
	Close() error
}

// AfterLister is implemented by stores that can start a listing after a
// key, as S3's ListObjectsV2 does with StartAfter, so that a caller who
// lists the same prefix again and again pays only for the keys it has not
// passed yet.
type AfterLister interface {
	// ListAfter yields, as List does, the objects whose key starts with
	// prefix and sorts after startAfter in byte order.
	ListAfter(ctx context.Context, prefix, startAfter string) iter.Seq2[ObjectInfo, error]
}

// ListAfter yields the objects of st whose key starts with prefix and sorts
// after startAfter: with st's ListAfter when it has one, else by skipping
// the first keys of a List.
func ListAfter(ctx context.Context, st Store, prefix, startAfter string) iter.Seq2[ObjectInfo, error] {
	if al, ok := st.(AfterLister); ok {
		return al.ListAfter(ctx, prefix, startAfter)
	}
	return skipThrough(st.List(ctx, prefix), startAfter)
}

// skipThrough yields what seq yields, less the objects whose key does not
// sort after startAfter.
func skipThrough(seq iter.Seq2[ObjectInfo, error], startAfter string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		for obj, err := range seq {
			if err == nil && obj.Key <= startAfter {
				continue
			}
			if !yield(obj, err) {
				return
			}
		}
	}
}

// ListRequests is the number of requests a List of n keys takes on S3,
// which returns up to 1,000 keys a page: at least one.
func ListRequests(n int) int { return max(1, (n+pageKeys-1)/pageKeys) }

// DeleteRequests is the number of requests that delete n keys on S3, which
// removes up to 1,000 in one: none for no key.
func DeleteRequests(n int) int { return (n + pageKeys - 1) / pageKeys }

// pageKeys is the most keys S3 returns in a List page or removes in one
// delete request.
const pageKeys = 1000

// MaxObjectSizer is implemented by stores that cap the size of one object.
// Put and NewWriter refuse larger objects with ErrTooLarge.
type MaxObjectSizer interface {
	MaxObjectSize() int64
}

// Opener opens a store from a parsed URL whose scheme was registered for it.
type Opener func(ctx context.Context, u *url.URL) (Store, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
)

// Register makes a driver available under a URL scheme (without "://"). It
// is meant to be called from a driver's init function and panics when the
// scheme is empty, open is nil, or the scheme is taken.
func Register(scheme string, open Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if scheme == "" || open == nil {
		panic("storage: Register with an empty scheme or nil opener")
	}
	if _, dup := registry[scheme]; dup {
		panic(fmt.Sprintf("storage: Register called twice for scheme %q", scheme))
	}
	registry[scheme] = open
}

// Schemes returns the registered URL schemes, sorted.
func Schemes() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	s := make([]string, 0, len(registry))
	for k := range registry {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// Open opens the store named by rawURL, with the driver registered for its
// scheme. An unknown scheme is an error that lists the known ones.
func Open(ctx context.Context, rawURL string) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("storage: open %q: %w", rawURL, err)
	}
	registryMu.RLock()
	open := registry[u.Scheme]
	registryMu.RUnlock()
	if open == nil {
		return nil, fmt.Errorf("storage: open %q: unknown scheme %q (registered: %s; import the driver package)",
			rawURL, u.Scheme, strings.Join(Schemes(), ", "))
	}
	return open(ctx, u)
}

// ValidateKey reports whether key is one that every driver accepts: non-empty,
// valid UTF-8, at most MaxKeyLen bytes, no NUL or other control character, no
// backslash, not starting or ending with "/", no empty segment ("a//b"), and
// no "." or ".." segment. The error wraps ErrInvalidKey and says which rule
// was broken.
func ValidateKey(key string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidKey, truncate(key, 80), why)
	}
	switch {
	case key == "":
		return bad("empty")
	case len(key) > MaxKeyLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxKeyLen))
	case !utf8.ValidString(key):
		return bad("not valid UTF-8")
	case strings.HasPrefix(key, "/"):
		return bad("starts with /")
	case strings.HasSuffix(key, "/"):
		return bad("ends with /")
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return bad("contains a control character")
		}
		if r == '\\' {
			return bad("contains a backslash")
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return bad("contains an empty segment")
		case ".", "..":
			return bad("contains a " + seg + " segment")
		}
	}
	return nil
}

// ValidatePrefix reports whether prefix may be passed to List: the empty
// string, or a string that would be a valid key once a final segment were
// appended (so "jobs/" and "jobs/7f" are both valid prefixes).
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := ValidateKey(prefix + "x"); err != nil {
		return fmt.Errorf("%w (as a list prefix)", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
