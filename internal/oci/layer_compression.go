package oci

import "strings"

// LayerCompression names how a layer blob of mediaType is compressed: "gzip",
// "zstd", or "" for a plain tar.
func LayerCompression(mediaType string) string {
	switch {
	case strings.HasSuffix(mediaType, "+zstd"), strings.HasSuffix(mediaType, ".zstd"):
		return "zstd"
	case strings.HasSuffix(mediaType, "+gzip"), strings.HasSuffix(mediaType, ".gzip"):
		return "gzip"
	}
	return ""
}
