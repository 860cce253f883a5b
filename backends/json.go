package backends

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Platforms such as AWS Lambda and Tencent SCF accept only JSON invocation
// payloads. Their backends wrap the binary envelope in a small JSON object,
// {"gowren":"<base64>"}, on the way in and out; the worker runtime unwraps it
// before calling the Handler and wraps the reply.

const (
	jsonPrefix = `{"gowren":"`
	jsonSuffix = `"}`
)

// EncodeJSON wraps a binary payload for a JSON-only platform.
func EncodeJSON(payload []byte) []byte {
	out := make([]byte, 0, JSONSize(len(payload)))
	out = append(out, jsonPrefix...)
	out = base64.StdEncoding.AppendEncode(out, payload)
	return append(out, jsonSuffix...)
}

// DecodeJSON unwraps a payload made by EncodeJSON. It accepts any JSON
// object with a "gowren" string member (whitespace and member order may
// differ, as when a platform re-serializes it) and refuses anything else with
// an error that says what it got.
func DecodeJSON(data []byte) ([]byte, error) {
	if bytes.HasPrefix(data, []byte(jsonPrefix)) && bytes.HasSuffix(data, []byte(jsonSuffix)) &&
		len(data) >= len(jsonPrefix)+len(jsonSuffix) {
		mid := data[len(jsonPrefix) : len(data)-len(jsonSuffix)]
		if out, err := base64.StdEncoding.AppendDecode(nil, mid); err == nil {
			return out, nil
		}
	}
	var v struct {
		Gowren *string `json:"gowren"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("backends: JSON payload of %d bytes: %w", len(data), err)
	}
	if v.Gowren == nil {
		return nil, errors.New(`backends: JSON payload has no "gowren" member: not a gowren invocation`)
	}
	out, err := base64.StdEncoding.DecodeString(*v.Gowren)
	if err != nil {
		return nil, fmt.Errorf("backends: JSON payload: %w", err)
	}
	return out, nil
}

// JSONSize is the size of EncodeJSON's output for an n-byte payload.
func JSONSize(n int) int {
	return len(jsonPrefix) + base64.StdEncoding.EncodedLen(n) + len(jsonSuffix)
}

// MaxRawForJSON is the largest payload whose EncodeJSON form fits in limit
// bytes: what a JSON-only backend reports in its Limits.
func MaxRawForJSON(limit int) int {
	room := limit - len(jsonPrefix) - len(jsonSuffix)
	if room <= 0 {
		return 0
	}
	return room / 4 * 3
}
