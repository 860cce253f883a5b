package filestore

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/gowren/gowren/storage"
)

// The on-disk layout (see the package documentation, section "Layout").
//
// A key is a path under the store's directory, byte for byte: every segment
// but the last is a directory, the last a regular file. Nothing is escaped
// or appended, so a file any program puts there is an object, and an object
// the store writes is a file any program can open.
//
// The store's own names start with tempPrefix: a write in progress is such a
// file, in the directory of its object, until it is renamed over the
// object. No key may have a segment starting with tempPrefix, and List
// skips those names, so a write in progress is never seen.
const (
	tempPrefix = ".gowren-tmp-"
	// maxNameLen is the longest file name, in bytes, on the filesystems in
	// common use (NAME_MAX of ext4, XFS, APFS; NTFS counts UTF-16 units).
	maxNameLen = 255
)

// windowsForbidden are the printable characters Windows refuses in file
// names.
const windowsForbidden = `"*:<>?|`

// checkSegments applies the store's own rules to the segments of key, a key
// or a key prefix that storage.ValidateKey or storage.ValidatePrefix has
// accepted (a prefix may end in "/": its empty last segment is skipped).
// The error wraps storage.ErrInvalidKey and names the segment and the rule.
func checkSegments(key string) error {
	i := 0
	for seg := range strings.SplitSeq(key, "/") {
		i++
		if err := checkName(seg); err != nil {
			return fmt.Errorf("%w: segment %d %q %s", storage.ErrInvalidKey, i, truncate(seg, 64), err.Error())
		}
	}
	return nil
}

// checkName says why seg, a segment of a valid key, cannot be a file name
// of the store, or returns nil.
func checkName(seg string) error {
	switch {
	case len(seg) > maxNameLen:
		return fmt.Errorf("is %d bytes, more than the %d a file name holds", len(seg), maxNameLen)
	case strings.HasPrefix(seg, tempPrefix):
		return fmt.Errorf("starts with %q, which names the file store's temporary files", tempPrefix)
	case runtime.GOOS == "windows" && (strings.ContainsAny(seg, windowsForbidden) ||
		strings.HasSuffix(seg, ".") || strings.HasSuffix(seg, " ")):
		return fmt.Errorf("is no file name on Windows (none of %s, no final dot or space)", windowsForbidden)
	}
	return nil
}

// nameKey says why the directory entry name cannot be a key segment, or
// returns nil. Temporary files are skipped before it is asked.
func nameKey(name string) error {
	if err := storage.ValidateKey(name); err != nil {
		return err
	}
	if strings.Contains(name, "/") { // no filesystem allows it
		return fmt.Errorf("%w %q: contains a /", storage.ErrInvalidKey, name)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
