// Command flick is the whole of Flick in one binary: the daemon ('flick
// daemon') and the client commands that talk to it.
package main

import (
	"context"
	"os"

	"github.com/flick-edge/flick/internal/cli"
)

// Set by the linker: -X main.version=... -X main.commit=...
var (
	version = "dev"
	commit  = ""
)

func main() {
	os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, cli.Build{Version: version, GitCommit: commit}))
}
