package helper

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// withImage makes this (untagged) test build carry img as its helper.
func withImage(t *testing.T, img string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(img))
	oldImage, oldDigest := image, digest
	image, digest = img, hex.EncodeToString(sum[:])+"\n"
	t.Cleanup(func() { image, digest = oldImage, oldDigest })
	return Prefix + hex.EncodeToString(sum[:])[:16]
}

func TestInstallWithoutHelperIsFlickItself(t *testing.T) {
	if Embedded() {
		t.Skip("built with the flickhelper tag")
	}
	got, err := Install(t.TempDir())
	self, _ := os.Executable()
	if err != nil || got != self {
		t.Fatalf("Install = %q, %v; want this executable %q", got, err, self)
	}
}

func TestInstallWritesVerifiesAndReplaces(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "helpers")
	name := withImage(t, "#!/bin/sh\necho helper v2\n")
	// What an earlier build left, and a stray temp file of a cut write.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, old := range []string{Prefix + "0123456789abcdef", "." + Prefix + "0123.tmp-1", "unrelated"} {
		os.WriteFile(filepath.Join(dir, old), []byte("old"), 0o755)
	}
	p, err := Install(dir)
	if err != nil || p != filepath.Join(dir, name) {
		t.Fatalf("Install = %q, %v", p, err)
	}
	b, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(b) != image || st.Mode().Perm() != 0o755 {
		t.Fatalf("installed %q mode %v", b, st.Mode())
	}
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if strings.Join(left, ",") != name+",unrelated" {
		t.Fatalf("left in %s: %v; want only this build's helper and the unrelated file", dir, left)
	}

	// Installed already: kept as it is (same inode).
	before, _ := os.Stat(p)
	if _, err := Install(dir); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(p)
	if !os.SameFile(before, after) {
		t.Fatal("an intact helper was rewritten")
	}

	// Damaged on disk: written anew.
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho tampered\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != image {
		t.Fatalf("damaged helper not replaced: %q", b)
	}
}

func TestInstallRefusesABadDigest(t *testing.T) {
	withImage(t, "x")
	digest = "not-a-digest"
	if _, err := Install(t.TempDir()); err == nil || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("bad embedded digest: %v", err)
	}
}

func TestInstallIntoAnUnwritableDirFails(t *testing.T) {
	withImage(t, "x")
	if _, err := Install("/proc/flick-helpers"); err == nil {
		t.Fatal("install under /proc succeeded")
	}
}
