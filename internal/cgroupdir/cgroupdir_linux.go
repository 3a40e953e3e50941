// Package cgroupdir is what a container's monitor does to the cgroup the
// daemon made for it: put a process in, count OOM kills, kill what is left,
// remove it. These are plain reads and writes of cgroupfs files, on v1 (one
// directory per hierarchy) and v2 (one directory) alike.
//
// Making cgroups and setting their limits is internal/cgroup's work (through
// github.com/opencontainers/cgroups), done by the daemon. The monitor lives
// as long as its container and must stay small: that library's types pull
// in godbus, go-systemd and logrus, whose code would be resident in every
// monitor. This package links only the standard library and x/sys/unix.
package cgroupdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Set is one cgroup's directories: on v1 one per hierarchy (duplicates,
// such as cpu and cpuacct mounted together, listed once), on v2 one.
type Set []string

// Join moves pid into the cgroup, one hierarchy after another. (Writing
// them from parallel goroutines saved a little where the kernel makes each
// write wait, but made the daemon start a thread for each blocking write,
// threads it keeps for good; the warm path joins ahead of need anyway.)
func (s Set) Join(pid int) error {
	if len(s) == 0 {
		return errors.New("join cgroup: no cgroup directories")
	}
	for _, dir := range s {
		if err := writeFile(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// OOMKills is how many processes the kernel's OOM killer took in the
// cgroup: memory.events on v2 (its hierarchical oom_kill), memory.oom_control
// on v1. Kernels before 4.13 do not count them.
func (s Set) OOMKills() (uint64, error) {
	for _, dir := range s {
		for _, file := range []string{"memory.events", "memory.oom_control"} {
			b, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				continue
			}
			for line := range strings.SplitSeq(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
					return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				}
			}
			return 0, fmt.Errorf("%s has no oom_kill counter (the kernel is older than 4.13)", filepath.Join(dir, file))
		}
	}
	return 0, errors.New("no memory controller in this cgroup")
}

// Pids lists the cgroup's processes (those of the first directory that
// exists; every hierarchy holds the same ones).
func (s Set) Pids() ([]int, error) {
	for _, dir := range s {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var pids []int
		for f := range strings.FieldsSeq(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return pids, nil
	}
	return nil, nil
}

// KillAll sends SIGKILL to every process in the cgroup and waits until it
// is empty, at most timeout. v2 writes cgroup.kill; v1 kills what
// cgroup.procs lists, in rounds, with the cgroup frozen during each round
// where there is a freezer, so that nothing forks away meanwhile. The
// calling process must not be in the cgroup.
func (s Set) KillAll(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, dir := range s {
		if err := writeFile(dir, "cgroup.kill", "1"); err == nil {
			return s.waitEmpty(deadline)
		}
	}
	freezer := s.withFile("freezer.state")
	for {
		pids, err := s.Pids()
		if err != nil || len(pids) == 0 {
			return err
		}
		if freezer != "" && writeFile(freezer, "freezer.state", "FROZEN") != nil {
			freezer = ""
		}
		for _, pid := range pids {
			if pid != os.Getpid() {
				unix.Kill(pid, unix.SIGKILL) // gone already: ESRCH
			}
		}
		if freezer != "" {
			// Killed tasks die once thawed.
			writeFile(freezer, "freezer.state", "THAWED")
		}
		if s.waitEmpty(time.Now().Add(100*time.Millisecond)) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return s.waitEmpty(deadline)
		}
	}
}

func (s Set) waitEmpty(deadline time.Time) error {
	for {
		pids, err := s.Pids()
		if err == nil && len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return err
			}
			return fmt.Errorf("cgroup %s: processes %v survive SIGKILL (stuck in uninterruptible sleep?)", s[0], pids)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Remove removes the cgroup's directories; ones already gone are fine. A
// cgroup whose last process is still exiting is busy for a moment: Remove
// retries for up to a second.
func (s Set) Remove() error {
	var errs []error
	for _, dir := range s {
		var err error
		for try := 0; try < 100; try++ {
			if err = unix.Rmdir(dir); err != unix.EBUSY {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil && err != unix.ENOENT {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

func (s Set) withFile(name string) string {
	for _, dir := range s {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return dir
		}
	}
	return ""
}

// writeFile writes a cgroupfs control file in one write (the kernel takes
// one value per write), retrying when interrupted.
func writeFile(dir, name, value string) error {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		_, err = f.Write([]byte(value))
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
