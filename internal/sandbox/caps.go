// Package sandbox is the hardening a container's init applies to itself just
// before it execs the application: Docker's default capability set, its
// default seccomp effect, user and group resolution against the image's
// /etc/passwd and /etc/group, and the masked and read-only /proc and /sys
// paths.
//
// Apply is irreversible and changes the calling OS thread; it is meant for
// the single-purpose init process (a re-executed flick child in the
// container's namespaces, after pivot_root), which execs right after it.
package sandbox

import (
	"fmt"
	"strings"
)

// capNames are the Linux capabilities by number, as Docker spells them.
var capNames = [...]string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// Capability numbers the seccomp policy refers to.
const (
	capDACReadSearch = 2
	capSysModule     = 16
	capSysRawio      = 17
	capSysChroot     = 18
	capSysPtrace     = 19
	capSysPacct      = 20
	capSysAdmin      = 21
	capSysBoot       = 22
	capSysNice       = 23
	capSysTime       = 25
	capSysTTYConfig  = 26
	capSyslog        = 34
	capPerfmon       = 38
	capBPF           = 39
)

var capNumbers = func() map[string]int {
	m := make(map[string]int, len(capNames))
	for i, n := range capNames {
		m[n] = i
	}
	return m
}()

// defaultCaps is Docker's default set, in Docker's order (moby oci/caps).
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// DefaultCapabilities is Docker's default capability set as "CAP_..." names.
func DefaultCapabilities() []string {
	return append([]string(nil), defaultCaps...)
}

// AllCapabilities is every capability this package knows, in number order.
// The running kernel may know fewer; Apply ignores the ones it does not.
func AllCapabilities() []string {
	return append([]string(nil), capNames[:]...)
}

const allCaps = "ALL"

// normalize upper-cases a name and adds the CAP_ prefix; "ALL" stays "ALL".
func normalize(name string) (string, error) {
	c := strings.ToUpper(strings.TrimSpace(name))
	if c == allCaps {
		return c, nil
	}
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	if _, ok := capNumbers[c]; !ok {
		return "", fmt.Errorf("unknown capability: %q", c)
	}
	return c, nil
}

func normalizeAll(names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	for _, n := range names {
		c, err := normalize(n)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Capabilities computes a container's capability set from --cap-add and
// --cap-drop the way Docker does (moby's TweakCapabilities): privileged gets
// every capability; "ALL" in add gives everything except what drop names; "ALL"
// in drop keeps only what add names; otherwise the default set less drop plus
// add. Names are case-insensitive, with or without the CAP_ prefix. Unlike
// Docker, names are validated even when privileged, and the result has no
// duplicates.
func Capabilities(add, drop []string, privileged bool) ([]string, error) {
	adds, err := normalizeAll(add)
	if err != nil {
		return nil, err
	}
	drops, err := normalizeAll(drop)
	if err != nil {
		return nil, err
	}
	var caps []string
	switch {
	case privileged:
		return AllCapabilities(), nil
	case contains(adds, allCaps):
		for _, c := range capNames {
			if !contains(drops, c) {
				caps = append(caps, c)
			}
		}
		return caps, nil
	case contains(drops, allCaps):
		// Only what add names.
	default:
		for _, c := range defaultCaps {
			if !contains(drops, c) {
				caps = append(caps, c)
			}
		}
	}
	for _, c := range adds {
		if !contains(caps, c) {
			caps = append(caps, c)
		}
	}
	if caps == nil {
		caps = []string{}
	}
	return caps, nil
}

// capSet is a capability bit mask (bit n = capability n).
type capSet uint64

func (s capSet) has(c int) bool { return s&(1<<uint(c)) != 0 }

// parseCaps turns names (as Capabilities accepts them, without "ALL") into a mask.
func parseCaps(names []string) (capSet, error) {
	var s capSet
	for _, n := range names {
		c, err := normalize(n)
		if err != nil {
			return 0, err
		}
		if c == allCaps {
			return 0, fmt.Errorf("capability list: %q is only meaningful in --cap-add/--cap-drop", n)
		}
		s |= 1 << uint(capNumbers[c])
	}
	return s, nil
}

// names lists the capabilities in s, in number order.
func (s capSet) names() []string {
	var out []string
	for i, n := range capNames {
		if s.has(i) {
			out = append(out, n)
		}
	}
	return out
}
