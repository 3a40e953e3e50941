package e2e

import (
	"sort"
	"strings"
	"testing"

	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/flick-edge/flick/internal/testregistry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestPowerCutDuringRemoval cuts power while an image is removed and the
// store pruned (`flick rmi app:1`, then `flick image prune -f`), at a
// sweep of points. app:2 shares a layer with app:1 and must come through
// whole; app:1 is either still complete or gone; after start-up cleanup the
// layer directories on disk are exactly those of the images listed (no
// orphan left to fill the disk, nothing an image needs missing), the store
// checks clean, and containers still start: one created from app:2 before
// the removal, and a fresh one of app:1 if it was kept.
func TestPowerCutDuringRemoval(t *testing.T) {
	requireCutfs(t)
	reg := testregistry.Start(t)
	base := busyboxBase(t)
	shared := randomLayer(t, 91, 4, 96<<10, imagegen.Gzip)
	own1 := randomLayer(t, 92, 6, 128<<10, imagegen.Gzip)
	own2 := randomLayer(t, 93, 3, 64<<10, imagegen.Gzip)
	img1 := mustImage(t, []v1.Layer{base, shared, own1})
	img2 := mustImage(t, []v1.Layer{base, shared, own2})
	ref1, ref2 := reg.Ref("gc/app:1"), reg.Ref("gc/app:2")
	reg.Push(t, ref1, img1)
	reg.Push(t, ref2, img2)
	id1, _ := img1.ConfigName()
	id2, _ := img2.ConfigName()
	layersOf := func(img v1.Image) []string {
		var out []string
		ls, _ := img.Layers()
		for _, l := range ls {
			d, _ := l.DiffID()
			out = append(out, d.Hex)
		}
		return out
	}

	run := func(t *testing.T, n uint64) uint64 {
		r := newCutRig(t)
		d := r.d
		d.mustFlick(t, "pull", "-q", ref1)
		d.mustFlick(t, "pull", "-q", ref2)
		d.mustFlick(t, "create", "--name", "app2", "--network", "none", ref2, "true")
		r.arm(n)
		rmi := d.flick(t, "rmi", ref1)
		d.flick(t, "image", "prune", "-f")
		r.reboot()
		d.Restart() // the second start has cleaned up whatever the first found

		images := d.images(t)
		has1, has2 := false, false
		for _, img := range images {
			switch img.ID {
			case id1.String():
				has1 = true
			case id2.String():
				has2 = true
			}
		}
		if !has2 || !hasTag(images, ref2) {
			t.Errorf("N=%d: app:2 lost in the removal of app:1: %+v", n, images)
		}
		if has1 && rmi.Code == 0 && n == 0 {
			t.Errorf("N=%d: rmi reported success but app:1 is back", n)
		}
		want := map[string]bool{}
		for _, h := range layersOf(img2) {
			want[h] = true
		}
		if has1 {
			for _, h := range layersOf(img1) {
				want[h] = true
			}
		}
		var wantList []string
		for h := range want {
			wantList = append(wantList, h)
		}
		sort.Strings(wantList)
		got := d.layerDirs(t)
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(wantList, ",") {
			t.Errorf("N=%d: layer directories %v, want exactly %v (app:1 present: %v)", n, got, wantList, has1)
		}
		if r := d.flick(t, "system", "check"); r.Code != 0 {
			t.Errorf("N=%d: system check: %s", n, r)
		}
		// Both images run their course: app:2 (and app:1 if kept) inspect,
		// and their containers start.
		if r := d.flick(t, "image", "inspect", ref2); r.Code != 0 {
			t.Errorf("N=%d: inspect app:2: %s", n, r)
		}
		if err := d.containerStarts(t, "app2"); err != nil {
			t.Errorf("N=%d: the container on app:2 does not start: %v", n, err)
		}
		if has1 && hasTag(images, ref1) {
			if err := d.imageRuns(t, ref1); err != nil {
				t.Errorf("N=%d: app:1 was kept but does not run: %v", n, err)
			}
		}
		d.Stop()
		return r.ops
	}
	sweepWorkload(t, "image removal and GC", 10, run)
}
