package fanout

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/gowren/gowren/internal/layout"
	"github.com/gowren/gowren/storage"
)

// Ref is a handle on a value put in the store with Put: a few dozen bytes
// that travel in task inputs in place of a large value every task needs (a
// model, a lookup table, an image). Get fetches and decodes the value once
// per worker process and shares it with every later task there.
type Ref[T any] struct {
	// Key is the object holding the encoded value,
	// "refs/<executor id>/<hash>".
	Key string
	// Hash is the SHA-256 of the encoded value, checked on every fetch.
	Hash string
	// Size is the size of the encoded value.
	Size int64
	// Store is the URL of the store that holds it.
	Store string
}

// Put encodes v, writes it to the executor's store, and returns a Ref to
// pass in task inputs. Put needs a store; it is safe for concurrent use.
//
// The object is named after the executor and the value's content,
// "refs/<executor id>/<hash>": putting the same value twice with one
// Executor writes it once, and the Ref stays valid until that Executor is
// closed. Close deletes the values its Executor put (unless
// Options.KeepData) and nothing else, so drivers that share a store never
// delete a value under one another's jobs. A driver killed before Close
// leaves its values behind; `gowren clean -older-than D` removes the values
// of drivers that started more than D ago.
//
// A Put after Close has begun writes nothing and returns an error wrapping
// ErrClosed; Close waits for the Puts already writing. When ctx is
// cancelled, Put returns an error wrapping ctx.Err().
func Put[T any](ctx context.Context, ex *Executor, v T) (Ref[T], error) {
	var zero Ref[T]
	if ex.isClosed() {
		return zero, fmt.Errorf("fanout: put %T: %w", v, ErrClosed)
	}
	if ex.cfgErr != nil {
		return zero, ex.cfgErr
	}
	if ex.store == nil {
		return zero, fmt.Errorf("fanout: put %T: %w: set Options.Store or GOWREN_STORE", v, ErrNoStore)
	}
	b, err := encodeValue(&v)
	if err != nil {
		return zero, fmt.Errorf("fanout: put %T: encode: %w", v, err)
	}
	sum := sha256.Sum256(b)
	hash := hex.EncodeToString(sum[:])
	if m, ok := ex.store.(storage.MaxObjectSizer); ok && int64(len(b)) > m.MaxObjectSize() {
		return zero, fmt.Errorf("fanout: put %T: %d bytes, over the store's %d-byte object limit: %w", v, len(b), m.MaxObjectSize(), ErrPayloadTooLarge)
	}
	key, err := ex.putShared(ctx, hash, b)
	if err != nil {
		return zero, fmt.Errorf("fanout: put %T: %w", v, err)
	}
	return Ref[T]{Key: key, Hash: hash, Size: int64(len(b)), Store: ex.store.URL()}, nil
}

func (ex *Executor) isClosed() bool {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return ex.closed
}

// putShared writes b, whose SHA-256 is hash, under the executor's group of
// shared values, unless it is there already, and returns its key. A Put of
// the same value in flight is waited for instead of written twice. Every
// write is counted in ex.puts, which Close waits for after it has set
// ex.closed; so a Put either registers before Close and is waited for, or
// sees ex.closed and writes nothing.
func (ex *Executor) putShared(ctx context.Context, hash string, b []byte) (string, error) {
	for {
		ex.mu.Lock()
		if ex.closed {
			ex.mu.Unlock()
			return "", ErrClosed
		}
		if ex.refsID == "" {
			ex.refsID = layout.NewID(time.Now())
			ex.refs = map[string]bool{}
			ex.putting = map[string]chan struct{}{}
		}
		key := layout.RefKey(ex.refsID, hash)
		if ex.refs[key] {
			ex.mu.Unlock()
			return key, nil
		}
		if wait, ok := ex.putting[key]; ok {
			ex.mu.Unlock()
			select {
			case <-wait:
				continue // written, or failed: look again
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		done := make(chan struct{})
		ex.putting[key] = done
		ex.refs[key] = false // deleted by Close even if the write fails: it may have landed
		ex.puts.Add(1)
		ex.mu.Unlock()

		err := ex.store.Put(ctx, key, b)

		ex.mu.Lock()
		if err == nil {
			ex.refs[key] = true
		}
		delete(ex.putting, key)
		close(done)
		ex.mu.Unlock()
		ex.puts.Done()
		return key, err
	}
}

// deleteShared is Close's part for shared values, called once ex.closed is
// set: it waits for the Puts writing, then deletes every key Put wrote or
// tried to write, unless Options.KeepData.
func (ex *Executor) deleteShared() error {
	ex.puts.Wait()
	ex.mu.Lock()
	keys := make([]string, 0, len(ex.refs))
	for k := range ex.refs {
		keys = append(keys, k)
	}
	ex.refs = nil
	group := layout.RefGroup(ex.refsID)
	ex.mu.Unlock()
	if len(keys) == 0 || ex.opts.KeepData {
		return nil
	}
	slices.Sort(keys)
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := ex.store.Delete(ctx, keys...); err != nil {
		return fmt.Errorf("fanout: delete the values written by Put (%s): %w", group, err)
	}
	return nil
}

// Get returns the value. In a task it reads the job's store (or, outside
// one, the store named by r.Store) the first time a worker process needs the
// value, checks its hash, decodes it and keeps it in a per-process cache
// (256 MiB by default, see SetRefCacheLimit); concurrent first calls fetch
// once. The value is shared by every task of the process: treat it as read
// only. Its bytes are checked (structure, nesting) but, being the ones Put
// hashed, not bounded in decoded size like inputs (see ErrDecodeLimit).
func (r Ref[T]) Get(ctx context.Context) (T, error) {
	var zero T
	if r.Key == "" || len(r.Hash) != 64 {
		return zero, errors.New("fanout: Ref.Get on a zero or damaged Ref")
	}
	ck := refKey{hash: r.Hash, typ: reflect.TypeFor[T]()}
	if v, ok := refCache.get(ck); ok {
		return v.(T), nil
	}
	ran := false
	load := func() (any, error) {
		ran = true
		if v, ok := refCache.get(ck); ok {
			return v, nil
		}
		b, err := r.fetch(ctx)
		if err != nil {
			return nil, err
		}
		var v T
		if err := decodeVerified(b, &v); err != nil {
			return nil, fmt.Errorf("fanout: Ref %s: decode as %v: %w", r.Key, reflect.TypeFor[T](), err)
		}
		refCache.put(ck, v, int64(len(b)))
		return v, nil
	}
	// Concurrent first calls for one value fetch it once, whichever Ref
	// (executor, store) they hold.
	flight := r.Hash + "\x00" + ck.typ.String()
	v, err, _ := refFlight.Do(flight, load)
	if err != nil && !ran {
		// The fetch shared was another caller's, through another Ref or
		// under another context: its failure (its executor's value
		// deleted, its context cancelled) need not be ours.
		v, err, _ = refFlight.Do(flight+"\x00"+r.Store+"\x00"+r.Key, load)
	}
	if err != nil {
		return zero, err
	}
	return v.(T), nil
}

func (r Ref[T]) fetch(ctx context.Context) ([]byte, error) {
	var st storage.Store
	if ts := taskFrom(ctx); ts != nil && ts.stores.url == r.Store {
		s, err := ts.stores.get()
		if err != nil {
			return nil, fmt.Errorf("fanout: Ref %s: %w", r.Key, err)
		}
		st = s
	} else {
		if s, ok := ctx.Value(driverStoreKey{}).(storage.Store); ok && s.URL() == r.Store {
			st = s
		} else {
			s, err := workerStores.open(ctx, r.Store)
			if err != nil {
				return nil, fmt.Errorf("fanout: Ref %s: open store: %w", r.Key, err)
			}
			st = s
		}
	}
	b, err := st.Get(ctx, r.Key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("fanout: Ref %s: %w (the Executor that put it was closed, or gowren clean removed it)", r.Key, err)
	}
	if err != nil {
		return nil, fmt.Errorf("fanout: Ref %s: %w", r.Key, err)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != r.Hash {
		return nil, fmt.Errorf("fanout: Ref %s: content does not match its hash (%d bytes, want %d): the object was changed", r.Key, len(b), r.Size)
	}
	return b, nil
}

// SetRefCacheLimit sets how many bytes (of encoded values) the per-process
// cache of Ref values keeps; the least recently used go first. It returns
// the previous limit. The default is 256 MiB.
func SetRefCacheLimit(bytes int64) int64 { return refCache.setLimit(bytes) }

type refKey struct {
	hash string
	typ  reflect.Type
}

var (
	refCache  = newLRU(256 << 20)
	refFlight singleflight.Group
)

type lruEntry struct {
	key  refKey
	val  any
	size int64
}

// lru is a size-bounded cache of decoded values, safe for concurrent use.
type lru struct {
	mu    sync.Mutex
	limit int64
	size  int64
	order *list.List // front: most recently used
	items map[refKey]*list.Element
}

func newLRU(limit int64) *lru {
	return &lru{limit: limit, order: list.New(), items: map[refKey]*list.Element{}}
}

func (c *lru) get(k refKey) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*lruEntry).val, true
	}
	return nil, false
}

func (c *lru) put(k refKey, v any, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok || size > c.limit {
		return // a value larger than the whole cache is not kept
	}
	c.items[k] = c.order.PushFront(&lruEntry{key: k, val: v, size: size})
	c.size += size
	c.evictLocked()
}

func (c *lru) setLimit(n int64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.limit
	c.limit = n
	c.evictLocked()
	return old
}

func (c *lru) evictLocked() {
	for c.size > c.limit && c.order.Len() > 0 {
		e := c.order.Back()
		ent := e.Value.(*lruEntry)
		c.order.Remove(e)
		delete(c.items, ent.key)
		c.size -= ent.size
	}
}
