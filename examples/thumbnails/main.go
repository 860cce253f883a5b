// Command thumbnails makes JPEG thumbnails of every image (PNG, JPEG) under
// a prefix of a store, one task per image, with gowren. When the prefix
// holds no image it first draws sample images there (procedurally, a few
// megapixels each; nothing is downloaded), also as tasks.
//
//	go run ./examples/thumbnails                         # a file store in the temporary directory, local goroutines
//	go run ./examples/thumbnails -backend process://     # worker subprocesses of this binary
//	GOWREN_STORE='s3://bucket/gowren?region=eu-west-1' go run ./examples/thumbnails   # images in S3
//
// The store is -store, else $GOWREN_STORE, else file://$TMPDIR/gowren-thumbnails.
// Images are read from -in (default "images/") and thumbnails written to
// -out (default "thumbs/"), as KEY.jpg.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"time"

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
	in := flag.String("in", "images/", "prefix of the images")
	out := flag.String("out", "thumbs/", "prefix of the thumbnails")
	size := flag.Int("size", 256, "largest width and height of a thumbnail")
	samples := flag.Int("samples", 12, "sample images to draw when -in holds none")
	mp := flag.Float64("megapixels", 3, "size of the sample images")
	progress := flag.Bool("progress", false, "show the job's progress on stderr")
	plotFile := flag.String("plot", "", "write the thumbnail job's timeline to this .png or .svg file")
	flag.Parse()
	if *backend != "" {
		os.Setenv(fanout.EnvBackend, *backend)
	}
	if *size < 1 || *samples < 1 || *mp <= 0 || *mp > 100 {
		log.Fatal("thumbnails: -size and -samples must be positive, -megapixels in (0, 100]")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	st, err := openStore(ctx, *storeURL)
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
	sum, err := thumb.Run(ctx, ex, st, thumb.Options{In: *in, Out: *out, MaxSize: *size, Samples: *samples, Megapixels: *mp})
	if err != nil {
		log.Fatal(err)
	}
	var decode, resize time.Duration
	for _, r := range sum.Results {
		decode += r.DecodeTime
		resize += r.ResizeTime
	}
	fmt.Printf("gowren thumbnails in %s\n", st.URL())
	if sum.Generated > 0 {
		fmt.Printf("drew %d sample images under %q first (%v)\n", sum.Generated, *in, (time.Since(start) - sum.Wall).Round(time.Millisecond))
	}
	fmt.Printf("images      %d under %q -> thumbnails under %q (at most %dx%d)\n", len(sum.Results), *in, *out, *size, *size)
	fmt.Printf("bytes       in %.1f MB, out %.2f MB\n", float64(sum.BytesIn)/1e6, float64(sum.BytesOut)/1e6)
	fmt.Printf("wall time   %v   (task time: decode %v, resize %v)\n",
		sum.Wall.Round(time.Millisecond), decode.Round(time.Millisecond), resize.Round(time.Millisecond))
	if *plotFile != "" {
		if err := sum.Stats.SavePlot(*plotFile); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("timeline    written to %s\n", *plotFile)
	}
}

// openStore opens the store named by flag, else $GOWREN_STORE, else a file
// store in the temporary directory, which outlives the run so that a second
// run finds the images.
func openStore(ctx context.Context, url string) (storage.Store, error) {
	if url == "" {
		url = os.Getenv(fanout.EnvStore)
	}
	if url != "" {
		return storage.Open(ctx, url)
	}
	return filestore.New(filepath.Join(os.TempDir(), "gowren-thumbnails"), nil)
}
