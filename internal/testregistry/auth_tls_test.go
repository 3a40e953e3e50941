package testregistry

import (
	"crypto/tls"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/flick-edge/flick/internal/imagegen"
)

func TestTLS(t *testing.T) {
	r := Start(t, WithTLS(TLSOptions{DNSNames: []string{"registry.flick.test"}, ClientAuth: true}))
	if !strings.HasPrefix(r.URL(), "https://") {
		t.Fatalf("URL %s", r.URL())
	}
	img := mustImage(t, 5, imagegen.Gzip, 2)
	r.Push(t, r.Ref("tls/app:1"), img)
	checkPulled(t, r.Ref("tls/app:1"), img, r.RemoteOptions()...)
	// The raw helpers speak TLS too.
	r.PushBlob(t, "tls/raw", []byte("raw blob over TLS"))

	// The certificate is valid for the extra name and issued by CA().
	cert := r.Transport().TLSClientConfig.Certificates
	if len(cert) != 1 {
		t.Fatalf("Transport presents %d client certificates, want 1", len(cert))
	}
	conn, err := tls.Dial("tcp", r.Host(), &tls.Config{ServerName: "registry.flick.test", RootCAs: r.CA().Pool(), Certificates: cert})
	if err != nil {
		t.Fatalf("TLS to %s as registry.flick.test: %v", r.Host(), err)
	}
	conn.Close()

	// Without the CA, the certificate is not trusted; without the client
	// certificate, the registry refuses the connection.
	if _, err := http.Get(r.URL() + "/v2/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("GET without the CA: %v, want a certificate error", err)
	}
	noClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.CA().Pool()}}}
	if resp, err := noClient.Get(r.URL() + "/v2/"); err == nil {
		resp.Body.Close()
		t.Errorf("GET without a client certificate: %s, want an error", resp.Status)
	}
}

func TestTokenAuth(t *testing.T) {
	r := Start(t, WithTokenAuth("ci", "t0ken pass"))
	ts := r.TokenServer()
	img := mustImage(t, 6, imagegen.Gzip, 2)
	r.Push(t, r.Ref("tok/app:1"), img) // basic credentials on the token endpoint, push granted
	r.PushBlob(t, "tok/raw", []byte("raw blob with a minted token"))

	// The registry itself demands a bearer token from the realm.
	resp, err := http.Get(r.URL() + "/v2/tok/app/manifests/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ch := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(ch, "Bearer ") ||
		!strings.Contains(ch, `realm="`+ts.Realm()+`"`) || !strings.Contains(ch, `scope="repository:tok/app:pull"`) {
		t.Fatalf("unauthenticated GET: %s, WWW-Authenticate %q", resp.Status, ch)
	}

	// Anonymous pull: a token with pull access only.
	checkPulled(t, r.Ref("tok/app:1"), img, remote.WithAuth(authn.Anonymous))
	var anon *TokenRequest
	for _, req := range ts.Requests() {
		if req.User == "" && req.Status == http.StatusOK && slices.Contains(req.Scopes, "repository:tok/app:pull") {
			anon = &req
		}
	}
	if anon == nil {
		t.Fatalf("no anonymous pull token was issued: %+v", ts.Requests())
	}
	if len(anon.Granted) != 1 || !slices.Equal(anon.Granted[0].Actions, []string{"pull"}) {
		t.Errorf("anonymous grant %+v, want pull only", anon.Granted)
	}
	var pushed bool
	for _, req := range ts.Requests() {
		for _, g := range req.Granted {
			pushed = pushed || req.User == "ci" && slices.Contains(g.Actions, "push")
		}
	}
	if !pushed {
		t.Errorf("no push token was issued to ci: %+v", ts.Requests())
	}

	// Anonymous push is refused by the registry (the token lacks push).
	err = remote.Write(parse(t, r.Ref("tok/anon:1")), img, remote.WithAuth(authn.Anonymous))
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous push: %v, want 401", err)
	}
	// Wrong credentials are refused by the token server.
	_, err = remote.Image(parse(t, r.Ref("tok/app:1")), remote.WithAuth(&authn.Basic{Username: "ci", Password: "wrong"}))
	if !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
		t.Errorf("pull with a wrong password: %v, want 401", err)
	}
}
