package runtime

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flick-edge/flick/internal/bundle"
)

// copyUpFixture is an image root with /data (a file with a set-uid mode
// and an owner, a symlink, a subdirectory, a read-only directory) and a
// new, empty volume.
func copyUpFixture(t *testing.T) (root string, mt bundle.Mount) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: keeps owners")
	}
	base := t.TempDir()
	root = filepath.Join(base, "rootfs")
	data := filepath.Join(root, "data")
	for _, d := range []string{filepath.Join(data, "sub"), filepath.Join(data, "ro")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(data, "conf"), []byte("image-config\n"), 0o644))
	must(os.Lchown(filepath.Join(data, "conf"), 1000, 1001))
	must(os.Chmod(filepath.Join(data, "conf"), os.ModeSetuid|0o750)) // after the chown, which clears set-id bits
	must(os.WriteFile(filepath.Join(data, "ro", "f"), []byte("x"), 0o644))
	must(os.Chmod(filepath.Join(data, "ro"), 0o555))
	must(os.Symlink("../etc/passwd", filepath.Join(data, "link")))
	old := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	must(os.Chtimes(filepath.Join(data, "conf"), old, old))
	vol := filepath.Join(base, "volumes", "v", "_data")
	must(os.MkdirAll(vol, 0o755))
	return root, bundle.Mount{Source: vol, Target: "/data", CopyUp: true}
}

func TestCopyUpFillsAnEmptyVolume(t *testing.T) {
	root, mt := copyUpFixture(t)
	if err := copyUp(root, mt); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(mt.Source, "conf"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode()&(os.ModePerm|os.ModeSetuid) != 0o750|os.ModeSetuid || st.Uid != 1000 || st.Gid != 1001 || fi.ModTime().Year() != 2024 {
		t.Fatalf("conf: mode %v, owner %d:%d, time %v; want the image's", fi.Mode(), st.Uid, st.Gid, fi.ModTime())
	}
	if l, err := os.Readlink(filepath.Join(mt.Source, "link")); err != nil || l != "../etc/passwd" {
		t.Fatalf("symlink: %q %v", l, err)
	}
	if b, err := os.ReadFile(filepath.Join(mt.Source, "ro", "f")); err != nil || string(b) != "x" {
		t.Fatalf("a file in a read-only directory: %q %v", b, err)
	}
	if fi, _ := os.Stat(filepath.Join(mt.Source, "ro")); fi.Mode().Perm() != 0o555 {
		t.Fatalf("read-only directory's mode: %v", fi.Mode())
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(mt.Source), copyingMark)); !os.IsNotExist(err) {
		t.Fatalf("the copying mark stayed: %v", err)
	}

	// The app's content is the app's: a volume with anything in it is left
	// alone.
	os.RemoveAll(mt.Source)
	os.MkdirAll(mt.Source, 0o755)
	os.WriteFile(filepath.Join(mt.Source, "app"), nil, 0o644)
	if err := copyUp(root, mt); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(mt.Source, "conf")); !os.IsNotExist(err) {
		t.Fatal("copied into a volume that had content")
	}
}

// A copy cut short (the mark there, half the tree) is done again from
// scratch rather than left half filled.
func TestCopyUpRedoesAnInterruptedCopy(t *testing.T) {
	root, mt := copyUpFixture(t)
	os.WriteFile(filepath.Join(mt.Source, "conf"), []byte("hal"), 0o644)
	os.WriteFile(filepath.Join(mt.Source, "stray"), nil, 0o644)
	os.WriteFile(filepath.Join(filepath.Dir(mt.Source), copyingMark), nil, 0o600)
	if err := copyUp(root, mt); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(mt.Source, "conf")); string(b) != "image-config\n" {
		t.Fatalf("conf after the redo: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(mt.Source, "stray")); !os.IsNotExist(err) {
		t.Fatal("the interrupted copy's leftovers stayed")
	}
}

// The image's path is resolved inside the root (an absolute symlink to
// the host's /etc is the root's /etc), and a mount inside the image's
// tree is not copied.
func TestCopyUpStaysInTheRoot(t *testing.T) {
	root, mt := copyUpFixture(t)
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "mine"), []byte("root's"), 0o644)
	os.Symlink("/etc", filepath.Join(root, "cfg"))
	mt.Target = "/cfg"
	if err := copyUp(root, mt); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(mt.Source)
	if len(ents) != 1 || ents[0].Name() != "mine" {
		t.Fatalf("copied %v; want the root's /etc (mine), not the host's", ents)
	}

	mt.Target = "/data"
	os.RemoveAll(mt.Source)
	os.MkdirAll(mt.Source, 0o755)
	if err := unix.Mount("tmpfs", filepath.Join(root, "data", "sub"), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(filepath.Join(root, "data", "sub"), unix.MNT_DETACH)
	os.WriteFile(filepath.Join(root, "data", "sub", "mounted"), nil, 0o644)
	if err := copyUp(root, mt); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(mt.Source, "sub")); !os.IsNotExist(err) {
		t.Fatal("copied a file system mounted inside the image's tree")
	}
}

// Writes stay in the volume: a symlink planted in it (by another
// container sharing the volume) is not followed out of it.
func TestCopyUpWritesOnlyInTheVolume(t *testing.T) {
	root, mt := copyUpFixture(t)
	outside := t.TempDir()
	src, err := openInRoot(root, "/data")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenRoot(mt.Source)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := os.Symlink(outside, filepath.Join(mt.Source, "sub")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "data", "sub", "f"), []byte("image"), 0o644)
	fi, _ := src.Lstat("sub/f")
	c := copier{src: src, dst: dst}
	if err := c.file("sub/f", fi); err == nil {
		t.Fatal("a write through a symlink out of the volume succeeded")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("wrote outside the volume: %v", ents)
	}
}
