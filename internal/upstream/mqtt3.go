package upstream

import (
	"context"
	"errors"
	"net"
	"net/url"
	"sync"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// link3 is an MQTT 3.1.1 connection on eclipse/paho.mqtt.golang, for
// upstreams that do not speak MQTT 5. 3.1.1 has no properties: message ids
// and attributes are not sent, and refusals are not reported (a broker
// drops a denied publish, or closes the connection).
type link3 struct {
	cli     mqtt3.Client
	conn    *errConn
	qos     byte
	doneCh  chan struct{}
	mu      sync.Mutex
	lostErr error
	once    sync.Once
}

// connack3 maps MQTT 3.1.1 CONNACK return codes to their MQTT 5 reason codes.
var connack3 = map[byte]byte{1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87}

func (s *mqttSender) dial3(ctx context.Context) (mqttLink, *Error) {
	l := &link3{qos: s.r.QoS, doneCh: make(chan struct{})}
	var dialErr error
	o := mqtt3.NewClientOptions().
		AddBroker("tcp://" + s.r.addr()).
		SetClientID(s.clientID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(s.o.ConnectTimeout).
		SetWriteTimeout(s.o.ConnectTimeout).
		SetKeepAlive(s.o.KeepAlive).
		SetPingTimeout(s.o.ConnectTimeout).
		SetCustomOpenConnectionFn(func(*url.URL, mqtt3.ClientOptions) (net.Conn, error) {
			c, err := s.dialConn(ctx)
			if err != nil {
				dialErr = err
				return nil, err
			}
			l.conn = c
			return c, nil
		}).
		SetConnectionLostHandler(func(_ mqtt3.Client, err error) {
			l.mu.Lock()
			l.lostErr = err
			l.mu.Unlock()
			l.once.Do(func() { close(l.doneCh) })
		})
	if s.r.Username != "" {
		o.SetUsername(s.r.Username)
	}
	if s.r.Password != "" {
		o.SetPassword(s.r.Password)
	}
	l.cli = mqtt3.NewClient(o)
	tok := l.cli.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		go func() { <-tok.Done(); l.cli.Disconnect(0) }()
		return nil, classifyNetErr(ctx.Err())
	}
	if err := tok.Error(); err != nil {
		if ct, ok := tok.(*mqtt3.ConnectToken); ok {
			if rc := ct.ReturnCode(); rc != packets.Accepted && connack3[rc] != 0 {
				code := connack3[rc]
				return nil, &Error{Permanent: !connectRetryable[code], Reason: "connection refused: " + reasonName(code), Code: int(rc), Err: err}
			}
		}
		if dialErr != nil {
			err = dialErr
		} else if l.conn != nil && l.conn.firstErr() != nil {
			err = l.conn.firstErr()
		}
		return nil, classifyNetErr(err)
	}
	return l, nil
}

func (l *link3) done() <-chan struct{} { return l.doneCh }

func (l *link3) close() {
	l.cli.Disconnect(100)
	l.once.Do(func() { close(l.doneCh) })
}

func (l *link3) lost() *Error {
	l.mu.Lock()
	err := l.lostErr
	l.mu.Unlock()
	if l.conn != nil && l.conn.firstErr() != nil {
		err = l.conn.firstErr()
	}
	return lostErr("connection lost", 0, err)
}

// tooLarge: MQTT 3.1.1 servers do not announce a limit.
func (l *link3) tooLarge(outMsg) (int, int, bool) { return 0, 0, false }

// window3 bounds the publishes in flight. MQTT 3.1.1 has no receive
// maximum: mosquitto holds back incoming QoS 2 messages beyond its
// max_inflight_messages (20) and delivers them after later ones.
const window3 = 10

func (l *link3) publish(ctx context.Context, msgs []outMsg) (written, acked int, err *Error) {
	toks := make([]mqtt3.Token, 0, len(msgs))
	// wait waits for the next acknowledgement.
	wait := func() *Error {
		t := toks[acked]
		select {
		case <-t.Done():
		case <-ctx.Done():
			return retryable("timeout waiting for the acknowledgement", ctx.Err())
		}
		e := t.Error()
		if e == nil {
			acked++
			return nil
		}
		if errors.Is(e, mqtt3.ErrNotConnected) {
			toks = toks[:acked] // refused before it was written
		}
		if errors.Is(e, mqtt3.ErrNotConnected) || !l.cli.IsConnectionOpen() {
			select { // the lost handler runs just after the tokens fail
			case <-l.doneCh:
			case <-ctx.Done():
			}
			return l.lost()
		}
		return retryable("publish failed", e)
	}
	for _, m := range msgs {
		for len(toks)-acked >= window3 && err == nil {
			err = wait()
		}
		if err == nil {
			select {
			case <-l.doneCh:
				err = l.lost()
			default:
			}
		}
		if err != nil {
			return len(toks), acked, err
		}
		toks = append(toks, l.cli.Publish(m.topic, l.qos, false, m.payload))
	}
	for acked < len(toks) {
		if err := wait(); err != nil {
			return len(toks), acked, err
		}
	}
	return len(toks), acked, nil
}
