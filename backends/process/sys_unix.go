//go:build unix

package process

import (
	"fmt"
	"os"
	"syscall"
)

// sysProcAttr puts a worker in a process group of its own: a Ctrl-C on the
// driver's terminal reaches the driver, which stops its workers itself, and
// killing the group also kills what a task started.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// killGroup kills the process group that a worker leads.
func killGroup(pid int) {
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// inheritedPipe returns the pipe a worker inherited as fd, marked
// close-on-exec so that programs a task starts do not inherit it.
func inheritedPipe(fd int, name string) (*os.File, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("fd %d: %w", fd, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return nil, fmt.Errorf("fd %d is not a pipe", fd)
	}
	syscall.CloseOnExec(fd)
	// Non-blocking, the pipe goes through the runtime's poller: a goroutine
	// waiting for a frame does not hold a thread, and the handler it starts
	// runs at once on the same P.
	if err := syscall.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("fd %d: %w", fd, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}
