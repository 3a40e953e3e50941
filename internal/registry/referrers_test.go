package registry_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/flick-edge/flick/internal/reference"
	"github.com/flick-edge/flick/internal/registry"
	"github.com/flick-edge/flick/internal/testregistry"
	"github.com/opencontainers/go-digest"
)

// Referrers: Debian's docker-registry has no referrers API (it answers 404),
// so the list comes from the fallback tag; a registry that has the API (its
// answer served here through the fault proxy, as an OCI 1.1 registry sends
// it) is asked first and its list wins; the artifact type filter applies
// either way.
func TestReferrers(t *testing.T) {
	reg := testregistry.Start(t)
	proxy := testregistry.NewFaultProxy(t, reg.URL())
	img := testImage(t, 1)
	d := reg.Push(t, reg.Ref("ref/app:1"), img)
	subject := digest.Digest(d.String())
	entry := func(art, dg string) map[string]any {
		return map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": dg, "size": 100, "artifactType": art,
			"annotations": map[string]string{"k": art}}
	}
	index := func(es ...map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": es})
		return b
	}
	dA := digest.FromString("a").String()
	dB := digest.FromString("b").String()
	// The fallback tag's index (the registry would want the listed manifests
	// to exist; the real round trip is in internal/pull's delta tests).
	fallback := index(entry("application/vnd.flick.delta.v1", dA), entry("application/vnd.example.sbom", dB))
	proxy.Intercept(func(r *http.Request) bool {
		return strings.HasSuffix(r.URL.Path, "/manifests/sha256-"+subject.Encoded())
	},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
			w.Write(fallback)
		}), 1)

	c := newClient(t, "", nil)
	ref, _ := reference.Parse(proxy.Ref("ref/app:1"))
	repo, err := c.Open(context.Background(), ref, registry.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := repo.Referrers(context.Background(), subject, "application/vnd.flick.delta.v1")
	if err != nil || len(got) != 1 || got[0].Digest.String() != dA || got[0].Annotations["k"] == "" {
		t.Fatalf("fallback tag: %+v %v", got, err)
	}
	// No referrers at all: an empty list, not an error.
	other := digest.FromString("nothing refers to me")
	if got, err := repo.Referrers(context.Background(), other, ""); err != nil || len(got) != 0 {
		t.Fatalf("no referrers: %+v %v", got, err)
	}

	// A registry with the API.
	dC := digest.FromString("c").String()
	proxy.Intercept(func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/referrers/") },
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("artifactType") != "application/vnd.flick.delta.v1" {
				t.Errorf("artifactType filter not sent: %s", r.URL)
			}
			w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
			w.Write(index(entry("application/vnd.flick.delta.v1", dC), entry("application/vnd.example.sbom", dB)))
		}), 1)
	got, err = repo.Referrers(context.Background(), subject, "application/vnd.flick.delta.v1")
	if err != nil || len(got) != 1 || got[0].Digest.String() != dC {
		t.Fatalf("referrers API: %+v %v", got, err)
	}
}
