package oci

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestParseManifestSamples(t *testing.T) {
	tests := []struct {
		file, ct, wantMT string
		layers           int
		wasm             bool
	}{
		{"docker-manifest.json", MediaTypeDockerManifest, MediaTypeDockerManifest, 2, false},
		{"docker-manifest.json", "", MediaTypeDockerManifest, 2, false},
		{"docker-manifest.json", "application/json", MediaTypeDockerManifest, 2, false},
		{"docker-manifest.json", "Application/Vnd.Docker.Distribution.Manifest.V2+json; charset=utf-8", MediaTypeDockerManifest, 2, false},
		{"oci-manifest.json", MediaTypeOCIManifest, MediaTypeOCIManifest, 3, false},
		{"oci-manifest.json", "application/octet-stream", MediaTypeOCIManifest, 3, false},
		{"wasm-manifest.json", MediaTypeOCIManifest, MediaTypeOCIManifest, 1, true},
		{"windows-manifest.json", MediaTypeDockerManifest, MediaTypeDockerManifest, 2, false},
	}
	for _, tc := range tests {
		t.Run(tc.file+"/"+tc.ct, func(t *testing.T) {
			b := readSample(t, tc.file)
			m, err := ParseManifest(tc.ct, b)
			if err != nil {
				t.Fatal(err)
			}
			if m.MediaType != tc.wantMT || len(m.Layers) != tc.layers {
				t.Errorf("MediaType %q, %d layers; want %q, %d", m.MediaType, len(m.Layers), tc.wantMT, tc.layers)
			}
			if m.Digest != digest.FromBytes(b) || !bytes.Equal(m.Raw, b) {
				t.Errorf("Digest/Raw do not match the input")
			}
			if IsWasmArtifact(m) != tc.wasm {
				t.Errorf("IsWasmArtifact = %v", !tc.wasm)
			}
			b[0] = 'X' // the Manifest has its own copy
			if m.Raw[0] == 'X' {
				t.Error("Raw aliases the input")
			}
		})
	}

	// No mediaType field is fine for OCI.
	b := mutate(t, "oci-manifest.json", func(m map[string]any) { delete(m, "mediaType") })
	for _, ct := range []string{"", MediaTypeOCIManifest} {
		m, err := ParseManifest(ct, b)
		if err != nil || m.MediaType != MediaTypeOCIManifest {
			t.Errorf("OCI manifest without mediaType, ct %q: %v, %q", ct, err, m.MediaType)
		}
	}

	m, err := ParseManifest("", readSample(t, "oci-manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Annotations["org.opencontainers.image.ref.name"] != "1.0" || m.Layers[1].Annotations["org.opencontainers.image.title"] != "app" {
		t.Errorf("annotations lost: %v", m.Annotations)
	}
	if m.Layers[1].MediaType != MediaTypeOCILayerZstd || m.Layers[0].Size != 2811478 {
		t.Errorf("layer 1 = %+v", m.Layers[1])
	}

	w, err := ParseManifest("", readSample(t, "wasm-manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if w.ArtifactType != MediaTypeWasmConfig || w.Config.MediaType != MediaTypeWasmConfig {
		t.Errorf("wasm: %+v", w)
	}

	// A referrer (subject) manifest with an embedded empty config.
	ref := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":"application/vnd.example.sbom",
		"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"data":"e30="},
		"layers":[],"subject":{"mediaType":%q,"digest":%q,"size":920}}`, MediaTypeOCIManifest, MediaTypeOCIManifest, m.Digest)
	r, err := ParseManifest(MediaTypeOCIManifest, []byte(ref))
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject == nil || r.Subject.Digest != m.Digest || r.ArtifactType != "application/vnd.example.sbom" {
		t.Errorf("referrer: %+v", r)
	}
}

func TestParseManifestErrors(t *testing.T) {
	docker := readSample(t, "docker-manifest.json")
	layer := func(f func(l map[string]any)) []byte {
		return mutate(t, "docker-manifest.json", func(m map[string]any) { f(at(m, "layers", 0)) })
	}
	many := mutate(t, "oci-manifest.json", func(m map[string]any) {
		l := at(m, "layers", 0)
		ls := make([]any, MaxLayers+1)
		for i := range ls {
			ls[i] = l
		}
		m["layers"] = ls
	})
	oversized := append(bytes.Clone(docker[:len(docker)-2]), bytes.Repeat([]byte(" "), MaxManifestSize)...)
	oversized = append(oversized, '}')

	tests := []struct {
		name, ct string
		body     []byte
		want     string
	}{
		{"truncated", MediaTypeDockerManifest, docker[:len(docker)/2], "not valid JSON"},
		{"empty", MediaTypeDockerManifest, nil, "not valid JSON"},
		{"null", "", []byte("null"), "no schemaVersion"},
		{"array", "", []byte("[]"), "not valid JSON"},
		{"trailing garbage", MediaTypeDockerManifest, append(bytes.Clone(docker), "{}"...), "not valid JSON"},
		{"wrong mediaType", MediaTypeOCIManifest, docker, `does not match Content-Type`},
		{"index content type", MediaTypeOCIIndex, mutate(t, "oci-manifest.json", func(m map[string]any) { delete(m, "mediaType") }), "is an index, not a manifest"},
		{"index document", "", readSample(t, "oci-index.json"), "is an index, not a manifest"},
		{"unknown document type", "", mutate(t, "docker-manifest.json", func(m map[string]any) { m["mediaType"] = "application/vnd.example+json" }), `unsupported manifest media type "application/vnd.example+json"`},
		{"docker without mediaType", MediaTypeDockerManifest, mutate(t, "docker-manifest.json", func(m map[string]any) { delete(m, "mediaType") }), "lacks the mediaType field"},
		{"schemaVersion 3", "", mutate(t, "docker-manifest.json", func(m map[string]any) { m["schemaVersion"] = 3 }), "schemaVersion 3"},
		{"no schemaVersion", "", mutate(t, "docker-manifest.json", func(m map[string]any) { delete(m, "schemaVersion") }), "no schemaVersion"},
		{"string schemaVersion", "", mutate(t, "docker-manifest.json", func(m map[string]any) { m["schemaVersion"] = "2" }), "not valid JSON"},
		{"no config", "", mutate(t, "docker-manifest.json", func(m map[string]any) { delete(m, "config") }), "no config"},
		{"ambiguous", MediaTypeOCIManifest, mutate(t, "oci-manifest.json", func(m map[string]any) { m["manifests"] = []any{} }), "ambiguous"},
		{"bad digest", "", layer(func(l map[string]any) { l["digest"] = "sha256:xyz" }), `layer 0 has invalid digest "sha256:xyz"`},
		{"short digest", "", layer(func(l map[string]any) { l["digest"] = "sha256:abcd" }), "invalid digest"},
		{"uppercase digest", "", layer(func(l map[string]any) { l["digest"] = strings.ToUpper(l["digest"].(string)) }), "invalid digest"},
		{"unknown algorithm", "", layer(func(l map[string]any) { l["digest"] = "md5:d41d8cd98f00b204e9800998ecf8427e" }), "invalid digest"},
		{"empty digest", "", layer(func(l map[string]any) { delete(l, "digest") }), "invalid digest"},
		{"bad config digest", "", mutate(t, "docker-manifest.json", func(m map[string]any) { m["config"].(map[string]any)["digest"] = "sha256:" }), "config has invalid digest"},
		{"negative size", "", layer(func(l map[string]any) { l["size"] = -1 }), "layer 0 has negative size -1"},
		{"fractional size", "", layer(func(l map[string]any) { l["size"] = 1.5 }), "not valid JSON"},
		{"no layer mediaType", "", layer(func(l map[string]any) { delete(l, "mediaType") }), "layer 0 has no mediaType"},
		{"garbage layer mediaType", "", layer(func(l map[string]any) { l["mediaType"] = "not a type" }), "is not a media type"},
		{"unknown layer type", "", layer(func(l map[string]any) { l["mediaType"] = "application/vnd.in-toto+json" }), `layer 0 has unknown media type "application/vnd.in-toto+json"`},
		{"encrypted layer", "", layer(func(l map[string]any) { l["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted" }), "unknown media type"},
		{"bad url", "", layer(func(l map[string]any) { l["urls"] = []any{"ftp://example.com/x"} }), "invalid URL"},
		{"data mismatch", "", layer(func(l map[string]any) { l["data"] = "e30=" }), "embeds 2 bytes"},
		{"too many layers", "", many, "1001 layers, more than the 1000 allowed"},
		{"oversized", MediaTypeDockerManifest, oversized, "more than the 4194304 allowed"},
		{"bad subject", "", mutate(t, "oci-manifest.json", func(m map[string]any) {
			m["subject"] = map[string]any{"mediaType": MediaTypeOCIManifest, "digest": "sha256:1", "size": 1}
		}), "subject has invalid digest"},
		{"schema1 signed", "", readSample(t, "schema1-manifest.json"), errSchema1},
		{"schema1 content type", MediaTypeDockerSchema1SignedManifest, readSample(t, "schema1-manifest.json"), errSchema1},
		{"schema1 unsigned type", MediaTypeDockerSchema1Manifest, []byte(`{"schemaVersion":1}`), errSchema1},
		{"schema1 garbage", MediaTypeDockerSchema1Manifest, []byte(`not json`), errSchema1},
		{"schema1 by mediaType", "", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}`), errSchema1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseManifest(tc.ct, tc.body)
			wantInvalid(t, err, tc.want)
			if m.Raw != nil || m.MediaType != "" {
				t.Errorf("non-zero Manifest with error: %+v", m)
			}
		})
	}
}

func TestManifestAtLimits(t *testing.T) {
	// Exactly MaxLayers layers and exactly MaxManifestSize bytes are fine.
	b := mutate(t, "oci-manifest.json", func(m map[string]any) {
		l := at(m, "layers", 0)
		ls := make([]any, MaxLayers)
		for i := range ls {
			ls[i] = l
		}
		m["layers"] = ls
	})
	if len(b) > MaxManifestSize {
		t.Fatalf("test manifest too big: %d", len(b))
	}
	b = append(b, bytes.Repeat([]byte("\n"), MaxManifestSize-len(b))...)
	m, err := ParseManifest(MediaTypeOCIManifest, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != MaxLayers {
		t.Errorf("%d layers", len(m.Layers))
	}
}

func TestParseIndex(t *testing.T) {
	tests := []struct {
		file, ct, wantMT string
		n                int
	}{
		{"oci-index.json", MediaTypeOCIIndex, MediaTypeOCIIndex, 6},
		{"oci-index.json", "", MediaTypeOCIIndex, 6},
		{"docker-manifest-list.json", MediaTypeDockerManifestList, MediaTypeDockerManifestList, 8},
		{"docker-manifest-list.json", "text/plain; charset=utf-8", MediaTypeDockerManifestList, 8},
	}
	for _, tc := range tests {
		b := readSample(t, tc.file)
		idx, err := ParseIndex(tc.ct, b)
		if err != nil {
			t.Errorf("%s (%q): %v", tc.file, tc.ct, err)
			continue
		}
		if idx.MediaType != tc.wantMT || len(idx.Manifests) != tc.n || idx.Digest != digest.FromBytes(b) || !bytes.Equal(idx.Raw, b) {
			t.Errorf("%s: %q with %d entries", tc.file, idx.MediaType, len(idx.Manifests))
		}
	}

	// OCI index without a mediaType: sniffed from "manifests".
	b := mutate(t, "oci-index.json", func(m map[string]any) { delete(m, "mediaType") })
	if idx, err := ParseIndex("", b); err != nil || idx.MediaType != MediaTypeOCIIndex {
		t.Errorf("index without mediaType: %v", err)
	}
	// Artifacts and nested indexes are allowed entries.
	b = mutate(t, "oci-index.json", func(m map[string]any) {
		at(m, "manifests", 0)["mediaType"] = MediaTypeOCIIndex
		at(m, "manifests", 1)["artifactType"] = "application/vnd.example.sig"
	})
	if _, err := ParseIndex("", b); err != nil {
		t.Errorf("nested index/artifact entries: %v", err)
	}
}

func TestParseIndexErrors(t *testing.T) {
	list := readSample(t, "docker-manifest-list.json")
	tests := []struct {
		name, ct string
		body     []byte
		want     string
	}{
		{"manifest", "", readSample(t, "docker-manifest.json"), "is a manifest, not an index"},
		{"manifest content type", MediaTypeOCIManifest, mutate(t, "oci-index.json", func(m map[string]any) { delete(m, "mediaType") }), "is a manifest, not an index"},
		{"truncated", "", list[:100], "not valid JSON"},
		{"content type mismatch", MediaTypeOCIIndex, list, "does not match Content-Type"},
		{"docker list without mediaType", MediaTypeDockerManifestList, mutate(t, "docker-manifest-list.json", func(m map[string]any) { delete(m, "mediaType") }), "lacks the mediaType field"},
		{"ambiguous", "", mutate(t, "oci-index.json", func(m map[string]any) { m["layers"] = []any{} }), "ambiguous"},
		{"ambiguous config", MediaTypeOCIIndex, mutate(t, "oci-index.json", func(m map[string]any) { m["config"] = map[string]any{} }), "ambiguous"},
		{"bad entry digest", "", mutate(t, "oci-index.json", func(m map[string]any) { at(m, "manifests", 2)["digest"] = "sha256:zz" }), "index entry 2 has invalid digest"},
		{"negative entry size", "", mutate(t, "oci-index.json", func(m map[string]any) { at(m, "manifests", 0)["size"] = -5 }), "negative size"},
		{"entry without mediaType", "", mutate(t, "oci-index.json", func(m map[string]any) { delete(at(m, "manifests", 0), "mediaType") }), "no mediaType"},
		{"platform without arch", "", mutate(t, "oci-index.json", func(m map[string]any) {
			delete(at(m, "manifests", 0)["platform"].(map[string]any), "architecture")
		}), "platform without os or architecture"},
		{"schemaVersion 1", "", []byte(`{"schemaVersion":1,"manifests":[]}`), errSchema1},
		{"oversized", "", append(bytes.Repeat([]byte(" "), MaxManifestSize), list...), "more than the"},
		{"empty object", "", []byte(`{"schemaVersion":2}`), "cannot tell the media type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseIndex(tc.ct, tc.body)
			wantInvalid(t, err, tc.want)
		})
	}
}

func TestSniff(t *testing.T) {
	tests := []struct {
		ct   string
		body string
		want string
	}{
		{MediaTypeOCIIndex, `garbage`, MediaTypeOCIIndex},
		{MediaTypeDockerManifest + "; charset=utf-8", ``, MediaTypeDockerManifest},
		{"", `{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}`, MediaTypeDockerManifestList},
		{"application/json", `{"schemaVersion":2,"manifests":[]}`, MediaTypeOCIIndex},
		{"application/octet-stream", `{"schemaVersion":2,"config":{},"layers":[]}`, MediaTypeOCIManifest},
		{"text/plain", `{"layers":[]}`, MediaTypeOCIManifest},
		{"", `{"schemaVersion":1,"fsLayers":[]}`, MediaTypeDockerSchema1Manifest},
		{"", `{"schemaVersion":1,"fsLayers":[],"signatures":[{}]}`, MediaTypeDockerSchema1SignedManifest},
		{"", `{"manifests":[],"layers":[]}`, ""},
		{"", `{"manifests":null}`, ""},
		{"", `{}`, ""},
		{"", `not json`, ""},
		{"", ``, ""},
		{"application/vnd.example+json", `{"mediaType":"application/vnd.oci.image.manifest.v1+json"}`, MediaTypeOCIManifest},
	}
	for _, tc := range tests {
		if got := Sniff(tc.ct, []byte(tc.body)); got != tc.want {
			t.Errorf("Sniff(%q, %q) = %q, want %q", tc.ct, tc.body, got, tc.want)
		}
	}
	for _, f := range []string{"docker-manifest.json", "oci-manifest.json", "oci-index.json", "docker-manifest-list.json", "schema1-manifest.json"} {
		b := readSample(t, f)
		if got := Sniff("", b); got == "" {
			t.Errorf("Sniff(%s) = \"\"", f)
		}
	}
}

func TestIsIndexIsManifest(t *testing.T) {
	for mt, want := range map[string][2]bool{
		MediaTypeOCIIndex:                    {true, false},
		MediaTypeDockerManifestList:          {true, false},
		MediaTypeOCIManifest:                 {false, true},
		MediaTypeDockerManifest + "; x=y":    {false, true},
		MediaTypeDockerSchema1SignedManifest: {false, false},
		"application/json":                   {false, false},
		"":                                   {false, false},
	} {
		if IsIndex(mt) != want[0] || IsManifest(mt) != want[1] {
			t.Errorf("%q: IsIndex %v IsManifest %v", mt, IsIndex(mt), IsManifest(mt))
		}
	}
}

func TestIsWasmArtifact(t *testing.T) {
	runwasi := mutate(t, "oci-manifest.json", func(m map[string]any) {
		m["layers"] = []any{map[string]any{"mediaType": MediaTypeWasmContentLayer, "digest": digest.FromString("x").String(), "size": 1}}
	})
	m, err := ParseManifest("", runwasi)
	if err != nil {
		t.Fatal(err)
	}
	if !IsWasmArtifact(m) {
		t.Error("runwasi-style manifest is not a Wasm artifact")
	}
	d, _ := ParseManifest("", readSample(t, "docker-manifest.json"))
	if IsWasmArtifact(d) {
		t.Error("docker image is a Wasm artifact")
	}
}
