package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/imagegen"
)

// The docker CLI against Flick, on what a compatibility sweep found
// missing or wrong (session 13): each check here failed before.

// TestDockerRunMountsAndLimits: binds of single files, --mount, --tmpfs,
// anonymous and image volumes (filled from the image), --ulimit, signals
// and loopback as Docker gives them, and limits refused at create.
func TestDockerRunMountsAndLimits(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d, imagegen.WithCmd("sh"), imagegen.WithEnv(imagegen.DefaultPath, "MODE=image"), imagegen.WithVolumes("/home/app"))
	dir := t.TempDir()
	file := filepath.Join(dir, "app.conf")
	if err := os.WriteFile(file, []byte("from-the-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	expect := func(what string, r Result, want ...string) {
		t.Helper()
		if r.Code != 0 {
			t.Fatalf("%s: %s", what, r)
		}
		for _, w := range want {
			if !strings.Contains(r.Stdout, w) {
				t.Fatalf("%s: want %q in:\n%s", what, w, r)
			}
		}
	}
	volumes := func() string { return strings.TrimSpace(d.docker(t, "volume", "ls", "-q").Stdout) }

	// A single file bound, read-only (it used to fail: "mkdir ...: not a
	// directory").
	expect("file bind", d.docker(t, "run", "--rm", "-v", file+":/etc/app.conf:ro", img, "sh", "-c", "cat /etc/app.conf; echo x >> /etc/app.conf || echo read-only"),
		"from-the-host\n", "read-only\n")

	// Signals: nothing ignored (the monitor's ignored SIGINT and SIGHUP
	// reached every app), in run and exec alike.
	expect("signals", d.docker(t, "run", "--rm", img, "sh", "-c", `grep SigIgn /proc/self/status; trap "echo trapped" INT; kill -INT $$; echo after`),
		"SigIgn:\t0000000000000000\n", "trapped\n")
	d.docker(t, "run", "-d", "--name", "long", img, "sleep", "300")
	expect("exec signals", d.docker(t, "exec", "long", "grep", "SigIgn", "/proc/self/status"), "SigIgn:\t0000000000000000\n")
	d.docker(t, "rm", "-f", "-v", "long")

	// Loopback is up in a container of its own network namespace.
	expect("loopback", d.docker(t, "run", "--rm", "--network", "none", img, "sh", "-c", "ip addr show lo; ping -c 1 -W 2 127.0.0.1 >/dev/null && echo ping-ok"),
		"LOOPBACK,UP", "127.0.0.1", "ping-ok\n")

	// --tmpfs and --mount: noexec, nosuid, nodev unless asked; sizes.
	expect("--tmpfs", d.docker(t, "run", "--rm", "--tmpfs", "/run:size=1m", "--tmpfs", "/scratch:exec", img, "sh", "-c", "grep -E ' /(run|scratch) ' /proc/mounts"),
		"/run tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k", "/scratch tmpfs rw,nosuid,nodev,relatime")
	expect("--mount", d.docker(t, "run", "--rm",
		"--mount", "type=tmpfs,dst=/t,tmpfs-size=2097152",
		"--mount", "type=bind,src="+dir+",dst=/b,readonly",
		"--mount", "type=volume,src=named,dst=/v",
		img, "sh", "-c", "grep -E ' /t ' /proc/mounts; cat /b/app.conf; touch /b/x 2>/dev/null || echo b-read-only; touch /v/kept && echo v-written"),
		"size=2048k", "from-the-host\n", "b-read-only\n", "v-written\n")
	if r := d.docker(t, "run", "--rm", "--mount", "type=bind,src="+filepath.Join(dir, "missing")+",dst=/b", img, "true"); r.Code != 125 || !strings.Contains(r.Stderr, "bind source path does not exist") {
		t.Fatalf("--mount of a missing bind source: %s", r)
	}

	// Volumes: a new named one is filled from the image (a symlinked /bin
	// runs from it), an anonymous one (-v /path, and the image's VOLUME,
	// with its owner) goes with the --rm container; the named ones stay.
	expect("named volume copy-up", d.docker(t, "run", "--rm", "-v", "binvol:/bin", img, "sh", "-c", "ls /bin | wc -l; readlink /bin/sh"), "busybox\n")
	expect("anonymous volumes", d.docker(t, "run", "--rm", "-v", "/anon", img, "sh", "-c", "grep -E ' /(anon|home/app) ' /proc/mounts | wc -l; stat -c %u:%g /home/app"),
		"2\n", "1000:1000\n")
	if v := volumes(); strings.Join(strings.Fields(v), " ") != "binvol named" {
		t.Fatalf("volumes after the --rm runs: %q; want the two named ones", v)
	}
	d.docker(t, "run", "--name", "keepvol", img, "true")
	var mounts []struct{ Type, Name, Destination string }
	json.Unmarshal([]byte(d.docker(t, "inspect", "-f", "{{json .Mounts}}", "keepvol").Stdout), &mounts)
	if len(mounts) != 1 || mounts[0].Type != "volume" || mounts[0].Destination != "/home/app" || len(mounts[0].Name) != 64 {
		t.Fatalf("inspect .Mounts: %+v", mounts)
	}
	if r := d.docker(t, "volume", "prune", "-f"); r.Code != 0 || strings.Contains(r.Stdout, mounts[0].Name) {
		t.Fatalf("volume prune removed a volume in use: %s", r)
	}
	d.docker(t, "rm", "-v", "keepvol")
	if v := volumes(); strings.Contains(v, mounts[0].Name) {
		t.Fatalf("rm -v left the anonymous volume: %q", v)
	}

	// The environment: -e replaces the image's value, not a second entry
	// that getenv never reaches.
	expect("env", d.docker(t, "run", "--rm", "-e", "MODE=given", img, "sh", "-c", "echo mode=$MODE; env | grep -c ^MODE="), "mode=given\n1\n")

	// --ulimit.
	expect("--ulimit", d.docker(t, "run", "--rm", "--ulimit", "nofile=123:123", img, "sh", "-c", "ulimit -n"), "123\n")

	// Limits are refused at create, with Docker's words, leaving nothing
	// (a --rm run used to be created and then hang at its start).
	for _, bad := range [][]string{{"--cpus", "64"}, {"--memory", "1m"}, {"--ulimit", "bogus=1"}} {
		r := d.docker(t, append(append([]string{"run", "--rm"}, bad...), img, "true")...)
		if r.Code != 125 {
			t.Fatalf("%v: %s", bad, r)
		}
	}
	if ps := strings.TrimSpace(d.docker(t, "ps", "-aq").Stdout); ps != "" {
		t.Fatalf("containers left by refused runs: %q", ps)
	}
}

// TestDockerPsInspectAndLifecycle: ps filters and -n, start -a, rename,
// stop of a --rm container frees its name, inspect of images and unknown
// names, networks, volumes, info and system df, filtered prune.
func TestDockerPsInspectAndLifecycle(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	names := func(args ...string) string {
		t.Helper()
		r := d.docker(t, append(append([]string{"ps"}, args...), "--format", "{{.Names}}")...)
		if r.Code != 0 {
			t.Fatalf("ps %v: %s", args, r)
		}
		f := strings.Fields(r.Stdout)
		return strings.Join(f, " ")
	}
	d.docker(t, "run", "--name", "failed", img, "sh", "-c", "echo run-1; exit 3")
	d.docker(t, "run", "--name", "done", "--label", "keep=1", img, "true")
	d.docker(t, "run", "-d", "--name", "up", "--label", "app=edge", img, "sleep", "300")

	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "up"},
		{[]string{"-a"}, "up done failed"},
		{[]string{"-f", "status=exited"}, "done failed"},
		{[]string{"-a", "-f", "exited=3"}, "failed"},
		{[]string{"-a", "-f", "name=^/?fail"}, "failed"},
		{[]string{"-a", "-f", "label=app=edge"}, "up"},
		{[]string{"-n", "1"}, "up"},
		{[]string{"-a", "-f", "before=up"}, "done failed"},
	} {
		if got := names(c.args...); got != c.want {
			t.Errorf("ps %v: %q, want %q", c.args, got, c.want)
		}
	}
	if r := d.docker(t, "ps", "-f", "colour=red"); r.Code == 0 || !strings.Contains(r.Stderr, "invalid filter 'colour'") {
		t.Fatalf("an unknown filter must be refused, not ignored: %s", r)
	}

	// start -a streams the next run's output (it used to end at once,
	// with the last run's end).
	if r := d.docker(t, "start", "-a", "failed"); r.Code != 3 || r.Stdout != "run-1\n" {
		t.Fatalf("start -a: %s", r)
	}

	// rename.
	if r := d.docker(t, "rename", "done", "finished"); r.Code != 0 {
		t.Fatalf("rename: %s", r)
	}
	if got := names("-a", "-f", "name=finished"); got != "finished" {
		t.Fatalf("after rename: %q", got)
	}
	if r := d.docker(t, "rename", "finished", "up"); r.Code == 0 || !strings.Contains(r.Stderr, "already in use") {
		t.Fatalf("rename onto a taken name: %s", r)
	}

	// A stopped --rm container is gone when stop returns: the same name
	// can be used at once (it stayed about 2 s).
	for i := 0; i < 3; i++ {
		if r := d.docker(t, "run", "-d", "--rm", "--name", "svc", img, "sleep", "300"); r.Code != 0 {
			t.Fatalf("run svc (round %d): %s", i, r)
		}
		if r := d.docker(t, "stop", "-t", "1", "svc"); r.Code != 0 {
			t.Fatalf("stop svc: %s", r)
		}
	}

	// inspect: the merged config, the recorded network mode; an image
	// name (with slashes) and an unknown name as the CLI expects.
	if r := d.docker(t, "inspect", "-f", "{{.Config.Cmd}} {{.HostConfig.NetworkMode}} {{len .Config.Env}} {{json .Mounts}}", "up"); strings.TrimSpace(r.Stdout) != "[sleep 300] none 1 []" {
		t.Fatalf("inspect: %s", r)
	}
	if r := d.docker(t, "inspect", "-f", "{{.Id}}", img); r.Code != 0 || !strings.HasPrefix(r.Stdout, "sha256:") {
		t.Fatalf("inspect of an image by name: %s", r)
	}
	if r := d.docker(t, "inspect", "nosuchthing"); r.Code == 0 || !strings.Contains(r.Stderr, "No such object: nosuchthing") {
		t.Fatalf("inspect of an unknown name: %s", r)
	}

	// Networks, volumes, info, df.
	if r := d.docker(t, "network", "ls", "--format", "{{.Name}}"); strings.Join(strings.Fields(r.Stdout), " ") != "host none" {
		t.Fatalf("network ls: %s", r)
	}
	if r := d.docker(t, "volume", "create", "data"); r.Code != 0 || d.docker(t, "volume", "inspect", "-f", "{{.Driver}}", "data").Stdout != "local\n" {
		t.Fatalf("volume create/inspect: %s", r)
	}
	if r := d.docker(t, "info", "-f", "{{.Containers}} {{.ContainersRunning}} {{.Swarm.LocalNodeState}}"); strings.TrimSpace(r.Stdout) != "3 1 inactive" {
		t.Fatalf("info: %s", r)
	}
	if r := d.docker(t, "system", "df", "--format", "{{.Type}} {{.TotalCount}}"); !strings.Contains(r.Stdout, "Containers 3") || !strings.Contains(r.Stdout, "Local Volumes 1") {
		t.Fatalf("system df: %s", r)
	}
	if r := d.docker(t, "system", "prune", "-f"); r.Code != 0 {
		t.Fatalf("system prune: %s", r)
	}
	d.docker(t, "run", "--name", "again", "--label", "keep=1", img, "true")
	d.docker(t, "run", "--name", "scrap", img, "true")
	if r := d.docker(t, "container", "prune", "-f", "--filter", "label!=keep=1"); r.Code != 0 {
		t.Fatalf("prune with a filter: %s", r)
	}
	if got := names("-a"); got != "again up" {
		t.Fatalf("after a filtered prune: %q, want the running one and the labelled one", got)
	}
	if r := d.docker(t, "container", "prune", "-f", "--filter", "until=1h"); r.Code != 0 || names("-a") != "again up" {
		t.Fatalf("prune until=1h removed a container younger than that: %s / %q", r, names("-a"))
	}

	// Events are kept for --since, and stop and restart are reported.
	d.docker(t, "restart", "-t", "1", "up")
	since := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	until := strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10)
	ev := d.docker(t, "events", "--since", since, "--until", until, "--filter", "container=up", "--format", "{{.Action}}")
	if got := strings.Join(strings.Fields(ev.Stdout), " "); !strings.Contains(got, "create start") || !strings.Contains(got, "stop") || !strings.Contains(got, "restart") {
		t.Fatalf("events --since: %q", got)
	}
	// logs --until, volume ls filters.
	if r := d.docker(t, "logs", "--until", "2000-01-01T00:00:00Z", "again"); r.Code != 0 || r.Stdout != "" {
		t.Fatalf("logs --until before the container existed: %s", r)
	}
	if r := d.docker(t, "volume", "ls", "-q", "-f", "dangling=true"); strings.TrimSpace(r.Stdout) != "data" {
		t.Fatalf("volume ls -f dangling=true: %s", r)
	}
	d.docker(t, "rm", "-f", "up")
}

// TestPrivilegedSeesHostDevices: --privileged gives the container the
// host's device nodes (it had the minimal /dev of any container).
func TestPrivilegedSeesHostDevices(t *testing.T) {
	requireRoot(t)
	var node string
	for _, n := range []string{"/dev/ttyS0", "/dev/loop0", "/dev/vda", "/dev/sda", "/dev/kvm", "/dev/fuse"} {
		if fi, err := os.Stat(n); err == nil && fi.Mode()&os.ModeDevice != 0 {
			node = n
			break
		}
	}
	if node == "" {
		t.Skip("no usual device node on this host")
	}
	d := startDaemon(t)
	img := busyboxImage(t, d)
	if r := d.docker(t, "run", "--rm", "--privileged", img, "ls", node); r.Code != 0 || r.Stdout != node+"\n" {
		t.Fatalf("--privileged: %s missing: %s", node, r)
	}
	if r := d.docker(t, "run", "--rm", img, "ls", node); r.Code == 0 {
		t.Fatalf("%s in an unprivileged container: %s", node, r)
	}
}

// TestDockerUpdate: docker update changes a running container's limits at
// once and its restart policy for its next exit, and refuses what it
// cannot apply.
func TestDockerUpdate(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	if r := d.docker(t, "run", "-d", "--name", "upd", "--memory", "64m", img, "sleep", "300"); r.Code != 0 {
		t.Fatalf("run: %s", r)
	}
	if r := d.docker(t, "update", "--memory", "128m", "--memory-swap", "256m", "--pids-limit", "50", "upd"); r.Code != 0 {
		t.Fatalf("update: %s", r)
	}
	limit := d.docker(t, "exec", "upd", "sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes").Stdout
	if strings.TrimSpace(limit) != "134217728" {
		t.Fatalf("the running container's memory limit after update: %q", limit)
	}
	pids := d.docker(t, "exec", "upd", "sh", "-c", "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max").Stdout
	if strings.TrimSpace(pids) != "50" {
		t.Fatalf("pids limit after update: %q", pids)
	}
	if r := d.docker(t, "inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}", "upd"); strings.TrimSpace(r.Stdout) != "134217728 50" {
		t.Fatalf("inspect after update: %s", r)
	}
	// Kept across a restart.
	d.docker(t, "restart", "-t", "1", "upd")
	if limit := d.docker(t, "exec", "upd", "sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes").Stdout; strings.TrimSpace(limit) != "134217728" {
		t.Fatalf("memory limit after a restart: %q", limit)
	}

	// A restart policy given while the app runs applies at its exit.
	d.docker(t, "run", "-d", "--name", "crash", img, "sh", "-c", "sleep 1; exit 3")
	if r := d.docker(t, "update", "--restart", "on-failure:2", "crash"); r.Code != 0 {
		t.Fatalf("update --restart: %s", r)
	}
	waitFor(t, "two restarts", 20*time.Second, func() bool {
		r := d.docker(t, "inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "crash")
		return strings.TrimSpace(r.Stdout) == "2 exited"
	})

	// Refused: a policy on a --rm container, what Flick cannot apply, limits
	// Docker refuses.
	d.docker(t, "run", "-d", "--rm", "--name", "eph", img, "sleep", "300")
	for _, bad := range [][]string{{"--restart", "always", "eph"}, {"--cpuset-cpus", "0", "upd"}, {"--memory", "1m", "upd"}} {
		if r := d.docker(t, append([]string{"update"}, bad...)...); r.Code == 0 {
			t.Fatalf("update %v was accepted: %s", bad, r)
		}
	}
	d.docker(t, "rm", "-f", "upd", "crash", "eph")
}
