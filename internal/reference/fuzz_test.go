package reference

import (
	"testing"

	"github.com/flick-edge/flick/internal/errdefs"
)

// FuzzParse checks that Parse never panics, that every error is
// InvalidArgument, and that a parsed Ref survives a round trip through both
// String and Familiar. Seeds live in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			if !errdefs.Is(err, errdefs.InvalidArgument) {
				t.Fatalf("Parse(%q): error %v is %v, want invalid argument", s, err, errdefs.ClassOf(err))
			}
			return
		}
		if r.Path() == "" || r.Domain() == "" || (r.Tag() == "" && r.Digest() == "") {
			t.Fatalf("Parse(%q) = %#v: incomplete", s, r)
		}
		for _, again := range []string{r.String(), r.Familiar()} {
			r2, err := Parse(again)
			if err != nil {
				t.Fatalf("Parse(%q) ok but Parse(%q): %v", s, again, err)
			}
			if r2 != r {
				t.Fatalf("Parse(%q) = %#v, Parse(%q) = %#v", s, r, again, r2)
			}
		}
		_ = IsLoopback(r.Domain())
	})
}
