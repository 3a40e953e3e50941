// Command flick-monitor is the process that sits beside each running
// container for as long as it runs (internal/monitor): it holds the
// container's stdio, writes its log, reaps it and restarts it. There is one
// per container, so it links nothing else: a few MiB resident, most of them
// its own code. make builds it first and embeds it in bin/flick
// (internal/helper); it is not shipped on its own.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"fmt"
	"os"

	"github.com/flick-edge/flick/internal/monitor"
)

func main() {
	monitor.RunRole(os.Args)
	fmt.Fprintln(os.Stderr, "flick-monitor: the container monitor embedded in flick; the daemon runs it, people run flick")
	os.Exit(2)
}
