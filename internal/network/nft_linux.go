package network

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The nftables table is "ip <bridge>" (IPv4 only). Its chains:
//
//	raw         filter hook prerouting priority raw (-300)
//	            iifname <br> ip daddr 127.0.0.0/8 drop           (route_localnet is on for <br>)
//	            iifname != <br> ip daddr <subnet> ip daddr != <gw> drop   (no routing to unpublished ports)
//	prerouting  nat hook prerouting priority dstnat (-100): fib daddr type local jump ports
//	output      nat hook output priority -100:               fib daddr type local jump ports
//	postrouting nat hook postrouting priority srcnat (100)
//	            oifname != <br> ip saddr <subnet> masquerade      (outbound)
//	            oifname <br> ip saddr 127.0.0.0/8 masquerade      (host's 127.0.0.1:port)
//	            oifname <br> ip saddr <subnet> ct status dnat masquerade (container to a published port)
//	forward     filter hook forward priority 0
//	            iifname <br> accept; oifname <br> accept; [drop, if Flick switched ip_forward on]
//	ports       one DNAT rule per published port, comment "flick:<id>"
const (
	chainRaw     = "raw"
	chainPre     = "prerouting"
	chainOut     = "output"
	chainPost    = "postrouting"
	chainForward = "forward"
	chainPorts   = "ports"
)

var loopbackNet = netip.MustParsePrefix("127.0.0.0/8")

func (m *Manager) table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyIPv4, Name: m.cfg.Bridge}
}

func (m *Manager) baseChains(t *nftables.Table) []*nftables.Chain {
	accept := nftables.ChainPolicyAccept
	base := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return &nftables.Chain{Name: name, Table: t, Type: typ, Hooknum: hook, Priority: prio, Policy: &accept}
	}
	return []*nftables.Chain{
		base(chainRaw, nftables.ChainTypeFilter, nftables.ChainHookPrerouting, nftables.ChainPriorityRaw),
		base(chainPre, nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest),
		base(chainOut, nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest),
		base(chainPost, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource),
		base(chainForward, nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter),
	}
}

// ensureRuleset creates the table and chains if missing and rewrites the
// base chains' rules, in one transaction; the ports chain (the endpoints'
// rules) is left as it is. Running it again changes nothing.
func (m *Manager) ensureRuleset(c *nftables.Conn, dropOtherForwarding bool) error {
	t := c.AddTable(m.table())
	chains := map[string]*nftables.Chain{}
	for _, ch := range m.baseChains(t) {
		chains[ch.Name] = c.AddChain(ch)
		c.FlushChain(ch)
	}
	ports := c.AddChain(&nftables.Chain{Name: chainPorts, Table: t})
	br, subnet, gw := m.cfg.Bridge, m.cfg.Subnet, m.gw
	add := func(chain string, exprs ...[]expr.Any) {
		var all []expr.Any
		for _, e := range exprs {
			all = append(all, e...)
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: chains[chain], Exprs: all,
			UserData: userdata.AppendString(nil, userdata.TypeComment, "flick")})
	}
	drop := []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}
	accept := []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}
	masq := []expr.Any{&expr.Masq{}}
	jumpPorts := []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: ports.Name}}

	add(chainRaw, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, br), ipMatch(16, loopbackNet, expr.CmpOpEq), drop)
	add(chainRaw, ifname(expr.MetaKeyIIFNAME, expr.CmpOpNeq, br), ipMatch(16, subnet, expr.CmpOpEq),
		ipMatch(16, netip.PrefixFrom(gw, 32), expr.CmpOpNeq), drop)
	add(chainPre, fibLocal(), jumpPorts)
	add(chainOut, fibLocal(), jumpPorts)
	add(chainPost, ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, br), ipMatch(12, subnet, expr.CmpOpEq), masq)
	add(chainPost, ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, br), ipMatch(12, loopbackNet, expr.CmpOpEq), masq)
	add(chainPost, ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, br), ipMatch(12, subnet, expr.CmpOpEq), ctDNAT(), masq)
	add(chainForward, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, br), accept)
	add(chainForward, ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, br), accept)
	if dropOtherForwarding {
		add(chainForward, drop)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table ip %s: %w", br, err)
	}
	return nil
}

// portRule is one published port: [ip daddr HostIP] l4proto P th dport
// HostPort dnat to IP:ContainerPort. It matches only what the base chains
// send here: packets to a local address, from outside, from containers
// (hairpin) and from the host itself (output hook), 127.0.0.1 included.
func (m *Manager) portRule(t *nftables.Table, id string, ip netip.Addr, p PortMapping) *nftables.Rule {
	var e []expr.Any
	if !p.HostIP.IsUnspecified() {
		e = append(e, ipMatch(16, netip.PrefixFrom(p.HostIP, 32), expr.CmpOpEq)...)
	}
	proto := byte(unix.IPPROTO_TCP)
	if p.Proto == "udp" {
		proto = unix.IPPROTO_UDP
	}
	a := ip.As4()
	e = append(e,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p.HostPort)},
		&expr.Immediate{Register: 1, Data: a[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(p.ContainerPort)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	)
	return &nftables.Rule{Table: t, Chain: &nftables.Chain{Name: chainPorts, Table: t}, Exprs: e,
		UserData: userdata.AppendString(nil, userdata.TypeComment, comment(id))}
}

// portRules lists the ports chain's rules by the endpoint id in their comment.
func (m *Manager) portRules(c *nftables.Conn) (map[string][]*nftables.Rule, error) {
	t := m.table()
	rules, err := c.GetRules(t, &nftables.Chain{Name: chainPorts, Table: t})
	if err != nil {
		return nil, fmt.Errorf("list nftables chain ip %s %s: %w", t.Name, chainPorts, err)
	}
	byID := map[string][]*nftables.Rule{}
	for _, r := range rules {
		cm, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		if id, ok := idFromComment(cm); ok {
			byID[id] = append(byID[id], r)
		}
	}
	return byID, nil
}

// setPortRules replaces an endpoint's rules (none for a nil rec) in one
// transaction: no packet sees a state in between.
func (m *Manager) setPortRules(c *nftables.Conn, id string, rec *record) error {
	byID, err := m.portRules(c)
	if err != nil {
		return err
	}
	for _, r := range byID[id] {
		if err := c.DelRule(r); err != nil {
			return err
		}
	}
	if rec != nil {
		t := m.table()
		for _, p := range rec.Ports {
			c.AddRule(m.portRule(t, id, rec.IP, p))
		}
	}
	if len(byID[id]) == 0 && (rec == nil || len(rec.Ports) == 0) {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables rules of %s: %w", id, err)
	}
	return nil
}

func ifname(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: b}}
}

// ipMatch compares the IPv4 address at offset (12 saddr, 16 daddr) with a prefix.
func ipMatch(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	e := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}}
	if p.Bits() < 32 {
		var m [4]byte
		for i := 0; i < p.Bits(); i++ {
			m[i/8] |= 0x80 >> (i % 8)
		}
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m[:], Xor: []byte{0, 0, 0, 0}})
	}
	a := p.Masked().Addr().As4()
	return append(e, &expr.Cmp{Op: op, Register: 1, Data: a[:]})
}

// fibLocal is "fib daddr type local" (iptables: -m addrtype --dst-type LOCAL).
func fibLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// ctDNAT is "ct status dnat".
func ctDNAT() []expr.Any {
	const ipsDstNAT = 1 << 5 // IPS_DST_NAT
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}
