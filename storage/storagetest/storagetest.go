// Package storagetest is the conformance suite that every storage.Store
// driver passes, in the manner of gocloud.dev's drivertest.
//
// A driver's tests call RunConformanceTests with a HarnessMaker:
//
//	func TestConformance(t *testing.T) {
//		storagetest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (storagetest.Harness, error) {
//			return &harness{t: t}, nil
//		})
//	}
//
// Each behaviour of the storage.Store contract is a subtest. Most run in
// parallel on one shared store, each under its own key prefix; the few that
// need a whole store (listing everything, Close) ask the harness for another.
// A run's keys all start with "storagetest-" and a random run ID, so a
// persistent store (a bucket) can be shared by successive runs.
//
// A new behaviour of the contract goes into this suite first.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gowren/gowren/storage"
)

// Harness makes the stores under test.
type Harness interface {
	// MakeStore returns a new store. Stores from different calls must not
	// share objects (a driver for a shared service gives each a fresh
	// prefix), must be empty, and must accept objects of 16 MiB at least.
	// The suite closes every store it makes.
	MakeStore(ctx context.Context) (storage.Store, error)
	// Close releases the harness, after the suite has closed its stores.
	Close()
}

// HarnessMaker makes the Harness of one run of the suite; t is the test
// that runs it.
type HarnessMaker func(ctx context.Context, t *testing.T) (Harness, error)

// MaxObjectSizeHarness is implemented by harnesses that can make a store
// with a cap on object size (see storage.MaxObjectSizer). The suite then
// checks that the cap is enforced.
type MaxObjectSizeHarness interface {
	// MakeStoreWithMaxObjectSize returns a new store, like MakeStore, that
	// refuses objects larger than max bytes.
	MakeStoreWithMaxObjectSize(ctx context.Context, max int64) (storage.Store, error)
}

// PathHarness is implemented by harnesses whose stores keep each key as a
// path of a filesystem, as filestore does: there a key cannot be both an
// object and a prefix, up to a "/", of another object's key ("a" and
// "a/b"), and writing the second of such a pair fails with an error
// wrapping storage.ErrKeyConflict. The suite then checks that rule instead
// of the coexistence S3 and memstore offer, and leaves such pairs out of
// its other tests.
type PathHarness interface {
	// KeysArePaths reports whether the harness's stores follow that rule.
	KeysArePaths() bool
}

// RunConformanceTests runs the suite against the stores of the harness that
// newHarness makes. Run it under -race.
func RunConformanceTests(t *testing.T, newHarness HarnessMaker) {
	t.Helper()
	h, err := newHarness(t.Context(), t)
	if err != nil {
		t.Fatalf("making the harness: %v", err)
	}
	t.Cleanup(h.Close)
	s := &suite{h: h, run: fmt.Sprintf("storagetest-%016x", rand.Uint64())}
	if ph, ok := h.(PathHarness); ok {
		s.paths = ph.KeysArePaths()
	}
	s.shared = s.makeStore(t)

	// Not parallel: it checks that no goroutine is left behind, so nothing
	// else may run meanwhile.
	t.Run("ListBreakLeavesNothing", s.testListBreak)

	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"PutGet", s.testPutGet},
		{"PutCopiesGetCopies", s.testCopies},
		{"EmptyObject", s.testEmpty},
		{"BinaryData", s.testBinary},
		{"NotFound", s.testNotFound},
		{"GetRange", s.testGetRange},
		{"NewReaderRange", s.testNewReaderRange},
		{"NewReaderStreaming", s.testNewReaderStreaming},
		{"NewReaderSeesOneVersion", s.testNewReaderOneVersion},
		{"NewReaderCancel", s.testNewReaderCancel},
		{"WriterVisibleOnClose", s.testWriterVisibleOnClose},
		{"WriterReplaces", s.testWriterReplaces},
		{"WriterCancelled", s.testWriterCancelled},
		{"WriterManyWrites", s.testWriterManyWrites},
		{"ListOrder", s.testListOrder},
		{"ListPrefix", s.testListPrefix},
		{"ListPagination", s.testListPagination},
		{"ListEmptyPrefix", s.testListEmptyPrefix},
		{"ListSizes", s.testListSizes},
		{"ListWhileChanging", s.testListWhileChanging},
		{"ListInvalidPrefix", s.testListInvalidPrefix},
		{"ListAfter", s.testListAfter},
		{keyAndPrefixName(s.paths), s.testKeyAndPrefix},
		{"UnusualKeys", s.testUnusualKeys},
		{"LongestKey", s.testLongestKey},
		{"Delete", s.testDelete},
		{"DeleteMany", s.testDeleteMany},
		{"InvalidKeys", s.testInvalidKeys},
		{"URL", s.testURL},
		{"Concurrency", s.testConcurrency},
		{"Cancelled", s.testCancelled},
		{"ListCancelledMidway", s.testListCancelledMidway},
		{"DeadlineExceeded", s.testDeadline},
		{"Closed", s.testClosed},
		{"MaxObjectSize", s.testMaxObjectSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t)
		})
	}
}

func keyAndPrefixName(paths bool) string {
	if paths {
		return "KeyAndPrefixConflict"
	}
	return "KeyAndPrefixCoexist"
}

type suite struct {
	h      Harness
	run    string
	shared storage.Store
	paths  bool // keys are paths (see PathHarness)
}

// coexisting returns keys less, when the store's keys are paths, each key
// that is a prefix up to a "/" of another of them: the keys that a store of
// either kind holds together.
func (s *suite) coexisting(keys []string) []string {
	if !s.paths {
		return keys
	}
	dirs := map[string]bool{}
	for _, k := range keys {
		for i := range len(k) {
			if k[i] == '/' {
				dirs[k[:i]] = true
			}
		}
	}
	var out []string
	for _, k := range keys {
		if !dirs[k] {
			out = append(out, k)
		}
	}
	return out
}

// makeStore returns a new store from the harness, closed when t ends.
func (s *suite) makeStore(t *testing.T) storage.Store {
	t.Helper()
	st, err := s.h.MakeStore(t.Context())
	if err != nil {
		t.Fatalf("MakeStore: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// prefix returns a key prefix, ending in "/", that belongs to t alone.
func (s *suite) prefix(t *testing.T) string {
	segs := strings.Split(t.Name(), "/")
	for i, seg := range segs {
		seg = strings.Map(func(r rune) rune {
			if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' {
				return r
			}
			return '_'
		}, seg)
		if seg == "" {
			seg = "_"
		}
		segs[i] = seg
	}
	return s.run + "/" + strings.Join(segs, "/") + "/"
}

// randBytes returns n pseudo-random bytes, the same for the same seed.
func randBytes(n int, seed uint64) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24), byte(seed >> 32)})
	b := make([]byte, n)
	r.Read(b)
	return b
}

func mustPut(t *testing.T, st storage.Store, key string, data []byte) {
	t.Helper()
	if err := st.Put(t.Context(), key, data); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func mustGet(t *testing.T, st storage.Store, key string) []byte {
	t.Helper()
	b, err := st.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return b
}

func wantContent(t *testing.T, st storage.Store, key string, want []byte) {
	t.Helper()
	got := mustGet(t, st, key)
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %s, want %s", key, show(got), show(want))
	}
}

func wantNotFound(t *testing.T, st storage.Store, key string) {
	t.Helper()
	b, err := st.Get(t.Context(), key)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get(%q) = %s, %v; want an error wrapping ErrNotFound", key, show(b), err)
	}
}

// show abbreviates data for a message.
func show(b []byte) string {
	if len(b) <= 64 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q... (%d bytes)", b[:64], len(b))
}

func listInfos(t *testing.T, st storage.Store, prefix string) []storage.ObjectInfo {
	t.Helper()
	var infos []storage.ObjectInfo
	for info, err := range st.List(t.Context(), prefix) {
		if err != nil {
			t.Fatalf("List(%q) after %d objects: %v", prefix, len(infos), err)
		}
		infos = append(infos, info)
	}
	return infos
}

func listKeys(t *testing.T, st storage.Store, prefix string) []string {
	t.Helper()
	var keys []string
	for _, info := range listInfos(t, st, prefix) {
		keys = append(keys, info.Key)
	}
	return keys
}

// wantKeys checks that got equals want, reporting the first difference.
func wantKeys(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Fatalf("%s: key %d is %q, want %q (got %d keys, want %d)", what, i, got[i], want[i], len(got), len(want))
		}
	}
	if len(got) > len(want) {
		t.Fatalf("%s: %d keys, want %d; first extra: %q", what, len(got), len(want), got[len(want)])
	}
	t.Fatalf("%s: %d keys, want %d; first missing: %q", what, len(got), len(want), want[len(got)])
}

func sorted(keys []string) []string {
	keys = slices.Clone(keys)
	sort.Strings(keys) // byte order
	return keys
}

// putMany puts data(i) under keys[i], from several goroutines.
func putMany(t *testing.T, st storage.Store, keys []string, data func(i int) []byte) {
	t.Helper()
	const workers = 16
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := st.Put(t.Context(), keys[i], data(i)); err != nil {
					t.Errorf("Put(%q): %v", keys[i], err)
				}
			}
		})
	}
	for i := range keys {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

func readAll(t *testing.T, st storage.Store, key string, offset, length int64) ([]byte, error) {
	t.Helper()
	r, err := st.NewReader(t.Context(), key, offset, length)
	if err != nil {
		if r != nil {
			t.Errorf("NewReader(%q) returned a reader with error %v", key, err)
		}
		return nil, err
	}
	defer func() {
		if err := r.Close(); err != nil {
			t.Errorf("closing the reader of %q: %v", key, err)
		}
	}()
	return io.ReadAll(r)
}

func writeObject(ctx context.Context, st storage.Store, key string, parts ...[]byte) error {
	w, err := st.NewWriter(ctx, key)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

func (s *suite) testPutGet(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	for _, key := range []string{p + "k", p + "a/b/c/d/e/f", p + "x.json"} {
		mustPut(t, st, key, []byte("first "+key))
		wantContent(t, st, key, []byte("first "+key))
		// Overwrite with a shorter, then a longer object.
		mustPut(t, st, key, []byte("2"))
		wantContent(t, st, key, []byte("2"))
		long := bytes.Repeat([]byte("third"), 1000)
		mustPut(t, st, key, long)
		wantContent(t, st, key, long)
	}
	wantKeys(t, "List", listKeys(t, st, p), []string{p + "a/b/c/d/e/f", p + "k", p + "x.json"})
}

func (s *suite) testCopies(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	data := []byte("original")
	mustPut(t, st, p+"k", data)
	copy(data, "CHANGED!")
	wantContent(t, st, p+"k", []byte("original"))

	got := mustGet(t, st, p+"k")
	copy(got, "CHANGED!")
	wantContent(t, st, p+"k", []byte("original"))

	got, err := st.GetRange(t.Context(), p+"k", 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	copy(got, "XXXX")
	wantContent(t, st, p+"k", []byte("original"))
}

func (s *suite) testEmpty(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		data []byte
	}{{"nil", nil}, {"empty", []byte{}}} {
		t.Run(tc.name, func(t *testing.T) {
			key := p + tc.name
			mustPut(t, st, key, tc.data)
			if got := mustGet(t, st, key); len(got) != 0 {
				t.Fatalf("Get = %s, want empty", show(got))
			}
			for _, length := range []int64{-1, 0, 10} {
				got, err := st.GetRange(ctx, key, 0, length)
				if err != nil || len(got) != 0 {
					t.Errorf("GetRange(0, %d) = %s, %v; want empty", length, show(got), err)
				}
			}
			if _, err := st.GetRange(ctx, key, 1, -1); !errors.Is(err, storage.ErrInvalidRange) {
				t.Errorf("GetRange(1, -1) error = %v, want ErrInvalidRange", err)
			}
			got, err := readAll(t, st, key, 0, -1)
			if err != nil || len(got) != 0 {
				t.Errorf("NewReader(0, -1) read %s, %v; want empty", show(got), err)
			}
			infos := listInfos(t, st, key)
			if len(infos) != 1 || infos[0].Key != key || infos[0].Size != 0 {
				t.Errorf("List(%q) = %+v, want one object of size 0", key, infos)
			}
		})
	}
	t.Run("writer", func(t *testing.T) {
		key := p + "writer"
		if err := writeObject(ctx, st, key); err != nil {
			t.Fatalf("NewWriter with no Write: %v", err)
		}
		if got := mustGet(t, st, key); len(got) != 0 {
			t.Fatalf("Get = %s, want empty", show(got))
		}
	})
}

func (s *suite) testBinary(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	var all []byte
	for i := range 1024 {
		all = append(all, byte(i), byte(255-i%256))
	}
	cases := map[string][]byte{
		"all-bytes":  all,
		"crlf-nul":   []byte("a\r\nb\x00\x00\nc\r\x1a\xff\xfe"),
		"random":     randBytes(1<<20+3, 1),
		"utf8-bom":   []byte("\xef\xbb\xbfhello"),
		"not-utf8":   []byte{0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1},
		"single-nul": {0},
	}
	for name, data := range cases {
		mustPut(t, st, p+"put/"+name, data)
		wantContent(t, st, p+"put/"+name, data)
		if err := writeObject(t.Context(), st, p+"writer/"+name, data); err != nil {
			t.Fatalf("writing %s: %v", name, err)
		}
		wantContent(t, st, p+"writer/"+name, data)
		got, err := readAll(t, st, p+"put/"+name, 0, -1)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("NewReader(%s) read %s, %v; want %s", name, show(got), err, show(data))
		}
	}
}

func (s *suite) testNotFound(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	ctx := t.Context()
	mustPut(t, st, p+"file", []byte("x"))
	mustPut(t, st, p+"dir/obj", []byte("y"))
	for _, key := range []string{
		p + "missing",
		p + "file/below",  // below an object
		p + "dir",         // a prefix of an object
		p + "dir/obj/sub", // below an object, deeper
		p + "fil",         // a prefix of an object's name
		p + "deep/missing/dir/k",
	} {
		if b, err := st.Get(ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(%q) = %s, %v; want ErrNotFound", key, show(b), err)
		}
		if b, err := st.GetRange(ctx, key, 0, -1); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetRange(%q) = %s, %v; want ErrNotFound", key, show(b), err)
		}
		r, err := st.NewReader(ctx, key, 0, -1)
		if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("NewReader(%q) error = %v, want ErrNotFound from NewReader itself", key, err)
		}
		if r != nil {
			r.Close()
		}
	}
	if err := st.Delete(ctx, p+"file"); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, st, p+"file")
	wantContent(t, st, p+"dir/obj", []byte("y"))
}

var rangeCases = []struct {
	name           string
	offset, length int64
	want           string
	err            error
}{
	{"whole", 0, -1, "0123456789", nil},
	{"whole exact length", 0, 10, "0123456789", nil},
	{"length past end", 0, 100, "0123456789", nil},
	{"largest length", 2, math.MaxInt64, "23456789", nil},
	{"middle", 3, 4, "3456", nil},
	{"truncated at end", 7, 10, "789", nil},
	{"last byte", 9, 1, "9", nil},
	{"first byte", 0, 1, "0", nil},
	{"zero length", 4, 0, "", nil},
	{"to end from middle", 6, -1, "6789", nil},
	{"other negative length", 6, -7, "6789", nil},
	{"offset at end", 10, -1, "", nil},
	{"offset at end with length", 10, 5, "", nil},
	{"offset past end", 11, -1, "", storage.ErrInvalidRange},
	{"offset past end with length", 11, 1, "", storage.ErrInvalidRange},
	{"offset far past end", 1 << 40, 1, "", storage.ErrInvalidRange},
	{"negative offset", -1, 5, "", storage.ErrInvalidRange},
	{"negative offset to end", -3, -1, "", storage.ErrInvalidRange},
}

func (s *suite) testGetRange(t *testing.T) {
	st, key := s.shared, s.prefix(t)+"digits"
	mustPut(t, st, key, []byte("0123456789"))
	for _, tc := range rangeCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.GetRange(t.Context(), key, tc.offset, tc.length)
			switch {
			case tc.err != nil && !errors.Is(err, tc.err):
				t.Fatalf("GetRange(%d, %d) = %s, %v; want error %v", tc.offset, tc.length, show(got), err, tc.err)
			case tc.err == nil && err != nil:
				t.Fatalf("GetRange(%d, %d) error: %v", tc.offset, tc.length, err)
			case tc.err == nil && string(got) != tc.want:
				t.Fatalf("GetRange(%d, %d) = %q, want %q", tc.offset, tc.length, got, tc.want)
			}
		})
	}
}

func (s *suite) testNewReaderRange(t *testing.T) {
	st, key := s.shared, s.prefix(t)+"digits"
	mustPut(t, st, key, []byte("0123456789"))
	for _, tc := range rangeCases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := st.NewReader(t.Context(), key, tc.offset, tc.length)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("NewReader(%d, %d) error = %v, want %v from NewReader itself", tc.offset, tc.length, err, tc.err)
				}
				if r != nil {
					t.Errorf("NewReader returned a reader with its error")
				}
				return
			}
			if err != nil {
				t.Fatalf("NewReader(%d, %d): %v", tc.offset, tc.length, err)
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err != nil || string(got) != tc.want {
				t.Fatalf("NewReader(%d, %d) read %q, %v; want %q", tc.offset, tc.length, got, err, tc.want)
			}
			if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Errorf("Read after the end = %d, %v; want 0, io.EOF", n, err)
			}
		})
	}
}

func (s *suite) testNewReaderStreaming(t *testing.T) {
	st, key := s.shared, s.prefix(t)+"big"
	data := randBytes(8<<20+13, 2)
	mustPut(t, st, key, data)
	for _, tc := range []struct {
		name           string
		offset, length int64
	}{
		{"whole", 0, -1},
		{"range", 3<<20 + 5, 2<<20 + 7},
		{"tail", 8<<20 - 1, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := st.NewReader(t.Context(), key, tc.offset, tc.length)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			end := int64(len(data))
			if tc.length >= 0 {
				end = tc.offset + tc.length
			}
			want := data[tc.offset:end]
			// Read through small, odd-sized buffers.
			var got bytes.Buffer
			if _, err := io.CopyBuffer(struct{ io.Writer }{&got}, struct{ io.Reader }{r}, make([]byte, 7777)); err != nil {
				t.Fatalf("reading: %v", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("read %d bytes, want %d; equal: %v", got.Len(), len(want), bytes.Equal(got.Bytes(), want))
			}
		})
	}
	t.Run("interleaved", func(t *testing.T) {
		r1, err := st.NewReader(t.Context(), key, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer r1.Close()
		r2, err := st.NewReader(t.Context(), key, 1<<20, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer r2.Close()
		b1, b2 := make([]byte, 1000), make([]byte, 1000)
		for i := range 50 {
			if _, err := io.ReadFull(r1, b1); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(r2, b2); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b1, data[i*1000:(i+1)*1000]) || !bytes.Equal(b2, data[1<<20+i*1000:1<<20+(i+1)*1000]) {
				t.Fatalf("interleaved readers read wrong data at chunk %d", i)
			}
		}
	})
}

// testNewReaderOneVersion: objects are immutable, so a reader sees the
// object as it was when it was opened, or fails; never a mix of versions.
func (s *suite) testNewReaderOneVersion(t *testing.T) {
	st, key := s.shared, s.prefix(t)+"k"
	old := bytes.Repeat([]byte{'o'}, 2<<20)
	mustPut(t, st, key, old)
	r, err := st.NewReader(t.Context(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 1000)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	mustPut(t, st, key, bytes.Repeat([]byte{'n'}, 3<<20))
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Logf("reading on after the object was replaced failed (allowed): %v", err)
		return
	}
	if got := append(head, rest...); !bytes.Equal(got, old) {
		t.Fatalf("reader opened before a Put read %d bytes, not the old object whole (%d bytes of 'o')", len(got), len(old))
	}
}

func (s *suite) testNewReaderCancel(t *testing.T) {
	st, key := s.shared, s.prefix(t)+"big"
	mustPut(t, st, key, randBytes(4<<20, 3))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r, err := st.NewReader(ctx, key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := io.ReadFull(r, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	cancel()
	n, err := io.Copy(io.Discard, r)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("reading after cancel: %d bytes, error %v; want an error wrapping context.Canceled", n, err)
	}
}

func (s *suite) testWriterVisibleOnClose(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	key := p + "streamed"
	w, err := st.NewWriter(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("part1 ")); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, st, key)
	if keys := listKeys(t, st, p); len(keys) != 0 {
		t.Fatalf("List during the write = %q, want nothing", keys)
	}
	if _, err := w.Write([]byte("part2")); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, st, key)
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantContent(t, st, key, []byte("part1 part2"))
	infos := listInfos(t, st, p)
	if len(infos) != 1 || infos[0].Key != key || infos[0].Size != 11 {
		t.Fatalf("List after Close = %+v, want %q of 11 bytes", infos, key)
	}
	if _, err := w.Write([]byte("more")); err == nil {
		t.Errorf("Write after Close succeeded")
	}
	wantContent(t, st, key, []byte("part1 part2"))
}

func (s *suite) testWriterReplaces(t *testing.T) {
	st, key := s.shared, s.prefix(t)+"k"
	mustPut(t, st, key, []byte("old"))
	w, err := st.NewWriter(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("new content")); err != nil {
		t.Fatal(err)
	}
	wantContent(t, st, key, []byte("old"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wantContent(t, st, key, []byte("new content"))
}

func (s *suite) testWriterCancelled(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	for _, tc := range []struct {
		name       string
		existing   []byte // nil: no object before
		write      bool   // write before cancelling
		writeAfter bool   // write after cancelling, before Close
	}{
		{"new key", nil, true, true},
		{"existing key", []byte("keep me"), true, true},
		{"nothing written", nil, false, true},
		{"close right after cancel", nil, true, false},
		{"close right after cancel over existing", []byte("keep me"), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := p + strings.ReplaceAll(tc.name, " ", "-")
			if tc.existing != nil {
				mustPut(t, st, key, tc.existing)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			w, err := st.NewWriter(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if tc.write {
				if _, err := w.Write(randBytes(100<<10, 4)); err != nil {
					t.Fatal(err)
				}
			}
			cancel()
			if tc.writeAfter {
				if _, err := w.Write([]byte("after cancel")); err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("Write after cancel: %v; want nil or context.Canceled", err)
				}
			}
			if err := w.Close(); !errors.Is(err, context.Canceled) {
				t.Fatalf("Close after cancel = %v, want an error wrapping context.Canceled", err)
			}
			if tc.existing != nil {
				wantContent(t, st, key, tc.existing)
			} else {
				wantNotFound(t, st, key)
			}
			var want []string
			if tc.existing != nil {
				want = []string{key}
			}
			wantKeys(t, "List", listKeys(t, st, key), want)
		})
	}
}

func (s *suite) testWriterManyWrites(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	var parts [][]byte
	var want []byte
	for i := range 5000 {
		part := []byte(fmt.Sprintf("%d,", i))
		parts = append(parts, part)
		want = append(want, part...)
	}
	big := randBytes(3<<20+1, 5)
	parts = append(parts, big, nil, []byte("end"))
	want = append(want, big...)
	want = append(want, "end"...)
	if err := writeObject(t.Context(), st, p+"k", parts...); err != nil {
		t.Fatal(err)
	}
	wantContent(t, st, p+"k", want)

	// io.Copy from another object's reader.
	r, err := st.NewReader(t.Context(), p+"k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := st.NewWriter(t.Context(), p+"copy")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, r); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wantContent(t, st, p+"copy", want)
}

// orderKeys are valid keys whose byte order differs from the order of a
// naive walk of a directory tree, or that need escaping somewhere.
var orderKeys = []string{
	"a", "a-b", "a/b", "a.b", "a/b/c", "a/b-c", "a/b.c", "a/b0", "a0", "ab", "a b", "a~", "a%", "a%25",
	"a%2F", "a:b", "a!", "A", "B", "Z", "_", "é", "e", "ü/x", "z", "a/c", "a-", "a.", "a..", "b/a",
	"b-a", "b.a", "b0", "b", "b/a/b", "b/a-b", "b/a.b", "~", "%", "%tmp-0", "0", "9/x", "+", "日本",
}

func (s *suite) testListOrder(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	var keys []string
	for _, k := range s.coexisting(orderKeys) {
		keys = append(keys, p+k)
	}
	shuffled := slices.Clone(keys)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, k := range shuffled {
		mustPut(t, st, k, []byte(k))
	}
	infos := listInfos(t, st, p)
	var got []string
	for _, info := range infos {
		got = append(got, info.Key)
		if info.Size != int64(len(info.Key)) {
			t.Errorf("List: %q has size %d, want %d", info.Key, info.Size, len(info.Key))
		}
	}
	wantKeys(t, "List (ascending byte order)", got, sorted(keys))
}

func (s *suite) testListPrefix(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	rel := s.coexisting([]string{
		"a", "a/a", "a/b", "a/bc", "a/b/c", "a/b/c/d", "a/c", "a-b", "ab", "b/x",
		"x:1", "x:2", "x%", "x%3A", "x%3", "sp ace/1", "sp ace2",
	})
	for _, k := range rel {
		mustPut(t, st, p+k, []byte(k))
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", rel},
		{"a", []string{"a", "a-b", "a/a", "a/b", "a/b/c", "a/b/c/d", "a/bc", "a/c", "ab"}},
		{"a/", []string{"a/a", "a/b", "a/b/c", "a/b/c/d", "a/bc", "a/c"}},
		{"a/b", []string{"a/b", "a/b/c", "a/b/c/d", "a/bc"}},
		{"a/b/", []string{"a/b/c", "a/b/c/d"}},
		{"a/b/c", []string{"a/b/c", "a/b/c/d"}},
		{"a/b/c/d", []string{"a/b/c/d"}},
		{"a/b/c/d/", nil},
		{"a/bc", []string{"a/bc"}},
		{"a/bc/", nil},
		{"a/z", nil},
		{"zz/", nil},
		{"zz/y/", nil},
		{"a-", []string{"a-b"}},
		{"b", []string{"b/x"}},
		{"x:", []string{"x:1", "x:2"}},
		{"x%", []string{"x%", "x%3", "x%3A"}},
		{"x%3", []string{"x%3", "x%3A"}},
		{"sp", []string{"sp ace/1", "sp ace2"}},
		{"sp ace/", []string{"sp ace/1"}},
		{".", nil},
		{"..", nil},
	} {
		var want []string
		for _, k := range tc.want {
			if slices.Contains(rel, k) {
				want = append(want, p+k)
			}
		}
		wantKeys(t, fmt.Sprintf("List(%q)", p+tc.prefix), listKeys(t, st, p+tc.prefix), sorted(want))
	}
}

func (s *suite) testListPagination(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	var keys []string
	for i := range 2600 {
		keys = append(keys, fmt.Sprintf("%sk%04d", p, i))
		if i%10 == 0 {
			keys = append(keys, fmt.Sprintf("%sk%04d/sub", p, i))
		}
	}
	keys = s.coexisting(keys)
	putMany(t, st, keys, func(i int) []byte { return []byte(keys[i][len(p):]) })
	infos := listInfos(t, st, p)
	var got []string
	for _, info := range infos {
		got = append(got, info.Key)
		if want := int64(len(info.Key) - len(p)); info.Size != want {
			t.Fatalf("List: %q has size %d, want %d", info.Key, info.Size, want)
		}
	}
	wantKeys(t, "List", got, sorted(keys))

	// A prefix whose objects span page boundaries.
	var want []string
	for _, k := range keys {
		if strings.HasPrefix(k, p+"k1") {
			want = append(want, k)
		}
	}
	wantKeys(t, "List(k1)", listKeys(t, st, p+"k1"), sorted(want))
}

func (s *suite) testListEmptyPrefix(t *testing.T) {
	st := s.makeStore(t)
	if keys := listKeys(t, st, ""); len(keys) != 0 {
		t.Fatalf("List(\"\") of a new store = %q, want nothing", keys)
	}
	keys := s.coexisting([]string{"top", "a/b/c", "a/b", "a-b", "z/z/z/z", "m/n", "0"})
	for _, k := range keys {
		mustPut(t, st, k, []byte(k))
	}
	wantKeys(t, `List("")`, listKeys(t, st, ""), sorted(keys))
}

func (s *suite) testListSizes(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	sizes := []int{0, 1, 2, 1000, 64<<10 + 1, 1 << 20}
	before := time.Now()
	for i, n := range sizes {
		mustPut(t, st, fmt.Sprintf("%s%02d", p, i), randBytes(n, uint64(i)))
	}
	after := time.Now()
	infos := listInfos(t, st, p)
	if len(infos) != len(sizes) {
		t.Fatalf("List found %d objects, want %d", len(infos), len(sizes))
	}
	for i, info := range infos {
		if info.Size != int64(sizes[i]) {
			t.Errorf("List: %q has size %d, want %d", info.Key, info.Size, sizes[i])
		}
		// Clocks of remote stores may drift: allow an hour.
		if info.ModTime.Before(before.Add(-time.Hour)) || info.ModTime.After(after.Add(time.Hour)) {
			t.Errorf("List: %q has ModTime %v, want about %v", info.Key, info.ModTime, before)
		}
	}
	// Overwriting changes the size.
	mustPut(t, st, p+"00", []byte("now 7 b"))
	infos = listInfos(t, st, p+"00")
	if len(infos) != 1 || infos[0].Size != 7 {
		t.Fatalf("List after overwrite = %+v, want size 7", infos)
	}
}

func (s *suite) testListWhileChanging(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	for i := range 20 {
		mustPut(t, st, fmt.Sprintf("%sk%02d", p, i), []byte("x"))
	}
	n := 0
	for info, err := range st.List(t.Context(), p) {
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		n++
		// The loop body may use the store, including the listed prefix.
		if err := st.Put(t.Context(), p+"new/"+info.Key[len(p):], []byte("y")); err != nil {
			t.Fatalf("Put during List: %v", err)
		}
		if err := st.Delete(t.Context(), info.Key); err != nil {
			t.Fatalf("Delete during List: %v", err)
		}
		if _, err := st.Get(t.Context(), info.Key); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get of a key deleted during List: %v, want ErrNotFound", err)
		}
		for _, err := range st.List(t.Context(), p+"new/") {
			if err != nil {
				t.Fatalf("nested List: %v", err)
			}
		}
		if n > 100 {
			t.Fatalf("List does not end while its prefix changes")
		}
	}
	if n < 20 {
		t.Fatalf("List yielded %d objects, want the 20 that were there all along", n)
	}
	if keys := listKeys(t, st, p+"new/"); len(keys) != 20 {
		t.Fatalf("List(new/) found %d objects, want 20", len(keys))
	}
}

// testListBreak: stopping a List early stops it cleanly, leaves no
// goroutine behind, and leaves the store usable.
func (s *suite) testListBreak(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	var keys []string
	for i := range 30 {
		keys = append(keys, fmt.Sprintf("%s%c/k%02d", p, 'a'+i%3, i))
	}
	putMany(t, st, keys, func(i int) []byte { return []byte{byte(i)} })
	ignore := goleak.IgnoreCurrent()
	for _, stopAt := range []int{1, 3, 11, 29} {
		n := 0
		for _, err := range st.List(t.Context(), p) {
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			n++
			if n == stopAt {
				break
			}
		}
		if n != stopAt {
			t.Fatalf("List stopped after %d objects, want %d", n, stopAt)
		}
	}
	// Break out of nested iterations.
outer:
	for _, err := range st.List(t.Context(), p+"a/") {
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range st.List(t.Context(), p+"b/") {
			if err != nil {
				t.Fatal(err)
			}
			break outer
		}
	}
	mustPut(t, st, p+"after", []byte("ok"))
	if err := st.Delete(t.Context(), p+"after"); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "List after breaks", listKeys(t, st, p), sorted(keys))
	goleak.VerifyNone(t, ignore,
		// Idle keep-alive connections of an HTTP client are not leaks.
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	)
}

var badPrefixes = []string{"/", "/a", "a//", "a//b", "a\\", "a\x00", "a\n", "\xff", "../", "a/../", "./", "a/./"}

func (s *suite) testListInvalidPrefix(t *testing.T) {
	st := s.shared
	for _, prefix := range badPrefixes {
		n := 0
		for info, err := range st.List(t.Context(), prefix) {
			n++
			if !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("List(%q) yielded %+v, %v; want an error wrapping ErrInvalidKey", prefix, info, err)
			}
			if info != (storage.ObjectInfo{}) {
				t.Errorf("List(%q) yielded its error with %+v, want a zero ObjectInfo", prefix, info)
			}
		}
		if n != 1 {
			t.Errorf("List(%q) yielded %d times, want once (the error)", prefix, n)
		}
	}
}

func (s *suite) testKeyAndPrefix(t *testing.T) {
	if s.paths {
		s.testKeyPrefixConflict(t)
		return
	}
	st, p := s.shared, s.prefix(t)
	objs := map[string]string{"a": "1", "a/b": "2", "a/b/c": "3", "a-": "4"}
	for k, v := range objs {
		mustPut(t, st, p+k, []byte(v))
	}
	for k, v := range objs {
		wantContent(t, st, p+k, []byte(v))
	}
	wantKeys(t, "List", listKeys(t, st, p), []string{p + "a", p + "a-", p + "a/b", p + "a/b/c"})
	if err := st.Delete(t.Context(), p+"a/b"); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, st, p+"a/b")
	wantContent(t, st, p+"a", []byte("1"))
	wantContent(t, st, p+"a/b/c", []byte("3"))
	if err := st.Delete(t.Context(), p+"a"); err != nil {
		t.Fatal(err)
	}
	wantContent(t, st, p+"a/b/c", []byte("3"))
	wantKeys(t, "List after deletes", listKeys(t, st, p), []string{p + "a-", p + "a/b/c"})
	mustPut(t, st, p+"a/b", []byte("5"))
	mustPut(t, st, p+"a", []byte("6"))
	wantKeys(t, "List after puts", listKeys(t, st, p), []string{p + "a", p + "a-", p + "a/b", p + "a/b/c"})
	wantContent(t, st, p+"a", []byte("6"))
}

// testKeyPrefixConflict: on a store whose keys are paths, a key cannot be
// both an object and a prefix up to a "/" of another; writing one fails
// with ErrKeyConflict, names the other key and changes nothing, and once
// the other is deleted the key can be written.
func (s *suite) testKeyPrefixConflict(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	ctx := t.Context()
	wantConflict := func(what, key, other string, err error) {
		t.Helper()
		if !errors.Is(err, storage.ErrKeyConflict) {
			t.Errorf("%s(%q) with the object %q: %v, want an error wrapping ErrKeyConflict", what, key, other, err)
		} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", other)) {
			t.Errorf("%s(%q): the error %q does not name %q", what, key, err, other)
		}
	}
	mustPut(t, st, p+"a", []byte("1"))
	mustPut(t, st, p+"d/e/f", []byte("2"))
	for _, tc := range []struct{ key, other string }{
		{"a/b", "a"}, {"a/b/c", "a"}, // below an object
		{"d", "d/e/f"}, {"d/e", "d/e/f"}, // above an object
	} {
		key, other := p+tc.key, p+tc.other
		wantConflict("Put", key, other, st.Put(ctx, key, []byte("x")))
		wantConflict("NewWriter or Close", key, other, writeObject(ctx, st, key, []byte("x")))
		wantNotFound(t, st, key)
	}
	wantContent(t, st, p+"a", []byte("1"))
	wantContent(t, st, p+"d/e/f", []byte("2"))
	wantKeys(t, "List after refused writes", listKeys(t, st, p), []string{p + "a", p + "d/e/f"})

	// Deleting a prefix deletes nothing.
	if err := st.Delete(ctx, p+"d", p+"d/e"); err != nil {
		t.Fatalf("Delete of prefixes: %v", err)
	}
	wantContent(t, st, p+"d/e/f", []byte("2"))

	// Once the other object is gone, the key can be written.
	if err := st.Delete(ctx, p+"a", p+"d/e/f"); err != nil {
		t.Fatal(err)
	}
	mustPut(t, st, p+"a/b", []byte("3"))
	if err := writeObject(ctx, st, p+"d/e", []byte("4")); err != nil {
		t.Fatalf("writing %q after deleting %q: %v", p+"d/e", p+"d/e/f", err)
	}
	wantContent(t, st, p+"a/b", []byte("3"))
	wantContent(t, st, p+"d/e", []byte("4"))
	wantKeys(t, "List after the other keys were deleted", listKeys(t, st, p), []string{p + "a/b", p + "d/e"})
}

// unusualKeys are valid keys that a driver might mangle.
var unusualKeys = []string{
	"with space", " leading", "trailing ", "trailing.", "...", "..a", "a..", ".hidden", "%", "%25", "%%", "%tmp-0123456789abcdef",
	"x%", "%x", "%zz", "CON", "nul", "aux.txt", "COM1", "a:b", "q?", "star*", "pipe|", "quote\"", "<>", "'single'", "`cmd`",
	"$HOME", "a=b&c", "#hash", "x+y", "~user", "ünïcödé", "日本語", "emoji 😀", "\u00a0nbsp", "\u0085nel", "\u2028",
	"seg/..x/y", "seg/x../y", "seg/.../y", "dir.d/obj", "UPPER/lower", "upper/LOWER",
}

func (s *suite) testUnusualKeys(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	var keys []string
	for _, k := range unusualKeys {
		if err := storage.ValidateKey(k); err != nil {
			t.Fatalf("test bug: %v", err)
		}
		keys = append(keys, p+k)
	}
	for _, k := range keys {
		mustPut(t, st, k, []byte(k))
	}
	for _, k := range keys {
		wantContent(t, st, k, []byte(k))
	}
	wantKeys(t, "List", listKeys(t, st, p), sorted(keys))
	for _, k := range keys {
		wantKeys(t, fmt.Sprintf("List(%q)", k), listKeys(t, st, k)[:1], []string{k})
	}
	if err := st.Delete(t.Context(), keys...); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "List after Delete", listKeys(t, st, p), nil)
}

func (s *suite) testLongestKey(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	key := p
	for len(key) < storage.MaxKeyLen {
		n := min(100, storage.MaxKeyLen-len(key))
		if key[len(key)-1] != '/' {
			if n < 3 {
				key = key[:len(key)-1] + strings.Repeat("k", n+1)
				continue
			}
			key += "/"
			n--
		}
		key += strings.Repeat("k", n)
	}
	if len(key) != storage.MaxKeyLen || storage.ValidateKey(key) != nil {
		t.Fatalf("test bug: key of %d bytes, %v", len(key), storage.ValidateKey(key))
	}
	mustPut(t, st, key, []byte("long"))
	wantContent(t, st, key, []byte("long"))
	wantKeys(t, "List", listKeys(t, st, p), []string{key})
	if err := writeObject(t.Context(), st, key, []byte("longer")); err != nil {
		t.Fatal(err)
	}
	wantContent(t, st, key, []byte("longer"))
	if err := st.Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, st, key)
}

func (s *suite) testDelete(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	ctx := t.Context()
	// present models the store: where keys are paths "a" and "a/b" are
	// left out, and deleting them (directories then) must change nothing.
	present := map[string]bool{}
	for _, k := range s.coexisting([]string{"a", "a/b", "ab", "a-", "a/b/c"}) {
		mustPut(t, st, p+k, []byte(k))
		present[k] = true
	}
	check := func(what string) {
		t.Helper()
		var want []string
		for k := range present {
			want = append(want, p+k)
		}
		wantKeys(t, what, listKeys(t, st, p), sorted(want))
	}
	if err := st.Delete(ctx); err != nil {
		t.Fatalf("Delete of no keys: %v", err)
	}
	if err := st.Delete(ctx, p+"a"); err != nil {
		t.Fatal(err)
	}
	delete(present, "a")
	wantNotFound(t, st, p+"a")
	check("List after Delete(a)")
	if err := st.Delete(ctx, p+"a"); err != nil {
		t.Fatalf("Delete of a deleted key: %v", err)
	}
	if err := st.Delete(ctx, p+"missing", p+"a/b/c/d", p+"no/such/dir"); err != nil {
		t.Fatalf("Delete of missing keys: %v", err)
	}
	if err := st.Delete(ctx, p+"a/b", p+"missing", p+"a/b", p+"a-"); err != nil {
		t.Fatalf("Delete with missing and repeated keys: %v", err)
	}
	delete(present, "a/b")
	delete(present, "a-")
	check("List after Delete")
	wantContent(t, st, p+"a/b/c", []byte("a/b/c"))
	// A deleted key can be written again.
	again := p + "a/b"
	if s.paths {
		again = p + "a-" // a/b is a directory of a/b/c
	}
	mustPut(t, st, again, []byte("again"))
	wantContent(t, st, again, []byte("again"))
}

func (s *suite) testDeleteMany(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	var keys []string
	for i := range 1234 {
		keys = append(keys, fmt.Sprintf("%sd%d/k%04d", p, i%7, i))
	}
	putMany(t, st, keys, func(i int) []byte { return []byte{byte(i)} })
	mustPut(t, st, p+"keep", []byte("kept"))
	del := slices.Clone(keys)
	del = append(del, p+"missing1", p+"d0/missing2")
	del = append(del, keys[:5]...)
	rand.Shuffle(len(del), func(i, j int) { del[i], del[j] = del[j], del[i] })
	if err := st.Delete(t.Context(), del...); err != nil {
		t.Fatalf("Delete of %d keys: %v", len(del), err)
	}
	wantKeys(t, "List after Delete", listKeys(t, st, p), []string{p + "keep"})
	wantNotFound(t, st, keys[0])
	wantNotFound(t, st, keys[len(keys)-1])
}

// badKeys break the rules of storage.ValidateKey, one each.
var badKeys = []struct{ name, key string }{
	{"empty", ""},
	{"only slash", "/"},
	{"leading slash", "/a"},
	{"trailing slash", "a/"},
	{"empty segment", "a//b"},
	{"dot", "."},
	{"dot dot", ".."},
	{"dot segment", "a/./b"},
	{"dot dot segment", "a/../b"},
	{"leading dot dot", "../a"},
	{"trailing dot dot", "a/.."},
	{"escape", "../../../../../../etc/passwd"},
	{"backslash", `a\b`},
	{"backslash dot dot", `..\a`},
	{"nul", "a\x00b"},
	{"newline", "a\nb"},
	{"tab", "a\tb"},
	{"escape char", "a\x1bb"},
	{"del", "a\x7fb"},
	{"invalid UTF-8", "a\xffb"},
	{"truncated UTF-8", "a\xe6\x97"},
	{"too long", strings.Repeat("k", storage.MaxKeyLen+1)},
	{"too long in segments", strings.Repeat("kkkkkkkkk/", storage.MaxKeyLen/10) + "kkkkk"},
}

func (s *suite) testInvalidKeys(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	mustPut(t, st, p+"valid", []byte("v"))
	for _, tc := range badKeys {
		t.Run(tc.name, func(t *testing.T) {
			ctx, key := t.Context(), tc.key
			if err := storage.ValidateKey(key); !errors.Is(err, storage.ErrInvalidKey) {
				t.Fatalf("test bug: ValidateKey(%q) = %v", key, err)
			}
			want := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, storage.ErrInvalidKey) {
					t.Errorf("%s(%q) error = %v, want an error wrapping ErrInvalidKey", what, key, err)
				}
			}
			want("Put", st.Put(ctx, key, []byte("x")))
			_, err := st.Get(ctx, key)
			want("Get", err)
			_, err = st.GetRange(ctx, key, 0, -1)
			want("GetRange", err)
			r, err := st.NewReader(ctx, key, 0, -1)
			want("NewReader", err)
			if r != nil {
				r.Close()
			}
			w, err := st.NewWriter(ctx, key)
			want("NewWriter", err)
			if w != nil {
				w.Close()
			}
			want("Delete", st.Delete(ctx, key))
			want("Delete among valid keys", st.Delete(ctx, p+"missing", key))
		})
	}
}

func (s *suite) testURL(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	ctx := t.Context()
	raw := st.URL()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("URL() = %q: %v", raw, err)
	}
	if !slices.Contains(storage.Schemes(), u.Scheme) {
		t.Fatalf("URL() = %q: scheme %q not registered (%q)", raw, u.Scheme, storage.Schemes())
	}
	st2, err := storage.Open(ctx, raw)
	if err != nil {
		t.Fatalf("Open(URL()) = %v", err)
	}
	defer st2.Close()
	mustPut(t, st, p+"one", []byte("1"))
	wantContent(t, st2, p+"one", []byte("1"))
	mustPut(t, st2, p+"two", []byte("2"))
	wantContent(t, st, p+"two", []byte("2"))
	wantKeys(t, "List through the URL", listKeys(t, st2, p), []string{p + "one", p + "two"})
	if err := st2.Delete(ctx, p+"one"); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, st, p+"one")

	st3, err := storage.Open(ctx, st2.URL())
	if err != nil {
		t.Fatalf("Open of the reopened store's URL: %v", err)
	}
	wantContent(t, st3, p+"two", []byte("2"))
	// Closing other handles leaves the first one whole.
	if err := st3.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st2.Close(); err != nil {
		t.Fatal(err)
	}
	wantContent(t, st, p+"two", []byte("2"))
	mustPut(t, st, p+"three", []byte("3"))
	wantKeys(t, "List after closing the other handles", listKeys(t, st, p), []string{p + "three", p + "two"})
}

// testConcurrency: many goroutines use distinct keys and one same key at
// once. Run under -race.
func (s *suite) testConcurrency(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	const goroutines = 16
	var wg sync.WaitGroup

	// Distinct keys: each goroutine has its own.
	for g := range goroutines {
		wg.Go(func() {
			ctx := t.Context()
			for i := range 20 {
				key := fmt.Sprintf("%sown/%02d/k%02d", p, g, i)
				data := randBytes(100+i*37, uint64(g*1000+i))
				if err := st.Put(ctx, key, data); err != nil {
					t.Errorf("Put(%q): %v", key, err)
					return
				}
				got, err := st.Get(ctx, key)
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("Get(%q) = %s, %v; want what was put", key, show(got), err)
					return
				}
				found := false
				for info, err := range st.List(ctx, fmt.Sprintf("%sown/%02d/", p, g)) {
					if err != nil {
						t.Errorf("List: %v", err)
						return
					}
					found = found || info.Key == key
				}
				if !found {
					t.Errorf("List does not show %q", key)
				}
				if i%2 == 0 {
					if err := st.Delete(ctx, key); err != nil {
						t.Errorf("Delete(%q): %v", key, err)
					}
				}
			}
		})
	}

	// One key: writers put whole values, readers must see one whole value
	// or none; never a torn or mixed one.
	key := p + "same"
	value := func(g int) []byte { return bytes.Repeat([]byte{byte(g)}, 32<<10+g*1000) }
	check := func(what string, b []byte) {
		if len(b) == 0 {
			t.Errorf("%s: empty value", what)
			return
		}
		g := int(b[0])
		if g >= goroutines || !bytes.Equal(b, value(g)) {
			t.Errorf("%s: torn value of %d bytes starting with %d", what, len(b), g)
		}
	}
	for g := range goroutines {
		wg.Go(func() {
			ctx := t.Context()
			for i := range 10 {
				var err error
				switch i % 3 {
				case 0:
					err = st.Put(ctx, key, value(g))
				case 1:
					v := value(g)
					err = writeObject(ctx, st, key, v[:100], v[100:5000], v[5000:])
				case 2:
					if g%4 == 0 {
						err = st.Delete(ctx, key)
					} else {
						err = st.Put(ctx, key, value(g))
					}
				}
				if err != nil {
					t.Errorf("writing %q: %v", key, err)
				}
			}
		})
		wg.Go(func() {
			ctx := t.Context()
			for range 10 {
				b, err := st.Get(ctx, key)
				switch {
				case errors.Is(err, storage.ErrNotFound):
				case err != nil:
					t.Errorf("Get(%q): %v", key, err)
				default:
					check("Get", b)
				}
				r, err := st.NewReader(ctx, key, 0, -1)
				switch {
				case errors.Is(err, storage.ErrNotFound):
				case err != nil:
					t.Errorf("NewReader(%q): %v", key, err)
				default:
					b, err := io.ReadAll(r)
					r.Close()
					if err != nil {
						t.Errorf("reading %q: %v", key, err)
					} else {
						check("NewReader", b)
					}
				}
				for info, err := range st.List(ctx, key) {
					if err != nil {
						t.Errorf("List(%q): %v", key, err)
						break
					}
					if g := (info.Size - 32<<10) / 1000; info.Size < 32<<10 || g >= goroutines || info.Size != int64(len(value(int(g)))) {
						t.Errorf("List(%q): size %d is no value's", key, info.Size)
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// The survivors are consistent.
	var want []string
	for g := range goroutines {
		for i := 1; i < 20; i += 2 {
			want = append(want, fmt.Sprintf("%sown/%02d/k%02d", p, g, i))
		}
	}
	wantKeys(t, "List of the distinct keys", listKeys(t, st, p+"own/"), sorted(want))
	if b, err := st.Get(t.Context(), key); err == nil {
		check("final Get", b)
	} else if !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
}

// testCancelled: with a cancelled context every method fails with an
// error wrapping context.Canceled, and stores nothing.
func (s *suite) testCancelled(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	mustPut(t, st, p+"exists", []byte("x"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	want := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want an error wrapping context.Canceled", what, err)
		}
	}
	want("Put", st.Put(ctx, p+"new", []byte("x")))
	wantNotFound(t, st, p+"new")
	want("Put of an existing key", st.Put(ctx, p+"exists", []byte("y")))
	wantContent(t, st, p+"exists", []byte("x"))
	_, err := st.Get(ctx, p+"exists")
	want("Get", err)
	_, err = st.GetRange(ctx, p+"exists", 0, -1)
	want("GetRange", err)
	r, err := st.NewReader(ctx, p+"exists", 0, -1)
	want("NewReader", err)
	if r != nil {
		r.Close()
	}
	// NewWriter may fail at once, or at Write or Close.
	if w, err := st.NewWriter(ctx, p+"new"); err != nil {
		want("NewWriter", err)
	} else {
		w.Write([]byte("x"))
		want("Close of a writer made with a cancelled context", w.Close())
	}
	wantNotFound(t, st, p+"new")
	want("Delete", st.Delete(ctx, p+"exists"))
	n := 0
	for info, err := range st.List(ctx, p) {
		n++
		want("List", err)
		if info != (storage.ObjectInfo{}) {
			t.Errorf("List yielded its error with %+v, want a zero ObjectInfo", info)
		}
	}
	if n != 1 {
		t.Errorf("List with a cancelled context yielded %d times, want once (the error)", n)
	}
}

// testListCancelledMidway: once ctx is cancelled, the next thing List
// yields is the error, and then nothing.
func (s *suite) testListCancelledMidway(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	var keys []string
	for i := range 30 {
		keys = append(keys, fmt.Sprintf("%s%c/k%02d", p, 'a'+i%3, i))
	}
	putMany(t, st, keys, func(i int) []byte { return []byte{byte(i)} })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var n, errs int
	for info, err := range st.List(ctx, p) {
		if err != nil {
			errs++
			if !errors.Is(err, context.Canceled) {
				t.Errorf("List error after cancel: %v, want an error wrapping context.Canceled", err)
			}
			if info != (storage.ObjectInfo{}) {
				t.Errorf("List yielded its error with %+v, want a zero ObjectInfo", info)
			}
			continue
		}
		if errs > 0 {
			t.Fatalf("List yielded %q after its error", info.Key)
		}
		n++
		if n == 5 {
			cancel()
		} else if n > 5 {
			t.Fatalf("List yielded %q after its context was cancelled", info.Key)
		}
	}
	if n != 5 || errs != 1 {
		t.Fatalf("List yielded %d objects and %d errors, want 5 and then 1 error", n, errs)
	}
}

func (s *suite) testDeadline(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	mustPut(t, st, p+"exists", []byte("x"))
	ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := st.Get(ctx, p+"exists"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get past the deadline: %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if err := st.Put(ctx, p+"new", []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Put past the deadline: %v, want an error wrapping context.DeadlineExceeded", err)
	}
	wantNotFound(t, st, p+"new")
}

func (s *suite) testClosed(t *testing.T) {
	st := s.makeStore(t)
	ctx := t.Context()
	mustPut(t, st, "k", []byte("x"))
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	want := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s after Close: %v, want an error wrapping ErrClosed", what, err)
		}
	}
	want("Put", st.Put(ctx, "k2", []byte("x")))
	_, err := st.Get(ctx, "k")
	want("Get", err)
	_, err = st.GetRange(ctx, "k", 0, -1)
	want("GetRange", err)
	r, err := st.NewReader(ctx, "k", 0, -1)
	want("NewReader", err)
	if r != nil {
		r.Close()
	}
	if w, err := st.NewWriter(ctx, "k2"); err != nil {
		want("NewWriter", err)
	} else {
		w.Write([]byte("x"))
		want("Close of a writer made after Close", w.Close())
	}
	want("Delete", st.Delete(ctx, "k"))
	n := 0
	for _, err := range st.List(ctx, "") {
		n++
		want("List", err)
	}
	if n != 1 {
		t.Errorf("List after Close yielded %d times, want once (the error)", n)
	}
	if err := st.Close(); err != nil && !errors.Is(err, storage.ErrClosed) {
		t.Errorf("second Close: %v, want nil or ErrClosed", err)
	}
}

func (s *suite) testMaxObjectSize(t *testing.T) {
	var st storage.Store
	var limit int64
	if mh, ok := s.h.(MaxObjectSizeHarness); ok {
		limit = 1000
		var err error
		st, err = mh.MakeStoreWithMaxObjectSize(t.Context(), limit)
		if err != nil {
			t.Fatalf("MakeStoreWithMaxObjectSize: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		ms, ok := st.(storage.MaxObjectSizer)
		if !ok {
			t.Fatalf("the store of MakeStoreWithMaxObjectSize is no storage.MaxObjectSizer")
		}
		if got := ms.MaxObjectSize(); got != limit {
			t.Fatalf("MaxObjectSize() = %d, want %d", got, limit)
		}
	} else if ms, ok := s.shared.(storage.MaxObjectSizer); ok && ms.MaxObjectSize() <= 32<<20 {
		st, limit = s.shared, ms.MaxObjectSize()
	} else {
		t.Skip("no store with a small MaxObjectSize")
	}
	p := s.prefix(t)
	ctx := t.Context()
	data := randBytes(int(limit)+1, 6)
	mustPut(t, st, p+"max", data[:limit])
	wantContent(t, st, p+"max", data[:limit])
	if err := st.Put(ctx, p+"over", data); !errors.Is(err, storage.ErrTooLarge) {
		t.Errorf("Put of %d bytes: %v, want ErrTooLarge", len(data), err)
	}
	wantNotFound(t, st, p+"over")
	if err := st.Put(ctx, p+"max", data); !errors.Is(err, storage.ErrTooLarge) {
		t.Errorf("Put of %d bytes over an object: %v, want ErrTooLarge", len(data), err)
	}
	wantContent(t, st, p+"max", data[:limit])

	if err := writeObject(ctx, st, p+"wmax", data[:limit/2], data[limit/2:limit]); err != nil {
		t.Fatalf("writing %d bytes: %v", limit, err)
	}
	wantContent(t, st, p+"wmax", data[:limit])
	if err := writeObject(ctx, st, p+"wover", data[:limit/2], data[limit/2:]); !errors.Is(err, storage.ErrTooLarge) {
		t.Errorf("writing %d bytes: %v, want ErrTooLarge from Write or Close", len(data), err)
	}
	wantNotFound(t, st, p+"wover")

	// A worker opening the store from its URL gets the same limit.
	st2, err := storage.Open(ctx, st.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if ms, ok := st2.(storage.MaxObjectSizer); ok && ms.MaxObjectSize() != limit {
		t.Errorf("the store opened from URL() %q has MaxObjectSize %d, want %d", st.URL(), ms.MaxObjectSize(), limit)
	}
	if err := st2.Put(ctx, p+"over2", data); !errors.Is(err, storage.ErrTooLarge) {
		t.Errorf("Put of %d bytes through URL(): %v, want ErrTooLarge", len(data), err)
	}
}

// testListAfter checks storage.ListAfter, which uses the store's own
// ListAfter when it has one: only the keys after the start, in order,
// across directory-like segments.
func (s *suite) testListAfter(t *testing.T) {
	st, p := s.shared, s.prefix(t)
	keys := sorted([]string{p + "a/k01", p + "a/k02", p + "a/k10", p + "b/x", p + "b/y/z", p + "b0", p + "c"})
	putMany(t, st, keys, func(i int) []byte { return []byte{byte(i)} })
	starts := append([]string{"", p, p + "a", p + "a/", p + "a/k015", p + "b/", p + "b/y", p + "b/y/", p + "zzz"}, keys...)
	for _, start := range starts {
		var want []string
		for _, k := range keys {
			if k > start {
				want = append(want, k)
			}
		}
		var got []string
		for info, err := range storage.ListAfter(t.Context(), st, p, start) {
			if err != nil {
				t.Fatalf("ListAfter(%q): %v", start, err)
			}
			got = append(got, info.Key)
		}
		wantKeys(t, fmt.Sprintf("ListAfter(%q)", start), got, want)
	}
	// A narrower prefix with a start outside it.
	var got []string
	for info, err := range storage.ListAfter(t.Context(), st, p+"b/", p+"a/zzz") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, info.Key)
	}
	wantKeys(t, "ListAfter with a start before the prefix", got, []string{p + "b/x", p + "b/y/z"})
}
