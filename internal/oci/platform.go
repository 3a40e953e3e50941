package oci

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"

	"github.com/flick-edge/flick/internal/errdefs"
)

// Platform is an OS, CPU architecture and optional architecture variant, in
// the OCI/GOOS/GOARCH vocabulary ("linux", "arm", "v7"). Values made by
// ParsePlatform and Host are normalised (see ParsePlatform).
type Platform struct {
	OS, Architecture, Variant string
}

// String returns "os/arch" or "os/arch/variant"; "" for the zero Platform.
func (p Platform) String() string {
	if p == (Platform{}) {
		return ""
	}
	if p.Variant != "" {
		return p.OS + "/" + p.Architecture + "/" + p.Variant
	}
	return p.OS + "/" + p.Architecture
}

var knownOS = map[string]bool{
	"aix": true, "android": true, "darwin": true, "dragonfly": true, "freebsd": true,
	"illumos": true, "ios": true, "js": true, "linux": true, "netbsd": true,
	"openbsd": true, "plan9": true, "solaris": true, "wasi": true, "wasip1": true,
	"wasip2": true, "windows": true, "zos": true,
}

var platformPartRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9_.-]+$`) })

// ParsePlatform parses "os/arch[/variant]" or a lone "arch" (the os is then
// linux) or a lone known os such as "windows" (the architecture is then the
// host's). Input is case-insensitive and normalised as containerd does:
//
//	aarch64 -> arm64, arm64/v8 -> arm64 (v8 is arm64's default variant)
//	armhf -> arm/v7, armel -> arm/v6, arm -> arm/v7, arm/7 -> arm/v7
//	x86_64, x86-64 -> amd64, amd64/v1 -> amd64, i386 -> 386, macos -> darwin
//
// Errors are errdefs.InvalidArgument.
func ParsePlatform(s string) (Platform, error) {
	in := s
	s = strings.ToLower(strings.TrimSpace(s))
	parts := strings.Split(s, "/")
	if s == "" || len(parts) > 3 {
		return Platform{}, errdefs.NewInvalidArgument(fmt.Errorf("invalid platform %q: want os/arch[/variant], e.g. linux/arm64 or linux/arm/v7", in))
	}
	for _, p := range parts {
		if !platformPartRe().MatchString(p) {
			return Platform{}, errdefs.NewInvalidArgument(fmt.Errorf("invalid platform %q: want os/arch[/variant], e.g. linux/arm64 or linux/arm/v7", in))
		}
	}
	var p Platform
	switch len(parts) {
	case 1:
		if os := normalizeOS(parts[0]); knownOS[os] {
			h := Host()
			p = Platform{OS: os, Architecture: h.Architecture, Variant: h.Variant}
		} else {
			p = Platform{OS: "linux", Architecture: parts[0]}
		}
	case 2:
		p = Platform{OS: parts[0], Architecture: parts[1]}
	case 3:
		p = Platform{OS: parts[0], Architecture: parts[1], Variant: parts[2]}
	}
	return p.normalize(), nil
}

func normalizeOS(os string) string {
	os = strings.ToLower(os)
	if os == "macos" {
		return "darwin"
	}
	return os
}

// normalize applies ParsePlatform's normalisation rules.
func (p Platform) normalize() Platform {
	p.OS = normalizeOS(p.OS)
	arch, variant := strings.ToLower(p.Architecture), strings.ToLower(p.Variant)
	switch arch {
	case "i386":
		arch, variant = "386", ""
	case "x86_64", "x86-64", "amd64":
		arch = "amd64"
		if variant == "v1" {
			variant = ""
		}
	case "aarch64", "arm64":
		arch = "arm64"
		if variant == "8" || variant == "v8" {
			variant = ""
		}
	case "armhf":
		arch, variant = "arm", "v7"
	case "armel":
		arch, variant = "arm", "v6"
	case "armv7l", "armv7":
		arch, variant = "arm", "v7"
	case "armv6l", "armv6":
		arch, variant = "arm", "v6"
	case "arm":
		switch variant {
		case "":
			variant = "v7"
		case "5", "6", "7", "8":
			variant = "v" + variant
		}
	}
	p.Architecture, p.Variant = arch, variant
	return p
}

// Host returns the platform Flick runs on: runtime.GOOS and runtime.GOARCH,
// and for 32-bit arm the variant the CPU supports (from /proc/cpuinfo's "CPU
// architecture", else the GOARM the binary was built with, else v7).
func Host() Platform { return hostPlatform() }

var hostPlatform = sync.OnceValue(func() Platform {
	p := Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if p.Architecture == "arm" {
		p.Variant = armVariant()
	}
	return p.normalize()
})

func armVariant() string {
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && strings.TrimSpace(k) == "CPU architecture" {
				if n := leadingInt(strings.TrimSpace(v)); n >= 5 && n <= 8 {
					return "v" + strconv.Itoa(n)
				}
				break
			}
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOARM" {
				if n := leadingInt(s.Value); n >= 5 && n <= 7 {
					return "v" + strconv.Itoa(n)
				}
			}
		}
	}
	return "v7"
}

// leadingInt parses the decimal digits s starts with ("6TEJ" -> 6); -1 if none.
func leadingInt(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.Atoi(s[:i])
	if err != nil {
		return -1
	}
	return n
}
