package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// checkStore catches the store URLs that would go wrong quietly before the
// store is opened: a path without a scheme (a usage error suggesting the
// file:// URL meant), and a file:// directory that does not exist, which
// opening would create: the commands only read and delete, so a mistyped
// path gets an error instead of an empty new directory. from names where
// the URL came from (-store or $GOWREN_STORE).
func checkStore(raw, from string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return nil // storage.Open says what is wrong with it
	}
	// "C:\dir" parses as the scheme "c".
	if u.Scheme == "" || (len(u.Scheme) == 1 && runtime.GOOS == "windows") {
		abs, err := filepath.Abs(raw)
		if err != nil {
			abs = raw
		}
		return fmt.Errorf("%w: %s %q is a path, not a store URL: did you mean %s?", errUsage, from, raw, fileURL(abs))
	}
	if u.Scheme != "file" {
		return nil
	}
	dir := u.Path
	if u.Opaque != "" { // file:rel/dir
		if dir, err = url.PathUnescape(u.Opaque); err != nil {
			return nil
		}
	}
	if dir == "" || (u.Host != "" && u.Host != "localhost") {
		return nil // storage.Open explains
	}
	if runtime.GOOS == "windows" && len(dir) >= 3 && dir[0] == '/' && dir[2] == ':' {
		dir = dir[1:] // file:///C:/dir
	}
	dir = filepath.FromSlash(dir)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("store %s (%s): directory %s does not exist, so no job has run with this store; check the path (gowren does not create it)",
			u.Redacted(), from, dir)
	case err != nil:
		return fmt.Errorf("store %s: %w", u.Redacted(), err)
	case !fi.IsDir():
		return fmt.Errorf("store %s: %s is a file, not a directory", u.Redacted(), dir)
	}
	return nil
}

// fileURL is the file:// URL of an absolute path.
func fileURL(abs string) string {
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // C:/dir
	}
	return (&url.URL{Scheme: "file", Path: p}).String()
}
