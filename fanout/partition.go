package fanout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/gowren/gowren/storage"
)

// Chunk is a byte range of one object in a store: the unit of work that
// Partition cuts a data set into, and an ordinary input for Map (it travels
// as msgpack). A task reads its chunk with Open.
//
// A chunk with Lines set is line-aligned: it holds the lines that start in
// its range. It begins after the first newline at or after Offset (at 0
// when Offset is 0) and runs through the first newline at or after
// Offset+Length (or to the end of the object). The chunks of an object thus
// hold every byte once, each line whole in exactly one chunk; a chunk
// inside a line longer than the chunk size holds nothing.
type Chunk struct {
	// Key names the object in the job's store.
	Key string `msgpack:"key"`
	// Offset and Length are the range the chunk was cut at.
	Offset int64 `msgpack:"offset"`
	Length int64 `msgpack:"length"`
	// Size is the object's size when it was partitioned.
	Size int64 `msgpack:"size"`
	// Lines makes the chunk line-aligned.
	Lines bool `msgpack:"lines"`
}

// String returns "key[offset:end]", with " lines" for a line-aligned chunk.
func (c Chunk) String() string {
	s := fmt.Sprintf("%s[%d:%d]", c.Key, c.Offset, c.Offset+c.Length)
	if c.Lines {
		s += " lines"
	}
	return s
}

// PartitionOptions configure Partition. A nil *PartitionOptions means the
// defaults.
type PartitionOptions struct {
	// ChunkSize is the size in bytes of the ranges objects are cut into;
	// the last chunk of an object may be shorter, and an object smaller
	// than ChunkSize is one chunk. A negative value is an error. Defaults
	// to 64 MiB.
	ChunkSize int64
	// Lines makes the chunks line-aligned (see Chunk). Defaults to false:
	// chunks are exact byte ranges.
	Lines bool
	// Filter, when not nil, selects the objects to partition. Defaults to
	// every object under the prefix.
	Filter func(storage.ObjectInfo) bool
}

// DefaultChunkSize is the chunk size of Partition when
// PartitionOptions.ChunkSize is 0.
const DefaultChunkSize = 64 << 20

// maxChunks bounds what one Partition returns, so that a tiny ChunkSize
// fails clearly instead of exhausting memory.
const maxChunks = 1 << 20

// Partition lists the objects whose key starts with prefix in st and cuts
// each into chunks of opts.ChunkSize bytes, in key order and then offset
// order, ready to be the inputs of Map. Empty objects give no chunk. A
// prefix with no object gives no chunk and no error. Partition reads no
// object data: it sends List requests only. On a file store the objects are
// the files under the prefix, so a folder of text files put there by hand
// partitions as it is (select files by name with Filter: hidden ones such
// as .DS_Store are objects too).
//
// The tasks read their chunk from their job's store with Chunk.Open, so st
// should hold the same objects as the store of the executor that runs them.
// Objects must not change until the job is done.
func Partition(ctx context.Context, st storage.Store, prefix string, opts *PartitionOptions) ([]Chunk, error) {
	var o PartitionOptions
	if opts != nil {
		o = *opts
	}
	if st == nil {
		return nil, fmt.Errorf("fanout: partition %q: nil store", prefix)
	}
	switch {
	case o.ChunkSize == 0:
		o.ChunkSize = DefaultChunkSize
	case o.ChunkSize < 0:
		return nil, fmt.Errorf("fanout: partition %q: chunk size %d: want a positive size (0 for the default %d)", prefix, o.ChunkSize, DefaultChunkSize)
	}
	var chunks []Chunk
	for info, err := range st.List(ctx, prefix) {
		if err != nil {
			return nil, fmt.Errorf("fanout: partition %q: %w", prefix, err)
		}
		if info.Size == 0 || o.Filter != nil && !o.Filter(info) {
			continue
		}
		n := (info.Size-1)/o.ChunkSize + 1
		if n > int64(maxChunks-len(chunks)) {
			return nil, fmt.Errorf("fanout: partition %q: more than %d chunks of %d bytes (at %q, %d bytes); use a larger chunk size",
				prefix, maxChunks, o.ChunkSize, info.Key, info.Size)
		}
		for off := int64(0); off < info.Size; off += o.ChunkSize {
			chunks = append(chunks, Chunk{
				Key: info.Key, Offset: off, Length: min(o.ChunkSize, info.Size-off),
				Size: info.Size, Lines: o.Lines,
			})
		}
	}
	return chunks, nil
}

// Open returns a reader of the chunk from the job's store (Store(ctx)), for
// use inside a task. See OpenFrom.
func (c Chunk) Open(ctx context.Context) (io.ReadCloser, error) {
	return c.OpenFrom(ctx, Store(ctx))
}

// OpenFrom returns a reader of the chunk from st. A plain chunk is one
// ranged read of the object. A line-aligned chunk reads from Offset,
// skipping to its first line, and on past its range through the end of its
// last line, fetching further ranges as needed (a first one of the chunk
// plus 64 KiB, each next one twice as large), so a line of any length costs
// no more than reading it. The reader fails once ctx is cancelled. The
// caller must Close it.
func (c Chunk) OpenFrom(ctx context.Context, st storage.Store) (io.ReadCloser, error) {
	if st == nil {
		return nil, fmt.Errorf("fanout: open chunk %s: nil store", c)
	}
	if c.Offset < 0 || c.Length < 0 || c.Size < 0 {
		return nil, fmt.Errorf("fanout: open chunk %s: negative offset, length or size", c)
	}
	if !c.Lines {
		r, err := st.NewReader(ctx, c.Key, c.Offset, c.Length)
		if err != nil {
			return nil, fmt.Errorf("fanout: open chunk %s: %w", c, err)
		}
		return r, nil
	}
	limit := c.Size
	if limit == 0 {
		limit = math.MaxInt64 // unknown: read to the object's end
	}
	end := c.Offset + c.Length
	if c.Length > math.MaxInt64-c.Offset {
		end = math.MaxInt64
	}
	src := &rangeReader{ctx: ctx, st: st, key: c.Key, pos: c.Offset, limit: limit,
		window: min(c.Length, math.MaxInt64-lookahead) + lookahead}
	// Open the first range now, so that a missing object or a bad range
	// is reported here.
	if err := src.next(); err != nil {
		return nil, fmt.Errorf("fanout: open chunk %s: %w", c, err)
	}
	lr := &lineReader{chunk: c, src: src, end: end, state: lineBody}
	if c.Offset > 0 {
		lr.state = lineSkip
	}
	return lr, nil
}

// lookahead is how far past its range a line-aligned chunk's first read
// goes, to find the end of its last line without a second request.
const lookahead = 64 << 10

// rangeReader reads an object sequentially from pos up to limit, as a
// series of ranged reads of growing size.
type rangeReader struct {
	ctx    context.Context
	st     storage.Store
	key    string
	pos    int64 // offset of the next byte
	limit  int64 // stop here
	window int64 // size of the next range
	cur    io.ReadCloser
	curEnd int64
}

// next opens the range that follows pos.
func (r *rangeReader) next() error {
	n := min(r.window, r.limit-r.pos)
	rd, err := r.st.NewReader(r.ctx, r.key, r.pos, n)
	if err != nil {
		return err
	}
	r.cur, r.curEnd = rd, r.pos+n
	r.window = min(2*r.window, 64<<20)
	return nil
}

func (r *rangeReader) Read(p []byte) (int, error) {
	for {
		if r.pos >= r.limit {
			return 0, io.EOF
		}
		if r.cur == nil {
			if err := r.next(); err != nil {
				return 0, err
			}
		}
		n, err := r.cur.Read(p)
		r.pos += int64(n)
		if err == io.EOF {
			r.cur.Close()
			r.cur = nil
			if r.pos < r.curEnd {
				r.limit = r.pos // the object ends here
			}
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (r *rangeReader) Close() error {
	if r.cur == nil {
		return nil
	}
	err := r.cur.Close()
	r.cur = nil
	return err
}

const (
	lineSkip = iota // before the chunk's first line
	lineBody        // inside the chunk's range
	lineTail        // past the range, up to the end of the last line
	lineDone
)

// lineReader reads a line-aligned chunk from src, which starts at the
// chunk's offset.
type lineReader struct {
	chunk Chunk
	src   *rangeReader
	end   int64 // end of the chunk's range
	state int
	err   error
}

func (r *lineReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.read(p)
	if err != nil && err != io.EOF {
		r.err = fmt.Errorf("fanout: read chunk %s: %w", r.chunk, err)
		return n, r.err
	}
	return n, err
}

func (r *lineReader) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		switch r.state {
		case lineSkip:
			// The line that runs over Offset belongs to the chunk before;
			// without a newline in the range, so does the whole range.
			left := r.end - r.src.pos
			if left <= 0 {
				r.state = lineDone
				continue
			}
			buf := p[:min(int64(len(p)), left)]
			n, err := r.src.Read(buf)
			if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
				r.state = lineBody
				if m := copy(p, buf[i+1:n]); m > 0 {
					return m, nil
				}
				continue
			}
			if err == io.EOF {
				r.state = lineDone
				continue
			}
			if err != nil {
				return 0, err
			}
		case lineBody:
			left := r.end - r.src.pos
			if left <= 0 {
				r.state = lineTail
				continue
			}
			n, err := r.src.Read(p[:min(int64(len(p)), left)])
			if err == io.EOF {
				r.state = lineDone
				if n == 0 {
					continue
				}
				err = nil
			}
			return n, err
		case lineTail:
			n, err := r.src.Read(p)
			if i := bytes.IndexByte(p[:n], '\n'); i >= 0 {
				r.state = lineDone
				return i + 1, nil
			}
			if err == io.EOF {
				r.state = lineDone
				if n == 0 {
					continue
				}
				err = nil
			}
			return n, err
		default:
			return 0, io.EOF
		}
	}
}

func (r *lineReader) Close() error {
	r.state = lineDone
	if r.err == nil {
		r.err = errors.New("fanout: read chunk after Close")
	}
	return r.src.Close()
}
