package tencentscf_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/tencentscf"
	"github.com/gowren/gowren/backends/tencentscf/internal/testfuncs"
	"github.com/gowren/gowren/backends/tencentscf/scftest"
	"github.com/gowren/gowren/fanout"
)

// errorServer is a loopback SCF with the test worker deployed as
// "worker" in testRegion.
func errorServer(t *testing.T, opts *scftest.Options, fn scftest.Function) *scftest.Server {
	t.Helper()
	bin := workerBinary(t)
	srv := newServer(t, opts)
	if fn.Name == "" {
		fn.Name = "worker"
	}
	fn.Region, fn.Command = testRegion, []string{bin}
	if err := srv.AddFunction(fn); err != nil {
		t.Fatal(err)
	}
	return srv
}

// mapOn runs Map on a new executor over b, closed before it returns.
func mapOn[In, Out any](t *testing.T, b backends.Backend, opts *fanout.Options, f *fanout.Func[In, Out], in []In) ([]Out, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ex := fanout.NewExecutor(b, opts)
	defer ex.Close()
	return fanout.Map(ctx, ex, f, in)
}

func TestConfigurationErrors(t *testing.T) {
	t.Parallel()
	srv := errorServer(t, nil, scftest.Function{})
	for _, tc := range []struct {
		name     string
		cred     common.CredentialIface
		region   string
		function string
		opts     *tencentscf.Options
		is       error
		says     []string
	}{
		{"UnknownFunction", testCred(), testRegion, "nosuch", nil, tencentscf.ErrFunctionNotFound,
			[]string{`no function "nosuch"`, "region ap-guangzhou", "gowren deploy scf"}},
		{"RegionWithoutTheFunction", testCred(), "ap-shanghai", "worker", nil, tencentscf.ErrFunctionNotFound,
			[]string{"region ap-shanghai", "check the name, region and namespace"}},
		{"UnknownNamespace", testCred(), testRegion, "worker", &tencentscf.Options{Namespace: "nosuchns"}, tencentscf.ErrFunctionNotFound,
			[]string{`no namespace "nosuchns"`}},
		{"UnknownQualifier", testCred(), testRegion, "worker", &tencentscf.Options{Qualifier: "7"}, tencentscf.ErrFunctionNotFound,
			[]string{`no version or alias "7"`}},
		{"UnsupportedRegion", testCred(), "mars-north-1", "worker", nil, nil,
			[]string{`region "mars-north-1" does not offer SCF`}},
		{"WrongKey", common.NewCredential(scftest.TestSecretID, "not-the-key"), testRegion, "worker", nil, tencentscf.ErrCredentials,
			[]string{"AuthFailure.SignatureFailure", tencentscf.EnvSecretKey}},
		{"UnknownSecretID", common.NewCredential("AKIDnosuch", "key"), testRegion, "worker", nil, tencentscf.ErrCredentials,
			[]string{"AuthFailure.SecretIdNotFound", tencentscf.EnvSecretID}},
		{"UnexpectedToken", common.NewTokenCredential(scftest.TestSecretID, scftest.TestSecretKey, "stale-token"), testRegion, "worker", nil,
			tencentscf.ErrCredentials, []string{"AuthFailure.TokenFailure", tencentscf.EnvSessionToken}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t, srv, tc.cred, tc.region, tc.function, tc.opts)
			_, err := mapOn(t, b, nil, square, []int{1, 2, 3})
			if err == nil {
				t.Fatal("Map succeeded")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want %v", err, tc.is)
			}
			if backends.Retryable(err) {
				t.Errorf("err = %v is retryable; a configuration error is not", err)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

func TestThrottlingIsRetried(t *testing.T) {
	t.Parallel()
	t.Run("RequestLimitExceeded", func(t *testing.T) {
		t.Parallel()
		// The server allows 40 InvokeFunction calls a second, one at a
		// time; the backend is told it may send 1000: the API refuses the
		// excess with RequestLimitExceeded, which the executor retries.
		srv := errorServer(t, &scftest.Options{SyncRate: 40, RateBurst: 1}, scftest.Function{})
		b := sameHost{newBackend(t, srv, testCred(), testRegion, "worker", &tencentscf.Options{SyncRate: 1000, Concurrency: 8})}
		in := make([]int, 40)
		for i := range in {
			in[i] = i
		}
		got, err := mapOn(t, b, &fanout.Options{BatchSize: 1}, square, in)
		if err != nil {
			t.Fatalf("Map: %v; throttled invocations must be retried, not failed", err)
		}
		for i, v := range got {
			if v != i*i {
				t.Fatalf("out[%d] = %d", i, v)
			}
		}
		if n := srv.Stats().Errors["RequestLimitExceeded"]; n == 0 {
			t.Error("the server refused no call: the test did not exercise throttling")
		}
	})
	t.Run("ConcurrencyQuota", func(t *testing.T) {
		t.Parallel()
		// One 128 MB instance fits the region's quota; four invocations at
		// once meet status 432, which is retried.
		srv := errorServer(t, &scftest.Options{ConcurrencyQuotaMB: 128}, scftest.Function{})
		b := sameHost{newBackend(t, srv, testCred(), testRegion, "worker", &tencentscf.Options{Concurrency: 4})}
		got, err := mapOn(t, b, &fanout.Options{BatchSize: 1}, testfuncs.Sleep, []int{100, 100, 100, 100})
		if err != nil || len(got) != 4 {
			t.Fatalf("Map = %v, %v; want four results", got, err)
		}
		st := srv.Stats()
		if st.Invocations[432] == 0 || st.PeakInstances != 1 {
			t.Errorf("executions by status %v, peak %d instances; want some 432 and never more than one instance", st.Invocations, st.PeakInstances)
		}
	})
}

func TestLimiterKeepsUnderTheAPILimits(t *testing.T) {
	t.Parallel()
	// The backend's own limiter keeps to the rate the API allows: the
	// server, allowing the same rate with a little more burst for network
	// jitter, refuses nothing.
	srv := errorServer(t, &scftest.Options{SyncRate: 50, AsyncRate: 50, RateBurst: 20}, scftest.Function{})
	b := newBackend(t, srv, testCred(), testRegion, "worker", &tencentscf.Options{SyncRate: 50, AsyncRate: 50, Concurrency: 16})
	defer b.Close()
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 80)
	for range 40 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := b.Invoke(ctx, []byte("not an envelope: the worker answers with an error reply"))
			errs <- err
		}()
		go func() {
			defer wg.Done()
			errs <- b.InvokeAsync(ctx, []byte("not an envelope either"))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("invoke: %v", err)
		}
	}
	// 40 calls of each kind at 50 a second with bursts of 5: at least
	// (40-5)/50 s.
	if d := time.Since(start); d < 700*time.Millisecond {
		t.Errorf("80 calls took %v; the limiter did not space them", d)
	}
	if n := srv.Stats().Errors["RequestLimitExceeded"]; n != 0 {
		t.Errorf("the server refused %d calls for their rate", n)
	}
}

func TestWorkerLost(t *testing.T) {
	t.Parallel()
	t.Run("ProcessExit", func(t *testing.T) {
		t.Parallel()
		srv := errorServer(t, nil, scftest.Function{})
		b := sameHost{newBackend(t, srv, testCred(), testRegion, "worker", nil)}
		_, err := mapOn(t, b, &fanout.Options{Retries: 1}, testfuncs.Exit, []int{4})
		var te *fanout.TaskError
		if !errors.As(err, &te) || !errors.Is(err, backends.ErrWorkerLost) || te.Attempts != 2 {
			t.Fatalf("err = %v, want a lost worker after 2 attempts", err)
		}
		var fe *tencentscf.FunctionError
		if !errors.As(err, &fe) || fe.StatusCode != 439 {
			t.Fatalf("err = %v, want a *FunctionError with status 439", err)
		}
		// What the process printed before it died comes back in the
		// Result's Log (the backend asks for it) and ends the message.
		const said = "testfuncs: exiting with status 4"
		if !strings.Contains(fe.Log, said) || !strings.Contains(err.Error(), "last output: "+said) {
			t.Errorf("log %q, error %q; want both to have the worker's last words %q", fe.Log, err, said)
		}
		if n := srv.Stats().Invocations[439]; n != 2 {
			t.Errorf("%d executions ended with status 439, want 2", n)
		}
	})
	t.Run("Timeout", func(t *testing.T) {
		t.Parallel()
		// The function's timeout is 1 s, and its task sleeps for an hour,
		// ignoring its context: only the worker giving up on it at the
		// request's deadline (less the reserve for the reply) ends the
		// invocation. The worker reports the task as timed out and the
		// invocation itself succeeds, where SCF would otherwise end it with
		// status 433 and the driver see a lost worker.
		//
		// The server waits a minute past the deadline before it calls the
		// execution timed out (SCF does not wait at all): how long the
		// worker's reply takes to arrive depends on how busy the machine
		// is, and a reply made at the deadline less the reserve is what is
		// tested here. That the task's context ends that reserve before the
		// request's deadline is checked to the millisecond by
		// TestWorkerRuntime/Deadline.
		// The backend's Timeout only sets how long the driver waits for a
		// reply (a little longer than it): a guard too.
		srv := errorServer(t, &scftest.Options{TimeoutGrace: time.Minute}, scftest.Function{Timeout: time.Second})
		b := sameHost{newBackend(t, srv, testCred(), testRegion, "worker", &tencentscf.Options{Timeout: time.Minute})}
		_, err := mapOn(t, b, &fanout.Options{Retries: -1}, testfuncs.Sleep, []int{int(time.Hour / time.Millisecond)})
		if !errors.Is(err, fanout.ErrTaskTimeout) || errors.Is(err, backends.ErrWorkerLost) {
			t.Fatalf("err = %v, want a timed-out task, reported by the worker", err)
		}
		if st := srv.Stats().Invocations; st[433] != 0 || st[200] != 1 {
			t.Errorf("executions by status %v, want one that returned (200) and none that timed out (433)", st)
		}
	})
}

func TestPayloadLimits(t *testing.T) {
	t.Parallel()
	srv := errorServer(t, &scftest.Options{MaxAsyncEventBytes: 64 << 10}, scftest.Function{})
	b := newBackend(t, srv, testCred(), testRegion, "worker", nil)
	defer b.Close()
	l := b.Limits()
	if l.MaxRequestBytes != backends.MaxRawForJSON(6<<20) || l.MaxResponseBytes != backends.MaxRawForJSON(6<<20) ||
		l.MaxAsyncRequestBytes != backends.MaxRawForJSON(128<<10) || l.SameHost || l.InProcess || l.Concurrency != 128 ||
		l.Platform != backends.PlatformSCF || l.MemoryMB != 0 {
		t.Errorf("Limits() = %+v", l)
	}
	// Payloads over the limits are refused (with ErrPayloadTooLarge, as
	// backendtest's Contract group checks) before the API is called.
	ctx := context.Background()
	calls := srv.Stats().Calls
	_, _ = b.Invoke(ctx, make([]byte, l.MaxRequestBytes+1))
	_ = b.InvokeAsync(ctx, make([]byte, l.MaxAsyncRequestBytes+1))
	if after := srv.Stats().Calls; len(after) != len(calls) {
		t.Errorf("oversized payloads reached the API: %v", after)
	}
	// The platform's own refusal (status 406) is classified the same way.
	err := b.InvokeAsync(ctx, make([]byte, 80<<10))
	var fe *tencentscf.FunctionError
	if !errors.Is(err, backends.ErrPayloadTooLarge) || !errors.As(err, &fe) || fe.StatusCode != 406 {
		t.Errorf("InvokeAsync refused by the platform: %v, want ErrPayloadTooLarge from status 406", err)
	}
}

func TestInvokeAsync(t *testing.T) {
	t.Parallel()
	done := make(chan scftest.AsyncResult, 1)
	srv := errorServer(t, &scftest.Options{OnAsync: func(r scftest.AsyncResult) { done <- r }}, scftest.Function{})
	b := newBackend(t, srv, testCred(), testRegion, "worker", nil)
	defer b.Close()
	if err := b.InvokeAsync(context.Background(), []byte("not an envelope")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		reply, err := backends.DecodeJSON([]byte(r.RetMsg))
		if r.StatusCode != 200 || err != nil {
			t.Fatalf("async execution: status %d, reply %q (%v)", r.StatusCode, r.RetMsg, err)
		}
		if err := fanout.ReplyError(reply); !errors.Is(err, fanout.ErrMalformed) {
			t.Errorf("the worker's reply carries %v, want ErrMalformed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the asynchronous invocation did not run")
	}
	if n := srv.Stats().Calls["Invoke"]; n != 1 {
		t.Errorf("%d Invoke calls, want 1", n)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	reached := make(chan struct{}, 1)
	srv := errorServer(t, &scftest.Options{Intercept: func(c scftest.Call) *scftest.APIError {
		if c.Action == "InvokeFunction" {
			select {
			case reached <- struct{}{}:
			default:
			}
		}
		return nil
	}}, scftest.Function{Timeout: 15 * time.Minute})
	b := newBackend(t, srv, testCred(), testRegion, "worker", &tencentscf.Options{Concurrency: 1})
	errs := make(chan error, 2)
	go func() {
		// The task would sleep for an hour, and the function's timeout is
		// SCF's longest: only Close can end the invocation in time.
		_, err := mapOn(t, b, &fanout.Options{Retries: -1}, testfuncs.Sleep, []int{int(time.Hour / time.Millisecond)})
		errs <- err
	}()
	<-reached // the first invocation holds the only slot
	go func() {
		_, err := b.Invoke(context.Background(), []byte("x"))
		errs <- err
	}()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	guard := time.NewTimer(time.Minute) // mapOn gives up after a minute as well
	defer guard.Stop()
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, backends.ErrClosed) {
				t.Errorf("invocation during Close: %v, want ErrClosed", err)
			}
		case <-guard.C:
			t.Fatal("the invocations did not return after Close; Close must cancel the invocations in flight")
		}
	}
}

func TestKillInstances(t *testing.T) {
	t.Parallel()
	srv := errorServer(t, nil, scftest.Function{})
	run := func() {
		t.Helper()
		b := sameHost{newBackend(t, srv, testCred(), testRegion, "worker", nil)}
		if got, err := mapOn(t, b, nil, square, []int{3}); err != nil || got[0] != 9 {
			t.Fatalf("Map = %v, %v", got, err)
		}
	}
	run()
	if n := srv.KillInstances(testRegion, "default", "worker"); n != 1 {
		t.Fatalf("KillInstances killed %d instances, want the one idle", n)
	}
	run() // on a new instance
	if st := srv.Stats(); st.ColdStarts != 2 {
		t.Errorf("%d cold starts, want 2", st.ColdStarts)
	}
}
