package runtime

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/cyphar/filepath-securejoin"
	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/capability"
	"github.com/flick-edge/flick/internal/cgroup"
	"github.com/flick-edge/flick/internal/sandbox"
	"golang.org/x/sys/unix"
)

// Init file descriptors, passed by the shim.
const (
	initSyncFD  = 3 // read: one byte once the shim has put us in the cgroup
	initErrorFD = 4 // write (close-on-exec): why the start failed; EOF means exec succeeded
)

// InitMain is the container's init: it runs in the new namespaces, prepares
// the root filesystem and execs the application. It never returns. A warm
// init (bundle == bundle.WarmArg) learns its bundle, and the network namespace to
// join, with the go-ahead.
func InitMain(bdir string) {
	// One thread does everything and execs: a network namespace joined
	// with setns is the calling thread's alone.
	goruntime.LockOSThread()
	unix.CloseOnExec(initErrorFD)
	unix.CloseOnExec(initConsoleFD) // -t only; EBADF otherwise, harmless
	errPipe := os.NewFile(initErrorFD, "init-error")
	fail := func(code int, err error) {
		fmt.Fprint(errPipe, err.Error())
		os.Exit(code)
	}
	sync := os.NewFile(initSyncFD, "init-sync")
	warm := bdir == bundle.WarmArg
	var st *staged
	keepsNetNS := true
	if warm {
		st = stage(initSyncFD) // while nobody waits: see stage_linux.go
		if !readable(initSyncFD) {
			// The rest of a start's work that depends on nothing of the
			// container: JSON codecs, Docker's default seccomp filter.
			bundle.WarmCodecs()
			sandbox.Prepare(capability.Default())
			cgroup.PrepareHierarchies()
		}
		line, err := bufio.NewReader(sync).ReadBytes('\n')
		if err != nil {
			os.Exit(1) // the warm monitor dropped us
		}
		var ws bundle.WarmStart
		if err := json.Unmarshal(line, &ws); err != nil || !filepath.IsAbs(ws.Bundle) {
			fail(1, fmt.Errorf("bad go-ahead from the monitor: %q", line))
		}
		bdir = ws.Bundle
		// This thread execs the app: it takes back the daemon's priority.
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, ws.Nice); err != nil {
			fail(1, fmt.Errorf("priority: %w", err))
		}
		if err := freshMountNS(ws.MntNS); err != nil {
			fail(1, err)
		}
		if ws.NetNS != "" {
			keepsNetNS = false
			if err := joinNetNS(ws.NetNS); err != nil {
				fail(1, err)
			}
		}
	} else {
		var b [1]byte
		if _, err := io.ReadFull(sync, b[:]); err != nil {
			fail(1, fmt.Errorf("waiting for the monitor: %w", err))
		}
	}
	sync.Close()
	spec, err := bundle.ReadSpec(bdir)
	if err != nil {
		fail(1, err)
	}
	if warm && !spec.Tty && !spec.Stdin {
		// Born with a stdin pipe for any spec; this one has none.
		if err := devNullStdin(); err != nil {
			fail(1, err)
		}
	}
	path, env, err := prepare(bdir, spec, st, keepsNetNS)
	if err != nil {
		var ee *execError
		if errors.As(err, &ee) {
			fail(ee.code, err)
		}
		fail(1, err)
	}
	// Exec replaces us; the error pipe is close-on-exec, so the shim reads
	// EOF and knows the application started.
	defaultIgnoredSignals()
	if err := unix.Exec(path, spec.Args, env); err != nil {
		code := 126
		if errors.Is(err, unix.ENOENT) {
			code = 127
		}
		fail(code, fmt.Errorf("exec %s: %w", spec.Args[0], err))
	}
}

// freshMountNS gives this (locked) thread a private copy of the mount
// namespace at path as it is now. The thread first stops sharing its
// filesystem context with the process's others (setns into a mount
// namespace refuses a shared one); they stay in the namespace init was born
// in, a private copy too, and do no file work.
func freshMountNS(path string) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare the filesystem context: %w", err)
	}
	if err := setns(path, unix.CLONE_NEWNS, "mount"); err != nil {
		return err
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("copy mount namespace: %w", err)
	}
	return nil
}

// joinNetNS moves this (locked) thread into the network namespace at path.
func joinNetNS(path string) error { return setns(path, unix.CLONE_NEWNET, "network") }

func setns(path string, nstype int, kind string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s namespace %s: %w", kind, path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, nstype); err != nil {
		return fmt.Errorf("join %s namespace %s: %w", kind, path, err)
	}
	return nil
}

func devNullStdin() error {
	fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Dup3(fd, 0, 0)
}

type execError struct {
	code int
	err  error
}

func (e *execError) Error() string { return e.err.Error() }

// prepare makes the container's root, with what st staged if it fits
// (keepsNetNS: init is in the network namespace it was born in), pivots
// into it and applies the sandbox; it returns the app's path and
// environment.
func prepare(bdir string, spec bundle.Spec, st *staged, keepsNetNS bool) (string, []string, error) {
	if len(spec.Args) == 0 {
		return "", nil, &execError{126, errors.New("no command specified: the image has no CMD or ENTRYPOINT; give one after the image name")}
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return "", nil, fmt.Errorf("make mounts private: %w", err)
	}
	root := filepath.Join(bdir, bundle.RootDir)
	if err := mountRootfs(bdir, root, spec); err != nil {
		return "", nil, err
	}
	done := st.moveInto(root, spec, keepsNetNS)
	if err := mountSpecial(root, spec, done); err != nil {
		return "", nil, err
	}
	if err := mountUser(bdir, root, spec); err != nil {
		return "", nil, err
	}
	if err := bindEtc(bdir, root); err != nil {
		return "", nil, err
	}
	if err := pivot(root); err != nil {
		return "", nil, err
	}
	if spec.Tty {
		if err := setupConsole(spec.ConsoleSize); err != nil {
			return "", nil, fmt.Errorf("terminal: %w", err)
		}
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return "", nil, fmt.Errorf("sethostname: %w", err)
		}
	}
	if !spec.Privileged {
		if err := sandbox.ProtectPaths(unprotected(sandbox.MaskedPaths(), done), unprotected(sandbox.ReadonlyPaths(), done)); err != nil {
			return "", nil, fmt.Errorf("protect /proc and /sys: %w", err)
		}
	}
	if spec.ReadonlyRootfs {
		if err := unix.Mount("", "/", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return "", nil, fmt.Errorf("read-only root: %w", err)
		}
	}
	id, home, err := sandbox.ResolveUser("/", spec.User)
	if err != nil {
		return "", nil, &execError{126, err}
	}
	env := defaultEnv(spec, home)
	cwd := spec.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := os.MkdirAll(cwd, 0o755); err != nil && !spec.ReadonlyRootfs {
		return "", nil, fmt.Errorf("working directory %s: %w", cwd, err)
	}
	if err := os.Chdir(cwd); err != nil {
		return "", nil, &execError{126, fmt.Errorf("working directory %s: %w", cwd, err)}
	}
	path, err := lookPath(spec.Args[0], env)
	if err != nil {
		return "", nil, &execError{127, err}
	}
	if keepsNetNS && spec.Network != "host" {
		// Its own network namespace (--network none): loopback up, as
		// Docker's; the bridge's namespace comes configured.
		if err := loopbackUp(); err != nil {
			return "", nil, fmt.Errorf("loopback: %w", err)
		}
	}
	if err := setRlimits(spec.Rlimits); err != nil {
		return "", nil, &execError{126, err}
	}
	if err := sandbox.Apply(id, spec.Caps, sandbox.Options{Privileged: spec.Privileged, NoNewPrivileges: spec.NoNewPrivs, Seccomp: spec.Seccomp}); err != nil {
		return "", nil, fmt.Errorf("apply sandbox: %w", err)
	}
	return path, env, nil
}

func mountRootfs(bdir, root string, spec bundle.Spec) error {
	for _, d := range []string{root, filepath.Join(bdir, bundle.UpperDir), filepath.Join(bdir, bundle.WorkDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	lowers := spec.Layers
	if len(lowers) == 0 {
		empty := filepath.Join(bdir, "empty")
		if err := os.MkdirAll(empty, 0o755); err != nil {
			return err
		}
		lowers = []string{empty}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lowers, ":"),
		filepath.Join(bdir, bundle.UpperDir), filepath.Join(bdir, bundle.WorkDir))
	// nodev: a node the app creates with mknod (CAP_MKNOD is in Docker's
	// default set) cannot be opened; the devices it may use are bind
	// mounts of the host's, which keep their own mount's flags.
	var flags uintptr = unix.MS_NODEV
	if spec.Privileged {
		flags = 0
	}
	if spec.Ephemeral {
		// --rm: the writable layer is deleted when the container ends, so
		// overlayfs need not sync it at unmount (a journal commit of the
		// upper file system, and flash wear, for nothing). A mark left by
		// a crash means the layer may have lost writes.
		if bundle.HasVolatileMark(bdir) {
			return errors.New("the container's writable layer was not unmounted cleanly (the system went down, or its monitor was killed, while it ran): --rm containers are not synced, so it may have lost writes; remove the container")
		}
		err := unix.Mount("overlay", root, "overlay", flags, opts+",volatile")
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("mount overlay root (%d layers): %w", len(lowers), err)
		}
		// A kernel before 5.10 has no volatile upper layers.
	}
	if err := unix.Mount("overlay", root, "overlay", flags, opts); err != nil {
		return fmt.Errorf("mount overlay root (%d layers): %w", len(lowers), err)
	}
	return nil
}

// target resolves a path inside the container root without following
// symlinks out of it, creating it as a directory or file.
func target(root, p string, dir bool) (string, error) {
	t, err := securejoin.SecureJoin(root, p)
	if err != nil {
		return "", err
	}
	if _, err := os.Lstat(t); err == nil {
		// There already: nothing to make, and nothing opened (a device
		// node, say a --privileged container's serial port, must not be:
		// an open resets an Arduino, or blocks on a tty without CLOCAL).
		return t, nil
	}
	if dir {
		return t, os.MkdirAll(t, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(t), 0o755); err != nil {
		return "", err
	}
	f, err := os.OpenFile(t, os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return "", err
	}
	f.Close()
	return t, nil
}

// specialDone says which of a container's special file systems are in
// place already: moved in from what a warm init staged (stage_linux.go).
type specialDone struct{ proc, dev, sys bool }

// mountSpecial mounts what Docker gives every container under root: /proc,
// a minimal /dev, /sys with the container's cgroup, and the --device nodes.
func mountSpecial(root string, spec bundle.Spec, done specialDone) error {
	if !done.proc {
		if err := mountProc(root); err != nil {
			return err
		}
	}
	if !done.dev {
		if err := mountDev(root, spec); err != nil {
			return err
		}
	}
	if !done.sys {
		if err := mountSys(root, spec); err != nil {
			return err
		}
	}
	if spec.Network != "host" { // host: the host's /sys, cgroups included, bound read-only
		if err := mountCgroupFS(root, spec.Privileged); err != nil {
			return err
		}
	}
	for _, d := range spec.Devices {
		if err := bindDevice(root, d.Host, d.Container); err != nil {
			return fmt.Errorf("--device %s: %w", d.Host, err)
		}
	}
	return nil
}

const nse = unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV

// mountAt mounts a file system on p inside root, made as a directory.
func mountAt(root, p, src, fstype string, flags uintptr, data string) error {
	t, err := target(root, p, true)
	if err != nil {
		return err
	}
	if err := unix.Mount(src, t, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, p, err)
	}
	return nil
}

// mountProc mounts the pid namespace's proc on root's /proc.
func mountProc(root string) error { return mountAt(root, "/proc", "proc", "proc", nse, "") }

// mountDev makes root's /dev: a tmpfs with a private devpts, shm and
// mqueue, the usual nodes bound from the host's, and the usual links.
func mountDev(root string, spec bundle.Spec) error {
	mounts := []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"tmpfs", "/dev", "tmpfs", unix.MS_NOSUID | unix.MS_STRICTATIME | devFlags(spec), "mode=755,size=65536k"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"shm", "/dev/shm", "tmpfs", nse, "mode=1777,size=65536k"},
		{"mqueue", "/dev/mqueue", "mqueue", nse, ""},
	}
	for _, x := range mounts {
		if err := mountAt(root, x.dst, x.src, x.fstype, x.flags, x.data); err != nil {
			return err
		}
	}
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if err := bindDevice(root, "/dev/"+n, "/dev/"+n); err != nil {
			return err
		}
	}
	links := [][2]string{{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"}, {"/proc/self/fd/1", "/dev/stdout"},
		{"/proc/self/fd/2", "/dev/stderr"}, {"pts/ptmx", "/dev/ptmx"}, {"/proc/kcore", "/dev/core"}}
	for _, l := range links {
		if err := os.Symlink(l[0], filepath.Join(root, l[1])); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	if spec.Privileged {
		return hostDevices(root)
	}
	return nil
}

// hostDevices makes every device node of the host's /dev in the
// container's (a --privileged container's tmpfs, without nodev), as Docker
// gives a privileged container the host's devices: serial ports, USB
// buses, GPIO chips, disks. Nodes are made, not bound, with the host's
// modes and owners; what Docker leaves out is left out here too (pts, shm,
// mqueue, fd, console), and a node in place already (null, zero, ...) is
// kept.
func hostDevices(root string) error {
	return filepath.WalkDir("/dev", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == "/dev" {
				return err
			}
			return nil // a node that went away meanwhile
		}
		if d.IsDir() {
			switch d.Name() {
			case "pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev":
				if p != "/dev" {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if d.Name() == "console" || d.Type()&fs.ModeDevice == 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		dst := filepath.Join(root, p)
		if _, err := os.Lstat(dst); err == nil {
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return fmt.Errorf("--privileged: make %s: %w", p, err)
		}
		if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		return unix.Chmod(dst, st.Mode&0o7777) // the umask narrowed mknod's
	})
}

// mountSys mounts root's /sys: a read-only sysfs of the container's
// network namespace (read-write for a privileged container, as Docker),
// or with the host's network the host's /sys, bound read-only (sysfs shows
// the network namespace that mounts it).
func mountSys(root string, spec bundle.Spec) error {
	t, err := target(root, "/sys", true)
	if err != nil {
		return err
	}
	if spec.Network == "host" {
		if err := unix.Mount("/sys", t, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind the host's /sys: %w", err)
		}
		unix.Mount("", t, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_REC, "")
		return nil
	}
	// Read-only by the mount, not the file system: the network namespace
	// has one sysfs, which a warm init may have mounted already
	// (stage_linux.go), and a privileged container's must be writable
	// even so.
	if err := unix.Mount("sysfs", t, "sysfs", nse, ""); err != nil {
		return fmt.Errorf("mount sysfs on /sys: %w", err)
	}
	if spec.Privileged {
		return nil
	}
	if err := unix.Mount("", t, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|nse, ""); err != nil {
		return fmt.Errorf("read-only /sys: %w", err)
	}
	return nil
}

func devFlags(spec bundle.Spec) uintptr {
	if spec.Privileged {
		return 0
	}
	return unix.MS_NODEV
}

func bindDevice(root, host, ctr string) error {
	t, err := target(root, ctr, false)
	if err != nil {
		return err
	}
	if err := unix.Mount(host, t, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", host, err)
	}
	return nil
}

func mountUser(bdir, root string, spec bundle.Spec) error {
	// Volumes are filled from the image at the container's first start,
	// as Docker fills them at its create; a volume the app emptied stays
	// empty through its restarts.
	copyUps := slices.ContainsFunc(spec.Mounts, func(mt bundle.Mount) bool { return mt.CopyUp })
	copied := true
	if copyUps { // not a look on every start: most containers have no volume
		_, err := os.Lstat(filepath.Join(bdir, bundle.CopiedUpFile))
		copied = err == nil
	}
	for _, mt := range spec.Mounts {
		if mt.Tmpfs {
			if err := mountTmpfs(root, mt); err != nil {
				return err
			}
			continue
		}
		fi, err := os.Stat(mt.Source)
		if err != nil {
			return fmt.Errorf("volume source %s: %w", mt.Source, err)
		}
		if mt.CopyUp && !copied && fi.IsDir() {
			if err := copyUp(root, mt); err != nil {
				return fmt.Errorf("fill volume %s from the image's %s: %w", mt.Source, mt.Target, err)
			}
		}
		t, err := target(root, mt.Target, fi.IsDir())
		if err != nil {
			return fmt.Errorf("volume target %s: %w", mt.Target, err)
		}
		if err := unix.Mount(mt.Source, t, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", mt.Source, mt.Target, err)
		}
		if mt.ReadOnly {
			if err := unix.Mount("", t, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("read-only %s: %w", mt.Target, err)
			}
		}
	}
	if !copied {
		// Not synced: lost in a power cut, it costs a second look at
		// volumes that are no longer empty.
		if f, err := os.OpenFile(filepath.Join(bdir, bundle.CopiedUpFile), os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			f.Close()
		}
	}
	return nil
}

// mountTmpfs mounts a --tmpfs: noexec, nosuid and nodev unless its options
// say otherwise, as Docker's.
func mountTmpfs(root string, mt bundle.Mount) error {
	o, err := bundle.ParseTmpfs(mt.Options)
	if err != nil {
		return fmt.Errorf("tmpfs %s: %w", mt.Target, err)
	}
	var flags uintptr
	if !o.Exec {
		flags |= unix.MS_NOEXEC
	}
	if !o.Suid {
		flags |= unix.MS_NOSUID
	}
	if !o.Dev {
		flags |= unix.MS_NODEV
	}
	if o.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	t, err := target(root, mt.Target, true)
	if err != nil {
		return fmt.Errorf("tmpfs target %s: %w", mt.Target, err)
	}
	if err := unix.Mount("tmpfs", t, "tmpfs", flags, o.Data); err != nil {
		return fmt.Errorf("mount tmpfs on %s (%s): %w", mt.Target, o.Data, err)
	}
	return nil
}

// bindEtc mounts the files the daemon generated (hostname, hosts,
// resolv.conf) over the image's.
func bindEtc(bdir, root string) error {
	for _, n := range []string{"hostname", "hosts", "resolv.conf"} {
		src := filepath.Join(bdir, n)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		t, err := target(root, "/etc/"+n, false)
		if err != nil {
			return err
		}
		if err := unix.Mount(src, t, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /etc/%s: %w", n, err)
		}
	}
	return nil
}

// pivot makes root the new / and detaches the old one (runc's
// pivot_root(".", ".") technique: no directory is needed for the old root).
func pivot(root string) error {
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return err
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return os.Chdir("/")
}

func defaultEnv(spec bundle.Spec, home string) []string {
	// A key given twice (exec -e over the container's) keeps its first
	// place and its last value: getenv finds the first.
	env := bundle.MergeEnv(spec.Env)
	has := func(k string) bool {
		for _, kv := range env {
			if name, _, _ := strings.Cut(kv, "="); name == k {
				return true
			}
		}
		return false
	}
	add := func(k, v string) {
		if !has(k) {
			env = append(env, k+"="+v)
		}
	}
	add("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	add("HOSTNAME", spec.Hostname)
	if home == "" {
		home = "/"
	}
	add("HOME", home)
	if spec.Tty {
		add("TERM", "xterm")
	}
	return env
}

func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		if err := executable(file); err != nil {
			return "", fmt.Errorf("exec %s: %w", file, err)
		}
		return file, nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", file)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s: permission denied", p)
	}
	return nil
}
