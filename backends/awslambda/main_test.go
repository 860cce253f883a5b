package awslambda_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"go.uber.org/goleak"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/awslambda"
	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
	"github.com/gowren/gowren/backends/awslambda/internal/testbuild"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
)

func TestMain(m *testing.M) {
	fanout.Init()
	code := m.Run()
	testbuild.Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testWriter sends worker output to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// newClient returns a real SDK client for a loopback endpoint with static
// credentials; its idle connections are closed when t ends.
func newClient(t testing.TB, endpoint string, rt http.RoundTripper) *lambda.Client {
	if rt == nil {
		tr := &http.Transport{MaxIdleConnsPerHost: 64}
		t.Cleanup(tr.CloseIdleConnections)
		rt = tr
	}
	return lambda.New(lambda.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		HTTPClient:   &http.Client{Transport: rt},
	})
}

// sameHost is the backend as the tests use it: its workers run on this
// machine, so it reports SameHost and the executor accepts a file:// store
// (there is no s3:// store to test with yet). On Lambda, workers are
// remote and the store must be s3://.
type sameHost struct{ *awslambda.Backend }

func (b sameHost) Limits() backends.Limits {
	l := b.Backend.Limits()
	l.SameHost = true
	return l
}

// fileStore returns a file:// store in a temporary directory, closed when t
// ends.
func fileStore(t testing.TB) storage.Store {
	st, err := filestore.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newFake starts a loopback Lambda whose workers run the gowren test worker.
func newFake(t testing.TB, o awslambdatest.Options) *awslambdatest.Server {
	t.Helper()
	o.Command = []string{testbuild.Worker(t)}
	if o.Stderr == nil {
		o.Stderr = testWriter{t}
	}
	if o.RetryAfter == 0 {
		o.RetryAfter = 20 * time.Millisecond
	}
	s, err := awslambdatest.New(&o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close the loopback Lambda: %v", err)
		}
	})
	return s
}

func guard(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// hangGuard returns a context for steps whose length depends on the
// machine rather than on the code under test, such as a go build on a cold
// cache while other tests load the cores: it ends only shortly before the
// test binary's own deadline (go test -timeout), leaving a tenth of the
// time left (at most 30s) for the test to fail with its own message. It
// stops a hung test and never times a slow one.
func hangGuard(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), dl.Add(-min(time.Until(dl)/10, 30*time.Second)))
	}
	t.Cleanup(cancel)
	return ctx
}
