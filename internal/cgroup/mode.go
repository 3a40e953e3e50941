package cgroup

import (
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Mode reports the host's layout at /sys/fs/cgroup: "v1", "v2" or "hybrid" (v1
// controllers plus a cgroup2 mount at /sys/fs/cgroup/unified; Flick uses it as v1),
// or "none" when no cgroup filesystem is mounted there.
func Mode() string { return modeAt(DefaultRoot) }

func modeAt(root string) string {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return modeByStatfs(filepath.Clean(root))
	}
	return modeAtMounts(root, mounts)
}

// modeAtMounts decides from the mount table: cgroup2 mounted at root is v2 (even
// over v1 mounts it hides); cgroup (v1) mounts directly under root are v1, hybrid
// if cgroup2 is also mounted at root/unified.
func modeAtMounts(root string, mounts []*mountinfo.Info) string {
	root = filepath.Clean(root)
	var v1, v2Root, v2Unified bool
	unified := filepath.Join(root, "unified")
	for _, m := range mounts {
		mp := filepath.Clean(m.Mountpoint)
		switch {
		case m.FSType == "cgroup2" && mp == root:
			v2Root = true
		case m.FSType == "cgroup2" && mp == unified:
			v2Unified = true
		case m.FSType == "cgroup" && filepath.Dir(mp) == root:
			v1 = true
		}
	}
	switch {
	case v2Root:
		return "v2"
	case v2Unified:
		return "hybrid"
	case v1:
		return "v1"
	}
	return "none"
}

// modeByStatfs is the fallback without /proc (what runc does).
func modeByStatfs(root string) string {
	var st unix.Statfs_t
	if unix.Statfs(root, &st) != nil {
		return "none"
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "v2"
	}
	if unix.Statfs(filepath.Join(root, "unified"), &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "hybrid"
	}
	if st.Type == unix.TMPFS_MAGIC {
		return "v1"
	}
	return "none"
}
