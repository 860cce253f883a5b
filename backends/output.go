package backends

import (
	"context"
	"time"
)

// OutputLine is one line that a task wrote to its worker process's standard
// output or standard error, as a runtime that captures them saw it.
type OutputLine struct {
	// Time is when the worker read the line (a moment after it was
	// written).
	Time time.Time
	// Stream is "stdout" or "stderr"; "gowren" for a note of the runtime
	// itself, such as lines dropped over a limit.
	Stream string
	// Text is the line without its newline, cut when very long.
	Text string
	// Tasks lists, in increasing order, the indexes of all the tasks that
	// were running in the worker when the line was written, when that was
	// more than one: each of them gets the line. It is nil when the task
	// ran alone, so the line is surely its own.
	Tasks []int
}

// OutputCapture is offered by a worker runtime that captures what its
// process writes to standard output and standard error (process does), so
// that each line reaches the task that wrote it.
type OutputCapture interface {
	// TaskStarted notes that the task of a job with the given index starts
	// running in this process; the lines written until its End go to it. A
	// line written while several tasks run goes to each of them. It must
	// be safe for concurrent use.
	TaskStarted(index int) TaskOutput
}

// TaskOutput is the captured output of one running task.
type TaskOutput interface {
	// Take returns the lines the task wrote since the last Take, having
	// read all the process wrote until now (an unfinished line stays for
	// later). Calling it before each of the task's log records keeps
	// records and lines in the order they were written.
	Take() []OutputLine
	// End tells the capture that the task ended and returns the lines not
	// taken yet, an unfinished one included. Neither Take nor End may be
	// called after End.
	End() []OutputLine
}

type outputCaptureKey struct{}

// WithOutputCapture returns ctx carrying c. A runtime that captures its
// process's output sets it on the context of each invocation it runs.
func WithOutputCapture(ctx context.Context, c OutputCapture) context.Context {
	return context.WithValue(ctx, outputCaptureKey{}, c)
}

// TaskStarted tells the output capture of the invocation of ctx, if it has
// one, that the task with the given index starts, and returns the task's
// output, whose End the caller must call when the task ends. Without a
// capture it costs nothing: the TaskOutput returned has no lines.
// fanout.Handle calls it around each task.
func TaskStarted(ctx context.Context, index int) TaskOutput {
	c, ok := ctx.Value(outputCaptureKey{}).(OutputCapture)
	if !ok {
		return noOutput{}
	}
	return c.TaskStarted(index)
}

// noOutput is the TaskOutput of a task whose output is not captured.
type noOutput struct{}

func (noOutput) Take() []OutputLine { return nil }
func (noOutput) End() []OutputLine  { return nil }
