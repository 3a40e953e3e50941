package delta

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
)

// fileRef locates a regular file of a base layer.
type fileRef struct {
	layer int
	name  string
	off   int64 // offset of its content in the layer's spool file
	size  int64
}

// Basis is what a delta is computed against: the base image's layers, spooled
// uncompressed to temporary files (so memory stays bounded whatever the image
// size) and indexed by content hash, by path and by file name. It is also a
// Base, so the creator can prove a delta by applying it before it ships.
type Basis struct {
	dir    string
	spools []*os.File
	byHash map[[32]byte]fileRef
	byPath map[string]fileRef
	byBase map[string]fileRef // file name without directory
	all    map[layerPath]fileRef
}

type layerPath struct {
	layer int
	name  string
}

// NewBasis returns an empty basis spooling under dir ("" for os.TempDir).
func NewBasis(dir string) *Basis {
	return &Basis{dir: dir, byHash: map[[32]byte]fileRef{}, byPath: map[string]fileRef{}, byBase: map[string]fileRef{}, all: map[layerPath]fileRef{}}
}

// Close removes the spool files.
func (b *Basis) Close() error {
	var errs []error
	for _, f := range b.spools {
		errs = append(errs, f.Close(), os.Remove(f.Name()))
	}
	b.spools = nil
	return errors.Join(errs...)
}

// Layers implements Base.
func (b *Basis) Layers() int { return len(b.spools) }

// AddLayer reads one base layer's uncompressed tar and indexes it. Layers are
// numbered in the order they are added.
func (b *Basis) AddLayer(r io.Reader) error {
	f, err := os.CreateTemp(b.dir, "flick-delta-base-*")
	if err != nil {
		return err
	}
	b.spools = append(b.spools, f)
	layer := len(b.spools) - 1
	cr := &countingReader{r: io.TeeReader(r, f)}
	s := &splitter{r: cr}
	h := sha256.New()
	for {
		e, err := s.next()
		if err == io.EOF || errors.Is(err, errTail) {
			_, err = io.Copy(io.Discard, cr)
			return err
		}
		if err != nil {
			return err
		}
		if !e.regular() || e.Size == 0 {
			if _, err := io.CopyN(io.Discard, cr, e.Size+e.Pad); err != nil {
				return fmt.Errorf("base layer %d: %w", layer, err)
			}
			continue
		}
		ref := fileRef{layer: layer, name: e.Name, off: cr.n, size: e.Size}
		h.Reset()
		if _, err := io.CopyN(h, cr, e.Size); err != nil {
			return fmt.Errorf("base layer %d: %s: %w", layer, e.Name, err)
		}
		if _, err := io.CopyN(io.Discard, cr, e.Pad); err != nil {
			return fmt.Errorf("base layer %d: %w", layer, err)
		}
		var sum [32]byte
		h.Sum(sum[:0])
		if _, ok := b.byHash[sum]; !ok {
			b.byHash[sum] = ref
		}
		b.all[layerPath{layer, e.Name}] = ref
		// Later layers win: they are what the image shows at that path.
		b.byPath[e.Name] = ref
		b.byBase[path.Base(e.Name)] = ref
	}
}

// Open implements Base from the spool files.
func (b *Basis) Open(layer int, p string) (io.ReadCloser, int64, error) {
	if layer < 0 || layer >= len(b.spools) {
		return nil, 0, fmt.Errorf("no base layer %d", layer)
	}
	if ref, ok := b.all[layerPath{layer, p}]; ok {
		return io.NopCloser(io.NewSectionReader(b.spools[layer], ref.off, ref.size)), ref.size, nil
	}
	return nil, 0, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
