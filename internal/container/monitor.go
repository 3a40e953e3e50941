package container

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"sync"
	"syscall"

	"github.com/flick-edge/flick/internal/runtime"
	"golang.org/x/sys/unix"
)

// monitor is a container monitor this daemon launched: its reports arrive
// on a socket (runtime.Report*), so a start or an exit is seen when it
// happens instead of at the next poll of state.json. A daemon started later
// has no monitor for the containers it adopts and polls.
type monitor struct {
	cmd     *exec.Cmd
	conn    *os.File
	started chan struct{} // the first run's outcome is in state.json (or the monitor is gone)
	exited  chan struct{} // state.json is final (or the monitor is gone)
	gone    chan struct{} // the process has ended
}

// read turns the monitor's reports into its channels, until the socket
// closes (the monitor ended).
func (mo *monitor) read() {
	var startOnce, exitOnce sync.Once
	start := func() { startOnce.Do(func() { close(mo.started) }) }
	exit := func() { exitOnce.Do(func() { close(mo.exited) }) }
	sc := bufio.NewScanner(mo.conn)
	for sc.Scan() {
		switch sc.Text() {
		case runtime.ReportStarted:
			start()
		case runtime.ReportExited:
			start()
			exit()
		}
	}
	start()
	exit()
	mo.conn.Close()
}

// monitors launches monitors and keeps `warm` of them started ahead of
// need, each with its init already waiting in fresh namespaces: a start
// then costs no process start at all.
type monitors struct {
	warm   int
	helper string // the binary monitors run from ("": flick's own)
	log    *slog.Logger

	mu      sync.Mutex
	ready   []*monitor
	filling int
	closed  bool
	byID    map[string]*monitor // the last monitor launched for each container
}

func newMonitors(warm int, helper string, log *slog.Logger) *monitors {
	return &monitors{warm: warm, helper: helper, log: log, byID: map[string]*monitor{}}
}

// warmNice is the nice value warm monitors start at: warming the next
// start's monitor never takes the CPU from what runs now. Each returns to
// the daemon's own value when it is given a container.
const warmNice = 19

// spawn starts `HELPER __shim ARG...` with the report socket as its fd 3.
// The helper is the lean container helper (internal/helper), or flick
// itself if there is none.
func (ms *monitors) spawn(out *os.File, args ...string) (*monitor, error) {
	self := ms.helper
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("start container monitor: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "monitor"), os.NewFile(uintptr(fds[1]), "monitor-report")
	defer theirs.Close()
	cmd := exec.Command(self, append([]string{"__shim"}, args...)...)
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{theirs}
	// Its own session: the monitor outlives the daemon.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		ours.Close()
		return nil, fmt.Errorf("start container monitor: %w", err)
	}
	return newMonitor(cmd, ours), nil
}

// spawnWarm is spawn of a warm monitor at warmNice: the forking thread
// takes that value for the fork (a child inherits its parent thread's),
// then goes back.
func (ms *monitors) spawnWarm() (*monitor, error) {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0) // this thread; the kernel says 20-nice
	if err != nil {
		return nil, err
	}
	nice := 20 - prio
	if err := unix.Setpriority(unix.PRIO_PROCESS, 0, warmNice); err != nil {
		return nil, err
	}
	defer unix.Setpriority(unix.PRIO_PROCESS, 0, nice)
	return ms.spawn(nil, runtime.WarmArg, strconv.Itoa(nice))
}

func newMonitor(cmd *exec.Cmd, ours *os.File) *monitor {
	mo := &monitor{cmd: cmd, conn: ours, started: make(chan struct{}), exited: make(chan struct{}), gone: make(chan struct{})}
	// Reap it if it ends while we run; after a restart of the daemon, init does.
	go func() { cmd.Wait(); close(mo.gone) }()
	return mo
}

// launch starts the monitor of the container in bundle: a warm one if one
// is ready, else a fresh one.
func (ms *monitors) launch(id, bundle string) (*monitor, error) {
	for {
		mo := ms.take()
		if mo == nil {
			break
		}
		if _, err := mo.conn.Write([]byte(bundle + "\n")); err != nil {
			// It died while it waited (killed by hand, say): next.
			ms.log.Warn("warm container monitor gone; starting another", "pid", mo.cmd.Process.Pid, "err", err)
			mo.conn.Close()
			continue
		}
		ms.log.Debug("container monitor", "id", id, "pid", mo.cmd.Process.Pid, "warm", true)
		return ms.track(id, mo), nil
	}
	logf, err := os.OpenFile(filepath.Join(bundle, runtime.ShimLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	mo, err := ms.spawn(logf, bundle)
	if err != nil {
		return nil, err
	}
	ms.log.Debug("container monitor", "id", id, "pid", mo.cmd.Process.Pid, "warm", false)
	return ms.track(id, mo), nil
}

func (ms *monitors) track(id string, mo *monitor) *monitor {
	go mo.read()
	ms.mu.Lock()
	ms.byID[id] = mo
	ms.mu.Unlock()
	return mo
}

func (ms *monitors) take() *monitor {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for len(ms.ready) > 0 {
		mo := ms.ready[0]
		ms.ready = ms.ready[1:]
		select {
		case <-mo.gone:
			mo.conn.Close()
			continue
		default:
		}
		return mo
	}
	return nil
}

// refill starts warm monitors in the background until `warm` are ready.
func (ms *monitors) refill() {
	ms.mu.Lock()
	n := ms.warm - len(ms.ready) - ms.filling
	if ms.closed || n <= 0 {
		ms.mu.Unlock()
		return
	}
	ms.filling += n
	ms.mu.Unlock()
	for range n {
		go func() {
			mo, err := ms.spawnWarm()
			ms.mu.Lock()
			defer ms.mu.Unlock()
			ms.filling--
			if err != nil {
				ms.log.Warn("warm container monitor", "err", err)
				return
			}
			if ms.closed {
				mo.conn.Close() // it sees EOF and exits
				return
			}
			ms.ready = append(ms.ready, mo)
		}()
	}
}

// of returns the monitor this daemon launched for a container, if any.
func (ms *monitors) of(id string) *monitor {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.byID[id]
}

func (ms *monitors) forget(id string) {
	ms.mu.Lock()
	delete(ms.byID, id)
	ms.mu.Unlock()
}

// close lets the warm monitors go (each kills its init and exits);
// launched ones keep their containers.
func (ms *monitors) close() {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.closed = true
	for _, mo := range ms.ready {
		mo.conn.Close()
	}
	ms.ready = nil
}

// exitedCh is what to wait on for the container's exit to be final: the
// launched monitor's report, or (adopted containers) nothing.
func (m *Manager) exitedCh(id string) <-chan struct{} {
	if mo := m.mons.of(id); mo != nil {
		return mo.exited
	}
	return nil
}

// monitorDone reports whether c's state.json is final: its monitor said so,
// or is gone.
func (m *Manager) monitorDone(c Container) bool {
	if mo := m.mons.of(c.ID); mo != nil && mo.cmd.Process.Pid == c.State.ShimPid {
		select {
		case <-mo.exited:
			return true
		default:
		}
	}
	return !shimAlive(c.State.ShimPid)
}

var errMonitorGone = errors.New("its monitor exited before starting it")
