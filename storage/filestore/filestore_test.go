package filestore_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
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

// KeysArePaths: "a" and "a/b" cannot both be objects (storagetest.PathHarness).
func (h *harness) KeysArePaths() bool { return true }

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
	keys := []string{"jobs/7f3a/out/0000000012.0", "jobs/7f3a/manifest", "100%/done", "%tmp-0", "x%", ".hidden/.x", "a b/ c", "ünï/日本"}
	if runtime.GOOS != "windows" {
		keys = append(keys, "logs/12:00", "q?*|<>\"", "trailing.", "trailing ")
	}
	for _, key := range keys {
		put(t, st, key, "data of "+key)
		p, err := st.Path(key)
		if err != nil {
			t.Fatal(err)
		}
		want := filepath.Join(st.Dir(), filepath.FromSlash(key))
		if p != want {
			t.Errorf("Path(%q) = %q, want %q", key, p, want)
		}
		// Any program reads the object as the file at the key's path.
		b, err := os.ReadFile(want)
		if err != nil || string(b) != "data of "+key {
			t.Errorf("file %q holds %q, %v; want %q", want, b, err, "data of "+key)
		}
	}
	if got, want := slices.Sorted(slices.Values(files(t, st.Dir()))), slices.Sorted(slices.Values(keys)); !slices.Equal(got, want) {
		t.Fatalf("files = %q, want exactly the keys %q", got, want)
	}
}

// TestUserFiles: files and directories that a user put in the directory
// by hand are objects: listed, read, ranged, deleted.
func TestUserFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hand := map[string]string{
		"IMG_0001.JPG":          "jpeg 1",
		"2024/beach.png":        "png",
		"2024/summer/pier.jpeg": "jpeg 2",
		".DS_Store":             "finder",
		"notes/empty.txt":       "",
		"notes/100%.txt":        "percent",
	}
	for name, data := range hand {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	// Empty directories hold no object.
	for _, d := range []string{"empty", "hollow/deeper"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(d)), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	st, err := filestore.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	var infos []storage.ObjectInfo
	for info, err := range st.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		infos = append(infos, info)
	}
	var got []string
	for _, info := range infos {
		got = append(got, info.Key)
		if info.Size != int64(len(hand[info.Key])) {
			t.Errorf("List: %q has size %d, want %d", info.Key, info.Size, len(hand[info.Key]))
		}
	}
	if want := slices.Sorted(maps.Keys(hand)); !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	for key, data := range hand {
		if b, err := st.Get(ctx, key); err != nil || string(b) != data {
			t.Errorf("Get(%q) = %q, %v; want %q", key, b, err, data)
		}
	}
	if b, err := st.GetRange(ctx, "2024/summer/pier.jpeg", 2, 3); err != nil || string(b) != "eg " {
		t.Errorf("GetRange = %q, %v", b, err)
	}
	if got := list(t, st, "2024/s"); !slices.Equal(got, []string{"2024/summer/pier.jpeg"}) {
		t.Errorf("List(2024/s) = %q", got)
	}
	for _, key := range []string{"2024", "empty", "hollow/deeper"} {
		if _, err := st.Get(ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get of the directory %q = %v, want ErrNotFound", key, err)
		}
	}
	// Writing the key of an empty directory replaces it.
	put(t, st, "empty", "now a file")
	if b, err := os.ReadFile(filepath.Join(dir, "empty")); err != nil || string(b) != "now a file" {
		t.Fatalf("the file empty holds %q, %v", b, err)
	}
	if err := st.Delete(ctx, "2024/summer/pier.jpeg"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "2024", "summer")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("2024/summer is left after deleting its only file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "2024", "beach.png")); err != nil {
		t.Errorf("deleting a neighbour took 2024/beach.png: %v", err)
	}
}

// TestKeyConflicts: on disk, what the conformance suite's
// KeyAndPrefixConflict checks through the API: the files stay as they were.
func TestKeyConflicts(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := t.Context()
	put(t, st, "a", "object")
	put(t, st, "d/e", "deep")
	err := st.Put(ctx, "a/b", []byte("x"))
	if !errors.Is(err, storage.ErrKeyConflict) {
		t.Fatalf("Put(a/b) over the object a: %v, want ErrKeyConflict", err)
	}
	const want = `filestore: put "a/b": storage: key conflicts with another object: "a" is an object, so it cannot also be a prefix of "a/b"`
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %q, want it to start with %q", err, want)
	}
	if _, err := st.NewWriter(ctx, "d"); !errors.Is(err, storage.ErrKeyConflict) {
		t.Errorf("NewWriter(d) over the directory of d/e: %v, want ErrKeyConflict from NewWriter itself", err)
	}
	// A directory that holds only a hidden file holds an object.
	if err := os.Mkdir(filepath.Join(st.Dir(), "h"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(st.Dir(), "h", ".DS_Store"), []byte("x"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "h", []byte("x")); !errors.Is(err, storage.ErrKeyConflict) {
		t.Errorf("Put(h) over h/.DS_Store: %v, want ErrKeyConflict", err)
	}
	if got, want := files(t, st.Dir()), []string{"a", "d/e", "h/.DS_Store"}; !slices.Equal(got, want) {
		t.Fatalf("files = %q, want %q (nothing written, no temporary file left)", got, want)
	}
}

// TestOldLayoutRefused: a directory written by an earlier gowren (objects
// named KEY%) is refused with ErrOldLayout, naming the directory and a file,
// and left as it was; anything else opens.
func TestOldLayoutRefused(t *testing.T) {
	t.Parallel()
	old := []string{
		"jobs/1a2b3c4d-20261126T010203/manifest%",
		"jobs/1a2b3c4d-20261126T010203/in/0%",
		"jobs/1a2b3c4d-20261126T010203/out/0000000001.0%",
		"jobs/1a2b3c4d-20261126T010203/out/%tmp-0123456789abcdef",
		"logs/12%3A00%",
		".DS_Store",
	}
	for _, tc := range []struct {
		name  string
		files []string
		old   bool
	}{
		{"earlier layout", old, true},
		{"earlier layout, one object", []string{"refs/1a2b3c4d-20261126T010203/" + strings.Repeat("ab", 32) + "%"}, true},
		{"plain files", []string{"photos/a.jpg", "photos/b.jpg", "notes.txt"}, false},
		{"plain files beside a name ending in %", []string{"data/x%", "data/x"}, false},
		{"a plain file among old ones", append(slices.Clone(old[:3]), "jobs/1a2b3c4d-20261126T010203/stats.json"), false},
		{"only an old temporary file", []string{"%tmp-0123456789abcdef"}, false},
		{"no canonical old name", []string{"a%3a%", "b%zz%", "%"}, false},
		{"empty", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for _, f := range tc.files {
				p := filepath.Join(dir, filepath.FromSlash(f))
				if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("x"), 0o666); err != nil {
					t.Fatal(err)
				}
			}
			before := files(t, dir)
			st, err := filestore.New(dir, nil)
			if !tc.old {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				st.Close()
				return
			}
			if err == nil {
				st.Close()
				t.Fatalf("New succeeded on a directory of the earlier layout")
			}
			if !errors.Is(err, filestore.ErrOldLayout) {
				t.Fatalf("New: %v, want ErrOldLayout", err)
			}
			if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("%q", dir)) || !strings.Contains(msg, `%"`) {
				t.Errorf("the error %q does not name the directory %q and a file of it", msg, dir)
			}
			u := "file://" + filepath.ToSlash(dir)
			if st, err := storage.Open(t.Context(), u); !errors.Is(err, filestore.ErrOldLayout) {
				if err == nil {
					st.Close()
				}
				t.Errorf("Open(%q): %v, want ErrOldLayout", u, err)
			}
			if after := files(t, dir); !slices.Equal(after, before) {
				t.Errorf("files changed from %q to %q", before, after)
			}
		})
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
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o666); err != nil {
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
	if got := files(t, outside); !slices.Equal(got, []string{"secret"}) {
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
	if len(on) != 1 || !strings.HasPrefix(on[0], "dir/.gowren-tmp-") {
		t.Fatalf("files during a write = %q, want one dir/.gowren-tmp-*", on)
	}
	if keys := list(t, st, ""); len(keys) != 0 {
		t.Fatalf("List during a write = %q", keys)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := files(t, st.Dir()); !slices.Equal(got, []string{"dir/obj"}) {
		t.Fatalf("files after Close = %q, want [dir/obj]", got)
	}
	// No key names a temporary file.
	for _, key := range []string{".gowren-tmp-0123456789abcdef", "dir/.gowren-tmp-x", ".gowren-tmp-/x"} {
		if err := st.Put(ctx, key, []byte("x")); !errors.Is(err, storage.ErrInvalidKey) || !strings.Contains(err.Error(), "temporary") {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey saying why", key, err)
		}
	}
	if keys := list(t, st, ".gowren-tmp-"); len(keys) != 0 {
		t.Fatalf("List(.gowren-tmp-) = %q", keys)
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
	ok := strings.Repeat("s", 255)
	put(t, st, "d/"+ok, "fits")
	for _, key := range []string{"d/" + strings.Repeat("s", 256), strings.Repeat("%", 256) + "/x"} {
		if err := st.Put(t.Context(), key, []byte("x")); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Put of a segment too long for a file name: %v, want ErrInvalidKey", err)
		}
		if _, err := st.Path(key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Path of a segment too long for a file name: %v, want ErrInvalidKey", err)
		}
	}
	long := strings.Repeat("s", 256)
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
	for _, k := range []string{"a", "a/b", "%", "%25/x%", "a:b", "x.", "..a", "日本/語", "%tmp-1", "a%2F", "CON", " ", ".gowren-tmp-1", ".hidden"} {
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
