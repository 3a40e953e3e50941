package pull

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/docker/go-units"
	"github.com/flick-edge/flick/internal/durable"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/oci"
	"github.com/flick-edge/flick/internal/registry"
	"github.com/klauspost/compress/zstd"
)

// Fallback expansion ratios when a layer's uncompressed size cannot be learnt.
const (
	gzipRatio = 4
	zstdRatio = 5
)

// estimate returns the uncompressed size of a layer: exact for uncompressed
// layers, from the gzip trailer (ISIZE) or the zstd frame header when the
// registry serves byte ranges, else a conservative ratio of the compressed size.
func estimate(ctx context.Context, repo *registry.Repo, desc oci.Descriptor) int64 {
	switch oci.LayerCompression(desc.MediaType) {
	case "":
		return desc.Size
	case "gzip":
		if desc.Size >= 18 && desc.Size < 1<<32 {
			if b, err := repo.BlobRange(ctx, desc.Digest, desc.Size-4, 4); err == nil && len(b) == 4 {
				isize := int64(binary.LittleEndian.Uint32(b))
				if isize >= desc.Size/2 { // a plausible single-member trailer
					return isize
				}
			}
		}
		return desc.Size * gzipRatio
	case "zstd":
		if b, err := repo.BlobRange(ctx, desc.Digest, 0, zstd.HeaderMaxSize); err == nil {
			var h zstd.Header
			if h.Decode(b) == nil && h.HasFCS && h.FrameContentSize > 0 {
				return int64(h.FrameContentSize)
			}
		}
		return desc.Size * zstdRatio
	}
	return desc.Size * gzipRatio
}

// checkSpace refuses a pull that cannot fit before anything is written.
func (p *Puller) checkSpace(ctx context.Context, repo *registry.Repo, layers []oci.Descriptor, missing []int) error {
	if len(missing) == 0 {
		return nil
	}
	var need int64
	for _, i := range missing {
		need += estimate(ctx, repo, layers[i])
	}
	need += need / 10 // file-system overhead: blocks, inodes, directories
	free, err := durable.FreeBytes(p.cfg.Snapshots.Root())
	if err != nil {
		return err
	}
	if int64(free) < need+p.cfg.Reserve {
		return errdefs.NewResourceExhausted(fmt.Errorf("not enough disk space: the pull needs about %s but %s is free on the disk holding %s (%s kept in reserve); remove unused images with 'flick image prune'",
			units.BytesSize(float64(need)), units.BytesSize(float64(free)), p.cfg.Snapshots.Root(), units.BytesSize(float64(p.cfg.Reserve))))
	}
	return nil
}
