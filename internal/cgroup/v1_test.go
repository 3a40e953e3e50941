package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/errdefs"
)

// These tests run against this host's real cgroup v1 hierarchies (hybrid here).

func requireV1(t *testing.T) {
	t.Helper()
	requireRoot(t)
	if m := Mode(); m != "v1" && m != "hybrid" {
		t.Skipf("host cgroup mode is %s, not v1/hybrid", m)
	}
	for _, ctrl := range v1Controllers {
		if _, err := os.Stat(filepath.Join(DefaultRoot, ctrl, "cgroup.procs")); err != nil {
			t.Skipf("v1 controller %s not mounted", ctrl)
		}
	}
}

func newTestCgroup(t *testing.T, id string, r Resources, opts []Option) *Cgroup {
	t.Helper()
	c, err := New(id, r, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.KillAll(); err != nil {
			t.Errorf("cleanup KillAll: %v", err)
		}
		if err := c.Destroy(); err != nil {
			t.Errorf("cleanup Destroy: %v", err)
		}
	})
	return c
}

func ctrlFile(t *testing.T, c *Cgroup, ctrl, file string) string {
	t.Helper()
	return readTrim(t, filepath.Join(c.Path(ctrl), file))
}

func TestV1Layout(t *testing.T) {
	requireV1(t)
	opts := testParent(t)
	c := newTestCgroup(t, "layout", Resources{}, opts)
	cfg, _ := newConfig(opts)
	for _, ctrl := range v1Controllers {
		want := filepath.Join(DefaultRoot, ctrl, cfg.parent, "layout")
		if got := c.Path(ctrl); got != want {
			t.Errorf("Path(%s) = %q, want %q", ctrl, got, want)
		}
		if _, err := os.Stat(filepath.Join(want, "cgroup.procs")); err != nil {
			t.Errorf("not created: %v", err)
		}
	}
	if c.Path("cpuset") != "" {
		t.Errorf("cpuset is not joined, Path = %q", c.Path("cpuset"))
	}
	if c.Mode() != Mode() {
		t.Errorf("cgroup mode %s, host %s", c.Mode(), Mode())
	}
	// No limits: everything unlimited or default.
	if got := ctrlFile(t, c, "cpu", "cpu.cfs_quota_us"); got != "-1" {
		t.Errorf("cfs_quota_us = %s", got)
	}
	if got := ctrlFile(t, c, "cpu", "cpu.shares"); got != "1024" {
		t.Errorf("cpu.shares = %s", got)
	}
	if got := ctrlFile(t, c, "pids", "pids.max"); got != "max" {
		t.Errorf("pids.max = %s", got)
	}
	if n, _ := strconv.ParseUint(ctrlFile(t, c, "memory", "memory.limit_in_bytes"), 10, 64); n < unlimitedFloor {
		t.Errorf("memory.limit_in_bytes = %d", n)
	}
}

func TestV1MemoryLimitOOMKill(t *testing.T) {
	requireV1(t)
	opts := testParent(t)
	const limit = 64 << 20
	c := newTestCgroup(t, "oom", Resources{MemoryBytes: limit}, opts)
	if got := ctrlFile(t, c, "memory", "memory.limit_in_bytes"); got != strconv.Itoa(limit) {
		t.Fatalf("memory.limit_in_bytes = %s", got)
	}
	// Docker: unset --memory-swap means twice --memory where swap is accounted.
	if c.b.swapAccounting() {
		if got := ctrlFile(t, c, "memory", "memory.memsw.limit_in_bytes"); got != strconv.Itoa(2*limit) {
			t.Errorf("memory.memsw.limit_in_bytes = %s, want %d", got, 2*limit)
		}
	}
	if n, err := c.OOMKills(); err != nil || n != 0 {
		t.Fatalf("OOMKills before = %d, %v", n, err)
	}

	h := startHelper(t, "alloc")
	if err := c.Add(h.pid()); err != nil {
		t.Fatal(err)
	}
	pids, err := c.Pids()
	if err != nil || !slices.Equal(pids, []int{h.pid()}) {
		t.Fatalf("Pids = %v, %v; want [%d]", pids, err, h.pid())
	}
	if slices.Contains(pids, os.Getpid()) {
		t.Fatal("the test process is in the cgroup")
	}
	h.proceed()
	if l := h.line(); l != "" {
		t.Errorf("helper printed %q: not killed", l)
	}
	ws := h.wait()
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, want SIGKILL by the OOM killer", ws)
	}
	n, err := c.OOMKills()
	if err != nil || n < 1 {
		t.Fatalf("OOMKills = %d, %v; want >= 1", n, err)
	}
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after OOM: oom_kill %d, stats %+v", n, st.Memory)
	if st.Memory.Limit != limit || st.Memory.Unlimited {
		t.Errorf("Stats limit %d unlimited %v, want %d", st.Memory.Limit, st.Memory.Unlimited, limit)
	}
	// The peak may pass the limit by a page or a few: the kernel charges
	// in batches and reclaims after (seen: limit + 4 KiB). More than 256 KiB
	// over would mean the limit is not enforced.
	if st.Memory.MaxUsage < limit/2 || st.Memory.MaxUsage > limit+256<<10 {
		t.Errorf("MaxUsage %d not near the limit %d", st.Memory.MaxUsage, limit)
	}
	if st.Memory.Failcnt == 0 {
		t.Error("Failcnt 0 after an OOM")
	}
	if len(st.Memory.Stat) == 0 {
		t.Error("no memory.stat")
	}
}

func TestV1PidsLimit(t *testing.T) {
	requireV1(t)
	opts := testParent(t)
	const limit = 32
	c := newTestCgroup(t, "pids", Resources{PidsLimit: limit}, opts)
	if got := ctrlFile(t, c, "pids", "pids.max"); got != strconv.Itoa(limit) {
		t.Fatalf("pids.max = %s", got)
	}
	h := startHelper(t, "fork", "GOMAXPROCS=1", "GOGC=off")
	if err := c.Add(h.pid()); err != nil {
		t.Fatal(err)
	}
	h.proceed()
	line := h.line()
	var got, threads int
	var eagain bool
	if _, err := fmt.Sscanf(line, "forked %d threads %d eagain %t", &got, &threads, &eagain); err != nil {
		t.Fatalf("helper said %q: %v", line, err)
	}
	t.Logf("helper: %s", line)
	if !eagain {
		t.Fatalf("fork loop did not end with EAGAIN: %s", line)
	}
	if got < 1 || got+threads > limit {
		t.Errorf("forked %d children with %d threads, want 1..%d tasks", got, threads, limit)
	}
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Pids.Limit != limit || st.Pids.Current == 0 || st.Pids.Current > limit {
		t.Errorf("Stats pids %+v, want current in 1..%d and limit %d", st.Pids, limit, limit)
	}
	if ev, err := os.ReadFile(filepath.Join(c.Path("pids"), "pids.events")); err == nil {
		if n, err := readKey(c.Path("pids"), "pids.events", "max", ""); err != nil || n < 1 {
			t.Errorf("pids.events %q: max = %d, %v", ev, n, err)
		}
	}
	pids, err := c.Pids()
	if err != nil || len(pids) != got+1 {
		t.Errorf("Pids = %d processes, %v; want %d", len(pids), err, got+1)
	}

	if err := c.KillAll(); err != nil {
		t.Fatal(err)
	}
	if ws := h.wait(); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("helper ended with %v", ws)
	}
	for _, p := range pids {
		if alive(p) {
			t.Errorf("pid %d survived KillAll", p)
		}
	}
	if left, err := c.Pids(); err != nil || len(left) != 0 {
		t.Errorf("after KillAll Pids = %v, %v", left, err)
	}
	reapOrphans()
}

func TestV1CPU(t *testing.T) {
	requireV1(t)
	opts := testParent(t)
	c := newTestCgroup(t, "cpu", Resources{CPUs: 0.5, CPUShares: 512}, opts)
	check := func(file, want string) {
		t.Helper()
		if got := ctrlFile(t, c, "cpu", file); got != want {
			t.Errorf("%s = %s, want %s", file, got, want)
		}
	}
	check("cpu.cfs_quota_us", "50000")
	check("cpu.cfs_period_us", "100000")
	check("cpu.shares", "512")

	// The quota is enforced: a spinner on every CPU gets about half a CPU.
	h := startHelper(t, "spin")
	if err := c.Add(h.pid()); err != nil {
		t.Fatal(err)
	}
	before, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	h.proceed()
	time.Sleep(600 * time.Millisecond)
	after, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)
	used := time.Duration(after.CPU.TotalNs - before.CPU.TotalNs)
	t.Logf("spinner used %v of CPU in %v wall with --cpus 0.5; throttled %d of %d periods", used, wall, after.CPU.ThrottledPeriods, after.CPU.Periods)
	if used <= 0 || used > wall*6/10+20*time.Millisecond {
		t.Errorf("used %v CPU in %v with a 0.5 CPU quota", used, wall)
	}
	if after.CPU.ThrottledPeriods == 0 || after.CPU.ThrottledNs == 0 {
		t.Errorf("no throttling recorded: %+v", after.CPU)
	}
	if after.CPU.UserNs == 0 || len(after.CPU.PerCPUNs) == 0 {
		t.Errorf("CPU stats incomplete: %+v", after.CPU)
	}

	// docker update: the whole desired state.
	if err := c.Update(Resources{CPUs: 1.5}); err != nil {
		t.Fatal(err)
	}
	check("cpu.cfs_quota_us", "150000")
	check("cpu.shares", "1024")
	if err := c.Update(Resources{CPUShares: 1}); err != nil {
		t.Fatal(err)
	}
	check("cpu.cfs_quota_us", "-1")
	check("cpu.shares", "2")
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "minimum 2") {
		t.Errorf("warnings %q", w)
	}

	// More CPUs than the machine has: refused as Docker does, nothing changed.
	n := c.cfg.numCPU
	err = c.Update(Resources{CPUs: float64(n) + 1})
	want := fmt.Sprintf("range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", n, n)
	if err == nil || err.Error() != want || !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Errorf("Update(CPUs %d) = %v, want %q", n+1, err, want)
	}
	check("cpu.cfs_quota_us", "-1")
	if _, err := New("toomany", Resources{CPUs: 64}, append(opts, WithCPUCount(2))...); err == nil || !strings.Contains(err.Error(), "from 0.01 to 2.00, as there are only 2 CPUs") {
		t.Errorf("New(CPUs 64) = %v", err)
	}
	if _, err := Open("toomany", opts...); !errdefs.Is(err, errdefs.NotFound) {
		t.Errorf("a refused New left a cgroup: %v", err)
	}
}

func TestV1FreezeThaw(t *testing.T) {
	requireV1(t)
	opts := testParent(t)
	c := newTestCgroup(t, "freeze", Resources{}, opts)
	h := startHelper(t, "spin")
	if err := c.Add(h.pid()); err != nil {
		t.Fatal(err)
	}
	h.proceed()
	time.Sleep(100 * time.Millisecond)
	if st := procState(h.pid()); st != "R" {
		t.Logf("spinner state %s before freeze", st)
	}

	if err := c.Freeze(); err != nil {
		t.Fatal(err)
	}
	if got := ctrlFile(t, c, "freezer", "freezer.state"); got != "FROZEN" {
		t.Fatalf("freezer.state = %s", got)
	}
	if st := procState(h.pid()); st == "R" || st == "" {
		t.Errorf("frozen spinner is in state %q", st)
	} else {
		t.Logf("frozen spinner: state %s in /proc/%d/stat", st, h.pid())
	}
	a, _ := c.Stats()
	time.Sleep(300 * time.Millisecond)
	b, _ := c.Stats()
	if b.CPU.TotalNs != a.CPU.TotalNs {
		t.Errorf("frozen cgroup used %v of CPU", time.Duration(b.CPU.TotalNs-a.CPU.TotalNs))
	}
	// Update while paused works and leaves it paused (docker update on a paused container).
	if err := c.Update(Resources{PidsLimit: 100}); err != nil {
		t.Fatal(err)
	}
	if got := ctrlFile(t, c, "freezer", "freezer.state"); got != "FROZEN" {
		t.Errorf("Update thawed it: %s", got)
	}

	if err := c.Thaw(); err != nil {
		t.Fatal(err)
	}
	if got := ctrlFile(t, c, "freezer", "freezer.state"); got != "THAWED" {
		t.Fatalf("freezer.state = %s", got)
	}
	time.Sleep(200 * time.Millisecond)
	d, _ := c.Stats()
	if d.CPU.TotalNs <= b.CPU.TotalNs {
		t.Error("thawed spinner uses no CPU")
	}

	// KillAll also works on a frozen cgroup.
	if err := c.Freeze(); err != nil {
		t.Fatal(err)
	}
	if err := c.KillAll(); err != nil {
		t.Fatal(err)
	}
	if ws := h.wait(); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("helper ended with %v", ws)
	}
	if got := ctrlFile(t, c, "freezer", "freezer.state"); got != "THAWED" {
		t.Errorf("KillAll left freezer.state %s", got)
	}
}

func TestV1KillAllDestroyOpen(t *testing.T) {
	requireV1(t)
	opts := testParent(t)
	c := newTestCgroup(t, "kill", Resources{MemoryBytes: 128 << 20, PidsLimit: 50}, opts)
	h := startHelper(t, "fork", "GOMAXPROCS=1", "GOGC=off", "FLICK_FORK_MAX=5")
	if err := c.Add(h.pid()); err != nil {
		t.Fatal(err)
	}
	h.proceed()
	if l := h.line(); !strings.HasPrefix(l, "forked 5 ") {
		t.Fatalf("helper: %q", l)
	}
	pids, _ := c.Pids()
	if len(pids) != 6 {
		t.Fatalf("Pids = %v, want the helper and 5 children", pids)
	}

	// Re-adoption: a restarted daemon opens the cgroup by id.
	o, err := Open("kill", opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, ctrl := range v1Controllers {
		if o.Path(ctrl) != c.Path(ctrl) {
			t.Errorf("Open Path(%s) = %q, want %q", ctrl, o.Path(ctrl), c.Path(ctrl))
		}
	}
	if op, _ := o.Pids(); !slices.Equal(op, pids) {
		t.Errorf("Open Pids = %v, want %v", op, pids)
	}
	if st, err := o.Stats(); err != nil || st.Pids.Current < 6 || st.Pids.Limit != 50 || st.Memory.Limit != 128<<20 || st.Memory.Usage == 0 || st.CPU.TotalNs == 0 {
		t.Errorf("Open Stats = %+v, %v", st, err)
	}
	if err := o.Update(Resources{MemoryBytes: 96 << 20, PidsLimit: 40}); err != nil {
		t.Fatal(err)
	}
	if got := ctrlFile(t, c, "pids", "pids.max"); got != "40" {
		t.Errorf("pids.max after Update via Open = %s", got)
	}
	// New on an existing id re-opens it and keeps its processes.
	again, err := New("kill", Resources{MemoryBytes: 96 << 20, PidsLimit: 40}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if ap, _ := again.Pids(); !slices.Equal(ap, pids) {
		t.Errorf("New on existing id: Pids = %v, want %v", ap, pids)
	}

	// Destroy refuses a populated cgroup.
	if err := c.Destroy(); err == nil || !errdefs.Is(err, errdefs.FailedPrecondition) || !strings.Contains(err.Error(), "kill them first") {
		t.Errorf("Destroy with processes = %v", err)
	}
	if err := o.KillAll(); err != nil {
		t.Fatal(err)
	}
	if ws := h.wait(); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("helper ended with %v", ws)
	}
	for _, p := range pids {
		if alive(p) {
			t.Errorf("pid %d survived", p)
		}
	}
	reapOrphans()
	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	for _, ctrl := range v1Controllers {
		if _, err := os.Stat(c.Path(ctrl)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", c.Path(ctrl), err)
		}
	}
	if err := c.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	if err := c.KillAll(); err != nil {
		t.Errorf("KillAll after Destroy: %v", err)
	}
	if _, err := c.Stats(); !errdefs.Is(err, errdefs.NotFound) {
		t.Errorf("Stats after Destroy = %v, want NotFound", err)
	}
	if _, err := Open("kill", opts...); !errdefs.Is(err, errdefs.NotFound) {
		t.Errorf("Open after Destroy = %v, want NotFound", err)
	}
}

// A crash leaves container cgroups behind, one of them half created (a
// crash between mkdirs): Reclaim removes both and kills what runs there.
func TestV1ReclaimLeftovers(t *testing.T) {
	requireV1(t)
	opts := testParent(t)
	keep := newTestCgroup(t, "keep", Resources{}, opts)
	left, err := New("leftover", Resources{PidsLimit: 10}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	hk := startHelper(t, "sleep")
	hl := startHelper(t, "sleep")
	if err := keep.Add(hk.pid()); err != nil {
		t.Fatal(err)
	}
	if err := left.Add(hl.pid()); err != nil {
		t.Fatal(err)
	}
	// A half-created leftover (a crash between mkdirs): only the memory directory.
	cfg, _ := newConfig(opts)
	half := filepath.Join(DefaultRoot, "memory", cfg.parent, "half")
	if err := os.Mkdir(half, 0o755); err != nil {
		t.Fatal(err)
	}

	removed, err := Reclaim([]string{"half", "leftover"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{"half", "leftover"}) {
		t.Errorf("Reclaim removed %v", removed)
	}
	if ws := hl.wait(); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("leftover's process ended with %v", ws)
	}
	if !alive(hk.pid()) {
		t.Error("kept container's process was killed")
	}
	if _, err := Open("leftover", opts...); !errdefs.Is(err, errdefs.NotFound) {
		t.Errorf("leftover still there: %v", err)
	}
	if _, err := os.Stat(half); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("half-created leftover still there: %v", err)
	}
	if _, err := Open("keep", opts...); err != nil {
		t.Errorf("kept cgroup: %v", err)
	}
}

// Reclaim removes only the cgroups it is given: another daemon's container
// under the same parent keeps running.
func TestV1Reclaim(t *testing.T) {
	requireV1(t)
	opts := testParent(t)
	mine, err := New("mine", Resources{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	other := newTestCgroup(t, "other", Resources{}, opts)
	hm := startHelper(t, "sleep")
	ho := startHelper(t, "sleep")
	if err := mine.Add(hm.pid()); err != nil {
		t.Fatal(err)
	}
	if err := other.Add(ho.pid()); err != nil {
		t.Fatal(err)
	}
	removed, err := Reclaim([]string{"mine", "never-made"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{"mine"}) {
		t.Errorf("Reclaim removed %v, want [mine]", removed)
	}
	if ws := hm.wait(); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("reclaimed container's process ended with %v", ws)
	}
	if !alive(ho.pid()) {
		t.Error("the other daemon's container was killed")
	}
}

func TestV1SwapSemantics(t *testing.T) {
	requireV1(t)
	opts := testParent(t)
	c := newTestCgroup(t, "swap", Resources{MemoryBytes: 64 << 20, MemorySwapBytes: -1}, opts)
	if !c.b.swapAccounting() {
		t.Skip("no swap accounting (memory.memsw.*) on this kernel")
	}
	memsw := func() uint64 {
		n, _ := strconv.ParseUint(ctrlFile(t, c, "memory", "memory.memsw.limit_in_bytes"), 10, 64)
		return n
	}
	mem := func() uint64 {
		n, _ := strconv.ParseUint(ctrlFile(t, c, "memory", "memory.limit_in_bytes"), 10, 64)
		return n
	}
	if memsw() < unlimitedFloor || mem() != 64<<20 {
		t.Errorf("--memory-swap -1: memsw %d mem %d", memsw(), mem())
	}
	steps := []struct {
		r          Resources
		mem, memsw uint64 // 0 = unlimited
	}{
		{Resources{MemoryBytes: 64 << 20, MemorySwapBytes: 100 << 20}, 64 << 20, 100 << 20},
		{Resources{MemoryBytes: 256 << 20}, 256 << 20, 512 << 20}, // raise both: swap first
		{Resources{MemoryBytes: 32 << 20}, 32 << 20, 64 << 20},    // lower both: memory first
		{Resources{MemoryBytes: 32 << 20, MemorySwapBytes: 32 << 20}, 32 << 20, 32 << 20},
		{Resources{}, 0, 0}, // lift both
	}
	for _, s := range steps {
		if err := c.Update(s.r); err != nil {
			t.Fatalf("Update(%+v): %v", s.r, err)
		}
		m, w := mem(), memsw()
		if (s.mem == 0 && m < unlimitedFloor) || (s.mem != 0 && m != s.mem) || (s.memsw == 0 && w < unlimitedFloor) || (s.memsw != 0 && w != s.memsw) {
			t.Errorf("Update(%+v): mem %d memsw %d, want %d %d", s.r, m, w, s.mem, s.memsw)
		}
	}
}
