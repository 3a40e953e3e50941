package upstream

import (
	"bufio"
	"bytes"
	"net"
	"sync"
	"time"
)

// coalescingConn gathers the small writes a pipelined batch makes (one per
// PUBLISH) and sends them in one syscall once writing pauses for a moment
// or the buffer is large. Reads are buffered too: paho reads each packet as
// a header byte, a length and a body, which would be three syscalls per
// PUBACK. Forwarding is bound by syscalls on a small hub;
// this turns ~one write per message into ~one per batch. A write error
// surfaces on the next Write or Close, and the connection's reader sees
// the broken connection as well.
type coalescingConn struct {
	net.Conn
	r     *bufio.Reader // only paho's single reader goroutine reads
	mu    sync.Mutex
	buf   bytes.Buffer
	timer *time.Timer
	err   error
}

const (
	coalesceDelay = 200 * time.Microsecond
	coalesceMax   = 64 << 10
)

func newCoalescingConn(c net.Conn) *coalescingConn {
	cc := &coalescingConn{Conn: c, r: bufio.NewReaderSize(c, 16<<10)}
	cc.timer = time.AfterFunc(time.Hour, cc.flushTimer)
	cc.timer.Stop()
	return cc
}

func (c *coalescingConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.buf.Write(p)
	if c.buf.Len() >= coalesceMax {
		return len(p), c.flushLocked()
	}
	c.timer.Reset(coalesceDelay)
	return len(p), nil
}

func (c *coalescingConn) flushTimer() {
	c.mu.Lock()
	c.flushLocked()
	c.mu.Unlock()
}

func (c *coalescingConn) flushLocked() error {
	if c.buf.Len() == 0 || c.err != nil {
		return c.err
	}
	_, err := c.Conn.Write(c.buf.Bytes())
	c.buf.Reset()
	if err != nil {
		c.err = err
	}
	return err
}

func (c *coalescingConn) Close() error {
	c.mu.Lock()
	c.timer.Stop()
	c.flushLocked()
	c.mu.Unlock()
	return c.Conn.Close()
}
