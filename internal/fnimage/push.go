package fnimage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/oci"
	"github.com/flick-edge/flick/internal/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// PushOptions tune Push.
type PushOptions struct {
	Insecure bool           // plain HTTP (loopback registries always are)
	Keychain authn.Keychain // default: docker config.json
	Created  time.Time      // default: now
}

// rawManifest lets remote.Put send our own manifest bytes.
type rawManifest struct {
	body []byte
	mt   types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.body, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// Push publishes module as a CNCF Wasm artifact under ref and returns the
// manifest digest.
func Push(ctx context.Context, module []byte, ref string, o PushOptions) (digest.Digest, error) {
	if len(module) < 8 || !bytes.Equal(module[:4], []byte("\x00asm")) {
		return "", errdefs.NewInvalidArgument(fmt.Errorf("not a WebAssembly module (missing \\0asm magic)"))
	}
	r, err := reference.Parse(ref)
	if err != nil {
		return "", err
	}
	if r.Digest() != "" {
		return "", errdefs.NewInvalidArgument(fmt.Errorf("push to a tag, not a digest: %s", ref))
	}
	var nopts []name.Option
	if o.Insecure || reference.IsLoopback(r.Domain()) {
		nopts = append(nopts, name.Insecure)
	}
	tag, err := name.NewTag(r.String(), nopts...)
	if err != nil {
		return "", errdefs.NewInvalidArgument(err)
	}
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	if o.Created.IsZero() {
		o.Created = time.Now()
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(o.Keychain)}
	cfg := ArtifactConfig(module, o.Created)
	for _, blob := range []struct {
		b  []byte
		mt string
	}{{module, oci.MediaTypeWasmLayer}, {cfg, oci.MediaTypeWasmConfig}} {
		if err := remote.WriteLayer(tag.Repository, static.NewLayer(blob.b, types.MediaType(blob.mt)), ropts...); err != nil {
			return "", fmt.Errorf("push %s: %w", r.Familiar(), err)
		}
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: oci.MediaTypeWasmConfig,
		Config:       ocispec.Descriptor{MediaType: oci.MediaTypeWasmConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
		Layers: []ocispec.Descriptor{{MediaType: oci.MediaTypeWasmLayer, Digest: digest.FromBytes(module), Size: int64(len(module)),
			Annotations: map[string]string{ocispec.AnnotationTitle: "module.wasm"}}},
		Annotations: map[string]string{ocispec.AnnotationCreated: o.Created.UTC().Format(time.RFC3339)},
	}
	body, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	if err := remote.Put(tag, rawManifest{body: body, mt: types.OCIManifestSchema1}, ropts...); err != nil {
		return "", fmt.Errorf("push %s: %w", r.Familiar(), err)
	}
	return digest.FromBytes(body), nil
}
