package pull

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/archive"
	"github.com/flick-edge/flick/internal/content"
	"github.com/flick-edge/flick/internal/durable"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/flick-edge/flick/internal/metadata"
	"github.com/flick-edge/flick/internal/reference"
	"github.com/flick-edge/flick/internal/registry"
	"github.com/flick-edge/flick/internal/snapshot"
	"github.com/flick-edge/flick/internal/testregistry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// env is a store on a data root, as the daemon builds it.
type env struct {
	root string
	meta *metadata.DB
	ss   *snapshot.Store
	p    *Puller
	cs   content.Store
}

func newEnv(t *testing.T, root string) *env {
	t.Helper()
	meta, err := metadata.Open(filepath.Join(root, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	cs, err := content.Open(filepath.Join(root, "content"))
	if err != nil {
		t.Fatal(err)
	}
	sy, _ := durable.NewSyncer(durable.ModeSyncFS)
	ss, err := snapshot.Open(filepath.Join(root, "snapshots"), sy)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := registry.New(registry.Options{MaxAttempts: 4, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	p := New(Config{Registry: rc, Content: cs, Snapshots: ss, Meta: meta, Archive: archive.Options{WriteBehind: 2 << 20}, Reserve: 1 << 20})
	return &env{root: root, meta: meta, ss: ss, p: p, cs: cs}
}

func (e *env) pull(t *testing.T, ref string) (Result, []Event, error) {
	t.Helper()
	r, err := reference.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var evs []Event
	res, err := e.p.Pull(context.Background(), Request{Ref: r}, func(ev Event) { mu.Lock(); evs = append(evs, ev); mu.Unlock() })
	return res, evs, err
}

// assertClean checks that a failed pull left nothing visible or partial.
func (e *env) assertClean(t *testing.T, ref string) {
	t.Helper()
	if ents, _ := os.ReadDir(filepath.Join(e.root, "snapshots", "staging")); len(ents) != 0 {
		t.Fatalf("staging left behind: %v", ents)
	}
	r, _ := reference.Parse(ref)
	if _, err := e.meta.Tag(r.String()); !errdefs.Is(err, errdefs.NotFound) {
		t.Fatalf("tag %s visible after a failed pull", ref)
	}
}

// must returns v, panicking (failing the test) on err.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func mustImg(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := imagegen.Image(layers)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: layer extraction applies ownership and overlay whiteouts")
	}
}

func TestPullAndUpToDate(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	e := newEnv(t, t.TempDir())
	img := mustImg(t, must(imagegen.RandomLayer(1, 10, 1<<20, imagegen.Gzip)), must(imagegen.RandomLayer(2, 3, 100<<10, imagegen.Zstd)))
	reg.Push(t, reg.Ref("a/b:1"), img)
	res, evs, err := e.pull(t, reg.Ref("a/b:1"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigName()
	if res.ImageID.String() != cfg.String() || res.UpToDate {
		t.Fatalf("result %+v", res)
	}
	var complete int
	for _, ev := range evs {
		if ev.Status == "Pull complete" {
			complete++
		}
	}
	if complete != 2 {
		t.Fatalf("want 2 'Pull complete' events, got %d: %+v", complete, evs)
	}
	res, _, err = e.pull(t, reg.Ref("a/b:1"))
	if err != nil || !res.UpToDate || res.Fetched != 0 {
		t.Fatalf("second pull: %+v %v", res, err)
	}
}

func TestNetworkCutResumesWithRange(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	proxy := testregistry.NewFaultProxy(t, reg.URL())
	e := newEnv(t, t.TempDir())
	img := mustImg(t, must(imagegen.RandomLayer(3, 4, 4<<20, imagegen.Gzip)))
	reg.Push(t, reg.Ref("cut/me:1"), img)
	proxy.CutBlobsAfter(1<<20, 2) // the first two blob bodies die after 1 MiB
	if _, _, err := e.pull(t, proxy.Ref("cut/me:1")); err != nil {
		t.Fatal(err)
	}
	ranged := 0
	for _, r := range proxy.Requests() {
		if strings.Contains(r.Path, "/blobs/") && strings.HasPrefix(r.Range, "bytes=") && r.Status == http.StatusPartialContent {
			ranged++
		}
	}
	if ranged == 0 {
		t.Fatalf("no Range resume seen: %+v", proxy.Requests())
	}
}

func TestBadInputLeavesNothing(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	proxy := testregistry.NewFaultProxy(t, reg.URL())
	good := mustImg(t, must(imagegen.RandomLayer(5, 3, 300<<10, imagegen.Gzip)))
	reg.Push(t, reg.Ref("good/img:1"), good)

	var truncated bytes.Buffer
	zw := gzip.NewWriter(&truncated)
	tl, _ := imagegen.RandomLayer(6, 2, 64<<10, imagegen.Uncompressed)
	rc, _ := tl.Uncompressed()
	io.Copy(zw, rc)
	zw.Close()
	trunc := truncated.Bytes()[:truncated.Len()/2]

	hostile := func(files ...imagegen.File) v1.Layer { return must(imagegen.Layer(files, imagegen.Gzip)) }
	cases := []struct {
		name  string
		setup func() string // returns the ref to pull
		class errdefs.Class
		want  string
	}{
		{"path traversal", func() string {
			reg.Push(t, reg.Ref("bad/dotdot:1"), mustImg(t, hostile(imagegen.File{Name: "../../evil", Body: []byte("x"), Mode: 0o644})))
			return reg.Ref("bad/dotdot:1")
		}, errdefs.InvalidArgument, "escapes"},
		{"hardlink escape", func() string {
			reg.Push(t, reg.Ref("bad/hardlink:1"), mustImg(t, hostile(imagegen.File{Name: "pw", Typeflag: '1', Linkname: "../../../../etc/passwd"})))
			return reg.Ref("bad/hardlink:1")
		}, errdefs.InvalidArgument, ""},
		{"symlink loop", func() string {
			reg.Push(t, reg.Ref("bad/loop:1"), mustImg(t, hostile(
				imagegen.File{Name: "a", Typeflag: '2', Linkname: "b"},
				imagegen.File{Name: "b", Typeflag: '2', Linkname: "a"},
				imagegen.File{Name: "a/file", Body: []byte("x"), Mode: 0o644})))
			return reg.Ref("bad/loop:1")
		}, errdefs.InvalidArgument, ""},
		{"truncated gzip layer", func() string {
			reg.Push(t, reg.Ref("bad/trunc:1"), mustImg(t, imagegen.RawLayer(trunc, types.DockerLayer, v1.Hash{})))
			return reg.Ref("bad/trunc:1")
		}, errdefs.InvalidArgument, ""},
		{"diffID mismatch", func() string {
			l := must(imagegen.RandomLayer(9, 2, 10<<10, imagegen.Uncompressed))
			b, _ := l.Compressed()
			raw, _ := io.ReadAll(b)
			wrong, _ := v1.NewHash("sha256:" + strings.Repeat("ab", 32))
			reg.Push(t, reg.Ref("bad/diffid:1"), mustImg(t, imagegen.RawLayer(raw, types.OCIUncompressedLayer, wrong)))
			return reg.Ref("bad/diffid:1")
		}, errdefs.InvalidArgument, "hashes to"},
		{"malformed manifest", func() string {
			proxy.Reset()
			proxy.Intercept(func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/manifests/") },
				http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
					w.Write([]byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:nothex","size":-1},"layers":[]}`))
				}), 10)
			return proxy.Ref("good/img:1")
		}, errdefs.InvalidArgument, ""},
		{"digest mismatch on the wire", func() string {
			proxy.Corrupt(10)
			return proxy.Ref("good/img:1")
		}, errdefs.Unknown, ""},
		{"registry keeps failing", func() string {
			proxy.Reset()
			proxy.FailNext(http.StatusInternalServerError, 100, "boom")
			return proxy.Ref("good/img:1")
		}, errdefs.Unavailable, ""},
		{"registry answers garbage", func() string {
			proxy.Reset()
			proxy.Intercept(func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/manifests/") },
				http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
					w.Write([]byte("\x00\x01garbage"))
				}), 10)
			return proxy.Ref("good/img:1")
		}, errdefs.InvalidArgument, ""},
		{"missing image", func() string { proxy.Reset(); return reg.Ref("absent/img:1") }, errdefs.NotFound, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, t.TempDir())
			ref := tc.setup()
			_, _, err := e.pull(t, ref)
			if err == nil {
				t.Fatal("pull succeeded")
			}
			t.Logf("error: %v", err)
			if tc.class != errdefs.Unknown && !errdefs.Is(err, tc.class) {
				t.Fatalf("class %v, want %v: %v", errdefs.ClassOf(err), tc.class, err)
			}
			if tc.want != "" && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			e.assertClean(t, ref)
			if _, err := os.Stat(filepath.Join(filepath.Dir(e.root), "evil")); err == nil {
				t.Fatal("a file escaped the layer")
			}
			// The store stays usable.
			proxy.Reset()
			if _, _, err := e.pull(t, reg.Ref("good/img:1")); err != nil {
				t.Fatalf("store unusable after bad input: %v", err)
			}
		})
	}
}

func TestInterruptedPullResumesFromFirstMissingLayer(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	proxy := testregistry.NewFaultProxy(t, reg.URL())
	root := t.TempDir()
	l1 := must(imagegen.RandomLayer(21, 3, 512<<10, imagegen.Gzip))
	l2 := must(imagegen.RandomLayer(22, 3, 512<<10, imagegen.Gzip))
	reg.Push(t, reg.Ref("resume/img:1"), mustImg(t, l1, l2))
	d2, _ := l2.Digest()
	d1, _ := l1.Digest()
	// The second layer fails hard; the first commits.
	proxy.Intercept(func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, d2.String()) },
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			time.Sleep(300 * time.Millisecond) // let the first layer finish and commit
			w.WriteHeader(http.StatusForbidden)
		}), -1)
	e := newEnv(t, root)
	if _, _, err := e.pull(t, proxy.Ref("resume/img:1")); err == nil {
		t.Fatal("pull should fail")
	}
	e.meta.Close()
	// "Restart": a fresh store on the same root.
	proxy.Reset()
	proxy.ClearRequests()
	e = newEnv(t, root)
	if _, _, err := e.pull(t, proxy.Ref("resume/img:1")); err != nil {
		t.Fatal(err)
	}
	for _, r := range proxy.Requests() {
		if strings.HasSuffix(r.Path, d1.String()) && r.Method == http.MethodGet && r.Range == "" {
			t.Fatalf("committed layer fetched again: %+v", r)
		}
	}
}

// mountTmpfs mounts a small tmpfs to be a data root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func TestDiskSpace(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	// 40 MiB of incompressible data cannot fit in 16 MiB: refused before writing.
	big := mustImg(t, must(imagegen.RandomLayer(31, 4, 40<<20, imagegen.Gzip)))
	reg.Push(t, reg.Ref("big/img:1"), big)
	e := newEnv(t, mountTmpfs(t, "16m"))
	_, evs, err := e.pull(t, reg.Ref("big/img:1"))
	if !errdefs.Is(err, errdefs.ResourceExhausted) || !strings.Contains(err.Error(), "not enough disk space") {
		t.Fatalf("want a disk-space refusal, got %v", err)
	}
	for _, ev := range evs {
		if ev.Status == "Downloading" {
			t.Fatal("download started although the image cannot fit")
		}
	}
	e.assertClean(t, reg.Ref("big/img:1"))

	// A tar bomb whose size the registry cannot reveal (multi-member gzip: the
	// ISIZE trailer only covers the last member) fails during extraction with
	// a disk-full error, and leaves nothing behind.
	var bomb bytes.Buffer
	tl := must(imagegen.Layer([]imagegen.File{{Name: "zeros", Body: make([]byte, 40<<20), Mode: 0o644}}, imagegen.Uncompressed))
	rc, _ := tl.Uncompressed()
	tarBytes, _ := io.ReadAll(rc)
	half := len(tarBytes) - 1024
	for _, part := range [][]byte{tarBytes[:half], tarBytes[half:]} {
		zw := gzip.NewWriter(&bomb)
		zw.Write(part)
		zw.Close()
	}
	tlDiff, _ := tl.DiffID()
	reg.Push(t, reg.Ref("big/bomb:1"), mustImg(t, imagegen.RawLayer(bomb.Bytes(), types.DockerLayer, tlDiff)))
	e2 := newEnv(t, mountTmpfs(t, "16m"))
	_, _, err = e2.pull(t, reg.Ref("big/bomb:1"))
	if !errdefs.Is(err, errdefs.ResourceExhausted) {
		t.Fatalf("want disk full, got %v", err)
	}
	e2.assertClean(t, reg.Ref("big/bomb:1"))
}
