package fanout

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

var (
	plotterMu sync.RWMutex
	plotter   func(w io.Writer, s JobStats, format string) error
)

// RegisterPlotter installs the function behind JobStats.WritePlot. Package
// github.com/gowren/gowren/jobplot calls it from init; programs do not.
func RegisterPlotter(f func(w io.Writer, s JobStats, format string) error) {
	plotterMu.Lock()
	defer plotterMu.Unlock()
	plotter = f
}

// WritePlot draws the job in format "png" or "svg": a timeline with one line
// per task, coloured by outcome, above the number of tasks running over
// time, each with a legend of what its colours mean. It needs the plotting package linked in, which keeps gonum/plot out
// of programs that never plot (the workers above all):
//
//	import _ "github.com/gowren/gowren/jobplot"
//
// Without it, WritePlot returns an error saying so.
func (s JobStats) WritePlot(w io.Writer, format string) error {
	plotterMu.RLock()
	f := plotter
	plotterMu.RUnlock()
	if f == nil {
		return errors.New(`fanout: WritePlot needs the plotting package: import _ "github.com/gowren/gowren/jobplot"`)
	}
	return f(w, s, format)
}

// SavePlot writes WritePlot's drawing to the file name, in the format its
// extension names (".png" or ".svg", in any case).
func (s JobStats) SavePlot(name string) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := s.WritePlot(f, strings.TrimPrefix(strings.ToLower(filepath.Ext(name)), ".")); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
