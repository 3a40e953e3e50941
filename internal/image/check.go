package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/flick-edge/flick/internal/oci"
	"github.com/flick-edge/flick/internal/snapshot"
	"github.com/opencontainers/go-digest"
)

// Problem is one thing `flick system check` found wrong.
type Problem struct {
	Kind   string `json:"kind"` // corrupt-blob, corrupt-layer, missing-blob, missing-layer, missing-image, size-mismatch, orphan-layer, orphan-blob, bad-config
	Object string `json:"object"`
	Detail string `json:"detail"`
}

// CheckReport is the result of a full verify of the store.
type CheckReport struct {
	Blobs  int   `json:"blobs"`
	Layers int   `json:"layers"`
	Images int   `json:"images"`
	Tags   int   `json:"tags"`
	Bytes  int64 `json:"bytesHashed"`
	// TreesHashed counts layers whose extracted files were re-read and
	// checked against the tree digest recorded at commit.
	TreesHashed int       `json:"treesHashed"`
	Problems    []Problem `json:"problems"`
}

// Check verifies the whole store against its metadata: every blob is
// re-hashed against its name; every layer tree is re-read against the tree
// digest recorded at commit; every image's manifest and config exist and
// the config parses and names the image's layers; every layer an image
// uses is recorded and its directory exists with the size recorded at
// commit; every tag names an image; and it lists what no record accounts
// for (the start-up cleanup removes those). It changes nothing.
func (s *Store) Check(ctx context.Context) (CheckReport, error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	var rep CheckReport
	add := func(kind string, obj fmt.Stringer, format string, a ...any) {
		rep.Problems = append(rep.Problems, Problem{Kind: kind, Object: obj.String(), Detail: fmt.Sprintf(format, a...)})
	}
	blobs := map[digest.Digest]bool{}
	if err := s.content.Walk(func(d digest.Digest, size int64) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		rep.Blobs++
		blobs[d] = true
		// ReadBlob re-hashes what it reads against the name.
		b, err := s.content.ReadBlob(d)
		rep.Bytes += int64(len(b))
		if err != nil {
			add("corrupt-blob", d, "%v", err)
		}
		return nil
	}); err != nil {
		return rep, err
	}
	layers, err := s.meta.Layers()
	if err != nil {
		return rep, err
	}
	recorded := map[digest.Digest]int64{}
	for _, l := range layers {
		rep.Layers++
		recorded[l.DiffID] = l.Size
		p, err := s.snapshots.Path(l.DiffID)
		if err != nil {
			add("missing-layer", l.DiffID, "%v", err)
			continue
		}
		if _, err := os.Stat(p); err != nil {
			add("missing-layer", l.DiffID, "committed layer directory %s is gone", p)
			continue
		}
		if n, err := s.snapshots.Usage(l.DiffID); err == nil && n != l.Size {
			add("size-mismatch", l.DiffID, "layer holds %d bytes on disk, %d were committed", n, l.Size)
		}
		if l.Tree != "" {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			// Re-read every file of the tree against what was extracted.
			got, n, err := snapshot.TreeDigest(p, nil)
			rep.Bytes += n
			switch {
			case err != nil:
				add("corrupt-layer", l.DiffID, "reading the layer tree: %v", err)
			case got != l.Tree:
				add("corrupt-layer", l.DiffID, "layer tree hashes to %s, %s was committed: a file was changed, truncated, added or removed; remove the images using it and pull again", got, l.Tree)
			}
			rep.TreesHashed++
		}
	}
	imgs, err := s.meta.Images()
	if err != nil {
		return rep, err
	}
	known := map[digest.Digest]bool{}
	referenced := map[digest.Digest]bool{}
	for _, img := range imgs {
		rep.Images++
		known[img.ID] = true
		for _, d := range []digest.Digest{img.ID, img.ManifestDigest, img.IndexDigest} {
			if d == "" {
				continue
			}
			referenced[d] = true
			if !blobs[d] {
				add("missing-blob", img.ID, "blob %s (manifest, config or index) is missing", d)
			}
		}
		if raw, err := s.content.ReadBlob(img.ID); err == nil {
			cfg, err := oci.ParseConfig(raw)
			if err != nil {
				add("bad-config", img.ID, "%v", err)
			} else if len(cfg.Image.RootFS.DiffIDs) != len(img.Layers) {
				add("bad-config", img.ID, "config names %d layers, the image record %d", len(cfg.Image.RootFS.DiffIDs), len(img.Layers))
			}
		}
		for _, l := range img.Layers {
			if _, ok := recorded[l.DiffID]; !ok {
				add("missing-layer", img.ID, "layer %s is not recorded as committed", l.DiffID)
			}
		}
	}
	tags, err := s.meta.Tags()
	if err != nil {
		return rep, err
	}
	for t, id := range tags {
		rep.Tags++
		if !known[id] {
			rep.Problems = append(rep.Problems, Problem{Kind: "missing-image", Object: t, Detail: "tag points at " + id.String() + ", which is not in the store"})
		}
	}
	onDisk, err := s.snapshots.List()
	if err != nil {
		return rep, err
	}
	for _, d := range onDisk {
		if _, ok := recorded[d]; !ok && !s.leased(d) {
			add("orphan-layer", d, "directory %s has no record (removed at the next start)", filepath.Base(d.Encoded()))
		}
	}
	for d := range blobs {
		if !referenced[d] {
			add("orphan-blob", d, "no image names it (removed at the next start or prune)")
		}
	}
	return rep, nil
}
