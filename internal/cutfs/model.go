//go:build linux

package cutfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// The durable model. Every inode the mount has ever shown gets an id (never
// reused). A dnode holds what the disk knows about that inode; which names
// point at it durably is held by the durable entries of directory dnodes.
// The backing directory is, at every instant, the materialisation of the
// durable entries reachable from the root: files are hard links of
// <backing>/.cutfs-state/ino/<id> (which holds the inode's durable data),
// directories are real directories, symlinks real symlinks.

type kind uint8

const (
	kFile kind = iota
	kDir
	kSymlink
)

type dnode struct {
	kind     kind
	mode     uint32 // permission bits
	uid, gid int
	target   string // symlink
	// directories only:
	entries map[string]uint64 // durable entries
	parent  uint64            // durable parent (0: not linked durably)
	name    string            // durable name in parent
	// files only:
	hasData bool // an ino file exists in the store
}

type opKind uint8

const (
	opAdd      opKind = iota // create, mkdir, symlink, mknod, link: dir/name -> child
	opRemove                 // unlink, rmdir: dir/name
	opRename                 // dir/name -> dir2/name2
	opExchange               // RENAME_EXCHANGE
)

// nsOp is one namespace operation not yet durable.
type nsOp struct {
	kind        opKind
	dir, dir2   uint64
	name, name2 string
	child       uint64
}

func (o *nsOp) touches(dirs map[uint64]bool) bool {
	return dirs[o.dir] || (o.kind >= opRename && dirs[o.dir2])
}

func (o *nsOp) dirs() []uint64 {
	if o.kind >= opRename {
		return []uint64{o.dir, o.dir2}
	}
	return []uint64{o.dir}
}

const stateDir = ".cutfs-state"

func (f *FS) inoPath(id uint64) string {
	return filepath.Join(f.backing, stateDir, "ino", strconv.FormatUint(id, 10))
}

// dpath is the backing path of directory id, if it is durably reachable.
func (f *FS) dpath(id uint64) (string, bool) {
	if id == rootID {
		return f.backing, true
	}
	d := f.dn[id]
	if d == nil || d.kind != kDir || d.parent == 0 {
		return "", false
	}
	// Guard against cycles (cannot happen with a consistent log, but cheap).
	p, ok := f.dpathDepth(d.parent, 0)
	if !ok {
		return "", false
	}
	return filepath.Join(p, d.name), true
}

func (f *FS) dpathDepth(id uint64, depth int) (string, bool) {
	if depth > 4096 {
		return "", false
	}
	if id == rootID {
		return f.backing, true
	}
	d := f.dn[id]
	if d == nil || d.kind != kDir || d.parent == 0 {
		return "", false
	}
	p, ok := f.dpathDepth(d.parent, depth+1)
	if !ok {
		return "", false
	}
	return filepath.Join(p, d.name), true
}

// ensureIno makes sure the store holds an inode file for file id (empty if its
// data was never made durable: ext4 data=ordered with delayed allocation leaves
// a zero-length file when only the entry was committed).
func (f *FS) ensureIno(id uint64) error {
	d := f.dn[id]
	if d.hasData {
		return nil
	}
	p := f.inoPath(id)
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, d.mode&0o7777)
	if err != nil {
		return err
	}
	unix.Fchmod(fd, d.mode&0o7777)
	unix.Fchown(fd, d.uid, d.gid)
	unix.Close(fd)
	d.hasData = true
	return nil
}

// materialize creates the durable subtree of id at path p in backing.
func (f *FS) materialize(p string, id uint64) error {
	d := f.dn[id]
	switch d.kind {
	case kFile:
		if err := f.ensureIno(id); err != nil {
			return err
		}
		return os.Link(f.inoPath(id), p)
	case kSymlink:
		if err := os.Symlink(d.target, p); err != nil {
			return err
		}
		return os.Lchown(p, d.uid, d.gid)
	case kDir:
		if err := os.Mkdir(p, 0o700); err != nil {
			return err
		}
		os.Chmod(p, os.FileMode(d.mode&0o777)|modeExtra(d.mode))
		os.Lchown(p, d.uid, d.gid)
		for name, c := range d.entries {
			if err := f.materialize(filepath.Join(p, name), c); err != nil {
				return err
			}
		}
	}
	return nil
}

func modeExtra(m uint32) os.FileMode {
	var x os.FileMode
	if m&unix.S_ISUID != 0 {
		x |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		x |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		x |= os.ModeSticky
	}
	return x
}

func (f *FS) addEntry(dir uint64, name string, child uint64) error {
	d := f.dn[dir]
	if _, ok := d.entries[name]; ok {
		if err := f.removeEntry(dir, name); err != nil {
			return err
		}
	}
	d.entries[name] = child
	if c := f.dn[child]; c.kind == kDir {
		if c.parent != 0 && (c.parent != dir || c.name != name) {
			// A directory has one durable name; drop the stale one.
			if pd := f.dn[c.parent]; pd != nil && pd.entries[c.name] == child {
				if err := f.removeEntry(c.parent, c.name); err != nil {
					return err
				}
			}
		}
		c.parent, c.name = dir, name
	}
	if p, ok := f.dpath(dir); ok {
		return f.materialize(filepath.Join(p, name), child)
	}
	return nil
}

func (f *FS) removeEntry(dir uint64, name string) error {
	d := f.dn[dir]
	c, ok := d.entries[name]
	if !ok {
		return nil
	}
	p, reach := f.dpath(dir)
	delete(d.entries, name)
	if cd := f.dn[c]; cd.kind == kDir && cd.parent == dir && cd.name == name {
		cd.parent, cd.name = 0, ""
	}
	if reach {
		return os.RemoveAll(filepath.Join(p, name))
	}
	return nil
}

func (f *FS) apply(o *nsOp) error {
	switch o.kind {
	case opAdd:
		return f.addEntry(o.dir, o.name, o.child)
	case opRemove:
		return f.removeEntry(o.dir, o.name)
	case opRename:
		c, ok := f.dn[o.dir].entries[o.name]
		if !ok {
			c = o.child
		}
		src, srcOK := f.dpath(o.dir)
		dst, dstOK := f.dpath(o.dir2)
		if ok && srcOK && dstOK && f.dn[c].kind == kDir {
			// Move the materialised subtree instead of rebuilding it.
			if err := f.removeEntry(o.dir2, o.name2); err != nil {
				return err
			}
			delete(f.dn[o.dir].entries, o.name)
			f.dn[o.dir2].entries[o.name2] = c
			cd := f.dn[c]
			cd.parent, cd.name = o.dir2, o.name2
			return os.Rename(filepath.Join(src, o.name), filepath.Join(dst, o.name2))
		}
		if ok {
			if err := f.removeEntry(o.dir, o.name); err != nil {
				return err
			}
		}
		return f.addEntry(o.dir2, o.name2, c)
	case opExchange:
		a, aok := f.dn[o.dir].entries[o.name]
		b, bok := f.dn[o.dir2].entries[o.name2]
		if aok {
			if err := f.removeEntry(o.dir, o.name); err != nil {
				return err
			}
		}
		if bok {
			if err := f.removeEntry(o.dir2, o.name2); err != nil {
				return err
			}
			if err := f.addEntry(o.dir, o.name, b); err != nil {
				return err
			}
		}
		if aok {
			return f.addEntry(o.dir2, o.name2, a)
		}
	}
	return nil
}

// syncDirLocked makes the entry operations of directory dir durable: every
// pending operation on dir, plus (transitively) every earlier pending
// operation on a directory that one of those also touched, applied in their
// original order. The closure keeps the durable state a state the live
// namespace could have passed through per directory: a rename a/x -> b/y made
// durable by fsync(b) also commits the earlier create of a/x (a journal
// commits a rename as one transaction after the transactions it depends on).
func (f *FS) syncDirLocked(dir uint64) error {
	need := map[uint64]bool{dir: true}
	mark := make([]bool, len(f.log))
	for i := len(f.log) - 1; i >= 0; i-- {
		if f.log[i].touches(need) {
			mark[i] = true
			for _, d := range f.log[i].dirs() {
				need[d] = true
			}
		}
	}
	var rest []nsOp
	for i := range f.log {
		if !mark[i] {
			rest = append(rest, f.log[i])
			continue
		}
		if err := f.apply(&f.log[i]); err != nil {
			return fmt.Errorf("cutfs: applying durable op: %w", err)
		}
	}
	f.log = rest
	return nil
}

// syncDataLocked copies the live content, size, mode and owner of file id
// (open as fd in the live tree) into its durable inode file.
func (f *FS) syncDataLocked(id uint64, fd int) error {
	d := f.dn[id]
	if d == nil || d.kind != kFile {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	d.mode, d.uid, d.gid = st.Mode&0o7777, int(st.Uid), int(st.Gid)
	out, err := unix.Open(f.inoPath(id), unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer unix.Close(out)
	d.hasData = true
	if err := copyRange(fd, out, st.Size); err != nil {
		return err
	}
	if err := unix.Ftruncate(out, st.Size); err != nil {
		return err
	}
	unix.Fchown(out, d.uid, d.gid)
	unix.Fchmod(out, d.mode)
	return nil
}

func copyRange(in, out int, size int64) error {
	var off int64
	for off < size {
		roff, woff := off, off
		n, err := unix.CopyFileRange(in, &roff, out, &woff, int(min(size-off, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
				return copyRead(in, out, off, size)
			}
			return err
		}
		if n == 0 {
			break
		}
		off += int64(n)
	}
	return nil
}

func copyRead(in, out int, off, size int64) error {
	buf := make([]byte, 1<<20)
	for off < size {
		n, err := unix.Pread(in, buf[:min(int64(len(buf)), size-off)], off)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if _, err := unix.Pwrite(out, buf[:n], off); err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}

// boot rebuilds the state directory from the durable tree in backing: the
// inode store is rebuilt by hard-linking every durable file, the live tree is
// a copy of the durable tree (the page cache after a reboot is empty).
func (f *FS) boot() error {
	state := filepath.Join(f.backing, stateDir)
	if err := os.RemoveAll(state); err != nil {
		return err
	}
	f.live = filepath.Join(state, "live")
	for _, d := range []string{state, filepath.Join(state, "ino"), f.live} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	var rst unix.Stat_t
	if err := unix.Stat(f.backing, &rst); err != nil {
		return err
	}
	f.dn = map[uint64]*dnode{rootID: {kind: kDir, mode: rst.Mode & 0o7777, uid: int(rst.Uid), gid: int(rst.Gid), entries: map[string]uint64{}}}
	f.next = rootID + 1
	f.ids = map[uint64]uint64{}
	os.Chmod(f.live, os.FileMode(rst.Mode&0o777)|modeExtra(rst.Mode))
	os.Lchown(f.live, int(rst.Uid), int(rst.Gid))
	if err := f.mapLive(f.live, rootID); err != nil {
		return err
	}
	byIno := map[uint64]uint64{}  // backing st_ino -> id (hard links)
	liveOf := map[uint64]string{} // id -> first live path
	return f.bootDir(f.backing, f.live, rootID, byIno, liveOf)
}

func (f *FS) mapLive(p string, id uint64) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err
	}
	f.ids[st.Ino] = id
	return nil
}

func (f *FS) bootDir(src, live string, dir uint64, byIno map[uint64]uint64, liveOf map[uint64]string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if dir == rootID && e.Name() == stateDir {
			continue
		}
		sp, lp := filepath.Join(src, e.Name()), filepath.Join(live, e.Name())
		var st unix.Stat_t
		if err := unix.Lstat(sp, &st); err != nil {
			return err
		}
		mode := st.Mode & 0o7777
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			id := f.newID(&dnode{kind: kDir, mode: mode, uid: int(st.Uid), gid: int(st.Gid), entries: map[string]uint64{}, parent: dir, name: e.Name()})
			f.dn[dir].entries[e.Name()] = id
			if err := os.Mkdir(lp, 0o700); err != nil {
				return err
			}
			os.Chmod(lp, os.FileMode(mode&0o777)|modeExtra(mode))
			os.Lchown(lp, int(st.Uid), int(st.Gid))
			if err := f.mapLive(lp, id); err != nil {
				return err
			}
			if err := f.bootDir(sp, lp, id, byIno, liveOf); err != nil {
				return err
			}
		case unix.S_IFLNK:
			t, err := os.Readlink(sp)
			if err != nil {
				return err
			}
			id := f.newID(&dnode{kind: kSymlink, mode: mode, uid: int(st.Uid), gid: int(st.Gid), target: t})
			f.dn[dir].entries[e.Name()] = id
			if err := os.Symlink(t, lp); err != nil {
				return err
			}
			os.Lchown(lp, int(st.Uid), int(st.Gid))
			if err := f.mapLive(lp, id); err != nil {
				return err
			}
		case unix.S_IFREG:
			if id, ok := byIno[st.Ino]; ok {
				f.dn[dir].entries[e.Name()] = id
				if err := os.Link(liveOf[id], lp); err != nil {
					return err
				}
				continue
			}
			id := f.newID(&dnode{kind: kFile, mode: mode, uid: int(st.Uid), gid: int(st.Gid), hasData: true})
			byIno[st.Ino] = id
			liveOf[id] = lp
			f.dn[dir].entries[e.Name()] = id
			if err := os.Link(sp, f.inoPath(id)); err != nil {
				return err
			}
			if err := copyFile(sp, lp, st); err != nil {
				return err
			}
			if err := f.mapLive(lp, id); err != nil {
				return err
			}
		default:
			// FIFOs, sockets and devices are not modelled; they do not survive.
		}
	}
	return nil
}

func copyFile(src, dst string, st unix.Stat_t) error {
	in, err := unix.Open(src, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(in)
	out, err := unix.Open(dst, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer unix.Close(out)
	if err := copyRange(in, out, st.Size); err != nil {
		return err
	}
	if err := unix.Ftruncate(out, st.Size); err != nil {
		return err
	}
	unix.Fchown(out, int(st.Uid), int(st.Gid))
	return unix.Fchmod(out, st.Mode&0o7777)
}

func (f *FS) newID(d *dnode) uint64 {
	id := f.next
	f.next++
	f.dn[id] = d
	return id
}
