package container

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// initLayerTree lists dir's entries with their modes, as "path mode".
func initLayerTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel+" "+fi.Mode().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestInitLayer(t *testing.T) {
	old := syscall.Umask(0o077) // a umask must not change what containers see
	defer syscall.Umask(old)
	root := t.TempDir()
	dir, err := ensureInitLayer(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{". drwxr-xr-x", "dev drwxr-xr-x", "etc drwxr-xr-x", "etc/hostname -rw-r--r--", "etc/hosts -rw-r--r--",
		"etc/resolv.conf -rw-r--r--", "proc drwxr-xr-x", "sys drwxr-xr-x"}
	if got := initLayerTree(t, dir); !slices.Equal(got, want) {
		t.Fatalf("init layer:\n got %q\nwant %q", got, want)
	}
	// Made once: a second daemon start keeps it (the inode stays).
	before, _ := os.Stat(filepath.Join(dir, "etc", "hosts"))
	if again, err := ensureInitLayer(root); err != nil || again != dir {
		t.Fatalf("again: %q, %v", again, err)
	}
	after, _ := os.Stat(filepath.Join(dir, "etc", "hosts"))
	if !os.SameFile(before, after) {
		t.Fatal("a complete init layer was made anew")
	}
	// Incomplete or changed (by hand, or a file system repair): made anew,
	// and what a cut build left behind goes.
	if err := os.Remove(filepath.Join(dir, "etc", "resolv.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "etc", "resolv.conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, stagePrefix+initLayerName, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ensureInitLayer(root); err != nil {
		t.Fatal(err)
	}
	if got := initLayerTree(t, dir); !slices.Equal(got, want) {
		t.Fatalf("repaired init layer:\n got %q\nwant %q", got, want)
	}
	ents, _ := os.ReadDir(root)
	if len(ents) != 1 || ents[0].Name() != initLayerName {
		t.Fatalf("left in %s: %v", root, ents)
	}
}
