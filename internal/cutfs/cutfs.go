//go:build linux

package cutfs

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

const rootID = 1

// Options configure a mount.
type Options struct {
	// Debug logs every FUSE request.
	Debug bool
}

// Stats counts what the filesystem has seen since Mount.
type Stats struct {
	Ops          uint64 // mutating operations, fsyncs included (what CutAfter counts)
	Writes       uint64
	BytesWritten uint64
	Fsyncs       uint64 // fsync/fdatasync of files
	DirFsyncs    uint64 // fsync of directories
	PendingOps   int    // namespace operations not yet durable
	PendingFiles int    // files with data or attributes not yet durable
	PendingBytes uint64 // bytes written to those files since their last fsync
	Cut          bool   // the power has been cut; the mount is dead
}

// FS is one mounted power-cut filesystem. See the package documentation.
type FS struct {
	backing, mountpoint, live string

	server *fuse.Server

	mu      sync.Mutex
	dn      map[uint64]*dnode
	ids     map[uint64]uint64 // live st_ino -> id
	next    uint64
	log     []nsOp
	dirty   map[uint64]uint64 // id -> bytes written since last fsync
	stats   Stats
	dead    bool
	cutAt   uint64 // Ops value whose op cuts; 0: disarmed
	hooks   []func()
	umOnce  sync.Once
	umErr   error
	umDone  chan struct{}
	cutOnce sync.Once
}

// Mount boots the durable tree in backing (as after a power cut: nothing but
// what is in backing) and serves it at mountpoint.
func Mount(backing, mountpoint string, opts Options) (*FS, error) {
	backing, err := filepath.Abs(backing)
	if err != nil {
		return nil, err
	}
	f := &FS{backing: backing, mountpoint: mountpoint, dirty: map[uint64]uint64{}, umDone: make(chan struct{})}
	if err := f.boot(); err != nil {
		return nil, fmt.Errorf("cutfs: boot %s: %w", backing, err)
	}
	lroot, err := fs.NewLoopbackRoot(f.live)
	if err != nil {
		return nil, err
	}
	root := &node{LoopbackNode: lroot.(*fs.LoopbackNode), f: f}
	sec := time.Second
	f.server, err = fs.Mount(mountpoint, root, &fs.Options{
		EntryTimeout: &sec, AttrTimeout: &sec, NegativeTimeout: &sec,
		MountOptions: fuse.MountOptions{
			FsName:      "cutfs:" + backing,
			Name:        "cutfs",
			Debug:       opts.Debug,
			DirectMount: true,
			AllowOther:  true,
			Options:     []string{"default_permissions"},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cutfs: mount %s: %w", mountpoint, err)
	}
	return f, nil
}

// Backing is the durable directory.
func (f *FS) Backing() string { return f.backing }

// Mountpoint is where the filesystem is served.
func (f *FS) Mountpoint() string { return f.mountpoint }

// Stats returns a snapshot of the counters.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	s.PendingOps = len(f.log)
	s.PendingFiles = len(f.dirty)
	s.PendingBytes = 0
	for _, b := range f.dirty {
		s.PendingBytes += b
	}
	s.Cut = f.dead
	return s
}

// OnCut registers fn to run at the instant of the cut, before the operation
// that triggered it (with CutAfter) returns EIO and before Cut unmounts.
func (f *FS) OnCut(fn func()) {
	f.mu.Lock()
	f.hooks = append(f.hooks, fn)
	f.mu.Unlock()
}

// CutAfter arms the cut: the n-th mutating operation from now (n >= 1; writes,
// setattr, namespace operations and fsyncs all count) does not happen, fails
// with EIO, and cuts the power. n == 0 disarms.
func (f *FS) CutAfter(n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n == 0 {
		f.cutAt = 0
		return
	}
	f.cutAt = f.stats.Ops + n
}

// Cut loses the power: everything not durable is forgotten, every later
// operation on the mount fails with EIO, the OnCut hooks run and the mount
// is taken down (lazily if something still holds it open). backing is left
// holding exactly the durable state; Mount it again to "reboot".
func (f *FS) Cut() error {
	f.mu.Lock()
	f.cutLocked()
	f.mu.Unlock()
	f.runHooks()
	return f.Unmount()
}

func (f *FS) cutLocked() {
	f.dead = true
	f.log = nil
	f.dirty = map[uint64]uint64{}
	f.cutAt = 0
}

func (f *FS) runHooks() {
	f.cutOnce.Do(func() {
		f.mu.Lock()
		hs := append([]func(){}, f.hooks...)
		f.mu.Unlock()
		for _, h := range hs {
			h()
		}
	})
}

// Unmount takes the mount down without a cut of what is durable (pending
// changes are still lost: the next Mount boots from backing). It is safe to
// call more than once and after Cut. If the mount is busy it is detached
// lazily (MNT_DETACH) so that no mount is left behind.
func (f *FS) Unmount() error {
	f.mu.Lock()
	f.dead = true
	f.mu.Unlock()
	f.umOnce.Do(func() {
		defer close(f.umDone)
		if err := f.server.Unmount(); err != nil {
			if derr := unix.Unmount(f.mountpoint, unix.MNT_DETACH); derr != nil && !errors.Is(derr, unix.EINVAL) {
				f.umErr = fmt.Errorf("cutfs: unmount %s: %v; lazy: %w", f.mountpoint, err, derr)
				return
			}
		}
		done := make(chan struct{})
		go func() { f.server.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			// Lazily detached while files are still open: the server
			// exits when the last of them is closed.
		}
	})
	<-f.umDone
	return f.umErr
}

// begin starts a mutating operation: it counts it and, when armed, cuts.
func (f *FS) begin() syscall.Errno {
	f.mu.Lock()
	if f.dead {
		f.mu.Unlock()
		return syscall.EIO
	}
	f.stats.Ops++
	if f.cutAt != 0 && f.stats.Ops >= f.cutAt {
		f.cutLocked()
		f.mu.Unlock()
		f.runHooks()
		go f.Unmount()
		return syscall.EIO
	}
	return 0
}

func (f *FS) alive() syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dead {
		return syscall.EIO
	}
	return 0
}

// node is a loopback node over the live tree that records what it changes.
type node struct {
	*fs.LoopbackNode
	f *FS
}

// WrapChild makes every node below the root a *node too.
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), f: n.f}
}

func (n *node) livePath() string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()))
}

// idLocked is the id of this node's live inode.
func (n *node) idLocked() uint64 {
	if n.IsRoot() {
		return rootID
	}
	return n.f.ids[n.StableAttr().Ino]
}

func reserved(n *node, name string) bool { return n.IsRoot() && name == stateDir }

// created registers a new live inode at dir/name and logs its entry.
func (n *node) createdLocked(name string, k kind, st *syscall.Stat_t, target string) {
	f := n.f
	id := f.newID(&dnode{kind: k, mode: st.Mode & 0o7777, uid: int(st.Uid), gid: int(st.Gid), target: target})
	if k == kDir {
		f.dn[id].entries = map[string]uint64{}
	}
	f.ids[st.Ino] = id
	f.log = append(f.log, nsOp{kind: opAdd, dir: n.idLocked(), name: name, child: id})
}

func lstatIno(p string) (*syscall.Stat_t, error) {
	var st syscall.Stat_t
	return &st, syscall.Lstat(p, &st)
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := n.f.alive(); e != 0 {
		return nil, e
	}
	if reserved(n, name) {
		return nil, syscall.ENOENT
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if e := n.f.alive(); e != 0 {
		return e
	}
	if h, ok := fh.(*fileHandle); ok {
		fh = h.lf
	}
	return n.LoopbackNode.Getattr(ctx, fh, out)
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if reserved(n, name) {
		return nil, nil, 0, syscall.EPERM
	}
	if e := n.f.begin(); e != 0 {
		return nil, nil, 0, e
	}
	defer n.f.mu.Unlock()
	p := filepath.Join(n.livePath(), name)
	_, existed := lstatIno(p)
	ch, fh, fl, e := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if e != 0 {
		return ch, fh, fl, e
	}
	if existed != nil { // it is new
		st, err := lstatIno(p)
		if err != nil {
			return nil, nil, 0, fs.ToErrno(err)
		}
		n.createdLocked(name, kFile, st, "")
	}
	return ch, &fileHandle{lf: fh.(*fs.LoopbackFile), n: ch.Operations().(*node)}, fl, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if reserved(n, name) {
		return nil, syscall.EPERM
	}
	if e := n.f.begin(); e != 0 {
		return nil, e
	}
	defer n.f.mu.Unlock()
	ch, e := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	if e == 0 {
		if st, err := lstatIno(filepath.Join(n.livePath(), name)); err == nil {
			n.createdLocked(name, kDir, st, "")
		}
	}
	return ch, e
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, syscall.EPERM // only regular files are modelled
	}
	if reserved(n, name) {
		return nil, syscall.EPERM
	}
	if e := n.f.begin(); e != 0 {
		return nil, e
	}
	defer n.f.mu.Unlock()
	ch, e := n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
	if e == 0 {
		if st, err := lstatIno(filepath.Join(n.livePath(), name)); err == nil {
			n.createdLocked(name, kFile, st, "")
		}
	}
	return ch, e
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if reserved(n, name) {
		return nil, syscall.EPERM
	}
	if e := n.f.begin(); e != 0 {
		return nil, e
	}
	defer n.f.mu.Unlock()
	ch, e := n.LoopbackNode.Symlink(ctx, target, name, out)
	if e == 0 {
		if st, err := lstatIno(filepath.Join(n.livePath(), name)); err == nil {
			n.createdLocked(name, kSymlink, st, target)
		}
	}
	return ch, e
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if reserved(n, name) {
		return nil, syscall.EPERM
	}
	if e := n.f.begin(); e != 0 {
		return nil, e
	}
	defer n.f.mu.Unlock()
	ch, e := n.LoopbackNode.Link(ctx, target, name, out)
	if e == 0 {
		t := target.(*node)
		n.f.log = append(n.f.log, nsOp{kind: opAdd, dir: n.idLocked(), name: name, child: t.idLocked()})
	}
	return ch, e
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if e := n.f.begin(); e != 0 {
		return e
	}
	defer n.f.mu.Unlock()
	e := n.LoopbackNode.Unlink(ctx, name)
	if e == 0 {
		n.f.log = append(n.f.log, nsOp{kind: opRemove, dir: n.idLocked(), name: name})
	}
	return e
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if e := n.f.begin(); e != 0 {
		return e
	}
	defer n.f.mu.Unlock()
	e := n.LoopbackNode.Rmdir(ctx, name)
	if e == 0 {
		n.f.log = append(n.f.log, nsOp{kind: opRemove, dir: n.idLocked(), name: name})
	}
	return e
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if reserved(np, newName) {
		return syscall.EPERM
	}
	if flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return syscall.EINVAL // RENAME_WHITEOUT is not modelled
	}
	if e := n.f.begin(); e != 0 {
		return e
	}
	defer n.f.mu.Unlock()
	var child uint64
	if st, err := lstatIno(filepath.Join(n.livePath(), name)); err == nil {
		child = n.f.ids[st.Ino]
	}
	e := n.LoopbackNode.Rename(ctx, name, np, newName, flags)
	if e == 0 {
		k := opRename
		if flags&unix.RENAME_EXCHANGE != 0 {
			k = opExchange
		}
		n.f.log = append(n.f.log, nsOp{kind: k, dir: n.idLocked(), name: name, dir2: np.idLocked(), name2: newName, child: child})
	}
	return e
}

func (n *node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP // O_TMPFILE is not modelled
}

func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS // the kernel falls back to read and write
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if e := n.f.begin(); e != 0 {
		return e
	}
	n.f.mu.Unlock()
	return n.LoopbackNode.Setxattr(ctx, attr, data, flags)
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if e := n.f.begin(); e != 0 {
		return e
	}
	n.f.mu.Unlock()
	return n.LoopbackNode.Removexattr(ctx, attr)
}

func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if e := n.f.begin(); e != 0 {
		return e
	}
	defer n.f.mu.Unlock()
	if h, ok := fh.(*fileHandle); ok {
		fh = h.lf
	}
	e := n.LoopbackNode.Setattr(ctx, fh, in, out)
	if e == 0 && !n.IsDir() {
		if _, m := in.GetMode(); m || sizeSet(in) || ownerSet(in) {
			id := n.idLocked()
			n.f.dirty[id] += 0
		}
	}
	return e
}

func sizeSet(in *fuse.SetAttrIn) bool  { _, ok := in.GetSize(); return ok }
func ownerSet(in *fuse.SetAttrIn) bool { _, u := in.GetUID(); _, g := in.GetGID(); return u || g }

// Fsync makes a file's data, size, mode and owner durable, or a directory's
// entry operations.
func (n *node) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	f := n.f
	if e := f.begin(); e != 0 {
		return e
	}
	defer f.mu.Unlock()
	if n.IsDir() {
		f.stats.DirFsyncs++
		id := n.idLocked()
		if st, err := lstatIno(n.livePath()); err == nil && f.dn[id] != nil {
			d := f.dn[id]
			d.mode, d.uid, d.gid = st.Mode&0o7777, int(st.Uid), int(st.Gid)
			if p, ok := f.dpath(id); ok {
				os.Chmod(p, os.FileMode(d.mode&0o777)|modeExtra(d.mode))
				os.Lchown(p, d.uid, d.gid)
			}
		}
		if err := f.syncDirLocked(id); err != nil {
			log.Printf("cutfs: fsync %s: %v", n.livePath(), err)
			return syscall.EIO
		}
		return 0
	}
	f.stats.Fsyncs++
	id := n.idLocked()
	// Reopen read-only (the handle may be write-only, the file unlinked).
	src := n.livePath()
	if h, ok := fh.(*fileHandle); ok {
		d, ok := h.lf.PassthroughFd()
		if !ok {
			return syscall.EBADF
		}
		src = fmt.Sprintf("/proc/self/fd/%d", d)
	}
	fd, err := unix.Open(src, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fs.ToErrno(err)
	}
	defer unix.Close(fd)
	if err := f.syncDataLocked(id, fd); err != nil {
		log.Printf("cutfs: fsync %s: %v", n.livePath(), err)
		return syscall.EIO
	}
	delete(f.dirty, id)
	return 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if e := n.f.alive(); e != 0 {
		return nil, 0, e
	}
	if flags&syscall.O_TRUNC != 0 {
		if e := n.f.begin(); e != 0 {
			return nil, 0, e
		}
		n.f.dirty[n.idLocked()] += 0
		n.f.mu.Unlock()
	}
	fh, fl, e := n.LoopbackNode.Open(ctx, flags)
	if e != 0 {
		return nil, 0, e
	}
	return &fileHandle{lf: fh.(*fs.LoopbackFile), n: n}, fl, 0
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if e := n.f.alive(); e != 0 {
		return nil, 0, e
	}
	ds, e := fs.NewLoopbackDirStream(n.livePath())
	if e != 0 {
		return nil, 0, e
	}
	return &dirHandle{ds: ds, n: n}, 0, 0
}

// dirHandle hides the loopback directory handle's own Fsyncdir so that the
// directory fsync reaches node.Fsync.
type dirHandle struct {
	ds fs.DirStream
	n  *node
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	for {
		e, errno := d.ds.(fs.FileReaddirenter).Readdirent(ctx)
		if e != nil && d.n.IsRoot() && e.Name == stateDir {
			continue
		}
		return e, errno
	}
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	return d.ds.(fs.FileSeekdirer).Seekdir(ctx, off)
}

func (d *dirHandle) Releasedir(ctx context.Context, fl uint32) {
	d.ds.(fs.FileReleasedirer).Releasedir(ctx, fl)
}

// fileHandle forwards to the loopback file but records writes, and hides
// PassthroughFd (kernel passthrough would bypass the recording).
type fileHandle struct {
	lf *fs.LoopbackFile
	n  *node
}

func (h *fileHandle) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if e := h.n.f.alive(); e != 0 {
		return nil, e
	}
	return h.lf.Read(ctx, buf, off)
}

func (h *fileHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f := h.n.f
	if e := f.begin(); e != 0 {
		return 0, e
	}
	defer f.mu.Unlock()
	w, e := h.lf.Write(ctx, data, off)
	f.stats.Writes++
	f.stats.BytesWritten += uint64(w)
	f.dirty[h.n.idLocked()] += uint64(w)
	return w, e
}

func (h *fileHandle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	f := h.n.f
	if e := f.begin(); e != 0 {
		return e
	}
	defer f.mu.Unlock()
	f.dirty[h.n.idLocked()] += 0
	return h.lf.Allocate(ctx, off, size, mode)
}

func (h *fileHandle) Flush(ctx context.Context) syscall.Errno   { return h.lf.Flush(ctx) }
func (h *fileHandle) Release(ctx context.Context) syscall.Errno { return h.lf.Release(ctx) }
func (h *fileHandle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return h.lf.Getattr(ctx, out)
}
func (h *fileHandle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return h.lf.Lseek(ctx, off, whence)
}
func (h *fileHandle) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return h.lf.Getlk(ctx, owner, lk, flags, out)
}
func (h *fileHandle) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return h.lf.Setlk(ctx, owner, lk, flags)
}
func (h *fileHandle) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return h.lf.Setlkw(ctx, owner, lk, flags)
}
