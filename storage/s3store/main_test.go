package s3store_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage/s3store/s3test"
)

// server is the versitygw that the tests of this package share.
var server *s3test.Server

// TestMain serves as a worker when the process backend started this binary
// as one (fanout_test.go); otherwise it starts versitygw on loopback
// (installing it first when missing), runs the tests and stops it.
func TestMain(m *testing.M) {
	fanout.Init()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	var err error
	server, err = s3test.Start(ctx, nil)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "s3store tests need versitygw, a real S3 server run on loopback: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := server.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
