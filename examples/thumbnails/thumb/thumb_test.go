package thumb_test

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/examples/thumbnails/thumb"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
	"github.com/gowren/gowren/storage/s3store/s3test"
)

func TestMain(m *testing.M) {
	fanout.Init()
	os.Exit(m.Run())
}

func TestThumbSize(t *testing.T) {
	for _, tc := range []struct{ w, h, max, tw, th int }{
		{2000, 1500, 256, 256, 192},
		{1500, 2000, 256, 192, 256},
		{100, 50, 256, 100, 50},
		{5000, 3, 100, 100, 1},
		{257, 257, 256, 256, 256},
	} {
		if tw, th := thumb.ThumbSize(tc.w, tc.h, tc.max); tw != tc.tw || th != tc.th {
			t.Errorf("ThumbSize(%d, %d, %d) = %d, %d; want %d, %d", tc.w, tc.h, tc.max, tw, th, tc.tw, tc.th)
		}
	}
}

// meanColor returns the mean red, green and blue of img, from 0 to 255.
func meanColor(img image.Image) [3]float64 {
	var sum [3]float64
	b := img.Bounds()
	n := 0
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			sum[0] += float64(r >> 8)
			sum[1] += float64(g >> 8)
			sum[2] += float64(bl >> 8)
			n++
		}
	}
	for i := range sum {
		sum[i] /= float64(n)
	}
	return sum
}

// checkRun runs the example's work on ex and st, twice: the first run draws
// the samples, the second finds them. Every thumbnail decodes as a JPEG of
// the right size that looks like its image.
func checkRun(t *testing.T, ex *fanout.Executor, st storage.Store) {
	t.Helper()
	ctx := t.Context()
	opts := thumb.Options{In: "in/", Out: "out/", MaxSize: 64, Samples: 3, Megapixels: 0.1}
	// A portrait image of the user's among the samples.
	portrait := thumb.Sample{Key: "in/user/portrait.jpeg", Width: 150, Height: 250, Seed: 99}
	data, err := thumb.Encode(portrait.Key, thumb.Draw(portrait))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "in/user/notes.txt", []byte("not an image")); err != nil {
		t.Fatal(err)
	}

	sum, err := thumb.Run(ctx, ex, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Generated != 3 || len(sum.Results) != 3 {
		t.Fatalf("first run: drew %d samples, made %d thumbnails; want 3 and 3", sum.Generated, len(sum.Results))
	}
	if err := st.Put(ctx, portrait.Key, data); err != nil {
		t.Fatal(err)
	}
	sum, err = thumb.Run(ctx, ex, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Generated != 0 || len(sum.Results) != 4 {
		t.Fatalf("second run: drew %d samples, made %d thumbnails; want 0 and 4", sum.Generated, len(sum.Results))
	}
	var in, out int64
	for _, r := range sum.Results {
		b, err := st.Get(ctx, r.Out)
		if err != nil {
			t.Fatalf("thumbnail of %s: %v", r.Key, err)
		}
		th, err := jpeg.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("thumbnail %s does not decode as JPEG: %v", r.Out, err)
		}
		orig, err := st.Get(ctx, r.Key)
		if err != nil {
			t.Fatal(err)
		}
		src, _, err := image.Decode(bytes.NewReader(orig))
		if err != nil {
			t.Fatal(err)
		}
		tw, tht := thumb.ThumbSize(src.Bounds().Dx(), src.Bounds().Dy(), opts.MaxSize)
		if got := th.Bounds().Size(); got != image.Pt(tw, tht) || r.ThumbWidth != tw || r.ThumbHeight != tht {
			t.Errorf("thumbnail of %s (%v) is %v (reported %dx%d), want %dx%d", r.Key, src.Bounds().Size(), got, r.ThumbWidth, r.ThumbHeight, tw, tht)
		}
		if max(tw, tht) != opts.MaxSize {
			t.Errorf("thumbnail of %s is %dx%d: its longer side should be %d", r.Key, tw, tht, opts.MaxSize)
		}
		mo, mt := meanColor(src), meanColor(th)
		for c := range 3 {
			if math.Abs(mo[c]-mt[c]) > 8 {
				t.Errorf("thumbnail of %s: mean color %.0f, image's %.0f: not a scaled copy", r.Key, mt, mo)
				break
			}
		}
		if r.BytesIn != int64(len(orig)) || r.BytesOut != int64(len(b)) {
			t.Errorf("%s: reported %d bytes in, %d out; the objects have %d and %d", r.Key, r.BytesIn, r.BytesOut, len(orig), len(b))
		}
		in += r.BytesIn
		out += r.BytesOut
	}
	if sum.BytesIn != in || sum.BytesOut != out {
		t.Errorf("summary: %d bytes in, %d out; results add up to %d and %d", sum.BytesIn, sum.BytesOut, in, out)
	}
	if want := "out/user/portrait.jpeg.jpg"; !strings.Contains(resultsOuts(sum), want) {
		t.Errorf("thumbnails %s: want %s among them", resultsOuts(sum), want)
	}
}

func resultsOuts(s thumb.Summary) string {
	var outs []string
	for _, r := range s.Results {
		outs = append(outs, r.Out)
	}
	return strings.Join(outs, " ")
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backend func() backends.Backend
	}{
		{"local", func() backends.Backend { return local.New(nil) }},
		{"process", func() backends.Backend {
			return process.New(&process.Options{Workers: 2, Env: []string{"GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0"}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := filestore.New(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			ex := fanout.NewExecutor(tc.backend(), &fanout.Options{Store: st, Logger: quiet})
			defer ex.Close()
			checkRun(t, ex, st)
		})
	}
}

// The example runs unchanged on an s3:// store (versitygw on loopback).
func TestRunS3(t *testing.T) {
	srv := s3test.NewServer(t)
	st := srv.Store(t, "photos", nil)
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Store: st, Logger: quiet})
	defer ex.Close()
	checkRun(t, ex, st)
}

func TestBadImage(t *testing.T) {
	ctx := t.Context()
	st, err := filestore.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Put(ctx, "in/broken.png", []byte("\x89PNG\r\n\x1a\nnot really")); err != nil {
		t.Fatal(err)
	}
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Store: st, Logger: quiet})
	defer ex.Close()
	_, err = thumb.Run(ctx, ex, st, thumb.Options{In: "in/", Out: "out/"})
	var te *fanout.TaskError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), `decode "in/broken.png"`) {
		t.Fatalf("Run over a broken PNG: %v, want a task error naming the image", err)
	}
	if _, err := thumb.Run(ctx, ex, st, thumb.Options{In: "in/", Out: "in/"}); err == nil {
		t.Fatal("Run with the same input and output prefix succeeded")
	}
}
