// Package upstream forwards local messages to an upstream broker: MQTT 3.1.1
// or 5 (eclipse/paho.mqtt.golang, eclipse/paho.golang) or NATS (nats.go, with
// JetStream acknowledgements when the subject belongs to a stream).
//
// A Sender is one destination. It connects in the background, reconnects
// with capped, jittered back-off, and publishes batches in order,
// reporting how many leading messages the upstream acknowledged. Delivery is
// at least once: every message carries its stable id (MQTT 5 user property
// flick-msg-id, NATS header Nats-Msg-Id) so that the upstream can drop the
// duplicates a retry produces. Errors are classified: Retryable (connection
// lost, timeout: send again later) or Permanent (the upstream refused: not
// authorized, packet too large, bad topic: retrying the same message cannot
// succeed).
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Destination is one upstream.
type Destination struct {
	// URL is mqtt://host:port/topic-template, mqtts://... (TLS),
	// nats://host:port/subject-template or nats+tls://... (TLS).
	// The path is a template: {hub} is the hub id and {topic} the local
	// topic; a path without {topic} is a prefix to which the local topic is
	// appended; an empty path keeps the local topic.
	URL                       string
	Username, Password        string // MQTT; NATS user/password, or a NATS token (Username alone)
	CAFile, CertFile, KeyFile string // PEM; CAFile replaces the system roots
	CredsFile, NKeyFile       string // NATS: a .creds file (JWT+seed) or an nkey seed file
	QoS                       byte   // MQTT: 1 (the default, also for 0 here), 2, or QoSAtMostOnce
	ClientID                  string // MQTT client id; default "flick-" + 16 hex digits derived from hub and URL
	Version                   int    // MQTT protocol: 5 (default) or 3 (3.1.1)
}

// QoSAtMostOnce in Destination.QoS publishes at MQTT QoS 0 (the zero value of
// QoS means the default, 1). ParseDestination maps ?qos=0 to it.
const QoSAtMostOnce byte = 0x80

// Message is one message to forward.
type Message struct {
	ID      string            // stable id, the same on every retry (de-duplication upstream)
	Topic   string            // local topic
	Payload []byte            //
	Attrs   map[string]string // MQTT 5 user properties / NATS headers (dropped on MQTT 3.1.1)
}

// Sender publishes to one destination.
type Sender interface {
	// Send publishes msgs in order and returns how many leading messages the
	// upstream acknowledged: MQTT PUBACK (QoS 1) or PUBCOMP (QoS 2), written
	// for QoS 0; NATS JetStream PubAck when the subject belongs to a stream,
	// otherwise a flush (the server has read the messages). A non-nil error is
	// Retryable (errors.Is(err, ErrRetryable): not connected, connection lost,
	// timeout) or Permanent (errors.Is(err, ErrPermanent)): the upstream
	// refused msgs[acked] (not authorized, packet too large, bad topic) and
	// sending it again will not help. Messages after msgs[acked] may have
	// reached the upstream; send them again (their ids make that safe).
	Send(ctx context.Context, msgs []Message) (acked int, err error)
	// State is the connection state and the counters.
	State() State
	// NextConnect is closed when the next connection comes up: a sender
	// whose Send failed for want of a connection waits on it (taken before
	// that Send) as well as on its back-off.
	NextConnect() <-chan struct{}
	// Close stops the background connection; Send then fails (Retryable).
	Close() error
}

// State is a sender's connection state and counters.
type State struct {
	URL             string    // the destination, without credentials
	Connected       bool      //
	Since           time.Time // when Connected last changed (or Dial)
	LastError       error     // the last failure (connect, connection loss, refusal); nil if none yet
	LastErrorAt     time.Time //
	Connects        uint64    // successful connections
	Reconnects      uint64    // successful connections after the first
	ConnectFailures uint64    // failed connection attempts
	Sent            uint64    // messages written to the upstream
	Acked           uint64    // messages acknowledged
	Duplicates      uint64    // acknowledged as duplicates (JetStream)
	Refused         uint64    // messages refused (Permanent errors returned by Send)
	Failed          uint64    // Send calls that returned a Retryable error
}

// Options tune a sender. Zero values take the defaults.
type Options struct {
	MinBackoff     time.Duration // first reconnect delay (200ms)
	MaxBackoff     time.Duration // cap (30s); also the delay after a refused connection
	ConnectTimeout time.Duration // dial + TLS + protocol handshake (10s)
	AckTimeout     time.Duration // bound on one Send when ctx has a later or no deadline (30s)
	KeepAlive      time.Duration // MQTT keep-alive, NATS ping interval (30s)
	// PoisonAfter: a message that was alone in flight when the connection
	// dropped this many times in a row is refused (Permanent) instead of
	// retried forever (3). MQTT 3.1.1 brokers signal "packet too large" or
	// "not allowed" only by closing the connection.
	PoisonAfter int
	Logger      *slog.Logger // default: discard
}

func (o Options) withDefaults() Options {
	if o.MinBackoff <= 0 {
		o.MinBackoff = 200 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 30 * time.Second
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 30 * time.Second
	}
	if o.PoisonAfter <= 0 {
		o.PoisonAfter = 3
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Dial starts a sender for d. It validates d and loads its TLS files (those
// errors are returned), then connects in the background: an upstream that is
// down is not an error. Dial waits for the outcome of the first attempt at
// most until ctx is done; ctx does not bound the sender's life (Close does).
func Dial(ctx context.Context, d Destination, hub string, opts Options) (Sender, error) {
	r, err := d.resolve()
	if err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	var s interface {
		Sender
		firstAttempt() <-chan struct{}
	}
	switch r.proto {
	case protoMQTT:
		s, err = newMQTTSender(r, hub, opts)
	default:
		s, err = newNATSSender(r, hub, opts)
	}
	if err != nil {
		return nil, err
	}
	select {
	case <-s.firstAttempt():
	case <-ctx.Done():
	}
	return s, nil
}

const (
	protoMQTT = "mqtt"
	protoNATS = "nats"
)

// resolved is a validated Destination with its defaults applied.
type resolved struct {
	Destination
	proto string
	tls   bool
	host  string
	port  string
	tmpl  string // URL path without the leading '/', unescaped
}

func (r resolved) addr() string { return net.JoinHostPort(r.host, r.port) }

// safeURL is the destination URL without credentials or query.
func (r resolved) safeURL() string {
	scheme := r.proto
	if r.tls {
		scheme = map[string]string{protoMQTT: "mqtts", protoNATS: "nats+tls"}[r.proto]
	}
	u := url.URL{Scheme: scheme, Host: r.addr()}
	if r.tmpl != "" {
		u.Path = "/" + r.tmpl
	}
	// Braces can only be those of {hub} and {topic} (checkTemplate).
	return strings.NewReplacer("%7B", "{", "%7D", "}").Replace(u.String())
}

var schemes = map[string]struct {
	proto string
	tls   bool
	port  string
}{
	"mqtt":     {protoMQTT, false, "1883"},
	"mqtts":    {protoMQTT, true, "8883"},
	"nats":     {protoNATS, false, "4222"},
	"nats+tls": {protoNATS, true, "4222"},
}

func badURL(raw, format string, a ...any) error {
	return fmt.Errorf("upstream URL %q: %s", redact(raw), fmt.Sprintf(format, a...))
}

// redact hides a password in a URL for error messages.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return u.String()
		}
	}
	return raw
}

// parseURL checks the URL itself (scheme, host, port, path template).
func parseURL(raw string) (*url.URL, resolved, error) {
	var r resolved
	if strings.TrimSpace(raw) == "" {
		return nil, r, errors.New("upstream URL is empty")
	}
	if strings.Contains(raw, "#") {
		return nil, r, badURL(raw, "'#' is an MQTT wildcard (or a fragment); a destination names a topic to publish to")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, r, fmt.Errorf("upstream URL: %w", err)
	}
	sc, ok := schemes[strings.ToLower(u.Scheme)]
	if !ok {
		return nil, r, badURL(raw, "scheme %q: want mqtt, mqtts, nats or nats+tls", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, r, badURL(raw, "no host (want %s://host:port/...)", u.Scheme)
	}
	r.proto, r.tls, r.host, r.port = sc.proto, sc.tls, u.Hostname(), u.Port()
	if r.host == "" {
		return nil, r, badURL(raw, "no host")
	}
	if r.port == "" {
		if strings.HasSuffix(u.Host, ":") {
			return nil, r, badURL(raw, "empty port")
		}
		r.port = sc.port
	}
	if p, err := strconv.Atoi(r.port); err != nil || p < 1 || p > 65535 {
		return nil, r, badURL(raw, "port %q: want 1-65535", r.port)
	}
	r.tmpl = strings.TrimPrefix(u.Path, "/")
	if err := checkTemplate(r.proto, r.tmpl); err != nil {
		return nil, r, badURL(raw, "path: %v", err)
	}
	return u, r, nil
}

func checkTemplate(proto, t string) error {
	rest := strings.NewReplacer("{hub}", "", "{topic}", "").Replace(t)
	if strings.ContainsAny(rest, "{}") {
		return fmt.Errorf("%q: only {hub} and {topic} can be substituted", t)
	}
	if !utf8.ValidString(t) || strings.ContainsRune(t, 0) {
		return fmt.Errorf("%q is not valid UTF-8 text", t)
	}
	switch proto {
	case protoMQTT:
		if strings.ContainsAny(t, "+#") {
			return fmt.Errorf("%q: MQTT wildcards (+, #) cannot be published to", t)
		}
	case protoNATS:
		for _, tok := range strings.FieldsFunc(t, func(r rune) bool { return r == '/' || r == '.' }) {
			if tok == "*" || tok == ">" {
				return fmt.Errorf("%q: NATS wildcards (*, >) cannot be published to", t)
			}
		}
		if strings.IndexFunc(t, unicode.IsSpace) >= 0 {
			return fmt.Errorf("%q: NATS subjects cannot contain white space", t)
		}
	}
	return nil
}

// ParseDestination parses a destination URL. Credentials may be in the URL
// (mqtt://user:pass@host); other fields in its query: qos (0, 1, 2), version
// (3, 3.1.1, 5), client_id, ca, cert, key, creds, nkey. The returned URL
// keeps only scheme, host, port and path.
func ParseDestination(raw string) (Destination, error) {
	u, r, err := parseURL(raw)
	if err != nil {
		return Destination{}, err
	}
	var d Destination
	if u.User != nil {
		d.Username = u.User.Username()
		d.Password, _ = u.User.Password()
	}
	for k, vs := range u.Query() {
		if len(vs) != 1 {
			return Destination{}, badURL(raw, "query parameter %q given %d times", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "qos":
			switch v {
			case "0":
				d.QoS = QoSAtMostOnce
			case "1", "2":
				d.QoS = v[0] - '0'
			default:
				return Destination{}, badURL(raw, "qos=%q: want 0, 1 or 2", v)
			}
		case "version":
			switch v {
			case "3", "3.1.1", "311", "4":
				d.Version = 3
			case "5", "5.0":
				d.Version = 5
			default:
				return Destination{}, badURL(raw, "version=%q: want 3 (3.1.1) or 5", v)
			}
		case "client_id", "clientid":
			d.ClientID = v
		case "ca":
			d.CAFile = v
		case "cert":
			d.CertFile = v
		case "key":
			d.KeyFile = v
		case "creds":
			d.CredsFile = v
		case "nkey":
			d.NKeyFile = v
		default:
			return Destination{}, badURL(raw, "unknown query parameter %q (known: qos, version, client_id, ca, cert, key, creds, nkey)", k)
		}
	}
	d.URL = r.safeURL()
	if _, err := d.resolve(); err != nil {
		return Destination{}, err
	}
	return d, nil
}

// resolve validates d and applies defaults. Credentials in the URL are used
// when the fields are empty.
func (d Destination) resolve() (resolved, error) {
	u, r, err := parseURL(d.URL)
	if err != nil {
		return r, err
	}
	if u.RawQuery != "" {
		return r, badURL(d.URL, "query parameters are read by ParseDestination only")
	}
	if u.User != nil && d.Username == "" && d.Password == "" {
		d.Username = u.User.Username()
		d.Password, _ = u.User.Password()
	}
	r.Destination = d
	if (d.CertFile == "") != (d.KeyFile == "") {
		return r, badURL(d.URL, "a client certificate needs both cert and key files")
	}
	switch r.proto {
	case protoMQTT:
		switch d.QoS {
		case 0:
			r.QoS = 1
		case 1, 2:
		case QoSAtMostOnce:
			r.QoS = 0
		default:
			return r, badURL(d.URL, "QoS %d: want 0, 1 or 2", d.QoS)
		}
		switch d.Version {
		case 0:
			r.Version = 5
		case 3, 5:
		case 4:
			r.Version = 3
		default:
			return r, badURL(d.URL, "MQTT version %d: want 3 (3.1.1) or 5", d.Version)
		}
		if d.CredsFile != "" || d.NKeyFile != "" {
			return r, badURL(d.URL, "creds and nkey files are for NATS")
		}
		if !r.tls && (d.CAFile != "" || d.CertFile != "") {
			return r, badURL(d.URL, "TLS files given for a plain mqtt:// URL (use mqtts://)")
		}
		if r.Password != "" && r.Username == "" {
			return r, badURL(d.URL, "a password without a user name")
		}
	case protoNATS:
		if d.QoS != 0 || d.Version != 0 || d.ClientID != "" {
			return r, badURL(d.URL, "QoS, version and client id are MQTT settings")
		}
		n := 0
		for _, set := range []bool{d.CredsFile != "", d.NKeyFile != "", d.Username != "" || d.Password != ""} {
			if set {
				n++
			}
		}
		if n > 1 {
			return r, badURL(d.URL, "use one of creds file, nkey file, user/password or token")
		}
		if d.CAFile != "" || d.CertFile != "" {
			r.tls = true
		}
		if r.Password != "" && r.Username == "" {
			return r, badURL(d.URL, "a password without a user name")
		}
	}
	r.URL = r.safeURL()
	return r, nil
}

// Target maps a local topic to the upstream topic (MQTT) or subject (NATS).
func (d Destination) Target(localTopic, hub string) (string, error) {
	_, r, err := parseURL(d.URL)
	if err != nil {
		return "", err
	}
	return r.target(localTopic, hub)
}

func (r resolved) target(localTopic, hub string) (string, error) {
	var t string
	switch {
	case r.tmpl == "":
		t = localTopic
	case strings.Contains(r.tmpl, "{topic}"):
		t = fillTemplate(r.tmpl, hub, localTopic)
	default:
		t = strings.TrimRight(strings.ReplaceAll(r.tmpl, "{hub}", hub), "/") + "/" + localTopic
	}
	if r.proto == protoNATS {
		t = strings.ReplaceAll(t, "/", ".")
		return t, checkSubject(t)
	}
	return t, checkTopic(t)
}

// fillTemplate puts hub and topic in place of {hub} and {topic}, in one
// pass (what it puts in is not searched again) and one allocation: it runs
// for every message forwarded.
func fillTemplate(tmpl, hub, topic string) string {
	var b strings.Builder
	b.Grow(len(tmpl) + len(hub) + len(topic))
	for {
		i := strings.IndexByte(tmpl, '{')
		if i < 0 {
			b.WriteString(tmpl)
			return b.String()
		}
		b.WriteString(tmpl[:i])
		tmpl = tmpl[i:]
		switch {
		case strings.HasPrefix(tmpl, "{hub}"):
			b.WriteString(hub)
			tmpl = tmpl[len("{hub}"):]
		case strings.HasPrefix(tmpl, "{topic}"):
			b.WriteString(topic)
			tmpl = tmpl[len("{topic}"):]
		default:
			b.WriteByte('{')
			tmpl = tmpl[1:]
		}
	}
}

func checkTopic(t string) error {
	switch {
	case t == "":
		return errors.New("empty topic")
	case len(t) > 65535:
		return errors.New("topic longer than 65535 bytes")
	case !utf8.ValidString(t) || strings.ContainsRune(t, 0):
		return fmt.Errorf("topic %q is not valid UTF-8 text", t)
	case strings.ContainsAny(t, "+#"):
		return fmt.Errorf("topic %q contains an MQTT wildcard (+, #)", t)
	case strings.HasPrefix(t, "$"):
		return fmt.Errorf("topic %q: topics starting with $ belong to the broker", t)
	}
	return nil
}

func checkSubject(s string) error {
	if s == "" {
		return errors.New("empty subject")
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("subject %q is not valid UTF-8", s)
	}
	for _, tok := range strings.Split(s, ".") {
		switch {
		case tok == "":
			return fmt.Errorf("subject %q has an empty token (leading, trailing or double '.' or '/')", s)
		case tok == "*" || tok == ">":
			return fmt.Errorf("subject %q contains a NATS wildcard (*, >)", s)
		case strings.IndexFunc(tok, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			return fmt.Errorf("subject %q contains white space or a control character", s)
		}
	}
	return nil
}
