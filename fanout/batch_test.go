package fanout

import "testing"

func TestBestBatch(t *testing.T) {
	for _, tc := range []struct {
		name           string
		r, s           int
		task, overhead float64 // ns
		want           int     // 0: any large batch
	}{
		{"1 s tasks, 50 ms invocations", 9000, 1000, 1e9, 5e7, 9},
		{"10 s tasks, 50 ms invocations", 9000, 1000, 1e10, 5e7, 1},
		{"local 100 ms tasks", 200, 2, 1e8, 3e4, 1},
		{"monte carlo", 62, 2, 2e7, 3e4, 1},
		{"no-op tasks", 100000, 2, 50, 1e4, 0},
		{"fewer tasks than slots", 5, 1000, 1e9, 5e7, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := bestBatch(tc.r, tc.s, tc.task, tc.overhead)
			if tc.want == 0 {
				if got < 500 {
					t.Fatalf("bestBatch = %d, want a large batch", got)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("bestBatch = %d, want %d", got, tc.want)
			}
		})
	}
}
