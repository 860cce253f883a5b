package thumb_test

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
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
			t.Run("samples", func(t *testing.T) { checkRun(t, ex, st) })
			t.Run("folder", func(t *testing.T) { checkFolder(t, ex, st) })
		})
	}
}

// files returns the files under dir, relative to it, with their contents.
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// userFolder makes a folder of images as a user has them: in subfolders,
// upper-case extensions, beside files that are no images.
func userFolder(t *testing.T) (string, []thumb.Sample) {
	t.Helper()
	dir := t.TempDir()
	imgs := []thumb.Sample{
		{Key: "IMG_0001.JPG", Width: 120, Height: 90, Seed: 1},
		{Key: "2024/beach.png", Width: 90, Height: 120, Seed: 2},
		{Key: "2024/summer/pier.jpeg", Width: 100, Height: 100, Seed: 3},
	}
	for _, s := range imgs {
		data, err := thumb.Encode(s.Key, thumb.Draw(s))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, filepath.FromSlash(s.Key)), data)
	}
	write(t, filepath.Join(dir, ".DS_Store"), []byte("finder"))
	write(t, filepath.Join(dir, "2024", "notes.txt"), []byte("not an image"))
	return dir, imgs
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o666); err != nil {
		t.Fatal(err)
	}
}

// checkFolder makes the thumbnails of a folder of a user's images, read as
// a file store through its URL by the tasks: one per image, in the job's
// store under the output prefix, and the folder left exactly as it was.
func checkFolder(t *testing.T, ex *fanout.Executor, st storage.Store) {
	ctx := t.Context()
	dir, imgs := userFolder(t)
	before := files(t, dir)
	images, err := filestore.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer images.Close()
	sum, err := thumb.Run(ctx, ex, st, thumb.Options{Images: images, Out: "folder-thumbs/", MaxSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Generated != 0 || len(sum.Results) != len(imgs) {
		t.Fatalf("drew %d samples, made %d thumbnails; want 0 and %d", sum.Generated, len(sum.Results), len(imgs))
	}
	for i, r := range sum.Results {
		b, err := st.Get(ctx, r.Out)
		if err != nil {
			t.Fatalf("thumbnail of %s: %v", r.Key, err)
		}
		th, err := jpeg.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("thumbnail %s does not decode as JPEG: %v", r.Out, err)
		}
		if max(th.Bounds().Dx(), th.Bounds().Dy()) != 32 {
			t.Errorf("thumbnail of %s is %v, want a longer side of 32", r.Key, th.Bounds().Size())
		}
		if want := "folder-thumbs/" + r.Key + ".jpg"; r.Out != want {
			t.Errorf("result %d: thumbnail of %s at %q, want %q", i, r.Key, r.Out, want)
		}
	}
	keys := []string{}
	for _, r := range sum.Results {
		keys = append(keys, r.Key)
	}
	if want := []string{"2024/beach.png", "2024/summer/pier.jpeg", "IMG_0001.JPG"}; !slices.Equal(keys, want) {
		t.Errorf("images = %q, want %q", keys, want)
	}
	if after := files(t, dir); !maps.Equal(after, before) {
		t.Errorf("the folder changed: %d files before, %d after", len(before), len(after))
	}
	// A folder without images is an error, not an invitation to draw.
	empty, err := filestore.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	if _, err := thumb.Run(ctx, ex, st, thumb.Options{Images: empty, Out: "folder-thumbs/"}); err == nil || !strings.Contains(err.Error(), "no image") {
		t.Errorf("Run over an empty folder: %v, want an error saying it holds no image", err)
	}
}

// TestNoSamplesIntoUserImages: given a folder of the user's images as the
// job's store, Run draws no samples beside them: it fails, naming an image
// and the way to use them, and leaves the folder as it was.
func TestNoSamplesIntoUserImages(t *testing.T) {
	dir, _ := userFolder(t)
	before := files(t, dir)
	st, err := filestore.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Store: st, Logger: quiet})
	defer ex.Close()
	_, err = thumb.Run(t.Context(), ex, st, thumb.Options{In: "samples/", Out: "thumbs/", Samples: 2, Megapixels: 0.01})
	if err == nil || !strings.Contains(err.Error(), "-in") || !strings.Contains(err.Error(), `"2024/beach.png"`) {
		t.Fatalf("Run drawing samples into a folder of images: %v, want an error naming an image and -in", err)
	}
	if after := files(t, dir); !maps.Equal(after, before) {
		t.Errorf("the folder changed: %d files before, %d after", len(before), len(after))
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
