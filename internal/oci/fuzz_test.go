package oci

import (
	"bytes"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/flick-edge/flick/internal/errdefs"
)

// The fuzzers check that parsing never panics, that every error is
// InvalidArgument, and that whatever is accepted satisfies the documented
// invariants and parses again to the same thing. Seeds are in
// testdata/fuzz/<FuzzName>/, built from the samples in testdata/.

func FuzzParseManifest(f *testing.F) {
	f.Fuzz(func(t *testing.T, ct string, b []byte) {
		_ = Sniff(ct, b)
		m, err := ParseManifest(ct, b)
		if err != nil {
			if !errdefs.Is(err, errdefs.InvalidArgument) {
				t.Fatalf("error %v is %v", err, errdefs.ClassOf(err))
			}
			return
		}
		if !IsManifest(m.MediaType) || m.Digest != digest.FromBytes(b) || !bytes.Equal(m.Raw, b) {
			t.Fatalf("bad manifest %+v", m)
		}
		if len(b) > MaxManifestSize || len(m.Layers) > MaxLayers {
			t.Fatal("limits not enforced")
		}
		for _, d := range append([]Descriptor{m.Config}, m.Layers...) {
			if d.Digest.Validate() != nil || d.Size < 0 || d.MediaType == "" {
				t.Fatalf("bad descriptor %+v", d)
			}
		}
		for _, l := range m.Layers {
			if !IsLayer(l.MediaType) && !IsWasmLayer(l.MediaType) {
				t.Fatalf("unknown layer type %q accepted", l.MediaType)
			}
		}
		if _, err := ParseIndex(ct, b); err == nil {
			t.Fatal("document is both a manifest and an index")
		}
		again, err := ParseManifest(m.MediaType, m.Raw)
		if err != nil || again.MediaType != m.MediaType || len(again.Layers) != len(m.Layers) || again.Digest != m.Digest {
			t.Fatalf("re-parse with %q: %v", m.MediaType, err)
		}
		if s := Sniff("", b); s != m.MediaType && s != "" && IsManifest(s) {
			t.Fatalf("Sniff says %q, ParseManifest %q", s, m.MediaType)
		}
		_ = IsWasmArtifact(m)
	})
}

func FuzzParseIndex(f *testing.F) {
	f.Fuzz(func(t *testing.T, ct string, b []byte) {
		_ = Sniff(ct, b)
		idx, err := ParseIndex(ct, b)
		if err != nil {
			if !errdefs.Is(err, errdefs.InvalidArgument) {
				t.Fatalf("error %v is %v", err, errdefs.ClassOf(err))
			}
			return
		}
		if !IsIndex(idx.MediaType) || idx.Digest != digest.FromBytes(b) || !bytes.Equal(idx.Raw, b) {
			t.Fatalf("bad index %+v", idx)
		}
		for _, d := range idx.Manifests {
			if d.Digest.Validate() != nil || d.Size < 0 || d.MediaType == "" {
				t.Fatalf("bad descriptor %+v", d)
			}
		}
		if _, err := ParseManifest(ct, b); err == nil {
			t.Fatal("document is both an index and a manifest")
		}
		again, err := ParseIndex(idx.MediaType, idx.Raw)
		if err != nil || again.MediaType != idx.MediaType || len(again.Manifests) != len(idx.Manifests) {
			t.Fatalf("re-parse with %q: %v", idx.MediaType, err)
		}
		for _, p := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7", "windows/amd64"} {
			pl, _ := ParsePlatform(p)
			d, err := Select(idx, pl)
			if err != nil {
				if !errdefs.Is(err, errdefs.NotFound) {
					t.Fatalf("Select: %v is %v", err, errdefs.ClassOf(err))
				}
				continue
			}
			if isAttestation(d) || !(IsManifest(d.MediaType) || IsIndex(d.MediaType)) {
				t.Fatalf("Select chose %+v", d)
			}
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			if !errdefs.Is(err, errdefs.InvalidArgument) {
				t.Fatalf("error %v is %v", err, errdefs.ClassOf(err))
			}
			return
		}
		if c.Image.RootFS.Type != "layers" || len(c.Image.RootFS.DiffIDs) > MaxLayers || c.Digest != digest.FromBytes(b) {
			t.Fatalf("bad config %+v", c)
		}
		for _, d := range c.Image.RootFS.DiffIDs {
			if d.Validate() != nil {
				t.Fatalf("bad diff ID %q", d)
			}
		}
		again, err := ParseConfig(c.Raw)
		if err != nil || len(again.Image.RootFS.DiffIDs) != len(c.Image.RootFS.DiffIDs) {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

// FuzzParsePlatform checks that ParsePlatform's output is a fixed point.
func FuzzParsePlatform(f *testing.F) {
	for _, s := range []string{"linux/amd64", "arm64", "linux/arm/v7", "armhf", "windows", "linux/arm64/v8", "x86_64"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePlatform(s)
		if err != nil {
			return
		}
		again, err := ParsePlatform(p.String())
		if err != nil || again != p {
			t.Fatalf("ParsePlatform(%q) = %v; ParsePlatform(%q) = %v, %v", s, p, p, again, err)
		}
	})
}
