package pull

import (
	"context"
	"fmt"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/oci"
	"github.com/flick-edge/flick/internal/reference"
	"github.com/flick-edge/flick/internal/registry"
	"github.com/opencontainers/go-digest"
)

// resolved is an image's manifest and config, fetched and validated.
type resolved struct {
	indexDigest    digest.Digest
	indexRaw       []byte
	manifestDigest digest.Digest
	manifestRaw    []byte
	manifest       oci.Manifest
	config         oci.Config
}

// Resolve fetches what ref names for platform: an index is narrowed to one
// manifest; the manifest and its config are validated against each other.
func (p *Puller) resolve(ctx context.Context, repo *registry.Repo, ref reference.Ref, plat oci.Platform) (*resolved, error) {
	what := ref.Tag()
	if ref.Digest() != "" {
		what = ref.Digest().String()
	}
	mt, body, dgst, err := repo.Manifest(ctx, what)
	if err != nil {
		return nil, err
	}
	res := &resolved{}
	mt = oci.Sniff(mt, body)
	if oci.IsIndex(mt) {
		idx, err := oci.ParseIndex(mt, body)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref.Familiar(), err)
		}
		desc, err := oci.Select(idx, plat)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref.Familiar(), err)
		}
		res.indexDigest, res.indexRaw = dgst, body
		mt, body, dgst, err = repo.Manifest(ctx, desc.Digest.String())
		if err != nil {
			return nil, err
		}
		if int64(len(body)) != desc.Size {
			return nil, errdefs.NewInvalidArgument(fmt.Errorf("%s: manifest %s is %d bytes, the index says %d", ref.Familiar(), desc.Digest, len(body), desc.Size))
		}
		mt = oci.Sniff(mt, body)
	}
	if !oci.IsManifest(mt) {
		if _, err := oci.ParseManifest(mt, body); err != nil {
			return nil, fmt.Errorf("%s: %w", ref.Familiar(), err) // says why, e.g. schema1
		}
		return nil, errdefs.NewInvalidArgument(fmt.Errorf("%s: registry answered with media type %q, which is not an image manifest", ref.Familiar(), mt))
	}
	m, err := oci.ParseManifest(mt, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref.Familiar(), err)
	}
	if oci.IsWasmArtifact(m) {
		return nil, errdefs.NewInvalidArgument(fmt.Errorf("%s is a WebAssembly function artifact, not a container image: deploy it with 'flick fn deploy NAME --image %s'", ref.Familiar(), ref.Familiar()))
	}
	res.manifestDigest, res.manifestRaw, res.manifest = dgst, body, m
	cfgRaw, err := repo.Blob(ctx, m.Config.Digest, m.Config.Size, oci.MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", ref.Familiar(), err)
	}
	cfg, err := oci.ParseConfig(cfgRaw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref.Familiar(), err)
	}
	if err := m.Check(cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", ref.Familiar(), err)
	}
	res.config = cfg
	return res, nil
}
