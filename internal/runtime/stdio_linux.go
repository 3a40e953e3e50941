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
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Resize sets a terminal's window size.
func Resize(f *os.File, h, w uint16) error { return resize(f, h, w) }

// openPTY allocates a pseudo-terminal pair on the devpts instance whose
// multiplexer is ptmx and whose slaves are in dir.
func openPTY(ptmx, dir string) (master, slave *os.File, err error) {
	m, err := os.OpenFile(ptmx, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
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
	s, err := os.OpenFile(dir+"/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, s, nil
}

// The socket on which, with -t, the terminal master made inside the
// container goes back out: init's fd 5 (to the monitor), __exec's fd 3 and
// __execinit's fd 7 (to the daemon).
const (
	initConsoleFD     = 5
	execConsoleFD     = 3
	execInitConsoleFD = 7
)

// setupConsole runs in init (-t), after pivot_root: it allocates the
// terminal on the container's own devpts instance, so the app's terminal
// is /dev/pts/0 inside (ttyname, 'tty', job control work) and /dev/console
// names it, as with runc; it sends the master to the monitor and makes the
// slave init's controlling terminal and stdio.
func setupConsole(size [2]uint16) error { return setupTerminal(initConsoleFD, size, true) }

// setupTerminal allocates a terminal on the devpts at /dev/pts, sends the
// master on the socket at fd, and makes the slave this process's controlling
// terminal and stdio; with console, /dev/console names it too.
func setupTerminal(fd int, size [2]uint16, console bool) error {
	sock := os.NewFile(uintptr(fd), "console")
	defer sock.Close()
	m, s, err := openPTY("/dev/ptmx", "/dev/pts")
	if err != nil {
		return err
	}
	defer s.Close()
	if size[0] > 0 && size[1] > 0 {
		resize(m, size[0], size[1])
	}
	err = unix.Sendmsg(int(sock.Fd()), []byte{0}, unix.UnixRights(int(m.Fd())), nil, 0)
	m.Close()
	if err != nil {
		return fmt.Errorf("hand the terminal out: %w", err)
	}
	if console {
		if err := bindConsole(s.Name()); err != nil {
			return err
		}
	}
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(int(s.Fd()), fd, 0); err != nil {
			return err
		}
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("controlling terminal: %w", err)
	}
	return nil
}

// bindConsole makes /dev/console the terminal at slave, as runc does.
func bindConsole(slave string) error {
	f, err := os.OpenFile("/dev/console", os.O_CREATE|os.O_RDONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create /dev/console: %w", err)
	}
	f.Close()
	if err := unix.Mount(slave, "/dev/console", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind /dev/console: %w", err)
	}
	return nil
}

// ReceiveConsole takes the terminal master sent from inside a container
// (init's or an exec's). It fails (EOF) if the sender ended first.
func ReceiveConsole(sock *os.File) (*os.File, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if n == 0 && oobn == 0 {
		return nil, io.EOF
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("terminal from init: bad control message")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("terminal from init: no descriptor")
	}
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
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
	h, w  uint16         // the last size asked for, applied to the next terminal
}

func (c *console) set(stdin io.WriteCloser, tty *os.File) {
	c.mu.Lock()
	c.stdin, c.tty = stdin, tty
	if tty != nil && c.h > 0 && c.w > 0 {
		resize(tty, c.h, c.w)
	}
	c.mu.Unlock()
}

// waitStdin returns the run's stdin once there is one, or nil after d.
func (c *console) waitStdin(d time.Duration) (io.WriteCloser, *os.File) {
	deadline := time.Now().Add(d)
	for {
		stdin, tty := c.get()
		if stdin != nil || time.Now().After(deadline) {
			return stdin, tty
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
		resize(c.tty, h, w)
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
				stdin, tty := c.waitStdin(10 * time.Second)
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
