package backends

import (
	"testing"
	"time"
)

func TestReplyReserve(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ left, want time.Duration }{
		{-time.Second, 0},
		{0, 0},
		{300 * time.Millisecond, 30 * time.Millisecond},
		{time.Second, 100 * time.Millisecond},
		{5 * time.Second, 500 * time.Millisecond},
		{15 * time.Minute, 500 * time.Millisecond},
	} {
		if got := ReplyReserve(tc.left); got != tc.want {
			t.Errorf("ReplyReserve(%v) = %v, want %v", tc.left, got, tc.want)
		}
	}
}
