package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/flick-edge/flick/internal/cgroup"
	"golang.org/x/sys/unix"
)

// A warm monitor is started by the daemon before any container needs it
// (`flick __shim --warm`). It starts its init at once, which waits in new
// namespaces, so that the two Go process starts (about 10 ms of CPU each)
// are paid before the request, not during it. The daemon hands it a
// bundle on fd 3; from there it is an ordinary monitor whose first run
// uses the waiting init. A warm monitor whose daemon goes away before
// handing it a bundle kills its init and exits.

// WarmArg is the argument a warm monitor and a warm init are started with
// in place of a bundle.
const WarmArg = "--warm"

// warmStart is a warm init's go-ahead: its bundle, and the network
// namespace to join ("" keeps the fresh one it was born in).
type warmStart struct {
	Bundle string `json:"bundle"`
	MntNS  string `json:"mntns"` // the monitor's: init takes a fresh copy
	NetNS  string `json:"netns,omitempty"`
	Nice   int    `json:"nice"` // the daemon's: warm processes wait at a lower priority
}

// The monitor's reports to the daemon that launched it, one line each on
// its fd 3.
const (
	// ReportStarted: state.json says the app runs, or why it did not start.
	ReportStarted = "started"
	// ReportExited: state.json is final; no restart follows.
	ReportExited = "exited"
)

const shimReportFD = 3

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

// WarmShimMain is a warm monitor: it starts an init that waits, then waits
// for its bundle. It never returns. It was started at a low priority; nice
// is the daemon's own, which it and its init take back once they have a
// container.
func WarmShimMain(nice int) {
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGPIPE)
	// One P: a monitor moves bytes between pipes and a file; a second P
	// only adds a GC worker and its memory (0.1 MiB of its 1.6 anonymous).
	goruntime.GOMAXPROCS(1)
	rep := openReport()
	if rep == nil {
		fmt.Fprintln(os.Stderr, "flick shim: a warm monitor needs the daemon's socket on fd 3")
		os.Exit(2)
	}
	pre, preErr := startInit("", nil)
	var cgErr error
	if pre != nil {
		pre.cg, cgErr = warmCgroup(pre.cmd.Process.Pid)
	}
	line, err := bufio.NewReader(rep.f).ReadString('\n')
	bundle := strings.TrimSpace(line)
	if err != nil || bundle == "" || !filepath.IsAbs(bundle) {
		// The daemon stopped or dropped its pool.
		pre.discard()
		os.Exit(0)
	}
	if f, err := os.OpenFile(filepath.Join(bundle, ShimLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_CLOEXEC, 0o600); err == nil {
		unix.Dup3(int(f.Fd()), 1, 0)
		unix.Dup3(int(f.Fd()), 2, 0)
		f.Close()
	}
	if preErr != nil {
		fmt.Fprintln(os.Stderr, "flick shim: warm init:", preErr)
	}
	if cgErr != nil {
		fmt.Fprintln(os.Stderr, "flick shim: warm cgroup:", cgErr)
	}
	if err := reniceSelf(nice); err != nil {
		fmt.Fprintln(os.Stderr, "flick shim: priority:", err)
	}
	if pre != nil {
		pre.nice = nice
	}
	os.Exit(shim(bundle, pre, rep))
}

// warmCgroup puts the warm init in a cgroup of its own with Docker's device
// rules, to be renamed for the container (v1); nil where that cannot be
// (v2 has no rename: the container's cgroup is made at the start).
func warmCgroup(pid int) (*cgroup.Cgroup, error) {
	cg, err := cgroup.New(cgroup.WarmPrefix+strconv.Itoa(os.Getpid()), cgroup.Resources{})
	if err != nil {
		return nil, err
	}
	if cg.Mode() == "v2" {
		cg.Destroy()
		return nil, nil
	}
	if err := cg.RestrictDevices(cgroup.DefaultDeviceRules); err != nil {
		cg.Destroy()
		return nil, err
	}
	if err := cg.Add(pid); err != nil {
		cg.Destroy()
		return nil, err
	}
	return cg, nil
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
