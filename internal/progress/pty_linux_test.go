//go:build linux

package progress

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns the two ends of a new pseudo-terminal of 100x30.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open slave: %v", err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 30, Col: 100}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// TestRealTerminal renders onto the slave side of a pty (what a CLI's
// stdout is in a terminal) with terminal detection, and reads what a
// terminal would show from the master side.
func TestRealTerminal(t *testing.T) {
	master, slave := openPTY(t)
	if !isTerminal(slave) {
		t.Fatal("pty slave not detected as a terminal")
	}
	var got bytes.Buffer
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		_, _ = io.Copy(&got, master) // ends with EIO once the slave is closed
	}()

	r := &slowReader{r: bufio.NewReader(bytes.NewReader(stream(t, "pull-success.jsonl"))), pause: 3 * time.Millisecond}
	res, err := Render(context.Background(), r, slave, Options{})
	if err != nil || res.Ref != wantRef {
		t.Fatalf("%+v, %v", res, err)
	}
	slave.Close()
	select {
	case <-readDone:
	case <-time.After(5 * time.Second):
		master.Close()
		<-readDone
	}
	out := strings.ReplaceAll(got.String(), "\r\n", "\n")
	if !strings.Contains(out, "\x1b[J") {
		t.Errorf("no redraw on a terminal: %q", out[:min(len(out), 500)])
	}
	if !strings.HasSuffix(out, "Status: Downloaded newer image for "+wantRef+"\n") {
		t.Errorf("footer missing: %q", out[max(0, len(out)-300):])
	}
	if last := lastFrame(out); !strings.Contains(last, "5b0bd9f2e3a4: Pull complete") {
		t.Errorf("last frame: %q", last)
	}
}
