package container

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/cgroup"
	"github.com/flick-edge/flick/internal/monitor"
)

// monitorProc is a container monitor this daemon launched: its reports
// arrive on a socket (monitor.Report*), so a start or an exit is seen when
// it happens instead of at the next poll of state.json. A daemon started
// later has no monitor for the containers it adopts and polls.
type monitorProc struct {
	cmd     *exec.Cmd
	conn    *os.File
	r       *bufio.Reader // reads conn
	started chan struct{} // the first run's outcome is in state.json (or the monitor is gone)
	exited  chan struct{} // state.json is final (or the monitor is gone)
	gone    chan struct{} // the process has ended

	// A warm monitor's init waits in warmCg (cgroup v1), which becomes the
	// container's cgroup by a rename. warmed is closed once that is settled
	// (warmUp); a monitor may be taken before.
	warmed  chan struct{}
	warmCg  *cgroup.Cgroup
	spawned time.Time
	// goAhead writes to a warm monitor's init (monitor.GoAheadFD); nil
	// once used or let go.
	goAheadMu sync.Mutex
	goAhead   *os.File
}

// release gives a warm monitor's init its go-ahead for bdir, and lets the
// pipe go either way; false if it could not write it (the init is gone).
func (mo *monitorProc) release(bdir string, nice int, spec bundle.Spec) bool {
	w := mo.takeGoAhead()
	if w == nil {
		return false
	}
	defer w.Close()
	line, err := bundle.NewWarmStart(bdir, mo.cmd.Process.Pid, nice, spec).Line()
	if err != nil {
		return false
	}
	_, err = w.Write(line)
	return err == nil
}

// dropGoAhead lets the go-ahead pipe go: the monitor's own end is then the
// last, so its init sees the monitor end.
func (mo *monitorProc) dropGoAhead() {
	if w := mo.takeGoAhead(); w != nil {
		w.Close()
	}
}

// takeGoAhead hands over the go-ahead pipe, once.
func (mo *monitorProc) takeGoAhead() *os.File {
	mo.goAheadMu.Lock()
	defer mo.goAheadMu.Unlock()
	w := mo.goAhead
	mo.goAhead = nil
	return w
}

// read turns the monitor's reports into its channels, until the socket
// closes (the monitor ended).
func (mo *monitorProc) read() {
	var startOnce, exitOnce sync.Once
	start := func() { startOnce.Do(func() { close(mo.started) }) }
	exit := func() { exitOnce.Do(func() { close(mo.exited) }) }
	sc := bufio.NewScanner(mo.r)
	for sc.Scan() {
		switch sc.Text() {
		case monitor.ReportStarted:
			start()
		case monitor.ReportExited:
			start()
			exit()
		}
	}
	start()
	exit()
	mo.conn.Close()
	mo.dropGoAhead()
}

// drop lets a monitor that was given no container go: it kills its init and
// exits when its socket closes; its warm cgroup goes too.
func (mo *monitorProc) drop() {
	mo.conn.Close()
	mo.dropGoAhead()
	<-mo.warmed
	if mo.warmCg != nil {
		mo.warmCg.Teardown()
		mo.warmCg = nil
	}
}

// monitors launches monitors and keeps `warm` of them started ahead of
// need, each with its init already waiting in fresh namespaces: a start
// then costs no process start at all. In a burst of starts (one found no
// warm monitor ready) it keeps one more, up to 2*warm, until no start has
// missed for shrinkAfter.
type monitors struct {
	warm        int
	extra       int           // warm monitors kept beyond warm while a burst lasts
	shrinkAfter time.Duration // how long after the last miss the extra ones go
	shrink      *time.Timer
	lastMiss    time.Time
	monitorBin  string        // the binary monitors run from ("": flick's own)
	initBin     string        // the binary inits run from ("": flick's own)
	warmCgroups bool          // cgroup v1: warm inits wait in a cgroup renamed at the start
	warmWait    time.Duration // how long a start waits for a warm monitor still warming up (then it starts cold)
	warmStuck   time.Duration // a warm monitor not warmed up this long after its spawn is let go
	refillAfter time.Duration // how long after a start the next warm monitor is spawned
	nice        int           // the daemon's nice value, which a monitor given a container returns to
	log         *slog.Logger

	mu       sync.Mutex
	ready    []*monitorProc
	filling  int
	closed   bool
	refilled bool                    // a refill ran: from then on an empty pool is a miss
	byID     map[string]*monitorProc // the last monitor launched for each container
}

func newMonitors(warm int, monitorBin, initBin string, log *slog.Logger) *monitors {
	// Read once: a thread of the daemon's may be at bundle.WarmNice for a moment
	// (atWarmNice), and the value is per thread.
	nice := 0
	if prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0); err == nil { // the kernel says 20-nice
		nice = 20 - prio
	}
	return &monitors{nice: nice, warm: warm, monitorBin: monitorBin, initBin: initBin, warmCgroups: cgroup.Mode() != "v2",
		warmWait: 50 * time.Millisecond, warmStuck: 5 * time.Second, refillAfter: 3 * time.Millisecond, shrinkAfter: 30 * time.Second,
		log: log, byID: map[string]*monitorProc{}}
}

// spawn starts `MONITOR __shim --init INIT [ARG...]` with the report
// socket as its fd 3. The binaries are the lean ones internal/helper
// installs, or flick itself.
func (ms *monitors) spawn(out *os.File, args ...string) (*monitorProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	monBin, initBin := cmp.Or(ms.monitorBin, self), cmp.Or(ms.initBin, self)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("start container monitor: %w", err)
	}
	// Ours non-blocking, so that it is pollable: closing it ends a read
	// in progress.
	unix.SetNonblock(fds[0], true)
	ours, theirs := os.NewFile(uintptr(fds[0]), "monitor"), os.NewFile(uintptr(fds[1]), "monitor-report")
	defer theirs.Close()
	cmd := exec.Command(monBin, append([]string{monitor.Role, "--init", initBin}, args...)...)
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{theirs}
	var goAhead *os.File
	if len(args) > 0 { // warm: its init's go-ahead pipe, monitor.GoAheadFD
		r, w, err := os.Pipe()
		if err != nil {
			ours.Close()
			return nil, fmt.Errorf("start container monitor: %w", err)
		}
		defer r.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, r, w)
		goAhead = w
	}
	// Its own session: the monitor outlives the daemon.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		ours.Close()
		if goAhead != nil {
			goAhead.Close()
		}
		return nil, fmt.Errorf("start container monitor: %w", err)
	}
	mo := &monitorProc{cmd: cmd, conn: ours, r: bufio.NewReader(ours), started: make(chan struct{}), exited: make(chan struct{}), gone: make(chan struct{}),
		warmed: make(chan struct{}), spawned: time.Now(), goAhead: goAhead}
	if len(args) == 0 {
		close(mo.warmed) // not a warm one
	}
	// Reap it if it ends while we run; after a restart of the daemon, init does.
	// Its init must not wait on for a go-ahead from us once it is gone.
	go func() { cmd.Wait(); mo.dropGoAhead(); close(mo.gone) }()
	return mo, nil
}

// spawnWarm starts a warm monitor, telling it the daemon's nice value to
// return to when it is given a container, and warms it up in the
// background. It forks at the daemon's own priority: the forking thread
// waits until the child has exec'd, holding one of Go's Ps, and a child at
// nice 19 on a busy CPU made the start's answer wait for it (measured: 1.6
// ms a run). The monitor lowers its own priority once it runs.
func (ms *monitors) spawnWarm() (*monitorProc, error) {
	mo, err := ms.spawn(nil, bundle.WarmArg, strconv.Itoa(ms.nice))
	if err == nil {
		go ms.warmUp(mo)
	}
	return mo, err
}

// warmUp waits for a warm monitor's init and, on cgroup v1, puts it in a
// cgroup of its own with Docker's device rules, to be renamed for the
// container. The cgroup writes run at bundle.WarmNice: they would otherwise take
// the CPU from the container that just started. The wait for the init does
// not hold a thread.
func (ms *monitors) warmUp(mo *monitorProc) {
	defer close(mo.warmed)
	line, err := mo.r.ReadString('\n')
	pid, perr := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), monitor.ReportInit+" "))
	if err != nil || perr != nil {
		if !errors.Is(err, os.ErrClosed) { // closed by drop: not news
			ms.log.Warn("warm container monitor: no init reported", "pid", mo.cmd.Process.Pid, "line", line, "err", err)
		}
		return // it is gone, or will be dropped
	}
	if pid == 0 || !ms.warmCgroups {
		return // the container's cgroup is made at the start, and init joins it then
	}
	atWarmNice(func(int) error {
		cg, err := cgroup.New(cgroup.WarmPrefix+strconv.Itoa(mo.cmd.Process.Pid), cgroup.Resources{})
		if err == nil {
			if err = cg.RestrictDevices(cgroup.DefaultDeviceRules); err == nil || errors.Is(err, cgroup.ErrDevicesV2) {
				err = cg.Add(pid)
			}
			if err != nil {
				cg.Destroy()
			}
		}
		if err != nil {
			ms.log.Warn("warm container monitor: cgroup", "err", err)
			return nil
		}
		mo.warmCg = cg
		return nil
	})
}

// atWarmNice runs fn on a thread of its own at bundle.WarmNice, passing the nice
// value it had.
func atWarmNice(fn func(own int) error) error {
	goruntime.LockOSThread()
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0) // this thread; the kernel says 20-nice
	if err != nil {
		goruntime.UnlockOSThread()
		return err
	}
	own := 20 - prio
	if err := unix.Setpriority(unix.PRIO_PROCESS, 0, bundle.WarmNice); err != nil {
		goruntime.UnlockOSThread()
		return err
	}
	defer func() {
		// A thread that could not take its value back is not given to
		// other goroutines: it ends with this one.
		if unix.Setpriority(unix.PRIO_PROCESS, 0, own) == nil {
			goruntime.UnlockOSThread()
		}
	}()
	return fn(own)
}

// launch starts the monitor of the container in dir, whose spec it is,
// in the cgroup it makes for it (with the spec's limits and device rules):
// a warm monitor if one is ready, its cgroup renamed for the container,
// else a fresh one.
func (ms *monitors) launch(dir string, spec bundle.Spec) (*monitorProc, error) {
	id := spec.ID
	if prev := ms.of(id); prev != nil {
		// Started again: the last run's monitor removes the cgroup as it
		// ends, which must not be the one made now.
		select {
		case <-prev.gone:
		case <-time.After(10 * time.Second):
		}
	}
	missed := false
	defer func() {
		if missed {
			ms.grow()
		}
	}()
warm:
	for {
		mo := ms.take()
		if mo == nil {
			missed = ms.primed() // before the first start's refill nothing is warm, by design
			break
		}
		select {
		case <-mo.warmed: // a few ms after its start, unless the CPU is busy (it warms up at nice 19)
		default:
			missed = true
		}
		select {
		case <-mo.warmed:
		case <-time.After(ms.warmWait):
			if time.Since(mo.spawned) > ms.warmStuck {
				ms.log.Warn("warm container monitor did not warm up; letting it go", "pid", mo.cmd.Process.Pid)
				go mo.drop() // its warm-up ends when the socket closes
				continue
			}
			ms.putBack(mo) // for the next start; this one does not wait on nice-19 work
			break warm
		}
		cg, joined, err := ms.containerCgroup(spec, mo)
		if errors.Is(err, errWarmRename) {
			// Its init sits in a cgroup that cannot become the container's.
			ms.log.Warn("warm cgroup", "err", err)
			go mo.drop()
			continue
		}
		if err != nil {
			go mo.drop()
			return nil, err
		}
		// Its init in the container's cgroup already: the go-ahead goes
		// from here, before the Launch, rather than after the monitor has
		// been scheduled and read it. Written, it tells the monitor the
		// init was alive; a Launch that then fails (the monitor died)
		// tears down the cgroup, init in it, and fails the start.
		// Not for a layer a crash left marked: the monitor must see the
		// mark before any init of its own could make one (it keeps it).
		// The OOM count too is read before: the app may be killed before
		// its monitor runs.
		released := false
		var ooms uint64
		if joined && !(spec.Ephemeral && bundle.HasVolatileMark(dir)) {
			ooms, _ = cg.OOMKills() // 0 without a memory controller, as the monitor would read
			if released = mo.release(dir, ms.nice, spec); !released {
				// Its init is gone (killed by hand, say): next.
				ms.log.Warn("warm container init gone; starting another", "monitor", mo.cmd.Process.Pid)
				go mo.drop()
				cg.Teardown()
				continue
			}
		} else {
			mo.dropGoAhead() // the monitor joins it to the cgroup, then releases it
		}
		if err := send(mo, monitor.Launch{Bundle: dir, Cgroup: cg.Dirs(), Joined: joined, Released: released, OOMKills: ooms}); err != nil {
			go mo.drop()
			terr := cg.Teardown()
			if released {
				// Its init had its go-ahead and may have mounted the
				// layer: no second attempt on it. With init gone (the
				// cgroup emptied), so is its mount namespace: the mark
				// its volatile layer made is not a crash's.
				if terr == nil && spec.Ephemeral {
					bundle.ClearVolatile(dir)
				}
				return nil, fmt.Errorf("container monitor %d died as the container started: %w", mo.cmd.Process.Pid, errors.Join(err, terr))
			}
			// It died while it waited (killed by hand, say): next.
			ms.log.Warn("warm container monitor gone; starting another", "pid", mo.cmd.Process.Pid, "err", err)
			continue
		}
		ms.log.Debug("container monitor", "id", id, "pid", mo.cmd.Process.Pid, "warm", true)
		return ms.track(id, mo), nil
	}
	cg, _, err := ms.containerCgroup(spec, nil)
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, bundle.ShimLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err == nil {
		defer logf.Close()
		var mo *monitorProc
		if mo, err = ms.spawn(logf); err == nil {
			if err = send(mo, monitor.Launch{Bundle: dir, Cgroup: cg.Dirs()}); err == nil {
				ms.log.Debug("container monitor", "id", id, "pid", mo.cmd.Process.Pid, "warm", false)
				return ms.track(id, mo), nil
			}
			mo.drop()
		}
	}
	cg.Teardown()
	return nil, err
}

func send(mo *monitorProc, l monitor.Launch) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	_, err = mo.conn.Write(append(b, '\n'))
	return err
}

// errWarmRename: a warm monitor's cgroup could not be renamed for the
// container (one of that name exists: its last monitor is still removing
// it, say); the start uses another monitor.
var errWarmRename = errors.New("rename the warm cgroup")

// containerCgroup makes the container's cgroup: the warm monitor's, renamed
// (v1; joined reports that its init is in it), with the container's limits
// and devices added, or a new one.
func (ms *monitors) containerCgroup(spec bundle.Spec, mo *monitorProc) (cg *cgroup.Cgroup, joined bool, err error) {
	res := cgroup.Resources(spec.Resources)
	if mo != nil && mo.warmCg != nil {
		cg, err := mo.warmCg.Rename(spec.ID)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %w", errWarmRename, err)
		}
		mo.warmCg = nil
		if err := cg.Update(res); err != nil {
			cg.Teardown()
			return nil, false, err
		}
		extra := deviceRules(spec)[len(cgroup.DefaultDeviceRules):]
		if spec.Privileged {
			extra = []string{"a"}
		}
		if len(extra) > 0 {
			if err := cg.AllowDevices(extra); err != nil {
				cg.Teardown()
				return nil, false, fmt.Errorf("device rules: %w", err)
			}
		}
		return cg, true, nil
	}
	cg, err = cgroup.New(spec.ID, res)
	if err != nil {
		return nil, false, err
	}
	if !spec.Privileged {
		if err := cg.RestrictDevices(deviceRules(spec)); err != nil && !errors.Is(err, cgroup.ErrDevicesV2) {
			cg.Destroy()
			return nil, false, fmt.Errorf("device rules: %w", err)
		}
	}
	return cg, false, nil
}

// deviceRules is Docker's allowlist plus the --device nodes.
func deviceRules(spec bundle.Spec) []string {
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

func (ms *monitors) track(id string, mo *monitorProc) *monitorProc {
	go mo.read()
	ms.mu.Lock()
	ms.byID[id] = mo
	ms.mu.Unlock()
	return mo
}

func (ms *monitors) take() *monitorProc {
	var gone []*monitorProc
	defer func() {
		for _, mo := range gone {
			go mo.drop()
		}
	}()
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for len(ms.ready) > 0 {
		mo := ms.ready[0]
		ms.ready = ms.ready[1:]
		select {
		case <-mo.gone:
			gone = append(gone, mo)
			continue
		default:
		}
		return mo
	}
	return nil
}

// putBack returns a warm monitor taken before it had warmed up to the head
// of the pool.
func (ms *monitors) putBack(mo *monitorProc) {
	ms.mu.Lock()
	closed := ms.closed
	if !closed {
		ms.ready = append([]*monitorProc{mo}, ms.ready...)
	}
	ms.mu.Unlock()
	if closed {
		go mo.drop()
	}
}

// refillSoon refills refillAfter from now. A start's last milliseconds
// (its answer; for a short container, the exit report, the removal, its
// client's end) are what a user waits for, and spawning two processes
// (the monitor and its init) in them took the CPU and, while the fork
// waits for the child's exec, one of Go's two Ps: measured, interleaved
// A/B of `flick run --rm`, 100 runs each, 3 ms later took the median from
// 22.1 to 21.1 ms. The next start finds the monitor warm unless it comes
// within a few milliseconds, and then it starts cold as before.
func (ms *monitors) refillSoon() {
	time.AfterFunc(ms.refillAfter, ms.refill)
}

// grow keeps one more warm monitor, up to 2*warm, until no start has
// missed one for shrinkAfter: a start that had to wait for a warm monitor
// still warming up, or found none, is a burst the pool did not cover.
func (ms *monitors) grow() {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.closed {
		return
	}
	ms.lastMiss = time.Now()
	if ms.extra < ms.warm {
		ms.extra++
		ms.log.Debug("warm container monitors", "kept", ms.warm+ms.extra)
	}
	if ms.shrink == nil {
		ms.shrink = time.AfterFunc(ms.shrinkAfter, ms.settle)
	} else {
		ms.shrink.Reset(ms.shrinkAfter)
	}
}

// settle ends a burst: the pool goes back to `warm`, the extra monitors
// ready now let go.
func (ms *monitors) settle() {
	ms.mu.Lock()
	if time.Since(ms.lastMiss) < ms.shrinkAfter {
		// A miss came while this timer fired: grow re-armed it.
		ms.mu.Unlock()
		return
	}
	ms.extra = 0
	var excess []*monitorProc
	if n := len(ms.ready) - ms.warm; n > 0 && !ms.closed {
		excess = ms.ready[ms.warm:]
		ms.ready = ms.ready[:ms.warm:ms.warm]
	}
	ms.mu.Unlock()
	for _, mo := range excess {
		go mo.drop()
	}
}

func (ms *monitors) primed() bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.refilled && ms.warm > 0
}

// refill starts warm monitors in the background until `warm` (and a
// burst's extra ones) are ready.
func (ms *monitors) refill() {
	ms.mu.Lock()
	ms.refilled = true
	n := ms.warm + ms.extra - len(ms.ready) - ms.filling
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
			ms.filling--
			// Not wanted any more if a burst ended meanwhile.
			unwanted := ms.closed || len(ms.ready) >= ms.warm+ms.extra
			if err == nil && !unwanted {
				ms.ready = append(ms.ready, mo)
			}
			ms.mu.Unlock()
			if err != nil {
				ms.log.Warn("warm container monitor", "err", err)
			} else if unwanted {
				mo.drop()
			}
		}()
	}
}

// of returns the monitor this daemon launched for a container, if any.
func (ms *monitors) of(id string) *monitorProc {
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
	ms.closed = true
	if ms.shrink != nil {
		ms.shrink.Stop()
	}
	ready := ms.ready
	ms.ready = nil
	ms.mu.Unlock()
	for _, mo := range ready {
		mo.drop()
	}
}

// exitedCh is what to wait on for the container's exit to be final: the
// launched monitor's report, or (adopted containers) nothing.
func (m *Manager) exitedCh(id string) <-chan struct{} {
	if mo := m.mons.of(id); mo != nil {
		return mo.exited
	}
	return nil
}

// monitorOf is the monitor this daemon launched for c's current run (or
// for the start in progress, which has no state yet); nil if there is
// none: never started, or run by an earlier daemon's monitor.
func (m *Manager) monitorOf(c Container) *monitorProc {
	if mo := m.mons.of(c.ID); mo != nil && (c.State.ShimPid == 0 || mo.cmd.Process.Pid == c.State.ShimPid) {
		return mo
	}
	return nil
}

// launching is c's monitor if it has not reported its start yet and c
// does not run: a start gave up waiting for it (Manager.startTimeout),
// and it goes on; else nil.
func (m *Manager) launching(c Container) *monitorProc {
	mo := m.monitorOf(c)
	if mo == nil || c.Running() {
		return nil
	}
	select {
	case <-mo.started:
		return nil
	case <-mo.gone:
		return nil
	default:
		return mo
	}
}

// settled reports whether c's monitor can no longer run its app, so that
// its state.json is final: it reported the final exit, or it is gone. A
// monitor just launched (no report yet) or between two runs of a restart
// policy has not settled.
func (m *Manager) settled(c Container) bool {
	if mo := m.monitorOf(c); mo != nil {
		select {
		case <-mo.gone:
			return true
		case <-mo.exited:
			return true
		default:
			return false
		}
	}
	return !shimAlive(c.State.ShimPid)
}

// monitorEnd returns a channel closed when c's monitor settles, if c has
// exited and its monitor has not (it is restarting the container, or about
// to end: a container adopted from an earlier daemon has no exit report,
// and the monitor's end does not touch its bundle, so that is its pidfd);
// else nil. stop lets it go.
func (m *Manager) monitorEnd(c Container) (end <-chan struct{}, stop func()) {
	if c.Status() != "exited" || m.settled(c) {
		return nil, func() {}
	}
	if mo := m.monitorOf(c); mo != nil {
		return mo.exited, func() {} // closed by the report, or when the monitor's socket does
	}
	return processGone(c.State.ShimPid)
}

var errMonitorGone = errors.New("its monitor exited before starting it")
