package content

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

func TestStore(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(data)
	if err := s.WriteBlob(d, data); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBlob(digest.FromString("other"), data); !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Fatalf("mismatch: got %v, want InvalidArgument", err)
	}
	got, err := s.ReadBlob(d)
	if err != nil || string(got) != string(data) {
		t.Fatalf("ReadBlob = %q, %v", got, err)
	}
	if _, err := s.ReadBlob(digest.FromString("absent")); !errdefs.Is(err, errdefs.NotFound) {
		t.Fatalf("absent: got %v", err)
	}
	// Corruption on disk is detected, not served.
	os.WriteFile(filepath.Join(root, "sha256", d.Encoded()), []byte("garbage"), 0o600)
	if _, err := s.ReadBlob(d); err == nil {
		t.Fatal("corrupt blob served")
	}
	n := 0
	s.Walk(func(digest.Digest, int64) error { n++; return nil })
	if n != 1 {
		t.Fatalf("walk saw %d blobs", n)
	}
	if err := s.Delete(d); err != nil {
		t.Fatal(err)
	}
	// Leftover temp files from an interrupted write are removed on Open.
	os.WriteFile(filepath.Join(root, "sha256", ".x.tmp-1"), nil, 0o600)
	if _, err := Open(root); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "sha256")); len(ents) != 0 {
		t.Fatalf("left: %v", ents)
	}
}
