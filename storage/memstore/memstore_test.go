package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/memstore"
	"github.com/gowren/gowren/storage/storagetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type harness struct{}

func (harness) MakeStore(context.Context) (storage.Store, error) {
	return memstore.New(nil), nil
}

func (harness) MakeStoreWithMaxObjectSize(_ context.Context, max int64) (storage.Store, error) {
	return memstore.New(&memstore.Options{MaxObjectSize: max}), nil
}

func (harness) Close() {}

func TestConformance(t *testing.T) {
	storagetest.RunConformanceTests(t, func(context.Context, *testing.T) (storagetest.Harness, error) {
		return harness{}, nil
	})
}

func open(t *testing.T, url string) storage.Store {
	t.Helper()
	st, err := storage.Open(t.Context(), url)
	if err != nil {
		t.Fatalf("Open(%q): %v", url, err)
	}
	return st
}

func get(t *testing.T, st storage.Store, key string) (string, error) {
	t.Helper()
	b, err := st.Get(t.Context(), key)
	return string(b), err
}

func TestNamedStoreIsShared(t *testing.T) {
	ctx := t.Context()
	a := open(t, "mem://shared-test")
	b := open(t, "mem://shared-test")
	if err := a.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if got, err := get(t, b, "k"); got != "v" || err != nil {
		t.Fatalf("second handle: Get = %q, %v; want \"v\"", got, err)
	}
	// Closing one handle keeps the data for the other.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got, err := get(t, b, "k"); got != "v" || err != nil {
		t.Fatalf("after closing the other handle: Get = %q, %v; want \"v\"", got, err)
	}
	if _, err := get(t, a, "k"); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("closed handle: Get error = %v, want ErrClosed", err)
	}
	// Closing the last handle drops the data.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	c := open(t, "mem://shared-test")
	defer c.Close()
	if _, err := get(t, c, "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after the last Close, reopened: Get error = %v, want ErrNotFound", err)
	}
}

func TestNewIsFreshAndReopens(t *testing.T) {
	ctx := t.Context()
	a, b := memstore.New(nil), memstore.New(nil)
	defer a.Close()
	defer b.Close()
	if a.Name() == b.Name() || a.URL() == b.URL() {
		t.Fatalf("two New stores share the name %q", a.Name())
	}
	if err := a.Put(ctx, "k", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, b, "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("another New store sees the object: %v", err)
	}
	re := open(t, a.URL())
	defer re.Close()
	if got, err := get(t, re, "k"); got != "a" || err != nil {
		t.Fatalf("reopened from %q: Get = %q, %v", a.URL(), got, err)
	}
}

func TestEmptyNameIsFresh(t *testing.T) {
	ctx := t.Context()
	a, b := open(t, "mem://"), open(t, "mem://")
	defer a.Close()
	defer b.Close()
	if a.URL() == b.URL() || a.URL() == "mem://" {
		t.Fatalf("mem:// twice gave URLs %q and %q, want two distinct names", a.URL(), b.URL())
	}
	if err := a.Put(ctx, "k", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, b, "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("two mem:// stores share objects: %v", err)
	}
}

func TestURLOptions(t *testing.T) {
	st := open(t, "mem://opts-test?max_object_size=10")
	defer st.Close()
	if got := st.(storage.MaxObjectSizer).MaxObjectSize(); got != 10 {
		t.Fatalf("MaxObjectSize = %d, want 10", got)
	}
	if got, want := st.URL(), "mem://opts-test?max_object_size=10"; got != want {
		t.Fatalf("URL = %q, want %q", got, want)
	}
	if err := st.Put(t.Context(), "k", make([]byte, 11)); !errors.Is(err, storage.ErrTooLarge) {
		t.Fatalf("Put of 11 bytes: %v, want ErrTooLarge", err)
	}
	unlimited := memstore.New(nil)
	defer unlimited.Close()
	if got := unlimited.MaxObjectSize(); got != math.MaxInt64 {
		t.Fatalf("MaxObjectSize without a limit = %d, want math.MaxInt64", got)
	}
}

func TestBadURLs(t *testing.T) {
	for _, url := range []string{
		"mem://a/b",
		"mem:///a",
		"mem:name",
		"mem://bad%20name",
		"mem://user@name",
		"mem://name?bogus=1",
		"mem://name?max_object_size=-1",
		"mem://name?max_object_size=lots",
		"mem://name#frag",
	} {
		t.Run(url, func(t *testing.T) {
			st, err := storage.Open(t.Context(), url)
			if err == nil {
				st.Close()
				t.Fatalf("Open(%q) succeeded, want an error", url)
			}
		})
	}
}

func TestListManyKeys(t *testing.T) {
	ctx := t.Context()
	st := memstore.New(nil)
	defer st.Close()
	const n = 100_000
	var want []string
	for i := range n {
		// Inserted in an order unlike the sorted one.
		key := fmt.Sprintf("k/%05d", (i*7919)%n)
		want = append(want, key)
		if err := st.Put(ctx, key, nil); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(want)
	var got []string
	for info, err := range st.List(ctx, "k/") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, info.Key)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List of %d keys: got %d keys, not in order or not all", n, len(got))
	}
}

func TestWriterAfterStoreClose(t *testing.T) {
	st := memstore.New(nil)
	w, err := st.NewWriter(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := w.Close(); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("writer Close after the store's: %v, want ErrClosed", err)
	}
}
