//go:build linux

package archive

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FuzzApply feeds arbitrary bytes to Apply as a layer tar and checks that it
// neither panics nor creates, modifies or removes anything outside the root.
// Before the input is applied, every 512-byte block that carries a ustar or
// GNU magic gets a correct header checksum, so that mutations get past
// archive/tar's checksum test and reach Apply's own logic; all other bytes
// are used as they are.
//
// Run it with a short minimisation time, since every execution extracts
// into a fresh directory (and preferably on tmpfs):
//
//	TMPDIR=/dev/shm go test -run '^$' -fuzz=FuzzApply -fuzztime=30s -fuzzminimizetime=2s ./internal/archive/
//
// The seed corpus in testdata/fuzz/FuzzApply holds hostile layers (path
// traversal, symlink escapes, bad hardlinks, loops, whiteouts, devices,
// sparse and unknown types, truncation).
func FuzzApply(f *testing.F) {
	f.Add([]byte{})
	f.Add(mkTar(f, tfile("a/b", "x", 0o644), tsymlink("s", "../.."), tfile("s/c", "y", 0o644)))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzApplyOnce(t, fixChecksums(data))
	})
}

func fuzzApplyOnce(t *testing.T, data []byte) {
	l := newLayout(t)
	// File times come from the kernel's coarse clock, which may lag
	// time.Now by a tick.
	start := time.Now().Add(-50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := Options{NoChown: !isRoot(), MaxEntries: 4096, WriteBehind: 64 << 10}
	_, _ = Apply(ctx, l.root, bytes.NewReader(data), opts)
	if ctx.Err() != nil {
		t.Fatalf("Apply took longer than 20s on a %d-byte input", len(data))
	}
	l.checkUntouched(t)
	checkNoEscape(t, l, start)
}

// fixChecksums returns a copy of data in which every 512-byte block with a
// ustar or GNU magic has a correct header checksum.
func fixChecksums(data []byte) []byte {
	out := append([]byte(nil), data...)
	for off := 0; off+512 <= len(out); off += 512 {
		b := out[off : off+512]
		if !bytes.HasPrefix(b[257:], []byte("ustar")) {
			continue
		}
		copy(b[148:156], "        ")
		var sum int64
		for _, c := range b {
			sum += int64(c)
		}
		s := []byte("000000\x00 ")
		for i := 5; i >= 0; i-- {
			s[i] = byte('0' + sum%8)
			sum /= 8
		}
		copy(b[148:156], s)
	}
	return out
}

// checkNoEscape walks the root without following symlinks, by file
// descriptor so that arbitrarily deep trees can be walked. Every symlink is
// opened the way the host would follow it (not chrooted); if it leads
// outside the root, the file it leads to must not have been created or
// changed (ctime) while Apply ran. The sentinel, created just before Apply,
// is checked exactly by checkUntouched instead.
func checkNoEscape(t *testing.T, l layout, start time.Time) {
	t.Helper()
	root, err := filepath.EvalSymlinks(l.root)
	if err != nil {
		t.Fatal(err)
	}
	sentinel, err := filepath.EvalSymlinks(l.sentinel)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	walkAt(t, fd, ".", func(dirfd int, rel, name string) {
		lfd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_CLOEXEC, 0) // follows, host semantics
		if err != nil {
			return // dangling, loop, too long: nothing was reached
		}
		defer unix.Close(lfd)
		resolved, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(lfd))
		if err != nil {
			t.Errorf("readlink: %v", err)
			return
		}
		if resolved == root || strings.HasPrefix(resolved, root+"/") || strings.HasPrefix(resolved+"/", sentinel+"/") {
			return
		}
		for _, pseudo := range []string{"/proc/", "/sys/", "/dev/"} {
			if strings.HasPrefix(resolved+"/", pseudo) {
				return
			}
		}
		var st unix.Stat_t
		if err := unix.Fstat(lfd, &st); err != nil || st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return
		}
		if ctime := time.Unix(st.Ctim.Sec, st.Ctim.Nsec); ctime.After(start) {
			t.Errorf("symlink %s resolves outside the root to %s, changed during Apply", rel, resolved)
		}
	})
}

// walkAt calls symlink for every symlink below the directory fd (which it
// closes), without following any.
func walkAt(t *testing.T, fd int, rel string, symlink func(dirfd int, rel, name string)) {
	d := os.NewFile(uintptr(fd), rel)
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		t.Errorf("readdir %s: %v", rel, err)
		return
	}
	for _, e := range ents {
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			symlink(fd, rel+"/"+e.Name(), e.Name())
		case e.IsDir():
			sub, err := unix.Openat(fd, e.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Errorf("open %s/%s: %v", rel, e.Name(), err)
				continue
			}
			walkAt(t, sub, rel+"/"+e.Name(), symlink)
		}
	}
}
