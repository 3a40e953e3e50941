package resident

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rssFile is how much of this process's executable's read-only mappings
// is resident, in KiB (from /proc/self/smaps).
func rssFile(t testing.TB) int {
	t.Helper()
	var exe unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &exe); err != nil {
		t.Fatal(err)
	}
	path, _ := os.Readlink("/proc/self/exe")
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries, err := readSmaps(f)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, e := range entries {
		if _, _, own := ownReadOnly(e.header, fileID{uint64(exe.Dev), uint64(exe.Ino)}, path); own {
			total += int(e.kB["Rss"])
		}
	}
	if total == 0 {
		t.Fatal("no resident mapping of the executable in /proc/self/smaps")
	}
	return total
}

// blob is 1 MiB of read-only data in the executable (embedded strings are),
// far from the code the test runs.
//
//go:embed testdata/blob
var blob string

// present counts the pages of [p, p+n) mapped in this process
// (/proc/self/pagemap, bit 63).
func present(t *testing.T, p unsafe.Pointer, n int) int {
	t.Helper()
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := uintptr(os.Getpagesize())
	first, last := uintptr(p)/page, (uintptr(p)+uintptr(n)-1)/page
	buf := make([]byte, 8*(last-first+1))
	if _, err := f.ReadAt(buf, int64(first*8)); err != nil {
		t.Fatal(err)
	}
	count := 0
	for i := 0; i < len(buf); i += 8 {
		if binary.LittleEndian.Uint64(buf[i:])>>63 == 1 {
			count++
		}
	}
	return count
}

// written lives in the executable's writable data: UnmapCode must not
// touch it.
var written = []int{1, 2, 3}

func TestUnmapCode(t *testing.T) {
	written[1] = 42
	sum := 0
	for i := 0; i < len(blob); i += 4096 {
		sum += int(blob[i])
	}
	if sum != 0 {
		t.Fatal("blob is zeros")
	}
	blobPages := present(t, unsafe.Pointer(unsafe.StringData(blob)), len(blob))
	before := rssFile(t)
	n, err := UnmapCode()
	if err != nil {
		t.Fatal(err)
	}
	afterPages := present(t, unsafe.Pointer(unsafe.StringData(blob)), len(blob))
	after := rssFile(t)
	t.Logf("advised %d KiB; resident read-only mappings %d -> %d KiB; blob %d -> %d pages", n>>10, before, after, blobPages, afterPages)
	if n < int64(len(blob)) {
		t.Fatalf("advised %d bytes, less than the blob alone", n)
	}
	// What the test runs after UnmapCode maps its 64 KiB neighbourhoods
	// again, so a few pages at the blob's ends may come back.
	if blobPages < 200 || afterPages > blobPages/4 {
		t.Fatalf("blob pages mapped: %d before, %d after; want nearly all, then nearly none", blobPages, afterPages)
	}
	if after >= before {
		t.Fatalf("resident read-only mappings went from %d to %d KiB", before, after)
	}
	if written[1] != 42 {
		t.Fatalf("data changed: %v", written)
	}
	// Code and read-only data fault back in as they are used.
	if s := fmt.Sprintf("%v %s", written, strings.Repeat("x", 3)); s != "[1 42 3] xxx" {
		t.Fatal(s)
	}
}

// After an upgrade the running executable is a deleted file (the new one
// was renamed over it): its mappings are still found and dropped, and the
// process still runs.
func TestUnmapCodeOfDeletedExecutable(t *testing.T) {
	if os.Getenv("RESIDENT_CHILD") == "1" {
		exe, _ := os.Executable()
		if err := os.Remove(exe); err != nil {
			fmt.Println("remove:", err)
			os.Exit(1)
		}
		sum := 0
		for i := 0; i < len(blob); i += 4096 {
			sum += int(blob[i])
		}
		before := present(t, unsafe.Pointer(unsafe.StringData(blob)), len(blob))
		n, err := UnmapCode()
		if err != nil || n == 0 || sum != 0 {
			fmt.Println("unmap:", n, err)
			os.Exit(1)
		}
		after := present(t, unsafe.Pointer(unsafe.StringData(blob)), len(blob))
		fmt.Printf("ok %d %d %s\n", before, after, strings.ToUpper("still runs"))
		os.Exit(0)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "child.test")
	if err := os.WriteFile(copyPath, b, 0o755); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(copyPath, "-test.run=^TestUnmapCodeOfDeletedExecutable$")
	cmd.Env = append(os.Environ(), "RESIDENT_CHILD=1")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v: %s", err, out.String())
	}
	var before, after int
	var tail string
	if _, err := fmt.Sscanf(out.String(), "ok %d %d %s", &before, &after, &tail); err != nil || tail != "STILL" {
		t.Fatalf("child said %q", out.String())
	}
	if before < 200 || after > before/4 {
		t.Fatalf("deleted executable: blob pages mapped: %d before, %d after", before, after)
	}
	if _, err := os.Stat(copyPath); !os.IsNotExist(err) {
		t.Fatalf("the child's executable should be gone: %v", err)
	}
}

func TestOwnReadOnly(t *testing.T) {
	exe := fileID{dev: unix.Mkdev(0xfe, 1), ino: 1234567}
	for _, c := range []struct {
		line   string
		ok     bool
		lo, hi uintptr
	}{
		{"00400000-00c5d000 r-xp 00000000 fe:01 1234567   /usr/bin/flick", true, 0x400000, 0xc5d000},
		{"00c5d000-01b82000 r--p 0085d000 fe:01 1234567   /usr/bin/flick (deleted)", true, 0xc5d000, 0x1b82000},
		{"01b82000-01c06000 rw-p 01782000 fe:01 1234567   /usr/bin/flick", false, 0, 0}, // data
		{"01b82000-01c06000 r--s 01782000 fe:01 1234567   /usr/bin/flick", false, 0, 0}, // shared
		{"7f00-8f00 r--p 00000000 fe:01 7654321   /var/lib/flick/meta.db", false, 0, 0}, // another file
		{"7f00-8f00 r--p 00000000 fe:02 1234567   /other/disk", false, 0, 0},            // same inode, other disk
		{"7f00-8f00 r-xp 00000000 00:2a 99   /usr/bin/flick", true, 0x7f00, 0x8f00},     // overlayfs: by path
		{"7fabb5cb8000-7fabb5dd8000 rw-p 00000000 00:00 0", false, 0, 0},                // anonymous
		{"7ffe-7fff r-xp 00000000 00:00 0   [vdso]", false, 0, 0},
		{"garbage", false, 0, 0},
		{"8f00-7f00 r-xp 00000000 fe:01 1234567   /usr/bin/flick", false, 0, 0},
	} {
		lo, hi, ok := ownReadOnly(c.line, exe, "/usr/bin/flick")
		if ok != c.ok || lo != c.lo || hi != c.hi {
			t.Errorf("%q: %#x-%#x %v, want %#x-%#x %v", c.line, lo, hi, ok, c.lo, c.hi, c.ok)
		}
	}
}

// A position-independent build has read-only data the loader relocated
// (RELRO): dropping it would read back the file's unrelocated bytes and
// crash. The program calls UnmapCode, then uses interface tables and
// function values.
func TestUnmapCodeInPIE(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the PIE program")
	}
	bin := filepath.Join(t.TempDir(), "pie")
	build := exec.Command(gobin, "build", "-buildmode=pie", "-o", bin, "./testdata/pie")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("this toolchain cannot build -buildmode=pie here: %v: %s", err, out)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ok main.square=1,main.circle=3,main.square=4") {
		t.Fatalf("PIE program after UnmapCode: %v: %s", err, out)
	}
}

func TestFileOnlyRanges(t *testing.T) {
	exe := fileID{dev: unix.Mkdev(0xfe, 1), ino: 7}
	smaps := `00400000-00500000 r-xp 00000000 fe:01 7   /usr/bin/flick
Size:               1024 kB
Rss:                 900 kB
Anonymous:             0 kB
Locked:                0 kB
VmFlags: rd ex mr mw me
00500000-00600000 r--p 00100000 fe:01 7   /usr/bin/flick
Rss:                 100 kB
Anonymous:             4 kB
Locked:                0 kB
00600000-00700000 r--p 00200000 fe:01 7   /usr/bin/flick
Anonymous:             0 kB
Locked:               64 kB
00700000-00800000 r--p 00300000 fe:01 7   /usr/bin/flick
Anonymous:             0 kB
00800000-00900000 rw-p 00400000 fe:01 7   /usr/bin/flick
Anonymous:             0 kB
7f000000-7f100000 r--p 00000000 fe:01 8   /var/lib/flick/meta.db
Anonymous:             0 kB
7ffe0000-7ffe2000 r-xp 00000000 00:00 0   [vdso]
Anonymous:             0 kB
`
	got, err := fileOnlyRanges(strings.NewReader(smaps), exe, "/usr/bin/flick")
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]uintptr{{0x400000, 0x500000}, {0x700000, 0x800000}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ranges %x, want %x (relocated and locked mappings left out)", got, want)
	}
}
