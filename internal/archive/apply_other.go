//go:build !linux

package archive

import (
	"context"
	"errors"
	"io"

	"github.com/flick-edge/flick/internal/errdefs"
)

// Apply is only implemented on Linux, which has the openat2(2) and overlayfs
// the layer format relies on. Elsewhere it returns an errdefs.NotImplemented
// error without reading r.
func Apply(ctx context.Context, root string, r io.Reader, opts Options) (Stats, error) {
	return Stats{}, errdefs.NewNotImplemented(errors.New("applying layers is only supported on Linux"))
}
