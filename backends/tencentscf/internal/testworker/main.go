// Command testworker is the worker program of the tencentscf tests: the
// backendtest conformance functions and testfuncs, served through the SCF
// runtime when SCF's Go runtime (or scftest) starts it.
//
// With TESTWORKER_FOREIGN set it plays a program that is not a gowren
// worker, deployed under a gowren function's name: it serves scf-go-lib's
// runtime with a handler of its own, which answers every event after
// printing a line, by returning an error (TESTWORKER_FOREIGN=error), by
// panicking (panic) or with the string "ok" (echo).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/tencentyun/scf-go-lib/cloudfunction"

	_ "github.com/gowren/gowren/backends/backendtest"
	_ "github.com/gowren/gowren/backends/tencentscf"
	_ "github.com/gowren/gowren/backends/tencentscf/internal/testfuncs"
	"github.com/gowren/gowren/fanout"
)

func main() {
	if mode := os.Getenv("TESTWORKER_FOREIGN"); mode != "" {
		cloudfunction.Start(func(_ context.Context, _ json.RawMessage) (string, error) {
			fmt.Fprintf(os.Stderr, "foreign handler: %s mode\n", mode)
			switch mode {
			case "error":
				return "", errors.New("foreign handler: no such job")
			case "panic":
				panic("foreign handler panicked")
			}
			return "ok", nil
		})
		return
	}
	fanout.Init() // serves when started as an SCF worker; never returns then
	fmt.Fprintln(os.Stderr, "testworker: not started as an SCF worker (set _LAMBDA_SERVER_PORT to serve)")
	os.Exit(2)
}
