// Command noimport is a gowren program that forgets to import
// backends/tencentscf: on SCF it would never serve an invocation, so Build
// and Deploy refuse it.
package main

import "github.com/gowren/gowren/fanout"

func main() {
	fanout.Init()
}
