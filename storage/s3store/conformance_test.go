package s3store_test

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/s3store"
	"github.com/gowren/gowren/storage/s3store/s3test"
	"github.com/gowren/gowren/storage/storagetest"
)

// TestConformance runs storagetest over s3store on versitygw. Every store of
// the suite is a fresh bucket with no prefix, so that the suite's 1,024-byte
// keys fit S3's limit.
//
// versitygw's posix backend keeps each object as a file, so it cannot hold
// an object and another below it ("a" and "a/b"), which S3 allows and the
// suite checks. The stores of this run therefore reach versitygw through a
// client whose middleware appends a space to every key on the wire and
// strips it from listed keys (spaceShim): object "a" is the file "a ",
// object "a/b" the file "b " in the directory "a", and the byte order of
// keys is kept. Everything else is s3store as users run it;
// TestKeysVerbatim checks that without the shim keys reach S3 unchanged.
func TestConformance(t *testing.T) {
	storagetest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (storagetest.Harness, error) {
		return &harness{t: t}, nil
	})
}

type harness struct{ t *testing.T }

func (h *harness) MakeStore(ctx context.Context) (storage.Store, error) {
	return h.MakeStoreWithMaxObjectSize(ctx, 0)
}

func (h *harness) MakeStoreWithMaxObjectSize(ctx context.Context, max int64) (storage.Store, error) {
	bucket, err := server.NewBucket(ctx)
	if err != nil {
		return nil, err
	}
	return openShim(bucket, "", max)
}

func (h *harness) Close() {}

// shimScheme is the URL scheme of stores behind the space shim, so that
// the suite's URL test reopens them with the shim too.
const shimScheme = "s3spaceshim"

func init() {
	storage.Register(shimScheme, func(ctx context.Context, u *url.URL) (storage.Store, error) {
		var max int64
		if v := u.Query().Get("max_object_size"); v != "" {
			var err error
			if max, err = strconv.ParseInt(v, 10, 64); err != nil {
				return nil, err
			}
		}
		return openShim(u.Host, u.Path, max)
	})
}

// shimStore is an s3store behind the space shim, with a URL of shimScheme.
type shimStore struct {
	*s3store.Store
}

func (s shimStore) URL() string { return shimScheme + strings.TrimPrefix(s.Store.URL(), "s3") }

func openShim(bucket, prefix string, max int64) (storage.Store, error) {
	client := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(server.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s3test.AccessKey, s3test.SecretKey, ""),
		APIOptions:   []func(*middleware.Stack) error{addSpaceShim},
	})
	st, err := s3store.New(client, bucket, prefix, &s3store.Options{MaxObjectSize: max})
	if err != nil {
		return nil, err
	}
	return shimStore{st}, nil
}

func addSpaceShim(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("spaceShim", spaceShim), middleware.Before)
}

// spaceShim appends " " to the keys of requests and removes it from the
// keys of answers; see TestConformance.
func spaceShim(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	enc := func(k *string) *string { return aws.String(aws.ToString(k) + " ") }
	switch p := in.Parameters.(type) {
	case *s3.PutObjectInput:
		p.Key = enc(p.Key)
	case *s3.GetObjectInput:
		p.Key = enc(p.Key)
	case *s3.HeadObjectInput:
		p.Key = enc(p.Key)
	case *s3.CreateMultipartUploadInput:
		p.Key = enc(p.Key)
	case *s3.UploadPartInput:
		p.Key = enc(p.Key)
	case *s3.CompleteMultipartUploadInput:
		p.Key = enc(p.Key)
	case *s3.AbortMultipartUploadInput:
		p.Key = enc(p.Key)
	case *s3.DeleteObjectsInput:
		objs := make([]types.ObjectIdentifier, len(p.Delete.Objects))
		for i, o := range p.Delete.Objects {
			objs[i] = types.ObjectIdentifier{Key: enc(o.Key)}
		}
		p.Delete = &types.Delete{Objects: objs, Quiet: p.Delete.Quiet}
	case *s3.ListObjectsV2Input:
		if p.StartAfter != nil {
			// Keys have no byte below " ", so K > S exactly when K+" " > S+" ".
			p.StartAfter = enc(p.StartAfter)
		}
	default:
		return middleware.InitializeOutput{}, middleware.Metadata{}, fmt.Errorf("spaceShim: unexpected operation %T", p)
	}
	out, md, err := next.HandleInitialize(ctx, in)
	if err != nil {
		return out, md, err
	}
	dec := func(k *string) (*string, error) {
		s, ok := strings.CutSuffix(aws.ToString(k), " ")
		if !ok {
			return nil, fmt.Errorf("spaceShim: key %q without the shim's space", aws.ToString(k))
		}
		return aws.String(s), nil
	}
	switch r := out.Result.(type) {
	case *s3.ListObjectsV2Output:
		for i := range r.Contents {
			k := aws.ToString(r.Contents[i].Key)
			if r.EncodingType == types.EncodingTypeUrl {
				if k, err = url.QueryUnescape(k); err != nil {
					return out, md, err
				}
			}
			if r.Contents[i].Key, err = dec(&k); err != nil {
				return out, md, err
			}
		}
		r.EncodingType = ""
	case *s3.DeleteObjectsOutput:
		for i := range r.Errors {
			if r.Errors[i].Key, err = dec(r.Errors[i].Key); err != nil {
				return out, md, err
			}
		}
	}
	return out, md, nil
}

// TestShimNeeded shows why TestConformance needs the space shim: plain,
// versitygw refuses an object below another ("a/b" below "a"), as S3 does
// not; through the shim both are stored. If a later versitygw accepts them,
// the shim can go.
func TestShimNeeded(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	bucket, err := server.NewBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := s3store.New(server.Client(), bucket, "plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.Put(ctx, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	err = plain.Put(ctx, "a/b", []byte("2"))
	if err == nil {
		t.Fatal(`versitygw stored "a/b" beside "a": the space shim of TestConformance is no longer needed`)
	}
	t.Logf("versitygw, plain: %v", err)
	shim, err := openShim(bucket, "shim", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer shim.Close()
	for _, k := range []string{"a", "a/b"} {
		if err := shim.Put(ctx, k, []byte(k)); err != nil {
			t.Fatalf("Put(%q) through the shim: %v", k, err)
		}
	}
	var keys []string
	for info, err := range shim.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	if strings.Join(keys, " ") != "a a/b" {
		t.Fatalf("List through the shim = %q, want [a a/b]", keys)
	}
	if b, err := rawGet(t, bucket, "shim/a "); err != nil || string(b) != "a" {
		t.Fatalf(`the shim's S3 key for "a" is not "shim/a ": %q, %v`, b, err)
	}
}
