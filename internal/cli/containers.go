package cli

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/flick-edge/flick/internal/client"
	"github.com/flick-edge/flick/internal/errdefs"
	mcontainer "github.com/moby/moby/api/types/container"
	mnetwork "github.com/moby/moby/api/types/network"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type runFlags struct {
	detach, rm, readOnly, privileged, interactive, tty bool
	name, restart, network, memory, user, workdir      string
	entrypoint, hostname                               string
	cpus                                               float64
	pids                                               int64
	env, envFiles, volumes, ports, devices             []string
	capAdd, capDrop, addHosts, dns, secOpts, labels    []string
	logOpts, tmpfs, ulimits                            []string
}

func (f *runFlags) add(fl *pflag.FlagSet) {
	fl.BoolVarP(&f.detach, "detach", "d", false, "run in the background and print the container ID")
	fl.BoolVar(&f.rm, "rm", false, "remove the container when it exits")
	fl.StringVar(&f.name, "name", "", "container name (default: a generated one)")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "environment variable KEY=VALUE (repeatable; KEY alone takes it from this shell)")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, "file of KEY=VALUE lines")
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, "bind mount HOST-PATH:CTR-PATH[:ro], named volume NAME:CTR-PATH[:ro], or an anonymous volume CTR-PATH")
	fl.StringArrayVar(&f.tmpfs, "tmpfs", nil, "mount a tmpfs CTR-PATH[:OPTIONS], e.g. /run:size=16m (RAM, no flash wear)")
	fl.StringArrayVar(&f.ulimits, "ulimit", nil, "resource limit NAME=SOFT[:HARD], e.g. nofile=1024:2048")
	fl.StringArrayVarP(&f.ports, "publish", "p", nil, "publish a port [HOST-IP:][HOST-PORT:]CTR-PORT[/udp] on the host (bridge network)")
	fl.StringVar(&f.restart, "restart", "no", "restart policy: no, always, unless-stopped, on-failure[:N]")
	fl.StringVar(&f.network, "network", "", "network: bridge (the default: NAT, -p), host, none")
	fl.StringVarP(&f.memory, "memory", "m", "", "memory limit, e.g. 64m")
	fl.Float64Var(&f.cpus, "cpus", 0, "CPU limit, e.g. 0.5")
	fl.Int64Var(&f.pids, "pids-limit", 0, "process limit (fork bombs stop here)")
	fl.BoolVar(&f.readOnly, "read-only", false, "mount the root filesystem read-only")
	fl.StringVarP(&f.user, "user", "u", "", "user[:group] or uid[:gid] to run as")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "override the image's entrypoint")
	fl.StringArrayVar(&f.devices, "device", nil, "expose a host device, e.g. /dev/ttyUSB0[:/dev/ttyUSB0]")
	fl.BoolVar(&f.privileged, "privileged", false, "give the container every capability and device access (explicit; off by default)")
	fl.StringArrayVar(&f.capAdd, "cap-add", nil, "add a Linux capability (e.g. NET_ADMIN, or ALL)")
	fl.StringArrayVar(&f.capDrop, "cap-drop", nil, "drop a Linux capability (e.g. NET_RAW, or ALL)")
	fl.StringVarP(&f.hostname, "hostname", "h", "", "container host name")
	fl.StringArrayVar(&f.addHosts, "add-host", nil, "add a line to /etc/hosts (host:ip)")
	fl.StringArrayVar(&f.dns, "dns", nil, "DNS server for /etc/resolv.conf")
	fl.StringArrayVar(&f.secOpts, "security-opt", nil, "security option (seccomp=unconfined)")
	fl.StringArrayVarP(&f.labels, "label", "l", nil, "label KEY=VALUE")
	fl.StringArrayVar(&f.logOpts, "log-opt", nil, "log option: max-size=10m, max-file=3 (the log is rotated, never unbounded)")
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "keep stdin open and attach it")
	fl.BoolVarP(&f.tty, "tty", "t", false, "allocate a pseudo-TTY")
}

func (f *runFlags) request(image string, cmd []string) (mcontainer.CreateRequest, error) {
	cfg := &mcontainer.Config{Image: image, Cmd: cmd, User: f.user, WorkingDir: f.workdir, Hostname: f.hostname,
		Tty: f.tty, OpenStdin: f.interactive, StdinOnce: f.interactive && !f.detach, AttachStdin: f.interactive && !f.detach,
		AttachStdout: !f.detach, AttachStderr: !f.detach}
	if f.entrypoint != "" {
		cfg.Entrypoint = []string{f.entrypoint}
	}
	for _, p := range f.envFiles {
		b, err := os.ReadFile(p)
		if err != nil {
			return mcontainer.CreateRequest{}, errdefs.NewInvalidArgument(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			l = strings.TrimSpace(l)
			if l != "" && !strings.HasPrefix(l, "#") {
				cfg.Env = append(cfg.Env, expandEnv(l))
			}
		}
	}
	for _, e := range f.env {
		cfg.Env = append(cfg.Env, expandEnv(e))
	}
	if len(f.labels) > 0 {
		cfg.Labels = map[string]string{}
		for _, l := range f.labels {
			k, v, _ := strings.Cut(l, "=")
			cfg.Labels[k] = v
		}
	}
	hc := &mcontainer.HostConfig{AutoRemove: f.rm, NetworkMode: mcontainer.NetworkMode(f.network),
		ReadonlyRootfs: f.readOnly, Privileged: f.privileged, CapAdd: f.capAdd, CapDrop: f.capDrop, ExtraHosts: f.addHosts, SecurityOpt: f.secOpts}
	for _, v := range f.volumes {
		if strings.HasPrefix(v, "/") && !strings.Contains(v, ":") {
			// A container path alone: an anonymous volume, as docker's CLI
			// sends it.
			if cfg.Volumes == nil {
				cfg.Volumes = map[string]struct{}{}
			}
			cfg.Volumes[v] = struct{}{}
			continue
		}
		hc.Binds = append(hc.Binds, v)
	}
	for _, t := range f.tmpfs {
		if hc.Tmpfs == nil {
			hc.Tmpfs = map[string]string{}
		}
		dst, opts, _ := strings.Cut(t, ":")
		hc.Tmpfs[dst] = opts
	}
	for _, u := range f.ulimits {
		l, err := units.ParseUlimit(u)
		if err != nil {
			return mcontainer.CreateRequest{}, usageError{fmt.Errorf("invalid --ulimit %q: %v", u, err)}
		}
		hc.Ulimits = append(hc.Ulimits, l)
	}
	if f.tty {
		// The terminal starts at this size, so the app never sees 0x0
		// (Docker's CLI sends the same).
		if h, w, ok := terminalSize(os.Stdout); ok {
			hc.ConsoleSize = [2]uint{uint(h), uint(w)}
		}
	}
	for _, o := range f.logOpts {
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			return mcontainer.CreateRequest{}, usageError{fmt.Errorf("invalid --log-opt %q: want KEY=VALUE", o)}
		}
		if hc.LogConfig.Config == nil {
			hc.LogConfig.Config = map[string]string{}
		}
		hc.LogConfig.Config[k] = v
	}
	if f.memory != "" {
		n, err := units.RAMInBytes(f.memory)
		if err != nil {
			return mcontainer.CreateRequest{}, usageError{fmt.Errorf("invalid --memory %q: %v", f.memory, err)}
		}
		hc.Memory = n
	}
	hc.NanoCPUs = int64(math.Round(f.cpus * 1e9))
	if f.pids != 0 {
		hc.PidsLimit = &f.pids
	}
	name, max, _ := strings.Cut(f.restart, ":")
	hc.RestartPolicy.Name = mcontainer.RestartPolicyMode(name)
	if max != "" {
		n, err := strconv.Atoi(max)
		if err != nil || name != "on-failure" {
			return mcontainer.CreateRequest{}, usageError{fmt.Errorf("invalid restart policy %q: a count is only for on-failure:N", f.restart)}
		}
		hc.RestartPolicy.MaximumRetryCount = n
	}
	for _, d := range f.devices {
		host, ctr, _ := strings.Cut(d, ":")
		ctr, _, _ = strings.Cut(ctr, ":")
		hc.Devices = append(hc.Devices, mcontainer.DeviceMapping{PathOnHost: host, PathInContainer: ctr, CgroupPermissions: "rwm"})
	}
	for _, d := range f.dns {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return mcontainer.CreateRequest{}, usageError{fmt.Errorf("invalid --dns %q", d)}
		}
		hc.DNS = append(hc.DNS, a)
	}
	for _, p := range f.ports {
		if err := addPortBinding(hc, p); err != nil {
			return mcontainer.CreateRequest{}, err
		}
	}
	return mcontainer.CreateRequest{Config: cfg, HostConfig: hc}, nil
}

func expandEnv(kv string) string {
	if strings.Contains(kv, "=") {
		return kv
	}
	if v, ok := os.LookupEnv(kv); ok {
		return kv + "=" + v
	}
	return kv
}

func (a *app) runCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and start a container",
		Long: `Run a container from a pulled image, with Docker's flags and defaults: private
pid, mount, uts, ipc and network namespaces; Docker's capability set, seccomp
profile and masked /proc paths; an overlay root on the image's layers with a
writable layer of its own. Output goes to a size-capped, rotated log.
Without -d, 'flick run' streams the output and exits with the container's
status. The monitor process holds the container, so the daemon can restart
without stopping it.`,
		Example: `  flick run --rm alpine echo hello
  flick run -d --name sensor --restart unless-stopped --memory 64m --pids-limit 64 \
      --device /dev/ttyUSB0 -v /srv/sensor:/data registry.lan:5000/sensor:2.1
  flick run --network host --read-only -e MODE=prod app:1.0`,
		Args: minArgs(1, "an image, e.g. 'flick run alpine echo hi'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.detach && (f.tty || f.interactive) && f.rm {
				return usageError{fmt.Errorf("-d with -i/-t and --rm: nothing could ever attach; drop --rm or -d")}
			}
			c, id, err := a.create(cmd, &f, args)
			if err != nil {
				return err
			}
			if !f.detach {
				return a.runAttached(cmd, c, id, f)
			}
			if err := c.JSON(cmd.Context(), http.MethodPost, "/containers/"+id+"/start", nil, nil, nil); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, id)
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	// -h is --hostname, as in docker run; help is --help only.
	cmd.Flags().Bool("help", false, "help for run")
	f.add(cmd.Flags())
	return cmd
}

// create asks the daemon for the container that f and args (IMAGE
// [COMMAND...]) describe and prints its warnings.
func (a *app) create(cmd *cobra.Command, f *runFlags, args []string) (*client.Client, string, error) {
	req, err := f.request(args[0], args[1:])
	if err != nil {
		return nil, "", err
	}
	c, err := a.client()
	if err != nil {
		return nil, "", err
	}
	var created mcontainer.CreateResponse
	q := url.Values{}
	if f.name != "" {
		q.Set("name", f.name)
	}
	if err := c.JSON(cmd.Context(), http.MethodPost, "/containers/create", q, req, &created); err != nil {
		return nil, "", err
	}
	for _, w := range created.Warnings {
		fmt.Fprintln(a.stderr, "WARNING:", w)
	}
	return c, created.ID, nil
}

func (a *app) createCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a container without starting it",
		Long: `Create a container as 'flick run' would (same flags), print its ID and leave
it stopped: 'flick start NAME' runs it later, and 'flick wait NAME' prints its
exit status when it ends.
The container keeps its image even after the tag moves to a newer one.`,
		Example: `  flick create --name sensor --device /dev/ttyUSB0 sensor:2.1
  flick start sensor`,
		Args: minArgs(1, "an image, e.g. 'flick create --name app alpine sleep 60'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.detach {
				return usageError{fmt.Errorf("-d has no meaning for create: the container is not started")}
			}
			_, id, err := a.create(cmd, &f, args)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, id)
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().Bool("help", false, "help for create")
	f.add(cmd.Flags())
	return cmd
}

// exitStatus makes flick exit with the container's status, silently.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("container exited with status %d", int(e)) }

func (a *app) streamLogs(c *client.Client, cmd *cobra.Command, id string, q url.Values) error {
	resp, err := c.Do(cmd.Context(), http.MethodGet, "/containers/"+id+"/logs", q, nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") == "application/vnd.docker.raw-stream" {
		_, err := io.Copy(a.stdout, resp.Body)
		return err
	}
	return demux(resp.Body, a.stdout, a.stderr)
}

func demux(r io.Reader, stdout, stderr io.Writer) error {
	br := bufio.NewReader(r)
	var h [8]byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return nil
			}
			return err
		}
		n := binary.BigEndian.Uint32(h[4:])
		w := stdout
		if h[0] == 2 {
			w = stderr
		}
		if _, err := io.CopyN(w, br, int64(n)); err != nil {
			return err
		}
	}
}

func (a *app) psCmd() *cobra.Command {
	var all, quiet, jsonOut bool
	var filterArgs []string
	var last int
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS]",
		Short: "List containers",
		Example: `  flick ps
  flick ps -a --json | jq '.[] | {Names, State}'
  flick ps -q -f status=exited          # what 'flick container prune' would remove
  flick ps -f name=sensor -f label=app=edge`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var list []mcontainer.Summary
			q := url.Values{}
			if all {
				q.Set("all", "1")
			}
			if last > 0 {
				q.Set("limit", strconv.Itoa(last))
			}
			if len(filterArgs) > 0 {
				f := map[string][]string{}
				for _, kv := range filterArgs {
					k, v, ok := strings.Cut(kv, "=")
					if !ok {
						return usageError{fmt.Errorf("invalid --filter %q: want KEY=VALUE, e.g. status=exited", kv)}
					}
					f[k] = append(f[k], v)
				}
				b, _ := json.Marshal(f)
				q.Set("filters", string(b))
			}
			if err := c.JSON(cmd.Context(), http.MethodGet, "/containers/json", q, nil, &list); err != nil {
				return err
			}
			if jsonOut {
				return printJSON(a.stdout, list)
			}
			if quiet {
				for _, s := range list {
					fmt.Fprintln(a.stdout, s.ID[:12])
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tNAMES")
			for _, s := range list {
				command := s.Command
				if len(command) > 20 {
					command = command[:19] + "…"
				}
				fmt.Fprintf(tw, "%s\t%s\t%q\t%s ago\t%s\t%s\n", s.ID[:12], s.Image, command,
					units.HumanDuration(time.Since(time.Unix(s.Created, 0))), s.Status, strings.TrimPrefix(strings.Join(s.Names, ","), "/"))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show stopped containers too")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print IDs only")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON (the Docker API's list)")
	cmd.Flags().StringArrayVarP(&filterArgs, "filter", "f", nil, "filter KEY=VALUE, as docker ps: id, name, label, status, exited, ancestor, before, since, volume, network")
	cmd.Flags().IntVarP(&last, "last", "n", 0, "show the N most recently created containers (any state)")
	return cmd
}

func (a *app) logsCmd() *cobra.Command {
	var follow, stamps bool
	var tail string
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Print a container's output (stdout and stderr)",
		Example: `  flick logs sensor
  flick logs -f --tail 20 -t sensor`,
		Args: exactArgs(1, "a container name or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{"stdout": {"1"}, "stderr": {"1"}, "tail": {tail}}
			if follow {
				q.Set("follow", "1")
			}
			if stamps {
				q.Set("timestamps", "1")
			}
			return a.streamLogs(c, cmd, url.PathEscape(args[0]), q)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output")
	cmd.Flags().StringVarP(&tail, "tail", "n", "all", "lines from the end to show")
	cmd.Flags().BoolVarP(&stamps, "timestamps", "t", false, "prefix each line with its time")
	return cmd
}

// simple runs one API call per container argument and prints the argument.
func (a *app) simple(use, short, method, suffix string, query func() url.Values) *cobra.Command {
	return &cobra.Command{
		Use:   use + " CONTAINER...",
		Short: short,
		Args:  minArgs(1, "at least one container name or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var q url.Values
			if query != nil {
				q = query()
			}
			var failed error
			for _, id := range args {
				path := "/containers/" + url.PathEscape(id) + suffix
				if err := c.JSON(cmd.Context(), method, path, q, nil, nil); err != nil {
					fmt.Fprintln(a.stderr, "Error:", err)
					failed = err
					continue
				}
				fmt.Fprintln(a.stdout, id)
			}
			return failed
		},
	}
}

func (a *app) containerCmds() []*cobra.Command {
	var stopT, restartT int
	var signal string
	var force, vols bool
	stop := a.simple("stop", "Stop containers (SIGTERM, then SIGKILL after -t seconds); they stay down", http.MethodPost, "/stop",
		func() url.Values { return url.Values{"t": {strconv.Itoa(stopT)}} })
	stop.Flags().IntVarP(&stopT, "time", "t", 10, "seconds to wait before killing")
	restart := a.simple("restart", "Restart containers", http.MethodPost, "/restart",
		func() url.Values { return url.Values{"t": {strconv.Itoa(restartT)}} })
	restart.Flags().IntVarP(&restartT, "time", "t", 10, "seconds to wait before killing")
	kill := a.simple("kill", "Send a signal to containers (default SIGKILL); killed containers stay down", http.MethodPost, "/kill",
		func() url.Values { return url.Values{"signal": {signal}} })
	kill.Flags().StringVarP(&signal, "signal", "s", "KILL", "signal to send")
	rm := a.simple("rm", "Remove containers", http.MethodDelete, "", func() url.Values {
		q := url.Values{}
		if force {
			q.Set("force", "1")
		}
		if vols {
			q.Set("v", "1")
		}
		return q
	})
	rm.Flags().BoolVarP(&force, "force", "f", false, "kill and remove a running container")
	rm.Flags().BoolVarP(&vols, "volumes", "v", false, "remove anonymous volumes too")
	start := a.simple("start", "Start stopped containers", http.MethodPost, "/start", nil)
	return []*cobra.Command{stop, restart, kill, rm, start, a.waitCmd(), a.containerInspectCmd(), a.updateCmd(), a.renameCmd()}
}

func (a *app) updateCmd() *cobra.Command {
	var restart, memory, memorySwap string
	var cpus float64
	var shares, pids int64
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Change containers' limits and restart policy, running or not",
		Long: `Change a container's memory, CPU and process limits and its restart policy.
A running container's limits change at once; a new restart policy applies at
its app's next exit. Options not given keep their values.`,
		Example: `  flick update --restart unless-stopped sensor
  flick update --memory 128m --cpus 0.5 --pids-limit 100 sensor gateway-ui`,
		Args: minArgs(1, "a container, e.g. 'flick update --restart always sensor'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var uc mcontainer.UpdateConfig
			if restart != "" {
				name, max, _ := strings.Cut(restart, ":")
				uc.RestartPolicy.Name = mcontainer.RestartPolicyMode(name)
				if max != "" {
					n, err := strconv.Atoi(max)
					if err != nil || name != "on-failure" {
						return usageError{fmt.Errorf("invalid restart policy %q: a count is only for on-failure:N", restart)}
					}
					uc.RestartPolicy.MaximumRetryCount = n
				}
			}
			for _, m := range []struct {
				flag string
				to   *int64
			}{{memory, &uc.Memory}, {memorySwap, &uc.MemorySwap}} {
				if m.flag == "" {
					continue
				}
				if m.flag == "-1" {
					*m.to = -1
					continue
				}
				n, err := units.RAMInBytes(m.flag)
				if err != nil {
					return usageError{fmt.Errorf("invalid size %q: %v", m.flag, err)}
				}
				*m.to = n
			}
			uc.NanoCPUs, uc.CPUShares = int64(math.Round(cpus*1e9)), shares
			if cmd.Flags().Changed("pids-limit") {
				uc.PidsLimit = &pids
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var failed error
			for _, id := range args {
				var resp mcontainer.UpdateResponse
				if err := c.JSON(cmd.Context(), http.MethodPost, "/containers/"+id+"/update", nil, uc, &resp); err != nil {
					fmt.Fprintln(a.stderr, "Error:", err)
					failed = err
					continue
				}
				for _, w := range resp.Warnings {
					fmt.Fprintln(a.stderr, "WARNING:", w)
				}
				fmt.Fprintln(a.stdout, id)
			}
			return failed
		},
	}
	cmd.Flags().StringVar(&restart, "restart", "", "restart policy: no, always, unless-stopped, on-failure[:N]")
	cmd.Flags().StringVarP(&memory, "memory", "m", "", "memory limit, e.g. 128m")
	cmd.Flags().StringVar(&memorySwap, "memory-swap", "", "memory plus swap limit (-1: unlimited swap)")
	cmd.Flags().Float64Var(&cpus, "cpus", 0, "CPU limit, e.g. 0.5")
	cmd.Flags().Int64Var(&shares, "cpu-shares", 0, "CPU weight against other containers")
	cmd.Flags().Int64Var(&pids, "pids-limit", 0, "process limit (-1: none)")
	return cmd
}

func (a *app) renameCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rename CONTAINER NEW_NAME",
		Short:   "Rename a container",
		Example: "  flick rename sensor sensor-old",
		Args:    exactArgs(2, "a container and its new name, e.g. 'flick rename sensor sensor-old'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return c.JSON(cmd.Context(), http.MethodPost, "/containers/"+args[0]+"/rename", url.Values{"name": {args[1]}}, nil, nil)
		},
	}
}

func (a *app) waitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER...",
		Short: "Block until containers stop, then print their exit codes",
		Args:  minArgs(1, "at least one container name or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			for _, id := range args {
				var wr mcontainer.WaitResponse
				if err := c.JSON(cmd.Context(), http.MethodPost, "/containers/"+url.PathEscape(id)+"/wait", nil, nil, &wr); err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, wr.StatusCode)
			}
			return nil
		},
	}
}

func (a *app) containerInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect CONTAINER...",
		Short: "Show containers' full configuration and state as JSON",
		Args:  minArgs(1, "at least one container name or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var out []json.RawMessage
			for _, id := range args {
				var raw json.RawMessage
				if err := c.JSON(cmd.Context(), http.MethodGet, "/containers/"+url.PathEscape(id)+"/json", nil, nil, &raw); err != nil {
					return err
				}
				out = append(out, raw)
			}
			return printJSON(a.stdout, out)
		},
	}
}

// runAttached is run in the foreground, as docker does it: attach before
// start (so no output is missed), wait before start (so neither the exit
// nor, with --rm, the removal is missed), stdin to the container with -i,
// the terminal raw and sized with -t, and the container's status as ours.
func (a *app) runAttached(cmd *cobra.Command, c *client.Client, id string, f runFlags) error {
	ctx := cmd.Context()
	q := url.Values{"stream": {"1"}, "stdout": {"1"}, "stderr": {"1"}}
	if f.interactive {
		q.Set("stdin", "1")
	}
	conn, br, err := c.Hijack(ctx, "/containers/"+id+"/attach", q)
	if err != nil {
		return err
	}
	defer conn.Close()
	waited := a.waitAsync(cmd, c, id, f.rm)
	if err := c.JSON(ctx, http.MethodPost, "/containers/"+id+"/start", nil, nil, nil); err != nil {
		return err
	}
	in, isFile := cmd.InOrStdin().(*os.File)
	if f.tty && isFile {
		if restore, ok := rawTerminal(int(in.Fd())); ok {
			defer restore()
		}
		if h, w, ok := terminalSize(in); ok {
			c.JSON(ctx, http.MethodPost, "/containers/"+id+"/resize", url.Values{"h": {strconv.Itoa(int(h))}, "w": {strconv.Itoa(int(w))}}, nil, nil)
		}
	}
	if f.interactive {
		go func() {
			io.Copy(conn, cmd.InOrStdin())
			if uc, ok := conn.(interface{ CloseWrite() error }); ok {
				uc.CloseWrite()
			}
		}()
	}
	if f.tty {
		io.Copy(a.stdout, br)
	} else {
		demux(br, a.stdout, a.stderr)
	}
	return <-waited
}

// waitAsync starts waiting for the container's exit (or removal) now and
// delivers the result: nil, exitStatus or an error.
func (a *app) waitAsync(cmd *cobra.Command, c *client.Client, id string, removed bool) <-chan error {
	out := make(chan error, 1)
	cond := url.Values{"condition": {"next-exit"}}
	if removed {
		cond.Set("condition", "removed")
	}
	resp, err := c.Do(cmd.Context(), http.MethodPost, "/containers/"+id+"/wait", cond, nil, nil)
	if err != nil {
		out <- err
		return out
	}
	go func() {
		defer resp.Body.Close()
		var wr mcontainer.WaitResponse
		if err := json.NewDecoder(resp.Body).Decode(&wr); err != nil {
			out <- err
			return
		}
		if wr.StatusCode != 0 {
			out <- exitStatus(int(wr.StatusCode))
			return
		}
		out <- nil
	}()
	return out
}

func (a *app) execCmd() *cobra.Command {
	var interactive, tty, privileged bool
	var user, workdir string
	var env []string
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Run a command in a running container",
		Long: `Run a command inside a running container: in its namespaces and cgroup, with
its capabilities and seccomp profile (all capabilities with --privileged).`,
		Example: `  flick exec sensor cat /data/config.json
  flick exec -it sensor sh
  flick exec -u app -w /data sensor ls`,
		Args: minArgs(2, "a container and a command"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			req := mcontainer.ExecCreateRequest{Cmd: args[1:], Tty: tty, AttachStdin: interactive, AttachStdout: true, AttachStderr: true,
				User: user, WorkingDir: workdir, Privileged: privileged}
			for _, e := range env {
				req.Env = append(req.Env, expandEnv(e))
			}
			if tty {
				if h, w, ok := terminalSize(os.Stdout); ok {
					req.ConsoleSize = &[2]uint{uint(h), uint(w)}
				}
			}
			var created struct {
				ID string `json:"Id"`
			}
			if err := c.JSON(ctx, http.MethodPost, "/containers/"+url.PathEscape(args[0])+"/exec", nil, req, &created); err != nil {
				return err
			}
			conn, br, err := c.HijackJSON(ctx, "/exec/"+created.ID+"/start", mcontainer.ExecStartRequest{Tty: tty})
			if err != nil {
				return err
			}
			defer conn.Close()
			in, isFile := cmd.InOrStdin().(*os.File)
			if tty && isFile {
				if restore, ok := rawTerminal(int(in.Fd())); ok {
					defer restore()
				}
				if h, w, ok := terminalSize(in); ok {
					c.JSON(ctx, http.MethodPost, "/exec/"+created.ID+"/resize", url.Values{"h": {strconv.Itoa(int(h))}, "w": {strconv.Itoa(int(w))}}, nil, nil)
				}
			}
			if interactive {
				go func() {
					io.Copy(conn, cmd.InOrStdin())
					if uc, ok := conn.(interface{ CloseWrite() error }); ok {
						uc.CloseWrite()
					}
				}()
			}
			if tty {
				io.Copy(a.stdout, br)
			} else {
				demux(br, a.stdout, a.stderr)
			}
			var ins mcontainer.ExecInspectResponse
			if err := c.JSON(ctx, http.MethodGet, "/exec/"+created.ID+"/json", nil, nil, &ins); err != nil {
				return err
			}
			if ins.ExitCode != nil && *ins.ExitCode != 0 {
				return exitStatus(*ins.ExitCode)
			}
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "attach stdin")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "allocate a pseudo-TTY")
	cmd.Flags().BoolVar(&privileged, "privileged", false, "give the command every capability")
	cmd.Flags().StringVarP(&user, "user", "u", "", "user[:group] to run as")
	cmd.Flags().StringVarP(&workdir, "workdir", "w", "", "working directory")
	cmd.Flags().StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE")
	return cmd
}

// addPortBinding parses -p [HOST-IP:][HOST-PORT:]CONTAINER-PORT[/PROTO].
func addPortBinding(hc *mcontainer.HostConfig, spec string) error {
	bad := func() error {
		return usageError{fmt.Errorf("invalid -p %q: want [HOST-IP:][HOST-PORT:]CONTAINER-PORT[/tcp|udp], e.g. 8080:80", spec)}
	}
	rest, proto, _ := strings.Cut(spec, "/")
	if proto == "" {
		proto = "tcp"
	}
	parts := strings.Split(rest, ":")
	var hostIP, hostPort, ctrPort string
	switch len(parts) {
	case 1:
		ctrPort = parts[0]
	case 2:
		hostPort, ctrPort = parts[0], parts[1]
	case 3:
		hostIP, hostPort, ctrPort = parts[0], parts[1], parts[2]
	default:
		return bad()
	}
	port, err := mnetwork.ParsePort(ctrPort + "/" + proto)
	if err != nil {
		return bad()
	}
	b := mnetwork.PortBinding{HostPort: hostPort}
	if hostIP != "" {
		if b.HostIP, err = netip.ParseAddr(hostIP); err != nil {
			return bad()
		}
	}
	if hc.PortBindings == nil {
		hc.PortBindings = mnetwork.PortMap{}
	}
	hc.PortBindings[port] = append(hc.PortBindings[port], b)
	return nil
}
