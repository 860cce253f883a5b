package fanout

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/storage"
)

func TestStorePolicy(t *testing.T) {
	const bucket = "s3://bkt/gowren?region=eu-west-1"
	for _, tc := range []struct {
		spec  string
		store string
		ok    bool
	}{
		{"*", "file:///anything", true},
		{"s3", "s3://any/x?endpoint=http://10.0.0.1:9000", true},
		{"s3:", "s3://any", true},
		{"s3://", "S3://any", true},
		{"s3", "file:///tmp/x", false},
		{"s3, file", "file:///tmp/x", true},
		{bucket, bucket, true},
		{bucket, "s3://bkt/gowren/jobs?region=eu-west-1", true},
		{bucket, "s3://bkt/gowren/?region=eu-west-1", true},
		{bucket, "s3://bkt/gowrenx?region=eu-west-1", false},   // not under the path
		{bucket, "s3://bkt/?region=eu-west-1", false},          // above it
		{bucket, "s3://other/gowren?region=eu-west-1", false},  // another bucket
		{bucket, "s3://bkt/gowren?region=us-east-1", false},    // another region
		{bucket, "s3://bkt/gowren", false},                     // the entry's region missing
		{bucket, "s3://bkt/gowren?region=eu-west-1&x=1", true}, // extra settings are the job's
		{bucket, "s3://bkt/gowren?region=eu-west-1&endpoint=http://evil", false},
		{"s3://bkt?endpoint=http://minio:9000", "s3://bkt/p?endpoint=http://minio:9000&path_style=true", true},
		{"s3://bkt?endpoint=http://minio:9000", "s3://bkt/p?endpoint=http://other:9000", false},
		{"s3://bkt", "s3://bkt/anything/below", true},
		{"file:///srv/gowren", "file:///srv/gowren/job", true},
		{"file:///srv/gowren", "file:///srv/gowren/../etc", false},
		{"file:///srv/gowren", "file:///srv", false},
	} {
		err := parseStorePolicy(tc.spec, "test").check(tc.store)
		if (err == nil) != tc.ok {
			t.Errorf("allow-list %q, store %q: err = %v, want allowed %v", tc.spec, tc.store, err, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), tc.store) || !strings.Contains(err.Error(), "-stores")) {
			t.Errorf("allow-list %q, store %q: error %q names neither the store nor what to do", tc.spec, tc.store, err)
		}
	}
	for _, spec := range []string{"", " , ", "1abc", "s3 bucket", "://x"} {
		err := parseStorePolicy(spec, EnvWorkerStores).check("s3://bkt")
		if err == nil || !strings.Contains(err.Error(), EnvWorkerStores) {
			t.Errorf("allow-list %q: err = %v, want one naming %s", spec, err, EnvWorkerStores)
		}
	}
	var none *storePolicy
	if err := none.check("file:///x"); err != nil {
		t.Errorf("no allow-list: %v", err)
	}
}

// A request this worker cannot serve, or naming a store it may not open,
// touches no store: the directory a file:// URL names is never created,
// even for an asynchronous request whose reply would go there.
func TestHandleTouchesNoStoreItRefuses(t *testing.T) {
	r := NewRegistry()
	f := RegisterTo(r, "double", func(_ context.Context, x int) (int, error) { return 2 * x, nil })
	in, err := encodeValue(21)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		fn     string
		digest string
		policy *storePolicy
		want   error
	}{
		{"unknown function", "nosuch", f.fn.digest, nil, ErrUnknownFunction},
		{"stale signature", "double", "0000", nil, ErrStaleWorker},
		{"store not allowed", "double", f.fn.digest, parseStorePolicy("s3", "test"), ErrStoreRefused},
		{"malformed allow-list", "double", f.fn.digest, parseStorePolicy("1x", "test"), ErrStoreRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			u := (&url.URL{Scheme: "file", Path: dir}).String()
			for _, async := range []bool{false, true} {
				req := &wireRequest{Job: "j", Func: tc.fn, Digest: tc.digest, Store: u, Prefix: "jobs/j/", Parallel: 1,
					Tasks: []wireTask{{Index: 0, Input: in}}}
				if async {
					req.Flags, req.ReplyKey = flagAsync, "jobs/j/replies/0"
				}
				var buf bytes.Buffer
				if err := encodeRequest(&buf, req); err != nil {
					t.Fatal(err)
				}
				reply := r.handle(context.Background(), buf.Bytes(), tc.policy)
				if err := ReplyError(reply); !errors.Is(err, tc.want) {
					t.Errorf("async %v: ReplyError = %v, want %v", async, err, tc.want)
				}
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("async %v: the store's directory exists (err %v): the worker opened a store it should not have", async, err)
				}
			}
		})
	}
	// The same request on an allowed store is served, and writes its
	// asynchronous reply there.
	dir := filepath.Join(t.TempDir(), "store")
	u := (&url.URL{Scheme: "file", Path: dir}).String()
	req := &wireRequest{Job: "j", Func: "double", Digest: f.fn.digest, Store: u, Prefix: "jobs/j/", Parallel: 1,
		Flags: flagAsync, ReplyKey: "jobs/j/replies/0", Tasks: []wireTask{{Index: 0, Input: in}}}
	var buf bytes.Buffer
	if err := encodeRequest(&buf, req); err != nil {
		t.Fatal(err)
	}
	if err := ReplyError(r.handle(context.Background(), buf.Bytes(), parseStorePolicy("file://"+dir, "test"))); err != nil {
		t.Fatalf("allowed store: %v", err)
	}
	st, err := storage.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Get(context.Background(), "jobs/j/replies/0"); err != nil {
		t.Fatalf("the reply is not in the allowed store: %v", err)
	}
}

// cloudLike serves invocations in this process, through a registry and an
// allow-list of its own, and invokes asynchronously as a cloud backend does:
// the answer of an asynchronous invocation goes nowhere.
type cloudLike struct {
	r       *Registry
	policy  *storePolicy
	invokes atomic.Int32
	async   atomic.Int32
}

func (c *cloudLike) Invoke(ctx context.Context, p []byte) ([]byte, error) {
	c.invokes.Add(1)
	return c.r.handle(ctx, p, c.policy), nil
}

func (c *cloudLike) InvokeAsync(ctx context.Context, p []byte) error {
	c.async.Add(1)
	go c.r.handle(context.WithoutCancel(ctx), bytes.Clone(p), c.policy)
	return nil
}

func (c *cloudLike) Limits() backends.Limits {
	return backends.Limits{Concurrency: 4, MaxRequestBytes: 1 << 20, SameHost: true}
}

func (c *cloudLike) Close() error { return nil }

// An asynchronous job on workers that lack its function, have
// another version of it, or may not open its store fails at Start, after
// one synchronous invocation and before any asynchronous one: its workers
// could not have told the driver.
func TestAsyncStartChecksWorker(t *testing.T) {
	ctx := context.Background()
	st, err := storage.Open(ctx, (&url.URL{Scheme: "file", Path: t.TempDir()}).String())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mine := NewRegistry()
	f := RegisterTo(mine, "double", func(_ context.Context, x int) (int, error) { return 2 * x, nil })
	older := NewRegistry()
	RegisterTo(older, "double", func(_ context.Context, x int8) (int, error) { return 2 * int(x), nil })
	for _, tc := range []struct {
		name   string
		r      *Registry
		policy *storePolicy
		want   error
	}{
		{"unknown function", NewRegistry(), nil, ErrUnknownFunction},
		{"stale worker", older, nil, ErrStaleWorker},
		{"store refused", mine, parseStorePolicy("s3", "the test runtime's default"), ErrStoreRefused},
		{"accepted", mine, parseStorePolicy(st.URL(), "test"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &cloudLike{r: tc.r, policy: tc.policy}
			ex := NewExecutor(b, &Options{Store: st, Async: true})
			defer ex.Close()
			job, err := Start(ctx, ex, f, []int{1, 2, 3})
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("Start = %v, want %v", err, tc.want)
				}
				if n := b.async.Load(); n != 0 {
					t.Errorf("%d asynchronous invocations made for a job that cannot run", n)
				}
				if n := b.invokes.Load(); n != 1 {
					t.Errorf("%d synchronous invocations, want the one check", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := job.Wait(ctx)
			if err != nil || !slices.Equal(got, []int{2, 4, 6}) {
				t.Fatalf("Wait = %v, %v", got, err)
			}
			// The check is made once per executor and function.
			if _, err := Map(ctx, ex, f, []int{4}); err != nil {
				t.Fatal(err)
			}
			if n := b.invokes.Load(); n != 1 {
				t.Errorf("%d synchronous invocations, want the one check", n)
			}
		})
	}
}
