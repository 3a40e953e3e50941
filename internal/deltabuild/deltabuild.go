// Package deltabuild makes delta artifacts from two images in a registry and
// publishes them beside the target, where any hub pulling the target finds
// them. It runs without a daemon (in CI, or in a fleet's release job): it reads
// both images with go-containerregistry, spools the base's layers to temporary
// files, encodes each target layer the base lacks (package delta), proves each
// delta by applying it and checking the target's diffID, and pushes an OCI
// artifact whose subject is the target manifest. Registries without the
// referrers API get the distribution spec's tag-schema fallback
// ("sha256-<hex>" tag holding an index), as go-containerregistry writes it.
package deltabuild

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flick-edge/flick/internal/delta"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Options name the two images and how to reach them.
type Options struct {
	Base, Target string
	Platform     *v1.Platform // nil: linux/amd64 or the index's only entry
	Push         bool
	Insecure     bool // allow plain HTTP to the registry
	TempDir      string
	Keychain     authn.Keychain
	Transport    remote.Option // optional extra (tests)
	Progress     func(string)
}

// LayerResult describes one target layer.
type LayerResult struct {
	DiffID     string      `json:"diffID"`
	LayerBytes int64       `json:"layerBytes"` // compressed, what a layer pull fetches
	DeltaBytes int64       `json:"deltaBytes"` // 0 when the layer is left to a full pull
	Skipped    string      `json:"skipped,omitempty"`
	Stats      delta.Stats `json:"stats"`
	blob       string
	digest     v1.Hash
}

// Result is what Create made.
type Result struct {
	Base           string        `json:"base"`
	Target         string        `json:"target"`
	TargetManifest string        `json:"targetManifest"`
	Layers         []LayerResult `json:"layers"`
	LayerPull      int64         `json:"layerPullBytes"` // Docker-style pull of TARGET with BASE present
	DeltaPull      int64         `json:"deltaPullBytes"` // Flick's pull with the delta (blobs + manifest)
	Artifact       string        `json:"artifact,omitempty"`
	Pushed         bool          `json:"pushed"`
	Seconds        float64       `json:"seconds"`
	PeakRSSMiB     float64       `json:"peakRSSMiB"` // of this process, so far
}

// Create computes the delta from Base to Target, and pushes it if asked.
func Create(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	say := o.Progress
	if say == nil {
		say = func(string) {}
	}
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	var nopts []name.Option
	if o.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	baseRef, err := name.ParseReference(o.Base, nopts...)
	if err != nil {
		return nil, fmt.Errorf("base %q: %w", o.Base, err)
	}
	targetRef, err := name.ParseReference(o.Target, nopts...)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", o.Target, err)
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(o.Keychain)}
	if o.Transport != nil {
		ropts = append(ropts, o.Transport)
	}
	if o.Platform != nil {
		ropts = append(ropts, remote.WithPlatform(*o.Platform))
	}
	baseImg, err := remote.Image(baseRef, ropts...)
	if err != nil {
		return nil, fmt.Errorf("read base %s: %w", o.Base, err)
	}
	targetImg, err := remote.Image(targetRef, ropts...)
	if err != nil {
		return nil, fmt.Errorf("read target %s: %w", o.Target, err)
	}
	baseDigest, err := baseImg.Digest()
	if err != nil {
		return nil, err
	}
	targetDigest, err := targetImg.Digest()
	if err != nil {
		return nil, err
	}
	targetRaw, err := targetImg.RawManifest()
	if err != nil {
		return nil, err
	}
	targetMT, err := targetImg.MediaType()
	if err != nil {
		return nil, err
	}
	res := &Result{Base: o.Base, Target: o.Target, TargetManifest: targetDigest.String()}

	baseLayers, err := baseImg.Layers()
	if err != nil {
		return nil, err
	}
	have := map[v1.Hash]bool{}
	var baseIDs []string
	basis := delta.NewBasis(o.TempDir)
	defer basis.Close()
	for i, l := range baseLayers {
		id, err := l.DiffID()
		if err != nil {
			return nil, err
		}
		have[id] = true
		baseIDs = append(baseIDs, id.String())
		say(fmt.Sprintf("indexing base layer %d/%d %s", i+1, len(baseLayers), short(id)))
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		err = basis.AddLayer(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("base layer %s: %w", short(id), err)
		}
	}

	targetLayers, err := targetImg.Layers()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(o.TempDir, "flick-delta-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var replaced int64
	for i, l := range targetLayers {
		id, err := l.DiffID()
		if err != nil {
			return nil, err
		}
		size, err := l.Size()
		if err != nil {
			return nil, err
		}
		if have[id] {
			continue // the hub has it already: nothing to send
		}
		have[id] = true
		res.LayerPull += size
		lr := LayerResult{DiffID: id.String(), LayerBytes: size}
		say(fmt.Sprintf("encoding target layer %d/%d %s (%s)", i+1, len(targetLayers), short(id), human(size)))
		lr.blob = fmt.Sprintf("%s/%d.delta", tmp, i)
		if err := encodeLayer(ctx, l, basis, &lr); err != nil {
			return nil, fmt.Errorf("target layer %s: %w", short(id), err)
		}
		if lr.DeltaBytes >= size {
			lr.Skipped = "delta not smaller than the layer"
			lr.DeltaBytes = 0
			res.DeltaPull += size
		} else {
			res.DeltaPull += lr.DeltaBytes
			replaced += size
		}
		res.Layers = append(res.Layers, lr)
	}

	var blobs []v1.Descriptor
	for _, lr := range res.Layers {
		if lr.DeltaBytes == 0 {
			continue
		}
		blobs = append(blobs, v1.Descriptor{MediaType: delta.MediaType, Digest: lr.digest, Size: lr.DeltaBytes,
			Annotations: map[string]string{delta.AnnotationTargetDiffID: lr.DiffID}})
	}
	if len(blobs) == 0 {
		res.Seconds = time.Since(start).Seconds()
		res.PeakRSSMiB = peakRSS()
		return res, nil
	}
	emptyCfg := []byte("{}")
	mf := artifactManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  delta.ArtifactType,
		Config:        v1.Descriptor{MediaType: types.MediaType("application/vnd.oci.empty.v1+json"), Digest: mustHash(emptyCfg), Size: 2},
		Layers:        blobs,
		Subject:       &v1.Descriptor{MediaType: targetMT, Digest: targetDigest, Size: int64(len(targetRaw))},
		Annotations: map[string]string{
			delta.AnnotationBaseLayers:         strings.Join(baseIDs, ","),
			delta.AnnotationBaseImage:          baseRef.Context().Name() + "@" + baseDigest.String(),
			delta.AnnotationTargetSize:         strconv.FormatInt(replaced, 10),
			"org.opencontainers.image.created": time.Now().UTC().Format(time.RFC3339),
		},
	}
	raw, err := json.Marshal(mf)
	if err != nil {
		return nil, err
	}
	h, _, err := v1.SHA256(strings.NewReader(string(raw)))
	if err != nil {
		return nil, err
	}
	res.DeltaPull += int64(len(raw))
	art := targetRef.Context().Digest(h.String())
	res.Artifact = art.String()
	if o.Push {
		repo := targetRef.Context()
		say("pushing " + art.String())
		if err := remote.WriteLayer(repo, &fileBlob{data: emptyCfg, mt: mf.Config.MediaType}, ropts...); err != nil {
			return nil, fmt.Errorf("push empty config: %w", err)
		}
		for _, lr := range res.Layers {
			if lr.DeltaBytes == 0 {
				continue
			}
			if err := remote.WriteLayer(repo, &fileBlob{path: lr.blob, mt: delta.MediaType, d: lr.digest, size: lr.DeltaBytes}, ropts...); err != nil {
				return nil, fmt.Errorf("push delta for %s: %w", short2(lr.DiffID), err)
			}
		}
		if err := remote.Put(art, rawManifest{raw: raw, mt: types.OCIManifestSchema1}, ropts...); err != nil {
			return nil, fmt.Errorf("push delta manifest: %w", err)
		}
		res.Pushed = true
	}
	res.Seconds = time.Since(start).Seconds()
	res.PeakRSSMiB = peakRSS()
	return res, nil
}

// peakRSS is the process's peak resident set, in MiB (0 if unknown).
func peakRSS() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // KiB on Linux
}

func encodeLayer(ctx context.Context, l v1.Layer, basis *delta.Basis, lr *LayerResult) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.Create(lr.blob)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := delta.Encode(ctx, rc, basis, f)
	if err != nil {
		return err
	}
	lr.Stats = st
	if st.DiffID.String() != lr.DiffID {
		return fmt.Errorf("layer content hashes to %s, the image says %s", st.DiffID, lr.DiffID)
	}
	// Prove the delta: rebuild the layer from the spooled base and check it
	// hashes to the diffID. A delta that would fail on a hub never ships.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	got, err := delta.Apply(ctx, f, basis, io.Discard)
	if err != nil {
		return fmt.Errorf("self-check: %w", err)
	}
	if got != st.DiffID {
		return fmt.Errorf("self-check: rebuilt layer hashes to %s, want %s", got, st.DiffID)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	h, n, err := v1.SHA256(f)
	if err != nil {
		return err
	}
	lr.digest, lr.DeltaBytes = h, n
	return nil
}

type artifactManifest struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Subject       *v1.Descriptor    `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// fileBlob is a blob to push, from memory or from a file on disk (a delta is
// never held whole in memory).
type fileBlob struct {
	data []byte
	path string
	mt   types.MediaType
	d    v1.Hash
	size int64
}

func (b *fileBlob) Digest() (v1.Hash, error) {
	if b.path == "" {
		return mustHash(b.data), nil
	}
	return b.d, nil
}
func (b *fileBlob) Size() (int64, error) {
	if b.path == "" {
		return int64(len(b.data)), nil
	}
	return b.size, nil
}
func (b *fileBlob) MediaType() (types.MediaType, error) { return b.mt, nil }
func (b *fileBlob) Compressed() (io.ReadCloser, error) {
	if b.path == "" {
		return io.NopCloser(strings.NewReader(string(b.data))), nil
	}
	return os.Open(b.path)
}

var _ partial.CompressedLayer = (*fileBlob)(nil)

// WriteLayer wants a full v1.Layer; the uncompressed view is never used for
// an upload, so the compressed bytes stand in for it.
func (b *fileBlob) DiffID() (v1.Hash, error)             { return b.Digest() }
func (b *fileBlob) Uncompressed() (io.ReadCloser, error) { return b.Compressed() }

func mustHash(b []byte) v1.Hash {
	h, _, err := v1.SHA256(strings.NewReader(string(b)))
	if err != nil {
		panic(err)
	}
	return h
}

func short(h v1.Hash) string {
	if len(h.Hex) > 12 {
		return h.Hex[:12]
	}
	return h.Hex
}

func short2(s string) string {
	if i := strings.IndexByte(s, ':'); i >= 0 && len(s) > i+13 {
		return s[i+1 : i+13]
	}
	return s
}

func human(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
