// Command noimport forgets to import backends/awslambda: Deploy refuses it.
package main

import "github.com/gowren/gowren/fanout"

func main() {
	fanout.Init()
}
