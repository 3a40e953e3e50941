package metadata

import (
	"path/filepath"
	"testing"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

func TestImageNeedsCommittedLayersAndTagsSwitchAtomically(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l1, l2 := digest.FromString("l1"), digest.FromString("l2")
	img1 := Image{ID: digest.FromString("cfg1"), Layers: []LayerRef{{DiffID: l1}}}
	img2 := Image{ID: digest.FromString("cfg2"), Layers: []LayerRef{{DiffID: l1}, {DiffID: l2}}}

	if _, err := db.CommitImage(img1, []string{"x:1"}); !errdefs.Is(err, errdefs.FailedPrecondition) {
		t.Fatalf("commit with missing layer: %v", err)
	}
	if _, err := db.Tag("x:1"); !errdefs.Is(err, errdefs.NotFound) {
		t.Fatal("tag visible after refused commit")
	}
	db.PutLayer(Layer{DiffID: l1, Size: 1})
	if _, err := db.CommitImage(img1, []string{"x:1"}); err != nil {
		t.Fatal(err)
	}
	db.PutLayer(Layer{DiffID: l2, Size: 2})
	prev, err := db.CommitImage(img2, []string{"x:1"})
	if err != nil || len(prev) != 1 || prev[0] != img1.ID {
		t.Fatalf("prev=%v err=%v", prev, err)
	}
	if id, _ := db.Tag("x:1"); id != img2.ID {
		t.Fatalf("tag -> %s", id)
	}
	if err := db.DeleteLayer(l2); !errdefs.Is(err, errdefs.Conflict) {
		t.Fatalf("deleting used layer: %v", err)
	}
	if err := db.DeleteImage(img2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Tag("x:1"); !errdefs.Is(err, errdefs.NotFound) {
		t.Fatal("tag survived image deletion")
	}
	if err := db.DeleteLayer(l2); err != nil {
		t.Fatal(err)
	}
	db.Close()
	// Reopen: state persisted.
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	imgs, _ := db.Images()
	ls, _ := db.Layers()
	if len(imgs) != 1 || len(ls) != 1 {
		t.Fatalf("after reopen: %d images %d layers", len(imgs), len(ls))
	}
}

func TestDeleteImageAndLayers(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	x, y, z, w := digest.FromString("x"), digest.FromString("y"), digest.FromString("z"), digest.FromString("w")
	for _, l := range []digest.Digest{x, y, z, w} {
		db.PutLayer(Layer{DiffID: l})
	}
	a := Image{ID: digest.FromString("a"), Layers: []LayerRef{{DiffID: x}, {DiffID: y}, {DiffID: w}}}
	b := Image{ID: digest.FromString("b"), Layers: []LayerRef{{DiffID: y}, {DiffID: z}}}
	db.CommitImage(a, []string{"a:1"})
	db.CommitImage(b, []string{"b:1"})
	// w is held (a pull or a container): its record stays.
	if err := db.DeleteImageAndLayers(a.ID, func(d digest.Digest) bool { return d == w }); err != nil {
		t.Fatal(err)
	}
	has := func(d digest.Digest) bool { _, ok, _ := db.Layer(d); return ok }
	if has(x) || !has(y) || !has(z) || !has(w) {
		t.Fatalf("after deleting a: x=%v (want false) y=%v z=%v w=%v (want true)", has(x), has(y), has(z), has(w))
	}
}
