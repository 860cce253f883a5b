//go:build !unix

package process

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func killGroup(pid int) {}

func inheritedPipe(fd int, name string) (*os.File, error) {
	return nil, fmt.Errorf("process workers are not supported on %s", runtime.GOOS)
}
