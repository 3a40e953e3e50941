// Command flick-helper is the part of Flick that runs beside each container:
// its monitor (__shim) and its init (__init), and nothing else. It links
// only what those roles need, so that a monitor, which lives as long as its
// container, costs a few MiB and not the whole engine's pages. make builds
// it first and embeds it in bin/flick (internal/helper); it is not shipped
// on its own.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"fmt"
	"os"

	"github.com/flick-edge/flick/internal/runtime"
)

func main() {
	runtime.RunRole(os.Args)
	fmt.Fprintln(os.Stderr, "flick-helper: the container helper embedded in flick; the daemon runs it, people run flick")
	os.Exit(2)
}
