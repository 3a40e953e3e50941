package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Referrers lists the manifests in the repository whose subject is the
// manifest subject and whose artifact type is artifactType ("" for all). It
// asks the OCI referrers API, and for a registry without it (a 404, as
// distribution 2.x answers) reads the distribution spec's fallback tag
// "<alg>-<hex>", which holds an index of the referrers. No referrers is an
// empty list, not an error.
func (r *Repo) Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	if err := subject.Validate(); err != nil {
		return nil, err
	}
	var idx ocispec.Index
	found := false
	err := r.c.retry(ctx, "list referrers of "+subject.String(), func() error {
		u := r.base + "/referrers/" + subject.String()
		if artifactType != "" {
			u += "?artifactType=" + url.QueryEscape(artifactType)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", ocispec.MediaTypeImageIndex)
		resp, err := r.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusBadRequest ||
			resp.StatusCode == http.StatusMethodNotAllowed {
			return nil // no referrers API here
		}
		if err := transport.CheckError(resp, http.StatusOK); err != nil {
			return err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
		if err != nil {
			return err
		}
		if len(body) > MaxManifestSize {
			return fmt.Errorf("referrers list is over the %d-byte limit", MaxManifestSize)
		}
		if err := json.Unmarshal(body, &idx); err != nil {
			return fmt.Errorf("referrers list: %w", err)
		}
		found = true
		return nil
	})
	if err != nil {
		return nil, classify(fmt.Errorf("%s: %w", r.repo.Name(), err))
	}
	if !found {
		tag := subject.Algorithm().String() + "-" + subject.Encoded()
		mt, body, _, err := r.Manifest(ctx, tag)
		if err != nil {
			if errdefs.Is(err, errdefs.NotFound) {
				return nil, nil
			}
			return nil, err
		}
		if mt != ocispec.MediaTypeImageIndex && !json.Valid(body) {
			return nil, fmt.Errorf("%s: referrers tag %s is not an index", r.repo.Name(), tag)
		}
		if err := json.Unmarshal(body, &idx); err != nil {
			return nil, fmt.Errorf("%s: referrers tag %s: %w", r.repo.Name(), tag, err)
		}
	}
	var out []ocispec.Descriptor
	for _, d := range idx.Manifests {
		if artifactType != "" && d.ArtifactType != artifactType {
			continue
		}
		if d.Digest.Validate() != nil || d.Size <= 0 {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}
