//go:build !unix

package process

import (
	"context"
	"errors"

	"github.com/gowren/gowren/backends"
)

// capture is unsupported where workers are.
type capture struct{}

func startCapture() (*capture, error) { return nil, errors.New("output capture is not supported") }

func (c *capture) TaskStarted(index int) backends.TaskOutput {
	return backends.TaskStarted(context.Background(), index) // no capture there
}

func (c *capture) sync() {}

func (c *capture) close() {}
