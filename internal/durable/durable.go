// Package durable holds Flick's one recipe for making data survive a power cut.
//
// The rule, used by every store in Flick: write into a temporary name in the
// target directory, fsync the file, verify it, rename it into place, then fsync
// the parent directory so the rename itself is on disk. Directories (layer
// snapshots) are committed the same way after their contents are synced.
//
// The Syncer interface exists because two strategies are correct but differ in
// cost: SyncFS flushes a whole filesystem with one syncfs(2) (cheap for a layer
// of ten thousand files on ext4), while FsyncTree fsyncs every file and directory
// one by one (needed where syncfs is not forwarded, as on FUSE test filesystems).
package durable

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Syncer makes everything below a directory durable.
type Syncer interface {
	SyncTree(dir string) error
}

// Mode names a Syncer.
type Mode string

// The strategies.
const (
	ModeSyncFS Mode = "syncfs" // one syncfs(2) for the filesystem holding dir
	ModeFsync  Mode = "fsync"  // fsync every file and directory below dir
)

// NewSyncer returns the Syncer for mode; an empty mode means ModeSyncFS.
func NewSyncer(mode Mode) (Syncer, error) {
	switch mode {
	case "", ModeSyncFS:
		return syncFS{}, nil
	case ModeFsync:
		return fsyncTree{}, nil
	}
	return nil, fmt.Errorf("unknown sync mode %q (want %q or %q)", mode, ModeSyncFS, ModeFsync)
}

// FsyncTree fsyncs every file and directory below dir, files first: for a
// small tree (a container's bundle) cheaper than a syncfs of the whole disk.
func FsyncTree(dir string) error { return fsyncTree{}.SyncTree(dir) }

type syncFS struct{}

func (syncFS) SyncTree(dir string) error { return syncfs(dir) }

type fsyncTree struct{}

func (fsyncTree) SyncTree(dir string) error {
	// Files first, then directories deepest-first, so that a directory entry is
	// only made durable once what it names is.
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			dirs = append(dirs, p)
		case d.Type().IsRegular():
			return FsyncPath(p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := FsyncPath(dirs[i]); err != nil {
			return err
		}
	}
	return nil
}

// FsyncPath opens p read-only and fsyncs it (a file or a directory).
func FsyncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return nil
}

// FsyncDir fsyncs the directory dir, making creates, renames and removals of its
// entries durable.
func FsyncDir(dir string) error { return FsyncPath(dir) }

// WriteFile atomically replaces name with data: temp file in the same directory,
// write, fsync, rename, fsync the directory. After it returns nil, a power cut
// leaves the new content; before, the old (or nothing).
func WriteFile(name string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	ok = true
	return FsyncDir(dir)
}

// CommitDir renames the (already synced) directory src to dst and fsyncs both
// parents, so the new name is durable and the old one gone. dst must not exist.
func CommitDir(src, dst string) error {
	if err := os.Rename(src, dst); err != nil {
		return err
	}
	if err := FsyncDir(filepath.Dir(dst)); err != nil {
		return err
	}
	if filepath.Dir(src) != filepath.Dir(dst) {
		return FsyncDir(filepath.Dir(src))
	}
	return nil
}

// RemoveAll removes p durably: it first renames p to a hidden trash name in the
// same directory (one atomic, fsynced step, so p is gone for good after a cut),
// then deletes the trash. Leftover trash is for start-up cleanup to delete.
func RemoveAll(p string) error { return removeAll(p, true) }

// Discard is RemoveAll without the fsync: p still disappears at once and
// whole for every reader, but after a power cut it may be back, whole (or
// as trash for start-up cleanup). For what need not outlive a run.
func Discard(p string) error { return removeAll(p, false) }

// DiscardInBackground is Discard that returns once p is renamed away; the
// deletion goes on in a goroutine and done (if not nil) gets its result.
// Trash left by a process that ended first is start-up cleanup's.
func DiscardInBackground(p string, done func(error)) error {
	trash, err := toTrash(p, false)
	if err != nil || trash == "" {
		return err
	}
	go func() {
		err := os.RemoveAll(trash)
		if done != nil {
			done(err)
		}
	}()
	return nil
}

func removeAll(p string, sync bool) error {
	trash, err := toTrash(p, sync)
	if err != nil || trash == "" {
		return err
	}
	return os.RemoveAll(trash)
}

// toTrash renames p to its trash name ("" if p does not exist).
func toTrash(p string, sync bool) (string, error) {
	trash := filepath.Join(filepath.Dir(p), TrashPrefix+filepath.Base(p))
	if err := os.Rename(p, trash); err != nil {
		if os.IsNotExist(err) {
			return "", nil
		}
		return "", err
	}
	if sync {
		if err := FsyncDir(filepath.Dir(p)); err != nil {
			return "", err
		}
	}
	return trash, nil
}

// TrashPrefix marks directory entries that RemoveAll or Discard was deleting.
const TrashPrefix = ".trash-"

// MkdirAll is os.MkdirAll made durable: every directory it creates has its
// entry fsynced in its parent, so a power cut cannot lose a new directory
// (and everything later made durable inside it) on the way. The power-cut
// harness (internal/cutfs) found plain MkdirAll followed by WriteFile losing
// the whole new tree.
func MkdirAll(dir string, perm os.FileMode) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &os.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, perm); err != nil {
		if os.IsExist(err) {
			return nil
		}
		return err
	}
	return FsyncDir(parent)
}
