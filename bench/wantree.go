package main

import (
	"errors"

	"github.com/gowren/gowren/fanout"
)

// errNoTree says that this gowren has no invoker tree yet.
var errNoTree = errors.New("fanout.Options.Tree is not in this version of gowren")

// treeSupported reports whether a job can run with fan-out tree.
func treeSupported(tree int) error {
	if tree != 0 {
		return errNoTree
	}
	return nil
}

// setTree sets the invoker tree's fan-out on o.
func setTree(o *fanout.Options, tree int) error { return treeSupported(tree) }
