package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// warmMonitors lists the warm container monitors (`flick __shim --warm`)
// whose parent is pid, and their inits.
func warmMonitors(t *testing.T, parent int) (mons, inits []int) {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	var all []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		switch {
		case len(args) == 6 && args[1] == "__shim" && args[4] == "--warm" && ppid(pid) == parent:
			mons = append(mons, pid)
		case len(args) == 3 && args[1] == "__init" && args[2] == "--warm":
			all = append(all, pid)
		}
	}
	for _, p := range all {
		for _, m := range mons {
			if ppid(p) == m {
				inits = append(inits, p)
			}
		}
	}
	return mons, inits
}

func ppid(pid int) int {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// TestWarmMonitors: after the first start the daemon keeps a monitor (and
// its init) started ahead of need, at a low priority; the next container
// takes it, sees what was mounted on the host since it warmed up, and is an
// ordinary container (its own cgroup, network, priority). Warm monitors go
// with their daemon; --warm-monitors 0 keeps none.
func TestWarmMonitors(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	if mons, _ := warmMonitors(t, d.cmd.Process.Pid); len(mons) != 0 {
		t.Fatalf("warm monitors before any container start: %v", mons)
	}
	d.mustFlick(t, "run", "--rm", img, "true")
	var warm, warmInit int
	waitFor(t, "a warm monitor", 10*time.Second, func() bool {
		mons, inits := warmMonitors(t, d.cmd.Process.Pid)
		if len(mons) == 1 && len(inits) >= 1 {
			warm, warmInit = mons[0], inits[0]
			return true
		}
		return false
	})
	// Monitors and inits run from the lean helpers make embeds, installed
	// under the data root, not from flick itself.
	for pid, name := range map[int]string{warm: "flick-monitor-", warmInit: "flick-init-"} {
		exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
		if err != nil || filepath.Dir(exe) != filepath.Join(d.DataRoot, "helpers") || !strings.HasPrefix(filepath.Base(exe), name) {
			t.Fatalf("warm process %d runs %q (%v), want %s* under %s/helpers", pid, exe, err, name, d.DataRoot)
		}
		hst, _ := os.Stat(exe)
		fst, _ := os.Stat(flickBin(t))
		if hst == nil || fst == nil || hst.Size()*3 > fst.Size() {
			t.Fatalf("helper %s is not lean beside flick: %v vs %v", exe, hst, fst)
		}
	}
	if n, err := syscall.Getpriority(syscall.PRIO_PROCESS, warm); err != nil || 20-n != 19 {
		t.Fatalf("warm monitor %d: nice %d (%v), want 19", warm, 20-n, err)
	}

	// Mounted after the warm init's namespaces were made.
	src := t.TempDir()
	if err := syscall.Mount("tmpfs", src, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(src, syscall.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(src, "marker"), []byte("on-the-new-mount\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.mustFlick(t, "run", "-d", "--name", "warmed", "-v", src+":/data", img, "sh", "-c",
		"cat /data/marker; cat /proc/self/cgroup | grep -c $(hostname); awk '{print $19}' /proc/self/stat; sleep 60")
	c := d.inspectContainer(t, "warmed")
	if st := d.monitorState(t, "warmed"); st.ShimPid != warm {
		t.Fatalf("container warmed's monitor is %d, want the warm one %d", st.ShimPid, warm)
	}
	var logs string
	waitFor(t, "w's output", 10*time.Second, func() bool {
		logs = d.mustFlick(t, "logs", "warmed").Stdout
		if strings.Count(logs, "\n") >= 3 {
			return true
		}
		t.Logf("logs so far: %q", logs)
		return false
	})
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if lines[0] != "on-the-new-mount" {
		t.Fatalf("the volume mounted on the host after warm-up is not seen: %q", logs)
	}
	if lines[1] == "0" {
		t.Fatalf("the app's /proc/self/cgroup does not name its container: %q", logs)
	}
	if lines[2] != "0" {
		t.Fatalf("the app runs at nice %s, want the daemon's 0", lines[2])
	}
	if n, _ := syscall.Getpriority(syscall.PRIO_PROCESS, warm); 20-n != 0 {
		t.Fatalf("the adopted monitor kept nice %d", 20-n)
	}
	cg, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.State.Pid), "cgroup"))
	if !strings.Contains(string(cg), c.ID) {
		t.Fatalf("the app is not in its container's cgroup:\n%s", cg)
	}
	// The pool refills.
	var next int
	waitFor(t, "the next warm monitor", 10*time.Second, func() bool {
		mons, _ := warmMonitors(t, d.cmd.Process.Pid) // the adopted one too
		for _, m := range mons {
			if m != warm {
				next = m
				return true
			}
		}
		return false
	})
	warmCg := filepath.Join("/sys/fs/cgroup/memory/flick", "warm-"+strconv.Itoa(next))
	if _, err := os.Stat("/sys/fs/cgroup/memory/flick"); err == nil { // v1: it waits in a cgroup of its own
		waitFor(t, "the warm init's cgroup "+warmCg, 10*time.Second, func() bool { _, err := os.Stat(warmCg); return err == nil })
	}
	_, inits := warmMonitors(t, d.cmd.Process.Pid)

	// The daemon stops: its warm monitor and init go, the container stays.
	d.Stop()
	waitFor(t, "the warm monitor to exit", 10*time.Second, func() bool { return !isShim(next) })
	waitFor(t, "the warm cgroup to go", 10*time.Second, func() bool { _, err := os.Stat(warmCg); return err != nil })
	for _, p := range inits {
		waitFor(t, "the warm init to exit", 10*time.Second, func() bool { return !alive(p) || !isWarmInit(p) })
	}
	if !alive(warm) || !alive(c.State.Pid) {
		t.Fatal("the container did not outlive its daemon")
	}
	d.start()
	d.mustFlick(t, "rm", "-f", "warmed")

	off := startDaemon(t, func(d *Daemon) { d.extra = append(d.extra, "--warm-monitors=0") })
	img = busyboxImage(t, off)
	for range 2 {
		off.mustFlick(t, "run", "--rm", img, "true")
	}
	time.Sleep(300 * time.Millisecond)
	if mons, _ := warmMonitors(t, off.cmd.Process.Pid); len(mons) != 0 {
		t.Fatalf("--warm-monitors 0 still warmed %v", mons)
	}
	if out, err := exec.Command(flickBin(t), "daemon", "--warm-monitors", "9", "--config-file", "/dev/null").CombinedOutput(); err == nil || !strings.Contains(string(out), "warm-monitors must be 0..8") {
		t.Fatalf("--warm-monitors 9 accepted: %v %s", err, out)
	}
}

// TestWarmProcessesKilledWhileWaiting: a warm init or monitor killed while
// it waits (by hand, by the OOM killer) costs no start: the daemon, which
// gives a warm init its go-ahead itself, sees the init gone and takes
// another monitor; the init of a killed monitor does not wait on for a
// go-ahead from the daemon.
func TestWarmProcessesKilledWhileWaiting(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	d.mustFlick(t, "run", "--rm", img, "true")
	pair := func() (mon, init int) {
		waitFor(t, "a warm monitor and its init", 10*time.Second, func() bool {
			_, inits := warmMonitors(t, d.cmd.Process.Pid) // a miss may have grown the pool
			if len(inits) > 0 {
				mon, init = ppid(inits[0]), inits[0]
				return true
			}
			return false
		})
		return mon, init
	}
	mon, init := pair()
	if _, err := os.Stat("/sys/fs/cgroup/memory/flick"); err == nil {
		// v1: once the init waits in its cgroup, the daemon gives the
		// go-ahead itself and finds it gone; before, or on v2, its
		// monitor does and starts another.
		procs := filepath.Join("/sys/fs/cgroup/memory/flick", "warm-"+strconv.Itoa(mon), "cgroup.procs")
		waitFor(t, "the warm init in its cgroup", 10*time.Second, func() bool {
			b, _ := os.ReadFile(procs)
			return slices.Contains(strings.Fields(string(b)), strconv.Itoa(init))
		})
	}
	if err := syscall.Kill(init, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed init to be reaped", 10*time.Second, func() bool { return !alive(init) || !isWarmInit(init) })
	if out := d.mustFlick(t, "run", "--rm", img, "echo", "after-init-killed").Stdout; out != "after-init-killed\n" {
		t.Fatalf("run after a warm init was killed: %q", out)
	}
	mon, init = pair()
	if err := syscall.Kill(mon, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the init of a killed warm monitor to exit", 10*time.Second, func() bool { return !alive(init) || !isWarmInit(init) })
	if out := d.mustFlick(t, "run", "--rm", img, "echo", "after-monitor-killed").Stdout; out != "after-monitor-killed\n" {
		t.Fatalf("run after a warm monitor was killed: %q", out)
	}
}

func isShim(pid int) bool {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return strings.Contains(string(b), "__shim")
}

func isWarmInit(pid int) bool {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return strings.Contains(string(b), "__init\x00--warm")
}

// TestMonitorOutlivesItsHelperFile: an upgrade installs a new helper and
// removes the old one while monitors run from it. A monitor keeps running
// from the unlinked file and still restarts its container by policy (it
// re-executes itself through /proc/self/exe, which names the open inode,
// not the path).
func TestMonitorOutlivesItsHelperFile(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	d.mustFlick(t, "run", "-d", "--name", "crashy", "--restart", "always", img, "sh", "-c", "echo run; sleep 0.3; exit 3")
	st := d.monitorState(t, "crashy")
	if st.ShimPid == 0 {
		t.Fatalf("state.json: %+v, no monitor pid", st)
	}
	exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(st.ShimPid), "exe"))
	if err != nil || !strings.HasPrefix(filepath.Base(exe), "flick-monitor-") {
		t.Fatalf("monitor %d runs %q (%v)", st.ShimPid, exe, err)
	}

	// The "upgrade": the daemon stops, the old helpers go (the monitor's,
	// and the init it starts at each restart), the daemon starts and
	// installs its own (here the same bytes, new files).
	d.Stop()
	olds, _ := filepath.Glob(filepath.Join(d.DataRoot, "helpers", "flick-*"))
	if len(olds) != 2 {
		t.Fatalf("installed helpers: %v, want the monitor and the init", olds)
	}
	for _, f := range olds {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	d.start()
	if now, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(st.ShimPid), "exe")); !strings.HasSuffix(now, "(deleted)") {
		t.Fatalf("the monitor's executable is %q, want the unlinked old file", now)
	}
	before := d.inspectContainer(t, "crashy").RestartCount
	waitFor(t, "two more restarts by the old monitor", 20*time.Second, func() bool {
		return d.inspectContainer(t, "crashy").RestartCount >= before+2
	})
	if now := d.monitorState(t, "crashy"); now.ShimPid != st.ShimPid {
		t.Fatalf("monitor changed from %d to %d; the old one should have kept the container", st.ShimPid, now.ShimPid)
	}
	if logs := d.mustFlick(t, "logs", "crashy").Stdout; strings.Count(logs, "run\n") < before+3 {
		t.Fatalf("logs after %d restarts:\n%s", before, logs)
	}
	d.mustFlick(t, "rm", "-f", "crashy")
}

// A data root that cannot hold the helpers (here a file where their
// directory goes): the daemon runs them from memory, and containers run.
func TestHelpersFromMemory(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t, func(d *Daemon) {
		if err := os.MkdirAll(d.DataRoot, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d.DataRoot, "helpers"), []byte("not a directory"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	img := busyboxImage(t, d)
	if out := d.mustFlick(t, "run", "--rm", img, "echo", "from memory").Stdout; out != "from memory\n" {
		t.Fatalf("output %q", out)
	}
	d.mustFlick(t, "run", "-d", "--name", "mem", img, "sleep", "30")
	st := d.monitorState(t, "mem")
	if st.ShimPid == 0 {
		t.Fatalf("state.json: %+v, no monitor pid", st)
	}
	exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(st.ShimPid), "exe"))
	if !strings.HasPrefix(exe, "/memfd:flick-monitor") {
		t.Fatalf("monitor %d runs %q, want the in-memory helper", st.ShimPid, exe)
	}
	if out := d.mustFlick(t, "exec", "mem", "echo", "exec too").Stdout; out != "exec too\n" {
		t.Fatalf("exec output %q", out)
	}
	if !strings.Contains(d.log.String(), "running them from memory") {
		t.Fatalf("no warning in the daemon's log:\n%s", d.log.String())
	}
	d.mustFlick(t, "rm", "-f", "mem")
}

// TestWarmAndColdContainersMountTheSame: a container started by a warm
// init (its /proc, /dev and, without another network namespace, /sys
// staged ahead and moved in) sees the mounts one started cold sees.
func TestWarmAndColdContainersMountTheSame(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	img := busyboxImage(t, d)
	mounts := func(name string, args ...string) []string {
		run := append(append([]string{"run", "--name", name}, args...), img, "cat", "/proc/self/mountinfo")
		out := d.mustFlick(t, run...).Stdout
		id := d.inspectContainer(t, name).ID
		d.mustFlick(t, "rm", name)
		var lines []string
		for _, l := range strings.Split(strings.ReplaceAll(out, id, "ID"), "\n") {
			f := strings.Fields(l)
			if sep := slices.Index(f, "-"); sep > 5 && len(f) > sep+3 {
				// Without the mount, device and peer group ids: mount point,
				// file system, its root, options, propagation, source,
				// super options.
				var prop []string
				for _, o := range f[6:sep] {
					k, _, _ := strings.Cut(o, ":")
					prop = append(prop, k)
				}
				if len(prop) == 0 {
					prop = []string{"private"}
				}
				lines = append(lines, strings.Join([]string{f[4], f[sep+1], f[3], f[5], strings.Join(prop, ","), f[sep+2], f[sep+3]}, " "))
			}
		}
		slices.Sort(lines)
		return lines
	}
	for _, network := range []string{"none", "host"} {
		// The first start after the daemon's is cold; it leaves a warm
		// monitor for the next.
		d.Restart()
		cold := mounts("cold-"+network, "--network", network)
		waitFor(t, "a warm monitor", 10*time.Second, func() bool {
			_, inits := warmMonitors(t, d.cmd.Process.Pid)
			return len(inits) == 1
		})
		warm := mounts("warm-"+network, "--network", network)
		if len(cold) < 20 || !slices.Equal(cold, warm) {
			t.Fatalf("--network %s: cold and warm containers' mounts differ:\ncold:\n%s\nwarm:\n%s", network, strings.Join(cold, "\n"), strings.Join(warm, "\n"))
		}
	}
	// A volume on a masked path is masked too, as Docker applies the masks
	// after the mounts: the staged /sys, masked already, is not used then.
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "secret"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a warm monitor", 10*time.Second, func() bool {
		_, inits := warmMonitors(t, d.cmd.Process.Pid)
		return len(inits) >= 1
	})
	if out := d.mustFlick(t, "run", "--rm", "--network", "none", "-v", vol+":/sys/firmware", img, "ls", "/sys/firmware").Stdout; out != "" {
		t.Fatalf("a volume on the masked /sys/firmware shows %q", out)
	}
}
