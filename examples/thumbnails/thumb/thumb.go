// Package thumb is the work of the thumbnails example: functions that draw
// sample images into a store and make JPEG thumbnails of images in a store
// (the job's, or another one such as a folder of the user's), each
// registered with fanout so that any backend runs them.
package thumb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"path"
	"strings"
	"time"

	"golang.org/x/image/draw"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
)

// Sample describes one sample image to draw.
type Sample struct {
	// Key is where the image goes in the job's store; its extension
	// (".png" or ".jpg") chooses the format.
	Key    string
	Width  int
	Height int
	Seed   uint64
}

// Samples returns n sample images of about megapixels each (4:3), under
// prefix, alternately PNG and JPEG.
func Samples(prefix string, n int, megapixels float64) []Sample {
	w := int(math.Sqrt(megapixels*1e6*4/3) + 0.5)
	h := w * 3 / 4
	out := make([]Sample, n)
	for i := range out {
		ext := ".png"
		if i%2 == 1 {
			ext = ".jpg"
		}
		out[i] = Sample{Key: fmt.Sprintf("%ssample-%03d%s", prefix, i, ext), Width: max(w, 1), Height: max(h, 1), Seed: uint64(i)}
	}
	return out
}

// Draw draws a sample image: soft color fields, rings and a fractal
// texture that depend on the seed, so that images differ and compress like
// photographs rather than flat color.
func Draw(s Sample) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, s.Width, s.Height))
	r := rand.New(rand.NewPCG(s.Seed, 0x7468756d62))
	fx, fy := 2+r.Float64()*6, 2+r.Float64()*6
	phase := r.Float64() * 2 * math.Pi
	cx, cy := r.Float64(), r.Float64()
	rings := 10 + r.Float64()*30
	w, h := float64(s.Width), float64(s.Height)
	for y := range s.Height {
		v := float64(y) / h
		row := img.Pix[y*img.Stride:]
		for x := range s.Width {
			u := float64(x) / w
			d := math.Hypot(u-cx, v-cy)
			a := math.Sin(fx*u*math.Pi+phase) * math.Cos(fy*v*math.Pi)
			b := math.Sin(d * rings * math.Pi)
			// A cheap value noise for texture.
			hsh := uint32(x*73856093^y*19349663) * 2654435761
			n := float64(hsh>>24) / 255
			row[4*x+0] = clamp(128 + 90*a + 30*b + 12*n)
			row[4*x+1] = clamp(128 + 80*math.Sin(3*u+2*v+phase) + 25*b)
			row[4*x+2] = clamp(128 - 90*a + 20*math.Cos(d*7) + 12*n)
			row[4*x+3] = 255
		}
	}
	return img
}

func clamp(f float64) uint8 {
	return uint8(max(0, min(255, f)))
}

// Encode encodes img as PNG or JPEG, by the extension of key.
func Encode(key string, img image.Image) ([]byte, error) {
	var b bytes.Buffer
	var err error
	switch strings.ToLower(path.Ext(key)) {
	case ".png":
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&b, img)
	case ".jpg", ".jpeg":
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 90})
	default:
		return nil, fmt.Errorf("thumb: %q: unknown image extension (want .png, .jpg or .jpeg)", key)
	}
	return b.Bytes(), err
}

// Generate draws a sample image and writes it to the job's store; it
// returns the image's size in bytes.
var Generate = fanout.Register("thumbnails.generate", func(ctx context.Context, s Sample) (int64, error) {
	if s.Width <= 0 || s.Height <= 0 || s.Width*s.Height > 100e6 {
		return 0, fmt.Errorf("thumb: sample %q of %dx%d: want 1 to 100 megapixels", s.Key, s.Width, s.Height)
	}
	data, err := Encode(s.Key, Draw(s))
	if err != nil {
		return 0, err
	}
	if err := fanout.Store(ctx).Put(ctx, s.Key, data); err != nil {
		return 0, err
	}
	return int64(len(data)), nil
})

// Job asks for the thumbnail of one image.
type Job struct {
	// Src is the URL of the store that holds the image, which the task
	// opens; "" means the job's store.
	Src string
	// Key is the image in its store (PNG or JPEG).
	Key string
	// Out is where the thumbnail goes, as a JPEG.
	Out string
	// MaxSize bounds the thumbnail's width and height; the aspect ratio is
	// kept.
	MaxSize int
}

// Result describes a thumbnail made.
type Result struct {
	Key, Out                string
	Width, Height           int // of the image
	ThumbWidth, ThumbHeight int
	BytesIn, BytesOut       int64
	DecodeTime, ResizeTime  time.Duration
}

// ThumbSize returns the size of the thumbnail of a w×h image that fits in
// maxSize×maxSize, keeping the aspect ratio (at least 1×1).
func ThumbSize(w, h, maxSize int) (int, int) {
	if w <= maxSize && h <= maxSize {
		return w, h
	}
	if w >= h {
		return maxSize, max(1, int(math.Round(float64(h)*float64(maxSize)/float64(w))))
	}
	return max(1, int(math.Round(float64(w)*float64(maxSize)/float64(h)))), maxSize
}

// maxPixels bounds the images Thumbnail decodes, checked from the header
// before the pixels are allocated.
const maxPixels = 100e6

// Thumbnail reads an image from its store, scales it down with Catmull-Rom
// resampling and writes it to the job's store as a JPEG.
var Thumbnail = fanout.Register("thumbnails.thumbnail", func(ctx context.Context, j Job) (Result, error) {
	res := Result{Key: j.Key, Out: j.Out}
	if j.MaxSize < 1 {
		return res, fmt.Errorf("thumb: %q: thumbnail size %d: want at least 1", j.Key, j.MaxSize)
	}
	st := fanout.Store(ctx)
	data, err := read(ctx, st, j.Src, j.Key)
	if err != nil {
		return res, err
	}
	res.BytesIn = int64(len(data))
	t0 := time.Now()
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return res, fmt.Errorf("thumb: decode %q: %w", j.Key, err)
	}
	if cfg.Width*cfg.Height > maxPixels {
		return res, fmt.Errorf("thumb: %q is %dx%d, over %d pixels", j.Key, cfg.Width, cfg.Height, int(maxPixels))
	}
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return res, fmt.Errorf("thumb: decode %q: %w", j.Key, err)
	}
	t1 := time.Now()
	b := src.Bounds()
	res.Width, res.Height = b.Dx(), b.Dy()
	tw, th := ThumbSize(b.Dx(), b.Dy(), j.MaxSize)
	dst := image.NewRGBA(image.Rect(0, 0, tw, th))
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, b, draw.Src, nil)
	res.ThumbWidth, res.ThumbHeight = tw, th
	t2 := time.Now()
	res.DecodeTime, res.ResizeTime = t1.Sub(t0), t2.Sub(t1)
	var out bytes.Buffer
	if err := jpeg.Encode(&out, dst, &jpeg.Options{Quality: 85}); err != nil {
		return res, fmt.Errorf("thumb: encode %q: %w", j.Out, err)
	}
	if err := st.Put(ctx, j.Out, out.Bytes()); err != nil {
		return res, err
	}
	res.BytesOut = int64(out.Len())
	return res, nil
})

// read returns the object key of the store at url, or of st when url is "".
func read(ctx context.Context, st storage.Store, url, key string) ([]byte, error) {
	if url == "" {
		return st.Get(ctx, key)
	}
	src, err := storage.Open(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("thumb: open the images' store: %w", err)
	}
	defer src.Close()
	return src.Get(ctx, key)
}

// Options configure Run. The zero value is not useful: set Out, and In or
// Images.
type Options struct {
	// Images is the store that holds the images, such as a folder of the
	// user's (a file store), which Run only reads; the tasks open it from
	// its URL, so it must be one the backend's workers can reach. Nil
	// means the job's store, where Run draws sample images under In when
	// In holds none.
	Images storage.Store
	// In is the prefix of the images in their store ("" for all of
	// Images); Out the prefix of the thumbnails in the job's store.
	In, Out string
	// MaxSize bounds the thumbnails' width and height. Defaults to 256.
	MaxSize int
	// Samples is how many sample images Run draws into the job's store
	// when Images is nil and In holds none, of Megapixels each. Defaults to
	// 12 images of 3 megapixels.
	Samples    int
	Megapixels float64
}

// Summary describes a run.
type Summary struct {
	// Generated counts the sample images drawn (0 when In held images).
	Generated int
	Results   []Result
	BytesIn   int64
	BytesOut  int64
	// Wall is the time the thumbnails took, without the samples.
	Wall time.Duration
	// Stats describe the thumbnail job.
	Stats fanout.JobStats
}

// IsImage reports whether key names an image Thumbnail reads.
func IsImage(key string) bool {
	switch strings.ToLower(path.Ext(key)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

// Run makes a thumbnail of every image under o.In in o.Images, or in st
// when o.Images is nil, on ex, whose store must hold the same objects as st
// (it is usually st). Thumbnails go to st under o.Out: the image "In/a.png"
// gives "Out/a.png.jpg". When o.Images is nil and o.In holds no image, Run
// first draws sample images there, also on ex, unless st holds images of
// its own elsewhere: those are a user's, and Run then fails, pointing to
// Options.Images (-in), rather than draw beside them. When o.Images holds
// no image, Run fails.
func Run(ctx context.Context, ex *fanout.Executor, st storage.Store, o Options) (Summary, error) {
	var sum Summary
	src, srcURL := st, ""
	if o.Images != nil {
		src = o.Images
		if src.URL() != st.URL() {
			srcURL = src.URL()
		}
	}
	switch {
	case o.Out == "":
		return sum, errors.New("thumb: set the prefix of the thumbnails (Out)")
	case o.Images == nil && o.In == "":
		return sum, errors.New("thumb: set the prefix of the images (In), or their store (Images)")
	case srcURL == "" && o.In == o.Out:
		return sum, fmt.Errorf("thumb: images and thumbnails both under %q in %s: set distinct prefixes", o.In, st.URL())
	}
	if o.MaxSize == 0 {
		o.MaxSize = 256
	}
	if o.Samples == 0 {
		o.Samples = 12
	}
	if o.Megapixels == 0 {
		o.Megapixels = 3
	}
	if srcURL != "" {
		if err := reachable(srcURL, ex.Backend().Limits()); err != nil {
			return sum, err
		}
	}
	// The thumbnails of an earlier run are no images to make thumbnails of.
	skip := ""
	if srcURL == "" {
		skip = o.Out
	}
	keys, err := images(ctx, src, o.In, skip)
	if err != nil {
		return sum, err
	}
	switch {
	case len(keys) == 0 && o.Images != nil:
		where := src.URL()
		if o.In != "" {
			where = fmt.Sprintf("%q of %s", o.In, where)
		}
		return sum, fmt.Errorf("thumb: no image (.png, .jpg, .jpeg) in %s", where)
	case len(keys) == 0:
		if err := noOwnImages(ctx, st, o); err != nil {
			return sum, err
		}
		samples := Samples(o.In, o.Samples, o.Megapixels)
		if _, err := fanout.Map(ctx, ex, Generate, samples); err != nil {
			return sum, fmt.Errorf("thumb: draw samples: %w", err)
		}
		sum.Generated = len(samples)
		if keys, err = images(ctx, st, o.In, skip); err != nil {
			return sum, err
		}
	}
	jobs := make([]Job, len(keys))
	for i, k := range keys {
		// "in/a.png" -> "out/a.png.jpg": a.png and a.jpg do not collide.
		jobs[i] = Job{Src: srcURL, Key: k, Out: o.Out + strings.TrimPrefix(k, o.In) + ".jpg", MaxSize: o.MaxSize}
	}
	start := time.Now()
	job, err := fanout.Start(ctx, ex, Thumbnail, jobs)
	if err != nil {
		return sum, err
	}
	sum.Results, err = job.Wait(ctx)
	sum.Stats = job.Stats()
	sum.Wall = time.Since(start)
	for _, r := range sum.Results {
		sum.BytesIn += r.BytesIn
		sum.BytesOut += r.BytesOut
	}
	return sum, err
}

// reachable fails when the workers of a backend with limits l cannot open
// the store at url: a directory of this machine from another one, or a
// store in this process's memory from another process.
func reachable(url string, l backends.Limits) error {
	switch {
	case strings.HasPrefix(url, "file:") && !l.InProcess && !l.SameHost:
		return fmt.Errorf("thumb: the images in %s are on this machine, out of reach of the backend's workers: copy them to a store they reach (s3://...)", url)
	case strings.HasPrefix(url, "mem:") && !l.InProcess:
		return fmt.Errorf("thumb: the images in %s are in this process's memory, out of reach of the backend's workers", url)
	}
	return nil
}

// noOwnImages fails when st holds an image outside o.In and o.Out: a
// store of the user's images, given as the job's store, where samples must
// not be drawn.
func noOwnImages(ctx context.Context, st storage.Store, o Options) error {
	for info, err := range st.List(ctx, "") {
		if err != nil {
			return err
		}
		k := info.Key
		if IsImage(k) && !strings.HasPrefix(k, o.In) && !strings.HasPrefix(k, o.Out) {
			return fmt.Errorf("thumb: %s holds images of its own, such as %q, and none under %q: "+
				"make their thumbnails by giving it as the images' store (thumbnails -in), "+
				"or use another store to draw samples into", st.URL(), k, o.In)
		}
	}
	return nil
}

// images returns the keys of the images under prefix in st, less those
// under skip (when not "").
func images(ctx context.Context, st storage.Store, prefix, skip string) ([]string, error) {
	var keys []string
	for info, err := range st.List(ctx, prefix) {
		if err != nil {
			return nil, err
		}
		if IsImage(info.Key) && (skip == "" || !strings.HasPrefix(info.Key, skip)) {
			keys = append(keys, info.Key)
		}
	}
	return keys, nil
}
