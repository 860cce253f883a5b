package filestore_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/gowren/gowren/storage/filestore"
)

func ExampleNew() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "gowren-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	st, err := filestore.New(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if err := st.Put(ctx, "jobs/7f3a/out/12.0", []byte("result")); err != nil {
		log.Fatal(err)
	}
	// A key and a prefix of it can both be objects.
	if err := st.Put(ctx, "jobs/7f3a", []byte("manifest")); err != nil {
		log.Fatal(err)
	}
	for info, err := range st.List(ctx, "jobs/") {
		if err != nil {
			log.Fatal(err)
		}
		p, _ := st.Path(info.Key)
		rel, _ := filepath.Rel(dir, p)
		fmt.Printf("%s -> %s\n", info.Key, filepath.ToSlash(rel))
	}
	// Output:
	// jobs/7f3a -> jobs/7f3a%
	// jobs/7f3a/out/12.0 -> jobs/7f3a/out/12.0%
}
