package runtime

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// mountCgroupFS gives the container its own cgroup at /sys/fs/cgroup, as
// Docker does, so that runtimes that size themselves by their limits (the
// JVM's heap, Go's GOMAXPROCS, Node, .NET) see the container's memory, CPU
// and pids limits and not the host's. It runs in init once init is in the
// container's cgroup, before pivot_root, on the thread that execs.
//
//   - cgroup v2: a private cgroup namespace (Docker's default there), so
//     /proc/self/cgroup reads "0::/", and cgroup2 mounted on
//     /sys/fs/cgroup with the container's cgroup as its root.
//   - cgroup v1 or hybrid: the host's cgroup namespace (Docker's default
//     there), a tmpfs on /sys/fs/cgroup and each hierarchy's container
//     directory bound on /sys/fs/cgroup/<hierarchy>, with the host's
//     aliases (cpu -> cpu,cpuacct), as runc does.
//
// Read-only unless privileged.
func mountCgroupFS(root string, privileged bool) error {
	own, err := ownCgroups()
	if err != nil {
		return err
	}
	var ro uintptr = unix.MS_RDONLY
	if privileged {
		ro = 0
	}
	const nse = unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV
	dst, err := target(root, "/sys/fs/cgroup", true)
	if err != nil {
		return err
	}
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("cgroup namespace: %w", err)
		}
		if err := unix.Mount("cgroup2", dst, "cgroup2", nse|ro, ""); err != nil {
			return fmt.Errorf("mount cgroup2 on /sys/fs/cgroup: %w", err)
		}
		return nil
	}
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	if len(mounts) == 0 {
		return nil // no cgroup filesystem on this host: nothing to show
	}
	if err := unix.Mount("tmpfs", dst, "tmpfs", nse, "mode=755,size=64k"); err != nil {
		return fmt.Errorf("mount tmpfs on /sys/fs/cgroup: %w", err)
	}
	for _, m := range mounts {
		if filepath.Dir(m.Mountpoint) != "/sys/fs/cgroup" {
			continue
		}
		path, ok := own[hierarchyKey(m.VFSOptions)]
		if !ok || path == "/" {
			continue // a hierarchy Flick does not place containers in: not the host's root either
		}
		rel, err := filepath.Rel(m.Root, path)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // its cgroup is outside what this mount shows
		}
		name := filepath.Base(m.Mountpoint)
		in := filepath.Join(dst, name)
		if err := os.Mkdir(in, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(filepath.Join(m.Mountpoint, rel), in, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind cgroup %s: %w", name, err)
		}
		if err := unix.Mount("", in, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_REC|nse|ro, ""); err != nil {
			return fmt.Errorf("remount cgroup %s: %w", name, err)
		}
		if strings.Contains(name, ",") {
			for _, alias := range strings.Split(name, ",") {
				os.Symlink(name, filepath.Join(dst, alias))
			}
		}
	}
	return unix.Mount("", dst, "", unix.MS_REMOUNT|nse|ro, "mode=755,size=64k")
}

// ownCgroups reads /proc/self/cgroup: each v1 hierarchy's key (its sorted
// controllers, or name=NAME) to this process's path in it.
func ownCgroups() (map[string]string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	own := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 && parts[1] != "" {
			own[hierarchyKey(parts[1])] = parts[2]
		}
	}
	return own, sc.Err()
}

// hierarchyKey names a v1 hierarchy by its controllers and name= option,
// sorted, from /proc/self/cgroup's middle field or a mount's super options
// (which also hold rw and the like).
func hierarchyKey(list string) string {
	var keep []string
	for _, o := range strings.Split(list, ",") {
		switch o {
		case "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio",
			"blkio", "perf_event", "hugetlb", "pids", "rdma", "misc":
			keep = append(keep, o)
		default:
			if strings.HasPrefix(o, "name=") {
				keep = append(keep, o)
			}
		}
	}
	slices.Sort(keep)
	return strings.Join(keep, ",")
}
