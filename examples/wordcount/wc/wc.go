// Package wc is the work of the wordcount example: a MapReduce over the
// line-aligned chunks of the text objects under a prefix of a store, and a
// generator of deterministic pseudo-random text to count when there is
// none.
package wc

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
)

// Counts maps words to their number of occurrences.
type Counts map[string]int64

// Add adds the counts of o to c.
func (c Counts) Add(o Counts) {
	for w, n := range o {
		c[w] += n
	}
}

// Total returns the number of words counted.
func (c Counts) Total() int64 {
	var t int64
	for _, n := range c {
		t += n
	}
	return t
}

// WordCount is a word and its count.
type WordCount struct {
	Word  string
	Count int64
}

// Top returns the n most frequent words, most frequent first, ties in
// alphabetical order.
func (c Counts) Top(n int) []WordCount {
	all := make([]WordCount, 0, len(c))
	for w, k := range c {
		all = append(all, WordCount{w, k})
	}
	slices.SortFunc(all, func(a, b WordCount) int {
		if a.Count != b.Count {
			return cmp.Compare(b.Count, a.Count)
		}
		return strings.Compare(a.Word, b.Word)
	})
	return all[:min(n, len(all))]
}

// isWordByte reports whether b belongs to a word: an ASCII letter or digit,
// or any byte of a multi-byte UTF-8 character.
func isWordByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b >= 0x80
}

// CountReader adds the words read from r to c: maximal runs of letters and
// digits (and non-ASCII characters), lowercased. It holds no more than one
// word and a 64 KiB buffer in memory.
func CountReader(r io.Reader, c Counts) error {
	buf := make([]byte, 64<<10)
	var word []byte
	flush := func() {
		if len(word) == 0 {
			return
		}
		w := string(word)
		if hasUpper(word) {
			w = strings.ToLower(w)
		}
		c[w]++
		word = word[:0]
	}
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if isWordByte(b) {
				word = append(word, b)
			} else {
				flush()
			}
		}
		if err == io.EOF {
			flush()
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func hasUpper(b []byte) bool {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' || c >= 0x80 {
			return true
		}
	}
	return false
}

// CountChunk counts the words of a line-aligned chunk, which it streams
// from the job's store.
var CountChunk = fanout.Register("wordcount.count", func(ctx context.Context, c fanout.Chunk) (Counts, error) {
	r, err := c.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	counts := Counts{}
	if err := CountReader(r, counts); err != nil {
		return nil, err
	}
	return counts, nil
})

// Merge adds up the counts of the chunks.
var Merge = fanout.Register("wordcount.merge", func(ctx context.Context, parts []Counts) (Counts, error) {
	total := Counts{}
	for _, p := range parts {
		total.Add(p)
	}
	return total, nil
})

// CountSequential counts the words of the objects under prefix of st one
// after the other, in this process: the reference for the MapReduce.
func CountSequential(ctx context.Context, st storage.Store, prefix string) (Counts, error) {
	c := Counts{}
	for info, err := range st.List(ctx, prefix) {
		if err != nil {
			return nil, err
		}
		r, err := st.NewReader(ctx, info.Key, 0, -1)
		if err != nil {
			return nil, err
		}
		err = CountReader(r, c)
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("wc: count %q: %w", info.Key, err)
		}
	}
	return c, nil
}

// TextFile describes a file of pseudo-random text to generate.
type TextFile struct {
	Key  string
	Size int64 // in bytes, about: the last line is finished
	Seed uint64
}

// vocabulary returns n pseudo-words made of syllables, the same for the
// same seed, most frequent first.
func vocabulary(n int, seed uint64) []string {
	syl := []string{"ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "den", "ar", "ol", "wen", "qu", "zi", "be", "the", "an", "or", "is"}
	r := rand.New(rand.NewPCG(seed, 0x76))
	seen := map[string]bool{}
	words := make([]string, 0, n)
	for len(words) < n {
		var b strings.Builder
		for range 1 + r.IntN(3) + len(words)/400 {
			b.WriteString(syl[r.IntN(len(syl))])
		}
		if w := b.String(); !seen[w] {
			seen[w] = true
			words = append(words, w)
		}
	}
	return words
}

// WriteText writes at most size bytes of pseudo-random text to w, in whole
// lines: lines of 0 to 20 words drawn from a Zipf distribution over a
// vocabulary of 5,000 words, some capitalized or followed by punctuation.
// The same seed gives the same text.
func WriteText(w io.Writer, size int64, seed uint64) (int64, error) {
	voc := vocabulary(5000, 42) // one vocabulary for every file
	r := rand.New(rand.NewPCG(seed, 0x7763))
	zipf := rand.NewZipf(r, 1.1, 2, uint64(len(voc)-1))
	bw := bufio.NewWriterSize(w, 64<<10)
	var n int64
	var line []byte
	for {
		line = line[:0]
		words := r.IntN(21)
		for i := range words {
			word := voc[zipf.Uint64()]
			if i == 0 && r.IntN(3) == 0 {
				word = strings.ToUpper(word[:1]) + word[1:]
			}
			line = append(line, word...)
			switch {
			case i == words-1:
				line = append(line, []string{".", "!", "?", ""}[r.IntN(4)]...)
			case r.IntN(12) == 0:
				line = append(line, ", "...)
			default:
				line = append(line, ' ')
			}
		}
		line = append(line, '\n')
		if n+int64(len(line)) > size {
			return n, bw.Flush()
		}
		k, err := bw.Write(line)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
}

// Generate writes a text file to the job's store, streaming, and returns
// its size.
var Generate = fanout.Register("wordcount.generate", func(ctx context.Context, f TextFile) (int64, error) {
	if f.Size < 0 || f.Size > 64<<30 {
		return 0, fmt.Errorf("wc: %q: size %d out of range", f.Key, f.Size)
	}
	w, err := fanout.Store(ctx).NewWriter(ctx, f.Key)
	if err != nil {
		return 0, err
	}
	n, err := WriteText(w, f.Size, f.Seed)
	if err != nil {
		w.Close()
		return 0, err
	}
	return n, w.Close()
})

// Options configure Run. The zero value counts "corpus/" in chunks of
// 4 MiB, generating 8 files of 8 MiB when there is nothing to count.
type Options struct {
	// Prefix is where the text objects are. Defaults to "corpus/".
	Prefix string
	// ChunkSize is the size of the chunks. Defaults to 4 MiB.
	ChunkSize int64
	// Files and FileSize describe the corpus generated when Prefix holds
	// no object. Default to 8 and 8 MiB.
	Files    int
	FileSize int64
	// Seed makes the generated corpus. Defaults to 0.
	Seed uint64
}

// Summary describes a run.
type Summary struct {
	Counts Counts
	// Objects and Bytes describe what was counted; Chunks how it was cut.
	Objects   int
	Bytes     int64
	Chunks    int
	Generated bool
	// Wall is the time of the MapReduce, without the generation.
	Wall time.Duration
}

// Run counts the words of the objects under o.Prefix of st with a
// MapReduce on ex, whose store must hold the same objects (it is usually
// st): one map task per line-aligned chunk, one reducer. When the prefix
// holds nothing, it first generates a corpus there, also as tasks, unless
// st holds other objects than gowren's: those are a user's files (a folder
// given as a file store), and Run then fails, naming one, rather than write
// a corpus beside them.
func Run(ctx context.Context, ex *fanout.Executor, st storage.Store, o Options) (Summary, error) {
	var sum Summary
	if o.Prefix == "" {
		o.Prefix = "corpus/"
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = 4 << 20
	}
	if o.Files == 0 {
		o.Files = 8
	}
	if o.FileSize == 0 {
		o.FileSize = 8 << 20
	}
	if o.Files < 0 || o.FileSize < 0 || o.ChunkSize < 0 {
		return sum, errors.New("wc: negative Files, FileSize or ChunkSize")
	}
	chunks, err := fanout.Partition(ctx, st, o.Prefix, &fanout.PartitionOptions{ChunkSize: o.ChunkSize, Lines: true})
	if err != nil {
		return sum, err
	}
	if len(chunks) == 0 {
		if err := noOwnFiles(ctx, st, o.Prefix); err != nil {
			return sum, err
		}
		files := make([]TextFile, o.Files)
		for i := range files {
			files[i] = TextFile{Key: fmt.Sprintf("%stext-%03d.txt", o.Prefix, i), Size: o.FileSize, Seed: o.Seed*1000 + uint64(i)}
		}
		if _, err := fanout.Map(ctx, ex, Generate, files); err != nil {
			return sum, fmt.Errorf("wc: generate a corpus: %w", err)
		}
		sum.Generated = true
		if chunks, err = fanout.Partition(ctx, st, o.Prefix, &fanout.PartitionOptions{ChunkSize: o.ChunkSize, Lines: true}); err != nil {
			return sum, err
		}
	}
	sum.Chunks = len(chunks)
	for i, c := range chunks {
		if i == 0 || c.Key != chunks[i-1].Key {
			sum.Objects++
			sum.Bytes += c.Size
		}
	}
	start := time.Now()
	sum.Counts, err = fanout.MapReduce(ctx, ex, CountChunk, chunks, Merge)
	sum.Wall = time.Since(start)
	return sum, err
}

// noOwnFiles fails when st holds an object outside prefix and gowren's own
// prefixes (jobs/, refs/): a user's file, beside which no corpus is written.
func noOwnFiles(ctx context.Context, st storage.Store, prefix string) error {
	for info, err := range st.List(ctx, "") {
		if err != nil {
			return err
		}
		k := info.Key
		if !strings.HasPrefix(k, prefix) && !strings.HasPrefix(k, "jobs/") && !strings.HasPrefix(k, "refs/") {
			return fmt.Errorf("wc: %s holds no text under %q but files of its own, such as %q: "+
				"put the text to count under %q (or name its folder with wordcount -prefix), or use another store to generate a corpus into",
				st.URL(), prefix, k, prefix)
		}
	}
	return nil
}
