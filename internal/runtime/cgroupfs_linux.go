package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/flick-edge/flick/internal/cgroup"
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
	var ro uintptr = unix.MS_RDONLY
	if privileged {
		ro = 0
	}
	const nse = unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV
	dst, err := target(root, "/sys/fs/cgroup", true)
	if err != nil {
		return err
	}
	if cgroup.Unified() {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("cgroup namespace: %w", err)
		}
		if err := unix.Mount("cgroup2", dst, "cgroup2", nse|ro, ""); err != nil {
			return fmt.Errorf("mount cgroup2 on /sys/fs/cgroup: %w", err)
		}
		return nil
	}
	hs, err := cgroup.OwnHierarchies()
	if err != nil {
		return fmt.Errorf("read cgroup hierarchies: %w", err)
	}
	if len(hs) == 0 {
		return nil // no cgroup filesystem on this host: nothing to show
	}
	if err := unix.Mount("tmpfs", dst, "tmpfs", nse, "mode=755,size=64k"); err != nil {
		return fmt.Errorf("mount tmpfs on /sys/fs/cgroup: %w", err)
	}
	for _, h := range hs {
		if filepath.Dir(h.Mountpoint) != "/sys/fs/cgroup" || h.Path == "/" {
			continue // a hierarchy Flick does not place containers in: not the host's root either
		}
		name := filepath.Base(h.Mountpoint)
		in := filepath.Join(dst, name)
		if err := os.Mkdir(in, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(h.Dir, in, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
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
