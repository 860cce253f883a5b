package filestore

import (
	"io"
	"os"
	"path"
	"strings"

	"github.com/gowren/gowren/storage"
)

// The layout of earlier versions, recognised only to refuse it: an object
// was a file named after its key's last segment plus oldObjectSuffix, with
// '%', `"*:<>?|` and a final '.' or ' ' written as %XX (uppercase hex), and
// writes in progress were files named oldTempPrefix and 16 hex digits.
const (
	oldObjectSuffix = "%"
	oldTempPrefix   = "%tmp-"
)

// Bounds of the look oldLayout takes: it reads at most probeEntries names
// of each directory, looks at most probeFiles regular files and descends at
// most probeDepth directories, so opening a large store stays cheap.
const (
	probeEntries = 64
	probeFiles   = 16
	probeDepth   = 6
)

// oldLayout reports whether the directory of root looks like a store of
// the earlier layout: walking down from the root, the directories it looks
// into hold regular files, some of them old objects, and all of them old
// objects or old temporary files (hidden files, such as .DS_Store, do not
// count). A single plain file anywhere it looks means the new layout.
// example is the path of one old object. Errors count as "not old": a
// directory that cannot be read fails the operations that need it, with
// their own errors.
func oldLayout(root *os.Root) (example string, old bool) {
	files := 0
	var walk func(dir string, depth int) bool // false: stop
	walk = func(dir string, depth int) bool {
		f, err := root.Open(dir)
		if err != nil {
			return true
		}
		entries, err := f.ReadDir(probeEntries)
		f.Close()
		if err != nil && err != io.EOF {
			return true
		}
		var dirs []string
		for _, e := range entries {
			name := e.Name()
			switch {
			case strings.HasPrefix(name, "."):
			case e.Type().IsRegular():
				files++
				switch {
				case strings.HasPrefix(name, oldTempPrefix):
				case isOldObjectName(name):
					if example == "" {
						example = path.Join(dir, name)
					}
				default:
					example = "" // a plain file: not the earlier layout
					return false
				}
			case e.IsDir():
				dirs = append(dirs, name)
			}
		}
		if files >= probeFiles || depth >= probeDepth {
			return files < probeFiles
		}
		for _, d := range dirs {
			if !walk(path.Join(dir, d), depth+1) {
				return false
			}
		}
		return true
	}
	walk(".", 0)
	return example, example != ""
}

// isOldObjectName reports whether name is the file name of an object in
// the earlier layout: a canonical escaped segment plus oldObjectSuffix.
func isOldObjectName(name string) bool {
	base, found := strings.CutSuffix(name, oldObjectSuffix)
	return found && base != "" && isOldSegment(base)
}

// isOldSegment reports whether name is exactly what the earlier layout
// wrote for a segment that storage.ValidateKey accepts: '%', `"*:<>?|` and a
// final '.' or ' ' as %XX in uppercase hex, nothing else escaped.
func isOldSegment(name string) bool {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(name) {
			return false
		}
		hi, ok1 := unhex(name[i+1])
		lo, ok2 := unhex(name[i+2])
		if !ok1 || !ok2 {
			return false
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	seg := b.String()
	return !strings.Contains(seg, "/") && storage.ValidateKey(seg) == nil && oldEscape(seg) == name
}

// oldEscape is the earlier layout's file name of a segment, without
// oldObjectSuffix.
func oldEscape(seg string) string {
	const upperHex = "0123456789ABCDEF"
	var b strings.Builder
	last := len(seg) - 1
	for i := range len(seg) {
		c := seg[i]
		if strings.IndexByte(`%"*:<>?|`, c) >= 0 || (i == last && (c == '.' || c == ' ')) {
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
