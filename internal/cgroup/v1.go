package cgroup

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"

	"github.com/flick-edge/flick/internal/cgroupdir"
	"github.com/flick-edge/flick/internal/errdefs"
)

// v1Controllers are the hierarchies a container joins on v1. devices is joined
// (no rules written here) so that the sandbox can use Path("devices"); cpuset is
// not (it would need cpus and mems copied down before anything can join).
var v1Controllers = []string{"memory", "cpu", "cpuacct", "pids", "freezer", "devices"}

// v1Primary is the order in which hierarchies are asked for the process list.
var v1Primary = []string{"freezer", "pids", "memory", "cpu", "cpuacct", "devices"}

type v1 struct {
	paths   map[string]string // mounted controllers only
	missing map[string]string // controller -> why it is not usable
	mgr     *fs.Manager
}

func newV1(cfg *config, id string) (*v1, error) {
	b := &v1{paths: map[string]string{}, missing: map[string]string{}}
	for _, ctrl := range v1Controllers {
		hier := filepath.Join(cfg.root, ctrl)
		if _, err := os.Stat(filepath.Join(hier, "cgroup.procs")); err != nil {
			b.missing[ctrl] = v1MissingReason(hier, ctrl)
			continue
		}
		b.paths[ctrl] = filepath.Join(hier, cfg.parent, id)
	}
	if len(b.paths) == 0 {
		return nil, errdefs.NewFailedPrecondition(fmt.Errorf("no cgroup v1 controller is mounted under %s (looked for %s)", cfg.root, strings.Join(v1Controllers, ", ")))
	}
	// The manager gets its own copy: its Destroy forgets the paths it removed.
	mgr, err := fs.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{}}, maps.Clone(b.paths))
	if err != nil {
		return nil, err
	}
	b.mgr = mgr
	return b, nil
}

func v1MissingReason(hier, ctrl string) string {
	why := hier + " is not a mounted cgroup v1 hierarchy"
	switch ctrl {
	case "memory":
		why += " (some ARM kernels, Raspberry Pi OS among them, need cgroup_enable=memory cgroup_memory=1 on the kernel command line)"
	case "pids":
		why += " (kernel built without CONFIG_CGROUP_PIDS?)"
	case "cpu":
		why += " (kernel built without CONFIG_CGROUP_SCHED?)"
	}
	return why
}

func (b *v1) create() error { return b.mgr.Apply(-1) }

func (b *v1) exists() bool {
	for _, p := range b.paths {
		if cgroups.PathExists(p) {
			return true
		}
	}
	return false
}

func (b *v1) have(ctrl string) (bool, string) {
	if _, ok := b.paths[ctrl]; ok {
		if ctrl == "cpu" && !cgroups.PathExists(filepath.Join(filepath.Dir(filepath.Dir(b.paths[ctrl])), "cpu.cfs_quota_us")) {
			return false, "the kernel has no CFS bandwidth control (cpu.cfs_quota_us missing: CONFIG_CFS_BANDWIDTH)"
		}
		return true, ""
	}
	if why, ok := b.missing[ctrl]; ok {
		return false, why
	}
	return false, "not a controller Flick uses on cgroup v1"
}

func (b *v1) swapAccounting() bool {
	p, ok := b.paths["memory"]
	// The hierarchy root has the file exactly when the kernel accounts swap.
	return ok && cgroups.PathExists(filepath.Join(filepath.Dir(filepath.Dir(p)), "memory.memsw.limit_in_bytes"))
}

func (b *v1) set(r *cgroups.Resources) error { return b.mgr.Set(r) }

// add writes pid into every hierarchy.
func (b *v1) add(pid int) error { return cgroupdir.Set(b.dirs()).Join(pid) }

// dirs are the cgroup's directories, one per hierarchy: cpu and cpuacct are
// often one hierarchy (mounted together, each name a symlink to it), listed
// once.
func (b *v1) dirs() []string {
	seen := map[string]bool{}
	var out []string
	for _, ctrl := range v1Controllers {
		p, ok := b.paths[ctrl]
		if !ok {
			continue
		}
		real := p
		if r, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
			real = filepath.Join(r, filepath.Base(p))
		}
		if !seen[real] {
			seen[real] = true
			out = append(out, real)
		}
	}
	return out
}

func (b *v1) stats() (*cgroups.Stats, error) {
	return b.mgr.Stats(&cgroups.StatsOptions{Controllers: cgroups.Memory | cgroups.CPU | cgroups.Pids})
}

func (b *v1) oomKills() (uint64, error) {
	return readKey(b.paths["memory"], "memory.oom_control", "oom_kill", "the kernel is older than 4.13")
}

// pids lists the processes of the first hierarchy (in v1Primary order) where the
// cgroup exists; none if it exists nowhere.
func (b *v1) pids() ([]int, error) {
	for _, ctrl := range v1Primary {
		if p, ok := b.paths[ctrl]; ok && cgroups.PathExists(p) {
			return cgroups.GetAllPids(p)
		}
	}
	return nil, nil
}

func (b *v1) canFreeze() bool { _, ok := b.paths["freezer"]; return ok }

func (b *v1) freeze(state cgroups.FreezerState) error { return b.mgr.Freeze(state) }

func (b *v1) killFile() (bool, error) { return false, nil }

func (b *v1) destroy() error {
	var errs []error
	for _, p := range b.paths {
		if err := cgroups.RemovePath(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (b *v1) path(ctrl string) string { return b.paths[ctrl] }

// readKey reads "key value" from a flat-keyed cgroup file, refusing a missing key
// (which fscommon.GetValueByKey reports as 0).
func readKey(dir, file, key, missing string) (uint64, error) {
	data, err := cgroups.ReadFile(dir, file)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(data, "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			var n uint64
			if _, err := fmt.Sscan(v, &n); err != nil {
				return 0, fmt.Errorf("parse %s in %s: %w", key, filepath.Join(dir, file), err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s has no %s counter (%s)", filepath.Join(dir, file), key, missing)
}
