package process_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/process"
)

// The executor calls Invoke with encoded batches; here the test binary's
// TestMain serves a handler that echoes "echo:" payloads.
func ExampleNew() {
	b := process.New(&process.Options{Workers: 2})
	defer b.Close()
	reply, err := b.Invoke(context.Background(), []byte("echo:hello from a worker"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply))
	fmt.Println(b.Limits().Concurrency, b.Limits().MaxRequestBytes)
	// Output:
	// hello from a worker
	// 2 6291456
}

func Example_url() {
	b, err := backends.Open(context.Background(), "process://?workers=4")
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	fmt.Println(b.Limits().Concurrency, b.Limits().SameHost)
	// Output: 4 true
}
