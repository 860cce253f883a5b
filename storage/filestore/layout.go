package filestore

import (
	"fmt"
	"strings"

	"github.com/gowren/gowren/storage"
)

// The on-disk layout (see the package documentation, section "Layout").
//
// Every key segment but the last is a directory; the last is a file whose
// name ends in objectSuffix. A segment is written as itself, except that
// escapeSegment percent-encodes the bytes in mustEscape and a final '.' or
// ' '. So in one directory:
//
//   - a name ending in '%' is an object: every other '%' of an escaped
//     segment starts a "%XX" escape, so no escaped segment ends in '%';
//   - a name that is a canonical escaped segment is a directory;
//   - a name starting with tempPrefix is a write in progress: "%t" is no
//     escape, so it is neither of the above;
//   - any other name is not part of the store and is ignored.
//
// The object "a" ("a%") and the directory of "a/b" ("a") never collide, so
// "a" and "a/b" can both exist, as on S3.
const (
	objectSuffix = "%"
	tempPrefix   = "%tmp-"
	// maxNameLen is the longest file name, in bytes, on the filesystems in
	// common use (NAME_MAX of ext4, XFS, APFS, NTFS in UTF-16 units).
	maxNameLen = 255
)

// mustEscape reports whether c is percent-encoded in a file name: '%', the
// escape itself, and the printable ASCII characters that Windows forbids in
// file names, so that a store's directory can move between systems.
func mustEscape(c byte) bool {
	switch c {
	case '%', '"', '*', ':', '<', '>', '?', '|':
		return true
	}
	return false
}

const upperHex = "0123456789ABCDEF"

// escapeSegment returns the file name of a key segment, without objectSuffix.
// A final '.' or ' ' is escaped too, since Windows drops them from names.
func escapeSegment(seg string) string {
	last := len(seg) - 1
	esc := func(i int) bool {
		c := seg[i]
		return mustEscape(c) || (i == last && (c == '.' || c == ' '))
	}
	n := 0
	for i := range len(seg) {
		if esc(i) {
			n++
		}
	}
	if n == 0 {
		return seg
	}
	var b strings.Builder
	b.Grow(len(seg) + 2*n)
	for i := range len(seg) {
		if c := seg[i]; esc(i) {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0xf])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unescapeName returns the segment whose escaped form is name. It fails
// unless name is exactly what escapeSegment produces for a segment that
// storage.ValidateKey accepts, so each segment has one name and back.
func unescapeName(name string) (string, bool) {
	if !strings.Contains(name, "%") {
		// Fast path: nothing escaped.
		if name == "" || escapeSegment(name) != name || storage.ValidateKey(name) != nil {
			return "", false
		}
		return name, true
	}
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(name) {
			return "", false
		}
		hi, ok1 := unhex(name[i+1])
		lo, ok2 := unhex(name[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	seg := b.String()
	if strings.Contains(seg, "/") || storage.ValidateKey(seg) != nil || escapeSegment(seg) != name {
		return "", false
	}
	return seg, true
}

// decodeName classifies a directory entry: the key segment it stands for,
// and whether it is an object (else a directory). ok is false for temporary
// files and for names that are not part of the store.
func decodeName(name string) (seg string, object, ok bool) {
	if base, found := strings.CutSuffix(name, objectSuffix); found {
		seg, ok = unescapeName(base)
		return seg, true, ok
	}
	seg, ok = unescapeName(name)
	return seg, false, ok
}

// segmentNames returns the escaped file names of the segments of a valid key
// or key prefix (without objectSuffix), or an error wrapping
// storage.ErrInvalidKey when one is too long for a file name.
func segmentNames(key string) ([]string, error) {
	segs := strings.Split(key, "/")
	for i, seg := range segs {
		name := escapeSegment(seg)
		if len(name)+len(objectSuffix) > maxNameLen {
			return nil, fmt.Errorf("%w: segment %d is %d bytes in a file name, more than the %d a file name holds",
				storage.ErrInvalidKey, i+1, len(name), maxNameLen-len(objectSuffix))
		}
		segs[i] = name
	}
	return segs, nil
}

// keyPaths returns, relative to the store's root and with '/' separators,
// the directory that holds the object of key and the object's file. key
// must be valid.
func keyPaths(key string) (dir, obj string, err error) {
	names, err := segmentNames(key)
	if err != nil {
		return "", "", err
	}
	last := len(names) - 1
	dir = "."
	if last > 0 {
		dir = strings.Join(names[:last], "/")
	}
	obj = names[last] + objectSuffix
	if last > 0 {
		obj = dir + "/" + obj
	}
	return dir, obj, nil
}
