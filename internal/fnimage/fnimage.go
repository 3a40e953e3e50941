// Package fnimage moves function modules to and from OCI registries in the
// CNCF Wasm artifact layout: an OCI manifest whose config is
// application/vnd.wasm.config.v0+json and whose single layer is the module
// (application/wasm; Spin's application/vnd.wasm.content.layer.v1+wasm is
// accepted too). Pulls go through Flick's registry client (auth, TLS,
// retries, digest checks); pushes through go-containerregistry.
package fnimage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/oci"
	"github.com/flick-edge/flick/internal/reference"
	"github.com/flick-edge/flick/internal/registry"
	"github.com/opencontainers/go-digest"
)

// MaxModuleSize bounds a module fetched from a registry.
const MaxModuleSize = 64 << 20

// Fetched is a module pulled from a registry.
type Fetched struct {
	Ref      string        // the normalised reference, pinned by digest
	Manifest digest.Digest //
	Module   []byte        // verified against the layer digest
}

// Fetch pulls the Wasm module that ref names.
func Fetch(ctx context.Context, reg *registry.Client, ref string, cred registry.Credentials) (Fetched, error) {
	r, err := reference.Parse(ref)
	if err != nil {
		return Fetched{}, err
	}
	repo, err := reg.Open(ctx, r, cred)
	if err != nil {
		return Fetched{}, err
	}
	want := r.Tag()
	if r.Digest() != "" {
		want = r.Digest().String()
	}
	mt, body, dgst, err := repo.Manifest(ctx, want)
	if err != nil {
		return Fetched{}, err
	}
	mt = oci.Sniff(mt, body)
	if oci.IsIndex(mt) {
		idx, err := oci.ParseIndex(mt, body)
		if err != nil {
			return Fetched{}, err
		}
		d, err := oci.Select(idx, oci.Platform{OS: "wasip1", Architecture: "wasm"})
		if err != nil {
			return Fetched{}, errdefs.NewInvalidArgument(fmt.Errorf("%s is an index without a wasip1/wasm entry: %w", r.Familiar(), err))
		}
		if mt, body, dgst, err = repo.Manifest(ctx, d.Digest.String()); err != nil {
			return Fetched{}, err
		}
		mt = oci.Sniff(mt, body)
	}
	m, err := oci.ParseManifest(mt, body)
	if err != nil {
		return Fetched{}, err
	}
	if !oci.IsWasmArtifact(m) {
		return Fetched{}, errdefs.NewInvalidArgument(fmt.Errorf("%s is a container image, not a Wasm function (config %s): run it as a container, or push a module with 'flick fn push'", r.Familiar(), m.Config.MediaType))
	}
	var layer *oci.Descriptor
	for i, l := range m.Layers {
		if oci.IsWasmLayer(l.MediaType) {
			if layer != nil {
				return Fetched{}, errdefs.NewInvalidArgument(fmt.Errorf("%s holds several Wasm layers; Flick runs single-module artifacts (components and Spin apps are not supported)", r.Familiar()))
			}
			layer = &m.Layers[i]
		}
	}
	if layer == nil {
		return Fetched{}, errdefs.NewInvalidArgument(fmt.Errorf("%s has no application/wasm layer", r.Familiar()))
	}
	if layer.Size > MaxModuleSize {
		return Fetched{}, errdefs.NewInvalidArgument(fmt.Errorf("%s: module is %d bytes, over the %d-byte limit", r.Familiar(), layer.Size, MaxModuleSize))
	}
	mod, err := repo.Blob(ctx, layer.Digest, layer.Size, MaxModuleSize)
	if err != nil {
		return Fetched{}, err
	}
	return Fetched{Ref: r.WithDigest(dgst).String(), Manifest: dgst, Module: mod}, nil
}

// Config is the Wasm artifact config (application/vnd.wasm.config.v0+json).
type Config struct {
	Created      time.Time       `json:"created"`
	Author       string          `json:"author,omitempty"`
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	LayerDigests []digest.Digest `json:"layerDigests"`
}

// ArtifactConfig returns the config blob for a module.
func ArtifactConfig(module []byte, created time.Time) []byte {
	b, _ := json.Marshal(Config{Created: created.UTC(), Architecture: "wasm", OS: "wasip1", LayerDigests: []digest.Digest{digest.FromBytes(module)}})
	return b
}
