package container

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/flick-edge/flick/internal/durable"
	"golang.org/x/sys/unix"
)

// The init layer is a read-only overlay layer that every container gets
// between its image and its writable layer, as Docker's "-init" layer: it
// holds what a container's init mounts over (/proc, /dev, /sys and the three
// /etc files the daemon generates). Without it, init creates them in each
// container's writable layer, /etc copied up; with it, a start creates no
// file there and a removal deletes none (fewer inodes written to flash,
// and a faster start: see docs/RATIONALE.md). It is the same for every
// image, so there is one, made once, never changed.
const initLayerName = "init-layer"

// initLayerDirs and initLayerFiles are its contents; runtime.InitMain still
// creates whatever a layer lacks, so a container made without it runs the
// same.
var (
	initLayerDirs  = []string{"proc", "dev", "sys", "etc"}
	initLayerFiles = []string{"etc/hostname", "etc/hosts", "etc/resolv.conf"}
)

// ensureInitLayer returns the init layer under root (data-root/containers),
// making it if it is missing or incomplete. It is built under a staging name
// that start-up cleanup removes, synced, then renamed into place, so a power
// cut leaves it whole or absent.
func ensureInitLayer(root string) (string, error) {
	dir := filepath.Join(root, initLayerName)
	if initLayerComplete(dir) {
		return dir, nil
	}
	tmp := filepath.Join(root, stagePrefix+initLayerName)
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return "", err
	}
	for _, d := range initLayerDirs {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			return "", err
		}
	}
	for _, f := range initLayerFiles {
		if err := os.WriteFile(filepath.Join(tmp, f), nil, 0o644); err != nil {
			return "", err
		}
	}
	// Mkdir and WriteFile honour the umask; the layer is what every
	// container sees, so its modes are set as they are meant.
	err := filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		return "", err
	}
	if err := durable.FsyncTree(tmp); err != nil {
		return "", err
	}
	if _, err := os.Lstat(dir); err == nil {
		// Incomplete, or changed by hand: its whole successor takes its
		// place in one step (containers made with it find it again by
		// its path), and it goes under the staging name.
		if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE); err != nil {
			return "", fmt.Errorf("replace the init layer %s: %w", dir, err)
		}
		if err := durable.FsyncDir(root); err != nil {
			return "", err
		}
		if err := os.RemoveAll(tmp); err != nil {
			return "", err
		}
		return dir, nil
	}
	if err := durable.CommitDir(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// initLayerComplete says whether dir holds every entry of the init layer,
// each of its kind.
func initLayerComplete(dir string) bool {
	for _, d := range append([]string{""}, initLayerDirs...) {
		if fi, err := os.Lstat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			return false
		}
	}
	for _, f := range initLayerFiles {
		if fi, err := os.Lstat(filepath.Join(dir, f)); err != nil || !fi.Mode().IsRegular() {
			return false
		}
	}
	return true
}
