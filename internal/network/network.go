// Package network is Docker's default "bridge" network for Flick containers:
// one Linux bridge (flick0, 172.30.0.1/16) in the host's network namespace,
// one persistent network namespace per container (bind-mounted under the
// state directory so it outlives the container's processes and the daemon),
// a veth pair from the bridge to the container's eth0, and an nftables table
// (family ip, named after the bridge) that publishes ports (DNAT), masquerades
// outbound traffic and drops what Docker drops. Everything is done over
// netlink from Go: no ip, iptables or nft binary is needed.
//
// The runtime does not create the container's network namespace: the daemon
// calls Create before starting the container and records
// Endpoint.NetNSPath in the spec; the container's monitor starts init inside
// netns.Enter(nsPath, ...) and without CLONE_NEWNET, so init is born in the
// prepared namespace. See docs/RATIONALE.md for why each piece is as it is.
package network

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/flick-edge/flick/internal/errdefs"
)

// Defaults for Config's zero fields.
const (
	DefaultBridge = "flick0"
	DefaultMTU    = 1500
)

// DefaultSubnet is the default bridge network (gateway .1 on the bridge).
// Docker's own default is 172.17.0.0/16; a different one lets both engines
// share a host.
var DefaultSubnet = netip.MustParsePrefix("172.30.0.0/16")

// Config is the bridge network's configuration.
type Config struct {
	Bridge    string       // default "flick0"; also the name of the nftables table
	Subnet    netip.Prefix // default 172.30.0.0/16 (gateway .1 on the bridge)
	StateDir  string       // IP allocations (endpoints.json) and netns bind mounts (netns/<id>)
	HostNetNS string       // "" = the current (host) netns; tests pass a netns path they created
	MTU       int          // bridge, veth and eth0 MTU; default 1500 (Docker's)
}

// PortMapping publishes a container port on the host (-p HostIP:HostPort:ContainerPort/Proto).
// A zero or unspecified HostIP means every host address (0.0.0.0); HostPort 0
// asks for a free port from the host's ephemeral range (Create fills it in);
// an empty Proto means tcp.
type PortMapping struct {
	HostIP        netip.Addr
	HostPort      uint16
	ContainerPort uint16
	Proto         string // tcp | udp
}

// String is Docker's notation: 0.0.0.0:8080->80/tcp.
func (p PortMapping) String() string {
	return fmt.Sprintf("%s->%d/%s", hostAddrPort(p), p.ContainerPort, p.Proto)
}

// Endpoint is a container's attachment to the bridge network.
type Endpoint struct {
	ID        string
	NetNSPath string // bind-mounted network namespace: give it to netns.Enter
	IP        netip.Addr
	PrefixLen int // the subnet's length (Docker's IPPrefixLen)
	Gateway   netip.Addr
	MAC       string
	Ports     []PortMapping // as published: HostIP 0.0.0.0 when unspecified, HostPort filled in
}

// PortInUseError is the refusal of a host port already taken: by another
// published port (Docker: "Bind for 0.0.0.0:8080 failed: port is already
// allocated") or by a socket on the host (Docker 28: "failed to bind host
// port for 0.0.0.0:8080:172.17.0.2:80/tcp: address already in use").
// Create returns it classified as errdefs.Conflict.
type PortInUseError struct {
	Mapping     PortMapping
	ContainerIP netip.Addr
	Socket      bool  // a host socket holds the port (else another mapping does)
	Err         error // the bind error, for Socket
}

func (e *PortInUseError) Error() string {
	if !e.Socket {
		return fmt.Sprintf("Bind for %s failed: port is already allocated", hostAddrPort(e.Mapping))
	}
	return fmt.Sprintf("failed to bind host port for %s:%s:%d/%s: %v",
		hostAddrPort(e.Mapping), e.ContainerIP, e.Mapping.ContainerPort, e.Mapping.Proto, e.Err)
}

func (e *PortInUseError) Unwrap() error { return e.Err }

func hostAddrPort(p PortMapping) string {
	ip := p.HostIP
	if !ip.IsValid() {
		ip = netip.IPv4Unspecified()
	}
	return netip.AddrPortFrom(ip, p.HostPort).String()
}

var (
	// The characters; the lengths are checked apart (a bounded repetition
	// compiles to a program that many times as large).
	bridgeNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_-]*$`) })
	idRE         = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`) })
)

// checkConfig fills in defaults and refuses what cannot work.
func checkConfig(c Config) (Config, error) {
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if len(c.Bridge) > 15 || !bridgeNameRE().MatchString(c.Bridge) {
		return c, errdefs.NewInvalidArgument(fmt.Errorf("bridge name %q: want 1-15 letters, digits, _ or -", c.Bridge))
	}
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet
	}
	if !c.Subnet.Addr().Is4() || c.Subnet.Bits() > 30 || c.Subnet.Bits() < 8 {
		return c, errdefs.NewInvalidArgument(fmt.Errorf("bridge subnet %s: want an IPv4 prefix from /8 to /30", c.Subnet))
	}
	c.Subnet = c.Subnet.Masked()
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < 576 || c.MTU > 65535 {
		return c, errdefs.NewInvalidArgument(fmt.Errorf("bridge MTU %d: want 576-65535", c.MTU))
	}
	if c.StateDir == "" {
		return c, errdefs.NewInvalidArgument(fmt.Errorf("bridge network: no state directory"))
	}
	return c, nil
}

func checkID(id string) error {
	if len(id) > 100 || !idRE().MatchString(id) {
		return errdefs.NewInvalidArgument(fmt.Errorf("endpoint id %q: want up to 100 letters, digits, _, . or -", id))
	}
	return nil
}

// gateway is the subnet's first address, on the bridge.
func gateway(subnet netip.Prefix) netip.Addr { return subnet.Addr().Next() }

// lastAddr is the subnet's broadcast address.
func lastAddr(subnet netip.Prefix) netip.Addr {
	a := subnet.Addr().As4()
	host := 32 - subnet.Bits()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= 1<<host - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// allocateIP returns the lowest address of subnet that is neither the
// network, the gateway, the broadcast address nor in use.
func allocateIP(subnet netip.Prefix, used map[netip.Addr]bool) (netip.Addr, error) {
	last := lastAddr(subnet)
	for a := gateway(subnet).Next(); a.IsValid() && a.Less(last); a = a.Next() {
		if !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, errdefs.NewResourceExhausted(fmt.Errorf("no available IPv4 address on bridge network %s", subnet))
}

// macFor is Docker's MAC for a container address: 02:42 and the four bytes
// of the IPv4 address, so it is stable across restarts and unique on the bridge.
func macFor(ip netip.Addr) string {
	a := ip.As4()
	return fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3])
}

// normalizePorts validates mappings and fills in defaults: proto tcp,
// HostIP 0.0.0.0. IPv6 host addresses are refused (the network is IPv4 only).
func normalizePorts(in []PortMapping) ([]PortMapping, error) {
	out := make([]PortMapping, 0, len(in))
	for _, p := range in {
		p.Proto = strings.ToLower(p.Proto)
		switch p.Proto {
		case "":
			p.Proto = "tcp"
		case "tcp", "udp":
		case "sctp":
			return nil, errdefs.NewNotImplemented(fmt.Errorf("publishing %d/sctp: only tcp and udp ports can be published", p.ContainerPort))
		default:
			return nil, errdefs.NewInvalidArgument(fmt.Errorf("invalid proto %q", p.Proto))
		}
		if p.ContainerPort == 0 {
			return nil, errdefs.NewInvalidArgument(fmt.Errorf("invalid container port 0 in %s", p))
		}
		switch {
		case !p.HostIP.IsValid():
			p.HostIP = netip.IPv4Unspecified()
		case p.HostIP.Is4In6():
			p.HostIP = p.HostIP.Unmap()
		case p.HostIP.Is6():
			return nil, errdefs.NewNotImplemented(fmt.Errorf("publishing on %s: the bridge network is IPv4 only", p.HostIP))
		}
		p.HostIP = p.HostIP.WithZone("")
		out = append(out, p)
	}
	// Two mappings of one request may not take the same host port either.
	for i, p := range out {
		if p.HostPort == 0 {
			continue
		}
		for _, q := range out[:i] {
			if conflicts(p, q) {
				return nil, errdefs.NewConflict(&PortInUseError{Mapping: p})
			}
		}
	}
	return out, nil
}

// conflicts reports whether two published ports need the same host socket.
func conflicts(a, b PortMapping) bool {
	return a.Proto == b.Proto && a.HostPort == b.HostPort && a.HostPort != 0 &&
		(a.HostIP == b.HostIP || a.HostIP.IsUnspecified() || b.HostIP.IsUnspecified())
}

// comment tags everything made for an endpoint: the nftables rules'
// comment and the host-side veth's alias.
func comment(id string) string { return "flick:" + id }

func idFromComment(c string) (string, bool) { return strings.CutPrefix(c, "flick:") }

// vethName is the host side's name: "veth" and 11 hex digits of a hash of
// the id (IFNAMSIZ leaves 15 characters).
func vethName(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "veth" + hex.EncodeToString(sum[:6])[:11]
}

// record is what endpoints.json keeps per endpoint.
type record struct {
	IP    netip.Addr    `json:"ip"`
	MAC   string        `json:"mac"`
	Veth  string        `json:"veth"`
	Ports []PortMapping `json:"ports,omitempty"`
}

// stateFile is endpoints.json.
type stateFile struct {
	Version int          `json:"version"`
	Bridge  string       `json:"bridge"`
	Subnet  netip.Prefix `json:"subnet"`
	// EnabledForwarding: this bridge network switched net.ipv4.ip_forward
	// on, so its forward chain drops forwarding that is not its own.
	EnabledForwarding bool               `json:"enabledForwarding,omitempty"`
	Endpoints         map[string]*record `json:"endpoints"`
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
