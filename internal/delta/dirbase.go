package delta

import (
	"fmt"
	"io"
	"os"
)

// DirBase is a Base over extracted layer directories (a hub's committed
// snapshots), one root per base layer. Paths from the delta are untrusted:
// they are resolved inside the layer root (os.OpenInRoot refuses ".." and
// symlinks that leave it), and only regular files are served.
type DirBase []string

// Layers implements Base.
func (d DirBase) Layers() int { return len(d) }

// Open implements Base.
func (d DirBase) Open(layer int, p string) (io.ReadCloser, int64, error) {
	if layer < 0 || layer >= len(d) {
		return nil, 0, fmt.Errorf("no base layer %d", layer)
	}
	root, err := os.OpenRoot(d[layer])
	if err != nil {
		return nil, 0, err
	}
	defer root.Close()
	// Lstat first: a FIFO or device would block or misbehave on open, and a
	// symlink is not a file the delta may name.
	fi, err := root.Lstat(p)
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s in base layer %d is not a regular file", p, layer)
	}
	f, err := root.Open(p)
	if err != nil {
		return nil, 0, err
	}
	return f, fi.Size(), nil
}
