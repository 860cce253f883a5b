// Package s3store is a storage.Store in a bucket of Amazon S3 or of an
// S3-compatible service (MinIO, versitygw, Tencent COS, Cloudflare R2),
// through github.com/aws/aws-sdk-go-v2.
//
// # Storage URLs
//
// Importing the package registers the "s3" scheme with storage.Open:
//
//	s3://BUCKET/PREFIX?region=REGION&endpoint=URL&path_style=true
//
// Keys are stored under PREFIX/ in BUCKET (the whole bucket when PREFIX is
// empty). Parameters, all optional:
//
//	region=REGION           the bucket's region; defaults to the SDK's (AWS_REGION, ~/.aws/config),
//	                        or us-east-1 with an endpoint
//	endpoint=URL            an S3-compatible service: http://127.0.0.1:9000, https://cos.ap-guangzhou.myqcloud.com
//	path_style=true         address the bucket in the path (http://host/BUCKET/KEY), as MinIO and
//	                        versitygw want; defaults to false (http://BUCKET.host/KEY)
//	part_size=N             Options.PartSize
//	upload_concurrency=N    Options.UploadConcurrency
//	max_object_size=N       Options.MaxObjectSize
//	max_attempts=N          Options.MaxAttempts
//
// An unknown parameter is an error. For the usual services:
//
//	Amazon S3       s3://my-bucket/gowren?region=eu-west-1
//	MinIO           s3://my-bucket/gowren?endpoint=http://minio.local:9000&path_style=true
//	Tencent COS     s3://my-bucket-1250000000/gowren?region=ap-guangzhou&endpoint=https://cos.ap-guangzhou.myqcloud.com
//	Cloudflare R2   s3://my-bucket/gowren?region=auto&endpoint=https://ACCOUNT_ID.r2.cloudflarestorage.com
//
// COS is addressed virtual-hosted style (BUCKET-APPID.cos.REGION.myqcloud.com),
// which is the default; R2 accepts either style.
//
// # Credentials
//
// Stores opened from a URL take their credentials from the SDK's default
// chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with
// AWS_SESSION_TOKEN), AWS_PROFILE and ~/.aws/credentials, web identity, ECS
// and EC2 roles. Credentials never appear in a URL: the URL travels to every
// worker in each invocation. For COS use a SecretId/SecretKey pair, for R2 an
// R2 API token's access key pair, in the same variables. A worker (a Lambda
// function, a process) opens the store from its URL with its own
// credentials.
//
// # Requests
//
// Put sends an object of up to 2×PartSize in one PUT and a larger one as a
// multipart upload. NewWriter streams: it buffers one part (PartSize,
// growing after every 1,000 parts so that 10,000 parts reach S3's 5 TiB),
// uploads full parts while the caller writes, UploadConcurrency at once,
// and completes the upload in Close; before that nothing is visible, and on
// a failure, a cancelled context or Store.Close the upload is aborted. (If
// the process dies meanwhile, S3 keeps the parts of the incomplete upload:
// a bucket lifecycle rule with AbortIncompleteMultipartUpload removes
// them.) Every request body is an in-memory bytes.Reader, so requests can be
// signed and retried over plain http as well as https.
//
// GetRange and NewReader send one ranged GET. A NewReader whose connection
// breaks resumes where it was, up to 3 times, with If-Match on the object's
// ETag, so a reader never mixes two versions of an object.
//
// List sends ListObjectsV2 with encoding-type=url (keys may hold characters
// that XML cannot carry) a page of 1,000 at a time. Delete sends
// DeleteObjects in batches of 1,000, four at a time, and reports the keys
// that failed.
//
// # Retries and request rates
//
// Requests are retried by the store's own retryer (the client's is
// replaced): up to MaxAttempts in all on throttling (503 SlowDown and the
// other throttling codes), 500/502/503/504, timeouts and broken
// connections, with exponential backoff and full jitter: a delay drawn
// below 50ms×2^n, capped at 2s, or for throttling below 500ms×2^n, capped
// at 10s. Under throttling every request thus backs off on its own, and
// the request rate of a job, summed over its workers, falls quickly; it
// recovers as requests succeed. The SDK's retry quota, which fails
// requests once many retries were needed, is disabled: a batch job under
// throttling should wait, not fail. (The SDK's experimental adaptive mode
// was tried and left out: its client-side rate limit falls to 0.5 requests
// a second after a few throttles at low rates and recovers slowly.) Keys
// that DeleteObjects reports as throttled or failed inside the service are
// sent again in the same way.
//
// S3 serves about 3,500 writes and 5,500 reads a second per partition of
// a bucket's key space, and splits a busy range of keys into more
// partitions over minutes of sustained load. The store keeps keys as they
// are (PREFIX/KEY), so that data written by other tools can be read and
// listed: it does not hash keys into shards, which would make every List
// one request per shard. Job IDs start with random hex, so concurrent jobs
// write to distant ranges. Within a job, the executor's keys
// (jobs/<ID>/out/<ten-digit index>.<attempt>) form one ordered range,
// which S3 splits at any point as load persists (and which the driver lists
// from its lowest open index on); until it has, a job beyond a few thousand
// reply writes a second meets 503 SlowDown, which the store retries with
// backoff. A job reads its inputs with one ranged GET per task of one
// aggregated object, and small outputs never reach the store.
//
// # Keys
//
// A key must pass storage.ValidateKey, and with the prefix ("PREFIX/KEY")
// fit S3's 1,024 bytes. List yields only objects whose key (after the
// prefix) is valid, so it skips the "folder/" markers that consoles create.
//
// # Errors
//
// Errors name the operation and the key and wrap the storage sentinels:
// `s3store: get "jobs/x/out/1.0": storage: object not found`. A missing
// bucket wraps ErrNoSuchBucket, refused credentials or permissions
// ErrAccessDenied.
package s3store

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/sync/errgroup"

	"github.com/gowren/gowren/storage"
)

// Scheme is the URL scheme of S3 stores.
const Scheme = "s3"

func init() {
	storage.Register(Scheme, openURL)
}

// Errors particular to S3; test them with errors.Is.
var (
	// ErrNoSuchBucket means the bucket does not exist (or is in another
	// account or endpoint).
	ErrNoSuchBucket = errors.New("s3store: no such bucket")
	// ErrAccessDenied means the service refused the credentials or the
	// request (HTTP 403: AccessDenied, InvalidAccessKeyId,
	// SignatureDoesNotMatch, ...).
	ErrAccessDenied = errors.New("s3store: access denied")
)

// Limits of S3 that the store follows.
const (
	// MinPartSize is the smallest part of a multipart upload but the last.
	MinPartSize = 5 << 20
	// MaxPartSize is the largest part of a multipart upload.
	MaxPartSize = 5 << 30
	// MaxParts is the most parts of a multipart upload.
	MaxParts = 10000
	// MaxObjectSize is the largest object S3 holds.
	MaxObjectSize = 5 << 40
	// MaxKeyLen is the longest S3 key, prefix included.
	MaxKeyLen = 1024
	// DeleteBatch is the most keys of one DeleteObjects request.
	DeleteBatch = 1000
	// maxPut is the largest object of one PUT.
	maxPut = 5 << 30
)

// Options configure a Store. A nil *Options means the defaults.
type Options struct {
	// PartSize is the size of the parts of multipart uploads, from
	// MinPartSize to MaxPartSize. NewWriter holds up to
	// UploadConcurrency+1 parts in memory. Parts double in size after
	// every 1,000 so that a streamed object can reach 5 TiB. Defaults to
	// 8 MiB.
	PartSize int64
	// UploadConcurrency is how many parts of one object are uploaded at
	// once. Defaults to 4.
	UploadConcurrency int
	// MaxObjectSize caps the size of one object in bytes: Put and NewWriter
	// refuse larger objects with storage.ErrTooLarge. Defaults to 0:
	// S3's own limit of 5 TiB.
	MaxObjectSize int64
	// MaxAttempts is how many times a request is tried in all (see
	// "Retries and request rates" in the package documentation). Defaults
	// to 8.
	MaxAttempts int
}

const (
	defaultPartSize    = 8 << 20
	defaultConcurrency = 4
	defaultMaxAttempts = 8
	deleteConcurrency  = 4
	readResumes        = 3
	abortTimeout       = 30 * time.Second
)

// Store is a storage.Store in an S3 bucket. Its methods are safe for
// concurrent use. Create one with New or with storage.Open of an s3:// URL.
type Store struct {
	client *s3.Client
	bucket string
	prefix string // "" or ends in "/"
	opts   Options
	url    string

	ctx    context.Context // cancelled by Close: stops open writers
	cancel context.CancelCauseFunc
	closed atomic.Bool

	mu      sync.Mutex
	writers map[*writer]struct{} // open writers; nil once closed
}

var (
	_ storage.Store          = (*Store)(nil)
	_ storage.MaxObjectSizer = (*Store)(nil)
)

// New returns a store of the objects under prefix in bucket, reached
// through a copy of client whose retryer is the store's own (see the
// package documentation); the client's region, endpoint, path style,
// credentials and HTTP client are kept, and URL reports them (never the
// credentials). prefix may be "" for the whole bucket; "data", "data/" and
// "/data/" are the same prefix. A nil opts means the defaults. New makes no
// request.
func New(client *s3.Client, bucket, prefix string, opts *Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("s3store: new: nil client")
	}
	o, err := withDefaults(opts)
	if err != nil {
		return nil, fmt.Errorf("s3store: new: %w", err)
	}
	if err := checkBucket(bucket); err != nil {
		return nil, fmt.Errorf("s3store: new: %w", err)
	}
	p, err := normalizePrefix(prefix)
	if err != nil {
		return nil, fmt.Errorf("s3store: new: %w", err)
	}
	copts := client.Options()
	copts.Retryer = newRetryer(o.MaxAttempts)
	copts.RetryMaxAttempts = 0
	copts.RetryMode = ""
	copts.DisableLogOutputChecksumValidationSkipped = true
	s := &Store{
		client:  s3.New(copts),
		bucket:  bucket,
		prefix:  p,
		opts:    o,
		writers: map[*writer]struct{}{},
	}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.url = s.makeURL(copts)
	return s, nil
}

func withDefaults(opts *Options) (Options, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	switch {
	case o.PartSize == 0:
		o.PartSize = defaultPartSize
	case o.PartSize < MinPartSize || o.PartSize > MaxPartSize:
		return o, fmt.Errorf("PartSize %d is outside [%d, %d]", o.PartSize, MinPartSize, MaxPartSize)
	}
	switch {
	case o.UploadConcurrency == 0:
		o.UploadConcurrency = defaultConcurrency
	case o.UploadConcurrency < 0:
		return o, fmt.Errorf("negative UploadConcurrency %d", o.UploadConcurrency)
	}
	switch {
	case o.MaxObjectSize == 0:
	case o.MaxObjectSize < 0:
		return o, fmt.Errorf("negative MaxObjectSize %d", o.MaxObjectSize)
	}
	switch {
	case o.MaxAttempts == 0:
		o.MaxAttempts = defaultMaxAttempts
	case o.MaxAttempts < 0:
		return o, fmt.Errorf("negative MaxAttempts %d", o.MaxAttempts)
	}
	return o, nil
}

// checkBucket accepts the names S3 and the compatible services use: 3 to
// 63 lowercase letters, digits, '.', '-' (and the '_' and capitals of old
// us-east-1 buckets).
func checkBucket(b string) error {
	if len(b) < 3 || len(b) > 255 {
		return fmt.Errorf("bucket name %q: want 3 to 63 characters (255 for old buckets)", b)
	}
	for i := range len(b) {
		c := b[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("bucket name %q: character %q not allowed", b, c)
		}
	}
	return nil
}

// normalizePrefix returns "" or the prefix with one trailing "/".
func normalizePrefix(p string) (string, error) {
	p = strings.TrimPrefix(p, "/")
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return "", nil
	}
	if err := storage.ValidateKey(p); err != nil {
		return "", fmt.Errorf("prefix: %w", err)
	}
	if len(p) >= MaxKeyLen/2 {
		return "", fmt.Errorf("prefix %q: longer than %d bytes", p[:40]+"...", MaxKeyLen/2-1)
	}
	return p + "/", nil
}

// URL parameters, in the order URL writes them.
var urlParams = []string{"endpoint", "max_attempts", "max_object_size", "part_size", "path_style", "region", "upload_concurrency"}

func (s *Store) makeURL(o s3.Options) string {
	q := url.Values{}
	if o.BaseEndpoint != nil && *o.BaseEndpoint != "" {
		q.Set("endpoint", *o.BaseEndpoint)
	}
	if o.Region != "" {
		q.Set("region", o.Region)
	}
	if o.UsePathStyle {
		q.Set("path_style", "true")
	}
	if s.opts.PartSize != defaultPartSize {
		q.Set("part_size", strconv.FormatInt(s.opts.PartSize, 10))
	}
	if s.opts.UploadConcurrency != defaultConcurrency {
		q.Set("upload_concurrency", strconv.Itoa(s.opts.UploadConcurrency))
	}
	if s.opts.MaxObjectSize != 0 {
		q.Set("max_object_size", strconv.FormatInt(s.opts.MaxObjectSize, 10))
	}
	if s.opts.MaxAttempts != defaultMaxAttempts {
		q.Set("max_attempts", strconv.Itoa(s.opts.MaxAttempts))
	}
	u := url.URL{Scheme: Scheme, Host: s.bucket, Path: "/" + strings.TrimSuffix(s.prefix, "/"), RawQuery: q.Encode()}
	return u.String()
}

// openURL opens a store from an s3:// URL; see the package documentation.
func openURL(ctx context.Context, u *url.URL) (storage.Store, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("s3store: open %q: %s", u.Redacted(), fmt.Sprintf(format, args...))
	}
	if u.User != nil {
		return nil, bad("credentials do not belong in the URL, which every worker receives; use the AWS credential chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, roles)")
	}
	if u.Host == "" {
		return nil, bad("no bucket: want s3://BUCKET/PREFIX")
	}
	if u.Opaque != "" || u.Fragment != "" {
		return nil, bad("want s3://BUCKET/PREFIX?PARAMS")
	}
	var (
		o                Options
		region, endpoint string
		pathStyle        bool
	)
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, bad("query: %v", err)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range q {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		vs := q[k]
		if len(vs) != 1 {
			return nil, bad("parameter %q given %d times", k, len(vs))
		}
		v := vs[0]
		num := func() (int64, error) {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return 0, bad("%s=%q: want a non-negative integer", k, v)
			}
			return n, nil
		}
		switch k {
		case "region":
			region = v
		case "endpoint":
			if endpoint, err = normalizeEndpoint(v); err != nil {
				return nil, bad("endpoint=%q: %v", v, err)
			}
		case "path_style":
			if pathStyle, err = strconv.ParseBool(v); err != nil {
				return nil, bad("path_style=%q: want true or false", v)
			}
		case "part_size":
			if o.PartSize, err = num(); err != nil {
				return nil, err
			}
		case "upload_concurrency":
			n, err := num()
			if err != nil {
				return nil, err
			}
			o.UploadConcurrency = int(min(n, math.MaxInt32))
		case "max_object_size":
			if o.MaxObjectSize, err = num(); err != nil {
				return nil, err
			}
		case "max_attempts":
			n, err := num()
			if err != nil {
				return nil, err
			}
			o.MaxAttempts = int(min(n, 1000))
		default:
			return nil, bad("unknown parameter %q (known: %s)", k, strings.Join(urlParams, ", "))
		}
	}
	if _, err := withDefaults(&o); err != nil {
		return nil, bad("%v", err)
	}
	loadOpts := []func(*config.LoadOptions) error{}
	if region != "" {
		loadOpts = append(loadOpts, config.WithRegion(region))
	}
	if endpoint != "" {
		// Services other than AWS may not know the SDK's default CRC
		// checksums: send and check them only where an operation needs one.
		loadOpts = append(loadOpts,
			config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
			config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, bad("load AWS configuration: %v", err)
	}
	if cfg.Region == "" {
		if endpoint == "" {
			return nil, bad("no region: add ?region=REGION or set AWS_REGION")
		}
		cfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		so.UsePathStyle = pathStyle
		if endpoint != "" {
			so.BaseEndpoint = aws.String(endpoint)
		}
	})
	st, err := New(client, u.Host, u.Path, &o)
	if err != nil {
		return nil, bad("%v", err)
	}
	return st, nil
}

func normalizeEndpoint(v string) (string, error) {
	if !strings.Contains(v, "://") {
		v = "https://" + v
	}
	e, err := url.Parse(v)
	if err != nil {
		return "", err
	}
	if e.Scheme != "http" && e.Scheme != "https" {
		return "", fmt.Errorf("scheme %q: want http or https", e.Scheme)
	}
	if e.Host == "" {
		return "", errors.New("no host")
	}
	if e.User != nil || e.RawQuery != "" || e.Fragment != "" {
		return "", errors.New("want scheme://host[:port][/path] only")
	}
	return strings.TrimSuffix(e.String(), "/"), nil
}

// URL returns the store's s3:// URL: bucket, prefix, region, endpoint,
// path style and non-default options; never credentials.
func (s *Store) URL() string { return s.url }

// Bucket returns the store's bucket.
func (s *Store) Bucket() string { return s.bucket }

// Prefix returns the store's key prefix: "" or a string ending in "/".
func (s *Store) Prefix() string { return s.prefix }

// MaxObjectSize returns the largest object the store accepts: Options.
// MaxObjectSize, or S3's limit of 5 TiB.
func (s *Store) MaxObjectSize() int64 {
	if s.opts.MaxObjectSize > 0 {
		return s.opts.MaxObjectSize
	}
	return MaxObjectSize
}

// Close stops the writers still open (their uploads are aborted and their
// Close returns an error wrapping storage.ErrClosed) and makes every later
// call fail with storage.ErrClosed. It deletes no object. A second Close
// returns an error wrapping storage.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return fmt.Errorf("s3store: close: %w", storage.ErrClosed)
	}
	s.cancel(storage.ErrClosed)
	s.mu.Lock()
	ws := s.writers
	s.writers = nil
	s.mu.Unlock()
	for w := range ws {
		w.cancel(storage.ErrClosed)
	}
	for w := range ws {
		w.abort(storage.ErrClosed)
	}
	if c, ok := s.client.Options().HTTPClient.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
	return nil
}

// s3Key checks key and returns its S3 key.
func (s *Store) s3Key(key string) (string, error) {
	if err := storage.ValidateKey(key); err != nil {
		return "", err
	}
	if n := len(s.prefix) + len(key); n > MaxKeyLen {
		return "", fmt.Errorf("%w %q: %d bytes with the store's prefix %q, over S3's %d",
			storage.ErrInvalidKey, key[:40]+"...", n, s.prefix, MaxKeyLen)
	}
	return s.prefix + key, nil
}

// begin checks what every operation checks first: the store is open, ctx
// is live, the key is valid. It returns the S3 key.
func (s *Store) begin(ctx context.Context, op, key string) (string, error) {
	if s.closed.Load() {
		return "", fmt.Errorf("s3store: %s %q: %w", op, key, storage.ErrClosed)
	}
	k, err := s.s3Key(key)
	if err != nil {
		return "", fmt.Errorf("s3store: %s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("s3store: %s %q: %w", op, key, err)
	}
	return k, nil
}

// wrap turns an SDK error into the store's: once wrapped, naming op and
// key, with the storage sentinels. ctx's error wins over the SDK's account
// of it.
func (s *Store) wrap(ctx context.Context, op, key string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		if cause := context.Cause(ctx); cause != nil && cause != ctxErr {
			return fmt.Errorf("s3store: %s %q: %w (%w)", op, key, ctxErr, cause)
		}
		return fmt.Errorf("s3store: %s %q: %w", op, key, ctxErr)
	}
	var sentinel error
	var hint string
	var ae smithy.APIError
	code, status := "", 0
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	switch {
	case code == "NoSuchBucket":
		sentinel, hint = ErrNoSuchBucket, fmt.Sprintf("bucket %q", s.bucket)
	case code == "NoSuchKey" || code == "NotFound" || status == http.StatusNotFound && code == "":
		sentinel = storage.ErrNotFound
	case code == "EntityTooLarge":
		sentinel = storage.ErrTooLarge
	case code == "KeyTooLongError":
		sentinel = storage.ErrInvalidKey
	case status == http.StatusForbidden || code == "AccessDenied" || code == "InvalidAccessKeyId" ||
		code == "SignatureDoesNotMatch" || code == "ExpiredToken" || code == "InvalidToken":
		sentinel, hint = ErrAccessDenied, fmt.Sprintf("bucket %q; check the credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE, role) and the bucket's policy", s.bucket)
	}
	switch {
	case sentinel == nil:
		return fmt.Errorf("s3store: %s %q: %w", op, key, err)
	case hint != "":
		return fmt.Errorf("s3store: %s %q: %w (%s): %w", op, key, sentinel, hint, err)
	default:
		return fmt.Errorf("s3store: %s %q: %w: %w", op, key, sentinel, err)
	}
}

func isInvalidRange(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "InvalidRange" {
		return true
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable
}

// Put stores data under key in one PUT, or as a multipart upload when it is
// larger than 2×PartSize. The object appears whole or not at all.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	const op = "put"
	k, err := s.begin(ctx, op, key)
	if err != nil {
		return err
	}
	if int64(len(data)) > s.MaxObjectSize() {
		return fmt.Errorf("s3store: %s %q: %w: %d bytes, over the store's %d", op, key, storage.ErrTooLarge, len(data), s.MaxObjectSize())
	}
	if int64(len(data)) > min(2*s.opts.PartSize, maxPut) {
		w := s.newWriter(ctx, key, k)
		if _, err := w.Write(data); err != nil {
			w.Close()
			return err
		}
		return w.Close()
	}
	return s.putObject(ctx, op, key, k, data)
}

func (s *Store) putObject(ctx context.Context, op, key, k string, data []byte) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(k),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
	})
	if err != nil {
		return s.wrap(ctx, op, key, err)
	}
	return nil
}

// Get returns the whole object, or an error wrapping storage.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	return s.read(ctx, "get", key, 0, -1)
}

// GetRange returns at most length bytes from offset (see storage.Store) in
// one ranged GET.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	return s.read(ctx, "get range", key, offset, length)
}

func (s *Store) read(ctx context.Context, op, key string, offset, length int64) ([]byte, error) {
	r, err := s.open(ctx, op, key, offset, length)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	n := r.remaining
	if n < 0 {
		n = r.contentLength
	}
	if n < 0 || n > 1<<30 {
		n = 0
	}
	buf := bytes.NewBuffer(make([]byte, 0, n+1))
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// NewReader streams the range that GetRange would return. The GET is sent
// before NewReader returns, so a missing object or a bad range is reported
// at once. Reads fail once ctx is cancelled.
func (s *Store) NewReader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	r, err := s.open(ctx, "new reader", key, offset, length)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// open sends the GET of a range and returns its reader.
func (s *Store) open(ctx context.Context, op, key string, offset, length int64) (*reader, error) {
	k, err := s.begin(ctx, op, key)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("s3store: %s %q: %w: offset %d", op, key, storage.ErrInvalidRange, offset)
	}
	r := &reader{s: s, ctx: ctx, op: op, key: key, s3key: k, pos: offset, remaining: -1, contentLength: -1}
	if length >= 0 {
		r.remaining = length
	}
	if length == 0 {
		// No range asks for nothing: learn whether the object exists and
		// how long it is.
		size, err := s.head(ctx, op, key, k)
		if err != nil {
			return nil, err
		}
		if offset > size {
			return nil, fmt.Errorf("s3store: %s %q: %w: offset %d past the end (%d bytes)", op, key, storage.ErrInvalidRange, offset, size)
		}
		return r, nil
	}
	if err := r.get(); err != nil {
		return nil, err
	}
	return r, nil
}

// head returns the size of the object.
func (s *Store) head(ctx context.Context, op, key, k string) (int64, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(k)})
	if err != nil {
		return 0, s.wrap(ctx, op, key, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// reader reads a range of an object, resuming after a broken connection.
type reader struct {
	s              *Store
	ctx            context.Context
	op, key, s3key string
	etag           string // of the first response: later GETs must match it
	body           io.ReadCloser
	pos            int64 // offset of the next byte
	remaining      int64 // bytes left to read, -1: to the end
	contentLength  int64 // of the first response, -1 if unknown
	resumes        int
	err            error // sticky
}

// rangeHeader returns the Range of the bytes still to read, "" for the
// whole object.
func (r *reader) rangeHeader() string {
	switch {
	case r.pos == 0 && r.remaining < 0:
		return ""
	case r.remaining < 0 || r.remaining > math.MaxInt64-r.pos:
		return fmt.Sprintf("bytes=%d-", r.pos)
	default:
		return fmt.Sprintf("bytes=%d-%d", r.pos, r.pos+r.remaining-1)
	}
}

// get sends the GET for the bytes still to read.
func (r *reader) get() error {
	s := r.s
	in := &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(r.s3key)}
	rng := r.rangeHeader()
	if rng != "" {
		in.Range = aws.String(rng)
	}
	if r.etag != "" {
		in.IfMatch = aws.String(r.etag)
	}
	out, err := s.client.GetObject(r.ctx, in)
	if err != nil {
		if r.etag == "" && isInvalidRange(err) && r.ctx.Err() == nil {
			// The offset is at or past the end (S3 also answers 416 for
			// any range of an empty object): at the end is an empty read.
			size, herr := s.head(r.ctx, r.op, r.key, r.s3key)
			if herr != nil {
				return herr
			}
			if r.pos == size {
				r.remaining = 0
				return nil
			}
			return fmt.Errorf("s3store: %s %q: %w: offset %d past the end (%d bytes)", r.op, r.key, storage.ErrInvalidRange, r.pos, size)
		}
		var ae smithy.APIError
		if r.etag != "" && errors.As(err, &ae) && ae.ErrorCode() == "PreconditionFailed" {
			return fmt.Errorf("s3store: %s %q: the object was replaced while it was read: %w", r.op, r.key, err)
		}
		return s.wrap(r.ctx, r.op, r.key, err)
	}
	body := out.Body
	if rng != "" && out.ContentRange == nil && r.pos > 0 {
		// A service that ignored the Range sent the whole object.
		if _, err := io.CopyN(io.Discard, body, r.pos); err != nil {
			body.Close()
			return s.wrap(r.ctx, r.op, r.key, err)
		}
	}
	if r.etag == "" {
		r.etag = aws.ToString(out.ETag)
		if out.ContentLength != nil {
			r.contentLength = *out.ContentLength
		}
	}
	r.body = body
	return nil
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if err := r.ctx.Err(); err != nil {
		r.fail(fmt.Errorf("s3store: read %q: %w", r.key, err))
		return 0, r.err
	}
	if r.remaining == 0 || r.body == nil {
		return 0, io.EOF
	}
	if r.remaining > 0 && int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	for {
		n, err := r.body.Read(p)
		r.pos += int64(n)
		if r.remaining > 0 {
			r.remaining -= int64(n)
		}
		switch {
		case err == nil:
			if r.remaining == 0 {
				r.body.Close()
			}
			return n, nil
		case err == io.EOF:
			if r.remaining > 0 {
				// The object ended before the range: it is shorter.
				r.remaining = 0
			}
			return n, io.EOF
		case r.ctx.Err() != nil:
			r.fail(fmt.Errorf("s3store: read %q: %w", r.key, r.ctx.Err()))
			return n, r.err
		}
		// A broken connection: resume after what was read.
		r.body.Close()
		r.body = nil
		if r.resumes >= readResumes || r.etag == "" {
			r.fail(fmt.Errorf("s3store: read %q at offset %d: %w", r.key, r.pos, err))
			return n, r.err
		}
		r.resumes++
		if gerr := r.get(); gerr != nil {
			r.fail(fmt.Errorf("s3store: read %q at offset %d: %w; resuming: %w", r.key, r.pos, err, gerr))
			return n, r.err
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (r *reader) fail(err error) {
	r.err = err
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
}

func (r *reader) Close() error {
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
	if r.err == nil {
		r.err = errors.New("s3store: read after close")
	}
	return nil
}

// List yields the objects under prefix in ascending byte order of key, one
// ListObjectsV2 page of up to 1,000 at a time. Objects whose key is not a
// valid storage key are skipped.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[storage.ObjectInfo, error] {
	return s.ListAfter(ctx, prefix, "")
}

// ListAfter yields, as List does, the objects under prefix whose key sorts
// after startAfter, starting the listing there (StartAfter): keys before it
// cost no request.
func (s *Store) ListAfter(ctx context.Context, prefix, startAfter string) iter.Seq2[storage.ObjectInfo, error] {
	return func(yield func(storage.ObjectInfo, error) bool) {
		const op = "list"
		if s.closed.Load() {
			yield(storage.ObjectInfo{}, fmt.Errorf("s3store: %s %q: %w", op, prefix, storage.ErrClosed))
			return
		}
		if err := storage.ValidatePrefix(prefix); err != nil {
			yield(storage.ObjectInfo{}, fmt.Errorf("s3store: %s: %w", op, err))
			return
		}
		in := &s3.ListObjectsV2Input{
			Bucket:       aws.String(s.bucket),
			Prefix:       aws.String(s.prefix + prefix),
			EncodingType: types.EncodingTypeUrl,
		}
		if startAfter != "" {
			in.StartAfter = aws.String(s.prefix + startAfter)
		}
		for {
			if err := ctx.Err(); err != nil {
				yield(storage.ObjectInfo{}, fmt.Errorf("s3store: %s %q: %w", op, prefix, err))
				return
			}
			out, err := s.client.ListObjectsV2(ctx, in)
			if err != nil {
				yield(storage.ObjectInfo{}, s.wrap(ctx, op, prefix, err))
				return
			}
			encoded := out.EncodingType == types.EncodingTypeUrl
			for _, obj := range out.Contents {
				k := aws.ToString(obj.Key)
				if encoded {
					if k, err = url.QueryUnescape(k); err != nil {
						yield(storage.ObjectInfo{}, fmt.Errorf("s3store: %s %q: undecodable key %q in the answer: %w", op, prefix, aws.ToString(obj.Key), err))
						return
					}
				}
				k, ok := strings.CutPrefix(k, s.prefix)
				if !ok || !strings.HasPrefix(k, prefix) || k <= startAfter || storage.ValidateKey(k) != nil {
					continue
				}
				if err := ctx.Err(); err != nil {
					yield(storage.ObjectInfo{}, fmt.Errorf("s3store: %s %q: %w", op, prefix, err))
					return
				}
				if !yield(storage.ObjectInfo{Key: k, Size: aws.ToInt64(obj.Size), ModTime: aws.ToTime(obj.LastModified)}, nil) {
					return
				}
			}
			if !aws.ToBool(out.IsTruncated) || out.NextContinuationToken == nil {
				return
			}
			in.ContinuationToken = out.NextContinuationToken
		}
	}
}

// Delete removes the objects with DeleteObjects, in batches of up to 1,000
// keys, four batches at once. Missing keys are not an error. When the
// service refuses some keys, the error joins one error per key. Invalid keys
// fail the call before anything is deleted.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	const op = "delete"
	if s.closed.Load() {
		return fmt.Errorf("s3store: %s: %w", op, storage.ErrClosed)
	}
	s3keys := make([]string, 0, len(keys))
	seen := make(map[string]bool, len(keys))
	for _, key := range keys {
		k, err := s.s3Key(key)
		if err != nil {
			return fmt.Errorf("s3store: %s: %w", op, err)
		}
		if !seen[k] {
			seen[k] = true
			s3keys = append(s3keys, k)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3store: %s %d keys: %w", op, len(keys), err)
	}
	sort.Strings(s3keys)
	var (
		g      errgroup.Group
		mu     sync.Mutex
		failed []error
	)
	g.SetLimit(deleteConcurrency)
	for batch := range slices.Chunk(s3keys, DeleteBatch) {
		g.Go(func() error {
			errs, err := s.deleteBatch(ctx, batch)
			mu.Lock()
			failed = append(failed, errs...)
			mu.Unlock()
			return err
		})
	}
	err := g.Wait()
	return errors.Join(append([]error{err}, failed...)...)
}

// deleteBatch deletes up to 1,000 keys with DeleteObjects. Keys that the
// answer reports as throttled or failed inside the service are sent again,
// with backoff, up to MaxAttempts times; a key reported missing is gone, as
// wanted. It returns one error per key that could not be deleted, or the
// error of a request that failed as a whole.
func (s *Store) deleteBatch(ctx context.Context, keys []string) ([]error, error) {
	const op = "delete"
	var failed []error
	for attempt := 1; ; attempt++ {
		objs := make([]types.ObjectIdentifier, len(keys))
		for i, k := range keys {
			objs[i] = types.ObjectIdentifier{Key: aws.String(k)}
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(s.bucket),
			Delete: &types.Delete{Objects: objs, Quiet: aws.Bool(true)},
		}, withContentMD5)
		if err != nil {
			what := strings.TrimPrefix(keys[0], s.prefix)
			if len(keys) > 1 {
				what = fmt.Sprintf("%s (and %d more)", what, len(keys)-1)
			}
			return failed, s.wrap(ctx, op, what, err)
		}
		var again []string
		for _, e := range out.Errors {
			code := aws.ToString(e.Code)
			switch code {
			case "NoSuchKey":
				continue
			case "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout":
				if attempt < s.opts.MaxAttempts {
					again = append(again, aws.ToString(e.Key))
					continue
				}
			}
			k := strings.TrimPrefix(aws.ToString(e.Key), s.prefix)
			failed = append(failed, fmt.Errorf("s3store: %s %q: %s: %s", op, k, code, aws.ToString(e.Message)))
		}
		if len(again) == 0 {
			return failed, nil
		}
		d, _ := backoff{}.BackoffDelay(attempt, &smithy.GenericAPIError{Code: "SlowDown"})
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return failed, fmt.Errorf("s3store: %s %q (and %d more): %w", op, strings.TrimPrefix(again[0], s.prefix), len(again)-1, ctx.Err())
		case <-t.C:
		}
		keys = again
	}
}

// withContentMD5 adds a Content-MD5 header to a request, after its body is
// serialized. DeleteObjects needs an integrity header; the SDK sends a CRC32
// checksum, which AWS accepts, but some S3-compatible services (Tencent COS
// among them) want Content-MD5.
func withContentMD5(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Build.Add(middleware.BuildMiddlewareFunc("gowrenContentMD5",
			func(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
				req, ok := in.Request.(*smithyhttp.Request)
				if !ok {
					return next.HandleBuild(ctx, in)
				}
				if stream := req.GetStream(); stream != nil {
					body, err := io.ReadAll(stream)
					if err != nil {
						return middleware.BuildOutput{}, middleware.Metadata{}, fmt.Errorf("s3store: read request body for Content-MD5: %w", err)
					}
					sum := md5.Sum(body)
					req.Header.Set("Content-MD5", base64.StdEncoding.EncodeToString(sum[:]))
					if req, err = req.SetStream(bytes.NewReader(body)); err != nil {
						return middleware.BuildOutput{}, middleware.Metadata{}, err
					}
					in.Request = req
				}
				return next.HandleBuild(ctx, in)
			}), middleware.After)
	})
}

// newRetryer returns the store's retryer; see "Retries and request rates".
func newRetryer(maxAttempts int) aws.Retryer {
	return retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = maxAttempts
		so.MaxBackoff = throttleCap
		so.Backoff = backoff{}
		so.RateLimiter = ratelimit.None
	})
}

const (
	errorBase    = 50 * time.Millisecond
	errorCap     = 2 * time.Second
	throttleBase = 500 * time.Millisecond
	throttleCap  = 10 * time.Second
)

// backoff is exponential backoff with full jitter: a delay drawn uniformly
// below base×2^(attempt-1), capped; throttling has a larger base and cap.
type backoff struct{}

var throttles = retry.IsErrorThrottles(retry.DefaultThrottles)

func (backoff) BackoffDelay(attempt int, err error) (time.Duration, error) {
	base, limit := errorBase, errorCap
	if throttles.IsErrorThrottle(err).Bool() {
		base, limit = throttleBase, throttleCap
	}
	d := limit
	if attempt < 30 {
		d = min(limit, base<<max(attempt-1, 0))
	}
	return time.Duration(rand.Int64N(int64(d)) + 1), nil
}
