//go:build !linux

package process

import (
	"errors"
	"os"

	"github.com/gowren/gowren/backends"
)

// Output capture needs tee(2), which only Linux has: elsewhere the driver
// reads the workers' stdout and stderr directly, and lines name the worker
// only.

type captureEnds struct{}

// newCapture returns no capture.
func newCapture() (*captureEnds, []*os.File, error) { return nil, nil, nil }

func (e *captureEnds) drain(stdout, stderr *lineWriter) {}

func (e *captureEnds) close() {}

type capture struct{}

func startCapture() (*capture, error) { return nil, errors.New("output capture is not supported") }

func (c *capture) TaskStarted(index int) backends.TaskOutput {
	panic("process: output capture is not supported")
}

func (c *capture) sync() {}

func (c *capture) close() {}

func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}
