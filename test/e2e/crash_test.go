package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/flick-edge/flick/internal/testregistry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestKillMidPullThenResume SIGKILLs the daemon while a layer streams, then
// restarts it: staging is cleaned, the old tag still points at the old image,
// layers committed before the kill are kept and not fetched again.
func TestKillMidPullThenResume(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	proxy := testregistry.NewFaultProxy(t, reg.URL())
	shared := randomLayer(t, 41, 4, 2<<20, imagegen.Gzip)
	v1img := mustImage(t, []v1.Layer{shared})
	fresh := randomLayer(t, 43, 4, 1<<20, imagegen.Gzip) // new in the update, committed before the kill
	slow := randomLayer(t, 42, 4, 8<<20, imagegen.Gzip)
	v2img := mustImage(t, []v1.Layer{shared, fresh, slow})
	reg.Push(t, reg.Ref("crash/app:1"), v1img)
	// Two downloads at once, so the small new layer completes while the
	// slow one hangs.
	d := startDaemon(t, withArgs("--max-concurrent-downloads", "2"))
	d.mustFlick(t, "pull", "-q", proxy.Ref("crash/app:1"))
	reg.Push(t, reg.Ref("crash/app:1"), v2img) // the tag moves to the update

	slowDigest, _ := slow.Digest()
	started := make(chan struct{}, 1)
	// Stream the new layer slowly, so the kill lands mid-layer.
	proxy.Intercept(func(r *http.Request) bool {
		return r.Method == http.MethodGet && r.Header.Get("Range") == "" && strings.HasSuffix(r.URL.Path, slowDigest.String())
	},
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "100000000")
			w.WriteHeader(http.StatusOK)
			w.Write(make([]byte, 256<<10)) // more than any buffer: it reaches the daemon
			http.NewResponseController(w).Flush()
			select {
			case started <- struct{}{}:
			default:
			}
			time.Sleep(10 * time.Second)
		}), 1)
	done := make(chan Result, 1)
	go func() { done <- d.flick(t, "pull", "-q", proxy.Ref("crash/app:1")) }()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("layer stream never started")
	}
	// Wait until the small new layer is committed (its directory appears;
	// its record follows in the same step), then cut.
	freshDiff, _ := fresh.DiffID()
	freshDir := filepath.Join(d.DataRoot, "snapshots", "layers", freshDiff.Hex)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(freshDir); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the small new layer was never committed")
		}
	}
	time.Sleep(300 * time.Millisecond)
	d.Kill()
	<-done
	if len(d.staging(t)) == 0 {
		t.Log("note: staging was empty at the kill (extraction had not created files yet)")
	}
	d.start()
	if s := d.staging(t); len(s) != 0 {
		t.Fatalf("staging not cleaned at start-up: %v", s)
	}
	// The tag still names the old, complete image.
	imgs := d.images(t)
	oldID, _ := v1img.ConfigName()
	if len(imgs) != 1 || imgs[0].ID != oldID.String() {
		t.Fatalf("after the kill the tag must still point at the old image %s: %+v", oldID, imgs)
	}
	proxy.Reset()
	proxy.ClearRequests()
	d.mustFlick(t, "pull", "-q", proxy.Ref("crash/app:1"))
	sharedDigest, _ := shared.Digest()
	freshDigest, _ := fresh.Digest()
	for _, r := range proxy.Requests() {
		if r.Method == http.MethodGet && r.Range == "" && (strings.HasSuffix(r.Path, sharedDigest.String()) || strings.HasSuffix(r.Path, freshDigest.String())) {
			t.Fatalf("a layer committed before the kill was fetched again (start-up must keep committed layers): %+v", r)
		}
	}
	newID, _ := v2img.ConfigName()
	if imgs := d.images(t); !strings.Contains(imgs[0].ID+imgs[len(imgs)-1].ID, newID.String()) {
		t.Fatalf("update not applied: %+v", imgs)
	}
}

// TestRegistryAuth pulls from a registry that needs a login.
func TestRegistryAuth(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t, testregistry.WithBasicAuth("ci", "s3cret"))
	reg.Push(t, reg.Ref("private/app:1"), mustImage(t, []v1.Layer{randomLayer(t, 51, 2, 64<<10, imagegen.Gzip)}))
	d := startDaemon(t)
	r := d.flick(t, "pull", reg.Ref("private/app:1"))
	if r.Code != 7 || !strings.Contains(r.Stderr, "login") {
		t.Fatalf("pull without credentials: want exit 7 and a hint to log in: %s", r)
	}
	r = d.flick(t, "login", reg.Host(), "-u", "ci", "-p", "wrong")
	if r.Code == 0 {
		t.Fatalf("login with a wrong password succeeded: %s", r)
	}
	d.mustFlick(t, "login", reg.Host(), "-u", "ci", "-p", "s3cret")
	d.mustFlick(t, "pull", "-q", reg.Ref("private/app:1"))
	// The docker CLI reads the same config.json.
	if r := d.docker(t, "pull", reg.Ref("private/app:1")); r.Code != 0 {
		t.Fatalf("docker pull with the stored login: %s", r)
	}
}
