package snapshot

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/flick-edge/flick/internal/durable"
	"github.com/opencontainers/go-digest"
)

func TestStagingCommitAndCleanup(t *testing.T) {
	root := t.TempDir()
	sy, _ := durable.NewSyncer(durable.ModeSyncFS)
	s, err := Open(root, sy)
	if err != nil {
		t.Fatal(err)
	}
	id := digest.FromString("layer")
	st, err := s.NewStaging()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(st.Path, "f"), make([]byte, 10000), 0o644)
	if s.Exists(id) {
		t.Fatal("visible before commit")
	}
	if err := st.Commit(id); err != nil {
		t.Fatal(err)
	}
	if !s.Exists(id) {
		t.Fatal("not visible after commit")
	}
	if u, err := s.Usage(id); err != nil || u < 10000 {
		t.Fatalf("usage %d %v", u, err)
	}
	// A second commit of the same layer (concurrent pull) is discarded quietly.
	st2, _ := s.NewStaging()
	if err := st2.Commit(id); err != nil {
		t.Fatal(err)
	}
	// Leftover staging is removed on start-up.
	st3, _ := s.NewStaging()
	os.WriteFile(filepath.Join(st3.Path, "partial"), []byte("x"), 0o644)
	if _, err := Open(root, sy); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(st3.Path); !os.IsNotExist(err) {
		t.Fatal("staging leftover survived start-up")
	}
	ids, _ := s.List()
	if len(ids) != 1 || ids[0] != id {
		t.Fatalf("List = %v", ids)
	}
	if err := s.Remove(id); err != nil || s.Exists(id) {
		t.Fatalf("remove: %v", err)
	}
}
