package oci

import (
	"strings"
	"testing"
)

func TestValidMediaTypeLimits(t *testing.T) {
	a127, a128 := strings.Repeat("a", 127), strings.Repeat("a", 128)
	for s, want := range map[string]bool{
		MediaTypeOCIManifest: true, "application/vnd.docker.image.rootfs.diff.tar.gzip": true,
		a127 + "/" + a127: true, a128 + "/x": false, "x/" + a128: false,
		"application": false, "/x": false, "x/": false, "a/b/c": false, "-a/b": false, "a/b c": false,
	} {
		if got := validMediaType(s); got != want {
			t.Errorf("validMediaType(%.20q...) = %v, want %v", s, got, want)
		}
	}
}
