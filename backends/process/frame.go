package process

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/gowren/gowren/backends"
)

// The driver and a worker talk over two pipes: the driver writes frames to
// the worker's fd 3 and reads frames from its fd 4. A frame is a 16-byte
// header followed by a body:
//
//	offset size
//	0      2    magic "gw"
//	2      1    type (frameHello ... frameCallFailed)
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
//	call      worker->driver  a reverse call: the handler invokes the backend
//	                          (backends.InvokerOf); deadline int64 (Unix ns,
//	                          0 none), then the payload, at most
//	                          MaxRequestBytes. Its id is the worker's call
//	                          id, which only grows over the worker's life
//	callcancel worker->driver empty: cancel the reverse call with this id
//	result    driver->worker  the reply of the reverse call with this id, at
//	                          most MaxResponseBytes
//	callfail  driver->worker  the reverse call with this id failed: kind
//	                          uint32 (callErr...), retry after int64 (ns,
//	                          for a throttle), then the error's text
//
// An invocation's frames from the worker are any number of parts, then one
// of reply, toolarge or failed, which ends it. Calls and callcancels may come
// at any time, during an invocation or between two: a call belongs to the
// worker process, not to the invocation whose handler made it, which may
// have returned since. The driver answers each call with one result or
// callfail, unless the worker is gone; a worker ignores the answer to a call
// it no longer waits for. Both sides check a body length against their
// limits before allocating it.
//
// Version 2 added the part frame and the invoke frame's options; version 3
// the reverse calls.

const (
	protocolVersion = 3
	headerSize      = 16

	helloSize          = 8
	invokePrefixSize   = 16
	tooLargeSize       = 8
	maxFailedSize      = 64 << 10
	callPrefixSize     = 8
	callFailPrefixSize = 12

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
	frameCall
	frameCallCancel
	frameResult
	frameCallFail
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
	case frameCall:
		return "call"
	case frameCallCancel:
		return "callcancel"
	case frameResult:
		return "result"
	case frameCallFail:
		return "callfail"
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
// stream says whether the invocation asked for parts. A call's payload may
// be at most maxRequest bytes; a call's id is the worker's, which the caller
// checks.
func checkReply(h header, id uint64, maxReply, maxRequest int, stream bool) error {
	if h.flags != 0 && h.typ != frameReply && h.typ != frameTooLarge && h.typ != frameFailed {
		return fmt.Errorf("bad frame: %v with flags %#02x", h.typ, h.flags)
	}
	var ok bool
	switch h.typ {
	case frameCall:
		ok = h.size >= callPrefixSize && uint64(h.size-callPrefixSize) <= uint64(maxRequest)
	case frameCallCancel:
		ok = h.size == 0
	case framePart, frameReply, frameTooLarge, frameFailed:
		if h.id != id {
			return fmt.Errorf("bad frame: %v for request %d, want request %d", h.typ, h.id, id)
		}
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
		}
	default:
		return fmt.Errorf("bad frame: unexpected %v while waiting for a reply", h.typ)
	}
	if !ok {
		return fmt.Errorf("bad frame: %v of %d bytes", h.typ, h.size)
	}
	return nil
}

// checkAnswer validates a header a worker read that answers a reverse call:
// a result may be at most maxResult bytes.
func checkAnswer(h header, maxResult int) error {
	var ok bool
	switch h.typ {
	case frameResult:
		ok = uint64(h.size) <= uint64(maxResult)
	case frameCallFail:
		ok = h.size >= callFailPrefixSize && h.size <= callFailPrefixSize+maxFailedSize
	default:
		return fmt.Errorf("bad frame: unexpected %v", h.typ)
	}
	if !ok {
		return fmt.Errorf("bad frame: %v of %d bytes", h.typ, h.size)
	}
	return nil
}

// Kinds of error in a callfail frame: the worker rebuilds an error that
// errors.Is recognises as the driver's was.
const (
	callErrOther uint32 = iota
	callErrCanceled
	callErrDeadline
	callErrThrottled
	callErrWorkerLost
	callErrTransport
	callErrTooLarge
	callErrClosed
)

// callErrKinds lists the kinds in the order a driver's error is tested for
// them: the first that matches names it.
var callErrKinds = []struct {
	kind uint32
	err  error
}{
	{callErrCanceled, context.Canceled},
	{callErrDeadline, context.DeadlineExceeded},
	{callErrThrottled, backends.ErrThrottled},
	{callErrWorkerLost, backends.ErrWorkerLost},
	{callErrTransport, backends.ErrTransport},
	{callErrTooLarge, backends.ErrPayloadTooLarge},
	{callErrClosed, backends.ErrClosed},
}

// encodeCallFail returns the body of a callfail frame for err.
func encodeCallFail(err error) []byte {
	kind := callErrOther
	for _, k := range callErrKinds {
		if errors.Is(err, k.err) {
			kind = k.kind
			break
		}
	}
	msg := err.Error()
	if len(msg) > maxFailedSize {
		msg = msg[:maxFailedSize]
	}
	b := make([]byte, callFailPrefixSize, callFailPrefixSize+len(msg))
	binary.BigEndian.PutUint32(b[0:4], kind)
	binary.BigEndian.PutUint64(b[4:12], uint64(backends.RetryAfter(err)))
	return append(b, msg...)
}

// decodeCallFail rebuilds the error of a callfail frame's body, which
// checkAnswer has checked.
func decodeCallFail(b []byte) error {
	e := &callError{msg: string(b[callFailPrefixSize:])}
	kind := binary.BigEndian.Uint32(b[0:4])
	for _, k := range callErrKinds {
		if k.kind == kind {
			e.kind = k.err
		}
	}
	if kind == callErrThrottled {
		e.kind = &backends.ThrottleError{RetryAfter: max(0, time.Duration(binary.BigEndian.Uint64(b[4:12])))}
	}
	return e
}

// callError is the error of a reverse call as the worker sees it: the
// driver's error text, and what kind of error it was.
type callError struct {
	msg  string
	kind error // nil: unclassified
}

func (e *callError) Error() string { return "process: invoke through the driver: " + e.msg }
func (e *callError) Unwrap() error { return e.kind }
