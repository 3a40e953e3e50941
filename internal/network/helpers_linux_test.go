package network

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/netns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the processes started in namespaces:
// FLICK_NETTEST_HELPER=serve NAME PORT answers every TCP connection and
// UDP datagram on PORT with "NAME <peer address>".
func TestMain(m *testing.M) {
	if os.Getenv("FLICK_NETTEST_HELPER") == "serve" {
		serve(os.Getenv("FLICK_NETTEST_NAME"), os.Getenv("FLICK_NETTEST_PORT"))
		os.Exit(0)
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		panic(err)
	}
	origNetNS = st.Ino
	os.Exit(m.Run())
}

// origNetNS is the test process's network namespace, taken before any test
// ran (later, /proc/self/ns/net, the main thread's, may be a wedged
// thread's: see threadsOutside).
var origNetNS uint64

func serve(name, port string) {
	ln, err := net.Listen("tcp4", ":"+port)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	pc, err := net.ListenPacket("udp4", ":"+port)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				os.Exit(1)
			}
			pc.WriteTo([]byte(name+" "+from.String()+"\n"), from)
		}
	}()
	fmt.Println("ready")
	// Killed by the test; stop by itself after a minute in any case.
	time.AfterFunc(time.Minute, func() { os.Exit(2) })
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
		c.Close()
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, veth, nftables)")
	}
}

// testNS makes a network namespace bind-mounted under dir, removed at cleanup.
func testNS(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := newNetNS(p); err != nil {
		if os.IsPermission(err) || strings.Contains(err.Error(), "operation not permitted") {
			t.Skipf("cannot make network namespaces here: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := removeNetNS(p); err != nil {
			t.Error(err)
		}
	})
	return p
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// inNS runs fn with a netlink handle of the namespace.
func inNS(t *testing.T, ns string, fn func(h *netlink.Handle) error) {
	t.Helper()
	err := netns.Enter(ns, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		return fn(h)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// startServer starts the serve helper inside ns through Enter.
func startServer(t *testing.T, ns, name string, port int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FLICK_NETTEST_HELPER=serve", "FLICK_NETTEST_NAME="+name, fmt.Sprintf("FLICK_NETTEST_PORT=%d", port))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := netns.Enter(ns, cmd.Start); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
		io.Copy(io.Discard, out)
	}()
	select {
	case line := <-ready:
		if line != "ready\n" {
			t.Fatalf("server %s: %q", name, line)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("server %s: not ready after 10s", name)
	}
	return cmd
}

// ask connects from inside ns and returns the server's one-line answer.
func ask(ns, network, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	err := netns.Enter(ns, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if network == "udp4" {
		// Datagrams may be lost while ARP settles: ask a few times.
		buf := make([]byte, 512)
		for range 5 {
			if _, err := c.Write([]byte("?")); err != nil {
				return "", err
			}
			c.SetReadDeadline(time.Now().Add(timeout / 5))
			n, err := c.Read(buf)
			if err == nil {
				return strings.TrimSpace(string(buf[:n])), nil
			}
		}
		return "", fmt.Errorf("udp %s: no answer", addr)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func mustAsk(t *testing.T, ns, network, addr string) string {
	t.Helper()
	got, err := ask(ns, network, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("%s %s from %s: %v", network, addr, filepath.Base(ns), err)
	}
	return got
}
