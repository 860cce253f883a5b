package process

import (
	"encoding/binary"
	"fmt"
)

// The driver and a worker talk over two pipes: the driver writes frames to
// the worker's fd 3 and reads frames from its fd 4. A frame is a 16-byte
// header followed by a body:
//
//	offset size
//	0      2    magic "gw"
//	2      1    type (frameHello ... framePart)
//	3      1    flags: flagRetire on a reply, toolarge or failed, else 0
//	4      4    body length, big endian
//	8      8    request id, big endian (0 in hello)
//
// Bodies by type:
//
//	hello     worker->driver  protocol version uint32, pid uint32
//	invoke    driver->worker  deadline int64 (Unix ns, 0 none), max reply uint32,
//	                          options uint32 (optStream or 0), then the payload
//	cancel    driver->worker  empty: cancel the invocation with this id
//	part      worker->driver  one part the handler sent ahead of its reply
//	                          (backends.SendPart); only for an invoke with
//	                          optStream, at most max reply bytes
//	reply     worker->driver  the handler's reply
//	toolarge  worker->driver  uint64: size of a reply the worker refused to send
//	failed    worker->driver  text: the handler panicked (message and stack)
//
// An invocation's frames from the worker are any number of parts, then one
// of reply, toolarge or failed, which ends it. Both sides check a body length
// against their limits before allocating it.
//
// Version 2 added the part frame and the invoke frame's options.

const (
	protocolVersion = 2
	headerSize      = 16

	helloSize        = 8
	invokePrefixSize = 16
	tooLargeSize     = 8
	maxFailedSize    = 64 << 10

	// maxLimit caps MaxRequestBytes and MaxResponseBytes so that every
	// length fits the header's uint32 with room for a prefix.
	maxLimit = 1 << 30
)

type frameType uint8

const (
	frameHello frameType = 1 + iota
	frameInvoke
	frameCancel
	frameReply
	frameTooLarge
	frameFailed
	framePart
)

func (t frameType) String() string {
	switch t {
	case frameHello:
		return "hello"
	case frameInvoke:
		return "invoke"
	case frameCancel:
		return "cancel"
	case frameReply:
		return "reply"
	case frameTooLarge:
		return "toolarge"
	case frameFailed:
		return "failed"
	case framePart:
		return "part"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// flagRetire on the frame that ends an invocation (reply, toolarge or
// failed) says the worker should not serve again: a task it gave up on is
// still running (see backends.Abandoned). The driver then disposes of it
// instead of returning it to the pool, however the invocation ended.
const flagRetire = 1

// optStream in an invoke frame's options asks the worker for parts: its
// handler's context carries a part sender (backends.WithPartSender). Without
// it the handler cannot send parts, so the driver never gets one it did not
// ask for.
const optStream = 1

type header struct {
	typ   frameType
	flags uint8
	size  uint32
	id    uint64
}

func putHeader(b []byte, h header) {
	_ = b[headerSize-1]
	b[0], b[1], b[2], b[3] = 'g', 'w', byte(h.typ), h.flags
	binary.BigEndian.PutUint32(b[4:8], h.size)
	binary.BigEndian.PutUint64(b[8:16], h.id)
}

// parseHeader decodes a header; it checks the magic and that no unknown flag
// is set: the reader checks type, flags, id and size against what it expects.
func parseHeader(b []byte) (header, error) {
	_ = b[headerSize-1]
	if b[0] != 'g' || b[1] != 'w' {
		return header{}, fmt.Errorf("bad frame magic %#02x%02x", b[0], b[1])
	}
	if b[3]&^flagRetire != 0 {
		return header{}, fmt.Errorf("bad frame: unknown flags %#02x", b[3])
	}
	return header{
		typ:   frameType(b[2]),
		flags: b[3],
		size:  binary.BigEndian.Uint32(b[4:8]),
		id:    binary.BigEndian.Uint64(b[8:16]),
	}, nil
}

// checkReply validates a header the driver read while waiting for the reply
// to request id, whose reply and parts may be at most maxReply bytes each;
// stream says whether the invocation asked for parts.
func checkReply(h header, id uint64, maxReply int, stream bool) error {
	if h.id != id {
		return fmt.Errorf("bad frame: %v for request %d, want request %d", h.typ, h.id, id)
	}
	if h.flags != 0 && h.typ != frameReply && h.typ != frameTooLarge && h.typ != frameFailed {
		return fmt.Errorf("bad frame: %v with flags %#02x", h.typ, h.flags)
	}
	var ok bool
	switch h.typ {
	case framePart:
		if !stream {
			return fmt.Errorf("bad frame: part for request %d, which did not ask for parts", id)
		}
		ok = uint64(h.size) <= uint64(maxReply)
	case frameReply:
		ok = uint64(h.size) <= uint64(maxReply)
	case frameTooLarge:
		ok = h.size == tooLargeSize
	case frameFailed:
		ok = h.size <= maxFailedSize
	default:
		return fmt.Errorf("bad frame: unexpected %v while waiting for a reply", h.typ)
	}
	if !ok {
		return fmt.Errorf("bad frame: %v of %d bytes", h.typ, h.size)
	}
	return nil
}
