package testregistry

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Access is one entry of a token's "access" claim: the actions granted on a
// resource ("repository", "a/b", ["pull"]).
type Access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// TokenRequest is one request the TokenServer answered.
type TokenRequest struct {
	User    string   // "" for an anonymous request
	Service string   // the service parameter
	Scopes  []string // the scopes asked for, e.g. "repository:a/b:pull,push"
	Granted []Access // what the token grants (nil if refused)
	Status  int      // the HTTP status answered
}

// TokenServer is a minimal token server for the distribution registry's
// token authentication (the flow Docker Hub uses): a client the registry
// answered 401 with "WWW-Authenticate: Bearer realm=...,service=...,scope=..."
// GETs realm?service=...&scope=..., with basic credentials or none, and
// retries with the token it gets. Tokens are ES256 JWTs whose "x5c" header
// carries the signing key's self-signed certificate, which is the registry's
// rootcertbundle.
//
// Anonymous requests are granted pull, and nothing else; requests with the
// server's user and password are granted every action they ask for; other
// credentials get 401.
type TokenServer struct {
	// Service and Issuer are the registry's auth.token service and issuer.
	Service, Issuer string

	realm          string
	user, password string
	ca             *CA // the signing key and its self-signed certificate
	srv            *httptest.Server

	mu       sync.Mutex
	requests []TokenRequest
}

// StartTokenServer serves tokens on a free loopback port until the test ends.
// Its realm names the host "localhost", not 127.0.0.1: go-containerregistry
// refuses a realm that is a loopback or private IP address other than the
// registry's own host:port (a guard against requests forged by a registry).
func StartTokenServer(t testing.TB, user, password string) *TokenServer {
	t.Helper()
	ts := &TokenServer{
		Service:  "flick-testregistry",
		Issuer:   "flick-testregistry-token-issuer",
		user:     user,
		password: password,
		ca:       NewCA(t, "flick-testregistry token signer"),
	}
	ts.srv = httptest.NewServer(ts)
	t.Cleanup(ts.srv.Close)
	ts.realm = strings.Replace(ts.srv.URL, "127.0.0.1", "localhost", 1) + "/token"
	return ts
}

// Realm is the URL tokens are fetched from.
func (ts *TokenServer) Realm() string { return ts.realm }

// CertPEM is the signing certificate: the registry's rootcertbundle.
func (ts *TokenServer) CertPEM() []byte { return ts.ca.CertPEM }

// Requests returns the requests answered so far.
func (ts *TokenServer) Requests() []TokenRequest {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return slices.Clone(ts.requests)
}

type tokenError struct {
	Errors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

func (ts *TokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := TokenRequest{Service: q.Get("service")}
	for _, s := range q["scope"] {
		req.Scopes = append(req.Scopes, strings.Fields(s)...)
	}
	fail := func(status int, code, msg string) {
		req.Status = status
		ts.record(req)
		var e tokenError
		e.Errors = append(e.Errors, struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}{code, msg})
		w.Header().Set("Content-Type", "application/json")
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="flick-testregistry-token"`)
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(e)
	}
	if r.Method != http.MethodGet || r.URL.Path != "/token" {
		// 404 also tells an OAuth2 client (POST) to fall back to GET.
		fail(http.StatusNotFound, "NOT_FOUND", "only GET /token is served")
		return
	}
	user, pass, hasAuth := r.BasicAuth()
	if hasAuth && (user != ts.user || pass != ts.password || ts.user == "") {
		req.User = user
		fail(http.StatusUnauthorized, "UNAUTHORIZED", "bad user name or password")
		return
	}
	if hasAuth {
		req.User = user
	}
	if req.Service != ts.Service {
		fail(http.StatusBadRequest, "DENIED", fmt.Sprintf("unknown service %q", req.Service))
		return
	}
	granted := []Access{}
	for _, s := range req.Scopes {
		typ, rest, ok1 := strings.Cut(s, ":")
		i := strings.LastIndex(rest, ":")
		if !ok1 || i < 0 {
			fail(http.StatusBadRequest, "DENIED", fmt.Sprintf("malformed scope %q", s))
			return
		}
		a := Access{Type: typ, Name: rest[:i], Actions: []string{}}
		for _, act := range strings.Split(rest[i+1:], ",") {
			if act != "" && (req.User != "" || act == "pull") && !slices.Contains(a.Actions, act) {
				a.Actions = append(a.Actions, act)
			}
		}
		granted = append(granted, a)
	}
	tok, err := ts.Mint(req.User, granted)
	if err != nil {
		fail(http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	req.Granted, req.Status = granted, http.StatusOK
	ts.record(req)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token":        tok,
		"access_token": tok,
		"expires_in":   300,
		"issued_at":    time.Now().UTC().Format(time.RFC3339),
	})
}

func (ts *TokenServer) record(req TokenRequest) {
	ts.mu.Lock()
	ts.requests = append(ts.requests, req)
	ts.mu.Unlock()
}

// Mint returns a token for subject (may be empty) granting access, valid for
// five minutes: a JWS in compact form, signed with ES256 (the raw r||s
// signature, as JWS wants, not ASN.1).
func (ts *TokenServer) Mint(subject string, access []Access) (string, error) {
	if access == nil {
		access = []Access{}
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	now := time.Now()
	header, err := json.Marshal(map[string]any{
		"typ": "JWT",
		"alg": "ES256",
		"x5c": []string{base64.StdEncoding.EncodeToString(ts.ca.Cert.Raw)},
	})
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(map[string]any{
		"iss":    ts.Issuer,
		"sub":    subject,
		"aud":    ts.Service,
		"exp":    now.Add(5 * time.Minute).Unix(),
		"nbf":    now.Add(-time.Minute).Unix(),
		"iat":    now.Unix(),
		"jti":    hex.EncodeToString(jti[:]),
		"access": access,
	})
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signingInput := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signingInput))
	r, s, err := ecdsa.Sign(rand.Reader, ts.ca.Key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signingInput + "." + enc.EncodeToString(sig), nil
}
