// Package metadata is Flick's one transactional record of what the store holds:
// committed layers, images and tags. It is the only package that touches the
// embedded database (bbolt, which fsyncs on every commit), so the rule "a tag
// switches only when its image is complete" lives here: CommitImage refuses an
// image whose layers are not recorded as committed, and writes the image and
// its tags in one transaction.
package metadata

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketLayers = []byte("layers")
	bucketImages = []byte("images")
	bucketTags   = []byte("tags")
)

// Layer is a committed, verified layer snapshot.
type Layer struct {
	DiffID    digest.Digest `json:"diffID"`
	Size      int64         `json:"size"` // bytes on disk
	Committed time.Time     `json:"committed"`
	// Tree is snapshot.TreeDigest of the extracted tree at commit (empty for
	// layers committed before Flick recorded it).
	Tree digest.Digest `json:"tree,omitempty"`
}

// LayerRef is a layer as one image uses it.
type LayerRef struct {
	DiffID    digest.Digest `json:"diffID"`
	Digest    digest.Digest `json:"digest"` // the blob's (compressed) digest in the registry
	MediaType string        `json:"mediaType"`
	BlobSize  int64         `json:"blobSize"`
}

// Image is a complete image: every layer committed, manifest and config stored.
type Image struct {
	ID                digest.Digest `json:"id"` // the config digest, as Docker's image ID
	ManifestDigest    digest.Digest `json:"manifestDigest"`
	ManifestMediaType string        `json:"manifestMediaType"`
	IndexDigest       digest.Digest `json:"indexDigest,omitempty"`
	Layers            []LayerRef    `json:"layers"`
	Platform          string        `json:"platform"`
	Created           time.Time     `json:"created"`
	Pulled            time.Time     `json:"pulled"`
	Size              int64         `json:"size"`
	RepoDigests       []string      `json:"repoDigests,omitempty"` // name@sha256:manifest
}

// DB is the metadata database.
type DB struct{ b *bolt.DB }

// Open opens (creating) the database at path. It fails fast if another process
// holds it.
func Open(path string) (*DB, error) {
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open metadata %s: %w", path, err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
		for _, n := range [][]byte{bucketLayers, bucketImages, bucketTags} {
			if _, err := tx.CreateBucketIfNotExists(n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Close()
		return nil, err
	}
	return &DB{b: b}, nil
}

// Close closes the database.
func (db *DB) Close() error { return db.b.Close() }

func put(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

func get(b *bolt.Bucket, key string, v any) (bool, error) {
	data := b.Get([]byte(key))
	if data == nil {
		return false, nil
	}
	return true, json.Unmarshal(data, v)
}

// PutLayer records a committed layer (after its snapshot is durable).
func (db *DB) PutLayer(l Layer) error {
	return db.b.Update(func(tx *bolt.Tx) error { return put(tx.Bucket(bucketLayers), l.DiffID.String(), l) })
}

// Layer returns the record of a committed layer; ok is false if there is none.
func (db *DB) Layer(diffID digest.Digest) (l Layer, ok bool, err error) {
	err = db.b.View(func(tx *bolt.Tx) error {
		ok, err = get(tx.Bucket(bucketLayers), diffID.String(), &l)
		return err
	})
	return l, ok, err
}

// Layers lists every committed layer.
func (db *DB) Layers() ([]Layer, error) {
	var out []Layer
	err := db.b.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLayers).ForEach(func(k, v []byte) error {
			var l Layer
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("layer record %s: %w", k, err)
			}
			out = append(out, l)
			return nil
		})
	})
	return out, err
}

// DeleteLayer forgets a layer. The caller deletes the snapshot after this returns
// (so a cut in between leaves an orphan directory for start-up cleanup, never a
// record without data). It refuses while an image still uses the layer.
func (db *DB) DeleteLayer(diffID digest.Digest) error {
	return db.b.Update(func(tx *bolt.Tx) error {
		used := false
		err := forEachImage(tx, func(img Image) error {
			for _, l := range img.Layers {
				if l.DiffID == diffID {
					used = true
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if used {
			return errdefs.NewConflict(fmt.Errorf("layer %s is used by an image", diffID))
		}
		return tx.Bucket(bucketLayers).Delete([]byte(diffID.String()))
	})
}

// CommitImage records img and points each tag at it, in one transaction. Every
// layer of img must already be recorded by PutLayer. It returns the image IDs
// that tags pointed at before (now possibly dangling).
func (db *DB) CommitImage(img Image, tags []string) (previous []digest.Digest, err error) {
	err = db.b.Update(func(tx *bolt.Tx) error {
		lb := tx.Bucket(bucketLayers)
		for _, l := range img.Layers {
			if lb.Get([]byte(l.DiffID.String())) == nil {
				return errdefs.NewFailedPrecondition(fmt.Errorf("image %s: layer %s is not committed", img.ID, l.DiffID))
			}
		}
		ib, tb := tx.Bucket(bucketImages), tx.Bucket(bucketTags)
		var old Image
		if ok, err := get(ib, img.ID.String(), &old); err != nil {
			return err
		} else if ok {
			img.RepoDigests = mergeStrings(old.RepoDigests, img.RepoDigests)
		}
		if err := put(ib, img.ID.String(), img); err != nil {
			return err
		}
		for _, t := range tags {
			if prev := tb.Get([]byte(t)); prev != nil && string(prev) != img.ID.String() {
				previous = append(previous, digest.Digest(prev))
			}
			if err := tb.Put([]byte(t), []byte(img.ID.String())); err != nil {
				return err
			}
		}
		return nil
	})
	return previous, err
}

func mergeStrings(a, b []string) []string {
	set := map[string]bool{}
	var out []string
	for _, s := range append(append([]string{}, a...), b...) {
		if !set[s] {
			set[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func forEachImage(tx *bolt.Tx, fn func(Image) error) error {
	return tx.Bucket(bucketImages).ForEach(func(k, v []byte) error {
		var img Image
		if err := json.Unmarshal(v, &img); err != nil {
			return fmt.Errorf("image record %s: %w", k, err)
		}
		return fn(img)
	})
}

// Image returns an image by ID.
func (db *DB) Image(id digest.Digest) (img Image, err error) {
	err = db.b.View(func(tx *bolt.Tx) error {
		ok, err := get(tx.Bucket(bucketImages), id.String(), &img)
		if err == nil && !ok {
			err = errdefs.NewNotFound(fmt.Errorf("no such image: %s", id))
		}
		return err
	})
	return img, err
}

// Images lists every image.
func (db *DB) Images() ([]Image, error) {
	var out []Image
	err := db.b.View(func(tx *bolt.Tx) error {
		return forEachImage(tx, func(img Image) error { out = append(out, img); return nil })
	})
	return out, err
}

// Tags returns every tag and the image ID it points at.
func (db *DB) Tags() (map[string]digest.Digest, error) {
	out := map[string]digest.Digest{}
	err := db.b.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTags).ForEach(func(k, v []byte) error {
			out[string(k)] = digest.Digest(v)
			return nil
		})
	})
	return out, err
}

// Tag returns the image ID a tag points at.
func (db *DB) Tag(name string) (digest.Digest, error) {
	var id digest.Digest
	err := db.b.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketTags).Get([]byte(name))
		if v == nil {
			return errdefs.NewNotFound(fmt.Errorf("no such image: %s", name))
		}
		id = digest.Digest(v)
		return nil
	})
	return id, err
}

// SetTag points name at image id, which must exist.
func (db *DB) SetTag(name string, id digest.Digest) error {
	return db.b.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketImages).Get([]byte(id.String())) == nil {
			return errdefs.NewNotFound(fmt.Errorf("no such image: %s", id))
		}
		return tx.Bucket(bucketTags).Put([]byte(name), []byte(id.String()))
	})
}

// DeleteTag removes a tag; NotFound if absent.
func (db *DB) DeleteTag(name string) error {
	return db.b.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTags)
		if b.Get([]byte(name)) == nil {
			return errdefs.NewNotFound(fmt.Errorf("no such image: %s", name))
		}
		return b.Delete([]byte(name))
	})
}

// DeleteImage removes an image record and every tag pointing at it.
func (db *DB) DeleteImage(id digest.Digest) error { return db.DeleteImageAndLayers(id, nil) }

// DeleteImageAndLayers deletes image id and its tags and, in the same
// transaction, the records of its layers that no other image uses and that
// keep (if not nil) does not claim. Their directories are then orphans, which
// any GC and the start-up cleanup remove: a power cut between the record and
// the directory can leave garbage for one boot, never a leak (a recorded
// layer nobody uses is kept at start-up, as an interrupted pull's).
func (db *DB) DeleteImageAndLayers(id digest.Digest, keep func(digest.Digest) bool) error {
	return db.b.Update(func(tx *bolt.Tx) error {
		ib := tx.Bucket(bucketImages)
		raw := ib.Get([]byte(id.String()))
		if raw == nil {
			return errdefs.NewNotFound(fmt.Errorf("no such image: %s", id))
		}
		if keep != nil {
			var img Image
			if err := json.Unmarshal(raw, &img); err != nil {
				return err
			}
			used := map[digest.Digest]bool{}
			err := forEachImage(tx, func(o Image) error {
				if o.ID != id {
					for _, l := range o.Layers {
						used[l.DiffID] = true
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			lb := tx.Bucket(bucketLayers)
			for _, l := range img.Layers {
				if !used[l.DiffID] && !keep(l.DiffID) {
					if err := lb.Delete([]byte(l.DiffID.String())); err != nil {
						return err
					}
				}
			}
		}
		tb := tx.Bucket(bucketTags)
		var dead [][]byte
		tb.ForEach(func(k, v []byte) error {
			if string(v) == id.String() {
				dead = append(dead, append([]byte{}, k...))
			}
			return nil
		})
		for _, k := range dead {
			if err := tb.Delete(k); err != nil {
				return err
			}
		}
		return ib.Delete([]byte(id.String()))
	})
}
