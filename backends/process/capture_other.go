//go:build !unix

package process

import (
	"errors"

	"github.com/gowren/gowren/backends"
)

// capture is unsupported where workers are.
type capture struct{}

func startCapture() (*capture, error) { return nil, errors.New("output capture is not supported") }

func (c *capture) TaskStarted(int) func() []backends.OutputLine {
	return func() []backends.OutputLine { return nil }
}

func (c *capture) sync() {}

func (c *capture) close() {}
