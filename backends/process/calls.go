package process

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/gowren/gowren/backends"
)

// The driver's side of reverse calls: a worker's handler invokes the backend
// (backends.InvokerOf in the worker), the worker sends a call frame, and the
// driver runs the payload as an invocation of its own, in a goroutine of its
// own, then writes the answer back. The invocation's owner goroutine only
// reads the call and starts that goroutine, so it keeps reading the worker's
// frames (parts, more calls, the reply) while calls run, and an answer is
// written as soon as it is known, whatever the owner is doing.

// startCall serves the reverse call id, whose call frame's body is body, in
// a goroutine the backend waits for on Close. The call's context is ctx, the
// invocation's, with the deadline the worker sent; it ends when the
// invocation ends (which Close makes happen, as it stops the worker) and
// when the worker cancels the call. A call read after Close is not served:
// the worker fails it when it sees its request stream end.
func (x *exchange) startCall(ctx context.Context, id uint64, body []byte) {
	b := x.w.b
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.calls.Add(1)
	b.mu.Unlock()

	cctx, cancel := context.WithCancel(ctx)
	if d := int64(binary.BigEndian.Uint64(body[:callPrefixSize])); d != 0 {
		var cancelDeadline context.CancelFunc
		cctx, cancelDeadline = context.WithDeadline(cctx, time.Unix(0, d))
		cancelCtx := cancel
		cancel = func() { cancelDeadline(); cancelCtx() }
	}
	x.mu.Lock()
	x.calls[id] = cancel
	x.mu.Unlock()
	payload := body[callPrefixSize:]
	go func() {
		defer b.calls.Done()
		defer cancel()
		reply, err := b.serveCall(cctx, ctx, payload)
		x.mu.Lock()
		delete(x.calls, id)
		x.mu.Unlock()
		x.answer(id, reply, err)
	}()
}

// serveCall runs a reverse call's payload. It goes through the backend the
// invocation's context names (backends.InvokerOf: a wrapper such as chaos
// sets itself there, so that its rules apply to the calls workers make as to
// the driver's own), else through b.
func (b *Backend) serveCall(ctx, invocation context.Context, payload []byte) ([]byte, error) {
	via := backends.InvokerOf(invocation)
	if via == nil {
		via = b
	}
	reply, err := via.Invoke(ctx, payload)
	if err == nil && len(reply) > b.maxResponse {
		err = fmt.Errorf("process: reverse call: reply of %d bytes exceeds MaxResponseBytes (%d): %w",
			len(reply), b.maxResponse, backends.ErrPayloadTooLarge)
	}
	return reply, err
}

// cancelCall cancels the reverse call id, if it is still in flight.
func (x *exchange) cancelCall(id uint64) {
	x.mu.Lock()
	cancel := x.calls[id]
	delete(x.calls, id)
	x.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// answer writes the answer to the reverse call id: a result frame with
// reply, or a callfail frame with err. Once the invocation has ended it
// writes nothing: the worker no longer waits for it. An answer the pipe
// refuses whole is dropped: the worker is dying, or the invocation's ctx
// ended (its write deadline is past), in which case the worker's handler is
// being cancelled and no longer waits either. One cut short leaves the
// request stream unframed, so the worker is killed.
func (x *exchange) answer(id uint64, reply []byte, err error) {
	w := x.w
	t, body := frameResult, reply
	if err != nil {
		t, body = frameCallFail, encodeCallFail(err)
	}
	var hdr [headerSize]byte
	putHeader(hdr[:], header{typ: t, size: uint32(len(body)), id: id})
	frame := [][]byte{hdr[:], body}
	if len(body) <= smallPayload {
		frame = [][]byte{append(hdr[:], body...)}
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if x.ended || w.broken {
		return
	}
	var n int
	for _, p := range frame {
		m, err := w.req.Write(p)
		n += m
		if err != nil {
			if n > 0 {
				w.broken = true
				w.kill(fmt.Sprintf("the answer to its reverse call %d was cut short (%v)", id, err))
			}
			return
		}
	}
}

// end marks the invocation over: answers to its reverse calls are no longer
// sent, and the calls still in flight are cancelled. It reports whether the
// worker's request stream broke meanwhile, so that it is not reused.
func (x *exchange) end() (broken bool) {
	w := x.w
	w.wmu.Lock()
	x.ended = true
	broken = w.broken
	w.wmu.Unlock()
	x.mu.Lock()
	calls := x.calls
	x.calls = nil
	x.mu.Unlock()
	for _, cancel := range calls {
		cancel()
	}
	return broken
}
