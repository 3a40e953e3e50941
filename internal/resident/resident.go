// Package resident gives back the memory a long-lived process keeps mapped
// but does not use: the pages of its own executable that it ran once.
//
// A Go program runs every linked package's initialisation at start-up,
// and on Linux each page fault on a file maps the 64 KiB around it
// (fault-around), so a big binary ends up with most of its code and
// read-only data in its resident set before main even runs: flick's
// daemon had 14.7 MiB of its binary mapped at start and 15.5 MiB after
// work, of which about 4 MiB is what serving requests touches. Those
// mappings are not free even though the pages are shared page cache: the
// kernel's reclaim keeps mapped executable pages active in preference to
// other file pages, so dead initialisation code competed with the apps'
// memory. UnmapCode drops the mappings (not the page cache): what runs
// afterwards faults its pages back in, from the cache while they are
// still there, a minor fault per 64 KiB. Android's app compaction does
// the same to cached apps.
package resident

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// UnmapCode drops the calling process's page-table mappings of the
// read-only segments of its executable (code, read-only data, the
// runtime's tables) whose pages are all the file's, and returns how many
// bytes of address space it advised. What it leaves alone: writable
// segments, and any mapping holding a page of the process's own (a
// position-independent build's relocated read-only data, RELRO, which the
// file would give back unrelocated; a debugger's breakpoint) or locked
// pages. It is safe while other threads run (a thread that needs a page
// faults it back in), and after the executable was replaced by a rename
// (the mappings name the same inode).
func UnmapCode() (int64, error) {
	var exe unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &exe); err != nil {
		return 0, fmt.Errorf("unmap code: %w", err)
	}
	path, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("unmap code: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("unmap code: %w", err)
	}
	defer f.Close()
	ranges, err := fileOnlyRanges(f, fileID{uint64(exe.Dev), uint64(exe.Ino)}, path)
	if err != nil {
		return 0, fmt.Errorf("unmap code: read /proc/self/smaps: %w", err)
	}
	// Advised after the file is read: the ranges are the executable's,
	// mapped at start and never moved.
	var n int64
	for _, r := range ranges {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED); errno != 0 {
			return n, fmt.Errorf("unmap code: madvise %#x-%#x: %w", r[0], r[1], errno)
		}
		n += int64(r[1] - r[0])
	}
	return n, nil
}

// fileOnlyRanges returns the address ranges of the executable's
// read-only private mappings (ownReadOnly) with no anonymous and no locked
// pages, from /proc/PID/smaps.
func fileOnlyRanges(smaps io.Reader, exe fileID, path string) ([][2]uintptr, error) {
	entries, err := readSmaps(smaps)
	var ranges [][2]uintptr
	for _, e := range entries {
		if lo, hi, own := ownReadOnly(e.header, exe, path); own && e.kB["Anonymous"] == 0 && e.kB["Locked"] == 0 {
			ranges = append(ranges, [2]uintptr{lo, hi})
		}
	}
	return ranges, err
}

// smapsEntry is one mapping of /proc/PID/smaps: its first line (as in
// /proc/PID/maps) and its "Name: N kB" fields.
type smapsEntry struct {
	header string
	kB     map[string]int64
}

// readSmaps splits /proc/PID/smaps into its mappings.
func readSmaps(r io.Reader) ([]smapsEntry, error) {
	var entries []smapsEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		name, value, isField := strings.Cut(line, ":")
		if !isField || strings.ContainsAny(name, " -") {
			// A mapping's first line ("lo-hi perms offset dev inode path").
			entries = append(entries, smapsEntry{header: line, kB: map[string]int64{}})
			continue
		}
		if len(entries) == 0 {
			continue
		}
		if v, ok := strings.CutSuffix(strings.TrimSpace(value), " kB"); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				entries[len(entries)-1].kB[name] = n
			}
		}
	}
	return entries, sc.Err()
}

// ownReadOnly parses a /proc/PID/maps line and reports whether it is a
// private mapping without write permission of the executable: the file
// with exe's device and inode or, where those differ from what the
// mapping shows (an executable on overlayfs), at path.
//
//	00400000-00c5d000 r-xp 00000000 fe:01 1234567   /usr/bin/flick
func ownReadOnly(line string, exe fileID, path string) (lo, hi uintptr, ok bool) {
	f := strings.Fields(line)
	if len(f) < 6 || len(f[1]) != 4 || f[1][0] != 'r' || f[1][1] != '-' || f[1][3] != 'p' {
		return 0, 0, false
	}
	if !sameFile(f[3], f[4], exe) && strings.Join(f[5:], " ") != path {
		return 0, 0, false
	}
	a, b, found := strings.Cut(f[0], "-")
	l, err1 := strconv.ParseUint(a, 16, 64)
	h, err2 := strconv.ParseUint(b, 16, 64)
	if !found || err1 != nil || err2 != nil || h <= l {
		return 0, 0, false
	}
	return uintptr(l), uintptr(h), true
}

// fileID is a file's device (as stat encodes it) and inode.
type fileID struct{ dev, ino uint64 }

// sameFile: a maps line's "maj:min" (hex) and inode name exe's file.
func sameFile(dev, inode string, exe fileID) bool {
	ino, err := strconv.ParseUint(inode, 10, 64)
	if err != nil || ino != exe.ino {
		return false
	}
	maj, mnr, found := strings.Cut(dev, ":")
	ma, err1 := strconv.ParseUint(maj, 16, 32)
	mi, err2 := strconv.ParseUint(mnr, 16, 32)
	return found && err1 == nil && err2 == nil && unix.Mkdev(uint32(ma), uint32(mi)) == exe.dev
}
