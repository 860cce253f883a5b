package fanout_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
)

// tempStoreDriver is a driver that opens an executor on process:// with
// its default store, runs a job, prints the store's directory and waits to
// be killed.
func tempStoreDriver() int {
	ex := fanout.NewExecutor(process.New(&process.Options{Workers: 1, Env: []string{"GORACE=atexit_sleep_ms=0"}}),
		&fanout.Options{Logger: quietLogs})
	if _, err := fanout.Map(context.Background(), ex, double, []int{1, 2}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("STORE", strings.TrimPrefix(ex.Store().URL(), "file://"))
	select {} // until killed
}

// The temporary store of a driver killed with SIGKILL does not outlive it:
// its reaper removes the directory.
func TestTempStoreRemovedWhenDriverKilled(t *testing.T) {
	tmp := t.TempDir()
	// Watch tmp before the driver makes its store there: the removal is an
	// event, not something to poll for.
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(in)
	if _, err := unix.InotifyAddWatch(in, tmp, unix.IN_DELETE); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FANOUT_TEST_TEMP_DRIVER=1", "TMPDIR="+tmp)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the driver printed no store: %v", err)
	}
	dir, ok := strings.CutPrefix(strings.TrimSpace(line), "STORE ")
	if !ok || filepath.Dir(dir) != tmp || !strings.HasPrefix(filepath.Base(dir), fmt.Sprintf("gowren-%d-", cmd.Process.Pid)) {
		t.Fatalf("store %q, want a directory gowren-<pid>-* in %s", line, tmp)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	// Wait for the directory's removal (a guard against a hang, not a
	// timing: the removal takes milliseconds).
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := unix.Read(in, buf)
			if err != nil {
				done <- err
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				if name == filepath.Base(dir) {
					done <- nil
					return
				}
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s still there two minutes after its driver was killed", dir)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat %s after its removal: %v", dir, err)
	}
}

// SweepTempStores removes the stores of drivers that are gone (no lock on
// their directory), and nothing else.
func TestSweepTempStores(t *testing.T) {
	tmp := t.TempDir()
	mk := func(name string) string {
		p := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Join(p, "jobs"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dead := mk("gowren-4000000-123")
	live := mk("gowren-4000001-456")
	other := mk("gowren-deploy-789")
	old := mk("gowren-123456")
	fresh := mk("gowren-4000002-789") // just made: its driver may not have locked it yet
	long := time.Now().Add(-time.Hour)
	for _, p := range []string{dead, live, other, old} {
		if err := os.Chtimes(p, long, long); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	removed := fanout.SweepTempStores(tmp, func(p string, err error) { t.Errorf("remove %s: %v", p, err) })
	if len(removed) != 1 || removed[0] != dead {
		t.Errorf("removed %v, want only %s", removed, dead)
	}
	for _, p := range []string{live, other, old, fresh} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// KeepData with no store on backends of this machine keeps the jobs in the
// user's cache directory, and says where.
func TestKeepDataWithoutStore(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	var logs strings.Builder
	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{KeepData: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	job, err := fanout.Start(context.Background(), ex, double, []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	url := ex.Store().URL()
	ex.Close()
	dir, err := fanout.KeptStoreDir()
	if err != nil || !strings.HasSuffix(url, dir) || !strings.Contains(logs.String(), url) {
		t.Fatalf("store %s, KeptStoreDir %q (%v), logs %q: want the store there and its URL logged", url, dir, err, logs.String())
	}
	st, err := storage.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := fanout.ReadManifest(context.Background(), st, job.ID())
	if err != nil || m.Tasks != 3 {
		t.Fatalf("the kept job's manifest: %+v, %v", m, err)
	}
}
