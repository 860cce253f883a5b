package memstore_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/memstore"
)

func ExampleNew() {
	ctx := context.Background()
	st := memstore.New(nil)
	defer st.Close()

	for _, key := range []string{"jobs/1/out/1.0", "jobs/1/out/0.0", "jobs/1/manifest"} {
		if err := st.Put(ctx, key, []byte("data of "+key)); err != nil {
			log.Fatal(err)
		}
	}
	for info, err := range st.List(ctx, "jobs/1/out/") {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(info.Key, info.Size)
	}
	// Output:
	// jobs/1/out/0.0 22
	// jobs/1/out/1.0 22
}

// A worker in the same process opens the store from its URL.
func Example_open() {
	ctx := context.Background()
	driver, err := storage.Open(ctx, "mem://example")
	if err != nil {
		log.Fatal(err)
	}
	defer driver.Close()
	if err := driver.Put(ctx, "greeting", []byte("hello")); err != nil {
		log.Fatal(err)
	}

	worker, err := storage.Open(ctx, driver.URL())
	if err != nil {
		log.Fatal(err)
	}
	defer worker.Close()
	b, err := worker.Get(ctx, "greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(driver.URL(), string(b))
	// Output: mem://example hello
}
