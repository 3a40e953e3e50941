package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// vmInit is the VM's first process: busybox's shell, from the initramfs.
// The initramfs root cannot be pivoted away from, which every container
// start does, so it copies itself to a tmpfs and switches root there.
const vmInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mkdir -p /new && mount -t tmpfs -o size=768m tmpfs /new
cp -a /bin /flick /stage2 /overlay.ko /image /data /new/
mkdir -p /new/proc /new/sys /new/dev /new/tmp /new/run
umount /proc
exec switch_root /new /stage2
`

// vmStage2 brings up a cgroup v2 only system (no v1 hierarchy at all, as
// on a Raspberry Pi OS or Fedora gateway), starts the daemon on the data
// root the host test pulled the image into, and reports what the kernel
// enforced as "FLICK-VM key=value" lines for the host to check.
const vmStage2 = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs shm /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup
insmod /overlay.ko
ip link set lo up
say() { echo "FLICK-VM $1=$2"; }
say controllers "$(cat /sys/fs/cgroup/cgroup.controllers | tr ' ' ,)"
/flick daemon --data-root /data -H unix:///run/flick.sock --config-file /dev/null --bridge none \
	--mqtt-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --metrics-addr '' >/tmp/daemon.log 2>&1 &
f() { /flick -H unix:///run/flick.sock "$@"; }
for i in $(seq 1 100); do f version >/dev/null 2>&1 && break; sleep 0.1; done
IMG=$(cat /image)
cg() { cat "/sys/fs/cgroup/flick/$(f inspect "$1" | grep -m1 -o '"Id": *"[0-9a-f]*"' | grep -o '[0-9a-f]\{64\}')/$2" 2>&1 | tr '\n ' ';_'; }
state() { f inspect "$1" | grep -o "\"$2\": *[a-z0-9]*" | sed 's/.*: *//'; }

# Output and a clean exit; the second run takes a warm monitor (no cgroup
# rename on v2: its cgroup is made at the start).
say run1 "$(f run --rm --network none $IMG echo hello-v2 2>&1)"
say run2 "$(f run --rm --network none $IMG sh -c 'echo hello-again; cat /proc/self/cgroup' | tr '\n' ';')"
# A warm init killed while it waits: its monitor starts another (v2 has no
# warm cgroup, so the monitor, not the daemon, gives the go-ahead).
for i in $(seq 1 100); do p=$(ps -o pid,args | awk '/__init --war[m]/ { print $1; exit }'); [ -n "$p" ] && break; sleep 0.1; done
kill -9 $p && say killed yes
sleep 0.2
say run3 "$(f run --rm --network none $IMG echo after-warm-init-killed 2>&1)"

# The container's own cgroup at /sys/fs/cgroup, read-only, as JVMs and Go
# read their limits there.
f run -d --name sleeper --network none $IMG sleep 60 >/dev/null
say exec_cgroup "$(f exec sleeper cat /proc/self/cgroup)"
f rm -f sleeper >/dev/null
say cgfs "$(f run --rm --network none --memory 24m $IMG sh -c 'cat /sys/fs/cgroup/memory.max; echo 1 > /sys/fs/cgroup/memory.max 2>/dev/null && echo WROTE || echo read-only' | tr '\n' ';')"

# Memory: the app allocates without end and is OOM-killed in its cgroup
# (memory.events is hierarchical on v2: the parent counts the kill).
f run -d --name oom --network none --memory 24m $IMG sh -c 'sleep 2; x=aaaaaaaa; while :; do x=$x$x; done' >/dev/null
sleep 1
say oom_memory_max "$(cg oom memory.max)"
say oom_exit "$(f wait oom)"
say oom_killed "$(state oom OOMKilled)"
say oom_events "$(cat /sys/fs/cgroup/flick/memory.events | tr '\n ' ';_')"
f rm oom >/dev/null

# pids: a fork bomb (in a subshell, which dies when fork fails) stops at
# the limit; the container goes on.
f run -d --name forky --network none --pids-limit 12 $IMG sh -c '(while :; do sleep 30 & done) 2>/dev/null; exec sleep 30' >/dev/null
sleep 2
say pids_max "$(cg forky pids.max)"
say pids_current "$(cg forky pids.current)"
say pids_events "$(cg forky pids.events)"
f rm -f forky >/dev/null

# CPU: half a CPU, and the kernel throttles a busy loop to it.
f run -d --name spin --network none --cpus 0.5 $IMG sh -c 'while :; do :; done' >/dev/null
sleep 2
say cpu_max "$(cg spin cpu.max)"
say cpu_stat "$(cg spin cpu.stat)"
say stats "$(f stats --no-stream spin | tail -1 | tr -s ' ' _)"
f rm -f spin >/dev/null

# Devices: no eBPF device program on v2 yet; nodev keeps made nodes unusable.
say devices "$(f run --rm --network none $IMG sh -c 'mknod /tmp/mem c 1 1 && head -c 1 /tmp/mem >/dev/null 2>&1 && echo READ-HOST-MEMORY || echo node-refused')"
say device_flag "$(f run --rm --network none --device /dev/zero:/dev/mydev $IMG sh -c 'head -c 4 /dev/mydev | wc -c')"

say daemon_alive "$(f version >/dev/null 2>&1 && echo yes || echo no)"
say leftover_cgroups "$(ls /sys/fs/cgroup/flick 2>/dev/null | grep -c '^[0-9a-f]\{64\}$')"
grep -E 'level=(WARN|ERROR)' /tmp/daemon.log | head -20 | sed 's/^/FLICK-VM-LOG /'
echo FLICK-VM-DONE
poweroff -f
`

// TestCgroupV2InVM runs containers under a real cgroup v2 kernel: this host
// is hybrid (v1 controllers, an empty v2 hierarchy), so the v2 code paths
// are otherwise only checked against files. It boots Debian's cloud kernel
// (make test fetches it: scripts/vm-kernel.sh) under qemu with an initramfs
// of busybox, bin/flick and a data root holding the test image, and checks
// that memory, pids and CPU limits are enforced by the kernel and reported.
func TestCgroupV2InVM(t *testing.T) {
	requireRoot(t)
	kdir := os.Getenv("FLICK_VM_KERNEL")
	qemu, qerr := exec.LookPath(cmp.Or(os.Getenv("FLICK_VM_QEMU"), "qemu-system-x86_64"))
	if kdir == "" || qerr != nil {
		t.Skip("needs FLICK_VM_KERNEL (make test sets it) and qemu-system-x86_64 (.ci/run installs it)")
	}
	for _, f := range []string{"vmlinuz", "overlay.ko"} {
		if _, err := os.Stat(filepath.Join(kdir, f)); err != nil {
			t.Fatalf("%s: run scripts/vm-kernel.sh %s", err, kdir)
		}
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox (busybox-static) not installed")
	}

	// The image, pulled on the host into a data root the VM then uses.
	d := startDaemon(t)
	img := busyboxImage(t, d)
	d.Stop()

	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{"bin", "proc", "sys", "dev", "tmp", "run"} {
		must(os.MkdirAll(filepath.Join(root, dir), 0o755))
	}
	copyFile := func(src, dst string, mode os.FileMode) {
		b, err := os.ReadFile(src)
		must(err)
		must(os.WriteFile(filepath.Join(root, dst), b, mode))
	}
	copyFile(busybox, "bin/busybox", 0o755)
	copyFile(flickBin(t), "flick", 0o755)
	copyFile(filepath.Join(kdir, "overlay.ko"), "overlay.ko", 0o644)
	must(os.WriteFile(filepath.Join(root, "init"), []byte(vmInit), 0o755))
	must(os.WriteFile(filepath.Join(root, "stage2"), []byte(vmStage2), 0o755))
	must(os.WriteFile(filepath.Join(root, "image"), []byte(img), 0o644))
	if out, err := exec.Command("cp", "-a", d.DataRoot, filepath.Join(root, "data")).CombinedOutput(); err != nil {
		t.Fatalf("copy data root: %v\n%s", err, out)
	}
	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	pack := exec.Command("sh", "-c", "find . | cpio -o -H newc --quiet > "+initrd)
	pack.Dir = root
	if out, err := pack.CombinedOutput(); err != nil {
		t.Fatalf("cpio (apt-get install cpio): %v\n%s", err, out)
	}
	if keep := os.Getenv("FLICK_VM_KEEP_INITRD"); keep != "" {
		copyOut := exec.Command("cp", initrd, keep)
		must(copyOut.Run())
	}

	args := []string{"-m", "1024", "-smp", "2", "-nographic", "-no-reboot", "-nic", "none",
		"-kernel", filepath.Join(kdir, "vmlinuz"), "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet"}
	// Software emulation by default: KVM on this kind of machine is nested
	// inside a Firecracker guest and fails on the kernel's first cmpxchg16b
	// (qemu64) or MSR writes (-cpu host). TCG boots and runs it all in
	// about 20 s. FLICK_VM_KVM=1 uses KVM where it works.
	if os.Getenv("FLICK_VM_KVM") != "" {
		args = append([]string{"-enable-kvm", "-cpu", "host"}, args...)
	} else {
		args = append([]string{"-accel", "tcg,thread=multi", "-cpu", "max"}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	vm := exec.CommandContext(ctx, qemu, args...)
	vm.Stdout, vm.Stderr = &out, &out
	if err := vm.Run(); err != nil || !strings.Contains(out.String(), "FLICK-VM-DONE") {
		t.Fatalf("VM run: %v\n%s", err, out.String())
	}

	got := map[string]string{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if i := strings.Index(line, "FLICK-VM "); i >= 0 {
			k, v, _ := strings.Cut(line[i+len("FLICK-VM "):], "=")
			got[k] = v
			t.Logf("%s = %s", k, v)
		} else if strings.Contains(line, "FLICK-VM-LOG") {
			t.Log(line)
		}
	}
	fail := func(format string, a ...any) {
		t.Helper()
		t.Errorf(format, a...)
	}
	for _, c := range []string{"memory", "pids", "cpu"} {
		if !strings.Contains(","+got["controllers"]+",", ","+c+",") {
			fail("controller %s not available in the VM: %q", c, got["controllers"])
		}
	}
	if got["run1"] != "hello-v2" || got["run2"] != "hello-again;0::/;" || got["killed"] != "yes" || got["run3"] != "after-warm-init-killed" {
		fail("runs: %q, %q, %q (want output, a private cgroup namespace: 0::/, and a start after a warm init was killed)", got["run1"], got["run2"], got["run3"])
	}
	if got["exec_cgroup"] != "0::/" {
		fail("exec joins the container's cgroup namespace: %q, want 0::/", got["exec_cgroup"])
	}
	if got["cgfs"] != "25165824;read-only;" {
		fail("the container's /sys/fs/cgroup: %q, want its memory.max, read-only", got["cgfs"])
	}
	if got["oom_exit"] != "137" || got["oom_killed"] != "true" || got["oom_memory_max"] != strconv.Itoa(24<<20)+";" {
		fail("memory limit: exit %q, OOMKilled %q, memory.max %q", got["oom_exit"], got["oom_killed"], got["oom_memory_max"])
	}
	if n := field(got["oom_events"], "oom_kill"); n < 1 {
		fail("memory.events shows no OOM kill: %q", got["oom_events"])
	}
	if got["pids_max"] != "12;" {
		fail("pids.max %q, want 12", got["pids_max"])
	}
	if n, _ := strconv.Atoi(strings.TrimSuffix(got["pids_current"], ";")); n < 1 || n > 12 {
		fail("pids.current %q, want 1..12", got["pids_current"])
	}
	if n := field(got["pids_events"], "max"); n < 1 {
		fail("pids.events shows no refused fork: %q", got["pids_events"])
	}
	if got["cpu_max"] != "50000_100000;" {
		fail("cpu.max %q, want 50000 100000", got["cpu_max"])
	}
	if field(got["cpu_stat"], "nr_throttled") < 1 || field(got["cpu_stat"], "throttled_usec") < 1 {
		fail("a busy loop at --cpus 0.5 was not throttled: cpu.stat %q", got["cpu_stat"])
	}
	if !strings.Contains(got["stats"], "spin") || strings.Contains(got["stats"], "0B_/") {
		fail("stats on v2: %q", got["stats"])
	}
	if got["devices"] != "node-refused" || got["device_flag"] != "4" {
		fail("devices: made node %q, --device %q", got["devices"], got["device_flag"])
	}
	if got["daemon_alive"] != "yes" || got["leftover_cgroups"] != "0" {
		fail("after the runs: daemon alive %q, container cgroups left %q", got["daemon_alive"], got["leftover_cgroups"])
	}
	if t.Failed() {
		t.Logf("VM console:\n%s", out.String())
	}
}

// field reads "key N" from a cgroup key-value file flattened with ';' and
// '_' (cg in vmStage2); -1 if absent.
func field(flat, key string) int64 {
	for _, kv := range strings.Split(flat, ";") {
		if i := strings.LastIndex(kv, "_"); i > 0 && kv[:i] == key {
			n, err := strconv.ParseInt(kv[i+1:], 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}
