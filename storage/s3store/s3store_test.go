package s3store_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/s3store"
	"github.com/gowren/gowren/storage/s3store/s3test"
)

func randBytes(n int, seed uint64) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 7})
	b := make([]byte, n)
	r.Read(b)
	return b
}

// rawGet reads an S3 key with the server's own client, bypassing s3store.
func rawGet(t *testing.T, bucket, key string) ([]byte, error) {
	t.Helper()
	out, err := server.Client().GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

func rawPut(t *testing.T, bucket, key string, data []byte) {
	t.Helper()
	_, err := server.Client().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data)})
	if err != nil {
		t.Fatalf("raw put %q: %v", key, err)
	}
}

// uploadsInProgress counts the bucket's incomplete multipart uploads.
func uploadsInProgress(t *testing.T, bucket string) int {
	t.Helper()
	out, err := server.Client().ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	return len(out.Uploads)
}

func listKeys(t *testing.T, st storage.Store, prefix string) []string {
	t.Helper()
	var keys []string
	for info, err := range st.List(t.Context(), prefix) {
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		keys = append(keys, info.Key)
	}
	return keys
}

// Keys reach S3 unchanged, under the prefix, and objects that other tools
// wrote under it are listed and read; keys that are not valid storage keys
// are skipped by List.
func TestKeysVerbatim(t *testing.T) {
	t.Parallel()
	st := server.Store(t, "/pre/fix/", nil)
	if got := st.Prefix(); got != "pre/fix/" {
		t.Fatalf("Prefix() = %q, want %q", got, "pre/fix/")
	}
	keys := []string{"a", "with space/x+y%25", "日本/é", "q?&=#"}
	for _, k := range keys {
		if err := st.Put(t.Context(), k, []byte("v:"+k)); err != nil {
			t.Fatal(err)
		}
		got, err := rawGet(t, st.Bucket(), "pre/fix/"+k)
		if err != nil || string(got) != "v:"+k {
			t.Errorf("S3 key %q = %q, %v; want what s3store put", "pre/fix/"+k, got, err)
		}
	}
	rawPut(t, st.Bucket(), "pre/fix/from-elsewhere", []byte("x"))
	rawPut(t, st.Bucket(), "pre/fix/folder/", nil)    // a console's folder marker
	rawPut(t, st.Bucket(), "pre/fixed/not-mine", nil) // beside the prefix
	rawPut(t, st.Bucket(), "pre/fix/bad\\key", nil)   // not a valid storage key
	want := []string{"a", "from-elsewhere", "q?&=#", "with space/x+y%25", "日本/é"}
	if got := listKeys(t, st, ""); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("List = %q, want %q", got, want)
	}
	if b, err := st.Get(t.Context(), "from-elsewhere"); err != nil || string(b) != "x" {
		t.Errorf("Get of an object put by another client = %q, %v", b, err)
	}
}

func TestURL(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, tc := range []struct {
		name, url, want string
	}{
		{"minimal", "s3://bucket-a?region=eu-west-1", "s3://bucket-a/?region=eu-west-1"},
		{"prefix", "s3://bucket-a/some/prefix/?region=eu-west-1", "s3://bucket-a/some/prefix?region=eu-west-1"},
		{"minio", "s3://data/gowren?endpoint=http://minio.local:9000&path_style=true",
			"s3://data/gowren?endpoint=http%3A%2F%2Fminio.local%3A9000&path_style=true&region=us-east-1"},
		{"cos", "s3://photos-1250000000/in?region=ap-guangzhou&endpoint=https://cos.ap-guangzhou.myqcloud.com",
			"s3://photos-1250000000/in?endpoint=https%3A%2F%2Fcos.ap-guangzhou.myqcloud.com&region=ap-guangzhou"},
		{"r2 endpoint without scheme", "s3://b2b/x?region=auto&endpoint=acct.r2.cloudflarestorage.com",
			"s3://b2b/x?endpoint=https%3A%2F%2Facct.r2.cloudflarestorage.com&region=auto"},
		{"options", "s3://bkt?region=r&part_size=16777216&upload_concurrency=2&max_object_size=100&max_attempts=3&path_style=false",
			"s3://bkt/?max_attempts=3&max_object_size=100&part_size=16777216&region=r&upload_concurrency=2"},
		{"escaped prefix", "s3://bkt/a%20b/c%25?region=r", "s3://bkt/a%20b/c%25?region=r"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := storage.Open(ctx, tc.url)
			if err != nil {
				t.Fatalf("Open(%q): %v", tc.url, err)
			}
			defer st.Close()
			if got := st.URL(); got != tc.want {
				t.Fatalf("Open(%q).URL() = %q, want %q", tc.url, got, tc.want)
			}
			st2, err := storage.Open(ctx, st.URL())
			if err != nil {
				t.Fatalf("Open(URL()): %v", err)
			}
			defer st2.Close()
			if st2.URL() != st.URL() {
				t.Fatalf("reopened URL %q, want %q", st2.URL(), st.URL())
			}
		})
	}
	for _, tc := range []struct{ name, url, want string }{
		{"unknown parameter", "s3://bkt?region=r&regoin=x", `unknown parameter "regoin"`},
		{"repeated parameter", "s3://bkt?region=r&region=s", `"region" given 2 times`},
		{"no bucket", "s3:///prefix?region=r", "no bucket"},
		{"credentials", "s3://AKIA:secret@bkt?region=r", "credentials do not belong in the URL"},
		{"bad path_style", "s3://bkt?region=r&path_style=yes", "path_style"},
		{"small part", "s3://bkt?region=r&part_size=1000", "PartSize 1000"},
		{"negative number", "s3://bkt?region=r&max_attempts=-1", "max_attempts"},
		{"endpoint scheme", "s3://bkt?endpoint=ftp://x", `scheme "ftp"`},
		{"endpoint query", "s3://bkt?endpoint=" + url.QueryEscape("http://x/?a=b"), "endpoint"},
		{"bad bucket", "s3://b_!?region=r", "bucket"},
		{"bad prefix", "s3://bkt/a//b?region=r", "empty segment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := storage.Open(ctx, tc.url)
			if err == nil {
				st.Close()
				t.Fatalf("Open(%q) succeeded, want an error containing %q", tc.url, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "s3store: open") {
				t.Fatalf("Open(%q) = %v, want an error from s3store naming %q", tc.url, err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("the error shows the secret: %v", err)
			}
		})
	}
}

func TestNewOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []s3store.Options{
		{PartSize: s3store.MinPartSize - 1}, {PartSize: s3store.MaxPartSize + 1},
		{UploadConcurrency: -1}, {MaxObjectSize: -1}, {MaxAttempts: -1},
	} {
		if _, err := s3store.New(server.Client(), "bucket", "", &o); err == nil {
			t.Errorf("New with %+v succeeded", o)
		}
	}
	if _, err := s3store.New(nil, "bucket", "", nil); err == nil {
		t.Error("New with a nil client succeeded")
	}
}

// Large objects go up in parts, concurrently; nothing is visible before
// Close; the parts are of the documented size.
func TestMultipart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const part = s3store.MinPartSize
	st := server.Store(t, "mp", &s3store.Options{PartSize: part, UploadConcurrency: 3})
	data := randBytes(4*part+12345, 1)

	t.Run("Put", func(t *testing.T) {
		if err := st.Put(ctx, "put", data); err != nil {
			t.Fatal(err)
		}
		got, err := st.Get(ctx, "put")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get after a multipart Put: %d bytes, %v; want %d bytes", len(got), err, len(data))
		}
		head, err := server.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(st.Bucket()), Key: aws.String("mp/put")})
		if err != nil {
			t.Fatal(err)
		}
		if etag := aws.ToString(head.ETag); !strings.HasSuffix(strings.Trim(etag, `"`), "-5") {
			t.Errorf("ETag %s: want the ETag of a 5-part upload", etag)
		}
	})

	t.Run("NewWriter", func(t *testing.T) {
		w, err := st.NewWriter(ctx, "streamed")
		if err != nil {
			t.Fatal(err)
		}
		for chunk := range bytesChunks(data, 1<<20+7) {
			if _, err := w.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		if n := uploadsInProgress(t, st.Bucket()); n != 1 {
			t.Errorf("%d multipart uploads in progress while writing, want 1", n)
		}
		if keys := listKeys(t, st, "streamed"); len(keys) != 0 {
			t.Fatalf("List shows %q before Close", keys)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := st.Get(ctx, "streamed")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get after NewWriter: %d bytes, %v; want %d bytes", len(got), err, len(data))
		}
	})
}

func bytesChunks(b []byte, n int) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			c := min(n, len(b))
			if !yield(b[:c]) {
				return
			}
			b = b[c:]
		}
	}
}

// A multipart upload that is cancelled, fails, or whose store is closed is
// aborted: no object, no upload left.
func TestMultipartAbort(t *testing.T) {
	t.Parallel()
	const part = s3store.MinPartSize
	data := randBytes(3*part, 2)
	for _, tc := range []struct {
		name string
		stop func(st *s3store.Store, cancel context.CancelFunc)
		want error
	}{
		{"cancel", func(_ *s3store.Store, cancel context.CancelFunc) { cancel() }, context.Canceled},
		{"store closed", func(st *s3store.Store, _ context.CancelFunc) { st.Close() }, storage.ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := server.Store(t, "", &s3store.Options{PartSize: part})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			w, err := st.NewWriter(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
			if n := uploadsInProgress(t, st.Bucket()); n != 1 {
				t.Fatalf("%d uploads in progress after writing 3 parts, want 1", n)
			}
			tc.stop(st, cancel)
			if _, err := w.Write([]byte("more")); err != nil && !errors.Is(err, tc.want) {
				t.Errorf("Write after %s: %v, want nil or %v", tc.name, err, tc.want)
			}
			if err := w.Close(); !errors.Is(err, tc.want) {
				t.Fatalf("Close after %s = %v, want an error wrapping %v", tc.name, err, tc.want)
			}
			if n := uploadsInProgress(t, st.Bucket()); n != 0 {
				t.Errorf("%d uploads in progress after %s, want 0 (aborted)", n, tc.name)
			}
			if _, err := rawGet(t, st.Bucket(), "k"); err == nil {
				t.Errorf("the object exists after %s", tc.name)
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		t.Parallel()
		st := server.Store(t, "", &s3store.Options{PartSize: part, MaxObjectSize: 2*part + 1})
		w, err := st.NewWriter(t.Context(), "k")
		if err != nil {
			t.Fatal(err)
		}
		_, werr := w.Write(data[:2*part])
		_, werr2 := w.Write(data[2*part : 2*part+2])
		cerr := w.Close()
		if werr != nil || !errors.Is(werr2, storage.ErrTooLarge) || !errors.Is(cerr, storage.ErrTooLarge) {
			t.Fatalf("writes of 2 parts and 2 bytes over a limit of 2 parts + 1: %v, %v; Close: %v; want ErrTooLarge from the second Write and Close", werr, werr2, cerr)
		}
		if n := uploadsInProgress(t, st.Bucket()); n != 0 {
			t.Errorf("%d uploads in progress, want 0 (aborted)", n)
		}
	})
}

func TestErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	t.Run("missing bucket", func(t *testing.T) {
		st, err := s3store.New(server.Client(), "no-such-bucket-here", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		_, err = st.Get(ctx, "k")
		if !errors.Is(err, s3store.ErrNoSuchBucket) || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get in a missing bucket: %v, want ErrNoSuchBucket (not ErrNotFound)", err)
		}
		if err := st.Put(ctx, "k", []byte("x")); !errors.Is(err, s3store.ErrNoSuchBucket) {
			t.Errorf("Put in a missing bucket: %v, want ErrNoSuchBucket", err)
		}
		for _, err := range st.List(ctx, "") {
			if !errors.Is(err, s3store.ErrNoSuchBucket) {
				t.Errorf("List of a missing bucket: %v, want ErrNoSuchBucket", err)
			}
		}
	})
	t.Run("wrong credentials", func(t *testing.T) {
		bucket, err := server.NewBucket(ctx)
		if err != nil {
			t.Fatal(err)
		}
		client := s3.New(s3.Options{
			Region: s3test.Region, BaseEndpoint: aws.String(server.Endpoint), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider(s3test.AccessKey, "wrong-secret", ""),
		})
		st, err := s3store.New(client, bucket, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		err = st.Put(ctx, "k", []byte("x"))
		if !errors.Is(err, s3store.ErrAccessDenied) || !strings.Contains(err.Error(), `put "k"`) {
			t.Errorf("Put with a wrong secret: %v, want ErrAccessDenied naming the operation", err)
		}
		if _, err := st.Get(ctx, "k"); !errors.Is(err, s3store.ErrAccessDenied) {
			t.Errorf("Get with a wrong secret: %v, want ErrAccessDenied", err)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		st, err := storage.Open(ctx, "s3://bkt?path_style=true&max_attempts=2&endpoint=http://"+addr)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		start := time.Now()
		_, err = st.Get(ctx, "k")
		if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), `s3store: get "k"`) {
			t.Errorf("Get from a closed port: %v, want an error naming the key and the refused connection", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("2 attempts took %v", d)
		}
	})
	t.Run("missing key", func(t *testing.T) {
		st := server.Store(t, "", nil)
		_, err := st.Get(ctx, "nope")
		if !errors.Is(err, storage.ErrNotFound) || !strings.HasPrefix(err.Error(), `s3store: get "nope": storage: object not found`) {
			t.Errorf("Get of a missing key: %v", err)
		}
	})
	t.Run("key too long with prefix", func(t *testing.T) {
		st := server.Store(t, "pre", nil)
		err := st.Put(ctx, strings.Repeat("k", storage.MaxKeyLen-3), []byte("x"))
		if !errors.Is(err, storage.ErrInvalidKey) || !strings.Contains(err.Error(), "1025 bytes with the store's prefix") {
			t.Errorf("Put of a key that is too long with the prefix: %v", err)
		}
	})
}

// faultProxy forwards requests to the server, except those that its hook
// answers itself.
type faultProxy struct {
	*httptest.Server
	requests atomic.Int64
	hook     func(w http.ResponseWriter, r *http.Request) bool
}

func newFaultProxy(t *testing.T, hook func(w http.ResponseWriter, r *http.Request) bool) *faultProxy {
	target, err := url.Parse(server.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = nil
	p := &faultProxy{hook: hook}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		if p.hook != nil && p.hook(w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

// store returns an s3store on bucket through the proxy.
func (p *faultProxy) store(t *testing.T, bucket string, opts *s3store.Options) *s3store.Store {
	client := s3.New(s3.Options{
		Region: s3test.Region, BaseEndpoint: aws.String(p.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s3test.AccessKey, s3test.SecretKey, ""),
	})
	st, err := s3store.New(client, bucket, "", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func slowDown(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
}

// 503 SlowDown answers are retried with backoff until MaxAttempts.
func TestSlowDown(t *testing.T) {
	t.Parallel()
	bucket, err := server.NewBucket(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var refuse atomic.Int64
	p := newFaultProxy(t, func(w http.ResponseWriter, r *http.Request) bool {
		if refuse.Add(-1) >= 0 {
			slowDown(w)
			return true
		}
		return false
	})
	st := p.store(t, bucket, &s3store.Options{MaxAttempts: 3})

	refuse.Store(2)
	if err := st.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("Put after 2 SlowDown answers: %v, want success on the 3rd attempt", err)
	}
	if n := p.requests.Load(); n != 3 {
		t.Errorf("%d requests for one Put after 2 SlowDowns, want 3", n)
	}
	refuse.Store(3)
	_, err = st.Get(t.Context(), "k")
	if err == nil || !strings.Contains(err.Error(), "SlowDown") {
		t.Fatalf("Get after 3 SlowDown answers with MaxAttempts 3: %v, want an error naming SlowDown", err)
	}
	refuse.Store(0)
	if b, err := st.Get(t.Context(), "k"); err != nil || string(b) != "v" {
		t.Fatalf("Get once the service recovers: %q, %v", b, err)
	}
}

// Keys that DeleteObjects reports as throttled are deleted again; keys it
// reports as failed otherwise come back as errors naming them.
func TestDeletePerKeyErrors(t *testing.T) {
	t.Parallel()
	bucket, err := server.NewBucket(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var answered atomic.Int64
	p := newFaultProxy(t, func(w http.ResponseWriter, r *http.Request) bool {
		if _, ok := r.URL.Query()["delete"]; !ok || r.Method != http.MethodPost {
			return false
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading a DeleteObjects body: %v", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if sum := md5.Sum(body); r.Header.Get("Content-MD5") != base64.StdEncoding.EncodeToString(sum[:]) {
			t.Errorf("DeleteObjects with Content-MD5 %q, want the body's", r.Header.Get("Content-MD5"))
		}
		n := answered.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		switch n {
		case 1: // every key throttled: none deleted
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><DeleteResult>`+
				`<Error><Key>a</Key><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`+
				`<Error><Key>b</Key><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`+
				`</DeleteResult>`)
			return true
		case 3: // the retry of the second call: "b" refused for good
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><DeleteResult>`+
				`<Error><Key>b</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`+
				`</DeleteResult>`)
			return true
		}
		return false
	})
	st := p.store(t, bucket, nil)
	for _, k := range []string{"a", "b"} {
		if err := st.Put(t.Context(), k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Delete(t.Context(), "a", "b"); err != nil {
		t.Fatalf("Delete after a throttled first answer: %v", err)
	}
	if n := answered.Load(); n != 2 {
		t.Fatalf("%d DeleteObjects requests, want 2 (the throttled keys sent again)", n)
	}
	if keys := listKeys(t, st, ""); len(keys) != 0 {
		t.Fatalf("List after Delete = %q", keys)
	}
	if err := st.Put(t.Context(), "b", []byte("b")); err != nil {
		t.Fatal(err)
	}
	err = st.Delete(t.Context(), "b")
	if err == nil || !strings.Contains(err.Error(), `s3store: delete "b": AccessDenied`) {
		t.Fatalf("Delete refused for one key: %v, want an error naming the key and the code", err)
	}
}

// A reader whose connection breaks resumes where it was; if the object was
// replaced meanwhile it fails instead of mixing versions.
func TestReaderResumes(t *testing.T) {
	t.Parallel()
	bucket, err := server.NewBucket(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	const cutAfter = 300 << 10
	var cuts atomic.Int64
	var mu sync.Mutex
	var ranges []string
	p := newFaultProxy(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || r.URL.Query().Has("list-type") {
			return false
		}
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range")+" if-match:"+r.Header.Get("If-Match"))
		mu.Unlock()
		if cuts.Add(-1) < 0 {
			return false
		}
		// Forward, but cut the body short and drop the connection.
		rec := httptest.NewRecorder()
		rp := httputil.NewSingleHostReverseProxy(must(url.Parse(server.Endpoint)))
		rp.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes()[:min(cutAfter, rec.Body.Len())])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return true
	})
	st := p.store(t, bucket, nil)
	data := randBytes(1<<20, 3)
	if err := st.Put(t.Context(), "k", data); err != nil {
		t.Fatal(err)
	}

	cuts.Store(2)
	r, err := st.NewReader(t.Context(), "k", 1000, 900<<10)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data[1000:1000+900<<10]) {
		t.Fatalf("read through 2 broken connections: %d bytes, %v; want %d bytes equal to the range", len(got), err, 900<<10)
	}
	mu.Lock()
	if len(ranges) != 3 || !strings.HasPrefix(ranges[1], fmt.Sprintf("bytes=%d-", 1000+cutAfter)) || strings.HasSuffix(ranges[1], "if-match:") {
		t.Errorf("GETs: %q; want 3, resuming after the bytes read, with If-Match", ranges)
	}
	mu.Unlock()

	// The object is replaced after the first cut: the resumed GET fails
	// its If-Match.
	cuts.Store(1)
	r, err = st.NewReader(t.Context(), "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 1000)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(t.Context(), "k", randBytes(1<<20, 4)); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	r.Close()
	if err == nil || !strings.Contains(err.Error(), "replaced while it was read") {
		t.Fatalf("reading on after the object was replaced and the connection broke: %d bytes, %v; want an error", len(rest), err)
	}
	if !bytes.Equal(append(head, rest...), data[:1000+len(rest)]) {
		t.Fatal("the bytes read before the error are not the old object's")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// BenchmarkPutGet64MiB measures the throughput of Put and Get of 64 MiB
// objects on loopback versitygw.
func BenchmarkPutGet64MiB(b *testing.B) {
	data := randBytes(64<<20, 5)
	bucket, err := server.NewBucket(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts *s3store.Options
	}{
		{"default", nil},
		{"single-put", &s3store.Options{PartSize: 64 << 20}}, // up to 128 MiB in one PUT
	} {
		st, err := s3store.New(server.Client(), bucket, tc.name, tc.opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("Put/"+tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if err := st.Put(b.Context(), "obj", data); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Get/"+tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := st.Get(b.Context(), "obj"); err != nil {
					b.Fatal(err)
				}
			}
		})
		st.Close()
	}
}
