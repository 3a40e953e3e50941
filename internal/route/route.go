// Package route holds what a route is (local topics to an upstream
// destination, with its delivery policy) and keeps the set of routes
// durably, so forwarding resumes after restarts and power cuts. Moving the
// messages is the forwarder's job (package forward): this package only
// describes and stores routes.
package route

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/function"
	"github.com/flick-edge/flick/internal/upstream"
	bolt "go.etcd.io/bbolt"
)

// Policies for a full outbox.
const (
	WhenFullDropOldest = "drop-oldest"
	WhenFullRefuse     = "refuse"
)

// Spec is one route.
type Spec struct {
	Name     string        `json:"name" yaml:"name"`
	From     []string      `json:"from" yaml:"from"` // local MQTT topic filters; or one upstream URL with a filter (an inbound route)
	To       string        `json:"to" yaml:"to"`     // mqtt://, mqtts://, nats://, tls:// URL; or the local topic template (inbound)
	QoS      byte          `json:"qos" yaml:"qos"`
	TTL      time.Duration `json:"ttl,omitempty" yaml:"-"`
	Priority uint8         `json:"priority" yaml:"priority"`
	Batch    int           `json:"batch" yaml:"batch"`
	Linger   time.Duration `json:"linger,omitempty" yaml:"-"`
	MaxBytes int64         `json:"maxBytes" yaml:"-"`
	WhenFull string        `json:"whenFull" yaml:"when-full"`
	// Credentials and TLS for the destination.
	Username string    `json:"username,omitempty" yaml:"username,omitempty"`
	Password string    `json:"password,omitempty" yaml:"password,omitempty"`
	CAFile   string    `json:"caFile,omitempty" yaml:"ca-file,omitempty"`
	CertFile string    `json:"certFile,omitempty" yaml:"cert-file,omitempty"`
	KeyFile  string    `json:"keyFile,omitempty" yaml:"key-file,omitempty"`
	Creds    string    `json:"credsFile,omitempty" yaml:"creds-file,omitempty"`
	Created  time.Time `json:"created"`
}

// Normalize applies defaults and validates.
func (s *Spec) Normalize() error {
	if !function.ValidName(s.Name) { // the same names as functions
		return fmt.Errorf("route name %q: use 1-63 lower-case letters, digits, '.', '_' or '-'", s.Name)
	}
	if len(s.From) == 0 {
		return fmt.Errorf("route %s: give at least one --from topic filter", s.Name)
	}
	if s.Inbound() {
		return s.normalizeInbound()
	}
	for _, f := range s.From {
		if err := function.ValidateFilter(f); err != nil {
			return fmt.Errorf("route %s: --from %q: %w", s.Name, f, err)
		}
	}
	if s.To == "" {
		return fmt.Errorf("route %s: give the destination with --to mqtt://host:port/prefix or nats://host:4222/subject", s.Name)
	}
	if s.QoS == 0 {
		s.QoS = 1 // routes deliver at least once: that is what the outbox is for
	}
	if s.QoS > 2 {
		return fmt.Errorf("route %s: --qos %d: want 1 or 2 (routes deliver at least once)", s.Name, s.QoS)
	}
	if s.Priority > 9 {
		return fmt.Errorf("route %s: --priority %d: want 0-9", s.Name, s.Priority)
	}
	if s.Batch == 0 {
		s.Batch = 100
	}
	if s.Batch < 1 || s.Batch > 10000 {
		return fmt.Errorf("route %s: --batch %d: want 1-10000", s.Name, s.Batch)
	}
	if s.MaxBytes == 0 {
		s.MaxBytes = 64 << 20
	}
	if s.MaxBytes < 64<<10 {
		return fmt.Errorf("route %s: --max-size must be at least 64KiB", s.Name)
	}
	if s.WhenFull == "" {
		s.WhenFull = WhenFullDropOldest
	}
	if s.WhenFull != WhenFullDropOldest && s.WhenFull != WhenFullRefuse {
		return fmt.Errorf("route %s: --when-full %q: want drop-oldest or refuse", s.Name, s.WhenFull)
	}
	if s.TTL < 0 || s.Linger < 0 || s.Linger > time.Minute {
		return fmt.Errorf("route %s: --ttl must be positive and --linger at most 1m", s.Name)
	}
	return nil
}

// Inbound reports whether the route subscribes upstream (--from is an
// upstream URL with a topic filter) and publishes on the hub (--to is the
// local topic template), instead of forwarding local topics upstream.
func (s *Spec) Inbound() bool { return len(s.From) > 0 && strings.Contains(s.From[0], "://") }

func (s *Spec) normalizeInbound() error {
	if len(s.From) != 1 {
		return fmt.Errorf("route %s: an upstream subscription takes one --from URL", s.Name)
	}
	if _, _, err := upstream.ParseSource(s.From[0]); err != nil {
		return fmt.Errorf("route %s: --from: %w", s.Name, err)
	}
	if strings.Contains(s.To, "://") {
		return fmt.Errorf("route %s: --to %q: an upstream subscription publishes on the hub: give a local topic (template with {topic}, {hub}) or nothing to keep the upstream topic", s.Name, s.To)
	}
	if strings.ContainsAny(strings.NewReplacer("{topic}", "", "{hub}", "").Replace(s.To), "+#") {
		return fmt.Errorf("route %s: --to %q: a local topic has no wildcards", s.Name, s.To)
	}
	s.QoS = 1
	return nil
}

// Matches reports whether a local topic goes this route.
func (s *Spec) Matches(topic string) bool {
	if s.Inbound() {
		return false
	}
	for _, f := range s.From {
		if _, ok := function.Match(f, topic); ok {
			return true
		}
	}
	return false
}

var bucket = []byte("routes")

// Store is the durable set of routes.
type Store struct{ b *bolt.DB }

// OpenStore opens (creating) the route store.
func OpenStore(path string) (*Store, error) {
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open route store %s: %w", path, err)
	}
	if err := b.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists(bucket); return err }); err != nil {
		b.Close()
		return nil, err
	}
	return &Store{b: b}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.b.Close() }

// Apply stores put and deletes remove in one transaction.
func (s *Store) Apply(put []Spec, remove []string) error {
	return s.b.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for _, n := range remove {
			if b.Get([]byte(n)) == nil {
				return errdefs.NewNotFound(fmt.Errorf("no such route: %s (see flick route ls)", n))
			}
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

// List returns every route by name.
func (s *Store) List() ([]Spec, error) {
	var out []Spec
	err := s.b.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
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
