// Package image is the user-facing view of Flick's image store: name
// resolution, listing, tagging, removal, pruning, garbage collection, disk
// usage and the store check. It sits on metadata (the truth), content
// (manifests and configs) and snapshot (layer trees); pulls add images through
// package pull.
package image

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/flick-edge/flick/internal/content"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/metadata"
	"github.com/flick-edge/flick/internal/oci"
	"github.com/flick-edge/flick/internal/reference"
	"github.com/flick-edge/flick/internal/snapshot"
	"github.com/opencontainers/go-digest"
)

// Store answers questions about images and changes their names.
type Store struct {
	meta      *metadata.DB
	content   content.Store
	snapshots *snapshot.Store
	leased    func(digest.Digest) bool
	usedBy    func(digest.Digest) string // a container using the image, "" if none
	log       *slog.Logger
	gcMu      sync.Mutex
}

// SetUsedBy tells the store which images containers use: such an image is
// only untagged by rmi, not deleted, and prune -a keeps it, as Docker does.
func (s *Store) SetUsedBy(fn func(image digest.Digest) (container string)) { s.usedBy = fn }

func (s *Store) user(id digest.Digest) string {
	if s.usedBy == nil {
		return ""
	}
	return s.usedBy(id)
}

// New returns a Store. leased reports layers an in-flight pull holds (never
// collected); nil means none.
func New(meta *metadata.DB, cs content.Store, ss *snapshot.Store, leased func(digest.Digest) bool, log *slog.Logger) *Store {
	if leased == nil {
		leased = func(digest.Digest) bool { return false }
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{meta: meta, content: cs, snapshots: ss, leased: leased, log: log}
}

// Image is an image with its names and config.
type Image struct {
	metadata.Image
	Tags   []string // fully qualified
	Config oci.Config
}

// List returns every image, newest first, with tags.
func (s *Store) List() ([]Image, error) {
	imgs, err := s.meta.Images()
	if err != nil {
		return nil, err
	}
	tags, err := s.meta.Tags()
	if err != nil {
		return nil, err
	}
	byID := map[digest.Digest][]string{}
	for t, id := range tags {
		byID[id] = append(byID[id], t)
	}
	out := make([]Image, 0, len(imgs))
	for _, m := range imgs {
		img := Image{Image: m, Tags: byID[m.ID]}
		sort.Strings(img.Tags)
		if raw, err := s.content.ReadBlob(m.ID); err == nil {
			img.Config, _ = oci.ParseConfig(raw)
		}
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// Resolve finds the image a user means by s: a full or short image ID
// ("sha256:abc…", "abc123"), a name with tag ("alpine", "alpine:3.20") or a
// name with digest ("alpine@sha256:…").
//
// It reads that image's record and config only: every container create
// resolves its image, and a hub may keep many.
func (s *Store) Resolve(name string) (Image, error) {
	id, err := s.resolveID(name)
	if err != nil {
		return Image{}, err
	}
	m, err := s.meta.Image(id)
	if err != nil {
		if errdefs.Is(err, errdefs.NotFound) {
			return Image{}, errdefs.NewNotFound(fmt.Errorf("no such image: %s", name))
		}
		return Image{}, err
	}
	tags, err := s.meta.Tags()
	if err != nil {
		return Image{}, err
	}
	img := Image{Image: m}
	for t, tid := range tags {
		if tid == id {
			img.Tags = append(img.Tags, t)
		}
	}
	sort.Strings(img.Tags)
	if raw, err := s.content.ReadBlob(m.ID); err == nil {
		img.Config, _ = oci.ParseConfig(raw)
	}
	return img, nil
}

func (s *Store) resolveID(name string) (digest.Digest, error) {
	notFound := errdefs.NewNotFound(fmt.Errorf("no such image: %s", name))
	if d, err := digest.Parse(name); err == nil {
		if _, err := s.meta.Image(d); err == nil {
			return d, nil
		}
		return "", notFound
	}
	if isHexPrefix(name) {
		if id, err := s.byPrefix(name); err == nil || !errdefs.Is(err, errdefs.NotFound) {
			return id, err
		}
	}
	ref, err := reference.Parse(name)
	if err != nil {
		return "", err
	}
	if ref.Digest() != "" {
		imgs, err := s.meta.Images()
		if err != nil {
			return "", err
		}
		want := ref.Name() + "@" + ref.Digest().String()
		for _, img := range imgs {
			for _, rd := range img.RepoDigests {
				if rd == want {
					return img.ID, nil
				}
			}
		}
		return "", notFound
	}
	id, err := s.meta.Tag(ref.String())
	if err != nil {
		return "", notFound
	}
	return id, nil
}

func isHexPrefix(s string) bool {
	if len(s) < 4 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *Store) byPrefix(prefix string) (digest.Digest, error) {
	imgs, err := s.meta.Images()
	if err != nil {
		return "", err
	}
	var found []digest.Digest
	for _, img := range imgs {
		if strings.HasPrefix(img.ID.Encoded(), prefix) {
			found = append(found, img.ID)
		}
	}
	switch len(found) {
	case 0:
		return "", errdefs.NewNotFound(fmt.Errorf("no such image: %s", prefix))
	case 1:
		return found[0], nil
	}
	return "", errdefs.NewInvalidArgument(fmt.Errorf("image ID prefix %s is ambiguous: it matches %d images; give more characters", prefix, len(found)))
}

// Tag gives the image source resolves to the name target.
func (s *Store) Tag(source, target string) error {
	id, err := s.resolveID(source)
	if err != nil {
		return err
	}
	ref, err := reference.Parse(target)
	if err != nil {
		return err
	}
	if ref.Digest() != "" {
		return errdefs.NewInvalidArgument(fmt.Errorf("refusing to create a tag with a digest reference: %s", target))
	}
	return s.meta.SetTag(ref.String(), id)
}

// Deletion reports one step of Remove, as Docker does.
type Deletion struct {
	Untagged string
	Deleted  string
}

// Remove untags or deletes what name resolves to, Docker's way: removing one
// of several tags only untags; removing the last tag or the ID deletes the
// image (by ID with several tags only with force), then collects its layers.
func (s *Store) Remove(ctx context.Context, name string, force bool) ([]Deletion, error) {
	id, err := s.resolveID(name)
	if err != nil {
		return nil, err
	}
	tags, err := s.meta.Tags()
	if err != nil {
		return nil, err
	}
	var mine []string
	for t, tid := range tags {
		if tid == id {
			mine = append(mine, t)
		}
	}
	sort.Strings(mine)
	var out []Deletion
	byName := false
	if ref, err := reference.Parse(name); err == nil && ref.Digest() == "" && !isHexPrefix(name) {
		if tid, ok := tags[ref.String()]; ok && tid == id {
			byName = true
			if err := s.meta.DeleteTag(ref.String()); err != nil {
				return nil, err
			}
			out = append(out, Deletion{Untagged: ref.Familiar()})
			if len(mine) > 1 {
				return out, nil
			}
		}
	}
	if !byName && len(mine) > 1 && !force {
		return nil, errdefs.NewConflict(fmt.Errorf("unable to delete %s (must be forced) - image is referenced in multiple repositories", id.Encoded()[:12]))
	}
	if c := s.user(id); c != "" {
		if byName {
			return out, nil // untagged; the image stays for its container
		}
		return nil, errdefs.NewConflict(fmt.Errorf("unable to delete %s - image is being used by container %s: remove the container first", id.Encoded()[:12], c))
	}
	if !byName {
		for _, t := range mine {
			if r, err := reference.Parse(t); err == nil {
				out = append(out, Deletion{Untagged: r.Familiar()})
			}
		}
	}
	if err := s.meta.DeleteImageAndLayers(id, s.leased); err != nil {
		return nil, err
	}
	out = append(out, Deletion{Deleted: id.String()})
	if _, err := s.GC(ctx); err != nil {
		s.log.Warn("garbage collection after image removal failed", "err", err)
	}
	return out, nil
}

// PruneReport says what Prune removed.
type PruneReport struct {
	Deleted   []Deletion
	Reclaimed int64
}

// Prune removes dangling images (no tag), or with all every image no
// container uses, then collects unused layers and blobs.
func (s *Store) Prune(ctx context.Context, all bool) (PruneReport, error) {
	imgs, err := s.List()
	if err != nil {
		return PruneReport{}, err
	}
	var rep PruneReport
	for _, img := range imgs {
		if len(img.Tags) > 0 && !all || s.user(img.ID) != "" {
			continue
		}
		for _, t := range img.Tags {
			if r, err := reference.Parse(t); err == nil {
				rep.Deleted = append(rep.Deleted, Deletion{Untagged: r.Familiar()})
			}
		}
		if err := s.meta.DeleteImageAndLayers(img.ID, s.leased); err != nil && !errdefs.Is(err, errdefs.NotFound) {
			return rep, err
		}
		rep.Deleted = append(rep.Deleted, Deletion{Deleted: img.ID.String()})
	}
	n, err := s.GC(ctx)
	rep.Reclaimed = n
	return rep, err
}

// GC deletes layers no image uses and no pull holds, blobs no image names,
// and snapshot directories the metadata does not know (orphans of a crash).
// It returns the bytes reclaimed.
func (s *Store) GC(ctx context.Context) (int64, error) { return s.gc(ctx, false) }

// CleanOrphans is the start-up cleanup: it removes what no record accounts
// for (layer directories, blobs) but keeps committed layers even when no
// image uses them yet, because they are what an interrupted pull finished:
// the next pull resumes from the first missing layer. 'image prune'
// reclaims them if that pull never comes.
func (s *Store) CleanOrphans(ctx context.Context) (int64, error) { return s.gc(ctx, true) }

func (s *Store) gc(ctx context.Context, keepRecorded bool) (int64, error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	imgs, err := s.meta.Images()
	if err != nil {
		return 0, err
	}
	usedLayers := map[digest.Digest]bool{}
	usedBlobs := map[digest.Digest]bool{}
	for _, img := range imgs {
		usedBlobs[img.ID] = true
		usedBlobs[img.ManifestDigest] = true
		if img.IndexDigest != "" {
			usedBlobs[img.IndexDigest] = true
		}
		for _, l := range img.Layers {
			usedLayers[l.DiffID] = true
		}
	}
	var reclaimed int64
	layers, err := s.meta.Layers()
	if err != nil {
		return 0, err
	}
	known := map[digest.Digest]bool{}
	for _, l := range layers {
		known[l.DiffID] = true
		if keepRecorded || usedLayers[l.DiffID] || s.leased(l.DiffID) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return reclaimed, err
		}
		// Record first, data second: a cut in between leaves an orphan
		// directory, which the next GC removes; never a record without data.
		if err := s.meta.DeleteLayer(l.DiffID); err != nil {
			if errdefs.Is(err, errdefs.Conflict) {
				continue // an image claimed it meanwhile
			}
			return reclaimed, err
		}
		if err := s.snapshots.Remove(l.DiffID); err != nil {
			return reclaimed, err
		}
		delete(known, l.DiffID)
		reclaimed += l.Size
	}
	onDisk, err := s.snapshots.List()
	if err != nil {
		return reclaimed, err
	}
	for _, d := range onDisk {
		if known[d] || s.leased(d) {
			continue
		}
		n, _ := s.snapshots.Usage(d)
		if err := s.snapshots.Remove(d); err != nil {
			return reclaimed, err
		}
		s.log.Info("removed orphaned layer directory", "layer", d)
		reclaimed += n
	}
	err = s.content.Walk(func(d digest.Digest, size int64) error {
		if usedBlobs[d] {
			return nil
		}
		reclaimed += size
		return s.content.Delete(d)
	})
	return reclaimed, err
}

// Usage sums what images and layers occupy.
type Usage struct {
	LayersSize int64
	Images     []Image
	Shared     map[digest.Digest]int64 // image ID -> bytes shared with other images
}

// DiskUsage reports the store's usage as 'docker system df' shows it.
func (s *Store) DiskUsage() (Usage, error) {
	imgs, err := s.List()
	if err != nil {
		return Usage{}, err
	}
	layers, err := s.meta.Layers()
	if err != nil {
		return Usage{}, err
	}
	size := map[digest.Digest]int64{}
	u := Usage{Images: imgs, Shared: map[digest.Digest]int64{}}
	for _, l := range layers {
		size[l.DiffID] = l.Size
		u.LayersSize += l.Size
	}
	users := map[digest.Digest]int{}
	for _, img := range imgs {
		for _, l := range uniqueLayers(img.Layers) {
			users[l]++
		}
	}
	for _, img := range imgs {
		for _, l := range uniqueLayers(img.Layers) {
			if users[l] > 1 {
				u.Shared[img.ID] += size[l]
			}
		}
	}
	return u, nil
}

func uniqueLayers(ls []metadata.LayerRef) []digest.Digest {
	seen := map[digest.Digest]bool{}
	var out []digest.Digest
	for _, l := range ls {
		if !seen[l.DiffID] {
			seen[l.DiffID] = true
			out = append(out, l.DiffID)
		}
	}
	return out
}
