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

// InvokeStream passes on the parts the worker's handler sends ahead of its
// reply; here the test binary's handler answers "parts:N" with N parts.
func ExampleBackend_InvokeStream() {
	b := process.New(&process.Options{Workers: 1})
	defer b.Close()
	reply, err := b.InvokeStream(context.Background(), []byte("parts:2"), func(part []byte) {
		fmt.Println("part:", string(part))
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("reply:", string(reply))
	// Output:
	// part: part 0
	// part: part 1
	// reply: reply
}
