//go:build linux

package archive

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzApply feeds arbitrary bytes to Apply as a layer tar and checks that it
// neither panics nor creates, modifies or removes anything outside the root.
// Each input is applied twice: as is, and with every block that looks like a
// tar header given a correct checksum, so that mutations get past
// archive/tar's checksum test and reach Apply's own logic.
//
// The seed corpus in testdata/fuzz/FuzzApply holds hostile layers (path
// traversal, symlink escapes, bad hardlinks, loops, whiteouts, devices,
// sparse and unknown types, truncation).
func FuzzApply(f *testing.F) {
	f.Add([]byte{})
	f.Add(mkTar(f, tfile("a/b", "x", 0o644), tsymlink("s", "../.."), tfile("s/c", "y", 0o644)))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzApplyOnce(t, data)
		if fixed := fixChecksums(data); !bytes.Equal(fixed, data) {
			fuzzApplyOnce(t, fixed)
		}
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

// checkNoEscape walks the root without following symlinks. For every
// symlink it resolves the target the way the host would (not chrooted);
// a target outside the root must not be a file that was created or
// modified while Apply ran. (The sentinel, created just before, is checked
// exactly by checkUntouched instead.)
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
	err = filepath.WalkDir(l.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Errorf("walk %s: %v", p, err)
			return nil
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		resolved, err := filepath.EvalSymlinks(p)
		if err != nil || resolved == root || strings.HasPrefix(resolved, root+"/") || strings.HasPrefix(resolved+"/", sentinel+"/") {
			return nil
		}
		for _, pseudo := range []string{"/proc/", "/sys/", "/dev/"} {
			if strings.HasPrefix(resolved+"/", pseudo) {
				return nil
			}
		}
		fi, err := os.Lstat(resolved)
		if err != nil || fi.IsDir() {
			return nil
		}
		if fi.ModTime().After(start) {
			t.Errorf("symlink %s resolves outside the root to %s, modified during Apply", p, resolved)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
