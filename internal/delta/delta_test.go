package delta

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/opencontainers/go-digest"
)

type file struct {
	name string
	body []byte
	typ  byte
	link string
	mod  time.Time
}

func mktar(t testing.TB, files []file, format tar.Format) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		typ := f.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mod := f.mod
		if mod.IsZero() {
			mod = time.Unix(1700000000, 0)
		}
		h := &tar.Header{Name: f.name, Typeflag: typ, Mode: 0o644, Linkname: f.link, ModTime: mod, Format: format,
			Uname: "root", Gname: "root"}
		if typ == tar.TypeReg {
			h.Size = int64(len(f.body))
		}
		if typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write(f.body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func random(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func encode(t testing.TB, base [][]byte, target []byte) ([]byte, Stats, *Basis) {
	t.Helper()
	b := NewBasis(t.TempDir())
	t.Cleanup(func() { b.Close() })
	for _, l := range base {
		if err := b.AddLayer(bytes.NewReader(l)); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	st, err := Encode(context.Background(), bytes.NewReader(target), b, &out)
	if err != nil {
		t.Fatal(err)
	}
	if st.DiffID != digest.FromBytes(target) {
		t.Fatalf("encoder diffID %s, want %s", st.DiffID, digest.FromBytes(target))
	}
	return out.Bytes(), st, b
}

func apply(t testing.TB, blob []byte, base Base) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	_, err := Apply(context.Background(), bytes.NewReader(blob), base, &out)
	return out.Bytes(), err
}

func scenario(t testing.TB) (base [][]byte, target []byte) {
	bin := imagegen.Program(1, 300<<10)
	bin2 := append([]byte(nil), bin...)
	copy(bin2[1000:], "a one-line change moved some code")
	bin2 = append(bin2[:5000], append([]byte("inserted bytes shift everything after"), bin2[5000:]...)...)
	lib := random(3, 70<<10)
	long := strings.Repeat("very-long-directory-name/", 8) + "file.txt"
	base = [][]byte{
		mktar(t, []file{
			{name: "usr/", typ: tar.TypeDir},
			{name: "usr/lib/libz.so.1", body: lib},
			{name: "etc/os-release", body: []byte("ID=debian\n")},
		}, tar.FormatUnknown),
		mktar(t, []file{
			{name: "app/", typ: tar.TypeDir},
			{name: "app/server", body: bin},
			{name: "app/config.json", body: []byte(`{"port":8080}`)},
			{name: long, body: []byte("long names use PAX records")},
		}, tar.FormatPAX),
	}
	target = mktar(t, []file{
		{name: "app/", typ: tar.TypeDir, mod: time.Unix(1800000000, 0)},
		{name: "app/server", body: bin2, mod: time.Unix(1800000000, 0)},
		{name: "app/config.json", body: []byte(`{"port":8081}`), mod: time.Unix(1800000000, 0)},
		{name: "app/vendor/libz.so.1", body: lib, mod: time.Unix(1800000000, 0)}, // moved from another layer
		{name: "app/current", typ: tar.TypeSymlink, link: "server"},
		{name: "app/server.hard", typ: tar.TypeLink, link: "app/server"},
		{name: long, body: []byte("long names use PAX records")},
		{name: "app/new.txt", body: []byte("a brand new file\n")},
		{name: "app/empty", body: nil},
	}, tar.FormatPAX)
	return base, target
}

func TestRoundTrip(t *testing.T) {
	base, target := scenario(t)
	blob, st, basis := encode(t, base, target)
	got, err := apply(t, blob, basis)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, target) {
		t.Fatalf("rebuilt tar differs from the target (%d vs %d bytes)", len(got), len(target))
	}
	if st.CopiedFiles != 2 || st.PatchFiles != 1 {
		t.Errorf("copied %d files, patched %d; want 2 copied (moved lib, long name) and 1 patched (server): %+v", st.CopiedFiles, st.PatchFiles, st)
	}
	if int64(len(blob)) > st.TarBytes/50 {
		t.Errorf("delta is %d bytes for a %d-byte layer: copy and patch are not working", len(blob), st.TarBytes)
	}
	t.Logf("target %d bytes, delta %d bytes: %+v", len(target), len(blob), st)
}

// extract writes a tar's regular files, directories and symlinks under dir,
// as a hub's snapshot holds them.
func extract(t testing.TB, layer []byte, dir string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err != nil {
			return
		}
		p := filepath.Join(dir, cleanName(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(p), 0o755)
			b := new(bytes.Buffer)
			b.ReadFrom(tr)
			if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.Symlink(h.Linkname, p)
		}
	}
}

func dirBase(t testing.TB, base [][]byte) DirBase {
	var d DirBase
	for _, l := range base {
		dir := t.TempDir()
		extract(t, l, dir)
		d = append(d, dir)
	}
	return d
}

func TestApplyFromDirectories(t *testing.T) {
	base, target := scenario(t)
	blob, _, _ := encode(t, base, target)
	got, err := apply(t, blob, dirBase(t, base))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, target) {
		t.Fatal("rebuilt tar differs from the target")
	}
}

func TestTimestampOnlyRebuildIsTiny(t *testing.T) {
	var files, files2 []file
	for i := range 300 {
		name := filepath.Join("node_modules", "pkg"+string(rune('a'+i%26)), "lib", "file"+strings.Repeat("x", i%7)+string(rune('a'+i/26))+".js")
		body := imagegen.Program(uint64(i), 2000+i*37)
		files = append(files, file{name: name, body: body, mod: time.Unix(1700000000, 0)})
		files2 = append(files2, file{name: name, body: body, mod: time.Unix(1700086400+int64(i%3), 0)})
	}
	base := [][]byte{mktar(t, files, tar.FormatUnknown)}
	target := mktar(t, files2, tar.FormatUnknown)
	blob, st, basis := encode(t, base, target)
	if got, err := apply(t, blob, basis); err != nil || !bytes.Equal(got, target) {
		t.Fatalf("round trip failed: %v", err)
	}
	if st.CopiedFiles != 300 {
		t.Fatalf("copied %d of 300 unchanged files", st.CopiedFiles)
	}
	t.Logf("%d files, %d-byte tar: delta %d bytes (%.1f bytes per file)", 300, len(target), len(blob), float64(len(blob))/300)
}

func TestCorruptDeltaFails(t *testing.T) {
	base, target := scenario(t)
	blob, _, basis := encode(t, base, target)
	for _, tc := range []struct {
		name string
		blob []byte
	}{
		{"empty", nil},
		{"bad magic", append([]byte("XXXXXXX\n"), blob[8:]...)},
		{"truncated", blob[:len(blob)/2]},
		{"truncated by one byte", blob[:len(blob)-1]},
		{"bit flip", flip(blob, len(blob)/2)},
		{"bit flip at the end", flip(blob, len(blob)-3)},
		{"trailing garbage", append(append([]byte(nil), blob...), 1, 2, 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := apply(t, tc.blob, basis)
			if err == nil {
				t.Fatalf("applied a corrupt delta without error (%d bytes out)", len(got))
			}
			if bytes.Equal(got, target) && !strings.Contains(tc.name, "garbage") {
				// Producing the right bytes is harmless, but then there
				// should have been no error: the corruption was elsewhere.
				t.Logf("output matched despite %v", err)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x10
	return c
}

func TestWrongBaseFails(t *testing.T) {
	base, target := scenario(t)
	blob, _, _ := encode(t, base, target)
	// Same paths, same sizes, different bytes: only the hash can tell.
	other := dirBase(t, base)
	p := filepath.Join(other[0], "usr/lib/libz.so.1")
	b, _ := os.ReadFile(p)
	b[100] ^= 1
	os.WriteFile(p, b, 0o644)
	_, err := apply(t, blob, other)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "hashes to") {
		t.Fatalf("want a hash mismatch, got %v", err)
	}
	// A base missing a file the delta reads.
	os.Remove(p)
	if _, err := apply(t, blob, other); err == nil || !strings.Contains(err.Error(), "libz.so.1") {
		t.Fatalf("want an error naming the missing base file, got %v", err)
	}
}

func TestHostilePathsStayInsideTheBase(t *testing.T) {
	d := dirBase(t, [][]byte{mktar(t, []file{{name: "a", body: []byte("inside")}}, tar.FormatUnknown)})
	outside := filepath.Join(filepath.Dir(d[0]), "secret")
	os.WriteFile(outside, []byte("outside"), 0o644)
	os.Symlink("../secret", filepath.Join(d[0], "link"))
	os.Symlink("/etc/passwd", filepath.Join(d[0], "abs"))
	for _, p := range []string{"../secret", "link", "abs", "/etc/passwd", "a/../../secret"} {
		var blob bytes.Buffer
		blob.WriteString(Magic)
		zw := newTestWriter(&blob)
		ow := &opWriter{w: zw}
		ow.byte(opCopy)
		ow.uvarint(0)
		ow.bytes([]byte(p))
		ow.uvarint(6)
		zw.Close()
		if _, err := apply(t, blob.Bytes(), d); err == nil {
			t.Errorf("copy of %q from the base succeeded", p)
		}
	}
	// A FIFO in the base must not block the applier.
	if err := mkfifo(filepath.Join(d[0], "fifo")); err == nil {
		var blob bytes.Buffer
		blob.WriteString(Magic)
		zw := newTestWriter(&blob)
		ow := &opWriter{w: zw}
		ow.byte(opCopy)
		ow.uvarint(0)
		ow.bytes([]byte("fifo"))
		ow.uvarint(6)
		zw.Close()
		if _, err := apply(t, blob.Bytes(), d); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("copy from a FIFO: %v", err)
		}
	}
}

func TestLimits(t *testing.T) {
	d := dirBase(t, [][]byte{mktar(t, []file{{name: "a", body: []byte("inside")}}, tar.FormatUnknown)})
	for name, ops := range map[string]func(*opWriter){
		"layer out of range": func(ow *opWriter) { ow.byte(opCopy); ow.uvarint(7); ow.bytes(nil); ow.uvarint(1) },
		"huge header":        func(ow *opWriter) { ow.byte(opHeader); ow.uvarint(1 << 40) },
		"huge patch":         func(ow *opWriter) { ow.byte(opPatch); ow.uvarint(0); ow.bytes([]byte("a")); ow.uvarint(1 << 39) },
		"literal past end":   func(ow *opWriter) { ow.byte(opLiteral); ow.uvarint(1 << 30) },
		"unknown op":         func(ow *opWriter) { ow.byte(99) },
		"no end record":      func(ow *opWriter) { ow.byte(opLiteral); ow.bytes([]byte("abc")) },
	} {
		var blob bytes.Buffer
		blob.WriteString(Magic)
		zw := newTestWriter(&blob)
		ops(&opWriter{w: zw})
		zw.Close()
		_, err := apply(t, blob.Bytes(), d)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: want a corrupt-delta error, got %v", name, err)
		}
	}
}
