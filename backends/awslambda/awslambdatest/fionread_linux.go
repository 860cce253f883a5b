package awslambdatest

import "golang.org/x/sys/unix"

// fionread is the ioctl that tells how many bytes a pipe holds (FIONREAD,
// which Linux also calls TIOCINQ).
const fionread = unix.TIOCINQ
