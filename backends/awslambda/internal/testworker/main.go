// Command testworker is the worker binary of the awslambda tests: a gowren
// program deployed as a Lambda function. It serves the functions of
// backendtest and testfuncs through the awslambda runtime (fanout.Init).
//
// With GOWREN_TEST_RAW=1 in its environment it serves a raw handler instead,
// still through aws-lambda-go's runtime loop, so that tests of the loopback
// Lambda server control what the function does: the event is
// {"op":OP,"arg":N,"path":P} with OP one of echo (reply with the event),
// error (return an error), panic, exit (exit with status N), sleep (N ms,
// ignoring the context), wait (until the context ends), hold (write a line
// to the FIFO at P, then wait), big (a reply of N bytes),
// deadline (the milliseconds left), stop (SIGSTOP itself), log (a line to
// stdout and N numbered lines to stderr, then reply with the event) and arn
// (reply with the invoked function's ARN, as the runtime got it). With
// GOWREN_TEST_INIT=error it reports an init error to the Runtime API and
// exits, as a custom runtime whose initialisation failed does.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	_ "github.com/gowren/gowren/backends/awslambda"
	_ "github.com/gowren/gowren/backends/awslambda/internal/testfuncs"
	_ "github.com/gowren/gowren/backends/backendtest"
	"github.com/gowren/gowren/fanout"
)

func main() {
	if os.Getenv("GOWREN_TEST_INIT") == "error" {
		initError()
	}
	if os.Getenv("GOWREN_TEST_RAW") == "1" {
		lambda.Start(rawHandler{}) // a lambda.Handler: bytes in, bytes out
	}
	fanout.Init()
	fmt.Fprintln(os.Stderr, "testworker: not started as a Lambda worker (AWS_LAMBDA_RUNTIME_API is not set)")
	os.Exit(2)
}

func initError() {
	url := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/init/error"
	body := `{"errorType":"Test.InitFailed","errorMessage":"testworker: init failed on purpose"}`
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err == nil {
		req.Header.Set("Lambda-Runtime-Function-Error-Type", "Test.InitFailed")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	os.Exit(1)
}

type rawHandler struct{}

func (rawHandler) Invoke(ctx context.Context, event []byte) ([]byte, error) {
	var ev struct {
		Op   string `json:"op"`
		Arg  int    `json:"arg"`
		Path string `json:"path"`
	}
	if err := json.Unmarshal(event, &ev); err != nil {
		return nil, fmt.Errorf("testworker: event %q: %w", event, err)
	}
	switch ev.Op {
	case "echo":
		return event, nil
	case "error":
		return nil, errors.New("testworker: failed on purpose")
	case "panic":
		panic("testworker: panic on purpose")
	case "exit":
		os.Exit(ev.Arg)
	case "sleep":
		time.Sleep(time.Duration(ev.Arg) * time.Millisecond)
		return event, nil
	case "wait":
		<-ctx.Done()
		return json.Marshal(ctx.Err().Error())
	case "hold":
		// Say we run by writing a line to the FIFO at path, then wait.
		f, err := os.OpenFile(ev.Path, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(f, "%d\n", os.Getpid())
		f.Close()
		<-ctx.Done()
		return json.Marshal(ctx.Err().Error())
	case "big":
		return json.Marshal(strings.Repeat("b", max(ev.Arg-2, 0)))
	case "deadline":
		dl, ok := ctx.Deadline()
		if !ok {
			return []byte("-1"), nil
		}
		return json.Marshal(time.Until(dl).Milliseconds())
	case "log":
		fmt.Println("testworker: a line to stdout")
		for i := range ev.Arg {
			fmt.Fprintf(os.Stderr, "testworker: line %d to stderr\n", i)
		}
		return event, nil
	case "arn":
		lc, ok := lambdacontext.FromContext(ctx)
		if !ok {
			return nil, errors.New("testworker: no Lambda context")
		}
		return json.Marshal(lc.InvokedFunctionArn)
	case "stop":
		// The signal may take effect a little later: wait for it.
		_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		select {}
	}
	return nil, fmt.Errorf("testworker: unknown op %q", ev.Op)
}
