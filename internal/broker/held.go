package broker

import (
	"context"
	"net"
	"sync"
)

// A Hold is something a client's acknowledgement must wait for: its message
// being durable in an outbox, or its event handled by a function.
type Hold interface {
	// Done is closed once the hold is over.
	Done() <-chan struct{}
	// Wait blocks until Done and returns the outcome; an error means the
	// message was not taken, so it must not be acknowledged.
	Wait() error
}

// maxHeld bounds the acknowledgements one connection may have waiting:
// beyond it the broker stops reading from that client (TCP back-pressure)
// until earlier ones are released.
const maxHeld = 1024

// heldListener wraps every accepted connection in a heldConn.
type heldListener struct{ net.Listener }

func (l heldListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newHeldConn(c), nil
}

// heldConn delays a client's acknowledgements until what they promise is
// true, without stopping the client's read loop. The broker registers the
// holds of a message (hold) before it writes that message's PUBACK/PUBREC;
// every later write on the connection waits for them, in order. So a
// publisher with many QoS 1 messages in flight has them all joining the
// same group commit instead of one per fsync, and the PUBACKs released
// together leave in one write.
//
// Writes that wait on nothing go straight to the socket.
type heldConn struct {
	net.Conn
	mu       sync.Mutex
	space    sync.Cond
	holds    []Hold      // registered since the last write: the next write waits for them
	queue    []heldWrite // writes waiting, in order
	held     int         // holds registered and not yet released
	flushing bool
	err      error
}

type heldWrite struct {
	holds []Hold
	data  []byte
}

func newHeldConn(c net.Conn) *heldConn {
	h := &heldConn{Conn: c}
	h.space.L = &h.mu
	return h
}

// hold makes every later write wait for hs. It blocks while maxHeld holds
// are already waiting, so a client cannot queue without end.
func (c *heldConn) hold(hs ...Hold) {
	if len(hs) == 0 {
		return
	}
	c.mu.Lock()
	for c.held >= maxHeld && c.err == nil {
		c.space.Wait()
	}
	c.holds = append(c.holds, hs...)
	c.held += len(hs)
	c.mu.Unlock()
}

func (c *heldConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if len(c.holds) == 0 && !c.flushing {
		return c.Conn.Write(p)
	}
	c.queue = append(c.queue, heldWrite{holds: c.holds, data: append([]byte(nil), p...)})
	c.holds = nil
	if !c.flushing {
		c.flushing = true
		go c.flush()
	}
	return len(p), nil
}

// flush writes the queue in order, each write once its holds are over,
// gathering the writes that are ready into one syscall.
func (c *heldConn) flush() {
	var buf []byte
	for {
		c.mu.Lock()
		if len(c.queue) == 0 || c.err != nil {
			c.flushing = false
			c.queue = nil
			c.mu.Unlock()
			return
		}
		first := c.queue[0]
		c.mu.Unlock()
		if err := waitAll(first.holds); err != nil {
			c.fail(err)
			continue
		}
		c.mu.Lock()
		buf = buf[:0]
		released, n := 0, 0
		for n < len(c.queue) && (n == 0 || over(c.queue[n].holds)) {
			if n > 0 && waitAll(c.queue[n].holds) != nil {
				break // fails on the next round, after what is good is written
			}
			buf = append(buf, c.queue[n].data...)
			released += len(c.queue[n].holds)
			n++
		}
		c.queue = c.queue[n:]
		c.held -= released
		c.space.Broadcast()
		c.mu.Unlock()
		if _, err := c.Conn.Write(buf); err != nil {
			c.fail(err)
		}
	}
}

// fail closes the connection: a message whose hold failed was not taken,
// and MQTT has no way to take back an acknowledgement, so the client is
// cut off before it sees one and will send the message again.
func (c *heldConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.queue = nil
	c.held = 0
	c.space.Broadcast()
	c.mu.Unlock()
	c.Conn.Close()
}

func over(hs []Hold) bool {
	for _, h := range hs {
		select {
		case <-h.Done():
		default:
			return false
		}
	}
	return true
}

func waitAll(hs []Hold) error {
	for _, h := range hs {
		if err := h.Wait(); err != nil {
			return err
		}
	}
	return nil
}

// funcHold runs a blocking wait in its own goroutine.
type funcHold struct {
	done chan struct{}
	err  error
}

func holdFunc(ctx context.Context, wait func(context.Context) error) *funcHold {
	h := &funcHold{done: make(chan struct{})}
	go func() {
		h.err = wait(ctx)
		close(h.done)
	}()
	return h
}

func (h *funcHold) Done() <-chan struct{} { return h.done }
func (h *funcHold) Wait() error           { <-h.done; return h.err }
