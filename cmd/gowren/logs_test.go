package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage/filestore"
)

// TestMain lets this test binary serve as a process:// worker.
func TestMain(m *testing.M) {
	fanout.Init()
	os.Exit(m.Run())
}

var cliPrinter = fanout.Register("cli.printer", func(ctx context.Context, x int) (int, error) {
	fmt.Printf("printed %d\n", x)
	fanout.Logger(ctx).Info("logged", "x", x)
	fmt.Fprintf(os.Stderr, "complained %d\n", x)
	return x, nil
})

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// gowren logs prints what the tasks of a job kept on process:// printed to
// stdout and stderr, among their log records and in the order written.
func TestLogsPrinted(t *testing.T) {
	ctx := context.Background()
	st, err := filestore.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stderr := &lockedBuffer{}
	b := process.New(&process.Options{Workers: 1, Stderr: stderr,
		Env: []string{"GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0"}})
	ex := fanout.NewExecutor(b, &fanout.Options{Store: st, KeepData: true, Logger: slog.New(slog.DiscardHandler)})
	job, err := fanout.Start(ctx, ex, cliPrinter, []int{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	ex.Close()
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"-store", st.URL(), "logs", job.ID(), "1"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	i := strings.Index(text, "INFO printed 1 stream=stdout\n")
	j := strings.Index(text, "INFO logged x=1\n")
	k := strings.Index(text, "INFO complained 1 stream=stderr\n")
	if !strings.HasPrefix(text, "task 1 (ok, 1 attempts") || i < 0 || j < i || k < j {
		t.Errorf("logs of task 1 lack its printed lines and record, in order:\n%s", text)
	}
	if strings.Contains(text, "printed 0") || strings.Contains(text, "printed 2") {
		t.Errorf("logs of task 1 hold other tasks' lines:\n%s", text)
	}
	for x := range 3 {
		for _, want := range []string{fmt.Sprintf("task %d] printed %d\n", x, x), fmt.Sprintf("task %d] complained %d\n", x, x)} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("driver's stderr lacks %q:\n%s", want, stderr.String())
			}
		}
	}
}
