package cgroup

import (
	"path/filepath"
	"strings"
	"sync"

	"github.com/opencontainers/cgroups"
)

// Unified reports whether /sys/fs/cgroup is cgroup2 alone (no v1
// hierarchies), as opencontainers/cgroups decides it (once per process).
func Unified() bool { return cgroups.IsCgroup2UnifiedMode() }

// Hierarchy is one v1 hierarchy as this process sees it: where it is
// mounted, and this process's cgroup in it.
type Hierarchy struct {
	Mountpoint string // e.g. /sys/fs/cgroup/memory or /sys/fs/cgroup/cpu,cpuacct
	Path       string // this process's cgroup, from the hierarchy's root ("/" for the root)
	Dir        string // that cgroup's directory under Mountpoint
}

// OwnHierarchies lists the v1 hierarchies this process is in, from the
// mount table and /proc/self/cgroup (opencontainers/cgroups' parsers); a
// hierarchy whose mount does not show this process's cgroup (a bind of a
// subtree it is outside) is left out. Nil on a v2-only host.
func OwnHierarchies() ([]Hierarchy, error) {
	if Unified() {
		return nil, nil
	}
	mounts, err := hierarchyMounts()
	if err != nil {
		return nil, err
	}
	own, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	var hs []Hierarchy
	for _, m := range mounts {
		if len(m.Subsystems) == 0 {
			continue
		}
		s := m.Subsystems[0]
		path, ok := own[s]
		if !ok {
			path, ok = own[cgroups.CgroupNamePrefix+s] // named: GetCgroupMounts trims "name="
		}
		if !ok {
			continue
		}
		rel, err := filepath.Rel(m.Root, path)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		hs = append(hs, Hierarchy{Mountpoint: m.Mountpoint, Path: path, Dir: filepath.Join(m.Mountpoint, rel)})
	}
	return hs, nil
}

// The v1 hierarchies' mounts, from /proc/self/mountinfo: mounted at boot
// and left alone, so read once per process. Reading a mount table costs the
// kernel a line per mount, and a container's init, which reads it once its
// root is assembled, sees some fifty: a warm init reads it while it waits
// (PrepareHierarchies) and the start then reads /proc/self/cgroup alone.
// A hierarchy mounted after a warm init read them (a boot service that
// mounts one after the daemon started) is missing from that one container's
// /sys/fs/cgroup; the daemon's own cgroups are made with a fresh read.
var hierarchyMounts = sync.OnceValues(func() ([]cgroups.Mount, error) {
	return cgroups.GetCgroupMounts(false)
})

// PrepareHierarchies reads the hierarchies' mounts ahead of OwnHierarchies.
func PrepareHierarchies() {
	if !Unified() {
		hierarchyMounts()
	}
}
