package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/flick-edge/flick/internal/durable"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/netns"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const stateVersion = 1

// Manager owns the bridge network: the bridge, the nftables table, and the
// endpoints recorded in StateDir. Its methods are safe for concurrent use;
// one Manager per StateDir at a time.
type Manager struct {
	cfg       Config
	gw        netip.Addr
	nsDir     string
	statePath string

	mu       sync.Mutex
	state    stateFile
	link     *netlink.Handle // rtnetlink and conntrack, in the host namespace
	nextPort int             // ephemeral port cursor
}

// New ensures the bridge (gateway address, up), route_localnet on it,
// net.ipv4.ip_forward, and the nftables table and chains, and loads the
// recorded endpoints. It is idempotent: a second New (a daemon restart)
// finds everything in place and changes nothing.
func New(cfg Config) (*Manager, error) {
	cfg, err := checkConfig(cfg)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:       cfg,
		gw:        gateway(cfg.Subnet),
		nsDir:     filepath.Join(cfg.StateDir, "netns"),
		statePath: filepath.Join(cfg.StateDir, "endpoints.json"),
	}
	if err := os.MkdirAll(m.nsDir, 0o700); err != nil {
		return nil, err
	}
	if err := m.load(); err != nil {
		return nil, err
	}
	var forwarding string
	err = m.inHost(func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		m.link = h
		forwarding, err = readSysctl("net/ipv4/ip_forward")
		return err
	})
	if err != nil {
		if m.link != nil {
			m.link.Close()
		}
		return nil, err
	}
	if err := m.setup(forwarding != "1"); err != nil {
		m.link.Close()
		return nil, err
	}
	return m, nil
}

func (m *Manager) setup(enableForwarding bool) error {
	brIndex := 0
	if l, err := m.link.LinkByName(m.cfg.Bridge); err == nil {
		brIndex = l.Attrs().Index
	}
	if err := m.checkOverlap(brIndex); err != nil {
		return err
	}
	if _, err := m.ensureBridge(); err != nil {
		return err
	}
	if enableForwarding {
		// Recorded before forwarding is on: a crash in between must not
		// leave a router without the forward chain's drop.
		m.state.EnabledForwarding = true
		if err := m.save(); err != nil {
			return err
		}
	}
	if err := m.withNFT(func(c *nftables.Conn) error {
		if err := m.ensureRuleset(c, m.state.EnabledForwarding); err != nil {
			return err
		}
		// Put back the published ports of recorded endpoints whose rules
		// are gone (a `flush ruleset` by a firewall reload, a reboot).
		byID, err := m.portRules(c)
		if err != nil {
			return err
		}
		for _, id := range sortedKeys(m.state.Endpoints) {
			if rec := m.state.Endpoints[id]; len(byID[id]) != len(rec.Ports) {
				if err := m.setPortRules(c, id, rec); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := m.inHost(func() error {
		if err := writeSysctl("net/ipv4/conf/"+m.cfg.Bridge+"/route_localnet", "1"); err != nil {
			return err
		}
		if enableForwarding {
			return writeSysctl("net/ipv4/ip_forward", "1")
		}
		return nil
	}); err != nil {
		return err
	}
	return m.save()
}

// Close releases the Manager's netlink sockets; the network stays.
// Bridge names the bridge and its subnet and gateway, for docker network
// inspect.
func (m *Manager) Bridge() (name string, subnet netip.Prefix, gateway netip.Addr) {
	return m.cfg.Bridge, m.cfg.Subnet, m.gw
}

func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.link != nil {
		m.link.Close()
		m.link = nil
	}
	return nil
}

// inHost runs fn in the host network namespace: directly for the current
// one, else through netns.Enter.
func (m *Manager) inHost(fn func() error) error {
	if m.cfg.HostNetNS == "" {
		return fn()
	}
	return netns.Enter(m.cfg.HostNetNS, fn)
}

// withNFT gives fn an nftables connection in the host namespace.
func (m *Manager) withNFT(fn func(c *nftables.Conn) error) error {
	return m.inHost(func() error {
		c, err := nftables.New(nftables.AsLasting())
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		defer c.CloseLasting()
		return fn(c)
	})
}

func (m *Manager) nsPath(id string) string { return filepath.Join(m.nsDir, id) }

func (m *Manager) load() error {
	m.state = stateFile{Version: stateVersion, Endpoints: map[string]*record{}}
	b, err := os.ReadFile(m.statePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("%s: %w", m.statePath, err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("%s: version %d, want %d", m.statePath, st.Version, stateVersion)
	}
	if st.Endpoints == nil {
		st.Endpoints = map[string]*record{}
	}
	for id, rec := range st.Endpoints {
		if !m.cfg.Subnet.Contains(rec.IP) {
			return errdefs.NewFailedPrecondition(fmt.Errorf("bridge network: endpoint %s has %s, outside the configured subnet %s: remove its container or configure %s again", id, rec.IP, m.cfg.Subnet, st.Subnet))
		}
	}
	st.Bridge, st.Subnet = m.cfg.Bridge, m.cfg.Subnet
	m.state = st
	return nil
}

func (m *Manager) save() error {
	m.state.Version, m.state.Bridge, m.state.Subnet = stateVersion, m.cfg.Bridge, m.cfg.Subnet
	b, err := json.MarshalIndent(m.state, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(m.statePath, b, 0o600)
}

func (m *Manager) endpoint(id string, rec *record) Endpoint {
	return Endpoint{
		ID:        id,
		NetNSPath: m.nsPath(id),
		IP:        rec.IP,
		PrefixLen: m.cfg.Subnet.Bits(),
		Gateway:   m.gw,
		MAC:       rec.MAC,
		Ports:     slices.Clone(rec.Ports),
	}
}

// Create attaches a container to the bridge network: a persistent network
// namespace (StateDir/netns/<id>), a veth pair (host side on the bridge,
// eth0 inside with the allocated address and Docker's MAC for it), lo up,
// the default route via the gateway, and a DNAT rule per published port.
// The address is recorded in StateDir before anything is built, so it
// survives daemon restarts.
//
// Create on an id that has an endpoint keeps its address and repairs what
// is missing (after a reboot: the namespace, the veth, the rules); on an
// intact endpoint it changes nothing but the published ports, so a running
// container keeps its network. A Create refused before building (a port,
// no free address) changes nothing; one that fails while building removes
// the endpoint entirely, so nothing half-made is left.
func (m *Manager) Create(id string, ports []PortMapping) (Endpoint, error) {
	if err := checkID(id); err != nil {
		return Endpoint{}, err
	}
	ports, err := normalizePorts(ports)
	if err != nil {
		return Endpoint{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.link == nil {
		return Endpoint{}, errors.New("bridge network: manager closed")
	}
	old := m.state.Endpoints[id]
	var ip netip.Addr
	if old != nil {
		ip = old.IP
	} else {
		used := map[netip.Addr]bool{}
		for _, rec := range m.state.Endpoints {
			used[rec.IP] = true
		}
		if ip, err = allocateIP(m.cfg.Subnet, used); err != nil {
			return Endpoint{}, err
		}
	}
	if ports, err = m.reservePorts(id, ip, ports); err != nil {
		return Endpoint{}, err
	}
	rec := &record{IP: ip, MAC: macFor(ip), Veth: vethName(id), Ports: ports}
	m.state.Endpoints[id] = rec
	if err := m.save(); err != nil {
		if old != nil {
			m.state.Endpoints[id] = old
		} else {
			delete(m.state.Endpoints, id)
		}
		return Endpoint{}, err
	}
	if err := m.build(id, rec); err != nil {
		if rerr := m.remove(id); rerr != nil {
			err = fmt.Errorf("%w (and undoing it: %v)", err, rerr)
		}
		return Endpoint{}, fmt.Errorf("bridge network endpoint for %s: %w", id, err)
	}
	return m.endpoint(id, rec), nil
}

// build makes or repairs an endpoint's namespace, veth, inside
// configuration and rules. Every step keeps what is already right.
func (m *Manager) build(id string, rec *record) error {
	br, err := m.ensureBridge()
	if err != nil {
		return err
	}
	nsPath := m.nsPath(id)
	fresh := false
	if !isNetNS(nsPath) {
		if err := removeNetNS(nsPath); err != nil {
			return err
		}
		if err := newNetNS(nsPath); err != nil {
			return err
		}
		fresh = true
	}
	host, err := m.link.LinkByName(rec.Veth)
	switch {
	case isLinkNotFound(err):
		host = nil
	case err != nil:
		return err
	}
	if host != nil && (fresh || host.Attrs().MasterIndex != br.Attrs().Index || !hasEth0(nsPath)) {
		if err := m.link.LinkDel(host); err != nil && !isLinkNotFound(err) {
			return fmt.Errorf("remove stale veth %s: %w", rec.Veth, err)
		}
		host = nil
	}
	if host == nil {
		if err := m.createVeth(br, id, rec, nsPath); err != nil {
			return err
		}
	}
	if err := m.configureContainer(nsPath, rec); err != nil {
		return err
	}
	if err := m.withNFT(func(c *nftables.Conn) error { return m.setPortRules(c, id, rec) }); err != nil {
		return err
	}
	m.forgetUDPFlows(rec.Ports)
	return nil
}

// Get returns the recorded endpoint of a container.
func (m *Manager) Get(id string) (Endpoint, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.state.Endpoints[id]
	if !ok {
		return Endpoint{}, false
	}
	return m.endpoint(id, rec), true
}

// Remove deletes an endpoint: its rules, its veth pair, its conntrack
// entries, its namespace's bind mount and its address. It is no error if
// there is nothing (left) to remove. If a step fails the record stays, so
// Remove or Sweep can try again.
func (m *Manager) Remove(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.link == nil {
		return errors.New("bridge network: manager closed")
	}
	return m.remove(id)
}

func (m *Manager) remove(id string) error {
	rec := m.state.Endpoints[id]
	veth := vethName(id)
	if rec != nil {
		veth = rec.Veth
	}
	var errs []error
	if err := m.withNFT(func(c *nftables.Conn) error { return m.setPortRules(c, id, nil) }); err != nil {
		errs = append(errs, err)
	}
	if l, err := m.link.LinkByName(veth); err == nil {
		if err := m.link.LinkDel(l); err != nil && !isLinkNotFound(err) {
			errs = append(errs, fmt.Errorf("remove veth %s: %w", veth, err))
		}
	} else if !isLinkNotFound(err) {
		errs = append(errs, err)
	}
	if rec != nil {
		m.forgetConnections(rec.IP)
	}
	if err := removeNetNS(m.nsPath(id)); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove bridge network endpoint %s: %w", id, errors.Join(errs...))
	}
	if rec != nil {
		delete(m.state.Endpoints, id)
		return m.save()
	}
	return nil
}

// forgetConnections deletes the conntrack entries to and from a container
// address (as Docker flushes them for UDP), so a flow that outlives the
// container, like a syslog stream, is not kept pointing at an address the
// next container may get. Best effort: without conntrack netlink nothing happens.
func (m *Manager) forgetConnections(ip netip.Addr) {
	to, from := &netlink.ConntrackFilter{}, &netlink.ConntrackFilter{}
	if to.AddIP(netlink.ConntrackReplySrcIP, ip.AsSlice()) != nil || from.AddIP(netlink.ConntrackOrigSrcIP, ip.AsSlice()) != nil {
		return
	}
	m.link.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, to, from)
}

// forgetUDPFlows deletes the conntrack entries of UDP flows to newly
// published host ports, as Docker does: NAT is decided when a flow starts,
// so a client that kept sending to the port before it was published (a
// syslog stream) would otherwise never reach the container. Best effort.
func (m *Manager) forgetUDPFlows(ports []PortMapping) {
	var filters []netlink.CustomConntrackFilter
	for _, p := range ports {
		if p.Proto != "udp" {
			continue
		}
		f := &netlink.ConntrackFilter{}
		if f.AddProtocol(unix.IPPROTO_UDP) == nil && f.AddPort(netlink.ConntrackOrigDstPort, p.HostPort) == nil {
			filters = append(filters, f)
		}
	}
	if len(filters) > 0 {
		m.link.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
	}
}

// Sweep is for daemon start: it removes the endpoints of containers not in
// keep, then whatever no record accounts for (a crash between steps): rules
// commented "flick:<id>", veths aliased "flick:<id>", namespaces in
// StateDir/netns. It returns the ids it removed something of.
func (m *Manager) Sweep(keep map[string]bool) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.link == nil {
		return nil, errors.New("bridge network: manager closed")
	}
	removed := map[string]bool{}
	var errs []error
	for _, id := range sortedKeys(m.state.Endpoints) {
		if keep[id] {
			continue
		}
		if err := m.remove(id); err != nil {
			errs = append(errs, err)
		} else {
			removed[id] = true
		}
	}
	recorded := func(id string) bool { return m.state.Endpoints[id] != nil }
	// Rules.
	if err := m.withNFT(func(c *nftables.Conn) error {
		byID, err := m.portRules(c)
		if err != nil {
			return err
		}
		for id := range byID {
			if !recorded(id) {
				if err := m.setPortRules(c, id, nil); err != nil {
					return err
				}
				removed[id] = true
			}
		}
		return nil
	}); err != nil {
		errs = append(errs, err)
	}
	// Veths.
	links, err := retryDump(m.link.LinkList)
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range links {
		id, ok := idFromComment(l.Attrs().Alias)
		if !ok || l.Type() != "veth" || recorded(id) {
			continue
		}
		if err := m.link.LinkDel(l); err != nil && !isLinkNotFound(err) {
			errs = append(errs, fmt.Errorf("remove veth %s: %w", l.Attrs().Name, err))
			continue
		}
		removed[id] = true
	}
	// Namespaces.
	entries, err := os.ReadDir(m.nsDir)
	if err != nil {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if recorded(e.Name()) {
			continue
		}
		if err := removeNetNS(filepath.Join(m.nsDir, e.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		removed[e.Name()] = true
	}
	return sortedKeys(removed), errors.Join(errs...)
}
