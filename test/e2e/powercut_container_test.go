package e2e

import (
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/flick-edge/flick/internal/testregistry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestPowerCutDuringContainerChange cuts power while a gateway's apps are
// changed: a new container is created (--restart on-failure, with a named
// and an anonymous volume, whose directories must survive with it), an old
// one removed and a third renamed. After the reboot every container listed
// is whole and starts; one whose create had answered exists; one whose
// removal had answered is gone; an answered update holds; the renamed one is there under its new
// name if the rename had answered, under one of the two otherwise; and no
// partial bundle (.new-*, .trash-*) is left after start-up.
//
// Creating and removing touch only files in the data root, so
// this workload runs on cutfs; starting needs an overlay upper, which FUSE
// cannot hold, so the containers start after the reboot on the durable
// state (rebootOnDisk).
func TestPowerCutDuringContainerChange(t *testing.T) {
	requireCutfs(t)
	reg := testregistry.Start(t)
	ref := reg.Ref("ctr/app:1")
	reg.Push(t, ref, mustImage(t, []v1.Layer{busyboxBase(t), randomLayer(t, 95, 2, 16<<10, imagegen.Gzip)}))

	run := func(t *testing.T, n uint64) uint64 {
		r := newCutRig(t)
		d := r.d
		d.mustFlick(t, "pull", "-q", ref)
		d.mustFlick(t, "create", "--name", "old", "--network", "none", ref, "true")
		d.mustFlick(t, "create", "--name", "keeper", "--network", "none", ref, "true")

		r.arm(n)
		created := d.flick(t, "create", "--name", "new", "--network", "none", "--restart", "on-failure:3", "-v", "appdata:/data", "-v", "/cache", ref, "true").Code == 0
		removed := d.flick(t, "rm", "old").Code == 0
		updated := d.docker(t, "update", "--restart", "on-failure:2", "--memory", "64m", "keeper").Code == 0
		renamed := d.docker(t, "rename", "keeper", "kept").Code == 0
		if n == 0 && (!created || !removed || !updated || !renamed) {
			t.Errorf("uncut workload failed: create %v, rm %v, update %v, rename %v\n%s", created, removed, updated, renamed, tailString(d.Log(), 2000))
		}
		r.reboot()

		names := map[string]inspect{}
		var list []struct {
			Names []string
		}
		if err := json.Unmarshal([]byte(d.mustFlick(t, "ps", "-a", "--json").Stdout), &list); err != nil {
			t.Fatal(err)
		}
		for _, c := range list {
			name := strings.TrimPrefix(strings.Join(c.Names, ","), "/")
			names[name] = d.inspectContainer(t, name)
		}
		if _, ok := names["new"]; created && !ok {
			t.Errorf("N=%d: 'flick create new' had answered, but after the cut the container is gone (have %v)", n, keys(names))
		}
		if _, ok := names["old"]; removed && ok {
			t.Errorf("N=%d: 'flick rm old' had answered, but after the cut the container is back", n)
		}
		_, keeper := names["keeper"]
		_, kept := names["kept"]
		switch {
		case renamed && !kept:
			t.Errorf("N=%d: 'rename keeper kept' had answered, but after the cut there is no 'kept' (have %v)", n, keys(names))
		case keeper == kept:
			t.Errorf("N=%d: after a cut during its rename, the container is under both names or neither (have %v)", n, keys(names))
		case updated:
			name := map[bool]string{true: "kept", false: "keeper"}[kept]
			if r := d.docker(t, "inspect", "-f", "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.Memory}}", name); strings.TrimSpace(r.Stdout) != "on-failure 67108864" {
				t.Errorf("N=%d: 'update keeper' had answered, but after the cut: %s", n, r)
			}
		}
		if left := dirEntries(t, filepath.Join(d.DataRoot, "containers")); hasHidden(left) {
			t.Errorf("N=%d: partial bundles left after start-up: %v", n, left)
		}
		for name := range names {
			if err := d.containerStarts(t, name); err != nil {
				t.Errorf("N=%d: container %s is listed but does not start: %v", n, name, err)
			}
		}
		if r := d.flick(t, "system", "check"); r.Code != 0 {
			t.Errorf("N=%d: system check: %s", n, r)
		}
		d.Stop()
		return r.ops
	}
	sweepWorkload(t, "container create/remove", 10, run)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func hasHidden(names []string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, ".") {
			return true
		}
	}
	return false
}
