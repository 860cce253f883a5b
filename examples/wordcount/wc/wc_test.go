package wc_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strings"
	"testing"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/examples/wordcount/wc"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
	"github.com/gowren/gowren/storage/memstore"
	"github.com/gowren/gowren/storage/s3store/s3test"
)

func TestMain(m *testing.M) {
	fanout.Init()
	os.Exit(m.Run())
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestCountReader(t *testing.T) {
	c := wc.Counts{}
	in := "The cat, the CAT and thé Café!\n\n  x2 x2'x2\n日本 日本"
	// Read through one byte at a time as well: words may span reads.
	for _, r := range []io.Reader{strings.NewReader(in), &oneByte{s: in}} {
		if err := wc.CountReader(r, c); err != nil {
			t.Fatal(err)
		}
	}
	want := wc.Counts{"the": 4, "cat": 4, "and": 2, "thé": 2, "café": 2, "x2": 6, "日本": 4}
	if !maps.Equal(c, want) {
		t.Fatalf("counts = %v, want %v", c, want)
	}
	top := c.Top(3)
	if fmt.Sprint(top) != "[{x2 6} {cat 4} {the 4}]" {
		t.Errorf("Top(3) = %v", top)
	}
}

type oneByte struct{ s string }

func (r *oneByte) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

func TestWriteTextDeterministic(t *testing.T) {
	var a, b, c bytes.Buffer
	na, _ := wc.WriteText(&a, 100_000, 7)
	wc.WriteText(&b, 100_000, 7)
	wc.WriteText(&c, 100_000, 8)
	if na != int64(a.Len()) || na > 100_000 || na < 99_000 || !bytes.HasSuffix(a.Bytes(), []byte("\n")) {
		t.Fatalf("WriteText(100000) wrote %d bytes (reported %d), want whole lines up to 100000", a.Len(), na)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) || bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Fatal("WriteText is not a function of its seed")
	}
}

// check runs the wordcount on ex twice (the first run generates the
// corpus) and compares it with a sequential count of the same objects.
func check(t *testing.T, ex *fanout.Executor, st storage.Store, o wc.Options) {
	t.Helper()
	ctx := t.Context()
	for i, generated := range []bool{true, false} {
		sum, err := wc.Run(ctx, ex, st, o)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Generated != generated {
			t.Fatalf("run %d: Generated = %v, want %v", i, sum.Generated, generated)
		}
		want, err := wc.CountSequential(ctx, st, o.Prefix)
		if err != nil {
			t.Fatal(err)
		}
		if want.Total() == 0 || sum.Chunks < 2*sum.Objects {
			t.Fatalf("test bug: %d words in %d objects, %d chunks", want.Total(), sum.Objects, sum.Chunks)
		}
		if !maps.Equal(sum.Counts, want) {
			for w, n := range want {
				if sum.Counts[w] != n {
					t.Fatalf("run %d: %q counted %d times over %d chunks, %d times sequentially (%d words in all, want %d)",
						i, w, sum.Counts[w], sum.Chunks, n, sum.Counts.Total(), want.Total())
				}
			}
			t.Fatalf("run %d: the MapReduce found words that are not there: %d distinct, want %d", i, len(sum.Counts), len(want))
		}
	}
}

func TestRun(t *testing.T) {
	opts := wc.Options{Prefix: "text/", ChunkSize: 7000, Files: 3, FileSize: 50_000, Seed: 1}
	for _, tc := range []struct {
		name    string
		backend func() backends.Backend
		store   func(t *testing.T) storage.Store
	}{
		{"local", func() backends.Backend { return local.New(nil) }, func(*testing.T) storage.Store { return memstore.New(nil) }},
		{"process", func() backends.Backend {
			return process.New(&process.Options{Workers: 2, Env: []string{"GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0"}})
		}, func(t *testing.T) storage.Store {
			st, err := filestore.New(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}},
		{"s3", func() backends.Backend { return local.New(nil) }, func(t *testing.T) storage.Store {
			return s3test.NewServer(t).Store(t, "wc", nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.store(t)
			defer st.Close()
			ex := fanout.NewExecutor(tc.backend(), &fanout.Options{Store: st, Logger: quiet})
			defer ex.Close()
			check(t, ex, st, opts)
		})
	}
}

// A folder of a user's files given as the store, with nothing under the
// prefix: Run writes no corpus beside them, and says why.
func TestNoCorpusIntoUserFiles(t *testing.T) {
	ctx := t.Context()
	st, err := filestore.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Put(ctx, "notes.txt", []byte("my own words\n")); err != nil {
		t.Fatal(err)
	}
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Store: st, Logger: quiet})
	defer ex.Close()
	_, err = wc.Run(ctx, ex, st, wc.Options{Prefix: "text/", Files: 1, FileSize: 100})
	if err == nil || !strings.Contains(err.Error(), `"notes.txt"`) || !strings.Contains(err.Error(), "-prefix") {
		t.Fatalf("Run over a store of a user's files: %v, want an error naming one and -prefix", err)
	}
	var keys []string
	for info, err := range st.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	if len(keys) != 1 || keys[0] != "notes.txt" {
		t.Fatalf("the store holds %q, want only notes.txt", keys)
	}
	// Under the prefix, the same files are counted.
	if err := st.Put(ctx, "text/notes.txt", []byte("my own words\n")); err != nil {
		t.Fatal(err)
	}
	sum, err := wc.Run(ctx, ex, st, wc.Options{Prefix: "text/"})
	if err != nil || sum.Generated || sum.Counts.Total() != 3 {
		t.Fatalf("Run over text/ = %+v, %v; want 3 words counted, nothing generated", sum, err)
	}
}

// Lines longer than the chunk size, blank lines, a file without a final
// newline, an empty file: every word is counted once.
func TestRunAwkwardText(t *testing.T) {
	ctx := t.Context()
	st := memstore.New(nil)
	defer st.Close()
	long := strings.Repeat("alpha beta gamma ", 2000) // 34 KB on one line
	for k, v := range map[string]string{
		"t/a": "one two\n" + long + "\nthree\n\n\nfour",
		"t/b": long + long,
		"t/c": "",
		"t/d": "\n\n\nfive\n",
	} {
		if err := st.Put(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Store: st, Logger: quiet})
	defer ex.Close()
	sum, err := wc.Run(ctx, ex, st, wc.Options{Prefix: "t/", ChunkSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	want := wc.Counts{"one": 1, "two": 1, "three": 1, "four": 1, "five": 1, "alpha": 6000, "beta": 6000, "gamma": 6000}
	if sum.Generated || !maps.Equal(sum.Counts, want) {
		t.Fatalf("counts = %v (generated %v), want %v", sum.Counts, sum.Generated, want)
	}
}
