// Package s3test runs a real S3-compatible server on loopback for tests:
// versitygw (github.com/versity/versitygw, Apache-2.0) with its posix
// backend, in a temporary directory. Tests of any package in this module use
// it to get an s3:// store without a cloud account.
//
//	func TestSomething(t *testing.T) {
//		srv := s3test.NewServer(t)  // stopped when t ends
//		st := srv.Store(t, "", nil) // an *s3store.Store on a new bucket
//		...
//	}
//
// # Installing versitygw
//
// Start looks for the versitygw binary in this order: the path in the
// environment variable GOWREN_VERSITYGW; the cache directory
// $GOWREN_TOOLS_DIR/versitygw-v1.8.0 (GOWREN_TOOLS_DIR defaults to
// os.UserCacheDir()/gowren/tools). When it is missing there, Start installs
// it with
//
//	GOBIN=<cache>/versitygw-v1.8.0 go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
//
// which needs only Go and the module proxy and takes a minute or two the
// first time. The build goes to a temporary directory and is renamed into
// place, under a file lock, so that test binaries running in parallel build
// it once and never see half a binary. When the install fails, the error
// says which command to run by hand.
//
// # Credentials
//
// Every server takes the same fixed root credentials (AccessKey,
// SecretKey), which Start also puts in this process's environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, with AWS_SESSION_TOKEN and
// AWS_PROFILE removed and AWS_EC2_METADATA_DISABLED=true), so that a store
// opened with storage.Open from a server's URL authenticates through the
// AWS SDK's default credential chain, exactly as in production, and never
// asks the EC2 metadata service. Env returns the same variables for worker
// subprocesses (process.Options.Env).
//
// # Limits
//
// The posix backend keeps each object as a file and each "/" as a
// directory, so unlike S3 it cannot hold an object and another below it
// ("a" and "a/b": the second PUT fails with ObjectParentIsFile). gowren's
// own keys never collide so. A server starts in a fraction of a second
// once installed.
package s3test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gowren/gowren/storage/s3store"
)

// The versitygw release that Start installs and runs.
const (
	VersitygwVersion = "v1.8.0"
	VersitygwPackage = "github.com/versity/versitygw/cmd/versitygw"
)

// Environment variables that Start reads.
const (
	// EnvVersitygw names a versitygw binary to run instead of the cached one.
	EnvVersitygw = "GOWREN_VERSITYGW"
	// EnvToolsDir names the directory where test tools are cached.
	EnvToolsDir = "GOWREN_TOOLS_DIR"
)

// The root credentials of every server, and its region.
const (
	AccessKey = "gowren-test-access"
	SecretKey = "gowren-test-secret-key"
	Region    = "us-east-1"
)

// Options configure Start. A nil *Options means the defaults.
type Options struct {
	// Dir is where the server keeps its buckets (Dir/data) and their
	// metadata (Dir/meta). Defaults to a new temporary directory, removed
	// by Close.
	Dir string
	// StartTimeout bounds how long the server may take to answer after it
	// is started. Defaults to 30s.
	StartTimeout time.Duration
	// InstallTimeout bounds the install of versitygw when it is missing.
	// Defaults to 15m.
	InstallTimeout time.Duration
}

// Server is a running versitygw on loopback. Its methods are safe for
// concurrent use.
type Server struct {
	// Endpoint is the server's URL, "http://127.0.0.1:PORT".
	Endpoint string
	// Dir holds the server's files (see Options.Dir).
	Dir string

	removeDir bool
	cmd       *exec.Cmd
	exited    chan struct{} // closed when the process has exited
	exitErr   error         // set before exited is closed
	output    *tailBuffer
	client    *s3.Client
	closeOnce sync.Once
	closeErr  error
}

// NewServer starts a server for the test tb (see Start) and stops it when
// tb ends. It fails tb, with the reason and the command that fixes it, when
// versitygw cannot be installed or started.
func NewServer(tb testing.TB) *Server {
	tb.Helper()
	s, err := Start(context.Background(), nil)
	if err != nil {
		tb.Fatalf("s3test: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("s3test: %v", err)
		}
	})
	return s
}

// Start installs versitygw when it is missing (see the package
// documentation), starts it on a free loopback port, and returns once it
// answers S3 requests. ctx bounds the install and the start only; the server
// runs until Close. Start also sets this process's AWS environment (see
// Credentials in the package documentation). A nil opts means the defaults.
func Start(ctx context.Context, opts *Options) (*Server, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 30 * time.Second
	}
	if o.InstallTimeout <= 0 {
		o.InstallTimeout = 15 * time.Minute
	}
	icx, cancel := context.WithTimeout(ctx, o.InstallTimeout)
	bin, err := Install(icx)
	cancel()
	if err != nil {
		return nil, err
	}
	if err := SetEnv(); err != nil {
		return nil, err
	}
	s := &Server{Dir: o.Dir}
	if s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "gowren-versitygw-"); err != nil {
			return nil, fmt.Errorf("start versitygw: %w", err)
		}
		s.removeDir = true
	}
	data, meta := filepath.Join(s.Dir, "data"), filepath.Join(s.Dir, "meta")
	for _, d := range []string{data, meta} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			s.cleanupDir()
			return nil, fmt.Errorf("start versitygw: %w", err)
		}
	}
	// A free port may be taken by someone else before versitygw binds it:
	// try a few.
	for try := 0; ; try++ {
		err = s.start(ctx, bin, data, meta, o.StartTimeout)
		if err == nil {
			return s, nil
		}
		if try == 2 || !strings.Contains(s.output.String(), "address already in use") {
			s.cleanupDir()
			return nil, err
		}
	}
}

func (s *Server) start(ctx context.Context, bin, data, meta string, timeout time.Duration) error {
	port, err := freePort()
	if err != nil {
		return fmt.Errorf("start versitygw: %w", err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	s.Endpoint = "http://" + addr
	s.output = &tailBuffer{max: 64 << 10}
	// Global flags, then the backend and its flags. Metadata goes in
	// extended attributes where the filesystem has them, else in a sidecar
	// directory (where versitygw is less at ease with concurrent writes
	// and deletes of one key).
	args := []string{"--port", addr, "--quiet", "--keep-alive", "--region", Region, "posix"}
	if !hasXattrs(data) {
		args = append(args, "--sidecar", meta)
	}
	cmd := exec.Command(bin, append(args, data)...)
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = s.output, s.output
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start versitygw %s: %w", bin, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		s.exitErr = cmd.Wait()
		close(s.exited)
	}()
	s.client = s.newClient()
	if err := s.waitReady(ctx, addr, timeout); err != nil {
		s.stop()
		return fmt.Errorf("start versitygw on %s: %w; its output:\n%s", addr, err, s.output)
	}
	return nil
}

// waitReady waits until the server accepts connections and answers an S3
// request, the process exits, or timeout passes.
func (s *Server) waitReady(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			_, err = s.client.ListBuckets(ctx, &s3.ListBucketsInput{})
			if err == nil {
				return nil
			}
		}
		lastErr = err
		select {
		case <-s.exited:
			return fmt.Errorf("versitygw exited: %v", s.exitErr)
		case <-ctx.Done():
			return fmt.Errorf("no answer within %v (last error: %v)", timeout, lastErr)
		case <-tick.C:
		}
	}
}

// Close stops the server (SIGTERM, then SIGKILL after 5s) and removes its
// temporary directory. Calling it again does nothing.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if c, ok := s.client.Options().HTTPClient.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
		s.stop()
		s.closeErr = s.cleanupDir()
	})
	return s.closeErr
}

func (s *Server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

func (s *Server) cleanupDir() error {
	if !s.removeDir {
		return nil
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("remove versitygw directory: %w", err)
	}
	return nil
}

// Client returns an S3 client for the server, with its root credentials
// and path-style addressing.
func (s *Server) Client() *s3.Client { return s.client }

func (s *Server) newClient() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	})
}

var bucketSeq struct {
	sync.Mutex
	n int
}

// NewBucket creates a bucket with a new unique name and returns the name.
func (s *Server) NewBucket(ctx context.Context) (string, error) {
	bucketSeq.Lock()
	bucketSeq.n++
	n := bucketSeq.n
	bucketSeq.Unlock()
	name := fmt.Sprintf("gowren-test-%d-%08x", n, rand.Uint32())
	if _, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return "", fmt.Errorf("s3test: create bucket %q: %w", name, err)
	}
	return name, nil
}

// URL returns the s3:// URL of bucket and prefix on this server, which
// storage.Open accepts (in this process, or in a worker whose environment
// has Env).
func (s *Server) URL(bucket, prefix string) string {
	q := url.Values{}
	q.Set("endpoint", s.Endpoint)
	q.Set("region", Region)
	q.Set("path_style", "true")
	return (&url.URL{Scheme: "s3", Host: bucket, Path: "/" + prefix, RawQuery: q.Encode()}).String()
}

// Store returns an s3store on a new bucket of the server, under prefix
// (which may be ""), closed when tb ends. It fails tb when the bucket
// cannot be created. A nil opts means the defaults.
func (s *Server) Store(tb testing.TB, prefix string, opts *s3store.Options) *s3store.Store {
	tb.Helper()
	bucket, err := s.NewBucket(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	st, err := s3store.New(s.client, bucket, prefix, opts)
	if err != nil {
		tb.Fatalf("s3test: %v", err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// Env returns the environment entries ("KEY=value") that make the AWS SDK's
// default credential chain find the servers' credentials, for worker
// subprocesses. An empty value ("AWS_SESSION_TOKEN=") removes a variable
// that would get in the way.
func Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// SetEnv puts Env in this process's environment, removing the variables
// that Env sets empty. Start calls it.
func SetEnv() error {
	for _, kv := range Env() {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		if v == "" {
			err = os.Unsetenv(k)
		} else {
			err = os.Setenv(k, v)
		}
		if err != nil {
			return fmt.Errorf("s3test: set %s: %w", k, err)
		}
	}
	return nil
}

// serverEnv is this process's environment without the variables that
// versitygw reads for its configuration, plus its root credentials.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VGW_") || strings.HasPrefix(kv, "ROOT_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Install returns the path of the versitygw binary, installing it into the
// cache directory first when it is missing (see the package documentation).
func Install(ctx context.Context) (string, error) {
	if p := os.Getenv(EnvVersitygw); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("versitygw from $%s: %w", EnvVersitygw, err)
		}
		return p, nil
	}
	dir, err := toolsDir()
	if err != nil {
		return "", err
	}
	binDir := filepath.Join(dir, "versitygw-"+VersitygwVersion)
	bin := filepath.Join(binDir, "versitygw"+exeSuffix())
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	howto := fmt.Sprintf("install it by hand with\n\tGOBIN=%s go install %s@%s\nor set %s to a versitygw binary",
		binDir, VersitygwPackage, VersitygwVersion, EnvVersitygw)
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", fmt.Errorf("install versitygw: %w; %s", err, howto)
	}
	unlock, err := lockFile(filepath.Join(dir, "versitygw-"+VersitygwVersion+".lock"))
	if err != nil {
		return "", fmt.Errorf("install versitygw: %w; %s", err, howto)
	}
	defer unlock()
	// Another process may have installed it while we waited for the lock.
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	tmp, err := os.MkdirTemp(binDir, "tmp-")
	if err != nil {
		return "", fmt.Errorf("install versitygw: %w; %s", err, howto)
	}
	defer os.RemoveAll(tmp)
	goBin := goCommand()
	cmd := exec.CommandContext(ctx, goBin, "install", VersitygwPackage+"@"+VersitygwVersion)
	cmd.Dir = tmp // outside any module
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off", "GOFLAGS=", "GO111MODULE=on")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("install versitygw %s (%s install %s@%s): %w\n%s\n%s",
			VersitygwVersion, goBin, VersitygwPackage, VersitygwVersion, err, bytes.TrimSpace(out), howto)
	}
	if err := os.Rename(filepath.Join(tmp, "versitygw"+exeSuffix()), bin); err != nil {
		return "", fmt.Errorf("install versitygw: %w; %s", err, howto)
	}
	return bin, nil
}

func toolsDir() (string, error) {
	if d := os.Getenv(EnvToolsDir); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("install versitygw: no cache directory (%v); set %s or %s", err, EnvToolsDir, EnvVersitygw)
	}
	return filepath.Join(d, "gowren", "tools"), nil
}

// goCommand returns the go command on PATH. Under go test that is the
// toolchain running the tests: go test puts its GOROOT/bin first on the
// PATH of the test binary.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

func exeSuffix() string {
	if runtime.GOOS == "windows" {
		return ".exe"
	}
	return ""
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
