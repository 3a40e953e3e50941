package sandbox

import (
	"errors"
	"fmt"
	"os"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// ProtectPaths applies masked and readonly paths in the current mount
// namespace, after pivot_root: see ProtectPathsAt.
func ProtectPaths(masked, readonly []string) error {
	return ProtectPathsAt("/", masked, readonly)
}

// ProtectPathsAt applies masked and readonly paths, taken relative to root
// (with symlinks resolved inside root), as runc does: /dev/null is
// bind-mounted over a masked file, an empty read-only tmpfs over a masked
// directory, and a read-only bind of itself over a readonly path. Paths
// that do not exist are skipped. The mount namespace must be the
// container's own (private), or the host would see the mounts.
//
// The /dev/null bound over masked files is the one at /dev/null in the
// current root (after pivot_root: the container's); it must be the real
// character device 1:3.
func ProtectPathsAt(root string, masked, readonly []string) error {
	for _, p := range masked {
		if err := maskPath(root, p); err != nil {
			return err
		}
	}
	for _, p := range readonly {
		if err := readonlyPath(root, p); err != nil {
			return err
		}
	}
	return nil
}

// resolve joins p under root; ok is false if the result does not exist.
func resolve(root, p string) (string, os.FileInfo, bool, error) {
	t, err := securejoin.SecureJoin(root, p)
	if err != nil {
		return "", nil, false, fmt.Errorf("resolve %s: %w", p, err)
	}
	fi, err := os.Lstat(t)
	if errors.Is(err, os.ErrNotExist) {
		return t, nil, false, nil
	}
	if err != nil {
		return "", nil, false, fmt.Errorf("stat %s: %w", p, err)
	}
	return t, fi, true, nil
}

func maskPath(root, p string) error {
	t, fi, ok, err := resolve(root, p)
	if err != nil || !ok {
		return err
	}
	if fi.IsDir() {
		if err := unix.Mount("tmpfs", t, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0"); err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
		return nil
	}
	if err := checkDevNull(); err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	if err := unix.Mount("/dev/null", t, "", unix.MS_BIND, ""); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil // went away meanwhile (a process's /proc entry)
		}
		return fmt.Errorf("mask %s: %w", p, err)
	}
	return nil
}

func checkDevNull() error {
	var st unix.Stat_t
	if err := unix.Stat("/dev/null", &st); err != nil {
		return fmt.Errorf("/dev/null: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || uint64(st.Rdev) != unix.Mkdev(1, 3) {
		return errors.New("/dev/null is not the null device")
	}
	return nil
}

func readonlyPath(root, p string) error {
	t, _, ok, err := resolve(root, p)
	if err != nil || !ok {
		return err
	}
	if err := unix.Mount(t, t, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("read-only %s: %w", p, err)
	}
	// Keep nosuid/nodev/noexec: a remount that dropped flags the mount
	// already has would be refused where they are locked.
	var sfs unix.Statfs_t
	if err := unix.Statfs(t, &sfs); err != nil {
		return fmt.Errorf("read-only %s: statfs: %w", p, err)
	}
	keep := uintptr(sfs.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if err := unix.Mount(t, t, "", keep|unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("read-only %s: %w", p, err)
	}
	return nil
}
