package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/netns"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// testNet is a stand-in host: a "host" namespace (where the bridge goes)
// and an "outside" namespace for a client on another machine, joined by a
// veth: host out0 192.0.2.1/24 <-> outside eth0 192.0.2.2/24 (TEST-NET-1,
// reachable only inside these namespaces).
type testNet struct {
	dir, host, outside string
	cfg                Config
}

const (
	hostIP    = "192.0.2.1"
	outsideIP = "192.0.2.2"
)

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	tn := &testNet{dir: dir, host: testNS(t, dir, "host"), outside: testNS(t, dir, "outside")}
	tn.cfg = Config{StateDir: filepath.Join(dir, "state"), HostNetNS: tn.host}
	// Whatever a failed test leaves in the state directory is unmounted
	// before the temporary directory goes.
	t.Cleanup(func() {
		entries, _ := os.ReadDir(filepath.Join(tn.cfg.StateDir, "netns"))
		for _, e := range entries {
			removeNetNS(filepath.Join(tn.cfg.StateDir, "netns", e.Name()))
		}
	})
	outFD, err := unix.Open(tn.outside, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(outFD)
	inNS(t, tn.host, func(h *netlink.Handle) error {
		// A host that does not route yet (a new namespace inherits the real host's setting).
		if err := writeSysctl("net/ipv4/ip_forward", "0"); err != nil {
			return err
		}
		lo, _ := h.LinkByName("lo")
		if err := h.LinkSetUp(lo); err != nil {
			return err
		}
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "out0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(outFD)}
		if err := h.LinkAdd(v); err != nil {
			return err
		}
		l, err := h.LinkByName("out0")
		if err != nil {
			return err
		}
		if err := h.AddrAdd(l, mustAddr(hostIP+"/24")); err != nil {
			return err
		}
		return h.LinkSetUp(l)
	})
	inNS(t, tn.outside, func(h *netlink.Handle) error {
		lo, _ := h.LinkByName("lo")
		if err := h.LinkSetUp(lo); err != nil {
			return err
		}
		l, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := h.AddrAdd(l, mustAddr(outsideIP+"/24")); err != nil {
			return err
		}
		return h.LinkSetUp(l)
	})
	return tn
}

func mustAddr(s string) *netlink.Addr {
	a, err := netlink.ParseAddr(s)
	if err != nil {
		panic(err)
	}
	return a
}

func (tn *testNet) newManager(t *testing.T) *Manager {
	t.Helper()
	m, err := New(tn.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// ruleset lists the table's rules per chain (expressions and comment),
// through the nftables library.
func (tn *testNet) ruleset(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := netns.Enter(tn.host, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			return err
		}
		for _, ch := range chains {
			rules, err := c.GetRules(ch.Table, ch)
			if err != nil {
				return err
			}
			out[ch.Table.Name+"/"+ch.Name] = []string{}
			for _, r := range rules {
				b, _ := json.Marshal(r.Exprs)
				out[ch.Table.Name+"/"+ch.Name] = append(out[ch.Table.Name+"/"+ch.Name], fmt.Sprintf("%s %q", b, r.UserData))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// nftText is `nft list ruleset` in the host namespace, when nft is installed.
func (tn *testNet) nftText(t *testing.T) (string, bool) {
	t.Helper()
	path, err := exec.LookPath("nft")
	if err != nil {
		return "", false
	}
	var out []byte
	if err := netns.Enter(tn.host, func() error {
		var err error
		out, err = exec.Command(path, "list", "ruleset").Output()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return string(out), true
}

// links lists the host namespace's interfaces: "name type alias".
func (tn *testNet) links(t *testing.T) []string {
	t.Helper()
	var names []string
	inNS(t, tn.host, func(h *netlink.Handle) error {
		ls, err := retryDump(h.LinkList)
		for _, l := range ls {
			names = append(names, strings.TrimSpace(l.Attrs().Name+" "+l.Type()+" "+l.Attrs().Alias))
		}
		return err
	})
	slices.Sort(names)
	return names
}

func (tn *testNet) assertNothingOf(t *testing.T, m *Manager, id string) {
	t.Helper()
	for _, l := range tn.links(t) {
		if strings.Contains(l, vethName(id)) || strings.Contains(l, comment(id)) {
			t.Errorf("%s: link left: %s", id, l)
		}
	}
	for chain, rules := range tn.ruleset(t) {
		for _, r := range rules {
			if strings.Contains(r, comment(id)) {
				t.Errorf("%s: rule left in %s: %s", id, chain, r)
			}
		}
	}
	if text, ok := tn.nftText(t); ok && strings.Contains(text, comment(id)) {
		t.Errorf("%s: nft list ruleset still names it:\n%s", id, text)
	}
	p := m.nsPath(id)
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: namespace file left: %v", id, err)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), p) {
		t.Errorf("%s: namespace still mounted", id)
	}
	if _, ok := m.Get(id); ok {
		t.Errorf("%s: still recorded", id)
	}
	if b, _ := os.ReadFile(m.statePath); strings.Contains(string(b), `"`+id+`"`) {
		t.Errorf("%s: still in endpoints.json", id)
	}
}

func TestBridgeNetwork(t *testing.T) {
	tn := newTestNet(t)
	m := tn.newManager(t)
	top := t

	// New again (a second daemon start) changes nothing.
	before, links := tn.ruleset(t), tn.links(t)
	m2, err := New(tn.cfg)
	if err != nil {
		t.Fatal(err)
	}
	m2.Close()
	if after := tn.ruleset(t); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("second New changed the rules:\n%v\n%v", before, after)
	}
	if got := tn.links(t); !slices.Equal(got, links) || !slices.Contains(got, "flick0 bridge") {
		t.Fatalf("links after the second New: %v (before %v)", got, links)
	}
	inNS(t, tn.host, func(h *netlink.Handle) error {
		br, err := h.LinkByName("flick0")
		if err != nil {
			return err
		}
		addrs, err := h.AddrList(br, unix.AF_INET)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "172.30.0.1/16" {
			t.Errorf("bridge addresses %v", addrs)
		}
		return err
	})
	// Flick switched forwarding on, so it forwards nothing but its own.
	netns.Enter(tn.host, func() error {
		if v, _ := readSysctl("net/ipv4/ip_forward"); v != "1" {
			t.Errorf("ip_forward %q", v)
		}
		return nil
	})
	dropOnly, _ := json.Marshal([]expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})
	if fwd := before["flick0/forward"]; len(fwd) != 3 || !strings.HasPrefix(fwd[2], string(dropOnly)+" ") {
		t.Errorf("forward chain %v", fwd)
	}

	a, err := m.Create("ctr-a", []PortMapping{
		{HostPort: 18080, ContainerPort: 8000},
		{HostPort: 18053, ContainerPort: 8000, Proto: "udp"},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Create("ctr-b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.IP.String() != "172.30.0.2" || b.IP.String() != "172.30.0.3" || a.Gateway.String() != "172.30.0.1" ||
		a.PrefixLen != 16 || a.MAC != "02:42:ac:1e:00:02" || !isNetNS(a.NetNSPath) {
		t.Fatalf("endpoints %+v %+v", a, b)
	}
	if fmt.Sprint(a.Ports) != "[0.0.0.0:18080->8000/tcp 0.0.0.0:18053->8000/udp]" {
		t.Fatalf("ports %v", a.Ports)
	}
	if text, ok := tn.nftText(t); ok {
		t.Logf("nft list ruleset in the host namespace:\n%s", text)
	}
	if got, ok := m.Get("ctr-a"); !ok || fmt.Sprint(got) != fmt.Sprint(a) {
		t.Fatalf("Get: %+v", got)
	}
	inNS(t, a.NetNSPath, func(h *netlink.Handle) error {
		eth0, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		if eth0.Attrs().HardwareAddr.String() != a.MAC || eth0.Attrs().MTU != 1500 {
			t.Errorf("eth0 %v mtu %d", eth0.Attrs().HardwareAddr, eth0.Attrs().MTU)
		}
		routes, err := h.RouteList(nil, unix.AF_INET)
		var def []string
		for _, r := range routes {
			if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
				def = append(def, r.Gw.String())
			}
		}
		if len(def) != 1 || def[0] != "172.30.0.1" {
			t.Errorf("default routes via %v", def)
		}
		return err
	})

	srv := startServer(t, a.NetNSPath, "A", 8000)
	if got, want := nsInode(t, fmt.Sprintf("/proc/%d/ns/net", srv.Process.Pid)), nsInode(t, a.NetNSPath); got != want {
		t.Fatalf("server in netns %d, endpoint's is %d", got, want)
	}
	startServer(t, tn.outside, "OUT", 9000)

	t.Run("container to container", func(t *testing.T) {
		if got := mustAsk(t, b.NetNSPath, "tcp4", "172.30.0.2:8000"); !strings.HasPrefix(got, "A 172.30.0.3:") {
			t.Fatal(got)
		}
	})
	t.Run("published port from outside keeps the client address", func(t *testing.T) {
		if got := mustAsk(t, tn.outside, "tcp4", hostIP+":18080"); !strings.HasPrefix(got, "A "+outsideIP+":") {
			t.Fatal(got)
		}
		if got := mustAsk(t, tn.outside, "udp4", hostIP+":18053"); !strings.HasPrefix(got, "A "+outsideIP+":") {
			t.Fatal(got)
		}
	})
	t.Run("published port from the host", func(t *testing.T) {
		if got := mustAsk(t, tn.host, "tcp4", hostIP+":18080"); !strings.HasPrefix(got, "A "+hostIP+":") {
			t.Fatal(got)
		}
		if got := mustAsk(t, tn.host, "tcp4", "127.0.0.1:18080"); !strings.HasPrefix(got, "A 172.30.0.1:") {
			t.Fatal(got)
		}
		if got := mustAsk(t, tn.host, "udp4", "127.0.0.1:18053"); !strings.HasPrefix(got, "A 172.30.0.1:") {
			t.Fatal(got)
		}
	})
	t.Run("published port from containers (hairpin)", func(t *testing.T) {
		if got := mustAsk(t, b.NetNSPath, "tcp4", hostIP+":18080"); !strings.HasPrefix(got, "A 172.30.0.1:") {
			t.Fatal(got)
		}
		if got := mustAsk(t, a.NetNSPath, "tcp4", hostIP+":18080"); !strings.HasPrefix(got, "A 172.30.0.1:") {
			t.Fatal(got)
		}
	})
	t.Run("outbound is masqueraded", func(t *testing.T) {
		if got := mustAsk(t, a.NetNSPath, "tcp4", outsideIP+":9000"); !strings.HasPrefix(got, "OUT "+hostIP+":") {
			t.Fatal(got)
		}
	})
	t.Run("no routing into the bridge from outside", func(t *testing.T) {
		inNS(t, tn.outside, func(h *netlink.Handle) error {
			_, dst, _ := net.ParseCIDR("172.30.0.0/16")
			return h.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP(hostIP)})
		})
		if got, err := ask(tn.outside, "tcp4", "172.30.0.2:8000", time.Second); err == nil {
			t.Fatalf("reached a container directly: %q", got)
		}
	})
	t.Run("container cannot reach the host's loopback", func(t *testing.T) {
		// route_localnet is on for flick0 (for DNAT from the host's
		// 127.0.0.1); a container sending to 127.0.0.1 via the gateway must
		// still not reach the host's loopback-only services. Container B
		// plays one with CAP_NET_ADMIN (with Docker's default CAP_NET_RAW
		// it could forge the same frames).
		ln := listenIn(t, tn.host, "127.0.0.1:18999")
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintln(c, "HOST-LOOPBACK")
				c.Close()
			}
		}()
		inNS(t, b.NetNSPath, func(h *netlink.Handle) error {
			lo, _ := h.LinkByName("lo")
			eth0, _ := h.LinkByName("eth0")
			_, loNet, _ := net.ParseCIDR("127.0.0.0/8")
			// Make 127.0.0.0/8 not local in the container: drop lo's address.
			if err := h.AddrDel(lo, mustAddr("127.0.0.1/8")); err != nil {
				return fmt.Errorf("remove 127.0.0.1 from lo: %w", err)
			}
			if err := writeSysctl("net/ipv4/conf/all/route_localnet", "1"); err != nil {
				return err
			}
			if err := writeSysctl("net/ipv4/conf/eth0/route_localnet", "1"); err != nil {
				return err
			}
			return h.RouteAdd(&netlink.Route{Dst: loNet, Gw: net.ParseIP("172.30.0.1"), LinkIndex: eth0.Attrs().Index})
		})
		// (Checked: without the raw chain's first rule this connects.)
		_, err := ask(b.NetNSPath, "tcp4", "127.0.0.1:18999", time.Second)
		if err == nil {
			t.Fatal("a container reached the host's loopback")
		}
	})
	t.Run("host port already allocated", func(t *testing.T) {
		for _, p := range []PortMapping{
			{HostPort: 18080, ContainerPort: 80},
			{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 18080, ContainerPort: 80},
		} {
			_, err := m.Create("ctr-c", []PortMapping{p})
			var pe *PortInUseError
			want := fmt.Sprintf("Bind for %s:18080 failed: port is already allocated", p.HostIP.WithZone(""))
			if p.HostIP == (netip.Addr{}) {
				want = "Bind for 0.0.0.0:18080 failed: port is already allocated"
			}
			if !errors.As(err, &pe) || !errdefs.Is(err, errdefs.Conflict) || err.Error() != want {
				t.Fatalf("got %v, want %q", err, want)
			}
		}
		// The same port number over the other protocol is free.
		c, err := m.Create("ctr-c", []PortMapping{{HostPort: 18053, ContainerPort: 53}})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Remove(c.ID); err != nil {
			t.Fatal(err)
		}
		tn.assertNothingOf(t, m, "ctr-c")
	})
	t.Run("host port held by a socket", func(t *testing.T) {
		ln := listenIn(t, tn.host, "0.0.0.0:18081")
		defer ln.Close()
		_, err := m.Create("ctr-c", []PortMapping{{HostPort: 18081, ContainerPort: 80}})
		want := "failed to bind host port for 0.0.0.0:18081:172.30.0.4:80/tcp: address already in use"
		if !errdefs.Is(err, errdefs.Conflict) || !strings.HasSuffix(err.Error(), want) {
			t.Fatalf("got %v, want %q", err, want)
		}
		tn.assertNothingOf(t, m, "ctr-c")
	})
	t.Run("ephemeral host port", func(t *testing.T) {
		e, err := m.Create("ctr-e", []PortMapping{{ContainerPort: 8000}})
		if err != nil {
			t.Fatal(err)
		}
		p := e.Ports[0].HostPort
		if p == 0 {
			t.Fatal("no host port given")
		}
		// Its server answers on the given port.
		startServer(t, e.NetNSPath, "E", 8000)
		if got := mustAsk(t, tn.outside, "tcp4", fmt.Sprintf("%s:%d", hostIP, p)); !strings.HasPrefix(got, "E ") {
			t.Fatal(got)
		}
	})

	t.Run("udp flow that predates the mapping", func(t *testing.T) {
		// A client keeps sending from one port to 18054/udp before
		// anything is published there: the flow is tracked un-NATed.
		var pc net.PacketConn
		if err := netns.Enter(tn.outside, func() error {
			var err error
			pc, err = net.ListenPacket("udp4", outsideIP+":41000")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		to := &net.UDPAddr{IP: net.ParseIP(hostIP), Port: 18054}
		if _, err := pc.WriteTo([]byte("?"), to); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		u, err := m.Create("ctr-u", []PortMapping{{HostPort: 18054, ContainerPort: 8000, Proto: "udp"}})
		if err != nil {
			t.Fatal(err)
		}
		startServer(t, u.NetNSPath, "U", 8000)
		buf := make([]byte, 512)
		for i := range 10 {
			pc.WriteTo([]byte("?"), to)
			pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, _, err := pc.ReadFrom(buf)
			if err == nil {
				if got := string(buf[:n]); !strings.HasPrefix(got, "U "+outsideIP+":41000") {
					t.Fatal(got)
				}
				return
			}
			if i == 9 {
				t.Fatalf("the old flow never reached the container: %v", err)
			}
		}
	})

	t.Run("restart keeps endpoints", func(t *testing.T) {
		m.Close()
		m = tn.newManager(top) // open until the whole test ends
		got, ok := m.Get("ctr-a")
		if !ok || fmt.Sprint(got) != fmt.Sprint(a) {
			t.Fatalf("after restart: %+v, want %+v", got, a)
		}
		ino := nsInode(t, a.NetNSPath)
		// Create on an intact endpoint keeps it as it is.
		again, err := m.Create("ctr-a", a.Ports)
		if err != nil || fmt.Sprint(again) != fmt.Sprint(a) || nsInode(t, a.NetNSPath) != ino {
			t.Fatalf("Create again: %+v %v", again, err)
		}
		if got := mustAsk(t, tn.outside, "tcp4", hostIP+":18080"); !strings.HasPrefix(got, "A ") {
			t.Fatal(got)
		}
		// A firewall reload that flushed the whole ruleset: the next start
		// puts the table and the published ports back.
		if err := netns.Enter(tn.host, func() error {
			c, err := nftables.New()
			if err != nil {
				return err
			}
			c.FlushRuleset()
			return c.Flush()
		}); err != nil {
			t.Fatal(err)
		}
		if got, err := ask(tn.outside, "tcp4", hostIP+":18080", time.Second); err == nil {
			t.Fatalf("answered without rules: %q", got)
		}
		m.Close()
		m = tn.newManager(top)
		if got := mustAsk(t, tn.outside, "tcp4", hostIP+":18080"); !strings.HasPrefix(got, "A ") {
			t.Fatal(got)
		}
		// A lost namespace (a reboot) is made again, with the same address.
		if err := removeNetNS(b.NetNSPath); err != nil {
			t.Fatal(err)
		}
		b2, err := m.Create("ctr-b", nil)
		if err != nil || b2.IP != b.IP {
			t.Fatalf("repair: %+v %v", b2, err)
		}
		if got := mustAsk(t, b.NetNSPath, "tcp4", "172.30.0.2:8000"); !strings.HasPrefix(got, "A 172.30.0.3:") {
			t.Fatal(got)
		}
	})

	t.Run("remove", func(t *testing.T) {
		if err := m.Remove("ctr-a"); err != nil {
			t.Fatal(err)
		}
		tn.assertNothingOf(t, m, "ctr-a")
		if err := m.Remove("ctr-a"); err != nil {
			t.Fatalf("second Remove: %v", err)
		}
		if got, err := ask(tn.outside, "tcp4", hostIP+":18080", time.Second); err == nil {
			t.Fatalf("published port still answers: %q", got)
		}
		// The address is free again; the host port too.
		d, err := m.Create("ctr-d", []PortMapping{{HostPort: 18080, ContainerPort: 8000}})
		if err != nil || d.IP != a.IP {
			t.Fatalf("%+v %v", d, err)
		}
	})

	t.Run("sweep", func(t *testing.T) {
		// Leftovers no record accounts for: a rule, a veth, a namespace.
		if err := m.withNFT(func(c *nftables.Conn) error {
			return m.setPortRules(c, "ghost", &record{IP: netip.MustParseAddr("172.30.9.9"), Ports: []PortMapping{{HostIP: netip.IPv4Unspecified(), HostPort: 18111, ContainerPort: 1, Proto: "tcp"}}})
		}); err != nil {
			t.Fatal(err)
		}
		inNS(t, tn.host, func(h *netlink.Handle) error {
			if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vethghost"}, PeerName: "vethghostp"}); err != nil {
				return err
			}
			l, err := h.LinkByName("vethghost")
			if err != nil {
				return err
			}
			return h.LinkSetAlias(l, comment("ghost2"))
		})
		if err := newNetNS(m.nsPath("ghost3")); err != nil {
			t.Fatal(err)
		}
		removed, err := m.Sweep(map[string]bool{"ctr-b": true})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(removed) != "[ctr-d ctr-e ctr-u ghost ghost2 ghost3]" {
			t.Fatalf("swept %v", removed)
		}
		for _, id := range removed {
			tn.assertNothingOf(t, m, id)
		}
		if _, ok := m.Get("ctr-b"); !ok || !isNetNS(b.NetNSPath) {
			t.Fatal("ctr-b was swept")
		}
		if err := m.Remove("ctr-b"); err != nil {
			t.Fatal(err)
		}
		tn.assertNothingOf(t, m, "ctr-b")
		// Left: the bridge, the stand-in uplink, the base rules.
		if got := tn.links(t); fmt.Sprint(got) != "[flick0 bridge lo device out0 veth]" {
			t.Fatalf("links left: %v", got)
		}
		if rules := tn.ruleset(t); len(rules["flick0/ports"]) != 0 || len(rules) != 6 {
			t.Fatalf("rules left: %v", rules)
		}
		if entries, _ := os.ReadDir(m.nsDir); len(entries) != 0 {
			t.Fatalf("namespaces left: %v", entries)
		}
	})
}

// listenIn opens a TCP listener inside ns.
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := netns.Enter(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ln
}

// A subnet another interface already routes is refused.
func TestNewRefusesOverlappingSubnet(t *testing.T) {
	tn := newTestNet(t)
	cfg := tn.cfg
	cfg.Subnet = netip.MustParsePrefix("192.0.2.128/25")
	_, err := New(cfg)
	if !errdefs.Is(err, errdefs.FailedPrecondition) || !strings.Contains(err.Error(), "overlaps the route to 192.0.2.0/24 on out0") {
		t.Fatalf("got %v", err)
	}
}
