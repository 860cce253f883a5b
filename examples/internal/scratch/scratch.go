// Package scratch is the examples' default store: a directory in the
// temporary directory, kept between runs (a second run finds the data the
// first one made), which each run reports and -clean removes.
package scratch

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
)

// Open opens the store named by url, else by $GOWREN_STORE, else the
// directory $TMPDIR/gowren-<name>, whose path it returns too ("" when the
// store is the user's).
func Open(ctx context.Context, url, name string) (st storage.Store, dir string, err error) {
	if url == "" {
		url = os.Getenv(fanout.EnvStore)
	}
	if url != "" {
		st, err := storage.Open(ctx, url)
		return st, "", err
	}
	dir = filepath.Join(os.TempDir(), "gowren-"+name)
	st, err = filestore.New(dir, nil)
	return st, dir, err
}

// Done ends a run that used dir (nothing when dir is ""): with clean it
// removes dir, else it says what dir holds and how to remove it.
func Done(w io.Writer, dir string, clean bool) error {
	if dir == "" {
		return nil
	}
	if clean {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		fmt.Fprintf(w, "data        removed %s\n", dir)
		return nil
	}
	var size int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				size += info.Size()
			}
		}
		return nil
	})
	fmt.Fprintf(w, "data        %.1f MB kept in %s for the next run; -clean removes it\n", float64(size)/1e6, dir)
	return nil
}
