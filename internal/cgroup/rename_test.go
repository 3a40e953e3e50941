package cgroup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestV1Rename: a warm cgroup, with a process and device rules, becomes a
// container's under its id in every hierarchy; the process and rules go
// with it, and devices can be added afterwards.
func TestV1Rename(t *testing.T) {
	requireV1(t)
	opts := testParent(t)
	warm, err := New(WarmPrefix+"12345", Resources{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := warm.RestrictDevices(DefaultDeviceRules); err != nil {
		t.Fatal(err)
	}
	h := startHelper(t, "sleep")
	if err := warm.Add(h.pid()); err != nil {
		t.Fatal(err)
	}
	old := map[string]string{}
	for _, ctrl := range v1Controllers {
		old[ctrl] = warm.Path(ctrl)
	}
	c, err := warm.Rename("renamed")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.KillAll()
		c.Destroy()
	})
	for _, ctrl := range v1Controllers {
		if _, err := os.Stat(old[ctrl]); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: the warm directory %s is still there (%v)", ctrl, old[ctrl], err)
		}
		if filepath.Base(c.Path(ctrl)) != "renamed" {
			t.Errorf("%s: path %s", ctrl, c.Path(ctrl))
		}
	}
	pids, err := c.Pids()
	if err != nil || !slices.Contains(pids, h.pid()) {
		t.Fatalf("pids after rename: %v, %v; want %d", pids, err, h.pid())
	}
	// The renamed cgroup knows its limits are the defaults it was made
	// with: an Update to the defaults writes nothing (pids.max keeps what
	// is written here behind its back).
	if err := os.WriteFile(filepath.Join(c.Path("pids"), "pids.max"), []byte("77"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Update(Resources{}); err != nil {
		t.Fatal(err)
	}
	if got := ctrlFile(t, c, "pids", "pids.max"); got != "77" {
		t.Fatalf("pids.max after an Update to the defaults = %s: it was written", got)
	}
	if err := c.Update(Resources{PidsLimit: 50}); err != nil {
		t.Fatal(err)
	}
	if got := ctrlFile(t, c, "pids", "pids.max"); got != "50" {
		t.Fatalf("pids.max after rename = %s", got)
	}
	if err := c.AllowDevices([]string{"c 188:0 rwm"}); err != nil {
		t.Fatal(err)
	}
	list := ctrlFile(t, c, "devices", "devices.list")
	for _, r := range append(DefaultDeviceRules, "c 188:0 rwm") {
		if !strings.Contains(list+"\n", r+"\n") {
			t.Errorf("devices.list lacks %q after rename:\n%s", r, list)
		}
	}
	// A name taken already: nothing moves.
	other := newTestCgroup(t, "other", Resources{}, opts)
	if _, err := c.Rename("other"); err == nil {
		t.Fatal("rename onto an existing cgroup succeeded")
	}
	if _, err := os.Stat(c.Path("memory")); err != nil {
		t.Fatalf("a failed rename moved the cgroup: %v", err)
	}
	_ = other
}

// TestReclaimWarm: the cgroup of a warm monitor that is gone is removed;
// a live one's and a container's are left.
func TestReclaimWarm(t *testing.T) {
	requireV1(t)
	opts := testParent(t)
	h := startHelper(t, "sleep") // not a monitor: its warm cgroup is stale
	dead, err := New(WarmPrefix+strconv.Itoa(h.pid()), Resources{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	// A process that looks like a live monitor.
	mon := exec.Command("bash", "-c", "exec -a __shim sleep 60")
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mon.Process.Kill(); mon.Wait() })
	waitArgv0(t, mon.Process.Pid, "__shim")
	live := newTestCgroup(t, WarmPrefix+strconv.Itoa(mon.Process.Pid), Resources{}, opts)
	ctr := newTestCgroup(t, "container", Resources{}, opts)
	gone, err := ReclaimWarm(opts...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gone, []string{dead.ID()}) {
		t.Fatalf("ReclaimWarm removed %v, want just %s", gone, dead.ID())
	}
	for _, c := range []*Cgroup{live, ctr} {
		if _, err := os.Stat(c.Path("memory")); err != nil {
			t.Fatalf("%s's cgroup went: %v", c.ID(), err)
		}
	}
}

// waitArgv0 waits until pid has exec'd into a program whose argv[0] is
// want. (Bash's own command line, before its exec, contains want too; read
// during the exec, the command line can be empty, which made a check that
// accepted bash's flaky.)
func waitArgv0(t *testing.T, pid int, want string) {
	t.Helper()
	for range 500 {
		if b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline")); strings.HasPrefix(string(b), want+"\x00") {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("process %d never ran with argv[0] %q", pid, want)
}
