package network

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/netns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// retryDump repeats a netlink dump the kernel interrupted (the set changed
// while it was read): netlink v1.3 reports that as ErrDumpInterrupted with
// partial results.
func retryDump[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for range 5 {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// ensureBridge makes the bridge if missing (with a fixed random MAC, so it
// does not change as ports come and go), gives it the gateway address (and
// no other IPv4 address), and brings it up.
func (m *Manager) ensureBridge() (netlink.Link, error) {
	h, name := m.link, m.cfg.Bridge
	l, err := h.LinkByName(name)
	if isLinkNotFound(err) {
		mac := make(net.HardwareAddr, 6)
		rand.Read(mac)
		mac[0] = mac[0]&0xfe | 0x02 // unicast, locally administered
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: m.cfg.MTU, HardwareAddr: mac}}
		if err := h.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		l, err = h.LinkByName(name)
	}
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	if l.Type() != "bridge" {
		return nil, errdefs.NewFailedPrecondition(fmt.Errorf("%s exists and is a %s, not a bridge", name, l.Type()))
	}
	want := &net.IPNet{IP: m.gw.AsSlice(), Mask: net.CIDRMask(m.cfg.Subnet.Bits(), 32)}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(l, unix.AF_INET) })
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		if a.IPNet.String() != want.String() {
			if err := h.AddrDel(l, &a); err != nil {
				return nil, fmt.Errorf("remove %s from %s: %w", a.IPNet, name, err)
			}
		}
	}
	if err := h.AddrReplace(l, &netlink.Addr{IPNet: want}); err != nil {
		return nil, fmt.Errorf("address %s on %s: %w", want, name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("bring up %s: %w", name, err)
	}
	return l, nil
}

// checkOverlap refuses a subnet that another interface's routes already
// cover: containers could not reach that network, nor it them.
func (m *Manager) checkOverlap(brIndex int) error {
	routes, err := retryDump(func() ([]netlink.Route, error) { return m.link.RouteList(nil, unix.AF_INET) })
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.LinkIndex == brIndex {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		addr, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok || ones == 0 {
			continue
		}
		dst := netip.PrefixFrom(addr.Unmap(), ones)
		if dst.Overlaps(m.cfg.Subnet) {
			dev := fmt.Sprint(r.LinkIndex)
			if l, err := m.link.LinkByIndex(r.LinkIndex); err == nil {
				dev = l.Attrs().Name
			}
			return errdefs.NewFailedPrecondition(fmt.Errorf("bridge subnet %s overlaps the route to %s on %s: choose another subnet", m.cfg.Subnet, dst, dev))
		}
	}
	return nil
}

// createVeth makes the pair: rec.Veth on the bridge in the host namespace,
// eth0 (with the endpoint's MAC) in the container's.
func (m *Manager) createVeth(br netlink.Link, id string, rec *record, nsPath string) error {
	fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	mac, err := net.ParseMAC(rec.MAC)
	if err != nil {
		return err
	}
	v := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: rec.Veth, MTU: m.cfg.MTU},
		PeerName:         "eth0",
		PeerNamespace:    netlink.NsFd(fd),
		PeerHardwareAddr: mac,
	}
	if err := m.link.LinkAdd(v); err != nil {
		return fmt.Errorf("create veth %s: %w", rec.Veth, err)
	}
	l, err := m.link.LinkByName(rec.Veth)
	if err == nil {
		err = m.link.LinkSetAlias(l, comment(id))
	}
	if err == nil {
		err = m.link.LinkSetMasterByIndex(l, br.Attrs().Index)
	}
	if err == nil {
		// Hairpin: with br_netfilter loaded, a container's packet to its
		// own published port is DNATed back out the port it came in by.
		err = m.link.LinkSetHairpin(l, true)
	}
	if err == nil {
		err = m.link.LinkSetUp(l)
	}
	if err != nil {
		return fmt.Errorf("set up veth %s: %w", rec.Veth, err)
	}
	return nil
}

// hasEth0 reports whether the namespace has its eth0.
func hasEth0(nsPath string) bool {
	found := false
	netns.Enter(nsPath, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		l, err := h.LinkByName("eth0")
		found = err == nil && l.Type() == "veth"
		return nil
	})
	return found
}

// configureContainer sets up the inside: lo up, eth0 with its address and
// up, the default route via the gateway, and Docker's per-container
// sysctls for non-host networks (a container's --sysctl, applied by init
// later, still wins).
func (m *Manager) configureContainer(nsPath string, rec *record) error {
	return netns.Enter(nsPath, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		lo, err := h.LinkByName("lo")
		if err == nil {
			err = h.LinkSetUp(lo)
		}
		if err != nil {
			return fmt.Errorf("bring up lo: %w", err)
		}
		eth0, err := h.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("eth0: %w", err)
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: rec.IP.AsSlice(), Mask: net.CIDRMask(m.cfg.Subnet.Bits(), 32)}}
		if err := h.AddrReplace(eth0, addr); err != nil {
			return fmt.Errorf("address %s on eth0: %w", addr.IPNet, err)
		}
		if err := h.LinkSetUp(eth0); err != nil {
			return fmt.Errorf("bring up eth0: %w", err)
		}
		if err := h.RouteReplace(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: m.gw.AsSlice()}); err != nil {
			return fmt.Errorf("default route via %s: %w", m.gw, err)
		}
		for _, s := range [][2]string{
			{"net/ipv4/ip_unprivileged_port_start", "0"},
			{"net/ipv4/ping_group_range", "0 2147483647"},
			{"net/ipv6/conf/eth0/disable_ipv6", "1"}, // IPv4-only network, as Docker
		} {
			if err := writeSysctl(s[0], s[1]); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	})
}

// readSysctl and writeSysctl act on the calling thread's network namespace
// (/proc/sys/net is per thread): call them inside netns.Enter or inHost.
func readSysctl(name string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + name)
	return strings.TrimSpace(string(b)), err
}

func writeSysctl(name, value string) error {
	f, err := os.OpenFile("/proc/sys/"+name, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = f.Write([]byte(value))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(name, "/", "."), value, err)
	}
	return nil
}
