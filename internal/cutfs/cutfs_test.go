//go:build linux

package cutfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/flick-edge/flick/internal/durable"
	"golang.org/x/sys/unix"
)

type rig struct {
	t       *testing.T
	backing string
	mp      string
	fs      *FS
}

func newRig(t *testing.T) *rig {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("cutfs tests mount FUSE and need root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	r := &rig{t: t, backing: t.TempDir(), mp: t.TempDir()}
	r.boot()
	return r
}

// boot mounts backing at mp; the unmount is registered with t.Cleanup (which
// runs before the TempDirs are removed), lazily if the mount is busy.
func (r *rig) boot() {
	r.t.Helper()
	f, err := Mount(r.backing, r.mp, Options{})
	if err != nil {
		r.t.Fatal(err)
	}
	r.fs = f
	r.t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			r.t.Errorf("unmount: %v", err)
		}
	})
}

// crash cuts the power and reboots from backing.
func (r *rig) crash() {
	r.t.Helper()
	if err := r.fs.Cut(); err != nil {
		r.t.Fatal(err)
	}
	r.boot()
}

func (r *rig) p(name string) string { return filepath.Join(r.mp, name) }

func (r *rig) write(name, data string, fsync bool) {
	r.t.Helper()
	f, err := os.OpenFile(r.p(name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		r.t.Fatal(err)
	}
	if fsync {
		if err := f.Sync(); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *rig) fsyncDir(name string) {
	r.t.Helper()
	if err := durable.FsyncDir(r.p(name)); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) want(name, data string) {
	r.t.Helper()
	b, err := os.ReadFile(r.p(name))
	if err != nil {
		r.t.Fatalf("%s: %v (want %q)", name, err, data)
	}
	if string(b) != data {
		r.t.Fatalf("%s = %q, want %q", name, b, data)
	}
}

func (r *rig) wantGone(name string) {
	r.t.Helper()
	if _, err := os.Lstat(r.p(name)); !errors.Is(err, os.ErrNotExist) {
		r.t.Fatalf("%s: want it gone, lstat: %v", name, err)
	}
}

func TestUnsyncedWriteIsLost(t *testing.T) {
	r := newRig(t)
	r.write("a", "old", true)
	r.fsyncDir(".")
	r.write("a", "new, never synced", false)
	r.write("b", "", true) // b durable but empty
	r.fsyncDir(".")
	r.write("b", "unsynced", false)
	r.want("a", "new, never synced") // the page cache shows it
	if s := r.fs.Stats(); s.PendingBytes == 0 || s.PendingFiles != 2 {
		t.Fatalf("stats before cut: %+v", s)
	}
	r.crash()
	r.want("a", "old")
	r.want("b", "")
}

func TestFsyncedWriteIsKept(t *testing.T) {
	r := newRig(t)
	r.write("a", "data", true)
	r.fsyncDir(".")
	r.crash()
	r.want("a", "data")
	// Also through a second generation.
	r.write("a", "data2", true)
	r.crash()
	r.want("a", "data2")
}

func TestCreateNeedsDirFsync(t *testing.T) {
	r := newRig(t)
	r.write("f", "synced data", true) // file fsynced, directory not
	r.crash()
	r.wantGone("f")

	r.write("f", "synced data", true)
	r.fsyncDir(".")
	r.crash()
	r.want("f", "synced data")
}

func TestEntryWithoutDataIsEmpty(t *testing.T) {
	// ext4 data=ordered with delayed allocation: the entry is committed,
	// the never-fsynced data is not, the file comes back empty.
	r := newRig(t)
	r.write("f", "never synced", false)
	r.fsyncDir(".")
	r.crash()
	r.want("f", "")
}

func TestRenameOverNeedsDirFsync(t *testing.T) {
	r := newRig(t)
	r.write("a", "old", true)
	r.fsyncDir(".")

	r.write("tmp", "new", true)
	if err := os.Rename(r.p("tmp"), r.p("a")); err != nil {
		t.Fatal(err)
	}
	r.want("a", "new")
	r.crash()
	r.want("a", "old")
	r.wantGone("tmp")

	r.write("tmp", "new", true)
	if err := os.Rename(r.p("tmp"), r.p("a")); err != nil {
		t.Fatal(err)
	}
	r.fsyncDir(".")
	r.crash()
	r.want("a", "new")
	r.wantGone("tmp")
}

func TestUnlinkNeedsDirFsync(t *testing.T) {
	r := newRig(t)
	r.write("a", "x", true)
	r.fsyncDir(".")
	os.Remove(r.p("a"))
	r.crash()
	r.want("a", "x")
	os.Remove(r.p("a"))
	r.fsyncDir(".")
	r.crash()
	r.wantGone("a")
}

// Flick's recipe: durable.WriteFile into a durable directory survives.
func TestDurableWriteFileSurvives(t *testing.T) {
	r := newRig(t)
	for i := 0; i < 3; i++ {
		if err := durable.WriteFile(r.p("meta.json"), []byte(fmt.Sprint("v", i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r.crash()
	r.want("meta.json", "v2")
	ents, _ := os.ReadDir(r.mp)
	if len(ents) != 1 {
		t.Fatalf("entries after cut: %v", ents)
	}
	st, _ := os.Stat(r.p("meta.json"))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
}

// MkdirAll alone does not make the new directories' names durable: under the
// model (and POSIX) each new directory needs an fsync of its parent. With
// those fsyncs, a tree of durable.WriteFile files survives.
func TestMkdirAllTree(t *testing.T) {
	r := newRig(t)
	if err := os.MkdirAll(r.p("root/a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := durable.WriteFile(r.p("root/a/b/f"), []byte("lost"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.crash()
	r.wantGone("root")

	if err := os.MkdirAll(r.p("root/a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{".", "root", "root/a"} {
		r.fsyncDir(d)
	}
	for _, n := range []string{"root/a/f1", "root/a/b/f2", "root/a/b/f3"} {
		if err := durable.WriteFile(r.p(n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Durable removal by rename to trash, too.
	if err := durable.RemoveAll(r.p("root/a/b/f3")); err != nil {
		t.Fatal(err)
	}
	r.crash()
	r.want("root/a/f1", "root/a/f1")
	r.want("root/a/b/f2", "root/a/b/f2")
	r.wantGone("root/a/b/f3")
	// The trash's own unlink was never made durable: it may come back, and
	// Flick's start-up cleanup is what deletes it.
	r.want("root/a/b/"+durable.TrashPrefix+"f3", "root/a/b/f3")
	if st, err := os.Stat(r.p("root/a")); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("root/a: %v %v", st, err)
	}
}

// durable.Discard (the --rm container's removal) is atomic but not durable:
// the tree is gone at once, and after a cut it is back whole, never half.
func TestDurableDiscard(t *testing.T) {
	r := newRig(t)
	if err := durable.MkdirAll(r.p("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"d/a", "d/b"} {
		if err := durable.WriteFile(r.p(n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := durable.Discard(r.p("d")); err != nil {
		t.Fatal(err)
	}
	r.wantGone("d")
	r.wantGone(durable.TrashPrefix + "d")
	r.crash()
	r.want("d/a", "d/a")
	r.want("d/b", "d/b")
	if err := durable.Discard(r.p("missing")); err != nil {
		t.Fatalf("Discard of a missing path: %v", err)
	}
}

// durable.MkdirAll is the fix for what TestMkdirAllTree shows: every new
// directory's entry is fsynced in its parent, so files made durable inside
// survive a cut on a fresh data root.
func TestDurableMkdirAll(t *testing.T) {
	r := newRig(t)
	if err := durable.MkdirAll(r.p("root/a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := durable.WriteFile(r.p("root/a/b/f"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.crash()
	r.want("root/a/b/f", "kept")
}

// A subtree is made durable in a staging directory, then committed with one
// rename (durable.CommitDir), as Flick commits layer snapshots.
func TestCommitDir(t *testing.T) {
	r := newRig(t)
	os.Mkdir(r.p("snap"), 0o755)
	r.fsyncDir(".")
	os.MkdirAll(r.p("snap/staging/x"), 0o755)
	r.write("snap/staging/x/f", "layer", false)
	os.Symlink("f", r.p("snap/staging/x/l"))
	s, _ := durable.NewSyncer(durable.ModeFsync)
	if err := s.SyncTree(r.p("snap/staging")); err != nil {
		t.Fatal(err)
	}
	if err := durable.CommitDir(r.p("snap/staging"), r.p("snap/1")); err != nil {
		t.Fatal(err)
	}
	r.crash()
	r.want("snap/1/x/f", "layer")
	if tg, err := os.Readlink(r.p("snap/1/x/l")); err != nil || tg != "f" {
		t.Fatalf("symlink: %q %v", tg, err)
	}
	r.wantGone("snap/staging")
}

// fsync of the directory a file is renamed into commits the rename as a
// whole, and the earlier operations it depends on.
func TestCrossDirRename(t *testing.T) {
	r := newRig(t)
	os.Mkdir(r.p("a"), 0o755)
	os.Mkdir(r.p("b"), 0o755)
	r.fsyncDir(".")
	r.write("a/x", "payload", true)
	if err := os.Rename(r.p("a/x"), r.p("b/y")); err != nil {
		t.Fatal(err)
	}
	r.fsyncDir("b")
	r.crash()
	r.want("b/y", "payload")
	r.wantGone("a/x")
}

func TestDirRenameAndHardlink(t *testing.T) {
	r := newRig(t)
	os.MkdirAll(r.p("d/e"), 0o755)
	r.write("d/e/f", "f", true)
	r.fsyncDir("d/e")
	r.fsyncDir("d")
	r.fsyncDir(".")
	if err := os.Link(r.p("d/e/f"), r.p("d/g")); err != nil {
		t.Fatal(err)
	}
	r.fsyncDir("d")
	if err := os.Rename(r.p("d"), r.p("D")); err != nil {
		t.Fatal(err)
	}
	r.fsyncDir(".")
	r.crash()
	r.wantGone("d")
	r.want("D/e/f", "f")
	r.want("D/g", "f")
	a, _ := os.Stat(r.p("D/e/f"))
	b, _ := os.Stat(r.p("D/g"))
	if !os.SameFile(a, b) {
		t.Fatal("hard link not preserved across the reboot")
	}
}

// syncfs(2) does not reach a FUSE daemon (the kernel sends FUSE_SYNCFS only
// to virtiofs), so it makes nothing durable here: run Flick with
// --sync-mode fsync on this filesystem.
func TestSyncfsIsNotObserved(t *testing.T) {
	r := newRig(t)
	r.write("a", "x", false)
	d, err := unix.Open(r.mp, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Syncfs(d); err != nil {
		t.Logf("syncfs: %v", err)
	}
	unix.Close(d)
	unix.Sync()
	r.crash()
	r.wantGone("a")
}

func TestCutAfter(t *testing.T) {
	r := newRig(t)
	r.write("keep", "k", true)
	r.fsyncDir(".")
	var fired atomic.Int32
	r.fs.OnCut(func() { fired.Add(1) })
	before := r.fs.Stats().Ops
	r.fs.CutAfter(3)
	f, err := os.Create(r.p("f")) // op 1
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("data"); err != nil { // op 2
		t.Fatal(err)
	}
	err = f.Sync() // op 3: cut
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync at the cut: %v, want EIO", err)
	}
	if fired.Load() != 1 {
		t.Fatalf("hook fired %d times", fired.Load())
	}
	if _, err := f.WriteString("more"); err == nil {
		t.Fatal("write after the cut succeeded")
	}
	f.Close()
	s := r.fs.Stats()
	if !s.Cut || s.Ops != before+3 || s.PendingOps != 0 || s.PendingBytes != 0 {
		t.Fatalf("stats: %+v (ops before %d)", s, before)
	}
	if err := r.fs.Cut(); err != nil { // idempotent; waits for the unmount
		t.Fatal(err)
	}
	if fired.Load() != 1 {
		t.Fatalf("hook fired %d times", fired.Load())
	}
	r.boot()
	r.wantGone("f")
	r.want("keep", "k")
}

// Cut with a file still open: the mount is detached lazily, no mount stays.
func TestCutWithOpenFile(t *testing.T) {
	r := newRig(t)
	f, err := os.Create(r.p("open"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r.crash()
	if _, err := f.WriteString("x"); err == nil {
		t.Fatal("write through a cut mount succeeded")
	}
	r.wantGone("open")
}

func TestConcurrentWriters(t *testing.T) {
	r := newRig(t)
	const workers, rounds = 8, 20
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				n := r.p(fmt.Sprintf("w%d", w))
				if err := durable.WriteFile(n, []byte(fmt.Sprintf("%d-%d", w, i)), 0o644); err != nil {
					t.Error(err)
					return
				}
				if err := os.WriteFile(r.p(fmt.Sprintf("u%d-%d", w, i)), []byte("unsynced"), 0o644); err != nil {
					t.Error(err)
					return
				}
				_ = r.fs.Stats()
			}
		}()
	}
	wg.Wait()
	r.crash()
	ents, err := os.ReadDir(r.mp)
	if err != nil {
		t.Fatal(err)
	}
	// WriteFile's directory fsyncs also commit the unsynced creates that
	// preceded them (they touch the same directory) — as empty files.
	for _, e := range ents {
		if e.Name()[0] == 'u' {
			r.want(e.Name(), "")
		}
	}
	for w := 0; w < workers; w++ {
		r.want(fmt.Sprintf("w%d", w), fmt.Sprintf("%d-%d", w, rounds-1))
	}
}
