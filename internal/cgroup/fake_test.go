package cgroup

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"

	"github.com/flick-edge/flick/internal/errdefs"
)

// File-level tests against fake cgroupfs trees in a temp dir. opencontainers/cgroups
// refuses files that are not on cgroupfs unless cgroups.TestMode is set; in TestMode
// a write truncates and creates the file, so a file holds the last value written.
// These tests prove which files get which values and that the files are parsed; the
// kernel's side (acceptance, enforcement) is proven by the v1 tests on this host and
// the cgroup2 mount-namespace test.

func fakeMode(t *testing.T) {
	t.Helper()
	prev := cgroups.TestMode
	cgroups.TestMode = true
	t.Cleanup(func() { cgroups.TestMode = prev })
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func fileIs(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if got := strings.TrimSpace(string(b)); got != want {
		t.Errorf("%s = %q, want %q", filepath.Base(path), got, want)
	}
}

// fakeV2 lays out what the kernel would show: root and parent offering all
// controllers, and a leaf listing leafCtrls (what subtree_control enabled).
func fakeV2(t *testing.T, rootCtrls, leafCtrls string, swap bool) (root, leaf string) {
	t.Helper()
	root = t.TempDir()
	writeFiles(t, root, map[string]string{"cgroup.controllers": rootCtrls, "cgroup.subtree_control": ""})
	writeFiles(t, filepath.Join(root, "flick"), map[string]string{"cgroup.controllers": rootCtrls, "cgroup.subtree_control": ""})
	leaf = filepath.Join(root, "flick", "c1")
	files := map[string]string{"cgroup.controllers": leafCtrls, "cgroup.procs": "", "cgroup.kill": "", "cgroup.freeze": "0\n"}
	if strings.Contains(leafCtrls, "memory") {
		files["memory.max"] = "max"
		if swap {
			files["memory.swap.max"] = "max"
		}
	}
	writeFiles(t, leaf, files)
	return root, leaf
}

func TestV2FakeTreeFiles(t *testing.T) {
	fakeMode(t)
	root, leaf := fakeV2(t, "cpuset cpu io memory hugetlb pids rdma misc", "cpu memory pids", true)
	opts := []Option{WithRoot(root), WithMode("v2"), WithCPUCount(4)}

	c, err := New("c1", Resources{MemoryBytes: 64 << 20, CPUs: 1.5, CPUShares: 512, PidsLimit: 100}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	// Only the needed controllers are enabled, in the root and in the parent.
	fileIs(t, filepath.Join(root, "cgroup.subtree_control"), "+cpu +memory +pids")
	fileIs(t, filepath.Join(root, "flick", "cgroup.subtree_control"), "+cpu +memory +pids")
	fileIs(t, filepath.Join(leaf, "memory.max"), "67108864")
	fileIs(t, filepath.Join(leaf, "memory.swap.max"), "67108864") // Docker's 2x memory, v2 counts swap alone
	fileIs(t, filepath.Join(leaf, "cpu.max"), "150000 100000")
	fileIs(t, filepath.Join(leaf, "cpu.weight"), "59") // runc's conversion of 512 shares
	fileIs(t, filepath.Join(leaf, "pids.max"), "100")
	if c.Path("memory") != leaf || c.Path("cpu") != leaf {
		t.Errorf("Path = %q", c.Path("memory"))
	}

	// Re-open: the controllers already enabled are not written again.
	if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("cpu memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New("c1", Resources{}, opts...); err != nil {
		t.Fatal(err)
	}
	fileIs(t, filepath.Join(root, "cgroup.subtree_control"), "cpu memory pids")

	steps := []struct {
		r     Resources
		files map[string]string
	}{
		{Resources{}, map[string]string{"memory.max": "max", "memory.swap.max": "max", "cpu.max": "max 100000", "cpu.weight": "100", "pids.max": "max"}},
		{Resources{MemoryBytes: 64 << 20, MemorySwapBytes: 64 << 20}, map[string]string{"memory.max": "67108864", "memory.swap.max": "0"}},
		{Resources{MemoryBytes: 64 << 20, MemorySwapBytes: 100 << 20}, map[string]string{"memory.swap.max": "37748736"}},
		{Resources{MemoryBytes: 64 << 20, MemorySwapBytes: -1}, map[string]string{"memory.max": "67108864", "memory.swap.max": "max"}},
		{Resources{CPUs: 0.01, CPUShares: 2}, map[string]string{"cpu.max": "1000 100000", "cpu.weight": "1"}},
		{Resources{CPUs: 4, CPUShares: 262144, PidsLimit: 1}, map[string]string{"cpu.max": "400000 100000", "cpu.weight": "10000", "pids.max": "1"}},
	}
	for _, s := range steps {
		if err := c.Update(s.r); err != nil {
			t.Fatalf("Update(%+v): %v", s.r, err)
		}
		for f, want := range s.files {
			fileIs(t, filepath.Join(leaf, f), want)
		}
	}
}

// An Update to the limits last written writes nothing; any change writes
// them all again, and a cgroup found by Open is written on its first Update.
func TestUpdateWritesOnlyChanges(t *testing.T) {
	fakeMode(t)
	root, leaf := fakeV2(t, "cpu memory pids", "cpu memory pids", true)
	opts := []Option{WithRoot(root), WithMode("v2"), WithCPUCount(4)}
	c, err := New("c1", Resources{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	fileIs(t, filepath.Join(leaf, "pids.max"), "max")
	// A mark in a file apply writes: it stays while nothing changes.
	mark := func() { writeFiles(t, leaf, map[string]string{"pids.max": "mark"}) }
	mark()
	for _, r := range []Resources{{}, {MemoryBytes: -1, PidsLimit: -1, CPUShares: 1024}} {
		if err := c.Update(r); err != nil {
			t.Fatal(err)
		}
		fileIs(t, filepath.Join(leaf, "pids.max"), "mark")
	}
	if err := c.Update(Resources{MemoryBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	fileIs(t, filepath.Join(leaf, "pids.max"), "max")
	fileIs(t, filepath.Join(leaf, "memory.max"), "67108864")
	o, err := Open("c1", opts...)
	if err != nil {
		t.Fatal(err)
	}
	mark()
	if err := o.Update(Resources{MemoryBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	fileIs(t, filepath.Join(leaf, "pids.max"), "max")
}

func TestV2FakeTreeStats(t *testing.T) {
	fakeMode(t)
	root, leaf := fakeV2(t, "cpu memory pids", "cpu memory pids", true)
	c, err := New("c1", Resources{MemoryBytes: 64 << 20, PidsLimit: 100}, WithRoot(root), WithMode("v2"))
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, leaf, map[string]string{
		"memory.current":      "1048576\n",
		"memory.peak":         "2097152\n",
		"memory.stat":         "anon 1000\nfile 2000\ninactive_file 500\n",
		"memory.swap.current": "4096\n",
		"memory.events":       "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n",
		"cpu.stat":            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 3\nthrottled_usec 250\n",
		"pids.current":        "7\n",
		"cgroup.procs":        "",
	})
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Memory.Usage != 1<<20 || st.Memory.MaxUsage != 2<<20 || st.Memory.Limit != 64<<20 || st.Memory.Unlimited {
		t.Errorf("memory %+v", st.Memory)
	}
	if st.Memory.Stat["inactive_file"] != 500 || st.Memory.Stat["anon"] != 1000 {
		t.Errorf("memory.stat %v", st.Memory.Stat)
	}
	want := CPUStats{TotalNs: 1500000, UserNs: 1000000, SystemNs: 500000, Periods: 10, ThrottledPeriods: 3, ThrottledNs: 250000}
	if st.CPU.TotalNs != want.TotalNs || st.CPU.UserNs != want.UserNs || st.CPU.SystemNs != want.SystemNs ||
		st.CPU.Periods != want.Periods || st.CPU.ThrottledPeriods != want.ThrottledPeriods || st.CPU.ThrottledNs != want.ThrottledNs {
		t.Errorf("cpu %+v, want %+v", st.CPU, want)
	}
	if st.Pids != (PidsStats{Current: 7, Limit: 100}) {
		t.Errorf("pids %+v", st.Pids)
	}
	if n, err := c.OOMKills(); err != nil || n != 2 {
		t.Errorf("OOMKills = %d, %v", n, err)
	}
	if pids, err := c.Pids(); err != nil || len(pids) != 0 {
		t.Errorf("Pids = %v, %v", pids, err)
	}

	// Unlimited: "max" everywhere; the limit reported is the machine's memory.
	writeFiles(t, leaf, map[string]string{"memory.max": "max\n", "pids.max": "max\n"})
	st, err = c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Memory.Unlimited || st.Memory.Limit != machineMemory() || st.Memory.Limit == 0 || st.Pids.Limit != 0 {
		t.Errorf("unlimited: memory %+v pids %+v", st.Memory, st.Pids)
	}

	// A kernel without the counter (< 4.13) is an error, not a silent 0.
	writeFiles(t, leaf, map[string]string{"memory.events": "low 0\nhigh 0\nmax 0\noom 0\n"})
	if _, err := c.OOMKills(); err == nil || !strings.Contains(err.Error(), "no oom_kill counter") {
		t.Errorf("OOMKills without the counter = %v", err)
	}
}

func TestV2FakeTreeMissing(t *testing.T) {
	fakeMode(t)
	// A host whose v2 hierarchy lacks memory and pids (they are bound to v1, as here).
	root, leaf := fakeV2(t, "cpu hugetlb", "cpu", false)
	opts := []Option{WithRoot(root), WithMode("v2")}
	_, err := New("c1", Resources{MemoryBytes: 64 << 20}, opts...)
	if err == nil || !errdefs.Is(err, errdefs.FailedPrecondition) ||
		!strings.Contains(err.Error(), "cgroup memory controller not available") ||
		!strings.Contains(err.Error(), `offers only "cpu hugetlb"`) {
		t.Fatalf("New with memory = %v", err)
	}
	t.Log(err)
	if _, err := New("c1", Resources{PidsLimit: 5}, opts...); err == nil || !strings.Contains(err.Error(), "cgroup pids controller not available") {
		t.Errorf("New with pids = %v", err)
	}
	// Limits on what is there still work; unlimited memory needs no controller.
	c, err := New("c1", Resources{CPUs: 1}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	fileIs(t, filepath.Join(leaf, "cpu.max"), "100000 100000")
	if _, err := os.Stat(filepath.Join(leaf, "memory.max")); err == nil {
		t.Error("memory.max written without the memory controller")
	}
	if _, err := c.OOMKills(); err == nil || !strings.Contains(err.Error(), "memory controller not available") {
		t.Errorf("OOMKills = %v", err)
	}

	// The root offers memory but the leaf does not list it: say where to enable it.
	root2, _ := fakeV2(t, "cpu memory pids", "cpu pids", false)
	_, err = New("c1", Resources{MemoryBytes: 64 << 20}, WithRoot(root2), WithMode("v2"))
	if err == nil || !strings.Contains(err.Error(), "enable it in cgroup.subtree_control") {
		t.Errorf("New = %v", err)
	}
}

func TestV2FakeTreeNoSwapAccounting(t *testing.T) {
	fakeMode(t)
	_, leaf := fakeV2(t, "cpu memory pids", "cpu memory pids", false)
	c, err := New("c1", Resources{MemoryBytes: 64 << 20, MemorySwapBytes: 128 << 20}, WithRoot(filepath.Dir(filepath.Dir(leaf))), WithMode("v2"))
	if err != nil {
		t.Fatal(err)
	}
	fileIs(t, filepath.Join(leaf, "memory.max"), "67108864")
	if _, err := os.Stat(filepath.Join(leaf, "memory.swap.max")); err == nil {
		t.Error("memory.swap.max written without swap accounting")
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "swap limit") {
		t.Errorf("warnings %q", w)
	}
}

// A v1 host without the memory hierarchy (Raspberry Pi OS without cgroup_enable=memory).
func TestV1FakeTreeMissingMemory(t *testing.T) {
	fakeMode(t)
	root := t.TempDir()
	for _, ctrl := range []string{"cpu", "cpuacct", "pids", "freezer", "devices"} {
		files := map[string]string{"cgroup.procs": ""}
		if ctrl == "cpu" {
			files["cpu.cfs_quota_us"] = "-1"
		}
		writeFiles(t, filepath.Join(root, ctrl), files)
	}
	opts := []Option{WithRoot(root), WithMode("v1"), WithCPUCount(2)}
	_, err := New("c1", Resources{MemoryBytes: 64 << 20}, opts...)
	if err == nil || !strings.Contains(err.Error(), "cgroup memory controller not available: "+filepath.Join(root, "memory")+" is not a mounted cgroup v1 hierarchy") ||
		!strings.Contains(err.Error(), "cgroup_enable=memory") {
		t.Fatalf("New = %v", err)
	}
	t.Log(err)
	if _, err := os.Stat(filepath.Join(root, "cpu", "flick", "c1")); err == nil {
		t.Error("a refused New left its directory")
	}
	c, err := New("c1", Resources{CPUs: 1.25, CPUShares: 100, PidsLimit: 7}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	fileIs(t, filepath.Join(c.Path("cpu"), "cpu.cfs_quota_us"), "125000")
	fileIs(t, filepath.Join(c.Path("cpu"), "cpu.cfs_period_us"), "100000")
	fileIs(t, filepath.Join(c.Path("cpu"), "cpu.shares"), "100")
	fileIs(t, filepath.Join(c.Path("pids"), "pids.max"), "7")
	if c.Path("memory") != "" {
		t.Errorf("Path(memory) = %q", c.Path("memory"))
	}
}

func TestV1FakeTreeNoSwapAccounting(t *testing.T) {
	fakeMode(t)
	root := t.TempDir()
	for _, ctrl := range v1Controllers {
		files := map[string]string{"cgroup.procs": ""}
		switch ctrl {
		case "cpu":
			files["cpu.cfs_quota_us"] = "-1"
		case "memory":
			files["memory.limit_in_bytes"] = "9223372036854771712"
		}
		writeFiles(t, filepath.Join(root, ctrl), files)
	}
	c, err := New("c1", Resources{MemoryBytes: 64 << 20, MemorySwapBytes: 128 << 20}, WithRoot(root), WithMode("hybrid"))
	if err != nil {
		t.Fatal(err)
	}
	fileIs(t, filepath.Join(c.Path("memory"), "memory.limit_in_bytes"), "67108864")
	if _, err := os.Stat(filepath.Join(c.Path("memory"), "memory.memsw.limit_in_bytes")); err == nil {
		t.Error("memsw written without swap accounting")
	}
	if len(c.Warnings()) != 1 {
		t.Errorf("warnings %q", c.Warnings())
	}
}

// stub is a backend with chosen controllers, for resolve.
type stub struct {
	backend
	ctrls map[string]bool
	swap  bool
}

func (s stub) have(c string) (bool, string) { return s.ctrls[c], "stub lacks " + c }
func (s stub) swapAccounting() bool         { return s.swap }

func TestValidate(t *testing.T) {
	bad := []struct {
		r    Resources
		want string
	}{
		{Resources{MemoryBytes: -2}, "invalid memory limit"},
		{Resources{MemoryBytes: 4 << 20}, "minimum memory limit allowed is 6MB"},
		{Resources{MemorySwapBytes: 64 << 20}, "always set the memory limit"},
		{Resources{MemoryBytes: 64 << 20, MemorySwapBytes: 32 << 20}, "should be larger than memory limit"},
		{Resources{MemoryBytes: 64 << 20, MemorySwapBytes: -2}, "invalid memory-swap"},
		{Resources{CPUs: -1}, "invalid CPUs"},
		{Resources{CPUs: math.NaN()}, "invalid CPUs"},
		{Resources{CPUs: math.Inf(1)}, "invalid CPUs"},
		{Resources{CPUs: 0.001}, "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"},
		{Resources{CPUs: 2.01}, "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"},
		{Resources{CPUShares: -5}, "invalid cpu-shares"},
	}
	for _, b := range bad {
		err := validate(b.r, 2)
		if err == nil || !strings.Contains(err.Error(), b.want) || !errdefs.Is(err, errdefs.InvalidArgument) {
			t.Errorf("validate(%+v) = %v, want %q", b.r, err, b.want)
		}
	}
	for _, r := range []Resources{{}, {MemoryBytes: -1}, {MemoryBytes: 6 << 20, MemorySwapBytes: 6 << 20}, {CPUs: 0.01}, {CPUs: 2}, {PidsLimit: -1}} {
		if err := validate(r, 2); err != nil {
			t.Errorf("validate(%+v) = %v", r, err)
		}
	}
	for cpus, q := range map[float64]int64{0.01: 1000, 0.5: 50000, 1.5: 150000, 2: 200000, 0.333: 33300, 0.123456: 12345} {
		if got := cpuQuota(cpus); got != q {
			t.Errorf("cpuQuota(%v) = %d, want %d", cpus, got, q)
		}
	}
}

func TestResolve(t *testing.T) {
	all := map[string]bool{"memory": true, "cpu": true, "pids": true}
	res, w, err := resolve(Resources{MemoryBytes: 100 << 20, CPUs: 0.5, CPUShares: 512, PidsLimit: 20}, stub{ctrls: all, swap: true}, false)
	if err != nil || len(w) != 0 {
		t.Fatal(err, w)
	}
	if res.Memory != 100<<20 || res.MemorySwap != 200<<20 || res.CpuQuota != 50000 || res.CpuPeriod != 100000 || res.CpuShares != 512 || res.CpuWeight != 0 || *res.PidsLimit != 20 {
		t.Errorf("v1: %+v", res)
	}
	res, _, _ = resolve(Resources{CPUShares: 1024}, stub{ctrls: all, swap: true}, true)
	if res.CpuWeight != 100 || res.CpuShares != 0 || res.Memory != -1 || res.MemorySwap != -1 || res.CpuQuota != -1 || *res.PidsLimit != -1 {
		t.Errorf("v2 unlimited: %+v", res)
	}
	res, _, _ = resolve(Resources{MemoryBytes: math.MaxInt64 - 1}, stub{ctrls: all, swap: true}, false)
	if res.MemorySwap != -1 {
		t.Errorf("huge memory: swap %d", res.MemorySwap)
	}
	res, w, _ = resolve(Resources{CPUShares: 1 << 20}, stub{ctrls: all}, false)
	if res.CpuShares != 262144 || len(w) != 1 {
		t.Errorf("shares clamp: %d %q", res.CpuShares, w)
	}
	// No controllers: fine while nothing is asked of them.
	if res, _, err := resolve(Resources{}, stub{}, false); err != nil || res.Memory != 0 || res.PidsLimit != nil || res.CpuQuota != 0 {
		t.Errorf("none: %+v %v", res, err)
	}
	if _, _, err := resolve(Resources{CPUShares: 10}, stub{}, false); err == nil || err.Error() != "cgroup cpu controller not available: stub lacks cpu" {
		t.Errorf("cpu missing: %v", err)
	}
}
