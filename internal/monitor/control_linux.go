package monitor

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flick-edge/flick/internal/tty"
)

// ControlSocket is the monitor's abstract unix socket for a container: the
// daemon streams attached stdin through it and sends terminal resizes.
// Abstract sockets have no path-length limit; the monitor checks that the
// peer is root.
func ControlSocket(id string) string { return "@flick-shim-" + id }

// Control is the header line of a control connection.
type Control struct {
	Type   string `json:"type"` // stdin | resize
	Height uint16 `json:"h,omitempty"`
	Width  uint16 `json:"w,omitempty"`
}

// console is what the current run's stdin is wired to.
type console struct {
	mu    sync.Mutex
	stdin io.WriteCloser // pty master or stdin pipe; nil when the app has no stdin
	tty   *os.File       // pty master, for resizes
	h, w  uint16         // the last size asked for, applied to the next terminal
}

func (c *console) set(stdin io.WriteCloser, term *os.File) {
	c.mu.Lock()
	c.stdin, c.tty = stdin, term
	if term != nil && c.h > 0 && c.w > 0 {
		tty.Resize(term, c.h, c.w)
	}
	c.mu.Unlock()
}

// waitStdin returns the run's stdin once there is one, or nil after d.
func (c *console) waitStdin(d time.Duration) (io.WriteCloser, *os.File) {
	deadline := time.Now().Add(d)
	for {
		stdin, term := c.get()
		if stdin != nil || time.Now().After(deadline) {
			return stdin, term
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// resize applies a size to the terminal, or keeps it for the terminal to
// come (a client may resize before init has made it).
func (c *console) resize(h, w uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.h, c.w = h, w
	if c.tty != nil {
		tty.Resize(c.tty, h, w)
	}
}

func (c *console) get() (io.WriteCloser, *os.File) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stdin, c.tty
}

// serveControl accepts control connections until the listener is closed.
func serveControl(l *net.UnixListener, c *console, stdinOnce bool) {
	for {
		conn, err := l.AcceptUnix()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			if !peerIsRoot(conn) {
				return
			}
			br := bufio.NewReader(conn)
			line, err := br.ReadBytes('\n')
			if err != nil {
				return
			}
			var h Control
			if json.Unmarshal(line, &h) != nil {
				return
			}
			switch h.Type {
			case "resize":
				if h.Height > 0 && h.Width > 0 {
					c.resize(h.Height, h.Width)
				}
			case "stdin":
				// With -t the terminal arrives from init a moment after
				// the start; a client attached before it waits.
				stdin, term := c.waitStdin(10 * time.Second)
				if stdin == nil {
					return
				}
				io.Copy(stdin, br)
				if stdinOnce && term == nil {
					stdin.Close()
				}
			}
		}()
	}
}

func peerIsRoot(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		ok = err == nil && cred.Uid == 0
	})
	return ok
}
