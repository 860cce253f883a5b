// Command install installs versitygw into the cache directory that the
// tests of this module use (see package s3test), when it is not there yet,
// and prints its path. CI runs it before the tests so that the one-time
// build (a minute or two) is not charged to a test's timeout:
//
//	go run ./storage/s3store/s3test/install
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/gowren/gowren/storage/s3store/s3test"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	path, err := s3test.Install(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(path)
}
