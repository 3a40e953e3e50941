package runtime

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// OpenPTY allocates a pseudo-terminal pair on the host's devpts.
func OpenPTY() (master, slave *os.File, err error) { return openPTY() }

// Resize sets a terminal's window size.
func Resize(f *os.File, h, w uint16) error { return resize(f, h, w) }

func openPTY() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	unlock := 0
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, unlock); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, s, nil
}

// Resize sets a terminal's window size.
func resize(f *os.File, h, w uint16) error {
	ws := unix.Winsize{Row: h, Col: w}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.TIOCSWINSZ, uintptr(unsafe.Pointer(&ws)))
	if e != 0 {
		return e
	}
	return nil
}

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
}

func (c *console) set(stdin io.WriteCloser, tty *os.File) {
	c.mu.Lock()
	c.stdin, c.tty = stdin, tty
	c.mu.Unlock()
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
			stdin, tty := c.get()
			switch h.Type {
			case "resize":
				if tty != nil && h.Height > 0 && h.Width > 0 {
					resize(tty, h.Height, h.Width)
				}
			case "stdin":
				if stdin == nil {
					return
				}
				io.Copy(stdin, br)
				if stdinOnce && tty == nil {
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
