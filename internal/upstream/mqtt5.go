package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"
	"github.com/eclipse/paho.golang/paho/store/memory"
)

// MsgIDProperty is the MQTT 5 user property carrying Message.ID.
const MsgIDProperty = "flick-msg-id"

// link5 is an MQTT 5 connection on eclipse/paho.golang. Publishes are
// pipelined: each is written at once (paho's asynchronous send) and its
// acknowledgement is caught by trackedSession, then awaited in order.
type link5 struct {
	cli     *paho.Client
	sess    *trackedSession
	conn    *errConn
	qos     byte
	maxPkt  uint32 // server's Maximum Packet Size, 0 if none
	closeMu sync.Once
}

// trackedSession is paho's in-memory session that hands the response of
// the next PUBLISH to a channel of ours, and remembers the server's
// DISCONNECT.
type trackedSession struct {
	session.SessionManager
	mu   sync.Mutex
	next chan<- packets.ControlPacket
	disc *packets.Disconnect
}

func (t *trackedSession) AddToSession(ctx context.Context, p session.Packet, resp chan<- packets.ControlPacket) error {
	t.mu.Lock()
	if t.next != nil && p.Type() == packets.PUBLISH {
		resp = t.next
	}
	t.mu.Unlock()
	return t.SessionManager.AddToSession(ctx, p, resp)
}

func (t *trackedSession) ConnectionLost(dp *packets.Disconnect) error {
	if dp != nil {
		t.mu.Lock()
		if t.disc == nil {
			t.disc = dp
		}
		t.mu.Unlock()
	}
	return t.SessionManager.ConnectionLost(dp)
}

func (t *trackedSession) setNext(ch chan<- packets.ControlPacket) {
	t.mu.Lock()
	t.next = ch
	t.mu.Unlock()
}

func (t *trackedSession) disconnect() *packets.Disconnect {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.disc
}

// noStore is the session's store for the PUBLISHes in flight. paho keeps a
// copy of each to send again when a session resumes; Flick starts every
// connection clean, on a new session, and sends again from its outbox, so
// the copy is never read: skipping it saves an encode and an allocation per
// message.
type noStore struct{}

func (noStore) Put(uint16, byte, io.WriterTo) error { return nil }
func (noStore) Get(id uint16) (io.ReadCloser, error) {
	return nil, fmt.Errorf("packet %d: not kept (Flick resends from its outbox)", id)
}
func (noStore) Delete(uint16) error     { return nil }
func (noStore) Quarantine(uint16) error { return nil }
func (noStore) List() ([]uint16, error) { return nil, nil }
func (noStore) Reset() error            { return nil }

func keepAliveSeconds(d time.Duration) uint16 {
	return uint16(min(max(d/time.Second, 1), 65535))
}

func (s *mqttSender) dial5(ctx context.Context) (mqttLink, *Error) {
	ec, err := s.dialConn(ctx)
	if err != nil {
		return nil, classifyNetErr(err)
	}
	sess := &trackedSession{SessionManager: state.New(noStore{}, memory.New())}
	l := &link5{sess: sess, conn: ec, qos: s.r.QoS}
	l.cli = paho.NewClient(paho.ClientConfig{
		ClientID:      s.clientID,
		Conn:          packets.NewThreadSafeConn(newCoalescingConn(ec)),
		Session:       sess,
		PacketTimeout: s.o.ConnectTimeout,
		// We never subscribe; anything the server sends is dropped.
		OnPublishReceived:  []func(paho.PublishReceived) (bool, error){func(paho.PublishReceived) (bool, error) { return true, nil }},
		OnServerDisconnect: func(*paho.Disconnect) {},
		OnClientError:      func(error) {},
	})
	cp := &paho.Connect{ClientID: s.clientID, CleanStart: true, KeepAlive: keepAliveSeconds(s.o.KeepAlive)}
	if s.r.Username != "" {
		cp.Username, cp.UsernameFlag = s.r.Username, true
	}
	if s.r.Password != "" {
		cp.Password, cp.PasswordFlag = []byte(s.r.Password), true
	}
	ca, err := l.cli.Connect(ctx, cp)
	if err != nil {
		sess.Close()
		if ca != nil && ca.ReasonCode >= 0x80 {
			e := &Error{Permanent: !connectRetryable[ca.ReasonCode], Reason: "connection refused: " + reasonName(ca.ReasonCode), Code: int(ca.ReasonCode)}
			if ca.Properties != nil && ca.Properties.ReasonString != "" {
				e.Err = errors.New(ca.Properties.ReasonString)
			}
			return nil, e
		}
		if ce := ec.firstErr(); ce != nil {
			err = ce
		}
		return nil, classifyNetErr(err)
	}
	if ca.Properties != nil && ca.Properties.MaximumPacketSize != nil {
		l.maxPkt = *ca.Properties.MaximumPacketSize
	}
	return l, nil
}

func (l *link5) done() <-chan struct{} { return l.cli.Done() }

func (l *link5) close() {
	l.closeMu.Do(func() {
		select {
		case <-l.cli.Done():
		default:
			_ = l.cli.Disconnect(&paho.Disconnect{ReasonCode: 0})
		}
		<-l.cli.Done()
		l.sess.Close()
	})
}

func (l *link5) lost() *Error {
	if dp := l.sess.disconnect(); dp != nil {
		var err error
		if dp.Properties != nil && dp.Properties.ReasonString != "" {
			err = errors.New(dp.Properties.ReasonString)
		} else {
			err = fmt.Errorf("DISCONNECT 0x%02x", dp.ReasonCode)
		}
		return lostErr("disconnected by the upstream: "+reasonName(dp.ReasonCode), int(dp.ReasonCode), err)
	}
	return lostErr("connection lost", 0, l.conn.firstErr())
}

func (l *link5) packet(m outMsg) *paho.Publish {
	p := &paho.Publish{QoS: l.qos, Topic: m.topic, Payload: m.payload, Properties: &paho.PublishProperties{}}
	if m.id != "" {
		p.Properties.User.Add(MsgIDProperty, m.id)
	}
	for _, k := range slices.Sorted(maps.Keys(m.attrs)) {
		p.Properties.User.Add(k, m.attrs[k])
	}
	return p
}

func (l *link5) tooLarge(m outMsg) (int, int, bool) {
	if l.maxPkt == 0 {
		return 0, 0, false
	}
	pb := l.packet(m).Packet()
	rem := 0
	for _, b := range pb.Buffers() {
		rem += len(b)
	}
	size := 1 + rem
	for v := rem; ; v >>= 7 { // variable byte integer length
		size++
		if v < 128 {
			break
		}
	}
	return size, int(l.maxPkt), uint64(size) > uint64(l.maxPkt)
}

// pubErr classifies an error of PublishWithOptions.
func (l *link5) pubErr(ctx context.Context, err error) *Error {
	select {
	case <-l.cli.Done():
		return l.lost()
	default:
	}
	switch {
	case errors.Is(err, paho.ErrInvalidArguments):
		return permanent("refused by the client: the upstream does not allow it", 0, err)
	case errors.Is(err, session.ErrNoConnection), errors.Is(err, paho.ErrNetworkErrorAfterStored):
		if l.sess.disconnect() != nil || l.conn.firstErr() != nil {
			return l.lost() // the server's DISCONNECT, or the read/write error
		}
		return lostErr("connection lost", 0, err)
	case ctx.Err() != nil:
		return retryable("timeout", ctx.Err())
	}
	return retryable("publish failed", err)
}

// respErr classifies the final acknowledgement of a QoS 1/2 publish.
func respErr(r packets.ControlPacket) *Error {
	var (
		rc    byte
		props *packets.Properties
	)
	switch c := r.Content.(type) {
	case *packets.Puback:
		rc, props = c.ReasonCode, c.Properties
	case *packets.Pubrec:
		rc, props = c.ReasonCode, c.Properties
	case *packets.Pubcomp:
		rc, props = c.ReasonCode, c.Properties
	default:
		return lostErr("connection lost before the acknowledgement", 0, nil)
	}
	if rc < 0x80 {
		return nil
	}
	e := &Error{Permanent: !publishRetryable[rc], Reason: reasonName(rc), Code: int(rc)}
	if props != nil && props.ReasonString != "" {
		e.Err = errors.New(props.ReasonString)
	}
	return e
}

func (l *link5) publish(ctx context.Context, msgs []outMsg) (written, acked int, err *Error) {
	resps := make([]chan packets.ControlPacket, 0, len(msgs))
	for _, m := range msgs {
		select {
		case <-l.cli.Done():
			err = l.lost()
		default:
		}
		if err != nil {
			break
		}
		p := l.packet(m)
		if l.qos == 0 {
			if _, e := l.cli.PublishWithOptions(ctx, p, paho.PublishOptions{}); e != nil {
				err = l.pubErr(ctx, e)
				break
			}
			resps = append(resps, nil)
			continue
		}
		ch := make(chan packets.ControlPacket, 1)
		l.sess.setNext(ch)
		_, e := l.cli.PublishWithOptions(ctx, p, paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
		l.sess.setNext(nil)
		if errors.Is(e, paho.ErrNetworkErrorAfterStored) {
			// Partly written at least: a server that refuses it may
			// have closed the connection while we were writing.
			resps = append(resps, ch)
		}
		if e != nil {
			err = l.pubErr(ctx, e)
			break
		}
		resps = append(resps, ch)
	}
	written = len(resps)
	for _, ch := range resps {
		if ch == nil { // QoS 0: written is all there is
			acked++
			continue
		}
		var r packets.ControlPacket
		select {
		case r = <-ch:
		case <-l.cli.Done():
			select {
			case r = <-ch: // acknowledged just before the end
			default:
				return written, acked, l.lost()
			}
		case <-ctx.Done():
			return written, acked, retryable("timeout waiting for the acknowledgement", ctx.Err())
		}
		if e := respErr(r); e != nil {
			return written, acked, e
		}
		acked++
	}
	return written, acked, err
}
