package storage_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
)

func TestValidateKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		key  string
		ok   bool
	}{
		{"simple", "k", true},
		{"nested", "jobs/20261126T010203-1a2b3c4d/in/0", true},
		{"dots in segments", "a.b/...", true},
		{"dot prefix", ".hidden/..x/x..", true},
		{"space", " a b ", true},
		{"unicode", "日本語/ünï", true},
		{"percent", "%/%25", true},
		{"longest", strings.Repeat("k", storage.MaxKeyLen), true},
		{"non-ASCII C1 control", "a\u0085b", true},
		{"empty", "", false},
		{"too long", strings.Repeat("k", storage.MaxKeyLen+1), false},
		{"leading slash", "/a", false},
		{"trailing slash", "a/", false},
		{"only slash", "/", false},
		{"empty segment", "a//b", false},
		{"dot", ".", false},
		{"dot dot", "..", false},
		{"dot segment", "a/./b", false},
		{"dot dot segment", "a/../b", false},
		{"trailing dot dot", "a/..", false},
		{"backslash", `a\b`, false},
		{"nul", "a\x00b", false},
		{"newline", "a\n", false},
		{"del", "\x7f", false},
		{"invalid UTF-8", "\xff", false},
		{"surrogate half", "\xed\xa0\x80", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := storage.ValidateKey(tc.key)
			if tc.ok && err != nil {
				t.Fatalf("ValidateKey(%q) = %v, want nil", tc.key, err)
			}
			if !tc.ok && !errors.Is(err, storage.ErrInvalidKey) {
				t.Fatalf("ValidateKey(%q) = %v, want an error wrapping ErrInvalidKey", tc.key, err)
			}
		})
	}
}

func TestValidatePrefix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		prefix string
		ok     bool
	}{
		{"", true},
		{"jobs/", true},
		{"jobs/7f", true},
		{".", true},
		{"..", true},
		{"a/.", true},
		{"/", false},
		{"a//", false},
		{"../", false},
		{"a/./", false},
		{"a\x00", false},
		{strings.Repeat("k", storage.MaxKeyLen), false},
	} {
		err := storage.ValidatePrefix(tc.prefix)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, storage.ErrInvalidKey)) {
			t.Errorf("ValidatePrefix(%q) = %v, want ok=%v", tc.prefix, err, tc.ok)
		}
	}
}

// FuzzValidateKey: ValidateKey never panics, its verdict follows its
// documented rules, and an accepted key, as a filestore key, names a file
// inside the store's directory.
func FuzzValidateKey(f *testing.F) {
	for _, k := range []string{
		"a", "a/b", "../x", "a/../../x", "..", ".", "/etc/passwd", `..\x`, "a//b", "a/", "%", "%2E%2E",
		"\x00", "\xff", "日本", strings.Repeat("a/", 600), "C:/x", "C:\\x", "~/x", "a/.../b",
	} {
		f.Add(k)
	}
	st, err := filestore.New(f.TempDir(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	root := st.Dir()
	f.Fuzz(func(t *testing.T, key string) {
		err := storage.ValidateKey(key)
		_ = storage.ValidatePrefix(key)
		if err != nil {
			if !errors.Is(err, storage.ErrInvalidKey) {
				t.Fatalf("ValidateKey(%q) = %v, not wrapping ErrInvalidKey", key, err)
			}
			return
		}
		// The documented rules.
		switch {
		case key == "", len(key) > storage.MaxKeyLen, !utf8.ValidString(key),
			strings.HasPrefix(key, "/"), strings.HasSuffix(key, "/"),
			strings.ContainsAny(key, "\\\x7f"):
			t.Fatalf("ValidateKey accepted %q", key)
		}
		for _, r := range key {
			if r < 0x20 {
				t.Fatalf("ValidateKey accepted %q with a control character", key)
			}
		}
		for _, seg := range strings.Split(key, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("ValidateKey accepted %q with segment %q", key, seg)
			}
		}
		if err := storage.ValidatePrefix(key); err != nil && len(key) < storage.MaxKeyLen {
			t.Fatalf("a valid key is no valid prefix: %v", err)
		}

		p, err := st.Path(key)
		if err != nil {
			if !errors.Is(err, storage.ErrInvalidKey) {
				t.Fatalf("filestore Path(%q): %v", key, err)
			}
			return // a segment too long for a file name
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || !filepath.IsLocal(rel) || rel != filepath.Clean(rel) {
			t.Fatalf("key %q maps to %q, outside %q (rel %q, %v)", key, p, root, rel, err)
		}
		if n := len(strings.Split(filepath.ToSlash(rel), "/")); n != len(strings.Split(key, "/")) {
			t.Fatalf("key %q of %d segments maps to %q of %d", key, len(strings.Split(key, "/")), rel, n)
		}
	})
}

func ExampleValidateKey() {
	for _, key := range []string{"jobs/7f3a/in/0", "jobs//in", "../etc/passwd"} {
		fmt.Println(storage.ValidateKey(key))
	}
	// Output:
	// <nil>
	// storage: invalid key "jobs//in": contains an empty segment
	// storage: invalid key "../etc/passwd": contains a .. segment
}
