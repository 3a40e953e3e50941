// Package reference parses and prints image references the way Docker does.
//
// The grammar and the normalisation are github.com/distribution/reference's
// (docker's), matched by hand in grammar.go and held to that package's
// answers by a differential fuzz test, so "alpine" means exactly what it
// means to docker ("docker.io/library/alpine:latest"). What this package
// adds is an immutable, comparable value type (Ref), errors classified as
// errdefs.InvalidArgument with a hint for the usual mistakes, and IsLoopback
// for deciding whether a registry is spoken to over plain HTTP.
package reference

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/flick-edge/flick/internal/errdefs"
)

// DefaultTag is the tag Parse adds to a reference that has neither a tag nor
// a digest.
const DefaultTag = "latest"

// Ref is a parsed, normalised image reference: a domain, a repository path,
// and a tag, a digest, or both. When both are set the digest is what a fetch
// uses; the tag is kept for display and for tagging the result.
//
// Ref is an immutable value. Two Refs naming the same thing compare equal
// with ==. The zero Ref is "no reference": every accessor returns "".
type Ref struct {
	domain string
	path   string
	tag    string
	digest digest.Digest
}

// Parse parses s as docker does and normalises it to a fully qualified
// reference:
//
//	"alpine"                      -> docker.io/library/alpine:latest
//	"user/app:1.2"                -> docker.io/user/app:1.2
//	"127.0.0.1:5000/x"            -> 127.0.0.1:5000/x:latest
//	"x@sha256:<hex>"              -> docker.io/library/x@sha256:<hex> (no tag added)
//	"x:1.0@sha256:<hex>"          -> both kept; the digest wins for fetching
//	"index.docker.io/library/x"   -> docker.io/library/x:latest
//
// The tag "latest" is added only when s has neither a tag nor a digest.
// A 64-hex-digit string (an image ID) is not a reference. Every error is
// classified errdefs.InvalidArgument and its message includes s and, for the
// common mistakes, a hint.
func Parse(s string) (Ref, error) {
	p, err := parseNormalized(s)
	if err != nil {
		return Ref{}, parseError(s, err)
	}
	if p.tag == "" && p.digest == "" {
		p.tag = DefaultTag
	}
	r := Ref(p)
	if r.domain == "" {
		// The parser took the first component for a registry host (it has a
		// '.' or ':') but it is not a valid host name, e.g. "0_0.0/app".
		host, _, _ := strings.Cut(s, "/")
		return Ref{}, errdefs.NewInvalidArgument(fmt.Errorf("parsing reference %q: invalid reference format: %q is read as a registry host but is not a valid host name (hint: host names have letters, digits, '-' and '.'; a repository without a registry has no '.' or ':' in its first component)", s, host))
	}
	return r, nil
}

// parseError turns an error of the underlying parser into an InvalidArgument
// error with a stable message and a hint.
func parseError(s string, err error) error {
	msg := err.Error()
	var hint string
	switch {
	case strings.Contains(s, "://"):
		hint = "a reference has no scheme: drop the \"" + s[:strings.Index(s, "://")+3] + "\" prefix"
	case strings.TrimSpace(s) != s || strings.ContainsAny(s, " \t\r\n"):
		hint = "remove the whitespace"
	case s == "":
		msg = "invalid reference format: " + errNameEmpty.Error()
		hint = "give an image name such as \"alpine\" or \"ghcr.io/org/app:1.0\""
	case errors.Is(err, errNameContainsUppercase) || strings.Contains(msg, "must be lowercase"):
		msg = "invalid reference format: " + errNameContainsUppercase.Error()
		if _, lerr := parseNormalized(strings.ToLower(s)); lerr == nil {
			hint = fmt.Sprintf("did you mean %q? (tags may contain capitals, repository names may not)", strings.ToLower(s))
		}
	case errors.Is(err, errImageID):
		msg = "invalid reference format: a 64-hex-digit string is an image ID, not a reference"
		hint = "use the image ID with commands that take one, or give a name"
	case errors.Is(err, errNameTooLong):
		msg = "invalid reference format: " + errNameTooLong.Error()
	case errors.Is(err, digest.ErrDigestInvalidFormat) ||
		errors.Is(err, digest.ErrDigestInvalidLength) || errors.Is(err, digest.ErrDigestUnsupported):
		msg = "invalid reference format: bad digest: " + msg
		hint = "a digest looks like sha256:<64 lowercase hex digits>"
	case errors.Is(err, errReferenceInvalidFormat) && strings.Contains(s, "@"):
		hint = "a digest looks like sha256:<64 lowercase hex digits>"
	case errors.Is(err, errReferenceInvalidFormat):
		hint = "a reference looks like [registry[:port]/]name[:tag][@sha256:<hex>]; tags are up to 128 of [A-Za-z0-9_.-] and do not start with '.' or '-'"
	}
	if !strings.HasPrefix(msg, "invalid reference format") {
		msg = "invalid reference format: " + msg
	}
	if hint != "" {
		msg += " (hint: " + hint + ")"
	}
	return errdefs.NewInvalidArgument(fmt.Errorf("parsing reference %q: %s", s, msg))
}

// String returns the fully qualified reference:
// "docker.io/library/alpine:latest", "ghcr.io/o/a@sha256:…" or, with both,
// "docker.io/library/alpine:3.20@sha256:…". Parse(r.String()) == r.
func (r Ref) String() string {
	if r.path == "" {
		return ""
	}
	s := r.Name()
	if r.tag != "" {
		s += ":" + r.tag
	}
	if r.digest != "" {
		s += "@" + r.digest.String()
	}
	return s
}

// Familiar returns the reference as docker shows it: "alpine:latest",
// "user/app:1.2", "ghcr.io/o/a@sha256:…". Parse(r.Familiar()) == r.
func (r Ref) Familiar() string {
	if r.path == "" {
		return ""
	}
	// Docker Hub's domain and a lone "library/" are left out.
	name := r.Name()
	if r.domain == defaultDomain {
		name = r.path
		if rest, ok := strings.CutPrefix(r.path, officialRepoPrefix); ok && !strings.Contains(rest, "/") {
			name = rest
		}
	}
	fam := name
	if r.tag != "" {
		fam += ":" + r.tag
	}
	if r.digest != "" {
		fam += "@" + r.digest.String()
	}
	// A Docker Hub path whose first component looks like a host
	// ("docker.io/0.0/app") must keep its registry, or the short form
	// would name another registry (fuzzing found it).
	if first, _, ok := strings.Cut(fam, "/"); ok && r.domain == "docker.io" && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return "docker.io/" + fam
	}
	return fam
}

// Domain returns the registry part: "docker.io", "ghcr.io",
// "127.0.0.1:5000" (the port, if any, included).
func (r Ref) Domain() string { return r.domain }

// Path returns the repository path within the registry: "library/alpine".
func (r Ref) Path() string { return r.path }

// Name returns Domain()/Path(): "docker.io/library/alpine".
func (r Ref) Name() string {
	if r.path == "" {
		return ""
	}
	return r.domain + "/" + r.path
}

// Tag returns the tag, or "" if the reference has none (a digest-only
// reference).
func (r Ref) Tag() string { return r.tag }

// Digest returns the digest, or "" if the reference has none.
func (r Ref) Digest() digest.Digest { return r.digest }

// WithDigest returns r pinned to d, keeping r's name and tag (if any) and
// replacing any digest r had. d must be a valid digest (d.Validate() == nil),
// such as one computed from fetched content; an invalid d is a programming
// error and panics, as does calling WithDigest on the zero Ref.
func (r Ref) WithDigest(d digest.Digest) Ref {
	if r.path == "" {
		panic("reference: WithDigest on the zero Ref")
	}
	if err := d.Validate(); err != nil {
		panic(fmt.Sprintf("reference: WithDigest(%q): %v", d, err))
	}
	r.digest = d
	return r
}

// RegistryHost returns the host (and port) the registry client talks to.
// It is Domain(): "docker.io" stays "docker.io" and mapping Docker Hub to
// its API endpoint is the registry client's business.
func (r Ref) RegistryHost() string { return r.domain }

// IsLoopback reports whether host, with or without a ":port" and with or
// without brackets around an IPv6 address, names the local machine:
// "localhost", any address in 127.0.0.0/8, or ::1. Like docker, Flick talks
// plain HTTP to registries on loopback. Host names other than "localhost" are
// not resolved.
func IsLoopback(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
