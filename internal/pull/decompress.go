package pull

import (
	"fmt"
	"io"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/oci"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Bounds on what a hostile zstd frame may make the decoder allocate.
const (
	zstdMaxWindow = 128 << 20
	zstdMaxMemory = 256 << 20
)

// decompressor returns a reader of the uncompressed layer tar.
func decompressor(mediaType string, r io.Reader) (io.ReadCloser, error) {
	switch oci.LayerCompression(mediaType) {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, errdefs.NewInvalidArgument(fmt.Errorf("layer is not valid gzip: %w", err))
		}
		return zr, nil
	case "zstd":
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderMaxMemory(zstdMaxMemory))
		if err != nil {
			return nil, errdefs.NewInvalidArgument(fmt.Errorf("layer is not valid zstd: %w", err))
		}
		return zr.IOReadCloser(), nil
	case "":
		return io.NopCloser(r), nil
	}
	return nil, errdefs.NewInvalidArgument(fmt.Errorf("unsupported layer media type %q", mediaType))
}
