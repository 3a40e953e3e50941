package durable

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x")
	for _, s := range []string{"one", "two"} {
		if err := WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != s {
			t.Fatalf("got %q, %v; want %q", b, err, s)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temp files left behind: %v", ents)
	}
}

func TestSyncersAndCommitDir(t *testing.T) {
	for _, mode := range []Mode{ModeSyncFS, ModeFsync} {
		t.Run(string(mode), func(t *testing.T) {
			s, err := NewSyncer(mode)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			src := filepath.Join(dir, "staging")
			os.MkdirAll(filepath.Join(src, "a", "b"), 0o755)
			os.WriteFile(filepath.Join(src, "a", "b", "f"), []byte("data"), 0o644)
			os.Symlink("f", filepath.Join(src, "a", "b", "l"))
			if err := s.SyncTree(src); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(dir, "committed")
			if err := CommitDir(src, dst); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dst, "a", "b", "f")); err != nil {
				t.Fatal(err)
			}
			if err := RemoveAll(dst); err != nil {
				t.Fatal(err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("left behind: %v", ents)
			}
		})
	}
	if _, err := NewSyncer("bogus"); err == nil {
		t.Fatal("want error for unknown mode")
	}
}

func TestFreeBytes(t *testing.T) {
	n, err := FreeBytes(t.TempDir())
	if err != nil || n == 0 {
		t.Fatalf("FreeBytes = %d, %v", n, err)
	}
}

func TestDiscardInBackground(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c")
	os.MkdirAll(filepath.Join(p, "upper", "work"), 0o755)
	os.WriteFile(filepath.Join(p, "upper", "f"), []byte("x"), 0o644)
	done := make(chan error, 1)
	if err := DiscardInBackground(p, func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	// Gone from its name at once, whatever the deletion's progress.
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("%s still there after DiscardInBackground: %v", p, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
	// A missing directory is not an error, and no deletion is reported.
	if err := DiscardInBackground(p, func(error) { t.Error("done called for a missing directory") }); err != nil {
		t.Fatal(err)
	}
}
