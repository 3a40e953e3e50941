//go:build !flickhelper

package main

import (
	"github.com/flick-edge/flick/internal/monitor"
	"github.com/flick-edge/flick/internal/runtime"
)

// runRoles runs a container's monitor, init or exec when this build is
// asked to be one: a build without embedded helpers (go build, go test)
// runs them itself. It returns if args name none.
func runRoles(args []string) {
	monitor.RunRole(args)
	runtime.RunRole(args)
}
