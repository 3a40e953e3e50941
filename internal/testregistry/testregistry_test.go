package testregistry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/flick-edge/flick/internal/imagegen"
)

func mustImage(t *testing.T, seed int64, c imagegen.Compression, nLayers int, opts ...imagegen.ImageOption) v1.Image {
	t.Helper()
	var layers []v1.Layer
	for i := 0; i < nLayers; i++ {
		l, err := imagegen.RandomLayer(seed*100+int64(i), 5, 256<<10, c)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := imagegen.Image(layers, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func parse(t *testing.T, ref string) name.Reference {
	t.Helper()
	n, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkPulled fetches ref with remote.Image and checks that it is want,
// reading every layer and checking its digest.
func checkPulled(t *testing.T, ref string, want v1.Image, opts ...remote.Option) {
	t.Helper()
	got, err := remote.Image(parse(t, ref), opts...)
	if err != nil {
		t.Fatalf("remote.Image(%s): %v", ref, err)
	}
	gd, _ := got.Digest()
	wd, _ := want.Digest()
	if gd != wd {
		t.Errorf("%s: digest %s, want %s", ref, gd, wd)
	}
	gm, _ := got.MediaType()
	wm, _ := want.MediaType()
	if gm != wm {
		t.Errorf("%s: media type %s, want %s", ref, gm, wm)
	}
	layers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	wantLayers, _ := want.Layers()
	if len(layers) != len(wantLayers) {
		t.Fatalf("%s: %d layers, want %d", ref, len(layers), len(wantLayers))
	}
	for i, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		h, _, err := v1.SHA256(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: reading layer %d: %v", ref, i, err)
		}
		wd, _ := wantLayers[i].Digest()
		if h != wd {
			t.Errorf("%s: layer %d digest %s, want %s", ref, i, h, wd)
		}
	}
}

func TestPushAndPull(t *testing.T) {
	r := Start(t)

	t.Run("gzip-docker", func(t *testing.T) {
		img := mustImage(t, 1, imagegen.Gzip, 2)
		d := r.Push(t, r.Ref("test/gzip:v1"), img)
		if want, _ := img.Digest(); d != want {
			t.Errorf("Push returned %s, want %s", d, want)
		}
		checkPulled(t, r.Ref("test/gzip:v1"), img)
		checkPulled(t, r.Ref("test/gzip@"+d.String()), img)
		// The registry stored the blobs where BlobPath says.
		ls, _ := img.Layers()
		ld, _ := ls[0].Digest()
		if _, err := os.Stat(r.BlobPath(ld)); err != nil {
			t.Errorf("BlobPath: %v", err)
		}
	})

	t.Run("zstd-oci", func(t *testing.T) {
		img := mustImage(t, 2, imagegen.Zstd, 1)
		r.Push(t, r.Ref("test/zstd:v1"), img)
		checkPulled(t, r.Ref("test/zstd:v1"), img)
		got, _ := remote.Image(parse(t, r.Ref("test/zstd:v1")))
		m, _ := got.Manifest()
		if m.MediaType != types.OCIManifestSchema1 || m.Layers[0].MediaType != types.OCILayerZStd {
			t.Errorf("media types %s / %s", m.MediaType, m.Layers[0].MediaType)
		}
	})

	t.Run("index", func(t *testing.T) {
		amd := mustImage(t, 3, imagegen.Gzip, 1, imagegen.WithOCI(true))
		arm := mustImage(t, 4, imagegen.Gzip, 1, imagegen.WithOCI(true), imagegen.WithPlatform("linux", "arm64", ""))
		idx, err := imagegen.Index([]v1.Image{amd, arm}, true)
		if err != nil {
			t.Fatal(err)
		}
		d := r.PushIndex(t, r.Ref("test/multi:v1"), idx)
		got, err := remote.Index(parse(t, r.Ref("test/multi:v1")))
		if err != nil {
			t.Fatal(err)
		}
		if gd, _ := got.Digest(); gd != d {
			t.Errorf("index digest %s, want %s", gd, d)
		}
		im, _ := got.IndexManifest()
		if len(im.Manifests) != 2 || im.Manifests[1].Platform.Architecture != "arm64" {
			t.Fatalf("index manifest %+v", im)
		}
		// Platform resolution, as a puller would do it.
		checkPulled(t, r.Ref("test/multi:v1"), arm,
			remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))
		checkPulled(t, r.Ref("test/multi:v1"), amd)
	})

	t.Run("raw", func(t *testing.T) {
		cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}`)
		layer := []byte("this is not a gzip stream")
		cd := r.PushBlob(t, "test/raw", cfg)
		ld := r.PushBlob(t, "test/raw", layer)
		// Odd but valid JSON, which must come back byte for byte.
		manifest := []byte(fmt.Sprintf(`{ "schemaVersion": 2,
  "mediaType": %q,
  "config": {"mediaType": %q, "size": %d, "digest": %q},
  "layers": [ {"mediaType": %q, "size": %d, "digest": %q} ] }`,
			types.DockerManifestSchema2, types.DockerConfigJSON, len(cfg), cd,
			types.DockerLayer, len(layer), ld))
		d := r.PushRaw(t, "test/raw", "v1", string(types.DockerManifestSchema2), manifest)
		want, _, _ := v1.SHA256(bytes.NewReader(manifest))
		if d != want {
			t.Errorf("PushRaw digest %s, want %s", d, want)
		}
		desc, err := remote.Get(parse(t, r.Ref("test/raw:v1")))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(desc.Manifest, manifest) || desc.Digest != want {
			t.Errorf("manifest came back as %s (%s)", desc.Manifest, desc.Digest)
		}
		// The garbage layer is served as stored.
		img, _ := desc.Image()
		l, err := img.LayerByDigest(ld)
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := l.Compressed()
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(b, layer) {
			t.Errorf("layer blob %q, %v", b, err)
		}

		// The registry refuses what does not parse; PutManifest shows how.
		status, body, _, err := r.PutManifest("test/raw", "bad", string(types.DockerManifestSchema2), []byte("{not json"))
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusBadRequest || !strings.Contains(string(body), "MANIFEST_INVALID") {
			t.Errorf("malformed manifest: status %d: %s", status, body)
		}
	})
}

func TestBasicAuth(t *testing.T) {
	r := Start(t, WithBasicAuth("flick", "s3cr3t pass"))

	resp, err := http.Get(r.URL() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous GET /v2/: %s, want 401", resp.Status)
	}

	img := mustImage(t, 5, imagegen.Gzip, 1)
	r.Push(t, r.Ref("auth/img:v1"), img) // Push authenticates by itself
	checkPulled(t, r.Ref("auth/img:v1"), img, r.RemoteOptions()...)

	if _, err := remote.Image(parse(t, r.Ref("auth/img:v1"))); err == nil {
		t.Error("anonymous pull succeeded")
	}
	bad := remote.WithAuth(&authn.Basic{Username: "flick", Password: "wrong"})
	if _, err := remote.Image(parse(t, r.Ref("auth/img:v1")), bad); err == nil {
		t.Error("pull with a wrong password succeeded")
	}
}

func TestFaultProxy(t *testing.T) {
	r := Start(t)
	p := NewFaultProxy(t, r.URL())

	// Push through the proxy: uploads must come back to it and work.
	l, err := imagegen.RandomLayer(6, 3, 1<<20, imagegen.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := imagegen.Image([]v1.Layer{l})
	r.Push(t, p.Ref("proxy/img:v1"), img)
	checkPulled(t, p.Ref("proxy/img:v1"), img)
	if len(p.Requests()) == 0 {
		t.Fatal("no requests went through the proxy")
	}

	ld, _ := l.Digest()
	size, _ := l.Size()
	blobURL := p.URL() + "/v2/proxy/img/blobs/" + ld.String()

	t.Run("cut-then-resume", func(t *testing.T) {
		p.ClearRequests()
		const cut = 100_000
		p.CutBlobsAfter(cut, 1)
		resp, err := http.Get(blobURL)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.ContentLength != size {
			t.Fatalf("cut GET: %s, Content-Length %d, want 200 with %d", resp.Status, resp.ContentLength, size)
		}
		head, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !errors.Is(err, io.ErrUnexpectedEOF) || len(head) != cut {
			t.Fatalf("cut GET: read %d bytes, err %v; want %d bytes and unexpected EOF", len(head), err, cut)
		}

		req, _ := http.NewRequest(http.MethodGet, blobURL, nil)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", len(head)))
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusPartialContent {
			t.Fatalf("Range GET: %s, want 206", resp.Status)
		}
		if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes %d-%d/%d", cut, size-1, size) {
			t.Errorf("Content-Range %q", cr)
		}
		if h, _, _ := v1.SHA256(io.MultiReader(bytes.NewReader(head), bytes.NewReader(rest))); h != ld {
			t.Errorf("resumed blob digest %s, want %s", h, ld)
		}

		log := p.Requests()
		if len(log) != 2 {
			t.Fatalf("request log %+v", log)
		}
		if log[0].Fault != "cut" || log[0].Bytes != cut || log[0].Range != "" {
			t.Errorf("first request %+v", log[0])
		}
		if log[1].Status != http.StatusPartialContent || log[1].Range != fmt.Sprintf("bytes=%d-", cut) || log[1].Fault != "" {
			t.Errorf("second request %+v", log[1])
		}
	})

	t.Run("cut-seen-by-ggcr", func(t *testing.T) {
		p.CutBlobsAfter(1000, 1)
		dref, err := name.NewDigest(p.Ref("proxy/img@"+ld.String()), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		rl, err := remote.Layer(dref)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := rl.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err == nil {
			t.Error("a cut download read without error")
		}
	})

	t.Run("fail-next", func(t *testing.T) {
		p.FailNext(http.StatusServiceUnavailable, 2, "try later")
		for i := 0; i < 3; i++ {
			resp, err := http.Get(p.URL() + "/v2/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if i < 2 && (resp.StatusCode != 503 || string(b) != "try later") {
				t.Errorf("request %d: %s %q, want 503 %q", i, resp.Status, b, "try later")
			}
			if i == 2 && resp.StatusCode != 200 {
				t.Errorf("request %d: %s, want 200", i, resp.Status)
			}
		}
	})

	t.Run("corrupt", func(t *testing.T) {
		p.Corrupt(1)
		resp, err := http.Get(blobURL)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || int64(len(b)) != size {
			t.Fatalf("corrupt GET: %d bytes, %v", len(b), err)
		}
		if h, _, _ := v1.SHA256(bytes.NewReader(b)); h == ld {
			t.Error("corrupted body has the right digest")
		}
		// The next download is intact again.
		resp, err = http.Get(blobURL)
		if err != nil {
			t.Fatal(err)
		}
		h, _, err := v1.SHA256(resp.Body)
		resp.Body.Close()
		if err != nil || h != ld {
			t.Errorf("clean GET after corrupt: %s, %v", h, err)
		}
	})

	t.Run("intercept", func(t *testing.T) {
		bad := []byte(`{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": [`)
		p.Intercept(func(r *http.Request) bool {
			return strings.HasSuffix(r.URL.Path, "/manifests/broken")
		}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
			_, _ = w.Write(bad)
		}), 1)
		resp, err := http.Get(p.URL() + "/v2/proxy/img/manifests/broken")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(b, bad) {
			t.Errorf("intercepted body %q", b)
		}
		if _, err := remote.Image(parse(t, p.Ref("proxy/img:broken"))); err == nil {
			t.Error("ggcr accepted a missing manifest (interception should have been used up)")
		}
	})
}

func TestRawManifestJSON(t *testing.T) {
	// Make sure the manifests imagegen makes are what the registry expects
	// of the media types it declares.
	r := Start(t)
	img := mustImage(t, 7, imagegen.Uncompressed, 1, imagegen.WithOCI(true))
	r.Push(t, r.Ref("plain/img:v1"), img)
	desc, err := remote.Get(parse(t, r.Ref("plain/img:v1")))
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != types.OCIManifestSchema1 || m.Layers[0].MediaType != types.OCIUncompressedLayer {
		t.Errorf("media types %s / %s", desc.MediaType, m.Layers[0].MediaType)
	}
}

func TestMissingBinary(t *testing.T) {
	t.Setenv(BinaryEnv, "/nonexistent/docker-registry")
	ft := &fatalRecorder{TB: t}
	func() {
		defer func() { _ = recover() }()
		Start(ft)
	}()
	if !strings.Contains(ft.msg, "docker-registry not found: apt-get install docker-registry") {
		t.Errorf("Start with a missing binary said %q", ft.msg)
	}
}

// fatalRecorder records a Fatalf and stops the calling function with a panic
// instead of failing the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic("fatal")
}

func (f *fatalRecorder) Helper() {}
