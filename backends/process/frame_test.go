package process

import (
	"bytes"
	"strings"
	"testing"
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
		{"hello", header{typ: frameHello, size: helloSize, id: 7}, false, false},
		{"invoke", header{typ: frameInvoke, size: 20, id: 7}, false, false},
		{"unknown", header{typ: 99, id: 7}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkReply(tt.h, 7, 100, tt.stream); (err == nil) != tt.ok {
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
		if err := checkReply(h, 1, 1000, stream); err != nil {
			return
		}
		limit := uint32(1000)
		if h.typ == frameFailed {
			limit = maxFailedSize
		}
		if h.size > limit || h.id != 1 || (h.typ == framePart && !stream) {
			t.Fatalf("accepted %+v (stream %v)", h, stream)
		}
	})
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
