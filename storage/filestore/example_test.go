package filestore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
)

func ExampleNew() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "gowren-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// A file put there by hand is an object.
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("by hand"), 0o666); err != nil {
		log.Fatal(err)
	}

	st, err := filestore.New(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if err := st.Put(ctx, "jobs/7f3a/out/12.0", []byte("result")); err != nil {
		log.Fatal(err)
	}
	for info, err := range st.List(ctx, "") {
		if err != nil {
			log.Fatal(err)
		}
		p, _ := st.Path(info.Key)
		rel, _ := filepath.Rel(dir, p)
		fmt.Printf("%s (%d bytes) is the file %s\n", info.Key, info.Size, filepath.ToSlash(rel))
	}
	// An object cannot also be a prefix here, as a file is no directory.
	err = st.Put(ctx, "notes.txt/draft", []byte("x"))
	fmt.Println(errors.Is(err, storage.ErrKeyConflict))
	// Output:
	// jobs/7f3a/out/12.0 (6 bytes) is the file jobs/7f3a/out/12.0
	// notes.txt (7 bytes) is the file notes.txt
	// true
}
