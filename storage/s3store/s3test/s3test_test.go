package s3test_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/s3store/s3test"
)

// Servers start side by side, serve stores that storage.Open reaches from
// their URLs with the credentials in the environment, and are gone after
// Close, directory included.
func TestServers(t *testing.T) {
	ctx := t.Context()
	var (
		wg   sync.WaitGroup
		srvs [2]*s3test.Server
		errs [2]error
	)
	for i := range srvs {
		wg.Go(func() { srvs[i], errs[i] = s3test.Start(ctx, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("server %d: %v", i, err)
		}
		defer srvs[i].Close()
	}
	if srvs[0].Endpoint == srvs[1].Endpoint {
		t.Fatalf("two servers on %s", srvs[0].Endpoint)
	}
	for i, srv := range srvs {
		bucket, err := srv.NewBucket(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st, err := storage.Open(ctx, srv.URL(bucket, "p"))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Put(ctx, "k", []byte{byte(i)}); err != nil {
			t.Fatalf("server %d: Put through storage.Open(%s): %v", i, srv.URL(bucket, "p"), err)
		}
		direct := srv.Store(t, "", nil)
		if err := direct.Put(ctx, "x", nil); err != nil {
			t.Fatal(err)
		}
		st.Close()
	}
	for _, kv := range s3test.Env() {
		k, v, _ := strings.Cut(kv, "=")
		if os.Getenv(k) != v {
			t.Errorf("$%s = %q after Start, want %q", k, os.Getenv(k), v)
		}
	}
	srv := srvs[0]
	addr := strings.TrimPrefix(srv.Endpoint, "http://")
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("%s still answers after Close", addr)
	}
	if _, err := os.Stat(srv.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the server's directory %s is still there after Close: %v", srv.Dir, err)
	}
}

func TestInstallFromEnv(t *testing.T) {
	t.Setenv(s3test.EnvVersitygw, "/no/such/versitygw")
	if _, err := s3test.Install(context.Background()); err == nil || !strings.Contains(err.Error(), s3test.EnvVersitygw) {
		t.Fatalf("Install with $%s naming a missing file: %v, want an error naming the variable", s3test.EnvVersitygw, err)
	}
	t.Setenv(s3test.EnvVersitygw, "")
	p, err := s3test.Install(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(s3test.EnvVersitygw, p)
	if got, err := s3test.Install(context.Background()); err != nil || got != p {
		t.Fatalf("Install with $%s=%s = %q, %v", s3test.EnvVersitygw, p, got, err)
	}
}
