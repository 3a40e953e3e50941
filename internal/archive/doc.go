// Package archive materialises OCI/Docker image layer tarballs into a
// directory that can be stacked as an overlayfs layer.
//
// # Safety model
//
// A layer tar is untrusted input: it may come from any registry and is
// extracted by a root daemon. [Apply] therefore treats every name in the
// stream as hostile and guarantees that nothing is created, modified or
// removed outside the layer root, whatever the stream contains:
//
//   - Entry names are cleaned lexically. A leading "/" is stripped, so an
//     absolute name such as "/etc/passwd" is extracted to root/etc/passwd
//     (this is what Docker and containerd do). A name whose ".." components
//     climb above the root ("../evil", "a/../../evil") is rejected with an
//     errdefs.InvalidArgument error "layer entry %q escapes the layer root".
//   - The parent directory of every entry is resolved with chroot semantics:
//     openat2(2) with RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS relative to a
//     handle on the root (Linux ≥ 5.6). Symlinks met on the way, including
//     absolute ones and ones full of "..", are interpreted as if the root were
//     "/", exactly as they will be inside the container; they can never lead
//     out of the root. On kernels without openat2 (or where seccomp hides it)
//     the same resolution is emulated by github.com/cyphar/filepath-securejoin's
//     pathrs-lite (OpenatInRoot, MkdirAllHandle), which is also used to create
//     missing parent directories.
//   - The final component is then operated on with *at system calls relative
//     to the parent's file descriptor, never following a symlink there:
//     openat(O_CREAT|O_EXCL|O_NOFOLLOW), mkdirat, symlinkat, linkat without
//     AT_SYMLINK_FOLLOW, mknodat, fchownat/utimensat with AT_SYMLINK_NOFOLLOW.
//     An existing entry is unlinked (recursively for a directory, without
//     following symlinks) before it is replaced, so data is never written
//     through a pre-existing symlink.
//   - Hardlink targets are cleaned and resolved the same way; a target that
//     escapes the root, does not exist or is a directory is rejected.
//   - Symlink loops, over-long names (> 4096 bytes), more than
//     Options.MaxEntries entries, truncated streams, sparse files and unknown
//     entry types are rejected with errdefs.InvalidArgument errors that name
//     the entry. Device nodes are only created when Options.AllowDevices is
//     set; otherwise they are skipped and counted.
//   - Extended attributes are restricted to user.*, security.capability and
//     trusted.*; trusted.overlay.* and user.overlay.* are dropped, because a
//     layer must not forge overlayfs metadata (only whiteout entries may
//     produce it, see below).
//
// The threat model is the content of the stream, not concurrent modification
// of the root directory by another process: the root must be a fresh, empty
// directory that only Apply writes to while it runs.
//
// # Overlayfs conversion
//
// Layer whiteouts are converted to overlayfs' native format as they are
// extracted: an entry ".wh.NAME" removes any NAME extracted so far and
// creates a 0/0 character device NAME in its place; an entry ".wh..wh..opq"
// in directory D sets the xattr trusted.overlay.opaque=y on D. Other
// ".wh..wh.*" entries (AUFS metadata) are ignored. The resulting directory
// can be used directly as an overlayfs lowerdir or upperdir.
//
// # Durability
//
// Apply does not fsync anything: the caller is expected to sync the finished
// tree (for example with syncfs) before it records the layer as complete.
// Options.WriteBehind only bounds the page cache that extracting a large
// layer dirties; it is not a durability mechanism.
package archive
