package oci

import (
	"bytes"
	"encoding/json"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Config is a validated image config (Docker "container image v1" or OCI
// image config; the two are the same JSON). Raw is a private copy of the
// document and Digest its canonical (sha256) digest. Image is the decoded
// document; fields the image-spec does not define are only in Raw.
// Treat the value as read-only.
type Config struct {
	Raw    []byte
	Digest digest.Digest
	Image  v1.Image
}

// ParseConfig parses and validates an image config: len(b) <= MaxConfigSize,
// one well-formed JSON object, rootfs.type "layers", at most MaxLayers diff
// IDs, each a valid digest. The os and architecture are not checked here (see
// Select for platforms). Every error is errdefs.InvalidArgument. b is copied.
//
// A Wasm artifact's config ("application/vnd.wasm.config.v0+json") is not an
// image config and fails here: check IsWasmArtifact first.
func ParseConfig(b []byte) (Config, error) {
	if len(b) > MaxConfigSize {
		return Config{}, invalid("image config is %d bytes, more than the %d allowed", len(b), MaxConfigSize)
	}
	var img v1.Image
	if err := json.Unmarshal(b, &img); err != nil {
		return Config{}, invalid("image config is not valid JSON: %v", err)
	}
	if img.RootFS.Type != "layers" {
		return Config{}, invalid("image config rootfs.type is %q, want \"layers\"", img.RootFS.Type)
	}
	if n := len(img.RootFS.DiffIDs); n > MaxLayers {
		return Config{}, invalid("image config has %d diff IDs, more than the %d allowed", n, MaxLayers)
	}
	for i, d := range img.RootFS.DiffIDs {
		if _, err := digest.Parse(string(d)); err != nil {
			return Config{}, invalid("image config diff ID %d %q: %v", i, d, err)
		}
	}
	raw := bytes.Clone(b)
	return Config{Raw: raw, Digest: digest.FromBytes(raw), Image: img}, nil
}
