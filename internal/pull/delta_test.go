package pull

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/delta"
	"github.com/flick-edge/flick/internal/deltabuild"
	"github.com/flick-edge/flick/internal/image"
	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/flick-edge/flick/internal/reference"
	"github.com/flick-edge/flick/internal/testregistry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
)

type release struct {
	img    v1.Image
	ref    string
	diffID []digest.Digest
}

// releases pushes version 1 of an app and a version 2 derived from it (a
// rebuilt binary, a changed config, a new layer, the OS layer shared) under
// repo, and returns both.
func releases(t *testing.T, reg *testregistry.Registry, repo string, seed uint64) (release, release) {
	t.Helper()
	osLayer := must(imagegen.RandomLayer(int64(seed), 20, 512<<10, imagegen.Gzip))
	bin := imagegen.Program(seed, 400<<10)
	bin2 := append([]byte(nil), bin...)
	copy(bin2[2000:], fmt.Sprintf("version 2 of %d", seed))
	bin2 = append(bin2[:9000], append([]byte("a new function"), bin2[9000:]...)...)
	lib := imagegen.Program(seed+100, 120<<10)
	v1app := must(imagegen.Layer([]imagegen.File{
		{Name: "app/", Typeflag: '5', Mode: 0o755},
		{Name: "app/server", Body: bin, Mode: 0o755},
		{Name: "app/libhelper.so", Body: lib, Mode: 0o644},
		{Name: "app/config.json", Body: []byte(`{"level":"info"}`), Mode: 0o644},
	}, imagegen.Gzip))
	v2app := must(imagegen.Layer([]imagegen.File{
		{Name: "app/", Typeflag: '5', Mode: 0o755},
		{Name: "app/server", Body: bin2, Mode: 0o755},
		{Name: "app/lib/libhelper.so.2", Body: lib, Mode: 0o644}, // moved and renamed
		{Name: "app/config.json", Body: []byte(`{"level":"debug"}`), Mode: 0o644},
	}, imagegen.Gzip))
	extra := must(imagegen.Layer([]imagegen.File{{Name: "app/VERSION", Body: []byte(fmt.Sprintf("2.%d\n", seed)), Mode: 0o644}}, imagegen.Gzip))
	mk := func(tag string, layers ...v1.Layer) release {
		img := mustImg(t, layers...)
		ref := reg.Ref(repo + ":" + tag)
		reg.Push(t, ref, img)
		var ids []digest.Digest
		for _, l := range layers {
			ids = append(ids, digest.Digest(must(l.DiffID()).String()))
		}
		return release{img: img, ref: ref, diffID: ids}
	}
	return mk("1", osLayer, v1app), mk("2", osLayer, v2app, extra)
}

func makeDelta(t *testing.T, base, target release, push bool) *deltabuild.Result {
	t.Helper()
	res, err := deltabuild.Create(context.Background(), deltabuild.Options{Base: base.ref, Target: target.ref, Push: push, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func hasEvent(evs []Event, prefix string) bool {
	for _, e := range evs {
		if strings.HasPrefix(e.Status, prefix) {
			return true
		}
	}
	return false
}

func TestDeltaPull(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	v1r, v2r := releases(t, reg, "app/delta", 1)
	made := makeDelta(t, v1r, v2r, true)
	if !made.Pushed || made.DeltaPull*5 > made.LayerPull {
		t.Fatalf("delta %d bytes for a %d-byte layer pull: %+v", made.DeltaPull, made.LayerPull, made)
	}
	// Debian's docker-registry has no referrers API: the artifact must be
	// listed under the fallback tag.
	md := must(v2r.img.Digest())
	req, _ := http.NewRequest("GET", reg.URL()+"/v2/app/delta/manifests/sha256-"+md.Hex, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("fallback tag: %v %v", resp, err)
	}
	resp.Body.Close()

	e := newEnv(t, t.TempDir())
	if _, _, err := e.pull(t, v1r.ref); err != nil {
		t.Fatal(err)
	}
	res, evs, err := e.pull(t, v2r.ref)
	if err != nil {
		t.Fatal(err)
	}
	if res.Delta == nil || res.Delta.Fallbacks != 0 || !hasEvent(evs, "Using delta") {
		t.Fatalf("pull did not use the delta: %+v %+v", res, res.Delta)
	}
	if res.Fetched*5 > res.Delta.FullBytes {
		t.Fatalf("fetched %d bytes with the delta, the layers are %d", res.Fetched, res.Delta.FullBytes)
	}
	t.Logf("layer pull %d bytes, delta pull %d bytes", res.Delta.FullBytes, res.Fetched)
	for _, id := range v2r.diffID {
		if !e.ss.Exists(id) {
			t.Fatalf("layer %s missing", id)
		}
	}
	p, _ := e.ss.Path(v2r.diffID[1])
	if b, err := os.ReadFile(filepath.Join(p, "app/lib/libhelper.so.2")); err != nil || len(b) != 120<<10 {
		t.Fatalf("moved file: %d bytes, %v", len(b), err)
	}
	if ents, _ := os.ReadDir(e.p.deltaDir()); len(ents) != 0 {
		t.Fatalf("delta files left behind: %v", ents)
	}

	// --no-delta downloads layers.
	e2 := newEnv(t, t.TempDir())
	e2.pull(t, v1r.ref)
	r, err := reference.Parse(v2r.ref)
	if err != nil {
		t.Fatal(err)
	}
	res, err = e2.p.Pull(context.Background(), Request{Ref: r, NoDelta: true}, nil)
	if err != nil || res.Delta != nil {
		t.Fatalf("--no-delta: %+v %v", res, err)
	}
	// A hub without the base pulls layers.
	e3 := newEnv(t, t.TempDir())
	res, _, err = e3.pull(t, v2r.ref)
	if err != nil || res.Delta != nil {
		t.Fatalf("hub without the base: %+v %v", res, err)
	}
}

// replaceDelta republishes target's delta with its blobs passed through
// mutate, and points the fallback tag at the new artifact only.
func replaceDelta(t *testing.T, reg *testregistry.Registry, repo string, target release, made *deltabuild.Result, mutate func(blob []byte, ann map[string]string) []byte) {
	t.Helper()
	get := func(path string) []byte {
		req, _ := http.NewRequest("GET", reg.URL()+"/v2/"+repo+path, nil)
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return b
	}
	art := made.Artifact[strings.LastIndexByte(made.Artifact, '@')+1:]
	var m map[string]any
	json.Unmarshal(get("/manifests/"+art), &m)
	for _, l := range m["layers"].([]any) {
		l := l.(map[string]any)
		ann := map[string]string{}
		for k, v := range l["annotations"].(map[string]any) {
			ann[k] = v.(string)
		}
		blob := mutate(get("/blobs/"+l["digest"].(string)), ann)
		d := reg.PushBlob(t, repo, blob)
		l["digest"], l["size"] = d.String(), len(blob)
		anyAnn := map[string]any{}
		for k, v := range ann {
			anyAnn[k] = v
		}
		l["annotations"] = anyAnn
	}
	raw, _ := json.Marshal(m)
	subject := m["subject"].(map[string]any)["digest"].(string)
	if subject != must(target.img.Digest()).String() {
		m["subject"].(map[string]any)["digest"] = must(target.img.Digest()).String()
		m["subject"].(map[string]any)["size"] = len(must(target.img.RawManifest()))
		raw, _ = json.Marshal(m)
	}
	d := digest.FromBytes(raw)
	reg.PushRaw(t, repo, d.String(), "application/vnd.oci.image.manifest.v1+json", raw)
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d.String(),
			"size": len(raw), "artifactType": delta.ArtifactType, "annotations": m["annotations"]}}})
	td := must(target.img.Digest())
	reg.PushRaw(t, repo, "sha256-"+td.Hex, "application/vnd.oci.image.index.v1+json", idx)
}

func TestBadDeltasFallBack(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	cases := []struct {
		name     string
		mutate   func(blob []byte, ann map[string]string) []byte
		used     bool // the pull should try the delta (and fall back)
		fallback bool
	}{
		{"bit flip", func(b []byte, _ map[string]string) []byte { b[len(b)/2] ^= 4; return b }, true, true},
		{"truncated", func(b []byte, _ map[string]string) []byte { return b[:len(b)*2/3] }, true, true},
		{"not a delta", func(b []byte, _ map[string]string) []byte { return []byte("garbage that is not a delta at all") }, true, true},
		{"larger than the layers", func(b []byte, _ map[string]string) []byte {
			r := rand.New(rand.NewPCG(1, 1))
			big := make([]byte, 4<<20)
			for i := range big {
				big[i] = byte(r.Uint32())
			}
			return big
		}, false, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := fmt.Sprintf("bad/case%d", i)
			base, target := releases(t, reg, repo, uint64(10+i))
			made := makeDelta(t, base, target, true)
			replaceDelta(t, reg, repo, target, made, tc.mutate)
			e := newEnv(t, t.TempDir())
			if _, _, err := e.pull(t, base.ref); err != nil {
				t.Fatal(err)
			}
			res, evs, err := e.pull(t, target.ref)
			if err != nil {
				t.Fatalf("the pull must recover by itself: %v", err)
			}
			if (res.Delta != nil) != tc.used {
				t.Fatalf("delta used = %v, want %v", res.Delta != nil, tc.used)
			}
			if tc.fallback && (res.Delta.Fallbacks == 0 || !hasEvent(evs, "Delta failed")) {
				t.Fatalf("no fallback recorded: %+v", res.Delta)
			}
			for _, id := range target.diffID {
				if !e.ss.Exists(id) {
					t.Fatalf("layer %s missing after fallback", id)
				}
			}
			for _, dir := range []string{filepath.Join(e.root, "snapshots", "staging"), e.p.deltaDir()} {
				if ents, _ := os.ReadDir(dir); len(ents) != 0 {
					t.Fatalf("%s holds leftovers: %v", dir, ents)
				}
			}
		})
	}

	// A delta that claims another target: made for release A's v2, relabelled
	// as release B's v2 (subject and diffIDs). It rebuilds A's bytes, which
	// fail B's diffID check.
	t.Run("wrong target", func(t *testing.T) {
		baseA, targetA := releases(t, reg, "bad/wrong", 30)
		// B shares A's base but its v2 differs.
		v2b := mustImg(t, must(imagegen.RandomLayer(30, 20, 512<<10, imagegen.Gzip)),
			must(imagegen.Layer([]imagegen.File{{Name: "app/server", Body: imagegen.Program(77, 400<<10), Mode: 0o755}}, imagegen.Gzip)))
		refB := reg.Ref("bad/wrong:2b")
		reg.Push(t, refB, v2b)
		var idsB []digest.Digest
		for _, l := range must(v2b.Layers()) {
			idsB = append(idsB, digest.Digest(must(l.DiffID()).String()))
		}
		targetB := release{img: v2b, ref: refB, diffID: idsB}
		made := makeDelta(t, baseA, targetA, true)
		replaceDelta(t, reg, "bad/wrong", targetB, made, func(b []byte, ann map[string]string) []byte {
			ann[delta.AnnotationTargetDiffID] = idsB[1].String()
			return b
		})
		e := newEnv(t, t.TempDir())
		e.pull(t, baseA.ref)
		res, evs, err := e.pull(t, targetB.ref)
		if err != nil {
			t.Fatal(err)
		}
		if res.Delta == nil || res.Delta.Fallbacks == 0 || !hasEvent(evs, "Delta failed") {
			t.Fatalf("a delta for another target was not caught: %+v", res.Delta)
		}
		if !e.ss.Exists(idsB[1]) {
			t.Fatal("layer missing after fallback")
		}
	})
}

// TestBaseRemovedDuringApply deletes the base image while its delta is being
// applied: the pull holds the base layers, so GC leaves them until it ends.
func TestBaseRemovedDuringApply(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	base, target := releases(t, reg, "app/gc", 3)
	makeDelta(t, base, target, true)
	e := newEnv(t, t.TempDir())
	if _, _, err := e.pull(t, base.ref); err != nil {
		t.Fatal(err)
	}
	store := image.New(e.meta, e.cs, e.ss, e.p.Leased, nil)
	removed := false
	e.p.deltaHook = func() {
		if removed {
			return
		}
		removed = true
		if _, err := store.Remove(context.Background(), base.ref, true); err != nil {
			t.Errorf("remove base: %v", err)
		}
		if _, err := store.GC(context.Background()); err != nil {
			t.Errorf("gc: %v", err)
		}
		if !e.ss.Exists(base.diffID[1]) {
			t.Error("GC deleted a base layer while a delta was reading it")
		}
	}
	res, _, err := e.pull(t, target.ref)
	if err != nil || res.Delta == nil || res.Delta.Fallbacks != 0 {
		t.Fatalf("pull: %+v %v", res, err)
	}
	if !removed {
		t.Fatal("the hook never ran")
	}
	// Once the pull is over, the base's own layer is garbage.
	if _, err := store.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.ss.Exists(base.diffID[1]) {
		t.Error("the base's layer outlived the pull")
	}
}

// TestDeltaDownloadResumesAfterRestart interrupts a pull in the middle of a
// delta download (the daemon dies), then pulls again with a new Puller on the
// same data root: the download resumes from its last checkpoint with a Range
// request instead of starting over.
func TestDeltaDownloadResumesAfterRestart(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	proxy := testregistry.NewFaultProxy(t, reg.URL())
	osLayer := must(imagegen.RandomLayer(5, 10, 256<<10, imagegen.Gzip))
	r := rand.New(rand.NewPCG(5, 5))
	noise := make([]byte, 1<<20) // new content: the delta carries it literally
	for i := range noise {
		noise[i] = byte(r.Uint32())
	}
	noise = append(noise, imagegen.Program(5, 2<<20)...)
	app := must(imagegen.Layer([]imagegen.File{{Name: "app/model.bin", Body: noise, Mode: 0o644}}, imagegen.Gzip))
	base := mustImg(t, osLayer)
	target := mustImg(t, osLayer, app)
	reg.Push(t, reg.Ref("resume/app:1"), base)
	reg.Push(t, reg.Ref("resume/app:2"), target)
	made := makeDelta(t, release{ref: reg.Ref("resume/app:1")}, release{ref: reg.Ref("resume/app:2")}, true)
	if len(made.Layers) != 1 || made.Layers[0].DeltaBytes == 0 {
		t.Fatalf("delta: %+v", made)
	}
	blobSize := made.Layers[0].DeltaBytes

	root := t.TempDir()
	e := newEnv(t, root)
	if _, _, err := e.pull(t, proxy.Ref("resume/app:1")); err != nil {
		t.Fatal(err)
	}
	ref, _ := reference.Parse(proxy.Ref("resume/app:2"))
	ctx, cancel := context.WithCancel(context.Background())
	_, err := e.p.Pull(ctx, Request{Ref: ref}, func(ev Event) {
		if ev.Status == "Downloading delta" && ev.Current > blobSize/2 {
			cancel() // the daemon dies here
		}
	})
	if err == nil {
		t.Fatal("the interrupted pull succeeded")
	}
	// Restart: a new Puller on the same root.
	e.meta.Close()
	e2 := newEnv(t, root)
	res, _, err := e2.pull(t, proxy.Ref("resume/app:2"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Delta == nil || res.Delta.Fallbacks != 0 {
		t.Fatalf("second pull did not finish with the delta: %+v", res.Delta)
	}
	var resumed bool
	for _, rq := range proxy.Requests() {
		if strings.Contains(rq.Path, "/blobs/") && strings.HasPrefix(rq.Range, "bytes=") && rq.Status == http.StatusPartialContent {
			resumed = true
		}
	}
	if !resumed {
		t.Fatalf("no Range request: the delta was downloaded again from byte 0: %+v", proxy.Requests())
	}
	if res.Fetched > blobSize*3/4 {
		t.Fatalf("the resumed pull fetched %d of the %d-byte delta", res.Fetched, blobSize)
	}
	t.Logf("delta %d bytes; fetched %d after the restart", blobSize, res.Fetched)
}

func TestCleanDeltas(t *testing.T) {
	e := newEnv(t, t.TempDir())
	dir := e.p.deltaDir()
	os.MkdirAll(dir, 0o700)
	for _, n := range []string{".abc.ckpt.tmp-1", "old.part", "young.part", "young.ckpt"} {
		os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600)
	}
	old := time.Now().Add(-8 * 24 * time.Hour)
	os.Chtimes(filepath.Join(dir, "old.part"), old, old)
	if _, err := e.p.CleanDeltas(7 * 24 * time.Hour); err != nil {
		t.Fatal(err)
	}
	var left []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if strings.Join(left, ",") != "young.ckpt,young.part" {
		t.Fatalf("left %v; want the young download only", left)
	}
}

// TestSeveralBases publishes deltas to one target from two releases: a hub
// uses the one whose base it holds, and a hub holding both takes the smaller.
func TestSeveralBases(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	v1r, v2r := releases(t, reg, "multi/app", 40)
	// v0: an older release, further from v2 (no shared app files).
	v0img := mustImg(t, must(imagegen.RandomLayer(40, 20, 512<<10, imagegen.Gzip)),
		must(imagegen.Layer([]imagegen.File{{Name: "app/server", Body: imagegen.Program(99, 200<<10), Mode: 0o755}}, imagegen.Gzip)))
	v0ref := reg.Ref("multi/app:0")
	reg.Push(t, v0ref, v0img)
	v0r := release{img: v0img, ref: v0ref}
	from0 := makeDelta(t, v0r, v2r, true)
	from1 := makeDelta(t, v1r, v2r, true)
	if from1.DeltaPull >= from0.DeltaPull {
		t.Fatalf("test premise: the delta from v1 (%d) should be smaller than from v0 (%d)", from1.DeltaPull, from0.DeltaPull)
	}
	d0 := must(v0img.Digest())
	d1 := must(v1r.img.Digest())

	e := newEnv(t, t.TempDir())
	e.pull(t, v0ref)
	res, _, err := e.pull(t, v2r.ref)
	if err != nil || res.Delta == nil || !strings.Contains(res.Delta.BaseImage, d0.Hex[:12]) {
		t.Fatalf("hub with v0: %+v %v", res.Delta, err)
	}
	e2 := newEnv(t, t.TempDir())
	e2.pull(t, v0ref)
	e2.pull(t, v1r.ref)
	res, _, err = e2.pull(t, v2r.ref)
	if err != nil || res.Delta == nil || !strings.Contains(res.Delta.BaseImage, d1.Hex[:12]) {
		t.Fatalf("hub with v0 and v1 did not take the smaller delta (from v1): %+v %v", res.Delta, err)
	}
}
