package fanout_test

import (
	"context"
	"crypto/rand"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/memstore"
)

// Lookup is an input that carries a shared table by reference.
type Lookup struct {
	Table fanout.Ref[[]byte]
	At    int
}

var lookup = fanout.Register("fanout_test.lookup", func(ctx context.Context, l Lookup) (byte, error) {
	t, err := l.Table.Get(ctx)
	if err != nil {
		return 0, err
	}
	return t[l.At], nil
})

// countingStore counts reads of shared values.
type countingStore struct {
	storage.Store
	refReads atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, key string) ([]byte, error) {
	if strings.HasPrefix(key, "refs/") {
		s.refReads.Add(1)
	}
	return s.Store.Get(ctx, key)
}

func TestPutRef(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{Store: memstore.New(nil)}
	defer st.Store.Close()
	ex := fanout.NewExecutor(local.New(&local.Options{Concurrency: 4}), &fanout.Options{Store: st, Logger: quietLogs})
	table := make([]byte, 3<<20) // fresh content: no other test cached it
	if _, err := rand.Read(table); err != nil {
		t.Fatal(err)
	}
	ref, err := fanout.Put(ctx, ex, table)
	if err != nil {
		t.Fatal(err)
	}
	again, err := fanout.Put(ctx, ex, table)
	if err != nil || again != ref {
		t.Fatalf("second Put = %+v, %v; want the same Ref", again, err)
	}
	in := make([]Lookup, 200)
	for i := range in {
		in[i] = Lookup{Table: ref, At: i * 1000}
	}
	out, err := fanout.Map(ctx, ex, lookup, in)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range out {
		if b != table[i*1000] {
			t.Fatalf("out[%d] = %d, want %d", i, b, table[i*1000])
		}
	}
	if n := st.refReads.Load(); n != 1 {
		t.Errorf("the shared value was read %d times, want once per worker process", n)
	}
	if err := ex.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Store.Get(ctx, ref.Key); err == nil {
		t.Error("Close left the Put value in the store")
	}
}

func TestRefDamaged(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(nil)
	defer st.Close()
	ex := newLocal(t, nil, &fanout.Options{Store: st})
	ref, err := fanout.Put(ctx, ex, []byte("original content, long enough"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, ref.Key, []byte("tampered")); err != nil {
		t.Fatal(err)
	}
	_, err = fanout.Map(ctx, ex, lookup, []Lookup{{Table: ref}})
	if err == nil || !strings.Contains(err.Error(), "does not match its hash") {
		t.Fatalf("err = %v, want a hash mismatch", err)
	}
	if _, err := (fanout.Ref[int]{}).Get(ctx); err == nil {
		t.Fatal("zero Ref.Get succeeded")
	}
}
