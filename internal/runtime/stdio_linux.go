package runtime

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/flick-edge/flick/internal/tty"
)

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
		tty.Resize(m, size[0], size[1])
	}
	err = tty.Send(sock, m)
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
