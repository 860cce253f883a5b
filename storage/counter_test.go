package storage_test

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/memstore"
	"github.com/gowren/gowren/storage/storagetest"
)

type counterHarness struct{}

func (counterHarness) MakeStore(context.Context) (storage.Store, error) {
	return storage.Count(memstore.New(nil)), nil
}

func (counterHarness) MakeStoreWithMaxObjectSize(_ context.Context, max int64) (storage.Store, error) {
	return storage.Count(memstore.New(&memstore.Options{MaxObjectSize: max})), nil
}

func (counterHarness) Close() {}

// TestCounterConformance checks that a Counter is a Store like the one it
// wraps, size cap included.
func TestCounterConformance(t *testing.T) {
	storagetest.RunConformanceTests(t, func(context.Context, *testing.T) (storagetest.Harness, error) {
		return counterHarness{}, nil
	})
}

func TestCounterCounts(t *testing.T) {
	ctx := t.Context()
	c := storage.Count(memstore.New(nil))
	defer c.Close()
	keys := make([]string, 2500)
	for i := range keys {
		keys[i] = fmt.Sprintf("k/%05d", i)
		if err := c.Put(ctx, keys[i], []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Get(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetRange(ctx, keys[1], 0, 1); err != nil {
		t.Fatal(err)
	}
	r, err := c.NewReader(ctx, keys[2], 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	w, err := c.NewWriter(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "y")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, err := range c.List(ctx, "k/") { // 2,500 keys: three pages
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	for range c.List(ctx, "k/") { // stopped after one key: one page
		break
	}
	for range c.List(ctx, "none/") { // nothing: still one request
	}
	if err := c.Delete(ctx, keys...); err != nil { // three batches
		t.Fatal(err)
	}
	want := storage.RequestCounts{Gets: 3, Puts: 2501, Lists: 5, Deletes: 3}
	if got := c.Counts(); got != want || n != len(keys) {
		t.Errorf("Counts() = %+v after listing %d keys, want %+v", got, n, want)
	}
	if want.Total() != 2512 {
		t.Errorf("Total() = %d", want.Total())
	}
	c.Reset()
	if got := c.Counts(); got != (storage.RequestCounts{}) {
		t.Errorf("after Reset: %+v", got)
	}
}
