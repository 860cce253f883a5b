package process

import (
	"os"
	"path/filepath"
	"syscall"
)

// pipeSize is the buffer size asked for the protocol pipes: the default 64
// KiB makes a large frame cross in many wake-ups of both processes.
const pipeSize = 256 << 10

// capturePipeSize is the buffer size asked for the capture pipes: what a
// worker that dies writes last must fit (see drainPipe), Go's report of a
// crash included. 1 MiB is the most an unprivileged process gets by
// default (/proc/sys/fs/pipe-max-size).
const capturePipeSize = 1 << 20

// growPipe enlarges f's pipe buffer where the system allows; it is only an
// optimization.
func growPipe(f *os.File) { growPipeTo(f, pipeSize) }

// growPipeTo asks for a pipe buffer of size bytes for f, where the system
// allows.
func growPipeTo(f *os.File, size int) {
	const fSetPipeSz = 1031 // F_SETPIPE_SZ
	if c, err := f.SyscallConn(); err == nil {
		_ = c.Control(func(fd uintptr) {
			_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, fSetPipeSz, uintptr(size))
		})
	}
}

// nameProcess gives a worker started through /proc/self/exe, which the
// kernel names "exe", the name of its program in ps and top.
func nameProcess() {
	name := []byte(filepath.Base(os.Args[0]))
	if len(name) > 15 { // TASK_COMM_LEN - 1
		name = name[:15]
	}
	if string(name) != "exe" && len(name) > 0 {
		_ = os.WriteFile("/proc/self/comm", name, 0)
	}
}
