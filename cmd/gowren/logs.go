package main

import (
	"context"
	"fmt"
	"io"

	"github.com/gowren/gowren/storage"
)

// showLogs prints the log records of a job's tasks (task < 0: all of them),
// from the statistics saved with the job.
func showLogs(ctx context.Context, st storage.Store, id string, task int, w io.Writer) error {
	if err := checkID(id); err != nil {
		return err
	}
	s, err := readStats(ctx, st, id)
	if err != nil {
		return fmt.Errorf("job %s: no saved statistics, so no logs (tasks' logs are kept with the job when it runs with Options.KeepData): %w", id, err)
	}
	if task >= len(s.PerTask) {
		return fmt.Errorf("job %s has %d tasks: there is no task %d", id, len(s.PerTask), task)
	}
	printed := 0
	for i, ts := range s.PerTask {
		if task >= 0 && i != task || task < 0 && len(ts.Logs) == 0 {
			continue
		}
		attempts := "attempts"
		if ts.Attempts == 1 {
			attempts = "attempt"
		}
		fmt.Fprintf(w, "task %d (%s, %d %s", ts.Index, ts.Outcome, ts.Attempts, attempts)
		if ts.Worker != "" {
			fmt.Fprintf(w, ", worker %s", ts.Worker)
		}
		fmt.Fprintf(w, "): %d records\n", len(ts.Logs))
		for _, r := range ts.Logs {
			fmt.Fprintf(w, "  %s %s %s", r.Time.Format("15:04:05.000"), r.Level, r.Message)
			if r.Attrs != "" {
				fmt.Fprintf(w, " %s", r.Attrs)
			}
			fmt.Fprintln(w)
		}
		printed++
	}
	if task < 0 && printed == 0 {
		fmt.Fprintf(w, "job %s: no task wrote a log record\n", id)
	}
	return nil
}
