// Command flick-init is a container's init (internal/runtime): started by
// the container's monitor in new namespaces, it mounts the root, applies the
// sandbox and execs the app. It links only that, so that it starts in a
// third of flick's time and a waiting warm init costs little. make builds it
// first and embeds it in bin/flick (internal/helper); it is not shipped on
// its own.
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
	fmt.Fprintln(os.Stderr, "flick-init: the container init embedded in flick; a container's monitor runs it, people run flick")
	os.Exit(2)
}
