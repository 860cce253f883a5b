package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
)

var nilMap = fanout.Register("test.nilmap", func(_ context.Context, i int) (int, error) {
	if i%3 == 1 {
		var m map[int]int
		//lint:ignore SA5000 the panic is what the test needs
		m[i] = i // panics: assignment to entry in nil map
	}
	if i == 5 {
		return 0, fmt.Errorf("five is refused")
	}
	return i, nil
})

// A job with failed tasks says how many failed of how many, which ones, and
// the first one's error; a panic's message names the function and line of
// user code that panicked. The error still unwraps to every TaskError.
func TestJobErrorSummary(t *testing.T) {
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Logger: quietLogs})
	defer ex.Close()
	in := make([]int, 40)
	for i := range in {
		in[i] = i
	}
	out, err := fanout.Map(context.Background(), ex, nilMap, in)
	var want []int
	for i := range in {
		if i%3 == 1 || i == 5 {
			want = append(want, i)
		} else if out[i] != i {
			t.Errorf("out[%d] = %d", i, out[i])
		}
	}
	var je *fanout.JobError
	if !errors.As(err, &je) || je.Tasks != len(in) || len(je.Failed) != len(want) || je.Err != nil {
		t.Fatalf("err = %#v; want a *JobError of %d failed tasks of %d", err, len(want), len(in))
	}
	if got := fanout.FailedTasks(err); !slices.Equal(got, want) {
		t.Errorf("FailedTasks = %v, want %v", got, want)
	}
	msg := err.Error()
	head := fmt.Sprintf("%d of %d tasks failed: 1, 4, 5, 7, 10, 13, 16, 19, 22, 25 and %d more; first: task 1: panic: assignment to entry in nil map (in ",
		len(want), len(in), len(want)-10)
	if !strings.HasPrefix(msg, head) {
		t.Errorf("message\n%s\nwant it to start with\n%s", msg, head)
	}
	if !strings.Contains(msg, "fanout_test.init.func") || !strings.Contains(msg, "joberror_test.go:19)") {
		t.Errorf("message %q does not name the panicking function and line (joberror_test.go:19)", msg)
	}
	if strings.Count(msg, "\n") != 0 {
		t.Errorf("message has %d lines, want one", strings.Count(msg, "\n")+1)
	}
	if !errors.Is(err, fanout.ErrPanic) {
		t.Error("errors.Is(err, ErrPanic) is false")
	}
	var n int
	for _, e := range je.Unwrap() {
		var te *fanout.TaskError
		if errors.As(e, &te) {
			n++
		}
	}
	if n != len(want) {
		t.Errorf("Unwrap gives %d task errors, want %d", n, len(want))
	}

	// A job of one task says so.
	if _, err := fanout.Map(context.Background(), ex, nilMap, []int{1}); !strings.HasPrefix(fmt.Sprint(err), "the task failed: task 0: panic:") {
		t.Errorf("one task job: %v", err)
	}
	// No failure: no error, and FailedTasks of nil is nil.
	if _, err := fanout.Map(context.Background(), ex, nilMap, []int{0, 2}); err != nil || fanout.FailedTasks(err) != nil {
		t.Errorf("Map = %v", err)
	}
}
