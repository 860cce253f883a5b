package filestore

import (
	"runtime"
	"strings"
	"testing"

	"github.com/gowren/gowren/storage"
)

// FuzzNames: a valid key segment is its own file name, unless it is too
// long or names a temporary file; a file name is a key segment exactly when
// storage.ValidateKey accepts it; and the earlier layout's names are
// recognised exactly as it wrote them.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"a", "%", "%25", "a.", "a ", "...", "a:b", "%tmp-0", "x%", "日本", "lower%3a", "%2E", "%zz", "a%2Fb", ".gowren-tmp-1", ".DS_Store", "a\\b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		valid := !strings.Contains(s, "/") && storage.ValidateKey(s) == nil
		if err := nameKey(s); (err == nil) != valid && !strings.Contains(s, "/") {
			t.Fatalf("nameKey(%q) = %v, but ValidateKey says valid=%v", s, err, valid)
		}
		if !valid {
			return
		}
		err := checkName(s)
		reserved := len(s) > maxNameLen || strings.HasPrefix(s, tempPrefix)
		if runtime.GOOS != "windows" && (err != nil) != reserved {
			t.Fatalf("checkName(%q) = %v, want an error only for a long or temporary name", s, err)
		}
		if err := checkSegments("dir/" + s); (err != nil) != (checkName(s) != nil) {
			t.Fatalf("checkSegments(dir/%q) = %v, checkName = %v", s, err, checkName(s))
		}
		if name := oldEscape(s); !isOldSegment(name) || !isOldObjectName(name+oldObjectSuffix) {
			t.Fatalf("the earlier layout's name %q of %q is not recognised", name, s)
		}
	})
}
