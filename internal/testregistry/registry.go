// Package testregistry runs a real container registry for tests: Debian's
// docker-registry (the CNCF distribution registry, version 2.8), as a child
// process on a loopback port with its storage in the test's temporary
// directory. It also has helpers to push images, indexes, raw manifests and
// raw blobs to it, and a fault-injecting HTTP proxy (FaultProxy) to put
// between a client under test and the registry. Options make the registry
// serve HTTPS (WithTLS, with a CA generated for the test) or require basic
// (WithBasicAuth) or bearer-token (WithTokenAuth, with a TokenServer) auth.
//
// The registry binary is required: Start fails the test, it does not skip it,
// when docker-registry is not installed (apt-get install docker-registry).
package testregistry

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
)

// DefaultBinary is the registry binary Start runs unless the environment
// variable BinaryEnv names another.
const DefaultBinary = "/usr/bin/docker-registry"

// BinaryEnv is the environment variable that overrides DefaultBinary.
const BinaryEnv = "FLICK_TEST_REGISTRY_BIN"

// startTimeout bounds how long Start waits for the registry to answer.
const startTimeout = 30 * time.Second

// Option configures Start.
type Option func(*config)

type config struct {
	user, password string
	token          bool
	tls            *TLSOptions
}

// WithBasicAuth makes the registry require HTTP basic authentication with
// this user and password (htpasswd auth, with a bcrypt entry). The Registry's
// own helpers (Push, PushRaw, ...) authenticate by themselves; Auth gives the
// credentials to other clients.
func WithBasicAuth(user, password string) Option {
	return func(c *config) { c.user, c.password, c.token = user, password, false }
}

// WithTokenAuth makes the registry require bearer tokens (its auth.token
// mode, the flow Docker Hub uses) from a TokenServer started for the test:
// anonymous clients get pull access only, and user with password get every
// action. The Registry's own helpers authenticate by themselves; Auth gives
// the credentials to other clients, and TokenServer shows the requests.
// The token server's realm is plain HTTP, so do not combine with WithTLS.
func WithTokenAuth(user, password string) Option {
	return func(c *config) { c.user, c.password, c.token = user, password, true }
}

// TLSOptions configure WithTLS.
type TLSOptions struct {
	// DNSNames are names the server certificate is valid for besides
	// 127.0.0.1, ::1 and localhost.
	DNSNames []string
	// ClientAuth makes the registry require a client certificate issued by
	// its CA (mutual TLS); ClientCert returns one.
	ClientAuth bool
}

// WithTLS makes the registry serve HTTPS only, with a certificate issued by a
// CA generated for this registry (CA returns it). The Registry's own helpers
// trust that CA (and present ClientCert); other clients must be told to.
func WithTLS(o TLSOptions) Option {
	return func(c *config) { c.tls = &o }
}

// Registry is a running docker-registry. Its methods may be called from
// several goroutines at once.
type Registry struct {
	host      string
	dataDir   string
	logPath   string
	cfg       config
	client    *http.Client
	transport *http.Transport
	ca        *CA
	clientPEM [2][]byte // client certificate and key, with TLSOptions.ClientAuth
	tokens    *TokenServer
}

// Start launches the registry binary (DefaultBinary, or the one BinaryEnv
// names) serving plain HTTP on a free 127.0.0.1 port, with filesystem storage
// in a new directory under t.TempDir(), deletes enabled, log level warn and
// health checks off. It returns once GET /v2/ answers, and registers a
// t.Cleanup that stops the registry (SIGTERM, then SIGKILL after 5 s) and
// reaps it. The registry's log is shown with t.Log if the test failed.
//
// If the binary is missing, Start fails the test with
// "docker-registry not found: apt-get install docker-registry".
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	bin := DefaultBinary
	if b := os.Getenv(BinaryEnv); b != "" {
		bin = b
	}
	binPath, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("docker-registry not found: apt-get install docker-registry (looked for %s: %v)", bin, err)
	}

	dir := t.TempDir()
	r := &Registry{
		dataDir:   filepath.Join(dir, "storage"),
		logPath:   filepath.Join(dir, "registry.log"),
		cfg:       cfg,
		transport: &http.Transport{DisableCompression: true},
	}
	r.client = &http.Client{Transport: r.transport}
	if err := os.MkdirAll(r.dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var extra strings.Builder // more configuration: http.tls, auth
	if cfg.tls != nil {
		r.ca = NewCA(t, "flick-testregistry CA")
		cert, key := r.ca.Issue(t, append([]string{"127.0.0.1", "::1", "localhost"}, cfg.tls.DNSNames...)...)
		files := map[string][]byte{"ca.crt": r.ca.CertPEM, "server.crt": cert, "server.key": key}
		for n, b := range files {
			if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		tc := &tls.Config{RootCAs: r.ca.Pool()}
		fmt.Fprintf(&extra, "  tls:\n    certificate: %q\n    key: %q\n", filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
		if cfg.tls.ClientAuth {
			fmt.Fprintf(&extra, "    clientcas:\n      - %q\n", filepath.Join(dir, "ca.crt"))
			c, k := r.ca.Issue(t, "client.flick.test")
			r.clientPEM = [2][]byte{c, k}
			pair, err := tls.X509KeyPair(c, k)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		r.transport.TLSClientConfig = tc
	}
	switch {
	case cfg.token:
		r.tokens = StartTokenServer(t, cfg.user, cfg.password)
		bundle := filepath.Join(dir, "token-signer.crt")
		if err := os.WriteFile(bundle, r.tokens.CertPEM(), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&extra, "auth:\n  token:\n    realm: %q\n    service: %q\n    issuer: %q\n    rootcertbundle: %q\n",
			r.tokens.Realm(), r.tokens.Service, r.tokens.Issuer, bundle)
	case cfg.user != "":
		htpasswd := filepath.Join(dir, "htpasswd")
		hash, err := bcrypt.GenerateFromPassword([]byte(cfg.password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		entry := cfg.user + ":" + string(hash) + "\n"
		if err := os.WriteFile(htpasswd, []byte(entry), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&extra, "auth:\n  htpasswd:\n    realm: flick-testregistry\n    path: %q\n", htpasswd)
	}

	// The free port is found by binding and releasing it, so another process
	// may take it before the registry does: retry with a new port then.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testregistry: finding a free port: %v", err)
		}
		r.host = fmt.Sprintf("127.0.0.1:%d", port)
		cfgPath := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfgPath, []byte(configYAML(r.dataDir, r.host, extra.String())), 0o644); err != nil {
			t.Fatal(err)
		}
		proc, err := r.launch(binPath, cfgPath)
		if err != nil {
			t.Fatalf("testregistry: starting %s: %v", binPath, err)
		}
		if err := r.waitReady(proc); err != nil {
			proc.stop()
			lastErr = err
			if proc.exited() {
				continue // most likely the port was taken: try another
			}
			break
		}
		t.Cleanup(func() {
			proc.stop()
			if t.Failed() {
				if b, err := os.ReadFile(r.logPath); err == nil && len(b) > 0 {
					t.Logf("docker-registry log (%s):\n%s", r.host, tail(b, 8<<10))
				}
			}
		})
		return r
	}
	log, _ := os.ReadFile(r.logPath)
	t.Fatalf("testregistry: docker-registry did not start: %v\nlog:\n%s", lastErr, tail(log, 8<<10))
	return nil
}

// configYAML is the registry's configuration; extra goes right after the
// http section's keys (so it may add http.tls, then top-level sections).
func configYAML(dataDir, addr, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
health:
  storagedriver:
    enabled: false
http:
  addr: %q
  secret: flick-testregistry-secret
`, dataDir, addr)
	b.WriteString(extra)
	return b.String()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// process is one run of the registry binary.
type process struct {
	cmd      *exec.Cmd
	done     chan struct{} // closed once cmd.Wait returned
	stopOnce sync.Once
}

func (r *Registry) launch(bin, cfgPath string) (*process, error) {
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout = logf
	cmd.Stderr = logf
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL if the process has not exited within
// 5 seconds, and waits until it is reaped.
func (p *process) stop() {
	p.stopOnce.Do(func() {
		if p.exited() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// waitReady polls GET /v2/ until it answers 200 (or 401 with auth on).
func (r *Registry) waitReady(p *process) error {
	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("docker-registry exited: %v", p.cmd.ProcessState)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL()+"/v2/", nil)
		resp, err := r.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			cancel()
			if resp.StatusCode == http.StatusOK || ((r.cfg.user != "" || r.cfg.token) && resp.StatusCode == http.StatusUnauthorized) {
				return nil
			}
			lastErr = fmt.Errorf("GET /v2/: %s", resp.Status)
		} else {
			cancel()
			lastErr = err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no answer within %v: %v", startTimeout, lastErr)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Host returns the registry's address, "127.0.0.1:PORT".
func (r *Registry) Host() string { return r.host }

// URL returns the registry's base URL, "http://127.0.0.1:PORT" (https with
// WithTLS).
func (r *Registry) URL() string {
	if r.ca != nil {
		return "https://" + r.host
	}
	return "http://" + r.host
}

// CA returns the CA that issued the registry's certificate (nil without
// WithTLS).
func (r *Registry) CA() *CA { return r.ca }

// ClientCert returns a client certificate the registry accepts and its key,
// PEM-encoded (nil without TLSOptions.ClientAuth).
func (r *Registry) ClientCert() (certPEM, keyPEM []byte) { return r.clientPEM[0], r.clientPEM[1] }

// Transport returns an HTTP transport that trusts the registry's CA and
// presents ClientCert, for clients under test that need one.
func (r *Registry) Transport() *http.Transport { return r.transport.Clone() }

// TokenServer returns the token server of a registry started WithTokenAuth
// (nil otherwise).
func (r *Registry) TokenServer() *TokenServer { return r.tokens }

// Ref returns a reference to repoAndTag ("repo:tag" or "repo@sha256:...") in
// this registry: Host() + "/" + repoAndTag.
func (r *Registry) Ref(repoAndTag string) string { return r.host + "/" + repoAndTag }

// DataDir returns the registry's storage root directory. Blobs are stored
// under docker/registry/v2/blobs; see BlobPath.
func (r *Registry) DataDir() string { return r.dataDir }

// BlobPath returns the file in which the registry keeps blob d, for tests that
// corrupt or delete stored content behind the registry's back (the registry
// does not verify what it serves).
func (r *Registry) BlobPath(d v1.Hash) string {
	return filepath.Join(r.dataDir, "docker", "registry", "v2", "blobs", d.Algorithm, d.Hex[:2], d.Hex, "data")
}

// Auth returns the authenticator for this registry: basic auth with the
// WithBasicAuth or WithTokenAuth credentials, or anonymous.
func (r *Registry) Auth() authn.Authenticator {
	if r.cfg.user == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: r.cfg.user, Password: r.cfg.password}
}

// Credentials returns the WithBasicAuth or WithTokenAuth user and password
// (empty without).
func (r *Registry) Credentials() (user, password string) {
	return r.cfg.user, r.cfg.password
}

// RemoteOptions returns go-containerregistry remote options to talk to this
// registry (its credentials, and with WithTLS a transport trusting its CA),
// followed by extra.
func (r *Registry) RemoteOptions(extra ...remote.Option) []remote.Option {
	opts := []remote.Option{remote.WithAuth(r.Auth())}
	if r.ca != nil {
		opts = append(opts, remote.WithTransport(r.Transport()))
	}
	return append(opts, extra...)
}

func (r *Registry) parseRef(t testing.TB, ref string) name.Reference {
	t.Helper()
	n, err := name.ParseReference(ref, name.Insecure, name.StrictValidation)
	if err != nil {
		t.Fatalf("testregistry: bad reference %q: %v", ref, err)
	}
	return n
}

// Push writes img to ref (which may name this registry or a FaultProxy in
// front of it) with go-containerregistry's remote.Write, and returns the
// manifest's digest. It fails the test on error.
func (r *Registry) Push(t testing.TB, ref string, img v1.Image) v1.Hash {
	t.Helper()
	n := r.parseRef(t, ref)
	if err := remote.Write(n, img, r.RemoteOptions()...); err != nil {
		t.Fatalf("testregistry: pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("testregistry: digest of %s: %v", ref, err)
	}
	return d
}

// PushIndex writes idx, with all its images, to ref with
// remote.WriteIndex, and returns the index's digest. It fails the test on
// error.
func (r *Registry) PushIndex(t testing.TB, ref string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	n := r.parseRef(t, ref)
	if err := remote.WriteIndex(n, idx, r.RemoteOptions()...); err != nil {
		t.Fatalf("testregistry: pushing index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatalf("testregistry: digest of %s: %v", ref, err)
	}
	return d
}

// PushRaw PUTs manifest, byte for byte, as repo's manifest reference (a tag
// or a digest) with Content-Type mediaType, and returns the digest the
// registry reports. It fails the test if the registry refuses it.
//
// The registry checks what it stores: it refuses a manifest that does not
// parse as its media type or that names blobs it does not have. Use PutManifest
// to see such a refusal, and FaultProxy.Intercept to serve bytes the registry
// would never store.
func (r *Registry) PushRaw(t testing.TB, repo, reference string, mediaType string, manifest []byte) v1.Hash {
	t.Helper()
	status, body, digest, err := r.PutManifest(repo, reference, mediaType, manifest)
	if err != nil {
		t.Fatalf("testregistry: PUT manifest %s:%s: %v", repo, reference, err)
	}
	if status != http.StatusCreated {
		t.Fatalf("testregistry: PUT manifest %s:%s: status %d: %s", repo, reference, status, body)
	}
	return digest
}

// PutManifest PUTs manifest as PushRaw does but reports the registry's answer
// instead of judging it: the status, the body, and the Docker-Content-Digest
// header (the zero Hash if absent).
func (r *Registry) PutManifest(repo, reference, mediaType string, manifest []byte) (status int, body []byte, digest v1.Hash, err error) {
	u := fmt.Sprintf("%s/v2/%s/manifests/%s", r.URL(), repo, reference)
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(manifest))
	if err != nil {
		return 0, nil, v1.Hash{}, err
	}
	req.Header.Set("Content-Type", mediaType)
	resp, err := r.do(req)
	if err != nil {
		return 0, nil, v1.Hash{}, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
		digest, _ = v1.NewHash(h)
	}
	return resp.StatusCode, body, digest, err
}

// PushBlob uploads data as a blob of repo (a monolithic upload: POST, then
// PUT with the digest) and returns its digest. Nothing checks that data is a
// valid layer or config: use it for garbage and truncated blobs. It fails the
// test on error.
func (r *Registry) PushBlob(t testing.TB, repo string, data []byte) v1.Hash {
	t.Helper()
	d, err := r.pushBlob(repo, data)
	if err != nil {
		t.Fatalf("testregistry: pushing blob to %s: %v", repo, err)
	}
	return d
}

func (r *Registry) pushBlob(repo string, data []byte) (v1.Hash, error) {
	d, _, err := v1.SHA256(bytes.NewReader(data))
	if err != nil {
		return v1.Hash{}, err
	}
	base, err := url.Parse(fmt.Sprintf("%s/v2/%s/blobs/uploads/", r.URL(), repo))
	if err != nil {
		return v1.Hash{}, err
	}
	req, _ := http.NewRequest(http.MethodPost, base.String(), nil)
	resp, err := r.do(req)
	if err != nil {
		return v1.Hash{}, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return v1.Hash{}, fmt.Errorf("POST %s: status %d: %s", base, resp.StatusCode, b)
	}
	loc, err := base.Parse(resp.Header.Get("Location"))
	if err != nil {
		return v1.Hash{}, fmt.Errorf("POST %s: bad Location: %w", base, err)
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	req, _ = http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = r.do(req)
	if err != nil {
		return v1.Hash{}, err
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return v1.Hash{}, fmt.Errorf("PUT %s: status %d: %s", loc.Path, resp.StatusCode, b)
	}
	return d, nil
}

func (r *Registry) do(req *http.Request) (*http.Response, error) {
	switch {
	case r.tokens != nil:
		repo := repoOfPath(req.URL.Path)
		tok, err := r.tokens.Mint(r.cfg.user, []Access{{Type: "repository", Name: repo, Actions: []string{"pull", "push", "delete"}}})
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	case r.cfg.user != "":
		req.SetBasicAuth(r.cfg.user, r.cfg.password)
	}
	return r.client.Do(req)
}

// repoOfPath extracts the repository from a /v2/<repo>/{manifests,blobs}/...
// path ("" for other paths).
func repoOfPath(p string) string {
	p, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return ""
	}
	for _, sep := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(p, sep); i >= 0 {
			return p[:i]
		}
	}
	return ""
}
