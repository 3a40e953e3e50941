package registry_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/flick-edge/flick/internal/reference"
	"github.com/flick-edge/flick/internal/registry"
	"github.com/flick-edge/flick/internal/testregistry"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
)

func testImage(t *testing.T, seed int64) v1.Image {
	t.Helper()
	var layers []v1.Layer
	for i := range int64(2) {
		l, err := imagegen.RandomLayer(seed*10+i, 4, 128<<10, imagegen.Gzip)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := imagegen.Image(layers)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// newClient returns a client with no credentials from the machine (an empty
// keychain), fast retries, certs.d in certsDir, and transport (nil for the
// default).
func newClient(t *testing.T, certsDir string, tr http.RoundTripper, insecure ...string) *registry.Client {
	t.Helper()
	c, err := registry.New(registry.Options{
		CertsDir: certsDir, Transport: tr, Insecure: insecure, Keychain: authn.NewMultiKeychain(),
		MaxAttempts: 3, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pull fetches ref's manifest, config and every layer through c, as the pull
// pipeline does, and checks that they are want's.
func pull(t *testing.T, c *registry.Client, ref string, cred registry.Credentials, want v1.Image) error {
	t.Helper()
	r, err := reference.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	repo, err := c.Open(ctx, r, cred)
	if err != nil {
		return err
	}
	_, body, dgst, err := repo.Manifest(ctx, r.Tag())
	if err != nil {
		return err
	}
	if wd, _ := want.Digest(); dgst.String() != wd.String() {
		t.Fatalf("manifest digest %s, want %s", dgst, wd)
	}
	m, err := v1.ParseManifest(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Blob(ctx, digest.Digest(m.Config.Digest.String()), m.Config.Size, 1<<20); err != nil {
		return err
	}
	for _, l := range m.Layers {
		rc := repo.OpenBlob(ctx, digest.Digest(l.Digest.String()), l.Size, nil)
		_, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// aliasTransport dials 127.0.0.1 for every host in names (host -> IP), so a
// loopback registry can be reached under a name that is not loopback.
func aliasTransport(names map[string]string) *http.Transport {
	return &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err == nil {
			if ip, ok := names[host]; ok {
				addr = net.JoinHostPort(ip, port)
			}
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

func port(t *testing.T, hostport string) string {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A registry that is not loopback is reached over verified HTTPS: its CA must
// be in certs.d/<host:port>/, and the error says so when it is not.
func TestTLSRegistryTrustedThroughCertsDir(t *testing.T) {
	reg := testregistry.Start(t, testregistry.WithTLS(testregistry.TLSOptions{DNSNames: []string{"registry.flick.test"}}))
	img := testImage(t, 1)
	reg.Push(t, reg.Ref("tls/app:1"), img)
	host := "registry.flick.test:" + port(t, reg.Host())
	ref := host + "/tls/app:1"
	certsDir := t.TempDir()
	c := newClient(t, certsDir, aliasTransport(map[string]string{"registry.flick.test": "127.0.0.1"}))

	start := time.Now()
	err := pull(t, c, ref, registry.Credentials{}, img)
	caPath := filepath.Join(certsDir, host, "ca.crt")
	if err == nil || !errdefs.Is(err, errdefs.FailedPrecondition) || !strings.Contains(err.Error(), caPath) ||
		!strings.Contains(err.Error(), "certificate") {
		t.Fatalf("pull without the CA: %v\nwant a failed-precondition error naming %s", err, caPath)
	}
	t.Logf("without the CA: %v", err)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("an untrusted certificate took %v to report: it must not be retried", d)
	}

	// certs.d is read at each Open: adding the CA fixes the next pull.
	writeFile(t, caPath, reg.CA().CertPEM)
	if err := pull(t, c, ref, registry.Credentials{}, img); err != nil {
		t.Fatalf("pull with %s: %v", caPath, err)
	}
	// A CA for another registry does not help.
	other := newClient(t, t.TempDir(), aliasTransport(map[string]string{"registry.flick.test": "127.0.0.1"}))
	writeFile(t, filepath.Join(certsDir, "elsewhere:5000", "ca.crt"), reg.CA().CertPEM)
	if err := pull(t, other, ref, registry.Credentials{}, img); !errdefs.Is(err, errdefs.FailedPrecondition) {
		t.Fatalf("pull with the CA in another certs.d: %v, want failed precondition", err)
	}
}

// Loopback registries are insecure, as in dockerd: HTTPS first, with any
// certificate, then plain HTTP. A TLS registry and a plain one both work.
func TestLoopbackTriesHTTPSThenHTTP(t *testing.T) {
	tlsReg := testregistry.Start(t, testregistry.WithTLS(testregistry.TLSOptions{}))
	plainReg := testregistry.Start(t)
	img := testImage(t, 2)
	tlsReg.Push(t, tlsReg.Ref("lo/app:1"), img)
	plainReg.Push(t, plainReg.Ref("lo/app:1"), img)
	c := newClient(t, t.TempDir(), nil)
	if err := pull(t, c, tlsReg.Ref("lo/app:1"), registry.Credentials{}, img); err != nil {
		t.Errorf("pull from the TLS loopback registry (no CA in certs.d): %v", err)
	}
	if err := pull(t, c, plainReg.Ref("lo/app:1"), registry.Credentials{}, img); err != nil {
		t.Errorf("pull from the plain-HTTP loopback registry: %v", err)
	}
	if !c.IsInsecure(tlsReg.Host()) || !c.IsInsecure("localhost:5000") || c.IsInsecure("10.1.2.3:5000") {
		t.Errorf("IsInsecure: loopback must be insecure, a private address must not")
	}
}

// A client certificate in certs.d/<host:port>/client.{cert,key} is offered
// for mutual TLS, for an insecure (loopback) registry too.
func TestClientCertificateFromCertsDir(t *testing.T) {
	reg := testregistry.Start(t, testregistry.WithTLS(testregistry.TLSOptions{ClientAuth: true}))
	img := testImage(t, 3)
	reg.Push(t, reg.Ref("mtls/app:1"), img)
	certsDir := t.TempDir()
	c := newClient(t, certsDir, nil)
	dir := filepath.Join(certsDir, reg.Host())
	err := pull(t, c, reg.Ref("mtls/app:1"), registry.Credentials{}, img)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "client.cert")) {
		t.Fatalf("pull without a client certificate: %v\nwant an error naming %s/client.cert", err, dir)
	}
	t.Logf("without a client certificate: %v", err)
	cert, key := reg.ClientCert()
	writeFile(t, filepath.Join(dir, "client.cert"), cert)
	writeFile(t, filepath.Join(dir, "client.key"), key)
	if err := pull(t, c, reg.Ref("mtls/app:1"), registry.Credentials{}, img); err != nil {
		t.Fatalf("pull with a client certificate in %s: %v", dir, err)
	}
}

// certs.d follows dockerd's rules: a .cert needs its .key and a .key its .cert.
func TestCertsDirLayoutErrors(t *testing.T) {
	ca := testregistry.NewCA(t, "test")
	cert, key := ca.Issue(t, "client.flick.test")
	for _, tc := range []struct {
		files map[string][]byte
		want  string
	}{
		{map[string][]byte{"client.cert": cert}, "missing key client.key for client certificate client.cert"},
		{map[string][]byte{"client.key": key}, "missing client certificate client.cert for key client.key"},
		{map[string][]byte{"ca.crt": []byte("not PEM")}, "ca.crt holds no PEM certificate"},
	} {
		certsDir := t.TempDir()
		for n, b := range tc.files {
			writeFile(t, filepath.Join(certsDir, "127.0.0.1:1", n), b)
		}
		r, _ := reference.Parse("127.0.0.1:1/x/y:1")
		_, err := newClient(t, certsDir, nil).Open(context.Background(), r, registry.Credentials{})
		if !errdefs.Is(err, errdefs.FailedPrecondition) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("files %v: %v, want %q", slices.Collect(func(yield func(string) bool) {
				for n := range tc.files {
					yield(n)
				}
			}), err, tc.want)
		}
	}
}

// go-containerregistry falls back to plain HTTP for private addresses;
// dockerd does not, and neither does Flick unless the registry is insecure.
func TestPrivateAddressIsHTTPSOnly(t *testing.T) {
	reg := testregistry.Start(t)
	img := testImage(t, 4)
	reg.Push(t, reg.Ref("priv/app:1"), img)
	tr := aliasTransport(map[string]string{"10.254.0.1": "127.0.0.1"})
	ref := "10.254.0.1:" + port(t, reg.Host()) + "/priv/app:1"
	err := pull(t, newClient(t, t.TempDir(), tr), ref, registry.Credentials{}, img)
	if !errdefs.Is(err, errdefs.FailedPrecondition) || !strings.Contains(err.Error(), "--insecure-registry") {
		t.Fatalf("pull over HTTP from a private address: %v, want a refusal naming --insecure-registry", err)
	}
	t.Logf("private address over HTTP: %v", err)
	if err := pull(t, newClient(t, t.TempDir(), tr, "10.0.0.0/8"), ref, registry.Credentials{}, img); err != nil {
		t.Fatalf("pull with --insecure-registry 10.0.0.0/8: %v", err)
	}
}

// Docker Hub's flow: the registry answers 401 with a Bearer challenge, the
// client fetches a token from the realm (anonymously, or with credentials)
// and retries with it.
func TestBearerTokenAuth(t *testing.T) {
	reg := testregistry.Start(t, testregistry.WithTokenAuth("ci", "t0ken pass"))
	ts := reg.TokenServer()
	img := testImage(t, 5)
	reg.Push(t, reg.Ref("hub/app:1"), img)
	before := len(ts.Requests())
	c := newClient(t, t.TempDir(), nil)

	if err := pull(t, c, reg.Ref("hub/app:1"), registry.Credentials{}, img); err != nil {
		t.Fatalf("anonymous pull: %v", err)
	}
	reqs := ts.Requests()[before:]
	if len(reqs) == 0 {
		t.Fatal("the token endpoint was not called")
	}
	for _, r := range reqs {
		if r.User != "" || r.Status != http.StatusOK || !slices.Equal(r.Scopes, []string{"repository:hub/app:pull"}) {
			t.Errorf("anonymous pull asked the token server %+v, want an anonymous pull scope", r)
		}
	}

	before = len(ts.Requests())
	if err := pull(t, c, reg.Ref("hub/app:1"), registry.Credentials{Username: "ci", Password: "t0ken pass"}, img); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	reqs = ts.Requests()[before:]
	if len(reqs) == 0 || reqs[0].User != "ci" {
		t.Errorf("pull with credentials asked the token server %+v, want user ci", reqs)
	}

	err := pull(t, c, reg.Ref("hub/app:1"), registry.Credentials{Username: "ci", Password: "wrong"}, img)
	if !errdefs.Is(err, errdefs.Unauthorized) {
		t.Errorf("pull with a wrong password: %v, want unauthorized", err)
	}
	if err := c.Login(context.Background(), mustParse(t, reg.Ref("hub/app")), registry.Credentials{Username: "ci", Password: "t0ken pass"}); err != nil {
		t.Errorf("login: %v", err)
	}
}

func mustParse(t *testing.T, s string) reference.Ref {
	t.Helper()
	r, err := reference.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
