package s3test

import "syscall"

// sysProcAttr makes the kernel kill the server if this process dies
// without calling Close (a test binary killed by its timeout).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// hasXattrs reports whether the filesystem of dir keeps user extended
// attributes, where versitygw stores object metadata by default.
func hasXattrs(dir string) bool {
	if err := syscall.Setxattr(dir, "user.gowren-probe", []byte("1"), 0); err != nil {
		return false
	}
	_ = syscall.Removexattr(dir, "user.gowren-probe")
	return true
}
