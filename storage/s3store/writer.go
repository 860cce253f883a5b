package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/gowren/gowren/storage"
)

// NewWriter streams a new object under key. Small objects (Close before the
// first part is full) are sent with one PUT at Close; larger ones as a
// multipart upload whose parts go up while the caller writes, at most
// Options.UploadConcurrency at once (Write blocks while they are all busy).
// The object becomes visible only when Close returns nil. When ctx is
// cancelled, a Write or an upload fails, or the store is closed, the upload
// is aborted and Close returns the error. The writer is not safe for
// concurrent use.
func (s *Store) NewWriter(ctx context.Context, key string) (io.WriteCloser, error) {
	k, err := s.begin(ctx, "new writer", key)
	if err != nil {
		return nil, err
	}
	w := s.newWriter(ctx, key, k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writers == nil {
		w.stopClose()
		w.cancel(storage.ErrClosed)
		return nil, fmt.Errorf("s3store: new writer %q: %w", key, storage.ErrClosed)
	}
	s.writers[w] = struct{}{}
	return w, nil
}

// writer is a streaming upload. Write and Close run in the caller's
// goroutine; part uploads in goroutines the writer waits for.
type writer struct {
	s          *Store
	key, s3key string
	ctx        context.Context // the caller's, also cancelled by Store.Close
	cancel     context.CancelCauseFunc
	stopClose  func() bool // detaches ctx from the store's

	// opMu serializes Write, Close and abort: the caller's goroutine and
	// Store.Close. It guards the fields up to mu.
	opMu    sync.Mutex
	buf     []byte // the part being filled
	written int64
	closed  bool

	uploadID string // "" until the first part is full
	sem      chan struct{}
	wg       sync.WaitGroup

	mu    sync.Mutex
	parts []types.CompletedPart // by part number - 1
	err   error                 // the first failure; sticky

	abortOnce sync.Once
	abortErr  error // guarded by opMu
}

func (s *Store) newWriter(ctx context.Context, key, k string) *writer {
	w := &writer{s: s, key: key, s3key: k, sem: make(chan struct{}, s.opts.UploadConcurrency)}
	w.ctx, w.cancel = context.WithCancelCause(ctx)
	w.stopClose = context.AfterFunc(s.ctx, func() { w.cancel(storage.ErrClosed) })
	return w
}

// partSize returns the size of part n (from 1): PartSize, doubled after
// every 1,000 parts, up to MaxPartSize.
func (w *writer) partSize(n int) int64 {
	size := w.s.opts.PartSize << min((n-1)/1000, 20)
	return min(size, MaxPartSize)
}

func (w *writer) fail(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
	return w.err
}

func (w *writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// ctxErr returns the error of a cancelled writer context, naming its cause.
func (w *writer) ctxErr(op string) error {
	err := w.ctx.Err()
	if err == nil {
		return nil
	}
	if cause := context.Cause(w.ctx); cause != nil && cause != err {
		return fmt.Errorf("s3store: %s %q: %w (%w)", op, w.key, err, cause)
	}
	return fmt.Errorf("s3store: %s %q: %w", op, w.key, err)
}

func (w *writer) Write(p []byte) (int, error) {
	w.opMu.Lock()
	defer w.opMu.Unlock()
	if w.closed {
		return 0, fmt.Errorf("s3store: write %q: writer closed", w.key)
	}
	if err := w.failed(); err != nil {
		return 0, err
	}
	if err := w.ctxErr("write"); err != nil {
		return 0, w.fail(err)
	}
	if max := w.s.MaxObjectSize(); w.written+int64(len(p)) > max {
		return 0, w.fail(fmt.Errorf("s3store: write %q: %w: more than the store's %d bytes", w.key, storage.ErrTooLarge, max))
	}
	n := 0
	for len(p) > 0 {
		size := w.partSize(len(w.parts) + 1)
		if w.buf == nil {
			// The first part grows with what is written, so that a small
			// object takes little memory; later parts are whole at once.
			n := size
			if len(w.parts) == 0 {
				n = min(size, max(int64(len(p)), 64<<10))
			}
			w.buf = make([]byte, 0, n)
		}
		c := min(int64(len(p)), size-int64(len(w.buf)))
		w.buf = append(w.buf, p[:c]...)
		p = p[c:]
		n += int(c)
		w.written += c
		if int64(len(w.buf)) == size && len(p) > 0 {
			// Upload a full part only once more data follows: the last
			// part may then go with a small object's single PUT.
			if err := w.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// flush starts the upload of the buffered part.
func (w *writer) flush() error {
	if w.uploadID == "" {
		out, err := w.s.client.CreateMultipartUpload(w.ctx, &s3.CreateMultipartUploadInput{
			Bucket: aws.String(w.s.bucket), Key: aws.String(w.s3key),
		})
		if err != nil {
			return w.fail(w.s.wrap(w.ctx, "write", w.key, err))
		}
		w.uploadID = aws.ToString(out.UploadId)
	}
	select {
	case w.sem <- struct{}{}:
	case <-w.ctx.Done():
		return w.fail(w.ctxErr("write"))
	}
	if err := w.failed(); err != nil {
		<-w.sem
		return err
	}
	w.mu.Lock()
	w.parts = append(w.parts, types.CompletedPart{})
	num := int32(len(w.parts))
	w.mu.Unlock()
	if num > MaxParts {
		<-w.sem
		return w.fail(fmt.Errorf("s3store: write %q: %w: more than %d parts", w.key, storage.ErrTooLarge, MaxParts))
	}
	data := w.buf
	w.buf = nil
	w.wg.Go(func() {
		defer func() { <-w.sem }()
		out, err := w.s.client.UploadPart(w.ctx, &s3.UploadPartInput{
			Bucket:        aws.String(w.s.bucket),
			Key:           aws.String(w.s3key),
			UploadId:      aws.String(w.uploadID),
			PartNumber:    aws.Int32(num),
			Body:          bytes.NewReader(data),
			ContentLength: aws.Int64(int64(len(data))),
		})
		if err != nil {
			w.fail(w.s.wrap(w.ctx, fmt.Sprintf("write part %d of", num), w.key, err))
			w.cancel(errors.New("another part failed"))
			return
		}
		w.mu.Lock()
		w.parts[num-1] = types.CompletedPart{
			PartNumber:        aws.Int32(num),
			ETag:              out.ETag,
			ChecksumCRC32:     out.ChecksumCRC32,
			ChecksumCRC32C:    out.ChecksumCRC32C,
			ChecksumCRC64NVME: out.ChecksumCRC64NVME,
			ChecksumSHA1:      out.ChecksumSHA1,
			ChecksumSHA256:    out.ChecksumSHA256,
		}
		w.mu.Unlock()
	})
	return nil
}

// Close completes the object: one PUT for a small one, else the last part
// and CompleteMultipartUpload. On any failure the upload is aborted and
// nothing becomes visible.
func (w *writer) Close() error {
	w.opMu.Lock()
	defer w.opMu.Unlock()
	if w.closed {
		return fmt.Errorf("s3store: close writer %q: already closed", w.key)
	}
	w.closed = true
	defer w.release()
	err := w.finish()
	if err != nil {
		w.abortLocked(errors.New("writer failed"))
		if w.abortErr != nil {
			err = fmt.Errorf("%w; %w", err, w.abortErr)
		}
	}
	return err
}

func (w *writer) finish() error {
	if err := w.failed(); err != nil {
		return err
	}
	if err := w.ctxErr("close writer"); err != nil {
		return err
	}
	if w.uploadID == "" {
		return w.s.putObject(w.ctx, "close writer", w.key, w.s3key, w.buf)
	}
	if len(w.buf) > 0 {
		if err := w.flush(); err != nil {
			return err
		}
	}
	w.wg.Wait()
	if err := w.failed(); err != nil {
		return err
	}
	if err := w.ctxErr("close writer"); err != nil {
		return err
	}
	w.mu.Lock()
	parts := slices.Clone(w.parts)
	w.mu.Unlock()
	_, err := w.s.client.CompleteMultipartUpload(w.ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(w.s.bucket),
		Key:             aws.String(w.s3key),
		UploadId:        aws.String(w.uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return w.fail(w.s.wrap(w.ctx, "close writer", w.key, err))
	}
	w.uploadID = ""
	return nil
}

// abort stops the part uploads with cause, waits for them, and aborts the
// multipart upload, if any. Store.Close calls it for open writers, after
// cancelling them so that a Write blocked on a busy upload returns.
func (w *writer) abort(cause error) {
	w.opMu.Lock()
	defer w.opMu.Unlock()
	w.abortLocked(cause)
}

func (w *writer) abortLocked(cause error) {
	w.abortOnce.Do(func() {
		if w.ctx.Err() == nil {
			// Nobody cancelled the parts still uploading: let them end
			// first (for up to abortTimeout). A part cancelled mid-way may
			// still be written by the server after the abort, which then
			// leaves an upload behind.
			done := make(chan struct{})
			go func() { w.wg.Wait(); close(done) }()
			t := time.NewTimer(abortTimeout)
			select {
			case <-done:
			case <-t.C:
			}
			t.Stop()
		}
		w.cancel(cause)
		w.wg.Wait()
		if w.uploadID == "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), abortTimeout)
		defer cancel()
		_, err := w.s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(w.s.bucket), Key: aws.String(w.s3key), UploadId: aws.String(w.uploadID),
		})
		if err != nil {
			w.abortErr = fmt.Errorf("s3store: abort upload of %q (its parts stay until a lifecycle rule removes them): %w", w.key, err)
		}
	})
}

// release detaches the writer from its store once it is closed.
func (w *writer) release() {
	w.stopClose()
	w.cancel(errors.New("writer closed"))
	w.buf = nil
	w.s.mu.Lock()
	if w.s.writers != nil {
		delete(w.s.writers, w)
	}
	w.s.mu.Unlock()
}
