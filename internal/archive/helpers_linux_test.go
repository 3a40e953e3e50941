//go:build linux

package archive

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tentry is one entry of a test tar.
type tentry struct {
	hdr  tar.Header
	body []byte
}

var testTime = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

func tfile(name, content string, mode int64) tentry {
	return tentry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(content)), ModTime: testTime, Format: tar.FormatPAX}, body: []byte(content)}
}

func tdir(name string, mode int64) tentry {
	return tentry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: testTime, Format: tar.FormatPAX}}
}

func tsymlink(name, target string) tentry {
	return tentry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: testTime, Format: tar.FormatPAX}}
}

func tlink(name, target string) tentry {
	return tentry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644, ModTime: testTime, Format: tar.FormatPAX}}
}

func tdev(name string, typ byte, major, minor int64) tentry {
	return tentry{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0o600, Devmajor: major, Devminor: minor, ModTime: testTime, Format: tar.FormatPAX}}
}

// mkTar writes entries with archive/tar, followed by the end-of-archive
// marker.
func mkTar(t testing.TB, entries ...tentry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("WriteHeader(%q): %v", h.Name, err)
		}
		if len(e.body) > 0 {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatalf("Write(%q): %v", h.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawHeader builds a single 512-byte tar header block by hand, for entries
// archive/tar refuses to write (unknown or sparse types). gnu selects the
// old GNU magic instead of ustar.
func rawHeader(name string, typeflag byte, size int64, gnu bool) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], fmt.Sprintf("%011o\x00", testTime.Unix()))
	b[156] = typeflag
	if gnu {
		copy(b[257:265], "ustar  \x00")
	} else {
		copy(b[257:263], "ustar\x00")
		copy(b[263:265], "00")
	}
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// layout is a test directory: base/root is the layer root, base/sentinel a
// directory next to it holding one canary file that no layer may touch.
type layout struct {
	base, root, sentinel string
}

const canaryContent = "canary, do not touch"

func newLayout(t testing.TB) layout {
	t.Helper()
	base := t.TempDir()
	l := layout{base: base, root: filepath.Join(base, "root"), sentinel: filepath.Join(base, "sentinel")}
	for _, d := range []string{l.root, l.sentinel} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(l.sentinel, "canary"), []byte(canaryContent), 0o644); err != nil {
		t.Fatal(err)
	}
	// Make the tree removable by t.TempDir's cleanup whatever modes the
	// layer set (matters when not running as root).
	t.Cleanup(func() {
		_ = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	return l
}

// checkUntouched fails the test if anything next to the root or inside the
// sentinel directory was created, removed or modified.
func (l layout) checkUntouched(t testing.TB) {
	t.Helper()
	names := readNames(t, l.base)
	if strings.Join(names, ",") != "root,sentinel" {
		t.Errorf("layer wrote next to the root: %s contains %v", l.base, names)
	}
	names = readNames(t, l.sentinel)
	if strings.Join(names, ",") != "canary" {
		t.Errorf("layer wrote into the sentinel: %s contains %v", l.sentinel, names)
	}
	fi, err := os.Lstat(filepath.Join(l.sentinel, "canary"))
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Errorf("canary changed: %v %v", fi, err)
	}
	if b, err := os.ReadFile(filepath.Join(l.sentinel, "canary")); err != nil || string(b) != canaryContent {
		t.Errorf("canary content changed: %q %v", b, err)
	}
	if sz, err := lgetxattrSize(l.sentinel, OverlayOpaqueXattr); err == nil && sz >= 0 {
		t.Errorf("sentinel got %s", OverlayOpaqueXattr)
	}
}

func readNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// lgetxattrSize returns the size of xattr name on p (not following
// symlinks), or an error if it is not set.
func lgetxattrSize(p, name string) (int, error) {
	return unix.Lgetxattr(p, name, nil)
}

func lgetxattr(t testing.TB, p, name string) string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		t.Fatalf("lgetxattr(%s, %s): %v", p, name, err)
	}
	return string(buf[:n])
}
