// Package cli is the flick command line: a thin layer of cobra commands over
// the daemon (package daemon) and the API client (package client). Exit codes
// and error hints are chosen here, in one place.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/flick-edge/flick/internal/client"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/spf13/cobra"
)

// Build is set by main from the linker.
type Build struct {
	Version   string
	GitCommit string
}

type app struct {
	build  Build
	host   string
	stdout io.Writer
	stderr io.Writer
}

func (a *app) client() (*client.Client, error) { return client.New(client.HostFromEnv(a.host)) }

// Run executes the command line args (without the program name) and returns
// the process exit code.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, build Build) int {
	a := &app{build: build, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "flick",
		Short: "Flick: a single-binary edge engine for IoT hubs",
		Long: `Flick runs Docker/OCI images on IoT gateways and turns device events into
short-lived sandboxed functions, forwarding results upstream through a durable
outbox. One binary: 'flick daemon' is the engine,
every other command talks to it over its unix socket (the Docker Engine API,
so the docker CLI works too: DOCKER_HOST=unix:///run/flick/flick.sock).`,
		Example: `  flick daemon &                       # start the engine on its defaults
  flick pull alpine                    # pull an image with progress bars
  flick run -d --name app -p 8080:80 --restart unless-stopped app:1.0
  flick images --json                  # list images for scripts
  flick fn deploy chime --wasm chime.wasm --on 'mqtt:home/+/button' --reply 'home/{1}/chime'
  DOCKER_HOST=unix:///run/flick/flick.sock docker images`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVarP(&a.host, "host", "H", "", "daemon socket to connect to (default $FLICK_HOST, else unix:///run/flick/flick.sock)")
	root.AddCommand(
		a.daemonCmd(),
		a.pullCmd(), a.imagesCmd(), a.rmiCmd(), a.tagCmd(), a.imageCmd(),
		a.systemCmd(), a.versionCmd(), a.infoCmd(), a.loginCmd(), a.logoutCmd(),
		a.fnCmd(), a.applyCmd(), a.eventsCmd(), a.routeCmd(), a.deltaCmd(),
		a.runCmd(), a.createCmd(), a.psCmd(), a.logsCmd(), a.statsCmd(), a.topCmd(), a.containerGroupCmd(), a.volumeCmd(), a.execCmd(),
	)
	root.AddCommand(a.containerCmds()...)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var es exitStatus
	if !errors.As(err, &es) {
		fmt.Fprintln(stderr, "Error:", err)
	}
	return ExitCode(err)
}

// Exit codes by error class.
const (
	ExitError       = 1
	ExitUsage       = 2
	ExitNotFound    = 3
	ExitConflict    = 4
	ExitUnavailable = 5
	ExitNoSpace     = 6
	ExitAuth        = 7
)

// ExitCode maps an error to the process exit code: the only such mapping.
func ExitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	var es exitStatus
	if errors.As(err, &es) {
		return int(es)
	}
	switch errdefs.ClassOf(err) {
	case errdefs.InvalidArgument:
		return ExitUsage
	case errdefs.NotFound:
		return ExitNotFound
	case errdefs.Conflict, errdefs.AlreadyExists:
		return ExitConflict
	case errdefs.Unavailable:
		return ExitUnavailable
	case errdefs.ResourceExhausted:
		return ExitNoSpace
	case errdefs.Unauthorized:
		return ExitAuth
	}
	return ExitError
}

type usageError struct{ error }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
