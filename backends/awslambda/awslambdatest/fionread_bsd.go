//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package awslambdatest

// fionread is the ioctl that tells how many bytes a pipe holds: FIONREAD,
// _IOR('f', 127, int) in the BSDs' sys/filio.h.
const fionread = 0x4004667f
