package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	goruntime "runtime"
	"strconv"
	"syscall"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/capability"
	"github.com/flick-edge/flick/internal/cgroup"
	"github.com/flick-edge/flick/internal/sandbox"
	"golang.org/x/sys/unix"
)

// ExecMain runs as `INIT __exec SPECFILE BUNDLE` (INIT: flick-init, or flick), with the stdio the daemon
// gives it: it joins the container's namespaces on one locked thread and
// starts `__execinit` there (so it is born inside them and inside the
// container's pid namespace), puts it in the container's cgroup, releases
// it, and exits with its status. It never returns.
func ExecMain(specPath, bdir string) {
	os.Exit(execMain(specPath, bdir))
}

func execMain(specPath, bdir string) int {
	var es bundle.ExecSpec
	if err := bundle.ReadJSON(specPath, &es); err != nil {
		fmt.Fprintln(os.Stderr, "flick exec:", err)
		return 126
	}
	var console *os.File // -t: the daemon's socket for the terminal master
	if es.Tty {
		unix.CloseOnExec(execConsoleFD)
		console = os.NewFile(execConsoleFD, "console")
	}
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		fmt.Fprintln(os.Stderr, "flick exec:", err)
		return 126
	}
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return 126
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return 126
	}
	// The child re-executes this binary from inside the container's mount
	// namespace, where no path leads to it: through an inherited fd.
	cmd := exec.Command("/proc/self/fd/5", "__execinit", specPath, bdir)
	// The command's stdio travels as fds 8-10, and __execinit itself starts
	// on /dev/null: whatever a linked package prints while the binary
	// initialises inside the container (VictoriaMetrics/metrics logs that
	// it finds no cgroup v2 there) must not reach the user's streams.
	cmd.ExtraFiles = []*os.File{syncR, errW, self} // fds 3, 4, 5
	// With -t, __execinit makes its terminal inside the container and takes
	// it as controlling terminal itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: es.Tty}
	specFile, err := os.Open(bdir + "/" + bundle.SpecFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flick exec:", err)
		return 126
	}
	defer specFile.Close()
	cmd.ExtraFiles = append(cmd.ExtraFiles, specFile)                       // fd 6: the container spec
	cmd.ExtraFiles = append(cmd.ExtraFiles, console)                        // fd 7: where the terminal goes (-t; else closed)
	cmd.ExtraFiles = append(cmd.ExtraFiles, os.Stdin, os.Stdout, os.Stderr) // fds 8, 9, 10
	raw, _ := os.ReadFile(specPath)
	cmd.Env = []string{"FLICK_EXEC_SPEC=" + string(raw)}
	startErr := joinAndStart(es.Pid, cmd)
	syncR.Close()
	errW.Close()
	self.Close()
	if console != nil {
		console.Close()
	}
	if startErr != nil {
		fmt.Fprintln(os.Stderr, "flick exec:", startErr)
		return 126
	}
	if cg, err := cgroup.Open(es.ContainerID); err == nil {
		cg.Add(cmd.Process.Pid)
	}
	syncW.Write([]byte{0})
	syncW.Close()
	msg, _ := io.ReadAll(errR)
	werr := cmd.Wait()
	if len(msg) > 0 {
		fmt.Fprintln(os.Stderr, string(msg))
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if werr != nil {
		return 126
	}
	return 0
}

// joinAndStart enters the namespaces of pid on a locked thread that is
// never given back to the scheduler (it ends with the goroutine), and
// starts cmd from it.
func joinAndStart(pid int, cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // not unlocked: the thread dies with us
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare fs: %w", err)
			return
		}
		for _, ns := range []struct {
			name string
			flag int
		}{{"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS}, {"net", unix.CLONE_NEWNET}, {"pid", unix.CLONE_NEWPID}, {"cgroup", unix.CLONE_NEWCGROUP}, {"mnt", unix.CLONE_NEWNS}} {
			fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/"+ns.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				errc <- fmt.Errorf("open %s namespace: %w (is the container running?)", ns.name, err)
				return
			}
			err = unix.Setns(fd, ns.flag)
			unix.Close(fd)
			if err != nil {
				errc <- fmt.Errorf("join %s namespace: %w", ns.name, err)
				return
			}
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// execStdioFD is where __execinit finds the command's stdin, stdout and
// stderr (8, 9, 10).
const execStdioFD = 8

// ExecInitMain runs inside the container's namespaces and cgroup: it
// applies the container's sandbox (with the exec's user) and execs the
// command. It never returns.
func ExecInitMain(specPath string) {
	unix.CloseOnExec(initErrorFD)
	unix.CloseOnExec(5)
	unix.CloseOnExec(execInitConsoleFD) // -t only
	errPipe := os.NewFile(initErrorFD, "exec-error")
	fail := func(err error) {
		fmt.Fprint(errPipe, err.Error())
		os.Exit(126)
	}
	var b [1]byte
	sync := os.NewFile(initSyncFD, "exec-sync")
	if _, err := io.ReadFull(sync, b[:]); err != nil {
		fail(err)
	}
	sync.Close()
	// Both specs were opened before entering the container (fds 6 and the
	// exec spec path is outside its mount namespace): read the container
	// spec from fd 6; the exec spec travels in the environment.
	var spec bundle.Spec
	if f := os.NewFile(6, "spec"); f != nil {
		if err := json.NewDecoder(f).Decode(&spec); err != nil {
			fail(err)
		}
		f.Close()
	}
	var es bundle.ExecSpec
	if err := json.Unmarshal([]byte(os.Getenv("FLICK_EXEC_SPEC")), &es); err != nil {
		fail(fmt.Errorf("exec spec: %w", err))
	}
	if es.Tty {
		// On the container's own devpts, as init's: ttyname works inside.
		if err := setupTerminal(execInitConsoleFD, es.ConsoleSize, false); err != nil {
			fail(fmt.Errorf("terminal: %w", err))
		}
	} else {
		for fd := 0; fd <= 2; fd++ {
			if err := unix.Dup3(execStdioFD+fd, fd, 0); err != nil {
				fail(fmt.Errorf("stdio: %w", err))
			}
		}
	}
	for fd := execStdioFD; fd < execStdioFD+3; fd++ {
		unix.Close(fd)
	}
	id, home, err := sandbox.ResolveUser("/", es.User)
	if err != nil {
		fail(err)
	}
	env := defaultEnv(bundle.Spec{Env: append(append([]string{}, spec.Env...), es.Env...), Hostname: spec.Hostname, Tty: es.Tty}, home)
	cwd := es.Cwd
	if cwd == "" {
		cwd = spec.Cwd
	}
	if cwd == "" {
		cwd = "/"
	}
	if err := os.Chdir(cwd); err != nil {
		fail(fmt.Errorf("working directory %s: %w", cwd, err))
	}
	path, err := lookPath(es.Args[0], env)
	if err != nil {
		fmt.Fprint(errPipe, err.Error())
		os.Exit(127)
	}
	if err := setRlimits(spec.Rlimits); err != nil { // the container's --ulimit, as Docker's exec
		fail(err)
	}
	caps := spec.Caps
	if es.Privileged {
		caps = capability.All()
	}
	if err := sandbox.Apply(id, caps, sandbox.Options{Privileged: spec.Privileged || es.Privileged, NoNewPrivileges: spec.NoNewPrivs, Seccomp: spec.Seccomp}); err != nil {
		fail(err)
	}
	defaultIgnoredSignals()
	if err := unix.Exec(path, es.Args, env); err != nil {
		fmt.Fprint(errPipe, fmt.Errorf("exec %s: %w", es.Args[0], err).Error())
		os.Exit(126)
	}
}
