//go:build !linux

package process

import "os"

const capturePipeSize = 0

func growPipe(*os.File) {}

func growPipeTo(*os.File, int) {}

func nameProcess() {}
