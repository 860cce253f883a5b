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
// own, then writes the answer back. The worker's reader only reads the call
// and starts that goroutine, so it keeps reading the worker's frames (parts,
// more calls, replies) while calls run, and an answer is written as soon as
// it is known, whatever the worker's owner is doing. A call belongs to the
// worker, not to the invocation during which it came: a handler may start
// children and return, as an invoker does on this machine, and the worker
// may be idle or serving another invocation when a call comes or its answer
// leaves.

// startCall serves the reverse call id, whose call frame's body is body, in
// a goroutine the backend waits for on Close. The call's context has the
// values of values, the context of the worker's current or last invocation
// (so that a wrapper's marks and backends.InvokerOf reach it), and the
// deadline the worker sent; it ends when the worker cancels the call and
// when the worker is gone (which Close makes happen). A call read after
// Close is not served: the worker fails it when it sees its request stream
// end.
func (w *worker) startCall(values context.Context, id uint64, body []byte) {
	b := w.b
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.calls.Add(1)
	b.mu.Unlock()

	if values == nil {
		values = context.Background()
	}
	ctx, cancel := context.WithCancel(values)
	if d := int64(binary.BigEndian.Uint64(body[:callPrefixSize])); d != 0 {
		var cancelDeadline context.CancelFunc
		ctx, cancelDeadline = context.WithDeadline(ctx, time.Unix(0, d))
		cancelCtx := cancel
		cancel = func() { cancelDeadline(); cancelCtx() }
	}
	w.callMu.Lock()
	w.calls[id] = cancel // the reader is running: calls is not nil
	w.callMu.Unlock()
	payload := body[callPrefixSize:]
	go func() {
		defer b.calls.Done()
		defer cancel()
		reply, err := b.serveCall(ctx, values, payload)
		w.callMu.Lock()
		delete(w.calls, id)
		w.callMu.Unlock()
		w.answer(id, reply, err)
	}()
}

// serveCall runs a reverse call's payload. It goes through the backend that
// values names (backends.InvokerOf: a wrapper such as chaos sets itself on
// the context of the calls it passes on, so that its rules apply to the
// calls workers make as to the driver's own), else through b.
func (b *Backend) serveCall(ctx, values context.Context, payload []byte) ([]byte, error) {
	via := backends.InvokerOf(values)
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
func (w *worker) cancelCall(id uint64) {
	w.callMu.Lock()
	cancel := w.calls[id]
	delete(w.calls, id)
	w.callMu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// answer writes the answer to the reverse call id: a result frame with
// reply, or a callfail frame with err. A write fails only when the worker is
// gone; one cut short leaves the request stream unframed, so the worker is
// killed and not reused (see broken).
func (w *worker) answer(id uint64, reply []byte, err error) {
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
	if w.broken {
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
