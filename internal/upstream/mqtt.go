package upstream

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// outMsg is a message ready for the wire.
type outMsg struct {
	id      string
	topic   string
	payload []byte
	attrs   map[string]string
}

// key identifies a message for the poison-message count.
func (m outMsg) key() string {
	return m.id + "\x00" + m.topic + "\x00" + strconv.Itoa(len(m.payload))
}

// mqttLink is one MQTT connection (v5 or v3.1.1).
type mqttLink interface {
	// publish writes msgs in order and waits for their acknowledgements.
	publish(ctx context.Context, msgs []outMsg) (written, acked int, err *Error)
	// tooLarge reports whether m exceeds the packet size the server announced.
	tooLarge(m outMsg) (size, limit int, over bool)
	done() <-chan struct{}
	// lost is why the connection ended (after done is closed).
	lost() *Error
	close()
}

// mqttSender is the Sender for MQTT upstreams: one connection at a time,
// kept up by run.
type mqttSender struct {
	r        resolved
	hub      string
	o        Options
	tls      *tls.Config
	clientID string
	dial     func(ctx context.Context) (mqttLink, *Error)

	lifecycle
	link mqttLink // under mu

	sendMu  sync.Mutex // one Send at a time; guards the fields below
	probe   bool       // the last Send lost its connection: send the first message alone
	suspect string     // key of the message that was alone in flight when the connection dropped
	strikes int        // how many times in a row

	noSizeCheck bool // tests: send what the server announced it would refuse
}

// defaultClientID is stable for a hub and destination (so a reconnect takes
// over the previous session instead of leaving a ghost) and short enough for
// MQTT 3.1.1 servers that allow only 23 characters.
func defaultClientID(hub, url string) string {
	h := sha256.Sum256([]byte(hub + "\x00" + url))
	return "flick-" + hex.EncodeToString(h[:8])
}

func newMQTTSender(r resolved, hub string, o Options) (*mqttSender, error) {
	s := &mqttSender{r: r, hub: hub, o: o, clientID: r.ClientID}
	s.init(r.URL, o)
	if s.clientID == "" {
		s.clientID = defaultClientID(hub, r.URL)
	}
	if r.tls {
		cfg, err := tlsConfig(r)
		if err != nil {
			return nil, err
		}
		s.tls = cfg
	}
	if r.Version == 3 {
		s.dial = s.dial3
	} else {
		s.dial = s.dial5
	}
	s.start(s.run)
	return s, nil
}

// dialConn opens the TCP (and TLS) connection.
func (s *mqttSender) dialConn(ctx context.Context) (*errConn, error) {
	c, err := dial(ctx, s.r.addr(), s.tls)
	if err != nil {
		return nil, err
	}
	ec := &errConn{Conn: c}
	if tc, ok := c.(*net.TCPConn); ok {
		ec.raw, _ = tc.SyscallConn()
	} else if tc, ok := c.(*tls.Conn); ok {
		if t, ok := tc.NetConn().(*net.TCPConn); ok {
			ec.raw, _ = t.SyscallConn()
		}
	}
	return ec, nil
}

// dial opens a TCP connection to addr, with TLS (handshake done) when cfg
// is not nil.
func dial(ctx context.Context, addr string, cfg *tls.Config) (net.Conn, error) {
	d := net.Dialer{KeepAlive: 15 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || cfg == nil {
		return c, err
	}
	tc := tls.Client(c, cfg.Clone())
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// stableAfter: a connection that lasted this long resets the back-off.
func (s *mqttSender) stableAfter() time.Duration { return min(s.o.MaxBackoff, 10*time.Second) }

// run keeps one connection up until Close.
func (s *mqttSender) run() {
	defer close(s.done)
	defer s.firstDone()
	attempt := 0
	for {
		cctx, cancel := context.WithTimeout(s.ctx, s.o.ConnectTimeout)
		l, err := s.dial(cctx)
		cancel()
		if s.ctx.Err() != nil {
			if l != nil {
				l.close()
			}
			return
		}
		var wait time.Duration
		if err != nil {
			err = err.with(s.r.URL, "")
			s.setConnErr(err)
			s.tr.connectFailed(err)
			s.firstDone()
			attempt++
			wait = backoff(attempt, s.o.MinBackoff, s.o.MaxBackoff)
			if err.Permanent {
				// Refused (credentials, certificate): no point hammering.
				wait = backoff(64, s.o.MinBackoff, s.o.MaxBackoff)
			}
		} else {
			up := time.Now()
			s.mu.Lock()
			s.link, s.connErr = l, nil
			s.mu.Unlock()
			s.tr.connected()
			s.firstDone()
			select {
			case <-l.done():
			case <-s.ctx.Done():
			}
			s.mu.Lock()
			s.link = nil
			s.mu.Unlock()
			if s.ctx.Err() != nil {
				l.close()
				s.tr.disconnected(nil)
				return
			}
			lost := l.lost().with(s.r.URL, "")
			l.close()
			s.setConnErr(lost)
			s.tr.disconnected(lost)
			if time.Since(up) >= s.stableAfter() {
				attempt = 0
			}
			attempt++
			wait = backoff(attempt, s.o.MinBackoff, s.o.MaxBackoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
	}
}

func (s *mqttSender) current() (mqttLink, *Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, retryable("sender closed", ErrClosed)
	case s.link != nil:
		select {
		case <-s.link.done(): // lost; run has not noticed yet
			return nil, retryable("not connected", s.link.lost())
		default:
			return s.link, nil
		}
	case s.connErr != nil && s.connErr.Permanent:
		return nil, s.connErr
	case s.connErr != nil:
		return nil, retryable("not connected", s.connErr)
	}
	return nil, retryable("not connected yet", nil)
}

func (s *mqttSender) Send(ctx context.Context, msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.o.AckTimeout)
	defer cancel()
	written, acked, e := s.send(ctx, msgs)
	if e == nil {
		s.tr.sent(written, acked, 0, nil)
		return acked, nil
	}
	e = e.with(s.r.URL, msgs[acked].ID)
	s.tr.sent(written, acked, 0, e)
	return acked, e
}

// blameCodes are DISCONNECT reason codes that blame the message in flight.
var blameCodes = map[int]bool{0x87: true, 0x90: true, 0x95: true, 0x99: true, 0x9A: true, 0x9B: true}

func (s *mqttSender) send(ctx context.Context, msgs []Message) (written, acked int, stop *Error) {
	out := make([]outMsg, 0, len(msgs))
	for _, m := range msgs {
		t, err := s.r.target(m.Topic, s.hub)
		if err != nil {
			stop = permanent("bad topic", 0, err)
			break
		}
		if s.r.Version == 5 {
			if err := checkUserProps(m.Attrs); err != nil {
				stop = permanent("bad attribute", 0, err)
				break
			}
		}
		out = append(out, outMsg{id: m.ID, topic: t, payload: m.Payload, attrs: m.Attrs})
	}
	if len(out) == 0 {
		return 0, 0, stop
	}
	l, err := s.current()
	if l == nil {
		return 0, 0, err
	}
	for i, m := range out {
		if size, limit, over := l.tooLarge(m); over && !s.noSizeCheck {
			out = out[:i]
			stop = permanent("packet too large", 0x95, fmt.Errorf("%d bytes, the upstream accepts at most %d", size, limit))
			break
		}
	}
	for acked < len(out) {
		batch := out[acked:]
		alone := s.probe || (s.strikes > 0 && batch[0].key() == s.suspect)
		if alone {
			batch = batch[:1]
		}
		w, a, err := l.publish(ctx, batch)
		written += w
		acked += a
		if a > 0 {
			s.suspect, s.strikes = "", 0
		}
		if err == nil {
			s.probe = false
			continue
		}
		if !err.lost {
			return written, acked, err
		}
		s.probe = true
		if alone && a == 0 && w == 1 {
			if blameCodes[err.Code] {
				s.probe = false
				return written, acked, permanent("disconnected by the upstream for this message: "+reasonName(byte(err.Code)), err.Code, err.Err)
			}
			if k := batch[0].key(); k == s.suspect {
				s.strikes++
			} else {
				s.suspect, s.strikes = k, 1
			}
			if s.strikes >= s.o.PoisonAfter {
				s.suspect, s.strikes, s.probe = "", 0, false
				return written, acked, permanent(fmt.Sprintf("the upstream closed the connection each time this message was sent alone (%d times): too large or not allowed?", s.o.PoisonAfter), 0, err.Err)
			}
		}
		return written, acked, err
	}
	return written, acked, stop
}

func checkUserProps(attrs map[string]string) error {
	for k, v := range attrs {
		if k == "" || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("attribute %q=%q: keys must be non-empty UTF-8, values UTF-8", k, v)
		}
		if len(k) > 65535 || len(v) > 65535 {
			return fmt.Errorf("attribute %q longer than 65535 bytes", k)
		}
	}
	return nil
}

// errConn remembers the first read or write error of a connection: the
// reason it was lost.
type errConn struct {
	net.Conn
	raw syscall.RawConn // the TCP socket, for quickAck
	mu  sync.Mutex
	err error
}

func (c *errConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.record(err)
	} else if c.raw != nil {
		quickAck(c.raw)
	}
	return n, err
}

// quickAck acknowledges what was read at once instead of after the
// kernel's delayed-ACK timer (40 ms on Linux; it re-arms, so it is set after
// every read). Brokers write acknowledgements with Nagle's algorithm on
// (mosquitto's default): once a batch is sent and the forwarder only
// waits, a delayed ACK held their next PUBACKs back 40 ms per batch.
func quickAck(raw syscall.RawConn) {
	raw.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
	})
}

func (c *errConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil {
		c.record(err)
	}
	return n, err
}

func (c *errConn) record(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

func (c *errConn) firstErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// lostErr is the Error for a connection that ended with err.
func lostErr(reason string, code int, err error) *Error {
	if err == nil {
		err = errors.New("connection closed")
	}
	return &Error{Reason: reason, Code: code, Err: err, lost: true}
}

// MQTT 5 reason codes (also the MQTT 3.1.1 CONNACK return codes' meanings).
var reasonNames = map[byte]string{
	0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
	0x83: "implementation specific error", 0x84: "unsupported protocol version",
	0x85: "client identifier not valid", 0x86: "bad user name or password",
	0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned",
	0x8B: "server shutting down", 0x8C: "bad authentication method", 0x8D: "keep alive timeout",
	0x8E: "session taken over", 0x8F: "topic filter invalid", 0x90: "topic name invalid",
	0x91: "packet identifier in use", 0x92: "packet identifier not found",
	0x93: "receive maximum exceeded", 0x94: "topic alias invalid", 0x95: "packet too large",
	0x96: "message rate too high", 0x97: "quota exceeded", 0x98: "administrative action",
	0x99: "payload format invalid", 0x9A: "retain not supported", 0x9B: "QoS not supported",
	0x9C: "use another server", 0x9D: "server moved", 0x9F: "connection rate exceeded",
}

func reasonName(c byte) string {
	if n, ok := reasonNames[c]; ok {
		return n
	}
	return fmt.Sprintf("reason code 0x%02x", c)
}

// Reason codes after which trying again later may work; the others refuse.
var (
	connectRetryable = map[byte]bool{0x80: true, 0x88: true, 0x89: true, 0x97: true, 0x9F: true}
	publishRetryable = map[byte]bool{0x91: true, 0x97: true}
)
