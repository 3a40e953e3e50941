// Package capability is Linux capabilities as Docker names and combines
// them: the names and numbers, Docker's default set, and --cap-add,
// --cap-drop and --privileged resolved into a container's set. The daemon
// resolves a container's set at create; the container's init applies it
// (internal/sandbox). It is pure data and links nothing else.
package capability

import (
	"fmt"
	"slices"
	"strings"
)

// names are the Linux capabilities by number, as Docker spells them.
var names = [...]string{
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
	DACReadSearch = 2
	SysModule     = 16
	SysRawio      = 17
	SysChroot     = 18
	SysPtrace     = 19
	SysPacct      = 20
	SysAdmin      = 21
	SysBoot       = 22
	SysNice       = 23
	SysTime       = 25
	SysTTYConfig  = 26
	Syslog        = 34
	Perfmon       = 38
	BPF           = 39
)

var capNumbers = func() map[string]int {
	m := make(map[string]int, len(names))
	for i, n := range names {
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

// Default is Docker's default capability set as "CAP_..." names.
func Default() []string {
	return append([]string(nil), defaultCaps...)
}

// All is every capability this package knows, in number order. The
// running kernel may know fewer; sandbox.Apply ignores the ones it does not.
func All() []string {
	return append([]string(nil), names[:]...)
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

// Resolve computes a container's capability set from --cap-add and
// --cap-drop the way Docker does (moby's TweakCapabilities): privileged gets
// every capability; "ALL" in add gives everything except what drop names; "ALL"
// in drop keeps only what add names; otherwise the default set less drop plus
// add. Names are case-insensitive, with or without the CAP_ prefix. Unlike
// Docker, names are validated even when privileged, and the result has no
// duplicates.
func Resolve(add, drop []string, privileged bool) ([]string, error) {
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
		return All(), nil
	case slices.Contains(adds, allCaps):
		for _, c := range names {
			if !slices.Contains(drops, c) {
				caps = append(caps, c)
			}
		}
		return caps, nil
	case slices.Contains(drops, allCaps):
		// Only what add names.
	default:
		for _, c := range defaultCaps {
			if !slices.Contains(drops, c) {
				caps = append(caps, c)
			}
		}
	}
	for _, c := range adds {
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	if caps == nil {
		caps = []string{}
	}
	return caps, nil
}

// Set is a capability bit mask (bit n = capability n).
type Set uint64

// Has reports whether capability number c is in s.
func (s Set) Has(c int) bool { return s&(1<<uint(c)) != 0 }

// Parse turns names (as Resolve accepts them, without "ALL") into a mask.
func Parse(list []string) (Set, error) {
	var s Set
	for _, n := range list {
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

// Names lists the capabilities in s, in number order.
func (s Set) Names() []string {
	var out []string
	for i, n := range names {
		if s.Has(i) {
			out = append(out, n)
		}
	}
	return out
}

// Name is capability number c's name ("CAP_..."), or "" if this package
// does not know it.
func Name(c int) string {
	if c >= 0 && c < len(names) {
		return names[c]
	}
	return ""
}

// Known is how many capabilities this package knows (the highest number + 1).
func Known() int { return len(names) }
