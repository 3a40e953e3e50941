package sandbox

// Apply cannot be undone, so every test that applies it runs in a child: the
// test binary re-executed with FLICK_SANDBOX_TEST_CHILD=<case>, in new mount,
// pid, uts and ipc namespaces. The child applies the sandbox, tries
// operations and prints what happened as JSON; the parent checks it.

import (
	"github.com/flick-edge/flick/internal/capability"
	"slices"

	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	childEnv = "FLICK_SANDBOX_TEST_CHILD"
	dirEnv   = "FLICK_SANDBOX_TEST_DIR"
)

func TestMain(m *testing.M) {
	if c := os.Getenv(childEnv); c != "" {
		res, err := runChild(c, os.Getenv(dirEnv))
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// results maps an operation to "ok", an errno name ("EPERM") or a value.
type results map[string]string

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func runChild(name, dir string) (results, error) {
	runtime.LockOSThread()
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("make / private: %w", err)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return nil, err
	}
	r := results{}
	switch name {
	case "default":
		if err := Apply(Identity{}, capability.Default(), Options{NoNewPrivileges: true}); err != nil {
			return nil, err
		}
		probeAll(r, dir, mnt)
	case "default-no-nnp":
		if err := Apply(Identity{}, capability.Default(), Options{}); err != nil {
			return nil, err
		}
		probeStatus(r)
		r["keyctl"] = errName(keyctl())
	case "seccomp-only":
		// The default filter alone, with every capability still held: what
		// fails now fails because of seccomp, not for want of a capability.
		prog, err := defaultFilterFor(mustParse(capability.Default()))
		if err != nil {
			return nil, err
		}
		if err := loadFilter(prog); err != nil {
			return nil, err
		}
		probeAll(r, dir, mnt)
	case "default-prepared":
		// What a warm init does: the filter made ahead, then used.
		if err := Prepare(capability.Default()); err != nil {
			return nil, err
		}
		if prepared.filter == nil {
			return nil, errors.New("Prepare left no filter")
		}
		if err := Apply(Identity{}, capability.Default(), Options{NoNewPrivileges: true}); err != nil {
			return nil, err
		}
		probeAll(r, dir, mnt)
	case "sysadmin", "sysadmin-after-prepare":
		if name == "sysadmin-after-prepare" {
			// Prepared for the default set, given another: not used.
			if err := Prepare(capability.Default()); err != nil {
				return nil, err
			}
		}
		caps, err := capability.Resolve([]string{"sys_admin"}, nil, false)
		if err != nil {
			return nil, err
		}
		if err := Apply(Identity{}, caps, Options{NoNewPrivileges: true}); err != nil {
			return nil, err
		}
		probeAll(r, dir, mnt)
	case "privileged":
		caps, err := capability.Resolve(nil, nil, true)
		if err != nil {
			return nil, err
		}
		if err := Apply(Identity{}, caps, Options{Privileged: true}); err != nil {
			return nil, err
		}
		probeAll(r, dir, mnt)
	case "unconfined":
		if err := Apply(Identity{}, capability.Default(), Options{Seccomp: "unconfined"}); err != nil {
			return nil, err
		}
		probeAll(r, dir, mnt)
	case "nonroot":
		pub := filepath.Join(dir, "pub")
		if err := os.MkdirAll(pub, 0o777); err != nil {
			return nil, err
		}
		os.Chmod(pub, 0o777)
		// The test's temporary directories are root's and 0700; let uid
		// 1000 through to pub (secret stays 0600).
		os.Chmod(dir, 0o755)
		os.Chmod(filepath.Dir(dir), 0o755)
		secret := filepath.Join(dir, "secret")
		if err := os.WriteFile(secret, []byte("s"), 0o600); err != nil {
			return nil, err
		}
		id := Identity{UID: 1000, GID: 1001, AdditionalGIDs: []uint32{2000, 3000}}
		if err := Apply(id, capability.Default(), Options{NoNewPrivileges: true}); err != nil {
			return nil, err
		}
		ru, eu, su := unix.Getresuid()
		rg, eg, sg := unix.Getresgid()
		groups, _ := unix.Getgroups()
		r["resuid"] = fmt.Sprint(ru, eu, su)
		r["resgid"] = fmt.Sprint(rg, eg, sg)
		r["groups"] = fmt.Sprint(groups)
		_, err := os.ReadFile(secret)
		r["read-root-only-file"] = errName(err)
		r["write-file"] = errName(os.WriteFile(filepath.Join(pub, "f"), []byte("x"), 0o644))
		r["mount"] = errName(unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"))
		probeStatus(r)
		probeExec(r)
	case "protect":
		probeProtect(r, dir)
	default:
		return nil, fmt.Errorf("unknown case %q", name)
	}
	return r, nil
}

func mustParse(names []string) capability.Set {
	m, err := capability.Parse(names)
	if err != nil {
		panic(err)
	}
	return m
}

func keyctl() error {
	_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 1, 0, 0)
	return err
}

// probeAll tries the operations Docker's default profile decides on, and
// ordinary work that must keep working.
func probeAll(r results, dir, mnt string) {
	err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m")
	r["mount"] = errName(err)
	if err == nil {
		unix.Unmount(mnt, 0)
	}
	// CLONE_NEWNS only: this goroutine is locked to its thread, and whatever
	// namespace the thread ends up in dies with the child.
	r["unshare-newns"] = errName(unix.Unshare(unix.CLONE_NEWNS))
	r["keyctl"] = errName(keyctl())
	// reboot(2) with no magic numbers: the kernel checks CAP_SYS_BOOT, then
	// refuses the magic with EINVAL. It never reboots.
	_, _, e := unix.RawSyscall6(unix.SYS_REBOOT, 0, 0, 0, 0, 0, 0)
	r["reboot-bad-magic"] = errName(errnoErr(e))
	r["sethostname"] = errName(unix.Sethostname([]byte("sandbox-test")))
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER}
	r["clone-newuser"] = errName(cmd.Run())
	// clone3 with a NULL, zero-sized argument: EINVAL from the kernel,
	// ENOSYS from the filter.
	_, _, e = unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)
	r["clone3"] = errName(errnoErr(e))
	pid := uintptr(os.Getpid())
	_, _, e = unix.RawSyscall6(unix.SYS_KCMP, pid, pid, 0 /* KCMP_FILE */, 0, 0, 0)
	r["kcmp"] = errName(errnoErr(e))
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.Close(fd)
	}
	r["socket-vsock"] = errName(err)
	_, _, e = unix.RawSyscall(unix.SYS_PERSONALITY, 0x0040000 /* ADDR_NO_RANDOMIZE */, 0, 0)
	r["personality-no-aslr"] = errName(errnoErr(e))
	r["chroot"] = errName(unix.Chroot("/"))
	r["ptrace-own-child"] = errName(ptraceChild())

	r["exec-true"] = errName(exec.Command("/bin/true").Run())
	// A glibc program starting a thread: glibc >= 2.34 tries clone3 first
	// and must fall back to clone on ENOSYS.
	r["exec-glibc-thread"] = "skipped"
	if py, err := exec.LookPath("python3"); err == nil {
		r["exec-glibc-thread"] = errName(exec.Command(py, "-c",
			"import threading; t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()").Run())
	}
	f := filepath.Join(dir, "written")
	err = os.WriteFile(f, []byte("hello"), 0o644)
	if err == nil {
		var b []byte
		b, err = os.ReadFile(f)
		if err == nil && string(b) != "hello" {
			err = errors.New("read back " + string(b))
		}
	}
	r["write-file"] = errName(err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err == nil {
		l.Close()
	}
	r["tcp-listen"] = errName(err)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
	}
	r["socketpair"] = errName(err)
	probeStatus(r)
	probeExec(r)
}

// ptraceChild attaches to a child of ours and detaches again.
func ptraceChild() error {
	cmd := exec.Command("/bin/sleep", "30")
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	pid := cmd.Process.Pid
	if err := unix.PtraceAttach(pid); err != nil {
		return err
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		return err
	}
	if !ws.Stopped() {
		return fmt.Errorf("tracee not stopped: %v", ws)
	}
	return unix.PtraceDetach(pid)
}

// probeStatus records this thread's credentials as the kernel reports them.
func probeStatus(r results) {
	for k, v := range readStatus("/proc/thread-self/status") {
		r["status-"+k] = v
	}
}

// probeExec records the credentials of a program exec'd by this thread: the
// state the container's application would start with.
func probeExec(r results) {
	out, err := exec.Command("/bin/cat", "/proc/self/status").Output()
	if err != nil {
		r["exec-status"] = errName(err)
		return
	}
	for k, v := range parseStatus(string(out)) {
		r["exec-"+k] = v
	}
}

var statusKeys = []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Uid", "Gid", "Groups"}

func readStatus(p string) map[string]string {
	b, err := os.ReadFile(p)
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	return parseStatus(string(b))
}

func parseStatus(s string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && slices.Contains(statusKeys, k) {
			m[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return m
}

// probeProtect mounts a fresh proc and sysfs under dir/root and protects
// them relative to that root.
func probeProtect(r results, dir string) {
	root := filepath.Join(dir, "root")
	for _, d := range []string{"proc", "sys"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	const nse = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	r["mount-proc"] = errName(unix.Mount("proc", filepath.Join(root, "proc"), "proc", nse, ""))
	r["mount-sysfs"] = errName(unix.Mount("sysfs", filepath.Join(root, "sys"), "sysfs", nse, ""))
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sysrq-trigger", "/proc/sys/kernel/hostname", "/sys/firmware"} {
		_, err := os.Stat(filepath.Join(root, p))
		r["before-exists "+p] = errName(err)
	}
	masked := append(MaskedPaths(), "/proc/flick-no-such-file")
	readonly := append(ReadonlyPaths(), "/proc/flick-no-such-dir")
	r["protect"] = errName(ProtectPathsAt(root, masked, readonly))

	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list"} {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err == nil {
			err = fmt.Errorf("%d bytes", len(b))
			if len(b) == 0 {
				err = nil
			}
		}
		r["read "+p] = errName(err)
		var st unix.Stat_t
		if unix.Stat(filepath.Join(root, p), &st) == nil {
			r["chardev "+p] = strconv.FormatBool(st.Mode&unix.S_IFMT == unix.S_IFCHR)
		}
	}
	ents, err := os.ReadDir(filepath.Join(root, "sys/firmware"))
	r["readdir /sys/firmware"] = errName(err)
	r["entries /sys/firmware"] = strconv.Itoa(len(ents))
	r["create in /sys/firmware"] = errName(os.WriteFile(filepath.Join(root, "sys/firmware/x"), nil, 0o644))
	// Opened for writing only: on a read-only mount open(2) fails with
	// EROFS; if it did not, nothing is written.
	for _, p := range []string{"/proc/sys/kernel/hostname", "/proc/sysrq-trigger", "/proc/sys/vm/drop_caches"} {
		f, err := os.OpenFile(filepath.Join(root, p), os.O_WRONLY, 0)
		if err == nil {
			f.Close()
		}
		r["open-write "+p] = errName(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "proc/sys/kernel/ostype"))
	r["read /proc/sys/kernel/ostype"] = errName(err) + " " + strings.TrimSpace(string(b))
	// The host's own /proc is untouched (the mounts are in our namespace
	// and under root only).
	b, err = os.ReadFile("/proc/timer_list")
	r["host /proc/timer_list nonempty"] = strconv.FormatBool(err == nil && len(b) > 0)
	r["protect-again"] = errName(ProtectPathsAt(root, masked, readonly))
}

// child runs one case in new namespaces and returns its results.
func child(t *testing.T, name string) results {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+name, dirEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC,
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s: %v\nstderr:\n%s", name, err, stderr.String())
	}
	var r results
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("child %s: %v in %q\nstderr:\n%s", name, err, out, stderr.String())
	}
	t.Logf("%s: %v", name, r)
	return r
}

func expect(t *testing.T, r results, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s = %q, want %q", k, r[k], v)
		}
	}
}

func hexMask(m capability.Set) string { return fmt.Sprintf("%016x", uint64(m)) }

// ourCaps is the test process's own permitted set (the runtime's).
func ourCaps(t *testing.T) capability.Set {
	t.Helper()
	s, err := capGet()
	if err != nil {
		t.Fatal(err)
	}
	return s.permitted
}

var ordinaryWork = map[string]string{
	"exec-true": "ok", "write-file": "ok", "tcp-listen": "ok", "socketpair": "ok",
}

func TestApplyDefault(t *testing.T)         { expectDefault(t, child(t, "default")) }
func TestApplyDefaultPrepared(t *testing.T) { expectDefault(t, child(t, "default-prepared")) }

func expectDefault(t *testing.T, r map[string]string) {
	t.Helper()
	if v := r["exec-glibc-thread"]; v != "ok" && v != "skipped" {
		t.Errorf("a glibc program could not start a thread: %s", v)
	}
	def := hexMask(mustParse(capability.Default()))
	zero := hexMask(0)
	expect(t, r, ordinaryWork)
	expect(t, r, map[string]string{
		"mount": "EPERM", "unshare-newns": "EPERM", "keyctl": "EPERM", "reboot-bad-magic": "EPERM",
		"sethostname": "EPERM", "clone-newuser": "EPERM", "clone3": "ENOSYS", "kcmp": "EPERM",
		"socket-vsock": "EPERM", "personality-no-aslr": "EPERM",
		"chroot": "ok", "ptrace-own-child": "ok", // as Docker on kernels >= 4.8
		"status-CapEff": def, "status-CapPrm": def, "status-CapBnd": def, "status-CapInh": zero, "status-CapAmb": zero,
		"status-NoNewPrivs": "1", "status-Seccomp": "2",
		// After execve: root's file capabilities are "all", bounded by the
		// bounding set, so the program gets exactly the default set.
		"exec-CapEff": def, "exec-CapPrm": def, "exec-CapBnd": def, "exec-CapInh": zero, "exec-CapAmb": zero,
		"exec-NoNewPrivs": "1", "exec-Seccomp": "2", "exec-Uid": "0 0 0 0", "exec-Gid": "0 0 0 0",
	})
}

func TestApplyDefaultWithoutNoNewPrivs(t *testing.T) {
	// Docker's default: no no_new_privs, yet the filter loads (the process
	// still held CAP_SYS_ADMIN when it did).
	r := child(t, "default-no-nnp")
	expect(t, r, map[string]string{
		"status-NoNewPrivs": "0", "status-Seccomp": "2", "keyctl": "EPERM",
		"status-CapEff": hexMask(mustParse(capability.Default())),
	})
}

func TestSeccompAloneBlocks(t *testing.T) {
	r := child(t, "seccomp-only")
	all := ourCaps(t)
	expect(t, r, ordinaryWork)
	expect(t, r, map[string]string{
		// Every capability is still held, so these EPERMs are the filter's.
		"status-CapEff": hexMask(all), "mount": "EPERM", "unshare-newns": "EPERM", "keyctl": "EPERM", "reboot-bad-magic": "EPERM",
		"sethostname": "EPERM", "clone-newuser": "EPERM", "clone3": "ENOSYS", "kcmp": "EPERM",
		"socket-vsock": "EPERM", "personality-no-aslr": "EPERM", "status-Seccomp": "2",
		"chroot": "ok", "ptrace-own-child": "ok",
	})
}

func TestApplyCapAddSysAdmin(t *testing.T) { expectSysAdmin(t, child(t, "sysadmin")) }

// A filter prepared for other capabilities is not the one loaded.
func TestApplyCapAddSysAdminAfterPrepare(t *testing.T) {
	expectSysAdmin(t, child(t, "sysadmin-after-prepare"))
}

func expectSysAdmin(t *testing.T, r map[string]string) {
	t.Helper()
	want := hexMask(mustParse(append(capability.Default(), "CAP_SYS_ADMIN")))
	expect(t, r, ordinaryWork)
	expect(t, r, map[string]string{
		"mount": "ok", "unshare-newns": "ok", "sethostname": "ok", "clone-newuser": "ok",
		// Docker lifts nothing else for SYS_ADMIN.
		"keyctl": "EPERM", "reboot-bad-magic": "EPERM", "kcmp": "EPERM", "socket-vsock": "EPERM",
		"status-CapEff": want, "status-CapBnd": want, "exec-CapEff": want, "status-Seccomp": "2",
	})
	if r["clone3"] == "ENOSYS" {
		t.Errorf("clone3 still ENOSYS with SYS_ADMIN")
	}
}

func TestApplyPrivileged(t *testing.T) {
	r := child(t, "privileged")
	all := hexMask(ourCaps(t))
	expect(t, r, ordinaryWork)
	expect(t, r, map[string]string{
		"mount": "ok", "unshare-newns": "ok", "sethostname": "ok", "clone-newuser": "ok", "kcmp": "ok",
		"reboot-bad-magic": "EINVAL", "chroot": "ok", "ptrace-own-child": "ok", "personality-no-aslr": "ok",
		"status-CapEff": all, "status-CapPrm": all, "exec-CapEff": all,
		"status-Seccomp": "0", "status-NoNewPrivs": "0", "exec-Seccomp": "0",
	})
	for _, k := range []string{"keyctl", "clone3", "socket-vsock"} {
		if r[k] == "EPERM" || (k == "clone3" && r[k] == "ENOSYS") {
			t.Errorf("privileged: %s = %s", k, r[k])
		}
	}
}

func TestApplyUnconfined(t *testing.T) {
	r := child(t, "unconfined")
	def := hexMask(mustParse(capability.Default()))
	expect(t, r, ordinaryWork)
	expect(t, r, map[string]string{
		"status-Seccomp": "0", "status-CapEff": def, "status-CapBnd": def,
		"mount":               "EPERM", // no CAP_SYS_ADMIN: the kernel refuses
		"reboot-bad-magic":    "EPERM", // no CAP_SYS_BOOT
		"personality-no-aslr": "ok",
	})
	if r["keyctl"] == "EPERM" || r["clone3"] == "ENOSYS" {
		t.Errorf("unconfined still filtered: keyctl %s, clone3 %s", r["keyctl"], r["clone3"])
	}
}

func TestApplyNonRoot(t *testing.T) {
	r := child(t, "nonroot")
	zero := hexMask(0)
	def := hexMask(mustParse(capability.Default()))
	expect(t, r, map[string]string{
		"resuid": "1000 1000 1000", "resgid": "1001 1001 1001", "groups": "[2000 3000]",
		"read-root-only-file": "EACCES", "write-file": "ok", "mount": "EPERM",
		"status-CapEff": zero, "status-CapPrm": zero, "status-CapInh": zero, "status-CapAmb": zero,
		"status-CapBnd": def, "status-NoNewPrivs": "1", "status-Seccomp": "2",
		"exec-CapEff": zero, "exec-CapPrm": zero, "exec-CapBnd": def,
		"exec-Uid": "1000 1000 1000 1000", "exec-Gid": "1001 1001 1001 1001", "exec-Groups": "2000 3000",
	})
}

func TestProtectPaths(t *testing.T) {
	r := child(t, "protect")
	expect(t, r, map[string]string{
		"mount-proc": "ok", "mount-sysfs": "ok", "protect": "ok", "protect-again": "ok",
		"readdir /sys/firmware": "ok", "entries /sys/firmware": "0", "create in /sys/firmware": "EROFS",
		"open-write /proc/sys/kernel/hostname": "EROFS", "open-write /proc/sys/vm/drop_caches": "EROFS",
		"read /proc/sys/kernel/ostype": "ok Linux", "host /proc/timer_list nonempty": "true",
	})
	if r["before-exists /sys/firmware"] != "ok" || r["before-exists /proc/sys/kernel/hostname"] != "ok" {
		t.Fatalf("the fresh proc and sysfs lack paths every kernel has: %v", r)
	}
	// Which /proc files exist depends on the kernel's configuration (this
	// VM's has no /proc/kcore and no /proc/sysrq-trigger); a missing one is
	// skipped, a present one must be masked or read-only. At least one
	// masked file must exist for the test to mean something.
	maskedFiles := 0
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list"} {
		if r["before-exists "+p] != "ok" {
			t.Logf("%s does not exist on this kernel (%s)", p, r["before-exists "+p])
			expect(t, r, map[string]string{"read " + p: r["before-exists "+p]})
			continue
		}
		maskedFiles++
		expect(t, r, map[string]string{"read " + p: "ok", "chardev " + p: "true"})
	}
	if maskedFiles == 0 {
		t.Error("no masked /proc file exists on this kernel to check")
	}
	if r["before-exists /proc/sysrq-trigger"] == "ok" {
		expect(t, r, map[string]string{"open-write /proc/sysrq-trigger": "EROFS"})
	} else {
		t.Log("/proc/sysrq-trigger does not exist on this kernel")
	}
}

func TestApplyRefusesBadInput(t *testing.T) {
	// These fail before anything irreversible happens, but Apply still
	// locks the thread: run them on a goroutine of their own.
	done := make(chan []error)
	go func() {
		var errs []error
		errs = append(errs, Apply(Identity{}, []string{"CAP_NOPE"}, Options{}))
		errs = append(errs, Apply(Identity{UID: 1 << 31}, nil, Options{}))
		errs = append(errs, Apply(Identity{AdditionalGIDs: []uint32{0xffffffff}}, nil, Options{}))
		errs = append(errs, Apply(Identity{}, nil, Options{Seccomp: "/etc/profile.json"}))
		done <- errs
	}()
	for i, err := range <-done {
		if err == nil {
			t.Errorf("case %d: accepted", i)
		}
	}
	// A capability the runtime itself lacks (this VM has no
	// CAP_SYS_RESOURCE) is an error unless privileged.
	held := ourCaps(t)
	for c := 0; c <= lastCap(); c++ {
		if held.Has(c) {
			continue
		}
		go func() {
			done <- []error{Apply(Identity{}, []string{capability.Name(c)}, Options{})}
		}()
		if err := (<-done)[0]; err == nil || !strings.Contains(err.Error(), "the runtime itself lacks "+capability.Name(c)) {
			t.Errorf("asking for %s: %v", capability.Name(c), err)
		}
		break
	}
}
