package tencentscf_test

import (
	"context"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/backendtest"
	"github.com/gowren/gowren/backends/tencentscf"
	"github.com/gowren/gowren/backends/tencentscf/scftest"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
)

const testRegion = "ap-guangzhou"

// sameHost wraps the backend for tests only: its workers run on this
// machine, so it reports SameHost and the executor accepts a file:// store
// in a temporary directory. On SCF the store is COS, through s3store.
type sameHost struct{ *tencentscf.Backend }

func (b sameHost) Limits() backends.Limits {
	l := b.Backend.Limits()
	l.SameHost = true
	return l
}

// newBackend returns a backend for the function on srv, closed when the
// test ends by whoever owns it.
func newBackend(t *testing.T, srv *scftest.Server, cred common.CredentialIface, region, function string, opts *tencentscf.Options) *tencentscf.Backend {
	t.Helper()
	client, err := tencentscf.NewClient(cred, region, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	return tencentscf.New(client, function, opts)
}

func testCred() *common.Credential {
	return common.NewCredential(scftest.TestSecretID, scftest.TestSecretKey)
}

// conformanceTimeout is the function timeout of the conformance and fault
// suites' function, on the server and in the backend. It is a guard, not
// part of what they test: an invocation of a 6 MB batch, signed, wrapped in
// JSON and run on a worker, takes seconds when other tests load the cores,
// and the driver gives up on an invocation a few seconds after the
// function's timeout. An execution whose driver gave up (the suite's
// cancellation tests block until cancelled, which SCF does not do) keeps
// its instance until then, hence conformanceQuotaMB.
const conformanceTimeout = time.Minute

// conformanceQuotaMB is the region's concurrency quota of those servers:
// sixteen 128 MB instances. The suite's parallel tests still meet it
// (status 432, which the executor retries), and the eight executions its
// cancellation tests leave running until their timeout cannot take all of
// it.
const conformanceQuotaMB = 16 * 128

type harness struct {
	t     *testing.T
	srv   *scftest.Server
	store storage.Store
}

func (h *harness) MakeBackend(context.Context) (backends.Backend, error) {
	return sameHost{newBackend(h.t, h.srv, testCred(), testRegion, "conformance", &tencentscf.Options{Concurrency: 4, Timeout: conformanceTimeout})}, nil
}

func (h *harness) MakeStore(context.Context) (storage.Store, error) { return h.store, nil }
func (h *harness) Close()                                           { h.store.Close() }

func TestConformance(t *testing.T) {
	bin := workerBinary(t)
	srv := newServer(t, &scftest.Options{ConcurrencyQuotaMB: conformanceQuotaMB})
	if err := srv.AddFunction(scftest.Function{Region: testRegion, Name: "conformance", Command: []string{bin}, Timeout: conformanceTimeout}); err != nil {
		t.Fatal(err)
	}
	backendtest.RunConformanceTests(t, func(_ context.Context, t *testing.T) (backendtest.Harness, error) {
		st, err := filestore.New(t.TempDir(), nil)
		if err != nil {
			return nil, err
		}
		return &harness{t: t, srv: srv, store: st}, nil
	})
	t.Cleanup(func() {
		st := srv.Stats()
		t.Logf("server: calls %v, errors %v, executions by status %v, %d cold starts, peak %d instances",
			st.Calls, st.Errors, st.Invocations, st.ColdStarts, st.PeakInstances)
	})
}

// TestFaultSuite runs the reliability fault suite over the loopback SCF:
// chaos faults on top of what the server itself does (its concurrency quota
// throttles with status 432).
func TestFaultSuite(t *testing.T) {
	bin := workerBinary(t)
	srv := newServer(t, &scftest.Options{ConcurrencyQuotaMB: conformanceQuotaMB})
	if err := srv.AddFunction(scftest.Function{Region: testRegion, Name: "conformance", Command: []string{bin}, Timeout: conformanceTimeout}); err != nil {
		t.Fatal(err)
	}
	backendtest.RunFaultSuite(t, func(_ context.Context, t *testing.T) (backendtest.Harness, error) {
		st, err := filestore.New(t.TempDir(), nil)
		if err != nil {
			return nil, err
		}
		return &harness{t: t, srv: srv, store: st}, nil
	})
}
