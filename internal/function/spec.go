// Package function holds what a deployed function is (its Spec: the module,
// its triggers, its limits and its delivery policy), validates it, and keeps
// the set of deployed functions durably in its own bbolt file so bindings
// survive restarts and power cuts. Running functions is the reflex
// package's job; this one only describes and stores them.
package function

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"
	"github.com/opencontainers/go-digest"
)

// Overflow policies for a full queue.
const (
	OverflowReject     = "reject"      // refuse the new event (MQTT 5: PUBACK 0x97 quota exceeded; HTTP 429)
	OverflowDropOldest = "drop-oldest" // drop the oldest queued event to make room
)

// Defaults applied by Normalize.
const (
	DefaultTimeout     = time.Second
	DefaultMemory      = 16 << 20
	DefaultConcurrency = 4
	DefaultQueue       = 1000
	MaxMemory          = 4 << 30
)

// TriggerKind is where events come from.
type TriggerKind string

const (
	TriggerMQTT  TriggerKind = "mqtt"
	TriggerHTTP  TriggerKind = "http"
	TriggerEvery TriggerKind = "every"
)

// Trigger is one source of events: "mqtt:home/+/button", "http:/doorbell",
// "every:30s".
type Trigger struct {
	Kind   TriggerKind   `json:"kind" yaml:"kind"`
	Topic  string        `json:"topic,omitempty" yaml:"topic,omitempty"` // MQTT filter
	Path   string        `json:"path,omitempty" yaml:"path,omitempty"`   // HTTP path
	Period time.Duration `json:"period,omitempty" yaml:"period,omitempty"`
}

func (t Trigger) String() string {
	switch t.Kind {
	case TriggerMQTT:
		return "mqtt:" + t.Topic
	case TriggerHTTP:
		return "http:" + t.Path
	case TriggerEvery:
		return "every:" + t.Period.String()
	}
	return string(t.Kind)
}

// ParseTrigger parses the --on syntax.
func ParseTrigger(s string) (Trigger, error) {
	kind, arg, ok := strings.Cut(s, ":")
	if !ok || arg == "" {
		return Trigger{}, fmt.Errorf("trigger %q: want mqtt:TOPIC-FILTER, http:/PATH or every:DURATION", s)
	}
	switch TriggerKind(kind) {
	case TriggerMQTT:
		if err := ValidateFilter(arg); err != nil {
			return Trigger{}, fmt.Errorf("trigger %q: %w", s, err)
		}
		return Trigger{Kind: TriggerMQTT, Topic: arg}, nil
	case TriggerHTTP:
		if !strings.HasPrefix(arg, "/") || strings.ContainsAny(arg, " ?#") || strings.Contains(arg, "..") {
			return Trigger{}, fmt.Errorf("trigger %q: an HTTP path starts with / and has no spaces, query or '..'", s)
		}
		return Trigger{Kind: TriggerHTTP, Path: arg}, nil
	case TriggerEvery:
		d, err := time.ParseDuration(arg)
		if err != nil || d < 10*time.Millisecond {
			return Trigger{}, fmt.Errorf("trigger %q: want a period of at least 10ms, like every:30s", s)
		}
		return Trigger{Kind: TriggerEvery, Period: d}, nil
	}
	return Trigger{}, fmt.Errorf("trigger %q: unknown kind %q (want mqtt, http or every)", s, kind)
}

// ValidateFilter checks an MQTT topic filter.
func ValidateFilter(f string) error {
	if f == "" || len(f) > 65535 {
		return errors.New("empty or oversized topic filter")
	}
	if strings.HasPrefix(f, "$") {
		return errors.New("filters on $-topics ($SYS, $share) cannot trigger functions")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if l == "#" && i != len(levels)-1 {
			return errors.New("'#' must be the last level of a filter")
		}
		if l != "#" && l != "+" && strings.ContainsAny(l, "#+") {
			return errors.New("'+' and '#' must stand alone in a level")
		}
	}
	return nil
}

// ValidateTopic checks a topic to publish to (a reply template may hold
// {N} and {topic} placeholders, checked after expansion).
func ValidateTopic(t string) error {
	if t == "" || strings.ContainsAny(t, "#+") || strings.HasPrefix(t, "$") {
		return fmt.Errorf("topic %q: a publish topic is non-empty, has no wildcards and does not start with $", t)
	}
	return nil
}

// Spec is one deployed function.
type Spec struct {
	Name        string            `json:"name" yaml:"name"`
	Image       string            `json:"image,omitempty" yaml:"image,omitempty"`   // OCI reference it came from
	Builtin     string            `json:"builtin,omitempty" yaml:"-"`               // "echo": native, no instance (the benchmark's floor)
	Module      digest.Digest     `json:"module" yaml:"-"`                          // sha256 of the .wasm
	ModuleSize  int64             `json:"moduleSize" yaml:"-"`                      //
	Triggers    []Trigger         `json:"triggers" yaml:"-"`                        //
	On          []string          `json:"-" yaml:"on,omitempty"`                    // the --on strings (YAML form)
	Reply       string            `json:"reply,omitempty" yaml:"reply,omitempty"`   // topic template: {1}.. wildcard segments, {topic}
	Timeout     time.Duration     `json:"timeout" yaml:"-"`                         //
	Memory      int64             `json:"memory" yaml:"-"`                          // bytes, rounded up to 64 KiB pages
	Concurrency int               `json:"concurrency" yaml:"concurrency,omitempty"` // instances at once
	Queue       int               `json:"queue" yaml:"queue,omitempty"`             // events waiting
	Overflow    string            `json:"overflow" yaml:"overflow,omitempty"`       // reject | drop-oldest
	Retries     int               `json:"retries" yaml:"retries,omitempty"`         //
	DeadLetter  string            `json:"deadLetter,omitempty" yaml:"dead-letter,omitempty"`
	Env         map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	MaxOutput   int               `json:"maxOutput" yaml:"-"` // stdout cap, bytes
	Deployed    time.Time         `json:"deployed" yaml:"-"`
}

// nameRE is a name's characters; ValidName adds its length (a bounded
// repetition would compile to a program 63 times as large, kept for the
// daemon's life).
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`) })

// ValidName reports whether s is a valid name for a function or a route:
// 1-63 of a-z, 0-9, '_', '.', '-', starting with a letter or digit.
func ValidName(s string) bool { return len(s) <= 63 && nameRE().MatchString(s) }

// Normalize applies defaults and validates; it returns a clear error for
// the first problem found.
func (s *Spec) Normalize() error {
	if !ValidName(s.Name) {
		return fmt.Errorf("function name %q: use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", s.Name)
	}
	if s.Builtin != "" && s.Builtin != "echo" {
		return fmt.Errorf("function %s: unknown builtin %q (only echo, the benchmark's native baseline)", s.Name, s.Builtin)
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Timeout < time.Millisecond || s.Timeout > time.Hour {
		return fmt.Errorf("function %s: --timeout %s is outside 1ms..1h", s.Name, s.Timeout)
	}
	if s.Memory == 0 {
		s.Memory = DefaultMemory
	}
	if s.Memory < 64<<10 || s.Memory > MaxMemory {
		return fmt.Errorf("function %s: --memory %s is outside 64KiB..4GiB", s.Name, units.BytesSize(float64(s.Memory)))
	}
	if s.Concurrency == 0 {
		s.Concurrency = DefaultConcurrency
	}
	if s.Concurrency < 1 || s.Concurrency > 1024 {
		return fmt.Errorf("function %s: --concurrency %d is outside 1..1024", s.Name, s.Concurrency)
	}
	if s.Queue == 0 {
		s.Queue = DefaultQueue
	}
	if s.Queue < 1 || s.Queue > 1_000_000 {
		return fmt.Errorf("function %s: --queue %d is outside 1..1000000", s.Name, s.Queue)
	}
	if s.Overflow == "" {
		s.Overflow = OverflowReject
	}
	if s.Overflow != OverflowReject && s.Overflow != OverflowDropOldest {
		return fmt.Errorf("function %s: --overflow %q: want reject or drop-oldest", s.Name, s.Overflow)
	}
	if s.Retries < 0 || s.Retries > 10 {
		return fmt.Errorf("function %s: --retries %d is outside 0..10", s.Name, s.Retries)
	}
	if s.MaxOutput == 0 {
		s.MaxOutput = 1 << 20
	}
	for _, on := range s.On {
		t, err := ParseTrigger(on)
		if err != nil {
			return fmt.Errorf("function %s: %w", s.Name, err)
		}
		s.Triggers = append(s.Triggers, t)
	}
	s.On = nil
	seen := map[string]bool{}
	for _, t := range s.Triggers {
		if seen[t.String()] {
			return fmt.Errorf("function %s: trigger %s given twice", s.Name, t)
		}
		seen[t.String()] = true
	}
	if s.Reply != "" {
		probe := placeholderRE().ReplaceAllString(s.Reply, "x")
		if err := ValidateTopic(probe); err != nil {
			return fmt.Errorf("function %s: --reply: %w", s.Name, err)
		}
	}
	if s.DeadLetter != "" {
		if err := ValidateTopic(s.DeadLetter); err != nil {
			return fmt.Errorf("function %s: --dead-letter: %w", s.Name, err)
		}
	}
	for k := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.HasPrefix(k, "FLICK_") {
			return fmt.Errorf("function %s: --env %q: names are non-empty, without '=', and FLICK_* is reserved for event metadata", s.Name, k)
		}
	}
	return nil
}

// MemoryPages is the linear-memory cap in 64 KiB pages.
func (s *Spec) MemoryPages() uint32 { return uint32((s.Memory + 65535) / 65536) }

var placeholderRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\{(topic|[1-9][0-9]?)\}`) })

// ExpandReply fills a reply template: {N} is the Nth wildcard segment the
// trigger filter matched, {topic} the whole topic. A result whose expansion
// is not a valid topic is an error.
func ExpandReply(tmpl, topic string, segments []string) (string, error) {
	var bad error
	out := placeholderRE().ReplaceAllStringFunc(tmpl, func(m string) string {
		k := m[1 : len(m)-1]
		if k == "topic" {
			return topic
		}
		n, _ := strconv.Atoi(k)
		if n < 1 || n > len(segments) {
			bad = fmt.Errorf("reply %q uses {%d} but the event matched %d wildcard segment(s)", tmpl, n, len(segments))
			return ""
		}
		return segments[n-1]
	})
	if bad != nil {
		return "", bad
	}
	return out, ValidateTopic(out)
}

// Match reports whether topic matches filter and returns the levels that
// the wildcards matched ('+' one level each; '#' the rest joined by '/').
func Match(filter, topic string) ([]string, bool) {
	if strings.HasPrefix(topic, "$") {
		return nil, false
	}
	var segs []string
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return append(segs, topic), true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		switch fl {
		case "+":
			segs = append(segs, tl)
		default:
			if fl != tl {
				return nil, false
			}
		}
		if !fmore || !tmore {
			if fmore && frest == "#" {
				// "a/#" matches "a".
				return append(segs, ""), !tmore
			}
			return segs, fmore == tmore
		}
		filter, topic = frest, trest
	}
}
