package monitor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"

	"golang.org/x/sys/unix"
)

// A warm monitor is started by the daemon before any container needs it
// (`HELPER __shim --init INIT --warm N`). It starts its init at once, which
// waits in new namespaces, so that the two process starts are paid before
// the request, not during it. It reports the init's pid; on cgroup v1 the
// daemon puts it in a cgroup with Docker's device rules, to be renamed for
// the container. The daemon hands it a Launch on fd 3; from there it is an
// ordinary monitor whose first run uses the waiting init. A warm monitor
// whose daemon goes away before that kills its init and exits.

// The monitor's reports to the daemon that launched it, one line each on
// its fd 3.
const (
	// ReportStarted: state.json says the app runs, or why it did not start.
	ReportStarted = "started"
	// ReportExited: state.json is final; no restart follows.
	ReportExited = "exited"
	// ReportInit, then a space and a pid: a warm monitor's init waits
	// (pid 0: it could not be started; the first run starts one).
	ReportInit = "init"
)

// initBinary is the binary inits run from. It is held open: a daemon of
// another build removes this build's helpers, and a container that restarts
// later must still find the init of its own monitor's build.
type initBinary struct {
	path string
	f    *os.File
}

func openInit(path string) (*initBinary, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("init binary: %w", err)
	}
	// High up, where an exec's dup2 of stdio and extra files (fds 0-5)
	// cannot land on it before the kernel resolves /proc/self/fd/N.
	hi, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 100)
	unix.Close(fd)
	if err != nil {
		return nil, fmt.Errorf("init binary: %w", err)
	}
	return &initBinary{path: path, f: os.NewFile(uintptr(hi), path)}, nil
}

// command is `INIT __init ARG`, run through the descriptor held open, never
// by path: whatever is at the path now (a new build's init after an
// upgrade, or another process's descriptor when the path is a daemon's
// /proc/PID/fd/N) may not be this monitor's init.
func (b *initBinary) command(arg string) *exec.Cmd {
	cmd := exec.Command("/proc/self/fd/"+strconv.Itoa(int(b.f.Fd())), "__init", arg)
	cmd.Args[0] = b.path // what ps shows
	return cmd
}

const shimReportFD = 3

// GoAheadFD and GoAheadFD+1 are the two ends of the pipe a warm monitor's
// init reads its go-ahead from, made by the daemon, which keeps a write end:
// when the init is already in the container's cgroup, the daemon writes
// the go-ahead itself as it sends the Launch, and init starts without
// waiting for this monitor to be scheduled. The monitor keeps its own write
// end for the other cases.
const GoAheadFD = 4

// goAheadPipe returns init's go-ahead pipe: for a warm init the one the
// daemon passed, if it did; otherwise a new one.
func goAheadPipe(warm bool) (r, w *os.File, err error) {
	if warm {
		var st unix.Stat_t
		if unix.Fstat(GoAheadFD, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFIFO &&
			unix.Fstat(GoAheadFD+1, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFIFO {
			unix.CloseOnExec(GoAheadFD)
			unix.CloseOnExec(GoAheadFD + 1)
			return os.NewFile(GoAheadFD, "init-sync"), os.NewFile(GoAheadFD+1, "init-sync-w"), nil
		}
	}
	return os.Pipe()
}

type reporter struct{ f *os.File }

// openReport returns the report socket the daemon passed, if any.
func openReport() *reporter {
	var st unix.Stat_t
	if err := unix.Fstat(shimReportFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil // started by hand, or by a daemon that reads state.json only
	}
	unix.CloseOnExec(shimReportFD)
	return &reporter{f: os.NewFile(shimReportFD, "report")}
}

func (r *reporter) send(what string) {
	if r != nil && r.f != nil {
		r.f.Write([]byte(what + "\n")) // a daemon gone meanwhile reads state.json
	}
}

func (r *reporter) close() {
	if r != nil && r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// reniceSelf sets every thread's nice value (Linux keeps one per thread;
// threads made later inherit their creator's).
func reniceSelf(nice int) error {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil && !errors.Is(err, unix.ESRCH) {
				return err
			}
		}
	}
	return nil
}
