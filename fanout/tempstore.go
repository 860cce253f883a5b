package fanout

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/filestore"
)

// The default store of backends on this machine (process://) is a
// temporary directory, $TMPDIR/gowren-<pid>-<random>, removed by Close. So
// that a driver that never reaches Close (interrupted, killed, crashed)
// leaves nothing behind either, each such directory has a reaper: a shell
// in a process group of its own, which waits for the end of a pipe from the
// driver and then removes the directory. The pipe ends when the driver's
// process does, however it ends; a Ctrl-C, sent to the terminal's process
// group, does not reach the reaper. Where no shell can be started the
// directory is still swept: by the next driver that makes one (dead owners'
// directories; see SweepTempStores) and by `gowren clean -tmp`.

// tempPrefix begins the names of the temporary stores' directories.
const tempPrefix = "gowren-"

// newTempStore creates a temporary file store and returns it with what
// closes and removes it.
func newTempStore() (storage.Store, func() error, error) {
	SweepTempStores(os.TempDir(), nil)
	dir, err := os.MkdirTemp("", tempPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, nil, fmt.Errorf("fanout: create the default store: %w", err)
	}
	// The lock says the directory's driver runs: the kernel lets it go
	// when the process ends, however it ends.
	lock, err := os.Open(dir)
	if err == nil {
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("fanout: create the default store: lock %s: %w", dir, err)
	}
	st, err := filestore.New(dir, nil)
	if err != nil {
		lock.Close()
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("fanout: create the default store: %w", err)
	}
	stopReaper := startReaper(dir)
	return st, func() error {
		err := st.Close()
		err = errors.Join(err, os.RemoveAll(dir))
		lock.Close()
		stopReaper()
		return err
	}, nil
}

// startReaper starts the process that removes dir when this one ends, and
// returns what lets it go (its pipe closed: it removes dir, which Close has
// removed already, and exits). It does nothing where no shell starts.
func startReaper(dir string) (stop func()) {
	// "$0" is dir; cat returns when the pipe's write end closes.
	cmd := exec.Command("/bin/sh", "-c", `cat >/dev/null; rm -rf -- "$0"`, dir)
	w, err := cmd.StdinPipe()
	if err != nil {
		return func() {}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return func() {}
	}
	return func() {
		w.Close()
		_ = cmd.Wait()
	}
}

// SweepTempStores removes, under dir, the temporary stores of drivers that
// are gone: directories named gowren-<pid>-* that no process holds locked
// (a driver locks its directory for as long as it runs; the lock goes with
// the process, even one killed with SIGKILL) and that have not changed for
// a minute (a driver creates its directory, then locks it: one just made
// may not be locked yet). It returns the directories
// removed; removal errors go to report, when it is not nil. A driver's
// reaper normally removes its directory; this finds those left where none
// could run.
func SweepTempStores(dir string, report func(path string, err error)) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range entries {
		if _, ok := tempOwner(e.Name()); !ok || !e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < sweepAge || !abandoned(path) {
			continue
		}
		if err := os.RemoveAll(path); err != nil {
			if report != nil {
				report(path, err)
			}
			continue
		}
		removed = append(removed, path)
	}
	return removed
}

// sweepAge is how long a temporary store's directory must have been left
// unchanged before a sweep may take it.
const sweepAge = time.Minute

// tempOwner returns the pid in a temporary store's directory name.
func tempOwner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, tempPrefix)
	if !ok {
		return 0, false
	}
	p, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(p)
	return pid, err == nil && pid > 0
}

// abandoned reports whether no process holds dir's lock: its driver is
// gone. (The lock taken to find out goes when the directory is closed.)
func abandoned(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}
