// Package content is Flick's content-addressed store for small blobs: image
// manifests, indexes and configs. Layer data never lands here: layers are
// extracted straight into snapshots as they stream (see package pull).
//
// Every blob is written with the durable recipe (temp, fsync, verify, rename,
// fsync the directory) and verified against its digest before it becomes
// visible, so a blob present under its name is always complete and correct.
package content

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flick-edge/flick/internal/durable"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

// Provider reads blobs.
type Provider interface {
	ReadBlob(d digest.Digest) ([]byte, error)
}

// Ingester writes blobs.
type Ingester interface {
	WriteBlob(d digest.Digest, data []byte) error
}

// Manager lists and deletes blobs.
type Manager interface {
	Walk(fn func(d digest.Digest, size int64) error) error
	Delete(d digest.Digest) error
}

// Store is the whole content store.
type Store interface {
	Provider
	Ingester
	Manager
}

// Local is a Store in a directory: root/sha256/<hex>.
type Local struct{ root string }

var _ Store = (*Local)(nil)

// Open creates root if needed and removes temporary leftovers of interrupted writes.
func Open(root string) (*Local, error) {
	if err := durable.MkdirAll(filepath.Join(root, "sha256"), 0o700); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(root, "sha256"))
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			os.Remove(filepath.Join(root, "sha256", e.Name()))
		}
	}
	return &Local{root: root}, nil
}

func (s *Local) path(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", errdefs.NewInvalidArgument(fmt.Errorf("invalid digest %q: %w", d, err))
	}
	if d.Algorithm() != digest.SHA256 {
		return "", errdefs.NewInvalidArgument(fmt.Errorf("unsupported digest algorithm %s", d.Algorithm()))
	}
	return filepath.Join(s.root, "sha256", d.Encoded()), nil
}

// ReadBlob returns the blob's bytes, NotFound if absent. It re-verifies the digest
// so on-disk corruption is reported instead of served.
func (s *Local) ReadBlob(d digest.Digest) ([]byte, error) {
	p, err := s.path(d)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errdefs.NewNotFound(fmt.Errorf("blob %s not found", d))
	}
	if err != nil {
		return nil, err
	}
	if got := digest.FromBytes(b); got != d {
		return nil, fmt.Errorf("blob %s is corrupt on disk (content hashes to %s); run 'flick system check'", d, got)
	}
	return b, nil
}

// WriteBlob stores data under d durably. It fails with InvalidArgument if data
// does not hash to d. Writing an existing blob is a no-op.
func (s *Local) WriteBlob(d digest.Digest, data []byte) error {
	p, err := s.path(d)
	if err != nil {
		return err
	}
	if got := digest.FromBytes(data); got != d {
		return errdefs.NewInvalidArgument(fmt.Errorf("digest mismatch: expected %s, content hashes to %s", d, got))
	}
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	return durable.WriteFile(p, data, 0o600)
}

// Walk calls fn for every committed blob.
func (s *Local) Walk(fn func(d digest.Digest, size int64) error) error {
	ents, err := os.ReadDir(filepath.Join(s.root, "sha256"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if d.Validate() != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		if err := fn(d, info.Size()); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes a blob; deleting an absent blob is not an error.
func (s *Local) Delete(d digest.Digest) error {
	p, err := s.path(d)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return durable.FsyncDir(filepath.Dir(p))
}
