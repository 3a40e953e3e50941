package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/flick-edge/flick/internal/testregistry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestSocketPermissions: the API socket is rw for root and the socket group
// only (0660), owned by root and by group "flick" when that group exists.
func TestSocketPermissions(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	fi, err := os.Lstat(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("%s is %v, not a socket", d.Socket, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm != 0o660 {
		t.Errorf("socket mode %#o, want 0660", perm)
	}
	st := fi.Sys().(*syscall.Stat_t)
	wantGID := 0
	if g, err := user.LookupGroup("flick"); err == nil {
		wantGID, _ = strconv.Atoi(g.Gid)
	}
	if st.Uid != 0 || int(st.Gid) != wantGID {
		t.Errorf("socket owned by %d:%d, want 0:%d (group flick if it exists, else root)", st.Uid, st.Gid, wantGID)
	}
}

// TestStartupGC: a restart removes what a crash can leave behind (a layer
// directory no record accounts for, staging and trash leftovers, an orphan
// blob) and keeps every pulled image intact.
func TestStartupGC(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	d := startDaemon(t)
	img := mustImage(t, []v1.Layer{randomLayer(t, 61, 5, 256<<10, imagegen.Gzip), randomLayer(t, 62, 3, 64<<10, imagegen.Zstd)})
	reg.Push(t, reg.Ref("gc/app:1"), img)
	d.mustFlick(t, "pull", "-q", reg.Ref("gc/app:1"))
	layersBefore := d.layerDirs(t)
	if len(layersBefore) != 2 {
		t.Fatalf("want 2 committed layers, got %v", layersBefore)
	}
	d.Stop()

	snap := filepath.Join(d.DataRoot, "snapshots")
	orphanSum := sha256.Sum256([]byte("orphan layer"))
	orphanLayer := filepath.Join(snap, "layers", hex.EncodeToString(orphanSum[:]))
	stagingLeft := filepath.Join(snap, "staging", "0123456789abcdef")
	trashLeft := filepath.Join(snap, "layers", ".trash-interrupted")
	blob := []byte(`{"orphan":"config"}`)
	blobSum := sha256.Sum256(blob)
	orphanBlob := filepath.Join(d.DataRoot, "content", "sha256", hex.EncodeToString(blobSum[:]))
	for _, dir := range []string{orphanLayer, stagingLeft, trashLeft} {
		if err := os.MkdirAll(filepath.Join(dir, "usr", "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "usr", "bin", "tool"), make([]byte, 64<<10), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(orphanBlob, blob, 0o600); err != nil {
		t.Fatal(err)
	}

	d.Restart()
	for _, p := range []string{orphanLayer, stagingLeft, trashLeft, orphanBlob} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived start-up cleanup (%v)", p, err)
		}
	}
	if !strings.Contains(d.Log(), "removed orphaned layer directory") {
		t.Errorf("the daemon did not log the orphan's removal:\n%s", tailString(d.Log(), 3000))
	}
	if got := d.layerDirs(t); !slices.Equal(got, layersBefore) {
		t.Fatalf("layers after restart %v, want %v", got, layersBefore)
	}
	if s := d.staging(t); len(s) != 0 {
		t.Errorf("staging not empty after restart: %v", s)
	}
	// The pulled image still works: listed, inspectable, and up to date.
	if !hasTag(d.images(t), reg.Ref("gc/app:1")) {
		t.Fatalf("image lost by start-up cleanup: %+v", d.images(t))
	}
	d.mustFlick(t, "image", "inspect", reg.Ref("gc/app:1"))
	if r := d.mustFlick(t, "pull", reg.Ref("gc/app:1")); !strings.Contains(r.Stdout, "Image is up to date") {
		t.Fatalf("pull after restart:\n%s", r.Stdout)
	}
}

// TestDockerHistory: GET /images/{name}/history through the docker CLI shows
// one row per layer, newest first, the top one carrying the image ID.
func TestDockerHistory(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	d := startDaemon(t)
	img := mustImage(t, []v1.Layer{
		randomLayer(t, 71, 2, 32<<10, imagegen.Gzip),
		randomLayer(t, 72, 2, 32<<10, imagegen.Gzip),
		randomLayer(t, 73, 2, 32<<10, imagegen.Gzip),
	})
	reg.Push(t, reg.Ref("hist/app:1"), img)
	d.mustFlick(t, "pull", "-q", reg.Ref("hist/app:1"))
	r := d.docker(t, "history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}", reg.Ref("hist/app:1"))
	if r.Code != 0 {
		t.Fatalf("docker history: %s\ndaemon log:\n%s", r, tailString(d.Log(), 3000))
	}
	rows := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(rows) != 3 {
		t.Fatalf("docker history shows %d rows, want one per layer (3):\n%s", len(rows), r.Stdout)
	}
	id, _ := img.ConfigName()
	for i, row := range rows {
		gotID, createdBy, _ := strings.Cut(row, "|")
		wantID := "<missing>"
		if i == 0 {
			wantID = id.String()
		}
		if gotID != wantID || !strings.Contains(createdBy, "imagegen layer "+strconv.Itoa(2-i)) {
			t.Errorf("row %d: %q, want ID %s created by imagegen layer %d", i, row, wantID, 2-i)
		}
	}
	r = d.docker(t, "history", reg.Ref("hist/absent:1"))
	if r.Code == 0 || !strings.Contains(strings.ToLower(r.Stderr), "no such image") {
		t.Errorf("docker history of a missing image: %s", r)
	}
}

// TestCertsDirClientCertificate: --certs-dir reaches the registry client. A
// registry that requires a client certificate refuses the pull, with an error
// naming the certs.d files; once they are there, the next pull (no restart)
// succeeds.
func TestCertsDirClientCertificate(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t, testregistry.WithTLS(testregistry.TLSOptions{ClientAuth: true}))
	img := mustImage(t, []v1.Layer{randomLayer(t, 81, 3, 64<<10, imagegen.Gzip)})
	reg.Push(t, reg.Ref("mtls/app:1"), img)
	certsDir := filepath.Join(t.TempDir(), "certs.d")
	d := startDaemon(t, withArgs("--certs-dir", certsDir))

	hostDir := filepath.Join(certsDir, reg.Host())
	r := d.flick(t, "pull", "-q", reg.Ref("mtls/app:1"))
	if r.Code == 0 || !strings.Contains(r.Stderr, filepath.Join(hostDir, "client.cert")) {
		t.Fatalf("pull without a client certificate: want a failure naming %s/client.cert: %s", hostDir, r)
	}
	cert, key := reg.ClientCert()
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "client.cert"), cert, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "client.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	d.mustFlick(t, "pull", "-q", reg.Ref("mtls/app:1"))
	if !hasTag(d.images(t), reg.Ref("mtls/app:1")) {
		t.Fatalf("image not listed after the pull: %+v", d.images(t))
	}
}

// TestSystemCheck: a healthy store checks clean; a flipped byte in a blob, a
// flipped byte in a file of an extracted layer, a removed layer directory and
// an orphan directory are each reported, and
// the command fails for the real problems.
func TestSystemCheck(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	d := startDaemon(t)
	img := mustImage(t, []v1.Layer{randomLayer(t, 71, 3, 64<<10, imagegen.Gzip), randomLayer(t, 72, 3, 64<<10, imagegen.Gzip)})
	reg.Push(t, reg.Ref("check/app:1"), img)
	d.mustFlick(t, "pull", "-q", reg.Ref("check/app:1"))
	if out := d.mustFlick(t, "system", "check").Stdout; !strings.Contains(out, "store OK") || !strings.Contains(out, "2 layer trees") || !strings.Contains(out, "2 layers, 1 images, 1 tags") {
		t.Fatalf("healthy store: %s", out)
	}
	// Damage: flip a byte of the config blob, remove a layer directory,
	// leave an orphan directory.
	cfgName, _ := img.ConfigName()
	blob := filepath.Join(d.DataRoot, "content", "sha256", cfgName.Hex)
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	os.WriteFile(blob, b, 0o644)
	layers := dirEntries(t, filepath.Join(d.DataRoot, "snapshots", "layers"))
	os.RemoveAll(filepath.Join(d.DataRoot, "snapshots", "layers", layers[0]))
	os.MkdirAll(filepath.Join(d.DataRoot, "snapshots", "layers", strings.Repeat("ab", 32)), 0o755)
	// Bit rot inside the other layer: one byte of one file, same size.
	var victim string
	filepath.WalkDir(filepath.Join(d.DataRoot, "snapshots", "layers", layers[1]), func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() && victim == "" {
			victim = p
		}
		return nil
	})
	if victim == "" {
		t.Fatal("no file in the layer")
	}
	vb, _ := os.ReadFile(victim)
	vb[0] ^= 1
	os.WriteFile(victim, vb, 0o644)
	r := d.flick(t, "system", "check")
	if r.Code == 0 {
		t.Fatalf("damaged store passed: %s", r)
	}
	for _, want := range []string{"corrupt-blob", "missing-layer", "orphan-layer", "corrupt-layer"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("%s not reported:\n%s", want, r.Stdout)
		}
	}
}
