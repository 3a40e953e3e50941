package oci

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/flick-edge/flick/internal/errdefs"
)

func TestParsePlatform(t *testing.T) {
	host := Host()
	tests := map[string]string{
		"linux/amd64":       "linux/amd64",
		"linux/amd64/v1":    "linux/amd64",
		"linux/amd64/v3":    "linux/amd64/v3",
		"linux/x86_64":      "linux/amd64",
		"linux/x86-64":      "linux/amd64",
		"x86_64":            "linux/amd64",
		"arm64":             "linux/arm64",
		"aarch64":           "linux/arm64",
		"linux/arm64/v8":    "linux/arm64",
		"linux/aarch64/8":   "linux/arm64",
		"linux/arm64/v9":    "linux/arm64/v9",
		"linux/arm/v7":      "linux/arm/v7",
		"linux/arm/7":       "linux/arm/v7",
		"linux/arm":         "linux/arm/v7",
		"arm":               "linux/arm/v7",
		"armhf":             "linux/arm/v7",
		"armel":             "linux/arm/v6",
		"linux/arm/v6":      "linux/arm/v6",
		"linux/armhf":       "linux/arm/v7",
		"Linux/ARM64":       "linux/arm64",
		"linux/riscv64":     "linux/riscv64",
		"linux/386":         "linux/386",
		"i386":              "linux/386",
		"windows/amd64":     "windows/amd64",
		"macos/arm64":       "darwin/arm64",
		"wasip1/wasm":       "wasip1/wasm",
		"windows":           "windows/" + host.Architecture + suffix(host.Variant),
		"  linux/s390x  ":   "linux/s390x",
		"linux/ppc64le":     "linux/ppc64le",
		"freebsd/amd64":     "freebsd/amd64",
		"linux/mips64le":    "linux/mips64le",
		"linux/arm/v5":      "linux/arm/v5",
		"linux/loong64":     "linux/loong64",
		"linux/arm64/v8.2":  "linux/arm64/v8.2",
		"linux/amd64/v2":    "linux/amd64/v2",
		"linux/arm/v8":      "linux/arm/v8",
		"linux/arm64/V8":    "linux/arm64",
		"linux/unknown_cpu": "linux/unknown_cpu",
	}
	for in, want := range tests {
		p, err := ParsePlatform(in)
		if err != nil {
			t.Errorf("ParsePlatform(%q): %v", in, err)
			continue
		}
		if p.String() != want {
			t.Errorf("ParsePlatform(%q) = %q, want %q", in, p, want)
		}
		if again, err := ParsePlatform(p.String()); err != nil || again != p {
			t.Errorf("ParsePlatform(%q) = %v, %v; not a fixed point", p, again, err)
		}
	}
	for _, bad := range []string{"", "/", "linux/", "/amd64", "linux/arm/v7/extra", "linux amd64", "linux/amd64!", "linux//v7"} {
		if p, err := ParsePlatform(bad); err == nil || !errdefs.Is(err, errdefs.InvalidArgument) {
			t.Errorf("ParsePlatform(%q) = %v, %v; want invalid argument", bad, p, err)
		}
	}
}

func suffix(v string) string {
	if v == "" {
		return ""
	}
	return "/" + v
}

func TestHost(t *testing.T) {
	h := Host()
	if h.OS != runtime.GOOS {
		t.Errorf("OS %q", h.OS)
	}
	switch runtime.GOARCH {
	case "arm":
		if h.Architecture != "arm" || armLevel(h.Variant) == 0 {
			t.Errorf("arm host %v", h)
		}
	default:
		if h.Architecture != runtime.GOARCH || h.Variant != "" {
			t.Errorf("host %v", h)
		}
	}
	if p, err := ParsePlatform(h.String()); err != nil || p != h {
		t.Errorf("ParsePlatform(Host()) = %v, %v", p, err)
	}
	if leadingInt("6TEJ") != 6 || leadingInt("x") != -1 || leadingInt("8") != 8 {
		t.Error("leadingInt")
	}
}

func TestPlatformString(t *testing.T) {
	if (Platform{}).String() != "" {
		t.Error("zero platform")
	}
	if s := (Platform{"linux", "arm", "v6"}).String(); s != "linux/arm/v6" {
		t.Error(s)
	}
}

func mustIndex(t *testing.T, file string) Index {
	t.Helper()
	idx, err := ParseIndex("", readSample(t, file))
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// entry makes an index entry for platform "os/arch[/variant]" (or none if "").
func entry(plat string, ann map[string]string) Descriptor {
	d := Descriptor{MediaType: MediaTypeOCIManifest, Digest: digest.FromString(plat + fmt.Sprint(ann)), Size: 100, Annotations: ann}
	if plat != "" {
		parts := strings.Split(plat, "/")
		d.Platform = &v1.Platform{OS: parts[0], Architecture: parts[1]}
		if len(parts) == 3 {
			d.Platform.Variant = parts[2]
		}
	}
	return d
}

func TestSelect(t *testing.T) {
	list := mustIndex(t, "docker-manifest-list.json")
	oci := mustIndex(t, "oci-index.json")
	pick := func(idx Index, plat string) string {
		t.Helper()
		p, err := ParsePlatform(plat)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Select(idx, p)
		if err != nil {
			return err.Error()
		}
		for i, m := range idx.Manifests {
			if m.Digest == d.Digest {
				pl := m.Platform
				return fmt.Sprintf("%d:%s", i, Platform{pl.OS, pl.Architecture, pl.Variant})
			}
		}
		return "?"
	}
	tests := []struct {
		idx        Index
		plat, want string
	}{
		{list, "linux/amd64", "0:linux/amd64"},
		{list, "linux/arm/v5", "1:linux/arm/v5"},
		{list, "linux/arm/v6", "2:linux/arm/v6"},
		{list, "linux/arm/v7", "3:linux/arm/v7"},
		{list, "linux/arm/v8", "3:linux/arm/v7"},
		{list, "linux/arm64", "4:linux/arm64/v8"},
		{list, "linux/arm64/v8", "4:linux/arm64/v8"},
		{list, "linux/386", "5:linux/386"},
		{list, "linux/amd64/v3", "0:linux/amd64"},
		{list, "linux/s390x", "7:linux/s390x"},
		{list, "linux/riscv64", "no manifest for linux/riscv64 in index; available: linux/amd64, linux/arm/v5, linux/arm/v6, linux/arm/v7, linux/arm64/v8, linux/386, linux/ppc64le, linux/s390x"},
		{list, "windows/amd64", "no manifest for windows/amd64 in index"},
		{oci, "linux/amd64", "0:linux/amd64"},
		{oci, "linux/arm64", "1:linux/arm64/v8"},
		{oci, "linux/arm/v8", "2:linux/arm/v7"},
		{oci, "linux/arm/v6", "no manifest for linux/arm/v6 in index; available: linux/amd64, linux/arm64/v8, linux/arm/v7"},
		{oci, "linux/riscv64", "no manifest for linux/riscv64 in index; available: linux/amd64, linux/arm64/v8, linux/arm/v7"},
	}
	for _, tc := range tests {
		if got := pick(tc.idx, tc.plat); len(got) < len(tc.want) || got[:len(tc.want)] != tc.want {
			t.Errorf("Select(%s) = %q, want %q", tc.plat, got, tc.want)
		}
	}

	p := func(s string) Platform { pp, _ := ParsePlatform(s); return pp }
	sel := func(ms ...Descriptor) (int, error) {
		idx := Index{MediaType: MediaTypeOCIIndex, Manifests: ms}
		d, err := Select(idx, p(selHost))
		if err != nil {
			return -1, err
		}
		for i := range ms {
			if ms[i].Digest == d.Digest {
				return i, nil
			}
		}
		return -1, nil
	}
	att := map[string]string{AnnotationDockerReferenceType: AttestationManifestType}
	cases := []struct {
		host string
		ms   []Descriptor
		want int
	}{
		{"linux/arm/v8", []Descriptor{entry("linux/arm/v5", nil), entry("linux/arm/v6", nil)}, 1},
		{"linux/arm/v7", []Descriptor{entry("linux/arm/v8", nil), entry("linux/arm/v5", nil)}, 1},
		{"linux/arm/v5", []Descriptor{entry("linux/arm/v6", nil), entry("linux/arm/v7", nil)}, -1},
		{"linux/arm/v7", []Descriptor{entry("linux/arm", nil)}, 0}, // arm without variant means v7
		{"linux/arm64", []Descriptor{entry("linux/arm/v6", nil), entry("linux/arm/v7", nil)}, 1},
		{"linux/arm64", []Descriptor{entry("linux/arm/v7", nil), entry("linux/arm64", nil)}, 1},
		{"linux/arm64", []Descriptor{entry("linux/arm64", att)}, -1},
		{"linux/amd64", []Descriptor{entry("linux/amd64/v2", nil)}, -1},
		{"linux/amd64/v3", []Descriptor{entry("linux/amd64/v2", nil), entry("linux/amd64", nil), entry("linux/amd64/v4", nil)}, 0},
		{"linux/amd64", []Descriptor{entry("", nil)}, 0},                            // no platform: fallback
		{"linux/amd64", []Descriptor{entry("", nil), entry("linux/amd64", nil)}, 1}, // exact beats none
		{"linux/amd64", []Descriptor{entry("linux/amd64", nil), entry("linux/amd64", att)}, 0},
		{"linux/amd64", []Descriptor{entry("unknown/unknown", nil), entry("windows/amd64", nil)}, -1},
		{"linux/amd64", []Descriptor{entry("linux/amd64", map[string]string{"x": "1"}), entry("linux/amd64", map[string]string{"x": "2"})}, 0}, // tie: first
		{"linux/amd64", nil, -1},
	}
	for i, c := range cases {
		selHost = c.host
		got, err := sel(c.ms...)
		if got != c.want {
			t.Errorf("case %d (%s): got %d (%v), want %d", i, c.host, got, err, c.want)
		}
		if c.want < 0 && !errdefs.Is(err, errdefs.NotFound) {
			t.Errorf("case %d: error %v is not NotFound", i, err)
		}
	}

	// Artifacts and non-manifest entries are never chosen.
	art := entry("linux/amd64", nil)
	art.ArtifactType = "application/vnd.example.sig"
	blob := entry("linux/amd64", nil)
	blob.MediaType = "application/vnd.example+json"
	selHost = "linux/amd64"
	if i, err := sel(art, blob); i != -1 || err == nil {
		t.Errorf("artifact chosen: %d %v", i, err)
	}
	if _, err := Select(Index{}, p("linux/amd64")); err == nil || err.Error() != "no manifest for linux/amd64 in index; available: none" {
		t.Errorf("empty index: %v", err)
	}
}

var selHost string
