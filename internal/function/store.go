package function

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/flick-edge/flick/internal/errdefs"
	bolt "go.etcd.io/bbolt"
)

var bucketFunctions = []byte("functions")

// Store is the durable set of deployed functions (bbolt: every commit is
// fsynced before it returns, so a deployed function survives a power cut).
type Store struct{ b *bolt.DB }

// OpenStore opens (creating) the store at path.
func OpenStore(path string) (*Store, error) {
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open function store %s: %w", path, err)
	}
	if err := b.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketFunctions)
		return err
	}); err != nil {
		b.Close()
		return nil, err
	}
	return &Store{b: b}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.b.Close() }

// Apply replaces the specs named in put and removes those in remove, in one
// transaction: either every change is durable or none is.
func (s *Store) Apply(put []Spec, remove []string) error {
	return s.b.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFunctions)
		for _, n := range remove {
			if err := b.Delete([]byte(n)); err != nil {
				return err
			}
		}
		for _, sp := range put {
			v, err := json.Marshal(sp)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(sp.Name), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// Get returns one spec.
func (s *Store) Get(name string) (Spec, error) {
	var sp Spec
	err := s.b.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketFunctions).Get([]byte(name))
		if v == nil {
			return errdefs.NewNotFound(fmt.Errorf("no such function: %s (see flick fn ls)", name))
		}
		return json.Unmarshal(v, &sp)
	})
	return sp, err
}

// List returns every spec, by name.
func (s *Store) List() ([]Spec, error) {
	var out []Spec
	err := s.b.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFunctions).ForEach(func(_, v []byte) error {
			var sp Spec
			if err := json.Unmarshal(v, &sp); err != nil {
				return err
			}
			out = append(out, sp)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}
