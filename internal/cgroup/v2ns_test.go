package cgroup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/flick-edge/flick/internal/errdefs"
)

// The v2 code paths on a real cgroup2 filesystem: the test binary re-runs itself in
// a private mount namespace, mounts a fresh cgroup2 over /sys/fs/cgroup there, and
// runs TestV2MountNamespaceChild against it with the default root and detected
// mode. The cgroup2 hierarchy is the kernel's one (the host sees the same cgroups
// under /sys/fs/cgroup/unified here); on this hybrid machine it offers only the
// controllers v1 does not hold (hugetlb), so memory, cpu and pids limits cannot be
// exercised in it, only refused; on a pure v2 host the same child test writes them.
const v2nsEnv = "FLICK_CGROUP_V2NS_PARENT"

func TestV2MountNamespace(t *testing.T) {
	requireRoot(t)
	fss, _ := os.ReadFile("/proc/filesystems")
	if !strings.Contains(string(fss), "cgroup2") {
		t.Skip("kernel has no cgroup2")
	}
	parent := fmt.Sprintf("flicktest-%d-v2ns", os.Getpid())
	// Clean up from the host's side too, in case the child dies half-way.
	var hostOpts []Option
	switch Mode() {
	case "v2":
		hostOpts = []Option{WithParent(parent), WithMode("v2")}
	case "hybrid":
		hostOpts = []Option{WithParent(parent), WithMode("v2"), WithRoot(filepath.Join(DefaultRoot, "unified"))}
	}
	if hostOpts != nil {
		t.Cleanup(func() { cleanupParent(t, hostOpts) })
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestV2MountNamespaceChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), v2nsEnv+"="+parent)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS} // Go also makes / rprivate
	out, err := cmd.CombinedOutput()
	t.Logf("child in a private mount namespace:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestV2MountNamespaceChild") {
		t.Fatal("child test did not run")
	}
}

func TestV2MountNamespaceChild(t *testing.T) {
	parent := os.Getenv(v2nsEnv)
	if parent == "" {
		t.Skip("run by TestV2MountNamespace")
	}
	if err := unix.Mount("cgroup2", DefaultRoot, "cgroup2", 0, ""); err != nil {
		t.Fatalf("mount cgroup2: %v", err)
	}
	if m, s := Mode(), modeByStatfs(DefaultRoot); m != "v2" || s != "v2" {
		t.Fatalf("Mode() = %s, statfs %s; want v2", m, s)
	}
	offered, err := readFields(DefaultRoot, "cgroup.controllers")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fresh cgroup2 mount offers controllers %q", offered)
	// Prove enabling in subtree_control for real with a controller this kernel
	// leaves to cgroup2.
	extra := ""
	for _, c := range []string{"hugetlb", "io", "misc", "rdma"} {
		if slices.Contains(offered, c) && !slices.Contains(v2Controllers, c) {
			extra = c
			break
		}
	}
	if extra != "" {
		saved := v2Controllers
		v2Controllers = append(slices.Clone(v2Controllers), extra)
		t.Cleanup(func() { v2Controllers = saved })
		// The root is the host's: give it back as found (this runs after the
		// parent's removal, cleanups being last-in first-out).
		if on, _ := readFields(DefaultRoot, "cgroup.subtree_control"); !slices.Contains(on, extra) {
			t.Cleanup(func() {
				if err := cgroups.WriteFile(DefaultRoot, "cgroup.subtree_control", "-"+extra); err != nil {
					t.Errorf("restore root subtree_control: %v", err)
				}
			})
		}
	}

	opts := []Option{WithParent(parent)}
	t.Cleanup(func() { cleanupParent(t, opts) })
	c := newTestCgroup(t, "ctr", Resources{}, opts)
	leaf := filepath.Join(DefaultRoot, parent, "ctr")
	if c.Mode() != "v2" || c.Path("memory") != leaf || c.Path("") != leaf {
		t.Fatalf("mode %s path %q, want v2 %q", c.Mode(), c.Path("memory"), leaf)
	}
	if extra != "" {
		for _, f := range []string{filepath.Join(DefaultRoot, "cgroup.subtree_control"), filepath.Join(DefaultRoot, parent, "cgroup.subtree_control"), filepath.Join(leaf, "cgroup.controllers")} {
			if got := strings.Fields(readTrim(t, f)); !slices.Contains(got, extra) {
				t.Errorf("%s = %q, want %s enabled", f, got, extra)
			}
		}
		t.Logf("%s enabled down to the leaf: %s", extra, readTrim(t, filepath.Join(leaf, "cgroup.controllers")))
	}

	// Limits: written where the kernel offers the controller, refused clearly where not.
	for _, tc := range []struct {
		ctrl, file, want string
		r                Resources
	}{
		{"memory", "memory.max", "67108864", Resources{MemoryBytes: 64 << 20}},
		{"pids", "pids.max", "10", Resources{PidsLimit: 10}},
		{"cpu", "cpu.max", "50000 100000", Resources{CPUs: 0.5}},
	} {
		x, err := New("limits-"+tc.ctrl, tc.r, opts...)
		if slices.Contains(offered, tc.ctrl) {
			if err != nil {
				t.Errorf("%s: %v", tc.ctrl, err)
				continue
			}
			if got := readTrim(t, filepath.Join(x.Path(""), tc.file)); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.file, got, tc.want)
			}
			_ = x.Destroy()
			continue
		}
		if err == nil || !errdefs.Is(err, errdefs.FailedPrecondition) || !strings.Contains(err.Error(), "cgroup "+tc.ctrl+" controller not available") {
			t.Errorf("New with a %s limit = %v", tc.ctrl, err)
		} else {
			t.Logf("refused: %v", err)
		}
		if _, err := Open("limits-"+tc.ctrl, opts...); !errdefs.Is(err, errdefs.NotFound) {
			t.Errorf("refused New left a cgroup: %v", err)
		}
	}

	// A real process moved in.
	h := startHelper(t, "spin")
	if err := c.Add(h.pid()); err != nil {
		t.Fatal(err)
	}
	if cg := readTrim(t, fmt.Sprintf("/proc/%d/cgroup", h.pid())); !strings.Contains(cg, "0::/"+parent+"/ctr") {
		t.Errorf("/proc/%d/cgroup:\n%s", h.pid(), cg)
	}
	if pids, err := c.Pids(); err != nil || !slices.Equal(pids, []int{h.pid()}) {
		t.Fatalf("Pids = %v, %v", pids, err)
	}
	h.proceed()
	time.Sleep(200 * time.Millisecond)
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: cpu %+v pids %+v", st.CPU, st.Pids)
	if st.CPU.TotalNs == 0 || st.CPU.UserNs == 0 || st.Pids.Current == 0 {
		t.Errorf("stats from cpu.stat and pids: %+v %+v", st.CPU, st.Pids)
	}

	// Freeze and thaw with cgroup.freeze.
	if err := c.Freeze(); err != nil {
		t.Fatal(err)
	}
	if got := readTrim(t, filepath.Join(leaf, "cgroup.freeze")); got != "1" {
		t.Errorf("cgroup.freeze = %s", got)
	}
	if ev := readTrim(t, filepath.Join(leaf, "cgroup.events")); !strings.Contains(ev, "frozen 1") {
		t.Errorf("cgroup.events:\n%s", ev)
	}
	if s := procState(h.pid()); s == "R" || s == "" {
		t.Errorf("frozen spinner state %q", s)
	}
	a, _ := c.Stats()
	time.Sleep(300 * time.Millisecond)
	b, _ := c.Stats()
	if b.CPU.TotalNs != a.CPU.TotalNs {
		t.Errorf("frozen cgroup used %v of CPU", time.Duration(b.CPU.TotalNs-a.CPU.TotalNs))
	}
	if err := c.Thaw(); err != nil {
		t.Fatal(err)
	}
	if ev := readTrim(t, filepath.Join(leaf, "cgroup.events")); !strings.Contains(ev, "frozen 0") {
		t.Errorf("cgroup.events after thaw:\n%s", ev)
	}
	time.Sleep(200 * time.Millisecond)
	if d, _ := c.Stats(); d.CPU.TotalNs <= b.CPU.TotalNs {
		t.Error("thawed spinner uses no CPU")
	}

	// Re-adoption.
	o, err := Open("ctr", opts...)
	if err != nil {
		t.Fatal(err)
	}
	if o.Path("") != leaf {
		t.Errorf("Open Path = %q", o.Path(""))
	}
	if pids, _ := o.Pids(); !slices.Equal(pids, []int{h.pid()}) {
		t.Errorf("Open Pids = %v", pids)
	}

	// KillAll through cgroup.kill.
	if !cgroups.PathExists(filepath.Join(leaf, "cgroup.kill")) {
		t.Error("no cgroup.kill on this kernel")
	}
	if err := o.KillAll(); err != nil {
		t.Fatal(err)
	}
	if ws := h.wait(); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("spinner ended with %v", ws)
	}
	if pids, _ := c.Pids(); len(pids) != 0 {
		t.Errorf("after KillAll: %v", pids)
	}
	if ev := readTrim(t, filepath.Join(leaf, "cgroup.events")); !strings.Contains(ev, "populated 0") {
		t.Errorf("cgroup.events after KillAll:\n%s", ev)
	}

	// KillAll without cgroup.kill (kernels < 5.14): freeze, kill, thaw.
	noCgroupKill = true
	t.Cleanup(func() { noCgroupKill = false })
	f := startHelper(t, "fork", "GOMAXPROCS=1", "GOGC=off", "FLICK_FORK_MAX=5")
	if err := c.Add(f.pid()); err != nil {
		t.Fatal(err)
	}
	f.proceed()
	if l := f.line(); !strings.HasPrefix(l, "forked 5 ") {
		t.Fatalf("fork helper: %q", l)
	}
	pids, _ := c.Pids()
	if len(pids) != 6 {
		t.Fatalf("Pids = %v, want 6", pids)
	}
	if err := c.KillAll(); err != nil {
		t.Fatal(err)
	}
	f.wait()
	for _, p := range pids {
		if alive(p) {
			t.Errorf("pid %d survived", p)
		}
	}
	reapOrphans()
	noCgroupKill = false

	// Destroy, idempotent.
	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	if cgroups.PathExists(leaf) {
		t.Error("leaf still there")
	}
	if err := c.Destroy(); err != nil {
		t.Error(err)
	}
	if _, err := Open("ctr", opts...); !errdefs.Is(err, errdefs.NotFound) {
		t.Errorf("Open after Destroy = %v", err)
	}

	// Reclaim.
	keep := newTestCgroup(t, "keep", Resources{}, opts)
	left, err := New("leftover", Resources{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	s := startHelper(t, "sleep")
	if err := left.Add(s.pid()); err != nil {
		t.Fatal(err)
	}
	removed, err := Reclaim([]string{"leftover"}, opts...)
	if err != nil || !slices.Equal(removed, []string{"leftover"}) {
		t.Errorf("Reclaim = %v, %v", removed, err)
	}
	if ws := s.wait(); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("leftover process ended with %v", ws)
	}
	if _, err := Open("keep", opts...); err != nil {
		t.Error(err)
	}
	_ = keep
}
