package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/gowren/gowren/fanout"
)

// chatty writes n records through Logger(ctx), each with a message of size
// bytes, and fails when fail is set.
type chattyIn struct {
	N, Size int
	Fail    bool
}

var chatty = fanout.Register("fanout_test.chatty", func(ctx context.Context, in chattyIn) (int, error) {
	log := fanout.Logger(ctx)
	for i := range in.N {
		log.Info(strings.Repeat("x", in.Size), "i", i)
	}
	if in.Fail {
		log.Error("giving up", "reason", "asked to")
		return 0, errors.New("chatty failed")
	}
	return in.N, nil
})

func TestTaskLogs(t *testing.T) {
	var driverLog lineLog // process_test.go
	ex := newLocal(t, nil, &fanout.Options{Logger: slog.New(slog.NewTextHandler(&driverLog, nil)), Retries: -1})
	in := []chattyIn{
		{N: 3, Size: 5},             // a few records, kept whole
		{N: 1000, Size: 1},          // over the record limit
		{N: 200, Size: 1 << 10},     // over the byte limit
		{N: 2, Size: 3, Fail: true}, // a failure: its logs reach the driver's logger
	}
	j, err := fanout.Start(context.Background(), ex, chatty, in)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]fanout.Result[int]{}
	for r := range j.Results(context.Background()) {
		got[r.Index] = r
	}
	<-j.Done()

	r := got[0]
	if r.Err != nil || len(r.Logs) != 3 {
		t.Fatalf("task 0: %v, %d records, want 3", r.Err, len(r.Logs))
	}
	for i, l := range r.Logs {
		if l.Message != "xxxxx" || l.Level != slog.LevelInfo || !strings.Contains(l.Attrs, "i=") || l.Time.IsZero() {
			t.Errorf("task 0 record %d = %+v", i, l)
		}
	}
	for _, i := range []int{1, 2} {
		logs := got[i].Logs
		if len(logs) < 2 {
			t.Fatalf("task %d: %d records", i, len(logs))
		}
		last := logs[len(logs)-1]
		kept := len(logs) - 1
		if !strings.Contains(last.Message, "further log records of this task were dropped") || kept >= in[i].N {
			t.Errorf("task %d: %d records kept of %d, last %q: want a truncation marked at the end", i, kept, in[i].N, last.Message)
		}
		if want := in[i].N - kept; !strings.Contains(last.Message, " "+strconv.Itoa(want)+" further") {
			t.Errorf("task %d: marker %q, want it to count the %d dropped", i, last.Message, want)
		}
	}
	if n := len(got[1].Logs) - 1; n != 256 {
		t.Errorf("task 1 kept %d records, want the 256 of the limit", n)
	}
	var size int
	for _, l := range got[2].Logs[:len(got[2].Logs)-1] {
		size += len(l.Message) + len(l.Attrs)
	}
	if size > 64<<10 {
		t.Errorf("task 2 kept %d bytes of logs, over the 64 KiB limit", size)
	}

	var te *fanout.TaskError
	if !errors.As(got[3].Err, &te) || len(te.Logs) != 3 || te.Logs[2].Message != "giving up" || te.Logs[2].Level != slog.LevelError {
		t.Fatalf("task 3: err %v, logs %+v; want a TaskError with its three records", got[3].Err, te)
	}
	if out := driverLog.String(); !strings.Contains(out, "gowren: task failed") || !strings.Contains(out, "giving up") || !strings.Contains(out, "giving up reason=") {
		t.Errorf("the driver's logger did not print the failed task's logs:\n%s", out)
	}
}

// A program using Map reaches the logs of every task, successful ones
// included, through the job's statistics (Options.OnJobEnd).
func TestLogsInStats(t *testing.T) {
	var got fanout.JobStats
	ex := newLocal(t, nil, &fanout.Options{OnJobEnd: func(s fanout.JobStats) { got = s }})
	if _, err := fanout.Map(context.Background(), ex, logsTwice, []int{5, 6}); err != nil {
		t.Fatal(err)
	}
	for i, ts := range got.PerTask {
		if ts.Outcome != "ok" || len(ts.Logs) != 2 || ts.Logs[1].Message != fmt.Sprintf("done %d", 5+i) {
			t.Errorf("task %d: outcome %s, logs %v", i, ts.Outcome, ts.Logs)
		}
	}
}

var logsTwice = fanout.Register("fanout_test.logsTwice", func(ctx context.Context, x int) (int, error) {
	fanout.Logger(ctx).Info("start", "x", x)
	fanout.Logger(ctx).Info(fmt.Sprintf("done %d", x))
	return x, nil
})
