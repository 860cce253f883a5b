package storage

import (
	"context"
	"io"
	"iter"
	"math"
	"sync/atomic"
)

// RequestCounts counts a store's requests by kind, the way an S3 bill counts
// them: Gets are Get, GetRange and NewReader calls; Puts are Put and
// NewWriter calls (a streamed upload large enough to go in parts costs a
// few more on S3); Lists are pages of up to 1,000 keys, at least one per
// List call; Deletes are batches of up to 1,000 keys (none for no key).
type RequestCounts struct {
	Gets    int64 `json:"gets"`
	Puts    int64 `json:"puts"`
	Lists   int64 `json:"lists"`
	Deletes int64 `json:"deletes"`
}

// Total is the number of requests of every kind.
func (c RequestCounts) Total() int64 { return c.Gets + c.Puts + c.Lists + c.Deletes }

// Counter is a Store that counts the requests made through it. It is safe for
// concurrent use.
type Counter struct {
	Store
	gets, puts, lists, deletes atomic.Int64
}

// Count returns st wrapped in a Counter. Its URL is st's, so a worker in
// the driver's process (the local backend) uses it too, and its requests
// are counted along with the driver's.
func Count(st Store) *Counter { return &Counter{Store: st} }

// Counts returns the requests counted so far.
func (c *Counter) Counts() RequestCounts {
	return RequestCounts{Gets: c.gets.Load(), Puts: c.puts.Load(), Lists: c.lists.Load(), Deletes: c.deletes.Load()}
}

// Reset sets the counts back to zero.
func (c *Counter) Reset() {
	c.gets.Store(0)
	c.puts.Store(0)
	c.lists.Store(0)
	c.deletes.Store(0)
}

func (c *Counter) Put(ctx context.Context, key string, data []byte) error {
	c.puts.Add(1)
	return c.Store.Put(ctx, key, data)
}

func (c *Counter) Get(ctx context.Context, key string) ([]byte, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}

func (c *Counter) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	c.gets.Add(1)
	return c.Store.GetRange(ctx, key, offset, length)
}

func (c *Counter) NewReader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	c.gets.Add(1)
	return c.Store.NewReader(ctx, key, offset, length)
}

func (c *Counter) NewWriter(ctx context.Context, key string) (io.WriteCloser, error) {
	c.puts.Add(1)
	return c.Store.NewWriter(ctx, key)
}

func (c *Counter) List(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error] {
	return c.count(c.Store.List(ctx, prefix))
}

// count counts the pages of a listing as it is consumed.
func (c *Counter) count(seq iter.Seq2[ObjectInfo, error]) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		n := 0
		defer func() { c.lists.Add(int64(ListRequests(n))) }()
		for obj, err := range seq {
			if err == nil {
				n++
			}
			if !yield(obj, err) {
				return
			}
		}
	}
}

// ListAfter counts the pages of what the wrapped store's ListAfter yields;
// a store without one lists everything under prefix, and that is counted.
func (c *Counter) ListAfter(ctx context.Context, prefix, startAfter string) iter.Seq2[ObjectInfo, error] {
	if al, ok := c.Store.(AfterLister); ok {
		return c.count(al.ListAfter(ctx, prefix, startAfter))
	}
	return skipThrough(c.List(ctx, prefix), startAfter)
}

func (c *Counter) Delete(ctx context.Context, keys ...string) error {
	c.deletes.Add(int64(DeleteRequests(len(keys))))
	return c.Store.Delete(ctx, keys...)
}

// MaxObjectSize is the wrapped store's cap on object size, if it has one.
func (c *Counter) MaxObjectSize() int64 {
	if m, ok := c.Store.(MaxObjectSizer); ok {
		return m.MaxObjectSize()
	}
	return math.MaxInt64
}
