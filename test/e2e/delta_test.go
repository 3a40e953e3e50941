package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/flick-edge/flick/internal/testregistry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestDeltaCreatePushPull is the user's path: CI runs 'flick delta create
// --push' (no daemon) after pushing release 2; a hub holding release 1 pulls
// release 2 with 'flick pull' and then, on another hub, with 'docker pull'
// through Flick's socket; both download the delta, not the layers.
func TestDeltaCreatePushPull(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	osLayer := randomLayer(t, 11, 40, 2<<20, imagegen.Gzip)
	bin := imagegen.Program(1, 1<<20)
	bin2 := append([]byte(nil), bin...)
	copy(bin2[4096:], "release 2: one line changed")
	app := func(b []byte, cfg string) v1.Layer {
		return fileLayer(t, imagegen.Gzip,
			imagegen.File{Name: "app/", Typeflag: '5', Mode: 0o755},
			imagegen.File{Name: "app/server", Body: b, Mode: 0o755},
			imagegen.File{Name: "app/config.yaml", Body: []byte(cfg), Mode: 0o644})
	}
	r1 := mustImage(t, []v1.Layer{osLayer, app(bin, "level: info\n")}, imagegen.WithCmd("/app/server"))
	r2 := mustImage(t, []v1.Layer{osLayer, app(bin2, "level: debug\n")}, imagegen.WithCmd("/app/server"))
	reg.Push(t, reg.Ref("fleet/app:1"), r1)
	reg.Push(t, reg.Ref("fleet/app:2"), r2)

	// CI side: no daemon, just the binary.
	cr := run(t, nil, flickBin(t), "delta", "create", "--push", "--json", reg.Ref("fleet/app:1"), reg.Ref("fleet/app:2"))
	if cr.Code != 0 {
		t.Fatalf("delta create: %s", cr)
	}
	var made struct {
		LayerPull int64 `json:"layerPullBytes"`
		DeltaPull int64 `json:"deltaPullBytes"`
		Pushed    bool
		Artifact  string
	}
	if err := json.Unmarshal([]byte(cr.Stdout), &made); err != nil {
		t.Fatalf("delta create --json: %v\n%s", err, cr.Stdout)
	}
	if !made.Pushed || made.DeltaPull*10 > made.LayerPull {
		t.Fatalf("delta create: %+v", made)
	}
	human := run(t, nil, flickBin(t), "delta", "create", reg.Ref("fleet/app:1"), reg.Ref("fleet/app:2"))
	if human.Code != 0 || !strings.Contains(human.Stdout, "Hub download:") || !strings.Contains(human.Stdout, "add --push") {
		t.Fatalf("delta create (table): %s", human)
	}
	t.Logf("flick delta create:\n%s", human.Stdout)

	// Hub A: flick pull.
	d := startDaemon(t)
	d.mustFlick(t, "pull", "-q", reg.Ref("fleet/app:1"))
	out := d.mustFlick(t, "pull", reg.Ref("fleet/app:2"))
	if !strings.Contains(out.Stdout, "Using delta") || !strings.Contains(out.Stdout, "saved") {
		t.Fatalf("pull did not use the delta:\n%s", out.Stdout)
	}
	t.Logf("flick pull with a delta:\n%s", out.Stdout)
	if !hasTag(d.images(t), reg.Ref("fleet/app:2")) {
		t.Fatal("release 2 not listed")
	}
	resp, err := d.httpClient().Get("http://flick/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "flick_pull_delta_total 1") {
		t.Fatalf("metrics do not count the delta pull:\n%s", grepLines(string(metrics), "flick_pull"))
	}
	// The rebuilt image runs: its files are the target's.
	run1 := d.mustFlick(t, "image", "inspect", reg.Ref("fleet/app:2"))
	if !strings.Contains(run1.Stdout, "/app/server") {
		t.Fatalf("inspect: %s", run1.Stdout)
	}

	// --no-delta on the same hub, after removing release 2.
	d.mustFlick(t, "rmi", reg.Ref("fleet/app:2"))
	out = d.mustFlick(t, "pull", "--no-delta", reg.Ref("fleet/app:2"))
	if strings.Contains(out.Stdout, "Using delta") {
		t.Fatalf("--no-delta used a delta:\n%s", out.Stdout)
	}

	// Hub B: the docker CLI, which knows nothing of deltas.
	d2 := startDaemon(t)
	if r := d2.docker(t, "pull", reg.Ref("fleet/app:1")); r.Code != 0 {
		t.Fatalf("docker pull 1: %s", r)
	}
	r := d2.docker(t, "pull", reg.Ref("fleet/app:2"))
	if r.Code != 0 || !strings.Contains(r.Stdout, "Using delta") {
		t.Fatalf("docker pull through Flick did not use the delta: %s\n%s", r, tailString(d2.Log(), 3000))
	}
	if !strings.Contains(d2.Log(), "pulled with a delta") {
		t.Fatalf("daemon log lacks the delta pull:\n%s", tailString(d2.Log(), 3000))
	}
}

func grepLines(s, sub string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			fmt.Fprintln(&b, l)
		}
	}
	return b.String()
}
