//go:build unix

package filestore_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/gowren/gowren/storage"
)

// TestNamesThatAreNoKeys: a file whose name cannot be a key ends List with
// an error that names it, after the objects before it; a prefix that
// leaves it out lists normally. Nothing is skipped unseen.
func TestNamesThatAreNoKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, file, why string }{
		{"backslash", `docs/notes\2024.txt`, "backslash"},
		{"control character", "docs/icon\r", "control character"},
		{"invalid UTF-8", "docs/caf\xe9.txt", "UTF-8"},
		{"directory", "docs/bad\\dir/x.txt", "backslash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newStore(t)
			put(t, st, "docs/a.txt", "a")
			put(t, st, "other/b.txt", "b")
			p := filepath.Join(st.Dir(), filepath.FromSlash(tc.file))
			if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("x"), 0o666); err != nil {
				t.Fatal(err)
			}
			var keys []string
			var errs []error
			for info, err := range st.List(t.Context(), "") {
				if err != nil {
					errs = append(errs, err)
					continue
				}
				keys = append(keys, info.Key)
			}
			if !slices.Equal(keys, []string{"docs/a.txt"}) || len(errs) != 1 {
				t.Fatalf("List = %q and errors %v; want [docs/a.txt] then one error", keys, errs)
			}
			err := errs[0]
			bad, _, _ := strings.Cut(strings.TrimPrefix(tc.file, "docs/"), "/")
			if !errors.Is(err, storage.ErrInvalidKey) || !strings.Contains(err.Error(), fmt.Sprintf("%q", "docs/"+bad)) || !strings.Contains(err.Error(), tc.why) {
				t.Errorf("List error = %q, want ErrInvalidKey naming %q and the rule (%s)", err, "docs/"+bad, tc.why)
			}
			if got := list(t, st, "other/"); !slices.Equal(got, []string{"other/b.txt"}) {
				t.Errorf("List(other/) = %q", got)
			}
		})
	}
}

// TestSpecialFiles: FIFOs hold no object (List skips them, Get does not
// block on them); a symbolic link to a file inside the store is that
// object; links to directories, dangling links and links leading out are
// skipped.
func TestSpecialFiles(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o666); err != nil {
		t.Fatal(err)
	}
	st := newStore(t)
	put(t, st, "data/real.txt", "real")
	dir := st.Dir()
	if err := syscall.Mkfifo(filepath.Join(dir, "data", "fifo"), 0o666); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"data/alias.txt": "real.txt",
		"top.txt":        "data/real.txt",
		"up/alias.txt":   "../data/real.txt", // inside the store from its top
		"data/dirlink":   ".",
		"data/dangling":  "missing",
		"data/out":       filepath.Join(outside, "secret"),
	} {
		p := filepath.Join(dir, filepath.FromSlash(link))
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"data/alias.txt", "data/real.txt", "top.txt", "up/alias.txt"}
	if got := list(t, st, ""); !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	ctx := t.Context()
	for _, key := range want {
		if b, err := st.Get(ctx, key); err != nil || string(b) != "real" {
			t.Errorf("Get(%q) = %q, %v; want the linked file", key, b, err)
		}
	}
	for _, key := range []string{"data/fifo", "data/dirlink", "data/dangling"} {
		if _, err := st.Get(ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", key, err)
		}
	}
	if b, err := st.Get(ctx, "data/out"); err == nil {
		t.Errorf("Get through a link out of the store = %q", b)
	}
	// Deleting a link removes the link, not its target; what is no object
	// is not deleted.
	if err := st.Delete(ctx, "top.txt", "data/fifo", "data/dirlink", "data/dangling", "data/out"); err != nil {
		t.Fatal(err)
	}
	if b, err := st.Get(ctx, "data/real.txt"); err != nil || string(b) != "real" {
		t.Fatalf("the target after deleting a link to it: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "top.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the link top.txt is still there: %v", err)
	}
	for _, name := range []string{"data/fifo", "data/dirlink", "data/dangling", "data/out"} {
		if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(name))); err != nil {
			t.Errorf("Delete took %s, which is no object: %v", name, err)
		}
	}
}
