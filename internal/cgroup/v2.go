package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs2"
)

// v2Controllers are enabled in cgroup.subtree_control of the root and of the
// parent, where the parent level offers them. A variable for the mount-namespace
// test, which adds hugetlb (the only controller this v1 host leaves to cgroup2).
var v2Controllers = []string{"cpu", "memory", "pids"}

// noCgroupKill makes KillAll take the freeze-and-kill path kernels before 5.14
// need; for tests.
var noCgroupKill bool

type v2 struct {
	root, parentDir, dir string
	mgr                  *fs2.Manager
	enableErr            error // why enabling a controller on the way down failed
}

func newV2(cfg *config, id string) *v2 {
	parentDir := filepath.Join(cfg.root, cfg.parent)
	dir := filepath.Join(parentDir, id)
	// A non-empty dirPath never fails.
	mgr, _ := fs2.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{}}, dir)
	return &v2{root: filepath.Clean(cfg.root), parentDir: parentDir, dir: dir, mgr: mgr}
}

// create makes parent and leaf, enabling the controllers on the way down. fs2's own
// CreateCgroupPath is not used: it insists on /sys/fs/cgroup and enables every
// controller the root offers.
func (b *v2) create() error {
	var errs []error
	for _, level := range []string{b.root, b.parentDir} {
		if level != b.root {
			if err := os.Mkdir(level, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
		}
		if err := enableControllers(level); err != nil {
			errs = append(errs, err)
		}
	}
	b.enableErr = errors.Join(errs...)
	if err := os.Mkdir(b.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

// enableControllers writes "+cpu +memory +pids" (those the level offers and has not
// enabled yet) to level's cgroup.subtree_control, one by one if the kernel refuses
// the set.
func enableControllers(level string) error {
	avail, err := readFields(level, "cgroup.controllers")
	if err != nil {
		return err
	}
	on, err := readFields(level, "cgroup.subtree_control")
	if err != nil {
		return err
	}
	var want []string
	for _, c := range v2Controllers {
		if slices.Contains(avail, c) && !slices.Contains(on, c) {
			want = append(want, "+"+c)
		}
	}
	if len(want) == 0 {
		return nil
	}
	if cgroups.WriteFile(level, "cgroup.subtree_control", strings.Join(want, " ")) == nil {
		return nil
	}
	var errs []error
	for _, w := range want {
		if err := cgroups.WriteFile(level, "cgroup.subtree_control", w); err != nil {
			errs = append(errs, fmt.Errorf("enable %s in %s: %w", w[1:], filepath.Join(level, "cgroup.subtree_control"), err))
		}
	}
	return errors.Join(errs...)
}

// readFields reads a space-separated controller list; "+" prefixes are dropped.
func readFields(dir, file string) ([]string, error) {
	data, err := cgroups.ReadFile(dir, file)
	if err != nil {
		return nil, err
	}
	f := strings.Fields(data)
	for i := range f {
		f[i] = strings.TrimPrefix(f[i], "+")
	}
	return f, nil
}

func (b *v2) exists() bool { return cgroups.PathExists(b.dir) }

// have: a controller is usable when it is listed in the leaf's cgroup.controllers.
// freezer is a core feature (cgroup.freeze, kernel >= 5.2).
func (b *v2) have(ctrl string) (bool, string) {
	if ctrl == "freezer" {
		if b.canFreeze() {
			return true, ""
		}
		return false, filepath.Join(b.dir, "cgroup.freeze") + " is missing (the kernel is older than 5.2)"
	}
	leaf, err := readFields(b.dir, "cgroup.controllers")
	if err != nil {
		return false, fmt.Sprintf("cannot read the cgroup's controllers: %v", err)
	}
	if slices.Contains(leaf, ctrl) {
		return true, ""
	}
	why := fmt.Sprintf("%q is not in %s (it lists %q)", ctrl, filepath.Join(b.dir, "cgroup.controllers"), strings.Join(leaf, " "))
	if host, err := readFields(b.root, "cgroup.controllers"); err == nil && !slices.Contains(host, ctrl) {
		why += fmt.Sprintf("; the host's %s offers only %q, so the kernel lacks it or it is bound to a cgroup v1 hierarchy (a hybrid host: use the v1 layout)",
			filepath.Join(b.root, "cgroup.controllers"), strings.Join(host, " "))
	} else if b.enableErr != nil {
		why += "; enabling it failed: " + b.enableErr.Error()
	} else {
		why += fmt.Sprintf("; enable it in cgroup.subtree_control of %s and %s", b.root, b.parentDir)
	}
	return false, why
}

// swapAccounting: memory.swap.max exists exactly when the kernel accounts swap.
func (b *v2) swapAccounting() bool {
	return cgroups.PathExists(filepath.Join(b.dir, "memory.swap.max"))
}

func (b *v2) set(r *cgroups.Resources) error { return b.mgr.Set(r) }

func (b *v2) add(pid int) error { return b.mgr.AddPid("", pid) }

func (b *v2) stats() (*cgroups.Stats, error) {
	return b.mgr.Stats(&cgroups.StatsOptions{Controllers: cgroups.Memory | cgroups.CPU | cgroups.Pids})
}

func (b *v2) oomKills() (uint64, error) {
	return readKey(b.dir, "memory.events", "oom_kill", "the kernel is older than 4.13")
}

func (b *v2) pids() ([]int, error) { return cgroups.GetAllPids(b.dir) }

func (b *v2) canFreeze() bool { return cgroups.PathExists(filepath.Join(b.dir, "cgroup.freeze")) }

func (b *v2) freeze(state cgroups.FreezerState) error { return b.mgr.Freeze(state) }

func (b *v2) killFile() (bool, error) {
	if noCgroupKill || !cgroups.PathExists(filepath.Join(b.dir, "cgroup.kill")) {
		return false, nil
	}
	return true, cgroups.WriteFile(b.dir, "cgroup.kill", "1")
}

func (b *v2) destroy() error { return cgroups.RemovePath(b.dir) }

func (b *v2) path(string) string { return b.dir }

func (b *v2) dirs() []string { return []string{b.dir} }
