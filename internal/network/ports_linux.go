package network

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/flick-edge/flick/internal/errdefs"
	"golang.org/x/sys/unix"
)

// reservePorts checks and completes an endpoint's published ports: a host
// port another endpoint publishes, or that a socket in the host namespace
// holds, is refused; HostPort 0 gets a free port of the host's ephemeral
// range (the one this endpoint had before, if it is still free). m.mu is held.
func (m *Manager) reservePorts(id string, ip netip.Addr, want []PortMapping) ([]PortMapping, error) {
	var taken []PortMapping
	for _, other := range sortedKeys(m.state.Endpoints) {
		if other != id {
			taken = append(taken, m.state.Endpoints[other].Ports...)
		}
	}
	var prev []PortMapping
	if rec := m.state.Endpoints[id]; rec != nil {
		prev = rec.Ports
	}
	out := slices.Clone(want)
	for _, p := range out {
		for _, q := range taken {
			if conflicts(p, q) {
				return nil, errdefs.NewConflict(&PortInUseError{Mapping: p, ContainerIP: ip})
			}
		}
	}
	free := func(p PortMapping, upto int) bool {
		for _, q := range taken {
			if conflicts(p, q) {
				return false
			}
		}
		for _, q := range out[:upto] {
			if conflicts(p, q) {
				return false
			}
		}
		return probePort(p) == nil
	}
	err := m.inHost(func() error {
		for i := range out {
			p := &out[i]
			if p.HostPort != 0 {
				if err := probePort(*p); err != nil {
					return bindError(*p, ip, err)
				}
				continue
			}
			for _, q := range prev {
				c := *p
				c.HostPort = q.HostPort
				if q.HostIP == p.HostIP && q.Proto == p.Proto && q.ContainerPort == p.ContainerPort && free(c, i) {
					p.HostPort = q.HostPort
					break
				}
			}
			if p.HostPort != 0 {
				continue
			}
			lo, hi := ephemeralRange()
			n := hi - lo + 1
			start := m.nextPort
			for k := range n {
				c := *p
				c.HostPort = uint16(lo + (start+k)%n)
				if free(c, i) {
					*p = c
					m.nextPort = (start + k + 1) % n
					break
				}
			}
			if p.HostPort == 0 {
				return errdefs.NewResourceExhausted(fmt.Errorf("no free host port in %d-%d/%s for %s:%d", lo, hi, p.Proto, p.HostIP, p.ContainerPort))
			}
		}
		return nil
	})
	return out, err
}

// probePort binds (and closes) the host socket a mapping would need, in the
// calling thread's network namespace. TCP sets SO_REUSEADDR as servers do,
// so only listening (or bound) sockets count, not connections in TIME_WAIT.
func probePort(p PortMapping) error {
	typ := unix.SOCK_STREAM
	if p.Proto == "udp" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if typ == unix.SOCK_STREAM {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return err
		}
	}
	return unix.Bind(fd, &unix.SockaddrInet4{Port: int(p.HostPort), Addr: p.HostIP.As4()})
}

func bindError(p PortMapping, ip netip.Addr, err error) error {
	if errors.Is(err, unix.EADDRINUSE) {
		return errdefs.NewConflict(&PortInUseError{Mapping: p, ContainerIP: ip, Socket: true, Err: err})
	}
	return errdefs.NewInvalidArgument(fmt.Errorf("failed to bind host port for %s:%s:%d/%s: %w",
		hostAddrPort(p), ip, p.ContainerPort, p.Proto, err))
}

// ephemeralRange is the host's ip_local_port_range (as Docker uses it), or
// Docker's fallback 49153-65535. Called in the host namespace.
func ephemeralRange() (int, int) {
	if s, err := readSysctl("net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(s); len(f) == 2 {
			lo, err1 := strconv.Atoi(f[0])
			hi, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && lo > 0 && lo <= hi && hi <= 65535 {
				return lo, hi
			}
		}
	}
	return 49153, 65535
}
