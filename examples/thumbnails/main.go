// Command thumbnails makes JPEG thumbnails of every image (PNG, JPEG) in a
// folder, one task per image, with gowren. Without a folder it first draws
// sample images (procedurally, a few megapixels each; nothing is
// downloaded), also as tasks, and makes their thumbnails.
//
//	go run ./examples/thumbnails -in ~/Pictures/holiday             # your images, local goroutines
//	go run ./examples/thumbnails -in ~/Pictures/holiday -backend process://   # worker subprocesses of this binary
//	go run ./examples/thumbnails                                    # sample images
//	GOWREN_STORE='s3://bucket/gowren?region=eu-west-1' go run ./examples/thumbnails -in 's3://bucket/photos?region=eu-west-1'
//
// -in is a directory, read as the file store file://DIR (every PNG and JPEG
// under it, in subfolders too), or the URL of any store; it is only read.
// The thumbnails go to the job's store, -store, else $GOWREN_STORE, else
// file://$TMPDIR/gowren-thumbnails, under -out (default "thumbs/"): the
// image 2024/beach.png gives thumbs/2024/beach.png.jpg. Sample images go to
// the job's store too, under samples/, never into a folder of yours: a
// store that already holds images elsewhere is refused for them (give it
// as -in instead).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/gowren/gowren/examples/internal/scratch"
	"github.com/gowren/gowren/examples/thumbnails/thumb"
	"github.com/gowren/gowren/fanout"
	_ "github.com/gowren/gowren/jobplot" // JobStats.WritePlot
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
	_ "github.com/gowren/gowren/storage/s3store" // s3:// stores
)

func main() {
	// A worker started by a backend serves here and never returns.
	fanout.Init()

	backend := flag.String("backend", "", "backend URL (default: $GOWREN_BACKEND, else local://)")
	storeURL := flag.String("store", "", "store URL (default: $GOWREN_STORE, else a directory in "+os.TempDir()+")")
	in := flag.String("in", "", "folder of images (a directory, or a store URL such as s3://bucket/photos), only read (default: draw sample images)")
	out := flag.String("out", "thumbs/", "prefix of the thumbnails in the store")
	size := flag.Int("size", 256, "largest width and height of a thumbnail")
	samples := flag.Int("samples", 12, "sample images to draw when there is no -in")
	mp := flag.Float64("megapixels", 3, "size of the sample images")
	clean := flag.Bool("clean", false, "remove the default store's directory in "+os.TempDir()+" at the end (a -store or $GOWREN_STORE is never removed)")
	progress := flag.Bool("progress", false, "show the job's progress on stderr")
	plotFile := flag.String("plot", "", "write the thumbnail job's timeline to this .png or .svg file")
	flag.Parse()
	if *backend != "" {
		os.Setenv(fanout.EnvBackend, *backend)
	}
	if *size < 1 || *samples < 1 || *mp <= 0 || *mp > 100 {
		log.Fatal("thumbnails: -size and -samples must be positive, -megapixels in (0, 100]")
	}
	if *out == "" {
		log.Fatal("thumbnails: -out: want a prefix such as thumbs/")
	}
	if !strings.HasSuffix(*out, "/") {
		*out += "/" // a folder of thumbnails
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	o := thumb.Options{In: samplesPrefix, Out: *out, MaxSize: *size, Samples: *samples, Megapixels: *mp}
	if *in != "" {
		images, err := openImages(ctx, *in)
		if err != nil {
			log.Fatal(err)
		}
		defer images.Close()
		o.Images, o.In = images, ""
	}
	st, scratchDir, err := scratch.Open(ctx, *storeURL, "thumbnails")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	opts := &fanout.Options{Store: st}
	if *progress {
		opts.Progress = os.Stderr
	}
	ex, err := fanout.OpenWith(ctx, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer ex.Close()

	start := time.Now()
	sum, err := thumb.Run(ctx, ex, st, o)
	if err != nil {
		log.Fatal(err)
	}
	var decode, resize time.Duration
	for _, r := range sum.Results {
		decode += r.DecodeTime
		resize += r.ResizeTime
	}
	from := where(st, samplesPrefix)
	if o.Images != nil {
		from = where(o.Images, "")
	}
	fmt.Printf("gowren thumbnails\n")
	if sum.Generated > 0 {
		fmt.Printf("drew        %d sample images into %s first (%v)\n", sum.Generated, from, (time.Since(start) - sum.Wall).Round(time.Millisecond))
	}
	fmt.Printf("images      %d in %s\n", len(sum.Results), from)
	fmt.Printf("thumbnails  %d in %s (at most %dx%d)\n", len(sum.Results), where(st, *out), *size, *size)
	fmt.Printf("bytes       in %.1f MB, out %.2f MB\n", float64(sum.BytesIn)/1e6, float64(sum.BytesOut)/1e6)
	fmt.Printf("wall time   %v   (task time: decode %v, resize %v)\n",
		sum.Wall.Round(time.Millisecond), decode.Round(time.Millisecond), resize.Round(time.Millisecond))
	if *plotFile != "" {
		if err := sum.Stats.SavePlot(*plotFile); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("timeline    written to %s\n", *plotFile)
	}
	ex.Close()
	st.Close()
	if err := scratch.Done(os.Stdout, scratchDir, *clean); err != nil {
		log.Fatal(err)
	}
}

// samplesPrefix is where sample images are drawn in the job's store.
const samplesPrefix = "samples/"

// openImages opens the store of the user's images: in is a store URL, or
// a directory, which must exist.
func openImages(ctx context.Context, in string) (storage.Store, error) {
	if strings.Contains(in, "://") || strings.HasPrefix(in, "file:") {
		return storage.Open(ctx, in)
	}
	fi, err := os.Stat(in)
	if err != nil {
		return nil, fmt.Errorf("thumbnails: -in: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("thumbnails: -in %s is a file: give the folder that holds the images", in)
	}
	return filestore.New(in, nil)
}

// where says where the objects under prefix in st are: a directory for a
// file store, else the prefix and the store's URL.
func where(st storage.Store, prefix string) string {
	if fs, ok := st.(*filestore.Store); ok {
		return filepath.Join(fs.Dir(), filepath.FromSlash(prefix)) + string(filepath.Separator)
	}
	if prefix == "" {
		return st.URL()
	}
	return prefix + " of " + st.URL()
}
