// Command flick is the whole of Flick in one binary: the daemon ('flick
// daemon'), the client commands that talk to it, and the hidden roles of the
// processes beside a container: its monitor (monitor.RunRole), its init and
// exec (runtime.RunRole). A build by make embeds lean binaries of the
// monitor and the init, cmd/flick-monitor and cmd/flick-init, which the
// daemon runs instead (internal/helper).
//
// The runtime's cgroup-aware GOMAXPROCS reads /proc/self/cgroup, mountinfo
// and the CPU quota at every process start (about 1.7 ms of CPU here, in
// every CLI call, monitor and init) and again periodically. Flick's
// processes are the engine, not a workload under a CPU quota; its helpers
// run inside containers whose quota is the app's.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"context"
	"os"

	"github.com/flick-edge/flick/internal/cli"
	"github.com/flick-edge/flick/internal/monitor"
	"github.com/flick-edge/flick/internal/runtime"
)

// Set by the linker: -X main.version=... -X main.commit=...
var (
	version = "dev"
	commit  = ""
)

func main() {
	monitor.RunRole(os.Args)
	runtime.RunRole(os.Args)
	os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, cli.Build{Version: version, GitCommit: commit}))
}
