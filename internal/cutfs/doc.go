// Package cutfs is a FUSE filesystem that loses power on demand, for testing
// that Flick's data survives a power cut (issue 7; LazyFS, as used by Jepsen,
// is the model).
//
// # Design
//
// Mount(backing, mountpoint) serves a loopback view of a private "live" tree
// (<backing>/.cutfs-state/live): what the page cache would show. backing
// itself (minus .cutfs-state) is at every instant exactly the durable state:
// an operation reaches it only when made durable. Cut drops everything else,
// makes every further operation on the mount fail with EIO, runs the OnCut
// hooks and unmounts (lazily if busy). A new Mount of the same backing is the
// reboot: it rebuilds the live tree as a copy of backing. CutAfter(n) arms a
// cut at the n-th mutating operation from now (writes, setattr, namespace
// operations and fsyncs count); that operation does not happen and fails with
// EIO, the hooks run before it returns (a driver can SIGKILL the process
// under test there).
//
// # Semantics modelled (ext4 data=ordered, read strictly)
//
//   - File data, size (truncate, extension), mode and owner are durable only
//     after fsync or fdatasync of that file (or write with O_SYNC/O_DSYNC,
//     which the kernel turns into an fsync). Nothing written since the last
//     fsync survives: no torn or partial writes are modelled, only the
//     outcome "none of it".
//   - A directory entry (create, mkdir, symlink, hard link, unlink, rmdir,
//     rename, rename exchange) is durable only after fsync of the directory
//     that holds it; a rename touches both directories and becomes durable,
//     as one step, with an fsync of either. Committing a directory's pending
//     operations also commits, in their original order, the earlier pending
//     operations on any directory those touched (a journal commits a rename
//     after the transactions it depends on). fsync of a file does not commit
//     its name (real ext4 usually does, through its journal; POSIX does not
//     promise it, and Flick must not rely on it).
//   - A name made durable whose file was never fsynced comes back empty (ext4
//     with delayed allocation); a file fsynced but whose name was never made
//     durable is lost with it. New directories (MkdirAll) need an fsync of
//     their parent before anything below them survives.
//   - Replacing a file by rename does not flush the new file's data first:
//     ext4's auto_da_alloc heuristic is NOT modelled (Flick fsyncs before it
//     renames, and a harness that is stricter than the disk finds more).
//   - syncfs(2) and sync(2) are invisible: the kernel sends FUSE_SYNCFS only
//     to virtiofs, so through /dev/fuse they make nothing durable. Run Flick
//     with --sync-mode fsync on this filesystem.
//   - Not modelled: times (atime/mtime), xattrs (live only, lost on reboot),
//     FIFOs/devices (mknod of anything but a regular file fails EPERM),
//     O_TMPFILE (EOPNOTSUPP), RENAME_WHITEOUT (EINVAL), copy_file_range
//     (ENOSYS, the kernel falls back to read/write). The name .cutfs-state at
//     the root is reserved.
//
// Every inode ever shown gets an id that is never reused; durable inode data
// lives in <backing>/.cutfs-state/ino/<id>, and durable file names in backing
// are hard links of those, so fsync of a file updates every durable name of it.
package cutfs
