// Command wordcount counts the words of the text objects under a prefix of
// a store with gowren's MapReduce: the objects are cut into line-aligned
// chunks (fanout.Partition), one map task counts the words of each chunk,
// streaming it from the store, and one reduce task adds the counts up.
// Neither the driver nor any task holds an object whole. When the prefix
// holds nothing it first generates a corpus of deterministic pseudo-random
// text there, also as tasks; but not in a store that holds files of its
// own (a folder of yours): it says so instead.
//
//	go run ./examples/wordcount                          # a file store in the temporary directory, local goroutines
//	go run ./examples/wordcount -backend process://      # worker subprocesses of this binary
//	go run ./examples/wordcount -store file://$HOME/texts -prefix books/   # the files in ~/texts/books/, as they are
//	GOWREN_STORE='s3://bucket/gowren?region=eu-west-1' go run ./examples/wordcount -prefix books/
//
// The store is -store, else $GOWREN_STORE, else file://$TMPDIR/gowren-wordcount.
// A file store is a plain directory: the objects under -prefix are the
// files in that folder, subfolders included.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/gowren/gowren/examples/internal/scratch"
	"github.com/gowren/gowren/examples/wordcount/wc"
	"github.com/gowren/gowren/fanout"
	_ "github.com/gowren/gowren/jobplot"         // JobStats.WritePlot
	_ "github.com/gowren/gowren/storage/s3store" // s3:// stores
)

func main() {
	// A worker started by a backend serves here and never returns.
	fanout.Init()

	backend := flag.String("backend", "", "backend URL (default: $GOWREN_BACKEND, else local://)")
	storeURL := flag.String("store", "", "store URL (default: $GOWREN_STORE, else a directory in "+os.TempDir()+")")
	prefix := flag.String("prefix", "corpus/", "prefix of the text objects")
	chunkMiB := flag.Float64("chunk", 4, "chunk size in MiB")
	files := flag.Int("files", 8, "files to generate when the prefix holds none")
	fileMiB := flag.Float64("size", 8, "size of each generated file in MiB")
	top := flag.Int("top", 10, "how many of the most frequent words to print")
	clean := flag.Bool("clean", false, "remove the default store's directory in "+os.TempDir()+" at the end (a -store or $GOWREN_STORE is never removed)")
	progress := flag.Bool("progress", false, "show the jobs' progress on stderr")
	plotFile := flag.String("plot", "", "write the map phase's timeline to this .png or .svg file")
	flag.Parse()
	if *backend != "" {
		os.Setenv(fanout.EnvBackend, *backend)
	}
	if *chunkMiB <= 0 || *files < 1 || *fileMiB <= 0 {
		log.Fatal("wordcount: -chunk, -files and -size must be positive")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	st, scratchDir, err := scratch.Open(ctx, *storeURL, "wordcount")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	opts := &fanout.Options{Store: st}
	if *progress {
		opts.Progress = os.Stderr
	}
	// MapReduce hands out no Job: its phases' statistics come through
	// OnJobEnd. The map phase is the one worth a timeline.
	var mapStats fanout.JobStats
	opts.OnJobEnd = func(s fanout.JobStats) {
		if s.Func == wc.CountChunk.Name() {
			mapStats = s
		}
	}
	ex, err := fanout.OpenWith(ctx, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer ex.Close()

	start := time.Now()
	sum, err := wc.Run(ctx, ex, st, wc.Options{
		Prefix:    *prefix,
		ChunkSize: int64(*chunkMiB * (1 << 20)),
		Files:     *files,
		FileSize:  int64(*fileMiB * (1 << 20)),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("gowren wordcount of %q in %s\n", *prefix, st.URL())
	if sum.Generated {
		fmt.Printf("generated a corpus of %d files first (%v)\n", *files, (time.Since(start) - sum.Wall).Round(time.Millisecond))
	}
	total := sum.Counts.Total()
	fmt.Printf("counted     %d objects, %.1f MB, in %d line-aligned chunks\n", sum.Objects, float64(sum.Bytes)/1e6, sum.Chunks)
	fmt.Printf("words       %d (%d distinct)\n", total, len(sum.Counts))
	for i, w := range sum.Counts.Top(*top) {
		fmt.Printf("%4d. %-16s %10d  %5.2f%%\n", i+1, w.Word, w.Count, 100*float64(w.Count)/float64(max(total, 1)))
	}
	fmt.Printf("wall time   %v   (%.1f MB/s)\n", sum.Wall.Round(time.Millisecond), float64(sum.Bytes)/1e6/sum.Wall.Seconds())
	if *plotFile != "" {
		if err := mapStats.SavePlot(*plotFile); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("timeline    of the map phase (%d tasks) written to %s\n", mapStats.Tasks, *plotFile)
	}
	ex.Close()
	st.Close()
	if err := scratch.Done(os.Stdout, scratchDir, *clean); err != nil {
		log.Fatal(err)
	}
}
