package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/awslambda"
	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/s3store/s3test"
)

// burst-tree-wan (issue [burst], item 5): a job of sleeping tasks sent over
// real sockets along a WAN-shaped path. The loopback Lambda server runs in
// process mode (Options.Handler) in one network namespace, the "cloud"; the
// driver runs in another; a veth pair joins them. The driver's side of the
// pair sends at most 20 Mbit/s (a tbf qdisc), and a delaying TCP proxy in
// the cloud (delayProxy) adds a round trip of 80 ms; the driver reaches the
// server only through it. The cloud's handler is fanout.Handle with an
// awslambda backend on the server itself as the invoker, so that an invoker
// tree's children are invoked from inside the cloud, as on Lambda. Both
// sides are this program run again (-mode wan-cloud, -mode wan-driver)
// under `ip netns exec`; runWAN creates the namespaces and removes them.

const (
	// The path: 20 Mbit/s up, 80 ms round trip (-wanrate,
	// -wanrtt).
	wanRate     = "20mbit"
	wanRTT      = 80 * time.Millisecond
	wanCloudIP  = "10.213.0.1"
	wanDriverIP = "10.213.0.2"
	wanCloudDev = "wan-a" // the cloud's end of the veth pair
	wanDevice   = "wan-b" // the driver's end, which the tbf shapes
	wanPrefix   = "gowren-wan-"
	wanPort     = "9001" // the proxy's, alone in the cloud's namespace
	// wanStoreHost is the store's host name: the loopback address in the
	// cloud, the proxy's in front of it in the driver's namespace.
	wanStoreHost = "gowren-wan-store"
	// wanFunction is the loopback Lambda's function.
	wanFunction = "function"
)

// wanConf is what the cloud and driver processes are told, as JSON in
// -wanconf.
type wanConf struct {
	Tasks       int           `json:"tasks"`
	TaskTime    time.Duration `json:"task_time"`
	Tree        int           `json:"tree"`
	Async       bool          `json:"async"`
	Concurrency int           `json:"concurrency"` // the cloud's account limit
	Listen      string        `json:"listen"`      // the proxy's address, in the cloud
	Lambda      string        `json:"lambda"`      // the server's URL as the driver reaches it
	Store       string        `json:"store"`       // the store's URL
	Device      string        `json:"device"`      // the driver's network device, for its byte count
	RTT         time.Duration `json:"rtt"`         // the proxy's round trip
	Prefault    int64         `json:"prefault"`    // bytes of memory the cloud faults in before the job (see prefault)
}

// wanOutcome is what the driver reports.
type wanOutcome struct {
	Error string `json:"error,omitempty"`
	// AllRunning is from before Start until the last task started (its own
	// clock reading in the cloud: both sides share the machine's clock);
	// FirstEnd is until the first task ended: when AllRunning is less, all
	// the tasks ran at once.
	AllRunning time.Duration `json:"all_running"`
	// FirstStart and HalfRunning are until the first task started and
	// until half of them had.
	FirstStart  time.Duration `json:"first_start"`
	HalfRunning time.Duration `json:"half_running"`
	FirstEnd    time.Duration `json:"first_end"`
	Makespan    time.Duration `json:"makespan"`
	// CPU is the driver's CPU time for the job.
	CPU time.Duration `json:"cpu"`
	// Start is when the driver started the job, in Unix nanoseconds.
	Start int64 `json:"start"`
	// Invocations counts the Invoke requests the driver sent (retries
	// and throttled ones included); JobInvocations is the same as the
	// job's statistics count them (Invocations less ViaTree plus
	// Invokers).
	Invocations    int `json:"invocations"`
	JobInvocations int `json:"job_invocations"`
	Throttles      int `json:"throttles"`
	Retries        int `json:"retries"`
	// JobBytes is JobStats.BytesSent (invocation payloads); WireBytes the
	// bytes the driver's network device sent during the job, headers
	// included.
	JobBytes  int64 `json:"job_bytes"`
	WireBytes int64 `json:"wire_bytes"`
	// WireBytesToAllRunning is what the device had sent when all the
	// tasks ran, at the first 50 ms sample after the last start.
	WireBytesToAllRunning int64 `json:"wire_bytes_to_all_running"`
	// Dropped and Overlimits are the driver's tbf's counts during the job
	// (filled in by runWAN): packets dropped, and held back for the rate.
	Dropped    int64 `json:"-"`
	Overlimits int64 `json:"-"`
	// StoreRequests counts the driver's store requests (JobStats).
	StoreRequests int `json:"store_requests"`
	// StoreLists and StoreReads are two of them: listings of the replies,
	// and reads of reply objects (bundles, with a tree on Lambda).
	StoreLists int `json:"store_lists"`
	StoreReads int `json:"store_reads"`
}

// wanCloudStats is what the cloud reports when it stops.
type wanCloudStats struct {
	Invocations int   `json:"invocations"`
	Events      int   `json:"events"`
	Throttles   int   `json:"throttles"`
	MaxInFlight int   `json:"max_in_flight"`
	ProxyUp     int64 `json:"proxy_up"`
	ProxyDown   int64 `json:"proxy_down"`
	// CPU is the cloud process's CPU time (server, handlers, invokers)
	// during the job, StoreCPU versitygw's.
	CPU      time.Duration `json:"cpu"`
	StoreCPU time.Duration `json:"store_cpu"`
	// PeakRSS is the cloud process's peak resident set in bytes, and
	// Faults its page faults during the job: what the emulation's memory
	// costs it (see prefault).
	PeakRSS int64 `json:"peak_rss"`
	Faults  int64 `json:"faults"`
	// Entries are when the first, the median and the last invocation
	// reached the handler, in Unix nanoseconds.
	Entries [3]int64 `json:"entries"`
}

// wanSleep sleeps for its input in milliseconds and returns when it
// started, in Unix nanoseconds of the machine's clock.
var wanSleep = fanout.Register("bench.wansleep", func(ctx context.Context, ms int) (int64, error) {
	start := time.Now()
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return start.UnixNano(), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
})

// runWAN runs burst-tree-wan once for each fan-out in trees (0: no tree,
// the driver sends every task itself), printing a table row and a RESULT
// line for each, or one line saying why it cannot run.
//
// rate is the tbf's rate on the driver's uplink ("off": none) and rtt the
// round trip the proxy adds: the are wanRate and wanRTT; others
// serve as controls (rate "off" and rtt 0 show what the machine itself
// allows).
func runWAN(ctx context.Context, tasks int, taskTime time.Duration, trees []int, async bool, rate string, rtt time.Duration, prefault int64) {
	fmt.Println()
	if os.Geteuid() != 0 {
		fmt.Printf("burst-tree-wan skipped: it creates network namespaces, a veth pair and a tbf qdisc, which needs root (running as uid %d)\n", os.Geteuid())
		return
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := newWANNet(ctx, rate)
	if err != nil {
		fmt.Printf("burst-tree-wan skipped: cannot build the WAN-shaped network: %v\n", err)
		return
	}
	defer func() {
		if err := n.close(); err != nil {
			fmt.Printf("burst-tree-wan: cleanup: %v\n", err)
		}
	}()
	fmt.Println("| scenario | job | all running after | invocations from the driver | driver bytes sent | notes |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	for _, tree := range trees {
		conf := wanConf{Tasks: tasks, TaskTime: taskTime, Tree: tree, Async: async,
			// Room for the invokers beside the tasks.
			Concurrency: tasks + tasks/10,
			Listen:      net.JoinHostPort(wanCloudIP, wanPort), Device: wanDevice, RTT: rtt, Prefault: prefault}
		// The baseline without a tree has a name of its own, as
		// burst-sharded-uplink beside burst-sharded-tree-uplink.
		name := "burst-tree-wan"
		if tree == 0 {
			name = "burst-wan"
		}
		o, cs, err := n.run(ctx, conf)
		if err != nil {
			fmt.Printf("| %s | tree %d | failed: %v |\n", name, tree, err)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		since := func(ns int64) float64 { return time.Duration(ns - o.Start).Seconds() }
		perTask := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(tasks) }
		mode := "synchronous"
		if async {
			mode = "asynchronous"
		}
		fmt.Printf("| %s | %d x %v, tree %d, %s, uplink %s, round trip %v | %.2f s | %d | %d (%d until all ran; payloads %d) | the tbf delayed %d and dropped %d packets; first task started after %.2f s, half after %.2f s; first ended after %.2f s; invocations reached the cloud's handler after %.2f s (first), %.2f s (half), %.2f s (last); makespan %.2f s; CPU per task: driver %.0f us, cloud %.0f us, store %.0f us; %d throttles, %d retries, %d store requests from the driver; the cloud ran %d invocations and %d events, at most %d at once |\n",
			name, tasks, taskTime, tree, mode, rate, rtt, o.AllRunning.Seconds(), o.Invocations, o.WireBytes, o.WireBytesToAllRunning, o.JobBytes,
			o.Overlimits, o.Dropped,
			o.FirstStart.Seconds(), o.HalfRunning.Seconds(), o.FirstEnd.Seconds(), since(cs.Entries[0]), since(cs.Entries[1]), since(cs.Entries[2]), o.Makespan.Seconds(),
			perTask(o.CPU), perTask(cs.CPU), perTask(cs.StoreCPU), o.Throttles, o.Retries, o.StoreRequests, cs.Invocations, cs.Events, cs.MaxInFlight)
		kv := []any{"seconds_to_all_running", o.AllRunning, "invocations_from_driver", o.Invocations,
			"driver_bytes_sent", o.WireBytes, "tree", tree, "async", async, "rate", rate, "rtt_ms", rtt.Milliseconds(), "cloud_prefault_mb", prefault >> 20, "tasks", tasks, "task_s", taskTime,
			"all_at_once", o.AllRunning < o.FirstEnd, "first_start_s", o.FirstStart, "half_running_s", o.HalfRunning, "driver_bytes_to_all_running", o.WireBytesToAllRunning, "payload_bytes", o.JobBytes, "driver_store_requests", o.StoreRequests, "driver_store_lists", o.StoreLists, "driver_store_reads", o.StoreReads, "makespan_s", o.Makespan,
			"driver_cpu_us_per_task", perTask(o.CPU), "cloud_cpu_us_per_task", perTask(cs.CPU), "store_cpu_us_per_task", perTask(cs.StoreCPU), "cloud_peak_rss_mb", cs.PeakRSS >> 20, "cloud_page_faults", cs.Faults,
			"jobstats_invocations_from_driver", o.JobInvocations, "cloud_invocations", cs.Invocations + cs.Events,
			"tbf_overlimits", o.Overlimits, "tbf_dropped", o.Dropped}
		if tree > 0 {
			kv = append(kv, "target_s", 3, "target_invocations", 200)
		}
		result(name, kv...)
	}
}

// wanNet is the two namespaces and the veth pair between them.
type wanNet struct {
	cloud, driver string // namespace names
	shaped        bool   // a tbf on the driver's end
}

// newWANNet creates the namespaces, the veth pair with its addresses and
// the tbf on the driver's end. On failure it removes what it made.
func newWANNet(ctx context.Context, rate string) (*wanNet, error) {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("no ip command (iproute2): %w", err)
	}
	if _, err := exec.LookPath("tc"); err != nil {
		return nil, fmt.Errorf("no tc command (iproute2): %w", err)
	}
	removeStaleNamespaces(ctx)
	pid := strconv.Itoa(os.Getpid())
	n := &wanNet{cloud: wanPrefix + pid + "-cloud", driver: wanPrefix + pid + "-driver", shaped: rate != "off"}
	steps := [][]string{
		{"ip", "netns", "add", n.cloud},
		{"ip", "netns", "add", n.driver},
		{"ip", "link", "add", wanCloudDev, "netns", n.cloud, "type", "veth", "peer", "name", wanDevice, "netns", n.driver},
	}
	for _, s := range []struct{ ns, dev, ip string }{{n.cloud, wanCloudDev, wanCloudIP}, {n.driver, wanDevice, wanDriverIP}} {
		steps = append(steps,
			[]string{"ip", "-n", s.ns, "addr", "add", s.ip + "/30", "dev", s.dev},
			[]string{"ip", "-n", s.ns, "link", "set", s.dev, "up"},
			[]string{"ip", "-n", s.ns, "link", "set", "lo", "up"},
			// 10,000 connections arrive at once: a backlog of 4,096 would
			// drop SYNs, whose retransmission costs a second.
			[]string{"ip", "netns", "exec", s.ns, "sysctl", "-q", "-w", "net.core.somaxconn=65535", "net.ipv4.tcp_max_syn_backlog=65535"})
	}
	// The driver's uplink: 20 Mbit/s, bursts of 32 KB, at most 100 ms
	// queued.
	if n.shaped {
		steps = append(steps, []string{"ip", "netns", "exec", n.driver, "tc", "qdisc", "add", "dev", wanDevice, "root",
			"tbf", "rate", rate, "burst", "32kb", "latency", "100ms"})
	}
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, s[0], s[1:]...).CombinedOutput(); err != nil {
			n.close()
			return nil, fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	// ip netns exec mounts /etc/netns/NAME/hosts over /etc/hosts.
	for ns, ip := range map[string]string{n.cloud: "127.0.0.1", n.driver: wanCloudIP} {
		dir := filepath.Join(netnsEtc, ns)
		err := os.MkdirAll(dir, 0o755)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "hosts"), []byte("127.0.0.1 localhost\n"+ip+" "+wanStoreHost+"\n"), 0o644)
		}
		if err != nil {
			n.close()
			return nil, fmt.Errorf("the namespaces' hosts files: %w", err)
		}
	}
	return n, nil
}

// netnsEtc holds the files ip netns exec mounts over /etc's in a
// namespace.
const netnsEtc = "/etc/netns"

// close removes the namespaces, and with them the veth pair and the qdisc.
func (n *wanNet) close() error {
	var errs []error
	for _, ns := range []string{n.cloud, n.driver} {
		if err := os.RemoveAll(filepath.Join(netnsEtc, ns)); err != nil {
			errs = append(errs, err)
		}
		out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "No such file") {
			errs = append(errs, fmt.Errorf("ip netns del %s: %v: %s", ns, err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}

// removeStaleNamespaces deletes the namespaces of earlier runs whose
// process is gone (killed before its cleanup).
func removeStaleNamespaces(ctx context.Context) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], wanPrefix) {
			continue
		}
		pid, _, _ := strings.Cut(strings.TrimPrefix(f[0], wanPrefix), "-")
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue
		}
		exec.CommandContext(ctx, "ip", "netns", "del", f[0]).Run()
		os.RemoveAll(filepath.Join(netnsEtc, f[0]))
	}
}

// run starts the cloud, then the driver, and returns their reports. It
// stops both before it returns.
func (n *wanNet) run(ctx context.Context, conf wanConf) (wanOutcome, wanCloudStats, error) {
	exe, err := os.Executable()
	if err != nil {
		return wanOutcome{}, wanCloudStats{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cloud, err := startSide(ctx, exe, n.cloud, "wan-cloud", conf)
	if err != nil {
		return wanOutcome{}, wanCloudStats{}, err
	}
	defer cloud.stop()
	line, err := cloud.line("WAN-READY ")
	if err != nil {
		return wanOutcome{}, wanCloudStats{}, fmt.Errorf("cloud: %w", err)
	}
	var ok bool
	if conf.Lambda, conf.Store, ok = strings.Cut(line, " "); !ok {
		return wanOutcome{}, wanCloudStats{}, fmt.Errorf("cloud: ready line %q has no store URL", line)
	}
	driver, err := startSide(ctx, exe, n.driver, "wan-driver", conf)
	if err != nil {
		return wanOutcome{}, wanCloudStats{}, err
	}
	defer driver.stop()
	var o wanOutcome
	tbf0, tbfErr := n.tbfStats(ctx)
	line, err = driver.line("WAN-OUTCOME ")
	if err == nil {
		err = json.Unmarshal([]byte(line), &o)
	}
	if err != nil {
		return o, wanCloudStats{}, fmt.Errorf("driver: %w", err)
	}
	if o.Error != "" {
		return o, wanCloudStats{}, fmt.Errorf("driver: %s", o.Error)
	}
	tbf1, err := n.tbfStats(ctx)
	if err = errors.Join(tbfErr, err); err != nil {
		return o, wanCloudStats{}, err
	}
	o.Dropped, o.Overlimits = tbf1[0]-tbf0[0], tbf1[1]-tbf0[1]
	// Closing its input stops the cloud, which then reports.
	cloud.stdin.Close()
	var cs wanCloudStats
	line, err = cloud.line("WAN-STATS ")
	if err == nil {
		err = json.Unmarshal([]byte(line), &cs)
	}
	if err != nil {
		return o, cs, fmt.Errorf("cloud: %w", err)
	}
	return o, cs, nil
}

// tbfStats returns the driver's tbf's counts of dropped packets and of
// packets it held back (overlimits), from `tc -s qdisc show`; zeros
// without one.
func (n *wanNet) tbfStats(ctx context.Context) ([2]int64, error) {
	if !n.shaped {
		return [2]int64{}, nil
	}
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", n.driver, "tc", "-s", "qdisc", "show", "dev", wanDevice).Output()
	if err != nil {
		return [2]int64{}, fmt.Errorf("tc -s qdisc show dev %s: %w", wanDevice, err)
	}
	return parseTBFStats(string(out))
}

// parseTBFStats reads "(dropped D, overlimits O ...)" from tc's output.
func parseTBFStats(out string) ([2]int64, error) {
	var got [2]int64
	for k, key := range []string{"dropped ", "overlimits "} {
		_, rest, ok := strings.Cut(out, key)
		if !ok {
			return got, fmt.Errorf("tc printed no %q count: %q", strings.TrimSpace(key), out)
		}
		f := strings.FieldsFunc(rest, func(r rune) bool { return r == ',' || r == ' ' || r == ')' })
		if len(f) == 0 {
			return got, fmt.Errorf("tc printed no %q count: %q", strings.TrimSpace(key), out)
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return got, fmt.Errorf("tc's %q count %q: %w", strings.TrimSpace(key), f[0], err)
		}
		got[k] = v
	}
	return got, nil
}

// side is a process of this program, running in a namespace unless ns is
// "". It stops when
// its input closes, so it never outlives runWAN.
type side struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	name  string
}

func startSide(ctx context.Context, exe, ns, mode string, conf wanConf) (*side, error) {
	b, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	args := []string{exe, "-mode", mode, "-wanconf", string(b)}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	// Stopped early, a side still cleans up (the cloud's store removes its
	// directory); killed 10 s later if it has not ended.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", mode, err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	return &side{cmd: cmd, stdin: stdin, out: sc, name: mode}, nil
}

// line returns the rest of the first output line that starts with prefix.
func (s *side) line(prefix string) (string, error) {
	for s.out.Scan() {
		if rest, ok := strings.CutPrefix(s.out.Text(), prefix); ok {
			return rest, nil
		}
	}
	if err := s.out.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("%s ended without a %q line", s.name, strings.TrimSpace(prefix))
}

// stop closes the process's input, and kills it when it has not ended a
// few seconds later.
func (s *side) stop() {
	s.stdin.Close()
	done := make(chan struct{})
	go func() {
		s.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// waitInputOrSignal returns when this process's input closes (the parent
// is done with it, or gone) or it is interrupted or terminated, so that
// the caller's deferred cleanup runs.
func waitInputOrSignal() {
	eof := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	select {
	case <-eof:
	case <-sig:
	}
}

// exitOnEOF ends this process when its input closes: the parent is done
// with it, or gone.
func exitOnEOF() {
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
}

// raiseFileLimit lifts the open-file limit: each side holds one or more
// sockets per invocation in flight. Root may raise the hard limit too.
func raiseFileLimit(n uint64) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	if l.Cur >= n {
		return
	}
	want := syscall.Rlimit{Cur: n, Max: max(n, l.Max)}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) != nil {
		want.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
	}
}

// wanClient returns a Lambda client of the loopback server at endpoint,
// with at most conns connections.
// When invokes is not nil, it counts the Invoke calls the client sends.
func wanClient(endpoint string, conns int, timeout time.Duration, invokes *atomic.Int64) *lambda.Client {
	hc := awslambda.NewHTTPClient(conns, timeout)
	if tr, ok := hc.Transport.(*http.Transport); ok {
		tr.MaxConnsPerHost = conns
	}
	if invokes != nil {
		hc.Transport = countInvokes{hc.Transport, invokes}
	}
	return lambda.New(lambda.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDWAN", awslambdatest.DefaultSecretAccessKey, ""),
		HTTPClient:   hc,
	})
}

// countInvokes counts the Invoke requests (POST .../invocations) it sends.
type countInvokes struct {
	http.RoundTripper
	n *atomic.Int64
}

func (c countInvokes) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/invocations") {
		c.n.Add(1)
	}
	return c.RoundTripper.RoundTrip(r)
}

const wanTimeout = 2 * time.Minute

// wanRequestOverhead is what a synchronous Lambda invocation from the
// driver sent on the wire besides its payload in the WAN run (burst-wan,
// bench/RESULTS.md 2026-12-05 session 3): 1,406 bytes per call for 139
// payload bytes (HTTP headers and SigV4 signature, the payload in base64
// inside JSON, a connection's set-up and the acknowledgements of its
// reply). The simulated uplink (chaos.Uplink) charges it per call.
const wanRequestOverhead = 1406 - 139

// wanCloud is the cloud's process: the loopback Lambda server, whose
// handler invokes through the server itself, and the delaying proxy in
// front of it. It prints "WAN-READY <url>" with the proxy's URL, and when
// its input closes "WAN-STATS <json>".
func wanCloud(conf wanConf) {
	raiseFileLimit(1 << 20)
	// A CPU profile of the cloud's side, for a look at what a child costs
	// there.
	defer profileTo(os.Getenv("GOWREN_WAN_CLOUD_PROFILE"))()
	// The handler's invoker: a client of the server, which exists only
	// once the server does; set before the proxies make it reachable.
	var inner atomic.Pointer[awslambda.Backend]
	var entriesMu sync.Mutex
	var entries []int64 // when each invocation reached the handler, Unix ns
	h := awslambda.NewHandler(func(ctx context.Context, payload []byte) []byte {
		entriesMu.Lock()
		entries = append(entries, time.Now().UnixNano())
		entriesMu.Unlock()
		if backends.InvokerOf(ctx) == nil {
			ctx = backends.WithInvoker(ctx, inner.Load())
		}
		return fanout.Handle(ctx, payload)
	})
	srv, err := awslambdatest.New(&awslambdatest.Options{Handler: h, Concurrency: conf.Concurrency,
		Timeout: wanTimeout, Function: wanFunction, Stderr: io.Discard})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	// Children are started by invokers over one client: on Lambda each
	// invoker has an environment, and connections, of its own. A leaf
	// invoker holds one connection per child while it waits for its
	// reply (it collects them), so the client allows as many as the
	// account's concurrency; the server's end of each is a file of this
	// process too (raiseFileLimit).
	inner.Store(awslambda.New(wanClient(srv.URL(), conf.Concurrency, wanTimeout, nil), wanFunction,
		&awslambda.Options{Concurrency: conf.Concurrency, Timeout: wanTimeout}))
	defer inner.Load().Close()
	// The store, on loopback; the driver reaches it through a proxy on
	// the same port of the cloud's veth address, by the name wanStoreHost
	// (which each namespace's hosts file resolves).
	s3, err := s3test.Start(context.Background(), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s3.Close()
	bucket, err := s3.NewBucket(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	s3addr := strings.TrimPrefix(s3.Endpoint, "http://")
	_, s3port, err := net.SplitHostPort(s3addr)
	if err != nil {
		log.Fatal(err)
	}
	storeURL := (&url.URL{Scheme: "s3", Host: bucket, Path: "/", RawQuery: url.Values{
		"endpoint": {"http://" + net.JoinHostPort(wanStoreHost, s3port)}, "region": {s3test.Region}, "path_style": {"true"},
	}.Encode()}).String()

	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	var proxies []*side
	start := func(listen, target string) {
		p, err := startSide(context.Background(), exe, "", "wan-proxy", wanConf{Listen: listen, Lambda: target, RTT: conf.RTT})
		if err != nil {
			log.Fatal(err)
		}
		if _, err := p.line("WAN-PROXY-READY"); err != nil {
			log.Fatal(err)
		}
		proxies = append(proxies, p)
	}
	for range wanProxies {
		start(conf.Listen, strings.TrimPrefix(srv.URL(), "http://"))
	}
	start(net.JoinHostPort(wanCloudIP, s3port), s3addr)
	defer func() {
		for _, p := range proxies {
			p.stop()
		}
	}()
	if conf.Prefault > 0 {
		prefault(conf.Prefault)
	}
	fmt.Printf("WAN-READY http://%s %s\n", conf.Listen, storeURL)
	cpu0, store0, faults0 := cpuTime(), childCPU("versitygw"), selfUsage().Minflt
	waitInputOrSignal()
	st := srv.Stats()
	ru := selfUsage()
	cs := wanCloudStats{Invocations: st.Invocations, Events: st.Events, Throttles: st.Throttles, MaxInFlight: st.MaxInFlight,
		CPU: cpuTime() - cpu0, StoreCPU: childCPU("versitygw") - store0, PeakRSS: ru.Maxrss << 10, Faults: ru.Minflt - faults0}
	entriesMu.Lock()
	if len(entries) > 0 {
		slices.Sort(entries)
		cs.Entries = [3]int64{entries[0], entries[len(entries)/2], entries[len(entries)-1]}
	}
	entriesMu.Unlock()
	for _, p := range proxies {
		p.stdin.Close()
		line, err := p.line("WAN-PROXY-STATS ")
		var up, down int64
		if err == nil {
			_, err = fmt.Sscan(line, &up, &down)
		}
		if err != nil {
			// Return, so that the deferred cleanup runs.
			fmt.Fprintf(os.Stderr, "wan-cloud: proxy: %v\n", err)
			return
		}
		cs.ProxyUp += up
		cs.ProxyDown += down
	}
	b, _ := json.Marshal(cs)
	fmt.Printf("WAN-STATS %s\n", b)
}

// childCPU returns the CPU time of this process's children named comm,
// from /proc.
func childCPU(comm string) time.Duration {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self := strconv.Itoa(os.Getpid())
	var total time.Duration
	for _, d := range dirs {
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime stime: fields 14 and 15.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || !strings.HasSuffix(string(b[:i]), "("+comm) {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 || f[1] != self {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * time.Second / clockTicks
	}
	return total
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on Linux.
const clockTicks = 100

// wanProxies is how many processes share the proxy's port (SO_REUSEPORT):
// each holds two sockets per connection, and without CAP_SYS_RESOURCE a
// process cannot open more files than the hard limit (often 20,000 or
// less).
const wanProxies = 3

// soReusePort is SO_REUSEPORT of Linux on x86 and arm (package syscall
// lacks it on amd64); the scenario runs on Linux only.
const soReusePort = 0xf

// wanProxy is one process of the delaying proxy, from conf.Listen (shared)
// to conf.Lambda. It prints "WAN-PROXY-READY" once it listens, and when its
// input closes "WAN-PROXY-STATS <bytes up> <bytes down>".
func wanProxy(conf wanConf) {
	raiseFileLimit(1 << 20)
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", conf.Listen)
	if err != nil {
		log.Fatal(err)
	}
	p := newDelayProxy(ln, conf.Lambda, conf.RTT/2)
	go p.serve()
	fmt.Println("WAN-PROXY-READY")
	waitInputOrSignal()
	p.Close()
	fmt.Printf("WAN-PROXY-STATS %d %d\n", p.up.Load(), p.down.Load())
}

// wanDriver is the driver's process: it runs the job through the proxy and
// prints "WAN-OUTCOME <json>".
func wanDriver(conf wanConf) {
	exitOnEOF()
	raiseFileLimit(1 << 20)
	defer profileTo(os.Getenv("GOWREN_WAN_DRIVER_PROFILE"))()
	o, err := wanJob(conf)
	if err != nil {
		o.Error = err.Error()
	}
	b, _ := json.Marshal(o)
	fmt.Printf("WAN-OUTCOME %s\n", b)
}

// profileTo starts a CPU profile written to path, when path is not empty,
// and returns what stops it.
func profileTo(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

func wanJob(conf wanConf) (wanOutcome, error) {
	var o wanOutcome
	var invokes atomic.Int64
	client := wanClient(conf.Lambda, conf.Tasks, wanTimeout, &invokes)
	b := awslambda.New(client, wanFunction, &awslambda.Options{Concurrency: conf.Tasks, Timeout: wanTimeout})
	defer b.Close()
	if err := s3test.SetEnv(); err != nil { // the store's credentials
		return o, err
	}
	store, err := storage.Open(context.Background(), conf.Store)
	if err != nil {
		return o, err
	}
	defer store.Close()
	var st fanout.JobStats
	opts := fanout.Options{Concurrency: conf.Tasks, BatchSize: 1, Async: conf.Async, Tree: conf.Tree, Store: store, Logger: quiet,
		OnJobEnd: func(s fanout.JobStats) { st = s }}
	ex := fanout.NewExecutor(b, &opts)
	defer ex.Close()
	ms := make([]int, conf.Tasks)
	for i := range ms {
		ms[i] = int(conf.TaskTime / time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wanTimeout)
	defer cancel()
	tx0, err := txBytes(conf.Device)
	if err != nil {
		return o, err
	}
	// The device's count every 50 ms, to tell what was sent before all
	// the tasks ran.
	type sample struct {
		at time.Time
		tx int64
	}
	var samples []sample
	var samplerCPU time.Duration
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		// On a thread of its own, whose CPU time (a few hundred reads of
		// sysfs) is the bench's, not the driver's: it is taken off.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		t0 := threadCPU()
		defer func() { samplerCPU = threadCPU() - t0 }()
		f, err := os.Open(txBytesPath(conf.Device))
		if err != nil {
			return
		}
		defer f.Close()
		buf := make([]byte, 32)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case at := <-tick.C:
				// sysfs gives the current count at each read from 0.
				if n, err := f.ReadAt(buf, 0); n > 0 && (err == nil || errors.Is(err, io.EOF)) {
					if tx, err := strconv.ParseInt(strings.TrimSpace(string(buf[:n])), 10, 64); err == nil {
						samples = append(samples, sample{at, tx})
					}
				}
			}
		}
	}()
	start, cpu0 := time.Now(), cpuTime()
	out, err := fanout.Map(ctx, ex, wanSleep, ms)
	o.Makespan, o.CPU = time.Since(start), cpuTime()-cpu0
	close(stopSampling)
	<-sampled
	o.CPU -= samplerCPU
	tx1, txErr := txBytes(conf.Device)
	if err != nil {
		return o, err
	}
	if txErr != nil {
		return o, txErr
	}
	o.WireBytes = tx1 - tx0
	var last, first time.Time
	starts := make([]time.Duration, len(out))
	for i, ns := range out {
		starts[i] = time.Unix(0, ns).Sub(start)
		t := time.Unix(0, ns)
		if ns == 0 {
			return o, fmt.Errorf("task %d reported no start", i)
		}
		if t.After(last) {
			last = t
		}
		if end := t.Add(conf.TaskTime); first.IsZero() || end.Before(first) {
			first = end
		}
	}
	o.AllRunning, o.FirstEnd = last.Sub(start), first.Sub(start)
	o.Start = start.UnixNano()
	slices.Sort(starts)
	o.FirstStart, o.HalfRunning = starts[0], starts[len(starts)/2]
	// The first sample at or after the last start.
	o.WireBytesToAllRunning = o.WireBytes
	for _, s := range samples {
		if !s.at.Before(last) {
			o.WireBytesToAllRunning = s.tx - tx0
			break
		}
	}
	o.Invocations, o.JobInvocations = int(invokes.Load()), st.Invocations-st.ViaTree+st.Invokers
	o.Throttles, o.Retries, o.JobBytes = st.Throttles, st.Retries, st.BytesSent
	o.StoreRequests = st.StoreReads + st.StoreWrites + st.StoreLists + st.StoreDeletes
	o.StoreLists, o.StoreReads = st.StoreLists, st.StoreReads
	return o, nil
}

// txBytes reads the bytes dev has sent, from this network namespace's
// sysfs (ip netns exec mounts the namespace's own).
func txBytesPath(dev string) string { return "/sys/class/net/" + dev + "/statistics/tx_bytes" }

// threadCPU returns the CPU time of the calling thread (RUSAGE_THREAD).
func threadCPU() time.Duration {
	const rusageThread = 1
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func txBytes(dev string) (int64, error) {
	b, err := os.ReadFile(txBytesPath(dev))
	if err != nil {
		return 0, fmt.Errorf("bytes sent by %s: %w", dev, err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// parseTrees parses -wantrees: fan-outs, comma-separated, each 0 or at
// least 2.
func parseTrees(list string) ([]int, error) {
	var trees []int
	for f := range strings.SplitSeq(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n == 1 {
			return nil, fmt.Errorf("-wantrees: %q is not a fan-out: want 0 (no tree) or a whole number of at least 2", f)
		}
		trees = append(trees, n)
	}
	return trees, nil
}

// prefault gives the emulated cloud its memory before the job, as a
// platform's environments are given theirs. Ten thousand environments in
// one process otherwise fault in a page of fresh memory for every 4 KiB of
// goroutine stack, connection buffer and heap they first touch: about
// 300,000 faults in the job, at some 20 us each on a 2-core VM, 60% of the
// process's CPU (990 us per task without, 360 us with), spent on two cores
// where a platform spends it in each environment's own. It touches n
// bytes of heap and frees them, and keeps the runtime from collecting or
// returning memory to the kernel below twice n (GOGC off, memory limit
// 2n), so the job's stacks and objects reuse those pages.
func prefault(n int64) {
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(2 * n)
	const chunk = 1 << 20
	hold := make([][]byte, 0, n/chunk)
	for range n / chunk {
		b := make([]byte, chunk)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		hold = append(hold, b)
	}
	runtime.KeepAlive(hold)
	hold = nil
	runtime.GC()
}
