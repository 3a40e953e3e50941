package runtime

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/flick-edge/flick/internal/bundle"
)

// copyingMark, in a volume's directory beside _data, says a copy-up into
// it began and did not finish: the next one clears _data and copies again.
const copyingMark = ".copying"

// copyUp fills an empty volume with what the image has at its target, as
// Docker fills a volume when a container is created on it: a named
// volume's first use, an anonymous one, an image's VOLUME. Init does it
// once per container (the bundle's CopiedUpFile), after it mounted the
// root, since only it sees the image's merged tree.
//
// Every write is confined to the volume (os.Root: another container
// sharing the volume cannot turn a directory being filled into a symlink
// to the host), every read to the container's root, on the root's own
// file system (a mount inside the image's tree is not copied); the
// image's owners, modes and times are kept, and what is neither a
// directory, a file nor a symlink is left out. Two containers starting on
// one new volume take turns (flock); a copy cut short (power, the monitor
// killed) is marked, and done again from scratch, and a finished one is
// synced before its mark goes: a volume is never left half filled.
func copyUp(root string, mt bundle.Mount) error {
	target := path.Clean("/" + mt.Target)
	for _, special := range []string{"/proc", "/sys", "/dev"} {
		if target == special || strings.HasPrefix(target, special+"/") {
			return nil // kernel trees, not the image's: nothing to copy
		}
	}
	volDir := filepath.Dir(mt.Source)
	lock, err := os.Open(volDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", volDir, err)
	}
	dst, err := os.OpenRoot(mt.Source)
	if err != nil {
		return err
	}
	defer dst.Close()
	mark := filepath.Join(volDir, copyingMark)
	_, err = os.Lstat(mark)
	interrupted := err == nil
	if interrupted {
		if err := emptyDir(dst); err != nil {
			return fmt.Errorf("clear an interrupted copy: %w", err)
		}
	} else if empty, err := isEmpty(mt.Source); err != nil || !empty {
		return err // the volume has content: the app's, left alone
	}
	src, err := openInRoot(root, target)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		// Nothing there in the image: the volume starts empty.
		if interrupted {
			if err := os.Remove(mark); err != nil {
				return err
			}
			return fsyncDir(volDir)
		}
		return nil
	} else if err != nil {
		return err
	}
	defer src.Close()
	if !interrupted {
		if err := os.WriteFile(mark, nil, 0o600); err != nil {
			return err
		}
		if err := fsyncDir(volDir); err != nil {
			return err
		}
	}
	dev, err := devOf(src, ".")
	if err != nil {
		return err
	}
	c := copier{src: src, dst: dst, dev: dev}
	if err := c.tree("."); err != nil {
		return err
	}
	if err := unix.Syncfs(int(lock.Fd())); err != nil {
		return fmt.Errorf("sync the volume: %w", err)
	}
	if err := os.Remove(mark); err != nil {
		return err
	}
	return fsyncDir(volDir)
}

// openInRoot opens the directory p of the container's root, its symlinks
// resolved inside the root; one swapped for a symlink meanwhile fails.
func openInRoot(root, p string) (*os.Root, error) {
	resolved, err := securejoin.SecureJoin(root, p)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(root, resolved)
	if err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if rel == "." {
		return os.OpenRoot(root)
	}
	return r.OpenRoot(rel)
}

type copier struct {
	src, dst *os.Root
	dev      uint64
}

// tree copies the directory rel and what is under it; the directory's own
// owner, mode and times come last, so that a read-only one does not stop
// its contents being written.
func (c copier) tree(rel string) error {
	fi, err := c.src.Lstat(rel)
	if err != nil {
		return err
	}
	if rel != "." {
		if err := c.dst.Mkdir(rel, 0o700); err != nil {
			return err
		}
	}
	d, err := c.src.Open(rel)
	if err != nil {
		return err
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := path.Join(rel, e.Name())
		efi, err := c.src.Lstat(p)
		if err != nil {
			return err
		}
		st, ok := efi.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		switch mode := efi.Mode(); {
		case mode.IsDir():
			if st.Dev != c.dev {
				continue // another file system mounted in the image's tree
			}
			if err := c.tree(p); err != nil {
				return err
			}
		case mode.IsRegular():
			if err := c.file(p, efi); err != nil {
				return err
			}
		case mode&fs.ModeSymlink != 0:
			link, err := c.src.Readlink(p)
			if err != nil {
				return err
			}
			if err := c.dst.Symlink(link, p); err != nil {
				return err
			}
			if err := c.dst.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
		}
	}
	return c.meta(rel, fi)
}

func (c copier) file(rel string, fi fs.FileInfo) error {
	in, err := c.src.OpenFile(rel, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := c.dst.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return c.meta(rel, fi)
}

// meta gives rel (a directory or file) the image's owner, then its mode
// (set-id bits included: the chown clears them) and times.
func (c copier) meta(rel string, fi fs.FileInfo) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if err := c.dst.Lchown(rel, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if err := c.dst.Chmod(rel, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	return c.dst.Chtimes(rel, fi.ModTime(), fi.ModTime())
}

func devOf(r *os.Root, rel string) (uint64, error) {
	fi, err := r.Lstat(rel)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, errors.New("no device number")
	}
	return st.Dev, nil
}

func isEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

// emptyDir removes what is in the root r, not r itself.
func emptyDir(r *os.Root) error {
	d, err := r.Open(".")
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := r.RemoveAll(n); err != nil {
			return err
		}
	}
	return nil
}

func fsyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
