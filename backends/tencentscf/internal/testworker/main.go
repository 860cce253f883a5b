// Command testworker is the worker program of the tencentscf tests: the
// backendtest conformance functions and testfuncs, served through the SCF
// runtime when SCF's Go runtime (or scftest) starts it.
package main

import (
	"fmt"
	"os"

	_ "github.com/gowren/gowren/backends/backendtest"
	_ "github.com/gowren/gowren/backends/tencentscf"
	_ "github.com/gowren/gowren/backends/tencentscf/internal/testfuncs"
	"github.com/gowren/gowren/fanout"
)

func main() {
	fanout.Init() // serves when started as an SCF worker; never returns then
	fmt.Fprintln(os.Stderr, "testworker: not started as an SCF worker (set _LAMBDA_SERVER_PORT to serve)")
	os.Exit(2)
}
