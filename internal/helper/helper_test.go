package helper

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// withImages makes this (untagged) test build carry mon and ini as its
// helpers; it returns their installed names.
func withImages(t *testing.T, mon, ini string) (string, string) {
	t.Helper()
	old := [4]string{monitorImage, monitorDigest, initImage, initDigest}
	t.Cleanup(func() { monitorImage, monitorDigest, initImage, initDigest = old[0], old[1], old[2], old[3] })
	set := func(img string, image, digest *string, name string) string {
		sum := sha256.Sum256([]byte(img))
		*image, *digest = img, hex.EncodeToString(sum[:])+"\n"
		return name + "-" + hex.EncodeToString(sum[:])[:16]
	}
	return set(mon, &monitorImage, &monitorDigest, MonitorName), set(ini, &initImage, &initDigest, InitName)
}

func TestInstallWithoutHelperIsFlickItself(t *testing.T) {
	if Embedded() {
		t.Skip("built with the flickhelper tag")
	}
	got, err := Install(t.TempDir())
	self, _ := os.Executable()
	if err != nil || got.Monitor != self || got.Init != self {
		t.Fatalf("Install = %+v, %v; want this executable %q", got, err, self)
	}
}

func TestInstallWritesVerifiesAndReplaces(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "helpers")
	monName, initName := withImages(t, "#!/bin/sh\necho monitor v2\n", "#!/bin/sh\necho init v2\n")
	// What earlier builds left (the one-helper layout too), and stray temp
	// files of cut writes.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, old := range []string{"flick-helper-0123456789abcdef", MonitorName + "-0123456789abcdef", InitName + "-fedcba9876543210",
		"." + MonitorName + "-0123.tmp-1", "unrelated"} {
		os.WriteFile(filepath.Join(dir, old), []byte("old"), 0o755)
	}
	got, err := Install(dir)
	if err != nil || got.Monitor != filepath.Join(dir, monName) || got.Init != filepath.Join(dir, initName) {
		t.Fatalf("Install = %+v, %v", got, err)
	}
	for p, want := range map[string]string{got.Monitor: monitorImage, got.Init: initImage} {
		b, _ := os.ReadFile(p)
		st, _ := os.Stat(p)
		if string(b) != want || st.Mode().Perm() != 0o755 {
			t.Fatalf("installed %s: %q mode %v", p, b, st.Mode())
		}
	}
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if strings.Join(left, ",") != initName+","+monName+",unrelated" {
		t.Fatalf("left in %s: %v; want only this build's helpers and the unrelated file", dir, left)
	}
	p := got.Monitor

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
	if b, _ := os.ReadFile(p); string(b) != monitorImage {
		t.Fatalf("damaged helper not replaced: %q", b)
	}
}

func TestInstallRefusesABadDigest(t *testing.T) {
	withImages(t, "x", "y")
	initDigest = "not-a-digest"
	if _, err := Install(t.TempDir()); err == nil || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("bad embedded digest: %v", err)
	}
}

func TestInstallIntoAnUnwritableDirFails(t *testing.T) {
	withImages(t, "x", "y")
	if _, err := Install("/proc/flick-helpers"); err == nil {
		t.Fatal("install under /proc succeeded")
	}
}

// A data root that cannot hold the helpers: they run from memory.
func TestInMemoryHelpersRun(t *testing.T) {
	withImages(t, "#!/bin/sh\necho monitor from memory\n", "#!/bin/sh\necho init from memory\n")
	got, err := InMemory()
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{got.Monitor: "monitor from memory\n", got.Init: "init from memory\n"} {
		if !strings.HasPrefix(p, fmt.Sprintf("/proc/%d/fd/", os.Getpid())) {
			t.Fatalf("in-memory helper at %q", p)
		}
		out, err := exec.Command(p).Output()
		if err != nil || string(out) != want {
			t.Fatalf("running %s: %q, %v; want %q", p, out, err, want)
		}
		// Sealed: nobody rewrites what monitors will run.
		if f, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
			_, werr := f.WriteString("#!/bin/sh\necho changed\n")
			f.Close()
			if werr == nil {
				t.Fatalf("wrote to the sealed helper %s", p)
			}
		}
	}
}
