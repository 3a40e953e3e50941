package imagegen

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// streamDigest reads rc to the end and returns its sha256 and length.
func streamDigest(t *testing.T, rc io.ReadCloser, err error) (v1.Hash, int64) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h, n, err := v1.SHA256(rc)
	if err != nil {
		t.Fatal(err)
	}
	return h, n
}

// checkLayer checks that l's streams match its digests and size.
func checkLayer(t *testing.T, l v1.Layer) {
	t.Helper()
	digest, _ := l.Digest()
	diffID, _ := l.DiffID()
	size, _ := l.Size()
	rc, err := l.Compressed()
	if h, n := streamDigest(t, rc, err); h != digest || n != size {
		t.Errorf("Compressed() = %s (%d bytes), want %s (%d bytes)", h, n, digest, size)
	}
	rc, err = l.Uncompressed()
	if h, _ := streamDigest(t, rc, err); h != diffID {
		t.Errorf("Uncompressed() = %s, want diffID %s", h, diffID)
	}
}

// validateImage checks that img's manifest, config and layers agree.
func validateImage(t *testing.T, img v1.Image) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawConfigFile()
	if h, _, _ := v1.SHA256(bytes.NewReader(raw)); h != m.Config.Digest || int64(len(raw)) != m.Config.Size {
		t.Errorf("config digest %s size %d, manifest says %s %d", h, len(raw), m.Config.Digest, m.Config.Size)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	if len(layers) != len(m.Layers) || len(cf.RootFS.DiffIDs) != len(m.Layers) {
		t.Fatalf("%d layers, %d descriptors, %d diffIDs", len(layers), len(m.Layers), len(cf.RootFS.DiffIDs))
	}
	for i, l := range layers {
		checkLayer(t, l)
		d, _ := l.Digest()
		diff, _ := l.DiffID()
		size, _ := l.Size()
		mt, _ := l.MediaType()
		if d != m.Layers[i].Digest || size != m.Layers[i].Size || mt != m.Layers[i].MediaType || diff != cf.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: %s %d %s %s, manifest says %+v, diffID %s", i, d, size, mt, diff, m.Layers[i], cf.RootFS.DiffIDs[i])
		}
	}
}

func TestRandomLayerDeterministic(t *testing.T) {
	for _, c := range []Compression{Gzip, Zstd, Uncompressed} {
		t.Run(c.String(), func(t *testing.T) {
			a, err := RandomLayer(42, 20, 1<<20, c)
			if err != nil {
				t.Fatal(err)
			}
			b, err := RandomLayer(42, 20, 1<<20, c)
			if err != nil {
				t.Fatal(err)
			}
			other, err := RandomLayer(43, 20, 1<<20, c)
			if err != nil {
				t.Fatal(err)
			}
			da, _ := a.Digest()
			db, _ := b.Digest()
			dOther, _ := other.Digest()
			if da != db {
				t.Errorf("same seed, different digests: %s, %s", da, db)
			}
			if da == dOther {
				t.Errorf("seeds 42 and 43 give the same digest %s", da)
			}
			checkLayer(t, a)
			// Read twice: the stream is generated anew each time.
			checkLayer(t, a)

			// Contents: 20 files totalling exactly 1 MiB, in nested dirs.
			rc, _ := a.Uncompressed()
			defer rc.Close()
			tr := tar.NewReader(rc)
			var files int
			var total int64
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(h.Name, "rand-42/") {
					t.Errorf("entry %q outside rand-42/", h.Name)
				}
				if h.Typeflag == tar.TypeReg {
					files++
					total += h.Size
					if strings.Count(h.Name, "/") < 3 {
						t.Errorf("file %q not nested", h.Name)
					}
				}
			}
			if files != 20 || total != 1<<20 {
				t.Errorf("got %d files, %d bytes; want 20 files, %d bytes", files, total, 1<<20)
			}
			// Incompressible: the compressed blob is not much smaller.
			if size, _ := a.Size(); c != Uncompressed && size < 1<<20 {
				t.Errorf("compressed size %d < content size: content is compressible", size)
			}
		})
	}
}

func TestRandomLayerStreams(t *testing.T) {
	const size = 64 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l, err := RandomLayer(7, 50, size, Gzip)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	h, n := streamDigest(t, rc, err)
	runtime.ReadMemStats(&after)
	if d, _ := l.Digest(); h != d {
		t.Errorf("Compressed() = %s, want %s", h, d)
	}
	if n < size {
		t.Errorf("compressed size %d < %d", n, size)
	}
	// Two full passes over 64 MiB allocate far less than 64 MiB in all.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("allocated %d MiB for a %d MiB layer: not streaming", alloc>>20, size>>20)
	}
}

func TestLayerEntriesAsGiven(t *testing.T) {
	mtime := time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)
	files := []File{
		{Name: "etc/", Typeflag: tar.TypeDir},
		{Name: "etc/hostname", Body: []byte("box\n"), Mode: 0o600, Uid: 1000, Gid: 1001, ModTime: mtime},
		{Name: "../../escape", Body: []byte("evil")},
		{Name: "/abs/path", Body: []byte("abs")},
		{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "../../../etc/shadow"},
		{Name: "hard", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"},
		{Name: "dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666},
		{Name: "etc/hostname", Body: []byte("duplicate")},
		{Name: "x", Body: []byte("x"), Xattrs: map[string]string{"user.a": "1", "security.capability": "\x01\x00"}},
		{Name: "setuid", Body: []byte("s"), Mode: 0o4755},
		{Name: "etc/.wh.hostname"},
		{Name: strings.Repeat("long/", 60) + "name", Body: []byte("long")},
	}
	for _, c := range []Compression{Gzip, Zstd, Uncompressed} {
		l, err := Layer(files, c)
		if err != nil {
			t.Fatal(err)
		}
		checkLayer(t, l)
		rc, _ := l.Uncompressed()
		tr := tar.NewReader(rc)
		for i, want := range files {
			h, err := tr.Next()
			if err != nil {
				t.Fatalf("%v: entry %d: %v", c, i, err)
			}
			body, _ := io.ReadAll(tr)
			wh := want.header()
			if h.Name != want.Name || h.Typeflag != wh.Typeflag || h.Linkname != want.Linkname ||
				h.Mode != wh.Mode || h.Uid != want.Uid || h.Gid != want.Gid ||
				!h.ModTime.Equal(wh.ModTime) || h.Devmajor != want.Devmajor || h.Devminor != want.Devminor ||
				!bytes.Equal(body, want.Body) {
				t.Errorf("%v: entry %d = %+v %q, want %+v", c, i, h, body, want)
			}
			for k, v := range want.Xattrs {
				if h.PAXRecords["SCHILY.xattr."+k] != v {
					t.Errorf("%v: entry %d: xattr %s = %q, want %q", c, i, k, h.PAXRecords["SCHILY.xattr."+k], v)
				}
			}
		}
		if _, err := tr.Next(); err != io.EOF {
			t.Errorf("%v: extra entries after the last: %v", c, err)
		}
		rc.Close()
	}

	// Same files, same digest.
	a, _ := Layer(files, Gzip)
	b, _ := Layer(files, Gzip)
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("Layer is not deterministic: %s, %s", da, db)
	}
}

func TestMediaTypes(t *testing.T) {
	gz, _ := RandomLayer(1, 2, 1000, Gzip)
	zs, _ := RandomLayer(2, 2, 1000, Zstd)
	raw, _ := RandomLayer(3, 2, 1000, Uncompressed)
	for _, tc := range []struct {
		name     string
		layers   []v1.Layer
		opts     []ImageOption
		manifest types.MediaType
		layerMTs []types.MediaType
	}{
		{"docker", []v1.Layer{gz, raw}, nil, types.DockerManifestSchema2,
			[]types.MediaType{types.DockerLayer, types.DockerUncompressedLayer}},
		{"oci", []v1.Layer{gz, raw}, []ImageOption{WithOCI(true)}, types.OCIManifestSchema1,
			[]types.MediaType{types.OCILayer, types.OCIUncompressedLayer}},
		{"zstd-default-oci", []v1.Layer{gz, zs}, nil, types.OCIManifestSchema1,
			[]types.MediaType{types.OCILayer, types.OCILayerZStd}},
		{"zstd-forced-docker", []v1.Layer{gz, zs}, []ImageOption{WithOCI(false)}, types.DockerManifestSchema2,
			[]types.MediaType{types.DockerLayer, types.OCILayerZStd}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Image(tc.layers, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			validateImage(t, img)
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.MediaType != tc.manifest {
				t.Errorf("manifest media type %s, want %s", m.MediaType, tc.manifest)
			}
			wantCfg := types.DockerConfigJSON
			if tc.manifest == types.OCIManifestSchema1 {
				wantCfg = types.OCIConfigJSON
			}
			if m.Config.MediaType != wantCfg {
				t.Errorf("config media type %s, want %s", m.Config.MediaType, wantCfg)
			}
			for i, d := range m.Layers {
				if d.MediaType != tc.layerMTs[i] {
					t.Errorf("layer %d media type %s, want %s", i, d.MediaType, tc.layerMTs[i])
				}
			}
		})
	}
}

func TestImageConfig(t *testing.T) {
	l1, _ := RandomLayer(1, 3, 4096, Gzip)
	l2, _ := Layer([]File{{Name: "hello", Body: []byte("hi")}}, Gzip)
	img, err := Image([]v1.Layer{l1, l2},
		WithPlatform("linux", "arm64", "v8"), WithCmd("/hello", "-v"), WithEnv("A=1"))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := l1.DiffID()
	d2, _ := l2.DiffID()
	if cf.OS != "linux" || cf.Architecture != "arm64" || cf.Variant != "v8" {
		t.Errorf("platform %s/%s/%s", cf.OS, cf.Architecture, cf.Variant)
	}
	if len(cf.RootFS.DiffIDs) != 2 || cf.RootFS.DiffIDs[0] != d1 || cf.RootFS.DiffIDs[1] != d2 || cf.RootFS.Type != "layers" {
		t.Errorf("rootfs %+v, want diffIDs [%s %s]", cf.RootFS, d1, d2)
	}
	if len(cf.History) != 2 {
		t.Errorf("%d history entries, want 2", len(cf.History))
	}
	if strings.Join(cf.Config.Cmd, " ") != "/hello -v" || strings.Join(cf.Config.Env, " ") != "A=1" {
		t.Errorf("cmd %q env %q", cf.Config.Cmd, cf.Config.Env)
	}

	again, _ := Image([]v1.Layer{l1, l2},
		WithPlatform("linux", "arm64", "v8"), WithCmd("/hello", "-v"), WithEnv("A=1"))
	h1, _ := img.Digest()
	h2, _ := again.Digest()
	if h1 != h2 {
		t.Errorf("Image is not deterministic: %s, %s", h1, h2)
	}

	def, _ := Image([]v1.Layer{l1})
	cf, _ = def.ConfigFile()
	if cf.OS != "linux" || cf.Architecture != "amd64" || len(cf.Config.Cmd) == 0 || len(cf.Config.Env) == 0 {
		t.Errorf("defaults: %+v", cf)
	}
}

func TestIndex(t *testing.T) {
	l, _ := RandomLayer(1, 1, 100, Gzip)
	amd, _ := Image([]v1.Layer{l})
	arm, _ := Image([]v1.Layer{l}, WithPlatform("linux", "arm", "v7"))
	for _, oci := range []bool{false, true} {
		idx, err := Index([]v1.Image{amd, arm}, oci)
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range []v1.Image{amd, arm} {
			d, _ := img.Digest()
			got, err := idx.Image(d)
			if err != nil {
				t.Fatal(err)
			}
			validateImage(t, got)
		}
		im, _ := idx.IndexManifest()
		want := types.DockerManifestList
		if oci {
			want = types.OCIImageIndex
		}
		if im.MediaType != want || len(im.Manifests) != 2 {
			t.Fatalf("index %s with %d manifests", im.MediaType, len(im.Manifests))
		}
		if p := im.Manifests[1].Platform; p == nil || p.Architecture != "arm" || p.Variant != "v7" {
			t.Errorf("platform of manifest 1: %+v", p)
		}
		if p := im.Manifests[0].Platform; p == nil || p.Architecture != "amd64" || p.OS != "linux" {
			t.Errorf("platform of manifest 0: %+v", p)
		}
	}
}

func TestRawLayer(t *testing.T) {
	blob := []byte("definitely not gzip")
	l := RawLayer(blob, types.DockerLayer, v1.Hash{})
	d, _ := l.Digest()
	diff, _ := l.DiffID()
	want, _, _ := v1.SHA256(bytes.NewReader(blob))
	if d != want || diff != want {
		t.Errorf("digest %s diffID %s, want %s", d, diff, want)
	}
	if mt, _ := l.MediaType(); mt != types.DockerLayer {
		t.Errorf("media type %s", mt)
	}
	rc, _ := l.Compressed()
	got, _ := io.ReadAll(rc)
	if !bytes.Equal(got, blob) {
		t.Errorf("Compressed() = %q", got)
	}
	if _, err := l.Uncompressed(); err == nil {
		t.Error("Uncompressed() of a garbage gzip layer did not fail")
	}

	// A truncated real layer, with the diffID of the whole one.
	full, _ := RandomLayer(9, 1, 10000, Gzip)
	frc, _ := full.Compressed()
	fb, _ := io.ReadAll(frc)
	fd, _ := full.DiffID()
	tl := RawLayer(fb[:len(fb)/2], types.DockerLayer, fd)
	if got, _ := tl.DiffID(); got != fd {
		t.Errorf("diffID %s, want %s", got, fd)
	}
	urc, err := tl.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(urc); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reading a truncated layer: %v, want unexpected EOF", err)
	}
	if img, err := Image([]v1.Layer{tl}); err != nil {
		t.Fatal(err)
	} else if m, _ := img.Manifest(); m.Layers[0].MediaType != types.DockerLayer {
		t.Errorf("raw layer media type changed to %s", m.Layers[0].MediaType)
	}
}

func TestFromTar(t *testing.T) {
	src, _ := Layer([]File{{Name: "a", Body: []byte("a")}}, Uncompressed)
	l, err := FromTar(src.Uncompressed, Zstd)
	if err != nil {
		t.Fatal(err)
	}
	checkLayer(t, l)
	d1, _ := src.DiffID()
	d2, _ := l.DiffID()
	if d1 != d2 {
		t.Errorf("diffID %s, want %s", d2, d1)
	}
}
