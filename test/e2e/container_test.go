package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/flick-edge/flick/internal/testregistry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// busyboxImage pushes a busybox image to a fresh registry, pulls it into d
// and returns its reference.
func busyboxImage(t *testing.T, d *Daemon, opts ...imagegen.ImageOption) string {
	t.Helper()
	reg := testregistry.Start(t)
	l, err := imagegen.Busybox(imagegen.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) == 0 {
		opts = []imagegen.ImageOption{imagegen.WithCmd("sh")}
	}
	ref := reg.Ref("test/busybox:1")
	reg.Push(t, ref, mustImage(t, []v1.Layer{l}, opts...))
	d.mustFlick(t, "pull", "-q", ref)
	return ref
}

type inspect struct {
	ID    string `json:"Id"`
	Name  string
	State struct {
		Status             string
		Running, OOMKilled bool
		Pid, ExitCode      int
		Error              string
	}
	RestartCount int
}

func (d *Daemon) inspectContainer(t *testing.T, name string) inspect {
	t.Helper()
	var out []inspect
	if err := json.Unmarshal([]byte(d.mustFlick(t, "inspect", name).Stdout), &out); err != nil || len(out) != 1 {
		t.Fatalf("inspect %s: %v", name, err)
	}
	return out[0]
}

// monitorState is the container's state.json as its monitor wrote it
// (the monitor's pid and the app's are not in inspect's answer).
func (d *Daemon) monitorState(t *testing.T, name string) bundle.State {
	t.Helper()
	st, err := bundle.ReadState(filepath.Join(d.DataRoot, "containers", d.inspectContainer(t, name).ID))
	if err != nil {
		t.Fatalf("state.json of %s: %v", name, err)
	}
	return st
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunForegroundExitCodesAndRemove(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	r := d.mustFlick(t, "run", "--rm", "--name", "hello", img, "echo", "hello from a container")
	if r.Stdout != "hello from a container\n" {
		t.Fatal(r)
	}
	waitFor(t, "--rm removal", 10*time.Second, func() bool { return d.flick(t, "inspect", "hello").Code == 3 })
	if r := d.flick(t, "run", img, "sh", "-c", "echo out; echo err >&2; exit 3"); r.Code != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Fatalf("exit status and streams: %s", r)
	}
	if r := d.flick(t, "run", img, "no-such-binary"); r.Code != 2 || !strings.Contains(r.Stderr, "executable file not found") {
		t.Fatalf("missing binary: %s", r)
	}
}

// An --rm container's writable layer is volatile (overlayfs never syncs it:
// it is deleted at the end); a restart mounts it again, and after a crash
// the start says what happened instead of using a layer that lost writes.
func TestRemovedContainersAreNotSynced(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	rootOpts := func(args ...string) string {
		out := d.mustFlick(t, append(args, img, "sh", "-c", `awk '$2 == "/" { print $4 }' /proc/mounts`)...).Stdout
		if !strings.Contains(out, "upperdir=") {
			t.Fatalf("%v: no overlay root in %q", args, out)
		}
		return out
	}
	if o := rootOpts("run", "--rm"); !strings.Contains(o, "volatile") {
		t.Fatalf("--rm root not volatile: %s", o)
	}
	if o := rootOpts("run", "--name", "kept"); strings.Contains(o, "volatile") {
		t.Fatalf("a kept container's root is volatile: %s", o)
	}
	d.mustFlick(t, "run", "-d", "--rm", "--name", "eph", img, "sleep", "60")
	for range 5 { // each run's own mark is cleared (a race with a released init once kept it)
		d.mustFlick(t, "restart", "-t", "0", "eph")
		if out := d.mustFlick(t, "exec", "eph", "sh", "-c", "echo ok > /written && cat /written").Stdout; out != "ok\n" {
			t.Fatalf("exec after restart: %q", out)
		}
	}
	d.mustFlick(t, "rm", "-f", "eph")

	// What a crash leaves: the mark overlayfs made, never removed.
	id := strings.TrimSpace(d.mustFlick(t, "create", "--rm", "--name", "crashed", img, "true").Stdout)
	mark := filepath.Join(d.DataRoot, "containers", id, bundle.VolatileMark)
	if err := os.MkdirAll(mark, 0o755); err != nil {
		t.Fatal(err)
	}
	// The start fails, and the --rm container goes with its layer, as
	// Docker removes a --rm container that cannot start.
	if r := d.flick(t, "start", "crashed"); r.Code == 0 || !strings.Contains(r.Stderr, "not unmounted cleanly") {
		t.Fatalf("start of a layer left by a crash: %s", r)
	}
	if r := d.flick(t, "inspect", "crashed"); r.Code == 0 {
		t.Fatalf("a --rm container that could not start is still there: %s", r)
	}
}

// What init mounts over (/proc, /dev, /sys, /etc/hostname, hosts and
// resolv.conf) comes from the shared init layer: a container that writes
// nothing leaves its writable layer empty, so starts and removals write no
// inode there, and the files still show the container's own contents.
func TestWritableLayerStartsEmpty(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	out := d.mustFlick(t, "run", "--name", "quiet", "--hostname", "quiet-host", img, "sh", "-c",
		"cat /etc/hostname; grep -c quiet-host /etc/hosts; test -s /etc/resolv.conf && echo resolv").Stdout
	if out != "quiet-host\n1\nresolv\n" {
		t.Fatalf("the container's /etc files: %q", out)
	}
	id := d.inspectContainer(t, "quiet").ID
	ents, err := os.ReadDir(filepath.Join(d.DataRoot, "containers", id, "upper"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("the writable layer of a container that wrote nothing holds %v", names)
	}
	// The layer is shared and read-only to containers: a write in its /etc
	// lands in the container's own layer.
	d.mustFlick(t, "run", "--name", "writer", img, "sh", "-c", "echo x > /etc/written")
	wid := d.inspectContainer(t, "writer").ID
	if b, err := os.ReadFile(filepath.Join(d.DataRoot, "containers", wid, "upper", "etc", "written")); err != nil || string(b) != "x\n" {
		t.Fatalf("the write is not in the container's layer: %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(d.DataRoot, "containers", "init-layer", "etc")); len(ents) != 3 {
		t.Fatalf("the init layer's /etc changed: %v", ents)
	}
}

func TestRunIsolation(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	out := d.mustFlick(t, "run", "--rm", img, "sh", "-c", `
echo pid=$$
echo procs=$(ls -d /proc/[0-9]* | wc -l)
echo host=$(hostname)
echo ifaces=$(cat /proc/net/dev | tail -n +3 | wc -l)
touch /etc/written && echo wrote-etc
mount -t tmpfs none /mnt 2>/dev/null && echo mounted || echo mount-refused
cat /proc/kcore 2>/dev/null | head -c 1 | wc -c
grep CapEff /proc/self/status
`).Stdout
	for _, want := range []string{"pid=1\n", "procs=", "ifaces=1\n", "wrote-etc\n", "mount-refused\n", "CapEff:\t00000000a80425fb\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	// sh, and the pipeline's ls, wc and subshell: nothing of the host's.
	if n, _ := strconv.Atoi(between(out, "procs=", "\n")); n > 5 {
		t.Errorf("container sees %d processes: the host's are visible\n%s", n, out)
	}
	if _, err := os.Stat("/etc/written"); err == nil {
		t.Fatal("a container write reached the host's /etc")
	}
	// The unprivileged user, and the host network when asked.
	if out := d.mustFlick(t, "run", "--rm", "-u", "app", img, "id").Stdout; !strings.HasPrefix(out, "uid=1000(app) gid=1000(app)") {
		t.Fatalf("-u app: %q", out)
	}
	if out := d.mustFlick(t, "run", "--rm", "--network", "host", img, "sh", "-c", "cat /proc/net/dev | tail -n +3 | wc -l").Stdout; strings.TrimSpace(out) == "1" {
		t.Fatalf("--network host sees only loopback: %q", out)
	}
	if r := d.flick(t, "run", "--rm", "-u", "ghost", img, "id"); r.Code == 0 || !strings.Contains(r.Stderr, "ghost") {
		t.Fatalf("missing user: %s", r)
	}
}

func between(s, a, b string) string {
	i := strings.Index(s, a)
	if i < 0 {
		return ""
	}
	s = s[i+len(a):]
	if j := strings.Index(s, b); j >= 0 {
		return s[:j]
	}
	return s
}

func TestDetachedLifecycle(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	id := strings.TrimSpace(d.mustFlick(t, "run", "-d", "--name", "ticker", img, "sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done").Stdout)
	if len(id) != 64 {
		t.Fatalf("run -d printed %q", id)
	}
	if ps := d.mustFlick(t, "ps").Stdout; !strings.Contains(ps, "ticker") || !strings.Contains(ps, "Up ") {
		t.Fatalf("ps: %s", ps)
	}
	waitFor(t, "output", 10*time.Second, func() bool { return strings.Contains(d.mustFlick(t, "logs", "ticker").Stdout, "tick 3") })
	if r := d.flick(t, "rm", "ticker"); r.Code != 4 || !strings.Contains(r.Stderr, "container is running") {
		t.Fatalf("rm of a running container: %s", r)
	}
	if r := d.flick(t, "run", "-d", "--name", "ticker", img, "true"); r.Code != 4 || !strings.Contains(r.Stderr, "already in use") {
		t.Fatalf("name conflict: %s", r)
	}
	// The daemon restarts; the container keeps running and is adopted.
	pid := d.inspectContainer(t, "ticker").State.Pid
	d.Restart()
	if st := d.inspectContainer(t, "ticker").State; !st.Running || st.Pid != pid {
		t.Fatalf("after a daemon restart: %+v (pid was %d)", st, pid)
	}
	d.mustFlick(t, "stop", "-t", "1", "ticker")
	st := d.inspectContainer(t, "ticker").State
	if st.Running || st.Status != "exited" || st.ExitCode != 137 {
		t.Fatalf("after stop: %+v", st)
	}
	if ps := d.mustFlick(t, "ps", "-a").Stdout; !strings.Contains(ps, "Exited (137)") {
		t.Fatalf("ps -a: %s", ps)
	}
	d.mustFlick(t, "rm", "ticker")
	if r := d.flick(t, "logs", "ticker"); r.Code != 3 {
		t.Fatalf("logs of a removed container: %s", r)
	}
}

func TestMisbehavingContainers(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	// A fork bomb stops at the pids limit.
	out := d.mustFlick(t, "run", "--rm", "--pids-limit", "16", img, "sh", "-c",
		// The inner shell forks until the kernel refuses (busybox sh then
		// gives up); the outer one counts without forking and cleans up.
		`sh -c 'for i in $(seq 64); do sleep 30 & done' 2>/dev/null; set -- /proc/[0-9]*; echo started=$#; kill -9 -1; wait; exit 0`).Stdout
	if n, _ := strconv.Atoi(strings.TrimSpace(between(out, "started=", "\n"))); n == 0 || n > 16 {
		t.Fatalf("pids limit 16: %q", out)
	}
	// Memory without end: the kernel kills it inside its cgroup, inspect says so.
	r := d.flick(t, "run", "--name", "hog", "--memory", "32m", img, "sh", "-c", `a=$(head -c 200000000 /dev/zero | tr "\0" x); echo ${#a}`)
	if r.Code != 137 {
		t.Fatalf("memory hog: %s", r)
	}
	if st := d.inspectContainer(t, "hog").State; !st.OOMKilled {
		t.Fatalf("OOM kill not reported: %+v", st)
	}
	// Exits in a loop: restarted with back-off, up to the limit.
	d.mustFlick(t, "run", "-d", "--name", "crashy", "--restart", "on-failure:2", img, "sh", "-c", "echo crash; exit 1")
	waitFor(t, "two restarts", 20*time.Second, func() bool {
		i := d.inspectContainer(t, "crashy")
		return i.RestartCount == 2 && i.State.Status == "exited"
	})
	if n := strings.Count(d.mustFlick(t, "logs", "crashy").Stdout, "crash\n"); n != 3 {
		t.Fatalf("ran %d times, want 3", n)
	}
	// The daemon answered throughout.
	d.mustFlick(t, "ps", "-a")
}

func TestContainerBadInput(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d, imagegen.WithCmd()) // an image with no CMD
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run", img}, 2, "no command specified"},
		{[]string{"run", "-v", "relative:dir", img, "true"}, 2, "container path must be absolute"},
		{[]string{"run", "-v", "a:b:c:d", img, "true"}, 2, "invalid volume specification"},
		{[]string{"run", "--restart", "sometimes", img, "true"}, 2, "invalid restart policy"},
		{[]string{"run", "--name", "bad name", img, "true"}, 2, "invalid container name"},
		{[]string{"run", "--device", "/dev/nonexistent", img, "true"}, 2, "/dev/nonexistent"},
		{[]string{"run", "no/such/image:1", "true"}, 3, "No such image"},
		{[]string{"run", "--cap-add", "BOGUS", img, "true"}, 2, "BOGUS"},
	} {
		if r := d.flick(t, c.args...); r.Code != c.code || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("%v: want exit %d and %q, got %s", c.args, c.code, c.want, r)
		}
	}
	// Volumes: a host directory and a named volume, read-only honoured.
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "in.txt"), []byte("from host"), 0o644)
	out := d.mustFlick(t, "run", "--rm", "-v", host+":/data:ro", "-v", "cache:/cache", img, "sh", "-c",
		"cat /data/in.txt; touch /data/x 2>/dev/null || echo ro-ok; echo kept > /cache/f").Stdout
	if out != "from hostro-ok\n" {
		t.Fatalf("volumes: %q", out)
	}
	if out := d.mustFlick(t, "run", "--rm", "-v", "cache:/cache", img, "cat", "/cache/f").Stdout; out != "kept\n" {
		t.Fatalf("named volume not kept: %q", out)
	}
}

func TestDockerCLIRunsContainers(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	if r := d.docker(t, "run", "--rm", "--network", "none", img, "echo", "hi from docker"); r.Code != 0 || r.Stdout != "hi from docker\n" {
		t.Fatalf("docker run: %s", r)
	}
	if r := d.docker(t, "run", "--rm", "--network", "none", img, "sh", "-c", "exit 7"); r.Code != 7 {
		t.Fatalf("docker run exit code: %s", r)
	}
	if r := d.docker(t, "run", "-d", "--name", "bg", "--network", "none", img, "sh", "-c", "echo started; sleep 60"); r.Code != 0 {
		t.Fatalf("docker run -d: %s", r)
	}
	if r := d.docker(t, "ps"); !strings.Contains(r.Stdout, "bg") {
		t.Fatalf("docker ps: %s", r)
	}
	waitFor(t, "docker logs", 10*time.Second, func() bool { return d.docker(t, "logs", "bg").Stdout == "started\n" })
	if r := d.docker(t, "stop", "-t", "1", "bg"); r.Code != 0 {
		t.Fatalf("docker stop: %s", r)
	}
	if r := d.docker(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "bg"); strings.TrimSpace(r.Stdout) != "exited 137" {
		t.Fatalf("docker inspect: %s", r)
	}
	if r := d.docker(t, "rm", "bg"); r.Code != 0 {
		t.Fatalf("docker rm: %s", r)
	}
	if r := d.docker(t, "ps", "-a", "-q"); strings.TrimSpace(r.Stdout) != "" {
		t.Fatalf("containers left: %s", r)
	}
}

// TestDevicesAndEscapes: nodes a container creates cannot be opened (nodev
// mounts, and the devices cgroup on v1); --device gives exactly the device
// asked for; a privileged container is the explicit exception.
func TestDevicesAndEscapes(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	out := d.mustFlick(t, "run", "--rm", img, "sh", "-c", `
mknod /tmp/mem c 1 1 && echo made-node
head -c 1 /tmp/mem >/dev/null 2>&1 && echo READ-HOST-MEMORY || echo node-refused
echo x > /dev/null && echo null-ok
`).Stdout
	if !strings.Contains(out, "made-node\nnode-refused\nnull-ok\n") {
		t.Fatalf("device isolation:\n%s", out)
	}
	// A host device passed with --device works (here /dev/zero under a new name).
	if out := d.mustFlick(t, "run", "--rm", "--device", "/dev/zero:/dev/mydev", img, "sh", "-c", "head -c 4 /dev/mydev | wc -c").Stdout; strings.TrimSpace(out) != "4" {
		t.Fatalf("--device: %q", out)
	}
	if out := d.mustFlick(t, "run", "--rm", "--privileged", img, "sh", "-c", "mknod /tmp/z c 1 5 && head -c 2 /tmp/z | wc -c").Stdout; strings.TrimSpace(out) != "2" {
		t.Fatalf("--privileged: %q", out)
	}
	// Docker's /sys: read-only, read-write when privileged.
	for _, c := range []struct{ flag, want string }{{"--privileged", "rw,"}, {"--privileged=false", "ro,"}} {
		if out := d.mustFlick(t, "run", "--rm", c.flag, img, "sh", "-c", `awk '$2 == "/sys" { print $4 }' /proc/mounts`).Stdout; !strings.HasPrefix(out, c.want) {
			t.Fatalf("%s: /sys mounted %q", c.flag, out)
		}
	}
}

// runWithStdin runs flick with stdin.
func (d *Daemon) flickStdin(t *testing.T, stdin string, args ...string) Result {
	t.Helper()
	cmd := exec.Command(flickBin(t), append([]string{"-H", d.Host()}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// inPTY runs a shell command under script(1), which gives it a real
// pseudo-terminal, feeding it keystrokes with pauses; it returns what the
// terminal showed (carriage returns dropped) and the command's status.
func inPTY(t *testing.T, env []string, command string, keys ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("script", "-qfec", command, "/dev/null")
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		for _, k := range keys {
			time.Sleep(700 * time.Millisecond)
			pw.Write([]byte(k))
		}
		time.Sleep(2 * time.Second)
		pw.Close()
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("terminal session hung; output so far:\n%s", out.String())
	}
	return strings.ReplaceAll(out.String(), "\r", ""), cmd.ProcessState.ExitCode()
}

func TestInteractiveAndTTY(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	if r := d.flickStdin(t, "sensor-42\n", "run", "-i", "--rm", img, "sh", "-c", "read x; echo got:$x"); r.Code != 0 || r.Stdout != "got:sensor-42\n" {
		t.Fatalf("run -i: %s", r)
	}
	// The real docker CLI in a real terminal: docker run -it.
	// The terminal is made inside the container, as runc does: the app's
	// ttyname is /dev/pts/0, /dev/console names it, and it starts at the
	// client's size (HostConfig.ConsoleSize), not 0x0.
	out, code := inPTY(t, []string{"DOCKER_HOST=" + d.Host()}, "stty rows 33 cols 77; docker run -it --rm --network none "+img+" sh",
		"echo answer-$((6*7))\n", "tty; stty size; test -c /dev/console && echo console-ok; exit 3\n")
	if code != 3 || !strings.Contains(out, "answer-42") {
		t.Fatalf("docker run -it: exit %d\n%s", code, out)
	}
	for _, want := range []string{"\n/dev/pts/0\n", "\n33 77\n", "\nconsole-ok\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("docker run -it: no %q in\n%s", want, out)
		}
	}
	out, code = inPTY(t, nil, "stty rows 21 cols 61; "+flickBin(t)+" -H "+d.Host()+" run -t --rm "+img+" sh -c 'tty; stty size'")
	if code != 0 || !strings.Contains(out, "/dev/pts/0\n21 61\n") {
		t.Errorf("flick run -t: exit %d\n%s", code, out)
	}
	// And flick's own run -it.
	out, code = inPTY(t, nil, flickBin(t)+" -H "+d.Host()+" run -it --rm "+img+" sh", "echo flick-$((2+3))\n", "exit 4\n")
	if code != 4 || !strings.Contains(out, "flick-5") {
		t.Fatalf("flick run -it: exit %d\n%s", code, out)
	}
}

func TestStatsTopPruneVolumes(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	d.mustFlick(t, "run", "-d", "--name", "busy", "--memory", "64m", "--pids-limit", "50", "-v", "data:/data", img,
		"sh", "-c", "while true; do :; done")
	out := d.mustFlick(t, "stats", "--no-stream", "busy").Stdout
	if !strings.Contains(out, "busy") || !strings.Contains(out, "64MiB") {
		t.Fatalf("stats: %s", out)
	}
	var s struct {
		CPU struct {
			Usage struct {
				Total uint64 `json:"total_usage"`
			} `json:"cpu_usage"`
		} `json:"cpu_stats"`
		Pids struct{ Current uint64 } `json:"pids_stats"`
	}
	json.Unmarshal([]byte(d.mustFlick(t, "stats", "--no-stream", "--json", "busy").Stdout), &s)
	if s.CPU.Usage.Total == 0 || s.Pids.Current == 0 {
		t.Fatalf("stats --json: %+v", s)
	}
	if top := d.mustFlick(t, "top", "busy").Stdout; !strings.Contains(top, "while true") {
		t.Fatalf("top: %s", top)
	}
	// docker's own views of the same.
	if r := d.docker(t, "stats", "--no-stream", "busy"); r.Code != 0 || !strings.Contains(r.Stdout, "busy") {
		t.Fatalf("docker stats: %s", r)
	}
	if r := d.docker(t, "top", "busy"); r.Code != 0 || !strings.Contains(r.Stdout, "while true") {
		t.Fatalf("docker top: %s", r)
	}
	if r := d.flick(t, "volume", "rm", "data"); r.Code != 4 || !strings.Contains(r.Stderr, "in use") {
		t.Fatalf("volume rm while used: %s", r)
	}
	d.mustFlick(t, "rm", "-f", "busy")
	d.mustFlick(t, "run", "--name", "done1", img, "true")
	if out := d.mustFlick(t, "container", "prune", "-f").Stdout; !strings.Contains(out, "Total reclaimed space") {
		t.Fatalf("container prune: %s", out)
	}
	if out := d.mustFlick(t, "ps", "-aq").Stdout; out != "" {
		t.Fatalf("containers left after prune: %q", out)
	}
	if out := d.mustFlick(t, "volume", "ls").Stdout; !strings.Contains(out, "data") {
		t.Fatalf("volume ls: %s", out)
	}
	if r := d.docker(t, "volume", "prune", "-a", "-f"); r.Code != 0 || !strings.Contains(r.Stdout, "data") {
		t.Fatalf("docker volume prune -a: %s", r)
	}
	if out := d.mustFlick(t, "volume", "ls", "--json").Stdout; strings.TrimSpace(out) != "null" && strings.TrimSpace(out) != "[]" {
		t.Fatalf("volumes left: %s", out)
	}
}

func TestExec(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	d.mustFlick(t, "run", "-d", "--name", "svc", "-e", "MODE=prod", img, "sh", "-c", "echo $$ > /tmp/main.pid; sleep 300")
	out := d.docker(t, "exec", "svc", "sh", "-c", "echo mode=$MODE; cat /tmp/main.pid; ls -d /proc/[0-9]* | wc -l; grep CapEff /proc/self/status; exit 5")
	if out.Code != 5 || !strings.Contains(out.Stdout, "mode=prod\n1\n") || !strings.Contains(out.Stdout, "CapEff:\t00000000a80425fb") {
		t.Fatalf("docker exec: %s", out)
	}
	if out.Stderr != "" {
		t.Errorf("docker exec wrote to stderr what the command did not: %q", out.Stderr)
	}
	if r := d.docker(t, "exec", "-u", "app", "svc", "id", "-u"); strings.TrimSpace(r.Stdout) != "1000" {
		t.Fatalf("docker exec -u app: %s", r)
	}
	if r := d.docker(t, "exec", "svc", "no-such-cmd"); r.Code != 127 {
		t.Fatalf("exec of a missing command: %s", r)
	}
	term, code := inPTY(t, []string{"DOCKER_HOST=" + d.Host()}, "docker exec -it svc sh", "echo in-$((3*3))\n", "exit 2\n")
	if code != 2 || !strings.Contains(term, "in-9") {
		t.Fatalf("docker exec -it: exit %d\n%s", code, term)
	}
	if r := d.flick(t, "exec", "-e", "X=1", "svc", "sh", "-c", "echo x=$X; exit 6"); r.Code != 6 || r.Stdout != "x=1\n" {
		t.Fatalf("flick exec: %s", r)
	}
	term, code = inPTY(t, nil, "stty rows 19 cols 71; "+flickBin(t)+" -H "+d.Host()+" exec -it svc sh", "echo tty-$((4*4))\n", "tty; stty size; exit 0\n")
	if code != 0 || !strings.Contains(term, "tty-16") {
		t.Fatalf("flick exec -it: exit %d\n%s", code, term)
	}
	if !strings.Contains(term, "\n/dev/pts/") || !strings.Contains(term, "\n19 71\n") {
		t.Errorf("flick exec -it: the terminal is not the container's own, or not at the client's size:\n%s", term)
	}
	d.mustFlick(t, "rm", "-f", "svc")
	if r := d.docker(t, "exec", "svc", "true"); r.Code == 0 {
		t.Fatal("exec into a removed container succeeded")
	}
}

// TestLogCapAndBootRestart: a container flooding stdout stays within its
// log cap; a container with --restart always comes back when the daemon
// starts after its monitor died with the host.
func TestLogCapAndBootRestart(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	d.mustFlick(t, "run", "--name", "flood", "--log-opt", "max-size=64k", "--log-opt", "max-file=2", img,
		"sh", "-c", "yes flooding-the-log | head -n 300000; echo last-line")
	var total int64
	c := d.inspectContainer(t, "flood")
	for _, suffix := range []string{"", ".1", ".2", ".3"} {
		if fi, err := os.Stat(filepath.Join(d.DataRoot, "containers", c.ID, "container.log"+suffix)); err == nil {
			total += fi.Size()
			if suffix == ".2" || suffix == ".3" {
				t.Errorf("more files kept than max-file=2: %s", suffix)
			}
		}
	}
	if total > 2*64<<10+4096 {
		t.Fatalf("log files hold %d bytes for a 2 x 64 KiB cap", total)
	}
	if out := d.mustFlick(t, "logs", "--tail", "1", "flood").Stdout; out != "last-line\n" {
		t.Fatalf("latest output lost: %q", out)
	}
	if r := d.flick(t, "run", "--log-opt", "max-size=1", img, "true"); r.Code != 2 {
		t.Fatalf("tiny max-size accepted: %s", r)
	}
	// Power cut: daemon, monitor and app die at once; the daemon comes back.
	d.mustFlick(t, "run", "-d", "--name", "always", "--restart", "always", img, "sleep", "300")
	d.mustFlick(t, "run", "-d", "--name", "once", img, "sleep", "300")
	shims := []int{}
	for _, n := range []string{"always", "once"} {
		s := d.monitorState(t, n)
		shims = append(shims, s.ShimPid, s.Pid)
	}
	d.Kill()
	for _, pid := range shims {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	time.Sleep(200 * time.Millisecond)
	d.start()
	if st := d.inspectContainer(t, "always").State; !st.Running {
		t.Fatalf("--restart always container not restarted at daemon start: %+v", st)
	}
	if st := d.inspectContainer(t, "once").State; st.Running || st.Status != "exited" {
		t.Fatalf("container without a restart policy: %+v", st)
	}
	d.mustFlick(t, "rm", "-f", "always", "once", "flood")
}

func TestDockerEvents(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ev := exec.CommandContext(ctx, "docker", "events", "--filter", "container=evt", "--format", "{{.Action}}")
	ev.Env = append(os.Environ(), "DOCKER_HOST="+d.Host())
	out, err := ev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); ev.Wait() }()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(500 * time.Millisecond)
	d.flick(t, "run", "--name", "evt", "--memory", "16m", img, "sh", "-c", `a=$(head -c 100000000 /dev/zero | tr "\0" x)`)
	d.mustFlick(t, "rm", "evt")
	want := []string{"create", "start", "oom", "die", "destroy"}
	var got []string
	for len(got) < len(want) {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("events ended; got %v", got)
			}
			got = append(got, l)
		case <-ctx.Done():
			t.Fatalf("events: got %v, want %v", got, want)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// TestBridgeNetwork runs the daemon in a network namespace the test made
// (standing in for the host's), so the bridge, veths and nftables rules it
// creates never touch the real host: containers reach each other over the
// bridge, a published port answers on the "host", a taken port is refused,
// and removal cleans up.
func TestBridgeNetwork(t *testing.T) {
	requireRoot(t)
	ns := fmt.Sprintf("flke2e%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	exec.Command("ip", "-n", ns, "link", "set", "lo", "up").Run()
	d := startDaemon(t)
	img := busyboxImage(t, d) // pulled while the daemon can reach the registry
	d.Stop()
	// nsenter, not "ip netns exec", which remounts /sys and hides the cgroups.
	d.wrap = []string{"nsenter", "--net=/run/netns/" + ns}
	d.extra = append(d.extra, "--bridge=flkbr0", "--bridge-subnet=10.213.0.0/24")
	d.start()
	inNS := func(args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
		return string(out), err
	}
	d.mustFlick(t, "run", "-d", "--name", "web", "-p", "18080:8000", img, "sh", "-c", "mkdir /www && echo hello-from-web > /www/index.html && httpd -f -p 8000 -h /www")
	var full []struct {
		NetworkSettings struct {
			Networks map[string]struct{ IPAddress string }
		}
	}
	json.Unmarshal([]byte(d.mustFlick(t, "inspect", "web").Stdout), &full)
	ip := full[0].NetworkSettings.Networks["bridge"].IPAddress
	if !strings.HasPrefix(ip, "10.213.0.") {
		t.Fatalf("container address %q is not on the bridge subnet", ip)
	}
	// Container to container over the bridge.
	var out string
	waitFor(t, "web server", 10*time.Second, func() bool {
		out = d.flick(t, "run", "--rm", img, "wget", "-qO-", "http://"+ip+":8000/").Stdout
		return out == "hello-from-web\n"
	})
	// The published port, from the "host" (the daemon's namespace).
	if out, err := inNS("/bin/busybox", "wget", "-qO-", "http://10.213.0.1:18080/"); err != nil || out != "hello-from-web\n" {
		t.Fatalf("published port from the host: %v %q", err, out)
	}
	if ps := d.mustFlick(t, "ps").Stdout; !strings.Contains(ps, "web") {
		t.Fatalf("ps: %s", ps)
	}
	// A taken port is refused with Docker's words; nothing is left of it.
	if r := d.flick(t, "run", "-d", "--name", "clash", "-p", "18080:80", img, "sleep", "60"); r.Code == 0 || !strings.Contains(r.Stderr, "port is already allocated") {
		t.Fatalf("port clash: %s", r)
	}
	d.flick(t, "rm", "-f", "clash")
	// The same with --rm: the start fails, the container goes, and the
	// client says why (it used to hang on a created container).
	if r := d.docker(t, "run", "--rm", "--name", "clash2", "-p", "18080:80", img, "true"); r.Code != 125 || !strings.Contains(r.Stderr, "port is already allocated") {
		t.Fatalf("--rm port clash: %s", r)
	}
	if r := d.docker(t, "ps", "-aq", "-f", "name=clash2"); strings.TrimSpace(r.Stdout) != "" {
		t.Fatalf("a --rm container that could not start is left: %s", r)
	}
	// Scripts read the address at the top of NetworkSettings.
	if r := d.docker(t, "inspect", "-f", "{{.NetworkSettings.IPAddress}} {{.HostConfig.NetworkMode}}", "web"); strings.TrimSpace(r.Stdout) != ip+" bridge" {
		t.Fatalf("inspect of the address: %s", r)
	}
	if r := d.docker(t, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "bridge"); strings.TrimSpace(r.Stdout) != "10.213.0.0/24" {
		t.Fatalf("network inspect bridge: %s", r)
	}
	d.mustFlick(t, "rm", "-f", "web")
	if links, _ := inNS("ip", "-o", "link"); strings.Count(links, "veth") != 0 {
		t.Fatalf("veths left after removal:\n%s", links)
	}
}

// TestImageInUseByContainer: rmi of an image a container uses untags it but
// keeps it (by ID it is refused), prune -a keeps it, and the container can
// start again; once the container is gone the image can go.
func TestImageInUseByContainer(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	d.mustFlick(t, "run", "--name", "user", img, "true")
	id := strings.TrimSpace(d.mustFlick(t, "images", "-q").Stdout)
	if r := d.flick(t, "rmi", id); r.Code != 4 || !strings.Contains(r.Stderr, "being used by container user") {
		t.Fatalf("rmi by ID of an image in use: %s", r)
	}
	d.mustFlick(t, "rmi", img) // untag only
	d.mustFlick(t, "image", "prune", "-a", "-f")
	if out := d.mustFlick(t, "start", "user").Stdout; !strings.Contains(out, "user") {
		t.Fatalf("the container cannot start after its image was untagged and pruned: %s", out)
	}
	d.mustFlick(t, "wait", "user")
	d.mustFlick(t, "rm", "user")
	d.mustFlick(t, "image", "prune", "-a", "-f")
	if out := d.mustFlick(t, "images", "-q").Stdout; out != "" {
		t.Fatalf("image left after its container was removed: %q", out)
	}
}

// TestCgroupFSInside: a container sees its own cgroup at /sys/fs/cgroup,
// read-only, so runtimes that size themselves by their limits (the JVM,
// Go, Node) see the container's; hierarchies Flick does not place it in
// are not shown (they would be the host's root). This host is v1 (hybrid);
// the v2 form (cgroup namespace, cgroup2 mount) is in TestCgroupV2InVM.
func TestCgroupFSInside(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	out := d.mustFlick(t, "run", "--rm", "--memory", "32m", "--pids-limit", "50", "--cpus", "0.5", img, "sh", "-c", `
cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max
cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us
echo 1 > /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null && echo WROTE || echo read-only
ls /sys/fs/cgroup | grep -c -x -e blkio -e systemd -e cpuset || true
`).Stdout
	if want := "33554432\n50\n50000\nread-only\n0\n"; out != want {
		t.Fatalf("inside the container:\n%s\nwant:\n%s", out, want)
	}
}

// TestStartAndRemoveRace: a removal that comes while a start is launching
// the container waits for the start, then refuses (the container runs); or
// it goes first and the start finds no container. Either way no app runs on
// without its container. Before the per-container lock the removal deleted
// the bundle under the starting monitor, and the app ran on, in its cgroup,
// with nothing in the daemon to show or stop it.
func TestStartAndRemoveRace(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	const marker = "3107" // sleep 3107: this test's apps, whatever else runs
	// Apps leaked by a failure would outlive the test (and fail the next
	// run's count): kill them.
	t.Cleanup(func() {
		for pid := range appsRunning(t, "sleep\x00"+marker+"\x00") {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	var first [2]int // rounds the removal, the start went first
	defer func() { t.Logf("the removal went first %d times, the start %d times", first[0], first[1]) }()
	for i := 0; i < 10; i++ {
		id := strings.TrimSpace(d.mustFlick(t, "create", img, "sleep", marker).Stdout)
		started := make(chan Result, 1)
		go func() { started <- d.flick(t, "start", id) }()
		time.Sleep(time.Duration(i%5) * 2 * time.Millisecond) // land the removal at different points of the start
		rm := d.flick(t, "rm", id)
		st := <-started
		switch {
		case rm.Code == 0 && st.Code == 0: // the app outlives its container
			t.Fatalf("round %d: both the start and the removal succeeded:\nstart: %s\nrm: %s", i, st, rm)
		case rm.Code == 0:
			if !strings.Contains(st.Stderr, "No such container") {
				t.Fatalf("round %d: start after the removal: %s", i, st)
			}
			first[0]++
		case st.Code == 0:
			if !strings.Contains(rm.Stderr, "container is running") {
				t.Fatalf("round %d: removal of the started container: %s", i, rm)
			}
			first[1]++
		default:
			t.Fatalf("round %d: neither worked:\nstart: %s\nrm: %s", i, st, rm)
		}
	}
	// A start whose client gives up at once (Ctrl-C, an HTTP timeout)
	// goes on; a removal right after it must still not pull the bundle
	// from under it (a review found that the lock was let go with the
	// client), and a forced one must kill what the start brought up. The
	// client's patience grows until some starts went on (those the
	// removal refused); the rounds that did not prove nothing.
	wentOn, rounds := 0, 0
	defer func() {
		t.Logf("cancelled starts that went on (their removal refused): %d, in %d rounds", wentOn, rounds)
	}()
	for i := 0; i < 40 && wentOn < 3; i++ {
		rounds = i + 1
		id := strings.TrimSpace(d.mustFlick(t, "create", img, "sleep", marker).Stdout)
		c := d.httpClient()
		c.Timeout = time.Duration(1+i/2) * time.Millisecond
		if resp, err := c.Post("http://flick/v1.47/containers/"+id+"/start", "", nil); err == nil {
			resp.Body.Close()
		}
		time.Sleep(500 * time.Microsecond)
		if i%2 == 1 {
			d.mustFlick(t, "rm", "-f", id) // the app, if it came up, dies with it: counted below
			continue
		}
		rm := d.flick(t, "rm", id)
		switch {
		case rm.Code == 0:
		case strings.Contains(rm.Stderr, "container is running") || strings.Contains(rm.Stderr, "still restarting or starting"):
			wentOn++
		default:
			t.Fatalf("round %d: removal after a cancelled start: %s", i, rm)
		}
	}
	if wentOn == 0 {
		t.Error("no cancelled start went on in 40 rounds: the removal after it was never put to the test")
	}
	// Every app of this test runs in a container the daemon lists.
	var list []struct {
		ID string `json:"Id"`
	}
	if err := json.Unmarshal([]byte(d.mustFlick(t, "ps", "-a", "--json").Stdout), &list); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, c := range list {
		listed[c.ID] = true
	}
	apps := appsRunning(t, "sleep\x00"+marker+"\x00")
	for pid, id := range apps {
		if !listed[id] {
			t.Errorf("app %d runs in cgroup %s, a container the daemon does not list", pid, id)
		}
	}
	if len(apps) != len(list) {
		t.Errorf("%d apps run for %d containers", len(apps), len(list))
	}
	for id := range listed {
		d.mustFlick(t, "rm", "-f", id)
	}
	waitFor(t, "the apps to end", 10*time.Second, func() bool { return len(appsRunning(t, "sleep\x00"+marker+"\x00")) == 0 })
}

// appsRunning maps the processes whose command line starts with cmdline
// (NUL-separated) to the container ID of their cgroup.
func appsRunning(t *testing.T, cmdline string) map[int]string {
	t.Helper()
	out := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cl, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.HasPrefix(string(cl), cmdline) {
			continue
		}
		cg, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		id := ""
		for _, line := range strings.Split(string(cg), "\n") {
			if i := strings.LastIndex(line, "/"); i >= 0 && len(line)-i-1 == 64 {
				id = line[i+1:]
				break
			}
		}
		out[pid] = id
	}
	return out
}
