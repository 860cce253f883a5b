package fanout

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// maxMsgDepth bounds the nesting of arrays and maps in anything decoded. The
// msgpack library recurses once per level; a hostile payload of a million
// nested arrays would otherwise exhaust the stack, which Go cannot recover.
const maxMsgDepth = 256

var errMsgTruncated = errors.New("truncated")

// checkMsgpack verifies that b holds exactly one well-formed msgpack value
// whose declared lengths all fit in b and whose nesting is at most
// maxMsgDepth. It runs before any decoding, because the msgpack library
// allocates what a length prefix announces before reading the elements: after
// this check an array of n elements is known to occupy at least n bytes, so no
// decode can allocate more than a small multiple of len(b).
func checkMsgpack(b []byte) error {
	n, err := skipMsgpack(b, 0, maxMsgDepth)
	if err != nil {
		return err
	}
	if n != len(b) {
		return fmt.Errorf("msgpack: %d trailing bytes after the value", len(b)-n)
	}
	return nil
}

// skipMsgpack returns the offset just past the msgpack value starting at off.
// It walks arrays and maps with an explicit stack of remaining element counts,
// so its own depth is constant whatever the input.
func skipMsgpack(b []byte, off, maxDepth int) (int, error) {
	// pending[i] is the number of values still to read at depth i.
	var stackBuf [16]int
	pending := append(stackBuf[:0], 1)
	for len(pending) > 0 {
		top := len(pending) - 1
		if pending[top] == 0 {
			pending = pending[:top]
			continue
		}
		pending[top]--
		if off >= len(b) {
			return 0, fmt.Errorf("msgpack: %w at offset %d", errMsgTruncated, off)
		}
		c := b[off]
		off++
		var skip, count int // bytes of payload to skip; values contained
		var err error
		switch {
		case c <= 0x7f || c >= 0xe0: // positive and negative fixint
		case c <= 0x8f: // fixmap
			count = 2 * int(c&0x0f)
		case c <= 0x9f: // fixarray
			count = int(c & 0x0f)
		case c <= 0xbf: // fixstr
			skip = int(c & 0x1f)
		default:
			switch c {
			case 0xc0, 0xc2, 0xc3: // nil, false, true
			case 0xc1:
				return 0, fmt.Errorf("msgpack: reserved code 0xc1 at offset %d", off-1)
			case 0xc4, 0xd9: // bin8, str8
				skip, off, err = readLen(b, off, 1)
			case 0xc5, 0xda: // bin16, str16
				skip, off, err = readLen(b, off, 2)
			case 0xc6, 0xdb: // bin32, str32
				skip, off, err = readLen(b, off, 4)
			case 0xc7: // ext8: length, type, data
				skip, off, err = readLen(b, off, 1)
				skip++
			case 0xc8:
				skip, off, err = readLen(b, off, 2)
				skip++
			case 0xc9:
				skip, off, err = readLen(b, off, 4)
				skip++
			case 0xca, 0xd2, 0xce: // float32, int32, uint32
				skip = 4
			case 0xcb, 0xd3, 0xcf: // float64, int64, uint64
				skip = 8
			case 0xcc, 0xd0: // uint8, int8
				skip = 1
			case 0xcd, 0xd1: // uint16, int16
				skip = 2
			case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16 (+ type byte)
				skip = 1 + 1<<(c-0xd4)
			case 0xdc: // array16
				count, off, err = readLen(b, off, 2)
			case 0xdd: // array32
				count, off, err = readLen(b, off, 4)
			case 0xde: // map16
				count, off, err = readLen(b, off, 2)
				count *= 2
			case 0xdf: // map32
				count, off, err = readLen(b, off, 4)
				count *= 2
			}
		}
		if err != nil {
			return 0, err
		}
		if skip > len(b)-off {
			return 0, fmt.Errorf("msgpack: %w: %d bytes announced at offset %d, %d left", errMsgTruncated, skip, off, len(b)-off)
		}
		off += skip
		if count > 0 {
			// Every value takes at least one byte.
			if count > len(b)-off {
				return 0, fmt.Errorf("msgpack: %w: %d values announced at offset %d, %d bytes left", errMsgTruncated, count, off, len(b)-off)
			}
			if len(pending) >= maxDepth {
				return 0, fmt.Errorf("msgpack: nesting deeper than %d at offset %d", maxDepth, off)
			}
			pending = append(pending, count)
		}
	}
	return off, nil
}

func readLen(b []byte, off, size int) (int, int, error) {
	if len(b)-off < size {
		return 0, 0, fmt.Errorf("msgpack: %w length at offset %d", errMsgTruncated, off)
	}
	var n uint64
	switch size {
	case 1:
		n = uint64(b[off])
	case 2:
		n = uint64(binary.BigEndian.Uint16(b[off:]))
	case 4:
		n = uint64(binary.BigEndian.Uint32(b[off:]))
	}
	return int(n), off + size, nil
}
