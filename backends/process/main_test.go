package process_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/process"
	"github.com/gowren/gowren/fanout"
)

const (
	// modeEnv makes a test worker misbehave before serving (see TestMain).
	modeEnv = "PROCESS_TEST_MODE"
	// handlerEnv set to "fanout" makes a test worker serve fanout.Handle
	// (for the conformance suite) instead of testHandler.
	handlerEnv = "PROCESS_TEST_HANDLER"
)

// TestMain is what fanout.Init does in a real program: in a process started
// as a worker it serves and exits; otherwise it runs the tests, then checks
// that no goroutine and no child process is left.
func TestMain(m *testing.M) {
	if rt, ok := backends.DetectRuntime(); ok {
		switch os.Getenv(modeEnv) {
		case "no-serve":
			fmt.Fprintln(os.Stderr, "test worker: not serving")
			os.Exit(3)
		case "stall":
			fmt.Fprintln(os.Stderr, "test worker: stalling")
			time.Sleep(time.Hour) // a worker stuck in its init
		}
		if os.Getenv(handlerEnv) == "fanout" {
			fanout.Init() // serves the conformance suite's functions; never returns
		}
		if err := rt.Serve(testHandler); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(modeEnv) == "driver" {
		os.Exit(runDriver())
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
		if kids := children(); len(kids) > 0 {
			fmt.Fprintln(os.Stderr, "child processes left behind:", kids)
			code = 1
		}
	}
	os.Exit(code)
}

// children lists this process's child processes, zombies included, as
// "pid (name) state".
func children() []string {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	self := strconv.Itoa(os.Getpid())
	var kids []string
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		if fields := strings.Fields(s[i+1:]); len(fields) > 1 && fields[1] == self {
			kids = append(kids, s[:i+1]+" "+fields[0])
		}
	}
	return kids
}

// runDriver is a driver that dies holding a worker busy: it starts a worker
// on "hold-open:FIFO", which writes its pid to FIFO and keeps it open, and
// kills itself once the invocation is under way.
func runDriver() int {
	b := process.New(&process.Options{Workers: 1, CancelGrace: 100 * time.Millisecond})
	fifo := os.Getenv("PROCESS_TEST_FIFO")
	go func() {
		_, err := b.Invoke(context.Background(), []byte("hold-open:"+fifo))
		fmt.Fprintln(os.Stderr, "driver: invoke returned:", err)
		os.Exit(1)
	}()
	// The test tells us, by writing to our stdin, that the worker runs.
	var buf [1]byte
	_, _ = os.Stdin.Read(buf[:])
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// testHandler interprets tiny commands "name" or "name:arg".
func testHandler(ctx context.Context, payload []byte) []byte {
	cmd, arg, _ := bytes.Cut(payload, []byte(":"))
	switch string(cmd) {
	case "echo":
		return arg
	case "pid":
		return []byte(strconv.Itoa(os.Getpid()))
	case "print": // a line on stdout and one on stderr
		fmt.Printf("%s (stdout)\n", arg)
		fmt.Fprintf(os.Stderr, "%s (stderr)\n", arg)
		return []byte("printed")
	case "print-partial": // no newline at the end, then exit
		fmt.Fprintf(os.Stderr, "%s", arg)
		os.Exit(0)
	case "flood": // N lines of 100 bytes on stdout
		n, _ := strconv.Atoi(string(arg))
		line := bytes.Repeat([]byte("x"), 99)
		line = append(line, '\n')
		for range n {
			os.Stdout.Write(line)
		}
		return []byte("flooded")
	case "long-line": // one line of N bytes on stdout
		n, _ := strconv.Atoi(string(arg))
		os.Stdout.Write(append(bytes.Repeat([]byte("y"), n), '\n'))
		return []byte("printed")
	case "task": // task:I:COMMAND: run COMMAND as task I; reply its reply, then "|" and its captured lines
		i, rest, _ := bytes.Cut(arg, []byte(":"))
		index, _ := strconv.Atoi(string(i))
		out := backends.TaskStarted(ctx, index)
		reply := testHandler(ctx, rest)
		var lines []string
		for _, l := range out.End() {
			lines = append(lines, fmt.Sprintf("%s:%s:%v", l.Stream, l.Text, l.Tasks))
		}
		return fmt.Appendf(reply, "|%s", strings.Join(lines, ";"))
	case "overlap": // overlap:TEXT: tasks 3 and 4 run at once while TEXT is printed; reply what task 4 got
		out3 := backends.TaskStarted(ctx, 3)
		out4 := backends.TaskStarted(ctx, 4)
		fmt.Println(string(arg))
		out3.End()
		var lines []string
		for _, l := range out4.End() {
			lines = append(lines, fmt.Sprintf("%s:%s:%v", l.Stream, l.Text, l.Tasks))
		}
		return []byte(strings.Join(lines, ";"))
	case "fatal":
		log.Fatalf("test worker: fatal %s", arg)
	case "flood-exit": // N numbered lines on stdout and stderr each, then exit at once
		n, _ := strconv.Atoi(string(arg))
		for i := range n {
			fmt.Printf("out %d\n", i)
			fmt.Fprintf(os.Stderr, "err %d\n", i)
		}
		os.Exit(4)
	case "exit":
		code, _ := strconv.Atoi(string(arg))
		fmt.Fprintf(os.Stderr, "test worker: exiting with %d\n", code)
		os.Exit(code)
	case "last-kill": // a line on stderr, then SIGKILL
		fmt.Fprintf(os.Stderr, "test worker: %s\n", arg)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case "kill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case "panic": // in a goroutine: nothing recovers it
		go func() { panic("test worker panic") }()
		select {}
	case "handler-panic": // the Handler itself panics; fanout.Handle never does
		panic("handler panic")
	case "hold": // tell FIFO we run, then wait for cancellation
		signal(string(arg))
		<-ctx.Done()
		return []byte("cancelled: " + ctx.Err().Error())
	case "hang": // tell FIFO we run, then ignore cancellation
		signal(string(arg))
		select {}
	case "hold-open": // like hold, but keep FIFO open until the process ends
		f, err := os.OpenFile(string(arg), os.O_WRONLY, 0)
		if err != nil {
			return []byte(err.Error())
		}
		fmt.Fprintf(f, "%d\n", os.Getpid())
		<-ctx.Done()
		select {}
	case "big":
		n, _ := strconv.Atoi(string(arg))
		return bytes.Repeat([]byte("b"), n)
	case "deadline":
		d, ok := ctx.Deadline()
		if !ok {
			return []byte("none")
		}
		return []byte(strconv.FormatInt(d.UnixNano(), 10))
	case "env":
		return []byte(os.Getenv("GOWREN_PROCESS_WORKER") + "|" + os.Getenv("GOWREN_PROCESS_GRACE") + "|" +
			os.Getenv("GOWREN_PROCESS_LIMITS") + "|" + os.Getenv("GOWREN_PROCESS_CAPTURE") + "|" + os.Getenv("PROCESS_TEST_EXTRA"))
	case "cloexec": // fd:inherited for fds 3 to 9: are the protocol and capture files hidden from programs a task starts?
		var out []string
		for fd := 3; fd <= 9; fd++ {
			flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
			out = append(out, fmt.Sprintf("%d:%v", fd, errno == 0 && flags&syscall.FD_CLOEXEC == 0))
		}
		return []byte(strings.Join(out, " "))
	case "parts": // send N parts, then reply
		if !backends.CanSendParts(ctx) {
			return []byte("cannot send parts")
		}
		n, _ := strconv.Atoi(string(arg))
		for i := range n {
			if err := backends.SendPart(ctx, fmt.Appendf(nil, "part %d", i)); err != nil {
				return []byte(err.Error())
			}
		}
		return []byte("reply")
	case "part-size": // send one part of N bytes; say whether it was refused as too large
		n, _ := strconv.Atoi(string(arg))
		err := backends.SendPart(ctx, bytes.Repeat([]byte("p"), n))
		return fmt.Appendf(nil, "sent: %v, too large: %v", err == nil, errors.Is(err, backends.ErrPayloadTooLarge))
	case "part-hold": // send a part, tell FIFO we run, wait for cancellation, reply
		if err := backends.SendPart(ctx, []byte("early")); err != nil {
			return []byte(err.Error())
		}
		signal(string(arg))
		<-ctx.Done()
		return []byte("late reply")
	case "part-after": // a goroutine sends parts until SendPart fails; reply after its first
		first := make(chan struct{})
		partsAfter.Go(func() {
			for i := 0; ; i++ {
				err := backends.SendPart(ctx, []byte("tick"))
				if i == 0 {
					close(first)
				}
				if err != nil {
					partAfterErr = err
					return
				}
			}
		})
		<-first
		return []byte("reply")
	case "part-after-result": // the error that ended part-after's goroutine
		partsAfter.Wait()
		return []byte(fmt.Sprint(partAfterErr))
	case "raw-part": // write the header of a part frame of SIZE bytes for request ID, no body
		id, size, _ := strings.Cut(string(arg), ":")
		// A frame header (see frame.go) of type 7, framePart.
		var h [16]byte
		h[0], h[1], h[2] = 'g', 'w', 7
		n, _ := strconv.ParseUint(size, 10, 32)
		binary.BigEndian.PutUint32(h[4:8], uint32(n))
		i, _ := strconv.ParseUint(id, 10, 64)
		binary.BigEndian.PutUint64(h[8:16], i)
		f := os.NewFile(4, "replies")
		f.Write(h[:])
		<-ctx.Done()
		return nil
	case "abandon": // give up on a task that keeps running, as fanout.Handle does, then end as MODE says
		mode, path, _ := strings.Cut(string(arg), ":")
		if mode == "cancelled" { // only once the driver cancelled
			signal(path)
			<-ctx.Done()
		}
		backends.NoteAbandoned(1)
		go func() { select {} }() // the abandoned task, still running
		switch mode {
		case "toolarge":
			return bytes.Repeat([]byte("b"), 1<<20)
		case "panic":
			panic("handler panic after abandoning a task")
		}
		return []byte("abandoned")
	case "hold-note": // like hold, and tell FIFO again once cancelled
		signal(string(arg))
		<-ctx.Done()
		signal(string(arg))
		return []byte("cancelled: " + ctx.Err().Error())
	case "call": // "call:FIFO:PAYLOAD": tell FIFO we run (if named), invoke PAYLOAD through the invoker, describe the answer
		note, child, _ := bytes.Cut(arg, []byte(":"))
		if len(note) > 0 {
			signal(string(note))
		}
		inv := backends.InvokerOf(ctx)
		if inv == nil {
			return []byte("no invoker")
		}
		reply, err := inv.Invoke(ctx, child)
		return describe(reply, err)
	case "call-big": // "call-big:N": invoke "echo:" and N bytes
		n, _ := strconv.Atoi(string(arg))
		reply, err := backends.InvokerOf(ctx).Invoke(ctx, append([]byte("echo:"), bytes.Repeat([]byte("e"), n)...))
		return describe(reply, err)
	case "calls": // "calls:N": invoke "echo:I" for I in 0..N-1 at once; reply with the answers, comma separated
		n, _ := strconv.Atoi(string(arg))
		answers := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				reply, err := backends.InvokerOf(ctx).Invoke(ctx, fmt.Appendf(nil, "echo:%d", i))
				answers[i] = string(describe(reply, err))
			})
		}
		wg.Wait()
		return []byte(strings.Join(answers, ","))
	case "call-cancel": // "call-cancel:FIFO": invoke "hold-note:FIFO", cancel the call once the child runs, wait till it is cancelled
		f, err := os.OpenFile(string(arg), os.O_RDWR, 0) // the test does not read it meanwhile
		if err != nil {
			return []byte(err.Error())
		}
		defer f.Close()
		r := bufio.NewReader(f)
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan []byte, 1)
		go func() {
			reply, err := backends.InvokerOf(ctx).Invoke(cctx, []byte("hold-note:"+string(arg)))
			done <- describe(reply, err)
		}()
		started, _ := r.ReadString('\n')
		cancel()
		answer := <-done
		cancelled, _ := r.ReadString('\n')
		return fmt.Appendf(nil, "child %s started, %s, child %s saw cancel",
			strings.TrimSpace(started), answer, strings.TrimSpace(cancelled))
	case "call-later": // "call-later:IN:OUT": return; later, once a line comes on IN, invoke "echo:late" and write what came back to OUT
		in, out, _ := strings.Cut(string(arg), ":")
		go func() {
			f, err := os.OpenFile(in, os.O_RDWR, 0)
			if err != nil {
				fmt.Fprintln(os.Stderr, "test worker:", err)
				return
			}
			defer f.Close()
			_, _ = bufio.NewReader(f).ReadString('\n')
			reply, err := backends.InvokerOf(ctx).Invoke(context.Background(), []byte("echo:late"))
			o, err2 := os.OpenFile(out, os.O_WRONLY, 0)
			if err2 != nil {
				fmt.Fprintln(os.Stderr, "test worker:", err2)
				return
			}
			defer o.Close()
			fmt.Fprintf(o, "%s\n", describe(reply, err))
		}()
		return []byte("returned")
	case "invoker": // what the invoker is
		inv := backends.InvokerOf(ctx)
		_, async := inv.(backends.AsyncBackend)
		_, stream := inv.(backends.StreamBackend)
		return fmt.Appendf(nil, "%+v async=%v stream=%v close=%v", inv.Limits(), async, stream, inv.Close())
	case "garbage": // write a bad frame onto the reply pipe
		f := os.NewFile(4, "replies")
		f.Write([]byte("this is not a frame at all"))
		<-ctx.Done()
		return nil
	}
	return []byte("unknown command " + string(cmd))
}

// What part-after's goroutine saw, for part-after-result.
var (
	partsAfter   sync.WaitGroup
	partAfterErr error
)

// describe tells a test what a reverse call returned: "reply R", or "error
// E" followed by the kinds errors.Is finds in E.
func describe(reply []byte, err error) []byte {
	if err == nil {
		return append([]byte("reply "), reply...)
	}
	s := "error " + err.Error()
	for _, k := range []struct {
		name string
		err  error
	}{
		{"canceled", context.Canceled},
		{"deadline", context.DeadlineExceeded},
		{"throttled", backends.ErrThrottled},
		{"lost", backends.ErrWorkerLost},
		{"toolarge", backends.ErrPayloadTooLarge},
		{"closed", backends.ErrClosed},
	} {
		if errors.Is(err, k.err) {
			s += " [" + k.name + "]"
		}
	}
	return []byte(s)
}

// signal writes this process's pid as a line to the FIFO at path.
func signal(path string) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test worker:", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%d\n", os.Getpid())
}
