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
// afterwards faults its pages back in from the cache, a minor fault per
// 64 KiB. Android's app compaction does the same to cached apps.
package resident

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// UnmapCode drops the calling process's page-table mappings of the
// read-only segments of its executable (code, read-only data, the
// runtime's tables) and returns how many bytes of address space it
// advised. Writable segments are left alone: their written pages are the
// process's own. It is safe while other threads run (a thread that needs a
// page faults it back in), and after the executable was replaced by a
// rename (the mappings name the same inode): writing to a running
// executable in place fails with ETXTBSY.
func UnmapCode() (int64, error) {
	var exe unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &exe); err != nil {
		return 0, fmt.Errorf("unmap code: %w", err)
	}
	path, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("unmap code: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("unmap code: %w", err)
	}
	defer f.Close()
	var ranges [][2]uintptr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lo, hi, ok := ownReadOnly(sc.Text(), exe, path)
		if ok {
			ranges = append(ranges, [2]uintptr{lo, hi})
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("unmap code: read /proc/self/maps: %w", err)
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

// ownReadOnly parses a /proc/PID/maps line and reports whether it is a
// private mapping without write permission of the executable: the file
// with exe's device and inode or, where those differ from what the
// mapping shows (an executable on overlayfs), at path.
//
//	00400000-00c5d000 r-xp 00000000 fe:01 1234567   /usr/bin/flick
func ownReadOnly(line string, exe unix.Stat_t, path string) (lo, hi uintptr, ok bool) {
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

// sameFile: a maps line's "maj:min" (hex) and inode name exe's file.
func sameFile(dev, inode string, exe unix.Stat_t) bool {
	ino, err := strconv.ParseUint(inode, 10, 64)
	if err != nil || ino != exe.Ino {
		return false
	}
	maj, mnr, found := strings.Cut(dev, ":")
	ma, err1 := strconv.ParseUint(maj, 16, 32)
	mi, err2 := strconv.ParseUint(mnr, 16, 32)
	return found && err1 == nil && err2 == nil && unix.Mkdev(uint32(ma), uint32(mi)) == exe.Dev
}
