package cgroupdir

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// makeSet creates a test cgroup in each named hierarchy under root that this
// host mounts (a v1 controller name, or "unified" for the v2 hierarchy of a
// hybrid host, or "" for a pure v2 root), removed at the end.
func makeSet(t *testing.T, hierarchies ...string) Set {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make cgroups")
	}
	name := fmt.Sprintf("flick-cgroupdir-test-%d", os.Getpid())
	var s Set
	for _, h := range hierarchies {
		hier := filepath.Join("/sys/fs/cgroup", h)
		if _, err := os.Stat(filepath.Join(hier, "cgroup.procs")); err != nil {
			t.Skipf("%s is not a mounted cgroup hierarchy here", hier)
		}
		dir := filepath.Join(hier, name+"-"+strings.ReplaceAll(t.Name(), "/", "-"))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s = append(s, dir)
	}
	t.Cleanup(func() {
		s.KillAll(5 * time.Second)
		s.Remove()
	})
	return s
}

func v1Host(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/sys/fs/cgroup/pids/cgroup.procs"); err != nil {
		t.Skip("no cgroup v1 pids hierarchy here")
	}
}

// startTree starts a shell that, once released, forks two sleeps: joined
// before the release, the cgroup holds three processes.
func startTree(t *testing.T) (*exec.Cmd, func()) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "read x; sleep 60 & sleep 60")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	return cmd, func() { in.Write([]byte("go\n")) }
}

// waitPids waits (a bounded while) until the cgroup holds n processes.
func waitPids(t *testing.T, s Set, n int) []int {
	t.Helper()
	var pids []int
	for range 500 {
		var err error
		if pids, err = s.Pids(); err != nil {
			t.Fatal(err)
		}
		if len(pids) == n {
			return pids
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("cgroup holds %v, want %d processes", pids, n)
	return nil
}

func TestJoinKillAllRemoveV1(t *testing.T) {
	v1Host(t)
	s := makeSet(t, "pids", "freezer", "memory")
	cmd, release := startTree(t)
	if err := s.Join(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	for _, dir := range s {
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if strings.TrimSpace(string(b)) != fmt.Sprint(cmd.Process.Pid) {
			t.Fatalf("%s/cgroup.procs = %q, want the shell %d", dir, b, cmd.Process.Pid)
		}
	}
	release()
	pids := waitPids(t, s, 3)
	if !slices.Contains(pids, cmd.Process.Pid) {
		t.Fatalf("Pids = %v, want the shell %d among them", pids, cmd.Process.Pid)
	}
	if err := s.KillAll(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("shell in the cgroup: %v, want killed", err)
	}
	if pids, _ := s.Pids(); len(pids) != 0 {
		t.Fatalf("after KillAll: %v", pids)
	}
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	for _, dir := range s {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("%s still there: %v", dir, err)
		}
	}
	if err := s.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
}

func TestKillAllV2UsesCgroupKill(t *testing.T) {
	hier := "unified"
	if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.procs"); err != nil {
		hier = "" // a pure v2 host
	}
	s := makeSet(t, hier)
	if _, err := os.Stat(filepath.Join(s[0], "cgroup.kill")); err != nil {
		t.Skip("kernel without cgroup.kill (before 5.14)")
	}
	cmd, release := startTree(t)
	if err := s.Join(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	release()
	waitPids(t, s, 3)
	if err := s.KillAll(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("shell: %v, want killed", err)
	}
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
}

func TestOOMKillsCountsV1(t *testing.T) {
	v1Host(t)
	s := makeSet(t, "memory")
	if err := os.WriteFile(filepath.Join(s[0], "memory.limit_in_bytes"), []byte("8388608"), 0); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(s[0], "memory.memsw.limit_in_bytes"), []byte("8388608"), 0) // no swap either, where accounted
	if n, err := s.OOMKills(); err != nil || n != 0 {
		t.Fatalf("before: %d, %v", n, err)
	}
	// The shell waits for its cgroup, then becomes an allocator without end.
	cmd := exec.Command("sh", "-c", "read x; exec tail /dev/zero")
	in, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	if err := s.Join(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		t.Fatal(err)
	}
	in.Write([]byte("go\n"))
	in.Close()
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("allocator: %v, want OOM-killed", err)
	}
	if n, err := s.OOMKills(); err != nil || n != 1 {
		t.Fatalf("after: %d, %v; want 1", n, err)
	}
}

func TestErrors(t *testing.T) {
	if err := Set(nil).Join(1); err == nil {
		t.Fatal("Join with no directories succeeded")
	}
	dir := t.TempDir()
	if _, err := (Set{dir}).OOMKills(); err == nil {
		t.Fatal("OOMKills without a memory controller succeeded")
	}
	os.WriteFile(filepath.Join(dir, "memory.events"), []byte("low 0\nhigh 0\n"), 0o644)
	if _, err := (Set{dir}).OOMKills(); err == nil || !strings.Contains(err.Error(), "4.13") {
		t.Fatalf("OOMKills without oom_kill: %v", err)
	}
	if err := (Set{filepath.Join(dir, "gone")}).Remove(); err != nil {
		t.Fatalf("Remove of a missing cgroup: %v", err)
	}
	if pids, err := (Set{filepath.Join(dir, "gone")}).Pids(); err != nil || pids != nil {
		t.Fatalf("Pids of a missing cgroup: %v, %v", pids, err)
	}
}
