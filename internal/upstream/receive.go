package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// Source is an upstream subscription: how fleet commands reach the hub.
type Source struct {
	// URL is mqtt://host:port/FILTER or mqtts://host:port/FILTER. The
	// filter is taken literally (MQTT wildcards '+' and '#' included); {hub}
	// in it is this hub's id.
	URL                       string
	Username, Password        string
	CAFile, CertFile, KeyFile string
	// ClientID names the hub's session on the upstream broker: it must be
	// stable, since the broker keeps the subscription and what arrives
	// while the hub is away under it.
	ClientID string
	// Local is the template of the hub topic a message goes to (see
	// LocalTopic); empty keeps the upstream topic.
	Local string
}

// Delivery is one message received from upstream.
type Delivery struct {
	Topic       string // the upstream topic
	Local       string // the hub topic it maps to (Source.Local)
	Payload     []byte
	ContentType string
	Attrs       map[string]string // MQTT 5 user properties
}

// Receiver is a running subscription.
type Receiver interface {
	// State is the connection state; Acked counts messages delivered and
	// acknowledged upstream, Failed those the deliver function refused.
	State() State
	Close() error
}

// SessionExpiry is how long the upstream broker keeps a hub's subscription
// and the messages for it while the hub is away.
const SessionExpiry = 24 * time.Hour

// ParseSource splits a source URL into the broker address and the filter,
// without URL-decoding the filter ('#' would otherwise be a fragment).
func ParseSource(raw string) (broker, filter string, err error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "", "", fmt.Errorf("source %q: want mqtt://host:port/FILTER or mqtts://host:port/FILTER", redact(raw))
	}
	switch scheme {
	case "mqtt", "mqtts", "tcp", "tls":
	case "nats", "nats+tls", "tls+nats":
		return "", "", fmt.Errorf("source %q: subscribing upstream is MQTT 5 only for now (NATS: publish into the hub's broker instead)", redact(raw))
	default:
		return "", "", fmt.Errorf("source %q: unknown scheme %q: want mqtt:// or mqtts://", redact(raw), scheme)
	}
	host, filter, _ := strings.Cut(rest, "/")
	if filter == "" {
		return "", "", fmt.Errorf("source %q: give the topic filter to subscribe to after the address, e.g. mqtt://broker:1883/fleet/{hub}/cmd/#", redact(raw))
	}
	if strings.Contains(filter, "?") {
		return "", "", fmt.Errorf("source %q: a subscription takes no URL options: it speaks MQTT 5 (3.1.1 brokers are not supported for subscribing); credentials and TLS are the route's flags", redact(raw))
	}
	if strings.ContainsAny(host, "?#") {
		return "", "", fmt.Errorf("source %q: the address has no options; use the route's flags for credentials and TLS", redact(raw))
	}
	return scheme + "://" + host, filter, nil
}

// Receive subscribes to src's filter at QoS 1 with a persistent session
// (SessionExpiry) and hands each message to deliver, one at a time, in
// order. The message is acknowledged upstream only once deliver returned
// nil, so a hub that crashes meanwhile gets it again; a deliver error is
// counted and the message acknowledged (it would fail again: the caller
// dead-letters it). Like Dial, Receive returns at once with an upstream that
// is down: it connects and resubscribes by itself.
func Receive(src Source, hub string, opts Options, deliver func(context.Context, Delivery) error) (Receiver, error) {
	brokerURL, filter, err := ParseSource(src.URL)
	if err != nil {
		return nil, err
	}
	filter = strings.ReplaceAll(filter, "{hub}", hub)
	if err := checkFilter(filter); err != nil {
		return nil, fmt.Errorf("source %s: %w", redact(src.URL), err)
	}
	r, err := Destination{URL: brokerURL, Username: src.Username, Password: src.Password,
		CAFile: src.CAFile, CertFile: src.CertFile, KeyFile: src.KeyFile}.resolve()
	if err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	var tcfg *tls.Config
	if r.tls {
		if tcfg, err = tlsConfig(r); err != nil {
			return nil, err
		}
	}
	if src.ClientID == "" {
		return nil, errors.New("upstream: a subscription needs a stable client id")
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc := &receiver{tr: newTracker(redact(src.URL), opts), cancel: cancel, done: make(chan struct{}),
		queue: make(chan inbound, 256), filter: filter, local: src.Local, hub: hub}
	u := &url.URL{Scheme: "mqtt", Host: r.addr()}
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     keepAliveSeconds(opts.KeepAlive),
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         uint32(SessionExpiry / time.Second),
		ConnectTimeout:                opts.ConnectTimeout,
		ReconnectBackoff:              func(n int) time.Duration { return backoff(max(n, 1), opts.MinBackoff, opts.MaxBackoff) },
		AttemptConnection: func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			return dial(ctx, u.Host, tcfg)
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ca *paho.Connack) {
			rc.tr.connected()
			// The broker may have kept the subscription (session present);
			// subscribing again is harmless and covers a lost session.
			go func() {
				sctx, scancel := context.WithTimeout(ctx, opts.ConnectTimeout)
				defer scancel()
				sa, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
				if err == nil && len(sa.Reasons) > 0 && sa.Reasons[0] >= 0x80 {
					err = fmt.Errorf("SUBACK %s", reasonName(sa.Reasons[0]))
				}
				if err != nil && ctx.Err() == nil {
					e := permanent("subscription refused", 0, err).with(redact(src.URL), "")
					rc.tr.mu.Lock()
					rc.tr.setErr(e)
					rc.tr.mu.Unlock()
					rc.tr.log("upstream subscription failed", "url", redact(src.URL), "filter", filter, "err", err)
				}
			}()
		},
		OnConnectionDown: func() bool {
			rc.tr.disconnected(retryable("connection lost", nil))
			return true
		},
		OnConnectError: func(err error) {
			var ce *autopaho.ConnackError
			if errors.As(err, &ce) {
				rc.tr.connectFailed(&Error{Permanent: !connectRetryable[ce.ReasonCode], Reason: "connection refused: " + reasonName(ce.ReasonCode), Code: int(ce.ReasonCode)})
				return
			}
			rc.tr.connectFailed(classifyNetErr(err))
		},
		ClientConfig: paho.ClientConfig{
			ClientID:                   src.ClientID,
			EnableManualAcknowledgment: true,
			SendAcksInterval:           20 * time.Millisecond, // paho sends manual acks in order, on a ticker
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				select {
				case rc.queue <- inbound{pr.Packet, pr.Client.Ack}:
				case <-ctx.Done():
				}
				return true, nil
			}},
			OnClientError: func(error) {},
		},
	}
	if r.Username != "" {
		cfg.ConnectUsername = r.Username
	}
	if r.Password != "" {
		cfg.ConnectPassword = []byte(r.Password)
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	rc.cm = cm
	go rc.run(ctx, deliver)
	return rc, nil
}

type receiver struct {
	tr     *tracker
	cm     *autopaho.ConnectionManager
	cancel context.CancelFunc
	done   chan struct{}
	queue  chan inbound
	filter string // with {hub} filled in
	local  string // Source.Local
	hub    string
	closed atomic.Bool
}

// inbound is a received PUBLISH and how to acknowledge it on the connection
// it came on.
type inbound struct {
	p   *paho.Publish
	ack func(*paho.Publish) error
}

// run delivers in order and acknowledges each message after its delivery.
func (rc *receiver) run(ctx context.Context, deliver func(context.Context, Delivery) error) {
	defer close(rc.done)
	for {
		var in inbound
		select {
		case <-ctx.Done():
			return
		case in = <-rc.queue:
		}
		p := in.p
		d := Delivery{Topic: p.Topic, Local: localTopic(rc.filter, rc.local, rc.hub, p.Topic), Payload: p.Payload}
		if p.Properties != nil {
			d.ContentType = p.Properties.ContentType
			if len(p.Properties.User) > 0 {
				d.Attrs = map[string]string{}
				for _, u := range p.Properties.User {
					d.Attrs[u.Key] = u.Value
				}
			}
		}
		err := deliver(ctx, d)
		if ctx.Err() != nil {
			return // not acknowledged: the broker sends it again next time
		}
		rc.tr.sent(1, 1, 0, nil)
		if err != nil {
			rc.tr.mu.Lock()
			rc.tr.st.Failed++
			rc.tr.mu.Unlock()
		}
		if p.QoS > 0 {
			in.ack(p) // a lost connection loses the ack: the broker resends, at least once
		}
	}
}

func (rc *receiver) State() State { return rc.tr.State() }

func (rc *receiver) Close() error {
	if rc.closed.Swap(true) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rc.cm.Disconnect(ctx)
	rc.cancel()
	<-rc.done
	<-rc.cm.Done()
	return nil
}

// checkFilter validates an MQTT topic filter.
func checkFilter(f string) error {
	if f == "" || !utf8.ValidString(f) || strings.IndexByte(f, 0) >= 0 {
		return errors.New("empty or invalid topic filter")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("topic filter %q: '#' must be a whole last level", f)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("topic filter %q: '+' must be a whole level", f)
		}
	}
	return nil
}

// localTopic maps an upstream topic received through filter to the local
// topic: with an empty template the topic is kept; {topic} in the template
// is the part of the topic after the filter's fixed leading levels (all of
// it when the filter starts with a wildcard); a template without {topic} is
// a prefix for that part.
func localTopic(filter, tmpl, hub, topic string) string {
	rest := topic
	fixed := 0
	for _, l := range strings.Split(filter, "/") {
		if l == "+" || l == "#" {
			break
		}
		fixed++
	}
	if fixed > 0 {
		parts := strings.SplitN(topic, "/", fixed+1)
		if len(parts) == fixed+1 {
			rest = parts[fixed]
		} else {
			rest = ""
		}
	}
	switch {
	case tmpl == "":
		return topic
	case strings.Contains(tmpl, "{topic}"):
		return strings.Trim(fillTemplate(tmpl, hub, rest), "/")
	case rest == "":
		return strings.ReplaceAll(tmpl, "{hub}", hub)
	default:
		return strings.TrimRight(strings.ReplaceAll(tmpl, "{hub}", hub), "/") + "/" + rest
	}
}
