package archive

import (
	"archive/tar"
	"path"
	"strings"
	"sync"
)

const (
	// DefaultWriteBehind is the Options.WriteBehind value callers should use
	// unless they have a reason not to: 2 MiB.
	DefaultWriteBehind = 2 << 20

	// DefaultMaxEntries is the entry limit used when Options.MaxEntries is 0.
	DefaultMaxEntries = 1 << 20

	// MaxNameLen is the longest entry name or link target, in bytes, that
	// Apply accepts (Linux's PATH_MAX).
	MaxNameLen = 4096

	// copyBufferSize is the size of the pooled buffers regular file contents
	// are copied through.
	copyBufferSize = 128 << 10

	whiteoutPrefix     = ".wh."
	whiteoutMetaPrefix = ".wh..wh."
	whiteoutOpaque     = ".wh..wh..opq"

	// OverlayOpaqueXattr is the xattr Apply sets on a directory that holds a
	// ".wh..wh..opq" entry.
	OverlayOpaqueXattr = "trusted.overlay.opaque"

	paxXattrPrefix = "SCHILY.xattr."
)

// Options control Apply. The zero value is safe: no device nodes, ownership
// applied only when running as root, no write-behind.
type Options struct {
	// AllowDevices makes Apply create character and block device nodes found
	// in the tar. Otherwise they are skipped and counted in
	// Stats.SkippedDevices. FIFOs and overlayfs whiteouts (0/0 character
	// devices made from ".wh." entries) are created either way.
	AllowDevices bool

	// WriteBehind, if > 0, bounds the page cache a large regular file dirties:
	// every WriteBehind bytes Apply starts asynchronous writeback of the new
	// range (sync_file_range SYNC_FILE_RANGE_WRITE), then waits for the
	// previous range and drops it from the page cache (POSIX_FADV_DONTNEED).
	// When a file that crossed at least one WriteBehind boundary is closed,
	// its tail is written back and dropped the same way. Files smaller than
	// WriteBehind are left to normal writeback: waiting for each of them would
	// make extracting many small files as slow as fsyncing each one.
	// Callers normally use DefaultWriteBehind (2 MiB).
	WriteBehind int64

	// NoChown makes Apply skip applying the tar's uid/gid. Ownership is also
	// skipped when the process is not running with effective uid 0.
	NoChown bool

	// MaxEntries is the most entries (tar headers, including ignored ones)
	// a layer may hold; more is an errdefs.InvalidArgument error.
	// 0 (or a negative value) means DefaultMaxEntries.
	MaxEntries int
}

// Stats counts what Apply did.
type Stats struct {
	Entries        int   // tar headers read (every kind, including ignored ones)
	Files          int   // regular files created
	Dirs           int   // directory entries applied (created or updated)
	Symlinks       int   // symlinks created
	Hardlinks      int   // hardlinks created
	Whiteouts      int   // ".wh.NAME" entries turned into 0/0 character devices
	Opaques        int   // ".wh..wh..opq" entries turned into trusted.overlay.opaque
	SkippedDevices int   // device nodes skipped because AllowDevices was false
	Devices        int   // device nodes created (AllowDevices)
	Fifos          int   // FIFOs created
	DroppedXattrs  int   // xattrs not applied (not allowed, or user.* unsupported)
	Bytes          int64 // regular file bytes written
	// Contents maps the inode of every regular file written to the CRC-32C
	// of its content, computed as it was written: snapshot.TreeDigest uses
	// it to record what the layer holds without reading it back.
	Contents map[uint64]uint32
}

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, copyBufferSize)
	return &b
}}

// cleanName turns a tar entry name into a clean path relative to the layer
// root. Leading slashes are stripped (absolute names are relative to the
// root). It reports false if the name climbs above the root with "..". The
// root itself is returned as ".".
func cleanName(name string) (string, bool) {
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", false
	}
	return p, true
}

// splitName splits a clean relative path into its parent directory ("" for
// the root) and its final component.
func splitName(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// isSparse reports whether hdr describes a GNU sparse file, in either the old
// GNU format or the PAX GNU.sparse.* formats.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// xattrAllowed reports whether a layer may set the xattr name.
func xattrAllowed(name string) bool {
	switch {
	case strings.HasPrefix(name, "trusted.overlay."), strings.HasPrefix(name, "user.overlay."):
		return false
	case name == "security.capability":
		return true
	case strings.HasPrefix(name, "user.") && len(name) > len("user."):
		return true
	case strings.HasPrefix(name, "trusted.") && len(name) > len("trusted."):
		return true
	}
	return false
}

// joinName joins a clean directory path ("" for the root) and a name.
func joinName(dir, base string) string {
	if dir == "" {
		return base
	}
	return dir + "/" + base
}
