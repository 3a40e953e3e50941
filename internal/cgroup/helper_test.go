package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the processes put into cgroups: with
// FLICK_CGROUP_HELPER set, TestMain runs a helper instead of the tests. A helper
// prints "ready", waits for a line on stdin, then does its job, so that it is inside
// its cgroup before it allocates, forks or spins.
const helperEnv = "FLICK_CGROUP_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	// Orphans of killed helpers (their own children) are re-parented to us rather
	// than to this machine's pid 1, which does not reap; the tests reap them.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	os.Exit(m.Run())
}

func runHelper(mode string) int {
	fmt.Println("ready")
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		return 3
	}
	switch mode {
	case "sleep":
		// Block until stdin closes or the process is killed.
		_, _ = io.Copy(io.Discard, in)
		return 0
	case "alloc":
		// Allocate and touch up to 1 GiB in 1 MiB steps; the cgroup should OOM-kill us
		// long before.
		var keep [][]byte
		for i := 0; i < 1024; i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			keep = append(keep, b)
		}
		fmt.Printf("survived %d MiB\n", len(keep))
		return 0
	case "fork":
		// Start /bin/sleep children until the kernel says EAGAIN (bounded at 500).
		// GOMAXPROCS=1 and GOGC=off in the environment keep the runtime from
		// needing a new thread meanwhile.
		max := 500
		if v := os.Getenv("FLICK_FORK_MAX"); v != "" {
			max, _ = strconv.Atoi(v)
		}
		got, last := 0, error(nil)
		for got < max {
			_, err := syscall.ForkExec("/bin/sleep", []string{"sleep", "60"}, &syscall.ProcAttr{})
			if err != nil {
				last = err
				break
			}
			got++
		}
		fmt.Printf("forked %d threads %d eagain %v err %v\n", got, threads(), errors.Is(last, syscall.EAGAIN), last)
		_, _ = io.Copy(io.Discard, in)
		return 0
	case "spin":
		// Burn CPU on every CPU until killed (bounded at 60 s).
		stop := time.Now().Add(60 * time.Second)
		for range runtime.NumCPU() - 1 {
			go spin(stop)
		}
		spin(stop)
		return 0
	}
	return 2
}

var sink atomic.Uint64

func spin(stop time.Time) {
	var x uint64
	for i := 0; ; i++ {
		x += uint64(i) * 7
		if i%1000000 == 0 {
			sink.Add(x)
			if time.Now().After(stop) {
				return
			}
		}
	}
}

func threads() int {
	data, _ := os.ReadFile("/proc/self/status")
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// helper is a running helper process.
type helper struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
	err   error // from Wait, valid after done
}

func startHelper(t *testing.T, mode string, env ...string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+mode), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
		h.err = cmd.Wait()
		close(h.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Errorf("helper %d did not exit after SIGKILL", cmd.Process.Pid)
		}
	})
	if l := h.line(); l != "ready" {
		t.Fatalf("helper said %q, want ready", l)
	}
	return h
}

func (h *helper) pid() int { return h.cmd.Process.Pid }

func (h *helper) line() string {
	h.t.Helper()
	select {
	case l, ok := <-h.lines:
		if !ok {
			return ""
		}
		return l
	case <-time.After(60 * time.Second):
		h.t.Fatal("no line from helper in 60 s")
	}
	return ""
}

func (h *helper) proceed() {
	h.t.Helper()
	if _, err := io.WriteString(h.stdin, "go\n"); err != nil {
		h.t.Fatal(err)
	}
}

// wait waits (bounded) for the helper to exit and returns its wait status.
func (h *helper) wait() syscall.WaitStatus {
	h.t.Helper()
	for range h.lines {
	}
	select {
	case <-h.done:
	case <-time.After(60 * time.Second):
		h.t.Fatal("helper did not exit in 60 s")
	}
	if h.cmd.ProcessState == nil {
		h.t.Fatalf("helper: %v", h.err)
	}
	return h.cmd.ProcessState.Sys().(syscall.WaitStatus)
}

var parentSeq atomic.Int64

// testParent gives a test its own parent cgroup name, never "flick": a test
// must not touch a daemon's containers. Cleanup removes it and all below it.
func testParent(t *testing.T, extra ...Option) []Option {
	t.Helper()
	name := fmt.Sprintf("flicktest-%d-%d", os.Getpid(), parentSeq.Add(1))
	opts := append([]Option{WithParent(name)}, extra...)
	t.Cleanup(func() { cleanupParent(t, opts) })
	return opts
}

func cleanupParent(t *testing.T, opts []Option) {
	cfg, err := newConfig(opts)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	ids, err := listIDs(cfg)
	if err == nil {
		_, err = removeAll(cfg, ids)
	}
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
	var dirs []string
	if cfg.mode == "v2" {
		dirs = []string{filepath.Join(cfg.root, cfg.parent)}
	} else {
		for _, ctrl := range v1Controllers {
			dirs = append(dirs, filepath.Join(cfg.root, ctrl, cfg.parent))
		}
	}
	for _, d := range dirs {
		if cgroups.TestMode {
			continue
		}
		if err := cgroups.RemovePath(d); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	reapOrphans()
}

// reapOrphans collects the zombie "sleep" children of killed fork helpers, which
// were re-parented to this (subreaper) process. Helpers are left to exec.Cmd.
func reapOrphans() {
	ents, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[0] != "Z" || f[1] != me {
			continue
		}
		if isOrphanSleep(pid) {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		}
	}
}

// isOrphanSleep: only zombies named "sleep" are orphans of the fork helper; the
// helpers (the test binary) are left to exec.Cmd.
func isOrphanSleep(pid int) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(comm)) == "sleep"
}

// procState is the state letter in /proc/<pid>/stat ("" if gone).
func procState(pid int) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+3 > len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// alive: the pid exists and is not a zombie.
func alive(pid int) bool {
	st := procState(pid)
	return st != "" && st != "Z" && st != "X"
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}
