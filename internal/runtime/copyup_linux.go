package runtime

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/flick-edge/flick/internal/bundle"
)

// copyUp fills an empty volume with what the image has at its target, as
// Docker fills a new volume: a named volume's first use, an anonymous one,
// an image's VOLUME. The image's tree is read in the container's root (its
// symlinks resolved inside it, none followed while copying) and written
// into the volume with owners, modes and times; device nodes and sockets
// are left out. A volume with anything in it is the app's and is left
// alone, so this runs once in practice.
func copyUp(root string, mt bundle.Mount) error {
	f, err := os.Open(mt.Source)
	if err != nil {
		return err
	}
	_, err = f.Readdirnames(1)
	f.Close()
	if !errors.Is(err, io.EOF) {
		return err // not empty (nil), or unreadable
	}
	src, err := securejoin.SecureJoin(root, mt.Target)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(src); err != nil || !fi.IsDir() {
		return nil // nothing in the image there: the volume starts empty
	}
	type dirMeta struct {
		path string
		fi   fs.FileInfo
	}
	var dirs []dirMeta
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(mt.Source, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch mode := fi.Mode(); {
		case mode.IsDir():
			if rel != "." {
				if err := unix.Mkdir(dst, 0o700); err != nil {
					return &fs.PathError{Op: "mkdir", Path: dst, Err: err}
				}
			}
			dirs = append(dirs, dirMeta{dst, fi})
			return nil
		case mode.IsRegular():
			if err := copyFile(p, dst, fi); err != nil {
				return err
			}
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, dst); err != nil {
				return err
			}
		case mode&fs.ModeNamedPipe != 0:
			if err := unix.Mkfifo(dst, uint32(mode.Perm())); err != nil {
				return &fs.PathError{Op: "mkfifo", Path: dst, Err: err}
			}
		default:
			return nil // devices, sockets: not copied
		}
		return setMeta(dst, fi)
	})
	if err != nil {
		return err
	}
	// Directories last, deepest first: a read-only one must not stop its
	// own contents being written.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := setMeta(dirs[i].path, dirs[i].fi); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, fi fs.FileInfo) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// setMeta gives dst src's owner, mode (set-id bits included, after the
// chown that would clear them) and modification time, without following
// a symlink.
func setMeta(dst string, fi fs.FileInfo) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		mode := uint32(fi.Mode().Perm())
		if fi.Mode()&fs.ModeSetuid != 0 {
			mode |= unix.S_ISUID
		}
		if fi.Mode()&fs.ModeSetgid != 0 {
			mode |= unix.S_ISGID
		}
		if fi.Mode()&fs.ModeSticky != 0 {
			mode |= unix.S_ISVTX
		}
		if err := unix.Chmod(dst, mode); err != nil {
			return &fs.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	t := unix.NsecToTimespec(fi.ModTime().UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, dst, []unix.Timespec{t, t}, unix.AT_SYMLINK_NOFOLLOW)
}
