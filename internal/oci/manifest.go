package oci

import (
	"bytes"
	_ "crypto/sha256" // digest algorithms must be linked in to be Available
	_ "crypto/sha512"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/flick-edge/flick/internal/errdefs"
)

// Limits.
const (
	// MaxManifestSize bounds a manifest or index document, in bytes.
	MaxManifestSize = 4 << 20
	// MaxConfigSize bounds an image config document, in bytes.
	MaxConfigSize = 8 << 20
	// MaxLayers bounds the layers of a manifest and the diff IDs of a config.
	MaxLayers = 1000
)

// Descriptor is the OCI content descriptor.
type Descriptor = v1.Descriptor

// Manifest is a validated image manifest (OCI or Docker schema2).
//
// MediaType is the effective media type (from the Content-Type or, when that
// is generic, from the document). Raw is a private copy of the document and
// Digest its canonical (sha256) digest. Treat the value as read-only.
type Manifest struct {
	MediaType    string
	Config       Descriptor
	Layers       []Descriptor
	Subject      *Descriptor
	ArtifactType string
	Annotations  map[string]string
	Raw          []byte
	Digest       digest.Digest
}

// Index is a validated OCI image index or Docker manifest list. Raw is a
// private copy of the document and Digest its canonical (sha256) digest.
// Treat the value as read-only.
type Index struct {
	MediaType string
	Manifests []Descriptor
	Raw       []byte
	Digest    digest.Digest
}

// errSchema1 is the message for Docker schema1 manifests.
const errSchema1 = "schema1 manifests are deprecated; repush the image with a current docker"

func invalid(format string, args ...any) error {
	return errdefs.NewInvalidArgument(fmt.Errorf(format, args...))
}

// document holds every top-level field of a manifest or an index. The raw
// fields are only used to tell what kind of document it is.
type document struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *Descriptor       `json:"config"`
	Layers        []Descriptor      `json:"layers"`
	Manifests     []Descriptor      `json:"manifests"`
	Subject       *Descriptor       `json:"subject"`
	Annotations   map[string]string `json:"annotations"`

	FSLayers   json.RawMessage `json:"fsLayers"`   // schema1
	Signatures json.RawMessage `json:"signatures"` // schema1, signed
}

// probe is document without the descriptors: what Sniff needs.
type probe struct {
	SchemaVersion json.RawMessage `json:"schemaVersion"`
	MediaType     json.RawMessage `json:"mediaType"`
	Config        json.RawMessage `json:"config"`
	Layers        json.RawMessage `json:"layers"`
	Manifests     json.RawMessage `json:"manifests"`
	FSLayers      json.RawMessage `json:"fsLayers"`
	Signatures    json.RawMessage `json:"signatures"`
}

// Sniff returns the media type of the manifest-ish document b served with
// Content-Type contentType. A known manifest, index or schema1 type in
// contentType (parameters and case ignored) is returned as is. Otherwise
// (empty, "application/json", "application/octet-stream", "text/plain", ...)
// the document decides: its "mediaType" field if set (normalised: lower-case,
// no parameters); else an index if it has
// "manifests", an OCI manifest if it has "config" or "layers", schema1 if it
// has "fsLayers" or schemaVersion 1. Sniff returns "" when it cannot tell.
// It never fails and reads at most MaxManifestSize bytes' worth of b.
func Sniff(contentType string, b []byte) string {
	ct := normalizeContentType(contentType)
	if isKnownDocument(ct) {
		return ct
	}
	if len(b) > MaxManifestSize {
		return ""
	}
	var p probe
	if json.Unmarshal(b, &p) != nil {
		return ""
	}
	var mt string
	if json.Unmarshal(p.MediaType, &mt) == nil && mt != "" {
		return normalize(mt)
	}
	var sv int
	_ = json.Unmarshal(p.SchemaVersion, &sv)
	switch {
	case present(p.FSLayers) || sv == 1:
		if present(p.Signatures) {
			return MediaTypeDockerSchema1SignedManifest
		}
		return MediaTypeDockerSchema1Manifest
	case present(p.Manifests) && !present(p.Config) && !present(p.Layers):
		return MediaTypeOCIIndex
	case !present(p.Manifests) && (present(p.Config) || present(p.Layers)):
		return MediaTypeOCIManifest
	}
	return ""
}

func present(r json.RawMessage) bool { return len(r) > 0 && !bytes.Equal(r, []byte("null")) }

// decode bounds, decodes and classifies a manifest or index document. want is
// "manifest" or "index", for messages. It returns the document and its
// effective media type.
func decode(want, contentType string, b []byte) (document, string, error) {
	var doc document
	if len(b) > MaxManifestSize {
		return doc, "", invalid("%s is %d bytes, more than the %d allowed", want, len(b), MaxManifestSize)
	}
	ct := normalizeContentType(contentType)
	if isSchema1(ct) {
		return doc, "", invalid(errSchema1)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return doc, "", invalid("%s is not valid JSON: %v", want, err)
	}
	if isSchema1(doc.MediaType) || present(doc.FSLayers) || (doc.SchemaVersion != nil && *doc.SchemaVersion == 1) {
		return doc, "", invalid(errSchema1)
	}
	if doc.SchemaVersion == nil {
		return doc, "", invalid("%s has no schemaVersion", want)
	}
	if *doc.SchemaVersion != 2 {
		return doc, "", invalid("%s has schemaVersion %d, want 2", want, *doc.SchemaVersion)
	}
	hasManifests := doc.Manifests != nil
	hasImage := doc.Config != nil || doc.Layers != nil
	if hasManifests && hasImage {
		return doc, "", invalid("%s has both \"manifests\" and \"config\"/\"layers\": ambiguous document", want)
	}

	mt := normalize(doc.MediaType)
	if isKnownDocument(ct) {
		if mt != "" && mt != ct {
			return doc, "", invalid("%s mediaType %q does not match Content-Type %q", want, doc.MediaType, ct)
		}
		mt = ct
	} else if mt == "" {
		switch {
		case hasManifests:
			mt = MediaTypeOCIIndex
		case hasImage:
			mt = MediaTypeOCIManifest
		default:
			return doc, "", invalid("cannot tell the media type of the %s: no mediaType, no Content-Type, no manifests or layers", want)
		}
	}
	if doc.MediaType == "" && (mt == MediaTypeDockerManifest || mt == MediaTypeDockerManifestList) {
		return doc, "", invalid("%s of type %s lacks the mediaType field that Docker documents must have", want, mt)
	}
	if doc.ArtifactType != "" && !validMediaType(doc.ArtifactType) {
		return doc, "", invalid("%s artifactType %q is not a media type", want, doc.ArtifactType)
	}
	return doc, mt, nil
}

// ParseManifest parses and validates an image manifest served with the given
// Content-Type (which may be empty or generic, see Sniff). It checks:
//   - len(b) <= MaxManifestSize; b is one well-formed JSON object;
//   - schemaVersion is 2 (Docker schema1 is refused with "schema1 manifests
//     are deprecated; repush the image with a current docker");
//   - the mediaType field, when present, equals a specific Content-Type; it
//     may be absent for OCI manifests but not for Docker ones; the effective
//     type is an OCI or Docker schema2 manifest, not an index;
//   - there is a config; every descriptor (config, layers, subject) has a
//     media type, a valid digest (digest.Parse), a size >= 0, and embedded
//     data and URLs, if any, that are consistent and http(s);
//   - every layer is a known container layer type (IsLayer) or a Wasm layer
//     type, and there are at most MaxLayers of them.
//
// Every error is errdefs.InvalidArgument. b is copied.
func ParseManifest(contentType string, b []byte) (Manifest, error) {
	doc, mt, err := decode("manifest", contentType, b)
	if err != nil {
		return Manifest{}, err
	}
	if IsIndex(mt) {
		return Manifest{}, invalid("document of type %s is an index, not a manifest", mt)
	}
	if !IsManifest(mt) {
		return Manifest{}, invalid("unsupported manifest media type %q", mt)
	}
	if doc.Config == nil {
		return Manifest{}, invalid("manifest has no config")
	}
	if err := checkDescriptor("config", *doc.Config); err != nil {
		return Manifest{}, err
	}
	if len(doc.Layers) > MaxLayers {
		return Manifest{}, invalid("manifest has %d layers, more than the %d allowed", len(doc.Layers), MaxLayers)
	}
	for i, l := range doc.Layers {
		what := fmt.Sprintf("layer %d", i)
		if err := checkDescriptor(what, l); err != nil {
			return Manifest{}, err
		}
		if !IsLayer(l.MediaType) && !IsWasmLayer(l.MediaType) {
			return Manifest{}, invalid("%s has unknown media type %q", what, l.MediaType)
		}
	}
	if doc.Subject != nil {
		if err := checkDescriptor("subject", *doc.Subject); err != nil {
			return Manifest{}, err
		}
	}
	raw := bytes.Clone(b)
	return Manifest{
		MediaType:    mt,
		Config:       *doc.Config,
		Layers:       doc.Layers,
		Subject:      doc.Subject,
		ArtifactType: doc.ArtifactType,
		Annotations:  doc.Annotations,
		Raw:          raw,
		Digest:       digest.FromBytes(raw),
	}, nil
}

// ParseIndex parses and validates an OCI index or Docker manifest list served
// with the given Content-Type (which may be empty or generic, see Sniff). It
// checks the size, JSON, schemaVersion and mediaType as ParseManifest does
// (the effective type must be an index), that the document has no
// "config"/"layers", and that every entry is a valid descriptor whose
// platform, when given, names both an os and an architecture. Entries may be
// of any media type (artifacts are allowed); Select picks among them.
// Every error is errdefs.InvalidArgument. b is copied.
func ParseIndex(contentType string, b []byte) (Index, error) {
	doc, mt, err := decode("index", contentType, b)
	if err != nil {
		return Index{}, err
	}
	if IsManifest(mt) {
		return Index{}, invalid("document of type %s is a manifest, not an index", mt)
	}
	if !IsIndex(mt) {
		return Index{}, invalid("unsupported index media type %q", mt)
	}
	for i, d := range doc.Manifests {
		what := fmt.Sprintf("index entry %d", i)
		if err := checkDescriptor(what, d); err != nil {
			return Index{}, err
		}
		if p := d.Platform; p != nil && (p.OS == "" || p.Architecture == "") {
			return Index{}, invalid("%s has a platform without os or architecture", what)
		}
	}
	if doc.Subject != nil {
		if err := checkDescriptor("subject", *doc.Subject); err != nil {
			return Index{}, err
		}
	}
	raw := bytes.Clone(b)
	return Index{MediaType: mt, Manifests: doc.Manifests, Raw: raw, Digest: digest.FromBytes(raw)}, nil
}

// mediaTypeRe is the characters of RFC 6838's restricted-name/restricted-name,
// as the OCI schema has it; validMediaType adds the lengths (bounded
// repetitions would compile to a program 127 times as large, kept for the
// daemon's life).
var mediaTypeRe = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$`)
})

// validMediaType reports whether s is a media type the OCI schema allows.
func validMediaType(s string) bool {
	typ, sub, _ := strings.Cut(s, "/")
	return len(typ) <= 127 && len(sub) <= 127 && mediaTypeRe().MatchString(s)
}

// checkDescriptor validates one descriptor; what names it in errors.
func checkDescriptor(what string, d Descriptor) error {
	if d.MediaType == "" {
		return invalid("%s has no mediaType", what)
	}
	if !validMediaType(d.MediaType) {
		return invalid("%s mediaType %q is not a media type", what, d.MediaType)
	}
	if _, err := digest.Parse(string(d.Digest)); err != nil {
		return invalid("%s has invalid digest %q: %v", what, d.Digest, err)
	}
	if d.Size < 0 {
		return invalid("%s has negative size %d", what, d.Size)
	}
	if d.ArtifactType != "" && !validMediaType(d.ArtifactType) {
		return invalid("%s artifactType %q is not a media type", what, d.ArtifactType)
	}
	if d.Data != nil {
		if int64(len(d.Data)) != d.Size {
			return invalid("%s embeds %d bytes of data but has size %d", what, len(d.Data), d.Size)
		}
		if d.Digest.Algorithm().FromBytes(d.Data) != d.Digest {
			return invalid("%s embedded data does not match digest %s", what, d.Digest)
		}
	}
	for _, u := range d.URLs {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return invalid("%s has invalid URL %q: want an absolute http(s) URL", what, u)
		}
	}
	return nil
}

// IsWasmArtifact reports whether m is a Wasm module rather than a container
// image: its config (or artifactType) is the Wasm config type, or any layer is
// a Wasm layer type (the runwasi style, with a regular image config).
func IsWasmArtifact(m Manifest) bool {
	if normalize(m.Config.MediaType) == MediaTypeWasmConfig || normalize(m.ArtifactType) == MediaTypeWasmConfig {
		return true
	}
	for _, l := range m.Layers {
		if IsWasmLayer(l.MediaType) {
			return true
		}
	}
	return false
}

// Check verifies that cfg is m's config and that they agree:
//   - the config descriptor's digest (in its own algorithm) and size match
//     cfg.Raw (or, when cfg.Raw is nil, its digest equals cfg.Digest);
//   - unless m is a Wasm artifact, the config descriptor is an image config
//     type and m has exactly one layer per diff ID, every layer counting,
//     foreign and non-distributable ones included.
//
// Errors are errdefs.InvalidArgument.
func (m Manifest) Check(cfg Config) error {
	want := m.Config.Digest
	if cfg.Raw != nil {
		if err := want.Validate(); err != nil {
			return invalid("config descriptor digest %q: %v", want, err)
		}
		if got := want.Algorithm().FromBytes(cfg.Raw); got != want {
			return invalid("config digest mismatch: manifest says %s, config is %s", want, got)
		}
		if int64(len(cfg.Raw)) != m.Config.Size {
			return invalid("config size mismatch: manifest says %d bytes, config is %d", m.Config.Size, len(cfg.Raw))
		}
	} else if cfg.Digest != want {
		return invalid("config digest mismatch: manifest says %s, config is %s", want, cfg.Digest)
	}
	if IsWasmArtifact(m) {
		return nil
	}
	switch normalize(m.Config.MediaType) {
	case MediaTypeDockerConfig, MediaTypeOCIConfig:
	default:
		return invalid("config media type %q is not an image config: not a runnable image", m.Config.MediaType)
	}
	if n, d := len(m.Layers), len(cfg.Image.RootFS.DiffIDs); n != d {
		return invalid("manifest has %d layers but its config lists %d diff IDs", n, d)
	}
	return nil
}
