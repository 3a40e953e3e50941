package image

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/content"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/metadata"
	"github.com/opencontainers/go-digest"
)

// testImage records an image (no layers) with config cfg under tags.
func testImage(t *testing.T, db *metadata.DB, cs content.Store, cfg string, tags ...string) digest.Digest {
	t.Helper()
	id := digest.FromString(cfg)
	if err := cs.WriteBlob(id, []byte(cfg)); err != nil {
		t.Fatal(err)
	}
	repo := []string{"registry.lan/app@" + digest.FromString("manifest "+cfg).String()}
	if _, err := db.CommitImage(metadata.Image{ID: id, ManifestDigest: digest.FromString("manifest " + cfg), Created: time.Now(), RepoDigests: repo}, tags); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestResolve: every way a user names an image finds it, with its tags and
// config, among others; a name that matches none is NotFound.
func TestResolve(t *testing.T) {
	dir := t.TempDir()
	db, err := metadata.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cs, err := content.Open(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	s := New(db, cs, nil, nil, nil)
	testImage(t, db, cs, `{"architecture":"amd64","os":"linux","config":{"Cmd":["other"]},"rootfs":{"type":"layers"}}`, "registry.lan/other:1")
	cfg := `{"architecture":"amd64","os":"linux","config":{"Cmd":["app","--serve"],"WorkingDir":"/srv"},"rootfs":{"type":"layers"}}`
	id := testImage(t, db, cs, cfg, "registry.lan/app:2", "registry.lan/app:latest")
	img, _ := db.Image(id)
	for _, name := range []string{"registry.lan/app:2", "registry.lan/app", id.String(), id.Encoded()[:12], img.RepoDigests[0]} {
		got, err := s.Resolve(name)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", name, err)
		}
		if got.ID != id || !slices.Equal(got.Tags, []string{"registry.lan/app:2", "registry.lan/app:latest"}) ||
			!slices.Equal(got.Config.Image.Config.Cmd, []string{"app", "--serve"}) || got.Config.Image.Config.WorkingDir != "/srv" {
			t.Fatalf("Resolve(%q) = %+v", name, got)
		}
	}
	for _, name := range []string{"registry.lan/app:3", "sha256:" + digest.FromString("none").Encoded(), "abcdef123456"} {
		if _, err := s.Resolve(name); !errdefs.Is(err, errdefs.NotFound) {
			t.Fatalf("Resolve(%q): %v, want NotFound", name, err)
		}
	}
	if _, err := s.Resolve("Bad Name"); err == nil {
		t.Fatal("a malformed name resolved")
	}
}
