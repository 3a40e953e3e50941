// Package broker is Flick's embedded MQTT broker (MQTT 3.1.1 and 5, QoS
// 0/1/2, retained messages, wildcards) built on mochi-mqtt. It adds what a
// hub needs around the library: listeners Flick binds itself (so tests and
// several daemons can use port 0), TLS, users and per-topic ACLs from the
// daemon's config, a packet-size limit, and the hand-off of inbound
// messages to the reflex engine, which decides when a QoS 1/2 message may
// be acknowledged.
package broker

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Access to a topic filter.
type Access string

const (
	Read      Access = "read"
	Write     Access = "write"
	ReadWrite Access = "readwrite"
	Deny      Access = "deny"
)

// User is one broker account.
type User struct {
	Password string            `yaml:"password" json:"-"`
	ACL      map[string]Access `yaml:"acl,omitempty" json:"acl,omitempty"` // filter -> access; none means everything
}

// Config is the broker's configuration.
type Config struct {
	Listen         []string        // host:port, plain TCP
	TLSListen      []string        // host:port, TLS
	TLS            *tls.Config     // for TLSListen
	Users          map[string]User // empty: no authentication
	AllowAnonymous bool            // with Users: also accept clients without a username
	MaxPacketSize  uint32          // bytes; larger packets are refused (0: 1 MiB)
	Logger         *slog.Logger
}

// Inbound is a message a client published, as the handler sees it.
type Inbound struct {
	ClientID        string
	Topic           string
	Payload         []byte
	QoS             byte
	Retain          bool
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
}

// Handler receives every client publish before it is acknowledged. A
// returned wait function is called, and the client acknowledged only when
// it returns; an error wrapping ErrOverloaded answers MQTT 5 clients with
// reason code 0x97 (quota exceeded).
type Handler func(in Inbound) (wait func(context.Context) error, err error)

// Tap sees every message published on the broker, by clients and by Flick
// itself (function results): the upstream forwarder appends what its routes
// match to their durable outboxes there. A client's QoS 1/2 message is
// acknowledged only once the returned holds are over (its appends are on
// disk); Flick's own publishes wait for them before they return. An error
// wrapping ErrOverloaded refuses a client's message (MQTT 5: 0x97).
type Tap func(m Message) ([]Hold, error)

// SetTap installs the tap (nil removes it).
func (b *Broker) SetTap(t Tap) {
	if t == nil {
		b.tap.Store(nil)
		return
	}
	b.tap.Store(&t)
}

// ErrOverloaded marks a message the handler refused for lack of room.
var ErrOverloaded = errors.New("overloaded")

// Broker is a running broker.
type Broker struct {
	srv    *mqtt.Server
	self   *mqtt.Client
	addrs  []string
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	handler atomic.Pointer[Handler]
	tap     atomic.Pointer[Tap]

	Received  atomic.Uint64 // client publishes
	Refused   atomic.Uint64 // answered 0x97
	Published atomic.Uint64 // published by Flick itself
	Denied    atomic.Uint64 // connects or publishes refused by auth/ACL
}

// Start binds every listener and starts serving.
func Start(cfg Config) (*Broker, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxPacketSize == 0 {
		cfg.MaxPacketSize = 1 << 20
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = cfg.MaxPacketSize
	caps.MaximumSessionExpiryInterval = 24 * 60 * 60
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		InlineClient: true,
		Logger:       cfg.Logger,
	})
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{srv: srv, log: cfg.Logger, ctx: ctx, cancel: cancel}
	if err := srv.AddHook(&hook{b: b, users: cfg.Users, anon: cfg.AllowAnonymous || len(cfg.Users) == 0}, nil); err != nil {
		cancel()
		return nil, err
	}
	var ls []net.Listener
	fail := func(err error) (*Broker, error) {
		for _, l := range ls {
			l.Close()
		}
		cancel()
		return nil, err
	}
	for _, a := range cfg.Listen {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fail(fmt.Errorf("mqtt listen %s: %w (is another broker such as mosquitto on that port? set --mqtt-listen)", a, err))
		}
		ls = append(ls, l)
	}
	for _, a := range cfg.TLSListen {
		if cfg.TLS == nil {
			return fail(errors.New("mqtt tls-listen needs tls-cert and tls-key"))
		}
		l, err := tls.Listen("tcp", a, cfg.TLS)
		if err != nil {
			return fail(fmt.Errorf("mqtt tls listen %s: %w", a, err))
		}
		ls = append(ls, l)
	}
	for i, l := range ls {
		b.addrs = append(b.addrs, l.Addr().String())
		if err := srv.AddListener(listeners.NewNet(fmt.Sprintf("l%d", i), heldListener{l})); err != nil {
			return fail(err)
		}
	}
	b.self = srv.NewClient(nil, "local", "flick", true)
	b.self.Properties.ProtocolVersion = 5 // keep MQTT 5 properties (correlation data) on what Flick publishes
	if err := srv.Serve(); err != nil {
		return fail(err)
	}
	return b, nil
}

// Addrs are the bound listener addresses, in config order (plain, then TLS).
func (b *Broker) Addrs() []string { return b.addrs }

// SetHandler installs the inbound handler.
func (b *Broker) SetHandler(h Handler) {
	if h == nil {
		b.handler.Store(nil)
		return
	}
	b.handler.Store(&h)
}

// Message is what Flick publishes.
type Message struct {
	Topic           string
	Payload         []byte
	QoS             byte
	Retain          bool
	ContentType     string
	CorrelationData []byte
	UserProperties  map[string]string
}

// Publish sends a message from Flick itself to subscribers (it does not
// trigger functions).
func (b *Broker) Publish(m Message) error {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: m.QoS, Retain: m.Retain},
		TopicName:   m.Topic,
		Payload:     m.Payload,
		PacketID:    uint16(m.QoS),
		Properties:  packets.Properties{ContentType: m.ContentType, CorrelationData: m.CorrelationData},
	}
	keys := make([]string, 0, len(m.UserProperties))
	for k := range m.UserProperties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: k, Val: m.UserProperties[k]})
	}
	if err := b.srv.InjectPacket(b.self, pk); err != nil {
		return err
	}
	b.Published.Add(1)
	return nil
}

// Stats are broker counters for /metrics and info.
type Stats struct {
	Clients, Subscriptions, Retained int64
	BytesReceived, BytesSent         int64
	MessagesReceived, MessagesSent   int64
	MessagesDropped, InflightDropped int64 // to slow subscribers (write queue full, in-flight window full)
}

// Stats reads the library's own counters.
func (b *Broker) Stats() Stats {
	i := b.srv.Info
	return Stats{
		Clients: atomic.LoadInt64(&i.ClientsConnected), Subscriptions: atomic.LoadInt64(&i.Subscriptions),
		Retained: atomic.LoadInt64(&i.Retained), BytesReceived: atomic.LoadInt64(&i.BytesReceived),
		BytesSent: atomic.LoadInt64(&i.BytesSent), MessagesReceived: atomic.LoadInt64(&i.MessagesReceived),
		MessagesSent: atomic.LoadInt64(&i.MessagesSent), MessagesDropped: atomic.LoadInt64(&i.MessagesDropped),
		InflightDropped: atomic.LoadInt64(&i.InflightDropped),
	}
}

// Close disconnects clients and stops the listeners.
func (b *Broker) Close() error {
	b.cancel()
	return b.srv.Close()
}

type hook struct {
	mqtt.HookBase
	b     *Broker
	users map[string]User
	anon  bool

	aclOnce sync.Once
	acl     map[string][]aclEntry // user -> entries, most specific first
}

type aclEntry struct {
	filter string
	access Access
}

func (h *hook) ID() string { return "flick" }

func (h *hook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPublish
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	name := string(cl.Properties.Username)
	if name == "" {
		if !h.anon {
			h.b.Denied.Add(1)
		}
		return h.anon
	}
	u, ok := h.users[name]
	if !ok || subtle.ConstantTimeCompare([]byte(u.Password), pk.Connect.Password) != 1 {
		h.b.Denied.Add(1)
		h.b.log.Warn("mqtt connect refused: bad username or password", "client", cl.ID, "user", name, "remote", cl.Net.Remote)
		return false
	}
	return true
}

func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	h.aclOnce.Do(func() {
		h.acl = map[string][]aclEntry{}
		for name, u := range h.users {
			var es []aclEntry
			for f, a := range u.ACL {
				es = append(es, aclEntry{f, a})
			}
			// Most specific first: fewer wildcards, then longer.
			sort.Slice(es, func(i, j int) bool {
				wi, wj := strings.Count(es[i].filter, "+")+strings.Count(es[i].filter, "#"), strings.Count(es[j].filter, "+")+strings.Count(es[j].filter, "#")
				if wi != wj {
					return wi < wj
				}
				if len(es[i].filter) != len(es[j].filter) {
					return len(es[i].filter) > len(es[j].filter)
				}
				return es[i].filter < es[j].filter
			})
			h.acl[name] = es
		}
	})
	es, ok := h.acl[string(cl.Properties.Username)]
	if !ok || len(es) == 0 {
		return true
	}
	for _, e := range es {
		if filterMatches(e.filter, topic) {
			var ok bool
			switch e.access {
			case ReadWrite:
				ok = true
			case Read:
				ok = !write
			case Write:
				ok = write
			}
			if !ok {
				h.b.Denied.Add(1)
			}
			return ok
		}
	}
	h.b.Denied.Add(1)
	return false
}

func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	acked := pk.FixedHeader.Qos > 0 && !cl.Net.Inline
	var holds []Hold
	if tp := h.b.tap.Load(); tp != nil && !strings.HasPrefix(pk.TopicName, "$") {
		m := Message{Topic: pk.TopicName, Payload: pk.Payload, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain,
			ContentType: pk.Properties.ContentType, CorrelationData: pk.Properties.CorrelationData}
		if len(pk.Properties.User) > 0 {
			m.UserProperties = map[string]string{}
			for _, u := range pk.Properties.User {
				m.UserProperties[u.Key] = u.Val
			}
		}
		hs, err := (*tp)(m)
		holds = hs
		if err != nil && !cl.Net.Inline {
			h.b.Refused.Add(1)
			if cl.Properties.ProtocolVersion == 5 && acked {
				return pk, packets.ErrQuotaExceeded
			}
		}
	}
	if cl.Net.Inline {
		// Flick's own publish (a function's result) is done once what
		// the routes took of it is on disk: the event that made it is
		// acknowledged after that.
		waitAll(holds)
		return pk, nil
	}
	h.b.Received.Add(1)
	if hp := h.b.handler.Load(); hp != nil {
		done, err := (*hp)(Inbound{ClientID: cl.ID, Topic: pk.TopicName, Payload: pk.Payload, QoS: pk.FixedHeader.Qos,
			Retain: pk.FixedHeader.Retain, ContentType: pk.Properties.ContentType, ResponseTopic: pk.Properties.ResponseTopic,
			CorrelationData: pk.Properties.CorrelationData})
		if err != nil && errors.Is(err, ErrOverloaded) {
			h.b.Refused.Add(1)
			if cl.Properties.ProtocolVersion == 5 && acked {
				if done != nil {
					done(h.b.ctx) // the functions that took it finish before the refusal
				}
				waitAll(holds)
				return pk, packets.ErrQuotaExceeded
			}
		}
		if done != nil && acked {
			holds = append(holds, holdFunc(h.b.ctx, done))
		}
	}
	if !acked || len(holds) == 0 {
		return pk, nil
	}
	// The acknowledgement mochi writes next, and every write after it,
	// waits for the holds; the client's read loop goes on meanwhile.
	if hc, ok := cl.Net.Conn.(*heldConn); ok {
		hc.hold(holds...)
	} else if err := waitAll(holds); err != nil {
		cl.Stop(err)
	}
	return pk, nil
}

// filterMatches is MQTT filter matching for ACLs.
func filterMatches(filter, topic string) bool {
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ts) {
			return false
		}
		if f != "+" && f != ts[i] {
			return false
		}
	}
	return len(fs) == len(ts)
}

// Dial waits until addr accepts TCP connections (for tests and scripts).
func Dial(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}
