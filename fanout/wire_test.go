package fanout

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func sampleRequest() *wireRequest {
	return &wireRequest{
		Job: "20261126T010203-0a0b0c0d", Func: "square", Digest: "abc", Store: "mem://x", Prefix: "jobs/j/",
		ReplyLimit: 1 << 20, TaskTimeout: time.Second, Parallel: 2, Flags: flagOutputsToStore, ReplyKey: "jobs/j/out/0.0",
		Tasks: []wireTask{
			{Index: 0, Attempt: 0, Kind: inputValue, Input: []byte{0x01}},
			{Index: 7, Attempt: 2, Try: 1, Kind: inputGather, Key: "jobs/j/in/0", Off: 10, Len: 20},
		},
	}
}

func TestRequestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	want := sampleRequest()
	if err := encodeRequest(&buf, want); err != nil {
		t.Fatal(err)
	}
	got, err := decodeRequest(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got.Tasks[1].Input != nil {
		got.Tasks[1].Input = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

func TestReplyRoundTrip(t *testing.T) {
	want := &wireReply{
		Worker: "h:1", Cold: true,
		Results: []wireResult{
			{Index: 3, Attempt: 1, Output: []byte{0x05}, Start: 10, End: 20,
				Logs: []LogRecord{{Time: time.Unix(0, 42), Level: 4, Message: "m", Attrs: "k=v"}}},
			{Index: 4, Key: "jobs/j/out/4.0", Len: 99, Err: &wireError{Code: codePanic, Type: "string", Message: "x", Stack: "s", Retryable: true}},
		},
	}
	var buf bytes.Buffer
	if err := encodeReply(&buf, want); err != nil {
		t.Fatal(err)
	}
	got, err := decodeReply(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

// A later protocol version may append fields; this one must skip them.
func TestRequestExtraFieldsSkipped(t *testing.T) {
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	w := wireWriter{e: e}
	w.arrayLen(13)
	w.int(wireVersion)
	for _, s := range []string{"j", "f", "d", "", "p/"} {
		w.str(s)
	}
	w.int(0)
	w.int(0)
	w.int(1)
	w.uint(0)
	w.arrayLen(1)
	w.arrayLen(9)
	w.int(5)
	w.int(0)
	w.int(inputValue)
	w.bytes([]byte{0x07})
	w.str("")
	w.int(0)
	w.int(0)
	w.int(3)
	w.str("a future task field")
	w.str("jobs/j/out/5.0")
	w.str("a future envelope field")
	r, err := decodeRequest(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if r.Func != "f" || len(r.Tasks) != 1 || r.Tasks[0].Index != 5 || !bytes.Equal(r.Tasks[0].Input, []byte{0x07}) || r.Tasks[0].Try != 3 || r.ReplyKey != "jobs/j/out/5.0" {
		t.Fatalf("decoded %+v", r)
	}
}

// wrongVersion returns the envelope b with its version made 9. The
// envelope's array header takes one byte up to 15 fields, three from 16.
func wrongVersion(b []byte) []byte {
	hdr := 1
	if b[0] == 0xdc {
		hdr = 3
	}
	out := slices.Clone(b)
	out[hdr] = 0x09
	return out
}

func TestDecodeRequestRejects(t *testing.T) {
	valid := func() []byte {
		var buf bytes.Buffer
		_ = encodeRequest(&buf, sampleRequest())
		return buf.Bytes()
	}()
	for _, tc := range []struct {
		name    string
		payload []byte
		want    string
	}{
		{"empty", nil, "truncated"},
		{"text", []byte("hello"), ""},
		{"truncated", valid[:len(valid)-3], "truncated"},
		{"trailing", append(slices.Clone(valid), 0x00), "trailing"},
		{"wrong version", wrongVersion(valid), "wire version 9"},
		{"short envelope", []byte{0x92, 0x01, 0xa0}, "fields"},
		{"huge array claim", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, "truncated"},
		{"huge bin claim", []byte{0xc6, 0xff, 0xff, 0xff, 0xff}, "truncated"},
		{"deep nesting", append(slices.Repeat([]byte{0x91}, 10000), 0x01), "nesting"},
		{"reserved code", []byte{0xc1}, "reserved"},
		{"not an array", []byte{0x01}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeRequest(tc.payload)
			if err == nil {
				t.Fatal("decodeRequest accepted a bad payload")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestHandleMalformed(t *testing.T) {
	reply := Handle(context.Background(), []byte("garbage"))
	if err := ReplyError(reply); !errors.Is(err, ErrMalformed) {
		t.Fatalf("ReplyError = %v, want ErrMalformed", err)
	}
}

// checkMsgpack must accept what the msgpack library produces.
func TestCheckMsgpackAcceptsLibraryOutput(t *testing.T) {
	type inner struct {
		A []int
		M map[string]float64
	}
	for _, v := range []any{
		0, -1, 1 << 40, uint64(1 << 63), 3.5, float32(1.5), "", strings.Repeat("x", 70000), []byte{1, 2},
		make([]byte, 70000), nil, true, time.Now(), []any{1, "a", nil}, map[string]any{"k": []int{1}},
		inner{A: []int{1, 2}, M: map[string]float64{"x": 1}}, slices.Repeat([]int{1}, 70000),
	} {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkMsgpack(b); err != nil {
			t.Errorf("checkMsgpack(%T) = %v", v, err)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	var buf bytes.Buffer
	_ = encodeRequest(&buf, sampleRequest())
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Add([]byte{0x9b, 0x01})
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRequest(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode again and decode to the same.
		var out bytes.Buffer
		if err := encodeRequest(&out, r); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		r2, err := decodeRequest(out.Bytes())
		if err != nil {
			t.Fatalf("decode of re-encoded request: %v", err)
		}
		if len(r2.Tasks) != len(r.Tasks) || r2.Func != r.Func {
			t.Fatalf("re-decoded request differs")
		}
	})
}

func FuzzDecodeReply(f *testing.F) {
	var buf bytes.Buffer
	_ = encodeReply(&buf, &wireReply{Worker: "w", Results: []wireResult{{Index: 1, Output: []byte{1}}}})
	f.Add(buf.Bytes())
	f.Add([]byte{0x96, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeReply(b)
	})
}

// FuzzHandle feeds arbitrary payloads to the worker entry point: it must
// always answer with a reply the driver can decode.
func FuzzHandle(f *testing.F) {
	var buf bytes.Buffer
	_ = encodeRequest(&buf, sampleRequest())
	f.Add(buf.Bytes())
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		reply := Handle(context.Background(), b)
		if _, err := decodeReply(reply); err != nil {
			t.Fatalf("Handle gave an undecodable reply: %v", err)
		}
	})
}

// FuzzCheckedDecode checks that any value checkMsgpack accepts decodes into
// typical input types without panicking or allocating beyond its size.
func FuzzCheckedDecode(f *testing.F) {
	for _, v := range []any{[]int{1, 2}, map[string]string{"a": "b"}, "s", []byte{1}} {
		b, _ := msgpack.Marshal(v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var a []int
		_ = decodeValue(b, &a)
		var m map[string][]string
		_ = decodeValue(b, &m)
		var x any
		_ = decodeValue(b, &x)
		var s struct {
			A []struct{ B [][]byte }
			C map[int]any
		}
		_ = decodeValue(b, &s)
	})
}
