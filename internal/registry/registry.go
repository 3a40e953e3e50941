// Package registry is Flick's client for the OCI distribution protocol.
//
// Authentication (anonymous and basic bearer-token flows, docker config.json
// credentials) is go-containerregistry's transport: Flick does not hand-write
// the token dance. What Flick adds is what a gateway on a bad link needs:
// manifests fetched with a size bound and digest check, and blob streams that
// verify size and digest as they are read and survive dropped connections by
// resuming with HTTP Range requests under capped exponential back-off.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
)

// Options configure a Client. The zero value works: Docker's defaults.
type Options struct {
	// Insecure lists registries ("host" or "host:port", or CIDRs like
	// "10.0.0.0/8") that are insecure, as dockerd's --insecure-registry:
	// HTTPS is tried first, without verifying the registry's certificate, then
	// plain HTTP. Loopback registries always are insecure. Every other registry
	// is reached over verified HTTPS only.
	Insecure []string
	// CertsDir is dockerd's per-registry trust directory (default
	// DefaultCertsDir, /etc/docker/certs.d), read at each Open: for registry
	// "host:port", CertsDir/host:port/*.crt are CA certificates trusted besides
	// the system roots, and each *.cert with its *.key (client.cert,
	// client.key) is a client certificate offered for mutual TLS. It applies
	// when Transport is an *http.Transport.
	CertsDir string
	// Transport is the base HTTP transport (default: a clone of http.DefaultTransport).
	Transport http.RoundTripper
	// MaxAttempts bounds how often one request or blob stream is (re)tried
	// (default 5, like dockerd's --max-download-attempts).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the delay between attempts
	// (defaults 500ms and 30s; doubled after each failure).
	MinBackoff, MaxBackoff time.Duration
	// Keychain supplies credentials when a request carries none
	// (default: the docker config.json of the daemon's user).
	Keychain  authn.Keychain
	UserAgent string
	Logger    *slog.Logger
}

// Client opens repositories.
type Client struct {
	opts       Options
	insecure   []*net.IPNet
	hosts      map[string]bool
	transports hostTransports
}

// New returns a Client.
func New(opts Options) (*Client, error) {
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	if opts.CertsDir == "" {
		opts.CertsDir = DefaultCertsDir
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 500 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Keychain == nil {
		opts.Keychain = authn.DefaultKeychain
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "flick"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{opts: opts, hosts: map[string]bool{}, transports: hostTransports{m: map[string]*hostTransport{}}}
	for _, s := range opts.Insecure {
		if _, n, err := net.ParseCIDR(s); err == nil {
			c.insecure = append(c.insecure, n)
			continue
		}
		c.hosts[s] = true
	}
	return c, nil
}

// IsInsecure reports whether host is an insecure registry: loopback, or listed
// in Options.Insecure. Flick tries HTTPS first without verifying its
// certificate, then plain HTTP.
func (c *Client) IsInsecure(host string) bool {
	if reference.IsLoopback(host) || c.hosts[host] {
		return true
	}
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
		if c.hosts[h] {
			return true
		}
	}
	if ip := net.ParseIP(h); ip != nil {
		for _, n := range c.insecure {
			if n.Contains(ip) {
				return true
			}
		}
	}
	return false
}

// Repo is one repository on one registry with its authenticated transport.
type Repo struct {
	c      *Client
	repo   name.Repository
	base   string // scheme://host/v2/path
	client *http.Client
}

// Credentials are what a Docker client sends in X-Registry-Auth.
type Credentials struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

func (cr Credentials) empty() bool {
	return cr.Username == "" && cr.Password == "" && cr.IdentityToken == "" && cr.RegistryToken == ""
}

// Open authenticates against ref's registry for pulling ref's repository.
// Credentials, if not empty, take precedence over the keychain.
func (c *Client) Open(ctx context.Context, ref reference.Ref, cred Credentials) (*Repo, error) {
	var nopts []name.Option
	insecure := c.IsInsecure(ref.Domain())
	if insecure {
		// go-containerregistry then pings https first and falls back to
		// http (only) if that fails, and keeps the scheme that answered.
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(ref.Name(), nopts...)
	if err != nil {
		return nil, errdefs.NewInvalidArgument(fmt.Errorf("repository %s: %w", ref.Name(), err))
	}
	var auth authn.Authenticator
	if !cred.empty() {
		auth = authn.FromConfig(authn.AuthConfig{Username: cred.Username, Password: cred.Password,
			IdentityToken: cred.IdentityToken, RegistryToken: cred.RegistryToken})
	} else if auth, err = authn.Resolve(ctx, c.opts.Keychain, repo); err != nil {
		auth = authn.Anonymous
	}
	// The scheme here is a placeholder for the registry's own requests: the
	// transport rewrites it to the one its ping found working.
	scheme := "https"
	if insecure {
		scheme = "http"
	}
	hostRT, askedCert, err := c.transport(repo.RegistryStr(), insecure)
	if err != nil {
		return nil, err
	}
	base := transport.NewUserAgent(hostRT, c.opts.UserAgent)
	var rt http.RoundTripper
	err = c.retry(ctx, "contact registry "+repo.RegistryStr(), func() error {
		var err error
		rt, err = transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PullScope)})
		if err != nil {
			// A missing CA or client certificate, or plain HTTP: permanent,
			// and the error says how to fix it.
			if h := c.tlsHint(fmt.Errorf("registry %s: %w", ref.Domain(), err), repo.RegistryStr(), insecure, askedCert()); h != nil {
				return h
			}
		}
		return err
	})
	if err != nil {
		if errdefs.ClassOf(err) != errdefs.Unknown {
			return nil, err
		}
		return nil, classify(fmt.Errorf("registry %s: %w", ref.Domain(), err))
	}
	return &Repo{
		c:      c,
		repo:   repo,
		base:   fmt.Sprintf("%s://%s/v2/%s", scheme, repo.RegistryStr(), repo.RepositoryStr()),
		client: &http.Client{Transport: rt},
	}, nil
}

// retry runs fn until it succeeds, fails permanently, or MaxAttempts is reached.
func (c *Client) retry(ctx context.Context, what string, fn func() error) error {
	delay := c.opts.MinBackoff
	var err error
	for attempt := 1; attempt <= c.opts.MaxAttempts; attempt++ {
		if err = fn(); err == nil || !retryable(err) {
			return err
		}
		if attempt == c.opts.MaxAttempts {
			break
		}
		c.opts.Logger.Warn("retrying", "what", what, "attempt", attempt, "delay", delay, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, c.opts.MaxBackoff)
	}
	return fmt.Errorf("%s: giving up after %d attempts: %w", what, c.opts.MaxAttempts, err)
}

func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	// An HTTP status decides first: for an insecure registry, err may also
	// hold the failed HTTPS attempt that preceded plain HTTP.
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode == http.StatusTooManyRequests || te.StatusCode >= 500
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.code == http.StatusTooManyRequests || se.code >= 500
	}
	if tlsError(err) {
		return false
	}
	if errdefs.ClassOf(err) != errdefs.Unknown {
		return false
	}
	return true // network errors, truncated bodies
}

type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// classify maps registry answers to error classes with a hint for the user.
func classify(err error) error {
	if errdefs.ClassOf(err) != errdefs.Unknown {
		return err
	}
	code := 0
	var te *transport.Error
	var se *statusError
	switch {
	case errors.As(err, &te):
		code = te.StatusCode
	case errors.As(err, &se):
		code = se.code
	}
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return errdefs.NewUnauthorized(fmt.Errorf("%w (log in with 'flick login <registry>' or 'docker login')", err))
	case code == http.StatusNotFound:
		return errdefs.NewNotFound(err)
	case code >= 400 && code < 500:
		return errdefs.NewInvalidArgument(err)
	}
	return errdefs.NewUnavailable(err)
}

// Name is the repository name as the registry knows it.
func (r *Repo) Name() string { return r.repo.Name() }

// ManifestAccept lists every manifest media type Flick understands.
var ManifestAccept = []string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}

// MaxManifestSize bounds a manifest or index body.
const MaxManifestSize = 4 << 20

// Manifest fetches the manifest or index named by tagOrDigest. When it is a
// digest, the body must hash to it. It returns the content type, the body and
// the body's digest.
func (r *Repo) Manifest(ctx context.Context, tagOrDigest string) (mediaType string, body []byte, dgst digest.Digest, err error) {
	err = r.c.retry(ctx, "fetch manifest "+tagOrDigest, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/manifests/"+tagOrDigest, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", strings.Join(ManifestAccept, ", "))
		resp, err := r.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := transport.CheckError(resp, http.StatusOK); err != nil {
			return err
		}
		if resp.ContentLength > MaxManifestSize {
			return errdefs.NewInvalidArgument(fmt.Errorf("manifest %s is %d bytes, over the %d-byte limit", tagOrDigest, resp.ContentLength, MaxManifestSize))
		}
		body, err = io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
		if err != nil {
			return err
		}
		if len(body) > MaxManifestSize {
			return errdefs.NewInvalidArgument(fmt.Errorf("manifest %s is over the %d-byte limit", tagOrDigest, MaxManifestSize))
		}
		mediaType = resp.Header.Get("Content-Type")
		return nil
	})
	if err != nil {
		return "", nil, "", classify(fmt.Errorf("%s:%s: %w", r.repo.Name(), tagOrDigest, err))
	}
	dgst = digest.FromBytes(body)
	if want, perr := digest.Parse(tagOrDigest); perr == nil && want != dgst {
		return "", nil, "", errdefs.NewInvalidArgument(fmt.Errorf("manifest digest mismatch: asked for %s, registry sent content hashing to %s", want, dgst))
	}
	return mediaType, body, dgst, nil
}

// Blob fetches a small blob (a config) whole, verified against d and size, and
// refuses anything larger than limit.
func (r *Repo) Blob(ctx context.Context, d digest.Digest, size, limit int64) ([]byte, error) {
	if size > limit {
		return nil, errdefs.NewInvalidArgument(fmt.Errorf("blob %s declares %d bytes, over the %d-byte limit", d, size, limit))
	}
	rc := r.OpenBlob(ctx, d, size, nil)
	defer rc.Close()
	return io.ReadAll(rc)
}

// BlobURL is where blob d is fetched from.
func (r *Repo) blobURL(d digest.Digest) string { return r.base + "/blobs/" + d.String() }

// errorBody extracts the registry's error text for a failed blob request.
func errorBody(resp *http.Response) error {
	var v struct {
		Errors []struct{ Code, Message string }
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &v) == nil && len(v.Errors) > 0 {
		msg = v.Errors[0].Code + ": " + v.Errors[0].Message
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &statusError{code: resp.StatusCode, msg: fmt.Sprintf("registry answered %d: %s", resp.StatusCode, msg)}
}

// Login checks that cred authenticates against ref's registry (the token
// exchange succeeds for ref's repository with pull scope).
func (c *Client) Login(ctx context.Context, ref reference.Ref, cred Credentials) error {
	if cred.empty() {
		return errdefs.NewInvalidArgument(errors.New("no credentials given"))
	}
	repo, err := c.Open(ctx, ref, cred)
	if err != nil {
		return err
	}
	// Ping /v2/ through the authenticated transport: 401 means bad credentials.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(repo.base, "/"+repo.repo.RepositoryStr()), nil)
	if err != nil {
		return err
	}
	req.URL.Path = "/v2/"
	resp, err := repo.client.Do(req)
	if err != nil {
		return classify(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return errdefs.NewUnauthorized(fmt.Errorf("login to %s failed: %s", ref.Domain(), http.StatusText(resp.StatusCode)))
	}
	return nil
}
