package dockerapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/image"
	"github.com/flick-edge/flick/internal/oci"
	"github.com/flick-edge/flick/internal/pull"
	"github.com/flick-edge/flick/internal/reference"
	"github.com/flick-edge/flick/internal/registry"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	mimage "github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/storage"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DecodeAuth decodes an X-Registry-Auth header (base64url JSON, as Docker sends).
func DecodeAuth(h string) (registry.Credentials, error) {
	var cred registry.Credentials
	if h == "" {
		return cred, nil
	}
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.StdEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(h); err == nil {
			break
		}
	}
	if err != nil {
		return cred, errdefs.NewInvalidArgument(fmt.Errorf("invalid X-Registry-Auth header: %w", err))
	}
	if err := json.Unmarshal(raw, &cred); err != nil {
		return cred, errdefs.NewInvalidArgument(fmt.Errorf("invalid X-Registry-Auth header: %w", err))
	}
	return cred, nil
}

// streamWriter writes a JSON message stream, sending the 200 header only with
// the first message so that a pull failing before any progress still gets a
// proper HTTP error status.
type streamWriter struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	enc     *json.Encoder
	started bool
}

// progressMessage is a jsonstream.Message plus the rendered "progress" string
// older Docker clients print.
type progressMessage struct {
	jsonstream.Message
	ProgressText string `json:"progress,omitempty"`
	errText      string
}

func (s *Server) imageCreate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("fromSrc") != "" {
		writeError(w, errdefs.NewNotImplemented(fmt.Errorf("image import (fromSrc) is not supported by Flick; push the image to a registry and pull it")))
		return
	}
	name := q.Get("fromImage")
	if name == "" {
		writeError(w, errdefs.NewInvalidArgument(errNoName))
		return
	}
	if tag := q.Get("tag"); tag != "" {
		if strings.HasPrefix(tag, "sha256:") {
			name += "@" + tag
		} else {
			name += ":" + tag
		}
	}
	ref, err := reference.Parse(name)
	if err != nil {
		writeError(w, err)
		return
	}
	var plat oci.Platform
	if p := q.Get("platform"); p != "" {
		if plat, err = oci.ParsePlatform(p); err != nil {
			writeError(w, err)
			return
		}
	}
	cred, err := DecodeAuth(r.Header.Get("X-Registry-Auth"))
	if err != nil {
		writeError(w, err)
		return
	}
	sw := &streamWriter{w: w}
	// Emit through one function that starts the stream lazily.
	emit := func(e pull.Event) {
		pm := progressMessage{Message: jsonstream.Message{ID: e.ID, Status: e.Status}}
		if e.Total > 0 {
			pm.Progress = &jsonstream.Progress{Current: e.Current, Total: e.Total}
			pm.ProgressText = progressBar(e.Current, e.Total)
		}
		sw.sendProgress(pm)
	}
	// "nodelta" is Flick's own parameter (flick pull --no-delta); the docker
	// CLI never sends it, so docker pull uses deltas when there are some.
	noDelta := q.Get("nodelta") == "1" || q.Get("nodelta") == "true"
	res, err := s.cfg.Puller.Pull(r.Context(), pull.Request{Ref: ref, Platform: plat, Credentials: cred, NoDelta: noDelta}, emit)
	if err != nil {
		s.log.Warn("pull failed", "ref", ref.String(), "err", err)
		sw.mu.Lock()
		started := sw.started
		sw.mu.Unlock()
		if !started {
			writeError(w, err)
			return
		}
		sw.sendProgress(progressMessage{Message: jsonstream.Message{Error: &jsonstream.Error{Message: err.Error()}}, errText: err.Error()})
		return
	}
	if res.Delta != nil {
		s.log.Info("pulled with a delta", "ref", ref.String(), "delta", res.Delta.Artifact, "base", res.Delta.BaseImage,
			"fetched", res.Fetched, "layer_bytes", res.Delta.FullBytes, "fallbacks", res.Delta.Fallbacks)
		return
	}
	s.log.Info("pulled", "ref", ref.String(), "fetched", res.Fetched)
}

func (sw *streamWriter) sendProgress(pm progressMessage) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if !sw.started {
		sw.w.Header().Set("Content-Type", "application/json")
		sw.w.WriteHeader(http.StatusOK)
		sw.enc = json.NewEncoder(sw.w)
		sw.started = true
	}
	if pm.errText != "" {
		sw.enc.Encode(struct {
			progressMessage
			Err string `json:"error"`
		}{pm, pm.errText})
	} else {
		sw.enc.Encode(pm)
	}
	if f, ok := sw.w.(http.Flusher); ok {
		f.Flush()
	}
}

func progressBar(cur, total int64) string {
	const width = 50
	n := int(float64(width) * float64(cur) / float64(total))
	n = min(max(n, 0), width)
	bar := strings.Repeat("=", n)
	if n < width {
		bar += ">" + strings.Repeat(" ", width-n-1)
	}
	return fmt.Sprintf("[%s] %s/%s", bar, units.HumanSize(float64(cur)), units.HumanSize(float64(total)))
}

func familiarTags(tags []string) []string {
	out := []string{}
	for _, t := range tags {
		if r, err := reference.Parse(t); err == nil {
			out = append(out, r.Familiar())
		}
	}
	return out
}

func familiarDigests(ds []string) []string {
	out := []string{}
	for _, d := range ds {
		if r, err := reference.Parse(d); err == nil {
			out = append(out, r.Familiar())
		}
	}
	return out
}

func summary(img image.Image, shared int64) mimage.Summary {
	return mimage.Summary{
		ID:          img.ID.String(),
		Created:     img.Created.Unix(),
		Labels:      labels(img),
		RepoTags:    familiarTags(img.Tags),
		RepoDigests: familiarDigests(img.RepoDigests),
		Size:        img.Size,
		SharedSize:  shared,
		Containers:  -1,
		Descriptor:  &ocispec.Descriptor{MediaType: img.ManifestMediaType, Digest: img.ManifestDigest},
	}
}

func labels(img image.Image) map[string]string {
	if l := img.Config.Image.Config.Labels; l != nil {
		return l
	}
	return map[string]string{}
}

func (s *Server) imageList(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	imgs, err := s.cfg.Images.List()
	if err != nil {
		writeError(w, err)
		return
	}
	out := []mimage.Summary{}
	for _, img := range imgs {
		if !matchImage(f, img) {
			continue
		}
		out = append(out, summary(img, -1))
	}
	writeJSON(w, http.StatusOK, out)
}

func matchImage(f filters, img image.Image) bool {
	if v, ok := f.one("dangling"); ok {
		if (v == "true" || v == "1") != (len(img.Tags) == 0) {
			return false
		}
	}
	if pats := f["reference"]; len(pats) > 0 {
		hit := false
		for _, t := range familiarTags(img.Tags) {
			repo := t
			if i := strings.LastIndex(t, ":"); i > strings.LastIndex(t, "/") {
				repo = t[:i]
			}
			for _, p := range pats {
				if ok, _ := path.Match(p, t); ok {
					hit = true
				}
				if ok, _ := path.Match(p, repo); ok {
					hit = true
				}
			}
		}
		if !hit {
			return false
		}
	}
	for _, l := range f["label"] {
		k, v, hasV := strings.Cut(l, "=")
		got, ok := labels(img)[k]
		if !ok || (hasV && got != v) {
			return false
		}
	}
	return true
}

// imageByName dispatches /images/{name}/json, /images/{name}/tag,
// /images/{name}/history and DELETE /images/{name}.
func (s *Server) imageByName(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/images/")
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(rest, "/json"):
		s.imageInspect(w, r, strings.TrimSuffix(rest, "/json"))
	case r.Method == http.MethodGet && strings.HasSuffix(rest, "/history"):
		s.imageHistory(w, r, strings.TrimSuffix(rest, "/history"))
	case r.Method == http.MethodPost && strings.HasSuffix(rest, "/tag"):
		s.imageTag(w, r, strings.TrimSuffix(rest, "/tag"))
	case r.Method == http.MethodDelete && rest != "":
		s.imageDelete(w, r, rest)
	case r.Method == http.MethodPost && strings.HasSuffix(rest, "/push"):
		writeError(w, errdefs.NewNotImplemented(fmt.Errorf("image push is not supported by Flick: gateways pull; push from your build machine")))
	default:
		s.unsupported(w, r)
	}
}

func (s *Server) imageInspect(w http.ResponseWriter, _ *http.Request, name string) {
	img, err := s.cfg.Images.Resolve(name)
	if err != nil {
		writeError(w, err)
		return
	}
	c := img.Config.Image
	resp := mimage.InspectResponse{
		ID:           img.ID.String(),
		RepoTags:     familiarTags(img.Tags),
		RepoDigests:  familiarDigests(img.RepoDigests),
		Author:       c.Author,
		Architecture: c.Architecture,
		Variant:      c.Variant,
		Os:           c.OS,
		OsVersion:    c.OSVersion,
		Size:         img.Size,
		Config:       &dockerspec.DockerOCIImageConfig{ImageConfig: c.Config},
		GraphDriver:  &storage.DriverData{Name: "overlayfs", Data: map[string]string{}},
		RootFS:       mimage.RootFS{Type: "layers"},
		Metadata:     mimage.Metadata{LastTagTime: img.Pulled},
		Descriptor:   &ocispec.Descriptor{MediaType: img.ManifestMediaType, Digest: img.ManifestDigest},
	}
	if c.Created != nil {
		resp.Created = c.Created.UTC().Format(time.RFC3339Nano)
	}
	for _, l := range img.Layers {
		resp.RootFS.Layers = append(resp.RootFS.Layers, l.DiffID.String())
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) imageHistory(w http.ResponseWriter, _ *http.Request, name string) {
	img, err := s.cfg.Images.Resolve(name)
	if err != nil {
		writeError(w, err)
		return
	}
	out := []mimage.HistoryResponseItem{}
	hist := img.Config.Image.History
	for i := len(hist) - 1; i >= 0; i-- {
		h := hist[i]
		item := mimage.HistoryResponseItem{ID: "<missing>", CreatedBy: h.CreatedBy, Comment: h.Comment, Tags: []string{}}
		if h.Created != nil {
			item.Created = h.Created.Unix()
		}
		if i == len(hist)-1 {
			item.ID = img.ID.String()
			item.Tags = familiarTags(img.Tags)
		}
		out = append(out, item)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) imageTag(w http.ResponseWriter, r *http.Request, name string) {
	repo, tag := r.URL.Query().Get("repo"), r.URL.Query().Get("tag")
	if repo == "" {
		writeError(w, errdefs.NewInvalidArgument(fmt.Errorf("repository name (repo) is required")))
		return
	}
	target := repo
	if tag != "" {
		target += ":" + tag
	}
	if err := s.cfg.Images.Tag(name, target); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) imageDelete(w http.ResponseWriter, r *http.Request, name string) {
	force := r.URL.Query().Get("force") == "1" || r.URL.Query().Get("force") == "true"
	dels, err := s.cfg.Images.Remove(r.Context(), name, force)
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]mimage.DeleteResponse, 0, len(dels))
	for _, d := range dels {
		out = append(out, mimage.DeleteResponse{Untagged: d.Untagged, Deleted: d.Deleted})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) imagePrune(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	all := false
	if v, ok := f.one("dangling"); ok && (v == "false" || v == "0") {
		all = true
	}
	rep, err := s.cfg.Images.Prune(r.Context(), all)
	if err != nil {
		writeError(w, err)
		return
	}
	out := mimage.PruneReport{ImagesDeleted: []mimage.DeleteResponse{}, SpaceReclaimed: uint64(rep.Reclaimed)}
	for _, d := range rep.Deleted {
		out.ImagesDeleted = append(out.ImagesDeleted, mimage.DeleteResponse{Untagged: d.Untagged, Deleted: d.Deleted})
	}
	writeJSON(w, http.StatusOK, out)
}

// filters is Docker's filter argument: {"key":{"value":true}} or {"key":["value"]}.
type filters map[string][]string

func parseFilters(s string) (filters, error) {
	f := filters{}
	if s == "" {
		return f, nil
	}
	var m map[string]map[string]bool
	if err := json.Unmarshal([]byte(s), &m); err == nil {
		for k, vs := range m {
			for v, on := range vs {
				if on {
					f[k] = append(f[k], v)
				}
			}
		}
		return f, nil
	}
	var l map[string][]string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, errdefs.NewInvalidArgument(fmt.Errorf("invalid filters %q: %w", s, err))
	}
	return filters(l), nil
}

func (f filters) one(k string) (string, bool) {
	if v := f[k]; len(v) > 0 {
		return v[0], true
	}
	return "", false
}
