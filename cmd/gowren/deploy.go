package main

import (
	"context"
	"fmt"
	"io"
)

// deployers are the deploy targets; each lives in a file of its own
// (deploy_lambda.go, deploy_scf.go).
var deployers = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{}

const deployUsage = `usage: gowren deploy <target> [flags] [PACKAGE]

targets:
  lambda   AWS Lambda (provided.al2023)
  scf      Tencent Cloud SCF (Go1 runtime)

Run 'gowren deploy <target> -h' for its flags.
`

func deploy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, deployUsage)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	d, ok := deployers[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "gowren deploy: unknown target %q\n\n%s", args[0], deployUsage)
		return errUsage
	}
	return d(ctx, args[1:], stdout, stderr)
}
