package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gowren/gowren/backends"
)

func TestHeaderRoundTrip(t *testing.T) {
	h := header{typ: frameInvoke, size: 1<<30 + invokePrefixSize, id: 1<<64 - 1}
	var b [headerSize]byte
	putHeader(b[:], h)
	got, err := parseHeader(b[:])
	if err != nil || got != h {
		t.Fatalf("parseHeader(putHeader(%+v)) = %+v, %v", h, got, err)
	}
}

func TestCheckReply(t *testing.T) {
	tests := []struct {
		name   string
		h      header
		stream bool
		ok     bool
	}{
		{"reply", header{typ: frameReply, size: 100, id: 7}, false, true},
		{"empty reply", header{typ: frameReply, size: 0, id: 7}, false, true},
		{"reply too long", header{typ: frameReply, size: 101, id: 7}, false, false},
		{"retiring reply", header{typ: frameReply, flags: flagRetire, size: 1, id: 7}, false, true},
		{"other request", header{typ: frameReply, size: 1, id: 6}, false, false},
		{"toolarge", header{typ: frameTooLarge, size: tooLargeSize, id: 7}, false, true},
		{"retiring toolarge", header{typ: frameTooLarge, flags: flagRetire, size: tooLargeSize, id: 7}, false, true},
		{"toolarge bad size", header{typ: frameTooLarge, size: 4, id: 7}, false, false},
		{"failed", header{typ: frameFailed, size: maxFailedSize, id: 7}, false, true},
		{"retiring failed", header{typ: frameFailed, flags: flagRetire, size: 10, id: 7}, false, true},
		{"failed too long", header{typ: frameFailed, size: maxFailedSize + 1, id: 7}, false, false},
		{"part", header{typ: framePart, size: 100, id: 7}, true, true},
		{"empty part", header{typ: framePart, size: 0, id: 7}, true, true},
		{"part too long", header{typ: framePart, size: 101, id: 7}, true, false},
		{"part not asked for", header{typ: framePart, size: 1, id: 7}, false, false},
		{"part with flags", header{typ: framePart, flags: flagRetire, size: 1, id: 7}, true, false},
		{"part of other request", header{typ: framePart, size: 1, id: 6}, true, false},
		{"call", header{typ: frameCall, size: callPrefixSize + 50, id: 3}, false, true},
		{"empty call", header{typ: frameCall, size: callPrefixSize, id: 3}, false, true},
		{"call too long", header{typ: frameCall, size: callPrefixSize + 51, id: 3}, false, false},
		{"call short of its prefix", header{typ: frameCall, size: callPrefixSize - 1, id: 3}, false, false},
		{"call with flags", header{typ: frameCall, flags: flagRetire, size: callPrefixSize, id: 3}, false, false},
		{"callcancel", header{typ: frameCallCancel, id: 3}, false, true},
		{"callcancel with a body", header{typ: frameCallCancel, size: 1, id: 3}, false, false},
		{"result", header{typ: frameResult, size: 1, id: 7}, false, false},
		{"callfail", header{typ: frameCallFail, size: callFailPrefixSize, id: 7}, false, false},
		{"hello", header{typ: frameHello, size: helloSize, id: 7}, false, false},
		{"invoke", header{typ: frameInvoke, size: 20, id: 7}, false, false},
		{"unknown", header{typ: 99, id: 7}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkReply(tt.h, 7, 100, 50, tt.stream); (err == nil) != tt.ok {
				t.Errorf("checkReply(%+v, stream %v) = %v, want ok=%v", tt.h, tt.stream, err, tt.ok)
			}
		})
	}
}

// FuzzReplyHeader checks that no header the driver reads makes it accept a
// body over its limit, or a part it did not ask for.
func FuzzReplyHeader(f *testing.F) {
	var b [headerSize]byte
	putHeader(b[:], header{typ: frameReply, size: 10, id: 1})
	f.Add(b[:])
	f.Add([]byte("gw\x05\x00\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x01"))
	putHeader(b[:], header{typ: framePart, size: 10, id: 1})
	f.Add(b[:])
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < headerSize {
			return
		}
		h, err := parseHeader(data)
		if err != nil {
			return
		}
		stream := len(data)%2 == 0
		if err := checkReply(h, 1, 1000, 500, stream); err != nil {
			return
		}
		limit, id := uint32(1000), uint64(1)
		switch h.typ {
		case frameFailed:
			limit = maxFailedSize
		case frameCall:
			limit, id = callPrefixSize+500, h.id
		case frameCallCancel:
			limit, id = 0, h.id
		}
		if h.size > limit || h.id != id || (h.typ == framePart && !stream) {
			t.Fatalf("accepted %+v (stream %v)", h, stream)
		}
	})
}

func TestCheckAnswer(t *testing.T) {
	tests := []struct {
		name string
		h    header
		ok   bool
	}{
		{"result", header{typ: frameResult, size: 100, id: 7}, true},
		{"empty result", header{typ: frameResult, id: 7}, true},
		{"result too long", header{typ: frameResult, size: 101, id: 7}, false},
		{"callfail", header{typ: frameCallFail, size: callFailPrefixSize + maxFailedSize, id: 7}, true},
		{"callfail too long", header{typ: frameCallFail, size: callFailPrefixSize + maxFailedSize + 1, id: 7}, false},
		{"callfail short of its prefix", header{typ: frameCallFail, size: callFailPrefixSize - 1, id: 7}, false},
		{"reply", header{typ: frameReply, size: 1, id: 7}, false},
		{"call", header{typ: frameCall, size: callPrefixSize, id: 7}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkAnswer(tt.h, 100); (err == nil) != tt.ok {
				t.Errorf("checkAnswer(%+v) = %v, want ok=%v", tt.h, err, tt.ok)
			}
		})
	}
}

func TestCallFailRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		is    error // nil: none of the kinds
		after time.Duration
	}{
		{"canceled", fmt.Errorf("process: invoke: %w", context.Canceled), context.Canceled, 0},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), context.DeadlineExceeded, 0},
		{"throttled", fmt.Errorf("x: %w", &backends.ThrottleError{RetryAfter: 3 * time.Second}), backends.ErrThrottled, 3 * time.Second},
		{"lost", fmt.Errorf("x: %w", backends.ErrWorkerLost), backends.ErrWorkerLost, 0},
		{"transport", fmt.Errorf("x: %w", backends.ErrTransport), backends.ErrTransport, 0},
		{"too large", fmt.Errorf("x: %w", backends.ErrPayloadTooLarge), backends.ErrPayloadTooLarge, 0},
		{"closed", fmt.Errorf("x: %w", backends.ErrClosed), backends.ErrClosed, 0},
		{"other", errors.New("something else"), nil, 0},
		{"long text", errors.New(strings.Repeat("e", maxFailedSize+10)), nil, 0},
	}
	kinds := []error{context.Canceled, context.DeadlineExceeded, backends.ErrThrottled, backends.ErrWorkerLost,
		backends.ErrTransport, backends.ErrPayloadTooLarge, backends.ErrClosed}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := encodeCallFail(tt.err)
			if err := checkAnswer(header{typ: frameCallFail, size: uint32(len(body))}, 0); err != nil {
				t.Fatalf("the encoded body of %d bytes is refused: %v", len(body), err)
			}
			got := decodeCallFail(body)
			for _, k := range kinds {
				if want := k == tt.is; errors.Is(got, k) != want {
					t.Errorf("errors.Is(%.80v, %v) = %v, want %v", got, k, !want, want)
				}
			}
			if ra := backends.RetryAfter(got); ra != tt.after {
				t.Errorf("RetryAfter = %v, want %v", ra, tt.after)
			}
			if msg := tt.err.Error(); len(msg) <= maxFailedSize && !strings.HasSuffix(got.Error(), msg) {
				t.Errorf("error text %q, want it to end with the driver's %q", got, msg)
			}
		})
	}
}

// FuzzCallFail checks that a worker rebuilds an error from any callfail body
// checkAnswer accepts.
func FuzzCallFail(f *testing.F) {
	f.Add(encodeCallFail(&backends.ThrottleError{RetryAfter: time.Second}))
	f.Add([]byte("\x00\x00\x00\x63\xff\xff\xff\xff\xff\xff\xff\xffboom"))
	f.Fuzz(func(t *testing.T, body []byte) {
		if checkAnswer(header{typ: frameCallFail, size: uint32(len(body))}, 0) != nil {
			return
		}
		err := decodeCallFail(body)
		if err == nil || backends.RetryAfter(err) < 0 {
			t.Fatalf("decodeCallFail(%q) = %v", body, err)
		}
	})
}

// TestCallAfterClose checks that a reverse call read after Close starts
// nothing: the worker fails it when its request stream ends.
func TestCallAfterClose(t *testing.T) {
	b := New(nil)
	b.Close()
	w := &worker{b: b, calls: make(map[uint64]context.CancelFunc)}
	w.startCall(context.Background(), 1, make([]byte, callPrefixSize))
	if len(w.calls) != 0 {
		t.Errorf("a call read after Close was started")
	}
}

func TestLineWriter(t *testing.T) {
	var out bytes.Buffer
	var tl tail
	w := &lineWriter{out: &output{w: &out}, worker: "[w", tail: &tl}
	for _, s := range []string{"a", "b\nc", "\n\n", strings.Repeat("z", maxLine+3), "\nend"} {
		w.Write([]byte(s))
	}
	w.flush()
	want := "[w] ab\n[w] c\n[w] \n[w] " + strings.Repeat("z", maxLine) + "\n[w] zzz\n[w] end\n"
	if out.String() != want {
		t.Errorf("output:\n%.200q\nwant:\n%.200q", out.String(), want)
	}
}

// Lines the worker's capture tagged name their tasks; anything else that
// starts with a NUL is shown as it came.
func TestLineWriterTags(t *testing.T) {
	var out bytes.Buffer
	var tl tail
	w := &lineWriter{out: &output{w: &out}, worker: "[worker 2", tail: &tl}
	for _, s := range []string{"\x00task 17\x00hel", "lo\n\x00tasks 3,4\x00both\n", "\x00bogus\x00x\n",
		"\x00task \x00empty\n", "\x00task 1", "\n\x00task 5\x00\n", "plain\n"} {
		w.Write([]byte(s))
	}
	want := "[worker 2 task 17] hello\n[worker 2 tasks 3,4] both\n[worker 2] \x00bogus\x00x\n" +
		"[worker 2] \x00task \x00empty\n[worker 2] \x00task 1\n[worker 2 task 5] \n[worker 2] plain\n"
	if out.String() != want {
		t.Errorf("output:\n%q\nwant:\n%q", out.String(), want)
	}
	if got := tl.String(); !strings.Contains(got, "\thello\n") || strings.Contains(got, "task 17") {
		t.Errorf("tail keeps the lines without their tags:\n%s", got)
	}
}

func TestTail(t *testing.T) {
	var tl tail
	if tl.String() != "" {
		t.Errorf("empty tail: %q", tl.String())
	}
	tl.add([]byte("before"))
	tl.add([]byte("panic: boom"))
	for i := range tailLines {
		tl.add([]byte(strings.Repeat("f", i+1)))
	}
	tl.add([]byte("  "))
	got := tl.String()
	if !strings.Contains(got, "\tpanic: boom\n\t...\n\tf\n") || strings.Contains(got, "before") || !strings.HasSuffix(got, "\t"+strings.Repeat("f", tailLines)) {
		t.Errorf("tail:\n%s", got)
	}
	tl.add([]byte(strings.Repeat("é", maxTailLine)))
	if s := tl.String(); !strings.HasSuffix(s, "…") || len(s) > 20*maxTailLine {
		t.Errorf("long line not cut: %d bytes", len(s))
	}
}
