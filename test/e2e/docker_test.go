package e2e

import (
	"strings"
	"testing"

	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/flick-edge/flick/internal/testregistry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestDockerCLI drives the real docker CLI against Flick's socket.
func TestDockerCLI(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	d := startDaemon(t)
	img := mustImage(t, []v1.Layer{randomLayer(t, 11, 10, 2<<20, imagegen.Gzip), randomLayer(t, 12, 3, 64<<10, imagegen.Gzip)},
		imagegen.WithCmd("/bin/sh"))
	reg.Push(t, reg.Ref("cli/app:1"), img)

	must := func(args ...string) Result {
		t.Helper()
		r := d.docker(t, args...)
		if r.Code != 0 {
			t.Fatalf("docker %s: %s\ndaemon log:\n%s", strings.Join(args, " "), r, tailString(d.Log(), 3000))
		}
		return r
	}
	r := must("version")
	if !strings.Contains(r.Stdout, "Flick Engine") {
		t.Fatalf("docker version does not show the Flick server:\n%s", r.Stdout)
	}
	must("info")
	r = must("pull", reg.Ref("cli/app:1"))
	if !strings.Contains(r.Stdout, "Pull complete") || !strings.Contains(r.Stdout, "Downloaded newer image") {
		t.Fatalf("docker pull output:\n%s", r.Stdout)
	}
	r = must("images")
	if !strings.Contains(r.Stdout, reg.Ref("cli/app")) {
		t.Fatalf("docker images:\n%s", r.Stdout)
	}
	must("tag", reg.Ref("cli/app:1"), "cli/app:latest")
	r = must("image", "inspect", "--format", "{{.Config.Cmd}} {{len .RootFS.Layers}}", "cli/app")
	if strings.TrimSpace(r.Stdout) != "[/bin/sh] 2" {
		t.Fatalf("docker image inspect: %q", r.Stdout)
	}
	r = must("images", "--format", "{{.Repository}}:{{.Tag}}")
	if !strings.Contains(r.Stdout, "cli/app:latest") {
		t.Fatalf("docker images --format:\n%s", r.Stdout)
	}
	must("system", "df")
	r = must("rmi", "cli/app:latest")
	if !strings.Contains(r.Stdout, "Untagged: cli/app:latest") {
		t.Fatalf("docker rmi:\n%s", r.Stdout)
	}
	must("rmi", reg.Ref("cli/app:1"))
	// An unsupported feature says so.
	r = d.docker(t, "swarm", "init")
	if r.Code == 0 || !strings.Contains(r.Stderr, "Flick") {
		t.Fatalf("docker swarm init: %s", r)
	}
	// A missing image: docker's own wording.
	r = d.docker(t, "pull", reg.Ref("cli/absent:1"))
	if r.Code == 0 || !strings.Contains(strings.ToLower(r.Stderr), "not found") && !strings.Contains(strings.ToLower(r.Stderr), "unknown") {
		t.Fatalf("docker pull of a missing image: %s", r)
	}
}
