package container

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/network"
	mcontainer "github.com/moby/moby/api/types/container"
	mnetwork "github.com/moby/moby/api/types/network"
)

// portMappings turns Docker's PortBindings into the network's mappings.
func portMappings(hc *mcontainer.HostConfig) ([]network.PortMapping, error) {
	var out []network.PortMapping
	for port, binds := range hc.PortBindings {
		ctrPort, proto := port.Num(), string(port.Proto())
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			return nil, errdefs.NewNotImplemented(fmt.Errorf("-p %s: Flick publishes tcp and udp ports", port))
		}
		if len(binds) == 0 {
			binds = append(binds, mnetwork.PortBinding{})
		}
		for _, b := range binds {
			pm := network.PortMapping{ContainerPort: ctrPort, Proto: proto, HostIP: b.HostIP}
			if b.HostPort != "" {
				n, err := strconv.ParseUint(b.HostPort, 10, 16)
				if err != nil {
					return nil, errdefs.NewInvalidArgument(fmt.Errorf("invalid host port %q for %s", b.HostPort, port))
				}
				pm.HostPort = uint16(n)
			}
			out = append(out, pm)
		}
	}
	return out, nil
}

// attachNetwork gives a bridge container its endpoint (kept across
// restarts: same address, same ports) and records the namespace in the
// spec before the monitor starts. It returns the spec as the monitor will
// read it.
func (m *Manager) attachNetwork(c Container) (bundle.Spec, error) {
	spec, err := bundle.ReadSpec(c.Bundle)
	if err != nil {
		return spec, err
	}
	if err := specFromRecord(c.Bundle, &spec, c.HostConfig); err != nil { // the record is the truth
		return spec, err
	}
	if spec.Network != "bridge" {
		return spec, nil
	}
	net, err := m.cfg.Network()
	if err != nil {
		return spec, fmt.Errorf("bridge network: %w", err)
	}
	ports, err := portMappings(c.HostConfig)
	if err != nil {
		return spec, err
	}
	ep, err := net.Create(c.ID, ports)
	if err != nil {
		return spec, err
	}
	spec.NetNS = ep.NetNSPath
	if err := bundle.WriteSpec(c.Bundle, spec, !spec.Ephemeral); err != nil {
		return spec, err
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" + ep.IP.String() + "\t" + spec.Hostname + "\n"
	for _, h := range c.HostConfig.ExtraHosts {
		if name, ip, ok := strings.Cut(h, ":"); ok {
			hosts += ip + "\t" + name + "\n"
		}
	}
	return spec, os.WriteFile(filepath.Join(c.Bundle, "hosts"), []byte(hosts), 0o644)
}

func (m *Manager) detachNetwork(c Container) error {
	spec, err := bundle.ReadSpec(c.Bundle)
	if err != nil || spec.Network != "bridge" || m.cfg.Network == nil {
		return nil
	}
	net, err := m.cfg.Network()
	if err != nil {
		return err
	}
	return net.Remove(c.ID)
}

// Endpoint reports a container's bridge attachment, if any.
func (m *Manager) Endpoint(c Container) (network.Endpoint, bool) {
	if m.cfg.Network == nil {
		return network.Endpoint{}, false
	}
	spec, err := bundle.ReadSpec(c.Bundle)
	if err != nil || spec.Network != "bridge" {
		return network.Endpoint{}, false
	}
	net, err := m.cfg.Network()
	if err != nil {
		return network.Endpoint{}, false
	}
	return net.Get(c.ID)
}

// Networks are the networks a container can join, as docker network ls
// shows them: none and host always, and the bridge when the daemon has one.
func (m *Manager) Networks() []mnetwork.Inspect {
	nets := []mnetwork.Inspect{
		{Network: mnetwork.Network{Name: "host", ID: "host", Driver: "host", Scope: "local", Labels: map[string]string{}, Options: map[string]string{}}},
		{Network: mnetwork.Network{Name: "none", ID: "none", Driver: "null", Scope: "local", Labels: map[string]string{}, Options: map[string]string{}}},
	}
	if m.cfg.Network == nil {
		return nets
	}
	n, err := m.cfg.Network()
	if err != nil {
		m.log.Warn("bridge network", "err", err)
		return nets
	}
	name, subnet, gw := n.Bridge()
	br := mnetwork.Network{Name: "bridge", ID: "bridge", Driver: "bridge", Scope: "local",
		IPAM:    mnetwork.IPAM{Driver: "default", Config: []mnetwork.IPAMConfig{{Subnet: subnet, Gateway: gw}}},
		Options: map[string]string{"com.docker.network.bridge.name": name}, Labels: map[string]string{}}
	return append([]mnetwork.Inspect{{Network: br}}, nets...)
}
