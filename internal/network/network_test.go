package network

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/flick-edge/flick/internal/errdefs"
)

func TestCheckConfigDefaults(t *testing.T) {
	c, err := checkConfig(Config{StateDir: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Bridge != "flick0" || c.Subnet != netip.MustParsePrefix("172.30.0.0/16") || c.MTU != 1500 {
		t.Fatalf("defaults: %+v", c)
	}
	c, err = checkConfig(Config{StateDir: "/x", Subnet: netip.MustParsePrefix("10.5.6.7/24")})
	if err != nil || c.Subnet.String() != "10.5.6.0/24" || gateway(c.Subnet).String() != "10.5.6.1" {
		t.Fatalf("masked subnet: %v %v", c.Subnet, err)
	}
	for _, bad := range []Config{
		{}, // no state dir
		{StateDir: "/x", Bridge: "a-name-far-too-long"},
		{StateDir: "/x", Bridge: "br 0"},
		{StateDir: "/x", Subnet: netip.MustParsePrefix("fd00::/64")},
		{StateDir: "/x", Subnet: netip.MustParsePrefix("10.0.0.0/31")},
		{StateDir: "/x", MTU: 100},
	} {
		if _, err := checkConfig(bad); !errdefs.Is(err, errdefs.InvalidArgument) {
			t.Errorf("%+v: %v, want an invalid argument", bad, err)
		}
	}
}

func TestAllocateIP(t *testing.T) {
	subnet := netip.MustParsePrefix("10.1.2.0/29") // .1 gateway, .2-.6 usable, .7 broadcast
	used := map[netip.Addr]bool{}
	var got []string
	for {
		a, err := allocateIP(subnet, used)
		if err != nil {
			if !errdefs.Is(err, errdefs.ResourceExhausted) {
				t.Fatal(err)
			}
			break
		}
		used[a] = true
		got = append(got, a.String())
	}
	if strings.Join(got, " ") != "10.1.2.2 10.1.2.3 10.1.2.4 10.1.2.5 10.1.2.6" {
		t.Fatalf("allocated %v", got)
	}
	delete(used, netip.MustParseAddr("10.1.2.4"))
	if a, _ := allocateIP(subnet, used); a.String() != "10.1.2.4" {
		t.Fatalf("lowest free: %v", a)
	}
	if lastAddr(DefaultSubnet).String() != "172.30.255.255" {
		t.Fatal(lastAddr(DefaultSubnet))
	}
}

func TestMACAndNames(t *testing.T) {
	if m := macFor(netip.MustParseAddr("172.30.0.2")); m != "02:42:ac:1e:00:02" {
		t.Fatal(m)
	}
	id := strings.Repeat("f", 64)
	if n := vethName(id); len(n) != 15 || !strings.HasPrefix(n, "veth") || n == vethName(id+"x") {
		t.Fatal(n)
	}
	if got, ok := idFromComment(comment("abc")); !ok || got != "abc" {
		t.Fatal(got)
	}
	if checkID("../x") == nil || checkID("") == nil || checkID(id) != nil {
		t.Fatal("checkID")
	}
}

func TestNormalizePorts(t *testing.T) {
	got, err := normalizePorts([]PortMapping{
		{HostPort: 8080, ContainerPort: 80},
		{HostIP: netip.MustParseAddr("::ffff:127.0.0.1"), HostPort: 53, ContainerPort: 53, Proto: "UDP"},
		{ContainerPort: 9000},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s := got[0].String() + " " + got[1].String() + " " + got[2].String(); s != "0.0.0.0:8080->80/tcp 127.0.0.1:53->53/udp 0.0.0.0:0->9000/tcp" {
		t.Fatal(s)
	}
	_, err = normalizePorts([]PortMapping{{HostPort: 8080, ContainerPort: 80}, {HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, ContainerPort: 81}})
	var pe *PortInUseError
	if !errors.As(err, &pe) || !errdefs.Is(err, errdefs.Conflict) || err.Error() != "Bind for 127.0.0.1:8080 failed: port is already allocated" {
		t.Fatalf("duplicate in one request: %v", err)
	}
	// Same port, other protocol or other specific address: no conflict.
	if _, err := normalizePorts([]PortMapping{
		{HostPort: 8080, ContainerPort: 80}, {HostPort: 8080, ContainerPort: 80, Proto: "udp"},
		{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 9, ContainerPort: 9}, {HostIP: netip.MustParseAddr("127.0.0.2"), HostPort: 9, ContainerPort: 9},
	}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]PortMapping{
		{{HostPort: 1, ContainerPort: 0}},
		{{HostPort: 1, ContainerPort: 1, Proto: "icmp"}},
	} {
		if _, err := normalizePorts(bad); !errdefs.Is(err, errdefs.InvalidArgument) {
			t.Errorf("%v: %v", bad, err)
		}
	}
	for _, unsupported := range [][]PortMapping{
		{{HostIP: netip.MustParseAddr("::"), HostPort: 1, ContainerPort: 1}},
		{{HostPort: 1, ContainerPort: 1, Proto: "sctp"}},
	} {
		if _, err := normalizePorts(unsupported); !errdefs.Is(err, errdefs.NotImplemented) {
			t.Errorf("%v: %v", unsupported, err)
		}
	}
}

func TestPortInUseMessages(t *testing.T) {
	p := PortMapping{HostIP: netip.IPv4Unspecified(), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}
	if s := (&PortInUseError{Mapping: p}).Error(); s != "Bind for 0.0.0.0:8080 failed: port is already allocated" {
		t.Fatal(s)
	}
	e := &PortInUseError{Mapping: p, ContainerIP: netip.MustParseAddr("172.30.0.2"), Socket: true, Err: errors.New("address already in use")}
	if s := e.Error(); s != "failed to bind host port for 0.0.0.0:8080:172.30.0.2:80/tcp: address already in use" {
		t.Fatal(s)
	}
}
