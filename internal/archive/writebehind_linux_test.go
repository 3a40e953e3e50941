//go:build linux

package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

type wbCall struct {
	op       string
	off, len int64
}

func recordWriteBehind(t *testing.T, chunk int64, sizes ...int) []wbCall {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var calls []wbCall
	w := newWriteBehind(f, chunk)
	w.start = func(_ int, off, n int64) error { calls = append(calls, wbCall{"start", off, n}); return nil }
	w.drop = func(_ int, off, n int64) error { calls = append(calls, wbCall{"drop", off, n}); return nil }
	for _, n := range sizes {
		if _, err := w.Write(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	return calls
}

func TestWriteBehindRanges(t *testing.T) {
	const K = 1 << 10
	tests := []struct {
		name  string
		chunk int64
		sizes []int
		want  []wbCall
	}{
		{"disabled", 0, []int{300 * K}, nil},
		{"small file left alone", 256 * K, []int{128 * K, 100 * K}, nil},
		{"exact chunks", 256 * K, []int{128 * K, 128 * K, 128 * K, 128 * K}, []wbCall{
			{"start", 0, 256 * K},
			{"start", 256 * K, 256 * K}, {"drop", 0, 256 * K},
			{"drop", 256 * K, 256 * K},
		}},
		{"tail", 256 * K, []int{128 * K, 128 * K, 128 * K, 128 * K, 128 * K, 50 * K}, []wbCall{
			{"start", 0, 256 * K},
			{"start", 256 * K, 256 * K}, {"drop", 0, 256 * K},
			{"start", 512 * K, 178 * K}, {"drop", 256 * K, 256 * K},
			{"drop", 512 * K, 178 * K},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := recordWriteBehind(t, tc.chunk, tc.sizes...)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("calls\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// residentPages reports how many of p's pages are in the page cache.
func residentPages(t *testing.T, p string) (resident, total int) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	data, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(data)
	pages := (len(data) + os.Getpagesize() - 1) / os.Getpagesize()
	vec := make([]byte, pages)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	for _, v := range vec {
		if v&1 != 0 {
			resident++
		}
	}
	return resident, pages
}

func TestApplyWriteBehindDropsPageCache(t *testing.T) {
	var fstype unix.Statfs_t
	dir := t.TempDir()
	if err := unix.Statfs(dir, &fstype); err != nil || fstype.Type == unix.TMPFS_MAGIC {
		t.Skip("needs a disk-backed filesystem")
	}
	body := make([]byte, 24<<20)
	rand.New(rand.NewSource(1)).Read(body)
	data := mkTar(t, tentry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "big", Mode: 0o644, Size: int64(len(body))}, body: body})
	for _, tc := range []struct {
		name    string
		wb      int64
		dropped bool
	}{{"write-behind", 1 << 20, true}, {"off", 0, false}} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(dir, tc.name)
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			st := mustApply(t, root, data, Options{WriteBehind: tc.wb, NoChown: true})
			if st.Bytes != int64(len(body)) {
				t.Errorf("bytes %d", st.Bytes)
			}
			p := filepath.Join(root, "big")
			res, total := residentPages(t, p)
			t.Logf("resident %d/%d pages", res, total)
			if tc.dropped && res > total/10 {
				t.Errorf("write-behind left %d/%d pages in the page cache", res, total)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(got) != sha256.Sum256(body) || !bytes.Equal(got[:16], body[:16]) {
				t.Errorf("content differs")
			}
		})
	}
}
