package runtime

import (
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
	"sync"
	"syscall"
	"time"

	"github.com/flick-edge/flick/internal/cgroup"
	"github.com/flick-edge/flick/internal/netns"
	"golang.org/x/sys/unix"
)

// ShimMain supervises one container until it is stopped for good: it starts
// init in new namespaces inside the container's cgroup, writes its output to
// the capped log, records every start and exit in state.json, and restarts
// it by the policy with Docker's back-off. It never returns. The daemon that
// launched it may pass a socket as fd 3, on which the monitor reports (see
// Report*); a daemon started later reads state.json instead.
func ShimMain(bundle string) {
	// The shim outlives the daemon; terminal signals are not for it.
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGPIPE)
	// One P: a monitor moves bytes between pipes and a file; a second P
	// only adds a GC worker and its memory (0.1 MiB of its 1.6 anonymous).
	goruntime.GOMAXPROCS(1)
	os.Exit(shim(bundle, nil, openReport()))
}

func shim(bundle string, pre *initProc, rep *reporter) int {
	defer rep.close()
	spec, err := ReadSpec(bundle)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flick shim:", err)
		pre.discard()
		rep.send(ReportStarted)
		return 1
	}
	st := State{ShimPid: os.Getpid()}
	if prev, err := ReadState(bundle); err == nil {
		st.RestartCount = prev.RestartCount
	}
	// The container could not start: as Docker, report and do not loop.
	fail := func(code int, err error) int {
		pre.discard()
		ret := record(bundle, spec, &st, code, err)
		rep.send(ReportStarted)
		rep.send(ReportExited)
		return ret
	}
	logw, err := openLog(filepath.Join(bundle, LogFile), spec.LogMax, spec.LogFiles)
	if err != nil {
		return fail(-1, fmt.Errorf("open log: %w", err))
	}
	defer logw.Close()
	cg, err := containerCgroup(spec, pre)
	if cg != nil {
		defer func() {
			cg.KillAll()
			cg.Destroy()
		}()
	}
	if err != nil {
		return fail(-1, err)
	}
	var con console
	if l, err := net.ListenUnix("unix", &net.UnixAddr{Name: ControlSocket(spec.ID), Net: "unix"}); err == nil {
		defer l.Close()
		go serveControl(l, &con, spec.StdinOnce)
	} else {
		fmt.Fprintln(os.Stderr, "flick shim: control socket:", err)
	}
	backoff := 100 * time.Millisecond
	for {
		oomBefore, _ := cg.OOMKills()
		started := time.Now()
		code, err := runOnce(bundle, spec, cg, logw, &st, &con, pre, rep)
		pre = nil // a restart starts a fresh init (runOnce disposed of this one)
		if err != nil {
			return fail(code, err)
		}
		if n, _ := cg.OOMKills(); n > oomBefore {
			st.OOMKilled = true
		}
		st.Status, st.ExitCode, st.FinishedAt, st.Pid = "exited", code, time.Now().UTC(), 0
		writeJSONAtomic(filepath.Join(bundle, StateFile), st, !spec.Ephemeral)
		if !shouldRestart(bundle, spec.Restart, code, st.RestartCount) {
			// Final: the daemon may remove the bundle while the cgroup
			// goes (deferred above).
			rep.send(ReportExited)
			return 0
		}
		if time.Since(started) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		st.Status = "restarting"
		writeJSONAtomic(filepath.Join(bundle, StateFile), st, !spec.Ephemeral)
		if !sleepUnlessStopped(bundle, backoff) {
			st.Status = "exited"
			writeJSONAtomic(filepath.Join(bundle, StateFile), st, !spec.Ephemeral)
			rep.send(ReportExited)
			return 0
		}
		backoff = min(backoff*2, time.Minute)
		st.RestartCount++
		st.OOMKilled = false
	}
}

// containerCgroup makes the container's cgroup: the warm init's, renamed
// (v1), with the container's limits and devices added, or a new one.
func containerCgroup(spec Spec, pre *initProc) (*cgroup.Cgroup, error) {
	if pre != nil && pre.cg != nil {
		cg, err := pre.cg.Rename(spec.ID)
		if err == nil {
			pre.cg, pre.inCgroup = nil, true
			if err := cg.Update(spec.Resources); err != nil {
				return cg, err
			}
			extra := deviceRules(spec)[len(cgroup.DefaultDeviceRules):]
			if spec.Privileged {
				extra = []string{"a"}
			}
			if len(extra) > 0 {
				if err := cg.AllowDevices(extra); err != nil {
					return cg, fmt.Errorf("device rules: %w", err)
				}
			}
			return cg, nil
		}
		if !errors.Is(err, cgroup.ErrRenameUnsupported) {
			fmt.Fprintln(os.Stderr, "flick shim: warm cgroup:", err)
		}
		// A new cgroup below; init moves there and the warm one goes then.
	}
	cg, err := cgroup.New(spec.ID, spec.Resources)
	if err != nil {
		return nil, err
	}
	if !spec.Privileged {
		if err := cg.RestrictDevices(deviceRules(spec)); err != nil {
			// v2: no eBPF device program; nodev mounts still keep created
			// nodes unusable.
			fmt.Fprintln(os.Stderr, "flick shim: device rules:", err)
		}
	}
	return cg, nil
}

// deviceRules is Docker's allowlist plus the --device nodes.
func deviceRules(spec Spec) []string {
	rules := append([]string(nil), cgroup.DefaultDeviceRules...)
	for _, d := range spec.Devices {
		var st unix.Stat_t
		if err := unix.Stat(d.Host, &st); err != nil {
			continue
		}
		kind := "c"
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			kind = "b"
		}
		rules = append(rules, fmt.Sprintf("%s %d:%d rwm", kind, unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))))
	}
	return rules
}

func record(bundle string, spec Spec, st *State, code int, err error) int {
	st.Status, st.ExitCode, st.FinishedAt, st.Pid = "exited", code, time.Now().UTC(), 0
	if err != nil {
		st.Error = err.Error()
	}
	writeJSONAtomic(filepath.Join(bundle, StateFile), *st, !spec.Ephemeral)
	return 1
}

func stopped(bundle string) bool {
	_, err := os.Stat(filepath.Join(bundle, StopFile))
	return err == nil
}

func shouldRestart(bundle string, p RestartPolicy, code, count int) bool {
	if stopped(bundle) {
		return false
	}
	switch p.Name {
	case "always", "unless-stopped":
		return true
	case "on-failure":
		return code != 0 && (p.Max == 0 || count < p.Max)
	}
	return false
}

func sleepUnlessStopped(bundle string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if stopped(bundle) {
			return false
		}
		time.Sleep(min(50*time.Millisecond, time.Until(deadline)))
	}
	return !stopped(bundle)
}

// runOnce starts init (or takes the pre-started one) and waits for it. A
// non-nil error means it never reached the application (the exit code is
// then Docker's 125-127).
func runOnce(bundle string, spec Spec, cg *cgroup.Cgroup, logw *logWriter, st *State, con *console, pre *initProc, rep *reporter) (int, error) {
	p := pre
	if p == nil {
		var err error
		if p, err = startInit(bundle, &spec); err != nil {
			return 125, err
		}
	}
	defer p.sio.close()
	p.sio.use(spec, con)
	cmd := p.cmd
	if !p.inCgroup {
		if err := cg.Add(cmd.Process.Pid); err != nil {
			p.discard()
			return 125, fmt.Errorf("join cgroup: %w", err)
		}
		if p.cg != nil { // the warm cgroup it left
			p.cg.Destroy()
			p.cg = nil
		}
	}
	if err := p.release(bundle, spec); err != nil {
		p.discard()
		return 125, fmt.Errorf("start container init: %w", err)
	}
	if err := p.sio.receiveConsole(con); err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(os.Stderr, "flick shim: terminal:", err)
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
	writeJSONAtomic(filepath.Join(bundle, StateFile), *st, !spec.Ephemeral)
	rep.send(ReportStarted)
	werr := cmd.Wait()
	// The app's children may keep the pipes open: kill what is left in the
	// cgroup (the pid namespace is gone with init anyway).
	cg.KillAll()
	con.set(nil, nil)
	done.Wait()
	return exitCode(cmd.ProcessState, werr), nil
}

// initProc is a started init waiting on its sync pipe for the go-ahead.
type initProc struct {
	cmd   *exec.Cmd
	syncW *os.File // the go-ahead: one byte, or a warmStart line
	errR  *os.File // why the start failed; EOF once the app is exec'd
	sio   *stdio
	warm  bool // started before its container was known (see warm_linux.go)
	nice  int  // warm: the priority to take back at the go-ahead

	cg       *cgroup.Cgroup // warm: the cgroup it waits in (v1), renamed for the container
	inCgroup bool           // already in the container's cgroup
}

// startInit starts a container's init in new namespaces, stopped before
// it does anything. With spec nil it is a warm init: every kind of stdio is
// prepared, the namespace set is the default one (a new network namespace
// too), and the bundle comes with the go-ahead.
func startInit(bundle string, spec *Spec) (*initProc, error) {
	syncR, syncW, err := os.Pipe()
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
	arg := bundle
	if p.warm {
		arg = WarmArg
	}
	cmd := exec.Command("/proc/self/exe", "__init", arg)
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
	return p, nil
}

// release gives init its go-ahead; a warm one also learns its bundle and
// the network namespace to join.
func (p *initProc) release(bundle string, spec Spec) error {
	msg := []byte{0}
	if p.warm {
		// Init's mount namespace is a copy of ours as it was when the
		// pool warmed it; it takes a fresh copy of the current one (the
		// bridge namespace's file, a USB stick mounted since).
		ws := warmStart{Bundle: bundle, Nice: p.nice, MntNS: fmt.Sprintf("/proc/%d/ns/mnt", os.Getpid()), NetNS: spec.NetNS}
		if spec.Network == "host" {
			ws.NetNS = fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
		}
		b, err := json.Marshal(ws)
		if err != nil {
			return err
		}
		msg = append(b, '\n')
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
	if p.cg != nil {
		p.cg.KillAll()
		p.cg.Destroy()
		p.cg = nil
	}
	p.close()
}

func (p *initProc) close() {
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
	master, err := ReceiveConsole(s.consoleR)
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
func wireStdio(cmd *exec.Cmd, spec *Spec) (_ *stdio, err error) {
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
func (s *stdio) use(spec Spec, con *console) {
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

func (s *stdio) pump(logw *logWriter) *sync.WaitGroup {
	var wg sync.WaitGroup
	if s.out != nil {
		wg.Add(1)
		go func() { defer wg.Done(); logw.pump("stdout", s.out) }()
	}
	if s.err != nil {
		wg.Add(1)
		go func() { defer wg.Done(); logw.pump("stderr", s.err) }()
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
