package broker_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/broker"
)

// gate is a hold the test releases by hand.
type gate struct {
	done chan struct{}
	err  error
}

func newGate() *gate                  { return &gate{done: make(chan struct{})} }
func (g *gate) Done() <-chan struct{} { return g.done }
func (g *gate) Wait() error           { <-g.done; return g.err }
func (g *gate) release(err error)     { g.err = err; close(g.done) }

// rawClient speaks just enough MQTT 3.1.1 to see exactly which PUBACKs
// arrive when.
type rawClient struct {
	c net.Conn
	r *bufio.Reader
}

func rawConnect(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// CONNECT: protocol MQTT level 4, clean session, keep-alive 60 s, client id "held".
	vh := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 4, 'h', 'e', 'l', 'd'}
	if _, err := c.Write(append([]byte{0x10, byte(len(vh))}, vh...)); err != nil {
		t.Fatal(err)
	}
	rc := &rawClient{c: c, r: bufio.NewReader(c)}
	if p := rc.read(t, time.Second); len(p) != 4 || p[0] != 0x20 || p[3] != 0 {
		t.Fatalf("CONNACK: % x", p)
	}
	return rc
}

func (rc *rawClient) publish(t *testing.T, id uint16, topic string) {
	t.Helper()
	body := append([]byte{0, byte(len(topic))}, topic...)
	body = append(body, byte(id>>8), byte(id), 'x')
	if _, err := rc.c.Write(append([]byte{0x32, byte(len(body))}, body...)); err != nil {
		t.Fatal(err)
	}
}

// read returns the next packet, nil if none arrives within d, or io.EOF's
// marker []byte{} once the broker closed the connection.
func (rc *rawClient) read(t *testing.T, d time.Duration) []byte {
	t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(d))
	h, err := rc.r.ReadByte()
	if errors.Is(err, io.EOF) {
		return []byte{}
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return nil
	}
	if err != nil {
		return []byte{} // reset by the broker
	}
	n, err := rc.r.ReadByte()
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 2+int(n))
	p[0], p[1] = h, n
	if _, err := io.ReadFull(rc.r, p[2:]); err != nil {
		t.Fatal(err)
	}
	return p
}

func puback(id uint16) []byte { return []byte{0x40, 2, byte(id >> 8), byte(id)} }

// TestAcksWaitForHoldsWithoutStoppingReads: a QoS 1 publisher's PUBACKs are
// held until the tap's holds (its outbox commits) are over, in order, while
// the broker goes on reading its next messages, which is what lets them
// share one group commit.
func TestAcksWaitForHoldsWithoutStoppingReads(t *testing.T) {
	b := start(t, broker.Config{})
	var mu sync.Mutex
	gates := map[string]*gate{}
	seen := make(chan string, 16)
	b.SetTap(func(m broker.Message) ([]broker.Hold, error) {
		g := newGate()
		mu.Lock()
		gates[m.Topic] = g
		mu.Unlock()
		seen <- m.Topic
		return []broker.Hold{g}, nil
	})
	gateOf := func(topic string) *gate { mu.Lock(); defer mu.Unlock(); return gates[topic] }
	rc := rawConnect(t, b.Addrs()[0])
	for i, topic := range []string{"a", "b", "c"} {
		rc.publish(t, uint16(i+1), topic)
	}
	for _, want := range []string{"a", "b", "c"} {
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("tap saw %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the broker stopped reading while %q's acknowledgement was held", want)
		}
	}
	if p := rc.read(t, 200*time.Millisecond); p != nil {
		t.Fatalf("a packet before any hold was released: % x", p)
	}
	gateOf("a").release(nil)
	if p := rc.read(t, 5*time.Second); string(p) != string(puback(1)) {
		t.Fatalf("want PUBACK 1, got % x", p)
	}
	if p := rc.read(t, 200*time.Millisecond); p != nil {
		t.Fatalf("PUBACK 2 went before its hold was over: % x", p)
	}
	// Released out of order, acknowledged in order.
	gateOf("c").release(nil)
	if p := rc.read(t, 200*time.Millisecond); p != nil {
		t.Fatalf("PUBACK 3 overtook 2: % x", p)
	}
	gateOf("b").release(nil)
	for _, id := range []uint16{2, 3} {
		if p := rc.read(t, 5*time.Second); string(p) != string(puback(id)) {
			t.Fatalf("want PUBACK %d, got % x", id, p)
		}
	}
	// A failed hold (the commit did not reach the disk): no PUBACK, the
	// connection is cut so the client sends the message again.
	rc.publish(t, 4, "d")
	<-seen
	gateOf("d").release(errors.New("fsync failed"))
	if p := rc.read(t, 5*time.Second); p == nil || len(p) != 0 {
		t.Fatalf("want the connection closed, got % x", p)
	}
}

// TestQoS0AndInlinePublishesAreNotHeld: QoS 0 has no acknowledgement to
// hold, so it neither waits nor delays later writes; Flick's own publish
// returns only once its holds are over.
func TestQoS0AndInlinePublishesAreNotHeld(t *testing.T) {
	b := start(t, broker.Config{})
	g := newGate()
	b.SetTap(func(m broker.Message) ([]broker.Hold, error) { return []broker.Hold{g}, nil })
	rc := rawConnect(t, b.Addrs()[0])
	// QoS 0 PUBLISH, then PINGREQ: the PINGRESP must not wait for the gate.
	body := []byte{0, 1, 'q', 'x'}
	rc.c.Write(append([]byte{0x30, byte(len(body))}, body...))
	rc.c.Write([]byte{0xC0, 0})
	if p := rc.read(t, 5*time.Second); len(p) != 2 || p[0] != 0xD0 {
		t.Fatalf("want PINGRESP, got % x", p)
	}
	done := make(chan error, 1)
	go func() { done <- b.Publish(broker.Message{Topic: "own", Payload: []byte("r"), QoS: 1}) }()
	select {
	case <-done:
		t.Fatal("Flick's own publish returned before its hold was over")
	case <-time.After(200 * time.Millisecond):
	}
	g.release(nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
