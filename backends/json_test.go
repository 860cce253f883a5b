package backends

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestJSONRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 1000, 1 << 20} {
		p := bytes.Repeat([]byte{0x00, 0xff, 0x7f, 0x80}, n/4+1)[:n]
		enc := EncodeJSON(p)
		if len(enc) != JSONSize(n) {
			t.Errorf("n=%d: JSONSize %d, encoded %d", n, JSONSize(n), len(enc))
		}
		if !json.Valid(enc) {
			t.Fatalf("n=%d: EncodeJSON output is not JSON", n)
		}
		got, err := DecodeJSON(enc)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("n=%d: DecodeJSON = %d bytes, %v", n, len(got), err)
		}
		if MaxRawForJSON(len(enc)) < n-2 || JSONSize(MaxRawForJSON(len(enc))) > len(enc) {
			t.Errorf("n=%d: MaxRawForJSON(%d) = %d", n, len(enc), MaxRawForJSON(len(enc)))
		}
	}
}

func TestDecodeJSONReserialized(t *testing.T) {
	got, err := DecodeJSON([]byte(` { "other": 1, "gowren" : "AAEC" } `))
	if err != nil || !bytes.Equal(got, []byte{0, 1, 2}) {
		t.Fatalf("DecodeJSON = %v, %v", got, err)
	}
}

func TestDecodeJSONRejects(t *testing.T) {
	for _, in := range []string{``, `[]`, `{"x":"AAEC"}`, `{"gowren":"!!!"}`, `{"gowren":3}`, "\x00\x01"} {
		if _, err := DecodeJSON([]byte(in)); err == nil || !strings.Contains(err.Error(), "JSON payload") {
			t.Errorf("DecodeJSON(%q) = %v, want an error naming the JSON payload", in, err)
		}
	}
}
