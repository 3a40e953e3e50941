package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/image"
	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/flick-edge/flick/internal/testregistry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestPowerCutDuringPull applies the power-cut harness (issue 7,
// internal/cutfs) to pulls. The data root lives on a cutfs mount; v1 of an
// image is pulled, the tag moves to v2 (one shared layer, two new ones) and
// the power is cut at the N-th mutating filesystem operation of the v2 pull,
// the daemon SIGKILLed at that instant. After the "reboot" (a new mount of
// the same backing) the daemon must start, `flick system check` must find
// nothing but orphan-* leftovers (and after one more restart not even
// those), the tag must name v1's or v2's image (v2's if the pull had
// reported success), a container created from v1 before the update must
// still start (and a fresh one from whatever the tag names), and pulling v2
// again must succeed. The images sit on a real busybox layer so that their
// containers run.
//
// The default run sweeps about 20 cut points across the pull;
// FLICK_POWERCUT=full cuts at every operation.
func TestPowerCutDuringPull(t *testing.T) {
	requireCutfs(t)
	t.Cleanup(func() {
		out, _ := exec.Command("mount").Output()
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "cutfs") {
				t.Errorf("a cutfs mount was left behind: %s", l)
			}
		}
	})
	reg := testregistry.Start(t)
	base := busyboxBase(t)
	shared := randomLayer(t, 71, 3, 96<<10, imagegen.Gzip)
	old1 := randomLayer(t, 72, 3, 64<<10, imagegen.Gzip)
	old2 := randomLayer(t, 73, 2, 32<<10, imagegen.Gzip)
	new1 := randomLayer(t, 74, 3, 96<<10, imagegen.Gzip)
	new2 := randomLayer(t, 75, 2, 48<<10, imagegen.Gzip)
	pc := &powerCut{
		reg: reg,
		ref: reg.Ref("cut/app:1"),
		v1:  mustImage(t, []v1.Layer{base, shared, old1, old2}),
		v2:  mustImage(t, []v1.Layer{base, shared, new1, new2}),
	}
	v1ID, _ := pc.v1.ConfigName()
	v2ID, _ := pc.v2.ConfigName()
	pc.v1ID, pc.v2ID = v1ID.String(), v2ID.String()

	pc.sweep(t, "pull", 20)
}

// sweep calibrates with an uncut v2 pull, then cuts at about `points` evenly
// spread operations of it (every one with FLICK_POWERCUT=full).
func (pc *powerCut) sweep(t *testing.T, what string, want uint64) {
	var total uint64
	var summaries []string
	start := time.Now()
	t.Run("uncut", func(t *testing.T) {
		res := pc.cycle(t, 0)
		total = res.ops
		summaries = append(summaries, res.String())
	})
	if total == 0 {
		t.Fatal("calibration failed: the uncut v2 pull made no counted operation")
	}
	campaign(t, what, total, want, func(t *testing.T, n uint64) {
		res := pc.cycle(t, n)
		summaries = append(summaries, res.String())
	})
	t.Logf("power cut during %s, %d mutating operations in an uncut v2 pull, %s:\n%s", what, total, time.Since(start).Round(time.Second), strings.Join(summaries, "\n"))
}

// TestPowerCutDuringDeltaPull is TestPowerCutDuringPull with a delta: the hub
// holds v1, the registry holds a delta from v1 to v2 ('flick delta create
// --push'), so the v2 pull downloads the delta to snapshots/deltas with its
// checkpoints, rebuilds the layers from v1's and commits them. The same
// invariants hold at every cut, and the pull after the reboot completes
// (resuming the delta download where its last checkpoint says).
func TestPowerCutDuringDeltaPull(t *testing.T) {
	requireCutfs(t)
	reg := testregistry.Start(t)
	base := busyboxBase(t)
	shared := randomLayer(t, 81, 3, 64<<10, imagegen.Gzip)
	bin := imagegen.Program(8, 600<<10)
	bin2 := append(append([]byte(nil), bin[:1000]...), append([]byte("v2 adds a line"), bin[1000:]...)...)
	app := func(b []byte, extra string) v1.Layer {
		return fileLayer(t, imagegen.Gzip,
			imagegen.File{Name: "app/", Typeflag: '5', Mode: 0o755},
			imagegen.File{Name: "app/server", Body: b, Mode: 0o755},
			imagegen.File{Name: "app/notes.txt", Body: imagegen.Program(9, 300<<10), Mode: 0o644},
			imagegen.File{Name: "app/extra", Body: []byte(extra), Mode: 0o644})
	}
	pc := &powerCut{
		reg:   reg,
		ref:   reg.Ref("cut/delta:1"),
		v1:    mustImage(t, []v1.Layer{base, shared, app(bin, "one")}),
		v2:    mustImage(t, []v1.Layer{base, shared, app(bin2, "two")}),
		delta: true,
	}
	v1ID, _ := pc.v1.ConfigName()
	v2ID, _ := pc.v2.ConfigName()
	pc.v1ID, pc.v2ID = v1ID.String(), v2ID.String()
	pc.sweep(t, "delta pull", 12)
}

type powerCut struct {
	reg        *testregistry.Registry
	ref        string
	v1, v2     v1.Image
	v1ID, v2ID string
	delta      bool // publish a v1 -> v2 delta; every v2 pull must use it
	deltaMade  bool
}

type cutResult struct {
	n          uint64 // 0: uncut, the power is cut after the pull returned
	ops        uint64 // mutating operations seen from arming to the cut
	pullCode   int
	cutHappen  bool
	tag        string // v1, v2, missing, or the ID found
	problems   []string
	violations []string
}

func (r cutResult) String() string {
	n := fmt.Sprintf("N=%d", r.n)
	if r.n == 0 {
		n = "uncut"
	}
	v := "ok"
	if len(r.violations) > 0 {
		v = "VIOLATIONS: " + strings.Join(r.violations, "; ")
	}
	return fmt.Sprintf("  %-6s ops=%-4d pull exit=%d tag->%s after-cut problems=%v  %s", n, r.ops, r.pullCode, r.tag, r.problems, v)
}

func withDataRoot(p string) daemonOpt { return func(d *Daemon) { d.DataRoot = p } }

// cycle runs one power cut at the n-th operation of the v2 pull (n == 0: after
// the pull) and checks the store after the reboot. Violations are t.Errorf'd
// and recorded in the result.
func (pc *powerCut) cycle(t *testing.T, n uint64) (res cutResult) {
	res.n = n
	violate := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		res.violations = append(res.violations, msg)
		t.Errorf("N=%d: %s", n, msg)
	}
	pc.reg.Push(t, pc.ref, pc.v1)
	rig := newCutRig(t)
	d := rig.d
	d.mustFlick(t, "pull", "-q", pc.ref)
	// An app on the old image, created (not started) before the update.
	d.mustFlick(t, "create", "--name", "old-app", "--network", "none", pc.ref, "true")
	pc.reg.Push(t, pc.ref, pc.v2)
	if pc.delta && !pc.deltaMade {
		v1d, _ := pc.v1.Digest()
		base := pc.ref[:strings.LastIndexByte(pc.ref, ':')] + "@" + v1d.String()
		if r := run(t, nil, flickBin(t), "delta", "create", "--push", base, pc.ref); r.Code != 0 {
			t.Fatalf("delta create: %s", r)
		}
		pc.deltaMade = true
	}

	rig.arm(n)
	r := d.flick(t, "pull", "-q", pc.ref)
	res.pullCode = r.Code
	rig.reboot()
	res.cutHappen, res.ops = rig.cut, rig.ops
	if !rig.cut {
		// The pull finished before the N-th operation (or n == 0): the
		// power was cut after it.
		if n > 0 {
			t.Logf("N=%d: the pull (exit %d) made only %d operations; cut after it", n, r.Code, res.ops)
		}
		if r.Code != 0 {
			violate("uncut pull of v2 failed: %s", r)
		}
	}
	preLog := rig.preLog
	if pc.delta && n == 0 && !strings.Contains(preLog, "pulled with a delta") {
		violate("the uncut v2 pull did not use the delta:\n%s", tailString(preLog, 2000))
	}

	failCheck := func(stage string) []string {
		rep, r := pc.check(t, d)
		var all, serious []string
		for _, p := range rep.Problems {
			s := p.Kind + " " + p.Object + ": " + p.Detail
			all = append(all, s)
			if !strings.HasPrefix(p.Kind, "orphan-") {
				serious = append(serious, s)
			}
		}
		if len(serious) > 0 || (r.Code != 0) != (len(serious) > 0) {
			violate("%s: system check (exit %d) found: %v\nstore: %s", stage, r.Code, all, pc.storeState(t, d))
		}
		return all
	}
	res.problems = failCheck("after the reboot")
	res.tag = pc.tagState(t, d)
	switch res.tag {
	case "v1":
		if r.Code == 0 {
			// The pull had reported success: it must survive the cut.
			violate("the v2 pull had reported success (cut during it: %v) but after the cut the tag is back at v1\nstore: %s", res.cutHappen, pc.storeState(t, d))
		}
	case "v2":
	default:
		violate("after the cut the tag %s names %s, neither v1 (%s) nor v2 (%s)\nstore: %s", pc.ref, res.tag, pc.v1ID, pc.v2ID, pc.storeState(t, d))
	}
	if err := d.containerStarts(t, "old-app"); err != nil {
		violate("the container on the old image does not start: %v", err)
	}
	if res.tag == "v1" || res.tag == "v2" {
		if err := d.imageRuns(t, pc.ref); err != nil {
			violate("a container of the tag's image (%s) does not start: %v", res.tag, err)
		}
	}

	// A second start removes the leftovers.
	d.Restart()
	if p := failCheck("after a second restart"); len(p) > 0 {
		violate("after a second restart, leftovers remain: %v", p)
	}
	// The update can be applied.
	if r := d.flick(t, "pull", "-q", pc.ref); r.Code != 0 {
		violate("pulling v2 again after the reboot failed: %s\ndaemon log:\n%s", r, tailString(d.Log(), 3000))
	} else if tag := pc.tagState(t, d); tag != "v2" {
		violate("after pulling v2 again the tag names %s", tag)
	}
	if p := failCheck("after pulling v2 again"); len(p) > 0 {
		violate("after pulling v2 again, the store has leftovers: %v", p)
	}
	if len(res.violations) > 0 {
		t.Logf("N=%d: daemon log before the cut (tail):\n%s\ndaemon log after the reboot (tail):\n%s", n, tailString(preLog, 3000), tailString(d.Log(), 3000))
	}
	d.Stop()
	return res
}

func (pc *powerCut) check(t *testing.T, d *Daemon) (image.CheckReport, Result) {
	t.Helper()
	var rep image.CheckReport
	r := d.flick(t, "system", "check", "--json")
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("system check --json: %v\n%s", err, r)
	}
	return rep, r
}

// tagState is "v1" or "v2" when the tag names one of them, "missing" when no
// image carries it, or the ID it names.
func (pc *powerCut) tagState(t *testing.T, d *Daemon) string {
	t.Helper()
	ref := strings.TrimPrefix(strings.TrimPrefix(pc.ref, "http://"), "https://")
	for _, img := range d.images(t) {
		for _, tag := range img.RepoTags {
			if tag == ref || tag == "docker.io/"+ref {
				switch img.ID {
				case pc.v1ID:
					return "v1"
				case pc.v2ID:
					return "v2"
				}
				return img.ID
			}
		}
	}
	return "missing"
}

// storeState describes the store for a report: images, tags, layers on disk.
func (pc *powerCut) storeState(t *testing.T, d *Daemon) string {
	r := d.flick(t, "images", "--json")
	return fmt.Sprintf("images: %s; layer dirs: %v; staging: %v; v1=%s v2=%s", strings.TrimSpace(r.Stdout), d.layerDirs(t), d.staging(t), pc.v1ID, pc.v2ID)
}
