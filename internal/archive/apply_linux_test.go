//go:build linux

package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"github.com/flick-edge/flick/internal/snapshot"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flick-edge/flick/internal/errdefs"
)

func isRoot() bool { return os.Geteuid() == 0 }

func requireRoot(t *testing.T, why string) {
	t.Helper()
	if !isRoot() {
		t.Skipf("skipping: %s needs root", why)
	}
}

// testOpts are the options most tests use: ownership only as root.
func testOpts() Options { return Options{NoChown: !isRoot()} }

func apply(t *testing.T, root string, data []byte, opts Options) (Stats, error) {
	t.Helper()
	return Apply(context.Background(), root, bytes.NewReader(data), opts)
}

func mustApply(t *testing.T, root string, data []byte, opts Options) Stats {
	t.Helper()
	st, err := apply(t, root, data, opts)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return st
}

func lstat(t *testing.T, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// capV2 returns a valid VFS_CAP_REVISION_2 security.capability value granting
// the capability bit as permitted and effective.
func capV2(bit uint) []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|1) // revision 2, effective
	binary.LittleEndian.PutUint32(b[4:], 1<<bit)       // permitted[0]
	return b
}

// both runs f with openat2 and with the pathrs-lite fallback resolver.
func both(t *testing.T, f func(t *testing.T)) {
	t.Run("openat2", f)
	t.Run("pathrs-fallback", func(t *testing.T) {
		testNoOpenat2 = true
		t.Cleanup(func() { testNoOpenat2 = false })
		f(t)
	})
}

func TestApplyRoundTrip(t *testing.T) {
	both(t, testApplyRoundTrip)
}

func testApplyRoundTrip(t *testing.T) {
	l := newLayout(t)
	atime := testTime.Add(-time.Hour)
	own := func(e tentry, uid, gid int) tentry { e.hdr.Uid, e.hdr.Gid = uid, gid; return e }
	// withX adds xattrs; privileged ones (trusted.*, security.*) only when
	// running as root.
	withX := func(e tentry, kv ...string) tentry {
		e.hdr.PAXRecords = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			if !isRoot() && !strings.HasPrefix(kv[i], "user.") && xattrAllowed(kv[i]) {
				continue
			}
			e.hdr.PAXRecords["SCHILY.xattr."+kv[i]] = kv[i+1]
		}
		return e
	}
	suid := own(tfile("usr/bin/su", "#!suid", 0o4755), 0, 0)
	sgid := own(tfile("usr/bin/wall", "#!sgid", 0o2755), 0, 5)
	capped := withX(tfile("usr/bin/ping", "ping", 0o755), "security.capability", string(capV2(13)))
	xfile := withX(tfile("etc/x", "x", 0o600), "user.flick", "hello", "trusted.flick", "t", "trusted.overlay.opaque", "y", "user.overlay.redirect", "/x", "security.selinux", "bad")
	owned := own(tfile("home/u/.profile", "profile", 0o640), 1234, 5678)
	owned.hdr.AccessTime = atime
	linkOwned := own(tsymlink("home/u/link", "/etc/x"), 42, 43)
	tmp := tdir("tmp/", 0o1777)
	ro := tdir("ro/", 0o555)
	data := mkTar(t,
		tdir("./", 0o755),
		tdir("usr/", 0o755), tdir("usr/bin/", 0o755),
		suid, sgid, capped,
		tdir("etc/", 0o750),
		xfile,
		tdir("home/", 0o755), own(tdir("home/u/", 0o700), 1234, 5678), owned, linkOwned,
		tsymlink("rel", "usr/bin/su"),
		tsymlink("dangling", "/does/not/exist"),
		tlink("usr/bin/su-hard", "usr/bin/su"),
		tlink("/abs-hard", "/etc/x"),
		tmp,
		ro, tfile("ro/inside", "created in a read-only dir", 0o444),
		tentry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o620, ModTime: testTime}},
		tentry{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "global", PAXRecords: map[string]string{"comment": "ignored"}}},
		tfile("implicit/parent/file", "parents created", 0o644),
		withX(tdir("xdir/", 0o755), "user.d", "d"),
		withX(tsymlink("xlink", "xdir"), "trusted.sym", "s", "user.sym", "not allowed on symlinks"),
		withX(tentry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "xfifo", Mode: 0o600, ModTime: testTime}}, "trusted.f", "f"),
	)
	opts := testOpts()
	st := mustApply(t, l.root, data, opts)

	want := Stats{Entries: 25, Files: 7, Dirs: 8, Symlinks: 4, Hardlinks: 2, Fifos: 2, DroppedXattrs: 4, Bytes: st.Bytes}
	contents := st.Contents
	st.Contents = nil
	if !reflect.DeepEqual(st, want) {
		t.Errorf("stats = %+v, want %+v", st, want)
	}
	if len(contents) != 7 {
		t.Errorf("content checksums for %d files, want 7", len(contents))
	}
	r := l.root
	if got := readFile(t, filepath.Join(r, "usr/bin/su")); got != "#!suid" {
		t.Errorf("su content %q", got)
	}
	checkMode := func(p string, want uint32) {
		t.Helper()
		if got := lstat(t, filepath.Join(r, p)).Mode & 0o7777; got != want {
			t.Errorf("%s mode %#o, want %#o", p, got, want)
		}
	}
	checkMode("usr/bin/su", 0o4755)
	checkMode("usr/bin/wall", 0o2755)
	checkMode("usr/bin/ping", 0o755)
	checkMode("etc", 0o750)
	checkMode("etc/x", 0o600)
	checkMode("tmp", 0o1777)
	checkMode("ro", 0o555)
	checkMode("ro/inside", 0o444)
	checkMode("home/u", 0o700)
	checkMode("implicit", 0o755)
	if st := lstat(t, filepath.Join(r, "run/fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Mode&0o7777 != 0o620 {
		t.Errorf("fifo mode %#o", st.Mode)
	}

	// Symlinks are stored verbatim and never followed.
	for p, want := range map[string]string{"rel": "usr/bin/su", "dangling": "/does/not/exist", "home/u/link": "/etc/x"} {
		if got, err := os.Readlink(filepath.Join(r, p)); err != nil || got != want {
			t.Errorf("readlink %s = %q, %v; want %q", p, got, err, want)
		}
	}
	// Hardlinks share the inode.
	a, b := lstat(t, filepath.Join(r, "usr/bin/su")), lstat(t, filepath.Join(r, "usr/bin/su-hard"))
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hardlink: inodes %d/%d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	if x, h := lstat(t, filepath.Join(r, "etc/x")), lstat(t, filepath.Join(r, "abs-hard")); x.Ino != h.Ino {
		t.Errorf("absolute hardlink target not resolved in root")
	}

	// Times: files immediately, directories at the end.
	for _, p := range []string{"usr/bin/su", "etc", "usr/bin", "usr", "home/u", "ro", "home/u/link"} {
		if got := lstat(t, filepath.Join(r, p)).Mtim; got.Sec != testTime.Unix() {
			t.Errorf("%s mtime %v, want %v", p, time.Unix(got.Sec, got.Nsec).UTC(), testTime)
		}
	}
	if got := lstat(t, filepath.Join(r, "home/u/.profile")).Atim; got.Sec != atime.Unix() {
		t.Errorf("atime %v, want %v", time.Unix(got.Sec, 0).UTC(), atime)
	}

	// Xattrs: allowed ones applied, overlay and unknown namespaces dropped.
	xp := filepath.Join(r, "etc/x")
	if got := lgetxattr(t, xp, "user.flick"); got != "hello" {
		t.Errorf("user.flick = %q", got)
	}
	if isRoot() {
		if got := lgetxattr(t, xp, "trusted.flick"); got != "t" {
			t.Errorf("trusted.flick = %q", got)
		}
		if got := lgetxattr(t, filepath.Join(r, "usr/bin/ping"), "security.capability"); got != string(capV2(13)) {
			t.Errorf("security.capability = %x", got)
		}
	}
	if got := lgetxattr(t, filepath.Join(r, "xdir"), "user.d"); got != "d" {
		t.Errorf("xdir user.d = %q", got)
	}
	if isRoot() {
		if got := lgetxattr(t, filepath.Join(r, "xlink"), "trusted.sym"); got != "s" {
			t.Errorf("xlink trusted.sym = %q", got)
		}
		if _, err := lgetxattrSize(filepath.Join(r, "xdir"), "trusted.sym"); err == nil {
			t.Errorf("symlink xattr was applied to its target")
		}
		if got := lgetxattr(t, filepath.Join(r, "xfifo"), "trusted.f"); got != "f" {
			t.Errorf("xfifo trusted.f = %q", got)
		}
	}
	for _, x := range []string{"trusted.overlay.opaque", "user.overlay.redirect", "security.selinux"} {
		if _, err := lgetxattrSize(xp, x); err == nil {
			t.Errorf("%s was applied", x)
		}
	}

	// Ownership (root only).
	if isRoot() {
		for p, want := range map[string][2]uint32{"home/u/.profile": {1234, 5678}, "home/u": {1234, 5678}, "home/u/link": {42, 43}, "usr/bin/wall": {0, 5}} {
			if st := lstat(t, filepath.Join(r, p)); st.Uid != want[0] || st.Gid != want[1] {
				t.Errorf("%s owner %d:%d, want %d:%d", p, st.Uid, st.Gid, want[0], want[1])
			}
		}
		if st := lstat(t, filepath.Join(r, "usr/bin/wall")); st.Mode&0o2000 == 0 {
			t.Errorf("setgid lost by chown")
		}
	}
	l.checkUntouched(t)
	// The tree digest from the checksums taken while extracting equals the
	// one from reading the tree back (what system check does): hardlinks,
	// FIFOs, symlinks and implicit parents included.
	fromApply, _, err := snapshot.TreeDigest(l.root, contents)
	if err != nil {
		t.Fatal(err)
	}
	fromDisk, read, err := snapshot.TreeDigest(l.root, nil)
	if err != nil || fromDisk != fromApply || read == 0 {
		t.Errorf("tree digest at extraction %s, read back %s (%d bytes read, %v)", fromApply, fromDisk, read, err)
	}
}

func TestApplyReplaceExisting(t *testing.T) {
	l := newLayout(t)
	data := mkTar(t,
		tfile("f", "first", 0o644),
		tfile("f", "second", 0o600), // file over file
		tdir("d/", 0o700), tfile("d/child", "c", 0o644),
		tdir("d/", 0o750), // dir over dir: metadata only
		tdir("g/", 0o755), tfile("g/child", "c", 0o644),
		tfile("g", "file over dir", 0o644), // file over dir: dir removed
		tfile("h", "x", 0o644),
		tdir("h/", 0o711), // dir over file
		tsymlink("s", "/elsewhere"),
		tfile("s", "file over symlink", 0o644),
		tfile("t", "x", 0o644),
		tsymlink("t", "f"), // symlink over file
		tfile("l", "x", 0o644),
		tlink("l", "f"), // hardlink over file
		tlink("f", "f"), // hardlink to itself: no-op
	)
	mustApply(t, l.root, data, testOpts())
	r := l.root
	if got := readFile(t, filepath.Join(r, "f")); got != "second" {
		t.Errorf("f = %q", got)
	}
	if got := lstat(t, filepath.Join(r, "d")).Mode & 0o777; got != 0o750 {
		t.Errorf("d mode %#o", got)
	}
	if got := readFile(t, filepath.Join(r, "d/child")); got != "c" {
		t.Errorf("d/child = %q", got)
	}
	if got := readFile(t, filepath.Join(r, "g")); got != "file over dir" {
		t.Errorf("g = %q", got)
	}
	if st := lstat(t, filepath.Join(r, "h")); st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Mode&0o777 != 0o711 {
		t.Errorf("h mode %#o", st.Mode)
	}
	if got := readFile(t, filepath.Join(r, "s")); got != "file over symlink" {
		t.Errorf("s = %q", got)
	}
	if got, _ := os.Readlink(filepath.Join(r, "t")); got != "f" {
		t.Errorf("t -> %q", got)
	}
	if lstat(t, filepath.Join(r, "l")).Ino != lstat(t, filepath.Join(r, "f")).Ino {
		t.Errorf("l is not a hardlink of f")
	}
	l.checkUntouched(t)
}

func TestApplyWhiteouts(t *testing.T) {
	requireRoot(t, "creating whiteout devices and trusted.* xattrs")
	l := newLayout(t)
	data := mkTar(t,
		tfile("a/gone", "x", 0o644),
		tfile("a/.wh.gone", "", 0o644),       // removes a/gone, whiteout in its place
		tfile("b/.wh.lower-only", "", 0o644), // implicit parent b
		tdir("c/", 0o755), tfile("c/sub/f", "f", 0o644),
		tfile(".wh.c", "", 0o644), // whiteout of a directory tree
		tdir("o/", 0o755),
		tfile("o/.wh..wh..opq", "", 0o644),
		tfile("o/new", "n", 0o644),
		tfile(".wh..wh.plnk/12.34", "aufs", 0o644), // AUFS metadata: ignored
		tfile("p/.wh..wh.aufs", "", 0o644),         // ignored
		tfile(".wh..wh..opq", "", 0o644),           // opaque root
	)
	st := mustApply(t, l.root, data, Options{}) // AllowDevices false: whiteouts still created
	if st.Whiteouts != 3 || st.Opaques != 2 || st.SkippedDevices != 0 {
		t.Errorf("stats %+v", st)
	}
	r := l.root
	for _, p := range []string{"a/gone", "b/lower-only", "c"} {
		s := lstat(t, filepath.Join(r, p))
		if s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 {
			t.Errorf("%s is not a 0/0 char device: mode %#o rdev %d", p, s.Mode, s.Rdev)
		}
	}
	for _, p := range []string{"o", "."} {
		if got := lgetxattr(t, filepath.Join(r, p), OverlayOpaqueXattr); got != "y" {
			t.Errorf("%s: %s = %q", p, OverlayOpaqueXattr, got)
		}
	}
	for _, p := range []string{".wh..wh.plnk", "p/.wh..wh.aufs", "a/.wh.gone", "o/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(r, p)); err == nil {
			t.Errorf("%s was extracted", p)
		}
	}
	l.checkUntouched(t)
}

func TestApplyDevices(t *testing.T) {
	requireRoot(t, "mknod")
	devs := []tentry{tdev("dev/null", tar.TypeChar, 1, 3), tdev("dev/sda", tar.TypeBlock, 8, 0)}
	t.Run("skipped by default", func(t *testing.T) {
		l := newLayout(t)
		st := mustApply(t, l.root, mkTar(t, devs...), Options{})
		if st.SkippedDevices != 2 || st.Devices != 0 {
			t.Errorf("stats %+v", st)
		}
		if _, err := os.Lstat(filepath.Join(l.root, "dev/null")); err == nil {
			t.Errorf("device created without AllowDevices")
		}
	})
	t.Run("AllowDevices", func(t *testing.T) {
		l := newLayout(t)
		st := mustApply(t, l.root, mkTar(t, devs...), Options{AllowDevices: true})
		if st.Devices != 2 {
			t.Errorf("stats %+v", st)
		}
		if s := lstat(t, filepath.Join(l.root, "dev/null")); s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != unix.Mkdev(1, 3) || s.Mode&0o777 != 0o600 {
			t.Errorf("dev/null: mode %#o rdev %#x", s.Mode, s.Rdev)
		}
		if s := lstat(t, filepath.Join(l.root, "dev/sda")); s.Mode&unix.S_IFMT != unix.S_IFBLK || s.Rdev != unix.Mkdev(8, 0) {
			t.Errorf("dev/sda: mode %#o rdev %#x", s.Mode, s.Rdev)
		}
	})
}

// hostileCase is one hostile layer. Either wantErr is set (the error must be
// errdefs.InvalidArgument and contain it) or check verifies safe placement.
type hostileCase struct {
	name     string
	tar      func(t *testing.T, l layout) []byte
	opts     Options
	needRoot bool
	wantErr  string
	check    func(t *testing.T, l layout)
}

func exists(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); err != nil {
		t.Errorf("expected %s: %v", p, err)
	}
}

func hostileCases() []hostileCase {
	static := func(entries ...tentry) func(*testing.T, layout) []byte {
		return func(t *testing.T, _ layout) []byte { return mkTar(t, entries...) }
	}
	return []hostileCase{
		{name: "dotdot", tar: static(tfile("../evil", "x", 0o644)), wantErr: "escapes the layer root"},
		{name: "dotdot to sentinel", tar: static(tfile("../sentinel/canary", "pwned", 0o644)), wantErr: "escapes the layer root"},
		{name: "inner dotdot", tar: static(tfile("a/../../evil", "x", 0o644)), wantErr: "escapes the layer root"},
		{name: "absolute dotdot", tar: static(tfile("/../evil", "x", 0o644)), wantErr: "escapes the layer root"},
		{name: "harmless dotdot", tar: static(tfile("a/b/../c", "x", 0o644)), check: func(t *testing.T, l layout) {
			exists(t, filepath.Join(l.root, "a/c"))
		}},
		{name: "absolute path lands in root", tar: static(tfile("/etc/evil", "x", 0o644)), check: func(t *testing.T, l layout) {
			exists(t, filepath.Join(l.root, "etc/evil"))
		}},
		{name: "symlink to / then write through", tar: func(t *testing.T, l layout) []byte {
			return mkTar(t, tsymlink("x", "/"), tfile("x"+l.sentinel+"/canary", "pwned", 0o644), tfile("x/etc/evil", "x", 0o644))
		}, check: func(t *testing.T, l layout) {
			exists(t, filepath.Join(l.root, l.sentinel, "canary"))
			exists(t, filepath.Join(l.root, "etc/evil"))
		}},
		// With chroot semantics an absolute symlink to the real sentinel
		// points at root/<sentinel path>: dangling unless the layer made it.
		{name: "absolute symlink to sentinel then write through (dangling)", tar: func(t *testing.T, l layout) []byte {
			return mkTar(t, tsymlink("x", l.sentinel), tfile("x/canary", "pwned", 0o644))
		}, wantErr: "dangling symlink"},
		{name: "absolute symlink to sentinel then write through", tar: func(t *testing.T, l layout) []byte {
			return mkTar(t, tdir(l.sentinel+"/", 0o755), tsymlink("x", l.sentinel), tfile("x/canary", "pwned", 0o644), tfile("x/new", "x", 0o644))
		}, check: func(t *testing.T, l layout) {
			exists(t, filepath.Join(l.root, l.sentinel, "new"))
			if got := readFile(t, filepath.Join(l.root, l.sentinel, "canary")); got != "pwned" {
				t.Errorf("got %q", got)
			}
		}},
		{name: "relative symlink climbing out then write through", tar: static(tsymlink("x", "../../.."), tfile("x/evil", "x", 0o644)), check: func(t *testing.T, l layout) {
			exists(t, filepath.Join(l.root, "evil"))
		}},
		{name: "relative symlink to sentinel then write through", tar: static(tdir("sentinel/", 0o755), tsymlink("x", "../sentinel"), tfile("x/canary", "pwned", 0o644)), check: func(t *testing.T, l layout) {
			if got := readFile(t, filepath.Join(l.root, "sentinel/canary")); got != "pwned" {
				t.Errorf("got %q", got)
			}
		}},
		{name: "dangling symlink as parent", tar: static(tsymlink("x", "../sentinel"), tfile("x/canary", "pwned", 0o644)), wantErr: "dangling symlink"},
		{name: "dangling symlink as grandparent", tar: static(tdir("a/", 0o755), tsymlink("a/x", "/nonexistent"), tfile("a/x/y/z", "x", 0o644)), wantErr: "dangling symlink"},
		{name: "symlink chain as parent", tar: static(tdir("real/", 0o755), tsymlink("l1", "/l2"), tsymlink("l2", "real/../real"), tfile("l1/sub/f", "x", 0o644)), check: func(t *testing.T, l layout) {
			exists(t, filepath.Join(l.root, "real/sub/f"))
		}},
		{name: "nested symlinks out", tar: func(t *testing.T, l layout) []byte {
			return mkTar(t, tdir(filepath.Base(l.base)+"/sentinel/", 0o755), tdir("a/", 0o755), tsymlink("a/up", "../.."), tsymlink("a/b", "up/../../../"+filepath.Base(l.base)), tfile("a/b/sentinel/canary", "pwned", 0o644))
		}, check: func(t *testing.T, l layout) {
			exists(t, filepath.Join(l.root, filepath.Base(l.base), "sentinel/canary"))
		}},
		{name: "file replaces symlink pointing outside", tar: static(tsymlink("f", "../sentinel/canary"), tfile("f", "pwned", 0o644)), check: func(t *testing.T, l layout) {
			if s := lstat(t, filepath.Join(l.root, "f")); s.Mode&unix.S_IFMT != unix.S_IFREG {
				t.Errorf("f is not a regular file")
			}
		}},
		{name: "dir replaces symlink pointing outside", tar: func(t *testing.T, l layout) []byte {
			return mkTar(t, tsymlink("d", l.sentinel), tdir("d/", 0o700), tfile("d/evil", "x", 0o644))
		}, check: func(t *testing.T, l layout) {
			exists(t, filepath.Join(l.root, "d/evil"))
		}},
		{name: "whiteout through symlink (dangling)", tar: func(t *testing.T, l layout) []byte {
			return mkTar(t, tsymlink("x", l.sentinel), tfile("x/.wh.canary", "", 0o644))
		}, wantErr: "dangling symlink"},
		{name: "whiteout through symlink", tar: func(t *testing.T, l layout) []byte {
			return mkTar(t, tfile(l.sentinel+"/canary", "in root", 0o644), tsymlink("x", l.sentinel), tfile("x/.wh.canary", "", 0o644))
		}, check: func(t *testing.T, l layout) {
			if s := lstat(t, filepath.Join(l.root, l.sentinel, "canary")); s.Mode&unix.S_IFMT != unix.S_IFCHR {
				t.Errorf("whiteout not created inside the root")
			}
		}},
		{name: "opaque through symlink (dangling)", tar: func(t *testing.T, l layout) []byte {
			return mkTar(t, tsymlink("x", l.sentinel), tfile("x/.wh..wh..opq", "", 0o644))
		}, wantErr: "dangling symlink"},
		{name: "opaque through symlink", tar: func(t *testing.T, l layout) []byte {
			return mkTar(t, tdir(l.sentinel+"/", 0o755), tsymlink("x", l.sentinel), tfile("x/.wh..wh..opq", "", 0o644))
		}, needRoot: true, check: func(t *testing.T, l layout) {
			if got := lgetxattr(t, filepath.Join(l.root, l.sentinel), OverlayOpaqueXattr); got != "y" {
				t.Errorf("opaque xattr not set inside the root")
			}
		}},
		{name: "whiteout of dotdot", tar: static(tfile("a/.wh...", "", 0o644)), wantErr: "invalid whiteout"},
		{name: "hardlink to /etc/passwd", tar: static(tlink("h", "/etc/passwd")), wantErr: "does not exist"},
		{name: "hardlink to ../outside", tar: static(tlink("h", "../sentinel/canary")), wantErr: "escapes the layer root"},
		{name: "hardlink through symlink to outside", tar: func(t *testing.T, l layout) []byte {
			return mkTar(t, tsymlink("x", l.sentinel), tlink("h", "x/canary"))
		}, wantErr: "does not exist"},
		{name: "hardlink through dotdot symlink", tar: static(tsymlink("x", "../sentinel"), tlink("h", "x/canary")), wantErr: "does not exist"},
		{name: "hardlink to symlink links the symlink", tar: static(tsymlink("s", "/etc/passwd"), tlink("h", "s")), check: func(t *testing.T, l layout) {
			if got, err := os.Readlink(filepath.Join(l.root, "h")); err != nil || got != "/etc/passwd" {
				t.Errorf("h -> %q, %v", got, err)
			}
		}},
		{name: "hardlink to directory", tar: static(tdir("d/", 0o755), tlink("h", "d")), wantErr: "is a directory"},
		{name: "hardlink to root", tar: static(tlink("h", "/")), wantErr: "layer root"},
		{name: "symlink loop", tar: static(tsymlink("a", "b"), tsymlink("b", "a"), tfile("a/file", "x", 0o644)), wantErr: "symlink loop"},
		{name: "self symlink loop", tar: static(tsymlink("a", "a"), tdir("a/b/", 0o755)), wantErr: "symlink loop"},
		{name: "file under a file", tar: static(tfile("f", "x", 0o644), tfile("f/g", "x", 0o644)), wantErr: "not a directory"},
		{name: "root replaced by file", tar: static(tfile(".", "x", 0o644)), wantErr: "replace the layer root"},
		{name: "char device skipped", tar: static(tdev("dev/mem", tar.TypeChar, 1, 1), tdev("dev/sda", tar.TypeBlock, 8, 0)), check: func(t *testing.T, l layout) {
			if _, err := os.Lstat(filepath.Join(l.root, "dev/mem")); err == nil {
				t.Errorf("device created")
			}
		}},
		{name: "huge PAX header", tar: func(t *testing.T, l layout) []byte {
			return paxTar(paxRecord("SCHILY.xattr.user.big", strings.Repeat("A", 2<<20)))
		}, wantErr: "malformed"},
		{name: "huge name", tar: static(tfile(strings.Repeat("a/", 3000)+"f", "x", 0o644)), wantErr: "bytes long"},
		{name: "huge link target", tar: static(tsymlink("s", strings.Repeat("a/", 3000))), wantErr: "bytes long"},
		{name: "component too long", tar: static(tfile(strings.Repeat("a", 300), "x", 0o644)), wantErr: "file name too long"},
		{name: "truncated", tar: func(t *testing.T, l layout) []byte {
			b := mkTar(t, tfile("f", strings.Repeat("x", 10000), 0o644))
			return b[:512+3000]
		}, wantErr: "truncated"},
		{name: "truncated header", tar: func(t *testing.T, l layout) []byte {
			return mkTar(t, tfile("f", "x", 0o644))[:100]
		}, wantErr: "truncated"},
		{name: "too many entries", tar: static(tfile("a", "", 0o644), tfile("b", "", 0o644), tfile("c", "", 0o644)), opts: Options{MaxEntries: 2}, wantErr: "more than 2 entries"},
		{name: "garbage", tar: func(t *testing.T, l layout) []byte {
			return bytes.Repeat([]byte("this is not a tar stream\n"), 100)
		}, wantErr: "malformed"},
		{name: "unknown type", tar: func(t *testing.T, l layout) []byte {
			return append(rawHeader("weird", 'Z', 0, false), make([]byte, 1024)...)
		}, wantErr: "unsupported tar entry type"},
		{name: "old GNU sparse", tar: func(t *testing.T, l layout) []byte {
			return append(rawHeader("sparse", tar.TypeGNUSparse, 0, true), make([]byte, 1024)...)
		}, wantErr: "sparse"},
		{name: "PAX GNU sparse", tar: func(t *testing.T, l layout) []byte {
			return paxTar(paxRecord("GNU.sparse.major", "1"), paxRecord("GNU.sparse.minor", "0"),
				paxRecord("GNU.sparse.name", "sparse"), paxRecord("GNU.sparse.realsize", "1099511627776"))
		}, wantErr: "sparse"},
	}
}

// paxTar builds by hand a tar with one PAX extended header holding records,
// followed by a 512-byte regular file holding a GNU sparse 1.0 map, for
// headers archive/tar refuses to write.
func paxTar(records ...string) []byte {
	var buf bytes.Buffer
	recs := strings.Join(records, "")
	buf.Write(rawHeader("PaxHeaders/f", tar.TypeXHeader, int64(len(recs)), false))
	buf.WriteString(recs)
	buf.Write(make([]byte, (512-len(recs)%512)%512))
	body := "1\n0\n1099511627776\n"
	buf.Write(rawHeader("f", tar.TypeReg, 512, false))
	buf.WriteString(body)
	buf.Write(make([]byte, 512-len(body)+1024))
	return buf.Bytes()
}

// paxRecord formats one PAX extended header record.
func paxRecord(k, v string) string {
	s := " " + k + "=" + v + "\n"
	n := len(s)
	for {
		l := len(itoa(n)) + len(s)
		if l == n {
			return itoa(n) + s
		}
		n = l
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestApplyHostile(t *testing.T) {
	both(t, func(t *testing.T) {
		for _, tc := range hostileCases() {
			t.Run(tc.name, func(t *testing.T) {
				if tc.needRoot {
					requireRoot(t, "trusted.* xattrs")
				}
				l := newLayout(t)
				opts := tc.opts
				opts.NoChown = opts.NoChown || !isRoot()
				_, err := apply(t, l.root, tc.tar(t, l), opts)
				switch {
				case tc.wantErr != "":
					if err == nil {
						t.Fatalf("Apply succeeded, want error containing %q", tc.wantErr)
					}
					if !errdefs.Is(err, errdefs.InvalidArgument) {
						t.Errorf("error class %v, want invalid argument: %v", errdefs.ClassOf(err), err)
					}
					if !strings.Contains(err.Error(), tc.wantErr) {
						t.Errorf("error %q does not contain %q", err, tc.wantErr)
					}
				case err != nil:
					t.Fatalf("Apply: %v", err)
				case tc.check != nil:
					tc.check(t, l)
				}
				l.checkUntouched(t)
			})
		}
	})
}

func TestApplyErrorNamesEntry(t *testing.T) {
	l := newLayout(t)
	_, err := apply(t, l.root, mkTar(t, tfile("ok", "x", 0o644), tlink("bad/link", "../../x")), testOpts())
	if err == nil || !strings.Contains(err.Error(), `"bad/link"`) {
		t.Fatalf("error does not name the entry: %v", err)
	}
}

func TestApplyReadsToEOF(t *testing.T) {
	l := newLayout(t)
	data := mkTar(t, tfile("f", "hello", 0o644))
	trailing := bytes.Repeat([]byte{0}, 8192) // typical tar padding past EOA
	trailing = append(trailing, []byte("and some trailing junk")...)
	full := append(append([]byte{}, data...), trailing...)
	h := sha256.New()
	r := io.TeeReader(bytes.NewReader(full), h)
	if _, err := Apply(context.Background(), l.root, r, testOpts()); err != nil {
		t.Fatal(err)
	}
	if got, want := h.Sum(nil), sha256.Sum256(full); !bytes.Equal(got, want[:]) {
		t.Errorf("Apply did not read the stream to EOF")
	}
}

func TestApplyEmptyStream(t *testing.T) {
	l := newLayout(t)
	st, err := apply(t, l.root, nil, testOpts())
	if err != nil || !reflect.DeepEqual(st, Stats{}) {
		t.Errorf("empty stream: %+v %v", st, err)
	}
}

// errReader fails after n bytes.
type errReader struct {
	r   io.Reader
	n   int
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, e.err
	}
	if len(p) > e.n {
		p = p[:e.n]
	}
	n, err := e.r.Read(p)
	e.n -= n
	return n, err
}

func TestApplyStreamErrorPassedThrough(t *testing.T) {
	l := newLayout(t)
	data := mkTar(t, tfile("f", strings.Repeat("x", 100000), 0o644))
	boom := errdefs.NewUnavailable(errors.New("registry went away"))
	_, err := Apply(context.Background(), l.root, &errReader{r: bytes.NewReader(data), n: 5000, err: boom}, testOpts())
	if !errors.Is(err, boom) || !errdefs.Is(err, errdefs.Unavailable) {
		t.Errorf("stream error not passed through: %v (class %v)", err, errdefs.ClassOf(err))
	}
}

func TestApplyContextCancelled(t *testing.T) {
	l := newLayout(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Apply(ctx, l.root, bytes.NewReader(mkTar(t, tfile("f", "x", 0o644))), testOpts())
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestApplyMissingRoot(t *testing.T) {
	_, err := Apply(context.Background(), filepath.Join(t.TempDir(), "nope"), bytes.NewReader(nil), Options{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v", err)
	}
}

// mount mounts a filesystem for the test and unmounts it in cleanup.
func mount(t *testing.T, source, target, fstype, data string) {
	t.Helper()
	if err := unix.Mount(source, target, fstype, 0, data); err != nil {
		t.Skipf("cannot mount %s: %v", fstype, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", target, err)
		}
	})
}

func TestApplyDiskFull(t *testing.T) {
	requireRoot(t, "mounting tmpfs")
	dir := t.TempDir()
	mount(t, "tmpfs", dir, "tmpfs", "size=4m")
	big := tentry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "big", Mode: 0o644, Size: 16 << 20}, body: make([]byte, 16<<20)}
	_, err := apply(t, dir, mkTar(t, big), Options{WriteBehind: DefaultWriteBehind})
	if !errdefs.Is(err, errdefs.ResourceExhausted) {
		t.Fatalf("got %v (class %v), want resource exhausted", err, errdefs.ClassOf(err))
	}
	if !strings.Contains(err.Error(), "disk is full") || !strings.Contains(err.Error(), `"big"`) {
		t.Errorf("unclear error: %v", err)
	}
}

func TestApplyOverlay(t *testing.T) {
	requireRoot(t, "mounting overlayfs")
	base := t.TempDir()
	lower, upper, merged := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "merged")
	for _, d := range []string{lower, upper, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustApply(t, lower, mkTar(t,
		tfile("keep", "kept", 0o644),
		tfile("gone", "should be hidden", 0o644),
		tdir("d/", 0o755), tfile("d/old", "hidden by opaque", 0o644),
		tdir("e/", 0o755), tfile("e/old", "visible", 0o644),
	), Options{})
	mustApply(t, upper, mkTar(t,
		tfile(".wh.gone", "", 0o644),
		tdir("d/", 0o755), tfile("d/.wh..wh..opq", "", 0o644), tfile("d/new", "new", 0o644),
		tdir("e/", 0o755), tfile("e/new", "merged", 0o644),
	), Options{WriteBehind: DefaultWriteBehind})
	mount(t, "overlay", merged, "overlay", "lowerdir="+upper+":"+lower)

	if got := readFile(t, filepath.Join(merged, "keep")); got != "kept" {
		t.Errorf("keep = %q", got)
	}
	if _, err := os.Lstat(filepath.Join(merged, "gone")); !os.IsNotExist(err) {
		t.Errorf("whiteout did not hide lower file: %v", err)
	}
	if names := readNames(t, filepath.Join(merged, "d")); strings.Join(names, ",") != "new" {
		t.Errorf("opaque dir shows %v, want [new]", names)
	}
	if names := readNames(t, filepath.Join(merged, "e")); strings.Join(names, ",") != "new,old" {
		t.Errorf("merged dir shows %v, want [new old]", names)
	}
}
