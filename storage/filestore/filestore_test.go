package filestore_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
	"github.com/gowren/gowren/storage/storagetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type harness struct {
	t    *testing.T
	opts filestore.Options
}

func (h *harness) MakeStore(context.Context) (storage.Store, error) {
	return filestore.New(h.t.TempDir(), &h.opts)
}

func (h *harness) MakeStoreWithMaxObjectSize(_ context.Context, max int64) (storage.Store, error) {
	o := h.opts
	o.MaxObjectSize = max
	return filestore.New(h.t.TempDir(), &o)
}

func (h *harness) Close() {}

func TestConformance(t *testing.T) {
	storagetest.RunConformanceTests(t, func(_ context.Context, t *testing.T) (storagetest.Harness, error) {
		return &harness{t: t}, nil
	})
}

func TestConformanceSync(t *testing.T) {
	if testing.Short() {
		t.Skip("fsyncs thousands of files")
	}
	storagetest.RunConformanceTests(t, func(_ context.Context, t *testing.T) (storagetest.Harness, error) {
		return &harness{t: t, opts: filestore.Options{Sync: true}}, nil
	})
}

func newStore(t *testing.T) *filestore.Store {
	t.Helper()
	st, err := filestore.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func put(t *testing.T, st storage.Store, key, data string) {
	t.Helper()
	if err := st.Put(t.Context(), key, []byte(data)); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func list(t *testing.T, st storage.Store, prefix string) []string {
	t.Helper()
	var keys []string
	for info, err := range st.List(t.Context(), prefix) {
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		keys = append(keys, info.Key)
	}
	return keys
}

// files returns the paths of the regular files under dir, relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLayout(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	for key, file := range map[string]string{
		"jobs/7f3a/out/12.0": "jobs/7f3a/out/12.0%",
		"jobs/7f3a":          "jobs/7f3a%", // an object beside a directory of the same name
		"logs/12:00":         "logs/12%3A00%",
		"100%/done.":         "100%25/done%2E%",
		"a b /x":             "a b%20/x%",
		"ünï/q?*|<>\"":       "ünï/q%3F%2A%7C%3C%3E%22%",
		"%tmp-0":             "%25tmp-0%",
	} {
		put(t, st, key, key)
		p, err := st.Path(key)
		if err != nil {
			t.Fatal(err)
		}
		want := filepath.Join(st.Dir(), filepath.FromSlash(file))
		if p != want {
			t.Errorf("Path(%q) = %q, want %q", key, p, want)
		}
		b, err := os.ReadFile(want)
		if err != nil || string(b) != key {
			t.Errorf("file %q holds %q, %v; want %q", file, b, err, key)
		}
	}
}

func TestPathTraversalRejected(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	st, err := filestore.New(filepath.Join(parent, "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, key := range []string{"../x", "a/../../x", "..", "/etc/passwd", "a/../b", `..\x`, "./x", "a//../x"} {
		if err := st.Put(t.Context(), key, []byte("x")); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, err := st.Path(key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Path(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
	if got := files(t, parent); len(got) != 0 {
		t.Fatalf("files written: %q", got)
	}
}

func TestSymlinkEscapeRejected(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret%"), []byte("secret"), 0o666); err != nil {
		t.Fatal(err)
	}
	st := newStore(t)
	if err := os.Symlink(outside, filepath.Join(st.Dir(), "evil")); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
	ctx := t.Context()
	if b, err := st.Get(ctx, "evil/secret"); err == nil {
		t.Fatalf("Get through a symbolic link out of the store = %q", b)
	}
	if err := st.Put(ctx, "evil/planted", []byte("x")); err == nil {
		t.Fatalf("Put through a symbolic link out of the store succeeded")
	}
	if err := st.Delete(ctx, "evil/secret"); err == nil {
		t.Logf("Delete through the link reported no error (allowed if nothing was deleted)")
	}
	for info, err := range st.List(ctx, "") {
		if err == nil {
			t.Errorf("List shows %q from outside the store", info.Key)
		}
	}
	for info, err := range st.List(ctx, "evil/") {
		if err == nil {
			t.Errorf("List(evil/) shows %q from outside the store", info.Key)
		}
	}
	if got := files(t, outside); !slices.Equal(got, []string{"secret%"}) {
		t.Fatalf("files outside the store are now %q", got)
	}
}

func TestTempFilesInvisible(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := t.Context()
	w, err := st.NewWriter(ctx, "dir/obj")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	on := files(t, st.Dir())
	if len(on) != 1 || !strings.HasPrefix(on[0], "dir/%tmp-") {
		t.Fatalf("files during a write = %q, want one dir/%%tmp-*", on)
	}
	if keys := list(t, st, ""); len(keys) != 0 {
		t.Fatalf("List during a write = %q", keys)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := files(t, st.Dir()); !slices.Equal(got, []string{"dir/obj%"}) {
		t.Fatalf("files after Close = %q, want [dir/obj%%]", got)
	}
}

func TestAbandonedWritersLeaveNothing(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := t.Context()

	// Cancelled before Close.
	cctx, cancel := context.WithCancel(ctx)
	w, err := st.NewWriter(cctx, "a/cancelled")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("x"))
	cancel()
	if err := w.Close(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close after cancel = %v", err)
	}

	// Too large.
	small, err := filestore.New(st.Dir(), &filestore.Options{MaxObjectSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	w, err = small.NewWriter(ctx, "b/big")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("1234")); !errors.Is(err, storage.ErrTooLarge) {
		t.Fatalf("Write over the limit = %v, want ErrTooLarge", err)
	}
	if err := w.Close(); !errors.Is(err, storage.ErrTooLarge) {
		t.Fatalf("Close after a failed Write = %v, want ErrTooLarge", err)
	}

	// Store closed under an open writer.
	other, err := filestore.New(st.Dir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err = other.NewWriter(ctx, "c/orphan")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("x"))
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("writer Close after the store's = %v, want ErrClosed", err)
	}

	for _, f := range files(t, st.Dir()) {
		t.Errorf("file left behind: %q", f)
	}
}

func TestStrayFilesIgnored(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	put(t, st, "d/real", "r")
	put(t, st, "top", "t")
	dir := st.Dir()
	for _, name := range []string{
		".DS_Store", "plain", "d/plain", "%tmp-0123456789abcdef", "d/%tmp-1", "bad%zz%", "lower%3a%",
		"%", "..%", ".%", "a%2Fb%", "ctl%01%", "back%5Cslash%", "nodot%2E.x%", "d/odd%%",
	} {
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), []byte("stray"), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	// A directory named like an object, and one that is no escaped segment.
	for _, d := range []string{"dirobj%", "bad%zzdir"} {
		if err := os.MkdirAll(filepath.Join(dir, d, "inner%"), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("top%", filepath.Join(dir, "link%")); err != nil {
		t.Logf("no symbolic links: %v", err)
	}
	if got, want := list(t, st, ""), []string{"d/real", "top"}; !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	if _, err := st.Get(t.Context(), "dirobj"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get of a directory named like an object = %v, want ErrNotFound", err)
	}
}

func TestDeletePrunesEmptyDirectories(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := t.Context()
	put(t, st, "a/b/c/d", "1")
	put(t, st, "a/x", "2")
	if err := st.Delete(ctx, "a/b/c/d"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(st.Dir(), "a", "b")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a/b is left after deleting its only object: %v", err)
	}
	if err := st.Delete(ctx, "a/x"); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(st.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("store directory holds %d entries after deleting everything", len(entries))
	}
	// The root itself stays.
	put(t, st, "a/b", "3")
}

// TestPutRacesDelete: Delete removes directories that Puts in the same
// directories need; every Put must still succeed.
func TestPutRacesDelete(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				key := fmt.Sprintf("x/y/z/%d-%d", g, i)
				if err := st.Put(ctx, key, []byte("v")); err != nil {
					t.Errorf("Put(%q): %v", key, err)
					return
				}
				if err := st.Delete(ctx, key); err != nil {
					t.Errorf("Delete(%q): %v", key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if keys := list(t, st, ""); len(keys) != 0 {
		t.Fatalf("objects left: %q", keys)
	}
}

func TestLongSegments(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ok := strings.Repeat("s", 254)
	put(t, st, "d/"+ok, "fits")
	for _, key := range []string{"d/" + strings.Repeat("s", 255), strings.Repeat("%", 85) + "/x"} {
		if err := st.Put(t.Context(), key, []byte("x")); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Put of a segment too long for a file name: %v, want ErrInvalidKey", err)
		}
		if _, err := st.Path(key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Path of a segment too long for a file name: %v, want ErrInvalidKey", err)
		}
	}
	long := strings.Repeat("s", 300)
	if keys := list(t, st, long+"/"); len(keys) != 0 {
		t.Fatalf("List under a too long segment = %q", keys)
	}
	if keys := list(t, st, "d/"+ok[:100]); !slices.Equal(keys, []string{"d/" + ok}) {
		t.Fatalf("List = %q", keys)
	}
}

func TestURLs(t *testing.T) {
	dir := t.TempDir()
	st, err := filestore.New(dir, &filestore.Options{Sync: true, MaxObjectSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if want := "file://" + filepath.ToSlash(dir) + "?max_object_size=7&sync=true"; st.URL() != want {
		t.Fatalf("URL = %q, want %q", st.URL(), want)
	}
	put(t, st, "k", "v")

	t.Chdir(filepath.Dir(dir))
	for _, url := range []string{
		st.URL(),
		"file://" + filepath.ToSlash(dir),
		"file://localhost" + filepath.ToSlash(dir),
		"file:" + filepath.Base(dir),
		"file:./" + filepath.Base(dir) + "/",
	} {
		st2, err := storage.Open(t.Context(), url)
		if err != nil {
			t.Errorf("Open(%q): %v", url, err)
			continue
		}
		if got := st2.(*filestore.Store).Dir(); got != dir {
			t.Errorf("Open(%q) is in %q, want %q", url, got, dir)
		}
		if b, err := st2.Get(t.Context(), "k"); string(b) != "v" || err != nil {
			t.Errorf("Open(%q): Get = %q, %v", url, b, err)
		}
		st2.Close()
	}

	spaced := filepath.Join(t.TempDir(), "a b%c")
	st3, err := filestore.New(spaced, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st3.Close()
	st4, err := storage.Open(t.Context(), st3.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer st4.Close()
	if got := st4.(*filestore.Store).Dir(); got != spaced {
		t.Fatalf("reopened %q from %q: in %q", spaced, st3.URL(), got)
	}

	for _, url := range []string{"file://otherhost/x", "file://", "file:///x?bogus=1", "file:///x?sync=maybe", "file:///x?max_object_size=-2", "file:///x#frag"} {
		if st, err := storage.Open(t.Context(), url); err == nil {
			st.Close()
			t.Errorf("Open(%q) succeeded, want an error", url)
		}
	}
}

func TestNewCreatesDirectory(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "x", "y")
	st, err := filestore.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("directory not created: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o666)
	if st, err := filestore.New(file, nil); err == nil {
		st.Close()
		t.Fatalf("New on a file succeeded")
	}
}

// FuzzRoundTrip: any valid key goes in and comes back out unchanged, alone
// under its own name, and leaves nothing behind once deleted.
func FuzzRoundTrip(f *testing.F) {
	for _, k := range []string{"a", "a/b", "%", "%25/x%", "a:b", "x.", "..a", "日本/語", "%tmp-1", "a%2F", "CON", " "} {
		f.Add(k)
	}
	st, err := filestore.New(f.TempDir(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	f.Fuzz(func(t *testing.T, key string) {
		if storage.ValidateKey(key) != nil {
			return
		}
		ctx := t.Context()
		if err := st.Put(ctx, key, []byte(key)); err != nil {
			if errors.Is(err, storage.ErrInvalidKey) {
				return // a segment too long for a file name
			}
			t.Fatalf("Put(%q): %v", key, err)
		}
		if b, err := st.Get(ctx, key); err != nil || string(b) != key {
			t.Fatalf("Get(%q) = %q, %v", key, b, err)
		}
		if keys := list(t, st, ""); !slices.Equal(keys, []string{key}) {
			t.Fatalf("List after Put(%q) = %q", key, keys)
		}
		if keys := list(t, st, key); !slices.Equal(keys, []string{key}) {
			t.Fatalf("List(%q) = %q", key, keys)
		}
		if err := st.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if left := files(t, st.Dir()); len(left) != 0 {
			t.Fatalf("after Delete(%q), files left: %q", key, left)
		}
		if entries, _ := os.ReadDir(st.Dir()); len(entries) != 0 {
			t.Fatalf("after Delete(%q), %d entries left in the store directory", key, len(entries))
		}
	})
}
