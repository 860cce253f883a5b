// Package gopkg holds what the deploy commands of the cloud backends share
// about the Go package they build: whether it is a main package, and
// whether it links the backend's worker runtime, without which a deployed
// function would never serve an invocation; and the zip of its binary.
package gopkg

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// Package is what go list says of the package a deploy builds.
type Package struct {
	Name       string // "main" for a command
	ImportPath string
	deps       string // " dep1 dep2 ... "
}

// Imports reports whether p is path or depends on it, directly or not.
func (p Package) Imports(path string) bool {
	return p.ImportPath == path || strings.Contains(p.deps, " "+path+" ")
}

// List runs goCmd list on pkg in dir with env (which sets the target
// platform) and, when tags is not empty, -tags tags. It fails when the
// pattern names no package or more than one; the go command's output is
// part of the error.
func List(ctx context.Context, goCmd, dir string, env []string, tags, pkg string) (Package, error) {
	args := []string{"list"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, "-f", "{{.Name}}\t{{.ImportPath}}\t{{join .Deps \" \"}}", pkg)
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir, cmd.Env = dir, env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Package{}, fmt.Errorf("go list: %w\n%s", err, strings.TrimSpace(stderr.String()))
	}
	line := strings.TrimSpace(string(out))
	fields := strings.SplitN(line, "\t", 3)
	if len(fields) < 2 || strings.Contains(line, "\n") {
		return Package{}, fmt.Errorf("want exactly one package, go list printed %q", line)
	}
	p := Package{Name: fields[0], ImportPath: fields[1]}
	if len(fields) == 3 {
		p.deps = " " + fields[2] + " "
	}
	return p, nil
}

// ZipExecutable returns a zip archive holding one executable file (mode
// 0755) named name, deflated at level, stamped with modified. The archive
// depends only on its arguments, so an unchanged binary keeps its code
// hash and a deploy can skip its upload.
func ZipExecutable(name string, data []byte, level int, modified time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) { return flate.NewWriter(w, level) })
	h := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: modified}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
