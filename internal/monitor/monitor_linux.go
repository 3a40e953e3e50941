// Package monitor is a container's monitor: a small process beside each
// container that holds its stdio, writes its capped log, reaps it, applies
// its restart policy and records each start and exit in the bundle's
// state.json. The daemon can stop, crash or be replaced while containers
// keep running: it adopts them again from their bundles.
//
// A monitor lives as long as its container, so it is built on its own
// (cmd/flick-monitor, embedded in flick by internal/helper) and links only
// what it needs: internal/bundle, internal/logfile, internal/tty and the
// raw cgroup file operations of internal/cgroupdir. The daemon makes the
// container's cgroup and sets its limits (internal/cgroup); the container's
// init (internal/runtime) is another binary the monitor starts.
package monitor

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/cgroupdir"
	"github.com/flick-edge/flick/internal/logfile"
	"github.com/flick-edge/flick/internal/netns"
	"github.com/flick-edge/flick/internal/tty"
)

// Role is the hidden argument a monitor is started with:
//
//	HELPER __shim --init INIT            a monitor for the container the daemon names next
//	HELPER __shim --init INIT --warm N   a warm one: its init starts at once (at priority N later)
//
// INIT is the binary the container's init runs from. Either way the daemon
// passes a socket as fd 3 and sends one Launch line on it.
const Role = "__shim"

// Launch is what the daemon sends a monitor, one JSON line on its fd 3: the
// container to run and the cgroup the daemon made for it.
type Launch struct {
	Bundle string   `json:"bundle"`
	Cgroup []string `json:"cgroup"` // its directories, one per hierarchy (internal/cgroupdir)
	// Joined: a warm init is in that cgroup already (its warm cgroup was
	// renamed into it).
	Joined bool `json:"joined,omitempty"`
	// Released: the daemon gave the warm init its go-ahead itself, through
	// the pipe it passed (GoAheadFD), before this line went out, having
	// found no volatile mark on the layer (the init may have made one
	// since).
	Released bool `json:"released,omitempty"`
	// OOMKills is the cgroup's OOM kill count the daemon read before that
	// go-ahead (with Released): the app may have been killed since.
	OOMKills uint64 `json:"oomKills,omitempty"`
}

// RunRole runs the monitor if args name its role, and never returns then;
// otherwise it returns false.
func RunRole(args []string) bool {
	if len(args) < 4 || args[1] != Role || args[2] != "--init" {
		return false
	}
	if len(args) == 6 && args[4] == bundle.WarmArg {
		nice, _ := strconv.Atoi(args[5])
		Main(args[3], true, nice)
	}
	if len(args) == 4 {
		Main(args[3], false, 0)
	}
	return false
}

// Main supervises one container until it is stopped for good: it starts
// init in new namespaces inside the container's cgroup, writes its output to
// the capped log, records every start and exit in state.json, and restarts
// it by the policy with Docker's back-off. It never returns.
//
// A warm monitor (see warm_linux.go) starts its init before it is given a
// container, and reports the init's pid ("init PID") for the daemon to put
// in a cgroup. Then, warm or not, it reads its Launch. A monitor whose daemon
// goes away before that kills its init and exits.
func Main(initPath string, warm bool, nice int) {
	// The monitor outlives the daemon; terminal signals are not for it.
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGPIPE)
	// One P: a monitor moves bytes between pipes and a file; a second P
	// only adds a GC worker and its memory.
	goruntime.GOMAXPROCS(1)
	rep := openReport()
	if rep == nil {
		fmt.Fprintln(os.Stderr, "flick monitor: started without the daemon's socket on fd 3; the daemon starts monitors")
		os.Exit(2)
	}
	ib, err := openInit(initPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flick monitor:", err)
		os.Exit(2)
	}
	var pre *initProc
	var preErr error
	if warm {
		// Waiting for a container: at WarmNice, before the init is
		// started. The init inherits the forking thread's value, so that
		// thread is this locked one, set first (a thread the runtime
		// starts while the others are reniced could miss it).
		goruntime.LockOSThread()
		unix.Setpriority(unix.PRIO_PROCESS, 0, bundle.WarmNice)
		reniceSelf(bundle.WarmNice)
		pre, preErr = startInit(ib, bundle.WarmArg, nil)
		goruntime.UnlockOSThread()
		pid := 0
		if pre != nil {
			pid = pre.cmd.Process.Pid
		}
		rep.send(ReportInit + " " + strconv.Itoa(pid))
		bundle.WarmCodecs(&Launch{Cgroup: []string{""}}) // while nobody waits
	}
	line, err := bufio.NewReader(rep.f).ReadBytes('\n')
	var l Launch
	if err == nil {
		err = json.Unmarshal(line, &l)
	}
	if err != nil || !filepath.IsAbs(l.Bundle) {
		// The daemon stopped or dropped its pool (or sent nonsense): the
		// cgroup it may have made for us goes too.
		pre.discard()
		cgroupdir.Set(l.Cgroup).Remove()
		os.Exit(0)
	}
	var settle func()
	if warm {
		if pre != nil {
			pre.nice = nice
			pre.inCgroup = l.Joined
			if l.Released {
				pre.releasedByDaemon()
			}
		}
		// Done once the init has its go-ahead (run): none of it is
		// needed before.
		settle = func() {
			if f, err := os.OpenFile(filepath.Join(l.Bundle, bundle.ShimLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_CLOEXEC, 0o600); err == nil {
				unix.Dup3(int(f.Fd()), 1, 0)
				unix.Dup3(int(f.Fd()), 2, 0)
				f.Close()
			}
			if preErr != nil {
				fmt.Fprintln(os.Stderr, "flick monitor: warm init:", preErr)
			}
			if err := reniceSelf(nice); err != nil {
				fmt.Fprintln(os.Stderr, "flick monitor: priority:", err)
			}
		}
	}
	os.Exit(run(l, ib, pre, rep, settle))
}

// run runs the container of l to its end, restarts included. A warm
// monitor passes its waiting init as pre, and settle: the rest of its own
// set-up, done once that init has its go-ahead.
func run(l Launch, ib *initBinary, pre *initProc, rep *reporter, settle func()) int {
	bdir := l.Bundle
	defer rep.close()
	cg := cgroupdir.Set(l.Cgroup)
	defer func() {
		// The pid namespace went with init; this is for anything else put
		// in the cgroup from outside.
		cg.KillAll(10 * time.Second)
		cg.Remove()
	}()
	spec, err := bundle.ReadSpec(bdir)
	if err != nil {
		if settle != nil {
			settle()
		}
		fmt.Fprintln(os.Stderr, "flick monitor:", err)
		pre.discard()
		rep.send(ReportStarted)
		return 1
	}
	// From here on the layer may be mounted: its unmount and volatile mark
	// are settled when run ends. A mark there already was left by a crash:
	// init refuses the layer, and the mark stays for the next start too.
	// An init the daemon released may have mounted the layer, and made the
	// mark, by now: the daemon released it only after finding no mark.
	held := nsHold{keepMark: spec.Ephemeral && !l.Released && bundle.HasVolatileMark(bdir)}
	defer held.release(bdir, spec)
	oomBefore := l.OOMKills
	if !l.Released {
		oomBefore, _ = cg.OOMKills()
	}
	if pre != nil && pre.inCgroup {
		// A warm init in its cgroup already: its go-ahead first, so that
		// it makes the container's root while this monitor opens the log
		// and its control socket (clients wait for the socket; the app's
		// first output waits in its pipes).
		pre.release(bdir, spec) // runOnce reads what it returned
	}
	if settle != nil {
		settle()
	}
	st := bundle.State{ShimPid: os.Getpid()}
	if prev, err := bundle.ReadState(bdir); err == nil {
		st.RestartCount = prev.RestartCount
	}
	// The container could not start: as Docker, report and do not loop.
	fail := func(code int, err error) int {
		pre.discard()
		ret := record(bdir, spec, &st, code, err)
		rep.send(ReportStarted)
		rep.send(ReportExited)
		return ret
	}
	logw, err := logfile.Open(filepath.Join(bdir, bundle.LogFile), spec.LogMax, spec.LogFiles)
	if err != nil {
		return fail(-1, fmt.Errorf("open log: %w", err))
	}
	defer logw.Close()
	var con console
	if ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: ControlSocket(spec.ID), Net: "unix"}); err == nil {
		defer ln.Close()
		go serveControl(ln, &con, spec.StdinOnce)
	} else {
		fmt.Fprintln(os.Stderr, "flick monitor: control socket:", err)
	}
	backoff := 100 * time.Millisecond
	for {
		started := time.Now()
		code, err := runOnce(bdir, spec, ib, cg, logw, &st, &con, pre, rep, &held)
		pre = nil // a restart starts a fresh init (runOnce disposed of this one)
		if err != nil {
			return fail(code, err)
		}
		if n, _ := cg.OOMKills(); n > oomBefore {
			st.OOMKilled = true
		}
		st.Status, st.ExitCode, st.FinishedAt, st.Pid = "exited", code, time.Now().UTC(), 0
		bundle.WriteState(bdir, st, !spec.Ephemeral)
		if !shouldRestart(bdir, spec.Restart, code, st.RestartCount) {
			// Final: the daemon may remove the bundle while the cgroup
			// goes (deferred above).
			rep.send(ReportExited)
			return 0
		}
		held.release(bdir, spec) // before the next run mounts the layer again
		if time.Since(started) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		st.Status = "restarting"
		bundle.WriteState(bdir, st, !spec.Ephemeral)
		if !sleepUnlessStopped(bdir, backoff) {
			st.Status = "exited"
			bundle.WriteState(bdir, st, !spec.Ephemeral)
			rep.send(ReportExited)
			return 0
		}
		backoff = min(backoff*2, time.Minute)
		st.RestartCount++
		st.OOMKilled = false
		oomBefore, _ = cg.OOMKills()
	}
}

func record(bdir string, spec bundle.Spec, st *bundle.State, code int, err error) int {
	st.Status, st.ExitCode, st.FinishedAt, st.Pid = "exited", code, time.Now().UTC(), 0
	if err != nil {
		st.Error = err.Error()
	}
	bundle.WriteState(bdir, *st, !spec.Ephemeral)
	return 1
}

// stopLooks counts stopped's looks: what a poll would show (tests).
var stopLooks atomic.Int64

func stopped(bdir string) bool {
	stopLooks.Add(1)
	_, err := os.Stat(filepath.Join(bdir, bundle.StopFile))
	return err == nil
}

func shouldRestart(bdir string, p bundle.RestartPolicy, code, count int) bool {
	if stopped(bdir) {
		return false
	}
	// The policy as it is now: docker update may have changed it while
	// the app ran.
	if spec, err := bundle.ReadSpec(bdir); err == nil {
		p = spec.Restart
	}
	switch p.Name {
	case "always", "unless-stopped":
		return true
	case "on-failure":
		return code != 0 && (p.Max == 0 || count < p.Max)
	}
	return false
}

// sleepUnlessStopped sleeps d, a restart's back-off (up to a minute), and
// reports whether the container may run again: false as soon as a stop
// marks it. It waits on inotify for the mark; without it, it looks every
// 50 ms.
func sleepUnlessStopped(bdir string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err == nil {
		defer unix.Close(fd)
		if _, err = unix.InotifyAddWatch(fd, bdir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_DELETE_SELF); err != nil {
			fmt.Fprintln(os.Stderr, "flick monitor: watch for a stop:", err)
		}
	}
	var buf [4096]byte
	for {
		// After the watch is set: a mark made in between is seen here.
		if stopped(bdir) {
			return false
		}
		left := time.Until(deadline)
		if left <= 0 {
			return true
		}
		if err != nil {
			time.Sleep(min(50*time.Millisecond, left))
			continue
		}
		ms := int((left + time.Millisecond - 1) / time.Millisecond)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, perr := unix.Poll(fds, ms); perr == nil && n > 0 {
			// Whatever came (the mark, a log rotation's file, the bundle
			// gone): look again.
			if _, rerr := unix.Read(fd, buf[:]); rerr != nil && rerr != unix.EINTR && rerr != unix.EAGAIN {
				err = rerr // the watch is broken: back to looking
			}
		} else if perr != nil && perr != unix.EINTR {
			err = perr
		}
	}
}

// runOnce starts init (or takes the pre-started one) and waits for it. A
// non-nil error means it never reached the application (the exit code is
// then Docker's 125-127).
func runOnce(bdir string, spec bundle.Spec, ib *initBinary, cg cgroupdir.Set, logw *logfile.Writer, st *bundle.State, con *console, pre *initProc, rep *reporter, held *nsHold) (int, error) {
	p, err := readyInit(bdir, spec, ib, cg, con, pre)
	if err != nil {
		return 125, err
	}
	defer p.dropBornNS() // on the failure paths; let go earlier once the app runs
	defer p.sio.close()
	cmd := p.cmd
	if err := p.sio.receiveConsole(con); err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(os.Stderr, "flick monitor: terminal:", err)
	} // on EOF init failed first: its reason follows on errR
	done := p.sio.pump(logw)
	msg, _ := io.ReadAll(p.errR)
	p.errR.Close()
	if len(msg) > 0 {
		werr := cmd.Wait()
		con.set(nil, nil)
		done.Wait()
		code := 125
		var ee *exec.ExitError
		if errors.As(werr, &ee) && ee.ExitCode() > 0 {
			code = ee.ExitCode()
		}
		return code, errors.New(string(msg))
	}
	st.Status, st.Pid, st.StartedAt, st.Error, st.FinishedAt = "running", cmd.Process.Pid, time.Now().UTC(), "", time.Time{}
	bundle.WriteState(bdir, *st, !spec.Ephemeral)
	rep.send(ReportStarted)
	if ns := p.bornNS; ns != nil {
		// Its unmounts take a while: not in the way of the reaping.
		p.bornNS = nil
		go ns.Close()
	}
	held.take(cmd.Process.Pid)
	werr := cmd.Wait()
	// Nothing of the container is left to hold the pipes open: init was the
	// pid namespace's first process, and the kernel reaps every other one
	// (execs included, they join the namespace) before init's wait returns.
	// The cgroup's last sweep (run's defer) comes after the exit report,
	// and so do the unmounts (held).
	con.set(nil, nil)
	done.Wait()
	return exitCode(cmd.ProcessState, werr), nil
}

// nsHold keeps a run's mount namespace after its app exited: the kernel
// then unmounts the container's root and special file systems when the
// hold is let go, after the exit report, instead of inside the exit of
// the app's last process, before anyone could learn of it.
type nsHold struct {
	f        *os.File
	keepMark bool // the volatile mark was there before the run: a crash's
}

// take holds the mount namespace of pid, if it still runs.
func (h *nsHold) take(pid int) { h.f = mountNS(pid) }

// mountNS opens the mount namespace of pid; nil if it has none any more.
func mountNS(pid int) *os.File {
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), "mntns")
}

// release lets the namespace go (its mounts with it) and then clears the
// volatile mark of an Ephemeral container's upper layer: nothing mounts it
// any more, and the system did not crash meanwhile.
func (h *nsHold) release(bdir string, spec bundle.Spec) {
	if h.f != nil {
		h.f.Close()
		h.f = nil
	}
	if spec.Ephemeral && !h.keepMark {
		if err := bundle.ClearVolatile(bdir); err != nil {
			fmt.Fprintln(os.Stderr, "flick monitor:", err)
		}
	}
}

// initProc is a started init waiting on its sync pipe for the go-ahead.
type initProc struct {
	cmd   *exec.Cmd
	syncW *os.File // the go-ahead: one byte, or a warmStart line
	errR  *os.File // why the start failed; EOF once the app is exec'd
	sio   *stdio
	warm  bool // started before its container was known (see warm_linux.go)
	nice  int  // warm: the priority to take back at the go-ahead

	inCgroup bool // already in the container's cgroup

	released   bool  // release ran (early, for a warm init in its cgroup)
	releaseErr error // and what it returned

	// bornNS (warm) is the mount namespace init was born in, a copy of
	// the host's. At the go-ahead init's main thread moves to a fresh
	// copy, but its runtime's other threads stay in this one until the
	// app's execve ends them; the last one out would unmount all of it
	// inside that execve. Held here, it goes after the start's report.
	bornNS *os.File
}

// startInit starts a container's init in new namespaces, stopped before
// it does anything. With spec nil it is a warm init: every kind of stdio is
// prepared, the namespace set is the default one (a new network namespace
// too), and the bundle comes with the go-ahead.
func startInit(ib *initBinary, bdir string, spec *bundle.Spec) (*initProc, error) {
	syncR, syncW, err := goAheadPipe(spec == nil)
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		syncR.Close()
		syncW.Close()
		return nil, err
	}
	p := &initProc{syncW: syncW, errR: errR, warm: spec == nil}
	cmd := ib.command(bdir)
	sio, err := wireStdio(cmd, spec)
	if err != nil {
		syncR.Close()
		errW.Close()
		p.close()
		return nil, err
	}
	p.sio = sio
	cmd.ExtraFiles = []*os.File{syncR, errW} // fds 3 and 4
	if sio.console != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, sio.console) // fd 5
	}
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	if p.warm || (spec.Network != "host" && spec.NetNS == "") {
		flags |= unix.CLONE_NEWNET
	}
	// With -t init takes its terminal as controlling terminal itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Setsid: true}
	cmd.Env = []string{}
	if !p.warm && spec.NetNS != "" {
		// The bridge network's namespace exists already (the daemon made
		// it): init is born in it.
		err = netns.Enter(spec.NetNS, cmd.Start)
	} else {
		err = cmd.Start()
	}
	syncR.Close()
	errW.Close()
	sio.closeChildEnds()
	if err != nil {
		p.close()
		return nil, fmt.Errorf("start container init: %w", err)
	}
	p.cmd = cmd
	if p.warm {
		p.bornNS = mountNS(cmd.Process.Pid) // held here (see bornNS)
	}
	return p, nil
}

// readyInit puts init in the container's cgroup and gives it its go-ahead:
// pre, the warm one, or a new one. A warm init that is gone (killed while it
// waited) is replaced by a new one rather than failing the start.
func readyInit(bdir string, spec bundle.Spec, ib *initBinary, cg cgroupdir.Set, con *console, pre *initProc) (*initProc, error) {
	ready := func(p *initProc) error {
		p.sio.use(spec, con)
		if !p.inCgroup {
			if err := cg.Join(p.cmd.Process.Pid); err != nil {
				return fmt.Errorf("join cgroup: %w", err)
			}
		}
		if err := p.release(bdir, spec); err != nil {
			return fmt.Errorf("start container init: %w", err)
		}
		return nil
	}
	if pre != nil {
		err := ready(pre)
		if err == nil {
			return pre, nil
		}
		con.set(nil, nil) // not pre's stdin, about to close
		pre.discard()
		fmt.Fprintln(os.Stderr, "flick monitor: warm init:", err, "(starting another)")
	}
	p, err := startInit(ib, bdir, &spec)
	if err != nil {
		return nil, err
	}
	if err := ready(p); err != nil {
		p.discard()
		return nil, err
	}
	return p, nil
}

// release gives init its go-ahead; a warm one also learns its bundle and
// the network namespace to join. Called again, it returns what the first
// call did.
func (p *initProc) release(bdir string, spec bundle.Spec) error {
	if p.released {
		return p.releaseErr
	}
	p.released = true
	p.releaseErr = p.goAhead(bdir, spec)
	return p.releaseErr
}

// releasedByDaemon records a go-ahead the daemon wrote itself
// (Launch.Released): release then writes none.
func (p *initProc) releasedByDaemon() {
	p.released = true
	p.syncW.Close()
}

func (p *initProc) goAhead(bdir string, spec bundle.Spec) error {
	msg := []byte{0}
	if p.warm {
		// Init's mount namespace is a copy of ours as it was when the
		// pool warmed it; it takes a fresh copy of the current one (the
		// bridge namespace's file, a USB stick mounted since).
		var err error
		if msg, err = bundle.NewWarmStart(bdir, os.Getpid(), p.nice, spec).Line(); err != nil {
			return err
		}
	}
	_, err := p.syncW.Write(msg)
	p.syncW.Close()
	return err
}

// discard kills an init that will not be used and reaps it.
func (p *initProc) discard() {
	if p == nil {
		return
	}
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
	p.close()
}

func (p *initProc) dropBornNS() {
	if p.bornNS != nil {
		p.bornNS.Close()
		p.bornNS = nil
	}
}

func (p *initProc) close() {
	p.dropBornNS()
	p.syncW.Close()
	p.errR.Close()
	if p.sio != nil {
		p.sio.close()
	}
}

func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		return 125
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// stdio is one run's wiring: a pty, or pipes for stdout/stderr and
// optionally stdin.
type stdio struct {
	childEnds []*os.File
	out, err  *os.File // read ends (err nil with a tty)
	stdin     *os.File // write end or pty master; nil without -i/-t

	console  *os.File // -t: init's end of the terminal socket (its fd 5)
	consoleR *os.File // -t: ours, on which the master arrives
}

// receiveConsole waits for init's terminal (-t) and wires it as the run's
// stdio; it fails if init ended before making it.
func (s *stdio) receiveConsole(con *console) error {
	if s.consoleR == nil {
		return nil
	}
	master, err := tty.Receive(s.consoleR)
	s.consoleR.Close()
	s.consoleR = nil
	if err != nil {
		return err
	}
	s.out, s.stdin = master, master
	con.set(master, master)
	return nil
}

// wireStdio prepares init's stdio for spec, or for any spec (nil): then
// both the terminal socket and the pipes exist, and use keeps what the spec
// needs once it is known.
func wireStdio(cmd *exec.Cmd, spec *bundle.Spec) (_ *stdio, err error) {
	s := &stdio{}
	defer func() {
		if err != nil {
			s.close()
			s.closeChildEnds()
		}
	}()
	if spec == nil || spec.Tty {
		// Init makes the terminal inside the container and sends the
		// master back on this socket (its fd 5).
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("allocate a terminal: %w", err)
		}
		s.consoleR = os.NewFile(uintptr(fds[0]), "console-recv")
		s.console = os.NewFile(uintptr(fds[1]), "console-send")
		s.childEnds = append(s.childEnds, s.console)
		if spec != nil {
			return s, nil // stdio is /dev/null until init has the terminal
		}
	}
	if s.out, cmd.Stdout, err = pipe(s); err != nil {
		return nil, err
	}
	if s.err, cmd.Stderr, err = pipe(s); err != nil {
		return nil, err
	}
	if spec == nil || spec.Stdin {
		inR, inW, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		cmd.Stdin, s.stdin = inR, inW
		s.childEnds = append(s.childEnds, inR)
		return s, nil
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	cmd.Stdin = devnull
	s.childEnds = append(s.childEnds, devnull)
	return s, nil
}

// pipe makes an output pipe for init: the read end is ours, the write end
// one of s's child ends.
func pipe(s *stdio) (*os.File, *os.File, error) {
	r, w, err := os.Pipe()
	if err == nil {
		s.childEnds = append(s.childEnds, w)
	}
	return r, w, err
}

// use keeps the stdio spec needs (a warm init's wiring has all of it) and
// hands the app's stdin to the console.
func (s *stdio) use(spec bundle.Spec, con *console) {
	if spec.Tty {
		// Init replaces its pipes by the terminal it makes.
		for _, f := range []*os.File{s.out, s.err, s.stdin} {
			if f != nil {
				f.Close()
			}
		}
		s.out, s.err, s.stdin = nil, nil, nil
		return
	}
	if s.consoleR != nil {
		s.consoleR.Close()
		s.consoleR = nil
	}
	if !spec.Stdin && s.stdin != nil {
		s.stdin.Close() // init puts /dev/null in its place
		s.stdin = nil
	}
	if s.stdin != nil {
		con.set(s.stdin, nil)
	}
}

func (s *stdio) closeChildEnds() {
	for _, f := range s.childEnds {
		f.Close()
	}
}

func (s *stdio) pump(logw *logfile.Writer) *sync.WaitGroup {
	var wg sync.WaitGroup
	if s.out != nil {
		wg.Add(1)
		go func() { defer wg.Done(); logw.Pump("stdout", s.out) }()
	}
	if s.err != nil {
		wg.Add(1)
		go func() { defer wg.Done(); logw.Pump("stderr", s.err) }()
	}
	return &wg
}

func (s *stdio) close() {
	if s.consoleR != nil {
		s.consoleR.Close()
	}
	if s.out != nil {
		s.out.Close()
	}
	if s.err != nil {
		s.err.Close()
	}
	if s.stdin != nil && s.stdin != s.out {
		s.stdin.Close()
	}
}
