package reference

import (
	"errors"
	"strings"
	"testing"

	dref "github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// library is what github.com/distribution/reference (docker's parser, the
// oracle grammar.go is held to) makes of s, in parseNormalized's terms.
func library(s string) (parsed, error) {
	named, err := dref.ParseNormalizedNamed(s)
	if err != nil {
		return parsed{}, err
	}
	p := parsed{domain: dref.Domain(named), path: dref.Path(named)}
	if t, ok := named.(dref.Tagged); ok {
		p.tag = t.Tag()
	}
	if d, ok := named.(dref.Digested); ok {
		p.digest = d.Digest()
	}
	return p, nil
}

// sameError reports whether two errors of the parsers say the same thing:
// the same text, or the same sentinel under another name.
func sameError(ours, theirs error) bool {
	if ours.Error() == theirs.Error() {
		return true
	}
	pairs := []struct{ a, b error }{
		{errReferenceInvalidFormat, dref.ErrReferenceInvalidFormat},
		{errNameContainsUppercase, dref.ErrNameContainsUppercase},
		{errNameEmpty, dref.ErrNameEmpty},
		{errNameTooLong, dref.ErrNameTooLong},
	}
	for _, p := range pairs {
		if errors.Is(ours, p.a) && errors.Is(theirs, p.b) {
			return true
		}
	}
	return false
}

// checkAgainstLibrary fails t if parseNormalized and the library disagree
// on s: one accepts it and the other does not, they split it differently,
// or they reject it for different reasons.
func checkAgainstLibrary(t *testing.T, s string) {
	t.Helper()
	got, err := parseNormalized(s)
	want, werr := library(s)
	switch {
	case err != nil && werr != nil:
		if !sameError(err, werr) {
			t.Fatalf("%q: error %q, library says %q", s, err, werr)
		}
	case err != nil:
		t.Fatalf("%q: error %q, library parses it as %+v", s, err, want)
	case werr != nil:
		t.Fatalf("%q: parsed as %+v, library says %q", s, got, werr)
	case got != want:
		t.Fatalf("%q: parsed as %+v, library as %+v", s, got, want)
	}
	if err == nil {
		r, perr := Parse(s)
		if perr == nil {
			named, _ := dref.ParseNormalizedNamed(r.String())
			if fam := dref.FamiliarString(named); fam != r.Familiar() && !strings.HasPrefix(r.Familiar(), "docker.io/") {
				t.Fatalf("%q: Familiar() = %q, library's %q", s, r.Familiar(), fam)
			}
		}
	}
}

// The corners of the grammar, each next to a near miss.
var grammarCases = []string{
	"", "a", "A", "alpine", "alpine:3.20", "alpine:latest", "Alpine", "alpine:Tag_1.0-rc",
	"library/alpine", "docker.io/alpine", "docker.io/library/alpine", "index.docker.io/alpine",
	"index.docker.io/library/alpine", "INDEX.docker.io/alpine", "docker.io/Alpine",
	"localhost/app", "localhost:5000/app", "localhost:5000/app:1", "localhost:/app", "localhost:5x/app",
	"127.0.0.1:5000/a/b/c:tag", "[::1]:5000/app", "[::1]/app", "[::1/app", "[]/app", "[::g]/app",
	"[::1]x/app", "[::1]:/app", "host:5000", "host:5000/", "/app", "app/", "a//b", "a/b/",
	"ghcr.io/org/app:1.0", "Ghcr.io/org/app", "my-registry.example.com/x", "-host.com/x", "host-.com/x",
	"ho--st.com/x", "host..com/x", ".host/x", "host./x", "0_0.0/app", "0.0/app", "a_b/c",
	"a.b", "a..b", "a._b", "a__b", "a___b", "a-b", "a--b", "a-_b", "a_-b", "_a", "a_", "-a", "a-",
	"a.b/c", "a/b.c", "a/b..c", "a/b__c", "a/b___c", "a/b---c", "a/b.-c",
	"a:", "a:-b", "a:.b", "a:b", "a:_b", "a:b:c", "a:b/c", "a/b:c/d", "a:" + strings.Repeat("t", 128),
	"a:" + strings.Repeat("t", 129),
	"a@sha256:" + strings.Repeat("a", 64), "a:1@sha256:" + strings.Repeat("a", 64),
	"a@sha256:" + strings.Repeat("A", 64), "a@sha256:" + strings.Repeat("a", 63),
	"a@sha256:" + strings.Repeat("a", 65), "a@sha256:" + strings.Repeat("a", 31),
	"a@sha256:" + strings.Repeat("a", 32), "a@sha512:" + strings.Repeat("b", 128),
	"a@sha384:" + strings.Repeat("c", 96), "a@md5:" + strings.Repeat("a", 32),
	"a@SHA256:" + strings.Repeat("a", 64), "a@sha-256:" + strings.Repeat("a", 64),
	"a@sha+256:" + strings.Repeat("a", 64), "a@sha.2:" + strings.Repeat("a", 64),
	"a@1sha:" + strings.Repeat("a", 64), "a@sha256" + strings.Repeat("a", 64), "a@",
	"a@b@sha256:" + strings.Repeat("a", 64), "A@sha256:" + strings.Repeat("a", 64),
	"a@Sha256:" + strings.Repeat("A", 64), "a@sha256:" + strings.Repeat("g", 64),
	strings.Repeat("a", 64), strings.Repeat("A", 64), strings.Repeat("a", 63), strings.Repeat("a", 65),
	"sha256:" + strings.Repeat("a", 64), strings.Repeat("a", 64) + ":tag",
	strings.Repeat("a", 255), strings.Repeat("a", 256), "x/" + strings.Repeat("a", 247),
	"x/" + strings.Repeat("a", 248), "reg.io/" + strings.Repeat("a", 256),
	"http://host/app", "app ", " app", "a b", "a\tb", "a/b\n", "ä", "a/ä", "日本",
	"UPPER/case", "upper/Case", "up:per/x", "Up:per/x", "a:B/c",
}

func TestGrammarMatchesDistribution(t *testing.T) {
	for _, s := range grammarCases {
		checkAgainstLibrary(t, s)
	}
}

// FuzzParseMatchesDistribution: for any input, the hand-written parser
// agrees with github.com/distribution/reference. Seeds: grammarCases and
// testdata/fuzz/FuzzParseMatchesDistribution.
func FuzzParseMatchesDistribution(f *testing.F) {
	for _, s := range grammarCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkAgainstLibrary(t, s)
	})
}

func TestDigestStaysGoDigests(t *testing.T) {
	r, err := Parse("a@sha256:" + strings.Repeat("0", 64))
	if err != nil {
		t.Fatal(err)
	}
	if r.Digest().Algorithm() != digest.SHA256 {
		t.Fatalf("digest %q", r.Digest())
	}
}
