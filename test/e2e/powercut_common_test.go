package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/cutfs"
	"github.com/flick-edge/flick/internal/imagegen"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// Power-cut campaigns share how cut points are chosen and how results are
// reported.
//
//	default                 about `want` points spread evenly over the workload
//	FLICK_POWERCUT=full     every operation of the workload
//	FLICK_POWERCUT_RANDOM=K K more points drawn at random (seeded)
//	FLICK_POWERCUT_SEED=S   the seed (default: the time; it is logged, so a
//	                        run that found something can be replayed)
//	FLICK_POWERCUT_AT=a,b   exactly these points (a reproducer)
//	FLICK_POWERCUT_REPORT=F append "workload cuts violations seconds" lines
//	                        to F (make powercut prints them as a table)

// cutPoints lists where to cut a workload of total operations.
func cutPoints(t *testing.T, total, want uint64) []uint64 {
	if at := os.Getenv("FLICK_POWERCUT_AT"); at != "" {
		var pts []uint64
		for _, s := range strings.Split(at, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil || n == 0 {
				t.Fatalf("FLICK_POWERCUT_AT: bad point %q", s)
			}
			pts = append(pts, min(n, total))
		}
		return pts
	}
	step := max(uint64(2), (total+want-1)/want)
	if os.Getenv("FLICK_POWERCUT") == "full" {
		step = 1
	}
	seen := map[uint64]bool{}
	var pts []uint64
	add := func(n uint64) {
		if !seen[n] {
			seen[n] = true
			pts = append(pts, n)
		}
	}
	for n := uint64(1); n <= total; n += step {
		add(n)
	}
	add(total) // the workload's last operation
	if k, _ := strconv.Atoi(os.Getenv("FLICK_POWERCUT_RANDOM")); k > 0 {
		seed, err := strconv.ParseUint(os.Getenv("FLICK_POWERCUT_SEED"), 10, 64)
		if err != nil {
			seed = uint64(time.Now().UnixNano())
		}
		t.Logf("random cut points: FLICK_POWERCUT_SEED=%d", seed)
		r := rand.New(rand.NewPCG(seed, 0))
		for range k {
			pts = append(pts, 1+r.Uint64N(total)) // repeats welcome: timing differs
		}
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i] < pts[j] })
	return pts
}

// sweepWorkload runs one uncut cycle to count the workload's operations,
// then the campaign over them; run returns the operations it saw.
func sweepWorkload(t *testing.T, workload string, want uint64, run func(t *testing.T, n uint64) uint64) {
	var total uint64
	t.Run("uncut", func(t *testing.T) { total = run(t, 0) })
	if total == 0 {
		t.Fatalf("%s: the uncut run made no filesystem operations", workload)
	}
	campaign(t, workload, total, want, func(t *testing.T, n uint64) { run(t, n) })
}

// campaign runs cycle at each point as a subtest and reports the tally.
func campaign(t *testing.T, workload string, total, want uint64, cycle func(t *testing.T, n uint64)) {
	start := time.Now()
	pts := cutPoints(t, total, want)
	violations := 0
	var failed []string
	for i, n := range pts {
		if !t.Run(fmt.Sprintf("cut%04d_%d", n, i), func(t *testing.T) { cycle(t, n) }) {
			violations++
			failed = append(failed, strconv.FormatUint(n, 10))
		}
	}
	t.Logf("%s: %d operations, %d cuts, %d with violations %v, %s (replay: FLICK_POWERCUT_AT=%s)",
		workload, total, len(pts), violations, failed, time.Since(start).Round(time.Second), strings.Join(failed, ","))
	if f := os.Getenv("FLICK_POWERCUT_REPORT"); f != "" {
		fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(fh, "%s\t%d\t%d\t%d\t%.0f\n", workload, total, len(pts), violations, time.Since(start).Seconds())
			fh.Close()
		}
	}
}

// requireCutfs skips a test that needs the power-cut harness (root, FUSE).
func requireCutfs(t *testing.T) {
	t.Helper()
	requireRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse")
	}
}

// cutRig is one power-cut cycle's machine: a daemon whose data root lives
// on a cutfs mount. newCutRig mounts and starts it; arm(n) makes the n-th
// mutating filesystem operation from then on cut the power, SIGKILLing the
// daemon at that instant; reboot cuts now if the workload ended first,
// waits for the daemon to die, and starts it again on the durable state.
type cutRig struct {
	t           *testing.T
	backing, mp string
	fs          *cutfs.FS // nil once rebooted
	unbind      func()
	d           *Daemon
	before      uint64
	ops         uint64 // mutating operations from arm to the cut (set by reboot)
	cut         bool   // the power went during the workload (set by reboot)
	preLog      string // the daemon's log up to the cut (set by reboot)
}

func newCutRig(t *testing.T) *cutRig {
	t.Helper()
	r := &cutRig{t: t, backing: t.TempDir(), mp: t.TempDir()}
	fs, err := cutfs.Mount(r.backing, r.mp, cutfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.fs = fs
	// Registered before the daemon's Stop, so it runs after it.
	t.Cleanup(func() {
		if r.fs != nil {
			if err := r.fs.Unmount(); err != nil {
				t.Errorf("unmount %s: %v", r.mp, err)
			}
		}
		if r.unbind != nil {
			r.unbind()
		}
	})
	r.d = startDaemon(t, withDataRoot(filepath.Join(r.mp, "root")), withArgs("--sync-mode", "fsync"))
	return r
}

// arm: the n-th mutating operation from now cuts the power (0: no cut until
// reboot).
func (r *cutRig) arm(n uint64) {
	proc := r.d.cmd.Process
	// Only signal here: the daemon may be blocked on the very FUSE request
	// whose reply waits for this hook. Kill of a dead process is harmless.
	r.fs.OnCut(func() { proc.Kill() })
	r.before = r.fs.Stats().Ops
	if n > 0 {
		r.fs.CutAfter(n)
	}
}

// reboot ends the workload with a power cut (now, unless it came during
// the workload), and brings the daemon up again on what was durable.
func (r *cutRig) reboot() {
	r.t.Helper()
	st := r.fs.Stats()
	r.ops, r.cut = st.Ops-r.before, st.Cut
	if !st.Cut {
		if err := r.fs.Cut(); err != nil {
			r.t.Fatalf("cut: %v", err)
		}
	}
	select {
	case <-r.d.done:
	case <-time.After(30 * time.Second):
		r.t.Fatal("daemon did not die after the cut")
	}
	r.d.cmd = nil
	r.preLog = r.d.Log()
	if err := r.fs.Unmount(); err != nil {
		r.t.Fatalf("unmount after the cut: %v", err)
	}
	r.fs = nil
	r.unbind = rebootOnDisk(r.t, r.backing, r.mp)
	r.d.log.Reset()
	r.d.start() // t.Fatalf (with the log) if it does not come up
}

// rebootOnDisk "reboots" after a cut by bind-mounting the durable state
// (backing, what cutfs kept) at mp, where the daemon's data root was. The
// checks after a cut need no more cutting, and overlayfs refuses a
// container's writable layer on FUSE ("upper fs missing required
// features"): on the backing's real filesystem containers can start, so
// "a container using the old image can still start" is checked for real.
// It returns the unmount.
func rebootOnDisk(t *testing.T, backing, mp string) func() {
	t.Helper()
	if err := unix.Mount(backing, mp, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s at %s: %v", backing, mp, err)
	}
	return func() {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mp, err)
		}
	}
}

// busyboxBase is a real root filesystem layer (Debian's static busybox), so
// the campaigns' images can run containers.
func busyboxBase(t *testing.T) v1.Layer {
	t.Helper()
	l, err := imagegen.Busybox(imagegen.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// containerStarts starts an existing, stopped container and waits for it;
// it must run its command (true) to a 0 exit.
func (d *Daemon) containerStarts(t *testing.T, name string) error {
	t.Helper()
	if r := d.flick(t, "start", name); r.Code != 0 {
		return fmt.Errorf("flick start %s: %s", name, r)
	}
	r := d.flick(t, "wait", name)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "0" {
		return fmt.Errorf("flick wait %s: %s (inspect: %s)", name, r, d.flick(t, "inspect", name).Stdout)
	}
	return nil
}

// imageRuns runs a fresh container of ref: flick run --rm ref true.
func (d *Daemon) imageRuns(t *testing.T, ref string) error {
	t.Helper()
	if r := d.flick(t, "run", "--rm", "--network", "none", ref, "true"); r.Code != 0 {
		return fmt.Errorf("flick run --rm %s true: %s", ref, r)
	}
	return nil
}
