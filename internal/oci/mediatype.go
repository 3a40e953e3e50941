// Package oci parses and validates the JSON documents of the OCI image and
// distribution specs and their Docker schema2 ancestors: image manifests,
// indexes (manifest lists) and image configs, plus platforms and the choice of
// a platform's manifest from an index.
//
// Everything here is strict and bounded: documents have a size limit, every
// descriptor is checked (digest syntax, size, media type), and anything the
// rest of Flick could not handle (unknown layer types, schema1, too many
// layers) is refused up front with an errdefs.InvalidArgument error that names
// the problem. Parsed values are immutable by convention: they hold a private
// copy of the raw bytes and callers must not modify their slices or maps.
package oci

import (
	"mime"
	"strings"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Manifest and index media types.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeOCIManifest        = v1.MediaTypeImageManifest // "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex           = v1.MediaTypeImageIndex    // "application/vnd.oci.image.index.v1+json"

	// Docker schema1 manifests are refused (see ParseManifest).
	MediaTypeDockerSchema1Manifest       = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeDockerSchema1SignedManifest = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// Layer media types.
const (
	MediaTypeDockerLayer            = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGzip        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayerForeign     = "application/vnd.docker.image.rootfs.foreign.diff.tar"
	MediaTypeDockerLayerForeignGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

	MediaTypeOCILayer     = v1.MediaTypeImageLayer     // "application/vnd.oci.image.layer.v1.tar"
	MediaTypeOCILayerGzip = v1.MediaTypeImageLayerGzip // "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaTypeOCILayerZstd = v1.MediaTypeImageLayerZstd // "application/vnd.oci.image.layer.v1.tar+zstd"

	// The non-distributable OCI layers (deprecated by the spec, still seen on
	// Windows images) are the OCI equivalent of Docker's foreign layers.
	MediaTypeOCILayerNonDistributable     = "application/vnd.oci.image.layer.nondistributable.v1.tar"
	MediaTypeOCILayerNonDistributableGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
	MediaTypeOCILayerNonDistributableZstd = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)

// Image config media types.
const (
	MediaTypeDockerConfig = "application/vnd.docker.container.image.v1+json"
	MediaTypeOCIConfig    = v1.MediaTypeImageConfig // "application/vnd.oci.image.config.v1+json"
)

// Wasm media types: the CNCF Wasm OCI artifact (wasm config + "application/wasm"
// layers) and the runwasi/containerd layer type used with a regular image
// config.
const (
	MediaTypeWasmConfig       = "application/vnd.wasm.config.v0+json"
	MediaTypeWasmLayer        = "application/wasm"
	MediaTypeWasmContentLayer = "application/vnd.wasm.content.layer.v1+wasm"
)

// Annotations read by Select.
const (
	AnnotationDockerReferenceType = "vnd.docker.reference.type"
	AttestationManifestType       = "attestation-manifest"
)

var containerLayerTypes = map[string]bool{
	MediaTypeDockerLayer:                  true,
	MediaTypeDockerLayerGzip:              true,
	MediaTypeDockerLayerForeign:           true,
	MediaTypeDockerLayerForeignGzip:       true,
	MediaTypeOCILayer:                     true,
	MediaTypeOCILayerGzip:                 true,
	MediaTypeOCILayerZstd:                 true,
	MediaTypeOCILayerNonDistributable:     true,
	MediaTypeOCILayerNonDistributableGzip: true,
	MediaTypeOCILayerNonDistributableZstd: true,
}

// IsLayer reports whether mt is a container filesystem layer type Flick can
// unpack (Docker or OCI, any supported compression, foreign or
// non-distributable included). Wasm layer types are not container layers.
func IsLayer(mt string) bool { return containerLayerTypes[normalize(mt)] }

// IsForeignLayer reports whether mt is a Docker foreign or an OCI
// non-distributable layer type (one whose blob may live outside the registry).
func IsForeignLayer(mt string) bool {
	switch normalize(mt) {
	case MediaTypeDockerLayerForeign, MediaTypeDockerLayerForeignGzip,
		MediaTypeOCILayerNonDistributable, MediaTypeOCILayerNonDistributableGzip, MediaTypeOCILayerNonDistributableZstd:
		return true
	}
	return false
}

// IsWasmLayer reports whether mt is one of the Wasm module layer types.
func IsWasmLayer(mt string) bool {
	mt = normalize(mt)
	return mt == MediaTypeWasmLayer || mt == MediaTypeWasmContentLayer
}

// IsIndex reports whether mt (parameters and case ignored) is an OCI index or
// a Docker manifest list.
func IsIndex(mt string) bool {
	mt = normalize(mt)
	return mt == MediaTypeOCIIndex || mt == MediaTypeDockerManifestList
}

// IsManifest reports whether mt (parameters and case ignored) is an OCI image
// manifest or a Docker schema2 manifest. Schema1 is not a manifest here.
func IsManifest(mt string) bool {
	mt = normalize(mt)
	return mt == MediaTypeOCIManifest || mt == MediaTypeDockerManifest
}

func isSchema1(mt string) bool {
	mt = normalize(mt)
	return mt == MediaTypeDockerSchema1Manifest || mt == MediaTypeDockerSchema1SignedManifest
}

// isKnownDocument reports whether mt is a media type this package recognises
// as a manifest-ish document (one Sniff does not second-guess).
func isKnownDocument(mt string) bool { return IsIndex(mt) || IsManifest(mt) || isSchema1(mt) }

// normalize strips parameters and lower-cases a media type:
// "Application/JSON; charset=utf-8" -> "application/json".
func normalize(mt string) string {
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	return strings.ToLower(strings.TrimSpace(mt))
}

// normalizeContentType is normalize, but goes through mime.ParseMediaType
// when it can so that odd spacing in a Content-Type header is tolerated.
func normalizeContentType(ct string) string {
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		return mt // already lower-case
	}
	return normalize(ct)
}
