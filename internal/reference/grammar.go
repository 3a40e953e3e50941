package reference

import (
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// The reference grammar of github.com/distribution/reference (v0.6.0), the
// one docker uses, matched by hand instead of by that package's regular
// expressions: compiling them at start-up cost every flick process (each
// CLI call, the daemon) about 1 ms and 414 KB of heap the daemon kept for
// good. FuzzParseMatchesDistribution holds this file to the library's
// answers for any input, so "alpine" still means what it means to docker.
//
//	reference        := name [ ":" tag ] [ "@" digest ]
//	name             := [ domain "/" ] remote-name
//	domain           := host [ ":" port ]         ; port: [0-9]+
//	host             := domain-name | "[" [a-fA-F0-9:]+ "]"
//	domain-name      := component ( "." component )*
//	component        := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//	remote-name      := path-component ( "/" path-component )*
//	path-component   := [a-z0-9]+ ( separator [a-z0-9]+ )*
//	separator        := "." | "_" | "__" | "-"+
//	tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//	digest           := algorithm ":" [0-9a-fA-F]{32,}
//	algorithm        := [A-Za-z][A-Za-z0-9]* ( [-_+.] [A-Za-z][A-Za-z0-9]* )*

// nameTotalLengthMax is the longest repository path a reference may have.
const nameTotalLengthMax = 255

// The parser's errors; their texts are distribution/reference's.
var (
	errReferenceInvalidFormat = errors.New("invalid reference format")
	errNameContainsUppercase  = errors.New("repository name must be lowercase")
	errNameEmpty              = errors.New("repository name must have at least one component")
	errNameTooLong            = fmt.Errorf("repository name must not be more than %v characters", nameTotalLengthMax)
	errImageID                = errors.New("cannot specify 64-byte hexadecimal strings")
)

const (
	defaultDomain       = "docker.io"
	legacyDefaultDomain = "index.docker.io"
	officialRepoPrefix  = "library/"
	localhost           = "localhost"
)

// parsed is a reference split into its parts, before normalisation.
type parsed struct {
	domain, path, tag string
	digest            digest.Digest
}

// parseNormalized is distribution/reference's ParseNormalizedNamed: s with
// Docker Hub's domain and "library/" added where docker adds them.
func parseNormalized(s string) (parsed, error) {
	if isImageID(s) {
		return parsed{}, fmt.Errorf("invalid repository name (%s), %w", s, errImageID)
	}
	domain, remainder := splitDockerDomain(s)
	remote := remainder
	if i := strings.IndexByte(remainder, ':'); i >= 0 {
		remote = remainder[:i]
	}
	if strings.ToLower(remote) != remote {
		return parsed{}, fmt.Errorf("invalid reference format: repository name (%s) must be lowercase", remote)
	}
	return parse(domain + "/" + remainder)
}

// splitDockerDomain splits name into the registry and the rest, with
// Docker Hub's defaults: its first component is a registry if it is
// "localhost" or has a '.', a ':' or a capital.
func splitDockerDomain(name string) (domain, remote string) {
	first, rest, ok := strings.Cut(name, "/")
	if !ok {
		return defaultDomain, officialRepoPrefix + name
	}
	switch {
	case first == legacyDefaultDomain:
		domain, remote = defaultDomain, rest
	case first == localhost, strings.ContainsAny(first, ".:"), strings.ToLower(first) != first:
		domain, remote = first, rest
	default:
		domain, remote = defaultDomain, name
	}
	if domain == defaultDomain && !strings.Contains(remote, "/") {
		remote = officialRepoPrefix + remote
	}
	return domain, remote
}

// parse is distribution/reference's Parse: s split into name, tag and
// digest, and the name into domain and path, without normalising.
func parse(s string) (parsed, error) {
	p, ok := split(s)
	if !ok {
		if s == "" {
			return parsed{}, errNameEmpty
		}
		if _, ok := split(strings.ToLower(s)); ok {
			return parsed{}, errNameContainsUppercase
		}
		return parsed{}, errReferenceInvalidFormat
	}
	if len(p.path) > nameTotalLengthMax {
		return parsed{}, errNameTooLong
	}
	if p.digest != "" {
		d, err := digest.Parse(string(p.digest))
		if err != nil {
			return parsed{}, err
		}
		p.digest = d
	}
	return p, nil
}

// split matches s against the whole grammar. The name is split as the
// library's anchored name expression splits it: its first component is
// the domain when it can be one and the rest is a remote name.
func split(s string) (parsed, bool) {
	var p parsed
	name := s
	if at := strings.IndexByte(s, '@'); at >= 0 {
		if !isDigest(s[at+1:]) {
			return p, false
		}
		name, p.digest = s[:at], digest.Digest(s[at+1:])
	}
	// A tag follows the last ':' when no '/' comes after it; an earlier
	// ':' can only be the domain's port.
	if c := strings.LastIndexByte(name, ':'); c >= 0 && c > strings.LastIndexByte(name, '/') {
		if !isTag(name[c+1:]) {
			return p, false
		}
		name, p.tag = name[:c], name[c+1:]
	}
	if first, rest, ok := strings.Cut(name, "/"); ok && isDomain(first) && isRemoteName(rest) {
		p.domain, p.path = first, rest
		return p, true
	}
	if !isRemoteName(name) {
		return p, false
	}
	p.path = name
	return p, true
}

func isImageID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLowerHex(s[i]) {
			return false
		}
	}
	return true
}

// isDomain: host [ ":" port ], the host a domain name or a bracketed
// IPv6 address.
func isDomain(s string) bool {
	host, port, ipv6 := s, "", strings.HasPrefix(s, "[")
	if ipv6 {
		end := strings.IndexByte(s, ']')
		if end < 0 || !isIPv6Body(s[1:end]) {
			return false
		}
		port = s[end+1:]
	} else if c := strings.IndexByte(s, ':'); c >= 0 {
		host, port = s[:c], s[c:]
	}
	if port != "" && (port[0] != ':' || !allDigits(port[1:])) {
		return false
	}
	return ipv6 || isDomainName(host)
}

// isDomainName: components of letters, digits and '-', not starting or
// ending with '-', joined by '.'.
func isDomainName(host string) bool {
	for _, comp := range strings.Split(host, ".") {
		if comp == "" || comp[0] == '-' || comp[len(comp)-1] == '-' {
			return false
		}
		for i := 0; i < len(comp); i++ {
			if !isAlnum(comp[i]) && comp[i] != '-' {
				return false
			}
		}
	}
	return true
}

func isIPv6Body(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isHex(c) && c != ':' {
			return false
		}
	}
	return true
}

// isRemoteName: path components of lowercase letters and digits, joined
// inside by ".", "_", "__" or a run of '-', separated by '/'.
func isRemoteName(s string) bool {
	for _, comp := range strings.Split(s, "/") {
		if comp == "" || !isLowerAlnum(comp[0]) || !isLowerAlnum(comp[len(comp)-1]) {
			return false
		}
		for i := 0; i < len(comp); {
			if isLowerAlnum(comp[i]) {
				i++
				continue
			}
			j := i
			for j < len(comp) && !isLowerAlnum(comp[j]) {
				j++
			}
			switch sep := comp[i:j]; {
			case sep == "." || sep == "_" || sep == "__":
			case strings.Trim(sep, "-") == "":
			default:
				return false
			}
			i = j
		}
	}
	return true
}

// isTag: a word character, then up to 127 of word characters, '.' and '-'.
func isTag(s string) bool {
	if s == "" || len(s) > 128 || !isWord(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isWord(c) && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// isDigest: algorithm ":" at least 32 hex digits (what the algorithm
// itself requires is go-digest's to check).
func isDigest(s string) bool {
	alg, hex, ok := strings.Cut(s, ":")
	if !ok || len(hex) < 32 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		if !isHex(hex[i]) {
			return false
		}
	}
	// Components of a letter then letters and digits, joined by one of -_+.
	start := true
	for i := 0; i < len(alg); i++ {
		c := alg[i]
		switch {
		case isLetter(c):
			start = false
		case isDigit(c) && !start:
		case (c == '-' || c == '_' || c == '+' || c == '.') && !start:
			start = true
		default:
			return false
		}
	}
	return alg != "" && !start
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool      { return '0' <= c && c <= '9' }
func isLetter(c byte) bool     { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool      { return isLetter(c) || isDigit(c) }
func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || isDigit(c) }
func isWord(c byte) bool       { return isAlnum(c) || c == '_' }
func isHex(c byte) bool        { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
func isLowerHex(c byte) bool   { return isDigit(c) || 'a' <= c && c <= 'f' }
