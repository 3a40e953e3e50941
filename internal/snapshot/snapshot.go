// Package snapshot manages extracted layer trees on disk.
//
// A layer is extracted into a staging directory (root/staging/<random>), which no
// image can see. Once its digests are verified, Commit syncs the tree and renames
// it to root/layers/<diffID hex>, fsyncing both parents: from then on it is durable
// and addressable by diffID. Each committed layer is an independent overlayfs
// lower directory (whiteouts are overlay whiteouts), so layers are shared by every
// image that has them regardless of what lies below.
//
// Start-up (Open) deletes staging leftovers and trash; deciding which committed
// layers are orphans is the caller's job, since only the metadata knows.
package snapshot

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/flick-edge/flick/internal/durable"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

// Store holds committed layers and staging areas.
type Store struct {
	root   string
	syncer durable.Syncer
}

// Open prepares root and removes staging leftovers of interrupted work.
func Open(root string, syncer durable.Syncer) (*Store, error) {
	s := &Store{root: root, syncer: syncer}
	for _, d := range []string{s.layersDir(), s.stagingDir()} {
		if err := durable.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if err := s.cleanStaging(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) layersDir() string  { return filepath.Join(s.root, "layers") }
func (s *Store) stagingDir() string { return filepath.Join(s.root, "staging") }

func (s *Store) cleanStaging() error {
	ents, err := os.ReadDir(s.stagingDir())
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(s.stagingDir(), e.Name())); err != nil {
			return fmt.Errorf("remove staging leftover: %w", err)
		}
	}
	ents, err = os.ReadDir(s.layersDir())
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), durable.TrashPrefix) {
			if err := os.RemoveAll(filepath.Join(s.layersDir(), e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// Staging is a directory a layer is being extracted into.
type Staging struct {
	s    *Store
	Path string
}

// NewStaging creates an empty, private staging directory.
func (s *Store) NewStaging() (*Staging, error) {
	var b [8]byte
	rand.Read(b[:])
	p := filepath.Join(s.stagingDir(), hex.EncodeToString(b[:]))
	if err := os.Mkdir(p, 0o755); err != nil {
		return nil, err
	}
	return &Staging{s: s, Path: p}, nil
}

// Discard removes the staging directory. Safe after Commit (no-op).
func (st *Staging) Discard() error {
	if st.Path == "" {
		return nil
	}
	err := os.RemoveAll(st.Path)
	st.Path = ""
	return err
}

// Commit makes the staged tree durable and visible as the layer diffID. If that
// layer already exists (a concurrent pull committed it first) the staged copy is
// discarded and Commit succeeds.
func (st *Staging) Commit(diffID digest.Digest) error {
	dst, err := st.s.Path(diffID)
	if err != nil {
		return err
	}
	if err := st.s.syncer.SyncTree(st.Path); err != nil {
		return wrapFS(fmt.Errorf("sync layer %s: %w", diffID, err))
	}
	if _, err := os.Lstat(dst); err == nil {
		return st.Discard()
	}
	if err := durable.CommitDir(st.Path, dst); err != nil {
		return wrapFS(fmt.Errorf("commit layer %s: %w", diffID, err))
	}
	st.Path = ""
	return nil
}

// Path returns where the committed layer diffID lives (whether or not it exists).
func (s *Store) Path(diffID digest.Digest) (string, error) {
	if err := diffID.Validate(); err != nil {
		return "", errdefs.NewInvalidArgument(fmt.Errorf("invalid layer id %q: %w", diffID, err))
	}
	return filepath.Join(s.layersDir(), diffID.Encoded()), nil
}

// Exists reports whether layer diffID is committed on disk.
func (s *Store) Exists(diffID digest.Digest) bool {
	p, err := s.Path(diffID)
	if err != nil {
		return false
	}
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// Remove deletes a committed layer durably.
func (s *Store) Remove(diffID digest.Digest) error {
	p, err := s.Path(diffID)
	if err != nil {
		return err
	}
	return durable.RemoveAll(p)
}

// List returns the diffIDs of every committed layer on disk.
func (s *Store) List() ([]digest.Digest, error) {
	ents, err := os.ReadDir(s.layersDir())
	if err != nil {
		return nil, err
	}
	var out []digest.Digest
	for _, e := range ents {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if d.Validate() == nil && e.IsDir() {
			out = append(out, d)
		}
	}
	return out, nil
}

// Usage returns the bytes a layer occupies on disk (allocated blocks).
func (s *Store) Usage(diffID digest.Digest) (int64, error) {
	p, err := s.Path(diffID)
	if err != nil {
		return 0, err
	}
	return DiskUsage(p)
}

// DiskUsage sums allocated blocks below p, counting hardlinked inodes once.
func DiskUsage(p string) (int64, error) {
	var total int64
	seen := map[uint64]bool{}
	err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if st.Nlink > 1 && !fi.IsDir() {
				if seen[st.Ino] {
					return nil
				}
				seen[st.Ino] = true
			}
			total += st.Blocks * 512
		}
		return nil
	})
	return total, err
}

// Root is the directory the store lives in (for free-space checks).
func (s *Store) Root() string { return s.root }

func wrapFS(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return errdefs.NewResourceExhausted(fmt.Errorf("%w: the disk holding the data root is full; free space or run 'flick image prune'", err))
	}
	return err
}
