package registry

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// DefaultCertsDir is dockerd's per-registry trust directory, which Flick shares.
const DefaultCertsDir = "/etc/docker/certs.d"

// hostCerts is what CertsDir/<host:port> holds, read as dockerd reads it
// (registry.ReadCertsDirectory): every *.crt is a CA, every *.cert is a client
// certificate whose key is the *.key of the same name.
type hostCerts struct {
	dir   string
	cas   [][]byte
	pairs []tls.Certificate
	sum   string // fingerprint of the files read, to notice changes
}

func readHostCerts(certsDir, host string) (*hostCerts, error) {
	hc := &hostCerts{dir: filepath.Join(certsDir, host)}
	ents, err := os.ReadDir(hc.dir)
	if errors.Is(err, os.ErrNotExist) {
		return hc, nil
	}
	if err != nil {
		return nil, errdefs.NewFailedPrecondition(fmt.Errorf("read %s: %w", hc.dir, err))
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	h := sha256.New()
	bad := func(format string, a ...any) error {
		return errdefs.NewFailedPrecondition(fmt.Errorf("%s: "+format, append([]any{hc.dir}, a...)...))
	}
	for _, e := range ents {
		n := e.Name()
		switch {
		case strings.HasSuffix(n, ".crt"):
			b, err := os.ReadFile(filepath.Join(hc.dir, n))
			if err != nil {
				return nil, bad("%v", err)
			}
			if !x509.NewCertPool().AppendCertsFromPEM(b) {
				return nil, bad("%s holds no PEM certificate", n)
			}
			hc.cas = append(hc.cas, b)
			h.Write([]byte(n + "\x00"))
			h.Write(b)
		case strings.HasSuffix(n, ".cert"):
			key := strings.TrimSuffix(n, ".cert") + ".key"
			if !names[key] {
				return nil, bad("missing key %s for client certificate %s (CA certificates must use the extension .crt)", key, n)
			}
			cb, err := os.ReadFile(filepath.Join(hc.dir, n))
			if err != nil {
				return nil, bad("%v", err)
			}
			kb, err := os.ReadFile(filepath.Join(hc.dir, key))
			if err != nil {
				return nil, bad("%v", err)
			}
			pair, err := tls.X509KeyPair(cb, kb)
			if err != nil {
				return nil, bad("client certificate %s: %v", n, err)
			}
			hc.pairs = append(hc.pairs, pair)
			h.Write([]byte(n + "\x00"))
			h.Write(cb)
			h.Write(kb)
		case strings.HasSuffix(n, ".key"):
			if cert := strings.TrimSuffix(n, ".key") + ".cert"; !names[cert] {
				return nil, bad("missing client certificate %s for key %s", cert, n)
			}
		}
	}
	hc.sum = hex.EncodeToString(h.Sum(nil))
	return hc, nil
}

// tlsConfig returns base (may be nil) extended with hc: its CAs trusted besides
// the roots base already trusts (the system's by default) and its client
// certificates offered. With skipVerify, as dockerd does for an insecure
// registry, the server's certificate is not verified. If there is no client
// certificate and the server asks for one, asked is set.
func (hc *hostCerts) tlsConfig(base *tls.Config, skipVerify bool, asked *atomic.Bool) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		cfg = base.Clone()
	}
	if len(hc.cas) > 0 {
		var pool *x509.CertPool
		if cfg.RootCAs != nil {
			pool = cfg.RootCAs.Clone()
		} else if sys, err := x509.SystemCertPool(); err == nil {
			pool = sys
		} else {
			pool = x509.NewCertPool()
		}
		for _, b := range hc.cas {
			pool.AppendCertsFromPEM(b)
		}
		cfg.RootCAs = pool
	}
	cfg.Certificates = append(cfg.Certificates[:len(cfg.Certificates):len(cfg.Certificates)], hc.pairs...)
	if skipVerify {
		cfg.InsecureSkipVerify = true
	}
	if len(cfg.Certificates) == 0 && cfg.GetClientCertificate == nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked.Store(true)
			return &tls.Certificate{}, nil // none: the server decides
		}
	}
	return cfg
}

// hostTransports caches the base transport of each registry host, rebuilt
// when the host's certs.d files change, so connections are reused across
// pulls.
type hostTransports struct {
	mu sync.Mutex
	m  map[string]*hostTransport
}

// hostTransport sends requests for the registry host through registry, and
// any other (a token server, blob storage it redirects to) through others.
// The two differ for an insecure registry: only the registry's own
// certificate goes unverified.
type hostTransport struct {
	key              string
	host             string
	registry, others *http.Transport
	// askedCert is set when a server asked for a client certificate and
	// certs.d has none for the host.
	askedCert atomic.Bool
}

func (h *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.EqualFold(req.URL.Host, h.host) {
		return h.registry.RoundTrip(req)
	}
	return h.others.RoundTrip(req)
}

func (h *hostTransport) closeIdle() {
	h.registry.CloseIdleConnections()
	if h.others != h.registry {
		h.others.CloseIdleConnections()
	}
}

// transport returns the base transport for registry host: the configured
// transport with host's TLS settings (certs.d, insecure) when it is an
// *http.Transport, else the configured transport as it is. For a registry
// that is not insecure, plain HTTP to it is refused. askedCert reports
// whether a server asked for a client certificate Flick does not have, since
// the last call for host.
func (c *Client) transport(host string, insecure bool) (rt http.RoundTripper, askedCert func() bool, err error) {
	rt, askedCert = c.opts.Transport, func() bool { return false }
	if base, ok := c.opts.Transport.(*http.Transport); ok {
		hc, err := readHostCerts(c.opts.CertsDir, host)
		if err != nil {
			return nil, nil, err
		}
		key := fmt.Sprintf("%s|%t", hc.sum, insecure)
		c.transports.mu.Lock()
		ht := c.transports.m[host]
		if ht == nil || ht.key != key {
			if ht != nil {
				ht.closeIdle()
			}
			ht = &hostTransport{key: key, host: host, others: base.Clone()}
			ht.others.TLSClientConfig = hc.tlsConfig(base.TLSClientConfig, false, &ht.askedCert)
			ht.registry = ht.others
			if insecure {
				ht.registry = base.Clone()
				ht.registry.TLSClientConfig = hc.tlsConfig(base.TLSClientConfig, true, &ht.askedCert)
			}
			c.transports.m[host] = ht
		}
		c.transports.mu.Unlock()
		ht.askedCert.Store(false)
		rt, askedCert = ht, ht.askedCert.Load
	}
	if !insecure {
		rt = &httpsOnly{host: host, inner: rt}
	}
	return rt, askedCert, nil
}

// httpsOnly refuses plain HTTP to a registry that is not insecure.
// go-containerregistry falls back to HTTP for private addresses (10.0.0.0/8,
// ...) and *.local names; dockerd does not, and neither does Flick.
type httpsOnly struct {
	host  string
	inner http.RoundTripper
}

// errPlainHTTP is returned for plain HTTP to a registry that is not insecure.
var errPlainHTTP = errors.New("plain HTTP refused")

func (h *httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && strings.EqualFold(req.URL.Host, h.host) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("%w: registry %s is reached over HTTPS only (add it to --insecure-registry to allow HTTP)", errPlainHTTP, h.host)
	}
	return h.inner.RoundTrip(req)
}

// tlsError reports whether err is a TLS problem that trying again cannot fix.
func tlsError(err error) bool {
	var cve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	msg := err.Error()
	return errors.As(err, &cve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) ||
		errors.Is(err, errPlainHTTP) || strings.Contains(msg, "remote error: tls: ")
}

// wantsClientCert reports whether err is the TLS alert of a server that
// requires a client certificate (crypto/tls reports remote alerts with an
// unexported type, so only the text identifies them) or the failure of a
// connection to a server that asked for a client certificate Flick does not
// have: with TLS 1.3 the server's alert may never reach the client, which
// sees a broken pipe or an unusable HTTP/2 connection instead.
func wantsClientCert(err error, asked bool) bool {
	msg := err.Error()
	return asked || strings.Contains(msg, "remote error: tls: certificate required") ||
		strings.Contains(msg, "remote error: tls: bad certificate")
}

// tlsHint turns a TLS failure talking to host into an error that says how to
// fix it, naming the certs.d directory dockerd and Flick read. askedCert tells
// whether the registry asked for a client certificate Flick does not have.
// It returns nil for other errors. For an insecure registry, an HTTPS attempt
// answered in plain HTTP is no error: HTTP is tried next.
func (c *Client) tlsHint(err error, host string, insecure, askedCert bool) error {
	dir := filepath.Join(c.opts.CertsDir, host)
	var cve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return errdefs.NewFailedPrecondition(fmt.Errorf("%w: the registry's TLS certificate is signed by an authority Flick does not trust: put that CA certificate (PEM) in %s/ca.crt", err, dir))
	case errors.As(err, &he):
		return errdefs.NewFailedPrecondition(fmt.Errorf("%w: the registry's TLS certificate is not valid for %s", err, host))
	case errors.As(err, &ci) || errors.As(err, &cve):
		return errdefs.NewFailedPrecondition(fmt.Errorf("%w: the registry's TLS certificate is not valid (CAs for it go in %s/ca.crt)", err, dir))
	case wantsClientCert(err, askedCert && (insecure || !errors.As(err, new(*transport.Error)))):
		// (Over HTTPS only, an HTTP status means the handshake went well.)
		return errdefs.NewFailedPrecondition(fmt.Errorf("%w: the registry asked for a client certificate and none is configured: put it in %s/client.cert and its key in %s/client.key", err, dir, dir))
	case !insecure && (errors.Is(err, errPlainHTTP) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")):
		return errdefs.NewFailedPrecondition(fmt.Errorf("%w: registry %s speaks plain HTTP; if that is intended, add it to --insecure-registry", err, host))
	}
	return nil
}
