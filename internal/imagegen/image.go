package imagegen

import (
	"bytes"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ImageOption configures Image.
type ImageOption func(*imageConfig)

type imageConfig struct {
	os, arch, variant string
	oci               *bool
	cmd               []string
	env               []string
	volumes           []string
}

// WithPlatform sets the image's os, architecture and variant (variant may be
// empty). The default is linux/amd64.
func WithPlatform(os, arch, variant string) ImageOption {
	return func(c *imageConfig) { c.os, c.arch, c.variant = os, arch, variant }
}

// WithOCI chooses OCI media types (true) or Docker schema 2 media types
// (false) for the manifest, the config and the layers built by this package.
// The default is Docker schema 2, unless a layer is zstd-compressed, which
// only OCI defines, in which case it is OCI.
func WithOCI(oci bool) ImageOption {
	return func(c *imageConfig) { c.oci = &oci }
}

// WithCmd sets the image config's Cmd. The default is ["/bin/sh"].
func WithCmd(cmd ...string) ImageOption {
	return func(c *imageConfig) { c.cmd = append([]string(nil), cmd...) }
}

// WithEnv sets the image config's Env, replacing the default
// ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"].
func WithEnv(env ...string) ImageOption {
	return func(c *imageConfig) { c.env = append([]string(nil), env...) }
}

// WithVolumes declares VOLUME paths in the image config.
func WithVolumes(paths ...string) ImageOption {
	return func(c *imageConfig) { c.volumes = append(c.volumes, paths...) }
}

// DefaultPath is the PATH in the default Env of an image config.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Image assembles layers, bottom first, into an image whose config has the
// platform, a Cmd and an Env, the layers' diffIDs in rootfs, and one history
// entry per layer. Layers built by this package take the media type of their
// compression in the image's flavour (Docker or OCI, see WithOCI); other
// layers, such as RawLayer's, keep theirs.
//
// The manifest and config are built at once: the image's digest is fixed
// and the same for the same inputs.
func Image(layers []v1.Layer, opts ...ImageOption) (v1.Image, error) {
	c := imageConfig{
		os: "linux", arch: "amd64",
		cmd: []string{"/bin/sh"},
		env: []string{DefaultPath},
	}
	for _, o := range opts {
		o(&c)
	}
	oci := false
	if c.oci != nil {
		oci = *c.oci
	} else {
		for _, l := range layers {
			if mt, err := l.MediaType(); err == nil && mt == types.OCILayerZStd {
				oci = true
			}
		}
	}

	cfg := v1.ConfigFile{
		Architecture: c.arch,
		OS:           c.os,
		Variant:      c.variant,
		Created:      v1.Time{Time: Epoch},
		Config:       v1.Config{Cmd: c.cmd, Env: c.env, Volumes: volumeSet(c.volumes)},
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{}},
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.DockerManifestSchema2,
		Config:        v1.Descriptor{MediaType: types.DockerConfigJSON},
		Layers:        []v1.Descriptor{},
	}
	if oci {
		m.MediaType = types.OCIManifestSchema1
		m.Config.MediaType = types.OCIConfigJSON
	}
	img := &image{layers: map[v1.Hash]v1.Layer{}}
	for i, l := range layers {
		l = flavoured(l, oci)
		d, err := partial.Descriptor(l)
		if err != nil {
			return nil, fmt.Errorf("imagegen: layer %d: %w", i, err)
		}
		diffID, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("imagegen: layer %d: %w", i, err)
		}
		m.Layers = append(m.Layers, *d)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
		cfg.History = append(cfg.History, v1.History{
			Created:   v1.Time{Time: Epoch},
			CreatedBy: fmt.Sprintf("imagegen layer %d (%s)", i, d.MediaType),
		})
		img.layers[d.Digest] = l
		img.order = append(img.order, l)
	}

	var err error
	if img.rawConfig, err = json.Marshal(&cfg); err != nil {
		return nil, err
	}
	m.Config.Size = int64(len(img.rawConfig))
	if m.Config.Digest, _, err = v1.SHA256(bytes.NewReader(img.rawConfig)); err != nil {
		return nil, err
	}
	if img.rawManifest, err = json.Marshal(&m); err != nil {
		return nil, err
	}
	img.mediaType = m.MediaType
	img.configName = m.Config.Digest
	img.configMediaType = m.Config.MediaType
	return img, nil
}

// image is a v1.Image with a fixed manifest and config.
type image struct {
	rawManifest     []byte
	rawConfig       []byte
	mediaType       types.MediaType
	configName      v1.Hash
	configMediaType types.MediaType
	layers          map[v1.Hash]v1.Layer
	order           []v1.Layer
}

var _ v1.Image = (*image)(nil)

func (i *image) Layers() ([]v1.Layer, error)         { return append([]v1.Layer(nil), i.order...), nil }
func (i *image) MediaType() (types.MediaType, error) { return i.mediaType, nil }
func (i *image) Size() (int64, error)                { return int64(len(i.rawManifest)), nil }
func (i *image) ConfigName() (v1.Hash, error)        { return i.configName, nil }
func (i *image) RawConfigFile() ([]byte, error)      { return i.rawConfig, nil }
func (i *image) RawManifest() ([]byte, error)        { return i.rawManifest, nil }

func (i *image) ConfigFile() (*v1.ConfigFile, error) {
	return v1.ParseConfigFile(bytes.NewReader(i.rawConfig))
}

func (i *image) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(i.rawManifest))
	return h, err
}

func (i *image) Manifest() (*v1.Manifest, error) {
	return v1.ParseManifest(bytes.NewReader(i.rawManifest))
}

// ConfigLayer gives the config blob with the config's media type.
func (i *image) ConfigLayer() (v1.Layer, error) {
	return RawLayer(i.rawConfig, i.configMediaType, v1.Hash{}), nil
}

func (i *image) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	if l, ok := i.layers[h]; ok {
		return l, nil
	}
	if h == i.configName {
		return i.ConfigLayer()
	}
	return nil, fmt.Errorf("imagegen: image has no blob %s", h)
}

func (i *image) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	for _, l := range i.order {
		if d, err := l.DiffID(); err == nil && d == h {
			return l, nil
		}
	}
	return nil, fmt.Errorf("imagegen: image has no layer with diffID %s", h)
}

// Index builds a multi-platform index of imgs, each described with its
// media type and the platform (os, architecture, variant) of its config.
// The index is an OCI image index if oci is true, else a Docker manifest list.
func Index(imgs []v1.Image, oci bool) (v1.ImageIndex, error) {
	var idx v1.ImageIndex = empty.Index
	if oci {
		idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	} else {
		idx = mutate.IndexMediaType(idx, types.DockerManifestList)
	}
	adds := make([]mutate.IndexAddendum, 0, len(imgs))
	for n, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("imagegen: image %d: %w", n, err)
		}
		mt, err := img.MediaType()
		if err != nil {
			return nil, fmt.Errorf("imagegen: image %d: %w", n, err)
		}
		adds = append(adds, mutate.IndexAddendum{
			Add: img,
			Descriptor: v1.Descriptor{
				MediaType: mt,
				Platform: &v1.Platform{
					OS:           cf.OS,
					Architecture: cf.Architecture,
					Variant:      cf.Variant,
				},
			},
		})
	}
	idx = mutate.AppendManifests(idx, adds...)
	if _, err := idx.Digest(); err != nil {
		return nil, fmt.Errorf("imagegen: index: %w", err)
	}
	return idx, nil
}

func volumeSet(paths []string) map[string]struct{} {
	if len(paths) == 0 {
		return nil
	}
	set := map[string]struct{}{}
	for _, p := range paths {
		set[p] = struct{}{}
	}
	return set
}
