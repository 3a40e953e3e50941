// Package tty is what the monitor, the daemon and a container's init share
// about terminals: a container's terminal is made inside it (on its own
// devpts) and its master is handed out over a unix socket; sizes follow the
// client's window.
package tty

import (
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Resize sets a terminal's window size.
func Resize(f *os.File, h, w uint16) error {
	ws := unix.Winsize{Row: h, Col: w}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.TIOCSWINSZ, uintptr(unsafe.Pointer(&ws)))
	if e != 0 {
		return e
	}
	return nil
}

// Send hands the terminal master m out on the unix socket sock.
func Send(sock, m *os.File) error {
	return unix.Sendmsg(int(sock.Fd()), []byte{0}, unix.UnixRights(int(m.Fd())), nil, 0)
}

// Receive takes the terminal master sent from inside a container (init's
// or an exec's). It fails (EOF) if the sender ended first.
func Receive(sock *os.File) (*os.File, error) {
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
