package delta

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/flick-edge/flick/internal/imagegen"
)

// memBase is a Base held in memory, for fuzzing.
type memBase []map[string][]byte

func (m memBase) Layers() int { return len(m) }

func (m memBase) Open(layer int, p string) (io.ReadCloser, int64, error) {
	if layer < 0 || layer >= len(m) {
		return nil, 0, fs.ErrNotExist
	}
	b, ok := m[layer][p]
	if !ok {
		return nil, 0, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

func fuzzBase() memBase {
	return memBase{
		{"usr/lib/libz.so.1": random(3, 2048), "etc/os-release": []byte("ID=debian\n")},
		{"app/server": imagegen.Program(1, 3000), "app/config.json": []byte(`{"port":8080}`)},
	}
}

// smallScenario is scenario's shape at fuzzing size: a copied, a patched, a
// literal file, a symlink and a PAX name.
func smallScenario(t testing.TB) ([][]byte, []byte) {
	fb := fuzzBase()
	bin := fb[1]["app/server"]
	bin2 := append(append([]byte(nil), bin[:1000]...), append([]byte("changed"), bin[1000:]...)...)
	base := [][]byte{
		mktar(t, []file{{name: "usr/lib/libz.so.1", body: fb[0]["usr/lib/libz.so.1"]}, {name: "etc/os-release", body: fb[0]["etc/os-release"]}}, tar.FormatUnknown),
		mktar(t, []file{{name: "app/server", body: bin}, {name: "app/config.json", body: fb[1]["app/config.json"]}}, tar.FormatPAX),
	}
	target := mktar(t, []file{
		{name: "app/server", body: bin2},
		{name: "app/vendor/libz.so.1", body: fb[0]["usr/lib/libz.so.1"]},
		{name: "app/new.txt", body: []byte("new\n")},
		{name: "app/link", typ: tar.TypeSymlink, link: "server"},
		{name: strings.Repeat("long/", 30) + "name", body: []byte("pax")},
	}, tar.FormatPAX)
	return base, target
}

// FuzzApply feeds arbitrary blobs to the applier: it must fail cleanly (no
// panic, no hang, bounded memory), and whatever it accepts must hash to the
// digest it returns.
func FuzzApply(f *testing.F) {
	// Small inputs: coverage instrumentation makes zstd slow.
	base, target := smallScenario(f)
	blob, _, _ := encode(f, base, target)
	f.Add(blob)
	f.Add([]byte(Magic))
	base2 := fuzzBase()
	f.Fuzz(func(t *testing.T, blob []byte) {
		var out bytes.Buffer
		d, err := Apply(context.Background(), bytes.NewReader(blob), base2, &out)
		if err == nil {
			if got := digestOf(out.Bytes()); got != d {
				t.Fatalf("accepted a delta whose output hashes to %s but reported %s", got, d)
			}
		}
	})
}

// FuzzRoundTrip encodes arbitrary bytes as a target layer (a tar, or not)
// against a fixed base: applying the delta must give back exactly those bytes.
func FuzzRoundTrip(f *testing.F) {
	base, target := smallScenario(f)
	f.Add(target)
	f.Add(mktar(f, []file{{name: "app/server", body: imagegen.Program(1, 5000)}, {name: "x", typ: tar.TypeSymlink, link: "y"}}, tar.FormatGNU))
	f.Add([]byte("not a tar at all"))
	b := NewBasis(f.TempDir())
	for _, l := range base {
		if err := b.AddLayer(bytes.NewReader(l)); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, target []byte) {
		if len(target) > 64<<10 {
			return
		}
		var blob bytes.Buffer
		st, err := Encode(context.Background(), bytes.NewReader(target), b, &blob)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		var out bytes.Buffer
		if _, err := Apply(context.Background(), &blob, b, &out); err != nil {
			t.Fatalf("apply: %v (%+v)", err, st)
		}
		if !bytes.Equal(out.Bytes(), target) {
			t.Fatalf("round trip changed the bytes: %d in, %d out", len(target), out.Len())
		}
	})
}
