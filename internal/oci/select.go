package oci

import (
	"fmt"
	"strings"

	"github.com/flick-edge/flick/internal/errdefs"
)

// Select returns the entry of idx that best fits platform p (normalised
// first, see ParsePlatform). Entries that are not manifests or indexes,
// artifacts (artifactType set) and attestation manifests (annotation
// vnd.docker.reference.type=attestation-manifest, or platform unknown/unknown)
// are never chosen. Among the rest, in order of preference:
//
//  1. os, architecture and variant all equal;
//  2. a lower variant the host can run: arm/v8 takes v7, then v6, then v5;
//     arm/v7 takes v6, then v5; amd64/vN takes lower levels (v1 == "");
//  3. for an arm64 host, 32-bit arm entries, arm/v8 down to arm/v5 (as
//     docker and containerd do; the kernel must support AArch32);
//  4. an entry with no platform at all (single-image OCI layouts).
//
// Ties go to the entry listed first. The entry returned may itself be an
// index (IsIndex): callers fetch it and select again. With no fit the error
// is errdefs.NotFound and lists the platforms the index offers, e.g.
// "no manifest for linux/riscv64 in index; available: linux/amd64, linux/arm64/v8".
func Select(idx Index, p Platform) (Descriptor, error) {
	p = p.normalize()
	best, bestRank := -1, 0
	var avail []string
	seen := map[string]bool{}
	for i, d := range idx.Manifests {
		if isAttestation(d) || isArtifact(d.ArtifactType) || !(IsManifest(d.MediaType) || IsIndex(d.MediaType)) {
			continue
		}
		var r int
		var ok bool
		if d.Platform == nil {
			r, ok = 100, true
		} else {
			raw := Platform{OS: d.Platform.OS, Architecture: d.Platform.Architecture, Variant: d.Platform.Variant}
			if s := raw.String(); !seen[s] {
				seen[s] = true
				avail = append(avail, s)
			}
			r, ok = rank(p, raw.normalize())
		}
		if ok && (best < 0 || r < bestRank) {
			best, bestRank = i, r
		}
	}
	if best < 0 {
		list := "none"
		if len(avail) > 0 {
			list = strings.Join(avail, ", ")
		}
		return Descriptor{}, errdefs.NewNotFound(fmt.Errorf("no manifest for %s in index; available: %s", p, list))
	}
	return idx.Manifests[best], nil
}

func isAttestation(d Descriptor) bool {
	if d.Annotations[AnnotationDockerReferenceType] == AttestationManifestType {
		return true
	}
	return d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown"
}

// rank says whether a host of platform host runs entry e, and how well
// (0 is best). Both are normalised.
func rank(host, e Platform) (int, bool) {
	if e.OS != host.OS {
		return 0, false
	}
	if e.Architecture == host.Architecture {
		if e.Variant == host.Variant {
			return 0, true
		}
		var hl, el int
		switch host.Architecture {
		case "arm":
			hl, el = armLevel(host.Variant), armLevel(e.Variant)
		case "amd64":
			hl, el = amd64Level(host.Variant), amd64Level(e.Variant)
		}
		if hl > 0 && el > 0 && el < hl {
			return hl - el, true
		}
		return 0, false
	}
	if host.Architecture == "arm64" && host.Variant == "" && e.Architecture == "arm" {
		if el := armLevel(e.Variant); el > 0 {
			return 10 + 8 - el, true
		}
	}
	return 0, false
}

// armLevel maps "v5".."v8" to 5..8; 0 for anything else.
func armLevel(v string) int {
	switch v {
	case "v5", "v6", "v7", "v8":
		return int(v[1] - '0')
	}
	return 0
}

// amd64Level maps "" (v1), "v2".."v4" to 1..4; 0 for anything else.
func amd64Level(v string) int {
	switch v {
	case "":
		return 1
	case "v2", "v3", "v4":
		return int(v[1] - '0')
	}
	return 0
}

// isArtifact reports whether an index entry's artifactType marks a non-image
// artifact. Tools built on go-containerregistry set artifactType to the image
// config's media type on ordinary images, so those count as images.
func isArtifact(artifactType string) bool {
	switch artifactType {
	case "", MediaTypeDockerConfig, "application/vnd.oci.image.config.v1+json":
		return false
	}
	return true
}
