package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/flick-edge/flick/internal/testregistry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func mustImage(t testing.TB, layers []v1.Layer, opts ...imagegen.ImageOption) v1.Image {
	t.Helper()
	img, err := imagegen.Image(layers, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func randomLayer(t testing.TB, seed int64, files int, size int64, c imagegen.Compression) v1.Layer {
	t.Helper()
	l, err := imagegen.RandomLayer(seed, files, size, c)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func fileLayer(t testing.TB, c imagegen.Compression, files ...imagegen.File) v1.Layer {
	t.Helper()
	l, err := imagegen.Layer(files, c)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type summary struct {
	ID          string `json:"Id"`
	RepoTags    []string
	RepoDigests []string
	Size        int64
}

func (d *Daemon) images(t testing.TB) []summary {
	t.Helper()
	var out []summary
	r := d.mustFlick(t, "images", "--json")
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil {
		t.Fatalf("images --json: %v\n%s", err, r.Stdout)
	}
	return out
}

func hasTag(imgs []summary, tag string) bool {
	for _, i := range imgs {
		for _, t := range i.RepoTags {
			if t == tag {
				return true
			}
		}
	}
	return false
}

// layerDirs lists committed layer directories in a daemon's data root.
func (d *Daemon) layerDirs(t testing.TB) []string {
	return dirEntries(t, filepath.Join(d.DataRoot, "snapshots", "layers"))
}

func (d *Daemon) staging(t testing.TB) []string {
	return dirEntries(t, filepath.Join(d.DataRoot, "snapshots", "staging"))
}

func TestPullListTagRemove(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	d := startDaemon(t)

	base := fileLayer(t, imagegen.Gzip,
		imagegen.File{Name: "etc/", Typeflag: '5', Mode: 0o755},
		imagegen.File{Name: "etc/os-release", Body: []byte("ID=flick\n"), Mode: 0o644},
		imagegen.File{Name: "bin/", Typeflag: '5', Mode: 0o755},
		imagegen.File{Name: "bin/app", Body: []byte("#!/bin/sh\necho hi\n"), Mode: 0o4755, Uid: 0, Gid: 0},
		imagegen.File{Name: "bin/app-link", Typeflag: '2', Linkname: "app"},
	)
	top := fileLayer(t, imagegen.Gzip,
		imagegen.File{Name: "etc/.wh.os-release", Mode: 0o644},
		imagegen.File{Name: "data/", Typeflag: '5', Mode: 0o700, Uid: 1000, Gid: 1000},
	)
	gz := mustImage(t, []v1.Layer{base, top}, imagegen.WithCmd("/bin/app"))
	reg.Push(t, reg.Ref("demo/app:1"), gz)
	zimg := mustImage(t, []v1.Layer{randomLayer(t, 7, 20, 1<<20, imagegen.Zstd), randomLayer(t, 8, 5, 256<<10, imagegen.Uncompressed)}, imagegen.WithOCI(true))
	reg.Push(t, reg.Ref("demo/zstd:1"), zimg)

	r := d.mustFlick(t, "pull", reg.Ref("demo/app:1"))
	if !strings.Contains(r.Stdout, "Downloaded newer image for "+reg.Ref("demo/app:1")) {
		t.Fatalf("pull output:\n%s", r.Stdout)
	}
	d.mustFlick(t, "pull", "-q", reg.Ref("demo/zstd:1"))

	// The layer trees are on disk, overlay-ready.
	dirs := d.layerDirs(t)
	if len(dirs) != 4 {
		t.Fatalf("want 4 committed layers, got %v", dirs)
	}
	topID, _ := top.DiffID()
	wh, err := os.Lstat(filepath.Join(d.DataRoot, "snapshots", "layers", topID.Hex, "etc", "os-release"))
	if err != nil || wh.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("whiteout not converted to an overlay whiteout: %v %v", wh, err)
	}
	baseID, _ := base.DiffID()
	fi, err := os.Stat(filepath.Join(d.DataRoot, "snapshots", "layers", baseID.Hex, "bin", "app"))
	if err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Fatalf("setuid bit lost: %v %v", fi, err)
	}

	imgs := d.images(t)
	if !hasTag(imgs, reg.Ref("demo/app:1")) || !hasTag(imgs, reg.Ref("demo/zstd:1")) {
		t.Fatalf("images: %+v", imgs)
	}
	// Pulling again fetches nothing.
	r = d.mustFlick(t, "pull", reg.Ref("demo/app:1"))
	if !strings.Contains(r.Stdout, "Image is up to date") {
		t.Fatalf("second pull:\n%s", r.Stdout)
	}
	d.mustFlick(t, "tag", reg.Ref("demo/app:1"), "local/app:stable")
	if !hasTag(d.images(t), "local/app:stable") {
		t.Fatal("tag missing")
	}
	// Inspect by tag, by short ID, by digest.
	var insp []struct {
		ID     string `json:"Id"`
		Config struct{ Cmd []string }
		RootFS struct{ Layers []string }
	}
	r = d.mustFlick(t, "image", "inspect", "local/app:stable")
	if err := json.Unmarshal([]byte(r.Stdout), &insp); err != nil || len(insp) != 1 || len(insp[0].RootFS.Layers) != 2 || insp[0].Config.Cmd[0] != "/bin/app" {
		t.Fatalf("inspect: %v\n%s", err, r.Stdout)
	}
	d.mustFlick(t, "image", "inspect", strings.TrimPrefix(insp[0].ID, "sha256:")[:12])
	dg, _ := gz.Digest()
	d.mustFlick(t, "image", "inspect", reg.Ref("demo/app")+"@"+dg.String())

	// Removing one of two tags only untags.
	r = d.mustFlick(t, "rmi", "local/app:stable")
	if !strings.Contains(r.Stdout, "Untagged: local/app:stable") || strings.Contains(r.Stdout, "Deleted") {
		t.Fatalf("rmi of one tag:\n%s", r.Stdout)
	}
	r = d.mustFlick(t, "rmi", reg.Ref("demo/app:1"))
	if !strings.Contains(r.Stdout, "Deleted: sha256:") {
		t.Fatalf("rmi of last tag:\n%s", r.Stdout)
	}
	if got := d.layerDirs(t); len(got) != 2 {
		t.Fatalf("layers of the removed image were not collected: %v", got)
	}
	r = d.flick(t, "rmi", "nope:nope")
	if r.Code != 3 || !strings.Contains(r.Stderr, "No such image") && !strings.Contains(r.Stderr, "no such image") {
		t.Fatalf("rmi of a missing image: %s", r)
	}
	d.mustFlick(t, "system", "df")
	d.mustFlick(t, "image", "prune", "-a", "-f")
	if len(d.images(t)) != 0 || len(d.layerDirs(t)) != 0 {
		t.Fatalf("prune -a left images or layers: %v", d.layerDirs(t))
	}
	if s := d.staging(t); len(s) != 0 {
		t.Fatalf("staging not empty: %v", s)
	}
}

func TestPlatformSelection(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	d := startDaemon(t)
	amd := mustImage(t, []v1.Layer{randomLayer(t, 1, 2, 4096, imagegen.Gzip)}, imagegen.WithPlatform("linux", "amd64", ""))
	arm := mustImage(t, []v1.Layer{randomLayer(t, 2, 2, 4096, imagegen.Gzip)}, imagegen.WithPlatform("linux", "arm", "v7"))
	idx, err := imagegen.Index([]v1.Image{amd, arm}, true)
	if err != nil {
		t.Fatal(err)
	}
	reg.PushIndex(t, reg.Ref("multi/app:1"), idx)
	d.mustFlick(t, "pull", "--platform", "linux/arm/v7", reg.Ref("multi/app:1"))
	var insp []struct{ Architecture, Variant string }
	json.Unmarshal([]byte(d.mustFlick(t, "image", "inspect", reg.Ref("multi/app:1")).Stdout), &insp)
	if len(insp) != 1 || insp[0].Architecture != "arm" || insp[0].Variant != "v7" {
		t.Fatalf("want the arm/v7 image, got %+v", insp)
	}
	r := d.flick(t, "pull", "--platform", "linux/riscv64", reg.Ref("multi/app:1"))
	if r.Code == 0 || !strings.Contains(r.Stderr, "linux/riscv64") {
		t.Fatalf("missing platform: %s", r)
	}
}

func TestSecondDaemonOnSameDataRootRefuses(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	r := run(t, nil, flickBin(t), "daemon", "--data-root", d.DataRoot, "-H", "unix://"+d.Socket+"2", "--config-file", "/dev/null")
	if r.Code == 0 || !strings.Contains(r.Stderr, "another flick daemon") {
		t.Fatalf("second daemon: %s", r)
	}
}
