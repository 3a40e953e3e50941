// Command flick is the whole of Flick in one binary: the daemon ('flick
// daemon') and the client commands that talk to it. A build by make embeds
// the container helpers, cmd/flick-monitor and cmd/flick-init
// (internal/helper), which the daemon installs and runs beside each
// container; a plain `go build` embeds none and runs their roles itself
// (roles.go).
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
	"runtime"

	"github.com/flick-edge/flick/internal/cli"
)

// Set by the linker: -X main.version=... -X main.commit=...
var (
	version = "dev"
	commit  = ""
)

func main() {
	// Nothing reads heap profiles (there is no pprof endpoint): sampling
	// would only cost the daemon its bucket table and records, about
	// 0.2 MiB resident after a pull and a few runs.
	runtime.MemProfileRate = 0
	runRoles(os.Args)
	os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, cli.Build{Version: version, GitCommit: commit}))
}
