package reference

import (
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/flick-edge/flick/internal/errdefs"
)

const (
	hexA = "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"
	dgA  = digest.Digest("sha256:" + hexA)
	dgB  = digest.Digest("sha256:0000000000000000000000000000000000000000000000000000000000000001")
)

func TestParse(t *testing.T) {
	tests := []struct {
		in                               string
		str, familiar, domain, path, tag string
		dgst                             digest.Digest
	}{
		{"alpine", "docker.io/library/alpine:latest", "alpine:latest", "docker.io", "library/alpine", "latest", ""},
		{"alpine:3.20", "docker.io/library/alpine:3.20", "alpine:3.20", "docker.io", "library/alpine", "3.20", ""},
		{"library/alpine", "docker.io/library/alpine:latest", "alpine:latest", "docker.io", "library/alpine", "latest", ""},
		{"docker.io/alpine", "docker.io/library/alpine:latest", "alpine:latest", "docker.io", "library/alpine", "latest", ""},
		{"index.docker.io/library/alpine", "docker.io/library/alpine:latest", "alpine:latest", "docker.io", "library/alpine", "latest", ""},
		{"user/app:v1.2", "docker.io/user/app:v1.2", "user/app:v1.2", "docker.io", "user/app", "v1.2", ""},
		{"ghcr.io/org/app", "ghcr.io/org/app:latest", "ghcr.io/org/app:latest", "ghcr.io", "org/app", "latest", ""},
		{"ghcr.io/org/sub/app:Tag_1", "ghcr.io/org/sub/app:Tag_1", "ghcr.io/org/sub/app:Tag_1", "ghcr.io", "org/sub/app", "Tag_1", ""},
		{"127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest", "127.0.0.1:5000", "x", "latest", ""},
		{"localhost/x:1", "localhost/x:1", "localhost/x:1", "localhost", "x", "1", ""},
		{"localhost:5000/a/b", "localhost:5000/a/b:latest", "localhost:5000/a/b:latest", "localhost:5000", "a/b", "latest", ""},
		{"[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest", "[::1]:5000", "x", "latest", ""},
		{"registry:5000/x", "registry:5000/x:latest", "registry:5000/x:latest", "registry:5000", "x", "latest", ""},
		{"x@" + string(dgA), "docker.io/library/x@" + string(dgA), "x@" + string(dgA), "docker.io", "library/x", "", dgA},
		{"alpine:3.20@" + string(dgA), "docker.io/library/alpine:3.20@" + string(dgA), "alpine:3.20@" + string(dgA), "docker.io", "library/alpine", "3.20", dgA},
		{"quay.io/a/b@" + string(dgA), "quay.io/a/b@" + string(dgA), "quay.io/a/b@" + string(dgA), "quay.io", "a/b", "", dgA},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			r, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if got := r.String(); got != tc.str {
				t.Errorf("String() = %q, want %q", got, tc.str)
			}
			if got := r.Familiar(); got != tc.familiar {
				t.Errorf("Familiar() = %q, want %q", got, tc.familiar)
			}
			if r.Domain() != tc.domain || r.RegistryHost() != tc.domain {
				t.Errorf("Domain() = %q, RegistryHost() = %q, want %q", r.Domain(), r.RegistryHost(), tc.domain)
			}
			if r.Path() != tc.path {
				t.Errorf("Path() = %q, want %q", r.Path(), tc.path)
			}
			if r.Name() != tc.domain+"/"+tc.path {
				t.Errorf("Name() = %q", r.Name())
			}
			if r.Tag() != tc.tag {
				t.Errorf("Tag() = %q, want %q", r.Tag(), tc.tag)
			}
			if r.Digest() != tc.dgst {
				t.Errorf("Digest() = %q, want %q", r.Digest(), tc.dgst)
			}
			for _, again := range []string{r.String(), r.Familiar()} {
				r2, err := Parse(again)
				if err != nil || r2 != r {
					t.Errorf("Parse(%q) = %#v, %v; want %#v", again, r2, err, r)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in   string
		want []string // substrings of the message
	}{
		{"", []string{"invalid reference format", "at least one component", "hint"}},
		{"Alpine", []string{"invalid reference format: repository name must be lowercase", `did you mean "alpine"`}},
		{"docker.io/Library/alpine", []string{"repository name must be lowercase"}},
		{"https://ghcr.io/org/app", []string{"invalid reference format", `drop the "https://" prefix`}},
		{"alpine:", []string{"invalid reference format", "hint"}},
		{"alpine:-tag", []string{"invalid reference format"}},
		{"alpine:" + strings.Repeat("a", 129), []string{"invalid reference format"}},
		{"alpine@sha256:abc", []string{"invalid reference format", "digest"}},
		{"alpine@md5:" + hexA, []string{"invalid reference format"}},
		{hexA, []string{"image ID"}},
		{" alpine", []string{"whitespace"}},
		{"a b", []string{"whitespace"}},
		{"a//b", []string{"invalid reference format"}},
		{"docker.io/" + strings.Repeat("a", 256), []string{"must not be more than 255 characters"}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			r, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error", tc.in, r)
			}
			if !errdefs.Is(err, errdefs.InvalidArgument) {
				t.Errorf("class = %v, want invalid argument", errdefs.ClassOf(err))
			}
			if r != (Ref{}) {
				t.Errorf("Parse returned non-zero Ref %#v with error", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestWithDigest(t *testing.T) {
	r, err := Parse("alpine:3.20")
	if err != nil {
		t.Fatal(err)
	}
	p := r.WithDigest(dgA)
	if p.Tag() != "3.20" || p.Digest() != dgA || p.String() != "docker.io/library/alpine:3.20@"+string(dgA) {
		t.Errorf("WithDigest = %v", p)
	}
	if r.Digest() != "" {
		t.Error("WithDigest mutated the receiver")
	}
	q := p.WithDigest(dgB)
	if q.Digest() != dgB || q.Tag() != "3.20" {
		t.Errorf("re-pin = %v", q)
	}
	if r2, _ := Parse(q.String()); r2 != q {
		t.Errorf("round trip of %v gave %v", q, r2)
	}

	for _, bad := range []digest.Digest{"", "sha256:abc", "nope"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("WithDigest(%q) did not panic", bad)
				}
			}()
			_ = r.WithDigest(bad)
		}()
	}
}

func TestZeroRef(t *testing.T) {
	var r Ref
	if r.String() != "" || r.Familiar() != "" || r.Name() != "" || r.Domain() != "" || r.Tag() != "" || r.Digest() != "" {
		t.Errorf("zero Ref not empty: %#v", r)
	}
}

func TestIsLoopback(t *testing.T) {
	tests := map[string]bool{
		"localhost": true, "LOCALHOST": true, "localhost:5000": true,
		"127.0.0.1": true, "127.0.0.1:5000": true, "127.5.6.7:443": true,
		"::1": true, "[::1]": true, "[::1]:5000": true, "::ffff:127.0.0.1": true,
		"docker.io": false, "10.0.0.1:5000": false, "192.168.1.2": false, "": false,
		"localhost.example.com": false, "128.0.0.1": false, "[::2]:5000": false,
		"mylocalhost:5000": false, "0.0.0.0": false,
	}
	for in, want := range tests {
		if got := IsLoopback(in); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", in, got, want)
		}
	}
}
