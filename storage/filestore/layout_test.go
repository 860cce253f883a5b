package filestore

import (
	"strings"
	"testing"

	"github.com/gowren/gowren/storage"
)

// FuzzNames: every valid segment has one object name and one directory
// name, distinct from each other and from temporary names, that decode back
// to it; and any name that decodes is the encoding of what it decodes to,
// so no two names in a directory stand for the same key.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"a", "%", "%25", "a.", "a ", "...", "a:b", "%tmp-0", "x%", "日本", "lower%3a", "%2E", "%zz", "a%2Fb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// s as a file name found in a directory.
		if seg, object, ok := decodeName(s); ok {
			name := escapeSegment(seg)
			if object {
				name += objectSuffix
			}
			if name != s {
				t.Fatalf("name %q decodes to %q (object %v), which encodes to %q", s, seg, object, name)
			}
			if strings.HasPrefix(s, tempPrefix) {
				t.Fatalf("temporary name %q decodes to %q", s, seg)
			}
		}
		// s as a key segment.
		if strings.Contains(s, "/") || storage.ValidateKey(s) != nil {
			return
		}
		dir := escapeSegment(s)
		obj := dir + objectSuffix
		if dir == obj || strings.HasPrefix(dir, tempPrefix) || strings.HasPrefix(obj, tempPrefix) {
			t.Fatalf("segment %q: names %q and %q collide with each other or a temporary name", s, dir, obj)
		}
		if strings.ContainsAny(dir, "/\\:*?\"<>|") || strings.HasSuffix(dir, ".") || strings.HasSuffix(dir, " ") {
			t.Fatalf("segment %q: name %q is not portable", s, dir)
		}
		if seg, object, ok := decodeName(obj); !ok || !object || seg != s {
			t.Fatalf("object name %q of %q decodes to %q, %v, %v", obj, s, seg, object, ok)
		}
		if seg, object, ok := decodeName(dir); !ok || object || seg != s {
			t.Fatalf("directory name %q of %q decodes to %q, %v, %v", dir, s, seg, object, ok)
		}
	})
}
