package fanout_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
	"github.com/gowren/gowren/storage/memstore"
	"github.com/gowren/gowren/storage/s3store/s3test"
)

// randomText returns a file of random lines: empty lines, short ones, and
// now and then lines longer than maxLine/2; with or without a final
// newline; sometimes nothing at all.
func randomText(r *rand.Rand, maxLine int) []byte {
	if r.IntN(8) == 0 {
		return nil
	}
	var b bytes.Buffer
	lines := r.IntN(40)
	for i := range lines {
		var n int
		switch r.IntN(6) {
		case 0:
			n = 0
		case 1:
			n = maxLine/2 + r.IntN(maxLine)
		default:
			n = 1 + r.IntN(12)
		}
		for range n {
			b.WriteByte("abcdefgh ijk"[r.IntN(12)])
		}
		if i < lines-1 || r.IntN(2) == 0 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// checkPartition partitions the objects under prefix of st, whose contents
// are files, reads every chunk, and checks that the chunks of each object
// hold its bytes in order, each line whole in exactly one chunk.
func checkPartition(t *testing.T, st storage.Store, prefix string, files map[string][]byte, chunkSize int64, lines bool, oneByte bool) {
	t.Helper()
	ctx := t.Context()
	chunks, err := fanout.Partition(ctx, st, prefix, &fanout.PartitionOptions{ChunkSize: chunkSize, Lines: lines})
	if err != nil {
		t.Fatalf("Partition(chunk size %d): %v", chunkSize, err)
	}
	got := map[string][]byte{}
	var prev fanout.Chunk
	for i, c := range chunks {
		if c.Lines != lines || c.Length <= 0 || c.Length > chunkSize || c.Size != int64(len(files[c.Key])) {
			t.Fatalf("chunk %d = %+v (chunk size %d, object of %d bytes)", i, c, chunkSize, len(files[c.Key]))
		}
		if i > 0 && (c.Key < prev.Key || c.Key == prev.Key && c.Offset != prev.Offset+prev.Length) {
			t.Fatalf("chunk %d %s does not follow chunk %s", i, c, prev)
		}
		prev = c
		r, err := c.OpenFrom(ctx, st)
		if err != nil {
			t.Fatalf("OpenFrom(%s): %v", c, err)
		}
		var rd io.Reader = r
		if oneByte {
			rd = iotest.OneByteReader(r)
		}
		b, err := io.ReadAll(rd)
		if err != nil {
			t.Fatalf("reading %s: %v", c, err)
		}
		if n, err := r.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("Read after the end of %s = %d, %v; want 0, io.EOF", c, n, err)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("Close(%s): %v", c, err)
		}
		file := files[c.Key]
		start := int64(len(got[c.Key]))
		if !lines {
			if !bytes.Equal(b, file[c.Offset:c.Offset+c.Length]) {
				t.Fatalf("chunk %s read %q, want the exact range", c, b)
			}
		} else if len(b) > 0 {
			// A line-aligned chunk starts at a line's start and ends after
			// a newline or at the end of the object.
			if start > 0 && file[start-1] != '\n' {
				t.Fatalf("chunk %s starts at %d, inside a line", c, start)
			}
			if end := start + int64(len(b)); end < int64(len(file)) && b[len(b)-1] != '\n' {
				t.Fatalf("chunk %s ends at %d, inside a line: %q", c, end, b)
			}
		}
		got[c.Key] = append(got[c.Key], b...)
	}
	for key, file := range files {
		if !bytes.Equal(got[key], file) {
			t.Fatalf("chunks of %q (chunk size %d, lines %v) read\n%q\nwant\n%q", key, chunkSize, lines, got[key], file)
		}
		if lines && strings.Count(string(got[key]), "\n") != bytes.Count(file, []byte("\n")) {
			t.Fatalf("chunks of %q hold another number of lines", key)
		}
	}
}

// runPartitionProperty writes random files under a new prefix of st and
// checks Partition on them for random chunk sizes, rounds times.
func runPartitionProperty(t *testing.T, st storage.Store, seed uint64, rounds int) {
	r := rand.New(rand.NewPCG(seed, 1))
	for round := range rounds {
		chunkSize := int64(1 + r.IntN(64))
		if r.IntN(4) == 0 {
			chunkSize = int64(1 + r.IntN(4))
		}
		prefix := fmt.Sprintf("prop/%d/", round)
		files := map[string][]byte{}
		for i := range 1 + r.IntN(4) {
			key := fmt.Sprintf("%sf%d.txt", prefix, i)
			data := randomText(r, int(chunkSize)*2)
			if err := st.Put(t.Context(), key, data); err != nil {
				t.Fatal(err)
			}
			if len(data) > 0 { // empty objects give no chunk
				files[key] = data
			}
		}
		for _, lines := range []bool{true, false} {
			checkPartition(t, st, prefix, files, chunkSize, lines, round%5 == 0)
		}
	}
}

// Every line lands in exactly one chunk, and the chunks of an object hold
// its bytes in order, for random files and chunk sizes.
func TestPartitionProperty(t *testing.T) {
	t.Parallel()
	st := memstore.New(nil)
	defer st.Close()
	runPartitionProperty(t, st, 1, 300)
}

// The same on a real S3 server (versitygw on loopback).
func TestPartitionPropertyS3(t *testing.T) {
	t.Parallel()
	srv := s3test.NewServer(t)
	st := srv.Store(t, "data", nil)
	runPartitionProperty(t, st, 2, 25)
}

// A folder of text files that a user put there by hand, opened as a file
// store, partitions like any store: every file (in subfolders too) is cut
// into chunks that read back its bytes.
func TestPartitionPlainFolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(4, 4))
	files := map[string][]byte{}
	for _, name := range []string{"corpus/a.txt", "corpus/books/b.txt", "corpus/books/c d.txt", "corpus/.hidden.txt"} {
		data := randomText(r, 40)
		data = append(data, "last line\n"...) // never empty
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o666); err != nil {
			t.Fatal(err)
		}
		files[name] = data
	}
	st, err := storage.Open(t.Context(), "file://"+filepath.ToSlash(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	chunks, err := fanout.Partition(t.Context(), st, "corpus/", &fanout.PartitionOptions{ChunkSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range chunks {
		seen[c.Key] = true
	}
	if len(seen) != len(files) {
		t.Fatalf("Partition of the folder cut %d files (%d chunks), want all %d", len(seen), len(chunks), len(files))
	}
	checkPartition(t, st, "corpus/", files, 16, true, false)
	checkPartition(t, st, "corpus/", files, 7, false, true)
}

// A line longer than many chunks: the chunks inside it are empty, the one
// where it starts reads it whole, through several ranges.
func TestPartitionLongLine(t *testing.T) {
	t.Parallel()
	st := memstore.New(nil)
	defer st.Close()
	long := strings.Repeat("x", 300<<10)
	file := []byte("first\n" + long + "\nlast\n")
	if err := st.Put(t.Context(), "f", file); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{3, 1000, 64 << 10, 1 << 20} {
		checkPartition(t, st, "", map[string][]byte{"f": file}, size, true, false)
	}
}

func TestPartitionOptionsAndErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := memstore.New(nil)
	defer st.Close()
	for k, v := range map[string]string{"in/a.txt": "1\n2\n", "in/b.csv": "x", "in/empty": "", "other/c": "y"} {
		if err := st.Put(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	chunks, err := fanout.Partition(ctx, st, "in/", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []fanout.Chunk{{Key: "in/a.txt", Length: 4, Size: 4}, {Key: "in/b.csv", Length: 1, Size: 1}}
	if fmt.Sprint(chunks) != fmt.Sprint(want) {
		t.Errorf("Partition(in/) = %v, want %v (default chunk size, empty object skipped)", chunks, want)
	}
	chunks, err = fanout.Partition(ctx, st, "in/", &fanout.PartitionOptions{
		Filter: func(o storage.ObjectInfo) bool { return strings.HasSuffix(o.Key, ".txt") },
	})
	if err != nil || len(chunks) != 1 || chunks[0].Key != "in/a.txt" {
		t.Errorf("Partition with a filter = %v, %v; want the .txt object", chunks, err)
	}
	if chunks, err := fanout.Partition(ctx, st, "nothing/here/", nil); err != nil || len(chunks) != 0 {
		t.Errorf("Partition of an empty prefix = %v, %v; want no chunk and no error", chunks, err)
	}
	if _, err := fanout.Partition(ctx, st, "in/", &fanout.PartitionOptions{ChunkSize: -1}); err == nil || !strings.Contains(err.Error(), "chunk size -1") {
		t.Errorf("Partition with chunk size -1: %v, want an error naming it", err)
	}
	if _, err := fanout.Partition(ctx, nil, "in/", nil); err == nil {
		t.Error("Partition of a nil store succeeded")
	}
	if _, err := fanout.Partition(ctx, st, "bad//prefix", nil); !errors.Is(err, storage.ErrInvalidKey) {
		t.Errorf("Partition of an invalid prefix: %v, want ErrInvalidKey", err)
	}
	if err := st.Put(ctx, "big/x", make([]byte, 2<<20)); err != nil {
		t.Fatal(err)
	}
	if _, err := fanout.Partition(ctx, st, "big/", &fanout.PartitionOptions{ChunkSize: 1}); err == nil || !strings.Contains(err.Error(), "larger chunk size") {
		t.Errorf("Partition into 2M chunks of 1 byte: %v, want an error asking for a larger chunk size", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := fanout.Partition(cctx, st, "in/", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Partition with a cancelled context: %v", err)
	}
	for _, lines := range []bool{false, true} {
		c := fanout.Chunk{Key: "in/missing", Length: 10, Size: 10, Lines: lines}
		if _, err := c.OpenFrom(ctx, st); !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "in/missing[0:10]") {
			t.Errorf("OpenFrom of a missing object (lines %v): %v, want ErrNotFound naming the chunk", lines, err)
		}
	}
	if _, err := (fanout.Chunk{Key: "in/a.txt", Offset: -1, Length: 1}).OpenFrom(ctx, st); err == nil {
		t.Error("OpenFrom with a negative offset succeeded")
	}
	if _, err := (fanout.Chunk{Key: "in/a.txt", Length: 1}).Open(ctx); !errors.Is(err, fanout.ErrNoStore) {
		t.Errorf("Open outside a task: %v, want ErrNoStore", err)
	}
	// A chunk made by hand without Size reads to the object's end.
	r, err := (fanout.Chunk{Key: "in/a.txt", Offset: 1, Length: 1, Lines: true}).OpenFrom(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(b) != "2\n" {
		t.Errorf("line chunk [1:2] without Size read %q, %v; want %q", b, err, "2\n")
	}
}

// countLines counts the lines of its chunk, reading it from the job's
// store.
var countLines = fanout.Register("fanout_test.countLines", func(ctx context.Context, c fanout.Chunk) (int, error) {
	r, err := c.Open(ctx)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, err
	}
	return bytes.Count(b, []byte("\n")), nil
})

// Chunks are inputs of Map; tasks open them from their job's store, in
// the process or in worker processes.
func TestPartitionMap(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, err := filestore.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := rand.New(rand.NewPCG(3, 3))
	want := 0
	for i := range 5 {
		var b bytes.Buffer
		for range 200 + r.IntN(200) {
			fmt.Fprintf(&b, "line %d\n", r.IntN(1e6))
			want++
		}
		if err := st.Put(ctx, fmt.Sprintf("text/%d", i), b.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	chunks, err := fanout.Partition(ctx, st, "text/", &fanout.PartitionOptions{ChunkSize: 1000, Lines: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    func() backends.Backend
	}{
		{"local", func() backends.Backend { return local.New(nil) }},
		{"process", func() backends.Backend {
			return process.New(&process.Options{Workers: 2, Env: []string{"GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0"}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := fanout.NewExecutor(tc.b(), &fanout.Options{Store: st, Logger: quietLogs})
			defer ex.Close()
			counts, err := fanout.Map(ctx, ex, countLines, chunks)
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			for _, n := range counts {
				got += n
			}
			if got != want {
				t.Fatalf("%d chunks counted %d lines, want %d", len(chunks), got, want)
			}
		})
	}
}

// FuzzPartition checks the chunk property on arbitrary bytes and chunk
// sizes: go test -fuzz FuzzPartition ./fanout
func FuzzPartition(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc"), uint8(2))
	f.Add([]byte("\n\n\n"), uint8(1))
	f.Add([]byte("no newline at all"), uint8(3))
	f.Add([]byte("x\n"+strings.Repeat("y", 300)+"\nz\n"), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, size uint8) {
		if len(data) == 0 || len(data) > 1<<16 {
			return
		}
		st := memstore.New(nil)
		defer st.Close()
		if err := st.Put(t.Context(), "f", data); err != nil {
			t.Fatal(err)
		}
		for _, lines := range []bool{true, false} {
			checkPartition(t, st, "", map[string][]byte{"f": data}, int64(size)+1, lines, false)
		}
	})
}
