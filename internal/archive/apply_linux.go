//go:build linux

package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/flick-edge/flick/internal/errdefs"
)

// testNoOpenat2 forces the pathrs-lite fallback resolution (tests only).
var testNoOpenat2 bool

// Apply reads an uncompressed tar stream from r and materialises it under
// root, which must be an existing, empty directory that nothing else writes
// to while Apply runs. See the package documentation for the safety model and
// the overlayfs whiteout conversion.
//
// On success Apply has consumed r to EOF, including any bytes after the tar
// end-of-archive marker, so a hasher wrapped around r sees the whole blob. On
// error it stops reading at once and the stream is left partially read.
//
// Errors caused by hostile or malformed input (escaping names, symlink loops,
// bad hardlinks, truncated or malformed tar, too many entries, unknown entry
// types) are classified errdefs.InvalidArgument and name the offending entry.
// Running out of disk space or quota is classified errdefs.ResourceExhausted.
// Errors returned by r itself (other than io.ErrUnexpectedEOF, reported as a
// truncated layer) are passed through with their own class. Cancellation of
// ctx is checked between entries and returns an error wrapping ctx.Err().
//
// Directory modes and times are applied after all entries are written,
// deepest first, so that later entries can be created in read-only
// directories and do not disturb directory mtimes. A partially applied root
// must be discarded by the caller.
func Apply(ctx context.Context, root string, r io.Reader, opts Options) (Stats, error) {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	rootFile, err := os.OpenFile(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Stats{}, fmt.Errorf("open layer root: %w", err)
	}
	defer rootFile.Close()

	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)

	a := &applier{
		ctx:       ctx,
		opts:      opts,
		root:      rootFile,
		rootFd:    int(rootFile.Fd()),
		chown:     !opts.NoChown && os.Geteuid() == 0,
		noOpenat2: testNoOpenat2,
		dirs:      make(map[string]dirMeta),
		buf:       *bufp,
	}
	src := &trackingReader{r: r}
	tr := tar.NewReader(src)
	for {
		if err := ctx.Err(); err != nil {
			return a.stats, fmt.Errorf("applying layer: %w", err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, tar.ErrInsecurePath) && hdr != nil {
			// GODEBUG=tarinsecurepath=0: Apply does its own, stricter
			// checks on the returned header.
			err = nil
		}
		if err != nil {
			return a.stats, src.classify(err, "")
		}
		a.stats.Entries++
		if a.stats.Entries > opts.MaxEntries {
			return a.stats, errdefs.NewInvalidArgument(fmt.Errorf("layer has more than %d entries (at entry %q)", opts.MaxEntries, truncName(hdr.Name)))
		}
		if err := a.entry(hdr, tr, src); err != nil {
			return a.stats, err
		}
	}
	if err := a.finishDirs(); err != nil {
		return a.stats, err
	}
	if _, err := io.CopyBuffer(io.Discard, src, a.buf); err != nil {
		return a.stats, fmt.Errorf("reading the rest of the layer stream: %w", err)
	}
	return a.stats, nil
}

type applier struct {
	ctx       context.Context
	opts      Options
	root      *os.File
	rootFd    int
	chown     bool
	noOpenat2 bool
	stats     Stats
	dirs      map[string]dirMeta // deferred directory metadata, by clean path
	buf       []byte
}

type dirMeta struct {
	name  string // raw entry name, for errors
	mode  uint32
	times []unix.Timespec // atime, mtime
}

// trackingReader remembers the last error the caller's reader returned, so
// that stream errors can be told apart from tar format errors.
type trackingReader struct {
	r   io.Reader
	err error
}

func (t *trackingReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// classify turns an error from the tar reader (header or body) into
// Apply's error. name is the entry being read, if any.
func (t *trackingReader) classify(err error, name string) error {
	where := ""
	if name != "" {
		where = fmt.Sprintf(" (in entry %q)", truncName(name))
	}
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errdefs.NewInvalidArgument(fmt.Errorf("layer tar is truncated%s: %w", where, err))
	case t.err != nil && errors.Is(err, t.err):
		return fmt.Errorf("reading layer stream%s: %w", where, err)
	}
	return errdefs.NewInvalidArgument(fmt.Errorf("layer tar is malformed%s: %w", where, err))
}

// truncName shortens hostile, huge names for error messages.
func truncName(name string) string {
	const max = 256
	if len(name) <= max {
		return name
	}
	return name[:max] + "...(" + strconv.Itoa(len(name)) + " bytes)"
}

func invalidEntry(name, format string, args ...any) error {
	return errdefs.NewInvalidArgument(fmt.Errorf("layer entry %q: "+format, append([]any{truncName(name)}, args...)...))
}

// fsErr classifies an error from a filesystem operation on entry name.
func fsErr(name, op string, err error) error {
	n := truncName(name)
	switch {
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return errdefs.NewResourceExhausted(fmt.Errorf("layer entry %q: %s: disk is full: %w", n, op, err))
	case errors.Is(err, unix.ELOOP):
		return errdefs.NewInvalidArgument(fmt.Errorf("layer entry %q: %s: symlink loop or symlink where a directory is needed: %w", n, op, err))
	case errors.Is(err, unix.ENOTDIR):
		return errdefs.NewInvalidArgument(fmt.Errorf("layer entry %q: %s: a path component is not a directory (or is a dangling symlink): %w", n, op, err))
	case errors.Is(err, unix.ENAMETOOLONG), errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOENT),
		errors.Is(err, unix.EXDEV), errors.Is(err, unix.EINVAL), errors.Is(err, unix.EISDIR),
		errors.Is(err, unix.EMLINK), errors.Is(err, unix.E2BIG), errors.Is(err, unix.ERANGE),
		errors.Is(err, unix.ENOTEMPTY):
		return errdefs.NewInvalidArgument(fmt.Errorf("layer entry %q: %s: %w", n, op, err))
	}
	return fmt.Errorf("layer entry %q: %s: %w", n, op, err)
}

// entry applies one tar header (and its body).
func (a *applier) entry(hdr *tar.Header, body io.Reader, src *trackingReader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name := hdr.Name
	if len(name) > MaxNameLen {
		return invalidEntry(name, "name is %d bytes long, more than the %d allowed", len(name), MaxNameLen)
	}
	if len(hdr.Linkname) > MaxNameLen {
		return invalidEntry(name, "link target is %d bytes long, more than the %d allowed", len(hdr.Linkname), MaxNameLen)
	}
	rel, ok := cleanName(name)
	if !ok {
		return errdefs.NewInvalidArgument(fmt.Errorf("layer entry %q escapes the layer root", truncName(name)))
	}
	if isSparse(hdr) {
		return invalidEntry(name, "sparse files are not supported in layers")
	}
	if first, _, _ := strings.Cut(rel, "/"); strings.HasPrefix(first, whiteoutMetaPrefix) && rel != whiteoutOpaque {
		return nil // AUFS metadata (.wh..wh.plnk, .wh..wh.aufs, ...)
	}
	dir, base := splitName(rel)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(hdr, dir, base)
	}
	if rel == "." {
		if hdr.Typeflag == tar.TypeDir {
			// The layer root's own metadata belongs to the snapshotter,
			// not to the layer (containerd ignores it too).
			return nil
		}
		return invalidEntry(name, "would replace the layer root")
	}

	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
	case tar.TypeChar, tar.TypeBlock:
		if !a.opts.AllowDevices {
			a.stats.SkippedDevices++
			return nil
		}
	default:
		return invalidEntry(name, "unsupported tar entry type %q", string(rune(hdr.Typeflag)))
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || int64(hdr.Uid) >= 1<<32-1 || int64(hdr.Gid) >= 1<<32-1 {
		return invalidEntry(name, "invalid owner %d:%d", hdr.Uid, hdr.Gid)
	}

	pfd, release, err := a.openParent(dir, true)
	if err != nil {
		return fsErr(name, "resolve parent directory", err)
	}
	defer release()

	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont:
		return a.regular(hdr, rel, pfd, base, body, src)
	case tar.TypeDir:
		return a.directory(hdr, rel, pfd, base)
	case tar.TypeSymlink:
		return a.symlink(hdr, rel, pfd, base)
	case tar.TypeLink:
		return a.hardlink(hdr, rel, pfd, base)
	default:
		return a.special(hdr, rel, pfd, base)
	}
}

// openat2InRoot resolves p below dirfd with chroot semantics.
func openat2InRoot(dirfd int, p string, flags uint64) (int, error) {
	how := &unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	var err error
	for i := 0; i < 64; i++ {
		var fd int
		fd, err = unix.Openat2(dirfd, p, how)
		if err == nil {
			return fd, nil
		}
		// EAGAIN: a concurrent rename raced with ".." resolution; retry.
		if err != unix.EAGAIN && err != unix.EINTR {
			break
		}
	}
	return -1, &os.PathError{Op: "openat2", Path: p, Err: err}
}

// openParent returns a file descriptor for the directory dir (a clean path
// relative to the root, "" for the root itself), resolved with chroot
// semantics. If create is set, missing directories are created with mode
// 0755. release must be called when the descriptor is no longer needed.
func (a *applier) openParent(dir string, create bool) (fd int, release func(), err error) {
	if dir == "" {
		return a.rootFd, func() {}, nil
	}
	if !a.noOpenat2 {
		fd, err := openat2InRoot(a.rootFd, dir, unix.O_PATH|unix.O_DIRECTORY)
		switch {
		case err == nil:
			return fd, func() { unix.Close(fd) }, nil
		case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM):
			// No openat2 (kernel < 5.6, or filtered by seccomp).
			a.noOpenat2 = true
		case errors.Is(err, unix.ENOENT) && create:
			return a.mkdirAll(dir)
		default:
			return -1, nil, err
		}
	}
	f, err := pathrs.OpenatInRoot(a.root, dir)
	if err != nil {
		if errors.Is(err, unix.ENOENT) && create {
			return a.mkdirAll(dir)
		}
		return -1, nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return -1, nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		f.Close()
		return -1, nil, &os.PathError{Op: "open", Path: dir, Err: unix.ENOTDIR}
	}
	return int(f.Fd()), func() { f.Close() }, nil
}

// mkdirAll creates dir and any missing parents inside the root, with mode
// 0755, and returns a descriptor for it.
//
// With openat2 it walks dir one component at a time from the root, opening
// each with O_NOFOLLOW and creating it if missing; dir is clean and has no
// ".." components, so this cannot leave the root. A component that is a
// symlink is resolved with openat2(RESOLVE_IN_ROOT) from the root (chroot
// semantics) and the walk continues from its target; a dangling symlink is
// an error, as with mkdir -p. The walk is linear in the depth of dir, where
// pathrs-lite's MkdirAllHandle (used without openat2) is quadratic.
func (a *applier) mkdirAll(dir string) (int, func(), error) {
	if a.noOpenat2 {
		f, err := pathrs.MkdirAllHandle(a.root, dir, 0o755)
		if err != nil {
			return -1, nil, fmt.Errorf("create missing parent directories: %w", err)
		}
		return int(f.Fd()), func() { f.Close() }, nil
	}
	const flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	cur, err := unix.FcntlInt(uintptr(a.rootFd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, nil, err
	}
	rest := dir
	for rest != "" {
		var c string
		c, rest, _ = strings.Cut(rest, "/")
		fd, err := unix.Openat(cur, c, flags, 0)
		if errors.Is(err, unix.ENOENT) {
			if err = unix.Mkdirat(cur, c, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				fd, err = unix.Openat(cur, c, flags, 0)
			}
		}
		if errors.Is(err, unix.ENOTDIR) {
			// c is a symlink (or not a directory at all): resolve the
			// path so far inside the root.
			prefix := dir[:len(dir)-len(rest)]
			prefix = strings.TrimSuffix(prefix, "/")
			fd, err = openat2InRoot(a.rootFd, prefix, unix.O_PATH|unix.O_DIRECTORY)
			if errors.Is(err, unix.ENOENT) {
				err = fmt.Errorf("cannot create directories through dangling symlink %q: %w", prefix, err)
			}
		}
		unix.Close(cur)
		if err != nil {
			return -1, nil, err
		}
		cur = fd
	}
	return cur, func() { unix.Close(cur) }, nil
}

// replace runs create; if it fails because base already exists, the
// existing entry (whose clean path is rel) is removed and create is run
// once more.
func (a *applier) replace(pfd int, base, rel string, create func() error) error {
	err := create()
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	if err := a.removeAt(pfd, base, rel); err != nil {
		return err
	}
	return create()
}

// removeAt removes base in directory pfd without following symlinks,
// recursively if it is a directory. A missing entry is not an error. rel is
// the clean path of the entry being removed.
func (a *applier) removeAt(pfd int, base, rel string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return ignoreENOENT(unix.Unlinkat(pfd, base, 0))
	}
	a.forgetDirs(rel)
	return removeAllAt(pfd, base)
}

// forgetDirs drops the deferred metadata of a removed directory rel and of
// everything recorded below it, so that a directory later recreated at the
// same path does not inherit it. This is best effort (a directory reached
// through a symlink was recorded under another name); it only matters for
// metadata, because finishDirs re-resolves every path inside the root and
// skips anything that is no longer a directory.
func (a *applier) forgetDirs(rel string) {
	if len(a.dirs) == 0 {
		return
	}
	delete(a.dirs, rel)
	prefix := rel + "/"
	for k := range a.dirs {
		if strings.HasPrefix(k, prefix) {
			delete(a.dirs, k)
		}
	}
}

func removeAllAt(pfd int, base string) error {
	err := unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), base)
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		return err
	}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			d.Close()
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = removeAllAt(fd, n)
		} else {
			err = ignoreENOENT(unix.Unlinkat(fd, n, 0))
		}
		if err != nil {
			d.Close()
			return err
		}
	}
	d.Close()
	return ignoreENOENT(unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR))
}

func ignoreENOENT(err error) error {
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// regular creates a regular file and copies the entry's body into it.
func (a *applier) regular(hdr *tar.Header, rel string, pfd int, base string, body io.Reader, src *trackingReader) error {
	name := hdr.Name
	var fd int
	err := a.replace(pfd, base, rel, func() error {
		var err error
		fd, err = unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return fsErr(name, "create file", err)
	}
	f := os.NewFile(uintptr(fd), base)
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	w := newWriteBehind(f, a.opts.WriteBehind)
	var sum uint32
	for {
		n, rerr := body.Read(a.buf)
		if n > 0 {
			if _, werr := w.Write(a.buf[:n]); werr != nil {
				return fsErr(name, "write file", werr)
			}
			sum = crc32.Update(sum, castagnoli, a.buf[:n])
			a.stats.Bytes += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return src.classify(rerr, name)
		}
	}
	if err := w.finish(); err != nil {
		return fsErr(name, "write back file", err)
	}
	if a.chown {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return fsErr(name, "chown", err)
		}
	}
	if err := unix.Fchmod(fd, tarMode(hdr)); err != nil {
		return fsErr(name, "chmod", err)
	}
	if err := a.xattrs(hdr, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) }); err != nil {
		return err
	}
	if err := unix.UtimesNanoAt(pfd, base, tarTimes(hdr), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fsErr(name, "set times", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fsErr(name, "stat file", err)
	}
	if a.stats.Contents == nil {
		a.stats.Contents = map[uint64]uint32{}
	}
	a.stats.Contents[st.Ino] = sum
	err = f.Close()
	f = nil
	if err != nil {
		return fsErr(name, "close file", err)
	}
	a.stats.Files++
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// directory creates (or updates) a directory. Its mode and times are
// applied at the end by finishDirs.
func (a *applier) directory(hdr *tar.Header, rel string, pfd int, base string) error {
	name := hdr.Name
	err := unix.Mkdirat(pfd, base, 0o755)
	if errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		if err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			err = a.replace(pfd, base, rel, func() error { return unix.Mkdirat(pfd, base, 0o755) })
		}
	}
	if err != nil {
		return fsErr(name, "create directory", err)
	}
	if err := a.metadata(hdr, pfd, base, false); err != nil {
		return err
	}
	a.dirs[rel] = dirMeta{name: name, mode: tarMode(hdr), times: tarTimes(hdr)}
	a.stats.Dirs++
	return nil
}

func (a *applier) symlink(hdr *tar.Header, rel string, pfd int, base string) error {
	if hdr.Linkname == "" {
		return invalidEntry(hdr.Name, "symlink has an empty target")
	}
	err := a.replace(pfd, base, rel, func() error { return unix.Symlinkat(hdr.Linkname, pfd, base) })
	if err != nil {
		return fsErr(hdr.Name, "create symlink", err)
	}
	if err := a.metadata(hdr, pfd, base, true); err != nil {
		return err
	}
	a.stats.Symlinks++
	return nil
}

// hardlink links base to the entry's Linkname, resolved inside the root.
// The inode's metadata comes from the entry that created it; the hardlink
// header's own metadata is not applied.
func (a *applier) hardlink(hdr *tar.Header, rel string, pfd int, base string) error {
	name := hdr.Name
	target, ok := cleanName(hdr.Linkname)
	if !ok {
		return invalidEntry(name, "hardlink target %q escapes the layer root", truncName(hdr.Linkname))
	}
	if target == "." {
		return invalidEntry(name, "hardlink target is the layer root")
	}
	tdir, tbase := splitName(target)
	tfd, release, err := a.openParent(tdir, false)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return invalidEntry(name, "hardlink target %q does not exist", truncName(hdr.Linkname))
		}
		return fsErr(name, "resolve hardlink target", err)
	}
	defer release()
	var tst unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &tst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return invalidEntry(name, "hardlink target %q does not exist", truncName(hdr.Linkname))
		}
		return fsErr(name, "resolve hardlink target", err)
	}
	if tst.Mode&unix.S_IFMT == unix.S_IFDIR {
		return invalidEntry(name, "hardlink target %q is a directory", truncName(hdr.Linkname))
	}
	var dst unix.Stat_t
	if err := unix.Fstatat(pfd, base, &dst, unix.AT_SYMLINK_NOFOLLOW); err == nil && dst.Dev == tst.Dev && dst.Ino == tst.Ino {
		a.stats.Hardlinks++
		return nil // already linked (possibly to itself)
	}
	// flags 0: linkat does not follow tbase if it is a symlink.
	if err := a.replace(pfd, base, rel, func() error { return unix.Linkat(tfd, tbase, pfd, base, 0) }); err != nil {
		return fsErr(name, "create hardlink", err)
	}
	a.stats.Hardlinks++
	return nil
}

// special creates FIFOs and (if allowed) device nodes.
func (a *applier) special(hdr *tar.Header, rel string, pfd int, base string) error {
	name := hdr.Name
	var mode uint32
	var dev uint64
	switch hdr.Typeflag {
	case tar.TypeFifo:
		mode = unix.S_IFIFO
	case tar.TypeChar, tar.TypeBlock:
		if hdr.Devmajor < 0 || hdr.Devminor < 0 || hdr.Devmajor > 1<<32-1 || hdr.Devminor > 1<<32-1 {
			return invalidEntry(name, "invalid device number %d:%d", hdr.Devmajor, hdr.Devminor)
		}
		mode = unix.S_IFCHR
		if hdr.Typeflag == tar.TypeBlock {
			mode = unix.S_IFBLK
		}
		dev = unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	}
	err := a.replace(pfd, base, rel, func() error { return unix.Mknodat(pfd, base, mode|0o600, int(dev)) })
	if err != nil {
		return fsErr(name, "create special file", err)
	}
	if err := a.metadata(hdr, pfd, base, false); err != nil {
		return err
	}
	if err := unix.Fchmodat(pfd, base, tarMode(hdr), 0); err != nil {
		return fsErr(name, "chmod", err)
	}
	if err := unix.UtimesNanoAt(pfd, base, tarTimes(hdr), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fsErr(name, "set times", err)
	}
	if hdr.Typeflag == tar.TypeFifo {
		a.stats.Fifos++
	} else {
		a.stats.Devices++
	}
	return nil
}

// metadata applies ownership and xattrs to base in pfd (not following
// symlinks) and, for symlinks, times. Modes and the other types' times are
// applied by the callers, after ownership, because chown clears setuid bits
// and security.capability.
func (a *applier) metadata(hdr *tar.Header, pfd int, base string, isSymlink bool) error {
	name := hdr.Name
	if a.chown {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fsErr(name, "chown", err)
		}
	}
	if hasXattrs(hdr) {
		if err := a.xattrsAt(hdr, pfd, base); err != nil {
			return err
		}
	}
	if isSymlink {
		if err := unix.UtimesNanoAt(pfd, base, tarTimes(hdr), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fsErr(name, "set times", err)
		}
	}
	return nil
}

// xattrsAt applies the entry's xattrs to base in pfd without following a
// symlink there. Directories are opened and use fsetxattr; symlinks, FIFOs
// and devices (which cannot be opened for I/O safely) are opened O_PATH and
// use setxattr on their /proc/self/fd magic link, which acts on the O_PATH
// file itself.
func (a *applier) xattrsAt(hdr *tar.Header, pfd int, base string) error {
	if hdr.Typeflag == tar.TypeDir {
		fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fsErr(hdr.Name, "open for xattrs", err)
		}
		defer unix.Close(fd)
		return a.xattrs(hdr, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) })
	}
	fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fsErr(hdr.Name, "open for xattrs", err)
	}
	defer unix.Close(fd)
	p := "/proc/self/fd/" + strconv.Itoa(fd)
	return a.xattrs(hdr, func(k string, v []byte) error { return unix.Setxattr(p, k, v, 0) })
}

func hasXattrs(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, paxXattrPrefix) {
			return true
		}
	}
	return false
}

// xattrs applies the entry's allowed SCHILY.xattr.* records with set, in a
// stable order.
func (a *applier) xattrs(hdr *tar.Header, set func(k string, v []byte) error) error {
	var keys []string
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, paxXattrPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		x := strings.TrimPrefix(k, paxXattrPrefix)
		if !xattrAllowed(x) {
			a.stats.DroppedXattrs++
			continue
		}
		err := ignoreEINTR(func() error { return set(x, []byte(hdr.PAXRecords[k])) })
		switch {
		case err == nil:
		case strings.HasPrefix(x, "user.") && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM)):
			// The filesystem has no user xattrs, or the kernel forbids
			// them on this file type (symlinks, devices): not fatal.
			a.stats.DroppedXattrs++
		case errors.Is(err, unix.EOPNOTSUPP):
			return errdefs.NewFailedPrecondition(fmt.Errorf("layer entry %q: the filesystem does not support xattr %q: %w", truncName(hdr.Name), x, err))
		default:
			return fsErr(hdr.Name, fmt.Sprintf("set xattr %q", x), err)
		}
	}
	return nil
}

// whiteout converts ".wh.NAME" and ".wh..wh..opq" entries to overlayfs form.
func (a *applier) whiteout(hdr *tar.Header, dir, base string) error {
	name := hdr.Name
	if base == whiteoutOpaque {
		pfd, release, err := a.openParent(dir, true)
		if err != nil {
			return fsErr(name, "resolve opaque directory", err)
		}
		defer release()
		fd, err := unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fsErr(name, "open opaque directory", err)
		}
		err = unix.Fsetxattr(fd, OverlayOpaqueXattr, []byte("y"), 0)
		unix.Close(fd)
		if err != nil {
			return fsErr(name, "set "+OverlayOpaqueXattr, err)
		}
		a.stats.Opaques++
		return nil
	}
	if strings.HasPrefix(base, whiteoutMetaPrefix) {
		return nil // other AUFS metadata entries
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." {
		return invalidEntry(name, "invalid whiteout")
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || int64(hdr.Uid) >= 1<<32-1 || int64(hdr.Gid) >= 1<<32-1 {
		return invalidEntry(name, "invalid owner %d:%d", hdr.Uid, hdr.Gid)
	}
	pfd, release, err := a.openParent(dir, true)
	if err != nil {
		return fsErr(name, "resolve whiteout directory", err)
	}
	defer release()
	if err := a.removeAt(pfd, target, joinName(dir, target)); err != nil {
		return fsErr(name, "remove whited-out entry", err)
	}
	if err := unix.Mknodat(pfd, target, unix.S_IFCHR, 0); err != nil {
		return fsErr(name, "create whiteout", err)
	}
	if a.chown {
		if err := unix.Fchownat(pfd, target, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fsErr(name, "chown whiteout", err)
		}
	}
	a.stats.Whiteouts++
	return nil
}

// finishDirs applies deferred directory modes and times, deepest first.
// Directories that no longer exist, or are no longer directories, are
// skipped.
func (a *applier) finishDirs() error {
	paths := make([]string, 0, len(a.dirs))
	for p := range a.dirs {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool {
		di, dj := strings.Count(paths[i], "/"), strings.Count(paths[j], "/")
		if di != dj {
			return di > dj
		}
		return paths[i] > paths[j]
	})
	for i, p := range paths {
		if i%1024 == 0 {
			if err := a.ctx.Err(); err != nil {
				return fmt.Errorf("applying layer: %w", err)
			}
		}
		m := a.dirs[p]
		dir, base := splitName(p)
		pfd, release, err := a.openParent(dir, false)
		if err != nil {
			continue // the parent went away or changed type
		}
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			release()
			continue
		}
		if err := unix.Fchmodat(pfd, base, m.mode, 0); err != nil {
			release()
			return fsErr(m.name, "chmod directory", err)
		}
		if err := unix.UtimesNanoAt(pfd, base, m.times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			release()
			return fsErr(m.name, "set directory times", err)
		}
		release()
	}
	return nil
}

// tarMode returns the permission bits of hdr, including setuid, setgid and
// sticky.
func tarMode(hdr *tar.Header) uint32 {
	return uint32(hdr.Mode) & 0o7777
}

// tarTimes returns hdr's access and modification times for utimensat. A
// missing access time is taken to be the modification time.
func tarTimes(hdr *tar.Header) []unix.Timespec {
	mt := hdr.ModTime
	at := hdr.AccessTime
	if at.IsZero() {
		at = mt
	}
	return []unix.Timespec{toTimespec(at), toTimespec(mt)}
}

func toTimespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{}
	}
	// TimeToTimespec sizes the fields for the platform (32-bit on armv7)
	// and refuses times that do not fit; such an mtime from a hostile or odd
	// tar becomes the epoch rather than a wrapped value.
	ts, err := unix.TimeToTimespec(t)
	if err != nil {
		return unix.Timespec{}
	}
	return ts
}
