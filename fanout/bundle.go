package fanout

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/gowren/gowren/internal/layout"
)

// Bundles. An invoker whose driver waits for it (flagCollect) calls its
// children synchronously, takes their replies, and writes them to the store
// several to an object: a bundle, jobs/<id>/out/<index>.<attempt>+<tag>
// (layout.Job.Bundle). The driver lists bundles with the replies and reads
// each entry as the reply of the child whose key it carries. A 10,000-task
// tree then costs the driver a few hundred reads instead of 10,000.
//
// An invoker writes what it has every bundleEvery, and sooner once it holds
// bundleMaxBytes, so that results reach the driver while slower siblings
// still run; and once more when its last child returned.
const (
	bundleEvery    = time.Second
	bundleMaxBytes = 4 << 20
)

// bundleMagic starts every bundle: the format's name and version.
const bundleMagic = "gwb1"

// bundleEntry is one child's reply in a bundle: the key the reply would
// have had alone (its invocation's key in the driver), and the reply as the
// child's worker encoded it (a spilled one names its object).
type bundleEntry struct {
	key   string
	reply []byte
}

// encodeBundle encodes entries: the magic, then for each entry the length
// of its key (uvarint), the key, the length of its reply (uvarint), the
// reply.
func encodeBundle(es []bundleEntry) []byte {
	n := len(bundleMagic)
	for _, e := range es {
		n += 2*binary.MaxVarintLen64 + len(e.key) + len(e.reply)
	}
	b := make([]byte, 0, n)
	b = append(b, bundleMagic...)
	for _, e := range es {
		b = binary.AppendUvarint(b, uint64(len(e.key)))
		b = append(b, e.key...)
		b = binary.AppendUvarint(b, uint64(len(e.reply)))
		b = append(b, e.reply...)
	}
	return b
}

// errBundle is the error of a bundle that cannot be decoded.
var errBundle = errors.New("malformed bundle")

// decodeBundle is the inverse of encodeBundle. The replies alias b; what
// it allocates is bounded by len(b): every entry takes at least two bytes.
func decodeBundle(b []byte) ([]bundleEntry, error) {
	rest, ok := cutPrefix(b, bundleMagic)
	if !ok {
		return nil, fmt.Errorf("%w: no %q header", errBundle, bundleMagic)
	}
	var es []bundleEntry
	for len(rest) > 0 {
		var key, reply []byte
		if key, rest, ok = cutLen(rest); !ok {
			return nil, fmt.Errorf("%w: entry %d: truncated key", errBundle, len(es))
		}
		if reply, rest, ok = cutLen(rest); !ok {
			return nil, fmt.Errorf("%w: entry %d (%q): truncated reply", errBundle, len(es), key)
		}
		es = append(es, bundleEntry{key: string(key), reply: reply})
	}
	return es, nil
}

func cutPrefix(b []byte, p string) ([]byte, bool) {
	if len(b) < len(p) || string(b[:len(p)]) != p {
		return nil, false
	}
	return b[len(p):], true
}

// cutLen cuts a uvarint length and that many bytes off the front of b.
// The length must be written in as few bytes as it takes (its last byte is
// not zero), so that a bundle has one encoding.
func cutLen(b []byte) (field, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || (w > 1 && b[w-1] == 0) || n > uint64(len(b)-w) {
		return nil, nil, false
	}
	return b[w : w+int(n)], b[w+int(n):], true
}

// A collector gathers the replies of an invoker's children and writes them
// in bundles. One goroutine owns what is pending; the children's calls hand
// it their replies through a channel.
type collector struct {
	ctx    context.Context
	stores *storeResolver
	keys   layout.Job
	tag    string
	in     chan collected
	done   chan map[int]error
}

// collected is one child's reply: k its number among the invoker's
// children, and its first task, after which a bundle holding it may be
// named.
type collected struct {
	k              int
	index, attempt int
	bundleEntry
}

// collect starts a collector for n children of the job whose keys start
// with prefix.
func collect(ctx context.Context, stores *storeResolver, prefix string, n int) *collector {
	c := &collector{
		ctx: context.WithoutCancel(ctx), stores: stores, keys: layout.Job(prefix),
		tag: strconv.FormatUint(rand.Uint64(), 36), in: make(chan collected, n), done: make(chan map[int]error, 1),
	}
	go c.run()
	return c
}

// add hands a child's reply to the collector.
func (c *collector) add(e collected) { c.in <- e }

// close writes what is pending and returns the children whose replies
// could not be written, with why.
func (c *collector) close() map[int]error {
	close(c.in)
	return <-c.done
}

func (c *collector) run() {
	var (
		pending []collected
		size    int
		seq     int
		failed  map[int]error
		timer   *time.Timer
		tick    <-chan time.Time
	)
	flush := func() {
		if timer != nil {
			timer.Stop()
			timer, tick = nil, nil
		}
		if len(pending) == 0 {
			return
		}
		if err := c.write(pending, seq); err != nil {
			if failed == nil {
				failed = map[int]error{}
			}
			for _, e := range pending {
				failed[e.k] = err
			}
		}
		seq++
		pending, size = pending[:0], 0
	}
	for {
		select {
		case e, ok := <-c.in:
			if !ok {
				flush()
				c.done <- failed
				return
			}
			pending = append(pending, e)
			size += len(e.key) + len(e.reply)
			switch {
			case size >= bundleMaxBytes:
				flush()
			case timer == nil:
				timer = time.NewTimer(bundleEvery)
				tick = timer.C
			}
		case <-tick:
			timer, tick = nil, nil
			flush()
		}
	}
}

// write puts one bundle, named after the entry with the highest first
// task (see layout.Job.Bundle: the driver lists from the lowest copy it
// still awaits, and an entry may be a copy it gave up on, lower than that).
func (c *collector) write(es []collected, seq int) error {
	high := 0
	entries := make([]bundleEntry, len(es))
	for k, e := range es {
		entries[k] = e.bundleEntry
		if e.index > es[high].index {
			high = k
		}
	}
	key := c.keys.Bundle(es[high].index, es[high].attempt, c.tag+"x"+strconv.Itoa(seq))
	st, err := c.stores.get()
	if err == nil {
		err = st.Put(c.ctx, key, encodeBundle(entries))
	}
	if err != nil {
		return fmt.Errorf("write a bundle of %d replies %q: %w", len(es), key, err)
	}
	return nil
}
